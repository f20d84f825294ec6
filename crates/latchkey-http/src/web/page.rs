//! Pages: what every page a person reads carries. [`Ui`] renders a template with the visitor's
//! language, the CSRF token of its forms and the cookies the page sets; [`secure`] adds the
//! security headers (a strict Content-Security-Policy, no framing, no referrer, no caching); the
//! error page ([`error_page`]) shows a title, a helpful message and the request id to quote.
//!
//! Invariant: every page goes out through [`Ui::finish`] or [`secure`], so none lacks the headers.

use axum::http::header::{ACCEPT_LANGUAGE, CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use minijinja::{Value, context};
use serde::Serialize;

use super::{csrf, i18n};
use crate::state::AppState;

/// A serialisable value for a template.
pub(crate) fn ser<T: Serialize>(value: T) -> Value {
    Value::from(minijinja::value::Serde(value))
}

/// Adds the security headers every page carries. `form_action` adds origins the page's forms may
/// end up at (Chromium applies `form-action` to the redirects that follow a form post, so a
/// trusted `fromURI` on another origin must be listed).
pub(crate) fn secure(response: &mut Response, form_action: Option<&str>) {
    let extra = form_action.map(|o| format!(" {o}")).unwrap_or_default();
    let csp = format!(
        "default-src 'none'; img-src 'self' data:; style-src 'self'; form-action 'self'{extra}; \
         frame-ancestors 'none'; base-uri 'none'"
    );
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&csp) {
        headers.insert("content-security-policy", value);
    }
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// A `Location` value for `to`: bytes a header may not carry (non-ASCII, controls, spaces) are
/// percent-encoded (RFC 3986 §2.1), as a browser would before sending the URL, so a target with
/// such characters still redirects instead of answering without a `Location`.
fn location(to: &str) -> Option<HeaderValue> {
    const UNSAFE: &percent_encoding::AsciiSet =
        &percent_encoding::CONTROLS.add(b' ').add(b'"').add(b'<').add(b'>').add(b'`');
    let encoded: String = percent_encoding::utf8_percent_encode(to, UNSAFE).collect();
    HeaderValue::from_str(&encoded).ok()
}

/// `303 See Other` (after a form post the browser must GET the target).
pub(crate) fn see_other(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Some(location) = location(to) {
        response.headers_mut().insert(LOCATION, location);
    }
    secure(&mut response, None);
    response
}

/// `302` to `to`, not cached (every browser redirect of the IdP).
pub(crate) fn redirect(to: &str) -> Response {
    let mut response = StatusCode::FOUND.into_response();
    if let Some(location) = location(to) {
        response.headers_mut().insert(LOCATION, location);
    }
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// What every page needs: the language and its strings, the CSRF token for its forms.
pub(crate) struct Ui {
    lang: String,
    pub(crate) messages: i18n::Messages,
    t: Value,
    pub(crate) csrf: csrf::Binding,
    /// An origin outside this IdP that the page's forms may redirect to (a trusted `fromURI`).
    pub(crate) form_action: Option<String>,
    cookies: Vec<HeaderValue>,
}

impl Ui {
    pub(crate) fn new(state: &AppState, headers: &HeaderMap) -> Self {
        let accept = headers.get(ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok());
        let (lang, messages, t) = state.pages.messages.pick(accept);
        Ui {
            lang: lang.to_owned(),
            messages: messages.clone(),
            t: t.clone(),
            csrf: csrf::Binding::of(state, headers),
            form_action: None,
            cookies: Vec::new(),
        }
    }

    /// The text of a message id (the id itself when missing, so a gap is visible, not blank).
    pub(crate) fn text(&self, id: &str) -> String {
        self.messages.get(id).cloned().unwrap_or_else(|| id.to_owned())
    }

    pub(crate) fn render(
        &self,
        state: &AppState,
        status: StatusCode,
        template: &str,
        page: Value,
    ) -> Response {
        let context = context! {
            lang => self.lang.clone(),
            t => self.t.clone(),
            csrf => self.csrf.token.clone(),
            ..page
        };
        let mut response = match state.pages.render(template, context) {
            Ok(html) => (status, html).into_response(),
            Err(e) => {
                tracing::error!(template, error = %e, "a page template failed to render");
                let body = "<!doctype html><title>Error</title><p>This page could not be shown.</p>";
                (StatusCode::INTERNAL_SERVER_ERROR, body).into_response()
            }
        };
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        self.finish(state, response)
    }

    /// Adds the security headers and the cookies this page sets.
    pub(crate) fn finish(&self, state: &AppState, mut response: Response) -> Response {
        secure(&mut response, self.form_action.as_deref());
        self.csrf.set_cookie(state, &mut response);
        for cookie in &self.cookies {
            response.headers_mut().append(SET_COOKIE, cookie.clone());
        }
        response
    }

    /// Sets a cookie with this page (the sign-in steps' transaction cookie, for one).
    pub(crate) fn add_cookie(&mut self, cookie: HeaderValue) {
        self.cookies.push(cookie);
    }
}

/// The kinds of browser error page, each with its own title and message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BrowserError {
    /// A form without a valid CSRF token, or posted from another site.
    Csrf,
    /// An expired or already used link (session token, SAML request that timed out).
    ExpiredLink,
    UnknownApp,
    NotAssigned,
    InvalidSamlRequest,
    /// An OAuth authorization request from an unknown client or for an unregistered redirect URI.
    InvalidOAuthRequest,
    /// An app that an administrator turned off.
    AppUnavailable,
    /// A logout message from an app that cannot be accepted.
    InvalidLogoutRequest,
    /// A redirect target that is missing or not trusted.
    BadRedirect,
    NotFound,
    Throttled,
    Unavailable,
    Generic,
}

impl BrowserError {
    /// Why the page was shown, for a log line when the caller has no more precise detail.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            BrowserError::Csrf => "missing or invalid CSRF token",
            BrowserError::ExpiredLink => "the link has expired or was already used",
            BrowserError::UnknownApp => "no active app matches the URL",
            BrowserError::NotAssigned => "the user is not assigned to the app",
            BrowserError::InvalidSamlRequest => "invalid SAML request",
            BrowserError::InvalidOAuthRequest => "invalid OAuth authorization request",
            BrowserError::AppUnavailable => "the app is inactive",
            BrowserError::InvalidLogoutRequest => "invalid logout message",
            BrowserError::BadRedirect => "the redirect target is missing or not trusted",
            BrowserError::NotFound => "not found",
            BrowserError::Throttled => "throttled",
            BrowserError::Unavailable => "service unavailable",
            BrowserError::Generic => "error",
        }
    }

    fn ids(self) -> (&'static str, &'static str) {
        match self {
            BrowserError::Csrf => ("error.csrf.title", "error.csrf.message"),
            BrowserError::ExpiredLink => ("error.expired_link.title", "error.expired_link.message"),
            BrowserError::UnknownApp => ("error.unknown_app.title", "error.unknown_app.message"),
            BrowserError::NotAssigned => ("error.not_assigned.title", "error.not_assigned.message"),
            // The same words: an app sent a sign-in request that cannot be accepted.
            BrowserError::InvalidSamlRequest | BrowserError::InvalidOAuthRequest => {
                ("error.invalid_saml.title", "error.invalid_saml.message")
            }
            BrowserError::AppUnavailable => ("error.app_unavailable.title", "error.app_unavailable.message"),
            BrowserError::InvalidLogoutRequest => {
                ("error.invalid_logout.title", "error.invalid_logout.message")
            }
            BrowserError::BadRedirect => ("error.bad_redirect.title", "error.bad_redirect.message"),
            BrowserError::NotFound => ("error.not_found.title", "error.not_found.message"),
            BrowserError::Throttled => ("error.title", "signin.throttled"),
            BrowserError::Unavailable => ("error.unavailable.title", "error.unavailable.message"),
            BrowserError::Generic => ("error.title", "error.unavailable.message"),
        }
    }
}

/// A templated error page for a browser endpoint: a title, a helpful message, the request id and
/// a way back to the sign-in page.
pub(crate) fn error_page(
    state: &AppState,
    headers: &HeaderMap,
    kind: BrowserError,
    status: StatusCode,
) -> Response {
    error_page_with_detail(state, headers, kind, status, None)
}

/// [`error_page`] with a technical detail for the user to pass on (why a SAML request was
/// refused); the detail never carries request data.
pub(crate) fn error_page_with_detail(
    state: &AppState,
    headers: &HeaderMap,
    kind: BrowserError,
    status: StatusCode,
    detail: Option<&str>,
) -> Response {
    let mut ui = Ui::new(state, headers);
    ui.csrf = ui.csrf.without_cookie();
    let (title, message) = kind.ids();
    message_page(state, &ui, status, title, message, true, detail)
}

pub(crate) fn message_page(
    state: &AppState,
    ui: &Ui,
    status: StatusCode,
    title: &str,
    message: &str,
    with_request_id: bool,
    detail: Option<&str>,
) -> Response {
    let request_id = with_request_id.then(crate::request_id::current);
    // A page's heading is its `….heading` message when there is one, else its title.
    let heading_id = title.replace(".title", ".heading");
    let heading = ui.messages.get(&heading_id).cloned().unwrap_or_else(|| ui.text(title));
    let page = context! {
        title => ui.text(title),
        heading,
        message => ui.text(message),
        detail,
        request_id,
        back_href => "/login/login.htm",
        back_label => ui.text(if status == StatusCode::FORBIDDEN && title == "locked.title" {
            "locked.back"
        } else {
            "error.home"
        }),
    };
    ui.render(state, status, "message.html", page)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code: a failed step fails the test")]

    use axum::http::header::LOCATION;

    #[test]
    fn a_location_with_non_ascii_or_spaces_is_percent_encoded_and_encoded_bytes_stay() {
        let response = super::redirect("https://sp.example.com/ü ber?q=a%20b&r=\u{7}");
        assert_eq!(response.headers()[LOCATION], "https://sp.example.com/%C3%BC%20ber?q=a%20b&r=%07");
        let response = super::see_other("/app/UserHome?fromURI=%2Fx");
        assert_eq!(response.headers()[LOCATION], "/app/UserHome?fromURI=%2Fx");
    }
}
