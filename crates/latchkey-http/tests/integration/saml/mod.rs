//! SAML 2.0 IdP over HTTP, driven through the shared [`Browser`]. This module owns what every SAML
//! test starts from: one SAML app ("Expense Reports") assigned to Alice and its metadata
//! ([`setup`]), a browser signed in as her, the SP's keys, AuthnRequests as an SP writes them
//! (SAML core §3.4.1) and their HTTP-Redirect URLs (SAML bindings §3.4.4), and a second app that
//! takes part in Single Logout. Every Response produced here is verified by pysaml2 and node-saml
//! (see `crate::sp`).
//!
//! - `metadata`: the IdP's metadata documents.
//! - `sso`: IdP- and SP-initiated Web Browser SSO, the session-token rule, ForceAuthn, resume links.
//! - `slo`: Single Logout and the sign-out walk.
//! - `hostile`: requests the IdP refuses, how it says why and what it logs.

mod hostile;
mod metadata;
mod slo;
mod sso;

use axum::http::{Method, StatusCode};
use latchkey_core::Clock as _;
use latchkey_core::saml::logout::redirect_binding_url;
use latchkey_core::saml::{MessageParam, SigningKey, saml_time};
use latchkey_core::sessions::TokenPrecedence;
use serde_json::{Value, json};

use crate::apps::saml_app_body;
use crate::browser::Browser;
use crate::support::{App, BASE, app_realtime};

const PASSWORD: &str = "Correct-Horse-9";
const SP_ENTITY: &str = "https://sp.example.com/metadata";
const ACS: &str = "https://sp.example.com/acs";

/// Strips the scheme and host of an absolute link on the IdP.
fn local(url: &str) -> &str {
    url.strip_prefix(BASE).unwrap_or(url)
}

struct Setup {
    app: App,
    app_id: String,
    external_key: String,
    embed: String,
    metadata: String,
    alice: String,
}

async fn setup_with(precedence: TokenPrecedence, adjust: impl FnOnce(&mut Value)) -> Setup {
    let app = app_realtime(|c| c.session_token_precedence = precedence).await;
    let mut body = saml_app_body("Expense Reports");
    adjust(&mut body);
    let created = app.call(Method::POST, "/api/v1/apps", body).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let app_id = created.body["id"].as_str().unwrap().to_owned();
    let embed = local(created.body["_links"]["appLinks"][0]["href"].as_str().unwrap()).to_owned();
    let metadata_url = local(created.body["_links"]["metadata"]["href"].as_str().unwrap()).to_owned();
    let metadata = app.call(Method::GET, &metadata_url, Value::Null).await;
    assert_eq!(metadata.status, StatusCode::OK);
    let metadata = metadata.body.as_str().unwrap().to_owned();
    let external_key = metadata.split("/app/").nth(1).unwrap().split('/').nth(1).unwrap().to_owned();
    let alice = app.create_ok("alice@example.com").await;
    app.call(Method::POST, &format!("/api/v1/apps/{app_id}/users"), json!({"id": alice})).await;
    Setup { app, app_id, external_key, embed, metadata, alice }
}

async fn setup() -> Setup {
    setup_with(TokenPrecedence::Token, |_| {}).await
}

/// A browser signed in as Alice through the embed link with a session token.
async fn signed_in_as_alice(s: &Setup) -> Browser {
    let mut browser = Browser::default();
    let token = session_token(&s.app, "alice@example.com").await;
    browser.get(&s.app, &format!("{}?sessionToken={token}", s.embed)).await;
    browser
}

async fn session_token(app: &App, login: &str) -> String {
    let reply = app.public("/api/v1/authn", json!({"username": login, "password": PASSWORD})).await;
    reply.body["sessionToken"].as_str().unwrap_or_else(|| panic!("{}", reply.body)).to_owned()
}

fn url_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// An AuthnRequest as an SP writes it.
fn authn_request(s: &Setup, id: &str, extra_attrs: &str, children: &str) -> String {
    format!(
        "<samlp:AuthnRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" \
         xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"{id}\" Version=\"2.0\" \
         IssueInstant=\"{}\" Destination=\"{BASE}/app/latchkey_expense_reports_1/{}/sso/saml\" \
         AssertionConsumerServiceURL=\"{ACS}\" \
         ProtocolBinding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST\"{extra_attrs}>\
         <saml:Issuer>{SP_ENTITY}</saml:Issuer>{children}</samlp:AuthnRequest>",
        saml_time(latchkey_core::SystemClock.now()),
        s.external_key
    )
}

fn sso_path(s: &Setup) -> String {
    format!("/app/latchkey_expense_reports_1/{}/sso/saml", s.external_key)
}

/// The HTTP-Redirect URL for `xml`, signed with `key` (or unsigned).
fn redirect_url(s: &Setup, xml: &str, relay: Option<&str>, key: &SigningKey, signed: bool) -> String {
    let url = redirect_binding_url(&sso_path(s), MessageParam::SamlRequest, xml, relay, key).unwrap();
    if signed { url } else { url.split("&SigAlg=").next().unwrap().to_owned() }
}

fn sp_key() -> SigningKey {
    SigningKey::generate("sp.example.com", 30).unwrap().0
}

async fn with_sp_certificate(s: &Setup, key: &SigningKey, required: bool) {
    let mut app = s.app.call(Method::GET, &format!("/api/v1/apps/{}", s.app_id), Value::Null).await.body;
    app["settings"]["signOn"]["spCertificate"] = json!({"x5c": [key.cert_base64()]});
    app["settings"]["signOn"]["samlSignedRequestEnabled"] = json!(required);
    let r = s.app.call(Method::PUT, &format!("/api/v1/apps/{}", s.app_id), app).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

/// An app (SP `https://{host}`, logout URL `https://{host}/slo`) that takes part in SLO, assigned
/// to alice. Returns its embed link and its SLO path.
async fn slo_participant(s: &Setup, label: &str, host: &str, key: &SigningKey) -> (String, String) {
    let mut body = saml_app_body(label);
    body["settings"]["signOn"]["ssoAcsUrl"] = json!(format!("https://{host}/acs"));
    body["settings"]["signOn"]["audience"] = json!(format!("https://{host}"));
    body["settings"]["signOn"]["spCertificate"] = json!({"x5c": [key.cert_base64()]});
    body["settings"]["signOn"]["participateSlo"] = json!({"enabled": true, "logoutRequestUrl": format!("https://{host}/slo"), "bindingType": "REDIRECT"});
    let created = s.app.call(Method::POST, "/api/v1/apps", body).await.body;
    let id = created["id"].as_str().unwrap().to_owned();
    s.app.call(Method::POST, &format!("/api/v1/apps/{id}/users"), json!({"id": s.alice})).await;
    let metadata =
        s.app.call(Method::GET, &format!("/api/v1/apps/{id}/sso/saml/metadata"), Value::Null).await;
    let external_key =
        metadata.body.as_str().unwrap().split("/app/").nth(1).unwrap().split('/').nth(1).unwrap().to_owned();
    let slo = format!("/app/{}/{external_key}/slo/saml", created["name"].as_str().unwrap());
    (local(created["_links"]["appLinks"][0]["href"].as_str().unwrap()).to_owned(), slo)
}
