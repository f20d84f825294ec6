//! Trusted origins API and the CORS policy on the cookie-bearing endpoints.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::support::{App, app};

async fn browser(
    app: &App,
    method: Method,
    uri: &str,
    origin: &str,
    preflight: bool,
) -> axum::response::Response {
    let mut req = Request::builder().method(method).uri(uri).header("origin", origin);
    if preflight {
        req = req
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type,x-okta-user-agent-extended");
    } else {
        req = req.header("content-type", "application/json");
    }
    let body = if preflight {
        Body::empty()
    } else {
        Body::from(json!({"username": "x@example.com", "password": "y"}).to_string())
    };
    app.router.clone().oneshot(req.body(body).unwrap()).await.unwrap()
}

#[tokio::test]
async fn trusted_origins_crud_and_validation() {
    let app = app().await;
    let created = app
        .call(Method::POST, "/api/v1/trustedOrigins", json!({"name": "Portal", "origin": "https://Portal.Example.com:443/", "scopes": [{"type": "CORS"}, {"type": "REDIRECT"}]}))
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    assert_eq!(created.body["origin"], "https://portal.example.com", "stored normalised");
    assert_eq!(created.body["status"], "ACTIVE");
    assert!(created.body["id"].as_str().unwrap().starts_with("tos"));
    let id = created.body["id"].as_str().unwrap().to_owned();

    let dup = app
        .call(
            Method::POST,
            "/api/v1/trustedOrigins",
            json!({"name": "Again", "origin": "https://portal.example.com", "scopes": [{"type": "CORS"}]}),
        )
        .await;
    assert_eq!(dup.code(), "E0000001");
    let bad = app
        .call(
            Method::POST,
            "/api/v1/trustedOrigins",
            json!({"name": "", "origin": "https://x.com/path", "scopes": [{"type": "EVERYTHING"}]}),
        )
        .await;
    assert_eq!(bad.code(), "E0000001");
    assert_eq!(bad.causes().len(), 3, "{:?}", bad.causes());

    let off = app
        .call(Method::POST, &format!("/api/v1/trustedOrigins/{id}/lifecycle/deactivate"), Value::Null)
        .await;
    assert_eq!(off.body["status"], "INACTIVE");
    let replaced = app.call(Method::PUT, &format!("/api/v1/trustedOrigins/{id}"), json!({"name": "Portal 2", "origin": "https://portal.example.com", "scopes": [{"type": "REDIRECT"}]})).await;
    assert_eq!(replaced.body["scopes"], json!([{"type": "REDIRECT"}]));
    assert_eq!(
        app.call(Method::GET, "/api/v1/trustedOrigins", Value::Null).await.body.as_array().unwrap().len(),
        1
    );
    assert_eq!(
        app.call(Method::DELETE, &format!("/api/v1/trustedOrigins/{id}"), Value::Null).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.call(Method::GET, &format!("/api/v1/trustedOrigins/{id}"), Value::Null).await.code(),
        "E0000007"
    );
}

#[tokio::test]
async fn cors_only_for_trusted_origins_with_credentials() {
    let app = app().await;
    app.call(
        Method::POST,
        "/api/v1/trustedOrigins",
        json!({"name": "Portal", "origin": "http://portal.test:3000", "scopes": [{"type": "CORS"}]}),
    )
    .await;
    app.call(
        Method::POST,
        "/api/v1/trustedOrigins",
        json!({"name": "Redirect only", "origin": "http://redirect.test", "scopes": [{"type": "REDIRECT"}]}),
    )
    .await;

    let preflight = browser(&app, Method::OPTIONS, "/api/v1/authn", "http://portal.test:3000", true).await;
    assert_eq!(preflight.status(), StatusCode::NO_CONTENT);
    let h = preflight.headers();
    assert_eq!(h["access-control-allow-origin"], "http://portal.test:3000");
    assert_eq!(h["access-control-allow-credentials"], "true");
    let allowed = h["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
    assert!(allowed.contains("x-okta-user-agent-extended") && allowed.contains("content-type"), "{allowed}");
    assert!(h["access-control-allow-methods"].to_str().unwrap().contains("DELETE"));

    let call = browser(&app, Method::POST, "/api/v1/authn", "http://portal.test:3000", false).await;
    assert_eq!(call.status(), StatusCode::UNAUTHORIZED, "the call itself runs");
    assert_eq!(call.headers()["access-control-allow-origin"], "http://portal.test:3000");
    assert!(call.headers()["access-control-expose-headers"].to_str().unwrap().contains("X-Okta-Request-Id"));

    for origin in ["http://evil.test", "http://redirect.test", "null", "http://portal.test:3001"] {
        let refused = browser(&app, Method::POST, "/api/v1/authn", origin, false).await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{origin}");
        assert!(refused.headers().get("access-control-allow-origin").is_none(), "{origin}");
        let refused = browser(&app, Method::OPTIONS, "/api/v1/authn", origin, true).await;
        assert!(refused.headers().get("access-control-allow-origin").is_none(), "{origin}");
    }

    // Same-origin calls (the hosted pages) need no trusted origin.
    let own = browser(&app, Method::POST, "/api/v1/authn", crate::support::BASE, false).await;
    assert_eq!(own.status(), StatusCode::UNAUTHORIZED);
    // Admin endpoints never answer CORS.
    let admin = browser(&app, Method::OPTIONS, "/api/v1/users", "http://portal.test:3000", true).await;
    assert!(admin.headers().get("access-control-allow-origin").is_none());
}
