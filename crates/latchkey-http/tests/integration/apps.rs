//! Apps API for SAML 2.0 apps: create/read/list/replace, lifecycle, delete, assignments, appLinks.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{App, BASE, app};

pub fn saml_app_body(label: &str) -> Value {
    json!({
        "label": label,
        "signOnMode": "SAML_2_0",
        "visibility": {"autoSubmitToolbar": false, "hide": {"iOS": false, "web": false}},
        "settings": {"signOn": {
            "ssoAcsUrl": "https://sp.example.com/acs",
            "audience": "https://sp.example.com/metadata",
            "subjectNameIdTemplate": "${user.userName}",
            "subjectNameIdFormat": "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
            "attributeStatements": [
                {"type": "EXPRESSION", "name": "email", "namespace": "urn:oasis:names:tc:SAML:2.0:attrname-format:basic", "values": ["user.email"]},
                {"type": "EXPRESSION", "name": "fullName", "namespace": "urn:oasis:names:tc:SAML:2.0:attrname-format:basic", "values": ["user.firstName + \" \" + user.lastName"]}
            ]
        }}
    })
}

pub async fn create_app(app: &App, label: &str) -> Value {
    let reply = app.call(Method::POST, "/api/v1/apps", saml_app_body(label)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

#[tokio::test]
async fn create_renders_okta_saml_application() {
    let app = app().await;
    let created = create_app(&app, "Expense Reports").await;
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("0oa") && id.len() == 20);
    assert_eq!(created["status"], "ACTIVE");
    assert_eq!(created["signOnMode"], "SAML_2_0");
    assert_eq!(created["name"], "latchkey_expense_reports_1");
    let sign_on = &created["settings"]["signOn"];
    assert_eq!(sign_on["recipient"], "https://sp.example.com/acs", "recipient defaults to the ACS URL");
    assert_eq!(sign_on["destination"], "https://sp.example.com/acs");
    assert_eq!(sign_on["signatureAlgorithm"], "RSA_SHA256");
    assert_eq!(sign_on["idpIssuer"], "http://www.okta.com/${org.externalKey}");
    let link = created["_links"]["appLinks"][0]["href"].as_str().unwrap();
    assert!(link.starts_with(&format!("{BASE}/home/latchkey_expense_reports_1/{id}/aln")), "{link}");
    assert_eq!(created["_links"]["metadata"]["href"], format!("{BASE}/api/v1/apps/{id}/sso/saml/metadata"));
    let groups_href = created["_links"]["groups"]["href"].as_str().unwrap();
    let groups = app.call(Method::GET, groups_href.strip_prefix(BASE).unwrap(), Value::Null).await;
    assert_eq!((groups.status, groups.body.clone()), (StatusCode::OK, json!([])), "no groups: an empty list");
    let unknown = app.call(Method::GET, "/api/v1/apps/0oanosuchapp0000000/groups", Value::Null).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    let second = create_app(&app, "Expense Reports").await;
    assert_eq!(second["name"], "latchkey_expense_reports_2", "same label gets the next number");

    let read = app.call(Method::GET, &format!("/api/v1/apps/{id}"), Value::Null).await;
    assert_eq!(read.body["settings"], created["settings"]);
    let list = app.call(Method::GET, "/api/v1/apps?limit=1", Value::Null).await;
    assert_eq!(list.body.as_array().unwrap().len(), 1);
    let links: Vec<&str> = list.headers.get_all("link").iter().map(|v| v.to_str().unwrap()).collect();
    assert!(links.iter().any(|l| l.contains("rel=\"next\"")), "{links:?}");
}

#[tokio::test]
async fn invalid_apps_are_refused_by_field() {
    let app = app().await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({"label": "x", "signOnMode": "BOOKMARK", "settings": {"signOn": {}}}), "signOnMode"),
        (json!({"signOnMode": "SAML_2_0", "settings": {"signOn": {}}}), "label"),
        (
            {
                let mut b = saml_app_body("x");
                b["settings"]["signOn"]["ssoAcsUrl"] = json!("http://sp.example.com/acs");
                b
            },
            "ssoAcsUrl",
        ),
        (
            {
                let mut b = saml_app_body("x");
                b["settings"]["signOn"]["signatureAlgorithm"] = json!("RSA_SHA1");
                b
            },
            "signatureAlgorithm",
        ),
        (
            {
                let mut b = saml_app_body("x");
                b["settings"]["signOn"]["assertionSigned"] = json!(false);
                b
            },
            "assertionSigned",
        ),
        (
            {
                let mut b = saml_app_body("x");
                b["settings"]["signOn"]["attributeStatements"][0]["values"] =
                    json!(["String.reverse(user.login)"]);
                b
            },
            "attributeStatements",
        ),
        (
            {
                let mut b = saml_app_body("x");
                b["settings"]["signOn"]["assertionEncryption"] = json!({"enabled": true});
                b
            },
            "assertionEncryption",
        ),
        (
            {
                let mut b = saml_app_body("x");
                b["settings"]["signOn"]["slo"] =
                    json!({"enabled": true, "issuer": "sp", "logoutUrl": "https://sp.example.com/slo"});
                b
            },
            "spCertificate",
        ),
        (
            {
                let mut b = saml_app_body("x");
                b["name"] = json!("chosen");
                b
            },
            "name",
        ),
    ];
    for (body, field) in cases {
        let reply = app.call(Method::POST, "/api/v1/apps", body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{field}: {}", reply.body);
        assert_eq!(reply.code(), "E0000001", "{field}");
        assert!(reply.body["errorSummary"].as_str().unwrap().contains(field), "{field}: {}", reply.body);
    }
    let list = app.call(Method::GET, "/api/v1/apps", Value::Null).await;
    assert_eq!(list.body, json!([]), "nothing was written");
}

#[tokio::test]
async fn lifecycle_and_delete_follow_okta() {
    let app = app().await;
    let created = create_app(&app, "Wiki").await;
    let id = created["id"].as_str().unwrap();
    let active_delete = app.call(Method::DELETE, &format!("/api/v1/apps/{id}"), Value::Null).await;
    assert_eq!(active_delete.status, StatusCode::FORBIDDEN);
    assert_eq!(active_delete.code(), "E0000056");
    let off = app.call(Method::POST, &format!("/api/v1/apps/{id}/lifecycle/deactivate"), Value::Null).await;
    assert_eq!((off.status, off.body.clone()), (StatusCode::OK, json!({})));
    assert_eq!(
        app.call(Method::GET, &format!("/api/v1/apps/{id}"), Value::Null).await.body["status"],
        "INACTIVE"
    );
    let deleted = app.call(Method::DELETE, &format!("/api/v1/apps/{id}"), Value::Null).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let gone = app.call(Method::GET, &format!("/api/v1/apps/{id}"), Value::Null).await;
    assert_eq!((gone.status, gone.code()), (StatusCode::NOT_FOUND, "E0000007"));
    let bad = app.call(Method::POST, &format!("/api/v1/apps/{id}/lifecycle/explode"), Value::Null).await;
    assert_eq!(bad.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn replace_keeps_identity_and_validates() {
    let app = app().await;
    let created = create_app(&app, "Wiki").await;
    let id = created["id"].as_str().unwrap();
    let mut body = created.clone();
    body["label"] = json!("Team Wiki");
    body["settings"]["signOn"]["defaultRelayState"] = json!("/start");
    let replaced = app.call(Method::PUT, &format!("/api/v1/apps/{id}"), body.clone()).await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.body);
    assert_eq!(replaced.body["label"], "Team Wiki");
    assert_eq!(replaced.body["name"], created["name"], "the name is fixed at creation");
    assert_eq!(replaced.body["settings"]["signOn"]["defaultRelayState"], "/start");
    body["settings"]["signOn"]["audience"] = json!("");
    let refused = app.call(Method::PUT, &format!("/api/v1/apps/{id}"), body).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let after = app.call(Method::GET, &format!("/api/v1/apps/{id}"), Value::Null).await;
    assert_eq!(
        after.body["settings"]["signOn"]["audience"], "https://sp.example.com/metadata",
        "no partial write"
    );
}

fn encoded(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The ids `GET /api/v1/apps?{query}` lists, and its Link headers.
async fn listed(app: &App, query: &str) -> (Vec<String>, Vec<String>) {
    let reply = app.call(Method::GET, &format!("/api/v1/apps?{query}"), Value::Null).await;
    assert_eq!(reply.status, StatusCode::OK, "{query}: {}", reply.body);
    let ids = reply.body.as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_owned()).collect();
    let links = reply.headers.get_all("link").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    (ids, links)
}

#[tokio::test]
async fn assignments_and_app_links() {
    let app = app().await;
    let wiki = create_app(&app, "Wiki").await;
    let hidden = create_app(&app, "Payroll").await;
    let wiki_id = wiki["id"].as_str().unwrap();
    let payroll_id = hidden["id"].as_str().unwrap();
    let alice = app.create_ok("alice@example.com").await;
    let bob = app.create_ok("bob@example.com").await;

    let assigned = app
        .call(Method::POST, &format!("/api/v1/apps/{wiki_id}/users"), json!({"id": alice, "scope": "USER"}))
        .await;
    assert_eq!(assigned.status, StatusCode::OK, "{}", assigned.body);
    assert_eq!(assigned.body["credentials"]["userName"], "alice@example.com");
    assert_eq!(assigned.body["_links"]["user"]["href"], format!("{BASE}/api/v1/users/{alice}"));
    app.call(Method::POST, &format!("/api/v1/apps/{payroll_id}/users"), json!({"id": alice})).await;
    app.call(Method::POST, &format!("/api/v1/apps/{payroll_id}/lifecycle/deactivate"), Value::Null).await;

    let links = app.call(Method::GET, &format!("/api/v1/users/{alice}/appLinks"), Value::Null).await;
    let links = links.body.as_array().unwrap().clone();
    assert_eq!(links.len(), 1, "inactive apps have no links: {links:?}");
    assert_eq!(links[0]["appInstanceId"], wiki_id);
    assert_eq!(links[0]["linkUrl"], wiki["_links"]["appLinks"][0]["href"]);
    let none = app.call(Method::GET, &format!("/api/v1/users/{bob}/appLinks"), Value::Null).await;
    assert_eq!(none.body, json!([]));

    // Okta's app filters and q, applied before paging; the next link keeps them.
    let by_user = format!("filter={}", encoded(&format!("user.id eq \"{bob}\"")));
    assert_eq!(listed(&app, &by_user).await.0, Vec::<String>::new(), "bob has no apps");
    let (inactive, _) = listed(&app, "filter=status%20eq%20%22INACTIVE%22").await;
    assert_eq!(inactive, [payroll_id]);
    let (first, links) = listed(&app, "q=pay&limit=1").await;
    assert_eq!(first, [payroll_id], "q applies before the page is cut");
    assert!(links.iter().all(|l| l.contains("q=pay")), "{links:?}");
    let (both, links) = listed(&app, "q=wi&filter=status%20eq%20%22ACTIVE%22&limit=1").await;
    assert_eq!(both, [wiki_id]);
    assert!(links.iter().all(|l| l.contains("filter=status")), "{links:?}");
    for bad in
        ["filter=bogus%20eq%20%22x%22", "filter=group.id%20eq%20%2200g1%22", "filter=status%20eq%20ACTIVE"]
    {
        let reply = app.call(Method::GET, &format!("/api/v1/apps?{bad}"), Value::Null).await;
        assert_eq!((reply.status, reply.code()), (StatusCode::BAD_REQUEST, "E0000031"), "{bad}");
    }

    let members = app.call(Method::GET, &format!("/api/v1/apps/{wiki_id}/users"), Value::Null).await;
    assert_eq!(members.body.as_array().unwrap().len(), 1);
    let one = app.call(Method::GET, &format!("/api/v1/apps/{wiki_id}/users/{bob}"), Value::Null).await;
    assert_eq!(one.status, StatusCode::NOT_FOUND);
    let unknown =
        app.call(Method::POST, &format!("/api/v1/apps/{wiki_id}/users"), json!({"id": "00unknown"})).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let removed =
        app.call(Method::DELETE, &format!("/api/v1/apps/{wiki_id}/users/{alice}"), Value::Null).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    let again = app.call(Method::DELETE, &format!("/api/v1/apps/{wiki_id}/users/{alice}"), Value::Null).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    let logs = app
        .call(
            Method::GET,
            "/api/v1/logs?filter=eventType%20eq%20%22application.user_membership.add%22",
            Value::Null,
        )
        .await;
    assert_eq!(logs.body.as_array().unwrap().len(), 2, "{}", logs.body);
}
