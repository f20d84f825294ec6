//! The hosted pages: the sign-in page (`/login/login.htm`) with its MFA and password steps, the
//! end-user dashboard (`/app/UserHome`), the sessions page, the sign-out form, and the templated
//! error page of every browser endpoint.
//!
//! The pages work without JavaScript: each step is a form posted to the server, which runs the
//! same core state machine as `/api/v1/authn` (through the same functions, so the throttling,
//! lockout, failure floor and system log are the API's) and answers with the next page. On
//! SUCCESS the session token is redeemed under the session-token rule, as
//! `/login/sessionCookieRedirect` does, and the browser goes to `fromURI` only when it is a local
//! path or an absolute URL on this IdP or a trusted REDIRECT origin.
//!
//! Invariants: every POST is CSRF-checked ([`csrf`]) before anything else; every page carries a
//! strict Content-Security-Policy and the other security headers ([`secure`]); every value in a
//! page is escaped by the templates; the `stateToken` never appears in a page (see [`TX_COOKIE`]).

mod csrf;
pub mod demo;
mod i18n;
mod templates;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{ACCEPT_LANGUAGE, CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use latchkey_core::CoreError;
use latchkey_core::authn::AuthnStatus;
use latchkey_core::authn::machine::{AuthnOptions, AuthnView};
use latchkey_core::policy::{Enrollment, FactorPromptMode};
use latchkey_core::sessions::{EndReason, TokenPrecedence};
use minijinja::{Value, context};
use serde::Serialize;

use crate::AppState;
use crate::authn::{Caller, cookie_value};
use crate::error::ApiError;
use crate::extract::{ClientIp, QueryParams};

pub use templates::Pages;

/// A serialisable value for a template.
fn ser<T: Serialize>(value: T) -> Value {
    Value::from(minijinja::value::Serde(value))
}

/// Where signed-in users land when `fromURI` is absent or refused.
pub(crate) const HOME: &str = "/app/UserHome";
const SESSIONS_PAGE: &str = "/app/UserHome/sessions";

/// The authn transaction's `stateToken` between steps. A short-lived HttpOnly cookie rather than a
/// hidden form field: the token is a bearer credential for a half-authenticated user (Okta: "never
/// send it to users"), so it stays out of the HTML (page caches, screenshots, browser extensions
/// reading the DOM), is bound to this browser, and is scoped to `/login`. The cost is one
/// transaction per browser at a time, which is what a sign-in page needs.
const TX_COOKIE: &str = "lk_tx";

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/login/login.htm", get(sign_in_page).post(sign_in_submit))
        .route("/login/mfa/verify", post(|s, i, c, h, b| step(Step::Verify, s, i, c, h, b)))
        .route("/login/mfa/enroll", post(|s, i, c, h, b| step(Step::Enroll, s, i, c, h, b)))
        .route("/login/mfa/activate", post(|s, i, c, h, b| step(Step::Activate, s, i, c, h, b)))
        .route("/login/previous", post(|s, i, c, h, b| step(Step::Previous, s, i, c, h, b)))
        .route("/login/skip", post(|s, i, c, h, b| step(Step::Skip, s, i, c, h, b)))
        .route("/login/password", post(|s, i, c, h, b| step(Step::ChangePassword, s, i, c, h, b)))
        .route("/login/cancel", post(|s, i, c, h, b| step(Step::Cancel, s, i, c, h, b)))
        .route("/login/static/latchkey.css", get(style))
        .route(APP_TILE_LOGO, get(app_tile_logo))
        .route(HOME, get(dashboard))
        .route(SESSIONS_PAGE, get(sessions_page))
        .route("/app/UserHome/sessions/end-others", post(end_other_sessions))
}

// ---------------------------------------------------------------------------------------------
// Responses

/// Adds the security headers every page carries. `form_action` adds origins the page's forms may
/// end up at (Chromium applies `form-action` to the redirects that follow a form post, so a
/// trusted `fromURI` on another origin must be listed).
fn secure(response: &mut Response, form_action: Option<&str>) {
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

/// `303 See Other` (after a form post the browser must GET the target).
fn see_other(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(location) = HeaderValue::from_str(to) {
        response.headers_mut().insert(LOCATION, location);
    }
    secure(&mut response, None);
    response
}

/// What every page needs: the language and its strings, the CSRF token for its forms.
struct Ui {
    lang: String,
    messages: i18n::Messages,
    t: Value,
    csrf: csrf::Binding,
    /// An origin outside this IdP that the page's forms may redirect to (a trusted `fromURI`).
    form_action: Option<String>,
    cookies: Vec<HeaderValue>,
}

impl Ui {
    fn new(state: &AppState, headers: &HeaderMap) -> Self {
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
    fn text(&self, id: &str) -> String {
        self.messages.get(id).cloned().unwrap_or_else(|| id.to_owned())
    }

    fn render(&self, state: &AppState, status: StatusCode, template: &str, page: Value) -> Response {
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
    fn finish(&self, state: &AppState, mut response: Response) -> Response {
        secure(&mut response, self.form_action.as_deref());
        self.csrf.set_cookie(state, &mut response);
        for cookie in &self.cookies {
            response.headers_mut().append(SET_COOKIE, cookie.clone());
        }
        response
    }

    fn set_tx(&mut self, state: &AppState, token: Option<&str>) {
        let secure = if state.cookies_secure() { "; Secure" } else { "" };
        let cookie = match token {
            Some(token) => format!(
                "{TX_COOKIE}={token}; Path=/login; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
                latchkey_core::authn::TRANSACTION_MAX_SECONDS
            ),
            None => format!("{TX_COOKIE}=; Path=/login; HttpOnly; SameSite=Lax; Max-Age=0{secure}"),
        };
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            self.cookies.push(value);
        }
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
            BrowserError::InvalidSamlRequest => ("error.invalid_saml.title", "error.invalid_saml.message"),
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
pub(crate) fn error_response(
    state: &AppState,
    headers: &HeaderMap,
    kind: BrowserError,
    status: StatusCode,
) -> Response {
    error_response_with_detail(state, headers, kind, status, None)
}

/// [`error_response`] with a technical detail for the user to pass on (why a SAML request was
/// refused); the detail never carries request data.
pub(crate) fn error_response_with_detail(
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

fn message_page(
    state: &AppState,
    ui: &Ui,
    status: StatusCode,
    title: &str,
    message: &str,
    with_request_id: bool,
    detail: Option<&str>,
) -> Response {
    let request_id = with_request_id.then(crate::middleware::current_request_id);
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

/// The logo every app link names (`logoUrl`): apps have no logos of their own yet.
pub(crate) const APP_TILE_LOGO: &str = "/login/static/app-tile.svg";

async fn app_tile_logo() -> Response {
    const SVG: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 64 64\" width=\"64\" height=\"64\">\
<rect width=\"64\" height=\"64\" rx=\"12\" fill=\"#1f4e79\"/><rect x=\"16\" y=\"16\" width=\"32\" height=\"32\" rx=\"4\" \
fill=\"none\" stroke=\"#fff\" stroke-width=\"4\"/></svg>";
    let mut response = SVG.into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("image/svg+xml"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400"));
    response
}

async fn style(State(state): State<AppState>) -> Response {
    let mut response = state.pages.style.clone().into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    response
}

// ---------------------------------------------------------------------------------------------
// Forms and fromURI

/// A posted `application/x-www-form-urlencoded` body (the body limit of the router applies).
struct Form(Vec<(String, String)>);

impl Form {
    fn parse(body: &[u8]) -> Self {
        Form(url::form_urlencoded::parse(body).into_owned().collect())
    }

    /// A field's value; values with a NUL (which nothing may store) read as absent.
    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.contains('\0'))
    }
}

/// A path on this IdP: one leading `/` (not `//` or `/\`, which browsers read as another host),
/// no scheme, no control characters or backslashes.
pub(crate) fn is_local_path(uri: &str) -> bool {
    uri.starts_with('/')
        && !uri.starts_with("//")
        && uri.len() <= 4096
        && !uri.chars().any(|c| c.is_control() || c == '\\')
}

/// `fromURI` if the browser may be sent there after sign-in: a local path, or an absolute URL on
/// this IdP or a trusted origin with scope REDIRECT. Anything else is dropped (never followed).
pub(crate) async fn checked_from_uri(
    state: &AppState,
    from: Option<&str>,
) -> Result<Option<String>, ApiError> {
    let Some(from) = from.map(str::trim).filter(|f| !f.is_empty()) else { return Ok(None) };
    if is_local_path(from) {
        return Ok(Some(from.to_owned()));
    }
    Ok(crate::browser::is_allowed_redirect(state, from).await?.then(|| from.to_owned()))
}

/// Where to go after sign-in, as an absolute URL.
fn target(state: &AppState, from: Option<&str>) -> String {
    match from {
        Some(path) if is_local_path(path) => state.link(path),
        Some(url) => url.to_owned(),
        None => state.link(HOME),
    }
}

/// What the sign-in steps carry from form to form (not secret; re-checked on use).
struct Carry {
    from_uri: Option<String>,
    remember: bool,
}

impl Carry {
    async fn of(state: &AppState, form: &Form) -> Result<Self, ApiError> {
        Ok(Carry {
            from_uri: checked_from_uri(state, form.get("fromURI")).await?,
            remember: form.get("remember") == Some("1"),
        })
    }

    fn context(&self) -> Value {
        context! { from_uri => self.from_uri.clone(), remember => self.remember }
    }

    /// The origin of an absolute `fromURI` (for the page's `form-action`).
    fn external_origin(&self) -> Option<String> {
        self.from_uri.as_deref().filter(|f| !is_local_path(f)).and_then(latchkey_core::origins::origin_of_url)
    }
}

// ---------------------------------------------------------------------------------------------
// Sign-in

async fn sign_in_page(State(state): State<AppState>, headers: HeaderMap, params: QueryParams) -> Response {
    let mut ui = Ui::new(&state, &headers);
    let from = match checked_from_uri(&state, params.get("fromURI")).await {
        Ok(from) => from,
        Err(e) => return e.into_page(&state, &headers),
    };
    // `prompt=login` (the SAML ForceAuthn re-prompt): the form even with a session; the new
    // session replaces the old one on success.
    let reprompt = params.get("prompt") == Some("login");
    if !reprompt {
        match state.browser_session(&headers).await {
            Ok(Some(_)) => return see_other(&target(&state, from.as_deref())),
            Ok(None) => {}
            Err(e) => return e.into_page(&state, &headers),
        }
    }
    let carry = Carry { from_uri: from, remember: false };
    ui.form_action = carry.external_origin();
    sign_in_form(&state, &ui, &carry, StatusCode::OK, "", None, reprompt).await
}

async fn sign_in_form(
    state: &AppState,
    ui: &Ui,
    carry: &Carry,
    status: StatusCode,
    username: &str,
    error: Option<&str>,
    reprompt: bool,
) -> Response {
    let allow_remember = match state.policies().await {
        Ok(policies) => policies.sign_on.use_persistent_cookie,
        Err(e) => return e.into_page(state, &HeaderMap::new()),
    };
    let page = context! {
        username,
        error => error.map(|id| ui.text(id)),
        allow_remember,
        reprompt,
        ..carry.context()
    };
    ui.render(state, status, "signin.html", page)
}

async fn sign_in_submit(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut ui = Ui::new(&state, &headers);
    let form = Form::parse(&body);
    if !csrf::check(&state, &headers, form.get("_csrf")) {
        return error_response(&state, &headers, BrowserError::Csrf, StatusCode::FORBIDDEN);
    }
    let carry = match Carry::of(&state, &form).await {
        Ok(carry) => carry,
        Err(e) => return e.into_page(&state, &headers),
    };
    ui.form_action = carry.external_origin();
    let username = form.get("username").unwrap_or_default().trim().to_owned();
    let password = form.get("password").unwrap_or_default();
    if username.is_empty() || password.is_empty() {
        return sign_in_form(
            &state,
            &ui,
            &carry,
            StatusCode::BAD_REQUEST,
            &username,
            Some("signin.missing"),
            false,
        )
        .await;
    }
    // As the Okta Sign-In Widget asks: warn before the password expires, one factor enrolled.
    let options = AuthnOptions { multi_optional_factor_enroll: false, warn_before_password_expired: true };
    let result = crate::authn::primary(&state, &username, password, options, None, &caller.context).await;
    let flow = Flow { state: &state, headers: &headers, ip: ip.as_deref(), caller: &caller, carry };
    match result {
        Err(CoreError::AuthenticationFailed) => {
            let status = StatusCode::UNAUTHORIZED;
            sign_in_form(&state, &ui, &flow.carry, status, &username, Some("signin.failed"), false).await
        }
        Err(CoreError::RateLimited { .. } | CoreError::Hashing) => {
            let status = StatusCode::TOO_MANY_REQUESTS;
            sign_in_form(&state, &ui, &flow.carry, status, &username, Some("signin.throttled"), false).await
        }
        other => flow.outcome(ui, other, None).await,
    }
}

/// One step of a sign-in in progress, and what it needs.
struct Flow<'a> {
    state: &'a AppState,
    headers: &'a HeaderMap,
    ip: Option<&'a str>,
    caller: &'a Caller,
    carry: Carry,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Verify,
    Enroll,
    Activate,
    Previous,
    Skip,
    ChangePassword,
    Cancel,
}

async fn step(
    which: Step,
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut ui = Ui::new(&state, &headers);
    let form = Form::parse(&body);
    if !csrf::check(&state, &headers, form.get("_csrf")) {
        return error_response(&state, &headers, BrowserError::Csrf, StatusCode::FORBIDDEN);
    }
    let carry = match Carry::of(&state, &form).await {
        Ok(carry) => carry,
        Err(e) => return e.into_page(&state, &headers),
    };
    ui.form_action = carry.external_origin();
    let flow = Flow { state: &state, headers: &headers, ip: ip.as_deref(), caller: &caller, carry };
    let Some(token) = cookie_value(&headers, TX_COOKIE).filter(|t| !t.is_empty()) else {
        return flow.expired(ui).await;
    };
    let authn = state.authn();
    let field = |name: &str| form.get(name).unwrap_or_default().trim().to_owned();
    let result = match which {
        Step::Verify => {
            let remember = form.get("rememberDevice") == Some("1");
            let code = field("passCode");
            if code.is_empty() {
                return flow.again(ui, &token, "mfa.invalid", Vec::new(), StatusCode::BAD_REQUEST).await;
            }
            authn.verify(&token, &field("factorId"), Some(&code), Some(remember), &caller.context).await
        }
        Step::Enroll => authn.enroll(&token, latchkey_core::authn::TOTP, &field("provider")).await,
        Step::Activate => {
            let code = field("passCode");
            if code.is_empty() {
                return flow.again(ui, &token, "mfa.invalid", Vec::new(), StatusCode::BAD_REQUEST).await;
            }
            authn.activate(&token, &field("factorId"), &code).await
        }
        Step::Previous => authn.previous(&token).await,
        Step::Skip => authn.skip(&token).await,
        Step::ChangePassword => {
            let old = form.get("oldPassword").unwrap_or_default();
            let new = form.get("newPassword").unwrap_or_default();
            if old.is_empty() || new.is_empty() {
                return flow.again(ui, &token, "password.missing", Vec::new(), StatusCode::BAD_REQUEST).await;
            }
            if form.get("confirmPassword") != Some(new) {
                return flow
                    .again(ui, &token, "password.mismatch", Vec::new(), StatusCode::BAD_REQUEST)
                    .await;
            }
            authn.change_password(&token, old, new).await
        }
        Step::Cancel => {
            // Ending an already ended transaction is fine: the user wanted to start over.
            match authn.cancel(&token).await {
                Ok(_) | Err(CoreError::InvalidStateToken) => {}
                Err(e) => return ApiError::from(e).into_page(&state, &headers),
            }
            ui.set_tx(&state, None);
            let to = crate::browser::sign_in_url(&state, flow.carry.from_uri.as_deref());
            return ui.finish(&state, see_other(&to));
        }
    };
    flow.outcome(ui, result, Some(&token)).await
}

impl Flow<'_> {
    /// Answers the state machine's result: the next step's page, the way out on SUCCESS, or the
    /// current step again with what went wrong.
    async fn outcome(
        &self,
        mut ui: Ui,
        result: Result<AuthnView, CoreError>,
        token: Option<&str>,
    ) -> Response {
        let state = self.state;
        let view = match result {
            Ok(view) => view,
            Err(CoreError::InvalidStateToken) => return self.expired(ui).await,
            Err(CoreError::UserLocked) => {
                ui.set_tx(state, None);
                return message_page(
                    state,
                    &ui,
                    StatusCode::FORBIDDEN,
                    "locked.title",
                    "mfa.locked",
                    false,
                    None,
                );
            }
            Err(e) => {
                let Some(token) = token else { return ApiError::from(e).into_page(state, self.headers) };
                let (message, causes, status) = match e {
                    CoreError::InvalidPasscode => ("mfa.invalid", Vec::new(), StatusCode::FORBIDDEN),
                    CoreError::RateLimited { .. } | CoreError::Hashing => {
                        ("signin.throttled", Vec::new(), StatusCode::TOO_MANY_REQUESTS)
                    }
                    CoreError::CredentialsUpdate { causes }
                        if causes.iter().any(|c| c.field == "oldPassword") =>
                    {
                        ("password.wrong_old", Vec::new(), StatusCode::FORBIDDEN)
                    }
                    CoreError::CredentialsUpdate { causes } | CoreError::PasswordRequirements { causes } => (
                        "password.rejected",
                        causes.into_iter().map(|c| c.message).collect(),
                        StatusCode::FORBIDDEN,
                    ),
                    CoreError::WrongState | CoreError::Validation { .. } | CoreError::NotFound(_) => {
                        ("signin.unavailable", Vec::new(), StatusCode::CONFLICT)
                    }
                    other => return ApiError::from(other).into_page(state, self.headers),
                };
                return self.again(ui, token, message, causes, status).await;
            }
        };
        match view.status {
            AuthnStatus::Success => self.signed_in(ui, &view).await,
            AuthnStatus::LockedOut => {
                ui.set_tx(state, None);
                message_page(state, &ui, StatusCode::FORBIDDEN, "locked.title", "locked.message", false, None)
            }
            _ => {
                ui.set_tx(state, view.state_token.as_deref());
                self.render_step(ui, &view, None, Vec::new(), StatusCode::OK)
            }
        }
    }

    /// The current step again, with an error message.
    async fn again(
        &self,
        ui: Ui,
        token: &str,
        message: &str,
        causes: Vec<String>,
        status: StatusCode,
    ) -> Response {
        match self.state.authn().current(token).await {
            Ok(view) => {
                let message = ui.text(message);
                self.render_step(ui, &view, Some(message), causes, status)
            }
            Err(CoreError::InvalidStateToken) => self.expired(ui).await,
            Err(e) => ApiError::from(e).into_page(self.state, self.headers),
        }
    }

    /// The transaction is gone (expired, cancelled, or never existed): the sign-in form again.
    async fn expired(&self, mut ui: Ui) -> Response {
        ui.set_tx(self.state, None);
        let status = StatusCode::UNAUTHORIZED;
        sign_in_form(self.state, &ui, &self.carry, status, "", Some("signin.expired"), false).await
    }

    fn render_step(
        &self,
        ui: Ui,
        view: &AuthnView,
        error: Option<String>,
        causes: Vec<String>,
        status: StatusCode,
    ) -> Response {
        let state = self.state;
        let carry = self.carry.context();
        match view.status {
            AuthnStatus::MfaRequired | AuthnStatus::MfaChallenge => {
                let factors: Vec<FactorOption> = view
                    .factors
                    .iter()
                    .chain(view.factor.iter())
                    .filter_map(|f| Some(FactorOption { id: f.id.clone()?, provider: f.provider.as_str() }))
                    .collect();
                let replayed = view.factor_result.as_deref() == Some("PASSCODE_REPLAYED");
                let error = error.or_else(|| replayed.then(|| ui.text("mfa.replayed")));
                let rule = &view.policies.sign_on;
                let page = context! {
                    factors => ser(factors),
                    factor_id => view.factor.as_ref().and_then(|f| f.id.clone()),
                    error,
                    allow_remember_device => rule.factor_prompt_mode == FactorPromptMode::Device,
                    remember_device_default => rule.remember_device_by_default,
                    ..carry
                };
                ui.render(state, status, "mfa_verify.html", page)
            }
            AuthnStatus::MfaEnroll => {
                let factors: Vec<EnrollOption> = view
                    .factors
                    .iter()
                    .filter(|f| f.status == "NOT_SETUP")
                    .map(|f| EnrollOption {
                        provider: f.provider.as_str(),
                        required: f.enrollment == Some(Enrollment::Required),
                    })
                    .collect();
                let page = context! { factors => ser(factors), can_skip => view.can_skip, error, ..carry };
                ui.render(state, status, "mfa_enroll.html", page)
            }
            AuthnStatus::MfaEnrollActivate => {
                let (Some(factor), Some(user)) = (&view.factor, &view.user) else {
                    return message_page(
                        state,
                        &ui,
                        StatusCode::CONFLICT,
                        "error.title",
                        "signin.expired",
                        true,
                        None,
                    );
                };
                let secret = view.activation.as_ref().map(|a| a.shared_secret.clone()).unwrap_or_default();
                let qr_url = match (&view.activation, &factor.id) {
                    (Some(a), Some(id)) => {
                        Some(format!("/api/v1/users/{}/factors/{id}/qr/{}", user.id, a.qr_token))
                    }
                    _ => None,
                };
                let grouped: Vec<String> =
                    secret.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
                let page = context! {
                    factor => ser(FactorOption {
                        id: factor.id.clone().unwrap_or_default(),
                        provider: factor.provider.as_str(),
                    }),
                    qr_url,
                    secret => secret.clone(),
                    secret_grouped => grouped.join(" "),
                    error,
                    ..carry
                };
                ui.render(state, status, "mfa_activate.html", page)
            }
            AuthnStatus::PasswordWarn | AuthnStatus::PasswordExpired => {
                let c = &view.policies.password.complexity;
                let mut rules = vec![PasswordRule { key: "password.rule_length", n: c.min_length }];
                for (key, n) in [
                    ("password.rule_lower", c.min_lower_case),
                    ("password.rule_upper", c.min_upper_case),
                    ("password.rule_number", c.min_number),
                    ("password.rule_symbol", c.min_symbol),
                ] {
                    if n > 0 {
                        rules.push(PasswordRule { key, n });
                    }
                }
                if c.exclude_username {
                    rules.push(PasswordRule { key: "password.rule_username", n: 0 });
                }
                let page = context! {
                    expired => view.status == AuthnStatus::PasswordExpired,
                    days => view.password_expire_days.unwrap_or(0),
                    rules => ser(rules),
                    error,
                    causes,
                    ..carry
                };
                ui.render(state, status, "password.html", page)
            }
            // Activation (PASSWORD_RESET) does not start from this page; SUCCESS and LOCKED_OUT
            // are handled before rendering.
            AuthnStatus::PasswordReset | AuthnStatus::Success | AuthnStatus::LockedOut => {
                message_page(state, &ui, StatusCode::CONFLICT, "error.title", "signin.expired", true, None)
            }
        }
    }

    /// SUCCESS: the session token becomes this browser's session and the browser moves on.
    async fn signed_in(&self, mut ui: Ui, view: &AuthnView) -> Response {
        let state = self.state;
        // The user has just proven who they are in this browser, so their session replaces
        // whatever session the browser had, whatever `session_token_precedence` says about
        // tokens arriving in links.
        let outcome = match crate::browser::token_rule_with(
            state,
            self.headers,
            view.session_token.as_deref(),
            self.ip,
            TokenPrecedence::Token,
            self.carry.remember,
        )
        .await
        {
            Ok(outcome) => outcome,
            Err(e) => return e.into_page(state, self.headers),
        };
        ui.set_tx(state, None);
        if outcome.session.is_none() {
            let mut response = self.expired(ui).await;
            crate::browser::apply_cookies(state, &mut response, &outcome);
            return response;
        }
        let mut response = ui.finish(state, see_other(&target(state, self.carry.from_uri.as_deref())));
        crate::browser::apply_cookies(state, &mut response, &outcome);
        self.caller.set_device_cookie(&mut response);
        response
    }
}

#[derive(Serialize)]
struct FactorOption {
    id: String,
    provider: &'static str,
}

#[derive(Serialize)]
struct EnrollOption {
    provider: &'static str,
    required: bool,
}

#[derive(Serialize)]
struct PasswordRule {
    key: &'static str,
    n: u32,
}

// ---------------------------------------------------------------------------------------------
// Dashboard, sessions, sign-out

/// An app on the dashboard (`GET /api/v1/users/{id}/appLinks` semantics).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AppTile {
    pub label: String,
    /// The app's embed link (`/home/{appName}/{appId}/{linkId}`).
    pub link_url: String,
    pub app_name: String,
}

/// The apps assigned to the user, in dashboard order.
async fn app_tiles(state: &AppState, user_id: &str) -> Result<Vec<AppTile>, ApiError> {
    let links = crate::apps::user_app_links(state, user_id).await?;
    Ok(links
        .iter()
        .filter(|link| link["hidden"] != serde_json::Value::Bool(true))
        .map(|link| AppTile {
            label: link["label"].as_str().unwrap_or_default().to_owned(),
            link_url: link["linkUrl"].as_str().unwrap_or_default().to_owned(),
            app_name: link["appName"].as_str().unwrap_or_default().to_owned(),
        })
        .collect())
}

fn user_context(user: &latchkey_core::users::User) -> Value {
    let name = format!(
        "{} {}",
        user.profile.get("firstName").unwrap_or_default(),
        user.profile.get("lastName").unwrap_or_default()
    );
    let name = name.trim();
    context! { name => if name.is_empty() { user.login() } else { name }, login => user.login() }
}

async fn dashboard(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let ui = Ui::new(&state, &headers);
    let (_, user, _) = match state.browser_session(&headers).await {
        Ok(Some(found)) => found,
        Ok(None) => return see_other(&crate::browser::sign_in_url(&state, Some(HOME))),
        Err(e) => return e.into_page(&state, &headers),
    };
    let tiles = match app_tiles(&state, &user.id).await {
        Ok(tiles) => tiles,
        Err(e) => return e.into_page(&state, &headers),
    };
    #[derive(Serialize)]
    struct Tile {
        label: String,
        link_url: String,
        app_name: String,
        initial: String,
    }
    let tiles: Vec<Tile> = tiles
        .into_iter()
        .map(|t| Tile {
            initial: t.label.chars().next().map(|c| c.to_uppercase().collect()).unwrap_or_default(),
            label: t.label,
            link_url: t.link_url,
            app_name: t.app_name,
        })
        .collect();
    let page = context! { user => user_context(&user), tiles => ser(tiles), active => "home" };
    ui.render(&state, StatusCode::OK, "dashboard.html", page)
}

/// `2026-01-02T03:04:05.000Z` → `2026-01-02 03:04 UTC`.
fn when(t: latchkey_core::Timestamp) -> String {
    let iso = t.to_iso();
    format!("{} UTC", iso.get(..16).unwrap_or(&iso).replace('T', " "))
}

async fn sessions_page(State(state): State<AppState>, headers: HeaderMap, params: QueryParams) -> Response {
    let ui = Ui::new(&state, &headers);
    let (current, user, _) = match state.browser_session(&headers).await {
        Ok(Some(found)) => found,
        Ok(None) => return see_other(&crate::browser::sign_in_url(&state, Some(SESSIONS_PAGE))),
        Err(e) => return e.into_page(&state, &headers),
    };
    let sessions = match state.sessions().list_for_user(&user.id).await {
        Ok(list) => list,
        Err(e) => return ApiError::from(e).into_page(&state, &headers),
    };
    #[derive(Serialize)]
    struct Row {
        id: String,
        current: bool,
        persistent: bool,
        created: String,
        created_text: String,
        last_activity: String,
        last_activity_text: String,
        ends_at: String,
        ends_at_text: String,
        amr: Vec<String>,
    }
    let mut rows: Vec<Row> = sessions
        .iter()
        .map(|s| Row {
            id: s.id.clone(),
            current: s.id == current.id,
            persistent: s.persistent,
            created: s.created.to_iso(),
            created_text: when(s.created),
            last_activity: s.last_activity.to_iso(),
            last_activity_text: when(s.last_activity),
            ends_at: s.ends_at().to_iso(),
            ends_at_text: when(s.ends_at()),
            amr: s.amr.clone(),
        })
        .collect();
    rows.sort_by_key(|r| !r.current);
    let others = rows.iter().filter(|r| !r.current).count();
    let notice = params
        .get("ended")
        .and_then(|n| n.parse::<u32>().ok())
        .map(|n| ui.text("sessions.ended").replace("{count}", &n.to_string()));
    let page =
        context! { user => user_context(&user), sessions => ser(rows), others, notice, active => "sessions" };
    ui.render(&state, StatusCode::OK, "sessions.html", page)
}

/// Ends every session of the user except this browser's (system log: `user.session.end`, LOGOUT).
async fn end_other_sessions(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ui = Ui::new(&state, &headers);
    if !csrf::check(&state, &headers, Form::parse(&body).get("_csrf")) {
        return error_response(&state, &headers, BrowserError::Csrf, StatusCode::FORBIDDEN);
    }
    let (current, user, _) = match state.browser_session(&headers).await {
        Ok(Some(found)) => found,
        Ok(None) => return see_other(&crate::browser::sign_in_url(&state, Some(SESSIONS_PAGE))),
        Err(e) => return e.into_page(&state, &headers),
    };
    let reason = EndReason::Logout;
    let ended = match state.sessions().end_all(&user.id, Some(&current.id), reason).await {
        Ok(ended) => ended,
        Err(e) => return ApiError::from(e).into_page(&state, &headers),
    };
    for id in &ended {
        state.log_session_end(id, &user.id, reason, None, ip.as_deref()).await;
    }
    ui.finish(&state, see_other(&state.link(&format!("{SESSIONS_PAGE}?ended={}", ended.len()))))
}

/// `POST /login/signout`: the dashboard's sign-out button, CSRF-checked, continuing at
/// `GET /login/signout` (Okta's endpoint), which ends the session and goes to the sign-in page.
pub(crate) async fn sign_out(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let ui = Ui::new(&state, &headers);
    if !csrf::check(&state, &headers, Form::parse(&body).get("_csrf")) {
        return error_response(&state, &headers, BrowserError::Csrf, StatusCode::FORBIDDEN);
    }
    // `GET /login/signout` ends the session and walks the apps taking part in Single Logout. This
    // page goes there by a refresh, not by redirecting the POST: browsers apply the page's
    // `form-action 'self'` to every redirect that follows a form post, so the walk's first hop to
    // an SP would be blocked.
    let page = context! {
        title => ui.text("signout.title"),
        heading => ui.text("signout.title"),
        message => ui.text("signout.message"),
        refresh => "/login/signout",
        back_href => "/login/signout",
        back_label => ui.text("signout.continue"),
    };
    ui.render(&state, StatusCode::OK, "message.html", page)
}

#[cfg(test)]
mod tests {
    use super::is_local_path;

    #[test]
    fn local_paths_are_single_slash_paths_only() {
        assert!(is_local_path("/app/UserHome"));
        assert!(is_local_path("/app/x/exk1/sso/saml?resume=abc"));
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example/",
            "javascript:alert(1)",
            "/a\nb",
            "/a\\b",
            "",
        ] {
            assert!(!is_local_path(bad), "{bad:?}");
        }
    }
}
