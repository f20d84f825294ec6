//! The IdP's metadata (SAML metadata §2.4.3, IDPSSODescriptor): the public document and the admin
//! API's agree; the endpoints it names; SingleLogoutService only where the app uses Single Logout;
//! the signing certificates (KeyDescriptor, SAML metadata §2.4.1.1), narrowed by `?kid=`.

use axum::http::{Method, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use latchkey_core::Clock as _;
use serde_json::{Value, json};

use super::{SP_ENTITY, Setup, setup, slo_participant, sp_key};
use crate::browser::Browser;
use crate::support::BASE;

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
