//! The browser's cookies: reading them, the `sid` session cookie (its attributes follow the public
//! URL the browser used), and the browser's session behind it.
//!
//! `sid` holds an opaque secret whose digest is stored; the public session id is a different value.
//! It is `HttpOnly; Path=/`, `Secure; SameSite=None` on https and on loopback hosts (browsers accept
//! Secure cookies there), so a trusted app on another site can still send it, and `SameSite=Lax`
//! otherwise; persistent only when the session is.

use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use latchkey_core::CoreError;
use latchkey_core::sessions::{BrowserSession, CookieChange, Session};
use latchkey_core::users::User;

use crate::state::AppState;

/// The session cookie's name (Okta's).
pub(crate) const SID: &str = "sid";

/// The value of the cookie `name` the browser sent, if any.
pub(crate) fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// Whether cookies carry `Secure` (on https, and on loopback hosts where browsers accept it).
pub(crate) fn cookies_secure(state: &AppState) -> bool {
    let url = state.base();
    let host = url.split("://").nth(1).unwrap_or_default();
    let loopback =
        host.starts_with("localhost") || host.starts_with("127.0.0.1") || host.starts_with("[::1]");
    url.starts_with("https://") || loopback
}

/// `Set-Cookie` for a session (`None`: clear the cookie).
pub(crate) fn session_cookie(
    state: &AppState,
    value: &str,
    session: Option<&Session>,
) -> Option<HeaderValue> {
    let mut cookie = format!("{SID}={value}; Path=/; HttpOnly");
    if cookies_secure(state) {
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
            let seconds = (until.millis() - state.clock.now().millis()).max(0) / 1000;
            cookie.push_str(&format!("; Max-Age={seconds}"));
        }
        Some(_) => {}
    }
    HeaderValue::from_str(&cookie).ok()
}

/// Adds `Set-Cookie` clearing the session cookie.
pub(crate) fn clear_session_cookie(state: &AppState, response: &mut Response) {
    if let Some(clear) = session_cookie(state, "", None) {
        response.headers_mut().append(SET_COOKIE, clear);
    }
}

/// Adds the cookie change the session-token rule decided for this browser.
pub(crate) fn apply(state: &AppState, response: &mut Response, browser: &BrowserSession) {
    let value = match (&browser.cookie, &browser.current) {
        (CookieChange::Set(secret), Some((session, _))) => {
            session_cookie(state, secret.expose(), Some(session))
        }
        (CookieChange::Clear, _) => session_cookie(state, "", None),
        _ => None,
    };
    if let Some(value) = value {
        response.headers_mut().append(SET_COOKIE, value);
    }
}

/// The live session of the browser that sent `headers`, its user and the cookie value, if its
/// `sid` cookie names one. One database read, plus a write at most once a minute.
pub(crate) async fn browser_session(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<(Session, User, String)>, CoreError> {
    let Some(cookie) = cookie_value(headers, SID) else { return Ok(None) };
    let found = state.sessions().for_cookie(Some(&cookie)).await?;
    Ok(found.map(|(session, user)| (session, user, cookie)))
}

/// The id of the live session the browser's `sid` cookie names, if any (no idle bookkeeping).
pub(crate) async fn browser_session_id(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<String>, CoreError> {
    let cookie = cookie_value(headers, SID);
    state.sessions().id_for_cookie(cookie.as_deref()).await
}
