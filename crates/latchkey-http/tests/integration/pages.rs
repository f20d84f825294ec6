//! The hosted pages driven like a browser without JavaScript (the shared [`Browser`]: a cookie jar,
//! GETs and form posts).
//! Sign-in through every state, CSRF, fromURI checks, escaping, headers, persistent cookies,
//! the dashboard, the sessions page, sign-out and the templated error pages.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use latchkey_core::totp;
use serde_json::{Value, json};

use crate::browser::{Browser, Page};
use crate::support::{App, BASE, app, app_realtime};

const PASSWORD: &str = "Correct-Horse-9";

async fn policy(app: &App, kind: &str) -> Value {
    app.call(Method::GET, &format!("/api/v1/policies?type={kind}"), Value::Null).await.body[0].clone()
}

async fn put_policy(app: &App, kind: &str, change: impl FnOnce(&mut Value)) {
    let mut p = policy(app, kind).await;
    change(&mut p);
    let id = p["id"].as_str().unwrap().to_owned();
    let reply = app.call(Method::PUT, &format!("/api/v1/policies/{id}"), p).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

async fn set_sign_on(app: &App, signon: Value) {
    let p = policy(app, "OKTA_SIGN_ON").await;
    let href = p["_links"]["rules"]["href"].as_str().unwrap().trim_start_matches(BASE).to_owned();
    let mut rule = app.call(Method::GET, &href, Value::Null).await.body[0].clone();
    for (k, v) in signon.as_object().unwrap() {
        if ["usePersistentCookie", "maxSessionLifetimeMinutes", "maxSessionIdleMinutes"].contains(&k.as_str())
        {
            rule["actions"]["signon"]["session"][k] = v.clone();
        } else {
            rule["actions"]["signon"][k] = v.clone();
        }
    }
    let href = rule["_links"]["self"]["href"].as_str().unwrap().trim_start_matches(BASE).to_owned();
    assert_eq!(app.call(Method::PUT, &href, rule).await.status, StatusCode::OK);
}

fn code(app: &App, secret: &str, offset_steps: i64) -> String {
    let key = totp::base32_decode(secret).unwrap();
    let now = latchkey_core::Clock::now(app.clock.as_ref()).epoch_seconds();
    totp::code_at(&key, totp::step_at(now) + offset_steps)
}

fn assert_page_headers(page: &Page) {
    let h = |name: &str| page.headers.get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let csp = h("content-security-policy");
    for part in [
        "default-src 'none'",
        "img-src 'self' data:",
        "style-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(part), "CSP {csp:?} lacks {part}");
    }
    assert!(!csp.contains("script-src"), "no scripts at all: {csp}");
    assert_eq!(h("x-frame-options"), "DENY");
    assert_eq!(h("x-content-type-options"), "nosniff");
    assert_eq!(h("referrer-policy"), "no-referrer");
    assert_eq!(h("cache-control"), "no-store");
}

#[tokio::test]
async fn password_sign_in_reaches_the_dashboard_with_safe_headers() {
    let app = app().await;
    app.create_ok("pat@example.com").await;
    let mut jar = Browser::default();
    let page = jar.get(&app, "/login/login.htm").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_page_headers(&page);
    assert!(page.headers.get("content-type").unwrap().to_str().unwrap().starts_with("text/html"));
    assert!(page.set_cookie("lk_csrf").unwrap().contains("HttpOnly"));
    for needle in [
        "<html lang=\"en\">",
        "name=\"viewport\"",
        "<label for=\"username\">",
        "autocomplete=\"username\"",
        "autocomplete=\"current-password\"",
    ] {
        assert!(page.body.contains(needle), "sign-in page lacks {needle}");
    }
    assert!(!page.body.contains("name=\"remember\""), "no 'keep me signed in' unless the policy allows it");
    assert!(!page.body.contains("<script"), "no JavaScript");

    let done = jar
        .submit(&app, &page, "/login/login.htm", &[("username", "pat@example.com"), ("password", PASSWORD)])
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location(), format!("{BASE}/app/UserHome"));
    let sid = done.set_cookie("sid").unwrap();
    assert!(sid.contains("HttpOnly") && !sid.contains("Max-Age"), "a browser-session cookie: {sid}");

    let home = jar.get(&app, "/app/UserHome").await;
    assert_eq!(home.status, StatusCode::OK);
    assert_page_headers(&home);
    assert!(home.body.contains("No apps assigned yet"), "{}", home.body);
    assert!(home.body.contains("pat@example.com"));
    // With a session, the sign-in page sends the browser on.
    let again = jar.get(&app, "/login/login.htm").await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    assert_eq!(again.location(), format!("{BASE}/app/UserHome"));

    let css = jar.get(&app, "/login/static/latchkey.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.headers.get("content-type").unwrap().to_str().unwrap().starts_with("text/css"));
}

#[tokio::test]
async fn wrong_password_keeps_the_escaped_username_and_unknown_users_look_the_same() {
    let app = app().await;
    app.create_ok("pat@example.com").await;
    let mut jar = Browser::default();
    let hostile = "\"><script>alert(1)</script>";
    let page = jar.sign_in(&app, "", hostile, "nope", &[]).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(!page.body.contains("<script>"), "{}", page.body);
    assert!(page.body.contains("&quot;&gt;&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"), "{}", page.body);
    assert!(page.body.contains("role=\"alert\""));
    assert!(page.body.contains("aria-describedby=\"username-hint form-error\""));
    let wrong = jar.sign_in(&app, "", "pat@example.com", "nope", &[]).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("The username or password is not correct."));
    assert!(wrong.set_cookie("sid").is_none());
}

#[tokio::test]
async fn forms_without_a_valid_csrf_token_or_from_another_site_are_refused() {
    let app = app().await;
    app.create_ok("pat@example.com").await;
    let mut jar = Browser::default();
    let page = jar.get(&app, "/login/login.htm").await;
    let token = page.field("_csrf").unwrap();
    let creds = [("username", "pat@example.com"), ("password", PASSWORD)];

    let missing = jar.post(&app, "/login/login.htm", &creds).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    assert!(missing.body.contains("This form has expired"), "{}", missing.body);
    let request_id = missing.headers.get("x-okta-request-id").unwrap().to_str().unwrap();
    assert!(missing.body.contains(request_id), "the error page shows the request id");
    assert_page_headers(&missing);

    let mut forged = creds.to_vec();
    forged.push(("_csrf", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
    assert_eq!(jar.post(&app, "/login/login.htm", &forged).await.status, StatusCode::FORBIDDEN);

    // The right token from a browser without the cookie it is bound to.
    let mut other = Browser::default();
    let mut with_token = creds.to_vec();
    with_token.push(("_csrf", &token));
    assert_eq!(other.post(&app, "/login/login.htm", &with_token).await.status, StatusCode::FORBIDDEN);

    // The right token and cookie, but posted from another site.
    let body: String =
        url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&with_token).finish();
    let cross = Request::post("/login/login.htm")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", "https://evil.example");
    assert_eq!(jar.send(&app, cross, Body::from(body.clone())).await.status, StatusCode::FORBIDDEN);
    let cross_site = Request::post("/login/login.htm")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("sec-fetch-site", "cross-site");
    assert_eq!(jar.send(&app, cross_site, Body::from(body)).await.status, StatusCode::FORBIDDEN);

    // What Chromium sends from our own page (its Referrer-Policy makes the Origin `null`).
    let own = Request::post("/login/login.htm")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", "null")
        .header("sec-fetch-site", "same-origin");
    let body: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&forged).finish();
    assert_eq!(
        jar.send(&app, own, Body::from(body)).await.status,
        StatusCode::FORBIDDEN,
        "still needs the token"
    );
    let ok = jar.post(&app, "/login/login.htm", &with_token).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    // Sign-out and ending other sessions are forms too.
    assert_eq!(jar.post(&app, "/login/signout", &[]).await.status, StatusCode::FORBIDDEN);
    assert_eq!(jar.get(&app, "/app/UserHome").await.status, StatusCode::OK, "still signed in");
}

#[tokio::test]
async fn from_uri_is_followed_only_when_local_or_trusted() {
    let app = app().await;
    app.create_ok("pat@example.com").await;
    let trusted =
        json!({"name": "Portal", "origin": "https://portal.example.test", "scopes": [{"type": "REDIRECT"}]});
    assert_eq!(app.call(Method::POST, "/api/v1/trustedOrigins", trusted).await.status, StatusCode::OK);
    let cases = [
        ("/app/sample/exk1/sso/saml?resume=r1", format!("{BASE}/app/sample/exk1/sso/saml?resume=r1")),
        ("https://portal.example.test/landing?x=1", "https://portal.example.test/landing?x=1".to_owned()),
        (&format!("{BASE}/app/UserHome/sessions"), format!("{BASE}/app/UserHome/sessions")),
        ("//evil.example/x", format!("{BASE}/app/UserHome")),
        ("/\\evil.example/x", format!("{BASE}/app/UserHome")),
        ("https://evil.example/", format!("{BASE}/app/UserHome")),
        ("javascript:alert(1)", format!("{BASE}/app/UserHome")),
        ("https://portal.example.test.evil.example/", format!("{BASE}/app/UserHome")),
    ];
    for (from, expected) in cases {
        // Two sign-ins per case: stay under the per-username budget of 4 a second.
        app.clock.advance_secs(1);
        let mut jar = Browser::default();
        let encoded: String = url::form_urlencoded::byte_serialize(from.as_bytes()).collect();
        let page = jar.get(&app, &format!("/login/login.htm?fromURI={encoded}")).await;
        if expected.ends_with("/app/UserHome") {
            assert!(page.field("fromURI").is_none(), "{from}: an untrusted fromURI is not even carried");
            assert!(!page.body.contains("evil.example"), "{from}");
        }
        let done = jar
            .submit(
                &app,
                &page,
                "/login/login.htm",
                &[("username", "pat@example.com"), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{from}: {}", done.body);
        assert_eq!(done.location(), expected, "{from}");
        // A tampered form field is checked again on the way out.
        let mut jar = Browser::default();
        let page = jar.get(&app, "/login/login.htm").await;
        let done = jar
            .submit(
                &app,
                &page,
                "/login/login.htm",
                &[("fromURI", from), ("username", "pat@example.com"), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(done.location(), expected, "{from} posted directly");
    }
    // A trusted origin elsewhere is allowed as a form target in the page's CSP.
    let mut jar = Browser::default();
    let page = jar.get(&app, "/login/login.htm?fromURI=https%3A%2F%2Fportal.example.test%2Fx").await;
    let csp = page.headers.get("content-security-policy").unwrap().to_str().unwrap();
    assert!(csp.contains("form-action 'self' https://portal.example.test;"), "{csp}");
}

#[tokio::test]
async fn keep_me_signed_in_only_when_the_policy_allows_and_the_user_asks() {
    let app = app().await;
    app.create_ok("pat@example.com").await;
    let remember = [("remember", "1")];
    let mut jar = Browser::default();
    let done = jar.sign_in(&app, "", "pat@example.com", PASSWORD, &remember).await;
    assert!(!done.set_cookie("sid").unwrap().contains("Max-Age"), "policy does not allow persistent cookies");

    set_sign_on(&app, json!({"usePersistentCookie": true})).await;
    let mut jar = Browser::default();
    let page = jar.get(&app, "/login/login.htm").await;
    assert!(page.body.contains("name=\"remember\""), "the checkbox appears");
    assert!(page.body.contains("<label for=\"remember\">Keep me signed in</label>"));
    let done = jar
        .submit(&app, &page, "/login/login.htm", &[("username", "pat@example.com"), ("password", PASSWORD)])
        .await;
    assert!(!done.set_cookie("sid").unwrap().contains("Max-Age"), "not asked");
    let mut jar = Browser::default();
    let done = jar.sign_in(&app, "", "pat@example.com", PASSWORD, &remember).await;
    let sid = done.set_cookie("sid").unwrap();
    assert!(sid.contains("Max-Age=7200"), "asked and allowed: {sid}");
    // With an absolute lifetime the cookie lasts as long as the session may (activity slides the
    // idle expiry on the server; the cookie must not end before it).
    set_sign_on(&app, json!({"usePersistentCookie": true, "maxSessionLifetimeMinutes": 600})).await;
    let mut jar = Browser::default();
    let done = jar.sign_in(&app, "", "pat@example.com", PASSWORD, &remember).await;
    let sid = done.set_cookie("sid").unwrap();
    assert!(sid.contains("Max-Age=36000"), "the session lifetime: {sid}");
}

#[tokio::test]
async fn totp_enrollment_then_verification_through_the_pages() {
    let app = app().await;
    app.create_ok("pat@example.com").await;
    put_policy(&app, "MFA_ENROLL", |p| {
        p["settings"]["factors"]["okta_otp"]["enroll"]["self"] = json!("REQUIRED")
    })
    .await;
    let mut jar = Browser::default();
    let choose =
        jar.sign_in(&app, "?fromURI=%2Fapp%2FUserHome%2Fsessions", "pat@example.com", PASSWORD, &[]).await;
    assert_eq!(choose.status, StatusCode::OK, "{}", choose.body);
    assert!(choose.body.contains("Set up Okta Verify"), "{}", choose.body);
    assert!(!choose.body.contains("Not now"), "required: no skip");
    let tx = choose.set_cookie("lk_tx").unwrap();
    assert!(tx.contains("HttpOnly") && tx.contains("Path=/login"), "{tx}");
    assert!(!choose.body.contains(jar.cookie("lk_tx").unwrap()), "the state token never appears in the page");
    assert_page_headers(&choose);

    let okta_form_start = choose.body.find("value=\"OKTA\"").unwrap();
    assert!(okta_form_start > 0);
    let activate = jar.submit(&app, &choose, "/login/mfa/enroll", &[("provider", "OKTA")]).await;
    // The form with provider OKTA is the first; the helper posts the first form's hidden fields,
    // so post the provider explicitly too (the last value wins only if the first is absent).
    assert_eq!(activate.status, StatusCode::OK, "{}", activate.body);
    let secret = activate.body.split("data-secret=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    assert_eq!(secret.len(), 32, "{secret}");
    assert!(activate.body.contains("&#x2f;qr&#x2f;"), "the QR code image");
    assert!(activate.body.contains("alt=\"QR code"));
    let qr = activate.body.split("<img class=\"qr\" src=\"").nth(1).unwrap();
    assert!(qr.starts_with("&#x2f;api&#x2f;v1&#x2f;users&#x2f;"), "a same-origin image: {qr}");

    let wrong = jar.submit(&app, &activate, "/login/mfa/activate", &[("passCode", "000000")]).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN, "{}", wrong.body);
    assert!(wrong.body.contains("That code is not correct"));
    assert!(wrong.body.contains("aria-invalid=\"true\""));
    let done =
        jar.submit(&app, &wrong, "/login/mfa/activate", &[("passCode", &code(&app, &secret, 0))]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location(), format!("{BASE}/app/UserHome/sessions"));
    assert!(done.set_cookie("lk_tx").unwrap().contains("Max-Age=0"), "the transaction cookie is cleared");

    // Next sign-in: the code is asked for.
    set_sign_on(&app, json!({"requireFactor": true})).await;
    app.clock.advance_secs(30);
    let mut jar = Browser::default();
    let verify = jar.sign_in(&app, "", "pat@example.com", PASSWORD, &[]).await;
    assert_eq!(verify.status, StatusCode::OK, "{}", verify.body);
    assert!(verify.body.contains("autocomplete=\"one-time-code\""), "{}", verify.body);
    let bad = jar.submit(&app, &verify, "/login/mfa/verify", &[("passCode", "123456")]).await;
    assert_eq!(bad.status, StatusCode::FORBIDDEN);
    assert!(bad.body.contains("That code is not correct"));
    let good_code = code(&app, &secret, 0);
    let ok = jar.submit(&app, &bad, "/login/mfa/verify", &[("passCode", &good_code)]).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    assert_eq!(jar.get(&app, "/app/UserHome").await.status, StatusCode::OK);

    // The same code again in another browser: replay is refused with its own message.
    let mut other = Browser::default();
    let verify = other.sign_in(&app, "", "pat@example.com", PASSWORD, &[]).await;
    let replay = other.submit(&app, &verify, "/login/mfa/verify", &[("passCode", &good_code)]).await;
    assert!(replay.body.contains("already used"), "{}", replay.body);

    // Cancel goes back to an empty sign-in form.
    let cancelled = other.submit(&app, &replay, "/login/cancel", &[]).await;
    assert_eq!(cancelled.status, StatusCode::SEE_OTHER);
    assert!(cancelled.location().ends_with("/login/login.htm"));
}

#[tokio::test]
async fn expired_password_must_be_changed_on_the_page() {
    let app = app().await;
    let id = app.create_ok("pat@example.com").await;
    let r =
        app.call(Method::POST, &format!("/api/v1/users/{id}/lifecycle/expire_password"), Value::Null).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let mut jar = Browser::default();
    let page = jar.sign_in(&app, "", "pat@example.com", PASSWORD, &[]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("Your password has expired"), "{}", page.body);
    assert!(page.body.contains("autocomplete=\"new-password\""));
    assert!(!page.body.contains("Remind me later"), "an expired password cannot be skipped");

    let mismatch = jar
        .submit(
            &app,
            &page,
            "/login/password",
            &[("oldPassword", PASSWORD), ("newPassword", "New-Horse-77"), ("confirmPassword", "Other-1")],
        )
        .await;
    assert_eq!(mismatch.status, StatusCode::BAD_REQUEST);
    assert!(mismatch.body.contains("The two new passwords are not the same."));
    let wrong_old = jar
        .submit(
            &app,
            &mismatch,
            "/login/password",
            &[("oldPassword", "nope"), ("newPassword", "New-Horse-77"), ("confirmPassword", "New-Horse-77")],
        )
        .await;
    assert_eq!(wrong_old.status, StatusCode::FORBIDDEN, "{}", wrong_old.body);
    assert!(wrong_old.body.contains("Your current password is not correct."), "{}", wrong_old.body);
    let weak = jar
        .submit(
            &app,
            &wrong_old,
            "/login/password",
            &[("oldPassword", PASSWORD), ("newPassword", "short"), ("confirmPassword", "short")],
        )
        .await;
    assert_eq!(weak.status, StatusCode::FORBIDDEN);
    assert!(weak.body.contains("The new password was not accepted"), "{}", weak.body);
    let done = jar
        .submit(
            &app,
            &weak,
            "/login/password",
            &[
                ("oldPassword", PASSWORD),
                ("newPassword", "New-Horse-77"),
                ("confirmPassword", "New-Horse-77"),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let mut jar = Browser::default();
    assert_eq!(
        jar.sign_in(&app, "", "pat@example.com", "New-Horse-77", &[]).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn password_warning_can_be_skipped() {
    let app = app().await;
    app.create_ok("pat@example.com").await;
    put_policy(&app, "PASSWORD", |p| {
        p["settings"]["password"]["age"]["maxAgeDays"] = json!(10);
        p["settings"]["password"]["age"]["expireWarnDays"] = json!(20);
    })
    .await;
    let mut jar = Browser::default();
    let warn = jar.sign_in(&app, "", "pat@example.com", PASSWORD, &[]).await;
    assert!(warn.body.contains("Your password expires soon"), "{}", warn.body);
    let skipped = jar.submit(&app, &warn, "/login/skip", &[]).await;
    assert_eq!(skipped.status, StatusCode::SEE_OTHER, "{}", skipped.body);
}

#[tokio::test]
async fn lockout_and_throttling_have_their_own_messages() {
    let app = app().await;
    app.create_ok("pat@example.com").await;
    put_policy(&app, "PASSWORD", |p| {
        p["settings"]["password"]["lockout"]["maxAttempts"] = json!(2);
        p["settings"]["password"]["lockout"]["showLockoutFailures"] = json!(true);
    })
    .await;
    let mut jar = Browser::default();
    assert_eq!(jar.sign_in(&app, "", "pat@example.com", "bad-1", &[]).await.status, StatusCode::UNAUTHORIZED);
    app.clock.advance_secs(1);
    let locked = jar.sign_in(&app, "", "pat@example.com", "bad-2", &[]).await;
    assert_eq!(locked.status, StatusCode::FORBIDDEN, "{}", locked.body);
    assert!(locked.body.contains("Your account is locked"), "{}", locked.body);
    app.clock.advance_secs(1);
    let still = jar.sign_in(&app, "", "pat@example.com", PASSWORD, &[]).await;
    assert!(still.body.contains("Your account is locked"));

    app.create_ok("quinn@example.com").await;
    app.clock.advance_secs(1);
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let page = jar.sign_in(&app, "", "quinn@example.com", "wrong", &[]).await;
        statuses.push((page.status, page.body.contains("Too many sign-in attempts")));
    }
    assert!(statuses.contains(&(StatusCode::TOO_MANY_REQUESTS, true)), "{statuses:?}");
}

#[tokio::test]
async fn prompt_login_shows_the_form_and_the_new_session_replaces_the_old() {
    let app = app().await;
    app.create_ok("pat@example.com").await;
    app.create_ok("quinn@example.com").await;
    let mut jar = Browser::default();
    jar.sign_in(&app, "", "pat@example.com", PASSWORD, &[]).await;
    let first = jar.cookie("sid").unwrap().to_owned();
    let page = jar.get(&app, "/login/login.htm?fromURI=%2Fapp%2FUserHome&prompt=login").await;
    assert_eq!(page.status, StatusCode::OK, "the form even with a session");
    assert!(page.body.contains("Please sign in again"));
    let done = jar
        .submit(&app, &page, "/login/login.htm", &[("username", "quinn@example.com"), ("password", PASSWORD)])
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_ne!(jar.cookie("sid").unwrap(), first);
    let home = jar.get(&app, "/app/UserHome").await;
    assert!(home.body.contains("quinn@example.com"));
    let mut old = Browser::default();
    old.put_cookie("sid", &first);
    assert_eq!(old.get(&app, "/app/UserHome").await.status, StatusCode::SEE_OTHER, "the old session ended");
}

#[tokio::test]
async fn sessions_page_ends_the_others_and_sign_out_ends_this_one() {
    let app = app().await;
    app.create_ok("pat@example.com").await;
    let mut laptop = Browser::default();
    let mut phone = Browser::default();
    laptop.sign_in(&app, "", "pat@example.com", PASSWORD, &[]).await;
    phone.sign_in(&app, "", "pat@example.com", PASSWORD, &[]).await;

    let anonymous = Browser::default().get(&app, "/app/UserHome/sessions").await;
    assert_eq!(anonymous.status, StatusCode::SEE_OTHER);
    assert!(anonymous.location().contains("/login/login.htm?fromURI=%2Fapp%2FUserHome%2Fsessions"));

    let page = laptop.get(&app, "/app/UserHome/sessions").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.body.matches("<li class=\"session").count(), 2, "{}", page.body);
    assert!(page.body.contains("This browser"));
    let ended = laptop.submit(&app, &page, "/app/UserHome/sessions/end-others", &[]).await;
    assert_eq!(ended.status, StatusCode::SEE_OTHER, "{}", ended.body);
    let after = laptop.get(&app, ended.location().trim_start_matches(BASE)).await;
    assert!(after.body.contains("1 other session(s) ended."), "{}", after.body);
    assert_eq!(after.body.matches("<li class=\"session").count(), 1);
    assert_eq!(
        phone.get(&app, "/app/UserHome").await.status,
        StatusCode::SEE_OTHER,
        "the phone is signed out"
    );

    let logs = app
        .call(Method::GET, "/api/v1/logs?filter=eventType%20eq%20%22user.session.end%22", Value::Null)
        .await;
    assert!(
        logs.body.as_array().unwrap().iter().any(|e| e["outcome"]["reason"] == "LOGOUT"),
        "{}",
        logs.body
    );

    let home = laptop.get(&app, "/app/UserHome").await;
    let out = laptop.submit(&app, &home, "/login/signout", &[]).await;
    assert_eq!(out.status, StatusCode::OK);
    assert!(
        out.body.contains("<meta http-equiv=\"refresh\" content=\"0;url=&#x2f;login&#x2f;signout\">"),
        "the page continues at GET /login/signout without script: {}",
        out.body
    );
    let done = laptop.get(&app, "/login/signout").await;
    assert_eq!(done.status, StatusCode::FOUND);
    assert!(done.location().ends_with("/login/login.htm"));
    assert_eq!(laptop.get(&app, "/app/UserHome").await.status, StatusCode::SEE_OTHER, "signed out");
}

#[tokio::test]
async fn browser_endpoint_errors_are_pages_with_the_request_id() {
    let app = app().await;
    let mut jar = Browser::default();
    let page =
        jar.get(&app, "/login/sessionCookieRedirect?token=x&redirectUrl=https%3A%2F%2Fevil.example%2F").await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.headers.get("content-type").unwrap().to_str().unwrap().starts_with("text/html"));
    assert!(page.body.contains("The link cannot be followed"), "{}", page.body);
    let id = page.headers.get("x-okta-request-id").unwrap().to_str().unwrap();
    assert!(page.body.contains(id));
    assert_page_headers(&page);
    let missing = jar.get(&app, "/login/sessionCookieRedirect?token=x").await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert!(missing.body.contains("Request ID"));
}

#[tokio::test]
async fn a_step_without_a_transaction_starts_over() {
    let app = app().await;
    let mut jar = Browser::default();
    let page = jar.get(&app, "/login/login.htm").await;
    let token = page.field("_csrf").unwrap();
    let again = jar.post(&app, "/login/mfa/verify", &[("_csrf", &token), ("passCode", "123456")]).await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
    assert!(again.body.contains("Your sign-in took too long"), "{}", again.body);
    jar.put_cookie("lk_tx", "forged");
    let forged = jar.post(&app, "/login/mfa/verify", &[("_csrf", &token), ("passCode", "123456")]).await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
}

/// Follows the IdP's auto-posting page to the test SP's ACS, as the browser's script would.
async fn post_to_acs(jar: &mut Browser, app: &App, page: &Page) -> Page {
    let action = page.form_action().unwrap();
    let path = action.strip_prefix(BASE).unwrap_or(&action).to_owned();
    let response = page.field("SAMLResponse").unwrap_or_else(|| panic!("no SAMLResponse: {}", page.body));
    jar.post(app, &path, &[("SAMLResponse", &response)]).await
}

#[tokio::test]
async fn demo_kiosk_and_test_sp_show_the_second_person_as_themselves() {
    let app = app_realtime(|c| c.test_sp = true).await;
    let alice = app.create_ok("alice@example.com").await;
    let bob = app.create_ok("bob@example.com").await;
    let mut jar = Browser::default();
    // The first use creates the demo app; assign both people to it.
    let login = jar.get(&app, "/demo/sp/login").await;
    assert_eq!(login.status, StatusCode::SEE_OTHER);
    assert!(login.location().contains("/sso/saml?SAMLRequest="), "{}", login.location());
    let apps = app.call(Method::GET, "/api/v1/apps?q=latchkey", Value::Null).await.body;
    let demo = apps.as_array().unwrap().iter().find(|a| a["label"] == "Latchkey test SP").unwrap();
    let demo_id = demo["id"].as_str().unwrap().to_owned();
    for user in [&alice, &bob] {
        app.call(Method::POST, &format!("/api/v1/apps/{demo_id}/users"), json!({"id": user})).await;
    }
    for person in ["alice@example.com", "bob@example.com"] {
        let kiosk = jar.get(&app, "/demo/kiosk").await;
        assert_eq!(kiosk.status, StatusCode::OK);
        let sent = jar
            .submit(&app, &kiosk, "/demo/kiosk", &[("username", person), ("password", "Correct-Horse-9")])
            .await;
        assert_eq!(sent.status, StatusCode::SEE_OTHER, "{}", sent.body);
        let embed = sent.location().to_owned();
        assert!(embed.contains("/home/latchkey_test_sp_1/") && embed.contains("?sessionToken="), "{embed}");
        let form = jar.get(&app, embed.strip_prefix(BASE).unwrap()).await;
        let arrived = post_to_acs(&mut jar, &app, &form).await;
        assert_eq!(arrived.status, StatusCode::OK, "{}", arrived.body);
        assert!(arrived.body.contains(&format!("<h1>Signed in as {person}</h1>")), "{}", arrived.body);
        assert!(arrived.body.contains("IdP-initiated"));
        // The same unsolicited Response posted again (the browser's back button, a captured
        // form): the Assertion was accepted once, so it is a replay.
        let again = post_to_acs(&mut jar, &app, &form).await;
        assert_eq!(again.status, StatusCode::FORBIDDEN, "{}", again.body);
        assert!(again.body.contains("a replay"), "{}", again.body);
    }
    // SP-initiated with the session the kiosk left: the SP's own request is answered.
    let request = jar.get(&app, "/demo/sp/login").await;
    let form = jar.get(&app, request.location().strip_prefix(BASE).unwrap()).await;
    let arrived = post_to_acs(&mut jar, &app, &form).await;
    assert!(
        arrived.body.contains("<h1>Signed in as bob@example.com</h1>")
            && arrived.body.contains("SP-initiated")
    );
    // Replaying that Response: the request was already answered.
    let replay = post_to_acs(&mut jar, &app, &form).await;
    assert_eq!(replay.status, StatusCode::FORBIDDEN);
    // A forged Response is refused by the test SP.
    let forged = jar.post(&app, "/demo/sp/acs", &[("SAMLResponse", "PHNhbWxwOlJlc3BvbnNlLz4=")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(forged.body.contains("refused"), "{}", forged.body);
    // A wrong password stays on the kiosk.
    let kiosk = jar.get(&app, "/demo/kiosk").await;
    let wrong = jar
        .submit(&app, &kiosk, "/demo/kiosk", &[("username", "bob@example.com"), ("password", "nope")])
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("role=\"alert\""));
}

#[tokio::test]
async fn unknown_browser_paths_get_a_page_and_api_paths_json() {
    let app = app().await;
    let mut jar = Browser::default();
    for path in ["/app/UserHome/nope", "/login/nope", "/home/a/b/c/d"] {
        let page = jar.get(&app, path).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}");
        assert!(page.headers["content-type"].to_str().unwrap().starts_with("text/html"), "{path}");
        assert!(page.body.contains("Request ID"), "{path}: {}", page.body);
    }
    let api = jar.get(&app, "/api/v1/nope").await;
    assert!(api.headers["content-type"].to_str().unwrap().starts_with("application/json"));
}

#[tokio::test]
async fn demo_pages_exist_only_when_enabled() {
    let app = app().await;
    let mut jar = Browser::default();
    assert_eq!(jar.get(&app, "/demo/kiosk").await.status, StatusCode::NOT_FOUND);
    assert_eq!(jar.get(&app, "/demo/sp/").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn with_signout_requires_same_site_a_cross_site_link_asks_first_and_the_form_signs_out() {
    let app = crate::support::app_with(|c| c.signout_requires_same_site = true).await;
    app.create_ok("leave@example.com").await;
    let mut laptop = Browser::default();
    let signed_in = laptop.sign_in(&app, "", "leave@example.com", PASSWORD, &[]).await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER, "{}", signed_in.body);

    // A link or an image on another site: a question, and the session stays.
    let asked = laptop.get(&app, "/login/signout?fromURI=%2Fapp%2FUserHome").await;
    assert_eq!(asked.status, StatusCode::OK);
    assert!(asked.body.contains("Sign out?"), "{}", asked.body);
    assert_eq!(laptop.get(&app, "/app/UserHome").await.status, StatusCode::OK, "still signed in");
    let cross = Request::get("/login/signout").header("sec-fetch-site", "cross-site");
    assert_eq!(laptop.send(&app, cross, Body::empty()).await.status, StatusCode::OK);
    assert_eq!(laptop.get(&app, "/app/UserHome").await.status, StatusCode::OK, "still signed in");

    // The question's button posts the form; its page continues with the form's proof.
    let confirmed = laptop.submit(&app, &asked, "/login/signout", &[]).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.body);
    let next = confirmed
        .body
        .split("url=")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .replace("&#x2f;", "/")
        .replace("&amp;", "&");
    assert!(next.starts_with("/login/signout?_csrf="), "{next}");
    let done = laptop.get(&app, &next).await;
    assert_eq!(done.status, StatusCode::FOUND, "{}", done.body);
    assert!(done.location().ends_with("/app/UserHome"), "fromURI kept: {}", done.location());
    assert_eq!(laptop.get(&app, "/app/UserHome").await.status, StatusCode::SEE_OTHER, "signed out");

    // A same-origin navigation (the browser says so) signs out at once.
    laptop.sign_in(&app, "", "leave@example.com", PASSWORD, &[]).await;
    let same = Request::get("/login/signout").header("sec-fetch-site", "same-origin");
    assert_eq!(laptop.send(&app, same, Body::empty()).await.status, StatusCode::FOUND);
    assert_eq!(laptop.get(&app, "/app/UserHome").await.status, StatusCode::SEE_OTHER, "signed out");
}
