//! `/api/v1/users*`: Okta's Users API (create, read, list/search, update, lifecycle, delete,
//! change password) over the core's user use cases, rendered exactly as Okta's `User` object.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use latchkey_core::CoreError;
use latchkey_core::events::Target;
use latchkey_core::sessions::EndReason;
use latchkey_core::store::FactorStore as _;
use latchkey_core::users::query::UserQuery;
use latchkey_core::users::service::{LifecycleOptions, MAX_PAGE, NewUser, ProfileChange};
use latchkey_core::users::{Lifecycle, User, UserStatus};
use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::extract::{Admin, JsonObject, PathParams, QueryParams};
use crate::shapes;
use crate::state::AppState;

/// Top-level fields of a User body that are read-only: accepted (SDKs send the object they read
/// back) and ignored.
const READ_ONLY_FIELDS: &[&str] = &[
    "id",
    "status",
    "created",
    "activated",
    "statusChanged",
    "lastLogin",
    "lastUpdated",
    "passwordChanged",
    "transitioningToStatus",
    "type",
    "realmId",
    "_links",
    "_embedded",
];

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/users", get(list).post(create))
        .route("/api/v1/users/{id}", get(read).post(update_partial).put(update_full).delete(delete))
        .route("/api/v1/users/{id}/lifecycle/{operation}", post(lifecycle))
        .route("/api/v1/users/{id}/credentials/change_password", post(change_password))
        .route("/api/v1/users/me", get(current_user))
}

/// `GET /api/v1/users/me` with the browser's session cookie (what okta-auth-js's
/// `session.get().user()` follows); without one, Okta's 404 for `me`.
async fn current_user(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let (_, user, _) = crate::web::browser_session(&state, &headers)
        .await?
        .ok_or_else(|| ApiError::Core(CoreError::NotFound("me (User)".to_owned())))?;
    Ok(Json(shapes::user(&state, &user)))
}

/// A user who may no longer sign in loses every session at once (as in Okta, on suspend and
/// deactivate); each end is logged.
async fn end_sessions(state: &AppState, admin: &Admin, user_id: &str) -> Result<(), ApiError> {
    let reason = EndReason::UserNotActive;
    state.sessions().end_all(user_id, None, reason, Some(admin.actor.clone()), admin.ip.as_deref()).await?;
    Ok(())
}

fn user_target(user: &User) -> Target {
    Target::new(&user.id, "User", user.login())
}

async fn create(
    admin: Admin,
    State(state): State<AppState>,
    params: QueryParams,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    check_fields(&body, &["profile", "credentials", "groupIds", "type"])?;
    check_unsupported(&body)?;
    if params.flag("provider", false)? {
        return Err(ApiError::InvalidParameter {
            name: "provider",
            message: "federated users are not supported".into(),
        });
    }
    let activate = params.flag("activate", true)?;
    let expire_password = match params.get("nextLogin") {
        None => false,
        Some("changePassword") => true,
        Some(_) => {
            return Err(ApiError::InvalidParameter {
                name: "nextLogin",
                message: "must be changePassword".into(),
            });
        }
    };
    let profile = object_field(&body, "profile")?.unwrap_or_default();
    let password = password_value(&body)?;
    let group_ids = group_ids(&body)?;
    let groups = state.groups();
    // Every group is checked before the user is written: an unknown one is a 404, and no user.
    for id in &group_ids {
        groups.get(id).await?;
    }
    let user = state.users().create(NewUser { profile, password, activate, expire_password }).await?;
    state.log(admin.event(&state, "user.lifecycle.create", "Create Okta user", user_target(&user))).await;
    groups.add_new_user(&user, &group_ids, &admin.changed_by()).await?;
    groups.apply_rules(&user, &admin.changed_by()).await?;
    Ok(Json(shapes::user(&state, &user)))
}

async fn read(
    _admin: Admin,
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
) -> Result<Json<Value>, ApiError> {
    let user = state.users().get(&id).await?;
    Ok(Json(shapes::user(&state, &user)))
}

async fn list(
    _admin: Admin,
    State(state): State<AppState>,
    params: QueryParams,
) -> Result<Response, ApiError> {
    let limit = params.limit(MAX_PAGE, MAX_PAGE)?;
    let (query, query_param) = if let Some(search) = params.get("search") {
        (UserQuery::expression(search)?, Some(("search", search)))
    } else if let Some(filter) = params.get("filter") {
        (UserQuery::expression(filter)?, Some(("filter", filter)))
    } else if let Some(q) = params.get("q") {
        (UserQuery::prefix(q)?, Some(("q", q)))
    } else {
        (UserQuery::All, None)
    };
    let after = crate::extract::cursor(&params)?;
    // One extra row tells whether a next page exists.
    let mut users = state.users().list(&query, after, limit + 1).await?;
    let next_cursor = crate::extract::cut_page(&mut users, limit, |u| &u.id);
    let headers = crate::extract::page_links(
        &state,
        "/api/v1/users",
        limit,
        query_param.as_slice(),
        after,
        next_cursor,
    );
    let body: Vec<Value> = users.iter().map(|u| shapes::user(&state, u)).collect();
    Ok((headers, Json(body)).into_response())
}

async fn update_partial(
    admin: Admin,
    state: State<AppState>,
    id: PathParams<String>,
    body: JsonObject,
) -> Result<Json<Value>, ApiError> {
    update(admin, state, id, body, false).await
}

async fn update_full(
    admin: Admin,
    state: State<AppState>,
    id: PathParams<String>,
    body: JsonObject,
) -> Result<Json<Value>, ApiError> {
    update(admin, state, id, body, true).await
}

/// POST merges the given profile attributes; PUT replaces the whole profile. Either may set a
/// password (`credentials.password.value`) as the administrator.
async fn update(
    admin: Admin,
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
    JsonObject(body): JsonObject,
    replace: bool,
) -> Result<Json<Value>, ApiError> {
    let mut allowed = vec!["profile", "credentials"];
    allowed.extend_from_slice(READ_ONLY_FIELDS);
    check_fields(&body, &allowed)?;
    let change = match (object_field(&body, "profile")?, replace) {
        (None, false) => ProfileChange::None,
        (None, true) => {
            return Err(CoreError::validation("profile", "The field cannot be left blank").into());
        }
        (Some(profile), false) => ProfileChange::Merge(profile),
        (Some(profile), true) => ProfileChange::Replace(profile),
    };
    let password = password_value(&body)?;
    let sets_password = password.is_some();
    let changes_profile = !matches!(change, ProfileChange::None);
    let user = state.users().update(&id, change, password).await?;
    if changes_profile {
        state.groups().apply_rules(&user, &admin.changed_by()).await?;
    }
    let (kind, message) = if sets_password {
        ("user.account.update_password", "Update user password")
    } else {
        ("user.account.update_profile", "Update user profile for Okta")
    };
    state.log(admin.event(&state, kind, message, user_target(&user))).await;
    Ok(Json(shapes::user(&state, &user)))
}

async fn lifecycle(
    admin: Admin,
    State(state): State<AppState>,
    PathParams((id, operation)): PathParams<(String, String)>,
    params: QueryParams,
) -> Result<Json<Value>, ApiError> {
    if operation == "reset_factors" {
        let user = state.users().get(&id).await?;
        state.store.delete_user_factors(&user.id).await?;
        state
            .log(admin.event(
                &state,
                "user.mfa.factor.reset_all",
                "Reset all factors for user",
                user_target(&user),
            ))
            .await;
        return Ok(Json(json!({})));
    }
    // okta-sdk-nodejs's expirePasswordAndGetTemporaryPassword uses this newer path.
    let with_temp = operation == "expire_password_with_temp_password";
    let op = if with_temp { Some(Lifecycle::ExpirePassword) } else { Lifecycle::parse(&operation) }
        .ok_or_else(|| {
            ApiError::RouteNotFound(format!("/api/v1/users/{id}/lifecycle/{}", truncate(&operation)))
        })?;
    let options = LifecycleOptions {
        return_token: !params.flag("sendEmail", true)?,
        temp_password: with_temp || params.flag("tempPassword", false)?,
    };
    let outcome = state.users().lifecycle(&id, op, options).await?;
    let (kind, message) = match op {
        Lifecycle::Activate => ("user.lifecycle.activate", "Activate Okta user"),
        Lifecycle::Reactivate => ("user.lifecycle.reactivate", "Reactivate Okta user"),
        Lifecycle::Deactivate => ("user.lifecycle.deactivate", "Deactivate Okta user"),
        Lifecycle::Suspend => ("user.lifecycle.suspend", "Suspend Okta user"),
        Lifecycle::Unsuspend => ("user.lifecycle.unsuspend", "Unsuspend Okta user"),
        Lifecycle::Unlock => ("user.account.unlock", "Unlock user account"),
        Lifecycle::ExpirePassword => ("user.account.expire_password", "Expire user password"),
        Lifecycle::ResetPassword => ("user.account.reset_password", "Reset user password"),
    };
    state.log(admin.event(&state, kind, message, user_target(&outcome.user))).await;
    if !outcome.user.may_have_sessions() {
        end_sessions(&state, &admin, &outcome.user.id).await?;
    }
    let body = match (op, outcome.token, outcome.temp_password) {
        (Lifecycle::Activate | Lifecycle::Reactivate, Some(token), _) => json!({
            "activationUrl": state.link(&format!("/welcome/{}", token.expose())),
            "activationToken": token.expose(),
        }),
        (Lifecycle::ResetPassword, Some(token), _) => json!({
            "resetPasswordUrl": state.link(&format!("/reset_password/{}", token.expose())),
        }),
        (Lifecycle::ExpirePassword, _, Some(temp)) => json!({ "tempPassword": temp }),
        (Lifecycle::ExpirePassword, _, None) => shapes::user(&state, &outcome.user),
        _ => json!({}),
    };
    Ok(Json(body))
}

async fn delete(
    admin: Admin,
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    let user = state.users().get(&id).await?;
    state.users().delete(&user.id).await?;
    let (kind, message) = if user.status == UserStatus::Deprovisioned {
        ("user.lifecycle.delete.completed", "Delete Okta user")
    } else {
        ("user.lifecycle.deactivate", "Deactivate Okta user")
    };
    state.log(admin.event(&state, kind, message, user_target(&user))).await;
    if user.status != UserStatus::Deprovisioned {
        end_sessions(&state, &admin, &user.id).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn change_password(
    admin: Admin,
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
    params: QueryParams,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    check_fields(&body, &["oldPassword", "newPassword", "revokeSessions"])?;
    let secret = |name: &'static str| -> Result<String, ApiError> {
        let value = body.get(name).and_then(|v| v.get("value"));
        match value {
            Some(Value::String(s)) => Ok(s.clone()),
            None | Some(Value::Null) => {
                Err(CoreError::validation(name, "The field cannot be left blank").into())
            }
            Some(_) => Err(ApiError::MalformedBody(format!("{name}.value must be a string."))),
        }
    };
    let (old, new) = (secret("oldPassword")?, secret("newPassword")?);
    // Okta's request body carries `revokeSessions`; some clients send it as a query parameter.
    let revoke = match (body.get("revokeSessions"), params.get("revokeSessions")) {
        (Some(Value::Bool(value)), _) => *value,
        (Some(Value::Null) | None, Some(text)) => match text {
            "true" => true,
            "false" => false,
            _ => {
                return Err(ApiError::InvalidParameter {
                    name: "revokeSessions",
                    message: "must be true or false".into(),
                });
            }
        },
        (Some(Value::Null) | None, None) => false,
        (Some(_), _) => return Err(ApiError::MalformedBody("revokeSessions must be a boolean.".into())),
    };
    let user = state.users().change_password(&id, &old, &new).await?;
    if revoke {
        let reason = EndReason::UserSessionsRevoked;
        state
            .sessions()
            .end_all(&user.id, None, reason, Some(admin.actor.clone()), admin.ip.as_deref())
            .await?;
    }
    state
        .log(admin.event(&state, "user.account.update_password", "Update user password", user_target(&user)))
        .await;
    Ok(Json(shapes::credentials(&user)))
}

fn truncate(text: &str) -> String {
    text.chars().take(64).collect()
}

/// `groupIds` of a new user: a list of group ids (at most 100).
fn group_ids(body: &Map<String, Value>) -> Result<Vec<String>, ApiError> {
    match body.get("groupIds") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(ids)) if ids.len() <= 100 => {
            ids.iter()
                .map(|id| {
                    id.as_str().filter(|id| !id.is_empty() && id.len() <= 64).map(str::to_owned).ok_or_else(
                        || CoreError::validation("groupIds", "must be a list of group ids").into(),
                    )
                })
                .collect()
        }
        Some(_) => Err(CoreError::validation("groupIds", "must be a list of at most 100 group ids").into()),
    }
}

/// `type` is accepted only when it asks for nothing Latchkey lacks (the default user type).
fn check_unsupported(body: &Map<String, Value>) -> Result<(), ApiError> {
    match body.get("type").map(|t| t.get("id")) {
        None | Some(None) => {}
        Some(Some(Value::String(id))) if id == shapes::DEFAULT_USER_TYPE => {}
        Some(_) => {
            return Err(CoreError::validation("type", "Only the default user type is supported").into());
        }
    }
    Ok(())
}

/// Refuses top-level fields other than `allowed` (a typo must not be silently ignored).
fn check_fields(body: &Map<String, Value>, allowed: &[&str]) -> Result<(), ApiError> {
    match body.keys().find(|k| !allowed.contains(&k.as_str())) {
        None => Ok(()),
        Some(unknown) => {
            let name: String = unknown.chars().take(64).collect();
            Err(ApiError::MalformedBody(format!("Unknown property '{name}'.")))
        }
    }
}

fn object_field(body: &Map<String, Value>, name: &str) -> Result<Option<Map<String, Value>>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map.clone())),
        Some(_) => Err(ApiError::MalformedBody(format!("{name} must be an object."))),
    }
}

/// `credentials.password.value`, if given. Credentials Latchkey does not support (hash imports,
/// password hooks, recovery questions, other providers) are refused rather than dropped.
fn password_value(body: &Map<String, Value>) -> Result<Option<String>, ApiError> {
    let Some(credentials) = object_field(body, "credentials")? else { return Ok(None) };
    for (key, value) in &credentials {
        match key.as_str() {
            "password" | "emails" => {}
            "provider" => {
                let okta = |k: &str| value.get(k).and_then(Value::as_str).is_none_or(|v| v == "OKTA");
                if !value.is_object() || !okta("type") || !okta("name") {
                    return Err(CoreError::validation(
                        "credentials.provider",
                        "Only the OKTA provider is supported",
                    )
                    .into());
                }
            }
            "recovery_question" if !value.is_null() => {
                return Err(CoreError::validation(
                    "credentials.recovery_question",
                    "Recovery questions are not supported",
                )
                .into());
            }
            "recovery_question" => {}
            other => {
                return Err(ApiError::MalformedBody(format!(
                    "Unknown property 'credentials.{}'.",
                    truncate(other)
                )));
            }
        }
    }
    let Some(password) = object_field(&credentials, "password")? else { return Ok(None) };
    if let Some(key) = password.keys().find(|k| k.as_str() != "value") {
        let message = match key.as_str() {
            "hash" => "Importing password hashes is not supported",
            "hook" => "Password import hooks are not supported",
            _ => "Unknown property",
        };
        return Err(CoreError::validation(format!("credentials.password.{}", truncate(key)), message).into());
    }
    match password.get("value") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) => Ok(Some(value.clone())),
        Some(_) => Err(ApiError::MalformedBody("credentials.password.value must be a string.".into())),
    }
}
