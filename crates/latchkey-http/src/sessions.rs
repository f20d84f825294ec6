//! `/api/v1/sessions*` (Okta's Sessions API) and the `sid` cookie.
//!
//! Admin calls (SSWS) address sessions by their public id; `/api/v1/sessions/me*` authenticates
//! only by the browser's `sid` cookie, so from a backend it answers Okta's
//! `404 E0000007 "Not found: Resource not found: me (Session)"` (reference §2.2). The cookie holds
//! an opaque secret whose digest is stored; the public id is a different value.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use latchkey_core::CoreError;
use latchkey_core::policy::Policies;
use latchkey_core::sessions::{ByCookie, EndReason, Session, Sessions};
use latchkey_core::users::User;
use serde::Serialize;
use serde_json::Value;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Admin, JsonObject, PathParams};

pub(crate) const COOKIE: &str = "sid";

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/sessions", post(create))
        .route("/api/v1/sessions/me", get(me).delete(close_me))
        .route("/api/v1/sessions/me/lifecycle/refresh", post(refresh_me))
        .route("/api/v1/sessions/{id}", get(read).delete(revoke))
        .route("/api/v1/sessions/{id}/lifecycle/refresh", post(refresh))
        .route("/api/v1/users/{id}/sessions", axum::routing::delete(revoke_user_sessions))
        .route("/api/v1/users/me", get(current_user))
}

impl AppState {
    pub(crate) fn sessions(&self) -> Sessions<'_, latchkey_store::Store> {
        Sessions { store: &self.store, clock: self.clock.as_ref() }
    }

    pub(crate) async fn policies(&self) -> Result<Policies, ApiError> {
        Ok(latchkey_core::store::PolicyStore::policies(&self.store).await?)
    }

    /// The live session of the browser that sent `headers`, its user and the cookie value, if
    /// its `sid` cookie names one. One database read, plus a write at most once a minute.
    pub(crate) async fn browser_session(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<(Session, User, String)>, ApiError> {
        let Some(cookie) = crate::authn::cookie_value(headers, COOKIE) else { return Ok(None) };
        let sessions = self.sessions();
        let Some((mut session, user)) = self.live_by_cookie(&cookie).await? else { return Ok(None) };
        if sessions.needs_touch(&session) {
            let rule = self.policies().await?.sign_on;
            sessions.touch(&mut session, &rule).await?;
        }
        Ok(Some((session, user, cookie)))
    }

    /// The id of the live session the browser's `sid` cookie names, if any (no idle bookkeeping).
    pub(crate) async fn browser_session_id(&self, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
        let Some(cookie) = crate::authn::cookie_value(headers, COOKIE) else { return Ok(None) };
        Ok(self.live_by_cookie(&cookie).await?.map(|(session, _)| session.id))
    }

    /// The live session behind a cookie value; a session this lookup ended (its user may no longer
    /// have sessions) goes to the system log.
    async fn live_by_cookie(&self, cookie: &str) -> Result<Option<(Session, User)>, ApiError> {
        match self.sessions().by_cookie(cookie).await? {
            ByCookie::Live(session, user) => Ok(Some((session, user))),
            ByCookie::EndedNotActive(session, user) => {
                self.log_session_end(&session.id, &user.id, EndReason::UserNotActive, None, None).await;
                Ok(None)
            }
            ByCookie::None => Ok(None),
        }
    }

    /// Cookies are `Secure; SameSite=None` on https and on loopback hosts (browsers accept Secure
    /// cookies there), so a trusted app on another site can still send them.
    pub(crate) fn cookies_secure(&self) -> bool {
        let url = self.base();
        let host = url.split("://").nth(1).unwrap_or_default();
        let loopback =
            host.starts_with("localhost") || host.starts_with("127.0.0.1") || host.starts_with("[::1]");
        url.starts_with("https://") || loopback
    }

    /// `Set-Cookie` for a session: `HttpOnly; Path=/`, `Secure; SameSite=None` on https and on
    /// loopback hosts (browsers accept Secure there), `SameSite=Lax` otherwise; persistent only
    /// when the session is.
    pub(crate) fn session_cookie(&self, value: &str, session: Option<&Session>) -> Option<HeaderValue> {
        let mut cookie = format!("{COOKIE}={value}; Path=/; HttpOnly");
        let url = &self.base();
        let host = url.split("://").nth(1).unwrap_or_default();
        let loopback =
            host.starts_with("localhost") || host.starts_with("127.0.0.1") || host.starts_with("[::1]");
        if url.starts_with("https://") || loopback {
            cookie.push_str("; Secure; SameSite=None");
        } else {
            cookie.push_str("; SameSite=Lax");
        }
        match session {
            None => cookie.push_str("; Max-Age=0"),
            Some(s) if s.persistent => {
                // The absolute lifetime, not the idle expiry: activity slides the idle expiry on the
                // server, which the cookie cannot follow (the server still ends an idle session).
                let until = s.lifetime_ends_at.unwrap_or(s.expires_at);
                let seconds = (until.millis() - self.clock.now().millis()).max(0) / 1000;
                cookie.push_str(&format!("; Max-Age={seconds}"));
            }
            Some(_) => {}
        }
        HeaderValue::from_str(&cookie).ok()
    }
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
                hints: Hints { allow: &["GET"] },
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
    let rule = state.policies().await?.sign_on;
    let Some(started) = state.sessions().redeem(&token, &rule, false).await? else {
        state.log_session_refused(admin.ip.as_deref()).await;
        return Err(CoreError::AuthenticationFailed.into());
    };
    state.log_session_start(&started.session, admin.ip.as_deref()).await;
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
    let session = state.sessions().by_id(&id).await?;
    if state.sessions().end(&id, EndReason::AdminRevoke).await? {
        let reason = EndReason::AdminRevoke;
        state.log_session_end(&id, &session.user_id, reason, Some(admin.actor), admin.ip.as_deref()).await;
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
    let rule = state.policies().await?.sign_on;
    let session = state.sessions().refresh(&id, &rule).await?;
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
    revoke_all(&state, &user.id, Some(admin.actor), admin.ip.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn me(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let (session, user, _) = state.browser_session(&headers).await?.ok_or_else(me_not_found)?;
    Ok(Json(render(&state, &session, &user, true)).into_response())
}

async fn close_me(
    State(state): State<AppState>,
    crate::extract::ClientIp(ip): crate::extract::ClientIp,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (session, _, _) = state.browser_session(&headers).await?.ok_or_else(me_not_found)?;
    if state.sessions().end(&session.id, EndReason::Logout).await? {
        state.log_session_end(&session.id, &session.user_id, EndReason::Logout, None, ip.as_deref()).await;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Some(clear) = state.session_cookie("", None) {
        response.headers_mut().append(SET_COOKIE, clear);
    }
    Ok(response)
}

async fn refresh_me(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let (session, user, cookie) = state.browser_session(&headers).await?.ok_or_else(me_not_found)?;
    let rule = state.policies().await?.sign_on;
    let session = state.sessions().refresh(&session.id, &rule).await?;
    let mut response = if wants_minimal(&headers) {
        minimal()
    } else {
        Json(render(&state, &session, &user, true)).into_response()
    };
    if let Some(value) = state.session_cookie(&cookie, Some(&session)) {
        response.headers_mut().append(SET_COOKIE, value);
    }
    Ok(response)
}

/// `GET /api/v1/users/me` with the browser's session cookie (what okta-auth-js's
/// `session.get().user()` follows); without one, Okta's 404 for `me`.
async fn current_user(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let (_, user, _) = state
        .browser_session(&headers)
        .await?
        .ok_or_else(|| ApiError::Core(CoreError::NotFound("me (User)".to_owned())))?;
    Ok(Json(crate::users::render(&state, &user)))
}

/// Ends every session of a user (after a password change with `revokeSessions`, or on request)
/// and logs each end.
pub(crate) async fn revoke_all(
    state: &AppState,
    user_id: &str,
    actor: Option<latchkey_core::events::Actor>,
    ip: Option<&str>,
) -> Result<(), ApiError> {
    let reason = EndReason::UserSessionsRevoked;
    for session_id in state.sessions().end_all(user_id, None, reason).await? {
        state.log_session_end(&session_id, user_id, reason, actor.clone(), ip).await;
    }
    Ok(())
}
