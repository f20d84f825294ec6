//! Custom domains: links and cookies follow the host the browser used; other hosts are refused.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::support::app_with;

#[tokio::test]
async fn links_follow_the_host_and_unknown_hosts_are_refused() {
    let app = app_with(|c| c.custom_domains = vec!["https://login.example.test".to_owned()]).await;
    let id = app.create_ok("host@example.com").await;
    let get = |host: &str| {
        Request::get(format!("/api/v1/users/{id}"))
            .header("host", host)
            .header("authorization", format!("SSWS {}", app.token))
            .body(Body::empty())
            .unwrap()
    };
    let res = app.router.clone().oneshot(get("login.example.test")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["_links"]["self"]["href"], format!("https://login.example.test/api/v1/users/{id}"));

    let res = app.router.clone().oneshot(get("id.example.test")).await.unwrap();
    let body: Value = serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(
        body["_links"]["self"]["href"],
        format!("http://id.example.test/api/v1/users/{id}"),
        "public URL"
    );

    let twice = Request::get(format!("/api/v1/users/{id}"))
        .header("host", "login.example.test")
        .header("host", "evil.test")
        .header("authorization", format!("SSWS {}", app.token))
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.router.clone().oneshot(twice).await.unwrap().status(), StatusCode::BAD_REQUEST);
    let absolute = Request::get(format!("http://evil.test/api/v1/users/{id}"))
        .header("host", "login.example.test")
        .header("authorization", format!("SSWS {}", app.token))
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        app.router.clone().oneshot(absolute).await.unwrap().status(),
        StatusCode::MISDIRECTED_REQUEST,
        "the absolute-form target names the host"
    );
    let probe = Request::get("/healthz").header("host", "10.1.2.3:8080").body(Body::empty()).unwrap();
    assert_eq!(
        app.router.clone().oneshot(probe).await.unwrap().status(),
        StatusCode::OK,
        "probes by IP work"
    );

    for evil in ["evil.test", "login.example.test.evil.test", "localhost"] {
        let res = app.router.clone().oneshot(get(evil)).await.unwrap();
        assert_eq!(res.status(), StatusCode::MISDIRECTED_REQUEST, "{evil}");
        assert!(res.headers().contains_key("x-okta-request-id"));
        let body: Value =
            serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(body["errorCode"], "E0000007");
    }
}

#[tokio::test]
async fn cookies_are_per_host_and_secure_on_https() {
    let app = app_with(|c| c.custom_domains = vec!["https://login.example.test".to_owned()]).await;
    app.call(
        axum::http::Method::POST,
        "/api/v1/trustedOrigins",
        json!({"name": "App", "origin": "https://app.example.test", "scopes": [{"type": "REDIRECT"}]}),
    )
    .await;
    app.create_ok("c@example.com").await;
    let token = app
        .public("/api/v1/authn", json!({"username": "c@example.com", "password": "Correct-Horse-9"}))
        .await
        .body["sessionToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let req = Request::get(format!(
        "/login/sessionCookieRedirect?token={token}&redirectUrl=https%3A%2F%2Fapp.example.test%2F"
    ))
    .header("host", "login.example.test")
    .body(Body::empty())
    .unwrap();
    let res = app.router.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::FOUND);
    let cookie = res.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("Secure; SameSite=None"), "https custom domain: {cookie}");
    assert!(!cookie.contains("Domain="), "host-only cookie: {cookie}");
}

#[tokio::test]
async fn https_answers_carry_hsts_http_ones_never_and_no_answer_may_be_sniffed() {
    let app = app_with(|c| c.custom_domains = vec!["https://login.example.test".to_owned()]).await;
    let get = |path: &str, host: &str| Request::get(path).header("host", host).body(Body::empty()).unwrap();
    for (path, host) in [
        ("/api/v1/users/me", "login.example.test"),
        ("/login/login.htm", "login.example.test"),
        ("/no/such/page", "login.example.test"),
    ] {
        let res = app.router.clone().oneshot(get(path, host)).await.unwrap();
        assert_eq!(res.headers()["strict-transport-security"], "max-age=31536000", "{path}");
        assert_eq!(res.headers()["x-content-type-options"], "nosniff", "{path}");
    }
    let plain = app.router.clone().oneshot(get("/api/v1/users/me", "id.example.test")).await.unwrap();
    assert!(!plain.headers().contains_key("strict-transport-security"), "never under http");
    assert_eq!(plain.headers()["x-content-type-options"], "nosniff", "JSON answers too");

    let off = app_with(|c| {
        c.custom_domains = vec!["https://login.example.test".to_owned()];
        c.strict_transport_security = latchkey_http::strict_transport_security(0);
    })
    .await;
    let res = off.router.clone().oneshot(get("/api/v1/users/me", "login.example.test")).await.unwrap();
    assert!(!res.headers().contains_key("strict-transport-security"), "0 turns it off");

    // The session-token redirect's URL carries a token: its answer sends no Referer onward.
    let res = app
        .router
        .clone()
        .oneshot(get(
            "/login/sessionCookieRedirect?token=abc&redirectUrl=http%3A%2F%2Fid.example.test%2F",
            "id.example.test",
        ))
        .await
        .unwrap();
    assert_eq!(res.headers()["referrer-policy"], "no-referrer");
}

#[tokio::test]
async fn metrics_are_for_loopback_scrapers_or_the_bearer_of_the_metrics_token() {
    use axum::extract::ConnectInfo;
    use std::net::SocketAddr;
    let render = || {
        std::sync::Arc::new(|| "latchkey_up 1\n".to_owned())
            as std::sync::Arc<dyn Fn() -> String + Send + Sync>
    };
    let app = app_with(|c| c.metrics = Some(render())).await;
    let from = |peer: &str, bearer: Option<&str>| {
        let mut request = Request::get("/metrics").header("host", "id.example.test");
        if let Some(token) = bearer {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let mut request = request.body(Body::empty()).unwrap();
        request.extensions_mut().insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        request
    };
    let local = app.router.clone().oneshot(from("127.0.0.1:50000", None)).await.unwrap();
    assert_eq!(local.status(), StatusCode::OK);
    let remote = app.router.clone().oneshot(from("203.0.113.9:50000", None)).await.unwrap();
    assert_eq!(remote.status(), StatusCode::UNAUTHORIZED, "not public");
    assert_eq!(remote.headers()["www-authenticate"], "Bearer");
    let body = remote.into_body().collect().await.unwrap().to_bytes();
    assert!(!String::from_utf8_lossy(&body).contains("latchkey_up"));

    let guarded = app_with(|c| {
        c.metrics = Some(render());
        c.metrics_token = Some("scrape-me-please-0123".to_owned());
    })
    .await;
    for (peer, bearer, expected) in [
        ("203.0.113.9:50000", Some("scrape-me-please-0123"), StatusCode::OK),
        ("203.0.113.9:50000", Some("scrape-me-please-0124"), StatusCode::UNAUTHORIZED),
        ("127.0.0.1:50000", None, StatusCode::UNAUTHORIZED),
    ] {
        let res = guarded.router.clone().oneshot(from(peer, bearer)).await.unwrap();
        assert_eq!(res.status(), expected, "{peer} {bearer:?}");
    }
}
