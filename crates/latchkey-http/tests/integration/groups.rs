//! Groups over HTTP (Okta's Groups API): groups and the built-in `Everyone`, members, group rules,
//! apps assigned to groups, and what a group gives at sign-on (access, and the SAML group claim
//! both SP libraries read).

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::apps::saml_app_body;
use crate::browser::Browser;
use crate::sp::{Expect, verify_with_both};
use crate::support::{App, app, app_realtime};

async fn create_group(app: &App, name: &str) -> String {
    let reply = app
        .call(Method::POST, "/api/v1/groups", json!({"profile": {"name": name, "description": "d"}}))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

async fn everyone(app: &App) -> Value {
    let reply = app.call(Method::GET, "/api/v1/groups?q=Every", Value::Null).await;
    reply.body.as_array().unwrap().iter().find(|g| g["type"] == "BUILT_IN").cloned().unwrap()
}

async fn member_logins(app: &App, group_id: &str) -> Vec<String> {
    let reply = app.call(Method::GET, &format!("/api/v1/groups/{group_id}/users"), Value::Null).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let mut logins: Vec<String> = reply
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["profile"]["login"].as_str().unwrap().to_owned())
        .collect();
    logins.sort();
    logins
}

async fn event_types(app: &App) -> Vec<String> {
    let reply = app.call(Method::GET, "/api/v1/logs?limit=1000", Value::Null).await;
    reply.body.as_array().unwrap().iter().map(|e| e["eventType"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn groups_have_okta_shapes_unique_names_and_a_fixed_everyone() {
    let app = app().await;
    let created = app
        .call(
            Method::POST,
            "/api/v1/groups",
            json!({"profile": {"name": "West Coast", "description": "All users West"}}),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "Okta answers 200 (PyPI okta reads nothing else)");
    let group = &created.body;
    let id = group["id"].as_str().unwrap();
    assert!(id.starts_with("00g") && id.len() == 20);
    assert_eq!(group["objectClass"], json!(["okta:user_group"]));
    assert_eq!(group["type"], "OKTA_GROUP");
    assert_eq!(group["profile"], json!({"name": "West Coast", "description": "All users West"}));
    for key in ["created", "lastUpdated", "lastMembershipUpdated"] {
        assert!(group[key].as_str().unwrap().ends_with('Z'), "{key}");
    }
    assert!(
        group["_links"]["users"]["href"].as_str().unwrap().ends_with(&format!("/api/v1/groups/{id}/users"))
    );
    assert!(
        group["_links"]["apps"]["href"].as_str().unwrap().ends_with(&format!("/api/v1/groups/{id}/apps"))
    );
    assert_eq!(group["_links"]["logo"].as_array().unwrap().len(), 2);

    let clash = app.call(Method::POST, "/api/v1/groups", json!({"profile": {"name": "west COAST"}})).await;
    assert_eq!((clash.status, clash.code()), (StatusCode::BAD_REQUEST, "E0000001"));
    assert_eq!(
        clash.causes(),
        ["name: An object with this field already exists in the current organization"]
    );
    let unnamed = app.call(Method::POST, "/api/v1/groups", json!({"profile": {"description": "x"}})).await;
    assert_eq!(unnamed.code(), "E0000001");
    let extra =
        app.call(Method::POST, "/api/v1/groups", json!({"profile": {"name": "X", "owner": "me"}})).await;
    assert_eq!(extra.code(), "E0000001", "unknown profile properties are refused by name");

    let renamed =
        app.call(Method::PUT, &format!("/api/v1/groups/{id}"), json!({"profile": {"name": "Pacific"}})).await;
    assert_eq!(
        renamed.body["profile"],
        json!({"name": "Pacific", "description": null}),
        "PUT replaces the profile"
    );
    let stats = app.call(Method::GET, &format!("/api/v1/groups/{id}?expand=stats"), Value::Null).await;
    assert_eq!(stats.body["_embedded"]["stats"]["usersCount"], 0);
    assert_eq!(stats.body["_embedded"]["stats"]["appsCount"], 0);

    // Everyone: in every organisation, holds every user, and cannot be changed.
    let alice = app.create_ok("alice@example.com").await;
    let everyone = everyone(&app).await;
    let everyone_id = everyone["id"].as_str().unwrap();
    assert_eq!(everyone["profile"]["name"], "Everyone");
    assert_eq!(member_logins(&app, everyone_id).await, ["alice@example.com"]);
    let rename = app
        .call(Method::PUT, &format!("/api/v1/groups/{everyone_id}"), json!({"profile": {"name": "All"}}))
        .await;
    assert_eq!((rename.status, rename.code()), (StatusCode::FORBIDDEN, "E0000006"));
    let delete = app.call(Method::DELETE, &format!("/api/v1/groups/{everyone_id}"), Value::Null).await;
    assert_eq!((delete.status, delete.code()), (StatusCode::FORBIDDEN, "E0000006"));
    let add =
        app.call(Method::PUT, &format!("/api/v1/groups/{everyone_id}/users/{alice}"), Value::Null).await;
    assert_eq!(add.code(), "E0000060");
    let remove =
        app.call(Method::DELETE, &format!("/api/v1/groups/{everyone_id}/users/{alice}"), Value::Null).await;
    assert_eq!((remove.status, remove.code()), (StatusCode::FORBIDDEN, "E0000006"));
    assert_eq!(member_logins(&app, everyone_id).await, ["alice@example.com"], "unchanged");

    // Lists: q (a name prefix), filter and search, paging with Link headers.
    for name in ["Alpha", "Beta", "Gamma"] {
        create_group(&app, name).await;
    }
    let names = |reply: &crate::support::Reply| -> Vec<String> {
        reply
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["profile"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&app.call(Method::GET, "/api/v1/groups?q=al", Value::Null).await), ["Alpha"]);
    let okta_only =
        app.call(Method::GET, "/api/v1/groups?filter=type%20eq%20%22OKTA_GROUP%22", Value::Null).await;
    assert_eq!(names(&okta_only).len(), 4);
    let search =
        app.call(Method::GET, "/api/v1/groups?search=profile.name%20sw%20%22b%22", Value::Null).await;
    assert_eq!(names(&search), ["Beta"]);
    let page = app.call(Method::GET, "/api/v1/groups?limit=2", Value::Null).await;
    assert_eq!(names(&page).len(), 2);
    let next = page
        .headers
        .get_all("link")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|l| l.contains("next"))
        .unwrap();
    assert!(next.contains("after=") && next.contains("limit=2"), "{next}");
    for bad in [
        "filter=profile.owner%20eq%20%22x%22",
        "search=type%20sw%20%22O%22",
        "filter=x&search=y",
        "expand=app",
    ] {
        let reply = app.call(Method::GET, &format!("/api/v1/groups?{bad}"), Value::Null).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}: {}", reply.body);
    }
    let missing = app.call(Method::GET, "/api/v1/groups/00gnothere", Value::Null).await;
    assert_eq!((missing.status, missing.code()), (StatusCode::NOT_FOUND, "E0000007"));

    let gone = app.call(Method::DELETE, &format!("/api/v1/groups/{id}"), Value::Null).await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.call(Method::GET, &format!("/api/v1/groups/{id}"), Value::Null).await.status,
        StatusCode::NOT_FOUND
    );
    let events = event_types(&app).await;
    for expected in ["group.lifecycle.create", "group.profile.update", "group.lifecycle.delete"] {
        assert!(events.iter().any(|e| e == expected), "{expected}: {events:?}");
    }
}

#[tokio::test]
async fn members_are_added_idempotently_and_listed_both_ways() {
    let app = app().await;
    let group = create_group(&app, "Staff").await;
    let alice = app.create_ok("alice@example.com").await;
    let bob = app.create_ok("bob@example.com").await;
    for _ in 0..2 {
        let put = app.call(Method::PUT, &format!("/api/v1/groups/{group}/users/{alice}"), Value::Null).await;
        assert_eq!(put.status, StatusCode::NO_CONTENT, "idempotent: {}", put.body);
    }
    app.call(Method::PUT, &format!("/api/v1/groups/{group}/users/{bob}"), Value::Null).await;
    assert_eq!(member_logins(&app, &group).await, ["alice@example.com", "bob@example.com"]);
    let mine = app.call(Method::GET, &format!("/api/v1/users/{alice}/groups"), Value::Null).await;
    let names: Vec<&str> =
        mine.body.as_array().unwrap().iter().map(|g| g["profile"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Everyone", "Staff"]);
    for _ in 0..2 {
        let delete =
            app.call(Method::DELETE, &format!("/api/v1/groups/{group}/users/{bob}"), Value::Null).await;
        assert_eq!(delete.status, StatusCode::NO_CONTENT);
    }
    assert_eq!(member_logins(&app, &group).await, ["alice@example.com"]);
    let unknown_user =
        app.call(Method::PUT, &format!("/api/v1/groups/{group}/users/00unobody"), Value::Null).await;
    assert_eq!((unknown_user.status, unknown_user.code()), (StatusCode::NOT_FOUND, "E0000007"));
    let unknown_group =
        app.call(Method::PUT, &format!("/api/v1/groups/00gnone/users/{alice}"), Value::Null).await;
    assert_eq!((unknown_group.status, unknown_group.code()), (StatusCode::NOT_FOUND, "E0000007"));

    // groupIds at creation: checked first, then the user joins them.
    let carol = app
        .call(
            Method::POST,
            "/api/v1/users?activate=true",
            json!({"profile": {"login": "carol@example.com", "email": "carol@example.com", "firstName": "C", "lastName": "D"},
                   "groupIds": [group]}),
        )
        .await;
    assert_eq!(carol.status, StatusCode::OK, "{}", carol.body);
    assert_eq!(member_logins(&app, &group).await, ["alice@example.com", "carol@example.com"]);
    // Deleting a user removes their memberships.
    app.call(Method::POST, &format!("/api/v1/users/{alice}/lifecycle/deactivate"), Value::Null).await;
    app.call(Method::DELETE, &format!("/api/v1/users/{alice}"), Value::Null).await;
    assert_eq!(member_logins(&app, &group).await, ["carol@example.com"]);
    let events = event_types(&app).await;
    assert!(events.iter().filter(|e| *e == "group.user_membership.add").count() >= 3, "{events:?}");
    assert!(events.iter().any(|e| e == "group.user_membership.remove"));
}

fn rule_body(name: &str, expression: &str, groups: &[&str]) -> Value {
    json!({
        "type": "group_rule",
        "name": name,
        "conditions": {"expression": {"value": expression, "type": "urn:okta:expression:1.0"}},
        "actions": {"assignUserToGroups": {"groupIds": groups}},
    })
}

async fn create_user_in(app: &App, login: &str, department: &str) -> String {
    let reply = app
        .call(
            Method::POST,
            "/api/v1/users?activate=true",
            json!({"profile": {"login": login, "email": login, "firstName": "T", "lastName": "U", "department": department},
                   "credentials": {"password": {"value": "Correct-Horse-9"}}}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn rules_fill_groups_from_profiles_and_take_back_what_they_gave() {
    let app = app().await;
    let engineering = create_group(&app, "Engineering").await;
    let ada = create_user_in(&app, "ada@example.com", "Engineering").await;
    create_user_in(&app, "sam@example.com", "Sales").await;

    // Refused when saved, with where and why.
    let bad = app
        .call(Method::POST, "/api/v1/groups/rules", rule_body("Bad", "user.department == ", &[&engineering]))
        .await;
    assert_eq!((bad.status, bad.code()), (StatusCode::BAD_REQUEST, "E0000001"));
    assert_eq!(bad.body["errorSummary"], "Api validation failed: validateRule");
    assert!(bad.causes()[0].contains("at position 20"), "{:?}", bad.causes());
    let unknown = app.call(Method::POST, "/api/v1/groups/rules", rule_body("X", "true", &["00gnone"])).await;
    assert_eq!(unknown.code(), "E0000001");

    let rule = app
        .call(
            Method::POST,
            "/api/v1/groups/rules",
            rule_body(
                "Engineers",
                "user.department == \"Engineering\" || String.stringContains(user.email, \"@eng.\")",
                &[&engineering],
            ),
        )
        .await;
    assert_eq!(rule.status, StatusCode::OK, "{}", rule.body);
    assert_eq!(rule.body["status"], "INACTIVE", "created inactive, as in Okta");
    assert_eq!(rule.body["type"], "group_rule");
    assert_eq!(rule.body["conditions"]["expression"]["type"], "urn:okta:expression:1.0");
    let rule_id = rule.body["id"].as_str().unwrap().to_owned();
    assert!(rule_id.starts_with("0pr"));
    assert!(member_logins(&app, &engineering).await.is_empty(), "an inactive rule does nothing");
    let dup =
        app.call(Method::POST, "/api/v1/groups/rules", rule_body("Engineers", "true", &[&engineering])).await;
    assert_eq!(dup.causes(), ["name: Policy rule name already in use"]);

    let activate = app
        .call(Method::POST, &format!("/api/v1/groups/rules/{rule_id}/lifecycle/activate"), Value::Null)
        .await;
    assert_eq!(activate.status, StatusCode::NO_CONTENT);
    assert_eq!(member_logins(&app, &engineering).await, ["ada@example.com"], "applied to existing users");
    let edit = app
        .call(
            Method::PUT,
            &format!("/api/v1/groups/rules/{rule_id}"),
            rule_body("Engineers", "true", &[&engineering]),
        )
        .await;
    assert_eq!(edit.status, StatusCode::BAD_REQUEST, "an active rule is not edited");

    // New users and profile changes follow the rule.
    create_user_in(&app, "eve@eng.example.com", "Research").await;
    assert_eq!(member_logins(&app, &engineering).await, ["ada@example.com", "eve@eng.example.com"]);
    let moved = app
        .call(Method::POST, &format!("/api/v1/users/{ada}"), json!({"profile": {"department": "Sales"}}))
        .await;
    assert_eq!(moved.status, StatusCode::OK);
    assert_eq!(member_logins(&app, &engineering).await, ["eve@eng.example.com"], "no longer matching: out");

    // Deactivating removes what the rule made, and only that.
    let sam = app.call(Method::GET, "/api/v1/users/sam@example.com", Value::Null).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.call(Method::PUT, &format!("/api/v1/groups/{engineering}/users/{sam}"), Value::Null).await;
    let deactivate = app
        .call(Method::POST, &format!("/api/v1/groups/rules/{rule_id}/lifecycle/deactivate"), Value::Null)
        .await;
    assert_eq!(deactivate.status, StatusCode::NO_CONTENT);
    assert_eq!(
        member_logins(&app, &engineering).await,
        ["sam@example.com"],
        "the administrator's member stays"
    );

    // isMemberOfAnyGroup, and removing a rule's member excludes them from the rule.
    let leads = create_group(&app, "Leads").await;
    let second = app
        .call(
            Method::POST,
            "/api/v1/groups/rules",
            rule_body("Leads", &format!("isMemberOfAnyGroup(\"{engineering}\")"), &[&leads]),
        )
        .await;
    let second_id = second.body["id"].as_str().unwrap().to_owned();
    app.call(Method::POST, &format!("/api/v1/groups/rules/{second_id}/lifecycle/activate"), Value::Null)
        .await;
    assert_eq!(member_logins(&app, &leads).await, ["sam@example.com"]);
    app.call(Method::DELETE, &format!("/api/v1/groups/{leads}/users/{sam}"), Value::Null).await;
    assert!(member_logins(&app, &leads).await.is_empty());
    let excluded = app.call(Method::GET, &format!("/api/v1/groups/rules/{second_id}"), Value::Null).await;
    assert_eq!(excluded.body["conditions"]["people"]["users"]["exclude"], json!([sam]));

    let listed = app.call(Method::GET, "/api/v1/groups/rules", Value::Null).await;
    assert_eq!(listed.body.as_array().unwrap().len(), 2);
    // An active rule may be deleted; removeUsers=true takes its memberships with it.
    let deleted = app
        .call(Method::DELETE, &format!("/api/v1/groups/rules/{second_id}?removeUsers=true"), Value::Null)
        .await;
    assert_eq!(deleted.status, StatusCode::ACCEPTED);
    assert_eq!(
        app.call(Method::GET, &format!("/api/v1/groups/rules/{second_id}"), Value::Null).await.status,
        StatusCode::NOT_FOUND
    );
    let events = event_types(&app).await;
    for expected in ["group.rule.create", "group.rule.activate", "group.rule.deactivate", "group.rule.delete"]
    {
        assert!(events.iter().any(|e| e == expected), "{expected}: {events:?}");
    }
}

#[tokio::test]
async fn rules_that_ask_about_groups_follow_memberships_and_a_deleted_group_invalidates_its_rules() {
    let app = app().await;
    let cashiers = create_group(&app, "Cashiers").await;
    let tills = create_group(&app, "Till access").await;
    let kim = create_user_in(&app, "kim@example.com", "Retail").await;
    let rule = app
        .call(
            Method::POST,
            "/api/v1/groups/rules",
            rule_body("Tills", &format!("isMemberOfAnyGroup(\"{cashiers}\")"), &[&tills]),
        )
        .await;
    let rule_id = rule.body["id"].as_str().unwrap().to_owned();
    let lifecycle = |verb: &str| format!("/api/v1/groups/rules/{rule_id}/lifecycle/{verb}");
    assert_eq!(
        app.call(Method::POST, &lifecycle("activate"), Value::Null).await.status,
        StatusCode::NO_CONTENT
    );
    assert!(member_logins(&app, &tills).await.is_empty());

    // Joining and leaving the group the rule asks about moves the user at once.
    app.call(Method::PUT, &format!("/api/v1/groups/{cashiers}/users/{kim}"), Value::Null).await;
    assert_eq!(member_logins(&app, &tills).await, ["kim@example.com"], "joined through the rule");
    app.call(Method::DELETE, &format!("/api/v1/groups/{cashiers}/users/{kim}"), Value::Null).await;
    assert!(member_logins(&app, &tills).await.is_empty(), "left with the membership it came from");

    // Deleting the group the rule names: the rule is INVALID, its members go, and it can be
    // neither activated nor deactivated until saved with groups that exist.
    app.call(Method::PUT, &format!("/api/v1/groups/{cashiers}/users/{kim}"), Value::Null).await;
    assert_eq!(member_logins(&app, &tills).await, ["kim@example.com"]);
    assert_eq!(
        app.call(Method::DELETE, &format!("/api/v1/groups/{cashiers}"), Value::Null).await.status,
        StatusCode::NO_CONTENT
    );
    assert!(
        member_logins(&app, &tills).await.is_empty(),
        "the deleted group's members leave the rule's group"
    );
    let invalid = app.call(Method::GET, &format!("/api/v1/groups/rules/{rule_id}"), Value::Null).await;
    assert_eq!(invalid.body["status"], "INVALID", "{}", invalid.body);
    for verb in ["activate", "deactivate"] {
        let refused = app.call(Method::POST, &lifecycle(verb), Value::Null).await;
        assert_eq!((refused.status, refused.code()), (StatusCode::BAD_REQUEST, "E0000001"), "{verb}");
        assert_eq!(refused.body["errorSummary"], "Api validation failed: updateRuleStatus");
        assert_eq!(
            refused.causes(),
            ["updateRuleStatus: Cannot activate or deactivate a Group Rule with the status INVALID"]
        );
    }
    let fixed = app
        .call(
            Method::PUT,
            &format!("/api/v1/groups/rules/{rule_id}"),
            rule_body("Tills", "user.department == \"Retail\"", &[&tills]),
        )
        .await;
    assert_eq!(fixed.status, StatusCode::OK, "{}", fixed.body);
    assert_eq!(fixed.body["status"], "INACTIVE", "saved whole again");
    assert_eq!(
        app.call(Method::POST, &lifecycle("activate"), Value::Null).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(member_logins(&app, &tills).await, ["kim@example.com"]);

    // A rule that fills a deleted group is INVALID too.
    assert_eq!(
        app.call(Method::POST, &lifecycle("deactivate"), Value::Null).await.status,
        StatusCode::NO_CONTENT
    );
    app.call(Method::DELETE, &format!("/api/v1/groups/{tills}"), Value::Null).await;
    let invalid = app.call(Method::GET, &format!("/api/v1/groups/rules/{rule_id}"), Value::Null).await;
    assert_eq!(
        (invalid.body["status"].as_str(), invalid.body["allGroupsValid"].as_bool()),
        (Some("INVALID"), Some(false))
    );
    assert!(event_types(&app).await.iter().any(|e| e == "group.rule.invalidate"));
}

#[tokio::test]
async fn a_group_gives_its_members_the_app_and_the_groups_claim_both_sps_read() {
    let app = app_realtime(|_| {}).await;
    let mut body = saml_app_body("Wiki");
    body["settings"]["signOn"]["attributeStatements"] = json!([
        {"type": "EXPRESSION", "name": "email", "namespace": "urn:oasis:names:tc:SAML:2.0:attrname-format:basic", "values": ["user.email"]},
        {"type": "GROUP", "name": "groups", "namespace": "urn:oasis:names:tc:SAML:2.0:attrname-format:basic", "filterType": "REGEX", "filterValue": "(Wiki|Eng).*"},
        {"type": "GROUP", "name": "admins", "namespace": "urn:oasis:names:tc:SAML:2.0:attrname-format:basic", "filterType": "EQUALS", "filterValue": "wiki admins"},
    ]);
    let created = app.call(Method::POST, "/api/v1/apps", body).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let app_id = created.body["id"].as_str().unwrap().to_owned();
    let embed =
        created.body["_links"]["appLinks"][0]["href"].as_str().unwrap().replace(crate::support::BASE, "");
    let metadata_url =
        created.body["_links"]["metadata"]["href"].as_str().unwrap().replace(crate::support::BASE, "");
    let metadata = app.call(Method::GET, &metadata_url, Value::Null).await.body.as_str().unwrap().to_owned();

    let wiki_users = create_group(&app, "Wiki Users").await;
    let engineers = create_group(&app, "Engineering").await;
    create_group(&app, "Sales").await;
    let member = create_user_in(&app, "member@example.com", "x").await;
    create_user_in(&app, "stranger@example.com", "x").await;
    for group in [&wiki_users, &engineers] {
        app.call(Method::PUT, &format!("/api/v1/groups/{group}/users/{member}"), Value::Null).await;
    }
    let assigned = app
        .call(Method::PUT, &format!("/api/v1/apps/{app_id}/groups/{wiki_users}"), json!({"priority": 1}))
        .await;
    assert_eq!(assigned.status, StatusCode::OK, "{}", assigned.body);
    assert_eq!(assigned.body["id"], wiki_users.as_str(), "Okta: the assignment's id is the group's");
    assert_eq!(assigned.body["priority"], 1);
    assert!(assigned.body["_links"]["group"]["href"].as_str().unwrap().ends_with(&wiki_users));
    let listed =
        app.call(Method::GET, &format!("/api/v1/apps/{app_id}/groups?expand=group"), Value::Null).await;
    assert_eq!(listed.body[0]["_embedded"]["group"]["profile"]["name"], "Wiki Users");
    let group_apps = app.call(Method::GET, &format!("/api/v1/groups/{wiki_users}/apps"), Value::Null).await;
    assert_eq!(group_apps.body[0]["id"], app_id.as_str());
    let app_users = app.call(Method::GET, &format!("/api/v1/apps/{app_id}/users"), Value::Null).await;
    assert_eq!(app_users.body[0]["scope"], "GROUP", "{}", app_users.body);
    let unassign_user =
        app.call(Method::DELETE, &format!("/api/v1/apps/{app_id}/users/{member}"), Value::Null).await;
    assert_eq!((unassign_user.status, unassign_user.code()), (StatusCode::FORBIDDEN, "E0000046"));
    let links = app.call(Method::GET, &format!("/api/v1/users/{member}/appLinks"), Value::Null).await;
    assert_eq!(links.body.as_array().unwrap().len(), 1, "the dashboard follows groups too");

    // The member signs on through the embed link; both SP libraries read the filtered groups.
    let token = |login: &'static str| {
        let app = &app;
        async move {
            let reply =
                app.public("/api/v1/authn", json!({"username": login, "password": "Correct-Horse-9"})).await;
            reply.body["sessionToken"].as_str().unwrap().to_owned()
        }
    };
    let mut browser = Browser::default();
    let page =
        browser.get(&app, &format!("{embed}?sessionToken={}", token("member@example.com").await)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let expect = Expect {
        metadata: &metadata,
        sp_entity_id: "https://sp.example.com/metadata",
        acs: "https://sp.example.com/acs",
        request_id: None,
        want_response_signed: true,
    };
    let xml = page.response_xml();
    assert!(
        xml.contains("Name=\"groups\"") && !xml.contains("Name=\"admins\""),
        "no matching group, no claim"
    );
    if let Some((pysaml2, node_saml)) = verify_with_both(&expect, &page.field("SAMLResponse").unwrap()) {
        for reading in [&pysaml2, &node_saml] {
            assert_eq!(reading["ok"], true, "{reading}");
            assert_eq!(reading["attributes"]["groups"], json!(["Engineering", "Wiki Users"]), "{reading}");
            assert!(reading["attributes"].get("admins").is_none());
        }
    }

    // A non-member is refused.
    let mut stranger = Browser::default();
    let refused =
        stranger.get(&app, &format!("{embed}?sessionToken={}", token("stranger@example.com").await)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    // Out of the group: the next sign-on is refused (the session stays).
    let removed =
        app.call(Method::DELETE, &format!("/api/v1/groups/{wiki_users}/users/{member}"), Value::Null).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    assert_eq!(browser.get(&app, &embed).await.status, StatusCode::FORBIDDEN);
    app.call(Method::PUT, &format!("/api/v1/groups/{wiki_users}/users/{member}"), Value::Null).await;
    assert_eq!(browser.get(&app, &embed).await.status, StatusCode::OK, "back in, back on");
    // The group unassigned from the app: refused again.
    let unassigned =
        app.call(Method::DELETE, &format!("/api/v1/apps/{app_id}/groups/{wiki_users}"), Value::Null).await;
    assert_eq!(unassigned.status, StatusCode::NO_CONTENT);
    assert_eq!(browser.get(&app, &embed).await.status, StatusCode::FORBIDDEN);
    let events = event_types(&app).await;
    for expected in ["group.application_assignment.add", "group.application_assignment.remove"] {
        assert!(events.iter().any(|e| e == expected), "{expected}: {events:?}");
    }

    // Invalid group statements are refused when the app is saved.
    for (filter_type, value) in [("REGEX", "(unclosed"), ("SOUNDS_LIKE", "x")] {
        let mut body = saml_app_body("Bad");
        body["settings"]["signOn"]["attributeStatements"] =
            json!([{"type": "GROUP", "name": "g", "filterType": filter_type, "filterValue": value}]);
        let reply = app.call(Method::POST, "/api/v1/apps", body).await;
        assert_eq!((reply.status, reply.code()), (StatusCode::BAD_REQUEST, "E0000001"), "{filter_type}");
    }
}

async fn create_rule(app: &App, name: &str, expression: &str, group: &str) -> String {
    let reply = app.call(Method::POST, "/api/v1/groups/rules", rule_body(name, expression, &[group])).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

async fn rule_lifecycle(app: &App, rule_id: &str, verb: &str) {
    let reply = app
        .call(Method::POST, &format!("/api/v1/groups/rules/{rule_id}/lifecycle/{verb}"), Value::Null)
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{verb}: {}", reply.body);
}

async fn app_user_ids(app: &App, app_id: &str) -> Vec<String> {
    let reply = app.call(Method::GET, &format!("/api/v1/apps/{app_id}/users"), Value::Null).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body.as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn a_chain_of_rules_follows_the_first_one_out_and_the_app_goes_with_it() {
    let app = app_realtime(|_| {}).await;
    let chain1 = create_group(&app, "Chain1").await;
    let chain2 = create_group(&app, "Chain2").await;
    let chain3 = create_group(&app, "Chain3").await;
    let ada = create_user_in(&app, "ada@example.com", "eng").await;
    create_user_in(&app, "sam@example.com", "sales").await;
    let a = create_rule(&app, "A", "user.department==\"eng\"", &chain1).await;
    let b = create_rule(&app, "B", &format!("isMemberOfGroup(\"{chain1}\")"), &chain2).await;
    let c = create_rule(&app, "C", &format!("isMemberOfGroup(\"{chain2}\")"), &chain3).await;
    // The later links first: they then wait for the first one.
    for rule in [&c, &b, &a] {
        rule_lifecycle(&app, rule, "activate").await;
    }
    for group in [&chain1, &chain2, &chain3] {
        assert_eq!(member_logins(&app, group).await, ["ada@example.com"], "down the chain");
    }
    // An app assigned to the second link only.
    let created = app.call(Method::POST, "/api/v1/apps", saml_app_body("Chained")).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let app_id = created.body["id"].as_str().unwrap().to_owned();
    let embed =
        created.body["_links"]["appLinks"][0]["href"].as_str().unwrap().replace(crate::support::BASE, "");
    let assigned = app.call(Method::PUT, &format!("/api/v1/apps/{app_id}/groups/{chain2}"), json!({})).await;
    assert_eq!(assigned.status, StatusCode::OK, "{}", assigned.body);
    assert_eq!(app_user_ids(&app, &app_id).await, [ada.as_str()]);
    let token = app
        .public("/api/v1/authn", json!({"username": "ada@example.com", "password": "Correct-Horse-9"}))
        .await;
    let token = token.body["sessionToken"].as_str().unwrap().to_owned();
    let mut browser = Browser::default();
    assert_eq!(browser.get(&app, &format!("{embed}?sessionToken={token}")).await.status, StatusCode::OK);

    // Deactivating the first link empties the whole chain at once, and the app goes with it.
    rule_lifecycle(&app, &a, "deactivate").await;
    for group in [&chain1, &chain2, &chain3] {
        assert!(member_logins(&app, group).await.is_empty(), "{group}: no profile change needed");
    }
    assert!(app_user_ids(&app, &app_id).await.is_empty());
    assert_eq!(browser.get(&app, &embed).await.status, StatusCode::FORBIDDEN, "the next SSO is refused");

    // Back on, back in; then deleting the first group makes A and B INVALID and empties the rest.
    rule_lifecycle(&app, &a, "activate").await;
    assert_eq!(member_logins(&app, &chain3).await, ["ada@example.com"]);
    assert_eq!(browser.get(&app, &embed).await.status, StatusCode::OK);
    let deleted = app.call(Method::DELETE, &format!("/api/v1/groups/{chain1}"), Value::Null).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    for group in [&chain2, &chain3] {
        assert!(member_logins(&app, group).await.is_empty(), "{group}");
    }
    assert!(app_user_ids(&app, &app_id).await.is_empty());
    assert_eq!(browser.get(&app, &embed).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_rule_activation_runs_to_completion_when_its_request_is_dropped() {
    use latchkey_core::groups::RuleStatus;
    use latchkey_core::store::GroupStore;
    use std::future::Future as _;
    use std::task::{Context, Poll, Waker};

    const USERS: u64 = 300;
    let app = app().await;
    let group = create_group(&app, "Everybody").await;
    for i in 0..USERS {
        let reply = app.create(&format!("user{i}@example.com"), None, "").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    let rule = create_rule(&app, "All", "String.stringContains(user.email, \"@\")", &group).await;

    // The request runs until the work has visibly begun (the rule is ACTIVE), then is dropped, as
    // a client hanging up or the request deadline drops it.
    let uri = format!("/api/v1/groups/rules/{rule}/lifecycle/activate");
    let mut request = Box::pin(app.call(Method::POST, &uri, Value::Null));
    loop {
        let polled = request.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        assert!(matches!(polled, Poll::Pending), "{USERS} users take longer than this");
        if app.store.find_rule(&rule).await.unwrap().unwrap().status == RuleStatus::Active {
            break;
        }
        tokio::task::yield_now().await;
    }
    drop(request);
    assert!(app.store.group_stats(&group).await.unwrap().users < USERS, "dropped halfway");

    // The work goes on to the end regardless.
    let start = std::time::Instant::now();
    while app.store.group_stats(&group).await.unwrap().users < USERS {
        assert!(start.elapsed() < std::time::Duration::from_secs(60), "the activation stopped halfway");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(member_logins(&app, &group).await.len() as u64, USERS);
}

#[tokio::test]
async fn a_rule_search_fills_its_pages_and_links_the_next_one() {
    let app = app().await;
    let group = create_group(&app, "Teams").await;
    for i in 0..12 {
        create_rule(&app, &format!("Other {i}"), "user.department == \"x\"", &group).await;
    }
    for name in ["Team E6 one", "Team e6 two", "Team e6 three", "Team e6 four"] {
        create_rule(&app, name, "user.department == \"x\"", &group).await;
    }
    let next_link = |reply: &crate::support::Reply| -> Option<String> {
        reply
            .headers
            .get_all("link")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|l| l.contains("next"))
    };
    let names = |reply: &crate::support::Reply| -> Vec<String> {
        reply.body.as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_owned()).collect()
    };
    let first = app.call(Method::GET, "/api/v1/groups/rules?search=e6&limit=3", Value::Null).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(names(&first).len(), 3, "the search applies before the page is cut: {}", first.body);
    let next = next_link(&first).expect("more matches: a next link");
    assert!(next.contains("search=e6") && next.contains("limit=3"), "{next}");
    let url = next.trim_start_matches('<').split('>').next().unwrap().replace(crate::support::BASE, "");
    let second = app.call(Method::GET, &url, Value::Null).await;
    assert_eq!(names(&second).len(), 1, "{}", second.body);
    assert_eq!(next_link(&second), None, "the last page");
    let mut all: Vec<String> = names(&first).into_iter().chain(names(&second)).collect();
    all.sort();
    assert_eq!(all, ["Team E6 one", "Team e6 four", "Team e6 three", "Team e6 two"]);
    let exact = app.call(Method::GET, "/api/v1/groups/rules?search=e6&limit=4", Value::Null).await;
    assert_eq!((names(&exact).len(), next_link(&exact)), (4, None));
}

#[tokio::test]
async fn rule_bodies_are_checked_like_group_bodies() {
    let app = app().await;
    let group = create_group(&app, "Checked").await;
    let other = create_group(&app, "Other").await;
    let mut unknown = rule_body("Unknown", "user.department == \"x\"", &[&group]);
    unknown["owner"] = json!("me");
    let mut active = rule_body("Active", "user.department == \"x\"", &[&group]);
    active["status"] = json!("ACTIVE");
    let mut number = rule_body("Number", "x", &[&group]);
    number["conditions"]["expression"]["value"] = json!(5);
    let mut text = rule_body("Text", "x", &[&group]);
    text["conditions"] = json!("x");
    for (body, status, code, says) in [
        (unknown, StatusCode::BAD_REQUEST, "E0000003", "Unknown field 'owner' in the rule."),
        (active, StatusCode::BAD_REQUEST, "E0000001", "status: a rule is created INACTIVE"),
        (number, StatusCode::BAD_REQUEST, "E0000003", "conditions.expression.value must be a string"),
        (text, StatusCode::BAD_REQUEST, "E0000003", "conditions must be an object."),
        (
            rule_body("Tab\there", "user.department == \"x\"", &[&group]),
            StatusCode::BAD_REQUEST,
            "E0000001",
            "name: is required",
        ),
    ] {
        let reply = app.call(Method::POST, "/api/v1/groups/rules", body).await;
        assert_eq!((reply.status, reply.code()), (status, code), "{}", reply.body);
        assert!(reply.causes().iter().any(|c| c.starts_with(says)), "{says}: {:?}", reply.causes());
    }
    // A client echoing the rule back (status included) may save it.
    let created = app
        .call(
            Method::POST,
            "/api/v1/groups/rules",
            rule_body("Dup", "user.department == \"x\"", &[&group, &other, &group, &other]),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    assert_eq!(
        created.body["actions"]["assignUserToGroups"]["groupIds"],
        json!([group, other]),
        "every repeat goes, not only adjacent ones"
    );
    let id = created.body["id"].as_str().unwrap();
    let echoed = app.call(Method::PUT, &format!("/api/v1/groups/rules/{id}"), created.body.clone()).await;
    assert_eq!(echoed.status, StatusCode::OK, "{}", echoed.body);
}

#[tokio::test]
async fn a_put_of_an_app_group_assignment_replaces_it_whole() {
    let app = app().await;
    let group = create_group(&app, "Assigned").await;
    let created = app.call(Method::POST, "/api/v1/apps", saml_app_body("Replaced")).await;
    let app_id = created.body["id"].as_str().unwrap().to_owned();
    let uri = format!("/api/v1/apps/{app_id}/groups/{group}");
    let first = app.call(Method::PUT, &uri, json!({"priority": 7, "profile": {"role": "admin"}})).await;
    assert_eq!(
        (first.body["priority"].as_u64(), &first.body["profile"]),
        (Some(7), &json!({"role": "admin"}))
    );
    let again = app.call(Method::PUT, &uri, json!({})).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(
        (again.body["priority"].as_u64(), &again.body["profile"]),
        (Some(0), &json!({})),
        "Okta's PUT replaces: what is left out is reset, priority as the profile"
    );
    let read = app.call(Method::GET, &uri, Value::Null).await;
    assert_eq!(read.body["priority"], 0);
}
