//! Single sign-on: IdP-initiated through the embed link `/home/{appName}/{appId}/{linkId}` and
//! SP-initiated at `/app/{appName}/{externalKey}/sso/saml` (HTTP-Redirect and HTTP-POST bindings).
//!
//! Both accept a `sessionToken` under the session-token rule (DESIGN §4). An SP-initiated request
//! is checked before anything is sent anywhere: known SP (Issuer), verified signature when the app
//! has a certificate (required when `samlSignedRequestEnabled`), our Destination, a fresh
//! IssueInstant, an exact registered ACS URL or index, and an unseen request ID. Only then may
//! errors go back to the SP as SAML status codes; everything before is a page for the user.
//! Without a session (or with ForceAuthn) the request is parked in the database and the browser
//! goes to the sign-in page, which returns to `…/sso/saml?resume=<id>`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use latchkey_core::CoreError;
use latchkey_core::apps::App;
use latchkey_core::apps::sso::{Participant, PendingSso};
use latchkey_core::events::{Actor, Event, Target};
use latchkey_core::ids::{Secret, secret_digest};
use latchkey_core::saml::inbound::{self, AuthnRequest, SamlMessage};
use latchkey_core::saml::response::{self, Attribute, ErrorResponseParams, ResponseParams, status};
use latchkey_core::saml::{MessageParam, new_saml_id};
use latchkey_core::sessions::{RuleOutcome, Session};
use latchkey_core::store::{AppStore, SamlStore};
use latchkey_core::users::User;

use super::{RefusedFor, SignatureCheck, auto_post, refusal, sso_url};
use crate::AppState;
use crate::browser::{apply_cookies, redirect, sign_in_url, token_rule};
use crate::error::ApiError;
use crate::extract::{ClientIp, PathParams};
use crate::pages::BrowserError;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/home/{app_name}/{app_id}/{link_id}", get(embed_link))
        .route("/app/{key}/{external_key}/sso/saml", get(sso_get).post(sso_post))
        .route("/app/{key}/sso/saml", get(sso_get_short).post(sso_post_short))
}

/// How far an AuthnRequest's IssueInstant may be from now (clock skew plus transit).
const REQUEST_WINDOW_SECS: i64 = 300;
/// How long a parked request waits for the sign-in.
const PENDING_SECS: i64 = 900;
/// `NotBefore` backdating: node-saml and samlify accept no skew by default (reference §A.6.7).
const NOT_BEFORE_BACKDATE_SECS: i64 = 60;

/// What an answer to an SP needs.
struct Answer<'a> {
    app: &'a App,
    acs_url: &'a str,
    in_response_to: Option<&'a str>,
    relay_state: Option<&'a str>,
    name_id_format: Option<&'a str>,
}

/// Everything after the browser has a session: assignment check, the signed Response, the
/// participant record for SLO, the system log, and the auto-posting page.
async fn answer(
    state: &AppState,
    session: &Session,
    user: &User,
    answer: Answer<'_>,
    ip: Option<&str>,
) -> Result<Response, ApiError> {
    let app = answer.app;
    let Some(existing) = state.store.find_sso_grant(&app.id, &user.id, &session.id).await? else {
        log_sso(state, app, user, "FAILURE", Some("NOT_ASSIGNED"), ip).await;
        return Ok(refusal(
            state,
            RefusedFor::App(app),
            BrowserError::NotAssigned,
            StatusCode::FORBIDDEN,
            None,
        ));
    };
    let Some(name_id) = app.name_id_for(user) else {
        let detail = "your profile has no value for the identifier (NameID) this app needs";
        return Ok(refusal(
            state,
            RefusedFor::App(app),
            BrowserError::NotAssigned,
            StatusCode::FORBIDDEN,
            Some(detail),
        ));
    };
    let name_id_format = answer.name_id_format.unwrap_or(&app.sign_on.subject_name_id_format).to_owned();
    let participant = match existing {
        Some(existing) => existing,
        None => {
            let new = Participant {
                session_id: session.id.clone(),
                app_id: app.id.clone(),
                name_id: name_id.clone(),
                name_id_format: name_id_format.clone(),
                session_index: new_saml_id(),
                created: state.clock.now(),
            };
            state.store.add_participant(&new).await?
        }
    };
    let now = state.clock.now();
    let lifetime = i64::from(
        app.sign_on
            .saml_assertion_lifetime_seconds
            .unwrap_or(latchkey_core::apps::DEFAULT_ASSERTION_LIFETIME_SECONDS),
    );
    let params = ResponseParams {
        response_id: new_saml_id(),
        assertion_id: new_saml_id(),
        issue_instant: now,
        issuer: app.idp_issuer(),
        destination: destination_for(app, answer.acs_url),
        recipient: recipient_for(app, answer.acs_url),
        audience: app.sign_on.audience.clone(),
        in_response_to: answer.in_response_to.map(str::to_owned),
        name_id,
        name_id_format,
        session_index: participant.session_index,
        authn_instant: session.password_verified_at.unwrap_or(session.created),
        session_not_on_or_after: None,
        not_before: now.plus_seconds(-NOT_BEFORE_BACKDATE_SECS),
        not_on_or_after: now.plus_seconds(lifetime),
        authn_context_class_ref: app.sign_on.authn_context_class_ref.clone(),
        attributes: app
            .attributes_for(user)
            .into_iter()
            .map(|a| Attribute { name: a.name, name_format: a.name_format, values: a.values })
            .collect(),
        sign_response: app.sign_on.response_signed,
        // Always, whatever an app stored before assertionSigned=false was refused (reference A.6.1).
        sign_assertion: true,
    };
    let keys = state.signing_keys().current().await?;
    let xml = response::build_response(&params, &keys.active).map_err(|e| {
        // Only user data can make a response unbuildable (a character XML cannot carry).
        CoreError::validation("profile", e.to_string())
    })?;
    log_sso(state, app, user, "SUCCESS", None, ip).await;
    let value = latchkey_core::saml::logout::post_binding_value(&xml);
    Ok(auto_post(answer.acs_url, MessageParam::SamlResponse, &value, answer.relay_state))
}

/// Okta's `destination`/`recipient` settings name the default ACS; a request for another
/// registered ACS gets that ACS in both (SPs compare them with the URL they received on).
fn destination_for(app: &App, acs: &str) -> String {
    if acs == app.sign_on.sso_acs_url { app.sign_on.destination.clone() } else { acs.to_owned() }
}

fn recipient_for(app: &App, acs: &str) -> String {
    if acs == app.sign_on.sso_acs_url { app.sign_on.recipient.clone() } else { acs.to_owned() }
}

async fn log_sso(
    state: &AppState,
    app: &App,
    user: &User,
    outcome: &'static str,
    reason: Option<&str>,
    ip: Option<&str>,
) {
    let mut event = Event::new(
        "user.authentication.sso",
        &format!("User single sign on to app {}", app.label),
        outcome,
        Actor::user(&user.id, user.login()),
        state.clock.now(),
    )
    .target(Target::new(&app.id, "AppInstance", &app.label))
    .client(ip);
    if let Some(reason) = reason {
        event = event.reason(reason);
    }
    state.log(event).await;
}

/// A SAML status Response to a verified SP's registered ACS.
async fn status_response(
    state: &AppState,
    app: &App,
    acs_url: &str,
    in_response_to: &str,
    second: &str,
    relay_state: Option<&str>,
) -> Result<Response, ApiError> {
    let keys = state.signing_keys().current().await?;
    let top = if second == status::NO_PASSIVE || second == status::NO_AUTHN_CONTEXT {
        status::RESPONDER
    } else {
        status::REQUESTER
    };
    let xml = response::build_error_response(
        &ErrorResponseParams {
            id: new_saml_id(),
            issue_instant: state.clock.now(),
            issuer: app.idp_issuer(),
            destination: acs_url.to_owned(),
            in_response_to: Some(in_response_to.to_owned()),
            top_status: top.to_owned(),
            second_status: Some(second.to_owned()),
            message: None,
        },
        &keys.active,
    )
    .map_err(|e| CoreError::Crypto(e.to_string()))?;
    let value = latchkey_core::saml::logout::post_binding_value(&xml);
    Ok(auto_post(acs_url, MessageParam::SamlResponse, &value, relay_state))
}

/// The browser's session after the session-token rule, with its user; the rule's cookie changes
/// are returned to be applied to whatever response follows.
async fn browser_session(
    state: &AppState,
    headers: &HeaderMap,
    token: Option<&str>,
    ip: Option<&str>,
) -> Result<(Option<(Session, User)>, Option<RuleOutcome>), ApiError> {
    if token.is_some_and(|t| !t.is_empty()) {
        let outcome = token_rule(state, headers, token, ip).await?;
        let found = match &outcome.session {
            Some(session) => Some((session.clone(), state.users().get(&session.user_id).await?)),
            None => None,
        };
        return Ok((found, Some(outcome)));
    }
    let found = state.browser_session(headers).await?.map(|(session, user, _)| (session, user));
    Ok((found, None))
}

fn with_cookies(state: &AppState, mut response: Response, outcome: Option<&RuleOutcome>) -> Response {
    if let Some(outcome) = outcome {
        apply_cookies(state, &mut response, outcome);
    }
    response
}

fn query_param<'q>(pairs: &'q [(String, String)], name: &str) -> Option<&'q str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// `key` is the app id (embed link) or external key (SSO URL) the browser asked for.
fn unknown_app(state: &AppState, key: &str) -> Response {
    refusal(state, RefusedFor::Key(key), BrowserError::UnknownApp, StatusCode::NOT_FOUND, None)
}

fn inactive_app(state: &AppState, app: &App) -> Response {
    refusal(state, RefusedFor::App(app), BrowserError::AppUnavailable, StatusCode::FORBIDDEN, None)
}

/// `GET /home/{appName}/{appId}/{linkId}[?sessionToken=…][&RelayState=…]`: IdP-initiated SSO.
async fn embed_link(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    PathParams((app_name, app_id, link_id)): PathParams<(String, String, String)>,
) -> Response {
    match embed_link_inner(&state, ip.as_deref(), &headers, &uri, &app_name, &app_id, &link_id).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn embed_link_inner(
    state: &AppState,
    ip: Option<&str>,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
    app_name: &str,
    app_id: &str,
    link_id: &str,
) -> Result<Response, ApiError> {
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()).into_owned().collect();
    let app = match state.store.find_app(app_id).await? {
        Some(app) if app.id == app_id && app.name == app_name && app.link_id == link_id => app,
        _ => return Ok(unknown_app(state, app_id)),
    };
    if !app.is_active() {
        return Ok(inactive_app(state, &app));
    }
    let relay_state = query_param(&pairs, "RelayState")
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .or_else(|| app.sign_on.default_relay_state.clone().filter(|r| !r.is_empty()));
    if relay_state.as_deref().is_some_and(|r| inbound::check_relay_state(r).is_err()) {
        return Ok(refusal(
            state,
            RefusedFor::App(&app),
            BrowserError::InvalidSamlRequest,
            StatusCode::BAD_REQUEST,
            Some("the RelayState of this link is longer than 80 bytes"),
        ));
    }
    let token = query_param(&pairs, "sessionToken");
    let (found, outcome) = browser_session(state, headers, token, ip).await?;
    let Some((session, user)) = found else {
        // Back here after sign-in, without the (now used) token.
        let mut back = format!("/home/{}/{}/{}", app.name, app.id, app.link_id);
        if let Some(relay) = query_param(&pairs, "RelayState").filter(|r| !r.is_empty()) {
            back.push_str("?RelayState=");
            back.extend(url::form_urlencoded::byte_serialize(relay.as_bytes()));
        }
        let response = redirect(&sign_in_url(state, Some(&back)));
        return Ok(with_cookies(state, response, outcome.as_ref()));
    };
    let acs = app.sign_on.sso_acs_url.clone();
    let response = answer(
        state,
        &session,
        &user,
        Answer {
            app: &app,
            acs_url: &acs,
            in_response_to: None,
            relay_state: relay_state.as_deref(),
            name_id_format: None,
        },
        ip,
    )
    .await?;
    Ok(with_cookies(state, response, outcome.as_ref()))
}

async fn sso_get(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    PathParams((app_name, external_key)): PathParams<(String, String)>,
) -> Response {
    let query = uri.query().unwrap_or_default().to_owned();
    sp_initiated(&state, ip.as_deref(), &headers, Some(&app_name), &external_key, Inbound::Redirect(query))
        .await
}

async fn sso_get_short(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    PathParams(external_key): PathParams<String>,
) -> Response {
    let query = uri.query().unwrap_or_default().to_owned();
    sp_initiated(&state, ip.as_deref(), &headers, None, &external_key, Inbound::Redirect(query)).await
}

async fn sso_post(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    PathParams((app_name, external_key)): PathParams<(String, String)>,
    body: Bytes,
) -> Response {
    let inbound = Inbound::post(&uri, &body);
    sp_initiated(&state, ip.as_deref(), &headers, Some(&app_name), &external_key, inbound).await
}

async fn sso_post_short(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    PathParams(external_key): PathParams<String>,
    body: Bytes,
) -> Response {
    let inbound = Inbound::post(&uri, &body);
    sp_initiated(&state, ip.as_deref(), &headers, None, &external_key, inbound).await
}

/// The request as it arrived: the raw query (HTTP-Redirect, or a resume), or a posted form.
enum Inbound {
    Redirect(String),
    Post { form: Vec<(String, String)>, query: Vec<(String, String)> },
}

impl Inbound {
    fn post(uri: &axum::http::Uri, body: &[u8]) -> Self {
        let query =
            url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()).into_owned().collect();
        Inbound::Post { form: url::form_urlencoded::parse(body).into_owned().collect(), query }
    }

    /// A parameter from the form or the query (Okta accepts `sessionToken` in either).
    fn param(&self, name: &str) -> Option<String> {
        match self {
            Inbound::Redirect(query) => url::form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned()),
            Inbound::Post { form, query } => {
                query_param(form, name).or_else(|| query_param(query, name)).map(str::to_owned)
            }
        }
    }
}

async fn sp_initiated(
    state: &AppState,
    ip: Option<&str>,
    headers: &HeaderMap,
    app_name: Option<&str>,
    external_key: &str,
    inbound: Inbound,
) -> Response {
    match sp_initiated_inner(state, ip, headers, app_name, external_key, inbound).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

fn invalid_request(state: &AppState, app: &App, detail: &str) -> Response {
    refusal(
        state,
        RefusedFor::App(app),
        BrowserError::InvalidSamlRequest,
        StatusCode::BAD_REQUEST,
        Some(detail),
    )
}

async fn sp_initiated_inner(
    state: &AppState,
    ip: Option<&str>,
    headers: &HeaderMap,
    app_name: Option<&str>,
    external_key: &str,
    inbound: Inbound,
) -> Result<Response, ApiError> {
    let app = match state.store.find_app(external_key).await? {
        Some(app) if app.external_key == external_key && app_name.is_none_or(|n| n == app.name) => app,
        _ => return Ok(unknown_app(state, external_key)),
    };
    if !app.is_active() {
        return Ok(inactive_app(state, &app));
    }
    if let Some(resume) = inbound.param("resume") {
        return resume_pending(state, ip, headers, &app, &resume, inbound.param("sessionToken").as_deref())
            .await;
    }
    // Okta: a GET of the SSO URL without a SAMLRequest is an IdP-initiated sign-in, like the embed link.
    if let Inbound::Redirect(query) = &inbound
        && inbound.param("SAMLRequest").is_none()
        && inbound.param("SAMLResponse").is_none()
    {
        let uri: axum::http::Uri = format!("/?{query}").parse().unwrap_or_default();
        return embed_link_inner(state, ip, headers, &uri, &app.name, &app.id, &app.link_id).await;
    }
    let received = match &inbound {
        Inbound::Redirect(query) => super::receive_redirect(&app, query),
        Inbound::Post { form, .. } => super::receive_post(&app, form, &["SAMLRequest"]),
    };
    let received = match received {
        Ok(received) => received,
        Err(detail) => return Ok(invalid_request(state, &app, &detail)),
    };
    let SamlMessage::AuthnRequest(request) = received.decoded.message else {
        return Ok(invalid_request(state, &app, "this endpoint accepts AuthnRequests only"));
    };
    if !app.is_sp(&request.issuer) {
        return Ok(invalid_request(state, &app, "the Issuer is not this app's service provider"));
    }
    if let Some(refused) = signature_policy(state, &app, &received.signature) {
        return Ok(refused);
    }
    let relay_state = received.relay_state;
    let now = state.clock.now();
    if let Some(destination) = &request.destination {
        let ours = [sso_url(state, &app), state.link(&format!("/app/{}/sso/saml", app.external_key))];
        if !ours.contains(destination) {
            return Ok(invalid_request(state, &app, "the Destination is not this sign-in URL"));
        }
    }
    if (request.issue_instant.millis() - now.millis()).abs() > REQUEST_WINDOW_SECS * 1000 {
        return Ok(invalid_request(state, &app, "the IssueInstant is too old or in the future"));
    }
    let acs_url = match (&request.acs_url, request.acs_index) {
        (Some(url), _) => match app.acs_by_url(url) {
            Some(acs) => acs.to_owned(),
            None => {
                return Ok(invalid_request(
                    state,
                    &app,
                    "the AssertionConsumerServiceURL is not registered for this app",
                ));
            }
        },
        (None, Some(index)) => match app.acs_by_index(index) {
            Some(acs) => acs.to_owned(),
            None => {
                return Ok(invalid_request(
                    state,
                    &app,
                    "the AssertionConsumerServiceIndex is not registered",
                ));
            }
        },
        (None, None) => app.sign_on.sso_acs_url.clone(),
    };
    let expires = request.issue_instant.max(now).plus_seconds(REQUEST_WINDOW_SECS);
    if !state.store.remember_saml_request(&app.id, &request.id, expires).await? {
        return Ok(invalid_request(state, &app, "this request was already used (replay)"));
    }
    // From here on the SP is verified and the ACS registered: errors go back as SAML statuses.
    let relay = relay_state.as_deref();
    if request
        .protocol_binding
        .as_deref()
        .is_some_and(|b| b != "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST")
    {
        return status_response(state, &app, &acs_url, &request.id, status::UNSUPPORTED_BINDING, relay).await;
    }
    let name_id_format = match name_id_format_for(&app, &request) {
        Ok(format) => format,
        Err(()) => {
            return status_response(
                state,
                &app,
                &acs_url,
                &request.id,
                status::INVALID_NAME_ID_POLICY,
                relay,
            )
            .await;
        }
    };
    if !authn_context_satisfied(&app, &request) {
        return status_response(state, &app, &acs_url, &request.id, status::NO_AUTHN_CONTEXT, relay).await;
    }
    let force = request.force_authn && app.sign_on.honor_force_authn;
    let token = inbound.param("sessionToken");
    let (found, outcome) = browser_session(state, headers, token.as_deref(), ip).await?;
    // A token presented with the request is a fresh authentication, so it satisfies ForceAuthn.
    let fresh_from_token = outcome.as_ref().is_some_and(|o| o.new_cookie.is_some());
    if request.is_passive && (found.is_none() || (force && !fresh_from_token)) {
        let response = status_response(state, &app, &acs_url, &request.id, status::NO_PASSIVE, relay).await?;
        return Ok(with_cookies(state, response, outcome.as_ref()));
    }
    match found {
        Some((session, user)) if !force || fresh_from_token => {
            let answer_to = Answer {
                app: &app,
                acs_url: &acs_url,
                in_response_to: Some(&request.id),
                relay_state: relay,
                name_id_format: name_id_format.as_deref(),
            };
            let response = answer(state, &session, &user, answer_to, ip).await?;
            Ok(with_cookies(state, response, outcome.as_ref()))
        }
        _ => {
            let resume = Secret::generate();
            let pending = PendingSso {
                id_digest: resume.digest(),
                app_id: app.id.clone(),
                request_id: request.id.clone(),
                acs_url,
                relay_state,
                force_authn: force,
                name_id_format,
                created: now,
                expires_at: now.plus_seconds(PENDING_SECS),
            };
            state.store.put_pending_sso(&pending).await?;
            let response = redirect(&sign_in_for_resume(state, &app, resume.expose(), force));
            Ok(with_cookies(state, response, outcome.as_ref()))
        }
    }
}

/// A request's signature against the app's policy: a present signature must verify with the
/// app's certificate; `samlSignedRequestEnabled` requires one.
fn signature_policy(state: &AppState, app: &App, signature: &SignatureCheck) -> Option<Response> {
    match signature {
        SignatureCheck::Verified => None,
        SignatureCheck::Refused(detail) => Some(invalid_request(state, app, detail)),
        SignatureCheck::Unsigned if app.sign_on.saml_signed_request_enabled => {
            Some(invalid_request(state, app, "this app requires signed requests"))
        }
        SignatureCheck::Unsigned => None,
    }
}

/// The sign-in page, returning to the parked request; `prompt=login` asks it to authenticate even
/// over an existing session (ForceAuthn).
fn sign_in_for_resume(state: &AppState, app: &App, resume: &str, force: bool) -> String {
    let back = format!("/app/{}/{}/sso/saml?resume={resume}", app.name, app.external_key);
    let mut url = sign_in_url(state, Some(&back));
    if force {
        url.push_str("&prompt=login");
    }
    url
}

/// NameIDPolicy (SAML core 3.4.1.1): unspecified or the app's own format is honoured; anything
/// else cannot be produced.
fn name_id_format_for(app: &App, request: &AuthnRequest) -> Result<Option<String>, ()> {
    match request.name_id_policy_format.as_deref() {
        None => Ok(None),
        Some(latchkey_core::apps::NAME_ID_UNSPECIFIED) => Ok(None),
        Some(format) if format == app.sign_on.subject_name_id_format => Ok(Some(format.to_owned())),
        Some(_) => Err(()),
    }
}

/// RequestedAuthnContext (SAML core 3.3.2.2.1): with `exact` (the default) or `minimum`, one of
/// the requested classes must be the app's; `better` can never be met; `maximum` is met by ours.
fn authn_context_satisfied(app: &App, request: &AuthnRequest) -> bool {
    if request.requested_authn_context.is_empty() {
        return true;
    }
    let ours = app.sign_on.authn_context_class_ref.as_str();
    let unspecified = "urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified";
    match request.requested_authn_context_comparison.as_deref().unwrap_or("exact") {
        "better" => false,
        _ => request.requested_authn_context.iter().any(|c| c == ours || c == unspecified),
    }
}

/// `…/sso/saml?resume=<id>`: the sign-in page sends the browser back here.
async fn resume_pending(
    state: &AppState,
    ip: Option<&str>,
    headers: &HeaderMap,
    app: &App,
    resume: &str,
    token: Option<&str>,
) -> Result<Response, ApiError> {
    let now = state.clock.now();
    let Some(pending) = state.store.find_pending_sso(&secret_digest(resume), now).await? else {
        return Ok(refusal(
            state,
            RefusedFor::App(app),
            BrowserError::ExpiredLink,
            StatusCode::BAD_REQUEST,
            None,
        ));
    };
    if pending.app_id != app.id {
        return Ok(unknown_app(state, &app.external_key));
    }
    let (found, outcome) = browser_session(state, headers, token, ip).await?;
    let authenticated_since = |s: &Session| s.password_verified_at.unwrap_or(s.created);
    match found {
        // ForceAuthn: only an authentication after the request arrived answers it.
        Some((session, user)) if !pending.force_authn || authenticated_since(&session) > pending.created => {
            if !state.store.delete_pending_sso(&pending.id_digest).await? {
                return Ok(refusal(
                    state,
                    RefusedFor::App(app),
                    BrowserError::ExpiredLink,
                    StatusCode::CONFLICT,
                    None,
                ));
            }
            let answer_to = Answer {
                app,
                acs_url: &pending.acs_url,
                in_response_to: Some(&pending.request_id),
                relay_state: pending.relay_state.as_deref(),
                name_id_format: pending.name_id_format.as_deref(),
            };
            let response = answer(state, &session, &user, answer_to, ip).await?;
            Ok(with_cookies(state, response, outcome.as_ref()))
        }
        _ => {
            let response = redirect(&sign_in_for_resume(state, app, resume, pending.force_authn));
            Ok(with_cookies(state, response, outcome.as_ref()))
        }
    }
}
