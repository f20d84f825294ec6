//! Sessions: a live session is one not ended and not past its idle expiry or absolute lifetime;
//! every query that decides access checks both, so an ended session is refused by every node on
//! its next read. On PostgreSQL the cookie lookup goes through the node's cache (`node_cache`);
//! every write that ends sessions returns only once no node's cache holds them.

use latchkey_core::sessions::{EndReason, Session};
use latchkey_core::store::SessionStore;
use latchkey_core::store::StoreResult;
use latchkey_core::{StoreError, Timestamp};
use sqlx::AssertSqlSafe;

use crate::rows::{self, Columns, USER_COLUMNS};
use crate::session_cache::Changed;
use crate::{Bind, Store, map_err, on_pool};
use latchkey_core::users::User;

/// The session columns, in table order.
const COLUMNS: [&str; 11] = [
    "id",
    "cookie_digest",
    "user_id",
    "amr",
    "created",
    "expires_at",
    "lifetime_ends_at",
    "last_activity",
    "password_verified_at",
    "factor_verified_at",
    "persistent",
];
/// The same columns as the cookie lookup names them beside the user's (which has an `id` and a
/// `created` too): `s_` and the column name.
const PREFIXED: [&str; 11] = [
    "s_id",
    "s_cookie_digest",
    "s_user_id",
    "s_amr",
    "s_created",
    "s_expires_at",
    "s_lifetime_ends_at",
    "s_last_activity",
    "s_password_verified_at",
    "s_factor_verified_at",
    "s_persistent",
];

/// The cookie lookup: a live session and its user in one read. Built once (it is on every
/// cookie-authenticated request).
static BY_COOKIE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let session: Vec<String> = COLUMNS.iter().zip(PREFIXED).map(|(c, p)| format!("s.{c} AS {p}")).collect();
    let user: Vec<String> = USER_COLUMNS.split(", ").map(|c| format!("u.{c}")).collect();
    format!(
        "SELECT {}, {} FROM sessions s JOIN users u ON u.id = s.user_id \
         WHERE s.cookie_digest = $1 AND s.ended_at IS NULL AND s.expires_at > $2 \
         AND (s.lifetime_ends_at IS NULL OR s.lifetime_ends_at > $2)",
        session.join(", "),
        user.join(", ")
    )
});

/// A session from a row that selected its columns under `names` ([`COLUMNS`] or [`PREFIXED`]).
fn session(row: &(impl Columns + ?Sized), names: &[&str; 11]) -> StoreResult<Session> {
    let [id, cookie_digest, user_id, amr, created, expires_at, lifetime, activity, pwd, factor, persistent] =
        names;
    Ok(Session {
        id: row.text(id)?,
        cookie_digest: row.text(cookie_digest)?,
        user_id: row.text(user_id)?,
        amr: rows::json(&row.text(amr)?)?,
        created: row.time(created)?,
        expires_at: row.time(expires_at)?,
        lifetime_ends_at: row.maybe_time(lifetime)?,
        last_activity: row.time(activity)?,
        password_verified_at: row.maybe_time(pwd)?,
        factor_verified_at: row.maybe_time(factor)?,
        persistent: row.int(persistent)? != 0,
    })
}

/// Live at `$N`: not ended, idle expiry and lifetime both in the future.
fn live(n: usize) -> String {
    format!(
        "ended_at IS NULL AND expires_at > ${n} AND (lifetime_ends_at IS NULL OR lifetime_ends_at > ${n})"
    )
}

impl Store {
    async fn select_sessions(&self, condition: &str, key: &str, now: Timestamp) -> StoreResult<Vec<Session>> {
        let sql = format!(
            "SELECT {} FROM sessions WHERE {condition} = $1 AND {} ORDER BY created, id",
            COLUMNS.join(", "),
            live(2)
        );
        on_pool!(self, read, |pool| {
            let found = sqlx::query(AssertSqlSafe(sql))
                .bind(key)
                .bind(now.millis())
                .fetch_all(pool)
                .await
                .map_err(map_err)?;
            found.iter().map(|row| session(row, &COLUMNS)).collect()
        })
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
        let cache = self.session_cache();
        if let Some(hit) = cache.and_then(|cache| cache.get(digest, now)) {
            return Ok(Some(hit));
        }
        let ticket = cache.and_then(|cache| cache.ticket());
        let binds = [Bind::Text(digest.to_owned()), Bind::Int(now.millis())];
        let found =
            self.read_row(&BY_COOKIE, &binds, |row| Ok((session(row, &PREFIXED)?, rows::user(row)?))).await?;
        if let (Some(cache), Some(ticket), Some((session, user))) = (cache, ticket, &found) {
            cache.fill(ticket, session, user);
        }
        Ok(found)
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
        self.forget(Changed::Session(id), false).await;
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
        if updated == 1 {
            self.forget(Changed::Session(id), true).await;
        }
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
        let ended: Vec<String> = on_pool!(self, write, |pool| {
            sqlx::query_scalar(AssertSqlSafe(sql))
                .bind(user_id)
                .bind(now.millis())
                .bind(reason.as_str())
                .bind(keep.unwrap_or(""))
                .fetch_all(pool)
                .await
                .map_err(map_err)?
        });
        if !ended.is_empty() {
            self.forget(Changed::Sessions(&ended), true).await;
        }
        Ok(ended)
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
        let ids: Vec<String> = rows.iter().map(|(id, _, _)| id.clone()).collect();
        self.forget(Changed::Sessions(&ids), false).await;
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
