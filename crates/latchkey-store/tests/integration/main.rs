//! The storage conformance suite: every case runs against SQLite and against PostgreSQL.
//!
//! PostgreSQL cases use `LATCHKEY_TEST_DATABASE_URL`, each in a schema of its own. Without it they
//! are skipped (and say so); with `LATCHKEY_REQUIRE_POSTGRES=1` a missing database fails them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step fails the test"
)]

mod cases;
mod nodes;
mod support;

/// Declares each case once per backend: `sqlite::name` and `postgres::name`.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = crate::support::sqlite().await;
                    crate::cases::$name(&db.store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = crate::support::postgres().await else { return };
                    crate::cases::$name(&db.store).await;
                    db.drop_schema().await;
                }
            )*
        }
    };
}

conformance!(
    migrations_are_idempotent,
    insert_then_find_by_id_and_login,
    login_is_unique_case_insensitively,
    concurrent_creates_of_one_login_have_one_winner,
    update_is_guarded_by_version,
    concurrent_updates_lose_no_write,
    update_issues_and_replaces_one_time_tokens,
    list_pages_by_id_cursor,
    search_expressions_filter_correctly,
    hostile_text_is_data_not_sql,
    delete_removes_user,
    api_tokens_are_found_by_digest_only,
    password_policy_defaults_to_okta,
    ping_answers,
    session_tokens_are_single_use_even_concurrently,
    lifecycle_tokens_are_single_use_and_purpose_bound,
    transactions_slide_expire_and_are_version_guarded,
    factors_activate_once_and_refuse_replayed_steps,
    rate_windows_count_atomically,
    policies_are_seeded_once_and_updated_with_guard,
    purge_removes_only_expired,
    trusted_origins_are_unique_and_replaceable,
    sessions_live_slide_and_end_for_every_reader,
    failed_sign_ins_count_atomically_and_lock_once,
    events_are_listed_in_order_with_filters_and_cursor,
    event_batches_keep_order_and_are_all_or_nothing,
    apps_assignments_and_links_cascade,
    signing_keys_have_one_active_and_promote_atomically,
    saml_request_ids_refuse_replays_until_purged,
    sso_state_is_shared_and_single_use,
    groups_are_unique_by_name_and_everyone_holds_every_user,
    memberships_record_their_source_and_races_agree,
    rules_are_stored_and_replaced,
    apps_assigned_to_groups_reach_their_members,
    a_users_groups_follow_memberships_and_renames,
    oauth_codes_are_spent_once_and_replays_are_told_apart,
    an_ended_session_owes_each_app_with_a_back_channel_one_logout_notice,
);

/// Connections are pinged only after idling (not before every use): one the server cut while idle
/// is replaced, not handed to a request. A database of its own, so cutting every connection to it
/// touches no other test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_cut_while_idle_are_replaced() {
    use latchkey_core::store::HealthStore;
    use rand::Rng;

    let Ok(url) = std::env::var("LATCHKEY_TEST_DATABASE_URL") else { return };
    let suffix: String =
        rand::rng().sample_iter(rand::distr::Alphanumeric).take(12).map(char::from).collect();
    let name = format!("lk_cut_{}", suffix.to_lowercase());
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await.unwrap();
    let mut own = url::Url::parse(&url).unwrap();
    own.set_path(&name);
    let store = latchkey_store::Store::connect_postgres(own.as_str(), None).await.unwrap();
    for _ in 0..4 {
        store.ping().await.unwrap();
    }
    let cut: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1",
    )
    .bind(&name)
    .fetch_one(&admin)
    .await
    .unwrap();
    assert!(cut >= 1, "the store's connections were cut");
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    for attempt in 0..4 {
        assert!(store.ping().await.is_ok(), "attempt {attempt} after the cut got a dead connection");
    }
    store.close().await;
    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)")))
        .execute(&admin)
        .await;
    admin.close().await;
}
