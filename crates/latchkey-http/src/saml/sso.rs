//! Single sign-on: IdP-initiated through the embed link `/home/{appName}/{appId}/{linkId}` and
//! SP-initiated at `/app/{appName}/{externalKey}/sso/saml` (HTTP-Redirect and HTTP-POST bindings).
//!
//! Both accept a `sessionToken` under the session-token rule (docs/shared-browser.md). An
//! SP-initiated request is checked before anything is sent anywhere: known SP (Issuer), verified
//! signature when the app has a certificate (required when `samlSignedRequestEnabled`), our
//! Destination, a fresh IssueInstant, an exact registered ACS URL or index, and an unseen request
//! ID. Only then may errors go back to the SP as SAML status codes; everything before is a page for
//! the user. Without a session (or with ForceAuthn) the request is parked in the database and the
//! browser goes to the sign-in page, which returns to `…/sso/saml?resume=<id>`.
//!
//! The path of a sign-on: this module resolves the app and checks the request, then makes one
//! call to the core's sign-on service ([`SignOn::sign_on`](latchkey_core::signon::service::SignOn::sign_on)),
//! which resolves the browser's session, decides the grant and has the core's SAML encoder write
//! the signed Response; `web` posts it.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use latchkey_core::apps::SamlApp;
use latchkey_core::apps::sso::PendingSso;
use latchkey_core::ids::{Secret, secret_digest};
use latchkey_core::saml::grant::{Recipient, SamlResponse};
use latchkey_core::saml::inbound::{self, AuthnRequest, SamlMessage};
use latchkey_core::saml::logout::post_binding_value;
use latchkey_core::saml::response::{self, ErrorResponseParams, status};
use latchkey_core::saml::{MessageParam, new_saml_id};
use latchkey_core::sessions::{BrowserRequest, BrowserSession};
use latchkey_core::signing_keys::service::SigningKeys;
use latchkey_core::signon::{
    Decision, Grant, GrantEncoder, Reauthentication, Refusal, SignOnRequest, SignedOn, check_app,
};
use latchkey_core::store::{AppStore, SamlStore};
use latchkey_core::{CoreError, StoreError};

use super::{RefusedFor, SignatureCheck, refusal};
use crate::error::ApiError;
use crate::extract::{ClientIp, PathParams};
use crate::state::AppState;
use crate::web::{self, BrowserError};

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

/// Whom a Response goes to and what it answers.
struct Answer<'a> {
    app: SamlApp<'a>,
    acs_url: &'a str,
    in_response_to: Option<&'a str>,
    relay_state: Option<&'a str>,
    /// A NameID format the request asked for (NameIDPolicy), already checked.
    name_id_format: Option<&'a str>,
}

/// The sign-on core's decision for `answer.app`, with the grant encoded by `encoder`. The
/// browser's session is resolved under the session-token rule: an empty `sessionToken` on these
/// URLs is no token (the sign-on goes on with the cookie, if any).
async fn sign_on<E: GrantEncoder>(
    state: &AppState,
    headers: &HeaderMap,
    token: Option<&str>,
    ip: Option<&str>,
    answer: &Answer<'_>,
    reauthentication: Reauthentication,
    encoder: &E,
) -> Result<SignedOn<E::Answer>, ApiError> {
    let cookie = web::cookie_value(headers, web::cookies::SID);
    let request = SignOnRequest {
        app: answer.app.app,
        browser: BrowserRequest {
            cookie: cookie.as_deref(),
            session_token: token.filter(|t| !t.is_empty()),
            precedence: state.config.session_token_precedence,
            persistent: false,
            client_ip: ip,
        },
        subject_format: answer.name_id_format,
        reauthentication,
    };
    Ok(state.sign_on().sign_on(&request, encoder).await?)
}

/// The Response for `answer`, signed with the organisation's active key.
fn response_to<'a, S, O, A>(
    answer: &Answer<'a>,
    keys: &'a SigningKeys<'a, S, O, A>,
) -> SamlResponse<'a, S, O, A> {
    SamlResponse {
        app: answer.app,
        to: Recipient { acs_url: answer.acs_url, in_response_to: answer.in_response_to },
        keys,
    }
}

/// A granted sign-on posts its Response to the ACS, a refused one is a page; `None` when the
/// browser must sign in first (each entry point answers that its own way).
fn decided(state: &AppState, decision: Decision<String>, answer: &Answer<'_>) -> Option<Response> {
    match decision {
        Decision::Granted(xml) => Some(saml_post(answer.acs_url, &xml, answer.relay_state)),
        Decision::Refused(refused) => Some(refused_sign_on(state, answer.app, refused)),
        Decision::SignInRequired => None,
    }
}

/// The page for a sign-on the core refused.
fn refused_sign_on(state: &AppState, app: SamlApp<'_>, refused: Refusal) -> Response {
    let (kind, status, detail) = match refused {
        Refusal::AppInactive => (BrowserError::AppUnavailable, StatusCode::FORBIDDEN, None),
        Refusal::NotAssigned | Refusal::UserNotActive => {
            (BrowserError::NotAssigned, StatusCode::FORBIDDEN, None)
        }
        Refusal::NoSubject => (
            BrowserError::NotAssigned,
            StatusCode::FORBIDDEN,
            Some("your profile has no value for the identifier (NameID) this app needs"),
        ),
    };
    refusal(state, RefusedFor::App(&app), kind, status, detail)
}

/// The auto-posting page that carries a SAMLResponse (and RelayState) to an ACS.
fn saml_post(acs_url: &str, xml: &str, relay_state: Option<&str>) -> Response {
    let value = post_binding_value(xml);
    let mut fields = vec![(MessageParam::SamlResponse.name(), value.as_str())];
    if let Some(relay_state) = relay_state {
        fields.push(("RelayState", relay_state));
    }
    web::auto_post(acs_url, &fields)
}

/// A SAML status Response to a verified SP's registered ACS.
async fn status_response(
    state: &AppState,
    app: SamlApp<'_>,
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
    Ok(saml_post(acs_url, &xml, relay_state))
}

fn with_cookies(state: &AppState, mut response: Response, browser: &BrowserSession) -> Response {
    web::cookies::apply(state, &mut response, browser);
    response
}

fn query_param<'q>(pairs: &'q [(String, String)], name: &str) -> Option<&'q str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// `key` is the app id (embed link) or external key (SSO URL) the browser asked for.
fn unknown_app(state: &AppState, key: &str) -> Response {
    refusal(state, RefusedFor::Key(key), BrowserError::UnknownApp, StatusCode::NOT_FOUND, None)
}

/// The app a sign-on URL names, if it is a SAML app that can be signed on to; else its page.
fn usable(state: &AppState, app: SamlApp<'_>) -> Option<Response> {
    check_app(app.app).err().map(|refused| refused_sign_on(state, app, refused))
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
    let found = match state.store.find_app(app_id).await? {
        Some(app) if app.id == app_id && app.okta_name() == app_name && app.link_id == link_id => app,
        _ => return Ok(unknown_app(state, app_id)),
    };
    // An OpenID Connect app's tile starts a sign-in at the app (OpenID Connect Core §4,
    // third-party initiated login); the app then sends the browser to `authorize`.
    if let Some(oidc) = found.oidc() {
        return Ok(match (&oidc.client.initiate_login_uri, found.is_active()) {
            (Some(uri), true) => {
                let separator = if uri.contains('?') { '&' } else { '?' };
                let issuer: String = url::form_urlencoded::byte_serialize(state.base().as_bytes()).collect();
                web::redirect(&format!("{uri}{separator}iss={issuer}"))
            }
            _ => unknown_app(state, app_id),
        });
    }
    let Some(app) = found.saml() else { return Ok(unknown_app(state, app_id)) };
    if let Some(refused) = usable(state, app) {
        return Ok(refused);
    }
    let relay_state = query_param(&pairs, "RelayState")
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .or_else(|| app.settings.default_relay_state.clone().filter(|r| !r.is_empty()));
    if relay_state.as_deref().is_some_and(|r| inbound::check_relay_state(r).is_err()) {
        return Ok(refusal(
            state,
            RefusedFor::App(&app),
            BrowserError::InvalidSamlRequest,
            StatusCode::BAD_REQUEST,
            Some("the RelayState of this link is longer than 80 bytes"),
        ));
    }
    let acs = app.settings.sso_acs_url.clone();
    let to = Answer {
        app,
        acs_url: &acs,
        in_response_to: None,
        relay_state: relay_state.as_deref(),
        name_id_format: None,
    };
    let keys = state.signing_keys();
    let token = query_param(&pairs, "sessionToken");
    let signed =
        sign_on(state, headers, token, ip, &to, Reauthentication::NotRequired, &response_to(&to, &keys))
            .await?;
    let response = decided(state, signed.decision, &to).unwrap_or_else(|| {
        // Back here after sign-in, without the (now used) token.
        let mut back = app.embed_path();
        if let Some(relay) = query_param(&pairs, "RelayState").filter(|r| !r.is_empty()) {
            back.push_str("?RelayState=");
            back.extend(url::form_urlencoded::byte_serialize(relay.as_bytes()));
        }
        web::redirect(&web::sign_in_url(state, Some(&back)))
    });
    Ok(with_cookies(state, response, &signed.browser))
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

fn invalid_request(state: &AppState, app: SamlApp<'_>, detail: &str) -> Response {
    refusal(
        state,
        RefusedFor::App(&app),
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
    let found = match state.store.find_app(external_key).await? {
        Some(app) if app.external_key == external_key && app_name.is_none_or(|n| n == app.name) => app,
        _ => return Ok(unknown_app(state, external_key)),
    };
    let Some(app) = found.saml() else { return Ok(unknown_app(state, external_key)) };
    if let Some(refused) = usable(state, app) {
        return Ok(refused);
    }
    if let Some(resume) = inbound.param("resume") {
        return resume_pending(state, ip, headers, app, &resume, inbound.param("sessionToken").as_deref())
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
        Inbound::Redirect(query) => super::receive_redirect(app, query),
        Inbound::Post { form, .. } => super::receive_post(app, form, &["SAMLRequest"]),
    };
    let received = match received {
        Ok(received) => received,
        Err(detail) => return Ok(invalid_request(state, app, &detail)),
    };
    let SamlMessage::AuthnRequest(request) = received.decoded.message else {
        return Ok(invalid_request(state, app, "this endpoint accepts AuthnRequests only"));
    };
    if !app.settings.is_sp(&request.issuer) {
        return Ok(invalid_request(state, app, "the Issuer is not this app's service provider"));
    }
    if let Some(refused) = signature_policy(state, app, &received.signature) {
        return Ok(refused);
    }
    let relay_state = received.relay_state;
    let now = state.clock.now();
    if let Some(destination) = &request.destination {
        let ours = [state.link(&app.sso_path()), state.link(&format!("/app/{}/sso/saml", app.external_key))];
        if !ours.contains(destination) {
            return Ok(invalid_request(state, app, "the Destination is not this sign-in URL"));
        }
    }
    if (request.issue_instant.millis() - now.millis()).abs() > REQUEST_WINDOW_SECS * 1000 {
        return Ok(invalid_request(state, app, "the IssueInstant is too old or in the future"));
    }
    let acs_url = match (&request.acs_url, request.acs_index) {
        (Some(url), _) => match app.settings.acs_by_url(url) {
            Some(acs) => acs.to_owned(),
            None => {
                return Ok(invalid_request(
                    state,
                    app,
                    "the AssertionConsumerServiceURL is not registered for this app",
                ));
            }
        },
        (None, Some(index)) => match app.settings.acs_by_index(index) {
            Some(acs) => acs.to_owned(),
            None => {
                return Ok(invalid_request(
                    state,
                    app,
                    "the AssertionConsumerServiceIndex is not registered",
                ));
            }
        },
        (None, None) => app.settings.sso_acs_url.clone(),
    };
    let expires = request.issue_instant.max(now).plus_seconds(REQUEST_WINDOW_SECS);
    if !state.store.remember_saml_request(&app.id, &request.id, expires).await? {
        return Ok(invalid_request(state, app, "this request was already used (replay)"));
    }
    // From here on the SP is verified and the ACS registered: errors go back as SAML statuses.
    let relay = relay_state.as_deref();
    if request
        .protocol_binding
        .as_deref()
        .is_some_and(|b| b != "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST")
    {
        return status_response(state, app, &acs_url, &request.id, status::UNSUPPORTED_BINDING, relay).await;
    }
    let Ok(name_id_format) = name_id_format_for(app, &request) else {
        return status_response(state, app, &acs_url, &request.id, status::INVALID_NAME_ID_POLICY, relay)
            .await;
    };
    if !authn_context_satisfied(app, &request) {
        return status_response(state, app, &acs_url, &request.id, status::NO_AUTHN_CONTEXT, relay).await;
    }
    let force = request.force_authn && app.settings.honor_force_authn;
    let token = inbound.param("sessionToken");
    let to = Answer {
        app,
        acs_url: &acs_url,
        in_response_to: Some(&request.id),
        relay_state: relay,
        name_id_format: name_id_format.as_deref(),
    };
    // ForceAuthn: only a session token presented with the request is a fresh enough authentication.
    let reauthentication = if force { Reauthentication::WithRequest } else { Reauthentication::NotRequired };
    let keys = state.signing_keys();
    let signed =
        sign_on(state, headers, token.as_deref(), ip, &to, reauthentication, &response_to(&to, &keys))
            .await?;
    let response = match decided(state, signed.decision, &to) {
        Some(response) => response,
        None if request.is_passive => {
            status_response(state, app, &acs_url, &request.id, status::NO_PASSIVE, relay).await?
        }
        None => {
            let resume = Secret::generate();
            let pending = PendingSso {
                id_digest: resume.digest(),
                app_id: app.id.clone(),
                request_id: request.id.clone(),
                acs_url: acs_url.clone(),
                relay_state: relay_state.clone(),
                force_authn: force,
                name_id_format: name_id_format.clone(),
                created: now,
                expires_at: now.plus_seconds(PENDING_SECS),
            };
            state.store.put_pending_sso(&pending).await?;
            web::redirect(&sign_in_for_resume(state, app, resume.expose(), force))
        }
    };
    Ok(with_cookies(state, response, &signed.browser))
}

/// A request's signature against the app's policy: a present signature must verify with the
/// app's certificate; `samlSignedRequestEnabled` requires one.
fn signature_policy(state: &AppState, app: SamlApp<'_>, signature: &SignatureCheck) -> Option<Response> {
    match signature {
        SignatureCheck::Verified => None,
        SignatureCheck::Refused(detail) => Some(invalid_request(state, app, detail)),
        SignatureCheck::Unsigned if app.settings.saml_signed_request_enabled => {
            Some(invalid_request(state, app, "this app requires signed requests"))
        }
        SignatureCheck::Unsigned => None,
    }
}

/// The sign-in page, returning to the parked request; `prompt=login` asks it to authenticate even
/// over an existing session (ForceAuthn).
fn sign_in_for_resume(state: &AppState, app: SamlApp<'_>, resume: &str, force: bool) -> String {
    let back = format!("{}?resume={resume}", app.sso_path());
    let mut url = web::sign_in_url(state, Some(&back));
    if force {
        url.push_str("&prompt=login");
    }
    url
}

/// NameIDPolicy (SAML core 3.4.1.1): unspecified or the app's own format is honoured; anything
/// else cannot be produced.
fn name_id_format_for(app: SamlApp<'_>, request: &AuthnRequest) -> Result<Option<String>, ()> {
    match request.name_id_policy_format.as_deref() {
        None => Ok(None),
        Some(latchkey_core::apps::NAME_ID_UNSPECIFIED) => Ok(None),
        Some(format) if format == app.settings.subject_name_id_format => Ok(Some(format.to_owned())),
        Some(_) => Err(()),
    }
}

/// RequestedAuthnContext (SAML core 3.3.2.2.1): with `exact` (the default) or `minimum`, one of
/// the requested classes must be the app's; `better` can never be met; `maximum` is met by ours.
fn authn_context_satisfied(app: SamlApp<'_>, request: &AuthnRequest) -> bool {
    if request.requested_authn_context.is_empty() {
        return true;
    }
    let ours = app.settings.authn_context_class_ref.as_str();
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
    app: SamlApp<'_>,
    resume: &str,
    token: Option<&str>,
) -> Result<Response, ApiError> {
    let now = state.clock.now();
    let Some(pending) = state.store.find_pending_sso(&secret_digest(resume), now).await? else {
        return Ok(refusal(
            state,
            RefusedFor::App(&app),
            BrowserError::ExpiredLink,
            StatusCode::BAD_REQUEST,
            None,
        ));
    };
    if pending.app_id != app.id {
        return Ok(unknown_app(state, &app.external_key));
    }
    let to = Answer {
        app,
        acs_url: &pending.acs_url,
        in_response_to: Some(&pending.request_id),
        relay_state: pending.relay_state.as_deref(),
        name_id_format: pending.name_id_format.as_deref(),
    };
    // ForceAuthn: only an authentication after the request arrived answers it.
    let reauthentication = if pending.force_authn {
        Reauthentication::After(pending.created)
    } else {
        Reauthentication::NotRequired
    };
    let keys = state.signing_keys();
    let encoder = Resumed { response: response_to(&to, &keys), state, id_digest: &pending.id_digest };
    match sign_on(state, headers, token, ip, &to, reauthentication, &encoder).await {
        Ok(signed) => {
            let response = decided(state, signed.decision, &to).unwrap_or_else(|| {
                web::redirect(&sign_in_for_resume(state, app, resume, pending.force_authn))
            });
            Ok(with_cookies(state, response, &signed.browser))
        }
        Err(ApiError::Core(CoreError::Store(StoreError::Conflict(_)))) => {
            Ok(refusal(state, RefusedFor::App(&app), BrowserError::ExpiredLink, StatusCode::CONFLICT, None))
        }
        Err(e) => Err(e),
    }
}

/// A parked request's Response: the request is taken (once, on any node) as the grant is encoded,
/// so two tabs resuming it get one Response; the other gets a `Conflict` (and no success logged).
struct Resumed<'a, E> {
    response: E,
    state: &'a AppState,
    id_digest: &'a str,
}

impl<E: GrantEncoder<Answer = String> + Sync> GrantEncoder for Resumed<'_, E> {
    type Answer = String;

    async fn encode(&self, grant: &Grant) -> Result<String, CoreError> {
        if !self.state.store.delete_pending_sso(self.id_digest).await? {
            return Err(StoreError::Conflict("the parked request was already answered".to_owned()).into());
        }
        self.response.encode(grant).await
    }
}
