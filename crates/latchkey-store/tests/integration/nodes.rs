//! The session caches. Several PostgreSQL nodes on one database: each caches live sessions by
//! cookie, and a session ended (or a user changed) through one node is refused by every other node
//! as soon as the ending call returns. SQLite: one server per file, which evicts on its own writes. The triggers are switched off around some writes here, to change a row behind the
//! caches' backs and so see whether a node answered from its cache or from the database.

use std::time::{Duration, Instant};

use latchkey_core::Timestamp;
use latchkey_core::apps::AppUser;
use latchkey_core::sessions::EndReason;
use latchkey_core::signon::Participant;
use latchkey_core::store::SessionStore;
use latchkey_core::store::{AppStore, SignOnStore, UserStore};
use latchkey_core::users::UserStatus;
use latchkey_store::Store;

use crate::cases::{saml_app, session, user};

const NOW: Timestamp = Timestamp(5_000);

/// The amr that `node` reports for a session, by its cookie.
async fn amr_seen(node: &Store, id: &str) -> Option<Vec<String>> {
    node.find_session_by_cookie(&format!("cookie-{id}"), NOW).await.unwrap().map(|(s, _)| s.amr)
}

/// Changes a session's amr without telling any node (the eviction trigger is off meanwhile).
async fn change_behind_caches(admin: &sqlx::PgPool, id: &str, amr: &str) {
    let mut tx = admin.begin().await.unwrap();
    sqlx::query("ALTER TABLE sessions DISABLE TRIGGER sessions_evict").execute(&mut *tx).await.unwrap();
    sqlx::query("UPDATE sessions SET amr = $2 WHERE id = $1")
        .bind(id)
        .bind(amr)
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("ALTER TABLE sessions ENABLE TRIGGER sessions_evict").execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
}

/// Reads through `node` until it answers from its cache (a node serves from its cache once its
/// first heartbeat has come back and its lease is recorded: milliseconds after it starts). Each
/// attempt changes the row unannounced: an answer that did not change came from the cache (and the
/// row is then put back, so the database and the cache agree again).
async fn until_cached(node: &Store, admin: &sqlx::PgPool, id: &str) {
    let start = Instant::now();
    for attempt in 0.. {
        let before = amr_seen(node, id).await.expect("a live session");
        let probe = serde_json::json!(["pwd", format!("probe-{attempt}")]).to_string();
        change_behind_caches(admin, id, &probe).await;
        if amr_seen(node, id).await == Some(before.clone()) {
            change_behind_caches(admin, id, &serde_json::to_string(&before).unwrap()).await;
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "the node never answered from its cache");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `node` until it reports `amr` for the session, for at most three seconds.
async fn until_amr(node: &Store, id: &str, amr: &[&str], failure: &str) {
    let expected: Vec<String> = amr.iter().map(|a| (*a).to_owned()).collect();
    let start = Instant::now();
    while amr_seen(node, id).await.as_ref() != Some(&expected) {
        assert!(start.elapsed() < Duration::from_secs(3), "{failure}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn close_nodes(db: crate::support::PostgresDb, second: Store, admin: sqlx::PgPool) {
    second.close().await;
    admin.close().await;
    db.drop_schema().await;
}

async fn two_nodes() -> Option<(crate::support::PostgresDb, Store, sqlx::PgPool)> {
    let db = crate::support::postgres().await?;
    let second = db.another_node().await;
    let admin = db.admin().await;
    db.store.insert_user(&user("00una", "a@example.com")).await.unwrap();
    db.store.insert_user(&user("00unb", "b@example.com")).await.unwrap();
    for (id, owner) in [("20a1", "00una"), ("20a2", "00una"), ("20b1", "00unb")] {
        let mut s = session(id, owner, 60_000, None);
        s.amr = vec!["pwd".into()];
        db.store.insert_session(&s).await.unwrap();
    }
    Some((db, second, admin))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ended_on_one_node_is_refused_by_the_others_at_once() {
    let Some((db, second, admin)) = two_nodes().await else { return };
    for id in ["20a1", "20a2", "20b1"] {
        until_cached(&second, &admin, id).await;
        until_cached(&db.store, &admin, id).await;
    }

    assert!(db.store.end_session("20a1", EndReason::Logout, NOW).await.unwrap());
    assert_eq!(amr_seen(&second, "20a1").await, None, "ended on the first node, refused on the second");
    assert_eq!(amr_seen(&db.store, "20a1").await, None, "and on the first");
    assert!(amr_seen(&second, "20b1").await.is_some(), "other sessions stay");

    let ended = second.end_user_sessions("00una", None, EndReason::AdminRevoke, NOW).await.unwrap();
    assert_eq!(ended, ["20a2"]);
    assert_eq!(amr_seen(&db.store, "20a2").await, None, "a user's sessions ended on the second node");

    // A user suspended on one node: the other no longer hands out the user it cached.
    let (_, cached_user) = second.find_session_by_cookie("cookie-20b1", NOW).await.unwrap().unwrap();
    assert_eq!(cached_user.status, UserStatus::Active);
    let mut suspended = db.store.find_user("00unb").await.unwrap().unwrap();
    let version = suspended.version;
    suspended.status = UserStatus::Suspended;
    suspended.version += 1;
    db.store.update_user(&suspended, version, None).await.unwrap();
    let (_, seen) = second.find_session_by_cookie("cookie-20b1", NOW).await.unwrap().unwrap();
    assert_eq!(seen.status, UserStatus::Suspended, "the second node sees the change at once");
    // The token endpoint reads a code's user through the cached session: the change is seen too.
    let of_session = second.find_session_user("20b1", "00unb").await.unwrap().unwrap();
    assert_eq!(of_session.status, UserStatus::Suspended);
    suspended.status = UserStatus::Active;
    suspended.version += 1;
    db.store.update_user(&suspended, version + 1, None).await.unwrap();
    let of_session = second.find_session_user("20b1", "00unb").await.unwrap().unwrap();
    assert_eq!(of_session.status, UserStatus::Active, "unsuspended on the first node");
    let other = second.find_session_user("20b1", "00una").await.unwrap().unwrap();
    assert_eq!(other.id, "00una", "another user than the session's is read, not taken from the session");

    assert!(db.store.delete_user("00unb").await.unwrap());
    assert_eq!(amr_seen(&second, "20b1").await, None, "a deleted user's sessions are gone everywhere");

    close_nodes(db, second, admin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_lost_its_listening_connection_stops_answering_from_its_cache() {
    let Some((db, second, admin)) = two_nodes().await else { return };
    until_cached(&second, &admin, "20a1").await;
    // Cut every listening connection of this schema's nodes, then change the row unannounced.
    let channel: String =
        sqlx::query_scalar("SELECT 'latchkey_' || md5(current_schema())").fetch_one(&admin).await.unwrap();
    let cut: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query = 'LISTEN \"' || $1 || '\"'",
    )
    .bind(&channel)
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(cut, 2, "one listening connection per node");
    change_behind_caches(&admin, "20a1", r#"["pwd","changed"]"#).await;
    until_amr(&second, "20a1", &["pwd", "changed"], "the node kept answering from its cache").await;
    // It listens again, and caches again.
    until_cached(&second, &admin, "20a1").await;

    close_nodes(db, second, admin).await;
}

/// A node that holds a lease but never acknowledges (crashed, cut off) delays an ending call until
/// its lease runs out, and no longer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ending_call_waits_for_a_silent_node_only_until_its_lease_ends() {
    let Some((db, second, admin)) = two_nodes().await else { return };
    sqlx::query(
        "INSERT INTO cache_nodes (node_id, lease_until) \
         VALUES ('silent', (extract(epoch from clock_timestamp()) * 1000)::bigint + 1000)",
    )
    .execute(&admin)
    .await
    .unwrap();
    let start = Instant::now();
    assert!(db.store.end_session("20a1", EndReason::Logout, NOW).await.unwrap());
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(700), "waited for the silent node's lease: {waited:?}");
    assert!(waited < Duration::from_millis(2_500), "and not much longer: {waited:?}");

    // Without it, an ending call takes a round trip or two.
    sqlx::query("DELETE FROM cache_nodes WHERE node_id = 'silent'").execute(&admin).await.unwrap();
    let start = Instant::now();
    assert!(second.end_session("20a2", EndReason::Logout, NOW).await.unwrap());
    assert!(start.elapsed() < Duration::from_millis(500), "live nodes answer at once: {:?}", start.elapsed());

    close_nodes(db, second, admin).await;
}

/// A lease that ran out (as a barrier that went ahead without the node saw it) is not extended: the
/// node forgets what it cached and takes a new lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_lease_ran_out_forgets_its_cache() {
    let Some((db, second, admin)) = two_nodes().await else { return };
    until_cached(&second, &admin, "20a1").await;
    change_behind_caches(&admin, "20a1", r#"["pwd","changed"]"#).await;
    sqlx::query("UPDATE cache_nodes SET lease_until = 0").execute(&admin).await.unwrap();
    let start = Instant::now();
    until_amr(&second, "20a1", &["pwd", "changed"], "the node kept what it cached under the old lease").await;
    loop {
        let leased: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM cache_nodes \
             WHERE lease_until > (extract(epoch from clock_timestamp()) * 1000)::bigint",
        )
        .fetch_one(&admin)
        .await
        .unwrap();
        if leased == 2 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(3), "both nodes take new leases");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    until_cached(&second, &admin, "20a1").await;

    close_nodes(db, second, admin).await;
}

/// Command-line tools (a store no server claimed) take no lease, so no ending call ever waits for
/// one, even when a tool runs for a while or dies without closing its store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_no_server_claimed_takes_no_lease() {
    let Some(db) = crate::support::postgres().await else { return };
    let admin = db.admin().await;
    let leases = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM cache_nodes").fetch_one(&admin).await.unwrap()
    };
    let start = Instant::now();
    while leases().await == 0 {
        assert!(start.elapsed() < Duration::from_secs(5), "the server never took its lease");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tool = db.tool().await;
    tool.insert_user(&user("00utool", "tool@example.com")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(leases().await, 1, "only the server holds a lease");
    drop(tool);
    admin.close().await;
    db.drop_schema().await;
}

/// SQLite: one server per database file. A second claim on the file is refused while the first
/// store lives; tools that do not claim (migrations, tokens) still open it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_one_sqlite_file_is_refused() {
    let db = crate::support::sqlite().await;
    let url = format!("sqlite://{}/nested/latchkey.db", db.dir.path().display());
    let mut second = Store::connect(&url).await.unwrap();
    let refused = second.claim_server().await.unwrap_err().to_string();
    assert!(refused.contains("another Latchkey server is using"), "{refused}");
    second.migrate().await.unwrap();
    second.close().await;
    db.store.close().await;
    drop(db.store);
    let mut third = Store::connect(&url).await.unwrap();
    third.claim_server().await.expect("free again once the first server is gone");
    third.close().await;
}

/// SQLite's server caches live sessions (a change behind its back is not seen) and forgets them on
/// every write of its own to a session or a user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_server_answers_from_its_cache_and_forgets_on_writes() {
    let db = crate::support::sqlite().await;
    let store = &db.store;
    store.insert_user(&user("00uca", "ca@example.com")).await.unwrap();
    for id in ["30a", "30b"] {
        let mut s = session(id, "00uca", 60_000, None);
        s.amr = vec!["pwd".into()];
        store.insert_session(&s).await.unwrap();
    }
    let file = db.dir.path().join("nested/latchkey.db");
    let behind = |id: &'static str, amr: &'static str| {
        let file = file.clone();
        move || {
            let conn = rusqlite::Connection::open(file).unwrap();
            conn.execute("UPDATE sessions SET amr = ?1 WHERE id = ?2", [amr, id]).unwrap();
        }
    };
    assert_eq!(amr_seen(store, "30a").await, Some(vec!["pwd".to_owned()]));
    behind("30a", r#"["pwd","behind"]"#)();
    assert_eq!(amr_seen(store, "30a").await, Some(vec!["pwd".to_owned()]), "answered from the cache");

    assert!(store.touch_session("30a", Timestamp(70_000), NOW).await.unwrap());
    let seen = amr_seen(store, "30a").await;
    assert_eq!(seen, Some(vec!["pwd".to_owned(), "behind".to_owned()]), "a touch evicts");

    assert!(amr_seen(store, "30b").await.is_some());
    let mut changed = store.find_user("00uca").await.unwrap().unwrap();
    let version = changed.version;
    changed.status = UserStatus::Suspended;
    changed.version += 1;
    store.update_user(&changed, version, None).await.unwrap();
    let (_, owner) = store.find_session_by_cookie("cookie-30b", NOW).await.unwrap().unwrap();
    assert_eq!(owner.status, UserStatus::Suspended, "a user change evicts their sessions");

    assert!(store.end_session("30b", EndReason::Logout, NOW).await.unwrap());
    assert_eq!(amr_seen(store, "30b").await, None, "an ended session is gone at once");
}

/// Apps are cached too (every SSO looks one up): a change or a deletion through one node is seen
/// by the other at once, by id and by external key; SQLite's server forgets on its own writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_changed_on_one_node_is_seen_changed_by_the_others_at_once() {
    async fn check(first: &Store, second: &Store) {
        let mut app = saml_app("0oacache", "cached", "Before");
        first.insert_app(&app).await.unwrap();
        for _ in 0..3 {
            for key in [app.id.as_str(), app.external_key.as_str()] {
                assert_eq!(second.find_app(key).await.unwrap().unwrap().label, "Before");
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        app.label = "After".into();
        assert!(first.update_app(&app).await.unwrap());
        for key in [app.id.as_str(), app.external_key.as_str()] {
            assert_eq!(second.find_app(key).await.unwrap().unwrap().label, "After", "{key}");
        }
        assert!(first.delete_app(&app.id).await.unwrap());
        assert!(second.find_app(&app.id).await.unwrap().is_none(), "deleted");
    }
    let sqlite = crate::support::sqlite().await;
    check(&sqlite.store, &sqlite.store).await;
    let Some((db, second, admin)) = two_nodes().await else { return };
    check(&db.store, &second).await;
    close_nodes(db, second, admin).await;
}

/// Where a test deletes participant records without telling any cache (they carry no trigger).
enum Behind<'a> {
    Sqlite(&'a std::path::Path),
    Postgres(&'a sqlx::PgPool),
}

impl Behind<'_> {
    async fn delete_participants(&self, session_id: &str) {
        match self {
            Behind::Sqlite(file) => {
                let conn = rusqlite::Connection::open(file).unwrap();
                conn.execute("DELETE FROM saml_participants WHERE session_id = ?1", [session_id]).unwrap();
            }
            Behind::Postgres(admin) => {
                sqlx::query("DELETE FROM saml_participants WHERE session_id = $1")
                    .bind(session_id)
                    .execute(*admin)
                    .await
                    .unwrap();
            }
        }
    }
}

/// A repeated SSO is answered from the cache (the session's participant record, found with the
/// assignment), and an assignment removed through one node is refused by the other at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assignment_removed_on_one_node_is_refused_by_the_others_at_once() {
    async fn check(first: &Store, second: &Store, behind: Behind<'_>) {
        let app = saml_app("0oagrant", "granted", "Granted");
        first.insert_app(&app).await.unwrap();
        let assignment = AppUser {
            app_id: app.id.clone(),
            user_id: "00una".into(),
            scope: "USER".into(),
            user_name: None,
            created: NOW,
            last_updated: NOW,
        };
        first.put_app_user(&assignment).await.unwrap();
        let participant = Participant {
            session_id: "20a1".into(),
            app_id: app.id.clone(),
            name_id: "a@example.com".into(),
            name_id_format: "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified".into(),
            session_index: "_grant".into(),
            created: NOW,
        };
        let start = Instant::now();
        loop {
            assert_eq!(first.add_participant(&participant).await.unwrap(), participant);
            assert!(second.find_session_by_cookie("cookie-20a1", NOW).await.unwrap().is_some());
            let grant = second.find_sso_grant(&app.id, "00una", "20a1").await.unwrap();
            assert_eq!(grant, Some(Some(participant.clone())));
            behind.delete_participants("20a1").await;
            if second.find_sso_grant(&app.id, "00una", "20a1").await.unwrap() == grant {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(5), "the node never answered from its cache");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(first.delete_app_user(&app.id, "00una").await.unwrap());
        assert_eq!(
            second.find_sso_grant(&app.id, "00una", "20a1").await.unwrap(),
            None,
            "unassigned on the first node, refused on the second"
        );
    }
    let sqlite = crate::support::sqlite().await;
    sqlite.store.insert_user(&user("00una", "a@example.com")).await.unwrap();
    sqlite.store.insert_session(&session("20a1", "00una", 60_000, None)).await.unwrap();
    let file = sqlite.dir.path().join("nested/latchkey.db");
    check(&sqlite.store, &sqlite.store, Behind::Sqlite(&file)).await;
    let Some((db, second, admin)) = two_nodes().await else { return };
    check(&db.store, &second, Behind::Postgres(&admin)).await;
    close_nodes(db, second, admin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorization_code_presented_on_two_nodes_at_once_is_redeemed_once() {
    use latchkey_core::oidc::{AuthorizationCode, Redeemed, Server};
    use latchkey_core::store::OAuthStore;
    let Some((db, second, admin)) = two_nodes().await else { return };
    db.store.insert_app(&saml_app("0oanodes", "nodes_app", "Nodes")).await.unwrap();
    for round in 0..20 {
        let code = AuthorizationCode {
            app_id: "0oanodes".into(),
            server: Server::Default,
            user_id: "00una".into(),
            session_id: "20a1".into(),
            redirect_uri: "https://rp.example.com/cb".into(),
            scopes: vec!["openid".into()],
            nonce: None,
            code_challenge: None,
            auth_time: NOW,
            amr: vec!["pwd".into()],
            expires_at: Timestamp(NOW.millis() + 60_000),
        };
        let digest = format!("code-{round}");
        db.store.insert_code(&digest, &code).await.unwrap();
        let (a, b) = tokio::join!(db.store.redeem_code(&digest, NOW), second.redeem_code(&digest, NOW));
        let firsts = [a.unwrap(), b.unwrap()].iter().filter(|r| matches!(r, Redeemed::First(_))).count();
        assert_eq!(firsts, 1, "round {round}: one node spends the code, the other sees a replay");
    }
    close_nodes(db, second, admin).await;
}
