//! `/api/v1/trustedOrigins*` (Okta's Trusted Origins API) and the CORS policy it drives.
//!
//! CORS applies only to the endpoints Okta makes callable cross-origin: `/api/v1/authn*`,
//! `/api/v1/sessions/me*`, `/api/v1/users/me*` and the OAuth endpoints single-page apps call
//! (discovery, `keys`, `token`, `userinfo`, `introspect`, `revoke`). A browser request to them
//! from an origin that is neither the IdP's own nor an active trusted origin with scope CORS is
//! refused outright (so a hostile page cannot even trigger a sign-in); allowed origins get
//! `Access-Control-Allow-Origin: <origin>` with credentials, never `*`.

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use latchkey_core::CoreError;
use latchkey_core::events::Target;
use latchkey_core::ids::{IdKind, new_id};
use latchkey_core::origins::{self, Scope, TrustedOrigin};
use latchkey_core::store::TrustedOriginStore;
use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::extract::{Admin, JsonObject, PathParams};
use crate::state::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/trustedOrigins", get(list).post(create))
        .route("/api/v1/trustedOrigins/{id}", get(read).put(replace).delete(remove))
        .route("/api/v1/trustedOrigins/{id}/lifecycle/{operation}", post(lifecycle))
}

/// Headers okta-auth-js and the sign-in widget send on cross-origin calls.
const ALLOWED_HEADERS: &str =
    "Accept, Content-Type, Authorization, X-Okta-User-Agent-Extended, X-Device-Fingerprint, X-Requested-With";
const EXPOSED_HEADERS: &str =
    "X-Okta-Request-Id, X-Rate-Limit-Limit, X-Rate-Limit-Remaining, X-Rate-Limit-Reset";

fn is_cors_path(path: &str) -> bool {
    path.starts_with("/api/v1/authn")
        || path.starts_with("/api/v1/sessions/me")
        || path.starts_with("/api/v1/users/me")
        || is_oauth_api_path(path)
}

/// The OAuth endpoints a single-page app calls with `fetch` (discovery, keys, token, userinfo,
/// introspect, revoke), not the ones a browser navigates to (`authorize` and `logout`, which take
/// form posts from any relying party).
fn is_oauth_api_path(path: &str) -> bool {
    let oauth = path.starts_with("/oauth2/") || path.starts_with("/.well-known/");
    oauth && !path.ends_with("/authorize") && !path.ends_with("/logout")
}

pub(crate) async fn cors(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !is_cors_path(req.uri().path()) {
        return next.run(req).await;
    }
    let Some(origin) = req.headers().get(ORIGIN).and_then(|v| v.to_str().ok()).map(str::to_owned) else {
        return next.run(req).await;
    };
    match crate::web::redirects::is_trusted(&state, &origin, Scope::Cors).await {
        Ok(true) => {}
        Ok(false) => return with_vary(ApiError::UntrustedOrigin.into_response()),
        Err(e) => return ApiError::from(e).into_response(),
    }
    let preflight =
        req.method() == Method::OPTIONS && req.headers().contains_key(ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = if preflight {
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, PUT, DELETE, OPTIONS"));
        h.insert(ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(ALLOWED_HEADERS));
        h.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        r
    } else {
        let mut r = next.run(req).await;
        r.headers_mut().insert(ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSED_HEADERS));
        r
    };
    if let Ok(value) = HeaderValue::from_str(&origin) {
        let h = response.headers_mut();
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, value);
        h.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    }
    with_vary(response)
}

fn with_vary(mut response: Response) -> Response {
    response.headers_mut().append(VARY, HeaderValue::from_static("Origin"));
    response
}

async fn find(state: &AppState, id: &str) -> Result<TrustedOrigin, ApiError> {
    state
        .store
        .list_trusted_origins()
        .await?
        .into_iter()
        .find(|o| o.id == id)
        .ok_or_else(|| CoreError::NotFound(format!("{id} (TrustedOrigin)")).into())
}

async fn list(_admin: Admin, State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let all = state.store.list_trusted_origins().await?;
    Ok(Json(Value::Array(all.iter().map(|o| render(&state, o)).collect())))
}

async fn read(
    _admin: Admin,
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(render(&state, &find(&state, &id).await?)))
}

/// `{name, origin, scopes: [{type}]}` → validated parts.
fn parse(body: &Map<String, Value>) -> Result<(String, String, Vec<Scope>), ApiError> {
    let text = |name: &str| match body.get(name) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(ApiError::MalformedBody(format!("{name} must be a string."))),
    };
    let name = text("name")?;
    let origin = text("origin")?;
    let scopes: Vec<String> = match body.get("scopes") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|s| s.get("type").and_then(Value::as_str).map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                ApiError::MalformedBody("scopes must be a list of {\"type\": ...} objects.".into())
            })?,
        Some(_) => return Err(ApiError::MalformedBody("scopes must be a list.".into())),
    };
    let (origin, scopes) = origins::validate(&name, &origin, &scopes)?;
    Ok((name.trim().to_owned(), origin, scopes))
}

async fn save(
    state: &AppState,
    admin: &Admin,
    origin: &TrustedOrigin,
    event_type: &str,
) -> Result<(), ApiError> {
    state.store.put_trusted_origin(origin).await.map_err(|e| -> ApiError {
        match e {
            latchkey_core::StoreError::Conflict(_) => CoreError::validation(
                "origin",
                "An object with this field already exists in the current organization",
            )
            .into(),
            other => other.into(),
        }
    })?;
    let target = Target::new(&origin.id, "TrustedOrigin", &origin.origin);
    state.log(admin.event(state, event_type, "Trusted origin changed", target)).await;
    Ok(())
}

async fn create(
    admin: Admin,
    State(state): State<AppState>,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    let (name, origin, scopes) = parse(&body)?;
    let now = state.clock.now();
    let record = TrustedOrigin {
        id: new_id(IdKind::TrustedOrigin),
        name,
        origin,
        scopes,
        active: true,
        created: now,
        last_updated: now,
    };
    save(&state, &admin, &record, "security.trusted_origin.create").await?;
    Ok(Json(render(&state, &record)))
}

async fn replace(
    admin: Admin,
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    let mut record = find(&state, &id).await?;
    let (name, origin, scopes) = parse(&body)?;
    record.name = name;
    record.origin = origin;
    record.scopes = scopes;
    record.last_updated = state.clock.now();
    save(&state, &admin, &record, "security.trusted_origin.update").await?;
    Ok(Json(render(&state, &record)))
}

async fn remove(
    admin: Admin,
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    let record = find(&state, &id).await?;
    if state.store.delete_trusted_origin(&id).await? {
        let target = Target::new(&record.id, "TrustedOrigin", &record.origin);
        state
            .log(admin.event(&state, "security.trusted_origin.delete", "Trusted origin deleted", target))
            .await;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(CoreError::NotFound(format!("{id} (TrustedOrigin)")).into())
    }
}

async fn lifecycle(
    admin: Admin,
    State(state): State<AppState>,
    PathParams((id, operation)): PathParams<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let mut record = find(&state, &id).await?;
    record.active = match operation.as_str() {
        "activate" => true,
        "deactivate" => false,
        _ => {
            return Err(ApiError::RouteNotFound(format!(
                "/api/v1/trustedOrigins/{{id}}/lifecycle/{operation}"
            )));
        }
    };
    record.last_updated = state.clock.now();
    save(&state, &admin, &record, "security.trusted_origin.update").await?;
    Ok(Json(render(&state, &record)))
}

fn render(state: &AppState, origin: &TrustedOrigin) -> Value {
    let base = state.link(&format!("/api/v1/trustedOrigins/{}", origin.id));
    let mut links = json!({"self": {"href": base, "hints": {"allow": ["GET", "PUT", "DELETE"]}}});
    let (name, op) = if origin.active { ("deactivate", "deactivate") } else { ("activate", "activate") };
    links[name] = json!({"href": format!("{base}/lifecycle/{op}"), "hints": {"allow": ["POST"]}});
    json!({
        "id": origin.id,
        "name": origin.name,
        "origin": origin.origin,
        "scopes": origin.scopes.iter().map(|s| json!({"type": s.as_str()})).collect::<Vec<_>>(),
        "status": if origin.active { "ACTIVE" } else { "INACTIVE" },
        "created": origin.created.to_iso(),
        "lastUpdated": origin.last_updated.to_iso(),
        "_links": links,
    })
}
