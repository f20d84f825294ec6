//! Trusted origins.

use latchkey_core::origins::{Scope, TrustedOrigin};
use latchkey_core::store::{StoreResult, TrustedOriginStore};
use latchkey_core::{StoreError, Timestamp};

use crate::{Store, map_err, on_pool};

type Row = (String, String, String, String, i64, i64, i64);

const COLUMNS: &str = "id, name, origin, scopes, active, created, last_updated";

fn from_row((id, name, origin, scopes, active, created, last_updated): Row) -> StoreResult<TrustedOrigin> {
    let names: Vec<String> = serde_json::from_str(&scopes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(TrustedOrigin {
        id,
        name,
        origin,
        scopes: names.iter().filter_map(|s| Scope::parse(s)).collect(),
        active: active != 0,
        created: Timestamp(created),
        last_updated: Timestamp(last_updated),
    })
}

impl TrustedOriginStore for Store {
    async fn list_trusted_origins(&self) -> StoreResult<Vec<TrustedOrigin>> {
        let sql = format!("SELECT {COLUMNS} FROM trusted_origins ORDER BY created, id");
        let rows: Vec<Row> = on_pool!(self, read, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await.map_err(map_err)?
        });
        rows.into_iter().map(from_row).collect()
    }

    async fn find_trusted_origin(&self, origin: &str) -> StoreResult<Option<TrustedOrigin>> {
        let sql = format!("SELECT {COLUMNS} FROM trusted_origins WHERE origin = $1");
        let row: Option<Row> = on_pool!(self, read, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(origin)
                .fetch_optional(pool)
                .await
                .map_err(map_err)?
        });
        row.map(from_row).transpose()
    }

    async fn put_trusted_origin(&self, origin: &TrustedOrigin) -> StoreResult<()> {
        let scopes: Vec<&str> = origin.scopes.iter().map(|s| s.as_str()).collect();
        let scopes = serde_json::to_string(&scopes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        on_pool!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO trusted_origins (id, name, origin, scopes, active, created, last_updated) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO UPDATE SET name = excluded.name, \
                 origin = excluded.origin, scopes = excluded.scopes, active = excluded.active, \
                 last_updated = excluded.last_updated",
            )
            .bind(&origin.id)
            .bind(&origin.name)
            .bind(&origin.origin)
            .bind(scopes)
            .bind(i64::from(origin.active))
            .bind(origin.created.millis())
            .bind(origin.last_updated.millis())
            .execute(pool)
            .await
            .map_err(|e| match map_err(e) {
                StoreError::Conflict(_) => StoreError::Conflict("origin".to_owned()),
                other => other,
            })?;
        });
        Ok(())
    }

    async fn delete_trusted_origin(&self, id: &str) -> StoreResult<bool> {
        let deleted = on_pool!(self, write, |pool| {
            sqlx::query("DELETE FROM trusted_origins WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await
                .map_err(map_err)?
                .rows_affected()
        });
        Ok(deleted == 1)
    }
}
