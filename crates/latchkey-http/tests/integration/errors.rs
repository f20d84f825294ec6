//! Hostile and malformed input: each gets Okta's envelope with the documented code, never a 500,
//! and nothing is written.

use axum::body::Body;
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::app;

#[tokio::test]
async fn admin_token_is_required_and_checked() {
    let app = app().await;
    for auth in [None, Some("SSWS nope"), Some("Bearer x"), Some("SSWS"), Some("ssws-but-wrong")] {
        let reply = app.send(Method::GET, "/api/v1/users", auth, Body::empty()).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(reply.code(), "E0000011");
        assert_eq!(reply.body["errorSummary"], "Invalid token provided");
    }
    let no_space = format!("SSWS{}", app.token);
    let reply = app.send(Method::GET, "/api/v1/users", Some(&no_space), Body::empty()).await;
    assert_eq!(reply.status, StatusCode::OK, "PyPI okta sends SSWS<token> without a space");
}

#[tokio::test]
async fn unknown_routes_and_methods_use_the_envelope() {
    let app = app().await;
    let missing = app.call(Method::GET, "/api/v1/nothing-here", Value::Null).await;
    assert_eq!((missing.status, missing.code()), (StatusCode::NOT_FOUND, "E0000007"));
    let undecodable = app.call(Method::GET, "/api/v1/users/%FF%FE", Value::Null).await;
    assert_eq!((undecodable.status, undecodable.code()), (StatusCode::NOT_FOUND, "E0000007"));
    let users = app.call(Method::GET, "/api/v1/users", Value::Null).await;
    assert_eq!(users.headers["cache-control"], "no-cache, no-store", "API answers are never cached");
    let method = app.call(Method::PATCH, "/api/v1/users", Value::Null).await;
    assert_eq!((method.status, method.code()), (StatusCode::METHOD_NOT_ALLOWED, "E0000022"));
}

#[tokio::test]
async fn malformed_bodies_are_e0000003_and_write_nothing() {
    let app = app().await;
    let auth = format!("SSWS {}", app.token);
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let bodies: Vec<(&str, Body)> = vec![
        ("truncated", Body::from("{\"profile\": {")),
        ("not json", Body::from("profile=login")),
        ("invalid utf-8", Body::from(vec![b'{', b'"', 0xff, 0xfe, b'"', b':', b'1', b'}'])),
        ("deep", Body::from(deep)),
        ("array", Body::from("[]")),
        ("wrong type", Body::from(json!({"profile": "alice"}).to_string())),
        ("wrong password type", Body::from(json!({"profile": {"login": "w@example.com", "email": "w@example.com", "firstName": "W", "lastName": "T"}, "credentials": {"password": {"value": 12345678}}}).to_string())),
        ("unknown field", Body::from(json!({"profile": {"login": "u@example.com", "email": "u@example.com", "firstName": "U", "lastName": "F"}, "isAdmin": true}).to_string())),
    ];
    for (what, body) in bodies {
        let reply = app.send(Method::POST, "/api/v1/users", Some(&auth), body).await;
        assert_eq!(
            (reply.status, reply.code()),
            (StatusCode::BAD_REQUEST, "E0000003"),
            "{what}: {}",
            reply.body
        );
        assert_eq!(reply.body["errorSummary"], "The request body was not well-formed.");
    }
    let listed = app.call(Method::GET, "/api/v1/users", Value::Null).await;
    assert_eq!(listed.body, json!([]));
}

#[tokio::test]
async fn oversized_bodies_are_refused_before_parsing() {
    let app = app().await;
    let auth = format!("SSWS {}", app.token);
    let big = json!({"profile": {"login": "big@example.com", "title": "x".repeat(400_000)}}).to_string();
    let reply = app.send(Method::POST, "/api/v1/users", Some(&auth), Body::from(big)).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::PAYLOAD_TOO_LARGE, "E0000003"));
}

#[tokio::test]
async fn sql_metacharacters_are_plain_data() {
    let app = app().await;
    let login = "robert');DROP/**/TABLE/**/users;--'\"%_@example.com";
    let reply = app.create(login, Some("Correct-Horse-9"), "").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let encoded =
        percent_encoding::utf8_percent_encode(login, percent_encoding::NON_ALPHANUMERIC).to_string();
    let found = app.call(Method::GET, &format!("/api/v1/users/{encoded}"), Value::Null).await;
    assert_eq!(found.body["profile"]["login"], login);
    let quoted = login.replace('\\', "\\\\").replace('"', "\\\"");
    let search = format!("profile.login eq \"{quoted}\"");
    let search =
        percent_encoding::utf8_percent_encode(&search, percent_encoding::NON_ALPHANUMERIC).to_string();
    let listed = app.call(Method::GET, &format!("/api/v1/users?search={search}"), Value::Null).await;
    assert_eq!(listed.body.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn health_endpoints_answer() {
    let app = app().await;
    let health = app.send(Method::GET, "/healthz", None, Body::empty()).await;
    assert_eq!((health.status, health.body["status"].as_str()), (StatusCode::OK, Some("ok")));
    let ready = app.send(Method::GET, "/readyz", None, Body::empty()).await;
    assert_eq!(ready.status, StatusCode::OK);
    app.store.close().await;
    let not_ready = app.send(Method::GET, "/readyz", None, Body::empty()).await;
    assert_eq!((not_ready.status, not_ready.code()), (StatusCode::SERVICE_UNAVAILABLE, "E0000009"));
}

#[tokio::test]
async fn nul_bytes_are_refused_everywhere() {
    let app = app().await;
    let query = app.call(Method::GET, "/api/v1/users?q=a%00b", Value::Null).await;
    assert_eq!((query.status, query.code()), (StatusCode::BAD_REQUEST, "E0000001"));
    let search =
        app.call(Method::GET, "/api/v1/users?search=profile.login%20eq%20%22a%00b%22", Value::Null).await;
    assert_eq!(search.code(), "E0000001");
    let path = app.call(Method::GET, "/api/v1/users/a%00b", Value::Null).await;
    assert_eq!((path.status, path.code()), (StatusCode::NOT_FOUND, "E0000007"));
    let body = app
        .call(Method::POST, "/api/v1/authn", json!({"username": "a\u{0}b@example.com", "password": "x"}))
        .await;
    assert_eq!((body.status, body.code()), (StatusCode::BAD_REQUEST, "E0000003"));
}

#[tokio::test]
async fn unsupported_credentials_and_options_are_refused_not_dropped() {
    let app = app().await;
    let profile =
        json!({"login": "imp@example.com", "email": "imp@example.com", "firstName": "I", "lastName": "M"});
    let cases = [
        json!({"profile": profile, "credentials": {"password": {"hash": {"algorithm": "BCRYPT", "value": "x"}}}}),
        json!({"profile": profile, "credentials": {"password": {"hook": {"type": "default"}}}}),
        json!({"profile": profile, "credentials": {"recovery_question": {"question": "q", "answer": "a"}}}),
        json!({"profile": profile, "credentials": {"provider": {"type": "LDAP", "name": "corp"}}}),
        json!({"profile": profile, "groupIds": "00g1"}),
        json!({"profile": profile, "type": {"id": "otyNOPE"}}),
    ];
    for body in cases {
        let reply = app.call(Method::POST, "/api/v1/users", body.clone()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
    }
    // An unknown group is not found, and the user is not written.
    let unknown_group =
        app.call(Method::POST, "/api/v1/users", json!({"profile": profile, "groupIds": ["00g1"]})).await;
    assert_eq!((unknown_group.status, unknown_group.code()), (StatusCode::NOT_FOUND, "E0000007"));
    let bogus = app
        .call(Method::POST, "/api/v1/users", json!({"profile": profile, "credentials": {"bogus": 1}}))
        .await;
    assert_eq!(bogus.code(), "E0000003");
    let federated = app.call(Method::POST, "/api/v1/users?provider=true", json!({"profile": profile})).await;
    assert_eq!(federated.code(), "E0000001");
    assert_eq!(app.call(Method::GET, "/api/v1/users", Value::Null).await.body, json!([]), "nothing written");
}

#[tokio::test]
async fn a_declared_oversized_body_is_refused_before_reading() {
    let app = app().await;
    let req = axum::http::Request::post("/api/v1/users")
        .header("authorization", format!("SSWS {}", app.token))
        .header("content-length", "999999999")
        .body(Body::from("{}"))
        .unwrap();
    let res = tower::ServiceExt::oneshot(app.router.clone(), req).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("application/json"), "{content_type}");

    // A browser form (here a SAML POST binding) gets a page with the request id, not JSON.
    let req = axum::http::Request::post("/app/any/exk/sso/saml")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("content-length", "999999999")
        .body(Body::from("SAMLRequest="))
        .unwrap();
    let res = tower::ServiceExt::oneshot(app.router.clone(), req).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let request_id = res.headers()["x-okta-request-id"].to_str().unwrap().to_owned();
    let page = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
    let page = String::from_utf8_lossy(&page);
    assert!(page.contains("larger than") && page.contains(&request_id), "{page}");
}
