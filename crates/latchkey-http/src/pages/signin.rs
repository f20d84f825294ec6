//! The sign-in page and its steps: password, MFA verification and enrollment, password change,
//! previous/skip/cancel. Each step runs the core's authn state machine (as `/api/v1/authn` does)
//! and answers with the next page; on SUCCESS the session token becomes this browser's session.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use latchkey_core::CoreError;
use latchkey_core::authn::AuthnStatus;
use latchkey_core::authn::machine::{AuthnOptions, AuthnView};
use latchkey_core::policy::{Enrollment, FactorPromptMode};
use latchkey_core::sessions::{BrowserRequest, TokenPrecedence};
use minijinja::{Value, context};
use serde::Serialize;

use crate::error::ApiError;
use crate::extract::{Caller, ClientIp, QueryParams};
use crate::state::AppState;
use crate::web::csrf;
use crate::web::page::{message_page, ser};
use crate::web::{self, BrowserError, Form, Ui, checked_from_uri, cookie_value, is_local_path, see_other};

use super::HOME;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/login/login.htm", get(sign_in_page).post(sign_in_submit))
        .route("/login/mfa/verify", post(|s, i, c, h, b| step(Step::Verify, s, i, c, h, b)))
        .route("/login/mfa/enroll", post(|s, i, c, h, b| step(Step::Enroll, s, i, c, h, b)))
        .route("/login/mfa/activate", post(|s, i, c, h, b| step(Step::Activate, s, i, c, h, b)))
        .route("/login/previous", post(|s, i, c, h, b| step(Step::Previous, s, i, c, h, b)))
        .route("/login/skip", post(|s, i, c, h, b| step(Step::Skip, s, i, c, h, b)))
        .route("/login/password", post(|s, i, c, h, b| step(Step::ChangePassword, s, i, c, h, b)))
        .route("/login/cancel", post(|s, i, c, h, b| step(Step::Cancel, s, i, c, h, b)))
}

/// The authn transaction's `stateToken` between steps. A short-lived HttpOnly cookie rather than a
/// hidden form field: the token is a bearer credential for a half-authenticated user (Okta: "never
/// send it to users"), so it stays out of the HTML (page caches, screenshots, browser extensions
/// reading the DOM), is bound to this browser, and is scoped to `/login`. The cost is one
/// transaction per browser at a time, which is what a sign-in page needs.
const TX_COOKIE: &str = "lk_tx";

/// Sets or (with `None`) clears the transaction cookie with the page.
fn set_tx(ui: &mut Ui, state: &AppState, token: Option<&str>) {
    let secure = if web::cookies::cookies_secure(state) { "; Secure" } else { "" };
    let cookie = match token {
        Some(token) => format!(
            "{TX_COOKIE}={token}; Path=/login; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
            latchkey_core::authn::TRANSACTION_MAX_SECONDS
        ),
        None => format!("{TX_COOKIE}=; Path=/login; HttpOnly; SameSite=Lax; Max-Age=0{secure}"),
    };
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        ui.add_cookie(value);
    }
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

    /// The origin the sign-in may end on, for the page's `form-action` (Chromium applies it to
    /// every redirect that follows the form post): an absolute `fromURI`'s, or, for an OpenID
    /// Connect `authorize` request, the origin of its `redirect_uri` when the client registered it.
    async fn form_action(&self, state: &AppState) -> Option<String> {
        let from = self.from_uri.as_deref()?;
        if !is_local_path(from) {
            return latchkey_core::origins::origin_of_url(from);
        }
        let (path, query) = from.split_once('?')?;
        if !matches!(path, "/oauth2/v1/authorize" | "/oauth2/default/v1/authorize") {
            return None;
        }
        let param = |name: &str| {
            url::form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        let (client_id, redirect_uri) = (param("client_id")?, param("redirect_uri")?);
        let found = latchkey_core::store::AppStore::find_app(&state.store, &client_id).await;
        let app = found.ok().flatten().filter(|app| app.id == client_id)?;
        let registered = app.oidc()?.redirect_uri(&redirect_uri)?;
        latchkey_core::origins::origin_of_url(registered)
    }
}

// ---------------------------------------------------------------------------------------------
// Sign-in

async fn sign_in_page(State(state): State<AppState>, headers: HeaderMap, params: QueryParams) -> Response {
    let mut ui = Ui::new(&state, &headers);
    let from = match checked_from_uri(&state, params.get("fromURI")).await {
        Ok(from) => from,
        Err(e) => return ApiError::from(e).into_page(&state, &headers),
    };
    // `prompt=login` (the SAML ForceAuthn re-prompt): the form even with a session; the new
    // session replaces the old one on success.
    let reprompt = params.get("prompt") == Some("login");
    if !reprompt {
        match web::browser_session(&state, &headers).await {
            Ok(Some(_)) => return see_other(&target(&state, from.as_deref())),
            Ok(None) => {}
            Err(e) => return ApiError::from(e).into_page(&state, &headers),
        }
    }
    let carry = Carry { from_uri: from, remember: false };
    ui.form_action = carry.form_action(&state).await;
    // An OpenID Connect `login_hint` (passed on by `authorize`) fills in the username.
    let hint = params.get("login_hint").filter(|h| h.chars().count() <= 256).unwrap_or_default();
    sign_in_form(&state, &ui, &carry, StatusCode::OK, hint, None, reprompt).await
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
        Err(e) => return ApiError::from(e).into_page(state, &HeaderMap::new()),
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
        return web::error_page(&state, &headers, BrowserError::Csrf, StatusCode::FORBIDDEN);
    }
    let carry = match Carry::of(&state, &form).await {
        Ok(carry) => carry,
        Err(e) => return e.into_page(&state, &headers),
    };
    ui.form_action = carry.form_action(&state).await;
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
    let (result, _) = state.primary_authn(&username, password, options, None, &caller.context).await;
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
        return web::error_page(&state, &headers, BrowserError::Csrf, StatusCode::FORBIDDEN);
    }
    let carry = match Carry::of(&state, &form).await {
        Ok(carry) => carry,
        Err(e) => return e.into_page(&state, &headers),
    };
    ui.form_action = carry.form_action(&state).await;
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
            authn.verify(&token, &field("factorId"), Some(&code), Some(remember), &caller.context).await.0
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
            set_tx(&mut ui, &state, None);
            let to = web::sign_in_url(&state, flow.carry.from_uri.as_deref());
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
                set_tx(&mut ui, state, None);
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
                set_tx(&mut ui, state, None);
                message_page(state, &ui, StatusCode::FORBIDDEN, "locked.title", "locked.message", false, None)
            }
            _ => {
                set_tx(&mut ui, state, view.state_token.as_deref());
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
        set_tx(&mut ui, self.state, None);
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
        let cookie = web::cookie_value(self.headers, web::cookies::SID);
        let request = BrowserRequest {
            cookie: cookie.as_deref(),
            session_token: view.session_token.as_deref(),
            precedence: TokenPrecedence::Token,
            persistent: self.carry.remember,
            client_ip: self.ip,
        };
        let browser = match state.sessions().browser(&request).await {
            Ok(browser) => browser,
            Err(e) => return ApiError::from(e).into_page(state, self.headers),
        };
        set_tx(&mut ui, state, None);
        if browser.current.is_none() {
            let mut response = self.expired(ui).await;
            web::cookies::apply(state, &mut response, &browser);
            return response;
        }
        let mut response = ui.finish(state, see_other(&target(state, self.carry.from_uri.as_deref())));
        web::cookies::apply(state, &mut response, &browser);
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
