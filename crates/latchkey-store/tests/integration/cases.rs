//! The conformance cases. Each takes a fresh, migrated store and asserts observable behaviour.

use latchkey_core::store::{ApiTokenStore, HealthStore, PolicyStore, UserStore};
use latchkey_core::tokens::{ApiToken, OneTimeToken, TokenPurpose};
use latchkey_core::users::profile::Profile;
use latchkey_core::users::query::UserQuery;
use latchkey_core::users::{User, UserStatus};
use latchkey_core::{StoreError, Timestamp};
use latchkey_store::Store;
use serde_json::json;

fn user(id: &str, login: &str) -> User {
    let profile = json!({"login": login, "email": login, "firstName": "Ada", "lastName": "Lovelace"});
    User {
        id: id.to_owned(),
        status: UserStatus::Active,
        created: Timestamp(1_700_000_000_000),
        activated: Some(Timestamp(1_700_000_000_000)),
        status_changed: None,
        last_login: None,
        last_updated: Timestamp(1_700_000_000_000),
        password_changed: None,
        profile: Profile::new(profile.as_object().cloned().unwrap()).unwrap(),
        password_hash: Some("$argon2id$dummy".into()),
        password_history: vec!["$argon2id$older".into()],
        failed_attempts: 0,
        version: 1,
    }
}

async fn ids(store: &Store, query: &str) -> Vec<String> {
    let q = UserQuery::expression(query).unwrap();
    store.list_users(&q, None, 200).await.unwrap().into_iter().map(|u| u.id).collect()
}

pub async fn migrations_are_idempotent(store: &Store) {
    assert_eq!(store.migrate().await.unwrap(), 0, "already applied by the fixture");
}

pub async fn insert_then_find_by_id_and_login(store: &Store) {
    let u = user("00uAAAAAAAAAAAAAAAAA", "Ada@Example.com");
    store.insert_user(&u).await.unwrap();
    assert_eq!(store.find_user("00uAAAAAAAAAAAAAAAAA").await.unwrap(), Some(u.clone()));
    assert_eq!(
        store.find_user("ada@example.COM").await.unwrap(),
        Some(u.clone()),
        "login is case-insensitive"
    );
    assert_eq!(store.find_user("00uaaaaaaaaaaaaaaaaa").await.unwrap(), None, "ids are exact");
    assert_eq!(store.find_user("nobody@example.com").await.unwrap(), None);
}

pub async fn login_is_unique_case_insensitively(store: &Store) {
    store.insert_user(&user("00u1", "a@example.com")).await.unwrap();
    let err = store.insert_user(&user("00u2", "A@EXAMPLE.com")).await.unwrap_err();
    assert_eq!(err, StoreError::Conflict("login".into()));
    assert_eq!(store.find_user("00u2").await.unwrap(), None, "nothing half-written");
}

pub async fn concurrent_creates_of_one_login_have_one_winner(store: &Store) {
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(
                async move { store.insert_user(&user(&format!("00urace{i}"), "race@example.com")).await },
            )
        })
        .collect();
    let mut wins = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => wins += 1,
            Err(e) => assert_eq!(e, StoreError::Conflict("login".into())),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(store.list_users(&UserQuery::All, None, 200).await.unwrap().len(), 1);
}

pub async fn update_is_guarded_by_version(store: &Store) {
    let mut u = user("00uv", "v@example.com");
    store.insert_user(&u).await.unwrap();
    u.status = UserStatus::Suspended;
    u.version = 2;
    assert_eq!(store.update_user(&u, 7, None).await.unwrap_err(), StoreError::Stale);
    assert_eq!(store.find_user("00uv").await.unwrap().unwrap().status, UserStatus::Active);
    store.update_user(&u, 1, None).await.unwrap();
    assert_eq!(store.find_user("00uv").await.unwrap(), Some(u.clone()));
    assert_eq!(store.update_user(&u, 1, None).await.unwrap_err(), StoreError::Stale, "version moved on");
    let mut ghost = user("00ughost", "ghost@example.com");
    ghost.version = 2;
    assert_eq!(store.update_user(&ghost, 1, None).await.unwrap_err(), StoreError::Stale);
}

pub async fn concurrent_updates_lose_no_write(store: &Store) {
    store.insert_user(&user("00ucount", "count@example.com")).await.unwrap();
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                loop {
                    let mut u = store.find_user("00ucount").await.unwrap().unwrap();
                    let expected = u.version;
                    u.failed_attempts += 1;
                    u.version += 1;
                    match store.update_user(&u, expected, None).await {
                        Ok(()) => return,
                        Err(StoreError::Stale) => continue,
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let u = store.find_user("00ucount").await.unwrap().unwrap();
    assert_eq!((u.failed_attempts, u.version), (6, 7));
}

pub async fn update_issues_and_replaces_one_time_tokens(store: &Store) {
    let mut u = user("00utok", "tok@example.com");
    store.insert_user(&u).await.unwrap();
    let (first, _) = OneTimeToken::issue("00utok", TokenPurpose::Activation, Timestamp(1));
    u.version = 2;
    store.update_user(&u, 1, Some(&first)).await.unwrap();
    let (second, _) = OneTimeToken::issue("00utok", TokenPurpose::Activation, Timestamp(2));
    u.version = 3;
    store.update_user(&u, 2, Some(&second)).await.unwrap();
    // A token for a stale version is not written either.
    let (third, _) = OneTimeToken::issue("00utok", TokenPurpose::Recovery, Timestamp(3));
    assert_eq!(store.update_user(&u, 2, Some(&third)).await.unwrap_err(), StoreError::Stale);
    // Deleting the user removes its tokens with it; deleting twice reports absence.
    assert!(store.delete_user("00utok").await.unwrap());
    assert!(!store.delete_user("00utok").await.unwrap());
}

pub async fn list_pages_by_id_cursor(store: &Store) {
    for i in 0..7 {
        store.insert_user(&user(&format!("00upage{i}"), &format!("p{i}@example.com"))).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.list_users(&UserQuery::All, after.as_deref(), 3).await.unwrap();
        assert!(page.len() <= 3);
        if page.is_empty() {
            break;
        }
        after = page.last().map(|u| u.id.clone());
        seen.extend(page.into_iter().map(|u| u.id));
    }
    let expected: Vec<String> = (0..7).map(|i| format!("00upage{i}")).collect();
    assert_eq!(seen, expected, "every user once, in id order");
}

pub async fn search_expressions_filter_correctly(store: &Store) {
    let mut a = user("00us1", "alice@example.com");
    a.last_updated = Timestamp(1_000);
    let mut b = user("00us2", "bob@example.org");
    b.status = UserStatus::Staged;
    b.last_updated = Timestamp(2_000);
    let mut c = user("00us3", "alina@example.org");
    c.status = UserStatus::Suspended;
    c.last_updated = Timestamp(3_000);
    for u in [&a, &b, &c] {
        store.insert_user(u).await.unwrap();
    }
    assert_eq!(ids(store, r#"status eq "ACTIVE""#).await, ["00us1"]);
    assert_eq!(ids(store, r#"status ne "ACTIVE""#).await, ["00us2", "00us3"]);
    assert_eq!(ids(store, r#"profile.login sw "AL""#).await, ["00us1", "00us3"]);
    assert_eq!(ids(store, r#"profile.login eq "BOB@example.org""#).await, ["00us2"]);
    assert_eq!(ids(store, r#"profile.email co "example.org""#).await, ["00us2", "00us3"]);
    assert_eq!(
        ids(store, r#"profile.login sw "al" and (status eq "SUSPENDED" or status eq "STAGED")"#).await,
        ["00us3"]
    );
    assert_eq!(ids(store, r#"lastUpdated gt "1970-01-01T00:00:01.500Z""#).await, ["00us2", "00us3"]);
    assert_eq!(ids(store, r#"lastUpdated le "1970-01-01T00:00:02.000Z""#).await, ["00us1", "00us2"]);
    assert_eq!(ids(store, r#"statusChanged pr"#).await, Vec::<String>::new());
    let prefix = store.list_users(&UserQuery::prefix("BO").unwrap(), None, 10).await.unwrap();
    assert_eq!(prefix.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(), ["00us2"]);
    let by_first_name = store.list_users(&UserQuery::prefix("ada").unwrap(), None, 10).await.unwrap();
    assert_eq!(by_first_name.len(), 3);
}

pub async fn hostile_text_is_data_not_sql(store: &Store) {
    let odd = "o'brien+%_\\\"x@example.com";
    store.insert_user(&user("00uodd", odd)).await.unwrap();
    store.insert_user(&user("00uplain", "obrien@example.com")).await.unwrap();
    assert_eq!(store.find_user(odd).await.unwrap().map(|u| u.id), Some("00uodd".into()));
    let escaped = odd.replace('\\', "\\\\").replace('"', "\\\"");
    assert_eq!(ids(store, &format!(r#"profile.login eq "{escaped}""#)).await, ["00uodd"]);
    // LIKE wildcards in the value match literally.
    assert_eq!(ids(store, r#"profile.login sw "o'brien+%_""#).await, ["00uodd"]);
    assert_eq!(ids(store, r#"profile.login co "%""#).await, ["00uodd"]);
    assert_eq!(ids(store, r#"profile.login eq "x' OR '1'='1""#).await, Vec::<String>::new());
    assert_eq!(store.list_users(&UserQuery::All, None, 10).await.unwrap().len(), 2, "table intact");
}

pub async fn delete_removes_user(store: &Store) {
    store.insert_user(&user("00udel", "del@example.com")).await.unwrap();
    assert!(store.delete_user("00udel").await.unwrap());
    assert_eq!(store.find_user("00udel").await.unwrap(), None);
    assert_eq!(store.find_user("del@example.com").await.unwrap(), None);
    // The login is free again.
    store.insert_user(&user("00udel2", "del@example.com")).await.unwrap();
}

pub async fn api_tokens_are_found_by_digest_only(store: &Store) {
    let (token, secret) = ApiToken::issue("ci", Timestamp(5));
    store.insert_api_token(&token).await.unwrap();
    assert_eq!(store.find_api_token(&secret.digest()).await.unwrap(), Some(token.clone()));
    assert_eq!(store.find_api_token(secret.expose()).await.unwrap(), None, "the secret itself is not stored");
    let mut twin = token.clone();
    twin.id = "00Tother".into();
    assert!(matches!(store.insert_api_token(&twin).await, Err(StoreError::Conflict(_))));
}

pub async fn password_policy_defaults_to_okta(store: &Store) {
    let policy = store.password_policy().await.unwrap();
    assert_eq!(policy.complexity.min_length, 8);
    assert_eq!(policy.age.history_count, 4);
    assert_eq!(policy.lockout.max_attempts, 10);
}

pub async fn ping_answers(store: &Store) {
    store.ping().await.unwrap();
}
