//! OpenID Connect at Okta's URLs: OIDC apps in the apps API with their client secrets, discovery
//! and keys for both authorization servers, `authorize` under the session-token rule (RFC 6749
//! §4.1, PKCE RFC 7636), the token endpoint (RFC 6749 §4.1.3, §5.2) and userinfo (OpenID Connect
//! Core §5.3). Independent relying parties check the same flows end to end (`e2e/node/oidc.test.mjs`).

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::browser::Browser;
use crate::support::{App, BASE, Reply, app_realtime};

const PASSWORD: &str = "Correct-Horse-9";
const REDIRECT: &str = "https://rp.example.com/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

struct Rp {
    app: App,
    client_id: String,
    secret: String,
    alice: String,
}

fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn oidc_app_body(extra_settings: Value) -> Value {
    let mut settings = json!({
        "redirect_uris": [REDIRECT],
        "post_logout_redirect_uris": ["https://rp.example.com/"],
        "response_types": ["code"],
        "grant_types": ["authorization_code"],
        "application_type": "web",
    });
    if let (Some(s), Some(e)) = (settings.as_object_mut(), extra_settings.as_object()) {
        s.extend(e.clone());
    }
    json!({
        "name": "oidc_client",
        "label": "Reports RP",
        "signOnMode": "OPENID_CONNECT",
        "credentials": {"oauthClient": {"token_endpoint_auth_method": "client_secret_basic"}},
        "settings": {"oauthClient": settings},
    })
}

async fn setup() -> Rp {
    let app = app_realtime(|_| {}).await;
    let created = app.call(Method::POST, "/api/v1/apps", oidc_app_body(json!({}))).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let client_id = created.body["id"].as_str().unwrap().to_owned();
    let secret = created.body["credentials"]["oauthClient"]["client_secret"].as_str().unwrap().to_owned();
    let alice = app.create_ok("alice@example.com").await;
    let assigned =
        app.call(Method::POST, &format!("/api/v1/apps/{client_id}/users"), json!({"id": alice})).await;
    assert_eq!(assigned.status, StatusCode::OK, "{}", assigned.body);
    Rp { app, client_id, secret, alice }
}

async fn session_token(app: &App, login: &str) -> String {
    let reply = app.public("/api/v1/authn", json!({"username": login, "password": PASSWORD})).await;
    reply.body["sessionToken"].as_str().unwrap_or_else(|| panic!("{}", reply.body)).to_owned()
}

fn authorize_url(rp: &Rp, extra: &str) -> String {
    format!(
        "/oauth2/v1/authorize?client_id={}&redirect_uri={}&response_type=code&scope=openid%20profile%20email\
         &state=st-1&nonce=n-1&code_challenge={}&code_challenge_method=S256{extra}",
        rp.client_id,
        url_encode(REDIRECT),
        challenge(VERIFIER),
    )
}

fn url_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The query parameters of a redirect to the relying party.
fn callback_params(location: &str) -> Vec<(String, String)> {
    assert!(location.starts_with(REDIRECT), "{location}");
    let query = location.split_once('?').map(|(_, q)| q).unwrap_or_default();
    url::form_urlencoded::parse(query.as_bytes()).into_owned().collect()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

async fn code_for(rp: &Rp, browser: &mut Browser, login: &str) -> String {
    let token = session_token(&rp.app, login).await;
    let page = browser.get(&rp.app, &authorize_url(rp, &format!("&sessionToken={token}"))).await;
    assert_eq!(page.status, StatusCode::FOUND, "{}", page.body);
    let params = callback_params(page.location());
    assert_eq!(param(&params, "state"), Some("st-1"));
    param(&params, "code").unwrap_or_else(|| panic!("{params:?}")).to_owned()
}

async fn token_request(rp: &Rp, auth: Option<(&str, &str)>, form: &[(&str, &str)]) -> Reply {
    let body: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let mut request = Request::builder()
        .method(Method::POST)
        .uri("/oauth2/v1/token")
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some((id, secret)) = auth {
        request =
            request.header("authorization", format!("Basic {}", STANDARD.encode(format!("{id}:{secret}"))));
    }
    send(&rp.app, request.body(Body::from(body)).unwrap()).await
}

async fn send(app: &App, request: Request<Body>) -> Reply {
    use tower::ServiceExt as _;
    let response = app.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Reply { status, headers, body }
}

async fn redeem(rp: &Rp, code: &str) -> Reply {
    token_request(
        rp,
        Some((&rp.client_id, &rp.secret)),
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
    )
    .await
}

/// The claims of a JWT, after checking its RS256 signature against the published JWKS.
async fn verified_claims(app: &App, token: &str) -> Value {
    let jwks = app.call(Method::GET, "/oauth2/v1/keys", Value::Null).await;
    let (header, claims, signature) = latchkey_core::oidc::jwt::split(token).unwrap();
    let kid = header["kid"].as_str().unwrap();
    let jwk = jwks.body["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid).expect("kid published");
    let der = latchkey_core::oidc::jwt::rsa_public_key_of_jwk(jwk).unwrap();
    latchkey_core::oidc::jwt::verify_rs256(&der, token, &signature).expect("signature verifies");
    Value::Object(claims)
}

async fn userinfo(app: &App, access_token: &str) -> Reply {
    let request = Request::builder()
        .uri("/oauth2/v1/userinfo")
        .header("authorization", format!("Bearer {access_token}"))
        .body(Body::empty())
        .unwrap();
    send(app, request).await
}

#[tokio::test]
async fn an_oidc_app_is_created_in_oktas_shape_and_its_secret_is_shown_once() {
    let rp = setup().await;
    let read = rp.app.call(Method::GET, &format!("/api/v1/apps/{}", rp.client_id), Value::Null).await;
    assert_eq!(read.body["name"], "oidc_client");
    assert_eq!(read.body["signOnMode"], "OPENID_CONNECT");
    assert_eq!(read.body["credentials"]["oauthClient"]["client_id"], rp.client_id.as_str());
    assert_eq!(read.body["credentials"]["oauthClient"]["token_endpoint_auth_method"], "client_secret_basic");
    assert!(read.body["credentials"]["oauthClient"].get("client_secret").is_none(), "never read back");
    assert_eq!(read.body["settings"]["oauthClient"]["redirect_uris"], json!([REDIRECT]));
    assert_eq!(read.body["settings"]["oauthClient"]["application_type"], "web");
    assert!(rp.secret.len() >= 40);
    // Stored as a digest: the secret appears nowhere in the database row.
    let apps = rp.app.call(Method::GET, "/api/v1/apps", Value::Null).await;
    assert!(!apps.body.to_string().contains(&rp.secret));

    // A second secret, shown once; the first cannot be deleted while active.
    let secrets_url = format!("/api/v1/apps/{}/credentials/secrets", rp.client_id);
    let added = rp.app.call(Method::POST, &secrets_url, Value::Null).await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);
    let second = added.body["client_secret"].as_str().unwrap().to_owned();
    let listed = rp.app.call(Method::GET, &secrets_url, Value::Null).await;
    assert_eq!(listed.body.as_array().unwrap().len(), 2);
    assert!(!listed.body.to_string().contains(&second));
    let first_id = listed.body[0]["id"].as_str().unwrap().to_owned();
    let third = rp.app.call(Method::POST, &secrets_url, Value::Null).await;
    assert_eq!(third.status, StatusCode::BAD_REQUEST, "at most two");
    let delete_active = rp.app.call(Method::DELETE, &format!("{secrets_url}/{first_id}"), Value::Null).await;
    assert_eq!(delete_active.status, StatusCode::BAD_REQUEST);
    let deactivated = rp
        .app
        .call(Method::POST, &format!("{secrets_url}/{first_id}/lifecycle/deactivate"), Value::Null)
        .await;
    assert_eq!(deactivated.body["status"], "INACTIVE", "{}", deactivated.body);

    // The deactivated secret no longer authenticates; the new one does.
    let mut browser = Browser::default();
    let code = code_for(&rp, &mut browser, "alice@example.com").await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    let old = token_request(&rp, Some((&rp.client_id, &rp.secret)), &form).await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED, "{}", old.body);
    assert_eq!(old.body["error"], "invalid_client");
    assert!(old.headers.get("www-authenticate").is_some());
    let new = token_request(&rp, Some((&rp.client_id, &second)), &form).await;
    assert_eq!(new.status, StatusCode::OK, "{}", new.body);
}

#[tokio::test]
async fn bad_oidc_app_settings_are_refused_by_name() {
    let app = app_realtime(|_| {}).await;
    for (settings, field) in [
        (json!({"redirect_uris": ["http://rp.example.com/cb"]}), "settings.oauthClient.redirect_uris"),
        (json!({"redirect_uris": ["https://rp.example.com/cb#frag"]}), "settings.oauthClient.redirect_uris"),
        (json!({"grant_types": ["password"]}), "settings.oauthClient.grant_types"),
        (json!({"response_types": ["code", "token"]}), "settings.oauthClient.response_types"),
        (json!({"consent_method": "REQUIRED"}), "settings.oauthClient.consent_method"),
    ] {
        let reply = app.call(Method::POST, "/api/v1/apps", oidc_app_body(settings.clone())).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{settings}: {}", reply.body);
        assert!(reply.causes().iter().any(|c| c.starts_with(field)), "{settings}: {:?}", reply.causes());
    }
    let mut spa = oidc_app_body(json!({"application_type": "browser"}));
    spa["credentials"]["oauthClient"]["token_endpoint_auth_method"] = json!("client_secret_basic");
    let reply = app.call(Method::POST, "/api/v1/apps", spa).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "a browser app is a public client");
}

#[tokio::test]
async fn discovery_and_keys_for_both_servers() {
    let rp = setup().await;
    let org = rp.app.call(Method::GET, "/.well-known/openid-configuration", Value::Null).await;
    assert_eq!(org.status, StatusCode::OK);
    assert_eq!(org.body["issuer"], BASE);
    assert_eq!(org.body["authorization_endpoint"], format!("{BASE}/oauth2/v1/authorize"));
    assert_eq!(org.body["code_challenge_methods_supported"], json!(["S256"]));
    let custom =
        rp.app.call(Method::GET, "/oauth2/default/.well-known/openid-configuration", Value::Null).await;
    assert_eq!(custom.body["issuer"], format!("{BASE}/oauth2/default"));
    assert_eq!(custom.body["jwks_uri"], format!("{BASE}/oauth2/default/v1/keys"));
    let metadata =
        rp.app.call(Method::GET, "/oauth2/default/.well-known/oauth-authorization-server", Value::Null).await;
    assert_eq!(metadata.body["issuer"], format!("{BASE}/oauth2/default"));
    assert!(metadata.body.get("userinfo_endpoint").is_none());
    let keys = rp.app.call(Method::GET, "/oauth2/v1/keys", Value::Null).await;
    let key = &keys.body["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["alg"].as_str(), key["e"].as_str()),
        (Some("RSA"), Some("RS256"), Some("AQAB"))
    );
    let listed = rp
        .app
        .call(Method::GET, &format!("/api/v1/apps/{}/credentials/keys", rp.client_id), Value::Null)
        .await;
    assert_eq!(listed.body[0]["kid"], key["kid"], "the SAML and OIDC keys are the same keys");
}

#[tokio::test]
async fn the_code_flow_with_a_session_token_and_pkce_issues_signed_tokens() {
    let rp = setup().await;
    let mut browser = Browser::default();
    let code = code_for(&rp, &mut browser, "alice@example.com").await;
    assert!(browser.cookie("sid").is_some(), "the token became a session");
    let tokens = redeem(&rp, &code).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.body);
    assert_eq!(tokens.body["token_type"], "Bearer");
    assert_eq!(tokens.body["scope"], "openid profile email");
    assert_eq!(tokens.headers.get("cache-control").unwrap(), "no-store");
    let id = verified_claims(&rp.app, tokens.body["id_token"].as_str().unwrap()).await;
    assert_eq!(id["sub"], rp.alice.as_str());
    assert_eq!(id["aud"], rp.client_id.as_str());
    assert_eq!(id["iss"], BASE);
    assert_eq!(id["nonce"], "n-1");
    assert_eq!(id["email"], "alice@example.com");
    assert_eq!(id["preferred_username"], "alice@example.com");
    assert_eq!(id["amr"], json!(["pwd"]));
    assert!(id["sid"].as_str().is_some_and(|s| s.starts_with("102")));
    assert!(id["auth_time"].as_i64().unwrap() <= id["iat"].as_i64().unwrap());
    let access = verified_claims(&rp.app, tokens.body["access_token"].as_str().unwrap()).await;
    assert_eq!(access["cid"], rp.client_id.as_str());
    assert_eq!(access["uid"], rp.alice.as_str());
    assert_eq!(access["scp"], json!(["openid", "profile", "email"]));
    let info = userinfo(&rp.app, tokens.body["access_token"].as_str().unwrap()).await;
    assert_eq!(info.status, StatusCode::OK, "{}", info.body);
    assert_eq!(info.body["sub"], rp.alice.as_str());
    assert_eq!(info.body["email"], "alice@example.com");
    assert_eq!(info.body["name"], "Test User");

    // The same browser goes on without a token: its session answers.
    let again = browser.get(&rp.app, &authorize_url(&rp, "")).await;
    assert_eq!(again.status, StatusCode::FOUND);
    assert!(param(&callback_params(again.location()), "code").is_some());
}

#[tokio::test]
async fn a_replayed_code_is_refused_and_revokes_what_it_issued() {
    let rp = setup().await;
    let mut browser = Browser::default();
    let code = code_for(&rp, &mut browser, "alice@example.com").await;
    let first = redeem(&rp, &code).await;
    assert_eq!(first.status, StatusCode::OK);
    let access = first.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(userinfo(&rp.app, &access).await.status, StatusCode::OK);
    let second = redeem(&rp, &code).await;
    assert_eq!(second.status, StatusCode::BAD_REQUEST);
    assert_eq!(second.body["error"], "invalid_grant");
    let after = userinfo(&rp.app, &access).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED, "the first exchange's token is revoked");
    assert!(after.headers["www-authenticate"].to_str().unwrap().contains("invalid_token"));
}

#[tokio::test]
async fn token_requests_that_do_not_match_the_code_are_refused_and_spend_it() {
    let rp = setup().await;
    let mut browser = Browser::default();
    let cases: [(&str, &[(&str, &str)]); 3] = [
        (
            "wrong verifier",
            &[
                ("redirect_uri", REDIRECT),
                ("code_verifier", "x-wrong-verifier-wrong-verifier-wrong-verifier"),
            ],
        ),
        (
            "other redirect_uri",
            &[("redirect_uri", "https://rp.example.com/other"), ("code_verifier", VERIFIER)],
        ),
        ("no verifier", &[("redirect_uri", REDIRECT)]),
    ];
    for (case, extra) in cases {
        let code = code_for(&rp, &mut browser, "alice@example.com").await;
        let mut form = vec![("grant_type", "authorization_code"), ("code", code.as_str())];
        form.extend_from_slice(extra);
        let reply = token_request(&rp, Some((&rp.client_id, &rp.secret)), &form).await;
        assert_eq!(
            (reply.status, reply.body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_grant")),
            "{case}"
        );
        assert_eq!(
            redeem(&rp, &code).await.status,
            StatusCode::BAD_REQUEST,
            "{case}: a refused code is spent"
        );
    }
    let code = code_for(&rp, &mut browser, "alice@example.com").await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    let bad_secret = token_request(&rp, Some((&rp.client_id, "not-the-secret")), &form).await;
    assert_eq!(bad_secret.status, StatusCode::UNAUTHORIZED);
    let other_server = send(
        &rp.app,
        Request::builder()
            .method(Method::POST)
            .uri("/oauth2/default/v1/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .header(
                "authorization",
                format!("Basic {}", STANDARD.encode(format!("{}:{}", rp.client_id, rp.secret))),
            )
            .body(Body::from(
                url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish(),
            ))
            .unwrap(),
    )
    .await;
    assert_eq!(other_server.body["error"], "invalid_grant", "a code answers only the server that issued it");
    let json_body = send(
        &rp.app,
        Request::builder()
            .method(Method::POST)
            .uri("/oauth2/v1/token")
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .unwrap(),
    )
    .await;
    assert_eq!(
        (json_body.status, json_body.body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    let repeated =
        token_request(&rp, None, &[("grant_type", "authorization_code"), ("grant_type", "refresh_token")])
            .await;
    assert_eq!(repeated.body["error"], "invalid_request");
}

#[tokio::test]
async fn authorize_refuses_unknown_clients_and_redirect_uris_with_a_page() {
    let rp = setup().await;
    let mut browser = Browser::default();
    for url in [
        "/oauth2/v1/authorize?client_id=0oanope&redirect_uri=https%3A%2F%2Fevil.example%2F&response_type=code&scope=openid".to_owned(),
        authorize_url(&rp, "").replace(&url_encode(REDIRECT), &url_encode("https://evil.example/cb")),
    ] {
        let page = browser.get(&rp.app, &url).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{url}");
        assert!(page.location.is_none(), "never a redirect to an unchecked URI");
        assert!(page.body.contains("<html"), "a page");
    }
    // Once the redirect URI is known, errors go back to it with the state.
    let page = browser.get(&rp.app, &authorize_url(&rp, "").replace("S256", "plain")).await;
    let params = callback_params(page.location());
    assert_eq!(param(&params, "error"), Some("invalid_request"));
    assert_eq!(param(&params, "state"), Some("st-1"));
    let page = browser.get(&rp.app, &authorize_url(&rp, "&prompt=none")).await;
    assert_eq!(param(&callback_params(page.location()), "error"), Some("login_required"));
    let page =
        browser.get(&rp.app, &authorize_url(&rp, "").replace("openid%20profile", "openid%20payroll")).await;
    assert_eq!(param(&callback_params(page.location()), "error"), Some("invalid_scope"));
}

#[tokio::test]
async fn without_a_session_the_sign_in_page_comes_first_and_returns_to_authorize() {
    let rp = setup().await;
    let mut browser = Browser::default();
    let page = browser.get(&rp.app, &authorize_url(&rp, "")).await;
    assert_eq!(page.status, StatusCode::FOUND);
    assert!(page.location().contains("/login/login.htm?fromURI="), "{}", page.location());
    let from = page.location().split("fromURI=").nth(1).unwrap();
    let back = url::form_urlencoded::parse(format!("x={from}").as_bytes()).next().unwrap().1.into_owned();
    assert!(back.starts_with("/oauth2/v1/authorize?"), "{back}");
    // login_hint fills in the sign-in page's username.
    let hinted = browser.get(&rp.app, &authorize_url(&rp, "&login_hint=alice%40example.com")).await;
    assert!(hinted.location().ends_with("&login_hint=alice%40example.com"), "{}", hinted.location());
    let form = browser.get(&rp.app, hinted.location().strip_prefix(BASE).unwrap()).await;
    assert!(form.body.contains(r#"value="alice@example.com""#), "{}", form.body);
    // Chromium applies the page's form-action to the redirects after the post, the last of which
    // goes to the client: its registered redirect URI's origin is allowed, and no other.
    let csp = form.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("form-action 'self' https://rp.example.com;"), "{csp}");
    let forged = hinted.location().strip_prefix(BASE).unwrap().replace("rp.example.com", "evil.example.com");
    let forged_form = browser.get(&rp.app, &forged).await;
    let csp = forged_form.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("form-action 'self';"), "an unregistered redirect_uri adds nothing: {csp}");
    let signed_in =
        browser.sign_in(&rp.app, &format!("?fromURI={from}"), "alice@example.com", PASSWORD, &[]).await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER, "{}", signed_in.body);
    let answer =
        browser.get(&rp.app, signed_in.location().strip_prefix(BASE).unwrap_or(signed_in.location())).await;
    assert!(param(&callback_params(answer.location()), "code").is_some(), "{}", answer.location());
}

#[tokio::test]
async fn on_a_shared_browser_the_second_persons_token_wins_and_the_unassigned_are_refused() {
    let rp = setup().await;
    let bob = rp.app.create_ok("bob@example.com").await;
    rp.app.call(Method::POST, &format!("/api/v1/apps/{}/users", rp.client_id), json!({"id": bob})).await;
    let mut browser = Browser::default();
    let alice_code = code_for(&rp, &mut browser, "alice@example.com").await;
    let bob_code = code_for(&rp, &mut browser, "bob@example.com").await;
    let alice_tokens = redeem(&rp, &alice_code).await;
    let bob_tokens = redeem(&rp, &bob_code).await;
    let bob_id = verified_claims(&rp.app, bob_tokens.body["id_token"].as_str().unwrap()).await;
    let alice_id = verified_claims(&rp.app, alice_tokens.body["id_token"].as_str().unwrap()).await;
    assert_eq!(bob_id["sub"], bob.as_str(), "the second person arrives as themselves");
    assert_ne!(bob_id["sid"], alice_id["sid"], "a new session");

    let carol = rp.app.create_ok("carol@example.com").await;
    let token = session_token(&rp.app, "carol@example.com").await;
    let page = browser.get(&rp.app, &authorize_url(&rp, &format!("&sessionToken={token}"))).await;
    let params = callback_params(page.location());
    assert_eq!(param(&params, "error"), Some("access_denied"), "{carol} is not assigned");
    assert_eq!(param(&params, "error_description"), Some("User is not assigned to the client application."));
}

#[tokio::test]
async fn form_post_and_post_message_answer_only_the_redirect_uri() {
    let rp = setup().await;
    let mut browser = Browser::default();
    let token = session_token(&rp.app, "alice@example.com").await;
    let page = browser
        .get(&rp.app, &authorize_url(&rp, &format!("&sessionToken={token}&response_mode=form_post")))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.form_action().as_deref(), Some(REDIRECT));
    assert!(page.field("code").is_some() && page.field("state").as_deref() == Some("st-1"));
    let page = browser.get(&rp.app, &authorize_url(&rp, "&response_mode=okta_post_message")).await;
    assert!(page.body.contains("postMessage({\"code\":"), "{}", page.body);
    assert!(
        page.body.contains(", \"https://rp.example.com\")"),
        "addressed to the redirect URI's origin only"
    );
}

/// An app allowed to refresh, with `rotation` ("ROTATE" or "STATIC").
async fn refreshing_rp(rotation: &str) -> Rp {
    let app = app_realtime(|_| {}).await;
    let body = oidc_app_body(json!({
        "grant_types": ["authorization_code", "refresh_token"],
        "refresh_token": {"rotation_type": rotation, "leeway": 0},
    }));
    let created = app.call(Method::POST, "/api/v1/apps", body).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let client_id = created.body["id"].as_str().unwrap().to_owned();
    let secret = created.body["credentials"]["oauthClient"]["client_secret"].as_str().unwrap().to_owned();
    let alice = app.create_ok("alice@example.com").await;
    app.call(Method::POST, &format!("/api/v1/apps/{client_id}/users"), json!({"id": alice})).await;
    Rp { app, client_id, secret, alice }
}

async fn offline_tokens(rp: &Rp) -> Reply {
    let mut browser = Browser::default();
    let token = session_token(&rp.app, "alice@example.com").await;
    let url = authorize_url(rp, &format!("&sessionToken={token}"))
        .replace("scope=openid%20profile%20email", "scope=openid%20email%20offline_access");
    let page = browser.get(&rp.app, &url).await;
    let code = param(&callback_params(page.location()), "code").unwrap().to_owned();
    let tokens = redeem(rp, &code).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.body);
    tokens
}

/// The access and refresh tokens of [`offline_tokens`].
async fn offline_token_pair(rp: &Rp) -> (String, String) {
    let tokens = offline_tokens(rp).await;
    let field = |name: &str| tokens.body[name].as_str().unwrap().to_owned();
    (field("access_token"), field("refresh_token"))
}

async fn client_post(rp: &Rp, path: &str, form: &[(&str, &str)]) -> Reply {
    client_post_as(&rp.app, (&rp.client_id, &rp.secret), path, form).await
}

async fn client_post_as(app: &App, (id, secret): (&str, &str), path: &str, form: &[(&str, &str)]) -> Reply {
    let body: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", format!("Basic {}", STANDARD.encode(format!("{id}:{secret}"))))
        .body(Body::from(body))
        .unwrap();
    send(app, request).await
}

async fn refresh(rp: &Rp, token: &str) -> Reply {
    client_post(rp, "/oauth2/v1/token", &[("grant_type", "refresh_token"), ("refresh_token", token)]).await
}

async fn introspect(rp: &Rp, token: &str) -> Value {
    let reply = client_post(rp, "/oauth2/v1/introspect", &[("token", token)]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reused_one_revokes_its_family() {
    let rp = refreshing_rp("ROTATE").await;
    let tokens = offline_tokens(&rp).await;
    let first =
        tokens.body["refresh_token"].as_str().expect("offline_access gives a refresh token").to_owned();
    assert_eq!(introspect(&rp, &first).await["active"], true);
    let rotated = refresh(&rp, &first).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    let second = rotated.body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(first, second, "rotated");
    let id = verified_claims(&rp.app, rotated.body["id_token"].as_str().unwrap()).await;
    assert_eq!(id["sub"], rp.alice.as_str());
    assert_eq!(introspect(&rp, &first).await["active"], false, "the rotated token is spent");
    // Another client of the organisation cannot use it.
    let other = rp
        .app
        .call(
            Method::POST,
            "/api/v1/apps",
            oidc_app_body(json!({"grant_types": ["authorization_code", "refresh_token"]})),
        )
        .await;
    let as_other = (
        other.body["id"].as_str().unwrap(),
        other.body["credentials"]["oauthClient"]["client_secret"].as_str().unwrap(),
    );
    let stolen = client_post_as(
        &rp.app,
        as_other,
        "/oauth2/v1/token",
        &[("grant_type", "refresh_token"), ("refresh_token", &second)],
    )
    .await;
    assert_eq!(stolen.body["error"], "invalid_grant", "a refresh token of another client");
    let narrowed = client_post(
        &rp,
        "/oauth2/v1/token",
        &[("grant_type", "refresh_token"), ("refresh_token", &second), ("scope", "openid payroll")],
    )
    .await;
    assert_eq!(narrowed.body["error"], "invalid_scope");

    // The first token again (leeway 0): a reuse. The whole family goes, the live one included.
    rp.app.clock.advance_secs(1);
    let reused = refresh(&rp, &first).await;
    assert_eq!(reused.body["error"], "invalid_grant");
    assert_eq!(refresh(&rp, &second).await.body["error"], "invalid_grant", "the family is revoked");
    let access = rotated.body["access_token"].as_str().unwrap();
    assert_eq!(introspect(&rp, access).await["active"], false);
    assert_eq!(userinfo(&rp.app, access).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn static_refresh_tokens_stay_and_end_with_their_user() {
    let rp = refreshing_rp("STATIC").await;
    let tokens = offline_tokens(&rp).await;
    let token = tokens.body["refresh_token"].as_str().unwrap().to_owned();
    let again = refresh(&rp, &token).await;
    assert_eq!(again.body["refresh_token"], token.as_str(), "a static token is kept");
    let access = again.body["access_token"].as_str().unwrap().to_owned();
    let active = introspect(&rp, &access).await;
    assert_eq!(
        (active["active"].as_bool(), active["client_id"].as_str()),
        (Some(true), Some(rp.client_id.as_str()))
    );
    assert_eq!(active["uid"], rp.alice.as_str());
    assert_eq!(active["token_type"], "Bearer");

    // A password reset ends the refresh token; so does deactivation (for access tokens too).
    rp.app.clock.advance_secs(1);
    let reset = rp
        .app
        .call(
            Method::POST,
            &format!("/api/v1/users/{}/lifecycle/expire_password?tempPassword=true", rp.alice),
            Value::Null,
        )
        .await;
    assert_eq!(reset.status, StatusCode::OK, "{}", reset.body);
    assert_eq!(
        refresh(&rp, &token).await.body["error"],
        "invalid_grant",
        "the password changed after the token"
    );
    assert_eq!(introspect(&rp, &token).await["active"], false);
    rp.app.call(Method::POST, &format!("/api/v1/users/{}/lifecycle/deactivate", rp.alice), Value::Null).await;
    assert_eq!(introspect(&rp, &access).await["active"], false, "the user is no longer active");
}

#[tokio::test]
async fn revocation_and_introspection_answer_only_the_tokens_own_client() {
    let rp = refreshing_rp("ROTATE").await;
    let (access, refresh_token) = offline_token_pair(&rp).await;
    // Another client of the same org sees nothing of these tokens and cannot revoke them.
    let other = rp.app.call(Method::POST, "/api/v1/apps", oidc_app_body(json!({}))).await;
    let other_id = other.body["id"].as_str().unwrap();
    let other_secret = other.body["credentials"]["oauthClient"]["client_secret"].as_str().unwrap();
    let as_other = (other_id, other_secret);
    let seen = client_post_as(&rp.app, as_other, "/oauth2/v1/introspect", &[("token", &access)]).await;
    assert_eq!(seen.body, json!({"active": false}));
    let revoke = client_post_as(&rp.app, as_other, "/oauth2/v1/revoke", &[("token", &refresh_token)]).await;
    assert_eq!(revoke.status, StatusCode::OK);
    assert_eq!(introspect(&rp, &refresh_token).await["active"], true, "not revoked by another client");
    assert_eq!(introspect(&rp, "not-a-token").await, json!({"active": false}));
    assert_eq!(introspect(&rp, "a.b.c").await, json!({"active": false}));

    let revoked = client_post(&rp, "/oauth2/v1/revoke", &[("token", &refresh_token)]).await;
    assert_eq!(revoked.status, StatusCode::OK);
    assert_eq!(introspect(&rp, &refresh_token).await["active"], false);
    assert_eq!(introspect(&rp, &access).await["active"], false, "the grant's access token goes with it");
    let unauthenticated = send(
        &rp.app,
        Request::builder()
            .method(Method::POST)
            .uri("/oauth2/v1/introspect")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(format!("token={access}&client_id={}", rp.client_id)))
            .unwrap(),
    )
    .await;
    assert_eq!(unauthenticated.status, StatusCode::UNAUTHORIZED, "a confidential client must authenticate");
}

#[tokio::test]
async fn an_access_token_revoked_alone_or_expired_is_inactive_and_its_grant_lives_on() {
    let rp = refreshing_rp("ROTATE").await;
    let (access, refresh_token) = offline_token_pair(&rp).await;
    let claims = verified_claims(&rp.app, &access).await;
    let jti = claims["jti"].as_str().unwrap();
    assert!(jti.starts_with("AT.") && jti.len() == 46, "Okta's shape: {jti}");
    let seen = introspect(&rp, &access).await;
    assert_eq!((seen["active"].clone(), seen["jti"].clone()), (json!(true), json!(jti)));
    assert_eq!(seen["scope"], "openid email offline_access");

    let revoked =
        client_post(&rp, "/oauth2/v1/revoke", &[("token", &access), ("token_type_hint", "access_token")])
            .await;
    assert_eq!(revoked.status, StatusCode::OK);
    assert_eq!(introspect(&rp, &access).await, json!({"active": false}));
    assert_eq!(userinfo(&rp.app, &access).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(introspect(&rp, &refresh_token).await["active"], true, "the grant lives on");
    let next = refresh(&rp, &refresh_token).await;
    let fresh = next.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(userinfo(&rp.app, &fresh).await.status, StatusCode::OK, "a new access token of the grant");

    // An hour later the access token has expired, whatever its signature says.
    rp.app.clock.advance_secs(3600);
    assert_eq!(introspect(&rp, &fresh).await, json!({"active": false}));
    assert_eq!(userinfo(&rp.app, &fresh).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_user_no_longer_assigned_to_the_app_or_a_deactivated_app_ends_its_tokens() {
    let rp = refreshing_rp("ROTATE").await;
    let (access, refresh_token) = offline_token_pair(&rp).await;
    assert_eq!(userinfo(&rp.app, &access).await.status, StatusCode::OK);
    let removed = rp
        .app
        .call(Method::DELETE, &format!("/api/v1/apps/{}/users/{}", rp.client_id, rp.alice), Value::Null)
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.body);
    let refused = refresh(&rp, &refresh_token).await;
    assert_eq!(refused.body["error"], "invalid_grant", "{}", refused.body);
    assert_eq!(introspect(&rp, &refresh_token).await, json!({"active": false}));
    assert_eq!(introspect(&rp, &access).await, json!({"active": false}));
    assert_eq!(userinfo(&rp.app, &access).await.status, StatusCode::UNAUTHORIZED);

    // Assigned again: a new grant works; then the app is deactivated and its tokens stop at userinfo.
    rp.app.call(Method::POST, &format!("/api/v1/apps/{}/users", rp.client_id), json!({"id": rp.alice})).await;
    let again = offline_tokens(&rp).await;
    let access = again.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(userinfo(&rp.app, &access).await.status, StatusCode::OK);
    let deactivated = rp
        .app
        .call(Method::POST, &format!("/api/v1/apps/{}/lifecycle/deactivate", rp.client_id), Value::Null)
        .await;
    assert_eq!(deactivated.status, StatusCode::OK, "{}", deactivated.body);
    assert_eq!(userinfo(&rp.app, &access).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_dashboard_and_app_links_show_an_oidc_app_only_with_an_initiate_login_uri() {
    let rp = setup().await;
    let mut browser = Browser::default();
    let signed_in = browser.sign_in(&rp.app, "", "alice@example.com", PASSWORD, &[]).await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER, "{}", signed_in.body);
    let home = browser.get(&rp.app, "/app/UserHome").await;
    assert!(!home.body.contains(&rp.client_id), "no tile that goes nowhere: {}", home.body);
    let links = rp.app.call(Method::GET, &format!("/api/v1/users/{}/appLinks", rp.alice), Value::Null).await;
    assert_eq!(links.body, json!([]));
    let with_login = oidc_app_body(json!({"initiate_login_uri": "https://rp.example.com/login"}));
    let created = rp.app.call(Method::POST, "/api/v1/apps", with_login).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let tile_id = created.body["id"].as_str().unwrap().to_owned();
    rp.app.call(Method::POST, &format!("/api/v1/apps/{tile_id}/users"), json!({"id": rp.alice})).await;
    let links = rp.app.call(Method::GET, &format!("/api/v1/users/{}/appLinks", rp.alice), Value::Null).await;
    assert_eq!(links.body.as_array().map(Vec::len), Some(1), "{}", links.body);
    assert_eq!(links.body[0]["appInstanceId"], tile_id.as_str());
    let home = browser.get(&rp.app, "/app/UserHome").await;
    assert!(home.body.contains(&tile_id) && !home.body.contains(&rp.client_id), "{}", home.body);
}

#[tokio::test]
async fn logout_ends_the_session_and_returns_only_to_a_registered_uri() {
    let rp = setup().await;
    let mut browser = Browser::default();
    let code = code_for(&rp, &mut browser, "alice@example.com").await;
    let id_token = redeem(&rp, &code).await.body["id_token"].as_str().unwrap().to_owned();
    let unregistered = browser
        .get(
            &rp.app,
            &format!(
                "/oauth2/v1/logout?id_token_hint={id_token}&post_logout_redirect_uri={}",
                url_encode("https://evil.example/")
            ),
        )
        .await;
    assert_eq!(unregistered.status, StatusCode::BAD_REQUEST);
    assert!(unregistered.location.is_none());
    let page = browser
        .get(
            &rp.app,
            &format!(
                "/oauth2/v1/logout?id_token_hint={id_token}&post_logout_redirect_uri={}&state=bye",
                url_encode("https://rp.example.com/")
            ),
        )
        .await;
    assert_eq!(page.status, StatusCode::FOUND);
    assert_eq!(page.location(), "https://rp.example.com/?state=bye");
    let after = browser.get(&rp.app, &authorize_url(&rp, "&prompt=none")).await;
    assert_eq!(
        param(&callback_params(after.location()), "error"),
        Some("login_required"),
        "the session ended"
    );
    let forged = browser.get(&rp.app, &format!("/oauth2/v1/logout?id_token_hint={}x&post_logout_redirect_uri=https%3A%2F%2Frp.example.com%2F", &id_token[..id_token.len() - 1])).await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST, "a hint that does not verify");
}

#[tokio::test]
async fn private_key_jwt_clients_authenticate_with_a_signed_assertion_used_once() {
    use latchkey_core::saml::SigningKey;
    let app = app_realtime(|_| {}).await;
    let key = SigningKey::generate("rp.example.com", 30).unwrap().0;
    let jwk = latchkey_core::oidc::jwt::jwk(&key);
    let mut body = oidc_app_body(json!({"jwks": {"keys": [jwk]}}));
    body["credentials"]["oauthClient"]["token_endpoint_auth_method"] = json!("private_key_jwt");
    let created = app.call(Method::POST, "/api/v1/apps", body).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    assert!(
        created.body["credentials"]["oauthClient"].get("client_secret").is_none(),
        "no secret for a key client"
    );
    let client_id = created.body["id"].as_str().unwrap().to_owned();
    let alice = app.create_ok("alice@example.com").await;
    app.call(Method::POST, &format!("/api/v1/apps/{client_id}/users"), json!({"id": alice})).await;
    let rp = Rp { app, client_id: client_id.clone(), secret: String::new(), alice };
    let now = latchkey_core::Clock::now(&latchkey_core::SystemClock).epoch_seconds();
    let assertion = |jti: &str, aud: &str| {
        let claims =
            json!({"iss": client_id, "sub": client_id, "aud": aud, "jti": jti, "exp": now + 60, "iat": now});
        latchkey_core::oidc::jwt::sign(claims.as_object().unwrap(), &key, None).unwrap()
    };
    let token_url = format!("{BASE}/oauth2/v1/token");
    let mut browser = Browser::default();
    let exchange = |code: String, assertion: String| {
        let rp = &rp;
        async move {
            token_request(
                rp,
                None,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", VERIFIER),
                    ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                    ("client_assertion", &assertion),
                ],
            )
            .await
        }
    };
    let code = code_for(&rp, &mut browser, "alice@example.com").await;
    let ok = exchange(code, assertion("jti-1", &token_url)).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let code = code_for(&rp, &mut browser, "alice@example.com").await;
    assert_eq!(
        exchange(code, assertion("jti-1", &token_url)).await.status,
        StatusCode::UNAUTHORIZED,
        "a replayed assertion"
    );
    let code = code_for(&rp, &mut browser, "alice@example.com").await;
    assert_eq!(
        exchange(code, assertion("jti-2", "https://elsewhere.example/token")).await.status,
        StatusCode::UNAUTHORIZED,
        "another audience"
    );
    let stranger = SigningKey::generate("evil.example", 30).unwrap().0;
    let claims =
        json!({"iss": rp.client_id, "sub": rp.client_id, "aud": token_url, "jti": "jti-3", "exp": now + 60});
    let forged = latchkey_core::oidc::jwt::sign(claims.as_object().unwrap(), &stranger, None).unwrap();
    let code = code_for(&rp, &mut browser, "alice@example.com").await;
    assert_eq!(
        exchange(code, forged).await.status,
        StatusCode::UNAUTHORIZED,
        "signed by a key the client did not register"
    );
}

#[tokio::test]
async fn the_implicit_flow_answers_in_the_fragment_only_for_apps_that_allow_it() {
    let app = app_realtime(|_| {}).await;
    let mut body = oidc_app_body(
        json!({"grant_types": ["implicit"], "response_types": ["id_token", "token"], "application_type": "browser"}),
    );
    body["credentials"]["oauthClient"]["token_endpoint_auth_method"] = json!("none");
    let created = app.call(Method::POST, "/api/v1/apps", body).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let client_id = created.body["id"].as_str().unwrap().to_owned();
    let alice = app.create_ok("alice@example.com").await;
    app.call(Method::POST, &format!("/api/v1/apps/{client_id}/users"), json!({"id": alice})).await;
    let token = session_token(&app, "alice@example.com").await;
    let url = |response_type: &str, extra: &str| {
        format!(
            "/oauth2/v1/authorize?client_id={client_id}&redirect_uri={}&response_type={response_type}&scope=openid%20email&state=s&nonce=n-9{extra}",
            url_encode(REDIRECT)
        )
    };
    let mut browser = Browser::default();
    let page = browser.get(&app, &url("id_token%20token", &format!("&sessionToken={token}"))).await;
    assert_eq!(page.status, StatusCode::FOUND);
    let (base, fragment) = page.location().split_once('#').expect("a fragment");
    assert_eq!(base, REDIRECT);
    let fields: Vec<(String, String)> =
        url::form_urlencoded::parse(fragment.as_bytes()).into_owned().collect();
    assert_eq!(param(&fields, "token_type"), Some("Bearer"));
    assert_eq!(param(&fields, "state"), Some("s"));
    let access = param(&fields, "access_token").unwrap();
    let id = verified_claims(&app, param(&fields, "id_token").unwrap()).await;
    assert_eq!(id["nonce"], "n-9");
    assert_eq!(id["sub"], alice.as_str());
    assert_eq!(id["at_hash"], URL_SAFE_NO_PAD.encode(&Sha256::digest(access.as_bytes())[..16]));
    assert_eq!(userinfo(&app, access).await.body["email"], "alice@example.com");

    let only_id = browser.get(&app, &url("id_token", "")).await;
    let fragment = only_id.location().split_once('#').unwrap().1;
    let fields: Vec<(String, String)> =
        url::form_urlencoded::parse(fragment.as_bytes()).into_owned().collect();
    assert!(param(&fields, "access_token").is_none());
    let id = verified_claims(&app, param(&fields, "id_token").unwrap()).await;
    assert!(id.get("at_hash").is_none(), "no access token, no at_hash");
    let no_nonce = browser.get(&app, &url("id_token", "").replace("&nonce=n-9", "")).await;
    assert!(no_nonce.location().contains("error=invalid_request"), "{}", no_nonce.location());
    let in_query = browser.get(&app, &url("token", "&response_mode=query")).await;
    assert!(
        in_query.location().contains("#error=invalid_request"),
        "tokens never go in a query: {}",
        in_query.location()
    );
    let code = browser.get(&app, &url("code", "")).await;
    assert!(code.location().contains("error=unauthorized_client"), "{}", code.location());
}

#[tokio::test]
async fn the_default_servers_custom_scopes_and_claims_reach_its_tokens() {
    let rp = setup().await;
    let servers = rp.app.call(Method::GET, "/api/v1/authorizationServers", Value::Null).await;
    assert_eq!(servers.body[0]["id"], "default");
    assert_eq!(servers.body[0]["audiences"], json!(["api://default"]));
    assert_eq!(servers.body[0]["issuer"], format!("{BASE}/oauth2/default"));
    let base = "/api/v1/authorizationServers/default";
    let scopes = rp.app.call(Method::GET, &format!("{base}/scopes"), Value::Null).await;
    assert!(scopes.body.as_array().unwrap().iter().any(|s| s["name"] == "openid" && s["system"] == true));
    let scope = rp
        .app
        .call(
            Method::POST,
            &format!("{base}/scopes"),
            json!({"name": "reports:read", "metadataPublish": "ALL_CLIENTS"}),
        )
        .await;
    assert_eq!(scope.status, StatusCode::CREATED, "{}", scope.body);
    let clash = rp.app.call(Method::POST, &format!("{base}/scopes"), json!({"name": "reports:read"})).await;
    assert_eq!(clash.status, StatusCode::BAD_REQUEST);
    let system = rp.app.call(Method::POST, &format!("{base}/scopes"), json!({"name": "openid"})).await;
    assert_eq!(system.status, StatusCode::BAD_REQUEST);

    let group = rp.app.call(Method::POST, "/api/v1/groups", json!({"profile": {"name": "Reporting"}})).await;
    let group_id = group.body["id"].as_str().unwrap();
    rp.app.call(Method::PUT, &format!("/api/v1/groups/{group_id}/users/{}", rp.alice), Value::Null).await;
    for claim in [
        json!({"name": "dept", "claimType": "RESOURCE", "valueType": "EXPRESSION", "value": "String.toUpperCase(user.lastName)", "conditions": {"scopes": ["reports:read"]}}),
        json!({"name": "teams", "claimType": "IDENTITY", "valueType": "GROUPS", "value": "Rep", "group_filter_type": "STARTS_WITH", "conditions": {"scopes": []}}),
    ] {
        let created = rp.app.call(Method::POST, &format!("{base}/claims"), claim).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    }
    let bad = rp
        .app
        .call(
            Method::POST,
            &format!("{base}/claims"),
            json!({"name": "x", "claimType": "RESOURCE", "value": "user.firstName +"}),
        )
        .await;
    assert_eq!(
        bad.status,
        StatusCode::BAD_REQUEST,
        "an expression Latchkey cannot evaluate is refused when saved"
    );
    let reserved = rp
        .app
        .call(
            Method::POST,
            &format!("{base}/claims"),
            json!({"name": "sub", "claimType": "RESOURCE", "value": "user.login"}),
        )
        .await;
    assert_eq!(reserved.status, StatusCode::BAD_REQUEST);

    let discovery =
        rp.app.call(Method::GET, "/oauth2/default/.well-known/openid-configuration", Value::Null).await;
    assert!(discovery.body["scopes_supported"].as_array().unwrap().contains(&json!("reports:read")));
    let mut browser = Browser::default();
    let token = session_token(&rp.app, "alice@example.com").await;
    let url = authorize_url(&rp, &format!("&sessionToken={token}"))
        .replace("/oauth2/v1/", "/oauth2/default/v1/")
        .replace("scope=openid%20profile%20email", "scope=openid%20reports%3Aread");
    let page = browser.get(&rp.app, &url).await;
    let code = param(&callback_params(page.location()), "code")
        .unwrap_or_else(|| panic!("{}", page.location()))
        .to_owned();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    let tokens = client_post(&rp, "/oauth2/default/v1/token", &form).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.body);
    let access = verified_claims(&rp.app, tokens.body["access_token"].as_str().unwrap()).await;
    assert_eq!(access["aud"], "api://default");
    assert_eq!(access["dept"], "USER");
    assert_eq!(access["scp"], json!(["openid", "reports:read"]));
    let id = verified_claims(&rp.app, tokens.body["id_token"].as_str().unwrap()).await;
    assert_eq!(id["teams"], json!(["Reporting"]));
    assert!(id.get("dept").is_none(), "a RESOURCE claim stays in the access token");
    let unknown = browser.get(&rp.app, &url.replace("reports%3Aread", "payroll%3Aread")).await;
    assert_eq!(param(&callback_params(unknown.location()), "error"), Some("invalid_scope"));
}

#[tokio::test]
async fn a_service_app_gets_client_credentials_tokens_for_custom_scopes_on_the_default_server() {
    let app = app_realtime(|_| {}).await;
    let body = json!({
        "name": "oidc_client",
        "label": "Nightly job",
        "signOnMode": "OPENID_CONNECT",
        "credentials": {"oauthClient": {"token_endpoint_auth_method": "client_secret_post"}},
        "settings": {"oauthClient": {"grant_types": ["client_credentials"], "response_types": [], "application_type": "service"}},
    });
    let created = app.call(Method::POST, "/api/v1/apps", body).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let secret = created.body["credentials"]["oauthClient"]["client_secret"].as_str().unwrap().to_owned();
    let base = "/api/v1/authorizationServers/default";
    app.call(Method::POST, &format!("{base}/scopes"), json!({"name": "jobs:run", "default": true})).await;
    let post = |path: &'static str, scope: Option<&'static str>| {
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", id.as_str()),
            ("client_secret", secret.as_str()),
        ];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        let body: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        send(&app, request)
    };
    let tokens = post("/oauth2/default/v1/token", Some("jobs:run")).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.body);
    assert!(tokens.body.get("id_token").is_none() && tokens.body.get("refresh_token").is_none());
    let access = verified_claims(&app, tokens.body["access_token"].as_str().unwrap()).await;
    assert_eq!((access["sub"].as_str(), access["cid"].as_str()), (Some(id.as_str()), Some(id.as_str())));
    assert!(access.get("uid").is_none(), "no user");
    assert_eq!(post("/oauth2/default/v1/token", None).await.body["scope"], "jobs:run", "the default scopes");
    assert_eq!(post("/oauth2/default/v1/token", Some("openid")).await.body["error"], "invalid_scope");
    assert_eq!(
        post("/oauth2/v1/token", Some("jobs:run")).await.body["error"],
        "invalid_scope",
        "not on the org server"
    );
    let introspected = client_post_as(
        &app,
        (&id, &secret),
        "/oauth2/default/v1/introspect",
        &[("token", tokens.body["access_token"].as_str().unwrap())],
    )
    .await;
    // The secret proves the client in the header as in the form; a client's own token (no user) is active.
    assert_eq!(introspected.body["active"], true, "{}", introspected.body);
    assert!(introspected.body.get("uid").is_none());
    let wrong =
        client_post_as(&app, (&id, "wrong"), "/oauth2/default/v1/introspect", &[("token", "x")]).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
}

/// A relying party's back-channel logout endpoint on a loopback port: what it received, and the
/// status it answers with.
struct LogoutEndpoint {
    uri: String,
    received: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    status: std::sync::Arc<std::sync::atomic::AtomicU16>,
}

async fn logout_endpoint() -> LogoutEndpoint {
    use std::sync::atomic::{AtomicU16, Ordering};
    use std::sync::{Arc, Mutex};
    let received: Arc<Mutex<Vec<String>>> = Arc::default();
    let status = Arc::new(AtomicU16::new(200));
    let (seen, answer) = (received.clone(), status.clone());
    let router = axum::Router::new().route(
        "/bcl",
        axum::routing::post(move |body: String| {
            let (seen, answer) = (seen.clone(), answer.clone());
            async move {
                let token = url::form_urlencoded::parse(body.as_bytes())
                    .find(|(k, _)| k == "logout_token")
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default();
                seen.lock().unwrap().push(token);
                StatusCode::from_u16(answer.load(Ordering::SeqCst)).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("http://{}/bcl", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    LogoutEndpoint { uri, received, status }
}

#[tokio::test]
async fn a_replaced_session_sends_a_signed_back_channel_logout_token_with_retries() {
    use latchkey_http::backchannel::{HttpDelivery, deliver_due};
    let endpoint = logout_endpoint().await;
    let app = app_realtime(|_| {}).await;
    let created = app
        .call(Method::POST, "/api/v1/apps", oidc_app_body(json!({"backchannel_logout_uri": endpoint.uri})))
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    assert_eq!(created.body["settings"]["oauthClient"]["backchannel_logout_uri"], endpoint.uri.as_str());
    let client_id = created.body["id"].as_str().unwrap().to_owned();
    let secret = created.body["credentials"]["oauthClient"]["client_secret"].as_str().unwrap().to_owned();
    let alice = app.create_ok("alice@example.com").await;
    let bob = app.create_ok("bob@example.com").await;
    for user in [&alice, &bob] {
        app.call(Method::POST, &format!("/api/v1/apps/{client_id}/users"), json!({"id": user})).await;
    }
    let rp = Rp { app, client_id, secret, alice };
    // Alice signs in to the app in a shared browser, then Bob's session token replaces her session.
    let mut browser = Browser::default();
    let code = code_for(&rp, &mut browser, "alice@example.com").await;
    let alice_id =
        verified_claims(&rp.app, redeem(&rp, &code).await.body["id_token"].as_str().unwrap()).await;
    let delivery = HttpDelivery::new().unwrap();
    assert_eq!(deliver_due(&rp.app.state, &delivery).await.unwrap().sent, 0, "nothing ended yet");
    endpoint.status.store(503, std::sync::atomic::Ordering::SeqCst);
    code_for(&rp, &mut browser, "bob@example.com").await;
    let first = deliver_due(&rp.app.state, &delivery).await.unwrap();
    assert_eq!((first.sent, first.failed), (0, 1), "the app was down");
    assert_eq!(deliver_due(&rp.app.state, &delivery).await.unwrap().failed, 0, "not due again yet");
    endpoint.status.store(200, std::sync::atomic::Ordering::SeqCst);
    rp.app.clock.advance_secs(6);
    assert_eq!(deliver_due(&rp.app.state, &delivery).await.unwrap().sent, 1, "retried after the back-off");
    assert_eq!(deliver_due(&rp.app.state, &delivery).await.unwrap().sent, 0, "sent once");

    let tokens = endpoint.received.lock().unwrap().clone();
    assert_eq!(tokens.len(), 2);
    let (header, _, _) = latchkey_core::oidc::jwt::split(&tokens[1]).unwrap();
    assert_eq!(header["typ"], "logout+jwt");
    let claims = verified_claims(&rp.app, &tokens[1]).await;
    assert_eq!(claims["sid"], alice_id["sid"], "names the session that ended");
    assert_eq!(claims["sub"], rp.alice.as_str());
    assert_eq!(claims["aud"], rp.client_id.as_str());
    assert_eq!(claims["iss"], BASE);
    assert!(claims["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object());
    assert!(claims.get("nonce").is_none(), "a logout token has no nonce (§2.4)");
}

/// Delivers logout tokens into the in-process router (the demo RP's back-channel endpoint is on
/// the server's own public URL, which a test cannot dial).
struct InProcess<'a>(&'a App);

impl latchkey_core::oidc::backchannel::LogoutDelivery for InProcess<'_> {
    async fn post(&self, uri: &str, logout_token: &str) -> Result<(), String> {
        let path = uri.strip_prefix(BASE).ok_or("not this server")?;
        let body = format!("logout_token={logout_token}");
        let request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        let reply = send(self.0, request).await;
        if reply.status.is_success() { Ok(()) } else { Err(reply.status.to_string()) }
    }
}

#[tokio::test]
async fn the_demo_kiosk_and_test_rp_show_the_second_person_and_end_the_firsts_session() {
    let app = app_realtime(|c| c.test_sp = true).await;
    let alice = app.create_ok("alice@example.com").await;
    let bob = app.create_ok("bob@example.com").await;
    let mut jar = Browser::default();
    let start = jar.get(&app, "/demo/rp/login").await;
    assert!(start.location().starts_with("/oauth2/v1/authorize?"), "{}", start.location());
    let apps = app.call(Method::GET, "/api/v1/apps?q=latchkey", Value::Null).await.body;
    let rp = apps.as_array().unwrap().iter().find(|a| a["label"] == "Latchkey test RP").unwrap();
    assert_eq!(rp["signOnMode"], "OPENID_CONNECT");
    let rp_id = rp["id"].as_str().unwrap().to_owned();
    for user in [&alice, &bob] {
        app.call(Method::POST, &format!("/api/v1/apps/{rp_id}/users"), json!({"id": user})).await;
    }
    let mut first_rp_cookie = None;
    for person in ["alice@example.com", "bob@example.com"] {
        let kiosk = jar.get(&app, "/demo/kiosk").await;
        let sent = jar
            .submit(
                &app,
                &kiosk,
                "/demo/kiosk",
                &[("username", person), ("password", PASSWORD), ("app", "oidc")],
            )
            .await;
        assert_eq!(sent.status, StatusCode::SEE_OTHER, "{}", sent.body);
        let mut page = jar.get(&app, sent.location().strip_prefix(BASE).unwrap()).await;
        while matches!(page.status, StatusCode::FOUND | StatusCode::SEE_OTHER) {
            let next = page.location().strip_prefix(BASE).unwrap_or(page.location()).to_owned();
            page = jar.get(&app, &next).await;
        }
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains(&format!("<h1>Signed in as {person}</h1>")), "{}", page.body);
        if first_rp_cookie.is_none() {
            first_rp_cookie = jar.cookie("latchkey_demo_rp").map(str::to_owned);
        }
    }
    // Alice's Latchkey session was replaced by Bob's token: her RP session hears of it.
    let delivered = latchkey_http::backchannel::deliver_due(&app.state, &InProcess(&app)).await.unwrap();
    assert_eq!(delivered.sent, 1, "{delivered:?}");
    let mut alices_browser =
        Browser::with_cookies(&[("latchkey_demo_rp", first_rp_cookie.as_deref().unwrap())]);
    let ended = alices_browser.get(&app, "/demo/rp/").await;
    assert!(ended.body.contains("back-channel logout"), "{}", ended.body);
    let bobs = jar.get(&app, "/demo/rp/").await;
    assert!(bobs.body.contains("Signed in as bob@example.com") && !bobs.body.contains("back-channel logout"));
    let forged = jar.post(&app, "/demo/rp/backchannel", &[("logout_token", "a.b.c")]).await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST);
    // Signing out at the RP ends its own session at once, then Latchkey's.
    let out = jar.get(&app, "/demo/rp/logout").await;
    assert!(out.location().starts_with("/oauth2/v1/logout?id_token_hint="), "{}", out.location());
    let page = jar.get(&app, "/demo/rp/").await;
    assert!(!page.body.contains("Signed in as"), "{}", page.body);
    let back = jar.get(&app, out.location()).await;
    assert_eq!(back.location(), format!("{BASE}/demo/rp/"));
}

#[tokio::test]
async fn apps_moved_from_okta_keep_their_secret_and_shapes_and_a_forged_login_after_changes_nothing() {
    let app = app_realtime(|_| {}).await;
    // A secret given at creation (Okta allows it) is the client's; a client_id cannot be chosen.
    let mut body =
        oidc_app_body(json!({"jwks_uri": null, "frontchannel_logout_uri": null, "participate_slo": false}));
    body["credentials"]["oauthClient"]["client_secret"] = json!("moved-from-okta-secret-123");
    let created = app.call(Method::POST, "/api/v1/apps", body.clone()).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    assert_eq!(created.body["credentials"]["oauthClient"]["client_secret"], "moved-from-okta-secret-123");
    body["credentials"]["oauthClient"]["client_id"] = json!("0oaChosenByMe");
    assert_eq!(app.call(Method::POST, "/api/v1/apps", body).await.status, StatusCode::BAD_REQUEST);
    let jwks_uri = app
        .call(Method::POST, "/api/v1/apps", oidc_app_body(json!({"jwks_uri": "https://rp.example.com/jwks"})))
        .await;
    assert!(
        jwks_uri.causes().iter().any(|c| c.starts_with("settings.oauthClient.jwks_uri")),
        "{:?}",
        jwks_uri.causes()
    );
    let service = json!({
        "name": "oidc_client", "label": "svc", "signOnMode": "OPENID_CONNECT",
        "settings": {"oauthClient": {"grant_types": ["client_credentials"], "response_types": ["token"], "application_type": "service"}},
    });
    assert_eq!(
        app.call(Method::POST, "/api/v1/apps", service).await.status,
        StatusCode::OK,
        "Okta's service-app shape"
    );

    let client_id = created.body["id"].as_str().unwrap().to_owned();
    let alice = app.create_ok("alice@example.com").await;
    app.call(Method::POST, &format!("/api/v1/apps/{client_id}/users"), json!({"id": alice})).await;
    let rp = Rp { app, client_id, secret: "moved-from-okta-secret-123".to_owned(), alice };
    let mut browser = Browser::default();
    let code = code_for(&rp, &mut browser, "alice@example.com").await;
    assert_eq!(redeem(&rp, &code).await.status, StatusCode::OK, "the given secret authenticates the client");
    // prompt=login with a made-up login_after: the sign-in page, not a code.
    for forged in ["1", "1.abc", "99999999999999"] {
        let page =
            browser.get(&rp.app, &authorize_url(&rp, &format!("&prompt=login&login_after={forged}"))).await;
        assert!(page.location().contains("/login/login.htm"), "{forged}: {}", page.location());
    }
    // The real one: signed in again through the page, the request is answered.
    let page = browser.get(&rp.app, &authorize_url(&rp, "&prompt=login")).await;
    assert!(page.location().ends_with("&prompt=login"), "the page must ask again: {}", page.location());
    let from = page.location().split("fromURI=").nth(1).unwrap().trim_end_matches("&prompt=login").to_owned();
    rp.app.clock.advance_secs(1);
    let signed_in = browser
        .sign_in(&rp.app, &format!("?fromURI={from}&prompt=login"), "alice@example.com", PASSWORD, &[])
        .await;
    let back = signed_in.location().strip_prefix(BASE).unwrap_or(signed_in.location()).to_owned();
    assert!(back.contains("login_after="), "{back}");
    let answer = browser.get(&rp.app, &back).await;
    assert!(param(&callback_params(answer.location()), "code").is_some(), "{}", answer.location());
}

#[tokio::test]
async fn a_suspension_ends_refresh_tokens_for_good() {
    let rp = refreshing_rp("STATIC").await;
    let token = offline_tokens(&rp).await.body["refresh_token"].as_str().unwrap().to_owned();
    rp.app.clock.advance_secs(1);
    rp.app.call(Method::POST, &format!("/api/v1/users/{}/lifecycle/suspend", rp.alice), Value::Null).await;
    rp.app.call(Method::POST, &format!("/api/v1/users/{}/lifecycle/unsuspend", rp.alice), Value::Null).await;
    assert_eq!(refresh(&rp, &token).await.body["error"], "invalid_grant", "not active again after unsuspend");
    assert_eq!(introspect(&rp, &token).await["active"], false);
}

#[tokio::test]
async fn an_oversized_token_request_is_answered_in_the_oauth_shape() {
    let rp = setup().await;
    let big = "x".repeat(300 * 1024);
    let request = Request::builder()
        .method(Method::POST)
        .uri("/oauth2/v1/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("content-length", big.len().to_string())
        .body(Body::from(big))
        .unwrap();
    let reply = send(&rp.app, request).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.body["error"], "invalid_request", "{}", reply.body);
}
