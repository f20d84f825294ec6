//! The two group-committed writes (see `group_commit`): spending authorization codes at the token
//! endpoint, and recording SAML AuthnRequest ids against replay.

use latchkey_core::clock::Timestamp;

use crate::group_commit::GroupCommit;
use crate::{Store, StoreResult, map_err, on_pool};

/// The queues of the group-committed writes; shared by the store's clones.
#[derive(Debug, Default, Clone)]
pub(crate) struct Batches {
    /// (code digest, now) → the spent code's record, if this request spent it.
    spends: GroupCommit<(String, Timestamp), Option<String>>,
    /// (app id, request id, expires at) → whether this request recorded it first.
    request_ids: GroupCommit<(String, String, Timestamp), bool>,
}

/// `$first, $first+1, …` for `count` values.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

impl Store {
    /// Spends the live, unspent code under `digest`: its record if this request spent it.
    pub(crate) async fn spend_code(&self, digest: &str, now: Timestamp) -> StoreResult<Option<String>> {
        let store = self.clone();
        self.batches
            .spends
            .submit((digest.to_owned(), now), move |batch| {
                let store = store.clone();
                async move { store.spend_batch(batch).await }
            })
            .await
    }

    /// One conditional update over the batch's digests; a digest asked twice is won by the first.
    async fn spend_batch(&self, batch: Vec<(String, Timestamp)>) -> StoreResult<Vec<Option<String>>> {
        // The latest clock of the batch: no code is accepted after its expiry by anyone's.
        let now = batch.iter().map(|(_, now)| *now).max().unwrap_or(Timestamp(0));
        let sql = format!(
            "UPDATE oauth_codes SET used_at = $1 \
             WHERE digest IN ({}) AND used_at IS NULL AND expires_at > $1 RETURNING digest, code",
            placeholders(2, batch.len())
        );
        let mut spent: Vec<(String, String)> = on_pool!(self, write, |pool| {
            let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(now.millis());
            for (digest, _) in &batch {
                query = query.bind(digest);
            }
            query.fetch_all(pool).await.map_err(map_err)?
        });
        Ok(batch
            .iter()
            .map(|(digest, _)| {
                let won = spent.iter().position(|(d, _)| d == digest)?;
                Some(spent.swap_remove(won).1)
            })
            .collect())
    }

    /// Records an SP's request id until `expires_at`; `false` when it was recorded before.
    pub(crate) async fn record_request_id(
        &self,
        app_id: &str,
        request_id: &str,
        expires_at: Timestamp,
    ) -> StoreResult<bool> {
        let store = self.clone();
        self.batches
            .request_ids
            .submit((app_id.to_owned(), request_id.to_owned(), expires_at), move |batch| {
                let store = store.clone();
                async move { store.request_id_batch(batch).await }
            })
            .await
    }

    /// One insert of the batch's ids, each written only if new; an id asked twice is won by the
    /// first asker.
    async fn request_id_batch(&self, batch: Vec<(String, String, Timestamp)>) -> StoreResult<Vec<bool>> {
        let rows: Vec<String> =
            (0..batch.len()).map(|i| format!("({})", placeholders(3 * i + 1, 3))).collect();
        let sql = format!(
            "INSERT INTO saml_request_ids (app_id, request_id, expires_at) VALUES {} \
             ON CONFLICT (app_id, request_id) DO NOTHING RETURNING app_id, request_id",
            rows.join(", ")
        );
        let mut recorded: Vec<(String, String)> = on_pool!(self, write, |pool| {
            let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
            for (app_id, request_id, expires_at) in &batch {
                query = query.bind(app_id).bind(request_id).bind(expires_at.millis());
            }
            query.fetch_all(pool).await.map_err(map_err)?
        });
        Ok(batch
            .iter()
            .map(|(app_id, request_id, _)| {
                let won = recorded.iter().position(|(a, r)| a == app_id && r == request_id);
                won.map(|i| recorded.swap_remove(i)).is_some()
            })
            .collect())
    }
}
