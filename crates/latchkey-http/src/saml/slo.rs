//! Single Logout (SAML profiles 4.4) at `/app/{appName}/{externalKey}/slo/saml`, front-channel.
//!
//! An SP's LogoutRequest must be signed (profiles 4.4.4.1) by its registered certificate; it ends
//! the IdP session its SessionIndex names, then the browser is walked through every other app of
//! that session that takes part in SLO (a signed LogoutRequest over HTTP-Redirect to each, whose
//! LogoutResponse comes back here), and finally the initiator gets a signed LogoutResponse at its
//! registered logout URL. `/login/signout` (served here) starts the same walk with no initiator. An app whose
//! LogoutResponse cannot be accepted (unsigned, wrongly signed, answering another request,
//! undecodable) is passed over when the walk was waiting for that very app: the walk goes on and
//! ends in `PartialLogout`; any other such response is refused and moves no walk. The walk lives
//! in the database under the digest of a secret that travels as RelayState, so any node can
//! continue it.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use latchkey_core::CoreError;
use latchkey_core::apps::sso::LogoutWalk;
use latchkey_core::apps::{App, SamlApp};
use latchkey_core::ids::{Secret, secret_digest};
use latchkey_core::saml::inbound::{LogoutRequest, LogoutResponse, SamlMessage};
use latchkey_core::saml::logout::{
    LogoutOutcome, build_logout_request, build_logout_response, redirect_binding_url,
};
use latchkey_core::saml::response::status;
use latchkey_core::saml::{MessageParam, new_saml_id};
use latchkey_core::sessions::EndReason;
use latchkey_core::signon::Participant;
use latchkey_core::store::{AppStore, SamlStore, SignOnStore};

use super::{Received, RefusedFor, SignatureCheck, refusal};
use crate::error::ApiError;
use crate::extract::{ClientIp, PathParams, QueryParams};
use crate::state::AppState;
use crate::web::{self, BrowserError, redirect};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/app/{key}/{external_key}/slo/saml", get(slo_get).post(slo_post))
        .route("/login/signout", get(signout))
}

/// How long a logout walk may take (each SP answers within seconds normally).
const WALK_SECS: i64 = 600;
const REQUEST_WINDOW_SECS: i64 = 300;

async fn slo_get(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    PathParams((app_name, external_key)): PathParams<(String, String)>,
) -> Response {
    let query = uri.query().unwrap_or_default().to_owned();
    let result = async {
        let Some(found) = find(&state, &app_name, &external_key).await? else {
            return Ok(unknown(&state, &external_key));
        };
        let Some(app) = found.saml() else { return Ok(unknown(&state, &external_key)) };
        let received = match super::receive_redirect(app, &query) {
            Ok(received) => received,
            Err(detail) => {
                let params: Vec<(String, String)> =
                    url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
                let relay_state = undecoded_response_relay_state(&params);
                return refused_response(&state, app, relay_state, &detail).await;
            }
        };
        handle(&state, ip.as_deref(), &headers, app, received).await
    }
    .await;
    result.unwrap_or_else(|e: ApiError| e.into_response())
}

async fn slo_post(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    PathParams((app_name, external_key)): PathParams<(String, String)>,
    body: Bytes,
) -> Response {
    let result = async {
        let Some(found) = find(&state, &app_name, &external_key).await? else {
            return Ok(unknown(&state, &external_key));
        };
        let Some(app) = found.saml() else { return Ok(unknown(&state, &external_key)) };
        let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
        let received = match super::receive_post(app, &form, &["SAMLRequest", "SAMLResponse"]) {
            Ok(received) => received,
            Err(detail) => {
                let relay_state = undecoded_response_relay_state(&form);
                return refused_response(&state, app, relay_state, &detail).await;
            }
        };
        handle(&state, ip.as_deref(), &headers, app, received).await
    }
    .await;
    result.unwrap_or_else(|e: ApiError| e.into_response())
}

async fn find(state: &AppState, app_name: &str, external_key: &str) -> Result<Option<App>, ApiError> {
    Ok(state
        .store
        .find_app(external_key)
        .await?
        .filter(|app| app.external_key == external_key && app.name == app_name && app.is_active()))
}

fn unknown(state: &AppState, external_key: &str) -> Response {
    refusal(state, RefusedFor::Key(external_key), BrowserError::UnknownApp, StatusCode::NOT_FOUND, None)
}

fn invalid(state: &AppState, app: SamlApp<'_>, detail: &str) -> Response {
    let kind = BrowserError::InvalidLogoutRequest;
    refusal(state, RefusedFor::App(&app), kind, StatusCode::BAD_REQUEST, Some(detail))
}

async fn handle(
    state: &AppState,
    ip: Option<&str>,
    headers: &HeaderMap,
    app: SamlApp<'_>,
    received: Received,
) -> Result<Response, ApiError> {
    let relay_state = received.relay_state.as_deref();
    if let Some(detail) = sender_refusal(app, &received) {
        if matches!(received.decoded.message, SamlMessage::LogoutResponse(_)) {
            return refused_response(state, app, relay_state, detail).await;
        }
        return Ok(invalid(state, app, detail));
    }
    match &received.decoded.message {
        SamlMessage::LogoutRequest(request) => {
            logout_request(state, ip, headers, app, request, relay_state).await
        }
        SamlMessage::LogoutResponse(response) => logout_response(state, app, response, relay_state).await,
        SamlMessage::AuthnRequest(_) => Ok(invalid(state, app, "this endpoint accepts logout messages only")),
    }
}

/// Why the message cannot be taken as coming from this app's SP, if it cannot.
fn sender_refusal<'a>(app: SamlApp<'_>, received: &'a Received) -> Option<&'a str> {
    if !app.settings.is_sp(received.decoded.message.issuer()) {
        return Some("the Issuer is not this app's service provider");
    }
    // Profiles 4.4.4.1 and 4.4.4.2: logout messages must be signed (or bound by a signature).
    match &received.signature {
        SignatureCheck::Verified => None,
        SignatureCheck::Refused(detail) => Some(detail),
        SignatureCheck::Unsigned => Some("logout messages must be signed"),
    }
}

/// A verified LogoutResponse from this app's SP: settles the request the walk sent it, and goes on.
async fn logout_response(
    state: &AppState,
    app: SamlApp<'_>,
    response: &LogoutResponse,
    relay_state: Option<&str>,
) -> Result<Response, ApiError> {
    if response.destination.as_ref().is_some_and(|d| *d != state.link(&app.slo_path())) {
        return refused_response(state, app, relay_state, "the Destination is not this logout URL").await;
    }
    let Some(secret) = relay_state else {
        return Ok(invalid(state, app, "the LogoutResponse has no RelayState to continue with"));
    };
    let Some(mut walk) = find_walk(state, secret).await? else {
        return Ok(invalid(state, app, "this logout has expired or is unknown"));
    };
    // A walk stored before `awaiting_app_id` existed names no app: the ID of the request, sent to
    // one app only, is then what identifies the answer.
    let from_awaited_app = walk.awaits(&app.id) || walk.awaiting_app_id.is_none();
    let answers_our_request =
        response.in_response_to.is_some() && response.in_response_to == walk.awaiting_request_id;
    if !(from_awaited_app && answers_our_request) {
        let detail = "the LogoutResponse answers no request of this logout";
        return go_on_without(state, app, secret, walk, detail).await;
    }
    if response.status_code != status::SUCCESS {
        walk.partial = true;
    }
    walk.awaiting_request_id = None;
    walk.awaiting_app_id = None;
    step(state, walk, secret).await
}

async fn find_walk(state: &AppState, secret: &str) -> Result<Option<LogoutWalk>, ApiError> {
    Ok(state.store.find_logout_walk(&secret_digest(secret), state.clock.now()).await?)
}

/// The RelayState of a LogoutResponse whose message could not be decoded: it travels beside the
/// message in both bindings, so it still names the walk the response belongs to.
fn undecoded_response_relay_state(params: &[(String, String)]) -> Option<&str> {
    let has = |name: &str| params.iter().any(|(key, _)| key == name);
    if !has("SAMLResponse") || has("SAMLRequest") {
        return None;
    }
    params.iter().find(|(key, _)| key == "RelayState").map(|(_, value)| value.as_str())
}

/// A LogoutResponse that cannot be accepted, for `detail`: the walk its RelayState names goes on
/// without this app when it awaits this app's answer; anything else is refused with the page.
async fn refused_response(
    state: &AppState,
    app: SamlApp<'_>,
    relay_state: Option<&str>,
    detail: &str,
) -> Result<Response, ApiError> {
    let Some(secret) = relay_state else { return Ok(invalid(state, app, detail)) };
    let Some(walk) = find_walk(state, secret).await? else { return Ok(invalid(state, app, detail)) };
    go_on_without(state, app, secret, walk, detail).await
}

/// One faulty SP must not strand the user's logout at the other apps and leave the initiator
/// unanswered (the IdP session has already ended, so going on grants nothing): when the walk
/// awaits this app, it is marked partial (the initiator hears `PartialLogout`, never `Success`)
/// and goes on. A walk that awaits another app, or nothing, is not touched, so no one can advance
/// someone else's logout with a RelayState alone.
async fn go_on_without(
    state: &AppState,
    app: SamlApp<'_>,
    secret: &str,
    mut walk: LogoutWalk,
    detail: &str,
) -> Result<Response, ApiError> {
    if !walk.awaits(&app.id) {
        return Ok(invalid(state, app, detail));
    }
    // As `refusal` logs a refused message: the request id, the app and the reason; no payload.
    let request_id = crate::request_id::current();
    tracing::warn!(
        request_id,
        app_id = app.id.as_str(),
        external_key = ?app.external_key,
        reason = detail,
        "SAML message refused; the logout goes on without this app (PartialLogout)"
    );
    walk.partial = true;
    walk.awaiting_request_id = None;
    walk.awaiting_app_id = None;
    step(state, walk, secret).await
}

async fn logout_request(
    state: &AppState,
    ip: Option<&str>,
    headers: &HeaderMap,
    app: SamlApp<'_>,
    request: &LogoutRequest,
    relay_state: Option<&str>,
) -> Result<Response, ApiError> {
    if !app.settings.slo.as_ref().is_some_and(|s| s.enabled && s.logout_url.is_some()) {
        return Ok(invalid(state, app, "Single Logout is not enabled for this app"));
    }
    let now = state.clock.now();
    if let Some(destination) = &request.destination
        && *destination != state.link(&app.slo_path())
    {
        return Ok(invalid(state, app, "the Destination is not this logout URL"));
    }
    if request.not_on_or_after.is_some_and(|t| t <= now)
        || (request.issue_instant.millis() - now.millis()).abs() > REQUEST_WINDOW_SECS * 1000
    {
        return Ok(invalid(state, app, "the request has expired"));
    }
    let expires = request.issue_instant.max(now).plus_seconds(REQUEST_WINDOW_SECS);
    if !state.store.remember_saml_request(&app.id, &request.id, expires).await? {
        return Ok(invalid(state, app, "this request was already used (replay)"));
    }
    let participant = find_participant(state, headers, app, request).await?;
    let mut clear_cookie = false;
    let mut remaining = Vec::new();
    let mut partial = false;
    if let Some(participant) = &participant {
        remaining = others(state, &participant.session_id, Some(&app.id)).await?;
        end_session(state, &participant.session_id, ip).await?;
        let browser = web::browser_session_id(state, headers).await?;
        clear_cookie = browser.is_none_or(|id| id == participant.session_id);
    } else if let Some(browser) = web::browser_session_id(state, headers).await?
        && state.store.find_participant(&browser, &app.id).await?.is_some()
    {
        // The SP's SessionIndex names no session of ours, yet this browser is still signed in to
        // the app through a session the request did not name: that session is not ended (the
        // request does not identify it), and the SP must not be told that all is logged out.
        partial = true;
    }
    let secret = Secret::generate();
    let walk = LogoutWalk {
        id_digest: secret.digest(),
        initiator_app_id: Some(app.id.clone()),
        initiator_request_id: Some(request.id.clone()),
        initiator_relay_state: relay_state.map(str::to_owned),
        return_to: None,
        remaining,
        awaiting_request_id: None,
        awaiting_app_id: None,
        partial,
        expires_at: now.plus_seconds(WALK_SECS),
    };
    let mut response = step(state, walk, secret.expose()).await?;
    if clear_cookie {
        web::cookies::clear_session_cookie(state, &mut response);
    }
    Ok(response)
}

/// The participant record the request names: by SessionIndex, else the browser's own session.
async fn find_participant(
    state: &AppState,
    headers: &HeaderMap,
    app: SamlApp<'_>,
    request: &LogoutRequest,
) -> Result<Option<Participant>, ApiError> {
    for index in &request.session_indexes {
        if let Some(p) = state.store.find_participant_by_index(&app.id, index).await?
            && p.name_id == request.name_id
        {
            return Ok(Some(p));
        }
    }
    if !request.session_indexes.is_empty() {
        return Ok(None);
    }
    let Some(session_id) = web::browser_session_id(state, headers).await? else { return Ok(None) };
    Ok(state.store.find_participant(&session_id, &app.id).await?.filter(|p| p.name_id == request.name_id))
}

/// The session's other apps that take part in SLO, in the order they were visited.
async fn others(
    state: &AppState,
    session_id: &str,
    except: Option<&str>,
) -> Result<Vec<Participant>, ApiError> {
    let mut out = Vec::new();
    for participant in state.store.list_participants(session_id).await? {
        if Some(participant.app_id.as_str()) == except {
            continue;
        }
        if let Some(app) = state.store.find_app(&participant.app_id).await?
            && app.is_active()
            && app.saml().is_some_and(|saml| saml.settings.participates_in_slo())
        {
            out.push(participant);
        }
    }
    Ok(out)
}

async fn end_session(state: &AppState, session_id: &str, ip: Option<&str>) -> Result<(), ApiError> {
    let session = match state.sessions().by_id(session_id).await {
        Ok(session) => session,
        Err(CoreError::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    state.sessions().end(&session, EndReason::Logout, None, ip).await?;
    Ok(())
}

/// Tells the next app, or finishes the walk.
async fn step(state: &AppState, mut walk: LogoutWalk, secret: &str) -> Result<Response, ApiError> {
    let keys = state.signing_keys().current().await?;
    let now = state.clock.now();
    while !walk.remaining.is_empty() {
        let next = walk.remaining.remove(0);
        let Some(found) = state.store.find_app(&next.app_id).await? else { continue };
        let Some(app) = found.saml() else { continue };
        let Some(url) = app.settings.participate_slo.as_ref().and_then(|p| p.logout_request_url.clone())
        else {
            continue;
        };
        let id = new_saml_id();
        let xml = build_logout_request(
            &id,
            now,
            &app.idp_issuer(),
            &url,
            &next.name_id,
            &next.name_id_format,
            Some(&next.session_index),
        )
        .map_err(|e| CoreError::Crypto(e.to_string()))?;
        let target = redirect_binding_url(&url, MessageParam::SamlRequest, &xml, Some(secret), &keys.active)
            .map_err(|e| CoreError::Crypto(e.to_string()))?;
        walk.awaiting_request_id = Some(id);
        walk.awaiting_app_id = Some(app.id.clone());
        state.store.put_logout_walk(&walk).await?;
        return Ok(redirect(&target));
    }
    state.store.delete_logout_walk(&walk.id_digest).await?;
    if let (Some(app_id), Some(request_id)) = (&walk.initiator_app_id, &walk.initiator_request_id)
        && let Some(found) = state.store.find_app(app_id).await?
        && let Some(app) = found.saml()
        && let Some(logout_url) = app.settings.slo.as_ref().and_then(|s| s.logout_url.clone())
    {
        let outcome = if walk.partial { LogoutOutcome::Partial } else { LogoutOutcome::Success };
        let xml =
            build_logout_response(&new_saml_id(), now, &app.idp_issuer(), &logout_url, request_id, outcome)
                .map_err(|e| CoreError::Crypto(e.to_string()))?;
        let relay = walk.initiator_relay_state.as_deref();
        let target = redirect_binding_url(&logout_url, MessageParam::SamlResponse, &xml, relay, &keys.active)
            .map_err(|e| CoreError::Crypto(e.to_string()))?;
        return Ok(redirect(&target));
    }
    let to = walk.return_to.unwrap_or_else(|| web::sign_in_url(state, None));
    Ok(redirect(&to))
}

/// `GET /login/signout[?fromURI=…]` (Okta's sign-out endpoint): ends the browser's session, tells
/// the apps of that session that take part in Single Logout (front-channel, one after the other),
/// clears the cookie and goes to `fromURI` when it is a local path or on a trusted REDIRECT origin,
/// else to the sign-in page. The dashboard's sign-out button comes here too.
async fn signout(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    params: QueryParams,
) -> Response {
    if state.config.signout_requires_same_site && !same_site_or_proven(&state, &headers, &params) {
        return confirm_signout(&state, &headers, params.get("fromURI"));
    }
    let ended = match web::browser_session(&state, &headers).await {
        Ok(Some((session, _, _))) => {
            if let Err(e) = state.sessions().end(&session, EndReason::Logout, None, ip.as_deref()).await {
                return ApiError::from(e).into_page(&state, &headers);
            }
            Some(session.id)
        }
        Ok(None) => None,
        Err(e) => return ApiError::from(e).into_page(&state, &headers),
    };
    // As after sign-in: a local path, or a URL on a trusted REDIRECT origin; else the sign-in page.
    let to = match web::checked_from_uri(&state, params.get("fromURI")).await {
        Ok(Some(path)) if web::is_local_path(&path) => state.link(&path),
        Ok(Some(url)) => url,
        Ok(None) => web::sign_in_url(&state, None),
        Err(e) => return ApiError::from(e).into_page(&state, &headers),
    };
    let walk = match ended {
        Some(id) => start_signout_walk(&state, &id, &to).await,
        None => Ok(None),
    };
    let mut response = match walk {
        Ok(Some(walk)) => walk,
        Ok(None) => redirect(&to),
        Err(e) => return e.into_page(&state, &headers),
    };
    web::cookies::clear_session_cookie(&state, &mut response);
    response
}

/// With `signout_requires_same_site`: the browser says the request came from this site
/// (`Sec-Fetch-Site: same-origin`, `same-site`, or `none` for a typed address or bookmark), or
/// it carries the CSRF token of the sign-out form. A cross-site link or image cannot do either.
fn same_site_or_proven(state: &AppState, headers: &HeaderMap, params: &QueryParams) -> bool {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    matches!(fetch_site, Some("same-origin" | "same-site" | "none"))
        || params.get("_csrf").is_some_and(|token| web::csrf::check(state, headers, Some(token)))
}

/// The question a cross-site sign-out link gets instead of an ended session: a button that posts
/// the sign-out form (with its CSRF token) and keeps `fromURI`.
fn confirm_signout(state: &AppState, headers: &HeaderMap, from_uri: Option<&str>) -> Response {
    let ui = web::Ui::new(state, headers);
    let page = minijinja::context! {
        title => ui.text("signout.confirm_title"),
        heading => ui.text("signout.confirm_title"),
        message => ui.text("signout.confirm_message"),
        signout_form => true,
        from_uri => from_uri.filter(|f| f.len() <= 2048),
        back_label => ui.text("signout.confirm_button"),
    };
    ui.render(state, StatusCode::OK, "message.html", page)
}

/// `/login/signout` for a session that visited apps taking part in SLO: walks them, then goes to
/// `return_to`. `None` when there is nothing to walk (the caller redirects directly).
async fn start_signout_walk(
    state: &AppState,
    session_id: &str,
    return_to: &str,
) -> Result<Option<Response>, ApiError> {
    let remaining = others(state, session_id, None).await?;
    if remaining.is_empty() {
        return Ok(None);
    }
    let secret = Secret::generate();
    let walk = LogoutWalk {
        id_digest: secret.digest(),
        initiator_app_id: None,
        initiator_request_id: None,
        initiator_relay_state: None,
        return_to: Some(return_to.to_owned()),
        remaining,
        awaiting_request_id: None,
        awaiting_app_id: None,
        partial: false,
        expires_at: state.clock.now().plus_seconds(WALK_SECS),
    };
    Ok(Some(step(state, walk, secret.expose()).await?))
}
