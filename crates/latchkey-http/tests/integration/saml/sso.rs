//! Web Browser SSO (SAML profiles §4.1). IdP-initiated through the embed link, with the
//! session-token rule (a `sessionToken` on the link against the browser's session cookie);
//! SP-initiated over HTTP-Redirect (SAML bindings §3.4) and HTTP-POST (SAML bindings §3.5), parked
//! behind the sign-in page until the browser has a session and resumed once; requests the IdP
//! cannot satisfy answered with a SAML status (SAML core §3.2.2.2); ForceAuthn (SAML core §3.4.1).

use axum::http::{Method, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use latchkey_core::saml::{SigningKey, new_saml_id};
use latchkey_core::sessions::TokenPrecedence;
use serde_json::{Value, json};

use super::{
    ACS, SP_ENTITY, Setup, authn_request, redirect_url, session_token, setup, setup_with, signed_in_as_alice,
    sp_key, sso_path, url_encode, with_sp_certificate,
};
use crate::browser::{Browser, Page};
use crate::sp::{Expect, assert_accepted, verify_with_both};
use crate::support::BASE;

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
async fn embed_link_with_session_token_posts_a_response_both_sps_accept() {
    let s = setup().await;
    let token = session_token(&s.app, "alice@example.com").await;
    let mut browser = Browser::default();
    let page =
        browser.get(&s.app, &format!("{}?sessionToken={token}&RelayState=%2Freports%3Fq%3D1", s.embed)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(browser.cookie("sid").is_some(), "the token became the session cookie");
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
    let a_sid = browser.cookie("sid").unwrap().to_owned();
    let b = browser
        .get(&s.app, &format!("{}?sessionToken={}", s.embed, session_token(&s.app, "bob@example.com").await))
        .await;
    assert_ne!(browser.cookie("sid"), Some(a_sid.as_str()), "B's cookie replaced A's");
    if let Some(read) = assert_accepted(&expect(&s, None), &b.field("SAMLResponse").unwrap()) {
        assert_eq!(read["name_id"], "bob@example.com", "the second person arrives as themselves");
    }
    let old = Browser::with_cookies(&[("sid", &a_sid)]).get(&s.app, &s.embed).await;
    assert_eq!(old.status, StatusCode::FOUND, "A's session was ended: its cookie leads to sign-in");

    // An invalid token ends B's session too, and the browser goes to sign-in.
    let invalid = browser.get(&s.app, &format!("{}?sessionToken=not-a-token", s.embed)).await;
    assert_eq!(invalid.status, StatusCode::FOUND);
    assert!(invalid.location.unwrap().contains("/login/login.htm"));
    assert!(browser.cookie("sid").is_none(), "the cookie was cleared");
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
    let posted = browser.request(&s.app, Method::POST, &sso_path(&s), Some(form)).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_request_resumed_twice_at_once_is_answered_once() {
    let s = setup().await;
    let key = sp_key();
    let mut browser = Browser::default();
    let id = new_saml_id();
    let parked =
        browser.get(&s.app, &redirect_url(&s, &authn_request(&s, &id, "", ""), None, &key, false)).await;
    assert_eq!(parked.status, StatusCode::FOUND, "{}", parked.body);
    let resume = resume_url(parked.location());
    // Signed in meanwhile (in another tab, say), then both tabs come back to the request.
    let token = session_token(&s.app, "alice@example.com").await;
    browser.get(&s.app, &format!("{}?sessionToken={token}", s.embed)).await;
    let sid = browser.cookie("sid").unwrap().to_owned();
    let mut tabs = [Browser::with_cookies(&[("sid", &sid)]), Browser::with_cookies(&[("sid", &sid)])];
    let [first, second] = &mut tabs;
    let (a, b) = tokio::join!(first.get(&s.app, &resume), second.get(&s.app, &resume));
    let posted: Vec<&Page> =
        [&a, &b].into_iter().filter(|page| page.field("SAMLResponse").is_some()).collect();
    assert_eq!(posted.len(), 1, "one Response for one request: {} / {}", a.status, b.status);
    assert!(posted[0].response_xml().contains(&format!("InResponseTo=\"{id}\"")));
    // Expired (400) when the other tab had already taken it, a conflict (409) when both found it.
    let other = if a.field("SAMLResponse").is_some() { &b } else { &a };
    assert!(
        [StatusCode::BAD_REQUEST, StatusCode::CONFLICT].contains(&other.status) && other.posts_nothing(),
        "{}: {}",
        other.status,
        other.body
    );
}
