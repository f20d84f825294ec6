//! Group commit for spending authorization codes: the one write on the token endpoint's path.
//!
//! Why: each exchange must spend its code durably before it answers (a code is good once across
//! every node), and one commit per exchange made the endpoint wait on the disk (SQLite: one
//! writer, an fsync each) or on round trips (PostgreSQL). Spends that arrive together are one
//! conditional `UPDATE … WHERE digest IN (…) RETURNING`, one statement and one commit; while it
//! runs, the next ones queue. Nothing waits on a timer: a lone spend runs at once.
//!
//! The statement is the same conditional update a single spend would be, so across nodes exactly
//! one request wins a code. Within a batch, a digest asked twice is won by the first asker; the
//! rest, and every digest the update did not return, take the single-spend path for replays.

use std::sync::{Arc, Mutex};

use latchkey_core::StoreError;
use latchkey_core::clock::Timestamp;
use tokio::sync::oneshot;

use crate::session_cache::lock;
use crate::{Store, StoreResult, map_err, on_pool};

/// Most codes one statement spends.
const MAX_BATCH: usize = 64;

/// The spent code's record (its JSON), or `None` when this request did not spend it.
type Outcome = StoreResult<Option<String>>;

struct Waiting {
    digest: String,
    now: Timestamp,
    reply: oneshot::Sender<Outcome>,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<Waiting>,
    /// Whether a drain task is running (it takes what arrives while it works).
    draining: bool,
}

/// The queue of spends waiting for the next statement; shared by the store's clones.
#[derive(Default, Clone)]
pub(crate) struct CodeSpends {
    queue: Arc<Mutex<Queue>>,
}

impl std::fmt::Debug for CodeSpends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CodeSpends")
    }
}

impl Store {
    /// Spends the live, unspent code under `digest`: its record if this request spent it.
    pub(crate) async fn spend_code(&self, digest: &str, now: Timestamp) -> Outcome {
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut queue = lock(&self.spends.queue);
            queue.waiting.push(Waiting { digest: digest.to_owned(), now, reply });
            !std::mem::replace(&mut queue.draining, true)
        };
        if start {
            // A task, not this request: a client that hangs up must not strand the others.
            let store = self.clone();
            tokio::spawn(async move { store.drain_spends().await });
        }
        answer.await.unwrap_or_else(|_| Err(StoreError::Unavailable("the code spend was abandoned".into())))
    }

    async fn drain_spends(&self) {
        loop {
            let batch: Vec<Waiting> = {
                let mut queue = lock(&self.spends.queue);
                if queue.waiting.is_empty() {
                    queue.draining = false;
                    return;
                }
                let take = queue.waiting.len().min(MAX_BATCH);
                queue.waiting.drain(..take).collect()
            };
            // The latest clock of the batch: no code is accepted after its expiry by anyone's.
            let now = batch.iter().map(|w| w.now).max().unwrap_or(Timestamp(0));
            let digests: Vec<&str> = batch.iter().map(|w| w.digest.as_str()).collect();
            match self.spend_batch(&digests, now).await {
                Ok(mut spent) => {
                    for waiting in batch {
                        let won = spent.iter().position(|(digest, _)| *digest == waiting.digest);
                        let record = won.map(|i| spent.swap_remove(i).1);
                        let _ = waiting.reply.send(Ok(record));
                    }
                }
                Err(error) => {
                    for waiting in batch {
                        let _ = waiting.reply.send(Err(error.clone()));
                    }
                }
            }
        }
    }

    /// One conditional update over `digests`: `(digest, record)` of each code it spent.
    async fn spend_batch(&self, digests: &[&str], now: Timestamp) -> StoreResult<Vec<(String, String)>> {
        let placeholders: Vec<String> = (0..digests.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "UPDATE oauth_codes SET used_at = $1 \
             WHERE digest IN ({}) AND used_at IS NULL AND expires_at > $1 RETURNING digest, code",
            placeholders.join(", ")
        );
        Ok(on_pool!(self, write, |pool| {
            let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(now.millis());
            for digest in digests {
                query = query.bind(*digest);
            }
            query.fetch_all(pool).await.map_err(map_err)?
        }))
    }
}
