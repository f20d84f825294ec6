//! Decoding rows into domain values, written once for both drivers.

use latchkey_core::users::profile::Profile;
use latchkey_core::users::{User, UserStatus};
use latchkey_core::{StoreError, Timestamp};
use sqlx::{ColumnIndex, Database, Decode, Row, Type};

use crate::map_err;

/// The column list every user query selects, in the order [`user`] reads it.
pub(crate) const USER_COLUMNS: &str = "id, status, created, activated, status_changed, last_login, \
     last_updated, password_changed, profile, password_hash, password_history, failed_attempts, locked_at, version";

pub(crate) fn user<'r, R>(row: &'r R) -> Result<User, StoreError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    R::Database: Database,
{
    let text = |name: &'static str| row.try_get::<String, _>(name).map_err(map_err);
    let time = |name: &'static str| row.try_get::<i64, _>(name).map(Timestamp).map_err(map_err);
    let maybe_time =
        |name: &'static str| row.try_get::<Option<i64>, _>(name).map(|t| t.map(Timestamp)).map_err(map_err);

    let status_text = text("status")?;
    let status = UserStatus::parse(&status_text)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown user status {status_text}")))?;
    let profile: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&text("profile")?).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let history: Vec<String> =
        serde_json::from_str(&text("password_history")?).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let failed: i64 = row.try_get("failed_attempts").map_err(map_err)?;
    Ok(User {
        id: text("id")?,
        status,
        created: time("created")?,
        activated: maybe_time("activated")?,
        status_changed: maybe_time("status_changed")?,
        last_login: maybe_time("last_login")?,
        last_updated: time("last_updated")?,
        password_changed: maybe_time("password_changed")?,
        profile: Profile::from_stored(profile),
        password_hash: row.try_get::<Option<String>, _>("password_hash").map_err(map_err)?,
        password_history: history,
        failed_attempts: u32::try_from(failed).unwrap_or(u32::MAX),
        locked_at: maybe_time("locked_at")?,
        version: row.try_get("version").map_err(map_err)?,
    })
}
