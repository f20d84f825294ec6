//! `/api/v1/authn*`: Okta's Authentication API over the core's state machine, rendered exactly as
//! okta-auth-js expects: absolute `href`s, one verb per `hints.allow`, `next.name`, `factors` (an
//! array) in MFA_ENROLL and MFA_REQUIRED, `factor` (an object) in MFA_ENROLL_ACTIVATE and
//! MFA_CHALLENGE (Okta's Authentication API reference, "Transaction model").

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use latchkey_core::CoreError;
use latchkey_core::authn::machine::{AuthnOptions, AuthnView, FactorView, RateQuota};
use latchkey_core::authn::{AuthnStatus, TOTP};
use latchkey_core::policy::FactorPromptMode;
use latchkey_core::sessions::EndReason;
use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::extract::{Caller, JsonObject, PathParams, QueryParams};
use crate::state::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/authn", post(start))
        .route("/api/v1/authn/introspect", post(introspect))
        .route("/api/v1/authn/factors", post(enroll))
        .route("/api/v1/authn/factors/{factor_id}/lifecycle/activate", post(activate))
        .route("/api/v1/authn/factors/{factor_id}/verify", post(verify))
        .route("/api/v1/authn/previous", post(previous))
        .route("/api/v1/authn/skip", post(skip))
        .route("/api/v1/authn/cancel", post(cancel))
        .route("/api/v1/authn/credentials/change_password", post(change_password))
        .route("/api/v1/authn/credentials/reset_password", post(reset_password))
}

fn text(body: &Map<String, Value>, name: &'static str) -> Result<Option<String>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::MalformedBody(format!("{name} must be a string."))),
    }
}

fn required(body: &Map<String, Value>, name: &'static str) -> Result<String, ApiError> {
    text(body, name)?.ok_or_else(|| CoreError::validation(name, "The field cannot be left blank").into())
}

/// A missing state token is Okta's "invalid token" (the SDK then drops its stored transaction).
fn state_token(body: &Map<String, Value>) -> Result<String, ApiError> {
    text(body, "stateToken")?.ok_or(ApiError::Core(CoreError::InvalidStateToken))
}

fn flag(options: Option<&Value>, name: &str) -> Result<bool, ApiError> {
    match options.and_then(|o| o.get(name)) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ApiError::MalformedBody(format!("options.{name} must be a boolean."))),
    }
}

async fn start(
    State(state): State<AppState>,
    mut caller: Caller,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    caller.trust_device_token(&headers, &body, &state).await;
    let relay_state = text(&body, "relayState")?.filter(|r| r.len() <= 2048);
    let authn = state.authn();
    let view = if let Some(token) = text(&body, "stateToken")? {
        authn.current(&token).await?
    } else if let Some(token) = text(&body, "token")? {
        let (result, quota) = authn.activation(&token, relay_state, &caller.context).await;
        return Ok(with_rate_limit(answer(&state, caller, result), quota));
    } else {
        let options = match body.get("options") {
            None | Some(Value::Null) => None,
            Some(v @ Value::Object(_)) => Some(v),
            Some(_) => return Err(ApiError::MalformedBody("options must be an object.".into())),
        };
        let options = AuthnOptions {
            multi_optional_factor_enroll: flag(options, "multiOptionalFactorEnroll")?,
            warn_before_password_expired: flag(options, "warnBeforePasswordExpired")?,
        };
        let username = required(&body, "username")?;
        let password = required(&body, "password")?;
        let (result, quota) =
            state.primary_authn(&username, &password, options, relay_state, &caller.context).await;
        return Ok(with_rate_limit(answer(&state, caller, result), quota));
    };
    Ok(caller.finish(render(&state, &view)))
}

/// The rendered transaction, or the error's documented shape.
fn answer(state: &AppState, caller: Caller, result: Result<AuthnView, CoreError>) -> Response {
    match result {
        Ok(view) => caller.finish(render(state, &view)),
        Err(error) => ApiError::from(error).into_response(),
    }
}

/// Okta sends its rate-limit headers on every answer of a rate-limited endpoint, not only on 429s.
fn with_rate_limit(mut response: Response, quota: Option<RateQuota>) -> Response {
    if let Some(quota) = quota {
        let headers = response.headers_mut();
        headers.insert("x-rate-limit-limit", HeaderValue::from(quota.limit));
        headers.insert("x-rate-limit-remaining", HeaderValue::from(quota.remaining));
        headers.insert("x-rate-limit-reset", HeaderValue::from(quota.reset.epoch_seconds()));
    }
    response
}

async fn introspect(
    State(state): State<AppState>,
    caller: Caller,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let view = state.authn().current(&state_token(&body)?).await?;
    Ok(caller.finish(render(&state, &view)))
}

async fn enroll(
    State(state): State<AppState>,
    caller: Caller,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let token = state_token(&body)?;
    let factor_type = required(&body, "factorType")?;
    let provider = required(&body, "provider")?;
    let view = state.authn().enroll(&token, &factor_type, &provider).await?;
    Ok(caller.finish(render(&state, &view)))
}

async fn activate(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(factor_id): PathParams<String>,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let token = state_token(&body)?;
    let passcode = required(&body, "passCode")?;
    let view = state.authn().activate(&token, &factor_id, &passcode).await?;
    Ok(caller.finish(render(&state, &view)))
}

async fn verify(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(factor_id): PathParams<String>,
    params: QueryParams,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let token = state_token(&body)?;
    let passcode = text(&body, "passCode")?;
    // okta-auth-js sends rememberDevice as a query parameter; accept it in the body too.
    let remember = match params.get("rememberDevice") {
        Some(_) => Some(params.flag("rememberDevice", false)?),
        None => body.get("rememberDevice").and_then(Value::as_bool),
    };
    let (result, quota) =
        state.authn().verify(&token, &factor_id, passcode.as_deref(), remember, &caller.context).await;
    Ok(with_rate_limit(answer(&state, caller, result), quota))
}

async fn previous(
    State(state): State<AppState>,
    caller: Caller,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let view = state.authn().previous(&state_token(&body)?).await?;
    Ok(caller.finish(render(&state, &view)))
}

async fn skip(
    State(state): State<AppState>,
    caller: Caller,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let view = state.authn().skip(&state_token(&body)?).await?;
    Ok(caller.finish(render(&state, &view)))
}

async fn cancel(
    State(state): State<AppState>,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    let relay_state = state.authn().cancel(&state_token(&body)?).await?;
    Ok(Json(json!({ "relayState": relay_state.unwrap_or_default() })))
}

async fn change_password(
    State(state): State<AppState>,
    caller: Caller,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let token = state_token(&body)?;
    let old = required(&body, "oldPassword")?;
    let new = required(&body, "newPassword")?;
    let revoke = match body.get("revokeSessions") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::MalformedBody("revokeSessions must be a boolean.".into())),
    };
    let view = state.authn().change_password(&token, &old, &new).await?;
    if let (true, Some(user)) = (revoke, &view.user) {
        state.sessions().end_all(&user.id, None, EndReason::UserSessionsRevoked, None, None).await?;
    }
    Ok(caller.finish(render(&state, &view)))
}

async fn reset_password(
    State(state): State<AppState>,
    caller: Caller,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let token = state_token(&body)?;
    let new = required(&body, "newPassword")?;
    let view = state.authn().reset_password(&token, &new).await?;
    Ok(caller.finish(render(&state, &view)))
}

fn post_link(state: &AppState, path: &str, name: Option<&str>) -> Value {
    let mut link = json!({"href": state.link(path), "hints": {"allow": ["POST"]}});
    if let (Some(name), Some(obj)) = (name, link.as_object_mut()) {
        obj.insert("name".into(), Value::String(name.to_owned()));
    }
    link
}

fn factor_json(state: &AppState, view: &AuthnView, factor: &FactorView, verify_link: bool) -> Value {
    let mut f = Map::new();
    if let Some(id) = &factor.id {
        f.insert("id".into(), json!(id));
    }
    f.insert("factorType".into(), json!(TOTP));
    f.insert("provider".into(), json!(factor.provider.as_str()));
    f.insert("vendorName".into(), json!(factor.provider.vendor_name()));
    match factor.enrollment {
        // MFA_ENROLL's catalogue entry.
        Some(enrollment) => {
            f.insert("status".into(), json!(factor.status));
            f.insert("enrollment".into(), serde_json::to_value(enrollment).unwrap_or(Value::Null));
            if factor.status == "NOT_SETUP" {
                f.insert("_links".into(), json!({"enroll": post_link(state, "/api/v1/authn/factors", None)}));
            }
        }
        None => {
            let login = view.user.as_ref().map(|u| u.login().to_owned()).unwrap_or_default();
            f.insert("profile".into(), json!({"credentialId": login}));
            if let (true, Some(id)) = (verify_link, &factor.id) {
                let verify = post_link(state, &format!("/api/v1/authn/factors/{id}/verify"), None);
                f.insert("_links".into(), json!({ "verify": verify }));
            }
        }
    }
    Value::Object(f)
}

fn user_json(view: &AuthnView) -> Option<Value> {
    let user = view.user.as_ref()?;
    let p = &user.profile;
    Some(json!({
        "id": user.id,
        "passwordChanged": user.password_changed.map(|t| t.to_iso()),
        "profile": {
            "login": p.login(),
            "firstName": p.get("firstName"),
            "lastName": p.get("lastName"),
            "locale": p.get("locale").unwrap_or("en_US"),
            "timeZone": p.get("timezone").unwrap_or("UTC"),
        }
    }))
}

fn complexity_json(view: &AuthnView) -> Value {
    let c = &view.policies.password.complexity;
    json!({
        "minLength": c.min_length,
        "minLowerCase": c.min_lower_case,
        "minUpperCase": c.min_upper_case,
        "minNumber": c.min_number,
        "minSymbol": c.min_symbol,
        "excludeUsername": c.exclude_username,
        "excludeAttributes": c.exclude_attributes,
    })
}

fn remember_policy(view: &AuthnView) -> Value {
    let rule = &view.policies.sign_on;
    json!({
        "allowRememberDevice": rule.factor_prompt_mode == FactorPromptMode::Device,
        "rememberDeviceLifetimeInMinutes": rule.factor_lifetime_minutes,
        "rememberDeviceByDefault": rule.remember_device_by_default,
    })
}

/// Okta's transaction object for `view`.
pub(crate) fn render(state: &AppState, view: &AuthnView) -> Value {
    let mut body = Map::new();
    if let Some(token) = &view.state_token {
        body.insert("stateToken".into(), json!(token));
    }
    if let Some(expires) = view.expires_at {
        body.insert("expiresAt".into(), json!(expires.to_iso()));
    }
    body.insert("status".into(), json!(view.status.as_str()));
    if let Some(token) = &view.session_token {
        body.insert("sessionToken".into(), json!(token));
    }
    if let Some(result) = &view.factor_result {
        body.insert("factorResult".into(), json!(result));
    }
    if let Some(relay) = &view.relay_state {
        body.insert("relayState".into(), json!(relay));
    }
    let mut embedded = Map::new();
    if let Some(user) = user_json(view) {
        embedded.insert("user".into(), user);
    }
    let mut links = Map::new();
    let cancel = post_link(state, "/api/v1/authn/cancel", None);
    match view.status {
        // LOCKED_OUT has no state token, so nothing to cancel; self-service unlock is not offered.
        AuthnStatus::Success | AuthnStatus::LockedOut => {}
        AuthnStatus::PasswordWarn | AuthnStatus::PasswordExpired => {
            let mut policy = json!({"complexity": complexity_json(view)});
            if view.status == AuthnStatus::PasswordWarn {
                policy["expiration"] = json!({"passwordExpireDays": view.password_expire_days.unwrap_or(0)});
                links.insert("skip".into(), post_link(state, "/api/v1/authn/skip", Some("skip")));
            }
            embedded.insert("policy".into(), policy);
            links.insert(
                "next".into(),
                post_link(state, "/api/v1/authn/credentials/change_password", Some("changePassword")),
            );
            links.insert("cancel".into(), cancel);
        }
        AuthnStatus::PasswordReset => {
            let age = &view.policies.password.age;
            embedded.insert(
                "policy".into(),
                json!({
                    "expiration": {"passwordExpireDays": age.max_age_days},
                    "complexity": complexity_json(view),
                    "age": {"minAgeMinutes": age.min_age_minutes, "historyCount": age.history_count},
                }),
            );
            links.insert(
                "next".into(),
                post_link(state, "/api/v1/authn/credentials/reset_password", Some("resetPassword")),
            );
            links.insert("cancel".into(), cancel);
        }
        AuthnStatus::MfaEnroll => {
            let factors: Vec<Value> =
                view.factors.iter().map(|f| factor_json(state, view, f, false)).collect();
            embedded.insert("factors".into(), Value::Array(factors));
            if view.can_skip {
                links.insert("skip".into(), post_link(state, "/api/v1/authn/skip", Some("skip")));
            }
            links.insert("cancel".into(), cancel);
        }
        AuthnStatus::MfaEnrollActivate => {
            if let Some(factor) = &view.factor {
                let mut f = factor_json(state, view, factor, false);
                // Okta's recorded activation answers: no vendorName on the factor being activated,
                // the activation waiting for its first passcode, and a `prev` link without a name.
                if let Some(obj) = f.as_object_mut() {
                    obj.remove("vendorName");
                }
                if let (Some(activation), Some(id), Some(user)) = (&view.activation, &factor.id, &view.user) {
                    let qr = state
                        .link(&format!("/api/v1/users/{}/factors/{id}/qr/{}", user.id, activation.qr_token));
                    f["_embedded"] = json!({"activation": {
                        "timeStep": latchkey_core::totp::STEP_SECONDS,
                        "sharedSecret": activation.shared_secret,
                        "encoding": "base32",
                        "keyLength": latchkey_core::totp::DIGITS,
                        "factorResult": "WAITING",
                        "_links": {"qrcode": {"href": qr, "type": "image/png"}},
                    }});
                }
                if let Some(id) = &factor.id {
                    links.insert(
                        "next".into(),
                        post_link(
                            state,
                            &format!("/api/v1/authn/factors/{id}/lifecycle/activate"),
                            Some("activate"),
                        ),
                    );
                }
                embedded.insert("factor".into(), f);
            }
            links.insert("prev".into(), post_link(state, "/api/v1/authn/previous", None));
            links.insert("cancel".into(), cancel);
        }
        AuthnStatus::MfaRequired => {
            let factors: Vec<Value> =
                view.factors.iter().map(|f| factor_json(state, view, f, true)).collect();
            embedded.insert("factors".into(), Value::Array(factors));
            embedded.insert("policy".into(), remember_policy(view));
            links.insert("cancel".into(), cancel);
        }
        AuthnStatus::MfaChallenge => {
            if let Some(factor) = &view.factor {
                embedded.insert("factor".into(), factor_json(state, view, factor, false));
                if let Some(id) = &factor.id {
                    links.insert(
                        "next".into(),
                        post_link(state, &format!("/api/v1/authn/factors/{id}/verify"), Some("verify")),
                    );
                }
            }
            embedded.insert("policy".into(), remember_policy(view));
            links.insert("prev".into(), post_link(state, "/api/v1/authn/previous", Some("prev")));
            links.insert("cancel".into(), cancel);
        }
    }
    body.insert("_embedded".into(), Value::Object(embedded));
    if !links.is_empty() {
        body.insert("_links".into(), Value::Object(links));
    }
    Value::Object(body)
}
