//! CPU-heavy work off the async runtime: password hashing on a small pool of dedicated threads (one
//! per CPU), and the rare RSA key generation on tokio's blocking pool ([`SpawnBlocking`]).
//!
//! argon2id takes 19 MiB and tens of milliseconds per hash. Running it on a fixed set of threads
//! bounds both CPU and memory: the same few threads (and their allocator arenas) are reused, where
//! tokio's elastic blocking pool would spread the work over many short-lived threads, each keeping
//! its own arena. Jobs wait in a bounded queue; when it is full the request is refused at once (the
//! caller answers 429) rather than piling up memory and latency.

use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};

use latchkey_core::offload::Offload;
use latchkey_core::password::{self, PasswordHashing};
use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

#[derive(Clone)]
pub struct BlockingHasher {
    jobs: Arc<SyncSender<Job>>,
}

impl BlockingHasher {
    /// `threads` workers and room for `max_queued` waiting jobs.
    pub fn new(threads: usize, max_queued: usize) -> Self {
        let (sender, receiver) = sync_channel::<Job>(max_queued);
        let receiver = Arc::new(std::sync::Mutex::new(receiver));
        for index in 0..threads.max(1) {
            let receiver = Arc::clone(&receiver);
            let spawned =
                std::thread::Builder::new().name(format!("latchkey-hash-{index}")).spawn(move || {
                    loop {
                        // Hold the lock only to take one job, not while running it.
                        let job = match receiver.lock() {
                            Ok(guard) => guard.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return, // every sender is gone: the server is shutting down
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a password hashing thread");
            }
        }
        Self { jobs: Arc::new(sender) }
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
        match self.jobs.try_send(wrapped) {
            Ok(()) => answer.await.ok(),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => None,
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
}
