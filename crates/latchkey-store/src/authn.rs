//! Authentication state: transactions, session and lifecycle tokens (single-use by conditional
//! update), TOTP factors (replay guard by conditional update), remembered devices, throttling
//! windows, and the policy rows.

use latchkey_core::authn::{Factor, FactorStatus, Provider, SessionToken, StoredTransaction, Transaction};
use latchkey_core::policy::{PolicyKind, PolicyRow};
use latchkey_core::store::{AuthnStore, FactorStore, RateLimitStore, StoreResult};
use latchkey_core::tokens::{OneTimeToken, TokenPurpose};
use latchkey_core::{StoreError, Timestamp};
use sqlx::Row as _;

use crate::{Store, map_err, on_pool};

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

const FACTOR_COLUMNS: &str =
    "id, user_id, provider, status, secret, last_step, qr_digest, created, last_updated";

macro_rules! factor_from_row {
    ($row:expr) => {{
        let row = $row;
        let provider: String = row.try_get("provider").map_err(map_err)?;
        let status: String = row.try_get("status").map_err(map_err)?;
        Ok::<Factor, StoreError>(Factor {
            id: row.try_get("id").map_err(map_err)?,
            user_id: row.try_get("user_id").map_err(map_err)?,
            provider: Provider::parse(&provider).ok_or_else(|| corrupt(format!("provider {provider}")))?,
            status: FactorStatus::parse(&status).ok_or_else(|| corrupt(format!("factor status {status}")))?,
            sealed_secret: row.try_get("secret").map_err(map_err)?,
            last_step: row.try_get("last_step").map_err(map_err)?,
            qr_digest: row.try_get("qr_digest").map_err(map_err)?,
            created: Timestamp(row.try_get("created").map_err(map_err)?),
            last_updated: Timestamp(row.try_get("last_updated").map_err(map_err)?),
        })
    }};
}

impl AuthnStore for Store {
    async fn insert_transaction(&self, tx: &StoredTransaction) -> StoreResult<()> {
        let state = serde_json::to_string(&tx.tx).map_err(corrupt)?;
        on_pool!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO authn_transactions (digest, user_id, state, expires_at, version) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&tx.digest)
            .bind(&tx.tx.user_id)
            .bind(state)
            .bind(tx.expires_at.millis())
            .bind(tx.version)
            .execute(pool)
            .await
            .map_err(map_err)?;
        });
        Ok(())
    }

    async fn find_transaction(&self, digest: &str, now: Timestamp) -> StoreResult<Option<StoredTransaction>> {
        let row: Option<(String, i64, i64)> = on_pool!(self, read, |pool| {
            sqlx::query_as("SELECT state, expires_at, version FROM authn_transactions WHERE digest = $1 AND expires_at > $2")
                .bind(digest)
                .bind(now.millis())
                .fetch_optional(pool)
                .await
                .map_err(map_err)?
        });
        row.map(|(state, expires_at, version)| {
            let tx: Transaction = serde_json::from_str(&state).map_err(corrupt)?;
            Ok(StoredTransaction {
                digest: digest.to_owned(),
                tx,
                expires_at: Timestamp(expires_at),
                version,
            })
        })
        .transpose()
    }

    async fn update_transaction(&self, tx: &StoredTransaction, expected_version: i64) -> StoreResult<()> {
        let state = serde_json::to_string(&tx.tx).map_err(corrupt)?;
        let updated = on_pool!(self, write, |pool| {
            sqlx::query(
                "UPDATE authn_transactions SET state = $2, expires_at = $3, version = $4 WHERE digest = $1 AND version = $5",
            )
            .bind(&tx.digest)
            .bind(state)
            .bind(tx.expires_at.millis())
            .bind(tx.version)
            .bind(expected_version)
            .execute(pool)
            .await
            .map_err(map_err)?
            .rows_affected()
        });
        if updated == 1 { Ok(()) } else { Err(StoreError::Stale) }
    }

    async fn finish_transaction(&self, digest: &str, expected_version: i64) -> StoreResult<bool> {
        let deleted = on_pool!(self, write, |pool| {
            sqlx::query("DELETE FROM authn_transactions WHERE digest = $1 AND version = $2")
                .bind(digest)
                .bind(expected_version)
                .execute(pool)
                .await
                .map_err(map_err)?
                .rows_affected()
        });
        Ok(deleted == 1)
    }

    async fn delete_transaction(&self, digest: &str) -> StoreResult<()> {
        on_pool!(self, write, |pool| {
            sqlx::query("DELETE FROM authn_transactions WHERE digest = $1")
                .bind(digest)
                .execute(pool)
                .await
                .map_err(map_err)?;
        });
        Ok(())
    }

    async fn insert_session_token(&self, token: &SessionToken) -> StoreResult<()> {
        let amr = serde_json::to_string(&token.amr).map_err(corrupt)?;
        on_pool!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO session_tokens (digest, user_id, amr, password_verified_at, factor_verified_at, created, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&token.digest)
            .bind(&token.user_id)
            .bind(amr)
            .bind(token.password_verified_at.map(Timestamp::millis))
            .bind(token.factor_verified_at.map(Timestamp::millis))
            .bind(token.created.millis())
            .bind(token.expires_at.millis())
            .execute(pool)
            .await
            .map_err(map_err)?;
        });
        Ok(())
    }

    async fn consume_session_token(&self, digest: &str, now: Timestamp) -> StoreResult<Option<SessionToken>> {
        type Consumed = (String, String, Option<i64>, Option<i64>, i64, i64);
        let row: Option<Consumed> = on_pool!(self, write, |pool| {
            sqlx::query_as(
                "UPDATE session_tokens SET used_at = $2 WHERE digest = $1 AND used_at IS NULL AND expires_at > $2 \
                 RETURNING user_id, amr, password_verified_at, factor_verified_at, created, expires_at",
            )
            .bind(digest)
            .bind(now.millis())
            .fetch_optional(pool)
            .await
            .map_err(map_err)?
        });
        row.map(|(user_id, amr, pwd, factor, created, expires_at)| {
            Ok(SessionToken {
                digest: digest.to_owned(),
                user_id,
                amr: serde_json::from_str(&amr).map_err(corrupt)?,
                password_verified_at: pwd.map(Timestamp),
                factor_verified_at: factor.map(Timestamp),
                created: Timestamp(created),
                expires_at: Timestamp(expires_at),
            })
        })
        .transpose()
    }

    async fn consume_one_time_token(
        &self,
        digest: &str,
        purpose: TokenPurpose,
        now: Timestamp,
    ) -> StoreResult<Option<OneTimeToken>> {
        let row: Option<(String, i64, i64)> = on_pool!(self, write, |pool| {
            sqlx::query_as(
                "UPDATE one_time_tokens SET used_at = $3 WHERE digest = $1 AND purpose = $2 AND used_at IS NULL \
                 AND expires_at > $3 RETURNING user_id, created, expires_at",
            )
            .bind(digest)
            .bind(purpose.as_str())
            .bind(now.millis())
            .fetch_optional(pool)
            .await
            .map_err(map_err)?
        });
        Ok(row.map(|(user_id, created, expires_at)| OneTimeToken {
            digest: digest.to_owned(),
            user_id,
            purpose,
            created: Timestamp(created),
            expires_at: Timestamp(expires_at),
        }))
    }

    async fn purge_expired(&self, now: Timestamp) -> StoreResult<u64> {
        let statements = [
            "DELETE FROM authn_transactions WHERE expires_at <= $1",
            "DELETE FROM session_tokens WHERE expires_at <= $1",
            "DELETE FROM one_time_tokens WHERE expires_at <= $1 OR used_at IS NOT NULL",
            "DELETE FROM remembered_devices WHERE expires_at <= $1",
            "DELETE FROM rate_limits WHERE window_start <= $1 - 60000",
            "DELETE FROM sessions WHERE expires_at <= $1 - 86400000 OR lifetime_ends_at <= $1 - 86400000",
        ];
        self.delete_expired(&statements, now).await
    }
}

impl FactorStore for Store {
    async fn list_factors(&self, user_id: &str) -> StoreResult<Vec<Factor>> {
        let sql = format!("SELECT {FACTOR_COLUMNS} FROM factors WHERE user_id = $1 ORDER BY created, id");
        on_pool!(self, read, |pool| {
            let rows =
                sqlx::query(sqlx::AssertSqlSafe(sql)).bind(user_id).fetch_all(pool).await.map_err(map_err)?;
            rows.iter().map(|row| factor_from_row!(row)).collect()
        })
    }

    async fn put_pending_factor(&self, factor: &Factor) -> StoreResult<()> {
        on_pool!(self, write, |pool| {
            let mut tx = pool.begin().await.map_err(map_err)?;
            let active: Option<String> = sqlx::query_scalar(
                "SELECT id FROM factors WHERE user_id = $1 AND provider = $2 AND status = 'ACTIVE'",
            )
            .bind(&factor.user_id)
            .bind(factor.provider.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?;
            if active.is_some() {
                return Err(StoreError::Conflict("factor".to_owned()));
            }
            sqlx::query("DELETE FROM factors WHERE user_id = $1 AND provider = $2")
                .bind(&factor.user_id)
                .bind(factor.provider.as_str())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            sqlx::query(
                "INSERT INTO factors (id, user_id, provider, status, secret, last_step, qr_digest, created, last_updated) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&factor.id)
            .bind(&factor.user_id)
            .bind(factor.provider.as_str())
            .bind(factor.status.as_str())
            .bind(&factor.sealed_secret)
            .bind(factor.last_step)
            .bind(&factor.qr_digest)
            .bind(factor.created.millis())
            .bind(factor.last_updated.millis())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
            tx.commit().await.map_err(map_err)?;
        });
        Ok(())
    }

    async fn activate_factor(&self, factor_id: &str, step: i64, now: Timestamp) -> StoreResult<bool> {
        let updated = on_pool!(self, write, |pool| {
            sqlx::query(
                "UPDATE factors SET status = 'ACTIVE', last_step = $2, qr_digest = NULL, last_updated = $3 \
                 WHERE id = $1 AND status = 'PENDING_ACTIVATION'",
            )
            .bind(factor_id)
            .bind(step)
            .bind(now.millis())
            .execute(pool)
            .await
            .map_err(map_err)?
            .rows_affected()
        });
        Ok(updated == 1)
    }

    async fn record_totp_step(&self, factor_id: &str, step: i64) -> StoreResult<bool> {
        let updated = on_pool!(self, write, |pool| {
            sqlx::query(
                "UPDATE factors SET last_step = $2 WHERE id = $1 AND last_step < $2 AND status = 'ACTIVE'",
            )
            .bind(factor_id)
            .bind(step)
            .execute(pool)
            .await
            .map_err(map_err)?
            .rows_affected()
        });
        Ok(updated == 1)
    }

    async fn delete_factor(&self, user_id: &str, factor_id: &str) -> StoreResult<bool> {
        let deleted = on_pool!(self, write, |pool| {
            sqlx::query("DELETE FROM factors WHERE id = $1 AND user_id = $2")
                .bind(factor_id)
                .bind(user_id)
                .execute(pool)
                .await
                .map_err(map_err)?
                .rows_affected()
        });
        Ok(deleted == 1)
    }

    async fn delete_user_factors(&self, user_id: &str) -> StoreResult<u64> {
        on_pool!(self, write, |pool| {
            let mut tx = pool.begin().await.map_err(map_err)?;
            let deleted = sqlx::query("DELETE FROM factors WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?
                .rows_affected();
            sqlx::query("DELETE FROM remembered_devices WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            tx.commit().await.map_err(map_err)?;
            Ok(deleted)
        })
    }

    async fn set_factor_qr(&self, factor_id: &str, qr_digest: &str) -> StoreResult<bool> {
        let updated = on_pool!(self, write, |pool| {
            sqlx::query("UPDATE factors SET qr_digest = $2 WHERE id = $1 AND status = 'PENDING_ACTIVATION'")
                .bind(factor_id)
                .bind(qr_digest)
                .execute(pool)
                .await
                .map_err(map_err)?
                .rows_affected()
        });
        Ok(updated == 1)
    }

    async fn find_factor_by_qr(&self, digest: &str) -> StoreResult<Option<Factor>> {
        let sql = format!("SELECT {FACTOR_COLUMNS} FROM factors WHERE qr_digest = $1");
        on_pool!(self, read, |pool| {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(digest)
                .fetch_optional(pool)
                .await
                .map_err(map_err)?;
            row.map(|row| factor_from_row!(&row)).transpose()
        })
    }

    async fn remember_device(
        &self,
        user_id: &str,
        device_digest: &str,
        expires_at: Timestamp,
    ) -> StoreResult<()> {
        on_pool!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO remembered_devices (user_id, device, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (user_id, device) DO UPDATE SET expires_at = excluded.expires_at",
            )
            .bind(user_id)
            .bind(device_digest)
            .bind(expires_at.millis())
            .execute(pool)
            .await
            .map_err(map_err)?;
        });
        Ok(())
    }

    async fn is_device_remembered(
        &self,
        user_id: &str,
        device_digest: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let found: Option<i64> = on_pool!(self, read, |pool| {
            sqlx::query_scalar("SELECT expires_at FROM remembered_devices WHERE user_id = $1 AND device = $2 AND expires_at > $3")
                .bind(user_id)
                .bind(device_digest)
                .bind(now.millis())
                .fetch_optional(pool)
                .await
                .map_err(map_err)?
        });
        Ok(found.is_some())
    }
}

impl RateLimitStore for Store {
    async fn hit(&self, bucket: &str, window_start: Timestamp) -> StoreResult<i64> {
        on_pool!(self, write, |pool| {
            sqlx::query_scalar(
                "INSERT INTO rate_limits (bucket, window_start, hits) VALUES ($1, $2, 1) \
                 ON CONFLICT (bucket) DO UPDATE SET \
                 hits = CASE WHEN rate_limits.window_start = excluded.window_start THEN rate_limits.hits + 1 ELSE 1 END, \
                 window_start = excluded.window_start \
                 RETURNING hits",
            )
            .bind(bucket)
            .bind(window_start.millis())
            .fetch_one(pool)
            .await
            .map_err(map_err)
        })
    }
}

pub(crate) async fn policy_rows(store: &Store) -> StoreResult<Vec<PolicyRow>> {
    type Raw = (String, String, String, String, i64, i64, i64);
    let rows: Vec<Raw> = on_pool!(store, read, |pool| {
        sqlx::query_as("SELECT id, rule_id, policy_type, settings, created, last_updated, version FROM policies ORDER BY policy_type")
            .fetch_all(pool)
            .await
            .map_err(map_err)?
    });
    rows.into_iter()
        .map(|(id, rule_id, kind, settings, created, last_updated, version)| {
            Ok(PolicyRow {
                id,
                rule_id,
                kind: PolicyKind::parse(&kind).ok_or_else(|| corrupt(format!("policy type {kind}")))?,
                settings,
                created: Timestamp(created),
                last_updated: Timestamp(last_updated),
                version,
            })
        })
        .collect()
}

pub(crate) async fn ensure_policies(store: &Store, defaults: &[PolicyRow]) -> StoreResult<()> {
    for row in defaults {
        on_pool!(store, write, |pool| {
            sqlx::query(
                "INSERT INTO policies (id, rule_id, policy_type, settings, created, last_updated, version) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (policy_type) DO NOTHING",
            )
            .bind(&row.id)
            .bind(&row.rule_id)
            .bind(row.kind.as_str())
            .bind(&row.settings)
            .bind(row.created.millis())
            .bind(row.last_updated.millis())
            .bind(row.version)
            .execute(pool)
            .await
            .map_err(map_err)?;
            sqlx::query("UPDATE policies SET rule_id = $2 WHERE policy_type = $1 AND rule_id = ''")
                .bind(row.kind.as_str())
                .bind(&row.rule_id)
                .execute(pool)
                .await
                .map_err(map_err)?;
        });
    }
    Ok(())
}

pub(crate) async fn update_policy(
    store: &Store,
    kind: PolicyKind,
    settings: &str,
    now: Timestamp,
    expected_version: i64,
) -> StoreResult<()> {
    let updated = on_pool!(store, write, |pool| {
        sqlx::query(
            "UPDATE policies SET settings = $2, last_updated = $3, version = version + 1 \
             WHERE policy_type = $1 AND version = $4",
        )
        .bind(kind.as_str())
        .bind(settings)
        .bind(now.millis())
        .bind(expected_version)
        .execute(pool)
        .await
        .map_err(map_err)?
        .rows_affected()
    });
    if updated == 1 { Ok(()) } else { Err(StoreError::Stale) }
}
