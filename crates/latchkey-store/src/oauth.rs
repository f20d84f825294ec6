//! OAuth state: authorization codes, refresh tokens, revocations of access tokens, the clients
//! each session owes a logout, and client assertion ids.
//!
//! A code is spent by one conditional update (`used_at IS NULL`; concurrent spends share one, see
//! `group_commit`), so two nodes presented the same code cannot both redeem it; the spent row
//! stays until it is purged, which is how a replay is told from an unknown code.

use latchkey_core::oidc::backchannel::LogoutNotice;
use latchkey_core::oidc::custom::{CustomClaim, CustomScope};
use latchkey_core::oidc::{AuthorizationCode, IssuedToken, Redeemed, Revocation, Server, TokenKind};
use latchkey_core::store::{OAuthStore, StoreResult};
use latchkey_core::{StoreError, Timestamp};

use sqlx::AssertSqlSafe;

use crate::{Bind, Store, map_err, on_pool};

/// How long a spent or expired code is kept to recognise a replay.
const SPENT_CODE_KEPT_MILLIS: i64 = 3600 * 1000;

/// Records a session's client once; nothing for a session that is gone (the row would outlive it).
const SESSION_CLIENT_INSERT: &str = "INSERT INTO oauth_session_clients (session_id, app_id, server, user_id) \
     SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM sessions WHERE id = $1) ON CONFLICT DO NOTHING";

/// Writes a revocation key; one already there keeps the later expiry.
const REVOCATION_UPSERT: &str = "INSERT INTO oauth_revocations (key, expires_at) VALUES ($1, $2) \
     ON CONFLICT (key) DO UPDATE SET expires_at = CASE WHEN excluded.expires_at > oauth_revocations.expires_at \
     THEN excluded.expires_at ELSE oauth_revocations.expires_at END";

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

const TOKEN_COLUMNS: &str = "id, kind, app_id, server, user_id, session_id, family, scopes, issued_at, auth_time, expires_at, rotated_at, revoked";
type TokenRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    String,
    i64,
    Option<i64>,
    i64,
    Option<i64>,
    i64,
);

fn token_from_row(row: TokenRow) -> StoreResult<IssuedToken> {
    let (
        id,
        kind,
        app_id,
        server,
        user_id,
        session_id,
        family,
        scopes,
        issued_at,
        auth_time,
        expires_at,
        rotated_at,
        revoked,
    ) = row;
    Ok(IssuedToken {
        id,
        kind: TokenKind::parse(&kind).ok_or_else(|| corrupt(format!("token kind {kind:?}")))?,
        app_id,
        server: Server::parse(&server).ok_or_else(|| corrupt(format!("server {server:?}")))?,
        user_id,
        session_id,
        family,
        scopes: serde_json::from_str(&scopes).map_err(corrupt)?,
        issued_at: Timestamp(issued_at),
        auth_time: auth_time.map(Timestamp),
        expires_at: Timestamp(expires_at),
        rotated_at: rotated_at.map(Timestamp),
        revoked: revoked != 0,
    })
}

impl OAuthStore for Store {
    async fn insert_code(&self, digest: &str, code: &AuthorizationCode) -> StoreResult<()> {
        let text = serde_json::to_string(code).map_err(corrupt)?;
        on_pool!(self, write, |pool| {
            let mut tx = pool.begin().await.map_err(map_err)?;
            sqlx::query("INSERT INTO oauth_codes (digest, app_id, code, expires_at) VALUES ($1, $2, $3, $4)")
                .bind(digest)
                .bind(&code.app_id)
                .bind(&text)
                .bind(code.expires_at.millis())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            sqlx::query(SESSION_CLIENT_INSERT)
                .bind(&code.session_id)
                .bind(&code.app_id)
                .bind(code.server.as_str())
                .bind(&code.user_id)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            tx.commit().await.map_err(map_err)?;
        });
        Ok(())
    }

    async fn record_session_client(
        &self,
        session_id: &str,
        app_id: &str,
        server: Server,
        user_id: &str,
    ) -> StoreResult<()> {
        on_pool!(self, write, |pool| {
            sqlx::query(SESSION_CLIENT_INSERT)
                .bind(session_id)
                .bind(app_id)
                .bind(server.as_str())
                .bind(user_id)
                .execute(pool)
                .await
                .map_err(map_err)?;
        });
        Ok(())
    }

    async fn redeem_code(&self, digest: &str, now: Timestamp) -> StoreResult<Redeemed> {
        if let Some(text) = self.spend_code(digest, now).await? {
            return Ok(Redeemed::First(serde_json::from_str(&text).map_err(corrupt)?));
        }
        // Spent before: mark the replay (on the row the winner's token insert also locks, so one of
        // the two waits for the other; see `insert_tokens_for_code`).
        let replayed: Option<(String,)> = on_pool!(self, write, |pool| {
            sqlx::query_as("UPDATE oauth_codes SET replayed = 1 WHERE digest = $1 AND used_at IS NOT NULL RETURNING code")
                .bind(digest)
                .fetch_optional(pool)
                .await
                .map_err(map_err)?
        });
        Ok(match replayed {
            Some((text,)) => Redeemed::Again(serde_json::from_str(&text).map_err(corrupt)?),
            None => Redeemed::Unknown,
        })
    }

    async fn insert_token(&self, token: &IssuedToken) -> StoreResult<()> {
        self.insert_tokens(None, std::slice::from_ref(token)).await.map(|_| ())
    }

    async fn insert_tokens_for_code(&self, code_digest: &str, tokens: &[IssuedToken]) -> StoreResult<bool> {
        self.insert_tokens(Some(code_digest), tokens).await
    }

    async fn find_token(&self, id: &str) -> StoreResult<Option<IssuedToken>> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM oauth_tokens WHERE id = $1");
        let row: Option<TokenRow> = on_pool!(self, read, |pool| {
            sqlx::query_as(AssertSqlSafe(sql)).bind(id).fetch_optional(pool).await.map_err(map_err)?
        });
        row.map(token_from_row).transpose()
    }

    async fn mark_rotated(&self, id: &str, now: Timestamp) -> StoreResult<bool> {
        let updated = on_pool!(self, write, |pool| {
            sqlx::query(
                "UPDATE oauth_tokens SET rotated_at = $2 \
                 WHERE id = $1 AND rotated_at IS NULL AND revoked = 0 AND expires_at > $2",
            )
            .bind(id)
            .bind(now.millis())
            .execute(pool)
            .await
            .map_err(map_err)?
            .rows_affected()
        });
        Ok(updated == 1)
    }

    async fn revoke(&self, keys: &[Revocation], until: Timestamp) -> StoreResult<()> {
        on_pool!(self, write, |pool| {
            let mut tx = pool.begin().await.map_err(map_err)?;
            for key in keys {
                sqlx::query(REVOCATION_UPSERT)
                    .bind(key.key())
                    .bind(until.millis())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
            }
            tx.commit().await.map_err(map_err)?;
        });
        Ok(())
    }

    async fn revoke_family(&self, family: &str, until: Timestamp) -> StoreResult<u64> {
        Ok(on_pool!(self, write, |pool| {
            let mut tx = pool.begin().await.map_err(map_err)?;
            let revoked =
                sqlx::query("UPDATE oauth_tokens SET revoked = 1 WHERE family = $1 AND revoked = 0")
                    .bind(family)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?
                    .rows_affected();
            sqlx::query(REVOCATION_UPSERT)
                .bind(Revocation::of_family(family).key())
                .bind(until.millis())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            tx.commit().await.map_err(map_err)?;
            revoked
        }))
    }

    async fn is_revoked(&self, keys: &[Revocation]) -> StoreResult<bool> {
        if keys.is_empty() {
            return Ok(false);
        }
        let placeholders: Vec<String> = (1..=keys.len()).map(|i| format!("${i}")).collect();
        let sql =
            format!("SELECT 1 FROM oauth_revocations WHERE key IN ({}) LIMIT 1", placeholders.join(", "));
        let binds: Vec<Bind> = keys.iter().map(|k| Bind::Text(k.key())).collect();
        Ok(self.read_row(&sql, &binds, |_| Ok(())).await?.is_some())
    }

    async fn list_custom_scopes(&self) -> StoreResult<Vec<CustomScope>> {
        self.list_server_objects(SCOPE).await
    }

    async fn put_custom_scope(&self, scope: &CustomScope) -> StoreResult<()> {
        self.put_server_object(SCOPE, &scope.id, &scope.name, scope).await
    }

    async fn delete_custom_scope(&self, id: &str) -> StoreResult<bool> {
        self.delete_server_object(SCOPE, id).await
    }

    async fn list_custom_claims(&self) -> StoreResult<Vec<CustomClaim>> {
        self.list_server_objects(CLAIM).await
    }

    async fn put_custom_claim(&self, claim: &CustomClaim) -> StoreResult<()> {
        self.put_server_object(CLAIM, &claim.id, &claim.name, claim).await
    }

    async fn delete_custom_claim(&self, id: &str) -> StoreResult<bool> {
        self.delete_server_object(CLAIM, id).await
    }

    async fn due_logout_notices(&self, now: Timestamp, limit: u32) -> StoreResult<Vec<LogoutNotice>> {
        type Row = (String, String, String, Option<String>, i64, i64);
        let rows: Vec<Row> = on_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT session_id, app_id, server, user_id, created, attempts FROM oauth_logout_notices \
                 WHERE next_attempt <= $1 ORDER BY next_attempt LIMIT $2",
            )
            .bind(now.millis())
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
            .map_err(map_err)?
        });
        rows.into_iter()
            .map(|(session_id, app_id, server, user_id, created, attempts)| {
                Ok(LogoutNotice {
                    session_id,
                    app_id,
                    server: Server::parse(&server).ok_or_else(|| corrupt(format!("server {server:?}")))?,
                    user_id,
                    created: Timestamp(created),
                    attempts,
                })
            })
            .collect()
    }

    async fn lease_logout_notice(&self, notice: &LogoutNotice, retry_at: Timestamp) -> StoreResult<bool> {
        let updated = on_pool!(self, write, |pool| {
            sqlx::query(
                "UPDATE oauth_logout_notices SET attempts = attempts + 1, next_attempt = $4 \
                 WHERE session_id = $1 AND app_id = $2 AND server = $3 AND attempts = $5",
            )
            .bind(&notice.session_id)
            .bind(&notice.app_id)
            .bind(notice.server.as_str())
            .bind(retry_at.millis())
            .bind(notice.attempts)
            .execute(pool)
            .await
            .map_err(map_err)?
            .rows_affected()
        });
        Ok(updated == 1)
    }

    async fn delete_logout_notice(&self, notice: &LogoutNotice) -> StoreResult<()> {
        on_pool!(self, write, |pool| {
            sqlx::query(
                "DELETE FROM oauth_logout_notices WHERE session_id = $1 AND app_id = $2 AND server = $3",
            )
            .bind(&notice.session_id)
            .bind(&notice.app_id)
            .bind(notice.server.as_str())
            .execute(pool)
            .await
            .map_err(map_err)?;
        });
        Ok(())
    }

    async fn remember_assertion(&self, app_id: &str, jti: &str, expires_at: Timestamp) -> StoreResult<bool> {
        let inserted = on_pool!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO oauth_assertions (app_id, jti, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (app_id, jti) DO NOTHING",
            )
            .bind(app_id)
            .bind(jti)
            .bind(expires_at.millis())
            .execute(pool)
            .await
            .map_err(map_err)?
            .rows_affected()
        });
        Ok(inserted == 1)
    }
}

impl Store {
    /// Writes `tokens` in one transaction; for a code's tokens (`code_digest`), only if the code
    /// has not been replayed, checked on the code's row, which this locks: a replay marked first
    /// makes this write nothing (`false`); a replay marked later waits for this commit, then
    /// revokes what it wrote.
    async fn insert_tokens(&self, code_digest: Option<&str>, tokens: &[IssuedToken]) -> StoreResult<bool> {
        let sql = format!(
            "INSERT INTO oauth_tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        );
        let mut rows = Vec::with_capacity(tokens.len());
        for token in tokens {
            rows.push((token, serde_json::to_string(&token.scopes).map_err(corrupt)?));
        }
        let written = on_pool!(self, write, |pool| {
            let mut tx = pool.begin().await.map_err(map_err)?;
            let live = match code_digest {
                None => true,
                Some(digest) => {
                    sqlx::query("UPDATE oauth_codes SET replayed = 0 WHERE digest = $1 AND replayed = 0")
                        .bind(digest)
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?
                        .rows_affected()
                        == 1
                }
            };
            if live {
                for (token, scopes) in &rows {
                    sqlx::query(AssertSqlSafe(sql.clone()))
                        .bind(&token.id)
                        .bind(token.kind.as_str())
                        .bind(&token.app_id)
                        .bind(token.server.as_str())
                        .bind(&token.user_id)
                        .bind(&token.session_id)
                        .bind(&token.family)
                        .bind(scopes)
                        .bind(token.issued_at.millis())
                        .bind(token.auth_time.map(Timestamp::millis))
                        .bind(token.expires_at.millis())
                        .bind(token.rotated_at.map(Timestamp::millis))
                        .bind(i64::from(token.revoked))
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?;
                }
                tx.commit().await.map_err(map_err)?;
            } else {
                tx.rollback().await.map_err(map_err)?;
            }
            live
        });
        Ok(written)
    }
}

const SCOPE: &str = "scope";
const CLAIM: &str = "claim";

impl Store {
    async fn list_server_objects<T: serde::de::DeserializeOwned>(&self, kind: &str) -> StoreResult<Vec<T>> {
        let rows: Vec<(String,)> = on_pool!(self, read, |pool| {
            sqlx::query_as("SELECT body FROM oauth_server_objects WHERE kind = $1 ORDER BY name")
                .bind(kind)
                .fetch_all(pool)
                .await
                .map_err(map_err)?
        });
        rows.iter().map(|(body,)| serde_json::from_str(body).map_err(corrupt)).collect()
    }

    /// Inserts or replaces by id; a name taken by another object is a `Conflict`.
    async fn put_server_object<T: serde::Serialize>(
        &self,
        kind: &str,
        id: &str,
        name: &str,
        object: &T,
    ) -> StoreResult<()> {
        let body = serde_json::to_string(object).map_err(corrupt)?;
        on_pool!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO oauth_server_objects (id, kind, name, body) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, body = excluded.body",
            )
            .bind(id)
            .bind(kind)
            .bind(name)
            .bind(&body)
            .execute(pool)
            .await
            .map_err(map_err)?;
        });
        Ok(())
    }

    async fn delete_server_object(&self, kind: &str, id: &str) -> StoreResult<bool> {
        let deleted = on_pool!(self, write, |pool| {
            sqlx::query("DELETE FROM oauth_server_objects WHERE kind = $1 AND id = $2")
                .bind(kind)
                .bind(id)
                .execute(pool)
                .await
                .map_err(map_err)?
                .rows_affected()
        });
        Ok(deleted == 1)
    }

    /// Drops spent and expired OAuth state (a spent code is kept an hour to recognise replays).
    pub async fn purge_oauth(&self, now: Timestamp) -> StoreResult<u64> {
        let spent = Timestamp(now.millis() - SPENT_CODE_KEPT_MILLIS);
        Ok(self
            .delete_expired(
                &[
                    "DELETE FROM oauth_tokens WHERE expires_at <= $1",
                    "DELETE FROM oauth_assertions WHERE expires_at <= $1",
                    "DELETE FROM oauth_revocations WHERE expires_at <= $1",
                ],
                now,
            )
            .await?
            + self.delete_expired(&["DELETE FROM oauth_codes WHERE expires_at <= $1"], spent).await?)
    }
}
