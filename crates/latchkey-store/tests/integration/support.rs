//! Isolated stores for each test: a temporary SQLite file, or a fresh PostgreSQL schema.

use std::io::Write as _;
use std::sync::Once;

use latchkey_store::Store;
use rand::Rng;
use rand::distr::Alphanumeric;

pub struct SqliteDb {
    pub store: Store,
    pub dir: tempfile::TempDir,
}

pub async fn sqlite() -> SqliteDb {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/nested/latchkey.db", dir.path().display());
    let mut store = Store::connect(&url).await.expect("connect sqlite");
    store.migrate().await.expect("migrate sqlite");
    // As a server does: every case then runs through the session cache.
    store.claim_server().await.expect("sole server");
    SqliteDb { store, dir }
}

pub struct PostgresDb {
    pub store: Store,
    url: String,
    schema: String,
}

static SKIP_NOTICE: Once = Once::new();

/// A store in a new schema, or `None` (with a notice on the terminal) when no server is configured.
pub async fn postgres() -> Option<PostgresDb> {
    let Ok(url) = std::env::var("LATCHKEY_TEST_DATABASE_URL") else {
        assert!(
            std::env::var_os("LATCHKEY_REQUIRE_POSTGRES").is_none(),
            "LATCHKEY_REQUIRE_POSTGRES is set but LATCHKEY_TEST_DATABASE_URL is not"
        );
        SKIP_NOTICE.call_once(|| {
            // Written straight to stderr, past the test harness's capture, so a plain `cargo test` says it.
            let _ = writeln!(
                std::io::stderr(),
                "note: PostgreSQL storage tests SKIPPED (set LATCHKEY_TEST_DATABASE_URL to run them)"
            );
        });
        return None;
    };
    let suffix: String = rand::rng().sample_iter(&Alphanumeric).take(12).map(char::from).collect();
    let schema = format!("lk_test_{}", suffix.to_lowercase());
    let admin =
        sqlx::PgPool::connect(&url).await.expect("PostgreSQL reachable at LATCHKEY_TEST_DATABASE_URL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .expect("create schema");
    admin.close().await;
    let mut store = Store::connect_postgres(&url, Some(&schema)).await.expect("connect postgres");
    store.migrate().await.expect("migrate postgres");
    // As a node does: every case then runs through the node's cache.
    store.claim_server().await.expect("server");
    Some(PostgresDb { store, url, schema })
}

impl PostgresDb {
    /// A second node: another store on the same schema, with its own pool and session cache.
    pub async fn another_node(&self) -> Store {
        let mut node =
            Store::connect_postgres(&self.url, Some(&self.schema)).await.expect("connect second node");
        node.claim_server().await.expect("server");
        node
    }

    /// A store on this schema as a command-line tool opens one: never claimed by a server.
    pub async fn tool(&self) -> Store {
        Store::connect_postgres(&self.url, Some(&self.schema)).await.expect("connect tool")
    }

    /// A plain connection pool on this schema, beside the stores (for what no store method does).
    pub async fn admin(&self) -> sqlx::PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect_with(
                self.url
                    .parse::<sqlx::postgres::PgConnectOptions>()
                    .expect("url")
                    .options([("search_path", &self.schema)]),
            )
            .await
            .expect("admin pool")
    }

    pub async fn drop_schema(self) {
        self.store.close().await;
        if let Ok(admin) = sqlx::PgPool::connect(&self.url).await {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {} CASCADE", self.schema)))
                .execute(&admin)
                .await;
            admin.close().await;
        }
    }
}
