//! The demo's pages (mounted only with `serve --demo` or `test_sp = true`): a kiosk portal that
//! does what the backend in Latchkey's story does (authenticate through the same code as
//! `POST /api/v1/authn`, then send the browser to the SAML app's embed link, or to the OpenID
//! Connect app's sign-in, with `?sessionToken=`), a built-in test SP that verifies the signed
//! Response it receives and shows who arrived with which attributes, or starts an SP-initiated
//! sign-in, and a built-in OpenID Connect relying party ([`rp`]).
//!
//! The test SP trusts only the IdP's published signing certificates (as an SP with the metadata
//! would) and remembers the AuthnRequest ids it sent (in memory: the demo runs on one node).

use std::collections::HashMap;
use std::sync::Mutex;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use latchkey_core::apps::{App, AppStatus, AttributeStatement, SamlSignOn, SignOn};
use latchkey_core::authn::AuthnStatus;
use latchkey_core::authn::machine::AuthnOptions;
use latchkey_core::events::Actor;
use latchkey_core::groups::Group;
use latchkey_core::groups::query::GroupQuery;
use latchkey_core::groups::service::{ChangedBy, GroupInput};
use latchkey_core::ids::{IdKind, new_id};
use latchkey_core::saml::test_sp::{self, Expectations};
use latchkey_core::store::{AppStore, GroupStore};
use latchkey_core::{CoreError, Timestamp};
use minijinja::context;
use serde_json::{Map, json};

use crate::error::ApiError;
use crate::extract::Caller;
use crate::state::AppState;
use crate::web::{self, BrowserError, Form, Ui, csrf, see_other};

mod rp;

pub use rp::RP_HOME;

pub const KIOSK: &str = "/demo/kiosk";
pub const SP_HOME: &str = "/demo/sp/";
const SP_LOGIN: &str = "/demo/sp/login";
const SP_ACS: &str = "/demo/sp/acs";
/// How long an AuthnRequest of the test SP may wait for its answer.
const OUTSTANDING_SECS: i64 = 900;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(KIOSK, get(kiosk_page).post(kiosk_submit))
        .route(SP_HOME, get(sp_home))
        .route(SP_LOGIN, get(sp_login))
        .route(SP_ACS, axum::routing::post(sp_acs))
        .route(rp::RP_HOME, get(rp::home))
        .route(rp::RP_LOGIN, get(rp::login))
        .route(rp::RP_CALLBACK, get(rp::callback))
        .route(rp::RP_BACKCHANNEL, axum::routing::post(rp::backchannel))
        .route(rp::RP_LOGOUT, get(rp::logout))
        .layer(Extension(Arc::new(TestSp::default())))
        .layer(Extension(Arc::new(rp::TestRp::default())))
}

/// The test SP's outstanding AuthnRequest ids and when they expire (`.0`), and the Assertion ids
/// it accepted, kept until the Assertion expires (`.1`) to refuse a replay.
#[derive(Default)]
struct TestSp(Mutex<HashMap<String, Timestamp>>, Mutex<HashMap<String, Timestamp>>);

/// The test SP's entity id: stable across restarts and hosts (the configured public URL).
fn sp_entity_id(state: &AppState) -> String {
    format!("{}/demo/sp", state.config.public_url)
}

/// The demo's groups: the test SP is assigned to `Staff`, and its assertion carries every group of
/// the user who signs on (a GROUP attribute statement).
pub const DEMO_GROUPS: [&str; 2] = ["Front desk", "Staff"];
const DEMO_APP_GROUP: &str = "Staff";

/// The demo app's group claim: the names of all the user's groups.
fn groups_statement() -> AttributeStatement {
    AttributeStatement {
        kind: "GROUP".to_owned(),
        name: "groups".to_owned(),
        namespace: "urn:oasis:names:tc:SAML:2.0:attrname-format:basic".to_owned(),
        values: Vec::new(),
        filter_type: Some("REGEX".to_owned()),
        filter_value: Some(".*".to_owned()),
    }
}

/// Creates the demo groups and the demo app (a SAML app whose ACS is the built-in test SP, assigned
/// to the `Staff` group) on first use, and puts each user into the demo groups named with them.
/// The app's id is kept as an organisation setting so restarts find it. Idempotent.
pub async fn ensure_demo_app(state: &AppState, members: &[(String, Vec<&str>)]) -> Result<App, String> {
    demo_app_assigned(state, members).await.map_err(|e| format!("demo app: {e}"))
}

/// The demo group named `name`, created if missing.
async fn demo_group(state: &AppState, name: &str, by: &ChangedBy<'_>) -> Result<Group, CoreError> {
    let query = GroupQuery { limit: 20, ..GroupQuery::default() }.with_prefix(name)?;
    if let Some(group) = state.groups().list(&query).await?.into_iter().find(|g| g.name == name) {
        return Ok(group);
    }
    state
        .groups()
        .create(GroupInput { name: name.to_owned(), description: Some("Latchkey demo".to_owned()) }, by)
        .await
}

async fn demo_app_assigned(state: &AppState, members: &[(String, Vec<&str>)]) -> Result<App, CoreError> {
    let by = ChangedBy { actor: Actor::system(), client_ip: None };
    let mut groups = Vec::new();
    for name in DEMO_GROUPS {
        groups.push(demo_group(state, name, &by).await?);
    }
    let id = state.store.org_setting("demo_app_id", &new_id(IdKind::App)).await?;
    let app = match state.store.find_app(&id).await? {
        Some(mut app) => {
            // A demo app made before groups: it gains the group claim.
            if let SignOn::Saml2(saml) = &mut app.sign_on
                && !saml.attribute_statements.iter().any(|s| s.kind == "GROUP")
            {
                saml.attribute_statements.push(groups_statement());
                app.last_updated = state.clock.now();
                state.store.update_app(&app).await?;
            }
            app
        }
        None => {
            let base = &state.config.public_url;
            let acs = format!("{base}{SP_ACS}");
            // Not `SamlSignOn::from_json`: its https-or-loopback rule is for SPs elsewhere; this ACS
            // is the IdP's own public URL, whatever its scheme.
            let mut sign_on: SamlSignOn = serde_json::from_value(json!({
                "ssoAcsUrl": acs,
                "recipient": acs,
                "destination": acs,
                "audience": sp_entity_id(state),
                "subjectNameIdTemplate": "${user.userName}",
                "subjectNameIdFormat": latchkey_core::apps::NAME_ID_EMAIL,
                "responseSigned": true,
                "assertionSigned": true,
                "attributeStatements": [
                    {"type": "EXPRESSION", "name": "email", "namespace": "urn:oasis:names:tc:SAML:2.0:attrname-format:basic", "values": ["user.email"]},
                    {"type": "EXPRESSION", "name": "firstName", "namespace": "urn:oasis:names:tc:SAML:2.0:attrname-format:basic", "values": ["user.firstName"]},
                    {"type": "EXPRESSION", "name": "lastName", "namespace": "urn:oasis:names:tc:SAML:2.0:attrname-format:basic", "values": ["user.lastName"]}
                ]
            }))
            .map_err(|e| CoreError::validation("settings.signOn", e.to_string()))?;
            sign_on.attribute_statements.push(groups_statement());
            let now = state.clock.now();
            let app = App {
                id: id.clone(),
                name: "latchkey_test_sp_1".to_owned(),
                label: "Latchkey test SP".to_owned(),
                status: AppStatus::Active,
                external_key: new_id(IdKind::AppExternalKey),
                link_id: new_id(IdKind::AppLink),
                sign_on: SignOn::Saml2(sign_on),
                visibility: Map::new(),
                created: now,
                last_updated: now,
            };
            state.store.insert_app(&app).await?;
            app
        }
    };
    let oidc_app = rp::ensure_app(state).await?;
    if let Some(staff) = groups.iter().find(|g| g.name == DEMO_APP_GROUP) {
        for demo in [&app, &oidc_app] {
            if state.store.find_app_group(&demo.id, &staff.id).await?.is_none() {
                state.groups().assign_app(demo, &staff.id, None, Map::new(), &by).await?;
            }
        }
    }
    for (user_id, names) in members {
        for group in groups.iter().filter(|g| names.contains(&g.name.as_str())) {
            state.groups().add_member(&group.id, user_id, &by).await?;
        }
    }
    Ok(app)
}

async fn demo_app(state: &AppState) -> Result<App, ApiError> {
    Ok(demo_app_assigned(state, &[]).await?)
}

async fn kiosk_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let ui = Ui::new(&state, &headers);
    render_kiosk(&state, &ui, StatusCode::OK, "", None)
}

fn render_kiosk(
    state: &AppState,
    ui: &Ui,
    status: StatusCode,
    username: &str,
    error: Option<&str>,
) -> Response {
    let cookie_wins =
        state.config.session_token_precedence == latchkey_core::sessions::TokenPrecedence::Cookie;
    let page = context! {
        username,
        error => error.map(|id| ui.text(id)),
        hint => ui.text(if cookie_wins { "demo.kiosk.hint_cookie" } else { "demo.kiosk.hint" }),
    };
    ui.render(state, status, "demo_kiosk.html", page)
}

/// `POST /demo/kiosk`: the story's backend. Authenticates exactly as `/api/v1/authn` would and
/// sends the browser to the embed link with the one-time session token.
async fn kiosk_submit(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ui = Ui::new(&state, &headers);
    let form = Form::parse(&body);
    if !csrf::check(&state, &headers, form.get("_csrf")) {
        return web::error_page(&state, &headers, BrowserError::Csrf, StatusCode::FORBIDDEN);
    }
    let username = form.get("username").unwrap_or_default().trim().to_owned();
    let password = form.get("password").unwrap_or_default();
    let result =
        state.primary_authn(&username, password, AuthnOptions::default(), None, &caller.context).await.0;
    let token = match result {
        Ok(view) if view.status == AuthnStatus::Success => view.session_token,
        Ok(_) => {
            return render_kiosk(
                &state,
                &ui,
                StatusCode::FORBIDDEN,
                &username,
                Some("demo.kiosk.more_steps"),
            );
        }
        Err(CoreError::RateLimited { .. } | CoreError::Hashing) => {
            return render_kiosk(
                &state,
                &ui,
                StatusCode::TOO_MANY_REQUESTS,
                &username,
                Some("signin.throttled"),
            );
        }
        Err(CoreError::AuthenticationFailed) => {
            return render_kiosk(&state, &ui, StatusCode::UNAUTHORIZED, &username, Some("signin.failed"));
        }
        Err(e) => return ApiError::from(e).into_page(&state, &headers),
    };
    let token: String = url::form_urlencoded::byte_serialize(token.unwrap_or_default().as_bytes()).collect();
    if form.get("app") == Some("oidc") {
        return ui.finish(&state, see_other(&format!("{}?sessionToken={token}", state.link(rp::RP_LOGIN))));
    }
    let app = match demo_app(&state).await {
        Ok(app) => app,
        Err(e) => return e.into_page(&state, &headers),
    };
    let embed = state.link(&app.embed_path());
    ui.finish(&state, see_other(&format!("{embed}?sessionToken={token}")))
}

async fn sp_home(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let ui = Ui::new(&state, &headers);
    sp_page(&state, &ui, StatusCode::OK, context! { arrival => () })
}

/// The test SP's page; its sign-out link ends the IdP session and comes back to the kiosk.
fn sp_page(state: &AppState, ui: &Ui, status: StatusCode, page: minijinja::Value) -> Response {
    let kiosk: String = url::form_urlencoded::byte_serialize(state.link(KIOSK).as_bytes()).collect();
    let page = context! { signout => format!("/login/signout?fromURI={kiosk}"), ..page };
    ui.render(state, status, "demo_sp.html", page)
}

/// `GET /demo/sp/login`: SP-initiated SSO with an AuthnRequest over HTTP-Redirect.
async fn sp_login(
    State(state): State<AppState>,
    Extension(test_sp): Extension<Arc<TestSp>>,
    headers: HeaderMap,
) -> Response {
    let app = match demo_app(&state).await {
        Ok(app) => app,
        Err(e) => return e.into_page(&state, &headers),
    };
    let Some(saml) = app.saml() else {
        return ApiError::from(CoreError::NotFound("demo app (App)".to_owned())).into_page(&state, &headers);
    };
    let now = state.clock.now();
    let acs = state.link(SP_ACS);
    let sso = state.link(&saml.sso_path());
    match test_sp::authn_request_url(&sso, &sp_entity_id(&state), &acs, now) {
        Ok((url, id)) => {
            if let Ok(mut outstanding) = test_sp.0.lock() {
                outstanding.retain(|_, expires| *expires > now);
                outstanding.insert(id, now.plus_seconds(OUTSTANDING_SECS));
            }
            let mut response = see_other(&url);
            response.headers_mut().remove("content-security-policy");
            response
        }
        Err(e) => ApiError::from(CoreError::Crypto(e)).into_page(&state, &headers),
    }
}

/// `POST /demo/sp/acs`: verifies the Response and shows who arrived.
async fn sp_acs(
    State(state): State<AppState>,
    Extension(test_sp): Extension<Arc<TestSp>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ui = Ui::new(&state, &headers);
    let form = Form::parse(&body);
    let app = match demo_app(&state).await {
        Ok(app) => app,
        Err(e) => return e.into_page(&state, &headers),
    };
    let keys = match state.signing_keys().current().await {
        Ok(keys) => keys,
        Err(e) => return ApiError::from(e).into_page(&state, &headers),
    };
    let certs = keys.published_certs();
    let acs = state.link(SP_ACS);
    let sp = sp_entity_id(&state);
    let Some(idp) = app.saml().map(|saml| saml.idp_issuer()) else {
        return ApiError::from(CoreError::NotFound("demo app (App)".to_owned())).into_page(&state, &headers);
    };
    let expect = Expectations {
        idp_entity_id: &idp,
        sp_entity_id: &sp,
        acs_url: &acs,
        idp_certificates: &certs,
        now: state.clock.now(),
        skew_seconds: 5,
    };
    let refused = |reason: String| {
        sp_page(&state, &ui, StatusCode::FORBIDDEN, context! { arrival => (), refused => reason })
    };
    let arrival = match test_sp::read_response(form.get("SAMLResponse").unwrap_or_default(), &expect) {
        Ok(arrival) => arrival,
        Err(reason) => return refused(reason),
    };
    // What an SP must check beside the signature: the same Assertion posted again (a replay
    // from the browser's history or a captured form) is refused until it expires.
    let replayed = match test_sp.1.lock() {
        Ok(mut accepted) => {
            let now = state.clock.now();
            accepted.retain(|_, until| *until > now);
            accepted.insert(arrival.assertion_id.clone(), arrival.valid_until).is_some()
        }
        Err(_) => true,
    };
    if replayed {
        return refused("this Assertion was accepted before: a replay".to_owned());
    }
    let solicited = match &arrival.in_response_to {
        None => false,
        Some(id) => {
            let known = test_sp.0.lock().map(|mut o| o.remove(id).is_some()).unwrap_or(false);
            if !known {
                return refused(
                    "the Response answers no request of this SP (or one already answered)".to_owned(),
                );
            }
            true
        }
    };
    let attributes: Vec<_> = arrival
        .attributes
        .iter()
        .map(|(name, values)| context! { name, value => values.join(", ") })
        .collect();
    let page = context! {
        arrival => context! {
            name_id => arrival.name_id,
            format => arrival.name_id_format,
            session_index => arrival.session_index,
            solicited,
            relay_state => form.get("RelayState"),
            attributes,
        },
    };
    sp_page(&state, &ui, StatusCode::OK, page)
}
