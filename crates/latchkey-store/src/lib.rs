//! Latchkey's storage adapters: SQLite (embedded default) and PostgreSQL (several nodes), behind the
//! core's ports.
//!
//! [`Store`] selects the backend at run time with an enum, not `dyn`: every method is written once,
//! with one SQL string that both engines accept (`$n` placeholders, portable types), and the
//! [`on_pool!`] macro expands the body once per backend so each runs on its native driver.
//! Invariants: driver errors are mapped to [`StoreError`] by `map_err` here (rusqlite's, of the
//! inline reader, in `inline`) and nowhere else; every port method
//! is one transaction; SQLite writes go through a single-connection pool (one writer, no busy
//! retries), reads through a small pool, except the point reads on every request's path
//! ([`Store::read_row`]), which run inline (see `inline`); PostgreSQL uses one pool for all.

mod apps;
mod authn;
mod batched_writes;
mod events;
mod filter;
mod group_commit;
mod groups;
mod inline;
mod migrate;
mod node_cache;
mod oauth;
mod origins;
mod rows;
mod session_cache;
mod sessions;
mod users;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use latchkey_core::StoreError;
use latchkey_core::policy::{PasswordPolicy, PolicyKind, PolicyRow};
use latchkey_core::store::{ApiTokenStore, HealthStore, PolicyStore, StoreResult};
use latchkey_core::tokens::ApiToken;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::inline::InlineReader;
use crate::node_cache::NodeCache;
use crate::rows::Columns;
use crate::session_cache::{Changed, SessionCache};

/// Which engine a database URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of_url(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }
}

/// A connected database, either engine. Cheap to clone (pools are shared handles).
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
    /// Writes waiting to be committed together (`group_commit`, `batched_writes`).
    batches: batched_writes::Batches,
}

#[derive(Debug, Clone)]
enum Db {
    /// `inline` serves the per-request point reads ([`Store::read_row`]); absent for in-memory
    /// databases, as is `file`. `cache` exists once [`Store::claim_server`] took `sole` (a lock
    /// on the database file's companion `-server.lock`).
    Sqlite {
        read: SqlitePool,
        write: SqlitePool,
        inline: Option<Arc<InlineReader>>,
        file: Option<std::path::PathBuf>,
        cache: Option<Arc<SessionCache>>,
        sole: Option<Arc<std::fs::File>>,
    },
    /// `cache` holds live sessions by cookie (see `node_cache`); absent only if it could not start.
    Postgres { pool: PgPool, cache: Option<Arc<NodeCache>> },
}

/// A value bound to a placeholder.
pub(crate) enum Bind {
    Text(String),
    Int(i64),
}

/// Binds `$binds` (a slice of [`Bind`]) to `$query`, a query of either driver, in placeholder order.
macro_rules! bind_all {
    ($query:expr, $binds:expr) => {{
        let mut query = $query;
        for bind in $binds {
            query = match bind {
                $crate::Bind::Text(text) => query.bind(text.as_str()),
                $crate::Bind::Int(n) => query.bind(*n),
            };
        }
        query
    }};
}
pub(crate) use bind_all;

/// Runs `$body` with `$pool` bound to the backend's pool of the wanted kind (`read` or `write`).
/// The body is the same text for both engines; it compiles once against each driver.
macro_rules! on_pool {
    ($store:expr, $kind:ident, |$pool:ident| $body:expr) => {
        match &$store.db {
            $crate::Db::Sqlite { read, write, .. } => {
                let _ = (&read, &write);
                let $pool = on_pool!(@pick read, write, $kind);
                $body
            }
            $crate::Db::Postgres { pool: pg, .. } => {
                let $pool = pg;
                $body
            }
        }
    };
    (@pick $read:ident, $write:ident, read) => { $read };
    (@pick $read:ident, $write:ident, write) => { $write };
}
pub(crate) use on_pool;

/// How long a request waits for a pooled connection before the database counts as unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// A PostgreSQL connection idle this long is pinged before use. A connection the server cut (a
/// restart, a failover, `pg_terminate_backend`) while it was in steady use fails one query (503)
/// before sqlx drops it; one that sat idle is caught by the ping. Under load connections are reused
/// within milliseconds, so the pings stay off the hot path.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

impl Store {
    /// Connects to `url` (`sqlite://path` or `postgres://...`). SQLite files and their directory are
    /// created when missing. Migrations are not applied here: call [`Store::migrate`].
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        match Backend::of_url(url) {
            Some(Backend::Sqlite) => Self::connect_sqlite(url).await,
            Some(Backend::Postgres) => Self::connect_postgres(url, None).await,
            None => Err(StoreError::Unavailable(
                "database URL must start with sqlite:// or postgres://".to_owned(),
            )),
        }
    }

    /// Connects to PostgreSQL with every connection's `search_path` set to `schema` (test isolation,
    /// or several organisations in one database).
    pub async fn connect_postgres(url: &str, schema: Option<&str>) -> Result<Self, StoreError> {
        let mut options = PgConnectOptions::from_str(url).map_err(unavailable)?;
        if let Some(schema) = schema {
            options = options.options([("search_path", schema)]);
        }
        // sqlx pings every connection before handing it out, a second round trip per query. Only a
        // connection that sat idle may have been cut (server restart, proxy timeout): ping those.
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_AFTER_IDLE {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(unavailable)?;
        // No cache until a server claims the store (`claim_server`): tools stay out of the leases.
        Ok(Self { db: Db::Postgres { pool, cache: None }, batches: Default::default() })
    }

    async fn connect_sqlite(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(unavailable)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit that returned is on disk even after power loss (WAL + NORMAL is not).
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(ACQUIRE_TIMEOUT);
        if let Some(dir) = options.get_filename().parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Unavailable(format!("{}: {e}", dir.display())))?;
        }
        // A local file has no stale connections to detect: skip sqlx's ping before each use (it is
        // a thread hand-off per query, a measurable share of a session check).
        let write = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await
            .map_err(unavailable)?;
        let read = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(8)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await
            .map_err(unavailable)?;
        let file = options.get_filename().to_owned();
        let in_memory = file.as_os_str().is_empty() || file.as_os_str() == ":memory:";
        let inline = (!in_memory).then(|| Arc::new(InlineReader::new(&file)));
        let file = (!in_memory).then_some(file);
        Ok(Self {
            db: Db::Sqlite { read, write, inline, file, cache: None, sole: None },
            batches: Default::default(),
        })
    }

    /// The first row of a point read on a request's hot path (`binds` fill `$1..$n`), decoded.
    /// SQLite runs it inline on this thread (see [`inline`]); PostgreSQL through its pool.
    pub(crate) async fn read_row<T>(
        &self,
        sql: &str,
        binds: &[Bind],
        decode: impl FnOnce(&dyn Columns) -> StoreResult<T>,
    ) -> StoreResult<Option<T>> {
        if let Db::Sqlite { inline: Some(reader), .. } = &self.db {
            return reader.read_row(sql, binds, decode);
        }
        on_pool!(self, read, |pool| {
            let query = bind_all!(sqlx::query(sqlx::AssertSqlSafe(sql)), binds);
            match query.fetch_optional(pool).await.map_err(map_err)? {
                Some(row) => decode(&row).map(Some),
                None => Ok(None),
            }
        })
    }

    /// Declares this store a server's, which lets it cache live sessions (see `session_cache`).
    /// Command-line tools do not call this: they neither cache nor write sessions, users or apps,
    /// and must not take part in the caches' bookkeeping.
    /// - SQLite: the server must be the only one on its database file, a promise to keep, so this
    ///   takes an exclusive lock on `<database file>-server.lock` for as long as the store lives: a
    ///   second server on the same file is refused rather than allowed to serve sessions another
    ///   process ended.
    /// - PostgreSQL: starts this node's cache, kept exact by `node_cache` (it listens, and holds a
    ///   lease that ending calls on every node wait for). A node that cannot listen reads every
    ///   session from the database, and says so in its log.
    pub async fn claim_server(&mut self) -> Result<(), StoreError> {
        if let Db::Postgres { pool, cache: cache @ None } = &mut self.db {
            match NodeCache::start(pool).await {
                Ok(started) => *cache = Some(started),
                Err(error) => {
                    tracing::warn!(%error, "session cache not started; every session check reads the database");
                }
            }
            return Ok(());
        }
        let Db::Sqlite { file, cache, sole, .. } = &mut self.db else { return Ok(()) };
        if cache.is_some() {
            return Ok(());
        }
        if let Some(file) = file {
            let mut name = file.clone().into_os_string();
            name.push("-server.lock");
            let lock_path = std::path::PathBuf::from(name);
            let lock = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(|e| StoreError::Unavailable(format!("{}: {e}", lock_path.display())))?;
            lock.try_lock().map_err(|_| {
                StoreError::Unavailable(format!(
                    "another Latchkey server is using {} (one server per SQLite database; use \
                     PostgreSQL for several nodes)",
                    file.display()
                ))
            })?;
            *sole = Some(Arc::new(lock));
        }
        *cache = Some(Arc::new(SessionCache::serving()));
        Ok(())
    }

    /// The cache of live sessions, where this store keeps one.
    pub(crate) fn session_cache(&self) -> Option<&SessionCache> {
        match &self.db {
            Db::Sqlite { cache, .. } => cache.as_deref(),
            Db::Postgres { cache, .. } => cache.as_deref().map(|node| &node.sessions),
        }
    }

    /// After a committed write to sessions, users or apps. SQLite: drops what this process cached
    /// of them. PostgreSQL: the triggers tell every node; with `wait` (the write ended sessions, may
    /// refuse a user's, or changed an app), returns only once every node has dropped them (see
    /// `node_cache`).
    pub(crate) async fn forget(&self, changed: Changed<'_>, wait: bool) {
        match &self.db {
            Db::Sqlite { cache: Some(cache), .. } => cache.evict(&changed),
            Db::Postgres { pool, cache: Some(cache) } if wait => cache.barrier(pool).await,
            _ => {}
        }
    }

    pub fn backend(&self) -> Backend {
        match self.db {
            Db::Sqlite { .. } => Backend::Sqlite,
            Db::Postgres { .. } => Backend::Postgres,
        }
    }

    /// Applies pending migrations for this backend; safe to run from several nodes at once.
    pub async fn migrate(&self) -> Result<usize, StoreError> {
        migrate::run(self).await
    }

    /// An organisation-wide setting, created with `default` by the first caller (on any node).
    pub async fn org_setting(&self, name: &str, default: &str) -> Result<String, StoreError> {
        sessions::org_setting(self, name, default).await
    }

    /// Runs each `DELETE … WHERE … <= $1` with `now` as `$1`; the rows removed in all.
    pub(crate) async fn delete_expired(
        &self,
        statements: &[&'static str],
        now: latchkey_core::Timestamp,
    ) -> StoreResult<u64> {
        let mut total = 0;
        for &statement in statements {
            total += on_pool!(self, write, |pool| {
                sqlx::query(statement)
                    .bind(now.millis())
                    .execute(pool)
                    .await
                    .map_err(map_err)?
                    .rows_affected()
            });
        }
        Ok(total)
    }

    /// Closes every pooled connection (clean shutdown: SQLite checkpoints its WAL).
    pub async fn close(&self) {
        match &self.db {
            Db::Sqlite { read, write, .. } => {
                read.close().await;
                write.close().await;
            }
            Db::Postgres { pool, cache } => {
                if let Some(cache) = cache {
                    cache.close(pool).await;
                }
                pool.close().await;
            }
        }
    }
}

/// The one place driver errors become domain storage errors.
pub(crate) fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(db.constraint().unwrap_or("unique").to_owned())
        }
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) | sqlx::Error::ColumnNotFound(_) => {
            StoreError::Corrupt(e.to_string())
        }
        _ => unavailable(e),
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl HealthStore for Store {
    async fn ping(&self) -> StoreResult<()> {
        on_pool!(self, read, |pool| {
            sqlx::query("SELECT 1").execute(pool).await.map_err(map_err)?;
        });
        Ok(())
    }
}

impl ApiTokenStore for Store {
    async fn insert_api_token(&self, token: &ApiToken) -> StoreResult<()> {
        on_pool!(self, write, |pool| {
            sqlx::query("INSERT INTO api_tokens (id, name, digest, created) VALUES ($1, $2, $3, $4)")
                .bind(&token.id)
                .bind(&token.name)
                .bind(&token.digest)
                .bind(token.created.millis())
                .execute(pool)
                .await
                .map_err(map_err)?;
        });
        Ok(())
    }

    async fn delete_api_tokens_named(&self, name: &str) -> StoreResult<u64> {
        Ok(on_pool!(self, write, |pool| {
            sqlx::query("DELETE FROM api_tokens WHERE name = $1")
                .bind(name)
                .execute(pool)
                .await
                .map_err(map_err)?
                .rows_affected()
        }))
    }

    async fn find_api_token(&self, digest: &str) -> StoreResult<Option<ApiToken>> {
        let sql = "SELECT id, name, digest, created FROM api_tokens WHERE digest = $1";
        self.read_row(sql, &[Bind::Text(digest.to_owned())], |row| {
            Ok(ApiToken {
                id: row.text("id")?,
                name: row.text("name")?,
                digest: row.text("digest")?,
                created: row.time("created")?,
            })
        })
        .await
    }
}

impl PolicyStore for Store {
    async fn password_policy(&self) -> StoreResult<PasswordPolicy> {
        let settings: Option<String> = on_pool!(self, read, |pool| {
            sqlx::query_scalar("SELECT settings FROM policies WHERE policy_type = 'PASSWORD'")
                .fetch_optional(pool)
                .await
                .map_err(map_err)?
        });
        match settings {
            None => Ok(PasswordPolicy::default()),
            Some(json) => serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(e.to_string())),
        }
    }

    async fn policy_rows(&self) -> StoreResult<Vec<PolicyRow>> {
        authn::policy_rows(self).await
    }

    async fn ensure_policies(&self, defaults: &[PolicyRow]) -> StoreResult<()> {
        authn::ensure_policies(self, defaults).await
    }

    async fn update_policy(
        &self,
        kind: PolicyKind,
        settings: &str,
        now: latchkey_core::Timestamp,
        expected_version: i64,
    ) -> StoreResult<()> {
        authn::update_policy(self, kind, settings, now, expected_version).await
    }
}
