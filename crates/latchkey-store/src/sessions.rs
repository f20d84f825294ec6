//! Sessions: a live session is one not ended and not past its idle expiry or absolute lifetime;
//! every query that decides access checks both, so an ended session is refused by every node on
//! its next read.

use latchkey_core::sessions::{EndReason, Session, SessionStore};
use latchkey_core::store::StoreResult;
use latchkey_core::{StoreError, Timestamp};
use sqlx::AssertSqlSafe;

use crate::rows::{self, USER_COLUMNS};
use crate::{Bind, Store, map_err, on_pool};
use latchkey_core::users::User;

const COLUMNS: &str = "id, cookie_digest, user_id, amr, created, expires_at, lifetime_ends_at, last_activity, \
     password_verified_at, factor_verified_at, persistent";

/// Live at `$N`: not ended, idle expiry and lifetime both in the future.
fn live(n: usize) -> String {
    format!(
        "ended_at IS NULL AND expires_at > ${n} AND (lifetime_ends_at IS NULL OR lifetime_ends_at > ${n})"
    )
}

type Row = (String, String, String, String, i64, i64, Option<i64>, i64, Option<i64>, Option<i64>, i64);

fn from_row(row: Row) -> StoreResult<Session> {
    let (
        id,
        cookie_digest,
        user_id,
        amr,
        created,
        expires_at,
        lifetime,
        last_activity,
        pwd,
        factor,
        persistent,
    ) = row;
    Ok(Session {
        id,
        cookie_digest,
        user_id,
        amr: serde_json::from_str(&amr).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        created: Timestamp(created),
        expires_at: Timestamp(expires_at),
        lifetime_ends_at: lifetime.map(Timestamp),
        last_activity: Timestamp(last_activity),
        password_verified_at: pwd.map(Timestamp),
        factor_verified_at: factor.map(Timestamp),
        persistent: persistent != 0,
    })
}

impl Store {
    async fn select_sessions(&self, condition: &str, key: &str, now: Timestamp) -> StoreResult<Vec<Session>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM sessions WHERE {condition} = $1 AND {} ORDER BY created, id",
            live(2)
        );
        let rows: Vec<Row> = on_pool!(self, read, |pool| {
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(key)
                .bind(now.millis())
                .fetch_all(pool)
                .await
                .map_err(map_err)?
        });
        rows.into_iter().map(from_row).collect()
    }
}

impl SessionStore for Store {
    async fn insert_session(&self, session: &Session) -> StoreResult<()> {
        let amr = serde_json::to_string(&session.amr).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        on_pool!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO sessions (id, cookie_digest, user_id, amr, created, expires_at, lifetime_ends_at, \
                 last_activity, password_verified_at, factor_verified_at, persistent) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(&session.id)
            .bind(&session.cookie_digest)
            .bind(&session.user_id)
            .bind(amr)
            .bind(session.created.millis())
            .bind(session.expires_at.millis())
            .bind(session.lifetime_ends_at.map(Timestamp::millis))
            .bind(session.last_activity.millis())
            .bind(session.password_verified_at.map(Timestamp::millis))
            .bind(session.factor_verified_at.map(Timestamp::millis))
            .bind(i64::from(session.persistent))
            .execute(pool)
            .await
            .map_err(map_err)?;
        });
        Ok(())
    }

    async fn find_session(&self, id: &str, now: Timestamp) -> StoreResult<Option<Session>> {
        Ok(self.select_sessions("id", id, now).await?.into_iter().next())
    }

    async fn find_session_by_cookie(
        &self,
        digest: &str,
        now: Timestamp,
    ) -> StoreResult<Option<(Session, User)>> {
        let user_columns: String =
            USER_COLUMNS.split(", ").map(|c| format!("u.{c}")).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "SELECT s.id AS s_id, s.cookie_digest AS s_cookie, s.amr AS s_amr, s.created AS s_created, \
             s.expires_at AS s_expires, s.lifetime_ends_at AS s_lifetime, s.last_activity AS s_activity, \
             s.password_verified_at AS s_pwd, s.factor_verified_at AS s_factor, s.persistent AS s_persistent, \
             {user_columns} FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.cookie_digest = $1 AND s.ended_at IS NULL AND s.expires_at > $2 \
             AND (s.lifetime_ends_at IS NULL OR s.lifetime_ends_at > $2)"
        );
        let binds = [Bind::Text(digest.to_owned()), Bind::Int(now.millis())];
        self.read_row(&sql, &binds, |row| {
            let user = rows::user(row)?;
            let session = Session {
                id: row.text("s_id")?,
                cookie_digest: row.text("s_cookie")?,
                user_id: user.id.clone(),
                amr: serde_json::from_str(&row.text("s_amr")?)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                created: row.time("s_created")?,
                expires_at: row.time("s_expires")?,
                lifetime_ends_at: row.maybe_time("s_lifetime")?,
                last_activity: row.time("s_activity")?,
                password_verified_at: row.maybe_time("s_pwd")?,
                factor_verified_at: row.maybe_time("s_factor")?,
                persistent: row.int("s_persistent")? != 0,
            };
            Ok((session, user))
        })
        .await
    }

    async fn touch_session(&self, id: &str, expires_at: Timestamp, now: Timestamp) -> StoreResult<bool> {
        let sql =
            format!("UPDATE sessions SET expires_at = $3, last_activity = $2 WHERE id = $1 AND {}", live(2));
        let updated = on_pool!(self, write, |pool| {
            sqlx::query(AssertSqlSafe(sql))
                .bind(id)
                .bind(now.millis())
                .bind(expires_at.millis())
                .execute(pool)
                .await
                .map_err(map_err)?
                .rows_affected()
        });
        Ok(updated == 1)
    }

    async fn end_session(&self, id: &str, reason: EndReason, now: Timestamp) -> StoreResult<bool> {
        let sql = format!("UPDATE sessions SET ended_at = $2, end_reason = $3 WHERE id = $1 AND {}", live(2));
        let updated = on_pool!(self, write, |pool| {
            sqlx::query(AssertSqlSafe(sql))
                .bind(id)
                .bind(now.millis())
                .bind(reason.as_str())
                .execute(pool)
                .await
                .map_err(map_err)?
                .rows_affected()
        });
        Ok(updated == 1)
    }

    async fn end_user_sessions(
        &self,
        user_id: &str,
        keep: Option<&str>,
        reason: EndReason,
        now: Timestamp,
    ) -> StoreResult<Vec<String>> {
        let sql = format!(
            "UPDATE sessions SET ended_at = $2, end_reason = $3 WHERE user_id = $1 AND id <> $4 AND {} RETURNING id",
            live(2)
        );
        on_pool!(self, write, |pool| {
            sqlx::query_scalar(AssertSqlSafe(sql))
                .bind(user_id)
                .bind(now.millis())
                .bind(reason.as_str())
                .bind(keep.unwrap_or(""))
                .fetch_all(pool)
                .await
                .map_err(map_err)
        })
    }

    async fn expire_sessions(&self, now: Timestamp) -> StoreResult<Vec<(String, String, Timestamp)>> {
        let rows: Vec<(String, String, i64)> = on_pool!(self, write, |pool| {
            sqlx::query_as(
                "UPDATE sessions SET end_reason = 'EXPIRED', ended_at = CASE \
                 WHEN lifetime_ends_at IS NOT NULL AND lifetime_ends_at < expires_at THEN lifetime_ends_at \
                 ELSE expires_at END \
                 WHERE ended_at IS NULL AND (expires_at <= $1 OR lifetime_ends_at <= $1) \
                 RETURNING id, user_id, ended_at",
            )
            .bind(now.millis())
            .fetch_all(pool)
            .await
            .map_err(map_err)?
        });
        Ok(rows.into_iter().map(|(id, user, at)| (id, user, Timestamp(at))).collect())
    }

    async fn list_user_sessions(&self, user_id: &str, now: Timestamp) -> StoreResult<Vec<Session>> {
        self.select_sessions("user_id", user_id, now).await
    }
}

/// Organisation-wide values created once (the org id, ...): the first writer wins.
pub(crate) async fn org_setting(store: &Store, name: &str, default: &str) -> StoreResult<String> {
    on_pool!(store, write, |pool| {
        sqlx::query("INSERT INTO org_settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(default)
            .execute(pool)
            .await
            .map_err(map_err)?;
    });
    on_pool!(store, read, |pool| {
        sqlx::query_scalar("SELECT value FROM org_settings WHERE name = $1")
            .bind(name)
            .fetch_one(pool)
            .await
            .map_err(map_err)
    })
}
