//! Requests the IdP refuses. Hostile encodings (a DTD, a deflate bomb, malformed or oversized
//! messages), the wrong issuer, ACS or Destination, bad or missing signatures, stale requests and
//! replays; IDs that are not `xs:ID` (SAML core §1.3.4); a signed message without a Destination
//! (SAML bindings §3.4.5.2, §3.5.5.2); signature algorithms other than RSA-SHA256 (and RSA-SHA512
//! on HTTP-Redirect). Each is answered with a page that posts nothing to any SP, says why, and is
//! logged once against the request id the page shows.

use axum::http::{Method, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use latchkey_core::Clock as _;
use latchkey_core::saml::logout::redirect_binding_url;
use latchkey_core::saml::{MessageParam, SigningKey, new_saml_id, saml_time};

use super::{
    ACS, SP_ENTITY, authn_request, redirect_url, setup, signed_in_as_alice, sp_key, sso_path, url_encode,
    with_sp_certificate,
};
use crate::browser::{Browser, Page};
use crate::support::BASE;

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
    let page = browser.request(&s.app, Method::POST, &path, Some(form)).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.posts_nothing());
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
        let page = browser.request(&s.app, method, &uri, form).await;
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
