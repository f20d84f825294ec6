//! `/api/v1/sessions*` (Okta's Sessions API) and `DELETE /api/v1/users/{id}/sessions`.
//!
//! Admin calls (SSWS) address sessions by their public id; `/api/v1/sessions/me*` authenticates
//! only by the browser's `sid` cookie (`web::cookies`), so from a backend it answers Okta's
//! `404 E0000007 "Not found: Resource not found: me (Session)"`.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use latchkey_core::CoreError;
use latchkey_core::sessions::{EndReason, Session};
use latchkey_core::users::User;
use serde::Serialize;
use serde_json::Value;

use crate::error::ApiError;
use crate::extract::{Admin, ClientIp, JsonObject, PathParams};
use crate::state::AppState;
use crate::web;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/sessions", post(create))
        .route("/api/v1/sessions/me", get(me).delete(close_me))
        .route("/api/v1/sessions/me/lifecycle/refresh", post(refresh_me))
        .route("/api/v1/sessions/{id}", get(read).delete(revoke))
        .route("/api/v1/sessions/{id}/lifecycle/refresh", post(refresh))
        .route("/api/v1/users/{id}/sessions", axum::routing::delete(revoke_user_sessions))
}

fn me_not_found() -> ApiError {
    ApiError::Core(CoreError::NotFound("me (Session)".to_owned()))
}

/// Okta's Session object, serialized straight from borrowed fields (a session check is a hot path:
/// building a `serde_json::Value` tree first cost a tenth of its CPU).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SessionBody<'a> {
    id: &'a str,
    user_id: &'a str,
    login: &'a str,
    created_at: String,
    expires_at: String,
    status: &'static str,
    last_password_verification: Option<String>,
    last_factor_verification: Option<String>,
    amr: &'a [String],
    idp: Idp<'a>,
    mfa_active: bool,
    #[serde(rename = "_links")]
    links: SessionLinks,
}

#[derive(Serialize)]
struct Idp<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct SessionLinks {
    #[serde(rename = "self")]
    own: Link,
    refresh: Link,
    user: Link,
}

#[derive(Serialize)]
struct Link {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    href: String,
    hints: Hints,
}

#[derive(Serialize)]
struct Hints {
    allow: &'static [&'static str],
}

/// Okta's Session object. `/me` responses link through `/api/v1/sessions/me` and `/api/v1/users/me`.
pub(crate) fn render<'a>(
    state: &'a AppState,
    session: &'a Session,
    user: &'a User,
    me: bool,
) -> SessionBody<'a> {
    let (base, user_href) = if me {
        (state.link("/api/v1/sessions/me"), state.link("/api/v1/users/me"))
    } else {
        (
            state.link(&format!("/api/v1/sessions/{}", session.id)),
            state.link(&format!("/api/v1/users/{}", user.id)),
        )
    };
    let name = format!(
        "{} {}",
        user.profile.get("firstName").unwrap_or_default(),
        user.profile.get("lastName").unwrap_or_default()
    );
    SessionBody {
        id: &session.id,
        user_id: &user.id,
        login: user.login(),
        created_at: session.created.to_iso(),
        expires_at: session.ends_at().to_iso(),
        status: "ACTIVE",
        last_password_verification: session.password_verified_at.map(|t| t.to_iso()),
        last_factor_verification: session.factor_verified_at.map(|t| t.to_iso()),
        amr: &session.amr,
        idp: Idp { id: &state.config.org_id, kind: "OKTA" },
        mfa_active: session.amr.iter().any(|m| m == "mfa"),
        links: SessionLinks {
            refresh: Link {
                name: None,
                href: format!("{base}/lifecycle/refresh"),
                hints: Hints { allow: &["POST"] },
            },
            own: Link { name: None, href: base, hints: Hints { allow: &["GET", "DELETE"] } },
            user: Link {
                name: Some(name.trim().to_owned()),
                href: user_href,
                // Okta's: the signed-in user may read and update themselves through `users/me`.
                hints: Hints { allow: if me { &["GET", "POST"] } else { &["GET"] } },
            },
        },
    }
}

/// Renders a session looked up by id (its user read alongside).
async fn render_by_id(state: &AppState, session: &Session) -> Result<Response, ApiError> {
    let user = state.users().get(&session.user_id).await?;
    Ok(Json(render(state, session, &user, false)).into_response())
}

/// `Prefer: return=minimal` asks for 204 instead of the object (Okta, refresh operations).
fn wants_minimal(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case("return=minimal")))
}

fn minimal() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert("preference-applied", HeaderValue::from_static("return=minimal"));
    r
}

async fn create(
    admin: Admin,
    State(state): State<AppState>,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let token = match body.get("sessionToken") {
        Some(Value::String(t)) => t.clone(),
        None | Some(Value::Null) => {
            return Err(CoreError::validation("sessionToken", "The field cannot be left blank").into());
        }
        Some(_) => return Err(ApiError::MalformedBody("sessionToken must be a string.".into())),
    };
    let Some(started) = state.sessions().start_from_token(&token, false, admin.ip.as_deref()).await? else {
        return Err(CoreError::AuthenticationFailed.into());
    };
    render_by_id(&state, &started.session).await
}

async fn read(
    _admin: Admin,
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
) -> Result<Response, ApiError> {
    let session = state.sessions().by_id(&id).await?;
    render_by_id(&state, &session).await
}

async fn revoke(
    admin: Admin,
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    let sessions = state.sessions();
    let session = sessions.by_id(&id).await?;
    if sessions.end(&session, EndReason::AdminRevoke, Some(admin.actor), admin.ip.as_deref()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(CoreError::NotFound(format!("{id} (Session)")).into())
    }
}

async fn refresh(
    _admin: Admin,
    State(state): State<AppState>,
    headers: HeaderMap,
    PathParams(id): PathParams<String>,
) -> Result<Response, ApiError> {
    let session = state.sessions().refresh(&id).await?;
    if wants_minimal(&headers) {
        return Ok(minimal());
    }
    render_by_id(&state, &session).await
}

async fn revoke_user_sessions(
    admin: Admin,
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    let user = state.users().get(&id).await?;
    let reason = EndReason::UserSessionsRevoked;
    state.sessions().end_all(&user.id, None, reason, Some(admin.actor), admin.ip.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn me(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let (session, user, _) = web::browser_session(&state, &headers).await?.ok_or_else(me_not_found)?;
    Ok(Json(render(&state, &session, &user, true)).into_response())
}

async fn close_me(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (session, _, _) = web::browser_session(&state, &headers).await?.ok_or_else(me_not_found)?;
    state.sessions().end(&session, EndReason::Logout, None, ip.as_deref()).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    web::cookies::clear_session_cookie(&state, &mut response);
    Ok(response)
}

async fn refresh_me(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let (session, user, cookie) = web::browser_session(&state, &headers).await?.ok_or_else(me_not_found)?;
    let session = state.sessions().refresh(&session.id).await?;
    let mut response = if wants_minimal(&headers) {
        minimal()
    } else {
        Json(render(&state, &session, &user, true)).into_response()
    };
    if let Some(value) = web::cookies::session_cookie(&state, &cookie, Some(&session)) {
        response.headers_mut().append(SET_COOKIE, value);
    }
    Ok(response)
}
