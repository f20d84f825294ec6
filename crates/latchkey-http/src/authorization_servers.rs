//! `/api/v1/authorizationServers*` (Okta's Authorization Servers API) for the one custom server
//! Latchkey has, `default`: the server itself, and its custom scopes and claims. The system scopes
//! (OpenID Connect's and `groups`) are listed as Okta lists them, read-only.
//!
//! Validation of scopes and claims (names, expressions, group filters) lives in the core
//! (`oidc::custom`); this module maps JSON in and out and writes the system log.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use latchkey_core::CoreError;
use latchkey_core::events::Target;
use latchkey_core::ids::{IdKind, new_id, secret_digest};
use latchkey_core::oidc::custom::{ClaimType, CustomClaim, CustomScope, ValueType};
use latchkey_core::oidc::{DEFAULT_AUDIENCE, STANDARD_SCOPES, Server};
use latchkey_core::store::OAuthStore;
use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::extract::{Admin, JsonObject, PathParams};
use crate::state::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/authorizationServers", get(list))
        .route("/api/v1/authorizationServers/{id}", get(read))
        .route("/api/v1/authorizationServers/{id}/scopes", get(list_scopes).post(create_scope))
        .route(
            "/api/v1/authorizationServers/{id}/scopes/{scope_id}",
            get(read_scope).put(replace_scope).delete(delete_scope),
        )
        .route("/api/v1/authorizationServers/{id}/claims", get(list_claims).post(create_claim))
        .route(
            "/api/v1/authorizationServers/{id}/claims/{claim_id}",
            get(read_claim).put(replace_claim).delete(delete_claim),
        )
}

const DEFAULT_ID: &str = "default";

/// Only `default` exists (Okta's other custom servers are not offered).
fn check_server(id: &str) -> Result<(), ApiError> {
    if id == DEFAULT_ID {
        Ok(())
    } else {
        Err(CoreError::NotFound(format!("{id} (AuthorizationServer)")).into())
    }
}

fn server_base(state: &AppState) -> String {
    state.link(&format!("/api/v1/authorizationServers/{DEFAULT_ID}"))
}

async fn render_server(state: &AppState) -> Result<Value, ApiError> {
    let base = server_base(state);
    let issuer = Server::Default.issuer(&state.base());
    let keys = state.signing_keys().list().await?;
    let active = keys.iter().find(|k| k.status == latchkey_core::signing_keys::KeyStatus::Active);
    let created = keys.iter().map(|k| k.created).min().map(|t| t.to_iso());
    Ok(json!({
        "id": DEFAULT_ID,
        "name": DEFAULT_ID,
        "description": "Default Authorization Server for your Applications",
        "audiences": [DEFAULT_AUDIENCE],
        "issuer": issuer,
        "issuerMode": "ORG_URL",
        "status": "ACTIVE",
        "created": created,
        "lastUpdated": created,
        "credentials": {"signing": {
            "rotationMode": "MANUAL",
            "lastRotated": active.map(|k| k.created.to_iso()),
            "kid": active.map(|k| k.kid.clone()),
            "use": "sig",
        }},
        "_links": {
            "self": {"href": base},
            "scopes": {"href": format!("{base}/scopes"), "hints": {"allow": ["GET"]}},
            "claims": {"href": format!("{base}/claims"), "hints": {"allow": ["GET"]}},
            "metadata": [
                {"name": "openid-configuration", "href": format!("{issuer}/.well-known/openid-configuration"), "hints": {"allow": ["GET"]}},
                {"name": "oauth-authorization-server", "href": format!("{issuer}/.well-known/oauth-authorization-server"), "hints": {"allow": ["GET"]}},
            ],
        },
    }))
}

async fn list(_admin: Admin, State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!([render_server(&state).await?])))
}

async fn read(
    _admin: Admin,
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
) -> Result<Json<Value>, ApiError> {
    check_server(&id)?;
    Ok(Json(render_server(&state).await?))
}

/// A system scope's id: stable, derived from its name.
fn system_scope_id(name: &str) -> String {
    format!("scp{}", &secret_digest(&format!("system-scope/{name}"))[..17])
}

fn render_scope(state: &AppState, scope: &CustomScope) -> Value {
    json!({
        "id": scope.id,
        "name": scope.name,
        "displayName": scope.display_name,
        "description": scope.description,
        "system": false,
        "metadataPublish": scope.metadata_publish,
        "consent": "IMPLICIT",
        "default": scope.default,
        "created": scope.created.to_iso(),
        "lastUpdated": scope.last_updated.to_iso(),
        "_links": {"self": {"href": format!("{}/scopes/{}", server_base(state), scope.id)}},
    })
}

fn render_system_scope(state: &AppState, name: &str) -> Value {
    let id = system_scope_id(name);
    json!({
        "id": id,
        "name": name,
        "displayName": name,
        "description": Value::Null,
        "system": true,
        "metadataPublish": "ALL_CLIENTS",
        "consent": "IMPLICIT",
        "default": false,
        "_links": {"self": {"href": format!("{}/scopes/{id}", server_base(state))}},
    })
}

fn text(body: &Map<String, Value>, name: &str) -> Result<Option<String>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::MalformedBody(format!("{name} must be a string."))),
    }
}

fn flag(body: &Map<String, Value>, name: &str, default: bool) -> Result<bool, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ApiError::MalformedBody(format!("{name} must be a boolean."))),
    }
}

const SCOPE_FIELDS: [&str; 12] = [
    "id",
    "name",
    "displayName",
    "description",
    "system",
    "metadataPublish",
    "consent",
    "default",
    "optional",
    "created",
    "lastUpdated",
    "_links",
];

fn parse_scope(
    body: &Map<String, Value>,
    existing: Option<&CustomScope>,
    now: latchkey_core::Timestamp,
) -> Result<CustomScope, ApiError> {
    if let Some(unknown) = body.keys().find(|k| !SCOPE_FIELDS.contains(&k.as_str())) {
        return Err(ApiError::MalformedBody(format!(
            "Unknown field '{}' in the scope.",
            unknown.chars().take(60).collect::<String>()
        )));
    }
    if body.get("consent").and_then(Value::as_str).is_some_and(|c| c != "IMPLICIT") {
        return Err(CoreError::validation(
            "consent",
            "only IMPLICIT is supported (Latchkey shows no consent screen)",
        )
        .into());
    }
    let scope = CustomScope {
        id: existing.map_or_else(|| new_id(IdKind::OAuthScope), |e| e.id.clone()),
        name: text(body, "name")?.unwrap_or_default(),
        display_name: text(body, "displayName")?,
        description: text(body, "description")?,
        metadata_publish: text(body, "metadataPublish")?.unwrap_or_else(|| "NO_CLIENTS".to_owned()),
        default: flag(body, "default", false)?,
        created: existing.map_or(now, |e| e.created),
        last_updated: now,
    };
    scope.validate()?;
    Ok(scope)
}

async fn find_scope(state: &AppState, id: &str) -> Result<CustomScope, ApiError> {
    state
        .store
        .list_custom_scopes()
        .await?
        .into_iter()
        .find(|s| s.id == id)
        .ok_or_else(|| CoreError::NotFound(format!("{id} (OAuth2Scope)")).into())
}

/// A name clash (with a system scope or another custom one) in Okta's words.
fn name_taken(what: &str) -> ApiError {
    CoreError::validation("name", format!("A {what} with the same name already exists.")).into()
}

async fn save_scope(state: &AppState, scope: &CustomScope) -> Result<(), ApiError> {
    match state.store.put_custom_scope(scope).await {
        Ok(()) => Ok(()),
        Err(latchkey_core::StoreError::Conflict(_)) => Err(name_taken("scope")),
        Err(e) => Err(e.into()),
    }
}

fn scope_target(scope: &CustomScope) -> Target {
    Target::new(&scope.id, "OAuth2Scope", &scope.name)
}

async fn list_scopes(
    _admin: Admin,
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
) -> Result<Json<Value>, ApiError> {
    check_server(&id)?;
    let mut all: Vec<Value> = STANDARD_SCOPES.iter().map(|name| render_system_scope(&state, name)).collect();
    all.extend(state.store.list_custom_scopes().await?.iter().map(|s| render_scope(&state, s)));
    Ok(Json(Value::Array(all)))
}

async fn read_scope(
    _admin: Admin,
    State(state): State<AppState>,
    PathParams((id, scope_id)): PathParams<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    check_server(&id)?;
    if let Some(name) = STANDARD_SCOPES.iter().find(|name| system_scope_id(name) == scope_id) {
        return Ok(Json(render_system_scope(&state, name)));
    }
    Ok(Json(render_scope(&state, &find_scope(&state, &scope_id).await?)))
}

async fn create_scope(
    admin: Admin,
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    check_server(&id)?;
    let scope = parse_scope(&body, None, state.clock.now())?;
    save_scope(&state, &scope).await?;
    state
        .log(admin.event(&state, "oauth2.scope.created", "Create an OAuth 2.0 scope", scope_target(&scope)))
        .await;
    Ok((StatusCode::CREATED, Json(render_scope(&state, &scope))))
}

async fn replace_scope(
    admin: Admin,
    State(state): State<AppState>,
    PathParams((id, scope_id)): PathParams<(String, String)>,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    check_server(&id)?;
    let existing = find_scope(&state, &scope_id).await?;
    let scope = parse_scope(&body, Some(&existing), state.clock.now())?;
    save_scope(&state, &scope).await?;
    state
        .log(admin.event(&state, "oauth2.scope.updated", "Update an OAuth 2.0 scope", scope_target(&scope)))
        .await;
    Ok(Json(render_scope(&state, &scope)))
}

async fn delete_scope(
    admin: Admin,
    State(state): State<AppState>,
    PathParams((id, scope_id)): PathParams<(String, String)>,
) -> Result<StatusCode, ApiError> {
    check_server(&id)?;
    if STANDARD_SCOPES.iter().any(|name| system_scope_id(name) == scope_id) {
        return Err(CoreError::validation("system", "a system scope cannot be deleted").into());
    }
    let scope = find_scope(&state, &scope_id).await?;
    if state.store.delete_custom_scope(&scope.id).await? {
        state
            .log(admin.event(
                &state,
                "oauth2.scope.deleted",
                "Delete an OAuth 2.0 scope",
                scope_target(&scope),
            ))
            .await;
    }
    Ok(StatusCode::NO_CONTENT)
}

fn render_claim(state: &AppState, claim: &CustomClaim) -> Value {
    let mut body = json!({
        "id": claim.id,
        "name": claim.name,
        "status": if claim.active { "ACTIVE" } else { "INACTIVE" },
        "claimType": match claim.claim_type { ClaimType::Resource => "RESOURCE", ClaimType::Identity => "IDENTITY" },
        "valueType": match claim.value_type { ValueType::Expression => "EXPRESSION", ValueType::Groups => "GROUPS" },
        "value": claim.value,
        "alwaysIncludeInToken": claim.always_include_in_token,
        "conditions": {"scopes": claim.scopes},
        "system": false,
        "_links": {"self": {"href": format!("{}/claims/{}", server_base(state), claim.id)}},
    });
    if let (Some(filter), Some(object)) = (&claim.group_filter_type, body.as_object_mut()) {
        object.insert("group_filter_type".into(), json!(filter));
    }
    body
}

const CLAIM_FIELDS: [&str; 11] = [
    "id",
    "name",
    "status",
    "claimType",
    "valueType",
    "value",
    "alwaysIncludeInToken",
    "conditions",
    "system",
    "group_filter_type",
    "_links",
];

fn parse_claim(
    body: &Map<String, Value>,
    existing: Option<&CustomClaim>,
    now: latchkey_core::Timestamp,
) -> Result<CustomClaim, ApiError> {
    if let Some(unknown) = body.keys().find(|k| !CLAIM_FIELDS.contains(&k.as_str())) {
        return Err(ApiError::MalformedBody(format!(
            "Unknown field '{}' in the claim.",
            unknown.chars().take(60).collect::<String>()
        )));
    }
    let claim_type = match text(body, "claimType")?.as_deref() {
        Some("RESOURCE") => ClaimType::Resource,
        Some("IDENTITY") => ClaimType::Identity,
        _ => return Err(CoreError::validation("claimType", "must be RESOURCE or IDENTITY").into()),
    };
    let value_type = match text(body, "valueType")?.as_deref() {
        None | Some("EXPRESSION") => ValueType::Expression,
        Some("GROUPS") => ValueType::Groups,
        Some(_) => return Err(CoreError::validation("valueType", "must be EXPRESSION or GROUPS").into()),
    };
    let active = match text(body, "status")?.as_deref() {
        None | Some("ACTIVE") => true,
        Some("INACTIVE") => false,
        Some(_) => return Err(CoreError::validation("status", "must be ACTIVE or INACTIVE").into()),
    };
    let scopes = match body.get("conditions").and_then(|c| c.get("scopes")) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| ApiError::MalformedBody("conditions.scopes must be strings.".into()))?,
        Some(_) => return Err(ApiError::MalformedBody("conditions.scopes must be an array.".into())),
    };
    let claim = CustomClaim {
        id: existing.map_or_else(|| new_id(IdKind::OAuthClaim), |e| e.id.clone()),
        name: text(body, "name")?.unwrap_or_default(),
        claim_type,
        value_type,
        value: text(body, "value")?.unwrap_or_default(),
        group_filter_type: text(body, "group_filter_type")?,
        scopes,
        always_include_in_token: flag(body, "alwaysIncludeInToken", true)?,
        active,
        created: existing.map_or(now, |e| e.created),
        last_updated: now,
    };
    claim.validate()?;
    Ok(claim)
}

async fn find_claim(state: &AppState, id: &str) -> Result<CustomClaim, ApiError> {
    state
        .store
        .list_custom_claims()
        .await?
        .into_iter()
        .find(|c| c.id == id)
        .ok_or_else(|| CoreError::NotFound(format!("{id} (OAuth2Claim)")).into())
}

async fn save_claim(state: &AppState, claim: &CustomClaim) -> Result<(), ApiError> {
    match state.store.put_custom_claim(claim).await {
        Ok(()) => Ok(()),
        Err(latchkey_core::StoreError::Conflict(_)) => Err(name_taken("claim")),
        Err(e) => Err(e.into()),
    }
}

fn claim_target(claim: &CustomClaim) -> Target {
    Target::new(&claim.id, "OAuth2Claim", &claim.name)
}

async fn list_claims(
    _admin: Admin,
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
) -> Result<Json<Value>, ApiError> {
    check_server(&id)?;
    let claims = state.store.list_custom_claims().await?;
    Ok(Json(Value::Array(claims.iter().map(|c| render_claim(&state, c)).collect())))
}

async fn read_claim(
    _admin: Admin,
    State(state): State<AppState>,
    PathParams((id, claim_id)): PathParams<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    check_server(&id)?;
    Ok(Json(render_claim(&state, &find_claim(&state, &claim_id).await?)))
}

async fn create_claim(
    admin: Admin,
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    check_server(&id)?;
    let claim = parse_claim(&body, None, state.clock.now())?;
    save_claim(&state, &claim).await?;
    state
        .log(admin.event(&state, "oauth2.claim.created", "Create an OAuth 2.0 claim", claim_target(&claim)))
        .await;
    Ok((StatusCode::CREATED, Json(render_claim(&state, &claim))))
}

async fn replace_claim(
    admin: Admin,
    State(state): State<AppState>,
    PathParams((id, claim_id)): PathParams<(String, String)>,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    check_server(&id)?;
    let existing = find_claim(&state, &claim_id).await?;
    let claim = parse_claim(&body, Some(&existing), state.clock.now())?;
    save_claim(&state, &claim).await?;
    state
        .log(admin.event(&state, "oauth2.claim.updated", "Update an OAuth 2.0 claim", claim_target(&claim)))
        .await;
    Ok(Json(render_claim(&state, &claim)))
}

async fn delete_claim(
    admin: Admin,
    State(state): State<AppState>,
    PathParams((id, claim_id)): PathParams<(String, String)>,
) -> Result<StatusCode, ApiError> {
    check_server(&id)?;
    let claim = find_claim(&state, &claim_id).await?;
    if state.store.delete_custom_claim(&claim.id).await? {
        state
            .log(admin.event(
                &state,
                "oauth2.claim.deleted",
                "Delete an OAuth 2.0 claim",
                claim_target(&claim),
            ))
            .await;
    }
    Ok(StatusCode::NO_CONTENT)
}
