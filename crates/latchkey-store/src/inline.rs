//! SQLite reads run inline on the calling thread, for the reads on every request's path (the
//! session behind a cookie, an API token, a user, an app and its assignment).
//!
//! Why: sqlx runs each SQLite connection on its own thread, so a query is two thread hand-offs
//! (request out, rows back). On a small machine those context switches cost more than the query:
//! a session check spent about half its server CPU waking threads. A point read by an indexed key
//! on a WAL database takes microseconds and never waits for the writer (readers see the last
//! committed snapshot), so it is cheaper to run it where the request already is.
//!
//! What stays with sqlx: every write (they fsync, and must not hold a runtime thread), and reads
//! that scan (lists, searches). Connections here are read-only, opened lazily, and
//! kept in a small free list; a busy database (only during WAL recovery) waits at most
//! [`BUSY_WAIT`] before the read fails as unavailable.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use latchkey_core::StoreError;
use rusqlite::{Connection, OpenFlags};

use crate::Bind;
use crate::rows::Columns;

/// Idle connections kept for reuse (more are opened under load, and closed when returned).
const KEEP_IDLE: usize = 8;
/// How long an inline read may wait on a locked database.
const BUSY_WAIT: Duration = Duration::from_millis(250);
/// Prepared statements cached per connection (the hot reads are a handful of fixed texts).
const STATEMENTS_CACHED: usize = 32;

#[derive(Debug)]
pub(crate) struct InlineReader {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

fn corrupt(e: rusqlite::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn unavailable(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl InlineReader {
    /// A reader for the database file at `path`; nothing is opened until the first read.
    pub(crate) fn new(path: &Path) -> Self {
        Self { path: path.to_owned(), idle: Mutex::new(Vec::new()) }
    }

    fn open(&self) -> Result<Connection, StoreError> {
        // Read-only, and `query_only` besides. Opening still works after every other connection
        // has closed (sqlx closes idle ones) and the WAL files are gone (a test below).
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags).map_err(unavailable)?;
        conn.busy_timeout(BUSY_WAIT).map_err(unavailable)?;
        conn.pragma_update(None, "query_only", true).map_err(unavailable)?;
        conn.set_prepared_statement_cache_capacity(STATEMENTS_CACHED);
        Ok(conn)
    }

    fn take(&self) -> Result<Connection, StoreError> {
        let reused = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
        match reused {
            Some(conn) => Ok(conn),
            None => self.open(),
        }
    }

    fn give_back(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() < KEEP_IDLE {
            idle.push(conn);
        }
    }

    /// The first row `sql` returns with `binds` for its `$1..$n`, decoded; `None` without rows.
    pub(crate) fn read_row<T>(
        &self,
        sql: &str,
        binds: &[Bind],
        decode: impl FnOnce(&dyn Columns) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let conn = self.take()?;
        let result = Self::query(&conn, sql, binds, decode);
        self.give_back(conn);
        result
    }

    fn query<T>(
        conn: &Connection,
        sql: &str,
        binds: &[Bind],
        decode: impl FnOnce(&dyn Columns) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let mut statement = conn.prepare_cached(sql).map_err(unavailable)?;
        // SQLite numbers `$n` placeholders in order of first appearance, not by n: bind by name.
        for (n, bind) in binds.iter().enumerate() {
            let Some(index) = statement.parameter_index(&format!("${}", n + 1)).map_err(unavailable)? else {
                continue;
            };
            let bound = match bind {
                Bind::Text(text) => statement.raw_bind_parameter(index, text.as_str()),
                Bind::Int(n) => statement.raw_bind_parameter(index, n),
            };
            bound.map_err(unavailable)?;
        }
        let names: Vec<String> = statement.column_names().into_iter().map(str::to_owned).collect();
        let mut rows = statement.raw_query();
        match rows.next().map_err(unavailable)? {
            Some(row) => decode(&InlineRow { row, names: &names, next: Cell::new(0) }).map(Some),
            None => Ok(None),
        }
    }
}

/// A result row with its column names read once (rusqlite's by-name lookup asks SQLite for every
/// column's name on every access). Decoders mostly read columns in select order, so the column
/// after the last one read is tried first.
struct InlineRow<'a> {
    row: &'a rusqlite::Row<'a>,
    names: &'a [String],
    next: Cell<usize>,
}

impl InlineRow<'_> {
    fn get<T: rusqlite::types::FromSql>(&self, name: &str) -> Result<T, StoreError> {
        let guess = self.next.get();
        let index = if self.names.get(guess).is_some_and(|n| n == name) {
            guess
        } else {
            self.names
                .iter()
                .position(|n| n == name)
                .ok_or_else(|| StoreError::Corrupt(format!("no column {name}")))?
        };
        self.next.set(index + 1);
        self.row.get(index).map_err(corrupt)
    }
}

impl Columns for InlineRow<'_> {
    fn text(&self, name: &str) -> Result<String, StoreError> {
        self.get(name)
    }
    fn maybe_text(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.get(name)
    }
    fn int(&self, name: &str) -> Result<i64, StoreError> {
        self.get(name)
    }
    fn maybe_int(&self, name: &str) -> Result<Option<i64>, StoreError> {
        self.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database_with_one_row(dir: &Path) -> PathBuf {
        let path = dir.join("inline.db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "wal").unwrap();
        conn.execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER); INSERT INTO t VALUES ('a', 7);")
            .unwrap();
        // Closing the last connection checkpoints and removes the -wal and -shm files.
        drop(conn);
        path
    }

    #[test]
    fn reads_binding_placeholders_by_number_even_out_of_order() {
        let dir = tempfile::tempdir().unwrap();
        let reader = InlineReader::new(&database_with_one_row(dir.path()));
        assert!(!dir.path().join("inline.db-shm").exists(), "the WAL index is gone before the first read");
        let sql = "SELECT k, n FROM t WHERE n = $2 AND k = $1";
        let found = reader
            .read_row(sql, &[Bind::Text("a".into()), Bind::Int(7)], |row| Ok((row.text("k")?, row.int("n")?)))
            .unwrap();
        assert_eq!(found, Some(("a".to_owned(), 7)));
        let none = reader.read_row(sql, &[Bind::Text("a".into()), Bind::Int(8)], |row| row.int("n")).unwrap();
        assert_eq!(none, None);
        let missing = reader.read_row(sql, &[Bind::Text("a".into()), Bind::Int(7)], |row| row.int("absent"));
        assert!(matches!(missing, Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let reader = InlineReader::new(&database_with_one_row(dir.path()));
        let write = reader.read_row("UPDATE t SET n = 8 RETURNING n", &[], |row| row.int("n"));
        assert!(matches!(write, Err(StoreError::Unavailable(_))), "{write:?}");
        let n = reader.read_row("SELECT n FROM t", &[], |row| row.int("n")).unwrap();
        assert_eq!(n, Some(7));
    }
}
