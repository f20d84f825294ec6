//! SAML apps and their assignments, the organisation's signing keys, and SSO/SLO state.
//!
//! An app's `settings.signOn` and `visibility` are stored as JSON text (the API's own shape);
//! everything a query filters on has its own column.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use latchkey_core::apps::query::AppQuery;
use latchkey_core::apps::sso::{LogoutWalk, PendingSso};
use latchkey_core::apps::{App, AppStatus, AppUser, SignOn};
use latchkey_core::signing_keys::{KeyStatus, StoredSigningKey};
use latchkey_core::signon::Participant;
use latchkey_core::store::{AppStore, SamlStore, SignOnStore, SigningKeyStore, StoreResult};
use latchkey_core::{StoreError, Timestamp};
use sqlx::AssertSqlSafe;

use crate::session_cache::Changed;
use crate::{Bind, Store, bind_all, map_err, on_pool};

const APP_COLUMNS: &str = "id, name, label, status, external_key, link_id, sign_on_mode, sign_on, visibility, created, last_updated";
type AppRow = (String, String, String, String, String, String, String, String, String, i64, i64);

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn app_from_row(row: AppRow) -> StoreResult<App> {
    let (id, name, label, status, external_key, link_id, mode, sign_on, visibility, created, last_updated) =
        row;
    Ok(App {
        status: AppStatus::parse(&status).ok_or_else(|| corrupt(format!("app status {status}")))?,
        sign_on: SignOn::from_stored(&mode, &sign_on).map_err(corrupt)?,
        visibility: serde_json::from_str(&visibility).map_err(corrupt)?,
        id,
        name,
        label,
        external_key,
        link_id,
        created: Timestamp(created),
        last_updated: Timestamp(last_updated),
    })
}

const APP_USER_COLUMNS: &str = "app_id, user_id, scope, user_name, created, last_updated";
type AppUserRow = (String, String, String, Option<String>, i64, i64);

fn app_user_from_row((app_id, user_id, scope, user_name, created, last_updated): AppUserRow) -> AppUser {
    AppUser {
        app_id,
        user_id,
        scope,
        user_name,
        created: Timestamp(created),
        last_updated: Timestamp(last_updated),
    }
}

const PARTICIPANT_COLUMNS: &str = "session_id, app_id, name_id, name_id_format, session_index, created";
type ParticipantRow = (String, String, String, String, String, i64);

fn participant_from_row(row: ParticipantRow) -> Participant {
    let (session_id, app_id, name_id, name_id_format, session_index, created) = row;
    Participant { session_id, app_id, name_id, name_id_format, session_index, created: Timestamp(created) }
}

impl AppStore for Store {
    async fn insert_app(&self, app: &App) -> StoreResult<()> {
        let sign_on = app.sign_on.settings_json().map_err(corrupt)?;
        let visibility = serde_json::to_string(&app.visibility).map_err(corrupt)?;
        on_pool!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO apps (id, name, label, status, external_key, link_id, sign_on_mode, sign_on, \
                 visibility, created, last_updated) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(&app.id)
            .bind(&app.name)
            .bind(&app.label)
            .bind(app.status.as_str())
            .bind(&app.external_key)
            .bind(&app.link_id)
            .bind(app.sign_on.mode())
            .bind(&sign_on)
            .bind(&visibility)
            .bind(app.created.millis())
            .bind(app.last_updated.millis())
            .execute(pool)
            .await
            .map_err(|e| match map_err(e) {
                StoreError::Conflict(_) => StoreError::Conflict("name".to_owned()),
                other => other,
            })?;
        });
        Ok(())
    }

    async fn update_app(&self, app: &App) -> StoreResult<bool> {
        let sign_on = app.sign_on.settings_json().map_err(corrupt)?;
        let visibility = serde_json::to_string(&app.visibility).map_err(corrupt)?;
        let updated = on_pool!(self, write, |pool| {
            sqlx::query(
                "UPDATE apps SET label = $2, status = $3, sign_on_mode = $4, sign_on = $5, visibility = $6, \
                 last_updated = $7 WHERE id = $1",
            )
            .bind(&app.id)
            .bind(&app.label)
            .bind(app.status.as_str())
            .bind(app.sign_on.mode())
            .bind(&sign_on)
            .bind(&visibility)
            .bind(app.last_updated.millis())
            .execute(pool)
            .await
            .map_err(map_err)?
            .rows_affected()
        });
        self.forget(Changed::Apps, true).await;
        Ok(updated == 1)
    }

    async fn delete_app(&self, id: &str) -> StoreResult<bool> {
        let deleted = on_pool!(self, write, |pool| {
            let mut tx = pool.begin().await.map_err(map_err)?;
            sqlx::query("DELETE FROM saml_request_ids WHERE app_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            let deleted = sqlx::query("DELETE FROM apps WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?
                .rows_affected();
            tx.commit().await.map_err(map_err)?;
            deleted
        });
        self.forget(Changed::Apps, true).await;
        Ok(deleted == 1)
    }

    async fn find_app(&self, id_or_external_key: &str) -> StoreResult<Option<App>> {
        // Every SSO looks its app up: through the cache (see `session_cache`), from SQL built once.
        static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!("SELECT {APP_COLUMNS} FROM apps WHERE id = $1 OR external_key = $1")
        });
        let cache = self.session_cache();
        if let Some(app) = cache.and_then(|cache| cache.get_app(id_or_external_key)) {
            return Ok(Some(app));
        }
        let ticket = cache.and_then(|cache| cache.ticket());
        let sql = &*SQL;
        let row = self
            .read_row(sql, &[Bind::Text(id_or_external_key.to_owned())], |row| {
                Ok((
                    row.text("id")?,
                    row.text("name")?,
                    row.text("label")?,
                    row.text("status")?,
                    row.text("external_key")?,
                    row.text("link_id")?,
                    row.text("sign_on_mode")?,
                    row.text("sign_on")?,
                    row.text("visibility")?,
                    row.int("created")?,
                    row.int("last_updated")?,
                ))
            })
            .await?;
        let app = row.map(app_from_row).transpose()?;
        if let (Some(cache), Some(ticket), Some(app)) = (cache, ticket, &app) {
            cache.fill_app(ticket, id_or_external_key, app);
        }
        Ok(app)
    }

    async fn list_apps(&self, query: &AppQuery) -> StoreResult<Vec<App>> {
        // Every condition goes into the SQL, so a page is cut from the matching apps only.
        let mut binds = vec![Bind::Text(query.after.clone().unwrap_or_default())];
        let mut conditions = vec!["id > $1".to_owned()];
        let mut condition = |sql: &str, bind: Bind| {
            binds.push(bind);
            conditions.push(sql.replace('?', &format!("${}", binds.len())));
        };
        if let Some(status) = query.status {
            condition("status = ?", Bind::Text(status.as_str().to_owned()));
        }
        if let Some(name) = &query.name {
            condition("name = ?", Bind::Text(name.clone()));
        }
        if let Some(user_id) = &query.user_id {
            // Assigned directly or through a group (both placeholders take the same user id).
            condition(
                "(EXISTS (SELECT 1 FROM app_users u WHERE u.app_id = apps.id AND u.user_id = ?) \
                 OR EXISTS (SELECT 1 FROM app_groups g JOIN group_members m ON m.group_id = g.group_id \
                 WHERE g.app_id = apps.id AND m.user_id = ?))",
                Bind::Text(user_id.clone()),
            );
        }
        if let Some(prefix) = &query.q {
            let pattern = format!("{}%", crate::users::escape_like(prefix));
            condition("(lower(label) LIKE ? ESCAPE '\\' OR name LIKE ? ESCAPE '\\')", Bind::Text(pattern));
        }
        binds.push(Bind::Int(i64::from(query.limit)));
        let sql = format!(
            "SELECT {APP_COLUMNS} FROM apps WHERE {} ORDER BY id LIMIT ${}",
            conditions.join(" AND "),
            binds.len()
        );
        let rows: Vec<AppRow> = on_pool!(self, read, |pool| {
            let select = bind_all!(sqlx::query_as(AssertSqlSafe(sql.as_str())), &binds);
            select.fetch_all(pool).await.map_err(map_err)?
        });
        rows.into_iter().map(app_from_row).collect()
    }

    async fn put_app_user(&self, assignment: &AppUser) -> StoreResult<()> {
        on_pool!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO app_users (app_id, user_id, scope, user_name, created, last_updated) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (app_id, user_id) DO UPDATE SET \
                 scope = excluded.scope, user_name = excluded.user_name, last_updated = excluded.last_updated",
            )
            .bind(&assignment.app_id)
            .bind(&assignment.user_id)
            .bind(&assignment.scope)
            .bind(&assignment.user_name)
            .bind(assignment.created.millis())
            .bind(assignment.last_updated.millis())
            .execute(pool)
            .await
            .map_err(map_err)?;
        });
        Ok(())
    }

    async fn find_app_user(&self, app_id: &str, user_id: &str) -> StoreResult<Option<AppUser>> {
        // The direct assignment, else the one the user has through a group.
        let sql = format!(
            "SELECT {APP_USER_COLUMNS} FROM app_users WHERE app_id = $1 AND user_id = $2 \
             UNION ALL \
             SELECT g.app_id, m.user_id, 'GROUP', NULL, MIN(g.created), MAX(g.last_updated) \
             FROM app_groups g JOIN group_members m ON m.group_id = g.group_id \
             WHERE g.app_id = $1 AND m.user_id = $2 \
             AND NOT EXISTS (SELECT 1 FROM app_users u WHERE u.app_id = $1 AND u.user_id = $2) \
             GROUP BY g.app_id, m.user_id"
        );
        let row: Option<AppUserRow> = on_pool!(self, read, |pool| {
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(app_id)
                .bind(user_id)
                .fetch_optional(pool)
                .await
                .map_err(map_err)?
        });
        Ok(row.map(app_user_from_row))
    }

    async fn list_app_users(
        &self,
        app_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<AppUser>> {
        // Direct assignments, then users who have the app through a group (and no direct one).
        let sql = format!(
            "SELECT {APP_USER_COLUMNS} FROM app_users WHERE app_id = $1 AND user_id > $2 \
             UNION ALL \
             SELECT g.app_id, m.user_id, 'GROUP', NULL, MIN(g.created), MAX(g.last_updated) \
             FROM app_groups g JOIN group_members m ON m.group_id = g.group_id \
             WHERE g.app_id = $1 AND m.user_id > $2 \
             AND NOT EXISTS (SELECT 1 FROM app_users u WHERE u.app_id = $1 AND u.user_id = m.user_id) \
             GROUP BY g.app_id, m.user_id \
             ORDER BY user_id LIMIT $3"
        );
        let rows: Vec<AppUserRow> = on_pool!(self, read, |pool| {
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(app_id)
                .bind(after.unwrap_or(""))
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await
                .map_err(map_err)?
        });
        Ok(rows.into_iter().map(app_user_from_row).collect())
    }

    async fn delete_app_user(&self, app_id: &str, user_id: &str) -> StoreResult<bool> {
        let deleted = on_pool!(self, write, |pool| {
            sqlx::query("DELETE FROM app_users WHERE app_id = $1 AND user_id = $2")
                .bind(app_id)
                .bind(user_id)
                .execute(pool)
                .await
                .map_err(map_err)?
                .rows_affected()
        });
        // Cached grants live in the user's sessions; no node may sign for the user once this returns.
        self.forget(Changed::User(user_id), true).await;
        Ok(deleted == 1)
    }

    async fn list_user_apps(&self, user_id: &str) -> StoreResult<Vec<(App, AppUser)>> {
        let app_columns: Vec<String> = APP_COLUMNS.split(", ").map(|c| format!("a.{c}")).collect();
        let app_columns = app_columns.join(", ");
        // The assignment's app and user are the row's app and `user_id`: four columns of it remain.
        // Direct assignments, then apps the user has through a group (and no direct assignment).
        let sql = format!(
            "SELECT {app_columns}, u.scope, u.user_name, u.created AS assigned, u.last_updated AS reassigned \
             FROM app_users u JOIN apps a ON a.id = u.app_id WHERE u.user_id = $1 \
             UNION ALL \
             SELECT {app_columns}, 'GROUP', NULL, \
               (SELECT MIN(g.created) FROM app_groups g JOIN group_members m ON m.group_id = g.group_id \
                WHERE g.app_id = a.id AND m.user_id = $1), \
               (SELECT MAX(g.last_updated) FROM app_groups g JOIN group_members m ON m.group_id = g.group_id \
                WHERE g.app_id = a.id AND m.user_id = $1) \
             FROM apps a WHERE a.id IN (SELECT g.app_id FROM app_groups g \
                 JOIN group_members m ON m.group_id = g.group_id WHERE m.user_id = $1) \
               AND a.id NOT IN (SELECT app_id FROM app_users WHERE user_id = $1) \
             ORDER BY label, id"
        );
        type JoinedRow = (
            String,
            String,
            String,
            String,
            String,
            String,
            String,
            String,
            String,
            i64,
            i64,
            String,
            Option<String>,
            i64,
            i64,
        );
        let rows: Vec<JoinedRow> = on_pool!(self, read, |pool| {
            sqlx::query_as(AssertSqlSafe(sql)).bind(user_id).fetch_all(pool).await.map_err(map_err)?
        });
        rows.into_iter()
            .map(|(a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, scope, user_name, created, last_updated)| {
                let app = app_from_row((a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10))?;
                let assignment = app_user_from_row((
                    app.id.clone(),
                    user_id.to_owned(),
                    scope,
                    user_name,
                    created,
                    last_updated,
                ));
                Ok((app, assignment))
            })
            .collect()
    }
}

type KeyRow = (String, String, String, String, i64);

fn key_from_row(
    (kid, status, sealed_private_key, certificate, created): KeyRow,
) -> StoreResult<StoredSigningKey> {
    Ok(StoredSigningKey {
        status: KeyStatus::parse(&status).ok_or_else(|| corrupt(format!("key status {status}")))?,
        certificate_der: STANDARD.decode(certificate).map_err(corrupt)?,
        kid,
        sealed_private_key,
        created: Timestamp(created),
    })
}

const PENDING_COLUMNS: &str =
    "id_digest, app_id, request_id, acs_url, relay_state, force_authn, name_id_format, created, expires_at";
type PendingRow = (String, String, String, String, Option<String>, i64, Option<String>, i64, i64);

impl SigningKeyStore for Store {
    async fn list_signing_keys(&self) -> StoreResult<Vec<StoredSigningKey>> {
        let rows: Vec<KeyRow> = on_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT kid, status, sealed_private_key, certificate_der, created FROM saml_signing_keys \
                 ORDER BY created DESC, kid",
            )
            .fetch_all(pool)
            .await
            .map_err(map_err)?
        });
        rows.into_iter().map(key_from_row).collect()
    }

    async fn insert_signing_key(&self, key: &StoredSigningKey) -> StoreResult<()> {
        on_pool!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO saml_signing_keys (kid, status, sealed_private_key, certificate_der, created) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&key.kid)
            .bind(key.status.as_str())
            .bind(&key.sealed_private_key)
            .bind(STANDARD.encode(&key.certificate_der))
            .bind(key.created.millis())
            .execute(pool)
            .await
            .map_err(|e| match map_err(e) {
                StoreError::Conflict(_) => StoreError::Conflict("status".to_owned()),
                other => other,
            })?;
        });
        Ok(())
    }

    async fn promote_next_signing_key(&self) -> StoreResult<bool> {
        let promoted = on_pool!(self, write, |pool| {
            let mut tx = pool.begin().await.map_err(map_err)?;
            let next: Option<(String,)> =
                sqlx::query_as("SELECT kid FROM saml_signing_keys WHERE status = 'NEXT'")
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(map_err)?;
            if next.is_some() {
                sqlx::query("UPDATE saml_signing_keys SET status = 'RETIRED' WHERE status = 'PREVIOUS'")
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                sqlx::query("UPDATE saml_signing_keys SET status = 'PREVIOUS' WHERE status = 'ACTIVE'")
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                sqlx::query("UPDATE saml_signing_keys SET status = 'ACTIVE' WHERE status = 'NEXT'")
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
            }
            tx.commit().await.map_err(map_err)?;
            next.is_some()
        });
        Ok(promoted)
    }

    async fn retire_previous_signing_key(&self) -> StoreResult<bool> {
        let retired = on_pool!(self, write, |pool| {
            sqlx::query("UPDATE saml_signing_keys SET status = 'RETIRED' WHERE status = 'PREVIOUS'")
                .execute(pool)
                .await
                .map_err(map_err)?
                .rows_affected()
        });
        Ok(retired > 0)
    }
}

impl SamlStore for Store {
    async fn remember_saml_request(
        &self,
        app_id: &str,
        request_id: &str,
        expires_at: Timestamp,
    ) -> StoreResult<bool> {
        // Every SP-initiated sign-on writes one: group-committed (`group_commit`).
        self.record_request_id(app_id, request_id, expires_at).await
    }

    async fn put_pending_sso(&self, pending: &PendingSso) -> StoreResult<()> {
        let sql = format!(
            "INSERT INTO saml_pending ({PENDING_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        );
        on_pool!(self, write, |pool| {
            sqlx::query(AssertSqlSafe(sql))
                .bind(&pending.id_digest)
                .bind(&pending.app_id)
                .bind(&pending.request_id)
                .bind(&pending.acs_url)
                .bind(&pending.relay_state)
                .bind(i64::from(pending.force_authn))
                .bind(&pending.name_id_format)
                .bind(pending.created.millis())
                .bind(pending.expires_at.millis())
                .execute(pool)
                .await
                .map_err(map_err)?;
        });
        Ok(())
    }

    async fn find_pending_sso(&self, id_digest: &str, now: Timestamp) -> StoreResult<Option<PendingSso>> {
        let sql =
            format!("SELECT {PENDING_COLUMNS} FROM saml_pending WHERE id_digest = $1 AND expires_at > $2");
        let row: Option<PendingRow> = on_pool!(self, read, |pool| {
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(id_digest)
                .bind(now.millis())
                .fetch_optional(pool)
                .await
                .map_err(map_err)?
        });
        Ok(row.map(
            |(id_digest, app_id, request_id, acs_url, relay_state, force, format, created, expires)| {
                PendingSso {
                    id_digest,
                    app_id,
                    request_id,
                    acs_url,
                    relay_state,
                    force_authn: force != 0,
                    name_id_format: format,
                    created: Timestamp(created),
                    expires_at: Timestamp(expires),
                }
            },
        ))
    }

    async fn delete_pending_sso(&self, id_digest: &str) -> StoreResult<bool> {
        let deleted = on_pool!(self, write, |pool| {
            sqlx::query("DELETE FROM saml_pending WHERE id_digest = $1")
                .bind(id_digest)
                .execute(pool)
                .await
                .map_err(map_err)?
                .rows_affected()
        });
        Ok(deleted == 1)
    }

    async fn put_logout_walk(&self, walk: &LogoutWalk) -> StoreResult<()> {
        let text = serde_json::to_string(walk).map_err(corrupt)?;
        on_pool!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO saml_logout_walks (id_digest, walk, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (id_digest) DO UPDATE SET walk = excluded.walk, expires_at = excluded.expires_at",
            )
            .bind(&walk.id_digest)
            .bind(&text)
            .bind(walk.expires_at.millis())
            .execute(pool)
            .await
            .map_err(map_err)?;
        });
        Ok(())
    }

    async fn find_logout_walk(&self, id_digest: &str, now: Timestamp) -> StoreResult<Option<LogoutWalk>> {
        let row: Option<(String,)> = on_pool!(self, read, |pool| {
            sqlx::query_as("SELECT walk FROM saml_logout_walks WHERE id_digest = $1 AND expires_at > $2")
                .bind(id_digest)
                .bind(now.millis())
                .fetch_optional(pool)
                .await
                .map_err(map_err)?
        });
        row.map(|(text,)| serde_json::from_str(&text).map_err(corrupt)).transpose()
    }

    async fn delete_logout_walk(&self, id_digest: &str) -> StoreResult<()> {
        on_pool!(self, write, |pool| {
            sqlx::query("DELETE FROM saml_logout_walks WHERE id_digest = $1")
                .bind(id_digest)
                .execute(pool)
                .await
                .map_err(map_err)?;
        });
        Ok(())
    }

    async fn purge_saml(&self, now: Timestamp) -> StoreResult<u64> {
        self.delete_expired(
            &[
                "DELETE FROM saml_request_ids WHERE expires_at <= $1",
                "DELETE FROM saml_pending WHERE expires_at <= $1",
                "DELETE FROM saml_logout_walks WHERE expires_at <= $1",
            ],
            now,
        )
        .await
    }
}

impl SignOnStore for Store {
    async fn add_participant(&self, p: &Participant) -> StoreResult<Participant> {
        let sql = format!(
            "INSERT INTO saml_participants ({PARTICIPANT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (session_id, app_id) DO NOTHING"
        );
        let inserted = on_pool!(self, write, |pool| {
            sqlx::query(AssertSqlSafe(sql))
                .bind(&p.session_id)
                .bind(&p.app_id)
                .bind(&p.name_id)
                .bind(&p.name_id_format)
                .bind(&p.session_index)
                .bind(p.created.millis())
                .execute(pool)
                .await
                .map_err(map_err)?
                .rows_affected()
        });
        if inserted == 1 {
            return Ok(p.clone());
        }
        self.find_participant(&p.session_id, &p.app_id).await?.ok_or(StoreError::Stale)
    }

    async fn find_participant(&self, session_id: &str, app_id: &str) -> StoreResult<Option<Participant>> {
        let sql = format!(
            "SELECT {PARTICIPANT_COLUMNS} FROM saml_participants WHERE session_id = $1 AND app_id = $2"
        );
        let row: Option<ParticipantRow> = on_pool!(self, read, |pool| {
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(session_id)
                .bind(app_id)
                .fetch_optional(pool)
                .await
                .map_err(map_err)?
        });
        Ok(row.map(participant_from_row))
    }

    async fn list_participants(&self, session_id: &str) -> StoreResult<Vec<Participant>> {
        let sql = format!(
            "SELECT {PARTICIPANT_COLUMNS} FROM saml_participants WHERE session_id = $1 ORDER BY created, app_id"
        );
        let rows: Vec<ParticipantRow> = on_pool!(self, read, |pool| {
            sqlx::query_as(AssertSqlSafe(sql)).bind(session_id).fetch_all(pool).await.map_err(map_err)?
        });
        Ok(rows.into_iter().map(participant_from_row).collect())
    }

    async fn find_sso_grant(
        &self,
        app_id: &str,
        user_id: &str,
        session_id: &str,
    ) -> StoreResult<Option<Option<Participant>>> {
        // Every SSO asks: a session that signed in to the app before is answered from the cache
        // (see `session_cache`); a first visit, with no record yet, always reads.
        let cache = self.session_cache();
        if let Some(participant) = cache.and_then(|cache| cache.get_grant(session_id, user_id, app_id)) {
            return Ok(Some(Some(participant)));
        }
        let ticket = cache.and_then(|cache| cache.ticket());
        // One row when the user is assigned, directly or through a group; its participant columns
        // are NULL until the session was first sent to the app (the LEFT JOIN).
        let sql = "SELECT p.name_id, p.name_id_format, p.session_index, p.created \
                   FROM (SELECT 1 AS assigned WHERE EXISTS \
                       (SELECT 1 FROM app_users WHERE app_id = $1 AND user_id = $2) \
                     OR EXISTS (SELECT 1 FROM app_groups g JOIN group_members m ON m.group_id = g.group_id \
                       WHERE g.app_id = $1 AND m.user_id = $2)) a \
                   LEFT JOIN saml_participants p ON p.app_id = $1 AND p.session_id = $3";
        let binds = [
            Bind::Text(app_id.to_owned()),
            Bind::Text(user_id.to_owned()),
            Bind::Text(session_id.to_owned()),
        ];
        let found = self
            .read_row(sql, &binds, |row| {
                // A NULL name_id is an assignment without a participant row yet (the LEFT JOIN).
                let Some(name_id) = row.maybe_text("name_id")? else { return Ok(None) };
                Ok(Some(Participant {
                    session_id: session_id.to_owned(),
                    app_id: app_id.to_owned(),
                    name_id,
                    name_id_format: row.text("name_id_format")?,
                    session_index: row.text("session_index")?,
                    created: row.time("created")?,
                }))
            })
            .await?;
        if let (Some(cache), Some(ticket), Some(Some(participant))) = (cache, ticket, &found) {
            cache.fill_grant(ticket, user_id, participant);
        }
        Ok(found)
    }

    async fn find_participant_by_index(
        &self,
        app_id: &str,
        session_index: &str,
    ) -> StoreResult<Option<Participant>> {
        let sql = format!(
            "SELECT {PARTICIPANT_COLUMNS} FROM saml_participants WHERE app_id = $1 AND session_index = $2"
        );
        let row: Option<ParticipantRow> = on_pool!(self, read, |pool| {
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(app_id)
                .bind(session_index)
                .fetch_optional(pool)
                .await
                .map_err(map_err)?
        });
        Ok(row.map(participant_from_row))
    }
}
