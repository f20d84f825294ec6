//! SAML 2.0 IdP over HTTP: metadata, IdP-initiated SSO through the embed link (with the
//! session-token rule), SP-initiated SSO (HTTP-Redirect and HTTP-POST), hostile requests, and
//! Single Logout. Every Response produced here is verified by pysaml2 and node-saml (see `sp`).

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http_body_util::BodyExt as _;
use latchkey_core::Clock as _;
use latchkey_core::saml::logout::redirect_binding_url;
use latchkey_core::saml::{MessageParam, SigningKey, new_saml_id, saml_time};
use latchkey_core::sessions::TokenPrecedence;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::apps::saml_app_body;
use crate::sp::{Expect, assert_accepted, verify_with_both};
use crate::support::{App, BASE, app_realtime};

const PASSWORD: &str = "Correct-Horse-9";
const SP_ENTITY: &str = "https://sp.example.com/metadata";
const ACS: &str = "https://sp.example.com/acs";

/// A browser: one cookie jar (`sid`) across requests.
#[derive(Default)]
struct Browser {
    sid: Option<String>,
}

struct Page {
    status: StatusCode,
    location: Option<String>,
    set_cookie: Vec<String>,
    csp: Option<String>,
    body: String,
}

impl Page {
    /// The value of a hidden form field of an auto-posting page.
    fn field(&self, name: &str) -> Option<String> {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&marker)? + marker.len();
        let end = self.body[start..].find('"')? + start;
        Some(
            self.body[start..end]
                .replace("&amp;", "&")
                .replace("&quot;", "\"")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&#39;", "'"),
        )
    }

    fn form_action(&self) -> Option<String> {
        let start = self.body.find("action=\"")? + 8;
        let end = self.body[start..].find('"')? + start;
        Some(self.body[start..end].replace("&amp;", "&"))
    }

    /// The decoded XML of the posted SAMLResponse.
    fn response_xml(&self) -> String {
        let b64 = self.field("SAMLResponse").unwrap_or_else(|| panic!("no SAMLResponse in: {}", self.body));
        String::from_utf8(STANDARD.decode(b64).unwrap()).unwrap()
    }

    fn posts_nothing(&self) -> bool {
        !self.body.contains("<form") && !self.body.contains("name=\"SAMLResponse\"")
    }
}

impl Browser {
    async fn send(&mut self, app: &App, method: Method, uri: &str, form: Option<String>) -> Page {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(sid) = &self.sid {
            req = req.header("cookie", format!("sid={sid}"));
        }
        let body = match form {
            Some(form) => {
                req = req.header("content-type", "application/x-www-form-urlencoded");
                Body::from(form)
            }
            None => Body::empty(),
        };
        let res = app.router.clone().oneshot(req.body(body).unwrap()).await.unwrap();
        let header = |name: &str| res.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
        let (status, location, csp) = (res.status(), header("location"), header("content-security-policy"));
        let set_cookie: Vec<String> =
            res.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
        for cookie in &set_cookie {
            if let Some(value) = cookie.strip_prefix("sid=").and_then(|c| c.split(';').next()) {
                self.sid = (!value.is_empty() && !cookie.contains("Max-Age=0")).then(|| value.to_owned());
            }
        }
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{uri}: {}", String::from_utf8_lossy(&bytes));
        Page { status, location, set_cookie, csp, body: String::from_utf8_lossy(&bytes).into_owned() }
    }

    async fn get(&mut self, app: &App, uri: &str) -> Page {
        self.send(app, Method::GET, uri, None).await
    }
}

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

/// A signed ForceAuthn request from `browser`: its id, and the IdP's answer.
async fn force_authn(s: &Setup, browser: &mut Browser, key: &SigningKey) -> (String, Page) {
    let id = new_saml_id();
    let request = authn_request(s, &id, " ForceAuthn=\"true\"", "");
    let page = browser.get(&s.app, &redirect_url(s, &request, None, key, false)).await;
    (id, page)
}

/// The local URL the sign-in page at `location` returns to (its `fromURI`), decoded.
fn resume_url(location: &str) -> String {
    let from = location.split("fromURI=").nth(1).unwrap().trim_end_matches("&prompt=login");
    url::form_urlencoded::parse(format!("x={from}").as_bytes()).next().unwrap().1.into_owned()
}

async fn session_token(app: &App, login: &str) -> String {
    let reply = app.public("/api/v1/authn", json!({"username": login, "password": PASSWORD})).await;
    reply.body["sessionToken"].as_str().unwrap_or_else(|| panic!("{}", reply.body)).to_owned()
}

fn expect<'a>(s: &'a Setup, request_id: Option<&'a str>) -> Expect<'a> {
    Expect {
        metadata: &s.metadata,
        sp_entity_id: SP_ENTITY,
        acs: ACS,
        request_id,
        want_response_signed: true,
    }
}

#[tokio::test]
async fn metadata_is_public_and_names_the_endpoints() {
    let s = setup().await;
    let mut browser = Browser::default();
    let public = browser.get(&s.app, &format!("/app/{}/sso/saml/metadata", s.external_key)).await;
    assert_eq!(public.status, StatusCode::OK);
    assert_eq!(public.body, s.metadata, "the public and admin documents are the same");
    assert!(s.metadata.contains(&format!("entityID=\"http://www.okta.com/{}\"", s.external_key)));
    assert!(s.metadata.contains(&format!(
        "Location=\"{BASE}/app/latchkey_expense_reports_1/{}/sso/saml\"",
        s.external_key
    )));
    assert_eq!(s.metadata.matches("<md:KeyDescriptor use=\"signing\">").count(), 1);
    let unknown = browser.get(&s.app, "/app/exk0000000000000000/sso/saml/metadata").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let keys =
        s.app.call(Method::GET, &format!("/api/v1/apps/{}/credentials/keys", s.app_id), Value::Null).await;
    assert_eq!(keys.body.as_array().unwrap().len(), 1);
    let app = s.app.call(Method::GET, &format!("/api/v1/apps/{}", s.app_id), Value::Null).await;
    assert_eq!(app.body["credentials"]["signing"]["kid"], keys.body[0]["kid"]);
}

/// The app's metadata, from the admin API and from the public URL (which must agree).
async fn metadata_of(s: &Setup, app_id: &str, external_key: &str) -> String {
    let admin =
        s.app.call(Method::GET, &format!("/api/v1/apps/{app_id}/sso/saml/metadata"), Value::Null).await;
    assert_eq!(admin.status, StatusCode::OK, "{}", admin.body);
    let public = Browser::default().get(&s.app, &format!("/app/{external_key}/sso/saml/metadata")).await;
    assert_eq!(public.status, StatusCode::OK);
    assert_eq!(
        admin.body.as_str(),
        Some(public.body.as_str()),
        "the public and admin documents are the same"
    );
    public.body
}

/// Single Logout is advertised only where the app's SP uses it: an app with SLO enabled sends
/// LogoutRequests there, an app taking part in SLO answers ours there.
#[tokio::test]
async fn metadata_lists_single_logout_only_where_the_app_uses_it() {
    let s = setup().await;
    let slo_location =
        format!("Location=\"{BASE}/app/latchkey_expense_reports_1/{}/slo/saml\"", s.external_key);
    let with_slo = |slo: Value| {
        let s = &s;
        async move {
            let uri = format!("/api/v1/apps/{}", s.app_id);
            let mut app = s.app.call(Method::GET, &uri, Value::Null).await.body;
            app["settings"]["signOn"]["slo"] = slo;
            app["settings"]["signOn"]["spCertificate"] = json!({"x5c": [sp_key().cert_base64()]});
            let replaced = s.app.call(Method::PUT, &uri, app).await;
            assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.body);
            metadata_of(s, &s.app_id, &s.external_key).await
        }
    };
    let never = metadata_of(&s, &s.app_id, &s.external_key).await;
    assert!(!never.contains("SingleLogoutService"), "no slo settings: {never}");
    let disabled =
        with_slo(json!({"enabled": false, "issuer": SP_ENTITY, "logoutUrl": "https://sp.example.com/slo"}))
            .await;
    assert!(!disabled.contains("SingleLogoutService"), "slo disabled: {disabled}");
    let enabled =
        with_slo(json!({"enabled": true, "issuer": SP_ENTITY, "logoutUrl": "https://sp.example.com/slo"}))
            .await;
    assert_eq!(enabled.matches("<md:SingleLogoutService ").count(), 2, "slo enabled: {enabled}");
    assert_eq!(enabled.matches(&slo_location).count(), 2, "HTTP-Redirect and HTTP-POST: {enabled}");

    let (_, wiki_slo) = slo_participant(&s, "Wiki", "wiki.example.com", &sp_key()).await;
    let wiki_external_key = wiki_slo.split('/').nth(3).unwrap();
    let listed = s.app.call(Method::GET, "/api/v1/apps", Value::Null).await.body;
    let wiki_id = listed.as_array().unwrap().iter().find(|a| a["label"] == "Wiki").unwrap()["id"].clone();
    let wiki = metadata_of(&s, wiki_id.as_str().unwrap(), wiki_external_key).await;
    assert_eq!(
        wiki.matches(&format!("Location=\"{BASE}{wiki_slo}\"")).count(),
        2,
        "an app taking part in SLO answers there: {wiki}"
    );
}

/// The base64 signing certificates of a metadata document, in order.
fn metadata_certificates(metadata: &str) -> Vec<&str> {
    metadata.split("<ds:X509Certificate>").skip(1).map(|rest| rest.split('<').next().unwrap()).collect()
}

/// `?kid=` on the admin metadata narrows the document to that published key's certificate (the
/// active one, or one staged next); a kid of no published key is not found.
#[tokio::test]
async fn admin_metadata_with_a_kid_carries_only_that_signing_certificate() {
    use latchkey_core::signing_keys::{self, KeyStatus};
    use latchkey_core::store::SigningKeyStore as _;
    let s = setup().await;
    let uri = format!("/api/v1/apps/{}/sso/saml/metadata", s.app_id);
    let listed =
        s.app.call(Method::GET, &format!("/api/v1/apps/{}/credentials/keys", s.app_id), Value::Null).await;
    let active_kid = listed.body[0]["kid"].as_str().unwrap().to_owned();
    let active_cert = listed.body[0]["x5c"][0].as_str().unwrap().to_owned();

    let master_key = latchkey_core::crypto::MasterKey::from_base64(&s.app.master_key).unwrap();
    let (next, _) = signing_keys::generate(&master_key, KeyStatus::Next, s.app.clock.now()).unwrap();
    s.app.store.insert_signing_key(&next).await.unwrap();
    let next_cert = STANDARD.encode(&next.certificate_der);
    let all = s.app.call(Method::GET, &uri, Value::Null).await;
    assert_eq!(
        metadata_certificates(all.body.as_str().unwrap()),
        [next_cert.as_str(), active_cert.as_str()],
        "without kid: every published key, the next one first"
    );

    for (kid, cert) in [(active_kid.as_str(), active_cert.as_str()), (next.kid.as_str(), next_cert.as_str())]
    {
        let only = s.app.call(Method::GET, &format!("{uri}?kid={kid}"), Value::Null).await;
        assert_eq!(only.status, StatusCode::OK, "{kid}: {}", only.body);
        let document = only.body.as_str().unwrap();
        assert_eq!(document.matches("<md:KeyDescriptor use=\"signing\">").count(), 1, "{kid}: {document}");
        assert_eq!(metadata_certificates(document), [cert], "{kid}");
        assert!(document.contains("<md:SingleSignOnService "), "{kid}: the rest of the document stays");
    }

    for kid in ["kidOfNoKeyOfOurs", ""] {
        let unknown = s.app.call(Method::GET, &format!("{uri}?kid={kid}"), Value::Null).await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{kid:?}: {}", unknown.body);
        assert_eq!(unknown.code(), "E0000007", "{kid:?}: {}", unknown.body);
        assert_eq!(unknown.body["errorSummary"], format!("Not found: Resource not found: {kid} (Key)"));
    }
    let public = Browser::default()
        .get(&s.app, &format!("/app/{}/sso/saml/metadata?kid={active_kid}", s.external_key))
        .await;
    assert_eq!(metadata_certificates(&public.body).len(), 2, "the public document ignores kid");

    // After a rollover the replaced key is still published (previous) until it is retired.
    assert!(s.app.store.promote_next_signing_key().await.unwrap());
    let previous = s.app.call(Method::GET, &format!("{uri}?kid={active_kid}"), Value::Null).await;
    assert_eq!(previous.status, StatusCode::OK, "{}", previous.body);
    assert_eq!(metadata_certificates(previous.body.as_str().unwrap()), [active_cert.as_str()]);
    assert!(s.app.store.retire_previous_signing_key().await.unwrap());
    let retired = s.app.call(Method::GET, &format!("{uri}?kid={active_kid}"), Value::Null).await;
    assert_eq!(retired.status, StatusCode::NOT_FOUND, "a retired key is no longer published");
    assert_eq!(retired.code(), "E0000007");
}

#[tokio::test]
async fn embed_link_with_session_token_posts_a_response_both_sps_accept() {
    let s = setup().await;
    let token = session_token(&s.app, "alice@example.com").await;
    let mut browser = Browser::default();
    let page =
        browser.get(&s.app, &format!("{}?sessionToken={token}&RelayState=%2Freports%3Fq%3D1", s.embed)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(browser.sid.is_some(), "the token became the session cookie");
    assert_eq!(page.form_action().as_deref(), Some(ACS));
    assert_eq!(page.field("RelayState").as_deref(), Some("/reports?q=1"));
    let csp = page.csp.clone().unwrap();
    assert!(
        csp.contains("form-action https://sp.example.com") && csp.contains("script-src 'nonce-"),
        "{csp}"
    );
    let xml = page.response_xml();
    assert!(!xml.contains("InResponseTo"), "IdP-initiated: no InResponseTo");
    let read = assert_accepted(&expect(&s, None), &page.field("SAMLResponse").unwrap());
    if let Some(read) = read {
        assert_eq!(read["name_id"], "alice@example.com");
        assert_eq!(read["attributes"]["email"], json!(["alice@example.com"]));
        assert_eq!(read["attributes"]["fullName"], json!(["Test User"]));
    }
    // The session now exists: the same link works without a token, with a fresh Response.
    let again = browser.get(&s.app, &s.embed).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_ne!(again.field("SAMLResponse"), page.field("SAMLResponse"));
    let logs = s
        .app
        .call(Method::GET, "/api/v1/logs?filter=eventType%20eq%20%22user.authentication.sso%22", Value::Null)
        .await;
    assert_eq!(logs.body.as_array().unwrap().len(), 2, "{}", logs.body);
}

#[tokio::test]
async fn embed_link_refuses_unassigned_users_unknown_links_and_inactive_apps() {
    let s = setup().await;
    s.app.create_ok("mallory@example.com").await;
    let token = session_token(&s.app, "mallory@example.com").await;
    let mut browser = Browser::default();
    let page = browser.get(&s.app, &format!("{}?sessionToken={token}", s.embed)).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.posts_nothing() && page.body.contains("not assigned"), "{}", page.body);

    let wrong_link = s.embed.rsplit_once('/').unwrap().0.to_owned() + "/aln0000000000000000";
    let unknown = browser.get(&s.app, &wrong_link).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(unknown.posts_nothing());

    let too_long = format!("{}?RelayState={}", s.embed, "r".repeat(81));
    assert_eq!(browser.get(&s.app, &too_long).await.status, StatusCode::BAD_REQUEST);

    s.app.call(Method::POST, &format!("/api/v1/apps/{}/lifecycle/deactivate", s.app_id), Value::Null).await;
    let token = session_token(&s.app, "alice@example.com").await;
    let inactive = Browser::default().get(&s.app, &format!("{}?sessionToken={token}", s.embed)).await;
    assert_eq!(inactive.status, StatusCode::FORBIDDEN);
    assert!(inactive.posts_nothing());
}

#[tokio::test]
async fn embed_link_without_a_session_goes_to_sign_in_and_back() {
    let s = setup().await;
    let mut browser = Browser::default();
    let page = browser.get(&s.app, &format!("{}?RelayState=deep", s.embed)).await;
    assert_eq!(page.status, StatusCode::FOUND);
    let location = page.location.unwrap();
    let expected =
        format!("{BASE}/login/login.htm?fromURI={}", url_encode(&format!("{}?RelayState=deep", s.embed)));
    assert_eq!(location, expected);
}

fn url_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test]
async fn shared_browser_second_token_wins_through_the_embed_link() {
    let s = setup().await;
    let bob = s.app.create_ok("bob@example.com").await;
    s.app.call(Method::POST, &format!("/api/v1/apps/{}/users", s.app_id), json!({"id": bob})).await;
    let mut browser = Browser::default();
    let a = browser
        .get(
            &s.app,
            &format!("{}?sessionToken={}", s.embed, session_token(&s.app, "alice@example.com").await),
        )
        .await;
    assert!(a.response_xml().contains(">alice@example.com</saml:NameID>"));
    let a_sid = browser.sid.clone().unwrap();
    let b = browser
        .get(&s.app, &format!("{}?sessionToken={}", s.embed, session_token(&s.app, "bob@example.com").await))
        .await;
    assert_ne!(browser.sid.as_deref(), Some(a_sid.as_str()), "B's cookie replaced A's");
    if let Some(read) = assert_accepted(&expect(&s, None), &b.field("SAMLResponse").unwrap()) {
        assert_eq!(read["name_id"], "bob@example.com", "the second person arrives as themselves");
    }
    let old = Browser { sid: Some(a_sid) }.get(&s.app, &s.embed).await;
    assert_eq!(old.status, StatusCode::FOUND, "A's session was ended: its cookie leads to sign-in");

    // An invalid token ends B's session too, and the browser goes to sign-in.
    let invalid = browser.get(&s.app, &format!("{}?sessionToken=not-a-token", s.embed)).await;
    assert_eq!(invalid.status, StatusCode::FOUND);
    assert!(invalid.location.unwrap().contains("/login/login.htm"));
    assert!(browser.sid.is_none(), "the cookie was cleared");
}

#[tokio::test]
async fn okta_classic_precedence_keeps_the_first_user() {
    let s = setup_with(TokenPrecedence::Cookie, |_| {}).await;
    let bob = s.app.create_ok("bob@example.com").await;
    s.app.call(Method::POST, &format!("/api/v1/apps/{}/users", s.app_id), json!({"id": bob})).await;
    let mut browser = signed_in_as_alice(&s).await;
    let b = browser
        .get(&s.app, &format!("{}?sessionToken={}", s.embed, session_token(&s.app, "bob@example.com").await))
        .await;
    assert!(b.response_xml().contains(">alice@example.com</saml:NameID>"), "cookie wins: B arrives as A");
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

#[tokio::test]
async fn sp_initiated_redirect_parks_the_request_until_sign_in_then_answers_it() {
    let s = setup().await;
    let key = sp_key();
    with_sp_certificate(&s, &key, true).await;
    let id = new_saml_id();
    let mut browser = Browser::default();
    let page = browser
        .get(&s.app, &redirect_url(&s, &authn_request(&s, &id, "", ""), Some("rs-1"), &key, true))
        .await;
    assert_eq!(page.status, StatusCode::FOUND, "{}", page.body);
    let location = page.location.unwrap();
    let from = location.split("fromURI=").nth(1).unwrap();
    let resume: String =
        url::form_urlencoded::parse(format!("x={from}").as_bytes()).next().unwrap().1.into_owned();
    assert!(resume.starts_with(&format!("{}?resume=", sso_path(&s))), "{resume}");

    // Back from the sign-in page with a session (here: a token on the resume URL).
    let token = session_token(&s.app, "alice@example.com").await;
    let answer = browser.get(&s.app, &format!("{resume}&sessionToken={token}")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.field("RelayState").as_deref(), Some("rs-1"));
    let xml = answer.response_xml();
    assert!(xml.contains(&format!("InResponseTo=\"{id}\"")));
    if let Some(read) = assert_accepted(&expect(&s, Some(&id)), &answer.field("SAMLResponse").unwrap()) {
        assert_eq!(read["in_response_to"], json!(id));
    }
    let replay = browser.get(&s.app, &resume).await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST, "a parked request is answered once");
    assert!(replay.posts_nothing());
}

#[tokio::test]
async fn sp_initiated_with_a_session_answers_at_once_on_both_bindings() {
    let s = setup().await;
    let key = sp_key();
    with_sp_certificate(&s, &key, false).await;
    let mut browser = signed_in_as_alice(&s).await;

    let id = new_saml_id();
    let unsigned =
        browser.get(&s.app, &redirect_url(&s, &authn_request(&s, &id, "", ""), None, &key, false)).await;
    assert_eq!(unsigned.status, StatusCode::OK, "signatures are optional unless required: {}", unsigned.body);
    assert_accepted(&expect(&s, Some(&id)), &unsigned.field("SAMLResponse").unwrap());

    // Okta: the SSO URL without a request is an IdP-initiated sign-in.
    let unsolicited = browser.get(&s.app, &format!("{}?RelayState=idp", sso_path(&s))).await;
    assert_eq!(unsolicited.status, StatusCode::OK, "{}", unsolicited.body);
    assert_eq!(unsolicited.field("RelayState").as_deref(), Some("idp"));
    assert_accepted(&expect(&s, None), &unsolicited.field("SAMLResponse").unwrap());

    let id = new_saml_id();
    let form = format!(
        "SAMLRequest={}&RelayState=post-rs",
        url_encode(&STANDARD.encode(authn_request(&s, &id, "", "")))
    );
    let posted = browser.send(&s.app, Method::POST, &sso_path(&s), Some(form)).await;
    assert_eq!(posted.status, StatusCode::OK, "{}", posted.body);
    assert_eq!(posted.field("RelayState").as_deref(), Some("post-rs"));
    assert_accepted(&expect(&s, Some(&id)), &posted.field("SAMLResponse").unwrap());
}

#[tokio::test]
async fn sp_errors_go_back_as_saml_status_codes() {
    let s = setup().await;
    let key = sp_key();
    let mut browser = Browser::default();
    // IsPassive without a session: NoPassive, never a sign-in page.
    let id = new_saml_id();
    let passive = browser
        .get(&s.app, &redirect_url(&s, &authn_request(&s, &id, " IsPassive=\"true\"", ""), None, &key, false))
        .await;
    assert_eq!(passive.status, StatusCode::OK);
    let xml = passive.response_xml();
    assert!(xml.contains("status:NoPassive") && xml.contains(&format!("InResponseTo=\"{id}\"")), "{xml}");
    assert!(!xml.contains("<saml:Assertion"), "no assertion in an error");
    if let Some((pysaml2, node_saml)) =
        verify_with_both(&expect(&s, Some(&id)), &passive.field("SAMLResponse").unwrap())
    {
        assert_eq!((pysaml2["ok"].clone(), node_saml["ok"].clone()), (json!(false), json!(false)));
        let errors = format!("{} {}", pysaml2["error"], node_saml["error"]);
        assert!(errors.contains("NoPassive") || errors.contains("Responder"), "{errors}");
    }
    // A NameID format the app does not produce.
    let id = new_saml_id();
    let policy = "<samlp:NameIDPolicy Format=\"urn:oasis:names:tc:SAML:2.0:nameid-format:persistent\" AllowCreate=\"true\"/>";
    let page =
        browser.get(&s.app, &redirect_url(&s, &authn_request(&s, &id, "", policy), None, &key, false)).await;
    assert!(page.response_xml().contains("status:InvalidNameIDPolicy"));
    // An authentication context Latchkey does not offer.
    let id = new_saml_id();
    let context = "<samlp:RequestedAuthnContext Comparison=\"exact\"><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:X509</saml:AuthnContextClassRef></samlp:RequestedAuthnContext>";
    let page =
        browser.get(&s.app, &redirect_url(&s, &authn_request(&s, &id, "", context), None, &key, false)).await;
    assert!(page.response_xml().contains("status:NoAuthnContext"));
    // The app's own format is honoured.
    browser
        .get(
            &s.app,
            &format!("{}?sessionToken={}", s.embed, session_token(&s.app, "alice@example.com").await),
        )
        .await;
    let id = new_saml_id();
    let policy = "<samlp:NameIDPolicy Format=\"urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress\"/>";
    let page =
        browser.get(&s.app, &redirect_url(&s, &authn_request(&s, &id, "", policy), None, &key, false)).await;
    assert_accepted(&expect(&s, Some(&id)), &page.field("SAMLResponse").unwrap());
}

#[tokio::test]
async fn force_authn_sends_a_signed_in_user_back_to_the_sign_in_page() {
    let s = setup().await;
    let key = sp_key();
    let mut browser = signed_in_as_alice(&s).await;
    let (id, page) = force_authn(&s, &mut browser, &key).await;
    assert_eq!(page.status, StatusCode::FOUND);
    let location = page.location.unwrap();
    assert!(
        location.contains("/login/login.htm?fromURI=") && location.ends_with("&prompt=login"),
        "{location}"
    );
    // The old session does not satisfy it; a fresh authentication does.
    let resume = resume_url(&location);
    s.app.clock.advance_secs(2);
    let stale = browser.get(&s.app, &resume).await;
    assert_eq!(stale.status, StatusCode::FOUND, "the existing session is older than the request");
    let fresh = browser
        .get(&s.app, &format!("{resume}&sessionToken={}", session_token(&s.app, "alice@example.com").await))
        .await;
    assert_eq!(fresh.status, StatusCode::OK, "{}", fresh.body);
    assert_accepted(&expect(&s, Some(&id)), &fresh.field("SAMLResponse").unwrap());
}

#[tokio::test]
async fn hostile_requests_are_refused_with_a_page_and_nothing_is_posted() {
    let s = setup().await;
    let key = sp_key();
    with_sp_certificate(&s, &key, true).await;
    let other = sp_key();
    let mut browser = signed_in_as_alice(&s).await;
    let path = sso_path(&s);
    let deflate_bomb = {
        use std::io::Write;
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![b'<'; 8 * 1024 * 1024]).unwrap();
        url_encode(&STANDARD.encode(enc.finish().unwrap()))
    };
    let dtd =
        "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;\">]>";
    let cases: Vec<(&str, String)> = vec![
        (
            "dtd",
            redirect_url(
                &s,
                &format!("{dtd}{}", authn_request(&s, &new_saml_id(), "", "")),
                None,
                &key,
                true,
            ),
        ),
        ("deflate bomb", format!("{path}?SAMLRequest={deflate_bomb}")),
        ("malformed base64", format!("{path}?SAMLRequest=%%%%not-base64")),
        ("oversized", format!("{path}?SAMLRequest={}", "A".repeat(20_000))),
        (
            "wrong issuer",
            redirect_url(
                &s,
                &authn_request(&s, &new_saml_id(), "", "").replace(SP_ENTITY, "https://evil.example"),
                None,
                &key,
                true,
            ),
        ),
        (
            "unregistered ACS",
            redirect_url(
                &s,
                &authn_request(&s, &new_saml_id(), "", "").replace(ACS, "https://evil.example/acs"),
                None,
                &key,
                true,
            ),
        ),
        ("bad signature", redirect_url(&s, &authn_request(&s, &new_saml_id(), "", ""), None, &other, true)),
        (
            "missing required signature",
            redirect_url(&s, &authn_request(&s, &new_saml_id(), "", ""), None, &key, false),
        ),
        (
            "wrong destination",
            redirect_url(
                &s,
                &authn_request(&s, &new_saml_id(), "", "").replace("/sso/saml\"", "/elsewhere\""),
                None,
                &key,
                true,
            ),
        ),
        (
            "stale",
            redirect_url(
                &s,
                &authn_request(&s, &new_saml_id(), "", "")
                    .replace(&saml_time(latchkey_core::SystemClock.now())[..4], "2001"),
                None,
                &key,
                true,
            ),
        ),
        ("comment", redirect_url(&s, &authn_request(&s, &new_saml_id(), "", "<!-- x -->"), None, &key, true)),
        (
            "not an AuthnRequest",
            redirect_url(
                &s,
                "<samlp:LogoutResponse xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" ID=\"_x\" Version=\"2.0\" IssueInstant=\"2026-01-01T00:00:00Z\"><saml:Issuer xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\">x</saml:Issuer><samlp:Status><samlp:StatusCode Value=\"urn:oasis:names:tc:SAML:2.0:status:Success\"/></samlp:Status></samlp:LogoutResponse>",
                None,
                &key,
                true,
            ),
        ),
        (
            "unknown app",
            "/app/latchkey_expense_reports_1/exk0000000000000000/sso/saml?SAMLRequest=x".to_owned(),
        ),
    ];
    for (name, url) in cases {
        let page = browser.get(&s.app, &url).await;
        assert!(page.status.is_client_error(), "{name}: {} {}", page.status, page.body);
        assert!(page.posts_nothing(), "{name}: nothing goes to any SP");
        assert!(page.body.contains("<h1>"), "{name}: a page for the user");
    }
    // Replay: the same request id twice.
    let id = new_saml_id();
    let xml = authn_request(&s, &id, "", "");
    assert_eq!(browser.get(&s.app, &redirect_url(&s, &xml, None, &key, true)).await.status, StatusCode::OK);
    let replayed = browser.get(&s.app, &redirect_url(&s, &xml, None, &key, true)).await;
    assert_eq!(replayed.status, StatusCode::BAD_REQUEST);
    assert!(replayed.posts_nothing() && replayed.body.contains("replay"), "{}", replayed.body);
    // POST binding with a DTD.
    let form = format!("SAMLRequest={}", url_encode(&STANDARD.encode(format!("{dtd}<r>&b;</r>"))));
    let page = browser.send(&s.app, Method::POST, &path, Some(form)).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.posts_nothing());
}

/// A second app that takes part in SLO, and the first one set up to initiate it.
/// Returns the wiki's embed link and its SLO path.
async fn slo_setup(s: &Setup, initiator_key: &SigningKey, participant_key: &SigningKey) -> (String, String) {
    let mut app = s.app.call(Method::GET, &format!("/api/v1/apps/{}", s.app_id), Value::Null).await.body;
    app["settings"]["signOn"]["spCertificate"] = json!({"x5c": [initiator_key.cert_base64()]});
    app["settings"]["signOn"]["slo"] =
        json!({"enabled": true, "issuer": SP_ENTITY, "logoutUrl": "https://sp.example.com/slo"});
    assert_eq!(
        s.app.call(Method::PUT, &format!("/api/v1/apps/{}", s.app_id), app).await.status,
        StatusCode::OK
    );
    slo_participant(s, "Wiki", "wiki.example.com", participant_key).await
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

fn decode_redirect_xml(url: &str, param: &str) -> String {
    let query = url.split_once('?').unwrap().1;
    let value =
        url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == param).unwrap().1.into_owned();
    let mut out = String::new();
    use std::io::Read;
    flate2::read::DeflateDecoder::new(&STANDARD.decode(value).unwrap()[..]).read_to_string(&mut out).unwrap();
    out
}

/// The expense app's SLO path, and a LogoutRequest from its SP for Alice naming `session_index`
/// (with its id), unsigned: the caller signs it for the binding.
fn alice_logout_request(s: &Setup, session_index: Option<&str>) -> (String, String, String) {
    let slo_path = format!("/app/latchkey_expense_reports_1/{}/slo/saml", s.external_key);
    let request_id = new_saml_id();
    let logout = latchkey_core::saml::logout::build_logout_request(
        &request_id,
        latchkey_core::SystemClock.now(),
        SP_ENTITY,
        &format!("{BASE}{slo_path}"),
        "alice@example.com",
        "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
        session_index,
    )
    .unwrap();
    (slo_path, request_id, logout)
}

fn attr(xml: &str, name: &str) -> String {
    let marker = format!("{name}=\"");
    let start = xml.find(&marker).unwrap() + marker.len();
    xml[start..start + xml[start..].find('"').unwrap()].to_owned()
}

#[tokio::test]
async fn sp_initiated_single_logout_walks_the_other_apps_and_answers_the_initiator() {
    let s = setup().await;
    let (initiator, participant) = (sp_key(), sp_key());
    let (wiki_embed, wiki_slo) = slo_setup(&s, &initiator, &participant).await;
    let mut browser = Browser::default();
    let first = browser
        .get(
            &s.app,
            &format!("{}?sessionToken={}", s.embed, session_token(&s.app, "alice@example.com").await),
        )
        .await;
    let session_index = attr(&first.response_xml(), "SessionIndex");
    assert_eq!(browser.get(&s.app, &wiki_embed).await.status, StatusCode::OK);
    let sid = browser.sid.clone().unwrap();

    let (slo_path, request_id, logout) = alice_logout_request(&s, Some(&session_index));
    // Unsigned logout requests are refused.
    let unsigned =
        redirect_binding_url(&slo_path, MessageParam::SamlRequest, &logout, Some("sp-rs"), &initiator)
            .unwrap();
    let unsigned = unsigned.split("&SigAlg=").next().unwrap().to_owned();
    assert_eq!(browser.get(&s.app, &unsigned).await.status, StatusCode::BAD_REQUEST);

    let signed =
        redirect_binding_url(&slo_path, MessageParam::SamlRequest, &logout, Some("sp-rs"), &initiator)
            .unwrap();
    let step = browser.get(&s.app, &signed).await;
    assert_eq!(step.status, StatusCode::FOUND, "{}", step.body);
    assert!(
        step.set_cookie.iter().any(|c| c.starts_with("sid=;") && c.contains("Max-Age=0")),
        "cookie cleared"
    );
    assert_eq!(
        Browser { sid: Some(sid) }.get(&s.app, &s.embed).await.status,
        StatusCode::FOUND,
        "session ended"
    );
    let to_wiki = step.location.unwrap();
    assert!(to_wiki.starts_with("https://wiki.example.com/slo?SAMLRequest="), "{to_wiki}");
    assert!(to_wiki.contains("&SigAlg=") && to_wiki.contains("&Signature="), "signed: {to_wiki}");
    let wiki_request = decode_redirect_xml(&to_wiki, "SAMLRequest");
    assert!(
        wiki_request.contains("<samlp:LogoutRequest")
            && wiki_request.contains(">alice@example.com</saml:NameID>")
    );
    let relay: String = url::form_urlencoded::parse(to_wiki.split_once('?').unwrap().1.as_bytes())
        .find(|(k, _)| k == "RelayState")
        .unwrap()
        .1
        .into_owned();

    // The wiki answers; the IdP then answers the initiator.
    let wiki_response = latchkey_core::saml::logout::build_logout_response(
        &new_saml_id(),
        latchkey_core::SystemClock.now(),
        "https://wiki.example.com",
        &format!("{BASE}{wiki_slo}"),
        &attr(&wiki_request, "ID"),
        latchkey_core::saml::logout::LogoutOutcome::Success,
    )
    .unwrap();
    let back = redirect_binding_url(
        &wiki_slo,
        MessageParam::SamlResponse,
        &wiki_response,
        Some(&relay),
        &participant,
    )
    .unwrap();
    let done = browser.get(&s.app, &back).await;
    assert_eq!(done.status, StatusCode::FOUND, "{}", done.body);
    let to_initiator = done.location.unwrap();
    assert!(to_initiator.starts_with("https://sp.example.com/slo?SAMLResponse="), "{to_initiator}");
    assert!(to_initiator.contains("RelayState=sp-rs"));
    let final_response = decode_redirect_xml(&to_initiator, "SAMLResponse");
    assert!(final_response.contains(&format!("InResponseTo=\"{request_id}\"")));
    assert!(final_response.contains("status:Success"));
    // The walk is over: replaying the wiki's answer finds nothing to continue.
    assert_eq!(browser.get(&s.app, &back).await.status, StatusCode::BAD_REQUEST);
}

/// A LogoutRequest whose SessionIndex names no session of ours, from a browser still signed in to
/// the app: that session is not the one named, so it stays, and the SP hears PartialLogout.
#[tokio::test]
async fn a_logout_request_naming_no_session_of_ours_is_answered_partial() {
    let s = setup().await;
    let (initiator, participant) = (sp_key(), sp_key());
    slo_setup(&s, &initiator, &participant).await;
    let mut browser = Browser::default();
    let token = session_token(&s.app, "alice@example.com").await;
    browser.get(&s.app, &format!("{}?sessionToken={token}", s.embed)).await;
    let sid = browser.sid.clone().unwrap();
    let (slo_path, request_id, logout) = alice_logout_request(&s, Some("_nosuchsessionindex"));
    let signed =
        redirect_binding_url(&slo_path, MessageParam::SamlRequest, &logout, None, &initiator).unwrap();
    let answer = browser.get(&s.app, &signed).await;
    assert_eq!(answer.status, StatusCode::FOUND, "{}", answer.body);
    let to_initiator = answer.location.unwrap();
    assert!(to_initiator.starts_with("https://sp.example.com/slo?SAMLResponse="), "{to_initiator}");
    let response = decode_redirect_xml(&to_initiator, "SAMLResponse");
    assert!(response.contains(&format!("InResponseTo=\"{request_id}\"")), "{response}");
    let nested = "<samlp:StatusCode Value=\"urn:oasis:names:tc:SAML:2.0:status:Responder\"><samlp:StatusCode \
                  Value=\"urn:oasis:names:tc:SAML:2.0:status:PartialLogout\">";
    assert!(response.contains(nested), "PartialLogout nested in Responder: {response}");
    assert!(
        !answer.set_cookie.iter().any(|c| c.starts_with("sid=;")),
        "the browser's session is not the one named"
    );
    let still = Browser { sid: Some(sid) }.get(&s.app, &s.embed).await;
    assert_eq!(still.status, StatusCode::OK, "the session stays");
}

/// Alice signs in at the initiator, visits each of `participants` (embed links) in order, and the
/// initiator sends a signed LogoutRequest (RelayState `sp-rs`). Returns the LogoutRequest's ID and
/// where the IdP sends the browser next.
async fn start_single_logout(
    s: &Setup,
    browser: &mut Browser,
    initiator: &SigningKey,
    participants: &[&str],
) -> (String, String) {
    let token = session_token(&s.app, "alice@example.com").await;
    let first = browser.get(&s.app, &format!("{}?sessionToken={token}", s.embed)).await;
    let session_index = attr(&first.response_xml(), "SessionIndex");
    for embed in participants {
        // The walk visits apps in the order they were signed in to (by time).
        s.app.clock.advance_secs(1);
        assert_eq!(browser.get(&s.app, embed).await.status, StatusCode::OK);
    }
    let (slo_path, request_id, logout) = alice_logout_request(s, Some(&session_index));
    let signed =
        redirect_binding_url(&slo_path, MessageParam::SamlRequest, &logout, Some("sp-rs"), initiator)
            .unwrap();
    let step = browser.get(&s.app, &signed).await;
    assert_eq!(step.status, StatusCode::FOUND, "{}", step.body);
    (request_id, step.location.unwrap())
}

/// The value of `param` in `url`'s query.
fn query_param(url: &str, param: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == param).map(|(_, v)| v.into_owned())
}

/// An SP's LogoutResponse to `in_response_to`, sent back to its SLO path over HTTP-Redirect and
/// signed by `key`.
fn logout_answer(
    slo_path: &str,
    issuer: &str,
    in_response_to: &str,
    relay: &str,
    key: &SigningKey,
) -> String {
    let xml = latchkey_core::saml::logout::build_logout_response(
        &new_saml_id(),
        latchkey_core::SystemClock.now(),
        issuer,
        &format!("{BASE}{slo_path}"),
        in_response_to,
        latchkey_core::saml::logout::LogoutOutcome::Success,
    )
    .unwrap();
    redirect_binding_url(slo_path, MessageParam::SamlResponse, &xml, Some(relay), key).unwrap()
}

/// The IdP's signing certificate (DER) from its metadata.
fn idp_certificate(metadata: &str) -> Vec<u8> {
    let start = metadata.find("<ds:X509Certificate>").unwrap() + "<ds:X509Certificate>".len();
    STANDARD.decode(&metadata[start..start + metadata[start..].find('<').unwrap()]).unwrap()
}

/// Asserts that `url` carries the IdP's LogoutResponse to the initiator, signed by the IdP's key,
/// and returns its XML.
fn assert_signed_answer_to_initiator(s: &Setup, url: &str) -> String {
    use latchkey_core::saml::inbound;
    assert!(url.starts_with("https://sp.example.com/slo?SAMLResponse="), "{url}");
    assert_eq!(query_param(url, "RelayState").as_deref(), Some("sp-rs"), "the initiator's RelayState");
    let received = inbound::decode_redirect(url.split_once('?').unwrap().1, &Default::default()).unwrap();
    let signature = received.signature.expect("the LogoutResponse is signed");
    inbound::verify_redirect_signature(&signature, &idp_certificate(&s.metadata)).unwrap();
    received.decoded.xml
}

/// One SP answering the IdP's LogoutRequest with a LogoutResponse that cannot be accepted does not
/// strand the logout: the walk goes on to the next app, and the initiator hears PartialLogout.
#[tokio::test]
async fn a_participant_answering_badly_is_passed_over_and_the_initiator_hears_partial_logout() {
    let s = setup().await;
    let (initiator, wiki_key, docs_key) = (sp_key(), sp_key(), sp_key());
    let (wiki_embed, wiki_slo) = slo_setup(&s, &initiator, &wiki_key).await;
    let (docs_embed, docs_slo) = slo_participant(&s, "Docs", "docs.example.com", &docs_key).await;
    let wiki = "https://wiki.example.com";
    let unsigned = |url: String| url.split("&SigAlg=").next().unwrap().to_owned();
    /// A bad answer from the wiki, given the ID of the request it got and the walk's RelayState.
    type BadAnswer<'a> = Box<dyn Fn(&str, &str) -> String + 'a>;
    let cases: Vec<(&str, BadAnswer<'_>, &str)> = vec![
        (
            "unsigned",
            Box::new(|id, relay| unsigned(logout_answer(&wiki_slo, wiki, id, relay, &wiki_key))),
            "logout messages must be signed",
        ),
        (
            "signed by another key",
            Box::new(|id, relay| logout_answer(&wiki_slo, wiki, id, relay, &sp_key())),
            "the signature does not verify with the app's certificate",
        ),
        (
            "answering another request",
            Box::new(|_, relay| logout_answer(&wiki_slo, wiki, &new_saml_id(), relay, &wiki_key)),
            "the LogoutResponse answers no request of this logout",
        ),
        (
            "not decodable",
            Box::new(|_, relay| format!("{wiki_slo}?SAMLResponse=x&RelayState={}", url_encode(relay))),
            "not valid base64",
        ),
    ];
    for (name, bad_answer, reason) in cases {
        let mut browser = Browser::default();
        let (request_id, to_wiki) =
            start_single_logout(&s, &mut browser, &initiator, &[&wiki_embed, &docs_embed]).await;
        assert!(to_wiki.starts_with("https://wiki.example.com/slo?SAMLRequest="), "{name}: {to_wiki}");
        let relay = query_param(&to_wiki, "RelayState").unwrap();
        let wiki_request_id = attr(&decode_redirect_xml(&to_wiki, "SAMLRequest"), "ID");

        let logs = crate::support::capture_logs();
        let bad = bad_answer(&wiki_request_id, &relay);
        let passed_over = browser.get(&s.app, &bad).await;
        assert_eq!(passed_over.status, StatusCode::FOUND, "{name}: {}", passed_over.body);
        let to_docs = passed_over.location.unwrap();
        assert!(to_docs.starts_with("https://docs.example.com/slo?SAMLRequest="), "{name}: {to_docs}");
        assert!(to_docs.contains("&SigAlg=") && to_docs.contains("&Signature="), "{name}: signed");
        assert_eq!(query_param(&to_docs, "RelayState"), Some(relay.clone()), "{name}: the same walk");
        let lines = logs.lines();
        let skipped: Vec<&String> = lines.iter().filter(|l| l.contains("goes on without this app")).collect();
        assert_eq!(skipped.len(), 1, "{name}: one warning: {lines:#?}");
        assert!(
            skipped[0].contains(" WARN ") && skipped[0].contains("request_id="),
            "{name}: {}",
            skipped[0]
        );
        assert!(skipped[0].contains(reason), "{name}: the reason {reason:?} in {}", skipped[0]);
        drop(logs);
        // The walk awaits the docs app now: the wiki's answer, again, advances nothing.
        let again = browser.get(&s.app, &bad).await;
        assert_eq!(again.status, StatusCode::BAD_REQUEST, "{name}: {}", again.body);

        let docs_request_id = attr(&decode_redirect_xml(&to_docs, "SAMLRequest"), "ID");
        let docs_answer =
            logout_answer(&docs_slo, "https://docs.example.com", &docs_request_id, &relay, &docs_key);
        let done = browser.get(&s.app, &docs_answer).await;
        assert_eq!(done.status, StatusCode::FOUND, "{name}: {}", done.body);
        let response = assert_signed_answer_to_initiator(&s, &done.location.unwrap());
        assert!(response.contains(&format!("InResponseTo=\"{request_id}\"")), "{name}: {response}");
        assert!(response.contains("status:Responder\"><samlp:StatusCode Value=\"urn:oasis:names:tc:SAML:2.0:status:PartialLogout"), "{name}: {response}");
    }
}

/// A LogoutResponse that cannot be accepted moves only a walk that awaits its app: with an unknown
/// RelayState, or at an app the walk is not waiting for, it is refused with the page, and the walk
/// still ends in Success once the apps answer properly.
#[tokio::test]
async fn a_bad_logout_response_moves_no_walk_that_does_not_await_its_app() {
    let s = setup().await;
    let (initiator, wiki_key, docs_key) = (sp_key(), sp_key(), sp_key());
    let (wiki_embed, wiki_slo) = slo_setup(&s, &initiator, &wiki_key).await;
    let (docs_embed, docs_slo) = slo_participant(&s, "Docs", "docs.example.com", &docs_key).await;
    let (wiki, docs) = ("https://wiki.example.com", "https://docs.example.com");
    let mut browser = Browser::default();
    let (request_id, to_wiki) =
        start_single_logout(&s, &mut browser, &initiator, &[&wiki_embed, &docs_embed]).await;
    let relay = query_param(&to_wiki, "RelayState").unwrap();
    let wiki_request_id = attr(&decode_redirect_xml(&to_wiki, "SAMLRequest"), "ID");
    let unsigned = |url: String| url.split("&SigAlg=").next().unwrap().to_owned();

    let refused = [
        (
            "unknown RelayState",
            unsigned(logout_answer(&wiki_slo, wiki, &wiki_request_id, "not-a-walk", &wiki_key)),
        ),
        ("unknown RelayState, not decodable", format!("{wiki_slo}?SAMLResponse=x&RelayState=not-a-walk")),
        (
            "the walk awaits the wiki, unsigned",
            unsigned(logout_answer(&docs_slo, docs, "_x", &relay, &docs_key)),
        ),
        (
            "the walk awaits the wiki, the wiki's request answered at the docs app",
            logout_answer(&docs_slo, docs, &wiki_request_id, &relay, &docs_key),
        ),
        ("the walk awaits the wiki, not decodable", format!("{docs_slo}?SAMLResponse=x&RelayState={relay}")),
    ];
    for (name, url) in refused {
        let page = browser.get(&s.app, &url).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{name}: {}", page.body);
        assert!(page.location.is_none() && page.body.contains("<h1>"), "{name}: the page, no redirect");
    }

    let to_docs =
        browser.get(&s.app, &logout_answer(&wiki_slo, wiki, &wiki_request_id, &relay, &wiki_key)).await;
    let to_docs = to_docs.location.unwrap();
    assert!(to_docs.starts_with("https://docs.example.com/slo?SAMLRequest="), "{to_docs}");
    let docs_request_id = attr(&decode_redirect_xml(&to_docs, "SAMLRequest"), "ID");
    let done =
        browser.get(&s.app, &logout_answer(&docs_slo, docs, &docs_request_id, &relay, &docs_key)).await;
    let response = assert_signed_answer_to_initiator(&s, &done.location.unwrap());
    assert!(response.contains(&format!("InResponseTo=\"{request_id}\"")), "{response}");
    assert!(response.contains("status:Success"), "nothing refused made the walk partial: {response}");
}

#[tokio::test]
async fn signout_walks_the_apps_that_take_part_in_slo() {
    let s = setup().await;
    let (initiator, participant) = (sp_key(), sp_key());
    let (wiki_embed, _) = slo_setup(&s, &initiator, &participant).await;
    let mut browser = signed_in_as_alice(&s).await;
    browser.get(&s.app, &wiki_embed).await;
    let out = browser.get(&s.app, "/login/signout").await;
    assert_eq!(out.status, StatusCode::FOUND);
    let location = out.location.unwrap();
    assert!(location.starts_with("https://wiki.example.com/slo?SAMLRequest="), "{location}");
    assert!(browser.sid.is_none(), "the IdP cookie is cleared at once");
}

/// `url` with its SigAlg replaced by `sig_alg` and signed again by `key` over the new string.
fn resigned_with_alg(url: &str, sig_alg: &str, key: &SigningKey) -> String {
    let unsigned = url.split("&SigAlg=").next().unwrap();
    let query = format!("{}&SigAlg={}", unsigned.split_once('?').unwrap().1, url_encode(sig_alg));
    let signature = key.sign_rsa_sha256(query.as_bytes()).unwrap();
    format!("{unsigned}&SigAlg={}&Signature={}", url_encode(sig_alg), url_encode(&STANDARD.encode(signature)))
}

/// A request as the browser sends it: method, URI, form body.
type Sent = (Method, String, Option<String>);

/// `xml` as an HTTP-POST form.
fn post_form(xml: &str) -> String {
    format!("SAMLRequest={}", url_encode(&STANDARD.encode(xml)))
}

#[tokio::test]
async fn requests_refused_for_their_id_destination_or_algorithm_say_why() {
    let s = setup().await;
    let key = sp_key();
    with_sp_certificate(&s, &key, false).await;
    let mut browser = signed_in_as_alice(&s).await;
    let no_destination = |id: &str| {
        let xml = authn_request(&s, id, "", "");
        let start = xml.find(" Destination=\"").unwrap();
        let end = start + 1 + xml[start + 1..].find("\" ").unwrap() + 1;
        format!("{}{}", &xml[..start], &xml[end..])
    };
    let long_id = format!("_{}", "a".repeat(300));
    let sha1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1";
    let signed_sha256 = redirect_url(&s, &authn_request(&s, &new_saml_id(), "", ""), None, &key, true);
    let sign_for_post =
        |xml: &str, id: &str| latchkey_core::saml::logout::sign_for_post(xml, id, &key).unwrap();
    let post_sha1 = {
        let id = new_saml_id();
        let signed = sign_for_post(&authn_request(&s, &id, "", ""), &id);
        let downgraded = signed.replace("http://www.w3.org/2001/04/xmldsig-more#rsa-sha256", sha1);
        assert_ne!(downgraded, signed, "the SignatureMethod was downgraded");
        post_form(&downgraded)
    };
    let post_no_destination = {
        let id = new_saml_id();
        post_form(&sign_for_post(&no_destination(&id), &id))
    };
    let get = |url: String| (Method::GET, url, None);
    let post = |form: String| (Method::POST, sso_path(&s), Some(form));
    let cases: Vec<(&str, Sent, &str)> = vec![
        (
            "ID starting with a digit",
            get(redirect_url(&s, &authn_request(&s, "1abc", "", ""), None, &key, true)),
            "xs:ID",
        ),
        (
            "ID with a colon",
            get(redirect_url(&s, &authn_request(&s, "urn:x", "", ""), None, &key, false)),
            "xs:ID",
        ),
        (
            "ID over 256 bytes",
            get(redirect_url(&s, &authn_request(&s, &long_id, "", ""), None, &key, true)),
            "xs:ID",
        ),
        (
            "signed without Destination",
            get(redirect_url(&s, &no_destination(&new_saml_id()), None, &key, true)),
            "a signed message must carry a Destination",
        ),
        (
            "POST signed without Destination",
            post(post_no_destination),
            "a signed message must carry a Destination",
        ),
        (
            "SHA-1 SigAlg",
            get(resigned_with_alg(&signed_sha256, sha1, &key)),
            "xmldsig#rsa-sha1 is not accepted (RSA-SHA256 or RSA-SHA512 only)",
        ),
        (
            "HMAC SigAlg",
            get(resigned_with_alg(
                &signed_sha256,
                "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256",
                &key,
            )),
            "xmldsig-more#hmac-sha256 is not accepted",
        ),
        ("POST SHA-1 SignatureMethod", post(post_sha1), "xmldsig#rsa-sha1 is not accepted (RSA-SHA256 only)"),
    ];
    for (name, (method, uri, form), detail) in cases {
        let page = browser.send(&s.app, method, &uri, form).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{name}: {}", page.body);
        assert!(page.posts_nothing(), "{name}: nothing goes to the SP");
        assert!(page.body.contains(detail), "{name}: wants {detail:?} in {}", page.body);
        assert!(!page.body.contains("does not verify"), "{name}: not blamed on the key");
    }
    // Unsigned requests may leave Destination out, as before.
    let id = new_saml_id();
    let unsigned = browser.get(&s.app, &redirect_url(&s, &no_destination(&id), None, &key, false)).await;
    assert_eq!(unsigned.status, StatusCode::OK, "{}", unsigned.body);
    assert!(unsigned.response_xml().contains(&format!("InResponseTo=\"{id}\"")));
    // The same rules for a LogoutRequest.
    let slo_path = format!("/app/latchkey_expense_reports_1/{}/slo/saml", s.external_key);
    let logout = |id: &str| {
        let xml = latchkey_core::saml::logout::build_logout_request(
            id,
            latchkey_core::SystemClock.now(),
            SP_ENTITY,
            &format!("{BASE}{slo_path}"),
            "alice@example.com",
            "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
            None,
        )
        .unwrap();
        redirect_binding_url(&slo_path, MessageParam::SamlRequest, &xml, None, &key).unwrap()
    };
    for (name, url, detail) in [
        ("logout ID", logout("-1"), "xs:ID"),
        ("logout SHA-1", resigned_with_alg(&logout(&new_saml_id()), sha1, &key), "rsa-sha1 is not accepted"),
    ] {
        let page = browser.get(&s.app, &url).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{name}: {}", page.body);
        assert!(page.body.contains(detail), "{name}: wants {detail:?} in {}", page.body);
    }
    // A signature by another key is still a key mismatch.
    let other = browser
        .get(&s.app, &redirect_url(&s, &authn_request(&s, &new_saml_id(), "", ""), None, &sp_key(), true))
        .await;
    assert!(other.body.contains("does not verify with the app"), "{}", other.body);
}

/// The request id an error page shows "for support".
fn shown_request_id(page: &Page) -> String {
    let start = page.body.find("<dd><code>").unwrap_or_else(|| panic!("no request id in {}", page.body)) + 10;
    page.body[start..start + page.body[start..].find("</code>").unwrap()].to_owned()
}

#[tokio::test]
async fn every_refusal_is_logged_against_the_request_id_the_page_shows() {
    let s = setup().await;
    let key = sp_key();
    with_sp_certificate(&s, &key, true).await;
    let slo_path = format!("/app/latchkey_expense_reports_1/{}/slo/saml", s.external_key);
    let signed_by_other = redirect_url(&s, &authn_request(&s, &new_saml_id(), "", ""), None, &sp_key(), true);
    let payload = signed_by_other.split("SAMLRequest=").nth(1).unwrap().split('&').next().unwrap().to_owned();
    let signature = signed_by_other.split("Signature=").nth(1).unwrap().to_owned();
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "unknown app",
            "/app/latchkey_expense_reports_1/exk0000000000000000/sso/saml?SAMLRequest=x".to_owned(),
            "external_key=\"exk0000000000000000\"",
            "no active app matches the URL",
        ),
        (
            "bad signature",
            signed_by_other,
            &s.app_id,
            "the signature does not verify with the app's certificate",
        ),
        (
            "unsigned",
            redirect_url(&s, &authn_request(&s, &new_saml_id(), "", ""), None, &key, false),
            &s.app_id,
            "this app requires signed requests",
        ),
        ("malformed", format!("{}?SAMLRequest=%%%%", sso_path(&s)), &s.app_id, "is not valid"),
        ("expired resume link", format!("{}?resume=garbage", sso_path(&s)), &s.app_id, "expired"),
        ("slo unsigned", format!("{slo_path}?SAMLRequest=x"), &s.app_id, "not valid base64"),
    ];
    for (name, url, app, reason) in cases {
        let logs = crate::support::capture_logs();
        let page = Browser::default().get(&s.app, &url).await;
        assert!(page.status.is_client_error() && page.posts_nothing(), "{name}: {}", page.body);
        let id = shown_request_id(&page);
        assert!(id.len() > 10, "{name}: {id}");
        let lines = logs.lines();
        let refused: Vec<&String> = lines.iter().filter(|l| l.contains("SAML message refused")).collect();
        assert_eq!(refused.len(), 1, "{name}: one line per refusal: {lines:#?}");
        let line = refused[0];
        assert!(line.contains(" WARN "), "{name}: {line}");
        assert!(line.contains(&format!("request_id={id}")), "{name}: the page's id {id} in {line}");
        assert!(line.contains(app), "{name}: the app {app} in {line}");
        assert!(line.contains(reason), "{name}: the reason {reason:?} in {line}");
        assert!(!line.contains(&payload) && !line.contains(&signature), "{name}: no payload in {line}");
    }
}

#[tokio::test]
async fn a_used_resume_link_is_expired_even_with_a_session() {
    let s = setup().await;
    let key = sp_key();
    let mut browser = signed_in_as_alice(&s).await;
    let (id, page) = force_authn(&s, &mut browser, &key).await;
    let location = page.location.unwrap();
    let resume = resume_url(&location);
    s.app.clock.advance_secs(2);
    let fresh = browser
        .get(&s.app, &format!("{resume}&sessionToken={}", session_token(&s.app, "alice@example.com").await))
        .await;
    assert!(fresh.response_xml().contains(&format!("InResponseTo=\"{id}\"")));
    for again in [resume.clone(), format!("{resume}&RelayState=x")] {
        let used = browser.get(&s.app, &again).await;
        assert_eq!(used.status, StatusCode::BAD_REQUEST, "{again}: {}", used.body);
        assert!(used.posts_nothing() && used.body.contains("expired"), "{}", used.body);
    }
    let anonymous = Browser::default().get(&s.app, &resume).await;
    assert_eq!(anonymous.status, StatusCode::BAD_REQUEST);
    assert!(anonymous.posts_nothing());
}
