//! The conformance cases. Each takes a fresh, migrated store and asserts observable behaviour.

use latchkey_core::apps::query::AppQuery;
use latchkey_core::apps::sso::{LogoutWalk, PendingSso};
use latchkey_core::apps::{App, AppStatus, AppUser, SamlSignOn, SignOn};
use latchkey_core::authn::{
    AuthnStatus, Factor, FactorStatus, Provider, SessionToken, StoredTransaction, Transaction,
};
use latchkey_core::events::{Actor, Event, LogField, LogQuery, Target};
use latchkey_core::groups::query::GroupQuery;
use latchkey_core::groups::{AppGroup, Group, GroupRule, GroupStats, GroupType, RuleStatus};
use latchkey_core::origins::{Scope, TrustedOrigin};
use latchkey_core::policy::{PolicyKind, PolicyRow};
use latchkey_core::sessions::{EndReason, Session};
use latchkey_core::signing_keys::{KeyStatus, StoredSigningKey};
use latchkey_core::signon::Participant;
use latchkey_core::store::EventStore;
use latchkey_core::store::SessionStore;
use latchkey_core::store::{
    ApiTokenStore, AppStore, AuthnStore, FactorStore, GroupStore, HealthStore, PolicyStore, RateLimitStore,
    SamlStore, SignOnStore, SigningKeyStore, TrustedOriginStore, UserStore,
};
use latchkey_core::tokens::{ApiToken, OneTimeToken, TokenPurpose};
use latchkey_core::users::profile::Profile;
use latchkey_core::users::query::UserQuery;
use latchkey_core::users::{User, UserStatus};
use latchkey_core::{StoreError, Timestamp};
use latchkey_store::Store;
use serde_json::json;

pub fn user(id: &str, login: &str) -> User {
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
        locked_at: None,
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

fn session_token(digest: &str, user_id: &str, expires_at: i64) -> SessionToken {
    SessionToken {
        digest: digest.into(),
        user_id: user_id.into(),
        amr: vec!["pwd".into()],
        password_verified_at: Some(Timestamp(1)),
        factor_verified_at: None,
        created: Timestamp(1),
        expires_at: Timestamp(expires_at),
    }
}

pub async fn session_tokens_are_single_use_even_concurrently(store: &Store) {
    store.insert_user(&user("00ust", "st@example.com")).await.unwrap();
    store.insert_session_token(&session_token("d1", "00ust", 10_000)).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.consume_session_token("d1", Timestamp(5_000)).await.unwrap() })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        if let Some(token) = task.await.unwrap() {
            assert_eq!(token, session_token("d1", "00ust", 10_000));
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "exactly one redemption");
    store.insert_session_token(&session_token("d2", "00ust", 10_000)).await.unwrap();
    assert_eq!(store.consume_session_token("d2", Timestamp(10_000)).await.unwrap(), None, "expired");
    assert_eq!(store.consume_session_token("nope", Timestamp(1)).await.unwrap(), None);
}

pub async fn lifecycle_tokens_are_single_use_and_purpose_bound(store: &Store) {
    let mut u = user("00uott", "ott@example.com");
    store.insert_user(&u).await.unwrap();
    let (token, secret) = OneTimeToken::issue("00uott", TokenPurpose::Activation, Timestamp(1_000));
    u.version = 2;
    store.update_user(&u, 1, Some(&token)).await.unwrap();
    let digest = secret.digest();
    assert_eq!(
        store.consume_one_time_token(&digest, TokenPurpose::Recovery, Timestamp(2_000)).await.unwrap(),
        None
    );
    let used =
        store.consume_one_time_token(&digest, TokenPurpose::Activation, Timestamp(2_000)).await.unwrap();
    assert_eq!(used.map(|t| t.user_id), Some("00uott".to_owned()));
    assert_eq!(
        store.consume_one_time_token(&digest, TokenPurpose::Activation, Timestamp(2_000)).await.unwrap(),
        None
    );
}

fn transaction(user_id: &str) -> Transaction {
    Transaction {
        user_id: user_id.into(),
        status: AuthnStatus::MfaRequired,
        factor_id: None,
        factor_result: None,
        multi_optional_factor_enroll: true,
        warn_before_password_expired: false,
        mfa_verified: false,
        enrolled_now: false,
        warn_skipped: false,
        enroll_skipped: false,
        remember_device: None,
        password_verified_at: Some(1),
        factor_verified_at: None,
        amr: vec!["pwd".into()],
        relay_state: Some("/deep/link".into()),
        created: 1,
    }
}

pub async fn transactions_slide_expire_and_are_version_guarded(store: &Store) {
    store.insert_user(&user("00utx", "tx@example.com")).await.unwrap();
    let stored = StoredTransaction {
        digest: "tx1".into(),
        tx: transaction("00utx"),
        expires_at: Timestamp(10_000),
        version: 1,
    };
    store.insert_transaction(&stored).await.unwrap();
    assert_eq!(store.find_transaction("tx1", Timestamp(9_999)).await.unwrap(), Some(stored.clone()));
    assert_eq!(store.find_transaction("tx1", Timestamp(10_000)).await.unwrap(), None, "expired");
    let mut next = stored.clone();
    next.tx.status = AuthnStatus::MfaChallenge;
    next.expires_at = Timestamp(20_000);
    next.version = 2;
    store.update_transaction(&next, 1).await.unwrap();
    assert_eq!(store.update_transaction(&next, 1).await.unwrap_err(), StoreError::Stale);
    assert_eq!(store.find_transaction("tx1", Timestamp(15_000)).await.unwrap(), Some(next));
    assert!(!store.finish_transaction("tx1", 1).await.unwrap(), "an old version cannot finish it");
    assert!(store.finish_transaction("tx1", 2).await.unwrap());
    assert!(!store.finish_transaction("tx1", 2).await.unwrap(), "finished once");
    store.delete_transaction("tx1").await.unwrap();
    assert_eq!(store.find_transaction("tx1", Timestamp(1)).await.unwrap(), None);
}

fn factor(id: &str, user_id: &str, provider: Provider) -> Factor {
    Factor {
        id: id.into(),
        user_id: user_id.into(),
        provider,
        status: FactorStatus::PendingActivation,
        sealed_secret: "v1:sealed".into(),
        last_step: 0,
        qr_digest: Some(format!("qr-{id}")),
        created: Timestamp(1),
        last_updated: Timestamp(1),
    }
}

pub async fn factors_activate_once_and_refuse_replayed_steps(store: &Store) {
    store.insert_user(&user("00ufa", "fa@example.com")).await.unwrap();
    store.put_pending_factor(&factor("ost1", "00ufa", Provider::Okta)).await.unwrap();
    // A second pending factor of the same provider replaces the first.
    store.put_pending_factor(&factor("ost2", "00ufa", Provider::Okta)).await.unwrap();
    assert_eq!(
        store.list_factors("00ufa").await.unwrap().iter().map(|f| f.id.as_str()).collect::<Vec<_>>(),
        ["ost2"]
    );
    assert_eq!(store.find_factor_by_qr("qr-ost2").await.unwrap().map(|f| f.id), Some("ost2".into()));
    assert!(store.activate_factor("ost2", 100, Timestamp(2)).await.unwrap());
    assert!(!store.activate_factor("ost2", 101, Timestamp(2)).await.unwrap(), "already active");
    assert_eq!(store.find_factor_by_qr("qr-ost2").await.unwrap(), None, "QR link dies on activation");
    assert!(matches!(
        store.put_pending_factor(&factor("ost3", "00ufa", Provider::Okta)).await,
        Err(StoreError::Conflict(_))
    ));

    assert!(!store.record_totp_step("ost2", 100).await.unwrap(), "the activation step is used");
    let results: Vec<bool> = futures_join(store, "ost2", 101).await;
    assert_eq!(results.iter().filter(|r| **r).count(), 1, "one of the concurrent uses of a step wins");
    assert!(!store.record_totp_step("ost2", 99).await.unwrap(), "older steps are refused");
    assert!(store.record_totp_step("ost2", 102).await.unwrap());

    store.put_pending_factor(&factor("uft1", "00ufa", Provider::Google)).await.unwrap();
    assert!(store.delete_factor("00ufa", "uft1").await.unwrap());
    assert!(!store.delete_factor("00uother", "ost2").await.unwrap(), "only the owner's factor");
    store.remember_device("00ufa", "dev", Timestamp(50)).await.unwrap();
    assert!(store.is_device_remembered("00ufa", "dev", Timestamp(49)).await.unwrap());
    assert!(!store.is_device_remembered("00ufa", "dev", Timestamp(50)).await.unwrap());
    assert_eq!(store.delete_user_factors("00ufa").await.unwrap(), 1);
    assert!(!store.is_device_remembered("00ufa", "dev", Timestamp(1)).await.unwrap());
}

async fn futures_join(store: &Store, factor_id: &str, step: i64) -> Vec<bool> {
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let store = store.clone();
            let id = factor_id.to_owned();
            tokio::spawn(async move { store.record_totp_step(&id, step).await.unwrap() })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

pub async fn rate_windows_count_atomically(store: &Store) {
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.hit("authn:ip:1", Timestamp(1_000)).await.unwrap() })
        })
        .collect();
    let mut counts = Vec::new();
    for task in tasks {
        counts.push(task.await.unwrap());
    }
    counts.sort_unstable();
    assert_eq!(counts, (1..=10).collect::<Vec<i64>>(), "every hit counted once");
    assert_eq!(store.hit("authn:ip:1", Timestamp(2_000)).await.unwrap(), 1, "a new window starts over");
    assert_eq!(store.hit("authn:ip:2", Timestamp(2_000)).await.unwrap(), 1, "buckets are separate");
}

pub async fn policies_are_seeded_once_and_updated_with_guard(store: &Store) {
    let row = |id: &str, kind: PolicyKind| PolicyRow {
        id: id.into(),
        rule_id: format!("0pr{id}"),
        kind,
        settings: kind.default_settings(),
        created: Timestamp(1),
        last_updated: Timestamp(1),
        version: 1,
    };
    let first: Vec<PolicyRow> =
        PolicyKind::ALL.iter().map(|k| row(&format!("00p{}", k.as_str()), *k)).collect();
    store.ensure_policies(&first).await.unwrap();
    let racing: Vec<PolicyRow> =
        PolicyKind::ALL.iter().map(|k| row(&format!("00pother{}", k.as_str()), *k)).collect();
    store.ensure_policies(&racing).await.unwrap();
    let rows = store.policy_rows().await.unwrap();
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r.id.starts_with("00pPASSWORD")
        || r.id.starts_with("00pMFA")
        || r.id.starts_with("00pOKTA")));
    let mut settings = latchkey_core::policy::PasswordPolicy::default();
    settings.complexity.min_length = 12;
    let json = serde_json::to_string(&settings).unwrap();
    store.update_policy(PolicyKind::Password, &json, Timestamp(5), 1).await.unwrap();
    assert_eq!(
        store.update_policy(PolicyKind::Password, &json, Timestamp(6), 1).await.unwrap_err(),
        StoreError::Stale
    );
    assert_eq!(store.password_policy().await.unwrap().complexity.min_length, 12);
}

pub async fn purge_removes_only_expired(store: &Store) {
    store.insert_user(&user("00upg", "pg@example.com")).await.unwrap();
    store.insert_session_token(&session_token("old", "00upg", 100)).await.unwrap();
    store.insert_session_token(&session_token("new", "00upg", 10_000)).await.unwrap();
    let stored = StoredTransaction {
        digest: "txo".into(),
        tx: transaction("00upg"),
        expires_at: Timestamp(100),
        version: 1,
    };
    store.insert_transaction(&stored).await.unwrap();
    assert_eq!(store.purge_expired(Timestamp(5_000)).await.unwrap(), 2);
    assert!(store.consume_session_token("new", Timestamp(5_000)).await.unwrap().is_some());
}

pub async fn trusted_origins_are_unique_and_replaceable(store: &Store) {
    let origin = TrustedOrigin {
        id: "tos1".into(),
        name: "App".into(),
        origin: "https://app.example.com".into(),
        scopes: vec![Scope::Cors, Scope::Redirect],
        active: true,
        created: Timestamp(1),
        last_updated: Timestamp(1),
    };
    store.put_trusted_origin(&origin).await.unwrap();
    assert_eq!(store.find_trusted_origin("https://app.example.com").await.unwrap(), Some(origin.clone()));
    let mut twin = origin.clone();
    twin.id = "tos2".into();
    assert_eq!(store.put_trusted_origin(&twin).await.unwrap_err(), StoreError::Conflict("origin".into()));
    let mut changed = origin.clone();
    changed.scopes = vec![Scope::Redirect];
    changed.active = false;
    store.put_trusted_origin(&changed).await.unwrap();
    assert_eq!(store.list_trusted_origins().await.unwrap(), vec![changed]);
    assert!(store.delete_trusted_origin("tos1").await.unwrap());
    assert!(!store.delete_trusted_origin("tos1").await.unwrap());
    assert_eq!(store.find_trusted_origin("https://app.example.com").await.unwrap(), None);
}

pub fn session(id: &str, user_id: &str, expires_at: i64, lifetime: Option<i64>) -> Session {
    Session {
        id: id.into(),
        cookie_digest: format!("cookie-{id}"),
        user_id: user_id.into(),
        amr: vec!["pwd".into(), "otp".into(), "mfa".into()],
        created: Timestamp(1_000),
        expires_at: Timestamp(expires_at),
        lifetime_ends_at: lifetime.map(Timestamp),
        last_activity: Timestamp(1_000),
        password_verified_at: Some(Timestamp(900)),
        factor_verified_at: None,
        persistent: false,
    }
}

pub async fn sessions_live_slide_and_end_for_every_reader(store: &Store) {
    store.insert_user(&user("00use", "se@example.com")).await.unwrap();
    let a = session("102a", "00use", 10_000, Some(20_000));
    store.insert_session(&a).await.unwrap();
    store.insert_session(&session("102b", "00use", 10_000, None)).await.unwrap();
    store.insert_session(&session("102c", "00use", 10_000, None)).await.unwrap();
    assert_eq!(store.find_session("102a", Timestamp(5_000)).await.unwrap(), Some(a.clone()));
    let (by_cookie, owner) =
        store.find_session_by_cookie("cookie-102a", Timestamp(5_000)).await.unwrap().unwrap();
    assert_eq!(
        (by_cookie, owner.login()),
        (a.clone(), "se@example.com"),
        "the session and its user, in one read"
    );
    assert_eq!(store.find_session("102a", Timestamp(10_000)).await.unwrap(), None, "idle expiry");

    assert!(store.touch_session("102a", Timestamp(30_000), Timestamp(9_000)).await.unwrap());
    assert!(store.find_session("102a", Timestamp(15_000)).await.unwrap().is_some(), "slid");
    assert_eq!(
        store.find_session("102a", Timestamp(20_000)).await.unwrap(),
        None,
        "absolute lifetime still ends it"
    );
    assert!(
        !store.touch_session("102a", Timestamp(90_000), Timestamp(25_000)).await.unwrap(),
        "dead sessions stay dead"
    );

    assert!(store.end_session("102b", EndReason::Logout, Timestamp(5_000)).await.unwrap());
    assert!(!store.end_session("102b", EndReason::Logout, Timestamp(5_000)).await.unwrap(), "already ended");
    assert_eq!(store.find_session_by_cookie("cookie-102b", Timestamp(5_001)).await.unwrap(), None);

    store.insert_session(&session("102d", "00use", 10_000, None)).await.unwrap();
    let mut ended = store
        .end_user_sessions("00use", Some("102d"), EndReason::AdminRevoke, Timestamp(6_000))
        .await
        .unwrap();
    ended.sort();
    assert_eq!(ended, ["102a", "102c"], "only live sessions other than the kept one");
    let left: Vec<String> = store
        .list_user_sessions("00use", Timestamp(6_000))
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(left, ["102d"]);
    store.insert_session(&session("102e", "00use", 7_000, Some(6_500))).await.unwrap();
    let expired = store.expire_sessions(Timestamp(50_000)).await.unwrap();
    let e = expired.iter().find(|(id, _, _)| id == "102e").unwrap();
    assert_eq!(
        (e.1.as_str(), e.2),
        ("00use", Timestamp(6_500)),
        "ended when the lifetime ran out, not when swept"
    );
    assert!(store.expire_sessions(Timestamp(50_000)).await.unwrap().is_empty(), "once");
    assert_eq!(store.org_setting("org_id", "00oFIRST").await.unwrap(), "00oFIRST");
    assert_eq!(store.org_setting("org_id", "00oSECOND").await.unwrap(), "00oFIRST", "first writer wins");
}

pub async fn failed_sign_ins_count_atomically_and_lock_once(store: &Store) {
    store.insert_user(&user("00ulock", "lock@example.com")).await.unwrap();
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store.record_failed_sign_in("00ulock", 5, Timestamp(10_000 + i)).await.unwrap().unwrap()
            })
        })
        .collect();
    let mut locked_now = 0;
    for task in tasks {
        let u = task.await.unwrap();
        if u.status == UserStatus::LockedOut && u.locked_at == Some(u.last_updated) && u.failed_attempts == 5
        {
            locked_now += 1;
        }
    }
    assert_eq!(locked_now, 1, "exactly one failure locks the user");
    let u = store.find_user("00ulock").await.unwrap().unwrap();
    assert_eq!((u.failed_attempts, u.status), (10, UserStatus::LockedOut));
    store.record_sign_in("00ulock", Timestamp(20_000)).await.unwrap();
    let u = store.find_user("00ulock").await.unwrap().unwrap();
    assert_eq!((u.failed_attempts, u.last_login), (0, Some(Timestamp(20_000))));
    assert_eq!(store.record_failed_sign_in("00unone", 5, Timestamp(1)).await.unwrap(), None);
}

pub async fn events_are_listed_in_order_with_filters_and_cursor(store: &Store) {
    for i in 0..5 {
        let kind = if i % 2 == 0 { "user.session.start" } else { "user.session.end" };
        let event = Event::new(kind, "m", "SUCCESS", Actor::user("00ua", "a@example.com"), Timestamp(1_000))
            .target(Target::new(&format!("102s{i}"), "Session", "a@example.com"));
        store.insert_event(&event).await.unwrap();
    }
    let all = store.list_events(&LogQuery { limit: 10, ..Default::default() }).await.unwrap();
    let targets: Vec<String> = all.iter().map(|(_, e)| e.targets[0].id.clone()).collect();
    assert_eq!(
        targets,
        ["102s0", "102s1", "102s2", "102s3", "102s4"],
        "in the order written, same millisecond"
    );
    let page =
        store.list_events(&LogQuery { limit: 2, after: Some(all[1].0), ..Default::default() }).await.unwrap();
    assert_eq!(page.iter().map(|(_, e)| e.targets[0].id.as_str()).collect::<Vec<_>>(), ["102s2", "102s3"]);
    let filter = vec![vec![(LogField::EventType, "user.session.end".to_owned())]];
    let ends = store.list_events(&LogQuery { limit: 10, filter, ..Default::default() }).await.unwrap();
    assert_eq!(ends.len(), 2);
    let window = store
        .list_events(&LogQuery { limit: 10, since: Some(Timestamp(1_001)), ..Default::default() })
        .await
        .unwrap();
    assert!(window.is_empty());
    assert_eq!(all[0].1.actor.alternate_id, "a@example.com");
}

pub async fn event_batches_keep_order_and_are_all_or_nothing(store: &Store) {
    let event = |i: usize| {
        Event::new(
            "user.authentication.sso",
            "m",
            "SUCCESS",
            Actor::user("00ub", "b@example.com"),
            Timestamp(7),
        )
        .target(Target::new(&format!("0oa{i:03}"), "AppInstance", "App"))
    };
    // More rows than one INSERT statement carries: several statements, one transaction.
    let batch: Vec<Event> = (0..150).map(event).collect();
    store.insert_events(&batch).await.unwrap();
    let all = store.list_events(&LogQuery { limit: 200, ..Default::default() }).await.unwrap();
    let targets: Vec<String> = all.iter().map(|(_, e)| e.targets[0].id.clone()).collect();
    let expected: Vec<String> = (0..150).map(|i| format!("0oa{i:03}")).collect();
    assert_eq!(targets, expected, "every event, in the order given");
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "cursors increase");
    // A duplicate id in the last statement of a batch: nothing of the batch is written.
    let mut failing: Vec<Event> = (150..300).map(event).collect();
    failing[149].id = failing[0].id.clone();
    assert!(store.insert_events(&failing).await.is_err());
    let after = store.list_events(&LogQuery { limit: 400, ..Default::default() }).await.unwrap();
    assert_eq!(after.len(), 150, "a failed batch leaves no partial write");
}

pub fn saml_app(id: &str, name: &str, label: &str) -> App {
    let sign_on = SamlSignOn::from_json(&json!({
        "ssoAcsUrl": "https://sp.example.com/acs",
        "audience": "https://sp.example.com/metadata",
        "attributeStatements": [{"type": "EXPRESSION", "name": "mail", "values": ["user.email"]}],
    }))
    .unwrap();
    App {
        id: id.to_owned(),
        name: name.to_owned(),
        label: label.to_owned(),
        status: AppStatus::Active,
        external_key: format!("exk{id}"),
        link_id: format!("aln{id}"),
        sign_on: SignOn::Saml2(sign_on),
        visibility: serde_json::Map::new(),
        created: Timestamp(1_000),
        last_updated: Timestamp(1_000),
    }
}

pub async fn apps_assignments_and_links_cascade(store: &Store) {
    let wiki = saml_app("0oa1", "latchkey_wiki_1", "Wiki");
    store.insert_app(&wiki).await.unwrap();
    store
        .insert_app(&saml_app("0oa2", "latchkey_crm_1", "CRM \u{1F600} '; DROP TABLE apps; --"))
        .await
        .unwrap();
    let clash = store.insert_app(&saml_app("0oa3", "latchkey_wiki_1", "Wiki")).await;
    assert_eq!(clash, Err(StoreError::Conflict("name".into())), "names are unique");
    assert_eq!(store.find_app("0oa1").await.unwrap(), Some(wiki.clone()));
    assert_eq!(store.find_app("exk0oa1").await.unwrap(), Some(wiki.clone()), "by external key");
    let ids = |query: AppQuery| async move {
        store.list_apps(&query).await.unwrap().into_iter().map(|a| a.id).collect::<Vec<String>>()
    };
    let page = |limit: u32| AppQuery { limit, ..AppQuery::default() };
    assert_eq!(ids(page(1)).await, ["0oa1"]);
    assert_eq!(ids(AppQuery { after: Some("0oa1".into()), ..page(10) }).await, ["0oa2"]);
    // Conditions apply before the page is cut (the first match is not on the first page of all).
    assert_eq!(ids(AppQuery { q: Some("crm".into()), ..page(1) }).await, ["0oa2"], "label prefix, any case");
    assert_eq!(ids(AppQuery { q: Some("latchkey_crm".into()), ..page(1) }).await, ["0oa2"], "name prefix");
    assert!(ids(AppQuery { q: Some("rm".into()), ..page(10) }).await.is_empty(), "a prefix, not a substring");
    assert!(ids(AppQuery { q: Some("%".into()), ..page(10) }).await.is_empty(), "wildcards are plain text");
    assert!(ids(AppQuery { q: Some("_".into()), ..page(10) }).await.is_empty(), "wildcards are plain text");
    assert_eq!(ids(AppQuery { name: Some("latchkey_crm_1".into()), ..page(1) }).await, ["0oa2"]);
    assert!(ids(AppQuery { status: Some(AppStatus::Inactive), ..page(10) }).await.is_empty());

    let mut renamed = wiki.clone();
    renamed.label = "Team Wiki".into();
    renamed.status = AppStatus::Inactive;
    assert!(store.update_app(&renamed).await.unwrap());
    assert_eq!(store.find_app("0oa1").await.unwrap().unwrap().label, "Team Wiki");

    store.insert_user(&user("00uapp", "app@example.com")).await.unwrap();
    let assignment = AppUser {
        app_id: "0oa1".into(),
        user_id: "00uapp".into(),
        scope: "USER".into(),
        user_name: None,
        created: Timestamp(5),
        last_updated: Timestamp(5),
    };
    store.put_app_user(&assignment).await.unwrap();
    store.put_app_user(&AppUser { app_id: "0oa2".into(), ..assignment.clone() }).await.unwrap();
    let updated = AppUser { user_name: Some("ada".into()), last_updated: Timestamp(9), ..assignment.clone() };
    store.put_app_user(&updated).await.unwrap();
    assert_eq!(store.find_app_user("0oa1", "00uapp").await.unwrap(), Some(updated.clone()), "upsert");
    let apps: Vec<String> =
        store.list_user_apps("00uapp").await.unwrap().into_iter().map(|(a, _)| a.label).collect();
    assert_eq!(apps.len(), 2);
    assert_eq!(store.list_app_users("0oa1", None, 10).await.unwrap(), vec![updated]);
    store.insert_user(&user("00uother", "other@example.com")).await.unwrap();
    store.put_app_user(&AppUser { user_id: "00uother".into(), ..assignment.clone() }).await.unwrap();
    let assigned = |user_id: &str| AppQuery { user_id: Some(user_id.into()), ..page(10) };
    assert_eq!(ids(assigned("00uapp")).await, ["0oa1", "0oa2"]);
    assert_eq!(ids(assigned("00uother")).await, ["0oa1"]);
    let both = AppQuery { status: Some(AppStatus::Inactive), ..assigned("00uother") };
    assert_eq!(ids(both).await, ["0oa1"], "renamed above: inactive");
    assert!(ids(AppQuery { status: Some(AppStatus::Active), ..assigned("00uother") }).await.is_empty());

    assert!(store.delete_app("0oa1").await.unwrap());
    assert_eq!(store.find_app_user("0oa1", "00uapp").await.unwrap(), None, "assignments go with the app");
    assert!(!store.delete_app("0oa1").await.unwrap());
    store.delete_user("00uapp").await.unwrap();
    assert!(store.list_app_users("0oa2", None, 10).await.unwrap().is_empty(), "and with the user");
}

fn key(kid: &str, status: KeyStatus, created: i64) -> StoredSigningKey {
    StoredSigningKey {
        kid: kid.into(),
        status,
        sealed_private_key: format!("v1:sealed-{kid}"),
        certificate_der: vec![0x30, 0x82, 1, 2, 3],
        created: Timestamp(created),
    }
}

pub async fn signing_keys_have_one_active_and_promote_atomically(store: &Store) {
    assert!(!store.promote_next_signing_key().await.unwrap(), "nothing to promote");
    store.insert_signing_key(&key("k1", KeyStatus::Active, 1)).await.unwrap();
    let second_active = store.insert_signing_key(&key("k2", KeyStatus::Active, 2)).await;
    assert_eq!(second_active, Err(StoreError::Conflict("status".into())), "one ACTIVE key");
    store.insert_signing_key(&key("k2", KeyStatus::Next, 2)).await.unwrap();
    let second_next = store.insert_signing_key(&key("k3", KeyStatus::Next, 3)).await;
    assert_eq!(second_next, Err(StoreError::Conflict("status".into())), "one NEXT key");
    assert!(store.promote_next_signing_key().await.unwrap());
    let keys = store.list_signing_keys().await.unwrap();
    let status: Vec<(String, KeyStatus)> = keys.iter().map(|k| (k.kid.clone(), k.status)).collect();
    assert_eq!(status, vec![("k2".into(), KeyStatus::Active), ("k1".into(), KeyStatus::Previous)]);
    assert_eq!(keys[0].certificate_der, vec![0x30, 0x82, 1, 2, 3]);
    assert!(!store.promote_next_signing_key().await.unwrap(), "no NEXT key left");
    store.insert_signing_key(&key("k3", KeyStatus::Next, 3)).await.unwrap();
    assert!(store.promote_next_signing_key().await.unwrap());
    let status: Vec<(String, KeyStatus)> =
        store.list_signing_keys().await.unwrap().iter().map(|k| (k.kid.clone(), k.status)).collect();
    assert_eq!(
        status,
        vec![
            ("k3".into(), KeyStatus::Active),
            ("k2".into(), KeyStatus::Previous),
            ("k1".into(), KeyStatus::Retired)
        ],
        "the key before the previous one is retired"
    );
    assert!(store.retire_previous_signing_key().await.unwrap());
    assert!(!store.retire_previous_signing_key().await.unwrap(), "nothing left to retire");
}

pub async fn saml_request_ids_refuse_replays_until_purged(store: &Store) {
    let results = futures_all(store, "0oa1", "_req1").await;
    assert_eq!(results.iter().filter(|r| **r).count(), 1, "exactly one of concurrent uses wins: {results:?}");
    assert!(store.remember_saml_request("0oa2", "_req1", Timestamp(100)).await.unwrap(), "ids are per app");
    store.purge_saml(Timestamp(100)).await.unwrap();
    assert!(
        store.remember_saml_request("0oa1", "_req1", Timestamp(200)).await.unwrap(),
        "forgotten after expiry"
    );
    // Thirty distinct ids and ten repeats at once (they share statements): each id once.
    let tasks: Vec<_> = (0..30)
        .chain(0..10)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store.remember_saml_request("0oa3", &format!("_many{i}"), Timestamp(100)).await.unwrap()
            })
        })
        .collect();
    let mut recorded = 0;
    for task in tasks {
        recorded += usize::from(task.await.unwrap());
    }
    assert_eq!(recorded, 30, "every distinct id once, no repeat");
}

async fn futures_all(store: &Store, app: &str, id: &str) -> Vec<bool> {
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let store = store.clone();
            let (app, id) = (app.to_owned(), id.to_owned());
            tokio::spawn(async move { store.remember_saml_request(&app, &id, Timestamp(100)).await.unwrap() })
        })
        .collect();
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

pub async fn sso_state_is_shared_and_single_use(store: &Store) {
    store.insert_app(&saml_app("0oa1", "latchkey_wiki_1", "Wiki")).await.unwrap();
    let pending = PendingSso {
        id_digest: "d1".into(),
        app_id: "0oa1".into(),
        request_id: "_r1".into(),
        acs_url: "https://sp.example.com/acs".into(),
        relay_state: Some("<&>".into()),
        force_authn: true,
        name_id_format: None,
        created: Timestamp(10),
        expires_at: Timestamp(100),
    };
    store.put_pending_sso(&pending).await.unwrap();
    assert_eq!(store.find_pending_sso("d1", Timestamp(50)).await.unwrap(), Some(pending));
    assert_eq!(store.find_pending_sso("d1", Timestamp(100)).await.unwrap(), None, "expired");
    assert!(store.delete_pending_sso("d1").await.unwrap());
    assert!(!store.delete_pending_sso("d1").await.unwrap(), "answered once");

    store.insert_user(&user("00uslo", "slo@example.com")).await.unwrap();
    store.insert_session(&session("102s", "00uslo", 10_000, None)).await.unwrap();
    let participant = Participant {
        session_id: "102s".into(),
        app_id: "0oa1".into(),
        name_id: "slo@example.com".into(),
        name_id_format: "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified".into(),
        session_index: "_idx1".into(),
        created: Timestamp(20),
    };
    assert_eq!(store.add_participant(&participant).await.unwrap(), participant);
    let kept = store
        .add_participant(&Participant { session_index: "_idx2".into(), ..participant.clone() })
        .await
        .unwrap();
    assert_eq!(kept, participant, "the record kept is the one returned");
    assert_eq!(
        store.list_participants("102s").await.unwrap(),
        vec![participant.clone()],
        "first record kept"
    );
    assert_eq!(store.find_participant("102s", "0oa1").await.unwrap(), Some(participant.clone()));
    assert_eq!(store.find_participant_by_index("0oa1", "_idx1").await.unwrap(), Some(participant.clone()));
    assert_eq!(store.find_participant_by_index("0oa1", "_idx2").await.unwrap(), None);
    assert_eq!(store.find_sso_grant("0oa1", "00uslo", "102s").await.unwrap(), None, "not assigned: no grant");
    let assignment = AppUser {
        app_id: "0oa1".into(),
        user_id: "00uslo".into(),
        scope: "USER".into(),
        user_name: None,
        created: Timestamp(1),
        last_updated: Timestamp(1),
    };
    store.put_app_user(&assignment).await.unwrap();
    assert_eq!(
        store.find_sso_grant("0oa1", "00uslo", "102s").await.unwrap(),
        Some(Some(participant.clone()))
    );
    assert_eq!(store.find_sso_grant("0oa1", "00uslo", "102other").await.unwrap(), Some(None), "first visit");

    let mut walk = LogoutWalk {
        id_digest: "w1".into(),
        initiator_app_id: Some("0oa1".into()),
        initiator_request_id: Some("_lr".into()),
        initiator_relay_state: None,
        return_to: None,
        remaining: vec![participant],
        awaiting_request_id: None,
        awaiting_app_id: None,
        partial: false,
        expires_at: Timestamp(100),
    };
    store.put_logout_walk(&walk).await.unwrap();
    walk.remaining.clear();
    walk.awaiting_request_id = Some("_sent".into());
    walk.awaiting_app_id = Some("0oa2".into());
    store.put_logout_walk(&walk).await.unwrap();
    assert_eq!(store.find_logout_walk("w1", Timestamp(50)).await.unwrap(), Some(walk.clone()), "replaced");
    assert_eq!(store.purge_saml(Timestamp(100)).await.unwrap(), 1);
    assert_eq!(store.find_logout_walk("w1", Timestamp(0)).await.unwrap(), None);
}

fn group(id: &str, name: &str) -> Group {
    Group {
        id: id.into(),
        kind: GroupType::Okta,
        name: name.into(),
        description: Some(format!("{name} team")),
        created: Timestamp(10),
        last_updated: Timestamp(10),
        last_membership_updated: Timestamp(10),
    }
}

async fn member_ids(store: &Store, group_id: &str) -> Vec<String> {
    store.list_members(group_id, None, 100).await.unwrap().into_iter().map(|u| u.id).collect()
}

async fn group_names(store: &Store, query: GroupQuery) -> Vec<String> {
    store
        .list_groups(&GroupQuery { limit: 100, ..query })
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.name)
        .collect()
}

pub async fn groups_are_unique_by_name_and_everyone_holds_every_user(store: &Store) {
    store.insert_user(&user("00ubefore", "before@example.com")).await.unwrap();
    let everyone = store.everyone_group().await.unwrap();
    assert_eq!((everyone.kind, everyone.name.as_str()), (GroupType::BuiltIn, "Everyone"));
    assert!(everyone.id.starts_with("00g") && everyone.id.len() == 20, "{}", everyone.id);
    store.insert_user(&user("00uafter", "after@example.com")).await.unwrap();
    assert_eq!(member_ids(store, &everyone.id).await, ["00uafter", "00ubefore"], "new and existing users");

    store.insert_group(&group("00geng", "Engineering")).await.unwrap();
    assert_eq!(
        store.insert_group(&group("00gdup", "ENGINEERING")).await,
        Err(StoreError::Conflict("name".into())),
        "names are unique without regard to case"
    );
    store.insert_group(&group("00gsales", "Sales \u{1F600} '; DROP TABLE user_groups; --")).await.unwrap();
    let mut renamed = group("00geng", "Engineers");
    renamed.last_updated = Timestamp(20);
    assert!(store.update_group(&renamed).await.unwrap());
    assert_eq!(store.find_group("00geng").await.unwrap(), Some(renamed.clone()));
    assert!(!store.update_group(&group("00gnone", "Nobody")).await.unwrap());

    let prefix = |q: &str| GroupQuery::default().with_prefix(q).unwrap();
    assert_eq!(group_names(store, prefix("eng")).await, ["Engineers"]);
    assert!(group_names(store, prefix("%")).await.is_empty(), "wildcards are plain text");
    let search = |e: &str| GroupQuery::default().with_condition(e).unwrap();
    assert_eq!(group_names(store, search(r#"type eq "BUILT_IN""#)).await, ["Everyone"]);
    assert_eq!(
        group_names(store, search(r#"profile.name sw "sales" and type eq "OKTA_GROUP""#)).await.len(),
        1
    );
    assert_eq!(
        group_names(store, search(r#"lastUpdated gt "1970-01-01T00:00:00.015Z" and type eq "OKTA_GROUP""#))
            .await,
        ["Engineers"]
    );
    let page = store.list_groups(&GroupQuery { limit: 1, ..GroupQuery::default() }).await.unwrap();
    let after = GroupQuery { after: Some(page[0].id.clone()), limit: 100, ..GroupQuery::default() };
    assert_eq!(store.list_groups(&after).await.unwrap().len(), 2, "the cursor pages by id");

    assert!(!store.delete_group(&everyone.id).await.unwrap(), "Everyone stays");
    assert!(store.delete_group("00gsales").await.unwrap());
    assert_eq!(store.find_group("00gsales").await.unwrap(), None);
}

pub async fn memberships_record_their_source_and_races_agree(store: &Store) {
    store.insert_user(&user("00um", "m@example.com")).await.unwrap();
    store.insert_group(&group("00gg", "Group")).await.unwrap();
    assert!(store.add_member("00gg", "00um", None, Timestamp(30)).await.unwrap(), "joined");
    assert!(!store.add_member("00gg", "00um", None, Timestamp(31)).await.unwrap(), "idempotent");
    assert!(
        !store.add_member("00gg", "00um", Some("0prA"), Timestamp(32)).await.unwrap(),
        "already a member"
    );
    assert_eq!(store.find_group("00gg").await.unwrap().unwrap().last_membership_updated, Timestamp(30));
    assert_eq!(store.membership_sources("00gg", "00um").await.unwrap(), [None, Some("0prA".to_owned())]);
    let everyone = store.everyone_group().await.unwrap().id;
    let mut rows =
        vec![(everyone, None), ("00gg".to_owned(), None), ("00gg".to_owned(), Some("0prA".to_owned()))];
    rows.sort();
    assert_eq!(store.user_memberships("00um").await.unwrap(), rows, "every row, with its source");
    assert!(
        !store.remove_member("00gg", "00um", None, Timestamp(40)).await.unwrap(),
        "the rule keeps them in"
    );
    assert_eq!(member_ids(store, "00gg").await, ["00um"]);
    assert_eq!(
        store.remove_rule_memberships("0prA", Timestamp(41)).await.unwrap(),
        [("00gg".to_owned(), "00um".to_owned())]
    );
    assert!(member_ids(store, "00gg").await.is_empty());
    assert_eq!(store.find_group("00gg").await.unwrap().unwrap().last_membership_updated, Timestamp(41));
    assert_eq!(
        store.add_member("00gnone", "00um", None, Timestamp(42)).await,
        Err(StoreError::Gone("group".into())),
        "no membership of a group that is not there"
    );
    assert_eq!(
        store.add_member("00gg", "00unone", None, Timestamp(42)).await,
        Err(StoreError::Gone("user".into())),
        "nor of a user that is not there"
    );

    // Several writers adding and removing the same membership at once: each answer is consistent
    // with the final state, and at most one add reports joining per removal that reports leaving.
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                if i % 2 == 0 {
                    (true, store.add_member("00gg", "00um", None, Timestamp(50 + i)).await.unwrap())
                } else {
                    (false, store.remove_member("00gg", "00um", None, Timestamp(50 + i)).await.unwrap())
                }
            })
        })
        .collect();
    let (mut joins, mut leaves) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            (true, true) => joins += 1,
            (false, true) => leaves += 1,
            _ => {}
        }
    }
    let member = !member_ids(store, "00gg").await.is_empty();
    assert_eq!(
        joins - leaves,
        i32::from(member),
        "joins {joins}, leaves {leaves}, member at the end {member}"
    );
    assert!(store.membership_sources("00gg", "00um").await.unwrap().len() <= 1);

    store.add_member("00gg", "00um", Some("0prB"), Timestamp(60)).await.unwrap();
    store.keep_rule_memberships("0prB").await.unwrap();
    assert_eq!(store.membership_sources("00gg", "00um").await.unwrap(), [None], "kept as an administrator's");
    let names: Vec<String> =
        store.user_group_refs("00um").await.unwrap().into_iter().map(|g| g.name).collect();
    assert_eq!(names, ["Everyone", "Group"]);
    store.delete_user("00um").await.unwrap();
    assert!(member_ids(store, "00gg").await.is_empty(), "memberships go with the user");
}

/// The names of `user_id`'s groups once they equal `expected`: at once where the store evicts its
/// own cache (SQLite), within three seconds where a notification does (PostgreSQL, for changes
/// that end no access and so do not wait for every node).
async fn until_group_names(store: &Store, user_id: &str, expected: &[&str], what: &str) {
    let start = std::time::Instant::now();
    loop {
        let names: Vec<String> =
            store.user_group_refs(user_id).await.unwrap().into_iter().map(|g| g.name).collect();
        if names == expected {
            return;
        }
        assert!(
            store.backend() == latchkey_store::Backend::Postgres
                && start.elapsed() < std::time::Duration::from_secs(3),
            "{what}: {names:?}, expected {expected:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

pub async fn a_users_groups_follow_memberships_and_renames(store: &Store) {
    store.insert_user(&user("00uc", "c@example.com")).await.unwrap();
    store.insert_session(&session("103s", "00uc", 60_000, None)).await.unwrap();
    // A session checked is a session cached, and with it the user's groups once read.
    assert!(store.find_session_by_cookie("cookie-103s", Timestamp(5_000)).await.unwrap().is_some());
    until_group_names(store, "00uc", &["Everyone"], "a new user").await;
    store.insert_group(&group("00gc", "Cashiers")).await.unwrap();
    store.add_member("00gc", "00uc", None, Timestamp(30)).await.unwrap();
    until_group_names(store, "00uc", &["Cashiers", "Everyone"], "after joining").await;
    assert!(store.update_group(&group("00gc", "Tellers")).await.unwrap());
    until_group_names(store, "00uc", &["Everyone", "Tellers"], "after the rename").await;
    store.remove_member("00gc", "00uc", None, Timestamp(31)).await.unwrap();
    let names: Vec<String> =
        store.user_group_refs("00uc").await.unwrap().into_iter().map(|g| g.name).collect();
    assert_eq!(names, ["Everyone"], "a membership that went is gone at once, on every backend");
    store.add_member("00gc", "00uc", None, Timestamp(32)).await.unwrap();
    until_group_names(store, "00uc", &["Everyone", "Tellers"], "after joining again").await;
    assert!(store.delete_group("00gc").await.unwrap());
    let names: Vec<String> =
        store.user_group_refs("00uc").await.unwrap().into_iter().map(|g| g.name).collect();
    assert_eq!(names, ["Everyone"], "a deleted group is gone at once");
}

pub async fn rules_are_stored_and_replaced(store: &Store) {
    let rule = GroupRule {
        id: "0prR".into(),
        name: "Engineers".into(),
        status: RuleStatus::Inactive,
        expression: "user.department == \"Engineering\"".into(),
        group_ids: vec!["00ga".into(), "00gb".into()],
        excluded_users: vec!["00ux".into()],
        created: Timestamp(1),
        last_updated: Timestamp(1),
    };
    store.put_rule(&rule).await.unwrap();
    let active = GroupRule { status: RuleStatus::Active, last_updated: Timestamp(2), ..rule.clone() };
    store.put_rule(&active).await.unwrap();
    assert_eq!(store.find_rule("0prR").await.unwrap(), Some(active.clone()));
    assert_eq!(
        store
            .put_rule(&GroupRule { id: "0prS".into(), ..rule.clone() })
            .await
            .map_err(|e| matches!(e, StoreError::Conflict(_))),
        Err(true),
        "rule names are unique"
    );
    assert_eq!(store.list_rules(None, 10).await.unwrap(), vec![active]);
    assert!(store.list_rules(Some("0prR"), 10).await.unwrap().is_empty());
    assert!(store.delete_rule("0prR").await.unwrap());
    assert!(!store.delete_rule("0prR").await.unwrap());
}

pub async fn apps_assigned_to_groups_reach_their_members(store: &Store) {
    store.insert_app(&saml_app("0oag", "latchkey_g_1", "Group app")).await.unwrap();
    store.insert_user(&user("00uin", "in@example.com")).await.unwrap();
    store.insert_user(&user("00uout", "out@example.com")).await.unwrap();
    store.insert_group(&group("00gteam", "Team")).await.unwrap();
    store.add_member("00gteam", "00uin", None, Timestamp(1)).await.unwrap();
    assert_eq!(store.find_sso_grant("0oag", "00uin", "102s").await.unwrap(), None, "not assigned yet");

    let assignment = AppGroup {
        app_id: "0oag".into(),
        group_id: "00gteam".into(),
        priority: 3,
        profile: serde_json::Map::new(),
        created: Timestamp(5),
        last_updated: Timestamp(5),
    };
    assert!(store.put_app_group(&assignment).await.unwrap(), "new");
    assert!(!store.put_app_group(&AppGroup { priority: 4, ..assignment.clone() }).await.unwrap(), "updated");
    assert_eq!(store.find_app_group("0oag", "00gteam").await.unwrap().unwrap().priority, 4);
    assert_eq!(store.find_sso_grant("0oag", "00uin", "102s").await.unwrap(), Some(None), "through the group");
    assert_eq!(store.find_sso_grant("0oag", "00uout", "102s").await.unwrap(), None);
    let users = store.list_app_users("0oag", None, 10).await.unwrap();
    assert_eq!(
        users.iter().map(|u| (u.user_id.as_str(), u.scope.as_str())).collect::<Vec<_>>(),
        [("00uin", "GROUP")]
    );
    assert_eq!(store.find_app_user("0oag", "00uin").await.unwrap().unwrap().scope, "GROUP");
    let links: Vec<(String, String)> =
        store.list_user_apps("00uin").await.unwrap().into_iter().map(|(a, u)| (a.id, u.scope)).collect();
    assert_eq!(links, [("0oag".to_owned(), "GROUP".to_owned())]);
    let filtered = AppQuery { user_id: Some("00uin".into()), limit: 10, ..AppQuery::default() };
    assert_eq!(store.list_apps(&filtered).await.unwrap().len(), 1, "user.id eq follows groups too");

    // A direct assignment wins over the group's in the listings.
    store
        .put_app_user(&AppUser {
            app_id: "0oag".into(),
            user_id: "00uin".into(),
            scope: "USER".into(),
            user_name: None,
            created: Timestamp(6),
            last_updated: Timestamp(6),
        })
        .await
        .unwrap();
    assert_eq!(store.list_app_users("0oag", None, 10).await.unwrap()[0].scope, "USER");
    assert_eq!(store.list_user_apps("00uin").await.unwrap().len(), 1, "listed once");
    store.delete_app_user("0oag", "00uin").await.unwrap();

    assert_eq!(store.list_app_groups("0oag", None, 10).await.unwrap().len(), 1);
    let apps: Vec<String> =
        store.list_group_apps("00gteam", None, 10).await.unwrap().into_iter().map(|a| a.id).collect();
    assert_eq!(apps, ["0oag"]);
    assert_eq!(store.group_stats("00gteam").await.unwrap(), GroupStats { users: 1, apps: 1 });
    assert!(store.delete_app_group("0oag", "00gteam").await.unwrap());
    assert!(!store.delete_app_group("0oag", "00gteam").await.unwrap());
    assert_eq!(store.find_sso_grant("0oag", "00uin", "102s").await.unwrap(), None, "unassigned: no access");

    store.put_app_group(&assignment).await.unwrap();
    assert!(store.delete_group("00gteam").await.unwrap());
    assert_eq!(
        store.put_app_group(&assignment).await,
        Err(StoreError::Gone("group".into())),
        "a group deleted before the write is gone, not a failure"
    );
    store.insert_group(&group("00gother", "Other")).await.unwrap();
    assert_eq!(
        store
            .put_app_group(&AppGroup { app_id: "0oanone".into(), group_id: "00gother".into(), ..assignment })
            .await,
        Err(StoreError::Gone("app".into())),
        "so is an app"
    );
    assert!(
        store.list_app_groups("0oag", None, 10).await.unwrap().is_empty(),
        "assignments go with the group"
    );
    assert_eq!(store.find_sso_grant("0oag", "00uin", "102s").await.unwrap(), None);
}

fn code_for(app_id: &str, expires_at: i64) -> latchkey_core::oidc::AuthorizationCode {
    latchkey_core::oidc::AuthorizationCode {
        app_id: app_id.to_owned(),
        server: latchkey_core::oidc::Server::Org,
        user_id: "00uoauth".to_owned(),
        session_id: "102oauth".to_owned(),
        redirect_uri: "https://rp.example.com/cb".to_owned(),
        scopes: vec!["openid".to_owned()],
        nonce: Some("n".to_owned()),
        code_challenge: None,
        auth_time: Timestamp(1_000),
        amr: vec!["pwd".to_owned()],
        expires_at: Timestamp(expires_at),
    }
}

/// Presents every code in `digests` at once (each a request of its own); how many were spent
/// first and how many were replays.
async fn redeem_at_once(store: &Store, digests: Vec<String>) -> (usize, usize) {
    use latchkey_core::oidc::Redeemed;
    use latchkey_core::store::OAuthStore;
    let attempts: Vec<_> = digests
        .into_iter()
        .map(|digest| {
            let store = store.clone();
            tokio::spawn(async move { store.redeem_code(&digest, Timestamp(1_000)).await.unwrap() })
        })
        .collect();
    let (mut first, mut again) = (0, 0);
    for attempt in attempts {
        match attempt.await.unwrap() {
            Redeemed::First(_) => first += 1,
            Redeemed::Again(_) => again += 1,
            Redeemed::Unknown => {}
        }
    }
    (first, again)
}

pub async fn oauth_codes_are_spent_once_and_replays_are_told_apart(store: &Store) {
    use latchkey_core::oidc::{IssuedToken, Redeemed, Revocation, TokenKind};
    use latchkey_core::store::OAuthStore;
    store.insert_user(&user("00uoauth", "oauth@example.com")).await.unwrap();
    store.insert_app(&saml_app("0oaoauth", "oauth_app", "OAuth")).await.unwrap();
    let code = code_for("0oaoauth", 60_000);
    store.insert_code("digest-1", &code).await.unwrap();
    // Eight requests present the same code at once: exactly one spends it.
    let digests = vec!["digest-1".to_owned(); 8];
    assert_eq!(redeem_at_once(store, digests).await, (1, 7));
    assert!(
        matches!(store.redeem_code("digest-1", Timestamp(2_000)).await.unwrap(), Redeemed::Again(c) if c == code)
    );
    assert_eq!(store.redeem_code("unknown", Timestamp(1_000)).await.unwrap(), Redeemed::Unknown);
    store.insert_code("digest-2", &code_for("0oaoauth", 5_000)).await.unwrap();
    assert_eq!(store.redeem_code("digest-2", Timestamp(5_000)).await.unwrap(), Redeemed::Unknown, "expired");

    // Twenty different codes spent at once (they share statements): each by its one request.
    for i in 0..20 {
        store.insert_code(&format!("batch-{i}"), &code_for("0oaoauth", 60_000)).await.unwrap();
    }
    let digests = (0..20).chain(0..5).map(|i| format!("batch-{i}")).collect();
    assert_eq!(redeem_at_once(store, digests).await, (20, 5), "five codes presented twice");

    let refresh = IssuedToken {
        id: "RT.1".to_owned(),
        kind: TokenKind::Refresh,
        app_id: "0oaoauth".to_owned(),
        server: latchkey_core::oidc::Server::Default,
        user_id: Some("00uoauth".to_owned()),
        session_id: Some("102oauth".to_owned()),
        family: "digest-1".to_owned(),
        scopes: vec!["openid".to_owned(), "offline_access".to_owned()],
        issued_at: Timestamp(1_000),
        auth_time: Some(Timestamp(900)),
        expires_at: Timestamp(3_600_000),
        rotated_at: None,
        revoked: false,
    };
    // Tokens for a replayed code are never written; for a code spent once they are.
    assert!(!store.insert_tokens_for_code("digest-1", std::slice::from_ref(&refresh)).await.unwrap());
    assert_eq!(store.find_token("RT.1").await.unwrap(), None);
    store.insert_code("digest-4", &code_for("0oaoauth", 60_000)).await.unwrap();
    assert!(matches!(store.redeem_code("digest-4", Timestamp(1_000)).await.unwrap(), Redeemed::First(_)));
    let other = IssuedToken { id: "RT.4".to_owned(), family: "digest-4".to_owned(), ..refresh.clone() };
    assert!(store.insert_tokens_for_code("digest-4", std::slice::from_ref(&other)).await.unwrap());
    assert!(store.find_token("RT.4").await.unwrap().is_some());
    store.insert_token(&refresh).await.unwrap();
    let sibling = IssuedToken { id: "RT.2".to_owned(), ..refresh.clone() };
    store.insert_token(&sibling).await.unwrap();
    assert_eq!(store.find_token("RT.1").await.unwrap().as_ref(), Some(&refresh));
    // A refresh token rotates once; a second rotation (a reuse, or a lost race) is refused.
    assert!(store.mark_rotated("RT.1", Timestamp(2_000)).await.unwrap());
    assert!(!store.mark_rotated("RT.1", Timestamp(2_001)).await.unwrap());
    assert_eq!(store.find_token("RT.1").await.unwrap().unwrap().rotated_at, Some(Timestamp(2_000)));

    // Revocations: a family's stored tokens and its key together; an access token by its jti.
    let family = Revocation::of_family("digest-1");
    let token = Revocation::Token("AT.one".to_owned());
    assert!(!store.is_revoked(&[family.clone(), token.clone()]).await.unwrap());
    assert_eq!(
        store.revoke_family("digest-1", Timestamp(3_600_000)).await.unwrap(),
        2,
        "the code's whole family"
    );
    assert!(store.find_token("RT.1").await.unwrap().unwrap().revoked);
    assert!(store.is_revoked(&[token.clone(), family.clone()]).await.unwrap());
    assert!(!store.is_revoked(std::slice::from_ref(&token)).await.unwrap());
    assert!(!store.is_revoked(&[Revocation::of_family("digest-4")]).await.unwrap(), "another family");
    assert_eq!(store.revoke_family("digest-1", Timestamp(3_600_000)).await.unwrap(), 0, "already revoked");
    store.revoke(std::slice::from_ref(&token), Timestamp(3_000_000)).await.unwrap();
    store.revoke(std::slice::from_ref(&token), Timestamp(10_000)).await.unwrap();
    assert!(store.is_revoked(std::slice::from_ref(&token)).await.unwrap());
    store.purge_oauth(Timestamp(2_000_000)).await.unwrap();
    assert!(
        store.is_revoked(std::slice::from_ref(&token)).await.unwrap(),
        "a second revocation with an earlier end keeps the later one"
    );
    assert!(store.is_revoked(std::slice::from_ref(&family)).await.unwrap());

    assert!(store.remember_assertion("0oaoauth", "jti-1", Timestamp(60_000)).await.unwrap());
    assert!(!store.remember_assertion("0oaoauth", "jti-1", Timestamp(60_000)).await.unwrap(), "a replay");

    // Purged once expired (a spent code is kept an hour longer to recognise replays).
    store.purge_oauth(Timestamp(3_600_000 + 60_000 + 1)).await.unwrap();
    assert!(store.find_token("RT.1").await.unwrap().is_none());
    assert!(
        !store.is_revoked(&[token, family]).await.unwrap(),
        "revocations go once nothing they name can live"
    );
    assert_eq!(store.redeem_code("digest-1", Timestamp(1_000)).await.unwrap(), Redeemed::Unknown);
    // Deleting the app takes its codes and tokens with it.
    store.insert_code("digest-3", &code_for("0oaoauth", 60_000)).await.unwrap();
    assert!(store.delete_app("0oaoauth").await.unwrap());
    assert_eq!(store.redeem_code("digest-3", Timestamp(1_000)).await.unwrap(), Redeemed::Unknown);
}

fn oidc_app(id: &str, backchannel: Option<&str>) -> App {
    let mut settings = json!({"redirect_uris": ["https://rp.example.com/cb"]});
    if let Some(uri) = backchannel {
        settings["backchannel_logout_uri"] = json!(uri);
    }
    let sign_on = latchkey_core::apps::OidcSignOn::from_api(&settings, None, Vec::new()).unwrap();
    App { sign_on: SignOn::Oidc(sign_on), name: format!("oidc_client_{id}"), ..saml_app(id, "unused", id) }
}

pub async fn an_ended_session_owes_each_app_with_a_back_channel_one_logout_notice(store: &Store) {
    use latchkey_core::oidc::{AuthorizationCode, Server};
    use latchkey_core::store::OAuthStore;
    store.insert_user(&user("00ubcl", "bcl@example.com")).await.unwrap();
    store.insert_app(&oidc_app("0oabcl1", Some("https://rp1.example.com/bcl"))).await.unwrap();
    store.insert_app(&oidc_app("0oabcl2", None)).await.unwrap();
    store.insert_session(&session("102bcl", "00ubcl", 60_000, None)).await.unwrap();
    store.insert_session(&session("102other", "00ubcl", 60_000, None)).await.unwrap();
    // Codes record their session's clients (twice for one app: one notice still).
    for (digest, app, session) in [
        ("d-b1", "0oabcl1", "102bcl"),
        ("d-b2", "0oabcl1", "102bcl"),
        ("d-b3", "0oabcl2", "102bcl"),
        ("d-b4", "0oabcl1", "102other"),
    ] {
        let code = AuthorizationCode {
            user_id: "00ubcl".into(),
            session_id: session.into(),
            ..code_for(app, 60_000)
        };
        store.insert_code(digest, &code).await.unwrap();
    }
    // The implicit flow records without a code; a session that is gone records nothing.
    store.record_session_client("102bcl", "0oabcl1", Server::Org, "00ubcl").await.unwrap();
    store.record_session_client("102gone", "0oabcl1", Server::Org, "00ubcl").await.unwrap();
    assert!(store.due_logout_notices(Timestamp(10_000), 10).await.unwrap().is_empty());
    assert!(store.end_session("102bcl", EndReason::ReplacedBySessionToken, Timestamp(5_000)).await.unwrap());
    let due = store.due_logout_notices(Timestamp(5_000), 10).await.unwrap();
    assert_eq!(due.len(), 1, "one notice for the app with a back channel, whatever its grants: {due:?}");
    let notice = &due[0];
    assert_eq!(
        (notice.app_id.as_str(), notice.session_id.as_str(), notice.user_id.as_deref()),
        ("0oabcl1", "102bcl", Some("00ubcl"))
    );
    assert_eq!((notice.server, notice.attempts, notice.created), (Server::Org, 0, Timestamp(5_000)));
    // Two nodes lease it at once: one wins.
    assert!(store.lease_logout_notice(notice, Timestamp(10_000)).await.unwrap());
    assert!(!store.lease_logout_notice(notice, Timestamp(10_000)).await.unwrap());
    assert!(
        store.due_logout_notices(Timestamp(9_999), 10).await.unwrap().is_empty(),
        "leased until the retry"
    );
    let again = store.due_logout_notices(Timestamp(10_000), 10).await.unwrap();
    assert_eq!(again[0].attempts, 1);
    store.delete_logout_notice(&again[0]).await.unwrap();
    assert!(store.due_logout_notices(Timestamp(99_000), 10).await.unwrap().is_empty());
    assert!(!store.end_session("102bcl", EndReason::Logout, Timestamp(6_000)).await.unwrap(), "ends once");
    assert!(store.due_logout_notices(Timestamp(99_000), 10).await.unwrap().is_empty(), "no second notice");
    // A session whose only grant was the implicit flow's is owed its notice too.
    store.insert_session(&session("102implicit", "00ubcl", 60_000, None)).await.unwrap();
    store.record_session_client("102implicit", "0oabcl1", Server::Default, "00ubcl").await.unwrap();
    assert!(store.end_session("102implicit", EndReason::Logout, Timestamp(7_000)).await.unwrap());
    let due = store.due_logout_notices(Timestamp(99_000), 10).await.unwrap();
    assert_eq!(
        due.iter().map(|n| (n.session_id.as_str(), n.server)).collect::<Vec<_>>(),
        [("102implicit", Server::Default)]
    );
}
