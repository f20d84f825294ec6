//! The demo's built-in OpenID Connect relying party (`/demo/rp/`): a public client that does the
//! authorization code flow with PKCE against the org authorization server, checks the id_token's
//! signature against the published JWKS (by the JWK's numbers, as a relying party would) and its
//! issuer, audience and nonce, and shows the claims. It registers a back-channel logout URI, so
//! when the Latchkey session it was signed in with ends — a second person's session token on a
//! shared browser, say — its own session ends too, and the page says so.
//!
//! It exchanges its code by calling the token use case in-process (the demo server may not be
//! able to reach its own public URL); independent relying parties are tested in `e2e/`. Its
//! sessions live in memory: the demo runs on one node.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use latchkey_core::apps::oidc::{ClientAuthMethod, OauthClientSettings, OidcSignOn};
use latchkey_core::apps::{App, AppStatus, SignOn};
use latchkey_core::ids::{IdKind, Secret, new_id, random_alphanumeric};
use latchkey_core::oidc::{Server, jwt};
use latchkey_core::store::AppStore;
use latchkey_core::{CoreError, Timestamp};
use minijinja::context;
use serde_json::{Map, Value};
use sha2::Digest as _;

use crate::error::ApiError;
use crate::state::AppState;
use crate::web::{self, Ui};

pub const RP_HOME: &str = "/demo/rp/";
pub(super) const RP_LOGIN: &str = "/demo/rp/login";
pub(super) const RP_CALLBACK: &str = "/demo/rp/callback";
pub(super) const RP_BACKCHANNEL: &str = "/demo/rp/backchannel";
pub(super) const RP_LOGOUT: &str = "/demo/rp/logout";
const COOKIE: &str = "latchkey_demo_rp";
/// How long a sign-in started here may take.
const PENDING_SECS: i64 = 900;

/// The relying party's memory: sign-ins under way (by `state`) and its own sessions.
#[derive(Default)]
pub(super) struct TestRp {
    pending: Mutex<HashMap<String, Pending>>,
    sessions: Mutex<HashMap<String, RpSession>>,
}

struct Pending {
    nonce: String,
    verifier: String,
    expires: Timestamp,
}

#[derive(Clone)]
struct RpSession {
    claims: Map<String, Value>,
    id_token: String,
    /// Set when a back-channel logout token named this session's `sid`.
    ended_by_idp: bool,
}

/// The demo OpenID Connect app, created on the first start (assigned like the SAML demo app).
pub(super) async fn ensure_app(state: &AppState) -> Result<App, CoreError> {
    let id = state.store.org_setting("demo_oidc_app_id", &new_id(IdKind::App)).await?;
    if let Some(app) = state.store.find_app(&id).await?.filter(|a| a.id == id) {
        return Ok(app);
    }
    let base = &state.config.public_url;
    // Not `OidcSignOn::from_api`: its https-or-loopback rule is for apps elsewhere; these URIs are
    // the IdP's own public URL, whatever its scheme.
    let client: OauthClientSettings = serde_json::from_value(serde_json::json!({
        "redirect_uris": [format!("{base}{RP_CALLBACK}")],
        "post_logout_redirect_uris": [format!("{base}{RP_HOME}")],
        "initiate_login_uri": format!("{base}{RP_LOGIN}"),
        "backchannel_logout_uri": format!("{base}{RP_BACKCHANNEL}"),
        "response_types": ["code"],
        "grant_types": ["authorization_code"],
        "application_type": "browser",
    }))
    .map_err(|e| CoreError::validation("settings.oauthClient", e.to_string()))?;
    let now = state.clock.now();
    let app = App {
        id: id.clone(),
        name: format!("{}_{id}", latchkey_core::apps::OIDC_APP_NAME),
        label: "Latchkey test RP".to_owned(),
        status: AppStatus::Active,
        external_key: new_id(IdKind::AppExternalKey),
        link_id: new_id(IdKind::AppLink),
        sign_on: SignOn::Oidc(OidcSignOn {
            client,
            token_endpoint_auth_method: ClientAuthMethod::None,
            pkce_required: true,
            secrets: Vec::new(),
        }),
        visibility: Map::new(),
        created: now,
        last_updated: now,
    };
    state.store.insert_app(&app).await?;
    Ok(app)
}

fn rp_session_id(headers: &HeaderMap) -> Option<String> {
    web::cookie_value(headers, COOKIE)
}

/// `GET /demo/rp/`: who is signed in here, with the id_token's claims.
pub(super) async fn home(
    State(state): State<AppState>,
    Extension(rp): Extension<Arc<TestRp>>,
    headers: HeaderMap,
) -> Response {
    let ui = Ui::new(&state, &headers);
    let session = rp_session_id(&headers)
        .and_then(|id| rp.sessions.lock().ok().and_then(|sessions| sessions.get(&id).cloned()));
    let page = match session {
        Some(session) => {
            let claims: Vec<_> = session
                .claims
                .iter()
                .map(|(name, value)| {
                    let shown = match value {
                        Value::String(text) => text.clone(),
                        other => other.to_string(),
                    };
                    context! { name, value => shown }
                })
                .collect();
            let login = session.claims.get("preferred_username").and_then(Value::as_str).unwrap_or_default();
            context! {
                signed_in => login,
                ended => session.ended_by_idp,
                claims,
                signout => RP_LOGOUT,
            }
        }
        None => context! { signed_in => () },
    };
    ui.render(&state, StatusCode::OK, "demo_rp.html", page)
}

/// `GET /demo/rp/login[?sessionToken=…]`: starts the code flow with PKCE (RFC 7636 §4.1–4.2),
/// passing a session token on when the kiosk sent one.
pub(super) async fn login(
    State(state): State<AppState>,
    Extension(rp): Extension<Arc<TestRp>>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
) -> Response {
    let app = match ensure_app(&state).await {
        Ok(app) => app,
        Err(e) => return ApiError::from(e).into_page(&state, &headers),
    };
    let token = url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "sessionToken")
        .map(|(_, v)| v.into_owned());
    let now = state.clock.now();
    let client_state = random_alphanumeric(32);
    let nonce = random_alphanumeric(32);
    let verifier = Secret::generate().expose().to_owned();
    let challenge = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        sha2::Sha256::digest(verifier.as_bytes()),
    );
    if let Ok(mut pending) = rp.pending.lock() {
        pending.retain(|_, p| p.expires > now);
        pending.insert(
            client_state.clone(),
            Pending { nonce: nonce.clone(), verifier, expires: now.plus_seconds(PENDING_SECS) },
        );
    }
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("client_id", &app.id)
        .append_pair("redirect_uri", &state.link(RP_CALLBACK))
        .append_pair("response_type", "code")
        .append_pair("scope", "openid profile email groups")
        .append_pair("state", &client_state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    if let Some(token) = token.filter(|t| !t.is_empty()) {
        query.append_pair("sessionToken", &token);
    }
    web::see_other(&format!("{}/authorize?{}", Server::Org.endpoint_base(), query.finish()))
}

/// `GET /demo/rp/callback?code=…&state=…`: redeems the code and checks the id_token.
pub(super) async fn callback(
    State(state): State<AppState>,
    Extension(rp): Extension<Arc<TestRp>>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
) -> Response {
    let params: HashMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()).into_owned().collect();
    let ui = Ui::new(&state, &headers);
    let refused = |reason: String| {
        ui.render(
            &state,
            StatusCode::FORBIDDEN,
            "demo_rp.html",
            context! { signed_in => (), refused => reason },
        )
    };
    if let Some(error) = params.get("error") {
        let description = params.get("error_description").cloned().unwrap_or_default();
        return refused(format!("{error}: {description}"));
    }
    let pending = params.get("state").and_then(|s| rp.pending.lock().ok().and_then(|mut p| p.remove(s)));
    let (Some(pending), Some(code)) = (pending, params.get("code")) else {
        return refused(
            "the answer matches no sign-in this app started (or one already finished)".to_owned(),
        );
    };
    let app = match ensure_app(&state).await {
        Ok(app) => app,
        Err(e) => return ApiError::from(e).into_page(&state, &headers),
    };
    let base = state.base();
    let keys = state.signing_keys();
    let oauth = state.oauth(&keys, &base);
    let redirect = state.link(RP_CALLBACK);
    let tokens =
        match oauth.redeem_code(&app, Server::Org, code, Some(&redirect), Some(&pending.verifier)).await {
            Ok(tokens) => tokens,
            Err(error) => return refused(format!("{}: {}", error.code.as_str(), error.description)),
        };
    let Some(id_token) = tokens.id_token else { return refused("no id_token".to_owned()) };
    let claims = match verified(&state, &id_token).await {
        Ok(claims) => claims,
        Err(reason) => return refused(reason),
    };
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    if text("iss") != Some(base.as_str())
        || text("aud") != Some(app.id.as_str())
        || text("nonce") != Some(&pending.nonce)
    {
        return refused("the id_token's issuer, audience or nonce is not this sign-in's".to_owned());
    }
    let id = random_alphanumeric(32);
    if let Ok(mut sessions) = rp.sessions.lock() {
        sessions.insert(id.clone(), RpSession { claims, id_token, ended_by_idp: false });
    }
    let mut response = web::see_other(RP_HOME);
    if let Ok(cookie) =
        HeaderValue::from_str(&format!("{COOKIE}={id}; Path=/demo/rp; HttpOnly; SameSite=Lax"))
    {
        response.headers_mut().append(SET_COOKIE, cookie);
    }
    response
}

/// `GET /demo/rp/logout`: ends this app's own session first (so its page no longer shows anyone),
/// then RP-initiated logout at Latchkey (OpenID Connect RP-Initiated Logout 1.0), which comes back
/// to the RP's page.
pub(super) async fn logout(
    State(state): State<AppState>,
    Extension(rp): Extension<Arc<TestRp>>,
    headers: HeaderMap,
) -> Response {
    let ended =
        rp_session_id(&headers).and_then(|id| rp.sessions.lock().ok().and_then(|mut s| s.remove(&id)));
    let Some(session) = ended else { return web::see_other(RP_HOME) };
    let hint: String = url::form_urlencoded::byte_serialize(session.id_token.as_bytes()).collect();
    let back: String = url::form_urlencoded::byte_serialize(state.link(RP_HOME).as_bytes()).collect();
    web::see_other(&format!("/oauth2/v1/logout?id_token_hint={hint}&post_logout_redirect_uri={back}"))
}

/// The claims of a JWT whose signature verifies under one of the published JWKS keys.
async fn verified(state: &AppState, token: &str) -> Result<Map<String, Value>, String> {
    let keys = state.signing_keys().published().await.map_err(|e| e.to_string())?;
    let jwks = jwt::jwks(&keys);
    let (header, claims, signature) = jwt::split(token).map_err(|e| e.to_string())?;
    let kid = header.get("kid").and_then(Value::as_str).unwrap_or_default();
    let jwk = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == kid))
        .ok_or("the token's key is not in the JWKS")?;
    let public = jwt::rsa_public_key_of_jwk(jwk).ok_or("the JWK is not an RSA key")?;
    jwt::verify_rs256(&public, token, &signature).map_err(|e| e.to_string())?;
    Ok(claims)
}

/// `POST /demo/rp/backchannel`: a logout token from Latchkey (OIDC Back-Channel Logout 1.0 §2.6):
/// verified, then every session of this app with that `sid` is marked ended.
pub(super) async fn backchannel(
    State(state): State<AppState>,
    Extension(rp): Extension<Arc<TestRp>>,
    body: Bytes,
) -> Response {
    let token =
        url::form_urlencoded::parse(&body).find(|(k, _)| k == "logout_token").map(|(_, v)| v.into_owned());
    let Some(token) = token else { return StatusCode::BAD_REQUEST.into_response() };
    let claims = match verified(&state, &token).await {
        Ok(claims) => claims,
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    let logout_event =
        claims.get("events").and_then(|e| e.get("http://schemas.openid.net/event/backchannel-logout"));
    let Some(sid) = claims.get("sid").and_then(Value::as_str).filter(|_| logout_event.is_some()) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    if let Ok(mut sessions) = rp.sessions.lock() {
        for session in sessions.values_mut() {
            if session.claims.get("sid").and_then(Value::as_str) == Some(sid) {
                session.ended_by_idp = true;
            }
        }
    }
    StatusCode::OK.into_response()
}
