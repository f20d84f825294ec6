//! `/api/v1/policies*`: the organisation's default PASSWORD, MFA_ENROLL and OKTA_SIGN_ON policies
//! and their default rules, in Okta's shapes. Read and update only (these are system policies).
//! Updates are version-guarded and stored in the database, so they take effect at once on every node.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use latchkey_core::CoreError;
use latchkey_core::events::Target;
use latchkey_core::policy::{
    Enrollment, FactorPromptMode, MfaEnrollPolicy, PasswordPolicy, PolicyKind, PolicyRow, SignOnRule,
};
use latchkey_core::store::PolicyStore;
use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::extract::{Admin, JsonObject, PathParams, QueryParams};
use crate::state::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/policies", get(list))
        .route("/api/v1/policies/{id}", get(read).put(update))
        .route("/api/v1/policies/{id}/rules", get(list_rules))
        .route("/api/v1/policies/{id}/rules/{rule_id}", get(read_rule).put(update_rule))
}

async fn rows(state: &AppState) -> Result<Vec<PolicyRow>, ApiError> {
    Ok(state.store.policy_rows().await?)
}

async fn find(state: &AppState, id: &str) -> Result<PolicyRow, ApiError> {
    rows(state)
        .await?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| CoreError::NotFound(format!("{id} (Policy)")).into())
}

async fn list(
    _admin: Admin,
    State(state): State<AppState>,
    params: QueryParams,
) -> Result<Json<Value>, ApiError> {
    let Some(kind) = params.get("type") else {
        return Err(ApiError::InvalidParameter { name: "type", message: "is required".into() });
    };
    let kind = PolicyKind::parse(kind).ok_or_else(|| ApiError::InvalidParameter {
        name: "type",
        message: "must be PASSWORD, MFA_ENROLL or OKTA_SIGN_ON".into(),
    })?;
    let found: Vec<Value> =
        rows(&state).await?.iter().filter(|r| r.kind == kind).map(|r| policy_json(&state, r)).collect();
    Ok(Json(Value::Array(found)))
}

async fn read(
    _admin: Admin,
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
) -> Result<Json<Value>, ApiError> {
    let row = find(&state, &id).await?;
    Ok(Json(policy_json(&state, &row)))
}

/// Accepts the policy object (as read back) and applies its `settings`; other fields of a system
/// policy (name, priority, conditions) are fixed and ignored.
async fn update(
    admin: Admin,
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    let row = find(&state, &id).await?;
    let settings = match row.kind {
        PolicyKind::Password => {
            let mut current: PasswordPolicy = parse_stored(&row)?;
            if let Some(password) = body.get("settings").and_then(|s| s.get("password")) {
                apply_password(&mut current, password)?;
            }
            serde_json::to_string(&current)
        }
        PolicyKind::MfaEnroll => {
            let mut current: MfaEnrollPolicy = parse_stored(&row)?;
            if let Some(factors) = body.get("settings").and_then(|s| s.get("factors")) {
                apply_factors(&mut current, factors)?;
            }
            serde_json::to_string(&current)
        }
        // The sign-on policy's behaviour lives in its rule.
        PolicyKind::SignOn => Ok(row.settings.clone()),
    }
    .map_err(|e| ApiError::MalformedBody(e.to_string()))?;
    save(&state, &row, &settings).await?;
    let target = Target::new(&row.id, "PolicyEntity", row.kind.as_str());
    state.log(admin.event(&state, "policy.lifecycle.update", "Update policy", target)).await;
    Ok(Json(policy_json(&state, &find(&state, &id).await?)))
}

async fn list_rules(
    _admin: Admin,
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
) -> Result<Json<Value>, ApiError> {
    let row = find(&state, &id).await?;
    Ok(Json(json!([rule_json(&state, &row)])))
}

async fn read_rule(
    _admin: Admin,
    State(state): State<AppState>,
    PathParams((id, rule_id)): PathParams<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let row = find(&state, &id).await?;
    if row.rule_id != rule_id {
        return Err(CoreError::NotFound(format!("{rule_id} (PolicyRule)")).into());
    }
    Ok(Json(rule_json(&state, &row)))
}

async fn update_rule(
    admin: Admin,
    State(state): State<AppState>,
    PathParams((id, rule_id)): PathParams<(String, String)>,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    let row = find(&state, &id).await?;
    if row.rule_id != rule_id {
        return Err(CoreError::NotFound(format!("{rule_id} (PolicyRule)")).into());
    }
    if row.kind != PolicyKind::SignOn {
        return Err(
            CoreError::validation("actions", "The default rule of this policy cannot be changed").into()
        );
    }
    let mut rule: SignOnRule = parse_stored(&row)?;
    if let Some(signon) = body.get("actions").and_then(|a| a.get("signon")) {
        apply_signon(&mut rule, signon)?;
    }
    let settings = serde_json::to_string(&rule).map_err(|e| ApiError::MalformedBody(e.to_string()))?;
    save(&state, &row, &settings).await?;
    let target = Target::new(&row.rule_id, "PolicyRule", "Default Rule");
    state.log(admin.event(&state, "policy.rule.update", "Update policy rule", target)).await;
    Ok(Json(rule_json(&state, &find(&state, &id).await?)))
}

async fn save(state: &AppState, row: &PolicyRow, settings: &str) -> Result<(), ApiError> {
    let now = state.clock.now();
    match state.store.update_policy(row.kind, settings, now, row.version).await {
        Ok(()) => Ok(()),
        // Someone else changed it since we read it: the caller should read and retry.
        Err(latchkey_core::StoreError::Stale) => Err(CoreError::validation(
            "settings",
            "The policy was changed by another request; read it again and retry",
        )
        .into()),
        Err(e) => Err(e.into()),
    }
}

fn parse_stored<T: serde::de::DeserializeOwned>(row: &PolicyRow) -> Result<T, ApiError> {
    serde_json::from_str(&row.settings)
        .map_err(|e| ApiError::Core(CoreError::Store(latchkey_core::StoreError::Corrupt(e.to_string()))))
}

/// Reads an optional integer in `range` at `object.key`.
fn int(
    object: &Value,
    key: &str,
    field: &str,
    range: std::ops::RangeInclusive<u32>,
) -> Result<Option<u32>, ApiError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            v.as_u64().and_then(|n| u32::try_from(n).ok()).filter(|n| range.contains(n)).map(Some).ok_or_else(
                || {
                    CoreError::validation(
                        format!("{field}.{key}"),
                        format!("must be an integer from {} to {}", range.start(), range.end()),
                    )
                    .into()
                },
            )
        }
    }
}

fn boolean(object: &Value, key: &str, field: &str) -> Result<Option<bool>, ApiError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(CoreError::validation(format!("{field}.{key}"), "must be true or false").into()),
    }
}

fn apply_password(policy: &mut PasswordPolicy, password: &Value) -> Result<(), ApiError> {
    if let Some(c) = password.get("complexity") {
        let field = "settings.password.complexity";
        let x = &mut policy.complexity;
        x.min_length = int(c, "minLength", field, 4..=256)?.unwrap_or(x.min_length);
        x.min_lower_case = int(c, "minLowerCase", field, 0..=64)?.unwrap_or(x.min_lower_case);
        x.min_upper_case = int(c, "minUpperCase", field, 0..=64)?.unwrap_or(x.min_upper_case);
        x.min_number = int(c, "minNumber", field, 0..=64)?.unwrap_or(x.min_number);
        x.min_symbol = int(c, "minSymbol", field, 0..=64)?.unwrap_or(x.min_symbol);
        x.exclude_username = boolean(c, "excludeUsername", field)?.unwrap_or(x.exclude_username);
        if let Some(attributes) = c.get("excludeAttributes").filter(|v| !v.is_null()) {
            let list: Option<Vec<String>> = attributes.as_array().and_then(|a| {
                a.iter()
                    .map(|v| v.as_str().filter(|s| matches!(*s, "firstName" | "lastName")).map(str::to_owned))
                    .collect()
            });
            x.exclude_attributes = list.ok_or_else(|| {
                ApiError::from(CoreError::validation(
                    "settings.password.complexity.excludeAttributes",
                    "may contain only firstName and lastName",
                ))
            })?;
        }
    }
    if let Some(a) = password.get("age") {
        let field = "settings.password.age";
        let x = &mut policy.age;
        x.max_age_days = int(a, "maxAgeDays", field, 0..=999)?.unwrap_or(x.max_age_days);
        x.expire_warn_days = int(a, "expireWarnDays", field, 0..=999)?.unwrap_or(x.expire_warn_days);
        x.min_age_minutes = int(a, "minAgeMinutes", field, 0..=9999)?.unwrap_or(x.min_age_minutes);
        x.history_count = int(a, "historyCount", field, 0..=24)?.unwrap_or(x.history_count);
    }
    if let Some(l) = password.get("lockout") {
        let field = "settings.password.lockout";
        let x = &mut policy.lockout;
        x.max_attempts = int(l, "maxAttempts", field, 0..=100)?.unwrap_or(x.max_attempts);
        x.auto_unlock_minutes =
            int(l, "autoUnlockMinutes", field, 0..=99_999)?.unwrap_or(x.auto_unlock_minutes);
        x.show_lockout_failures =
            boolean(l, "showLockoutFailures", field)?.unwrap_or(x.show_lockout_failures);
    }
    Ok(())
}

fn apply_factors(policy: &mut MfaEnrollPolicy, factors: &Value) -> Result<(), ApiError> {
    for (key, slot) in [("okta_otp", &mut policy.okta_otp), ("google_otp", &mut policy.google_otp)] {
        let Some(setting) = factors.get(key).and_then(|f| f.get("enroll")).and_then(|e| e.get("self")) else {
            continue;
        };
        *slot = serde_json::from_value::<Enrollment>(setting.clone()).map_err(|_| {
            ApiError::from(CoreError::validation(
                format!("settings.factors.{key}.enroll.self"),
                "must be REQUIRED, OPTIONAL or NOT_ALLOWED",
            ))
        })?;
    }
    Ok(())
}

fn apply_signon(rule: &mut SignOnRule, signon: &Value) -> Result<(), ApiError> {
    let field = "actions.signon";
    // Denying sign-in outright is not something the default rule can do here; say so.
    if signon.get("access").is_some_and(|a| a != "ALLOW") {
        return Err(CoreError::validation("actions.signon.access", "The default rule can only ALLOW").into());
    }
    rule.require_factor = boolean(signon, "requireFactor", field)?.unwrap_or(rule.require_factor);
    if let Some(mode) = signon.get("factorPromptMode").filter(|v| !v.is_null()) {
        rule.factor_prompt_mode = serde_json::from_value::<FactorPromptMode>(mode.clone()).map_err(|_| {
            ApiError::from(CoreError::validation(
                "actions.signon.factorPromptMode",
                "must be ALWAYS, DEVICE or SESSION",
            ))
        })?;
    }
    rule.remember_device_by_default =
        boolean(signon, "rememberDeviceByDefault", field)?.unwrap_or(rule.remember_device_by_default);
    rule.factor_lifetime_minutes =
        int(signon, "factorLifetime", field, 1..=525_600)?.unwrap_or(rule.factor_lifetime_minutes);
    if let Some(session) = signon.get("session") {
        let field = "actions.signon.session";
        rule.max_session_idle_minutes = int(session, "maxSessionIdleMinutes", field, 1..=129_600)?
            .unwrap_or(rule.max_session_idle_minutes);
        rule.max_session_lifetime_minutes = int(session, "maxSessionLifetimeMinutes", field, 0..=129_600)?
            .unwrap_or(rule.max_session_lifetime_minutes);
        rule.use_persistent_cookie =
            boolean(session, "usePersistentCookie", field)?.unwrap_or(rule.use_persistent_cookie);
    }
    Ok(())
}

fn links(state: &AppState, row: &PolicyRow) -> Value {
    let base = state.link(&format!("/api/v1/policies/{}", row.id));
    json!({
        "self": {"href": base, "hints": {"allow": ["GET", "PUT"]}},
        "rules": {"href": format!("{base}/rules"), "hints": {"allow": ["GET"]}},
    })
}

fn policy_json(state: &AppState, row: &PolicyRow) -> Value {
    let settings = match row.kind {
        PolicyKind::Password => {
            let p: PasswordPolicy = serde_json::from_str(&row.settings).unwrap_or_default();
            json!({
                "password": {
                    "complexity": {
                        "minLength": p.complexity.min_length,
                        "minLowerCase": p.complexity.min_lower_case,
                        "minUpperCase": p.complexity.min_upper_case,
                        "minNumber": p.complexity.min_number,
                        "minSymbol": p.complexity.min_symbol,
                        "excludeUsername": p.complexity.exclude_username,
                        "excludeAttributes": p.complexity.exclude_attributes,
                        "dictionary": {"common": {"exclude": false}},
                    },
                    "age": {
                        "maxAgeDays": p.age.max_age_days,
                        "expireWarnDays": p.age.expire_warn_days,
                        "minAgeMinutes": p.age.min_age_minutes,
                        "historyCount": p.age.history_count,
                    },
                    "lockout": {
                        "maxAttempts": p.lockout.max_attempts,
                        "autoUnlockMinutes": p.lockout.auto_unlock_minutes,
                        "showLockoutFailures": p.lockout.show_lockout_failures,
                        "userLockoutNotificationChannels": [],
                    },
                },
                "delegation": {"options": {"skipUnlock": false}},
            })
        }
        PolicyKind::MfaEnroll => {
            let m: MfaEnrollPolicy = serde_json::from_str(&row.settings).unwrap_or_default();
            let factor = |e: Enrollment| json!({"enroll": {"self": e}, "consent": {"type": "NONE"}});
            json!({"type": "FACTORS", "factors": {"okta_otp": factor(m.okta_otp), "google_otp": factor(m.google_otp)}})
        }
        PolicyKind::SignOn => Value::Null,
    };
    let mut policy = Map::new();
    policy.insert("id".into(), json!(row.id));
    policy.insert("status".into(), json!("ACTIVE"));
    policy.insert("name".into(), json!("Default Policy"));
    policy.insert(
        "description".into(),
        json!("The default policy applies in all situations if no other policy applies."),
    );
    policy.insert("priority".into(), json!(1));
    policy.insert("system".into(), json!(true));
    policy.insert("type".into(), json!(row.kind.as_str()));
    policy.insert("conditions".into(), Value::Null);
    policy.insert("created".into(), json!(row.created.to_iso()));
    policy.insert("lastUpdated".into(), json!(row.last_updated.to_iso()));
    if !settings.is_null() {
        policy.insert("settings".into(), settings);
    }
    policy.insert("_links".into(), links(state, row));
    Value::Object(policy)
}

fn rule_json(state: &AppState, row: &PolicyRow) -> Value {
    let actions = match row.kind {
        PolicyKind::Password => json!({
            "passwordChange": {"access": "ALLOW"},
            "selfServicePasswordReset": {"access": "DENY"},
            "selfServiceUnlock": {"access": "DENY"},
        }),
        PolicyKind::MfaEnroll => json!({"enroll": {"self": "LOGIN"}}),
        PolicyKind::SignOn => {
            let r: SignOnRule = serde_json::from_str(&row.settings).unwrap_or_default();
            json!({"signon": {
                "access": "ALLOW",
                "requireFactor": r.require_factor,
                "factorPromptMode": r.factor_prompt_mode,
                "rememberDeviceByDefault": r.remember_device_by_default,
                "factorLifetime": r.factor_lifetime_minutes,
                "primaryFactor": "PASSWORD_IDP_ANY_FACTOR",
                "session": {
                    "maxSessionIdleMinutes": r.max_session_idle_minutes,
                    "maxSessionLifetimeMinutes": r.max_session_lifetime_minutes,
                    "usePersistentCookie": r.use_persistent_cookie,
                },
            }})
        }
    };
    let rule_type = match row.kind {
        PolicyKind::Password => "PASSWORD",
        PolicyKind::MfaEnroll => "MFA_ENROLL",
        PolicyKind::SignOn => "SIGN_ON",
    };
    let href = state.link(&format!("/api/v1/policies/{}/rules/{}", row.id, row.rule_id));
    let allow = if row.kind == PolicyKind::SignOn { json!(["GET", "PUT"]) } else { json!(["GET"]) };
    json!({
        "id": row.rule_id,
        "status": "ACTIVE",
        "name": "Default Rule",
        "priority": 1,
        "system": true,
        "type": rule_type,
        "created": row.created.to_iso(),
        "lastUpdated": row.last_updated.to_iso(),
        "conditions": {"network": {"connection": "ANYWHERE"}, "authContext": {"authType": "ANY"}},
        "actions": actions,
        "_links": {"self": {"href": href, "hints": {"allow": allow}}},
    })
}
