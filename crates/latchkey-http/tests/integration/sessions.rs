//! Sessions API, the `sid` cookie (sent by the shared [`Browser`]), and the session-token rule on
//! `/login/sessionCookieRedirect`.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use latchkey_core::sessions::TokenPrecedence;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::browser::Browser;
use crate::snapshot::assert_snapshot;
use crate::support::{App, app, app_with};

const PASSWORD: &str = "Correct-Horse-9";
const PORTAL: &str = "https://portal.example.test";

/// A browser holding the session cookie `sid`, with a device cookie (`DT`) beside it.
fn with_sid(sid: &str) -> Browser {
    Browser::with_cookies(&[("DT", "x"), ("sid", sid)])
}

async fn me(app: &App, sid: &str) -> (StatusCode, Value) {
    let b = with_sid(sid).get(app, "/api/v1/sessions/me").await;
    (b.status, serde_json::from_str(&b.body).unwrap_or(Value::Null))
}

async fn session_token(app: &App, login: &str) -> String {
    session_token_with(app, login, PASSWORD).await
}

async fn session_token_with(app: &App, login: &str, password: &str) -> String {
    let reply = app.public("/api/v1/authn", json!({"username": login, "password": password})).await;
    reply.body["sessionToken"].as_str().unwrap_or_else(|| panic!("{}", reply.body)).to_owned()
}

/// A browser signed in as `login` through sessionCookieRedirect: its `sid` cookie.
async fn signed_in(app: &App, login: &str) -> String {
    let landed = Browser::default().get(app, &redirect_uri(&session_token(app, login).await)).await;
    landed.cookie("sid").unwrap().to_owned()
}

async fn trust_portal(app: &App) {
    let r = app
        .call(
            Method::POST,
            "/api/v1/trustedOrigins",
            json!({"name": "Portal", "origin": PORTAL, "scopes": [{"type": "CORS"}, {"type": "REDIRECT"}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

fn redirect_uri(token: &str) -> String {
    let landing = format!("{PORTAL}/landing?x=1");
    let target = percent_encoding::utf8_percent_encode(&landing, percent_encoding::NON_ALPHANUMERIC);
    format!("/login/sessionCookieRedirect?checkAccountSetupComplete=true&token={token}&redirectUrl={target}")
}

#[tokio::test]
async fn sessions_api_create_read_refresh_revoke() {
    let app = app().await;
    let uid = app.create_ok("s@example.com").await;
    let token = session_token(&app, "s@example.com").await;
    let created = app.call(Method::POST, "/api/v1/sessions", json!({"sessionToken": token})).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    assert_snapshot("session", &created.body);
    assert_eq!(created.body["userId"], uid.as_str());
    let again = app.call(Method::POST, "/api/v1/sessions", json!({"sessionToken": token})).await;
    assert_eq!((again.status, again.code()), (StatusCode::UNAUTHORIZED, "E0000004"), "single use");

    let id = created.body["id"].as_str().unwrap().to_owned();
    let read = app.call(Method::GET, &format!("/api/v1/sessions/{id}"), Value::Null).await;
    assert_eq!(read.body["id"], id.as_str());
    app.clock.advance_secs(600);
    let refreshed =
        app.call(Method::POST, &format!("/api/v1/sessions/{id}/lifecycle/refresh"), Value::Null).await;
    assert!(
        refreshed.body["expiresAt"].as_str().unwrap() > created.body["expiresAt"].as_str().unwrap(),
        "slid"
    );
    let minimal = app
        .send(
            Method::POST,
            &format!("/api/v1/sessions/{id}/lifecycle/refresh"),
            Some(&format!("SSWS {}", app.token)),
            Body::empty(),
        )
        .await;
    assert_eq!(minimal.status, StatusCode::OK);

    assert_eq!(
        app.call(Method::DELETE, &format!("/api/v1/sessions/{id}"), Value::Null).await.status,
        StatusCode::NO_CONTENT
    );
    let gone = app.call(Method::GET, &format!("/api/v1/sessions/{id}"), Value::Null).await;
    assert_eq!((gone.status, gone.code()), (StatusCode::NOT_FOUND, "E0000007"));

    // Idle timeout (120 minutes by default) ends a session too.
    let token = session_token(&app, "s@example.com").await;
    let other = app.call(Method::POST, "/api/v1/sessions", json!({"sessionToken": token})).await;
    app.clock.advance_secs(121 * 60);
    let idle = app
        .call(Method::GET, &format!("/api/v1/sessions/{}", other.body["id"].as_str().unwrap()), Value::Null)
        .await;
    assert_eq!(idle.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn prefer_minimal_answers_204() {
    let app = app().await;
    app.create_ok("min@example.com").await;
    let token = session_token(&app, "min@example.com").await;
    let id = app.call(Method::POST, "/api/v1/sessions", json!({"sessionToken": token})).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let req = Request::post(format!("/api/v1/sessions/{id}/lifecycle/refresh"))
        .header("authorization", format!("SSWS {}", app.token))
        .header("prefer", "return=minimal")
        .body(Body::empty())
        .unwrap();
    let res = app.router.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(res.headers()["preference-applied"], "return=minimal");
}

#[tokio::test]
async fn me_needs_the_browser_cookie() {
    let app = app().await;
    let reply = app.call(Method::DELETE, "/api/v1/sessions/me", Value::Null).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "an admin token is not a session");
    assert_eq!(reply.body["errorCode"], "E0000007");
    assert_eq!(reply.body["errorSummary"], "Not found: Resource not found: me (Session)");
    assert_eq!(reply.body["errorCauses"], json!([]));
    let (status, _) = me(&app, "not-a-session").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_valid_token_replaces_the_browser_session_of_another_user() {
    let app = app().await;
    trust_portal(&app).await;
    app.create_ok("a@example.com").await;
    let b_id = app.create_ok("b@example.com").await;

    let first =
        Browser::default().get(&app, &redirect_uri(&session_token(&app, "a@example.com").await)).await;
    assert_eq!(first.status, StatusCode::FOUND);
    assert_eq!(first.location.as_deref(), Some("https://portal.example.test/landing?x=1"));
    let cookie = first.set_cookie("sid").unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("Path=/"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax") && !cookie.contains("Max-Age"), "http, non-persistent: {cookie}");
    let sid_a = first.cookie("sid").unwrap().to_owned();
    let (status, session_a) = me(&app, &sid_a).await;
    assert_eq!((status, session_a["login"].as_str()), (StatusCode::OK, Some("a@example.com")));
    assert_ne!(session_a["id"].as_str(), Some(sid_a.as_str()), "the cookie is not the public id");
    assert_eq!(session_a["_links"]["self"]["href"], format!("{}/api/v1/sessions/me", crate::support::BASE));

    // Second person, same browser (cookie A present), new token for B: B wins.
    let second = with_sid(&sid_a).get(&app, &redirect_uri(&session_token(&app, "b@example.com").await)).await;
    assert_eq!(second.status, StatusCode::FOUND);
    assert_eq!(second.location.as_deref(), Some("https://portal.example.test/landing?x=1"));
    let sid_b = second.cookie("sid").expect("a new cookie").to_owned();
    let (_, session_b) = me(&app, &sid_b).await;
    assert_eq!(session_b["userId"], b_id.as_str());
    assert_eq!(me(&app, &sid_a).await.0, StatusCode::NOT_FOUND, "A's cookie is dead");
    let by_id = app
        .call(Method::GET, &format!("/api/v1/sessions/{}", session_a["id"].as_str().unwrap()), Value::Null)
        .await;
    assert_eq!(by_id.status, StatusCode::NOT_FOUND, "A's session is revoked server-side");
}

#[tokio::test]
async fn an_invalid_token_ends_the_existing_session_and_goes_to_sign_in() {
    let app = app().await;
    trust_portal(&app).await;
    app.create_ok("a@example.com").await;
    let sid_a = signed_in(&app, "a@example.com").await;
    let bad = with_sid(&sid_a).get(&app, &redirect_uri("not-a-real-token")).await;
    assert_eq!(bad.status, StatusCode::FOUND);
    assert!(
        bad.location
            .as_deref()
            .unwrap()
            .starts_with(&format!("{}/login/login.htm?fromURI=", crate::support::BASE))
    );
    assert!(bad.set_cookie("sid").unwrap().contains("Max-Age=0"), "cookie cleared");
    assert_eq!(me(&app, &sid_a).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn cookie_precedence_keeps_the_existing_session_like_okta_classic() {
    let app = app_with(|c| c.session_token_precedence = TokenPrecedence::Cookie).await;
    trust_portal(&app).await;
    app.create_ok("a@example.com").await;
    app.create_ok("b@example.com").await;
    let sid_a = signed_in(&app, "a@example.com").await;
    let b_token = session_token(&app, "b@example.com").await;
    let second = with_sid(&sid_a).get(&app, &redirect_uri(&b_token)).await;
    assert_eq!(second.status, StatusCode::FOUND);
    assert_eq!(second.set_cookies, Vec::<String>::new(), "no new cookie");
    assert_eq!(me(&app, &sid_a).await.1["login"], "a@example.com", "A stays");
    let unused = app.call(Method::POST, "/api/v1/sessions", json!({"sessionToken": b_token})).await;
    assert_eq!(unused.status, StatusCode::OK, "the token was left unused");
}

#[tokio::test]
async fn redirect_targets_must_be_trusted_and_bad_requests_change_nothing() {
    let app = app().await;
    trust_portal(&app).await;
    app.create_ok("a@example.com").await;
    let token = session_token(&app, "a@example.com").await;
    for target in [
        "https://evil.test/",
        "//evil.test/",
        "javascript:alert(1)",
        "https://portal.example.test.evil.test/",
        "",
    ] {
        let enc = percent_encoding::utf8_percent_encode(target, percent_encoding::NON_ALPHANUMERIC);
        let b = Browser::default()
            .get(&app, &format!("/login/sessionCookieRedirect?token={token}&redirectUrl={enc}"))
            .await;
        assert_eq!(b.status, StatusCode::BAD_REQUEST, "{target}");
        assert_eq!((b.location, b.set_cookies), (None, vec![]), "{target}");
        assert!(b.body.contains("<h1>"), "an HTML page: {}", b.body);
    }
    let still = app.call(Method::POST, "/api/v1/sessions", json!({"sessionToken": token})).await;
    assert_eq!(still.status, StatusCode::OK, "the token was not spent by refused requests");

    // The form POST binding works too.
    let token = session_token(&app, "a@example.com").await;
    let form = format!(
        "token={token}&redirectUrl={}",
        percent_encoding::utf8_percent_encode(PORTAL, percent_encoding::NON_ALPHANUMERIC)
    );
    let req = Request::post("/login/sessionCookieRedirect")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(form))
        .unwrap();
    let res = app.router.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::FOUND);
    assert!(res.headers()["set-cookie"].to_str().unwrap().starts_with("sid="));
}

#[tokio::test]
async fn signout_ends_the_session_and_redirects_only_to_trusted_places() {
    let app = app().await;
    trust_portal(&app).await;
    app.create_ok("a@example.com").await;
    let sid = signed_in(&app, "a@example.com").await;
    let out = with_sid(&sid)
        .get(
            &app,
            &format!(
                "/login/signout?fromURI={}",
                percent_encoding::utf8_percent_encode(
                    &format!("{PORTAL}/bye"),
                    percent_encoding::NON_ALPHANUMERIC
                )
            ),
        )
        .await;
    assert_eq!(out.status, StatusCode::FOUND);
    assert_eq!(out.location.as_deref(), Some("https://portal.example.test/bye"));
    assert!(out.set_cookie("sid").unwrap().contains("Max-Age=0"));
    assert_eq!(me(&app, &sid).await.0, StatusCode::NOT_FOUND);
    let evil = Browser::default().get(&app, "/login/signout?fromURI=https%3A%2F%2Fevil.test%2F").await;
    assert_eq!(evil.location.as_deref(), Some(&format!("{}/login/login.htm", crate::support::BASE)[..]));
}

#[tokio::test]
async fn backend_logout_by_user_and_me_logout_by_browser() {
    let app = app().await;
    trust_portal(&app).await;
    let uid = app.create_ok("a@example.com").await;
    let one = signed_in(&app, "a@example.com").await;
    let two = signed_in(&app, "a@example.com").await;
    let revoked = app.call(Method::DELETE, &format!("/api/v1/users/{uid}/sessions"), Value::Null).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    assert_eq!(me(&app, &one).await.0, StatusCode::NOT_FOUND);
    assert_eq!(me(&app, &two).await.0, StatusCode::NOT_FOUND);

    let three = signed_in(&app, "a@example.com").await;
    let req = Request::delete("/api/v1/sessions/me")
        .header("cookie", format!("sid={three}"))
        .body(Body::empty())
        .unwrap();
    let res = app.router.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(res.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"), "DELETE /me clears sid");
    assert_eq!(me(&app, &three).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn users_me_follows_the_session_cookie() {
    let app = app().await;
    trust_portal(&app).await;
    let uid = app.create_ok("me@example.com").await;
    let sid = signed_in(&app, "me@example.com").await;
    let me = with_sid(&sid).get(&app, "/api/v1/users/me").await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(serde_json::from_str::<Value>(&me.body).unwrap()["id"], uid.as_str());
    let nobody = Browser::default().get(&app, "/api/v1/users/me").await;
    assert_eq!(nobody.status, StatusCode::NOT_FOUND);
    // Signing out is logged like any other session end.
    with_sid(&sid).get(&app, "/login/signout").await;
    let ends = app
        .call(Method::GET, "/api/v1/logs?filter=eventType%20eq%20%22user.session.end%22", Value::Null)
        .await;
    assert_eq!(ends.body[0]["outcome"]["reason"], "LOGOUT");
}

#[tokio::test]
async fn suspending_or_deactivating_ends_sessions_and_voids_tokens() {
    let app = app().await;
    trust_portal(&app).await;
    for op in ["suspend", "deactivate"] {
        let login = format!("{op}@example.com");
        let uid = app.create_ok(&login).await;
        let sid = signed_in(&app, &login).await;
        let pending_token = session_token(&app, &login).await;
        app.call(Method::POST, &format!("/api/v1/users/{uid}/lifecycle/{op}"), Value::Null).await;
        assert_eq!(me(&app, &sid).await.0, StatusCode::NOT_FOUND, "{op}: the session ended");
        let redeemed =
            app.call(Method::POST, "/api/v1/sessions", json!({"sessionToken": pending_token})).await;
        assert_eq!(redeemed.status, StatusCode::UNAUTHORIZED, "{op}: an earlier token is void");
    }
    let ends = app
        .call(Method::GET, "/api/v1/logs?filter=eventType%20eq%20%22user.session.end%22", Value::Null)
        .await;
    assert!(ends.body.as_array().unwrap().iter().all(|e| e["outcome"]["reason"] == "USER_NOT_ACTIVE"));
}

#[tokio::test]
async fn activity_slides_short_idle_timeouts_too() {
    let app = app().await;
    trust_portal(&app).await;
    app.create_ok("idle@example.com").await;
    let p = app.call(Method::GET, "/api/v1/policies?type=OKTA_SIGN_ON", Value::Null).await.body[0].clone();
    let rules = app
        .call(Method::GET, &format!("/api/v1/policies/{}/rules", p["id"].as_str().unwrap()), Value::Null)
        .await;
    let mut rule = rules.body[0].clone();
    rule["actions"]["signon"]["session"]["maxSessionIdleMinutes"] = json!(1);
    let href =
        rule["_links"]["self"]["href"].as_str().unwrap().trim_start_matches(crate::support::BASE).to_owned();
    app.call(Method::PUT, &href, rule).await;
    let sid = signed_in(&app, "idle@example.com").await;
    for _ in 0..6 {
        app.clock.advance_secs(20);
        assert_eq!(me(&app, &sid).await.0, StatusCode::OK, "in use: the 1-minute idle timeout keeps sliding");
    }
    app.clock.advance_secs(61);
    assert_eq!(me(&app, &sid).await.0, StatusCode::NOT_FOUND, "idle for longer than a minute");
}

#[tokio::test]
async fn a_missing_or_empty_token_counts_as_an_invalid_one() {
    for precedence in [TokenPrecedence::Token, TokenPrecedence::Cookie] {
        let app = app_with(|c| c.session_token_precedence = precedence).await;
        trust_portal(&app).await;
        app.create_ok("a@example.com").await;
        let target = percent_encoding::utf8_percent_encode(PORTAL, percent_encoding::NON_ALPHANUMERIC);
        for query in [format!("token=&redirectUrl={target}"), format!("redirectUrl={target}")] {
            let first = Browser::default()
                .get(&app, &redirect_uri(&session_token(&app, "a@example.com").await))
                .await;
            let sid = first.cookie("sid").unwrap().to_owned();
            let next = with_sid(&sid).get(&app, &format!("/login/sessionCookieRedirect?{query}")).await;
            assert_eq!(next.status, StatusCode::FOUND);
            let location = next.location.unwrap();
            if precedence == TokenPrecedence::Token {
                assert!(location.contains("/login/login.htm?fromURI="), "{query}: to sign-in, {location}");
                assert_eq!(me(&app, &sid).await.0, StatusCode::NOT_FOUND, "{query}: the session ended");
            } else {
                assert_eq!(location, PORTAL, "{query}: the cookie wins");
                assert_eq!(me(&app, &sid).await.0, StatusCode::OK, "{query}: the session stays");
            }
        }
    }
}

#[tokio::test]
async fn signout_follows_a_local_path() {
    let app = app().await;
    trust_portal(&app).await;
    app.create_ok("a@example.com").await;
    let sid = signed_in(&app, "a@example.com").await;
    let out = with_sid(&sid).get(&app, "/login/signout?fromURI=%2Fapp%2FUserHome").await;
    assert_eq!(out.location.as_deref(), Some(&format!("{}/app/UserHome", crate::support::BASE)[..]));
    assert_eq!(me(&app, &sid).await.0, StatusCode::NOT_FOUND);
    let sneaky = Browser::default().get(&app, "/login/signout?fromURI=%2F%2Fevil.test%2F").await;
    assert_eq!(sneaky.location.as_deref(), Some(&format!("{}/login/login.htm", crate::support::BASE)[..]));
}

/// Ends logged by kind: `(session id, reason)` of every `user.session.end`.
async fn session_ends(app: &App) -> Vec<(String, String)> {
    let ends = app
        .call(Method::GET, "/api/v1/logs?filter=eventType%20eq%20%22user.session.end%22", Value::Null)
        .await;
    ends.body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["target"][0]["id"].as_str().unwrap().to_owned(),
                e["outcome"]["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_lockout_ends_the_users_sessions_at_once_and_logs_them() {
    let app = app().await;
    trust_portal(&app).await;
    let uid = app.create_ok("lock@example.com").await;
    let sid = signed_in(&app, "lock@example.com").await;
    let id = me(&app, &sid).await.1["id"].as_str().unwrap().to_owned();
    let policies = app.call(Method::GET, "/api/v1/policies?type=PASSWORD", Value::Null).await;
    let mut policy = policies.body[0].clone();
    policy["settings"]["password"]["lockout"]["maxAttempts"] = json!(2);
    let policy_id = policy["id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.call(Method::PUT, &format!("/api/v1/policies/{policy_id}"), policy).await.status,
        StatusCode::OK
    );
    for _ in 0..2 {
        app.public("/api/v1/authn", json!({"username": "lock@example.com", "password": "Wrong-Horse-1"}))
            .await;
        app.clock.advance_secs(1);
    }
    let user = app.call(Method::GET, &format!("/api/v1/users/{uid}"), Value::Null).await;
    assert_eq!(user.body["status"], "LOCKED_OUT");
    let by_id = app.call(Method::GET, &format!("/api/v1/sessions/{id}"), Value::Null).await;
    assert_eq!(by_id.status, StatusCode::NOT_FOUND, "ended by the lockout, before any cookie check");
    assert!(session_ends(&app).await.contains(&(id, "USER_NOT_ACTIVE".to_owned())));
    app.call(Method::POST, &format!("/api/v1/users/{uid}/lifecycle/unlock"), Value::Null).await;
    assert_eq!(me(&app, &sid).await.0, StatusCode::NOT_FOUND, "and it stays ended after an unlock");
}

/// A session that outlived its user's right to sessions (a status change that ended no sessions,
/// as a race or a direct database change can leave) is ended by the next cookie check, and logged.
#[tokio::test]
async fn a_cookie_check_that_ends_a_session_logs_it() {
    use latchkey_core::store::UserStore;
    let app = app().await;
    trust_portal(&app).await;
    let uid = app.create_ok("gone@example.com").await;
    let sid = signed_in(&app, "gone@example.com").await;
    let id = me(&app, &sid).await.1["id"].as_str().unwrap().to_owned();
    let mut user = app.store.find_user(&uid).await.unwrap().unwrap();
    let version = user.version;
    user.status = latchkey_core::users::UserStatus::Suspended;
    user.version += 1;
    app.store.update_user(&user, version, None).await.unwrap();
    assert!(!session_ends(&app).await.iter().any(|(s, _)| *s == id));
    assert_eq!(me(&app, &sid).await.0, StatusCode::NOT_FOUND);
    assert!(session_ends(&app).await.contains(&(id, "USER_NOT_ACTIVE".to_owned())), "logged once ended");
}

#[tokio::test]
async fn change_password_can_revoke_sessions_by_body_or_query() {
    let app = app().await;
    trust_portal(&app).await;
    let uid = app.create_ok("pw@example.com").await;
    let mut password = PASSWORD.to_owned();
    for (n, query) in ["", "?revokeSessions=true"].into_iter().enumerate() {
        let first = Browser::default()
            .get(&app, &redirect_uri(&session_token_with(&app, "pw@example.com", &password).await))
            .await;
        let sid = first.cookie("sid").unwrap().to_owned();
        let new = format!("Another-Horse-{n}");
        let mut body = json!({"oldPassword": {"value": password}, "newPassword": {"value": new}});
        if query.is_empty() {
            body["revokeSessions"] = json!(true);
        }
        let changed = app
            .call(Method::POST, &format!("/api/v1/users/{uid}/credentials/change_password{query}"), body)
            .await;
        assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
        assert_eq!(me(&app, &sid).await.0, StatusCode::NOT_FOUND, "revoked ({query:?})");
        password = new;
        app.clock.advance_secs(86_400);
    }
    let odd = app
        .call(
            Method::POST,
            &format!("/api/v1/users/{uid}/credentials/change_password?revokeSessions=yes"),
            json!({"oldPassword": {"value": password}, "newPassword": {"value": "Third-Horse-9"}}),
        )
        .await;
    assert_eq!(odd.status, StatusCode::BAD_REQUEST);
}
