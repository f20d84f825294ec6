//! Browser endpoints: `/login/sessionCookieRedirect` (a session token becomes the `sid` cookie,
//! under the session-token rule of DESIGN §4) and `/login/signout` (ends the session, clears the
//! cookie). Redirect targets must be the IdP itself or a trusted origin with scope REDIRECT, so
//! neither endpoint can be used as an open redirect. Failures a browser sees are templated pages
//! ([`crate::pages::error_response`]), not JSON.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use latchkey_core::origins::Scope;
use latchkey_core::sessions::RuleOutcome;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{ClientIp, QueryParams};
use crate::pages::{BrowserError, error_response};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/login/sessionCookieRedirect", get(cookie_redirect_get).post(cookie_redirect_post))
        .route("/login/signout", get(signout).post(crate::pages::sign_out))
}

/// Where the unauthenticated continue: the sign-in page, returning to `from` afterwards.
pub(crate) fn sign_in_url(state: &AppState, from: Option<&str>) -> String {
    match from {
        Some(from) => {
            let encoded: String = url::form_urlencoded::byte_serialize(from.as_bytes()).collect();
            state.link(&format!("/login/login.htm?fromURI={encoded}"))
        }
        None => state.link("/login/login.htm"),
    }
}

/// Is `url` an absolute URL on the IdP itself or on a trusted REDIRECT origin?
pub(crate) async fn is_allowed_redirect(state: &AppState, url: &str) -> Result<bool, ApiError> {
    if url.len() > 4096 || url.chars().any(|c| c.is_control() || c == '\\') {
        return Ok(false);
    }
    let Some(origin) = latchkey_core::origins::origin_of_url(url) else { return Ok(false) };
    crate::origins::is_trusted(state, &origin, Scope::Redirect).await
}

/// `302` to `to`, not cached (every browser redirect of the IdP).
pub(crate) fn redirect(to: &str) -> Response {
    let mut response = StatusCode::FOUND.into_response();
    if let Ok(location) = HeaderValue::from_str(to) {
        response.headers_mut().insert(LOCATION, location);
    }
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Adds the cookie changes the session-token rule decided.
pub(crate) fn apply_cookies(state: &AppState, response: &mut Response, outcome: &RuleOutcome) {
    let value = match (&outcome.new_cookie, &outcome.session) {
        (Some(cookie), Some(session)) => state.session_cookie(cookie.expose(), Some(session)),
        _ if outcome.clear_cookie => state.session_cookie("", None),
        _ => None,
    };
    if let Some(value) = value {
        response.headers_mut().append(SET_COOKIE, value);
    }
}

/// Runs the session-token rule for a browser request carrying `token`.
pub(crate) async fn token_rule(
    state: &AppState,
    headers: &HeaderMap,
    token: Option<&str>,
    ip: Option<&str>,
) -> Result<RuleOutcome, ApiError> {
    token_rule_with(state, headers, token, ip, state.config.session_token_precedence, false).await
}

/// [`token_rule`] with the precedence given (the hosted sign-in page always lets the token win)
/// and whether the user asked to stay signed in (honoured only if the sign-on rule allows it).
pub(crate) async fn token_rule_with(
    state: &AppState,
    headers: &HeaderMap,
    token: Option<&str>,
    ip: Option<&str>,
    precedence: latchkey_core::sessions::TokenPrecedence,
    persistent: bool,
) -> Result<RuleOutcome, ApiError> {
    let existing = state.browser_session(headers).await?.map(|(session, _, _)| session);
    let existing_user = existing.as_ref().map(|s| s.user_id.clone());
    let rule = state.policies().await?.sign_on;
    let outcome =
        state.sessions().apply_token_rule_persistent(existing, token, precedence, &rule, persistent).await?;
    if let (Some((id, reason)), Some(old)) = (&outcome.ended, &existing_user) {
        state.log_session_end(id, old, *reason, None, ip).await;
    }
    match (&outcome.new_cookie, &outcome.session) {
        (Some(_), Some(session)) => state.log_session_start(session, ip).await,
        _ if token.is_some() && outcome.clear_cookie => state.log_session_refused(ip).await,
        _ => {}
    }
    Ok(outcome)
}

async fn cookie_redirect_get(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    params: QueryParams,
) -> Response {
    cookie_redirect(&state, &headers, params.get("token"), params.get("redirectUrl"), ip.as_deref()).await
}

async fn cookie_redirect_post(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let get = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    cookie_redirect(&state, &headers, get("token"), get("redirectUrl"), ip.as_deref()).await
}

async fn cookie_redirect(
    state: &AppState,
    headers: &HeaderMap,
    token: Option<&str>,
    redirect_url: Option<&str>,
    ip: Option<&str>,
) -> Response {
    let bad_redirect = || error_response(state, headers, BrowserError::BadRedirect, StatusCode::BAD_REQUEST);
    let Some(target) = redirect_url.filter(|u| !u.is_empty()) else { return bad_redirect() };
    match is_allowed_redirect(state, target).await {
        Ok(true) => {}
        Ok(false) => return bad_redirect(),
        Err(e) => return e.into_page(state, headers),
    }
    // The token is what this endpoint is for: a missing or empty one is an invalid token (under
    // `token` precedence it ends the browser's session rather than letting it through).
    let outcome = match token_rule(state, headers, Some(token.unwrap_or_default()), ip).await {
        Ok(outcome) => outcome,
        Err(e) => return e.into_page(state, headers),
    };
    let to = if outcome.session.is_some() { target.to_owned() } else { sign_in_url(state, Some(target)) };
    let mut response = redirect(&to);
    apply_cookies(state, &mut response, &outcome);
    response
}

async fn signout(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    params: QueryParams,
) -> Response {
    let ended = match state.browser_session(&headers).await {
        Ok(Some((session, _, _))) => {
            let reason = latchkey_core::sessions::EndReason::Logout;
            match state.sessions().end(&session.id, reason).await {
                Ok(true) => {
                    state.log_session_end(&session.id, &session.user_id, reason, None, ip.as_deref()).await
                }
                Ok(false) => {}
                Err(e) => return ApiError::from(e).into_page(&state, &headers),
            }
            Some(session.id)
        }
        Ok(None) => None,
        Err(e) => return e.into_page(&state, &headers),
    };
    // As after sign-in: a local path, or a URL on a trusted REDIRECT origin; else the sign-in page.
    let to = match crate::pages::checked_from_uri(&state, params.get("fromURI")).await {
        Ok(Some(path)) if crate::pages::is_local_path(&path) => state.link(&path),
        Ok(Some(url)) => url,
        Ok(None) => sign_in_url(&state, None),
        Err(e) => return e.into_page(&state, &headers),
    };
    // Apps of the ended session that take part in Single Logout are told first (front-channel).
    let walk = match ended {
        Some(id) => crate::saml::start_signout_walk(&state, &id, &to).await,
        None => Ok(None),
    };
    let mut response = match walk {
        Ok(Some(walk)) => walk,
        Ok(None) => redirect(&to),
        Err(e) => return e.into_page(&state, &headers),
    };
    if let Some(clear) = state.session_cookie("", None) {
        response.headers_mut().append(SET_COOKIE, clear);
    }
    response
}
