//! Group commit for the single-use records written on hot request paths: authorization codes
//! spent at the token endpoint, SAML AuthnRequest ids recorded against replay.
//!
//! Why: each of those requests must make its write durable before it answers (a code is good
//! once, a request id is accepted once, across every node and after a crash), and one commit per
//! request made the endpoint wait on the disk (SQLite: one writer, an fsync each) or on round
//! trips (PostgreSQL). Writes that arrive together go out as one statement and one commit; while
//! it runs, the next ones queue. Nothing waits on a timer: a lone write runs at once.
//!
//! The statement is the same conditional write a single request would make, so across nodes
//! exactly one request wins a record; within a batch the statement's caller decides who of two
//! askers for the same record wins (the first).

use std::future::Future;
use std::sync::{Arc, Mutex};

use latchkey_core::StoreError;
use tokio::sync::oneshot;

use crate::StoreResult;
use crate::session_cache::lock;

/// Most writes one statement carries.
pub(crate) const MAX_BATCH: usize = 64;

type Waiting<I, O> = (I, oneshot::Sender<StoreResult<O>>);

struct Queue<I, O> {
    waiting: Vec<Waiting<I, O>>,
    /// Whether a drain task is running (it takes what arrives while it works).
    draining: bool,
}

/// Writes of one kind waiting for the next statement; shared by the store's clones.
pub(crate) struct GroupCommit<I, O> {
    queue: Arc<Mutex<Queue<I, O>>>,
}

impl<I, O> Default for GroupCommit<I, O> {
    fn default() -> Self {
        Self { queue: Arc::new(Mutex::new(Queue { waiting: Vec::new(), draining: false })) }
    }
}

impl<I, O> Clone for GroupCommit<I, O> {
    fn clone(&self) -> Self {
        Self { queue: Arc::clone(&self.queue) }
    }
}

impl<I, O> std::fmt::Debug for GroupCommit<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupCommit")
    }
}

impl<I: Send + 'static, O: Send + 'static> GroupCommit<I, O> {
    /// Queues `item` and waits for its outcome. `batch` writes up to [`MAX_BATCH`] items in one
    /// statement and returns one outcome per item, in order; it runs in a task of its own, so a
    /// client that hangs up does not strand the others.
    pub(crate) async fn submit<F, Fut>(&self, item: I, batch: F) -> StoreResult<O>
    where
        F: Fn(Vec<I>) -> Fut + Send + 'static,
        Fut: Future<Output = StoreResult<Vec<O>>> + Send,
    {
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut queue = lock(&self.queue);
            queue.waiting.push((item, reply));
            !std::mem::replace(&mut queue.draining, true)
        };
        if start {
            let queue = Arc::clone(&self.queue);
            tokio::spawn(async move { drain(&queue, batch).await });
        }
        answer.await.unwrap_or_else(|_| Err(StoreError::Unavailable("the write was abandoned".into())))
    }
}

async fn drain<I, O, F, Fut>(queue: &Mutex<Queue<I, O>>, batch: F)
where
    F: Fn(Vec<I>) -> Fut,
    Fut: Future<Output = StoreResult<Vec<O>>>,
{
    loop {
        let taken: Vec<Waiting<I, O>> = {
            let mut queue = lock(queue);
            if queue.waiting.is_empty() {
                queue.draining = false;
                return;
            }
            let take = queue.waiting.len().min(MAX_BATCH);
            queue.waiting.drain(..take).collect()
        };
        let (items, replies): (Vec<I>, Vec<_>) = taken.into_iter().unzip();
        let expected = items.len();
        match batch(items).await {
            Ok(outcomes) if outcomes.len() == expected => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Ok(_) => {
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Corrupt("a batch answered the wrong count".into())));
                }
            }
            Err(error) => {
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }
}
