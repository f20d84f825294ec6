//! CSRF protection for every form of the hosted pages: a synchronizer token bound to a
//! pre-session cookie.
//!
//! The browser holds `lk_csrf`, a random secret (HttpOnly, so scripts cannot read it); each form
//! carries `_csrf` = HMAC-SHA256(key derived from the master key, "csrf" ‖ that secret). A POST is
//! accepted only when the cookie is present and the form's token equals the one recomputed from it
//! (constant-time comparison). Another site can make the browser send the cookie but cannot read a
//! page to learn the token, nor forge one without the master key; every node computes the same
//! token, so no server state is needed. As defence in depth, a request whose `Origin` names
//! another origin, or whose `Sec-Fetch-Site` says it came from another site, is refused even with
//! a token.

use axum::http::header::{ORIGIN, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use latchkey_core::crypto::constant_time_eq;
use latchkey_core::ids::Secret;

use super::cookies::{cookie_value, cookies_secure};
use crate::state::AppState;

pub(crate) const COOKIE: &str = "lk_csrf";
const PURPOSE: &str = "csrf";

/// The form token for this browser, and the cookie to set when it had none.
pub(crate) struct Binding {
    pub(crate) token: String,
    new_cookie: Option<String>,
}

impl Binding {
    pub(crate) fn of(state: &AppState, headers: &HeaderMap) -> Self {
        match cookie_value(headers, COOKIE).filter(|v| (16..=128).contains(&v.len())) {
            Some(secret) => {
                Binding { token: state.master_key.mac(PURPOSE, secret.as_bytes()), new_cookie: None }
            }
            None => {
                let secret = Secret::generate().expose().to_owned();
                Binding { token: state.master_key.mac(PURPOSE, secret.as_bytes()), new_cookie: Some(secret) }
            }
        }
    }

    /// For pages without forms (error pages): no cookie is set for them.
    pub(crate) fn without_cookie(mut self) -> Self {
        self.new_cookie = None;
        self
    }

    /// Adds the `Set-Cookie` for a new binding. `SameSite=Lax`: sent on top-level navigations
    /// only, which is all a form post from our own pages needs; no `Max-Age`, so it lives as long as
    /// the browser session.
    pub(crate) fn set_cookie(&self, state: &AppState, response: &mut Response) {
        if let Some(secret) = &self.new_cookie {
            let secure = if cookies_secure(state) { "; Secure" } else { "" };
            let cookie = format!("{COOKIE}={secret}; Path=/; HttpOnly; SameSite=Lax{secure}");
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().append(SET_COOKIE, value);
            }
        }
    }
}

/// Is this POST from one of our own forms?
pub(crate) fn check(state: &AppState, headers: &HeaderMap, form_token: Option<&str>) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return false;
    }
    // `Origin: null` is what browsers send for a form on a page with `Referrer-Policy:
    // no-referrer` (ours): it names no site, so only the token (and Sec-Fetch-Site) decide.
    if let Some(origin) = headers.get(ORIGIN).filter(|o| o.as_bytes() != b"null") {
        let ours = latchkey_core::origins::normalise(&state.base());
        let theirs = origin.to_str().ok().and_then(latchkey_core::origins::normalise);
        if ours.is_none() || ours != theirs {
            return false;
        }
    }
    let Some(secret) = cookie_value(headers, COOKIE).filter(|v| (16..=128).contains(&v.len())) else {
        return false;
    };
    let Some(token) = form_token else { return false };
    let expected = state.master_key.mac(PURPOSE, secret.as_bytes());
    constant_time_eq(expected.as_bytes(), token.as_bytes())
}
