//! CPU-heavy work off the async runtime: password hashing on a small pool of dedicated threads (one
//! per CPU), and the rare RSA key generation on tokio's blocking pool ([`SpawnBlocking`]).
//!
//! argon2id takes 19 MiB and tens of milliseconds per hash. Running it on a fixed set of threads
//! bounds both CPU and memory: the same few threads (and their allocator arenas) are reused, where
//! tokio's elastic blocking pool would spread the work over many short-lived threads, each keeping
//! its own arena. Jobs wait in a bounded queue; when it is full the request is refused at once (the
//! caller answers 429) rather than piling up memory and latency.
//!
//! A thread keeps its 19 MiB between hashes while sign-ins keep coming (allocating it afresh costs
//! thousands of page faults per hash) and gives it back once no job has reached it for
//! [`RELEASE_AFTER_QUIET`], so an idle server holds none.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use latchkey_core::offload::Offload;
use latchkey_core::password::{self, PasswordHashing};
use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// How long a hashing thread waits without work before it frees its argon2id memory.
pub const RELEASE_AFTER_QUIET: Duration = Duration::from_secs(10);

/// The jobs waiting for a hashing thread. Every idle thread waits on the condition variable with
/// its own timeout (a thread waiting for a lock instead could be passed over indefinitely, and
/// would never see its quiet period end).
struct Queue {
    state: Mutex<QueueState>,
    job_ready: Condvar,
    capacity: usize,
}

struct QueueState {
    jobs: VecDeque<Job>,
    /// Every [`BlockingHasher`] is gone: the threads finish.
    closed: bool,
}

impl Queue {
    /// The next job, `Ok(None)` after `quiet` without one, `Err(())` once the pool is closed.
    fn next(&self, quiet: Duration) -> Result<Option<Job>, ()> {
        let mut state = self.state.lock().map_err(|_| ())?;
        loop {
            if let Some(job) = state.jobs.pop_front() {
                return Ok(Some(job));
            }
            if state.closed {
                return Err(());
            }
            let (next, waited) = self.job_ready.wait_timeout(state, quiet).map_err(|_| ())?;
            state = next;
            if waited.timed_out() && state.jobs.is_empty() && !state.closed {
                return Ok(None);
            }
        }
    }

    /// Queues `job` unless the queue is full (or unusable); gives it back then.
    fn offer(&self, job: Job) -> Result<(), Job> {
        let Ok(mut state) = self.state.lock() else { return Err(job) };
        if state.jobs.len() >= self.capacity {
            return Err(job);
        }
        state.jobs.push_back(job);
        drop(state);
        self.job_ready.notify_one();
        Ok(())
    }

    fn close(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.closed = true;
        }
        self.job_ready.notify_all();
    }
}

/// A hashing thread: runs jobs; after `quiet` without one, frees its argon2id memory and, once the
/// allocator may give it back to the OS, lets it.
fn work(queue: &Queue, quiet: Duration) {
    // Set after freeing: the next quiet wait is the allocator's purge delay, then the purge.
    let mut purge_due = false;
    loop {
        match queue.next(if purge_due { ALLOCATOR_PURGE_DELAY } else { quiet }) {
            Ok(Some(job)) => {
                job();
                purge_due = false;
            }
            Ok(None) if password::holds_working_memory() => {
                password::release_working_memory();
                purge_due = true;
            }
            Ok(None) => {
                if purge_due {
                    let_the_allocator_purge();
                }
                purge_due = false;
            }
            Err(()) => return,
        }
    }
}

/// How long after a free the process allocator (mimalloc) may hand freed memory back to the OS:
/// its purge delay (1 s) and a margin.
const ALLOCATOR_PURGE_DELAY: Duration = Duration::from_millis(1500);

/// mimalloc gives freed memory back to the OS lazily: a free schedules the purge, and a later
/// large allocation or free carries out the purges that are due. In a quiet server none comes, so
/// the hashing memory just freed would stay resident; this allocation and free (of untouched
/// pages, which cost no memory) is that later event.
fn let_the_allocator_purge() {
    drop(std::hint::black_box(Vec::<u8>::with_capacity(4 << 20)));
}

/// Closes the queue when the last [`BlockingHasher`] clone is dropped.
struct Pool {
    queue: Arc<Queue>,
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.queue.close();
    }
}

#[derive(Clone)]
pub struct BlockingHasher {
    pool: Arc<Pool>,
}

impl BlockingHasher {
    /// `threads` workers and room for `max_queued` waiting jobs.
    pub fn new(threads: usize, max_queued: usize) -> Self {
        Self::with_quiet_period(threads, max_queued, RELEASE_AFTER_QUIET)
    }

    /// As [`Self::new`], with the quiet period after which a thread frees its working memory.
    pub fn with_quiet_period(threads: usize, max_queued: usize, quiet: Duration) -> Self {
        let queue = Arc::new(Queue {
            state: Mutex::new(QueueState { jobs: VecDeque::new(), closed: false }),
            job_ready: Condvar::new(),
            capacity: max_queued,
        });
        for index in 0..threads.max(1) {
            let queue = Arc::clone(&queue);
            let spawned = std::thread::Builder::new()
                .name(format!("latchkey-hash-{index}"))
                .spawn(move || work(&queue, quiet));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a password hashing thread");
            }
        }
        Self { pool: Arc::new(Pool { queue }) }
    }

    /// One worker per available CPU; up to 64 jobs per CPU waiting.
    pub fn with_default_limit() -> Self {
        let cpus = std::thread::available_parallelism().map(usize::from).unwrap_or(2);
        Self::new(cpus, cpus * 64)
    }

    async fn run<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        let wrapped: Job = Box::new(move || {
            let _ = reply.send(job());
        });
        match self.pool.queue.offer(wrapped) {
            Ok(()) => answer.await.ok(),
            Err(_refused) => None,
        }
    }
}

impl PasswordHashing for BlockingHasher {
    async fn hash(&self, password: String) -> Option<String> {
        self.run(move || password::hash(&password).ok()).await.flatten()
    }

    async fn verify(&self, password: String, phc: String) -> Option<bool> {
        self.run(move || password::verify(&password, &phc)).await
    }
}

/// Runs the core's [`Offload`] work (RSA key generation, rare and slow) on tokio's blocking pool.
#[derive(Debug, Clone, Copy, Default)]
pub struct SpawnBlocking;

impl Offload for SpawnBlocking {
    async fn run<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        tokio::task::spawn_blocking(job).await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_refuses_instead_of_waiting() {
        let hasher = BlockingHasher::new(1, 2);
        let phc = password::hash("Correct-Horse-9").unwrap();
        let jobs: Vec<_> = (0..8)
            .map(|_| {
                let hasher = hasher.clone();
                let phc = phc.clone();
                tokio::spawn(async move { hasher.verify("Correct-Horse-9".into(), phc).await })
            })
            .collect();
        let mut answered = 0;
        let mut refused = 0;
        for job in jobs {
            match job.await.unwrap() {
                Some(true) => answered += 1,
                None => refused += 1,
                Some(false) => panic!("a right password never verifies false"),
            }
        }
        assert!(answered >= 2 && refused >= 1, "answered {answered}, refused {refused}");
        // Once the queue drains, work is accepted again.
        assert_eq!(hasher.verify("Correct-Horse-9".into(), phc).await, Some(true));
    }

    #[tokio::test]
    async fn every_thread_frees_its_working_memory_after_a_quiet_period() {
        let threads = 3;
        let hasher = BlockingHasher::with_quiet_period(threads, 8, Duration::from_millis(300));
        let phc = password::hash("Correct-Horse-9").unwrap();
        // Keep every thread busy at once, so each one holds working memory.
        let barrier = Arc::new(std::sync::Barrier::new(threads));
        let busy: Vec<_> = (0..threads)
            .map(|_| {
                let (barrier, phc) = (Arc::clone(&barrier), phc.clone());
                let hasher = hasher.clone();
                tokio::spawn(async move {
                    hasher
                        .run(move || {
                            let verified = password::verify("Correct-Horse-9", &phc);
                            barrier.wait();
                            verified && password::holds_working_memory()
                        })
                        .await
                })
            })
            .collect();
        for job in busy {
            assert_eq!(job.await.unwrap(), Some(true), "kept between hashes");
        }
        tokio::time::sleep(Duration::from_millis(1200)).await;
        // Every thread again at once: none holds memory any more.
        let barrier = Arc::new(std::sync::Barrier::new(threads));
        let after: Vec<_> = (0..threads)
            .map(|_| {
                let barrier = Arc::clone(&barrier);
                let hasher = hasher.clone();
                tokio::spawn(async move {
                    hasher
                        .run(move || {
                            barrier.wait();
                            password::holds_working_memory()
                        })
                        .await
                })
            })
            .collect();
        for job in after {
            assert_eq!(job.await.unwrap(), Some(false), "every thread freed its memory when quiet");
        }
        assert_eq!(hasher.verify("Correct-Horse-9".into(), phc).await, Some(true), "and hashes again");
    }
}
