//! OpenID Connect and OAuth 2.0 at Okta's URLs, for both authorization servers: the org server
//! (`/oauth2/v1/*`, discovery at `/.well-known/openid-configuration`) and the `default` custom
//! server (`/oauth2/default/v1/*`, discovery at `/oauth2/default/.well-known/...`).
//!
//! `authorize` checks the request in the core (`oidc::authorize::check`), then makes one call to
//! the sign-on core with a code issuer as the grant's encoder, exactly as SAML does with its
//! Response: the session-token rule, the access decision and the system log are the same for both
//! protocols. The token endpoint authenticates the client and redeems the code in the core; this
//! module maps HTTP onto those calls and OAuth errors onto RFC 6749 §5.2's JSON.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, PRAGMA, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use latchkey_core::apps::App;
use latchkey_core::oidc::authorize::{self, AuthorizeRequest, Prompt, Refused, ResponseMode};
use latchkey_core::oidc::service::{ClientCredentials, CodeIssuer, ImplicitIssuer, OAuth};
use latchkey_core::oidc::{ErrorCode, OAuthError, STANDARD_SCOPES, Server, jwt};
use latchkey_core::sessions::BrowserRequest;
use latchkey_core::signon::{Decision, Reauthentication, Refusal, SignOnRequest};
use latchkey_core::store::{AppStore, OAuthStore};
use latchkey_core::{Timestamp, origins};
use serde_json::{Value, json};

use latchkey_core::signing_keys::service::SigningKeys;
use latchkey_store::Store;

use crate::SpawnBlocking;
use crate::audit::EventLog;
use crate::error::ApiError;
use crate::extract::ClientIp;
use crate::state::AppState;
use crate::web::{self, BrowserError};

pub(crate) fn routes() -> Router<AppState> {
    let mut router = Router::new();
    for server in [Server::Org, Server::Default] {
        let base = server.endpoint_base();
        let discovery = match server {
            Server::Org => String::new(),
            Server::Default => "/oauth2/default".to_owned(),
        };
        router =
            router
                .route(
                    &format!("{discovery}/.well-known/openid-configuration"),
                    get(move |state: State<AppState>| async move {
                        discovery_document(&state, server, true).await
                    }),
                )
                .route(
                    &format!("{discovery}/.well-known/oauth-authorization-server"),
                    get(move |state: State<AppState>| async move {
                        discovery_document(&state, server, false).await
                    }),
                )
                .route(&format!("{base}/keys"), get(keys))
                .route(
                    &format!("{base}/authorize"),
                    get(move |state, ip, headers, uri| authorize_get(server, state, ip, headers, uri)).post(
                        move |state, ip, headers, body| authorize_post(server, state, ip, headers, body),
                    ),
                )
                .route(
                    &format!("{base}/token"),
                    axum::routing::post(move |state, headers, body| token(server, state, headers, body)),
                )
                .route(
                    &format!("{base}/introspect"),
                    axum::routing::post(
                        move |State(state): State<AppState>, headers: HeaderMap, body: Bytes| async move {
                            token_call(server, &state, &headers, &body, TokenCall::Introspect).await
                        },
                    ),
                )
                .route(
                    &format!("{base}/revoke"),
                    axum::routing::post(
                        move |State(state): State<AppState>, headers: HeaderMap, body: Bytes| async move {
                            token_call(server, &state, &headers, &body, TokenCall::Revoke).await
                        },
                    ),
                )
                .route(
                    &format!("{base}/logout"),
                    get(move |state, ip, headers, uri| logout_get(server, state, ip, headers, uri))
                        .post(move |state, ip, headers, body| logout_post(server, state, ip, headers, body)),
                )
                .route(
                    &format!("{base}/userinfo"),
                    get(move |state, headers| userinfo(server, state, headers, Bytes::new()))
                        .post(move |state, headers, body| userinfo(server, state, headers, body)),
                );
    }
    router
}

/// Discovery (OpenID Connect Discovery 1.0 §3; RFC 8414 §2): only what is served.
async fn discovery_document(state: &AppState, server: Server, openid: bool) -> Response {
    let base = state.base();
    let mut scopes: Vec<String> = STANDARD_SCOPES.iter().map(|s| (*s).to_owned()).collect();
    let mut grant_types = vec!["authorization_code", "implicit", "refresh_token"];
    if server == Server::Default {
        match state.store.list_custom_scopes().await {
            Ok(custom) => scopes
                .extend(custom.into_iter().filter(|s| s.metadata_publish == "ALL_CLIENTS").map(|s| s.name)),
            Err(e) => return ApiError::from(e).into_response(),
        }
        grant_types.push("client_credentials");
    }
    let endpoint = |name: &str| format!("{base}{}/{name}", server.endpoint_base());
    let mut document = json!({
        "issuer": server.issuer(&base),
        "authorization_endpoint": endpoint("authorize"),
        "token_endpoint": endpoint("token"),
        "userinfo_endpoint": endpoint("userinfo"),
        "jwks_uri": endpoint("keys"),
        "introspection_endpoint": endpoint("introspect"),
        "revocation_endpoint": endpoint("revoke"),
        "end_session_endpoint": endpoint("logout"),
        "introspection_endpoint_auth_methods_supported":
            ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "revocation_endpoint_auth_methods_supported":
            ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "response_types_supported": ["code", "id_token", "token", "id_token token"],
        "response_modes_supported": ["query", "fragment", "form_post", "okta_post_message"],
        "grant_types_supported": grant_types,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": scopes,
        "token_endpoint_auth_methods_supported":
            ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256"],
        "claims_supported": [
            "iss", "ver", "sub", "aud", "iat", "exp", "jti", "auth_time", "amr", "idp", "nonce", "sid",
            "name", "nickname", "preferred_username", "given_name", "middle_name", "family_name",
            "email", "email_verified", "profile", "zoneinfo", "locale", "address", "phone_number",
            "updated_at", "groups", "at_hash",
        ],
        "code_challenge_methods_supported": ["S256"],
        "request_parameter_supported": false,
        "claims_parameter_supported": false,
    });
    if !openid && let Some(object) = document.as_object_mut() {
        object.remove("userinfo_endpoint");
        object.remove("end_session_endpoint");
        object.remove("subject_types_supported");
        object.remove("id_token_signing_alg_values_supported");
        object.remove("claims_supported");
    }
    let mut response = Json(document).into_response();
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("max-age=300, public"));
    response
}

/// The JWK Set (RFC 7517 §5) of the organisation's published signing keys: this node's key set,
/// read at most `KEYS_FRESH_FOR` (5 s) ago, so a staged key is published within seconds and
/// relying parties polling the keys do not each cost a database read.
async fn keys(State(state): State<AppState>) -> Result<Response, ApiError> {
    let keys = state.signing_keys().current().await?;
    let mut response = Json(jwt::jwks(&keys)).into_response();
    // Short, so that a staged key reaches clients well before it signs.
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("max-age=300, public"));
    Ok(response)
}

async fn authorize_get(
    server: Server,
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
) -> Response {
    let params: Vec<(String, String)> =
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()).into_owned().collect();
    authorize(server, &state, ip.as_deref(), &headers, params).await
}

async fn authorize_post(
    server: Server,
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    authorize(server, &state, ip.as_deref(), &headers, params).await
}

/// The query parameter a sign-in that `prompt=login` asked for adds to the return URL: the
/// authentication must be later than this instant (milliseconds).
const LOGIN_AFTER: &str = "login_after";
/// How far back a `login_after` may reach: an edited return URL cannot stretch `prompt=login`
/// further than this.
const LOGIN_AFTER_WINDOW_SECS: i64 = 900;

async fn authorize(
    server: Server,
    state: &AppState,
    ip: Option<&str>,
    headers: &HeaderMap,
    params: Vec<(String, String)>,
) -> Response {
    match authorize_inner(server, state, ip, headers, params).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

fn bad_request_page(state: &AppState, headers: &HeaderMap, detail: &str) -> Response {
    tracing::warn!(reason = detail, "OAuth authorization request refused");
    web::error_page_with_detail(
        state,
        headers,
        BrowserError::InvalidOAuthRequest,
        StatusCode::BAD_REQUEST,
        Some(detail),
    )
}

async fn authorize_inner(
    server: Server,
    state: &AppState,
    ip: Option<&str>,
    headers: &HeaderMap,
    params: Vec<(String, String)>,
) -> Result<Response, ApiError> {
    let client_id =
        params.iter().find(|(k, _)| k == "client_id").map(|(_, v)| v.as_str()).unwrap_or_default();
    let app = match state.store.find_app(client_id).await? {
        Some(app) if app.id == client_id && !client_id.is_empty() => app,
        _ => return Ok(bad_request_page(state, headers, "the client_id names no app")),
    };
    let Some(oidc) = app.oidc() else {
        return Ok(bad_request_page(
            state,
            headers,
            "the client_id names an app that is not an OpenID Connect app",
        ));
    };
    let custom_scopes: Vec<String> = match server {
        Server::Default => state.store.list_custom_scopes().await?.into_iter().map(|s| s.name).collect(),
        Server::Org => Vec::new(),
    };
    let request = match authorize::check(server, client_id, oidc, &custom_scopes, &params) {
        Ok(request) => request,
        Err(Refused::Page(detail)) => return Ok(bad_request_page(state, headers, &detail)),
        Err(Refused::Redirect { redirect_uri, mode, state: client_state, error }) => {
            return Ok(answer(&redirect_uri, mode, &error_fields(&error, client_state.as_deref())));
        }
    };
    let now = state.clock.now();
    let login_after = params
        .iter()
        .find(|(k, _)| k == LOGIN_AFTER)
        .and_then(|(_, v)| login_after_instant(state, client_id, v))
        .map(|millis| {
            Timestamp::from_millis(millis.max(now.plus_seconds(-LOGIN_AFTER_WINDOW_SECS).millis()))
        });
    let reauthentication = reauthentication(&request, login_after, now);
    let cookie = web::cookie_value(headers, web::cookies::SID);
    let sign_on = SignOnRequest {
        app: &app,
        browser: BrowserRequest {
            cookie: cookie.as_deref(),
            session_token: request.session_token.as_deref(),
            precedence: state.config.session_token_precedence,
            persistent: false,
            client_ip: ip,
        },
        subject_format: None,
        reauthentication,
    };
    let sign_in_required = || {
        if request.prompt == Prompt::None {
            return answer_error(
                &request,
                &OAuthError::new(
                    ErrorCode::LoginRequired,
                    "The client specified not to prompt, but the user is not logged in.",
                ),
            );
        }
        let fresh = request.prompt == Prompt::Login || request.max_age == Some(0);
        let mut url = web::sign_in_url(state, Some(&return_url(state, server, &params, fresh, now)));
        // A session that is too old must not be waved through by the sign-in page.
        if fresh || request.max_age.is_some() {
            url.push_str("&prompt=login");
        }
        if let Some(hint) = &request.login_hint {
            url.push_str("&login_hint=");
            url.extend(url::form_urlencoded::byte_serialize(hint.as_bytes()));
        }
        web::redirect(&url)
    };
    let (mut response, browser) = if request.wants_code() {
        let issuer =
            CodeIssuer { store: &state.store, clock: state.clock.as_ref(), app: &app, request: &request };
        let signed = state.sign_on().sign_on(&sign_on, &issuer).await?;
        let response = match signed.decision {
            Decision::Granted(code) => {
                let mut fields = vec![("code", code.as_str())];
                if let Some(client_state) = &request.state {
                    fields.push(("state", client_state));
                }
                answer(&request.redirect_uri, request.response_mode, &fields)
            }
            Decision::Refused(refusal) => answer_error(&request, &refused(&app, refusal)),
            Decision::SignInRequired => sign_in_required(),
        };
        (response, signed.browser)
    } else {
        let base = state.base();
        let keys = state.signing_keys();
        let oauth = oauth(state, &keys, &base);
        let issuer = ImplicitIssuer { oauth: &oauth, app: &app, request: &request };
        let signed = state.sign_on().sign_on(&sign_on, &issuer).await?;
        let response = match signed.decision {
            Decision::Granted(Ok(tokens)) => {
                let expires_in = tokens.expires_in.to_string();
                let mut fields: Vec<(&str, &str)> = Vec::new();
                if request.response_types.iter().any(|t| t == "token") {
                    fields.extend([
                        ("access_token", tokens.access_token.as_str()),
                        ("token_type", "Bearer"),
                        ("expires_in", expires_in.as_str()),
                        ("scope", tokens.scope.as_str()),
                    ]);
                }
                if let Some(id_token) = &tokens.id_token {
                    fields.push(("id_token", id_token));
                }
                if let Some(client_state) = &request.state {
                    fields.push(("state", client_state));
                }
                answer(&request.redirect_uri, request.response_mode, &fields)
            }
            Decision::Granted(Err(error)) => answer_error(&request, &error),
            Decision::Refused(refusal) => answer_error(&request, &refused(&app, refusal)),
            Decision::SignInRequired => sign_in_required(),
        };
        (response, signed.browser)
    };
    web::cookies::apply(state, &mut response, &browser);
    Ok(response)
}

/// How recent the authentication must be: `prompt=login` (and `max_age=0`) wants one made with
/// this request (a session token) or after the sign-in page was shown; `max_age` wants one within
/// that many seconds.
fn reauthentication(
    request: &AuthorizeRequest,
    login_after: Option<Timestamp>,
    now: Timestamp,
) -> Reauthentication {
    let fresh = request.prompt == Prompt::Login || request.max_age == Some(0);
    let mut bound = request.max_age.filter(|&age| age > 0).map(|age| now.plus_seconds(-age));
    if fresh {
        match login_after {
            // A token presented with this request answers it; so does a sign-in after the page.
            None => return Reauthentication::WithRequest,
            Some(after) => bound = Some(bound.map_or(after, |b| b.max(after))),
        }
    }
    match bound {
        Some(after) => Reauthentication::After(after),
        None => Reauthentication::NotRequired,
    }
}

/// The authorize URL to come back to after the sign-in page: the same request without its (now
/// used) session token, and, when a fresh authentication is wanted, the instant it must follow.
fn return_url(
    state: &AppState,
    server: Server,
    params: &[(String, String)],
    fresh: bool,
    now: Timestamp,
) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        if name != "sessionToken" && name != LOGIN_AFTER {
            query.append_pair(name, value);
        }
    }
    if fresh {
        let client_id =
            params.iter().find(|(k, _)| k == "client_id").map(|(_, v)| v.as_str()).unwrap_or_default();
        query.append_pair(LOGIN_AFTER, &signed_login_after(state, client_id, now.millis()));
    }
    format!("{}/authorize?{}", server.endpoint_base(), query.finish())
}

/// `login_after` as this server writes it: the instant and a MAC over it and the client under the
/// master key, so that nobody can add one to a `prompt=login` request and skip the sign-in.
fn signed_login_after(state: &AppState, client_id: &str, millis: i64) -> String {
    let mac = state.master_key.mac(LOGIN_AFTER, format!("{client_id}|{millis}").as_bytes());
    format!("{millis}.{mac}")
}

/// The instant of a `login_after` this server wrote for `client_id`; `None` for any other.
fn login_after_instant(state: &AppState, client_id: &str, value: &str) -> Option<i64> {
    let (millis, mac) = value.split_once('.')?;
    let millis: i64 = millis.parse().ok()?;
    let expected = signed_login_after(state, client_id, millis);
    let (_, expected_mac) = expected.split_once('.')?;
    latchkey_core::crypto::constant_time_eq(mac.as_bytes(), expected_mac.as_bytes()).then_some(millis)
}

/// Okta's words for a refused sign-on, as an OAuth error for the client.
fn refused(app: &App, refusal: Refusal) -> OAuthError {
    let description = match refusal {
        Refusal::NotAssigned => "User is not assigned to the client application.",
        Refusal::UserNotActive => "The user is not active.",
        Refusal::AppInactive => "The client application is not active.",
        Refusal::NoSubject => "The user has no subject for this client application.",
    };
    tracing::warn!(app = %app.id, reason = refusal.as_str(), "OAuth authorization refused");
    OAuthError::new(ErrorCode::AccessDenied, description)
}

fn error_fields<'a>(error: &'a OAuthError, client_state: Option<&'a str>) -> Vec<(&'static str, &'a str)> {
    let mut fields = vec![("error", error.code.as_str()), ("error_description", error.description.as_str())];
    if let Some(client_state) = client_state {
        fields.push(("state", client_state));
    }
    fields
}

fn answer_error(request: &AuthorizeRequest, error: &OAuthError) -> Response {
    answer(&request.redirect_uri, request.response_mode, &error_fields(error, request.state.as_deref()))
}

/// The authorization response to a registered redirect URI, in the response mode asked for.
fn answer(redirect_uri: &str, mode: ResponseMode, fields: &[(&str, &str)]) -> Response {
    let encoded = || {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in fields {
            query.append_pair(name, value);
        }
        query.finish()
    };
    match mode {
        ResponseMode::Query => {
            let separator = if redirect_uri.contains('?') { '&' } else { '?' };
            web::redirect(&format!("{redirect_uri}{separator}{}", encoded()))
        }
        ResponseMode::Fragment => web::redirect(&format!("{redirect_uri}#{}", encoded())),
        ResponseMode::FormPost => web::auto_post(redirect_uri, fields),
        ResponseMode::OktaPostMessage => {
            let origin = origins::origin_of_url(redirect_uri).unwrap_or_default();
            web::post_message(&origin, fields)
        }
    }
}

/// An OAuth error at the token or userinfo endpoint (RFC 6749 §5.2; RFC 6750 §3).
fn oauth_error(error: &OAuthError) -> Response {
    let status = match error.code {
        ErrorCode::InvalidClient | ErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
        ErrorCode::ServerError => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    let mut response =
        (status, Json(json!({"error": error.code.as_str(), "error_description": error.description})))
            .into_response();
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    let challenge = match error.code {
        ErrorCode::InvalidClient => Some("Basic realm=\"Latchkey\"".to_owned()),
        ErrorCode::InvalidToken => {
            Some(format!("Bearer error=\"invalid_token\", error_description=\"{}\"", error.description))
        }
        _ => None,
    };
    if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(WWW_AUTHENTICATE, value);
    }
    response
}

fn invalid_request(description: &str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidRequest, description)
}

/// The form of a token request: each parameter at most once (RFC 6749 §3.2).
fn form(headers: &HeaderMap, body: &[u8]) -> Result<Vec<(String, String)>, OAuthError> {
    let form_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
    });
    if !form_type {
        return Err(invalid_request("The request must be application/x-www-form-urlencoded."));
    }
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    for (i, (name, _)) in pairs.iter().enumerate() {
        if pairs[..i].iter().any(|(other, _)| other == name) {
            let name: String = name.chars().take(40).collect();
            return Err(invalid_request(&format!("The '{name}' parameter is repeated.")));
        }
    }
    Ok(pairs)
}

fn param<'p>(pairs: &'p [(String, String)], name: &str) -> Option<&'p str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
}

/// How the client presented itself: HTTP Basic, the form, or an assertion; never two at once
/// (RFC 6749 §2.3).
fn client_credentials(
    headers: &HeaderMap,
    pairs: &[(String, String)],
) -> Result<ClientCredentials, OAuthError> {
    let basic = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
        let (scheme, value) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("basic").then(|| value.trim().to_owned())
    });
    let assertion = param(pairs, "client_assertion");
    let secret = param(pairs, "client_secret");
    let form_id = param(pairs, "client_id");
    let presented =
        usize::from(basic.is_some()) + usize::from(assertion.is_some()) + usize::from(secret.is_some());
    if presented > 1 {
        return Err(invalid_request("The client presented more than one authentication method."));
    }
    if let Some(basic) = basic {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(basic)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| OAuthError::new(ErrorCode::InvalidClient, "Client authentication failed."))?;
        // okta-auth-js sends a public client's id alone (`Basic base64(client_id)`), as Okta accepts.
        let (id, secret) = decoded.split_once(':').unwrap_or((decoded.as_str(), ""));
        // RFC 6749 §2.3.1: both are form-urlencoded before Basic encoding.
        let unescape = |text: &str| -> String {
            url::form_urlencoded::parse(format!("x={text}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let client_id = unescape(id);
        if form_id.is_some_and(|f| f != client_id) {
            return Err(invalid_request("The client_id does not match the client's authentication."));
        }
        if secret.is_empty() {
            return Ok(ClientCredentials::Public { client_id });
        }
        return Ok(ClientCredentials::Basic { client_id, secret: unescape(secret) });
    }
    if let Some(assertion) = assertion {
        if param(pairs, "client_assertion_type")
            != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        {
            return Err(invalid_request("The client_assertion_type is not supported."));
        }
        let (_, claims) = jwt::peek(assertion)
            .map_err(|_| OAuthError::new(ErrorCode::InvalidClient, "Client authentication failed."))?;
        let client_id = claims.get("sub").and_then(Value::as_str).unwrap_or_default().to_owned();
        if form_id.is_some_and(|f| f != client_id) {
            return Err(invalid_request("The client_id does not match the client's authentication."));
        }
        return Ok(ClientCredentials::Assertion { client_id, assertion: assertion.to_owned() });
    }
    let client_id = form_id
        .ok_or_else(|| OAuthError::new(ErrorCode::InvalidClient, "Client authentication failed."))?
        .to_owned();
    Ok(match secret {
        Some(secret) => ClientCredentials::Post { client_id, secret: secret.to_owned() },
        None => ClientCredentials::Public { client_id },
    })
}

/// The OAuth use cases for a request that came to `org_url`.
fn oauth<'a>(
    state: &'a AppState,
    keys: &'a SigningKeys<'a, Store, SpawnBlocking, EventLog>,
    org_url: &'a str,
) -> OAuth<'a, Store, SpawnBlocking, EventLog> {
    state.oauth(keys, org_url)
}

/// `POST …/token` (RFC 6749 §3.2).
async fn token(server: Server, State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    match token_inner(server, &state, &headers, &body).await {
        Ok(response) => response,
        Err(error) => oauth_error(&error),
    }
}

/// The client a request at the token, introspection or revocation endpoint comes from,
/// authenticated as the app registered (RFC 6749 §2.3).
async fn authenticated_client(
    server: Server,
    state: &AppState,
    headers: &HeaderMap,
    pairs: &[(String, String)],
    oauth: &OAuth<'_, Store, SpawnBlocking, EventLog>,
) -> Result<App, OAuthError> {
    let presented = client_credentials(headers, pairs)?;
    let invalid_client = || OAuthError::new(ErrorCode::InvalidClient, "Client authentication failed.");
    let app = match state.store.find_app(presented.client_id()).await {
        Ok(Some(app)) if app.id == presented.client_id() && app.oidc().is_some() => app,
        Ok(_) => return Err(invalid_client()),
        Err(e) => {
            tracing::error!(error = %e, "finding an OAuth client failed");
            return Err(OAuthError::new(ErrorCode::ServerError, "The server could not answer the request."));
        }
    };
    if let Err(error) = oauth.authenticate_client(server, &app, &presented).await {
        tracing::warn!(app = %app.id, "client authentication failed");
        return Err(error);
    }
    Ok(app)
}

async fn token_inner(
    server: Server,
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, OAuthError> {
    let pairs = form(headers, body)?;
    let grant_type = param(&pairs, "grant_type")
        .ok_or_else(|| invalid_request("The 'grant_type' parameter is missing."))?;
    let base = state.base();
    let keys = state.signing_keys();
    let oauth = oauth(state, &keys, &base);
    let app = authenticated_client(server, state, headers, &pairs, &oauth).await?;
    let tokens = match grant_type {
        "authorization_code" => {
            let code =
                param(&pairs, "code").ok_or_else(|| invalid_request("The 'code' parameter is missing."))?;
            let redeemed = oauth
                .redeem_code(
                    &app,
                    server,
                    code,
                    param(&pairs, "redirect_uri"),
                    param(&pairs, "code_verifier"),
                )
                .await;
            match redeemed {
                Ok(tokens) => tokens,
                Err(error) => {
                    tracing::warn!(app = %app.id, error = error.code.as_str(), "authorization code refused");
                    return Err(error);
                }
            }
        }
        "refresh_token" => {
            let token = param(&pairs, "refresh_token")
                .ok_or_else(|| invalid_request("The 'refresh_token' parameter is missing."))?;
            match oauth.refresh(&app, server, token, param(&pairs, "scope")).await {
                Ok(tokens) => tokens,
                Err(error) => {
                    tracing::warn!(app = %app.id, error = error.code.as_str(), "refresh token refused");
                    return Err(error);
                }
            }
        }
        "client_credentials" => match oauth.client_credentials(&app, server, param(&pairs, "scope")).await {
            Ok(tokens) => tokens,
            Err(error) => {
                tracing::warn!(app = %app.id, error = error.code.as_str(), "client credentials refused");
                return Err(error);
            }
        },
        "implicit" | "password" => {
            return Err(OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                "The grant type is not supported by this authorization server yet.",
            ));
        }
        _ => {
            return Err(OAuthError::new(ErrorCode::UnsupportedGrantType, "The grant type is not supported."));
        }
    };
    let mut body = json!({
        "token_type": "Bearer",
        "expires_in": tokens.expires_in,
        "access_token": tokens.access_token,
        "scope": tokens.scope,
    });
    if let Some(object) = body.as_object_mut() {
        if let Some(id_token) = &tokens.id_token {
            object.insert("id_token".into(), json!(id_token));
        }
        if let Some(refresh_token) = &tokens.refresh_token {
            object.insert("refresh_token".into(), json!(refresh_token));
        }
    }
    let mut response = Json(body).into_response();
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.headers_mut().insert(PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// The two endpoints where a client asks about one of its tokens.
#[derive(Clone, Copy)]
enum TokenCall {
    /// `POST …/introspect` (RFC 7662).
    Introspect,
    /// `POST …/revoke` (RFC 7009): 200 whether or not the token was known (§2.2).
    Revoke,
}

/// `introspect` and `revoke`: the form, its `token`, the client authenticated as registered, then
/// the call.
async fn token_call(
    server: Server,
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    call: TokenCall,
) -> Response {
    let answer = async {
        let pairs = form(headers, body)?;
        let token =
            param(&pairs, "token").ok_or_else(|| invalid_request("The 'token' parameter is missing."))?;
        let base = state.base();
        let keys = state.signing_keys();
        let oauth = oauth(state, &keys, &base);
        let app = authenticated_client(server, state, headers, &pairs, &oauth).await?;
        match call {
            TokenCall::Introspect => oauth
                .introspect(&app, server, token)
                .await
                .map(|found| Json(Value::Object(found)).into_response()),
            TokenCall::Revoke => {
                oauth.revoke(&app, server, token).await.map(|()| StatusCode::OK.into_response())
            }
        }
    };
    match answer.await {
        Ok(response) => no_store(response),
        Err(error) => oauth_error(&error),
    }
}

fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn logout_get(
    server: Server,
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
) -> Response {
    let params: Vec<(String, String)> =
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()).into_owned().collect();
    logout(server, &state, ip.as_deref(), &headers, &params).await
}

async fn logout_post(
    server: Server,
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    logout(server, &state, ip.as_deref(), &headers, &params).await
}

/// `…/logout` (OpenID Connect RP-Initiated Logout 1.0): ends the browser's session and goes to a
/// post-logout redirect URI registered by the client the `id_token_hint` names (with `state`),
/// else to the sign-in page. A hint that is not ours, or a URI the client did not register, is an
/// error page: never a redirect to an unchecked URI.
async fn logout(
    server: Server,
    state: &AppState,
    ip: Option<&str>,
    headers: &HeaderMap,
    params: &[(String, String)],
) -> Response {
    let wanted = param(params, "post_logout_redirect_uri");
    let hint = param(params, "id_token_hint");
    let base = state.base();
    let keys = state.signing_keys();
    let oauth = oauth(state, &keys, &base);
    let target = match (hint, wanted) {
        (None, Some(_)) => {
            return bad_request_page(state, headers, "a post_logout_redirect_uri needs an id_token_hint");
        }
        (None, None) => None,
        (Some(hint), wanted) => {
            let client_id = match oauth.logout_hint(server, hint).await {
                Ok((client_id, _sid)) => client_id,
                Err(error) => return bad_request_page(state, headers, &error.description),
            };
            match (wanted, state.store.find_app(&client_id).await) {
                (None, _) => None,
                (Some(uri), Ok(Some(app))) if app.id == client_id => {
                    match app.oidc().and_then(|oidc| oidc.post_logout_redirect_uri(uri)) {
                        Some(registered) => Some(registered.to_owned()),
                        None => {
                            return bad_request_page(
                                state,
                                headers,
                                "the post_logout_redirect_uri is not registered for this client",
                            );
                        }
                    }
                }
                (Some(_), Ok(_)) => {
                    return bad_request_page(state, headers, "the id_token_hint names no client");
                }
                (Some(_), Err(e)) => return ApiError::from(e).into_page(state, headers),
            }
        }
    };
    match web::browser_session(state, headers).await {
        Ok(Some((session, _, _))) => {
            let ended =
                state.sessions().end(&session, latchkey_core::sessions::EndReason::Logout, None, ip).await;
            if let Err(e) = ended {
                return ApiError::from(e).into_page(state, headers);
            }
        }
        Ok(None) => {}
        Err(e) => return ApiError::from(e).into_page(state, headers),
    }
    let to = match target {
        Some(uri) => match param(params, "state") {
            Some(client_state) => {
                let separator = if uri.contains('?') { '&' } else { '?' };
                let encoded: String = url::form_urlencoded::byte_serialize(client_state.as_bytes()).collect();
                format!("{uri}{separator}state={encoded}")
            }
            None => uri,
        },
        None => web::sign_in_url(state, None),
    };
    let mut response = web::redirect(&to);
    web::cookies::clear_session_cookie(state, &mut response);
    response
}

/// `GET|POST …/userinfo` (OpenID Connect Core §5.3) with a Bearer access token (RFC 6750 §2.1,
/// or the form body's `access_token`, §2.2).
async fn userinfo(
    server: Server,
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let bearer = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
        let (scheme, value) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| value.trim().to_owned())
    });
    let from_form =
        || url::form_urlencoded::parse(&body).find(|(k, _)| k == "access_token").map(|(_, v)| v.into_owned());
    let Some(token) = bearer.or_else(from_form) else {
        let mut response = StatusCode::UNAUTHORIZED.into_response();
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"Latchkey\""));
        return response;
    };
    let base = state.base();
    let keys = state.signing_keys();
    match oauth(&state, &keys, &base).userinfo(server, &token).await {
        Ok(claims) => {
            let mut response = Json(Value::Object(claims)).into_response();
            response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(error) => oauth_error(&error),
    }
}
