//! The Users API: creation states, reads, pagination, search, updates, lifecycle, passwords.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{App, BASE, app};

fn next_link(reply: &crate::support::Reply) -> Option<String> {
    reply
        .headers
        .get_all("link")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.ends_with("rel=\"next\""))
        .and_then(|v| v.split(['<', '>']).nth(1))
        .map(|url| url.trim_start_matches(BASE).to_owned())
}

#[tokio::test]
async fn create_sets_status_from_activation_and_password() {
    let app = app().await;
    let cases = [
        ("a@example.com", Some("Correct-Horse-9"), "?activate=true", "ACTIVE"),
        ("b@example.com", Some("Correct-Horse-9"), "", "ACTIVE"),
        ("c@example.com", Some("Correct-Horse-9"), "?activate=false", "STAGED"),
        ("d@example.com", None, "?activate=true", "PROVISIONED"),
        (
            "e@example.com",
            Some("Correct-Horse-9"),
            "?activate=true&nextLogin=changePassword",
            "PASSWORD_EXPIRED",
        ),
    ];
    for (login, password, query, status) in cases {
        let reply = app.create(login, password, query).await;
        assert_eq!(reply.status, StatusCode::OK, "{login}: {}", reply.body);
        let user = &reply.body;
        assert_eq!(user["status"], status, "{login}");
        assert!(user["id"].as_str().unwrap().starts_with("00u"));
        assert_eq!(user["profile"]["login"], login);
        assert_eq!(user["credentials"]["provider"], json!({"type": "OKTA", "name": "OKTA"}));
        assert_eq!(user["credentials"].get("password").is_some(), password.is_some());
        let created = user["created"].as_str().unwrap();
        assert!(created.len() == 24 && created.ends_with('Z') && created.as_bytes()[19] == b'.', "{created}");
        assert_eq!(
            user["_links"]["self"]["href"],
            format!("{BASE}/api/v1/users/{}", user["id"].as_str().unwrap())
        );
        let stored = app
            .call(Method::GET, &format!("/api/v1/users/{}", user["id"].as_str().unwrap()), Value::Null)
            .await;
        assert_eq!(stored.body, reply.body, "a read returns what the create returned");
    }
}

#[tokio::test]
async fn read_by_id_or_login_and_unknown_is_okta_404() {
    let app = app().await;
    let id = app.create_ok("Mixed.Case@Example.com").await;
    for key in [id.as_str(), "Mixed.Case@Example.com", "mixed.case%40example.com"] {
        let reply = app.call(Method::GET, &format!("/api/v1/users/{key}"), Value::Null).await;
        assert_eq!(reply.status, StatusCode::OK, "{key}");
        assert_eq!(reply.body["id"], id.as_str());
    }
    let missing = app.call(Method::GET, "/api/v1/users/00unope", Value::Null).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.code(), "E0000007");
    assert_eq!(missing.body["errorSummary"], "Not found: Resource not found: 00unope (User)");
    assert_eq!(missing.body["errorLink"], "E0000007");
    assert!(missing.body["errorId"].as_str().unwrap().starts_with("oae"));
}

#[tokio::test]
async fn weak_passwords_and_bad_profiles_are_refused_and_nothing_is_written() {
    let app = app().await;
    let weak = app.create("weak@example.com", Some("password"), "").await;
    assert_eq!((weak.status, weak.code()), (StatusCode::BAD_REQUEST, "E0000001"));
    assert_eq!(weak.body["errorSummary"], "Api validation failed: password");
    assert_eq!(
        weak.causes(),
        ["password: Password requirements were not met. Password requirements: at least 8 characters, \
          a lowercase letter, an uppercase letter, a number, no parts of your username."]
    );
    let username_part = app.create("zebulon@example.com", Some("Zebulon-Rocks-1"), "").await;
    assert_eq!(username_part.code(), "E0000001");

    let bad_profile = app
        .call(
            Method::POST,
            "/api/v1/users",
            json!({"profile": {"login": "x@example.com", "email": "x@example.com", "firstName": "X", "lastName": "Y", "shoeSize": "44"}}),
        )
        .await;
    assert_eq!(bad_profile.code(), "E0000001");
    assert_eq!(bad_profile.causes(), ["shoeSize: Property name 'shoeSize' is not defined in profile"]);

    let not_email = app.create("not-an-email", Some("Correct-Horse-9"), "").await;
    assert_eq!(not_email.body["errorSummary"], "Api validation failed: email");
    assert_eq!(
        not_email.causes(),
        ["email: Does not match required pattern", "login: Username must be in the form of an email address"],
        "every invalid field is reported"
    );

    let listed = app.call(Method::GET, "/api/v1/users", Value::Null).await;
    assert_eq!(listed.body, json!([]), "no partial writes");
}

#[tokio::test]
async fn duplicate_login_is_a_validation_error_even_when_concurrent() {
    let app = app().await;
    app.create_ok("dup@example.com").await;
    let again = app.create("DUP@example.com", Some("Correct-Horse-9"), "").await;
    assert_eq!((again.status, again.code()), (StatusCode::BAD_REQUEST, "E0000001"));
    assert_eq!(
        again.causes(),
        ["login: An object with this field already exists in the current organization"]
    );

    let (a, b) = tokio::join!(
        app.create("race@example.com", Some("Correct-Horse-9"), ""),
        app.create("race@example.com", Some("Correct-Horse-9"), "")
    );
    let mut statuses = [a.status.as_u16(), b.status.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 400], "exactly one concurrent create wins");
}

#[tokio::test]
async fn list_follows_next_links_and_searches() {
    let app = app().await;
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(app.create_ok(&format!("page{i}@example.com")).await);
    }
    let staged = app.create("staged@example.org", Some("Correct-Horse-9"), "?activate=false").await;
    ids.push(staged.body["id"].as_str().unwrap().to_owned());

    let mut seen = Vec::new();
    let mut next = Some("/api/v1/users?limit=3".to_owned());
    let mut pages = 0;
    while let Some(url) = next {
        let reply = app.call(Method::GET, &url, Value::Null).await;
        assert_eq!(reply.status, StatusCode::OK);
        let page = reply.body.as_array().unwrap();
        assert!(page.len() <= 3);
        seen.extend(page.iter().map(|u| u["id"].as_str().unwrap().to_owned()));
        next = next_link(&reply);
        pages += 1;
    }
    assert_eq!(pages, 3);
    ids.sort();
    assert_eq!(seen, ids, "each user exactly once, by id");

    let search = |q: &str| {
        let q = percent_encoding::utf8_percent_encode(q, percent_encoding::NON_ALPHANUMERIC).to_string();
        let app: &App = &app;
        async move { app.call(Method::GET, &format!("/api/v1/users?search={q}"), Value::Null).await }
    };
    let staged_only = search(r#"status eq "STAGED""#).await;
    assert_eq!(staged_only.body.as_array().unwrap().len(), 1);
    assert_eq!(staged_only.body[0]["profile"]["login"], "staged@example.org");
    let prefixed = search(r#"profile.login sw "PAGE1""#).await;
    assert_eq!(prefixed.body.as_array().unwrap().len(), 1);
    let filter = app
        .call(Method::GET, "/api/v1/users?filter=profile.login%20eq%20%22page3%40example.com%22", Value::Null)
        .await;
    assert_eq!(filter.body.as_array().unwrap().len(), 1);
    let q = app.call(Method::GET, "/api/v1/users?q=stag", Value::Null).await;
    assert_eq!(q.body.as_array().unwrap().len(), 1);

    let paged_search =
        app.call(Method::GET, "/api/v1/users?limit=2&search=status%20eq%20%22ACTIVE%22", Value::Null).await;
    let next = next_link(&paged_search).unwrap();
    assert!(next.contains("search=status%20eq%20%22ACTIVE%22") && next.contains("after="), "{next}");

    for bad in [
        "password%20eq%20%22x%22",
        "status%20eq%20%22HAPPY%22",
        "profile.login%20eq%20%22x%22%3B%20DROP%20TABLE%20users",
    ] {
        let reply = app.call(Method::GET, &format!("/api/v1/users?search={bad}"), Value::Null).await;
        assert_eq!((reply.status, reply.code()), (StatusCode::BAD_REQUEST, "E0000031"), "{bad}");
    }
    for limit in ["many", "0", "-1"] {
        let bad_limit = app.call(Method::GET, &format!("/api/v1/users?limit={limit}"), Value::Null).await;
        assert_eq!((bad_limit.status, bad_limit.code()), (StatusCode::BAD_REQUEST, "E0000001"), "{limit}");
    }
    let capped = app.call(Method::GET, "/api/v1/users?limit=100000", Value::Null).await;
    assert_eq!(capped.status, StatusCode::OK, "over the maximum: capped, not refused");
}

#[tokio::test]
async fn post_merges_put_replaces_and_admin_can_set_password_within_history() {
    let app = app().await;
    let id = app.create_ok("upd@example.com").await;
    let url = format!("/api/v1/users/{id}");
    let merged =
        app.call(Method::POST, &url, json!({"profile": {"title": "Engineer", "firstName": "Una"}})).await;
    assert_eq!(merged.status, StatusCode::OK, "{}", merged.body);
    assert_eq!(merged.body["profile"]["title"], "Engineer");
    assert_eq!(merged.body["profile"]["lastName"], "User", "untouched attributes stay");

    // PUT with the object read back (read-only fields included, as SDKs send it) replaces the profile.
    let mut full = merged.body.clone();
    full["profile"] = json!({"login": "upd@example.com", "email": "upd@example.com", "firstName": "Una", "lastName": "Ulm"});
    let replaced = app.call(Method::PUT, &url, full).await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.body);
    assert_eq!(replaced.body["profile"].get("title"), None, "PUT drops attributes it does not name");
    assert_eq!(replaced.body["profile"]["lastName"], "Ulm");

    let incomplete = app.call(Method::PUT, &url, json!({"profile": {"login": "upd@example.com"}})).await;
    assert_eq!(incomplete.code(), "E0000001");

    let set = app
        .call(Method::POST, &url, json!({"credentials": {"password": {"value": "Brand-New-Pass-7"}}}))
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    let reuse = app
        .call(Method::POST, &url, json!({"credentials": {"password": {"value": "Correct-Horse-9"}}}))
        .await;
    assert_eq!(reuse.code(), "E0000001");
    assert_eq!(reuse.causes(), ["password: Password has been used too recently"]);

    let other = app.create_ok("taken@example.com").await;
    let clash = app
        .call(
            Method::POST,
            &format!("/api/v1/users/{other}"),
            json!({"profile": {"login": "UPD@example.com"}}),
        )
        .await;
    assert_eq!(clash.code(), "E0000001", "renaming onto an existing login is refused");
}

#[tokio::test]
async fn lifecycle_operations_follow_okta_rules() {
    let app = app().await;
    let staged = app.create("life@example.com", Some("Correct-Horse-9"), "?activate=false").await;
    let id = staged.body["id"].as_str().unwrap().to_owned();
    let op = |name: &str| format!("/api/v1/users/{id}/lifecycle/{name}");

    let activated = app.call(Method::POST, &format!("{}?sendEmail=false", op("activate")), Value::Null).await;
    assert_eq!(activated.status, StatusCode::OK, "{}", activated.body);
    let token = activated.body["activationToken"].as_str().unwrap();
    assert!(token.len() >= 40);
    assert_eq!(activated.body["activationUrl"], format!("{BASE}/welcome/{token}"));
    assert_eq!(status(&app, &id).await, "ACTIVE");

    let again = app.call(Method::POST, &op("activate"), Value::Null).await;
    assert_eq!((again.status, again.code()), (StatusCode::FORBIDDEN, "E0000016"));

    assert_eq!(app.call(Method::POST, &op("suspend"), Value::Null).await.body, json!({}));
    assert_eq!(status(&app, &id).await, "SUSPENDED");
    let suspend_twice = app.call(Method::POST, &op("suspend"), Value::Null).await;
    assert_eq!((suspend_twice.status, suspend_twice.code()), (StatusCode::FORBIDDEN, "E0000038"));
    app.call(Method::POST, &op("unsuspend"), Value::Null).await;
    assert_eq!(status(&app, &id).await, "ACTIVE");

    let unlock = app.call(Method::POST, &op("unlock"), Value::Null).await;
    assert_eq!(unlock.code(), "E0000038", "unlock needs LOCKED_OUT");

    let expired = app.call(Method::POST, &op("expire_password"), Value::Null).await;
    assert_eq!(expired.body["status"], "PASSWORD_EXPIRED", "expire_password returns the user");
    let temp =
        app.call(Method::POST, &format!("{}?tempPassword=true", op("expire_password")), Value::Null).await;
    let temp_password = temp.body["tempPassword"].as_str().unwrap().to_owned();
    let changed = app
        .call(
            Method::POST,
            &format!("/api/v1/users/{id}/credentials/change_password"),
            json!({"oldPassword": {"value": temp_password}, "newPassword": {"value": "After-Temp-Pass-3"}}),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "the temporary password works: {}", changed.body);
    assert_eq!(status(&app, &id).await, "ACTIVE");

    let reset =
        app.call(Method::POST, &format!("{}?sendEmail=false", op("reset_password")), Value::Null).await;
    let url = reset.body["resetPasswordUrl"].as_str().unwrap();
    assert!(url.starts_with(&format!("{BASE}/reset_password/")), "{url}");
    assert_eq!(status(&app, &id).await, "RECOVERY");
    let emailed = app.call(Method::POST, &op("reset_password"), Value::Null).await;
    assert_eq!(emailed.body, json!({}), "sendEmail defaults to true: no token in the response");

    let deactivated = app.call(Method::POST, &op("deactivate"), Value::Null).await;
    assert_eq!(deactivated.body, json!({}));
    assert_eq!(status(&app, &id).await, "DEPROVISIONED");

    let unknown = app.call(Method::POST, &op("explode"), Value::Null).await;
    assert_eq!((unknown.status, unknown.code()), (StatusCode::NOT_FOUND, "E0000007"));
    let bad_flag = app.call(Method::POST, &format!("{}?sendEmail=maybe", op("activate")), Value::Null).await;
    assert_eq!(bad_flag.code(), "E0000001");
}

#[tokio::test]
async fn delete_deactivates_then_deletes() {
    let app = app().await;
    let id = app.create_ok("gone@example.com").await;
    let url = format!("/api/v1/users/{id}");
    let first = app.call(Method::DELETE, &url, Value::Null).await;
    assert_eq!(first.status, StatusCode::NO_CONTENT);
    assert_eq!(app.call(Method::GET, &url, Value::Null).await.body["status"], "DEPROVISIONED");
    let second = app.call(Method::DELETE, &url, Value::Null).await;
    assert_eq!(second.status, StatusCode::NO_CONTENT);
    let after = app.call(Method::GET, &url, Value::Null).await;
    assert_eq!((after.status, after.code()), (StatusCode::NOT_FOUND, "E0000007"));
    let third = app.call(Method::DELETE, &url, Value::Null).await;
    assert_eq!(third.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn change_password_needs_the_old_one_and_meets_policy() {
    let app = app().await;
    let id = app.create_ok("chg@example.com").await;
    let url = format!("/api/v1/users/{id}/credentials/change_password");
    let change = |old: &str, new: &str| json!({"oldPassword": {"value": old}, "newPassword": {"value": new}});

    let wrong = app.call(Method::POST, &url, change("Wrong-Horse-9", "Another-Pass-5")).await;
    assert_eq!((wrong.status, wrong.code()), (StatusCode::FORBIDDEN, "E0000014"));
    assert_eq!(wrong.causes(), ["oldPassword: The credentials provided were incorrect."]);

    let weak = app.call(Method::POST, &url, change("Correct-Horse-9", "weak")).await;
    assert_eq!((weak.status, weak.code()), (StatusCode::FORBIDDEN, "E0000014"));
    assert!(
        weak.causes()[0].starts_with("newPassword: Password requirements were not met."),
        "{:?}",
        weak.causes()
    );

    let same = app.call(Method::POST, &url, change("Correct-Horse-9", "Correct-Horse-9")).await;
    assert_eq!(same.code(), "E0000014", "history forbids the current password");

    let ok = app.call(Method::POST, &url, change("Correct-Horse-9", "Another-Pass-5")).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.body, json!({"password": {}, "provider": {"type": "OKTA", "name": "OKTA"}}));
    let old_again = app.call(Method::POST, &url, change("Correct-Horse-9", "Third-Pass-77")).await;
    assert_eq!(old_again.code(), "E0000014", "the old password no longer works");

    let missing = app.call(Method::POST, &url, json!({"oldPassword": {"value": "x"}})).await;
    assert_eq!(missing.code(), "E0000001");
}

async fn status(app: &App, id: &str) -> Value {
    app.call(Method::GET, &format!("/api/v1/users/{id}"), Value::Null).await.body["status"].clone()
}

#[tokio::test]
async fn the_sdk_temp_password_path_and_real_ids_in_404s() {
    let app = app().await;
    let id = app.create_ok("tmp@example.com").await;
    let temp = app
        .call(
            Method::POST,
            &format!("/api/v1/users/{id}/lifecycle/expire_password_with_temp_password"),
            Value::Null,
        )
        .await;
    assert!(temp.body["tempPassword"].is_string(), "{}", temp.body);
    assert_eq!(
        app.call(Method::GET, &format!("/api/v1/users/{id}"), Value::Null).await.body["status"],
        "PASSWORD_EXPIRED"
    );
    let unknown = app.call(Method::POST, &format!("/api/v1/users/{id}/lifecycle/explode"), Value::Null).await;
    assert!(unknown.body["errorSummary"].as_str().unwrap().contains(&id), "{}", unknown.body);
}

#[tokio::test]
async fn concurrent_updates_of_one_user_all_apply() {
    let app = app().await;
    let id = app.create_ok("busy@example.com").await;
    let url = format!("/api/v1/users/{id}");
    let calls: Vec<_> = (0..12)
        .map(|i| {
            let body = json!({"profile": {"nickName": format!("n{i}")}});
            let app: &App = &app;
            let url = url.clone();
            async move { app.call(Method::POST, &url, body).await.status }
        })
        .collect();
    let mut statuses = Vec::new();
    for status in crate::support::join_all(calls).await {
        statuses.push(status);
    }
    assert!(statuses.iter().all(|s| *s == StatusCode::OK), "{statuses:?}");
}
