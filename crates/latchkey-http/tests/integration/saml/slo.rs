//! Single Logout (SAML profiles §4.4; SAML core §3.7), front-channel over HTTP-Redirect. An SP's
//! signed LogoutRequest ends the browser's session and walks the other apps that take part, in the
//! order they were signed in to, before the initiator hears the outcome; a LogoutRequest naming no
//! session of ours, or a participant that answers badly, makes that outcome PartialLogout (inside
//! Responder, SAML core §3.2.2.2); a LogoutResponse moves only a walk that awaits its app; signing
//! out at the IdP walks the same apps.

use axum::http::{Method, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use latchkey_core::Clock as _;
use latchkey_core::saml::logout::redirect_binding_url;
use latchkey_core::saml::{MessageParam, SigningKey, new_saml_id};
use serde_json::{Value, json};

use super::{
    SP_ENTITY, Setup, session_token, setup, signed_in_as_alice, slo_participant, sp_key, url_encode,
};
use crate::browser::Browser;
use crate::support::BASE;

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
    let sid = browser.cookie("sid").unwrap().to_owned();

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
        step.set_cookies.iter().any(|c| c.starts_with("sid=;") && c.contains("Max-Age=0")),
        "cookie cleared"
    );
    assert_eq!(
        Browser::with_cookies(&[("sid", &sid)]).get(&s.app, &s.embed).await.status,
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
    let sid = browser.cookie("sid").unwrap().to_owned();
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
        !answer.set_cookies.iter().any(|c| c.starts_with("sid=;")),
        "the browser's session is not the one named"
    );
    let still = Browser::with_cookies(&[("sid", &sid)]).get(&s.app, &s.embed).await;
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
    assert!(browser.cookie("sid").is_none(), "the IdP cookie is cleared at once");
}
