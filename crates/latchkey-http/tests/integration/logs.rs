//! The system log: what is written, how it is queried, and that no secret reaches it.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{App, BASE, app};

async fn logs(app: &App, query: &str) -> crate::support::Reply {
    app.call(Method::GET, &format!("/api/v1/logs{query}"), Value::Null).await
}

fn types(reply: &crate::support::Reply) -> Vec<String> {
    reply.body.as_array().unwrap().iter().map(|e| e["eventType"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn sign_ins_lockout_sessions_and_admin_changes_are_logged() {
    let app = app().await;
    let id = app.create_ok("log@example.com").await;
    let fail = app
        .public("/api/v1/authn", json!({"username": "log@example.com", "password": "Wrong-Horse-1"}))
        .await;
    assert_eq!(fail.status, StatusCode::UNAUTHORIZED);
    app.public("/api/v1/authn", json!({"username": "nobody@example.com", "password": "x"})).await;
    let ok = app
        .public("/api/v1/authn", json!({"username": "log@example.com", "password": "Correct-Horse-9"}))
        .await;
    let token = ok.body["sessionToken"].as_str().unwrap().to_owned();
    let session = app.call(Method::POST, "/api/v1/sessions", json!({"sessionToken": token})).await;
    let sid = session.body["id"].as_str().unwrap().to_owned();
    app.call(Method::DELETE, &format!("/api/v1/sessions/{sid}"), Value::Null).await;
    app.call(Method::POST, &format!("/api/v1/users/{id}/lifecycle/suspend"), Value::Null).await;

    let all = logs(&app, "").await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.body);
    assert_eq!(
        types(&all),
        [
            "user.lifecycle.create",
            "user.authentication.verify",
            "user.authentication.verify",
            "user.authentication.verify",
            "user.session.start",
            "user.session.end",
            "user.lifecycle.suspend",
        ]
    );
    let events = all.body.as_array().unwrap();
    assert_eq!(events[1]["outcome"], json!({"result": "FAILURE", "reason": "INVALID_CREDENTIALS"}));
    assert_eq!(events[1]["actor"]["alternateId"], "log@example.com");
    assert_eq!(events[2]["actor"]["alternateId"], "nobody@example.com");
    assert_eq!(events[3]["outcome"]["result"], "SUCCESS");
    assert_eq!(events[3]["actor"]["id"], id.as_str());
    assert_eq!(events[4]["target"][0]["id"], sid.as_str());
    assert_eq!(events[5]["outcome"]["reason"], "ADMIN_REVOKE");
    assert_eq!(events[5]["actor"]["type"], "PublicClientApp", "the admin token did it");
    assert_eq!(events[6]["target"][0]["id"], id.as_str());
    for event in events {
        assert!(event["published"].as_str().unwrap().ends_with('Z'));
        assert!(event["uuid"].as_str().unwrap().starts_with("evt"));
    }
    let text = all.body.to_string();
    for secret in ["Correct-Horse-9", "Wrong-Horse-1", token.as_str(), app.token.as_str()] {
        assert!(!text.contains(secret), "no secrets in the log");
    }

    let filtered = logs(
        &app,
        "?filter=eventType%20eq%20%22user.session.end%22%20or%20eventType%20eq%20%22user.session.start%22",
    )
    .await;
    assert_eq!(types(&filtered), ["user.session.start", "user.session.end"]);
    let failures = logs(&app, "?filter=outcome.result%20eq%20%22FAILURE%22").await;
    assert_eq!(failures.body.as_array().unwrap().len(), 2);
    let by_target = logs(&app, &format!("?filter=target.id%20eq%20%22{id}%22")).await;
    assert_eq!(types(&by_target), ["user.lifecycle.create", "user.lifecycle.suspend"]);
}

#[tokio::test]
async fn lockout_is_logged_once() {
    let app = app().await;
    app.create_ok("lk@example.com").await;
    let mut p = app.call(Method::GET, "/api/v1/policies?type=PASSWORD", Value::Null).await.body[0].clone();
    p["settings"]["password"]["lockout"]["maxAttempts"] = json!(2);
    app.call(Method::PUT, &format!("/api/v1/policies/{}", p["id"].as_str().unwrap()), p).await;
    for _ in 0..3 {
        app.public("/api/v1/authn", json!({"username": "lk@example.com", "password": "Wrong-Horse-1"})).await;
        app.clock.advance_secs(1);
    }
    let locks = logs(&app, "?filter=eventType%20eq%20%22user.account.lock%22").await;
    assert_eq!(locks.body.as_array().unwrap().len(), 1);
    assert_eq!(locks.body[0]["target"][0]["alternateId"], "lk@example.com");
}

#[tokio::test]
async fn pages_follow_next_links_and_windows_apply() {
    let app = app().await;
    for i in 0..5 {
        app.create_ok(&format!("p{i}@example.com")).await;
        app.clock.advance_secs(1);
    }
    let mut seen = 0;
    let mut next = Some("/api/v1/logs?limit=2".to_owned());
    while let Some(url) = next {
        let page = app.call(Method::GET, &url, Value::Null).await;
        seen += page.body.as_array().unwrap().len();
        next = page
            .headers
            .get("link")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(['<', '>']).nth(1))
            .map(|u| u.trim_start_matches(BASE).to_owned());
    }
    assert_eq!(seen, 5);
    let now = latchkey_core::Clock::now(app.clock.as_ref());
    let since = now.plus_seconds(-2).to_iso();
    let recent = logs(&app, &format!("?since={since}")).await;
    assert_eq!(recent.body.as_array().unwrap().len(), 2);
    let until = logs(&app, &format!("?until={since}")).await;
    assert_eq!(until.body.as_array().unwrap().len(), 3);
    assert_eq!(logs(&app, "?since=yesterday").await.code(), "E0000001");
    assert_eq!(logs(&app, "?filter=password%20eq%20%22x%22").await.code(), "E0000001");
    assert_eq!(logs(&app, "?sortOrder=DESCENDING").await.code(), "E0000001");
}
