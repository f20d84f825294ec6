//! The user store: inserts, optimistic-concurrency updates, and search translated from the core's
//! query tree into parameterised SQL (values are always bound, never spliced into the text).

use latchkey_core::store::{StoreResult, UserStore};
use latchkey_core::tokens::OneTimeToken;
use latchkey_core::users::query::{Field, UserQuery};
use latchkey_core::users::{User, UserStatus};
use latchkey_core::{StoreError, Timestamp};
use sqlx::AssertSqlSafe;

use crate::filter::sql_of;
use crate::rows::{self, USER_COLUMNS};
use crate::session_cache::Changed;
use crate::{Bind, Store, bind_all, map_err, on_pool};

/// Searchable lower-cased copies of profile attributes; text search compares these.
fn keys(user: &User) -> [String; 4] {
    let p = &user.profile;
    [
        p.login().to_lowercase(),
        p.get("email").unwrap_or_default().to_lowercase(),
        p.get("firstName").unwrap_or_default().to_lowercase(),
        p.get("lastName").unwrap_or_default().to_lowercase(),
    ]
}

fn json(value: &impl serde::Serialize) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

macro_rules! bind_user {
    ($query:expr, $user:expr) => {{
        let user: &User = $user;
        let [login_key, email_key, first_key, last_key] = keys(user);
        $query
            .bind(user.id.clone())
            .bind(user.login().to_owned())
            .bind(login_key)
            .bind(email_key)
            .bind(first_key)
            .bind(last_key)
            .bind(user.status.as_str())
            .bind(user.created.millis())
            .bind(user.activated.map(|t| t.millis()))
            .bind(user.status_changed.map(|t| t.millis()))
            .bind(user.last_login.map(|t| t.millis()))
            .bind(user.last_updated.millis())
            .bind(user.password_changed.map(|t| t.millis()))
            .bind(json(user.profile.as_map())?)
            .bind(user.password_hash.clone())
            .bind(json(&user.password_history)?)
            .bind(i64::from(user.failed_attempts))
            .bind(user.version)
            .bind(user.locked_at.map(|t| t.millis()))
    }};
}

const INSERT_USER: &str = "INSERT INTO users (id, login, login_key, email_key, first_name_key, \
     last_name_key, status, created, activated, status_changed, last_login, last_updated, \
     password_changed, profile, password_hash, password_history, failed_attempts, version, locked_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)";

const UPDATE_USER: &str = "UPDATE users SET login = $2, login_key = $3, email_key = $4, \
     first_name_key = $5, last_name_key = $6, status = $7, created = $8, activated = $9, \
     status_changed = $10, last_login = $11, last_updated = $12, password_changed = $13, \
     profile = $14, password_hash = $15, password_history = $16, failed_attempts = $17, \
     version = $18, locked_at = $19 WHERE id = $1 AND version = $20";

impl UserStore for Store {
    async fn insert_user(&self, user: &User) -> StoreResult<()> {
        on_pool!(self, write, |pool| {
            let mut tx = pool.begin().await.map_err(map_err)?;
            bind_user!(sqlx::query(INSERT_USER), user).execute(&mut *tx).await.map_err(
                |e| match map_err(e) {
                    StoreError::Conflict(_) => StoreError::Conflict("login".to_owned()),
                    other => other,
                },
            )?;
            // Every user is in the built-in Everyone group from the start.
            sqlx::query(
                "INSERT INTO group_members (group_id, user_id, source, created) \
                 SELECT id, $1, '', $2 FROM user_groups WHERE type = 'BUILT_IN'",
            )
            .bind(&user.id)
            .bind(user.created.millis())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
            tx.commit().await.map_err(map_err)?;
        });
        Ok(())
    }

    async fn find_user(&self, id_or_login: &str) -> StoreResult<Option<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id = $1 OR login_key = $2 ORDER BY id = $1 DESC LIMIT 1"
        );
        let binds = [Bind::Text(id_or_login.to_owned()), Bind::Text(id_or_login.to_lowercase())];
        self.read_row(&sql, &binds, |row| rows::user(row)).await
    }

    async fn find_session_user(&self, session_id: &str, user_id: &str) -> StoreResult<Option<User>> {
        if let Some(user) = self.session_cache().and_then(|cache| cache.get_session_user(session_id, user_id))
        {
            return Ok(Some(user));
        }
        Ok(self.find_user(user_id).await?.filter(|user| user.id == user_id))
    }

    async fn list_users(&self, query: &UserQuery, after: Option<&str>, limit: u32) -> StoreResult<Vec<User>> {
        let mut binds = Vec::new();
        let mut conditions = Vec::new();
        match query {
            UserQuery::All => {}
            UserQuery::Prefix(prefix) => {
                let pattern = format!("{}%", escape_like(prefix));
                let mut alternatives = Vec::new();
                for column in ["login_key", "email_key", "first_name_key", "last_name_key"] {
                    binds.push(Bind::Text(pattern.clone()));
                    alternatives.push(format!("{column} LIKE ${} ESCAPE '\\'", binds.len()));
                }
                conditions.push(format!("({})", alternatives.join(" OR ")));
            }
            UserQuery::Expr(expr) => {
                conditions.push(sql_of(expr, &mut binds, user_column, UserStatus::as_str))
            }
        }
        if let Some(after) = after {
            binds.push(Bind::Text(after.to_owned()));
            conditions.push(format!("id > ${}", binds.len()));
        }
        let filter =
            if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
        binds.push(Bind::Int(i64::from(limit)));
        let sql = format!("SELECT {USER_COLUMNS} FROM users {filter} ORDER BY id LIMIT ${}", binds.len());
        on_pool!(self, read, |pool| {
            let q = bind_all!(sqlx::query(AssertSqlSafe(sql)), &binds);
            let found = q.fetch_all(pool).await.map_err(map_err)?;
            found.iter().map(rows::user).collect()
        })
    }

    async fn update_user(
        &self,
        user: &User,
        expected_version: i64,
        token: Option<&OneTimeToken>,
    ) -> StoreResult<()> {
        on_pool!(self, write, |pool| {
            let mut tx = pool.begin().await.map_err(map_err)?;
            let updated = bind_user!(sqlx::query(UPDATE_USER), user)
                .bind(expected_version)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            if updated.rows_affected() != 1 {
                return Err(StoreError::Stale);
            }
            if let Some(token) = token {
                sqlx::query("DELETE FROM one_time_tokens WHERE user_id = $1 AND purpose = $2")
                    .bind(&token.user_id)
                    .bind(token.purpose.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                sqlx::query(
                    "INSERT INTO one_time_tokens (digest, user_id, purpose, created, expires_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&token.digest)
                .bind(&token.user_id)
                .bind(token.purpose.as_str())
                .bind(token.created.millis())
                .bind(token.expires_at.millis())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            }
            tx.commit().await.map_err(map_err)?;
        });
        self.forget(Changed::User(&user.id), true).await;
        Ok(())
    }

    async fn record_sign_in(&self, user_id: &str, now: Timestamp) -> StoreResult<()> {
        on_pool!(self, write, |pool| {
            sqlx::query(
                "UPDATE users SET failed_attempts = 0, last_login = $2, last_updated = $2, version = version + 1 \
                 WHERE id = $1",
            )
            .bind(user_id)
            .bind(now.millis())
            .execute(pool)
            .await
            .map_err(map_err)?;
        });
        self.forget(Changed::User(user_id), false).await;
        Ok(())
    }

    async fn record_failed_sign_in(
        &self,
        user_id: &str,
        max_attempts: u32,
        now: Timestamp,
    ) -> StoreResult<Option<User>> {
        let locks = "$2 > 0 AND failed_attempts + 1 >= $2 AND status IN ('ACTIVE', 'PASSWORD_EXPIRED')";
        let sql = format!(
            "UPDATE users SET failed_attempts = failed_attempts + 1, \
             status = CASE WHEN {locks} THEN 'LOCKED_OUT' ELSE status END, \
             locked_at = CASE WHEN {locks} THEN $3 ELSE locked_at END, \
             status_changed = CASE WHEN {locks} THEN $3 ELSE status_changed END, \
             last_updated = $3, version = version + 1 WHERE id = $1 RETURNING {USER_COLUMNS}"
        );
        let user = on_pool!(self, write, |pool| {
            let row = sqlx::query(AssertSqlSafe(sql))
                .bind(user_id)
                .bind(i64::from(max_attempts))
                .bind(now.millis())
                .fetch_optional(pool)
                .await
                .map_err(map_err)?;
            row.as_ref().map(rows::user).transpose()?
        });
        // A locked-out user's sessions are refused: no node may keep answering from its cache.
        let locked = user.as_ref().is_some_and(|u| u.status == UserStatus::LockedOut);
        self.forget(Changed::User(user_id), locked).await;
        Ok(user)
    }

    async fn delete_user(&self, id: &str) -> StoreResult<bool> {
        let deleted = on_pool!(self, write, |pool| {
            let mut tx = pool.begin().await.map_err(map_err)?;
            sqlx::query("DELETE FROM one_time_tokens WHERE user_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            let deleted = sqlx::query("DELETE FROM users WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            tx.commit().await.map_err(map_err)?;
            deleted.rows_affected() == 1
        });
        self.forget(Changed::User(id), true).await;
        Ok(deleted)
    }
}

fn user_column(field: Field) -> &'static str {
    match field {
        Field::Id => "id",
        Field::Status => "status",
        Field::Created => "created",
        Field::LastUpdated => "last_updated",
        Field::StatusChanged => "status_changed",
        Field::Login => "login_key",
        Field::Email => "email_key",
        Field::FirstName => "first_name_key",
        Field::LastName => "last_name_key",
    }
}

/// Escapes LIKE wildcards with a backslash (every LIKE using it says `ESCAPE '\'`) so user text
/// matches literally.
pub(crate) fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}
