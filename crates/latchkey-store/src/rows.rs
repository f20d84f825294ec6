//! Decoding rows into domain values, written once for every driver: sqlx's SQLite and PostgreSQL
//! rows and the inline SQLite reader's rows all answer [`Columns`], so a decoder is one function.

use latchkey_core::users::profile::Profile;
use latchkey_core::users::{User, UserStatus};
use latchkey_core::{StoreError, Timestamp};
use sqlx::Row as _;

use crate::map_err;

/// Typed access to a result row's columns by name; a NULL where a value is required, or a value of
/// the wrong type, is [`StoreError::Corrupt`].
pub(crate) trait Columns {
    fn text(&self, name: &str) -> Result<String, StoreError>;
    fn maybe_text(&self, name: &str) -> Result<Option<String>, StoreError>;
    fn int(&self, name: &str) -> Result<i64, StoreError>;
    fn maybe_int(&self, name: &str) -> Result<Option<i64>, StoreError>;

    fn time(&self, name: &str) -> Result<Timestamp, StoreError> {
        self.int(name).map(Timestamp)
    }
    fn maybe_time(&self, name: &str) -> Result<Option<Timestamp>, StoreError> {
        Ok(self.maybe_int(name)?.map(Timestamp))
    }
}

macro_rules! sqlx_columns {
    ($row:ty) => {
        impl Columns for $row {
            fn text(&self, name: &str) -> Result<String, StoreError> {
                self.try_get(name).map_err(map_err)
            }
            fn maybe_text(&self, name: &str) -> Result<Option<String>, StoreError> {
                self.try_get(name).map_err(map_err)
            }
            fn int(&self, name: &str) -> Result<i64, StoreError> {
                self.try_get(name).map_err(map_err)
            }
            fn maybe_int(&self, name: &str) -> Result<Option<i64>, StoreError> {
                self.try_get(name).map_err(map_err)
            }
        }
    };
}
sqlx_columns!(sqlx::sqlite::SqliteRow);
sqlx_columns!(sqlx::postgres::PgRow);

pub(crate) fn json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A user from a row that selected [`USER_COLUMNS`].
pub(crate) fn user(row: &(impl Columns + ?Sized)) -> Result<User, StoreError> {
    let status_text = row.text("status")?;
    let status = UserStatus::parse(&status_text)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown user status {status_text}")))?;
    let profile: serde_json::Map<String, serde_json::Value> = json(&row.text("profile")?)?;
    let history: Vec<String> = json(&row.text("password_history")?)?;
    let failed = row.int("failed_attempts")?;
    Ok(User {
        id: row.text("id")?,
        status,
        created: row.time("created")?,
        activated: row.maybe_time("activated")?,
        status_changed: row.maybe_time("status_changed")?,
        last_login: row.maybe_time("last_login")?,
        last_updated: row.time("last_updated")?,
        password_changed: row.maybe_time("password_changed")?,
        profile: Profile::from_stored(profile),
        password_hash: row.maybe_text("password_hash")?,
        password_history: history,
        failed_attempts: u32::try_from(failed).unwrap_or(u32::MAX),
        locked_at: row.maybe_time("locked_at")?,
        version: row.int("version")?,
    })
}

/// The column list every user query selects, in the order [`user`] reads it.
pub(crate) const USER_COLUMNS: &str = "id, status, created, activated, status_changed, last_login, \
     last_updated, password_changed, profile, password_hash, password_history, failed_attempts, locked_at, version";
