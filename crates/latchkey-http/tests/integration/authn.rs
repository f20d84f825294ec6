//! `/api/v1/authn*`: every state, transition and error, plus the policies that drive them.

use axum::http::{Method, StatusCode};
use latchkey_core::store::{AuthnStore, UserStore};
use latchkey_core::totp;
use serde_json::{Value, json};

use crate::snapshot::assert_snapshot;
use crate::support::{App, BASE, Reply, app};

const PASSWORD: &str = "Correct-Horse-9";

async fn sign_in(app: &App, login: &str, password: &str) -> Reply {
    app.public("/api/v1/authn", json!({"username": login, "password": password})).await
}

async fn sign_in_with(app: &App, login: &str, options: Value) -> Reply {
    app.public("/api/v1/authn", json!({"username": login, "password": PASSWORD, "options": options})).await
}

/// Follows a link of the response (the hrefs are absolute, as okta-auth-js uses them).
async fn follow(app: &App, reply: &Reply, link: Value, body: Value) -> Reply {
    let href = link["href"].as_str().unwrap_or_else(|| panic!("no href in {link} of {}", reply.body));
    assert_eq!(link["hints"]["allow"], json!(["POST"]), "one verb per link");
    let mut body = body;
    body["stateToken"] = reply.body["stateToken"].clone();
    app.public(href.trim_start_matches(BASE), body).await
}

async fn policy(app: &App, kind: &str) -> Value {
    let list = app.call(Method::GET, &format!("/api/v1/policies?type={kind}"), Value::Null).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    list.body[0].clone()
}

async fn set_password_policy(app: &App, password: Value) {
    let mut p = policy(app, "PASSWORD").await;
    p["settings"]["password"] = password;
    let id = p["id"].as_str().unwrap().to_owned();
    let reply = app.call(Method::PUT, &format!("/api/v1/policies/{id}"), p).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

async fn set_enrollment(app: &App, okta: &str, google: &str) {
    let mut p = policy(app, "MFA_ENROLL").await;
    p["settings"]["factors"]["okta_otp"]["enroll"]["self"] = json!(okta);
    p["settings"]["factors"]["google_otp"]["enroll"]["self"] = json!(google);
    let id = p["id"].as_str().unwrap().to_owned();
    let reply = app.call(Method::PUT, &format!("/api/v1/policies/{id}"), p).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

async fn set_sign_on(app: &App, signon: Value) {
    let p = policy(app, "OKTA_SIGN_ON").await;
    let rules = app
        .call(
            Method::GET,
            p["_links"]["rules"]["href"].as_str().unwrap().trim_start_matches(BASE),
            Value::Null,
        )
        .await;
    let mut rule = rules.body[0].clone();
    for (k, v) in signon.as_object().unwrap() {
        rule["actions"]["signon"][k] = v.clone();
    }
    let href = rule["_links"]["self"]["href"].as_str().unwrap().trim_start_matches(BASE).to_owned();
    let reply = app.call(Method::PUT, &href, rule).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

fn code(app: &App, secret: &str, offset_steps: i64) -> String {
    let key = totp::base32_decode(secret).unwrap();
    let now = latchkey_core::Clock::now(app.clock.as_ref()).epoch_seconds();
    totp::code_at(&key, totp::step_at(now) + offset_steps)
}

/// Enrolls an Okta Verify TOTP factor through the API and returns its shared secret.
async fn enroll_totp(app: &App, login: &str) -> String {
    set_enrollment(app, "REQUIRED", "OPTIONAL").await;
    let enroll = sign_in(app, login, PASSWORD).await;
    assert_eq!(enroll.body["status"], "MFA_ENROLL");
    let okta = enroll.body["_embedded"]["factors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["provider"] == "OKTA")
        .unwrap()
        .clone();
    let activate = follow(
        app,
        &enroll,
        okta["_links"]["enroll"].clone(),
        json!({"factorType": "token:software:totp", "provider": "OKTA"}),
    )
    .await;
    let secret = activate.body["_embedded"]["factor"]["_embedded"]["activation"]["sharedSecret"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = follow(
        app,
        &activate,
        activate.body["_links"]["next"].clone(),
        json!({"passCode": code(app, &secret, 0)}),
    )
    .await;
    assert_eq!(done.body["status"], "SUCCESS", "{}", done.body);
    set_enrollment(app, "OPTIONAL", "OPTIONAL").await;
    secret
}

#[tokio::test]
async fn success_issues_a_single_use_session_token() {
    let app = app().await;
    app.create_ok("ok@example.com").await;
    let reply = sign_in(&app, "ok@example.com", PASSWORD).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_snapshot("authn_success", &reply.body);
    assert!(reply.body.get("stateToken").is_none());
    let token = reply.body["sessionToken"].as_str().unwrap();
    let digest = latchkey_core::ids::secret_digest(token);
    let now = latchkey_core::Clock::now(app.clock.as_ref());
    assert!(app.store.consume_session_token(&digest, now).await.unwrap().is_some());
    assert!(app.store.consume_session_token(&digest, now).await.unwrap().is_none(), "single use");
    let expires = reply.body["expiresAt"].as_str().unwrap();
    assert_eq!(
        latchkey_core::Timestamp::parse_iso(expires).unwrap().millis() - now.millis(),
        300_000,
        "five minutes"
    );
}

#[tokio::test]
async fn unknown_users_and_wrong_passwords_get_the_same_answer() {
    let app = app().await;
    app.create_ok("real@example.com").await;
    let strip = |r: &Reply| {
        let mut b = r.body.clone();
        b["errorId"] = Value::Null;
        (r.status, b)
    };
    let wrong = sign_in(&app, "real@example.com", "Wrong-Horse-9").await;
    let unknown = sign_in(&app, "ghost@example.com", PASSWORD).await;
    let suspended_id = app.create_ok("paused@example.com").await;
    app.call(Method::POST, &format!("/api/v1/users/{suspended_id}/lifecycle/suspend"), Value::Null).await;
    let suspended = sign_in(&app, "paused@example.com", PASSWORD).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.code(), "E0000004");
    assert_eq!(strip(&wrong), strip(&unknown));
    assert_eq!(strip(&wrong), strip(&suspended));
    let missing = app.public("/api/v1/authn", json!({"username": "real@example.com"})).await;
    assert_eq!(missing.code(), "E0000001");
}

#[tokio::test]
async fn required_enrollment_then_activation_then_success() {
    let app = app().await;
    app.create_ok("enroll@example.com").await;
    set_enrollment(&app, "REQUIRED", "NOT_ALLOWED").await;
    let enroll = sign_in(&app, "enroll@example.com", PASSWORD).await;
    assert_snapshot("authn_mfa_enroll_required", &enroll.body);
    assert!(enroll.body["_links"].get("skip").is_none(), "required: no skip");

    let skip = app.public("/api/v1/authn/skip", json!({"stateToken": enroll.body["stateToken"]})).await;
    assert_eq!((skip.status, skip.code()), (StatusCode::FORBIDDEN, "E0000079"));

    let google = app
        .public("/api/v1/authn/factors", json!({"stateToken": enroll.body["stateToken"], "factorType": "token:software:totp", "provider": "GOOGLE"}))
        .await;
    assert_eq!(google.code(), "E0000001", "NOT_ALLOWED provider");

    let factor = &enroll.body["_embedded"]["factors"][0];
    let activate = follow(
        &app,
        &enroll,
        factor["_links"]["enroll"].clone(),
        json!({"factorType": "token:software:totp", "provider": "OKTA"}),
    )
    .await;
    assert_eq!(activate.status, StatusCode::OK, "{}", activate.body);
    assert_snapshot("authn_mfa_enroll_activate", &activate.body);
    let activation = &activate.body["_embedded"]["factor"]["_embedded"]["activation"];
    let secret = activation["sharedSecret"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 32);

    // The QR code is a PNG reachable without an admin token.
    let qr = activation["_links"]["qrcode"]["href"].as_str().unwrap().trim_start_matches(BASE).to_owned();
    let image = app.router.clone();
    let res = tower::ServiceExt::oneshot(
        image,
        axum::http::Request::get(&qr).body(axum::body::Body::empty()).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "image/png");
    let bytes = http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    let wrong_qr =
        app.send(Method::GET, &format!("{}x", &qr[..qr.len() - 1]), None, axum::body::Body::empty()).await;
    assert_eq!(wrong_qr.status, StatusCode::NOT_FOUND);

    // Introspection shows the same secret again.
    let again =
        app.public("/api/v1/authn/introspect", json!({"stateToken": activate.body["stateToken"]})).await;
    assert_eq!(again.body["_embedded"]["factor"]["_embedded"]["activation"]["sharedSecret"], secret.as_str());

    let wrong =
        follow(&app, &activate, activate.body["_links"]["next"].clone(), json!({"passCode": "000000"})).await;
    assert_eq!((wrong.status, wrong.code()), (StatusCode::FORBIDDEN, "E0000068"));
    assert_eq!(wrong.causes(), ["Your passcode doesn't match our records. Please try again."]);

    let done = follow(
        &app,
        &activate,
        activate.body["_links"]["next"].clone(),
        json!({"passCode": code(&app, &secret, 0)}),
    )
    .await;
    assert_eq!(done.body["status"], "SUCCESS", "{}", done.body);
    assert!(done.body["sessionToken"].is_string());
    assert_eq!(
        app.send(Method::GET, &qr, None, axum::body::Body::empty()).await.status,
        StatusCode::NOT_FOUND,
        "QR dies"
    );
}

#[tokio::test]
async fn multi_optional_enrollment_offers_the_rest_with_skip_and_prev_goes_back() {
    let app = app().await;
    app.create_ok("multi@example.com").await;
    set_enrollment(&app, "REQUIRED", "OPTIONAL").await;
    let enroll = sign_in_with(&app, "multi@example.com", json!({"multiOptionalFactorEnroll": true})).await;
    let activate = app
        .public("/api/v1/authn/factors", json!({"stateToken": enroll.body["stateToken"], "factorType": "token:software:totp", "provider": "OKTA"}))
        .await;
    let back = follow(&app, &activate, activate.body["_links"]["prev"].clone(), json!({})).await;
    assert_eq!(back.body["status"], "MFA_ENROLL");
    let activate = app
        .public("/api/v1/authn/factors", json!({"stateToken": enroll.body["stateToken"], "factorType": "token:software:totp", "provider": "OKTA"}))
        .await;
    let secret = activate.body["_embedded"]["factor"]["_embedded"]["activation"]["sharedSecret"]
        .as_str()
        .unwrap()
        .to_owned();
    let more = follow(
        &app,
        &activate,
        activate.body["_links"]["next"].clone(),
        json!({"passCode": code(&app, &secret, 0)}),
    )
    .await;
    assert_eq!(more.body["status"], "MFA_ENROLL", "the optional GOOGLE factor is offered: {}", more.body);
    assert_snapshot("authn_mfa_enroll_optional_with_skip", &more.body);
    let done = follow(&app, &more, more.body["_links"]["skip"].clone(), json!({})).await;
    assert_eq!(done.body["status"], "SUCCESS");
}

#[tokio::test]
async fn mfa_required_challenge_verify_and_replay() {
    let app = app().await;
    app.create_ok("mfa@example.com").await;
    let secret = enroll_totp(&app, "mfa@example.com").await;
    set_sign_on(&app, json!({"requireFactor": true})).await;
    app.clock.advance_secs(30);

    let required = sign_in(&app, "mfa@example.com", PASSWORD).await;
    assert_eq!(required.body["status"], "MFA_REQUIRED", "{}", required.body);
    assert_snapshot("authn_mfa_required", &required.body);
    let verify = required.body["_embedded"]["factors"][0]["_links"]["verify"].clone();

    let challenge = follow(&app, &required, verify.clone(), json!({})).await;
    assert_eq!(challenge.body["status"], "MFA_CHALLENGE");
    assert_snapshot("authn_mfa_challenge", &challenge.body);
    let back = follow(&app, &challenge, challenge.body["_links"]["prev"].clone(), json!({})).await;
    assert_eq!(back.body["status"], "MFA_REQUIRED");

    let wrong = follow(&app, &required, verify.clone(), json!({"passCode": "123456"})).await;
    assert_eq!(wrong.code(), "E0000068");
    let passcode = code(&app, &secret, 0);
    let ok = follow(&app, &required, verify.clone(), json!({"passCode": passcode})).await;
    assert_eq!(ok.body["status"], "SUCCESS", "{}", ok.body);
    // Passcode checks are throttled per user (4 a second); every answer says what is left.
    for (reply, left) in [(&wrong, "3"), (&ok, "2")] {
        assert_eq!(reply.headers["x-rate-limit-limit"], "4");
        assert_eq!(reply.headers["x-rate-limit-remaining"], left);
    }

    // The same code in a new transaction, within its window: refused as a replay.
    let second = sign_in(&app, "mfa@example.com", PASSWORD).await;
    let replay = follow(
        &app,
        &second,
        second.body["_embedded"]["factors"][0]["_links"]["verify"].clone(),
        json!({"passCode": passcode}),
    )
    .await;
    assert_eq!(replay.status, StatusCode::OK);
    assert_eq!(
        (replay.body["status"].as_str(), replay.body["factorResult"].as_str()),
        (Some("MFA_CHALLENGE"), Some("PASSCODE_REPLAYED"))
    );
    let next = code(&app, &secret, 1);
    let ok = follow(&app, &replay, replay.body["_links"]["next"].clone(), json!({"passCode": next})).await;
    assert_eq!(ok.body["status"], "SUCCESS", "the next step's code works: {}", ok.body);
}

#[tokio::test]
async fn remembered_device_skips_mfa_in_device_mode() {
    let app = app().await;
    app.create_ok("device@example.com").await;
    let secret = enroll_totp(&app, "device@example.com").await;
    set_sign_on(&app, json!({"requireFactor": true, "factorPromptMode": "DEVICE", "factorLifetime": 60}))
        .await;
    app.clock.advance_secs(30);
    let with_cookie = |body: Value| {
        let app: &App = &app;
        async move {
            let req = axum::http::Request::post("/api/v1/authn")
                .header("content-type", "application/json")
                .header("cookie", "DT=device-1")
                .body(axum::body::Body::from(body.to_string()))
                .unwrap();
            let res = tower::ServiceExt::oneshot(app.router.clone(), req).await.unwrap();
            let bytes = http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
            serde_json::from_slice::<Value>(&bytes).unwrap()
        }
    };
    let first = with_cookie(json!({"username": "device@example.com", "password": PASSWORD})).await;
    assert_eq!(first["status"], "MFA_REQUIRED");
    assert_eq!(first["_embedded"]["policy"]["allowRememberDevice"], true);
    let fid = first["_embedded"]["factors"][0]["id"].as_str().unwrap();
    let req = axum::http::Request::post(format!("/api/v1/authn/factors/{fid}/verify?rememberDevice=true"))
        .header("content-type", "application/json")
        .header("cookie", "DT=device-1")
        .body(axum::body::Body::from(
            json!({"stateToken": first["stateToken"], "passCode": code(&app, &secret, 0)}).to_string(),
        ))
        .unwrap();
    let res = tower::ServiceExt::oneshot(app.router.clone(), req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let second = with_cookie(json!({"username": "device@example.com", "password": PASSWORD})).await;
    assert_eq!(second["status"], "SUCCESS", "remembered device: {second}");
    let other_device = sign_in(&app, "device@example.com", PASSWORD).await;
    assert_eq!(other_device.body["status"], "MFA_REQUIRED", "another device is still asked");
    app.clock.advance_secs(61 * 60);
    let later = with_cookie(json!({"username": "device@example.com", "password": PASSWORD})).await;
    assert_eq!(later["status"], "MFA_REQUIRED", "factorLifetime elapsed");
}

#[tokio::test]
async fn expired_password_must_be_changed() {
    let app = app().await;
    let id = app.create_ok("exp@example.com").await;
    app.call(Method::POST, &format!("/api/v1/users/{id}/lifecycle/expire_password"), Value::Null).await;
    let expired = sign_in(&app, "exp@example.com", PASSWORD).await;
    assert_snapshot("authn_password_expired", &expired.body);
    let next = expired.body["_links"]["next"].clone();
    assert_eq!(next["name"], "changePassword");
    let wrong = follow(
        &app,
        &expired,
        next.clone(),
        json!({"oldPassword": "Nope-Horse-1", "newPassword": "Fresh-Start-42"}),
    )
    .await;
    assert_eq!((wrong.status, wrong.code()), (StatusCode::FORBIDDEN, "E0000014"));
    let weak =
        follow(&app, &expired, next.clone(), json!({"oldPassword": PASSWORD, "newPassword": "weak"})).await;
    assert_eq!(weak.code(), "E0000080");
    let done =
        follow(&app, &expired, next, json!({"oldPassword": PASSWORD, "newPassword": "Fresh-Start-42"})).await;
    assert_eq!(done.body["status"], "SUCCESS", "{}", done.body);
    assert_eq!(sign_in(&app, "exp@example.com", "Fresh-Start-42").await.body["status"], "SUCCESS");
}

#[tokio::test]
async fn password_warning_only_when_asked_and_skippable() {
    let app = app().await;
    app.create_ok("warn@example.com").await;
    set_password_policy(&app, json!({"age": {"maxAgeDays": 30, "expireWarnDays": 45}})).await;
    let plain = sign_in(&app, "warn@example.com", PASSWORD).await;
    assert_eq!(plain.body["status"], "SUCCESS", "no warning unless warnBeforePasswordExpired");
    let warned = sign_in_with(&app, "warn@example.com", json!({"warnBeforePasswordExpired": true})).await;
    assert_snapshot("authn_password_warn", &warned.body);
    assert_eq!(warned.body["_embedded"]["policy"]["expiration"]["passwordExpireDays"], 30);
    let done = follow(&app, &warned, warned.body["_links"]["skip"].clone(), json!({})).await;
    assert_eq!(done.body["status"], "SUCCESS");
    app.clock.advance_secs(31 * 86_400);
    let expired = sign_in(&app, "warn@example.com", PASSWORD).await;
    assert_eq!(expired.body["status"], "PASSWORD_EXPIRED", "maxAgeDays passed");
}

#[tokio::test]
async fn lockout_hidden_by_default_shown_when_configured_and_auto_unlocks() {
    let app = app().await;
    let id = app.create_ok("lock@example.com").await;
    set_password_policy(
        &app,
        json!({"lockout": {"maxAttempts": 3, "autoUnlockMinutes": 10, "showLockoutFailures": false}}),
    )
    .await;
    for _ in 0..3 {
        assert_eq!(sign_in(&app, "lock@example.com", "Wrong-Horse-1").await.code(), "E0000004");
        app.clock.advance_secs(1);
    }
    let user = app.call(Method::GET, &format!("/api/v1/users/{id}"), Value::Null).await;
    assert_eq!(user.body["status"], "LOCKED_OUT");
    assert_eq!(sign_in(&app, "lock@example.com", PASSWORD).await.code(), "E0000004", "hidden lockout");

    set_password_policy(
        &app,
        json!({"lockout": {"maxAttempts": 3, "autoUnlockMinutes": 10, "showLockoutFailures": true}}),
    )
    .await;
    let shown = sign_in(&app, "lock@example.com", PASSWORD).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert_snapshot("authn_locked_out", &shown.body);

    app.clock.advance_secs(10 * 60);
    assert_eq!(sign_in(&app, "lock@example.com", PASSWORD).await.body["status"], "SUCCESS", "auto-unlocked");

    for _ in 0..3 {
        sign_in(&app, "lock@example.com", "Wrong-Horse-1").await;
        app.clock.advance_secs(1);
    }
    assert_eq!(sign_in(&app, "lock@example.com", PASSWORD).await.body["status"], "LOCKED_OUT");
    app.call(Method::POST, &format!("/api/v1/users/{id}/lifecycle/unlock"), Value::Null).await;
    assert_eq!(sign_in(&app, "lock@example.com", PASSWORD).await.body["status"], "SUCCESS", "admin unlock");
}

#[tokio::test]
async fn state_tokens_slide_expire_and_die_on_cancel() {
    let app = app().await;
    let id = app.create_ok("state@example.com").await;
    app.call(Method::POST, &format!("/api/v1/users/{id}/lifecycle/expire_password"), Value::Null).await;
    let tx = sign_in(&app, "state@example.com", PASSWORD).await;
    let token = tx.body["stateToken"].clone();
    for _ in 0..3 {
        app.clock.advance_secs(8 * 60);
        let again = app.public("/api/v1/authn", json!({"stateToken": token})).await;
        assert_eq!(again.body["status"], "PASSWORD_EXPIRED", "sliding expiry keeps it alive: {}", again.body);
    }
    app.clock.advance_secs(11 * 60);
    let gone = app.public("/api/v1/authn/introspect", json!({"stateToken": token})).await;
    assert_eq!((gone.status, gone.code()), (StatusCode::UNAUTHORIZED, "E0000011"));

    let tx = sign_in(&app, "state@example.com", PASSWORD).await;
    let wrong_state = follow(
        &app,
        &tx,
        json!({"href": format!("{BASE}/api/v1/authn/previous"), "hints": {"allow": ["POST"]}}),
        json!({}),
    )
    .await;
    assert_eq!((wrong_state.status, wrong_state.code()), (StatusCode::FORBIDDEN, "E0000079"));
    let cancelled = follow(&app, &tx, tx.body["_links"]["cancel"].clone(), json!({})).await;
    assert_eq!(cancelled.body, json!({"relayState": ""}));
    let after = app.public("/api/v1/authn", json!({"stateToken": tx.body["stateToken"]})).await;
    assert_eq!(after.code(), "E0000011");
    let bogus = app.public("/api/v1/authn/skip", json!({"stateToken": "made-up"})).await;
    assert_eq!(bogus.code(), "E0000011");
    let missing = app.public("/api/v1/authn/skip", json!({})).await;
    assert_eq!(missing.code(), "E0000011");
}

#[tokio::test]
async fn throttling_answers_429_with_rate_headers() {
    let app = app().await;
    app.create_ok("busy@example.com").await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(sign_in(&app, "busy@example.com", "Wrong-Horse-1").await);
    }
    assert!(statuses[..4].iter().all(|r| r.status == StatusCode::UNAUTHORIZED));
    // Every answer carries what is left of the window, as Okta's do, failures included.
    let remaining: Vec<&str> =
        statuses[..4].iter().map(|r| r.headers["x-rate-limit-remaining"].to_str().unwrap()).collect();
    assert_eq!(remaining, ["3", "2", "1", "0"]);
    assert!(statuses[..4].iter().all(|r| r.headers["x-rate-limit-limit"] == "4"));
    let limited = &statuses[4];
    assert_eq!((limited.status, limited.code()), (StatusCode::TOO_MANY_REQUESTS, "E0000047"));
    assert_eq!(limited.headers["x-rate-limit-limit"], "4");
    assert_eq!(limited.headers["x-rate-limit-remaining"], "0");
    let reset: i64 = limited.headers["x-rate-limit-reset"].to_str().unwrap().parse().unwrap();
    assert_eq!(reset, latchkey_core::Clock::now(app.clock.as_ref()).epoch_seconds() + 1);
    app.clock.advance_secs(1);
    let next = sign_in(&app, "busy@example.com", PASSWORD).await;
    assert_eq!(next.body["status"], "SUCCESS", "next window");
    assert_eq!(next.headers["x-rate-limit-remaining"], "3", "a success carries them too");
    let user = app.call(Method::GET, "/api/v1/users/busy@example.com", Value::Null).await;
    assert_eq!(user.body["status"], "ACTIVE", "throttled attempts were never checked nor counted");
}

#[tokio::test]
async fn activation_token_leads_to_password_reset_then_success() {
    let app = app().await;
    let staged = app.create("new@example.com", None, "?activate=false").await;
    let id = staged.body["id"].as_str().unwrap().to_owned();
    let activated = app
        .call(Method::POST, &format!("/api/v1/users/{id}/lifecycle/activate?sendEmail=false"), Value::Null)
        .await;
    assert_eq!(
        app.call(Method::GET, &format!("/api/v1/users/{id}"), Value::Null).await.body["status"],
        "PROVISIONED"
    );
    let token = activated.body["activationToken"].clone();
    let reset = app.public("/api/v1/authn", json!({"token": token})).await;
    assert_snapshot("authn_password_reset", &reset.body);
    let weak =
        follow(&app, &reset, reset.body["_links"]["next"].clone(), json!({"newPassword": "short"})).await;
    assert_eq!(weak.code(), "E0000080");
    let done = follow(
        &app,
        &reset,
        reset.body["_links"]["next"].clone(),
        json!({"newPassword": "First-Password-1"}),
    )
    .await;
    assert_eq!(done.body["status"], "SUCCESS", "{}", done.body);
    assert_eq!(
        app.call(Method::GET, &format!("/api/v1/users/{id}"), Value::Null).await.body["status"],
        "ACTIVE"
    );
    let reused = app.public("/api/v1/authn", json!({"token": token})).await;
    assert_eq!(reused.code(), "E0000004", "activation tokens are single-use");
    // Activation tokens are throttled per token, and every answer says what is left.
    for (reply, left) in [(&reset, "3"), (&reused, "2")] {
        assert_eq!(reply.headers["x-rate-limit-limit"], "4");
        assert_eq!(reply.headers["x-rate-limit-remaining"], left);
    }
}

#[tokio::test]
async fn policy_updates_are_validated() {
    let app = app().await;
    let mut p = policy(&app, "PASSWORD").await;
    assert_snapshot("policy_password", &p);
    p["settings"]["password"]["complexity"]["minLength"] = json!(2);
    let id = p["id"].as_str().unwrap().to_owned();
    let bad = app.call(Method::PUT, &format!("/api/v1/policies/{id}"), p.clone()).await;
    assert_eq!(bad.code(), "E0000001");
    assert_eq!(bad.causes(), ["settings.password.complexity.minLength: must be an integer from 4 to 256"]);
    p["settings"]["password"]["complexity"]["minLength"] = json!(12);
    let ok = app.call(Method::PUT, &format!("/api/v1/policies/{id}"), p).await;
    assert_eq!(ok.body["settings"]["password"]["complexity"]["minLength"], 12);
    let short = app.create("short@example.com", Some("Short-Pass1"), "").await;
    assert_eq!(short.code(), "E0000001", "the new minimum applies at once");

    let sign_on = policy(&app, "OKTA_SIGN_ON").await;
    let rules = app
        .call(
            Method::GET,
            &format!("/api/v1/policies/{}/rules", sign_on["id"].as_str().unwrap()),
            Value::Null,
        )
        .await;
    assert_snapshot("policy_sign_on_rule", &rules.body[0]);
    let mut rule = rules.body[0].clone();
    rule["actions"]["signon"]["factorPromptMode"] = json!("SOMETIMES");
    let href = rule["_links"]["self"]["href"].as_str().unwrap().trim_start_matches(BASE).to_owned();
    assert_eq!(app.call(Method::PUT, &href, rule).await.code(), "E0000001");
    assert_eq!(app.call(Method::GET, "/api/v1/policies?type=NOPE", Value::Null).await.code(), "E0000001");
    assert_eq!(app.call(Method::GET, "/api/v1/policies/00pnope", Value::Null).await.code(), "E0000007");
    let anonymous =
        app.send(Method::GET, "/api/v1/policies?type=PASSWORD", None, axum::body::Body::empty()).await;
    assert_eq!(anonymous.code(), "E0000011");
}

#[tokio::test]
async fn admin_lists_and_resets_factors() {
    let app = app().await;
    let id = app.create_ok("factors@example.com").await;
    enroll_totp(&app, "factors@example.com").await;
    let listed = app.call(Method::GET, &format!("/api/v1/users/{id}/factors"), Value::Null).await;
    assert_eq!(listed.body.as_array().unwrap().len(), 1);
    assert_eq!(listed.body[0]["status"], "ACTIVE");
    assert_eq!(listed.body[0]["factorType"], "token:software:totp");
    let reset =
        app.call(Method::POST, &format!("/api/v1/users/{id}/lifecycle/reset_factors"), Value::Null).await;
    assert_eq!(reset.status, StatusCode::OK);
    let after = app.call(Method::GET, &format!("/api/v1/users/{id}/factors"), Value::Null).await;
    assert_eq!(after.body, json!([]));
}

#[tokio::test]
async fn concurrent_sign_ins_and_failures_are_all_counted() {
    let app = crate::support::app_with(|c| c.authn_limits.per_username = 0).await;
    let id = app.create_ok("many@example.com").await;
    let wins = futures_all(&app, 12, PASSWORD).await;
    assert!(wins.iter().all(|s| *s == StatusCode::OK), "every concurrent sign-in succeeds: {wins:?}");
    set_password_policy(&app, json!({"lockout": {"maxAttempts": 50}})).await;
    let fails = futures_all(&app, 12, "Wrong-Horse-1").await;
    assert!(fails.iter().all(|s| *s == StatusCode::UNAUTHORIZED), "{fails:?}");
    let user = app.store.find_user(&id).await.unwrap().unwrap();
    assert_eq!(user.failed_attempts, 12, "no failure lost to a race");
}

async fn futures_all(app: &App, n: usize, password: &str) -> Vec<StatusCode> {
    let calls: Vec<_> = (0..n).map(|_| sign_in(app, "many@example.com", password)).collect();
    let mut statuses = Vec::new();
    for reply in crate::support::join_all(calls).await {
        statuses.push(reply.status);
    }
    statuses
}

#[tokio::test]
async fn every_failure_takes_the_same_floor_time() {
    let app = app().await;
    app.create_ok("floor@example.com").await;
    for (login, password) in [("floor@example.com", "Wrong-Horse-1"), ("ghost@example.com", "Wrong-Horse-1")]
    {
        let started = std::time::Instant::now();
        let reply = sign_in(&app, login, password).await;
        assert_eq!(reply.code(), "E0000004");
        assert!(
            started.elapsed() >= std::time::Duration::from_millis(150),
            "{login}: {:?}",
            started.elapsed()
        );
        app.clock.advance_secs(1);
    }
    // (Successes are not delayed; wall-clock upper bounds are too noisy to assert on a busy machine.)
    assert_eq!(sign_in(&app, "floor@example.com", PASSWORD).await.body["status"], "SUCCESS");
}

#[tokio::test]
async fn expired_password_users_are_locked_out_too() {
    let app = app().await;
    let id = app.create_ok("tmp-lock@example.com").await;
    set_password_policy(&app, json!({"lockout": {"maxAttempts": 3, "showLockoutFailures": true}})).await;
    app.call(Method::POST, &format!("/api/v1/users/{id}/lifecycle/expire_password"), Value::Null).await;
    for _ in 0..3 {
        sign_in(&app, "tmp-lock@example.com", "Wrong-Horse-1").await;
        app.clock.advance_secs(1);
    }
    assert_eq!(sign_in(&app, "tmp-lock@example.com", PASSWORD).await.body["status"], "LOCKED_OUT");
}

#[tokio::test]
async fn revoke_sessions_on_password_change_ends_them() {
    let app = app().await;
    let id = app.create_ok("revoke@example.com").await;
    let token =
        sign_in(&app, "revoke@example.com", PASSWORD).await.body["sessionToken"].as_str().unwrap().to_owned();
    let session = app.call(Method::POST, "/api/v1/sessions", json!({"sessionToken": token})).await;
    let sid = session.body["id"].as_str().unwrap().to_owned();
    app.call(Method::POST, &format!("/api/v1/users/{id}/lifecycle/expire_password"), Value::Null).await;
    let expired = sign_in(&app, "revoke@example.com", PASSWORD).await;
    let done = follow(
        &app,
        &expired,
        expired.body["_links"]["next"].clone(),
        json!({"oldPassword": PASSWORD, "newPassword": "Fresh-Start-42", "revokeSessions": true}),
    )
    .await;
    assert_eq!(done.body["status"], "SUCCESS");
    assert_eq!(
        app.call(Method::GET, &format!("/api/v1/sessions/{sid}"), Value::Null).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn one_transaction_ends_in_at_most_one_success() {
    let app = crate::support::app_with(|c| c.authn_limits.per_username = 0).await;
    app.create_ok("race@example.com").await;
    set_password_policy(&app, json!({"age": {"maxAgeDays": 30, "expireWarnDays": 45}})).await;
    let warned = sign_in_with(&app, "race@example.com", json!({"warnBeforePasswordExpired": true})).await;
    let calls: Vec<_> = (0..8)
        .map(|_| app.public("/api/v1/authn/skip", json!({"stateToken": warned.body["stateToken"]})))
        .collect();
    let replies = crate::support::join_all(calls).await;
    let successes = replies.iter().filter(|r| r.body["status"] == "SUCCESS").count();
    assert_eq!(successes, 1, "{:?}", replies.iter().map(|r| r.status).collect::<Vec<_>>());
}
