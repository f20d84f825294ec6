//! Schema migrations, one ordered list per backend, applied in a single transaction.
//!
//! Applied versions are recorded in `latchkey_migrations`. On PostgreSQL an advisory lock serialises
//! nodes that start together; on SQLite the single writer connection does.

use latchkey_core::StoreError;

use crate::{Db, Store, map_err};

struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "users_tokens_policies",
        sqlite: include_str!("../migrations/sqlite/0001_users_tokens_policies.sql"),
        postgres: include_str!("../migrations/postgres/0001_users_tokens_policies.sql"),
    },
    Migration {
        version: 2,
        name: "authn",
        sqlite: include_str!("../migrations/sqlite/0002_authn.sql"),
        postgres: include_str!("../migrations/postgres/0002_authn.sql"),
    },
    Migration {
        version: 3,
        name: "trusted_origins",
        sqlite: include_str!("../migrations/sqlite/0003_trusted_origins.sql"),
        postgres: include_str!("../migrations/postgres/0003_trusted_origins.sql"),
    },
    Migration {
        version: 4,
        name: "sessions",
        sqlite: include_str!("../migrations/sqlite/0004_sessions.sql"),
        postgres: include_str!("../migrations/postgres/0004_sessions.sql"),
    },
    Migration {
        version: 5,
        name: "events",
        sqlite: include_str!("../migrations/sqlite/0005_events.sql"),
        postgres: include_str!("../migrations/postgres/0005_events.sql"),
    },
    Migration {
        version: 6,
        name: "apps_saml",
        sqlite: include_str!("../migrations/sqlite/0006_apps_saml.sql"),
        postgres: include_str!("../migrations/postgres/0006_apps_saml.sql"),
    },
    Migration {
        version: 7,
        name: "node_cache",
        sqlite: include_str!("../migrations/sqlite/0007_node_cache.sql"),
        postgres: include_str!("../migrations/postgres/0007_node_cache.sql"),
    },
    Migration {
        version: 8,
        name: "grant_cache",
        sqlite: include_str!("../migrations/sqlite/0008_grant_cache.sql"),
        postgres: include_str!("../migrations/postgres/0008_grant_cache.sql"),
    },
    Migration {
        version: 9,
        name: "sign_on_mode",
        sqlite: include_str!("../migrations/sqlite/0009_sign_on_mode.sql"),
        postgres: include_str!("../migrations/postgres/0009_sign_on_mode.sql"),
    },
    Migration {
        version: 10,
        name: "groups",
        sqlite: include_str!("../migrations/sqlite/0010_groups.sql"),
        postgres: include_str!("../migrations/postgres/0010_groups.sql"),
    },
    Migration {
        version: 11,
        name: "group_cache",
        sqlite: include_str!("../migrations/sqlite/0011_group_cache.sql"),
        postgres: include_str!("../migrations/postgres/0011_group_cache.sql"),
    },
    Migration {
        version: 12,
        name: "oauth",
        sqlite: include_str!("../migrations/sqlite/0012_oauth.sql"),
        postgres: include_str!("../migrations/postgres/0012_oauth.sql"),
    },
    Migration {
        version: 13,
        name: "stateless_access_tokens",
        sqlite: include_str!("../migrations/sqlite/0013_stateless_access_tokens.sql"),
        postgres: include_str!("../migrations/postgres/0013_stateless_access_tokens.sql"),
    },
];

const CREATE_LEDGER: &str = "CREATE TABLE IF NOT EXISTS latchkey_migrations \
     (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)";

/// Arbitrary constant naming Latchkey's migration lock among PostgreSQL advisory locks.
const PG_MIGRATION_LOCK: i64 = 0x4c61_7463_686b;

pub(crate) async fn run(store: &Store) -> Result<usize, StoreError> {
    let now = latchkey_core::clock::Clock::now(&latchkey_core::SystemClock).millis();
    macro_rules! apply {
        ($pool:expr, $field:ident, $lock:expr) => {{
            let mut tx = $pool.begin().await.map_err(map_err)?;
            if let Some(lock) = $lock {
                sqlx::query(lock).bind(PG_MIGRATION_LOCK).execute(&mut *tx).await.map_err(map_err)?;
            }
            sqlx::query(CREATE_LEDGER).execute(&mut *tx).await.map_err(map_err)?;
            let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM latchkey_migrations")
                .fetch_all(&mut *tx)
                .await
                .map_err(map_err)?;
            let mut count = 0;
            for migration in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
                sqlx::raw_sql(migration.$field).execute(&mut *tx).await.map_err(map_err)?;
                sqlx::query(
                    "INSERT INTO latchkey_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                )
                .bind(migration.version)
                .bind(migration.name)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                count += 1;
            }
            tx.commit().await.map_err(map_err)?;
            Ok(count)
        }};
    }
    match &store.db {
        Db::Sqlite { write, .. } => apply!(write, sqlite, None::<&'static str>),
        Db::Postgres { pool: pg, .. } => apply!(pg, postgres, Some("SELECT pg_advisory_xact_lock($1)")),
    }
}
