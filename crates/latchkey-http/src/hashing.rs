//! Password hashing off the async runtime: argon2id runs on tokio's blocking pool, at most one job
//! per CPU at a time, so a burst of sign-ins queues instead of exhausting memory (19 MiB per hash).
//! The queue itself is bounded: past it, requests are refused at once (the caller answers 429)
//! rather than piling up memory and latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use latchkey_core::password::{self, PasswordHashing};
use tokio::sync::Semaphore;

#[derive(Clone)]
pub struct BlockingHasher {
    permits: Arc<Semaphore>,
    queued: Arc<AtomicUsize>,
    max_queued: usize,
}

impl BlockingHasher {
    pub fn new(concurrency: usize, max_queued: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            queued: Arc::new(AtomicUsize::new(0)),
            max_queued,
        }
    }

    /// One concurrent hash per available CPU; up to 64 per CPU waiting.
    pub fn with_default_limit() -> Self {
        let cpus = std::thread::available_parallelism().map(usize::from).unwrap_or(2);
        Self::new(cpus, cpus * 64)
    }

    async fn run<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let waiting = QueueSlot::take(&self.queued, self.max_queued)?;
        let permit = self.permits.acquire().await.ok()?;
        drop(waiting);
        let result = tokio::task::spawn_blocking(job).await.ok();
        drop(permit);
        result
    }
}

/// A place in the hashing queue, given back when dropped (also if the request is abandoned).
struct QueueSlot<'a>(&'a AtomicUsize);

impl<'a> QueueSlot<'a> {
    fn take(counter: &'a AtomicUsize, max: usize) -> Option<Self> {
        let previous = counter.fetch_add(1, Ordering::AcqRel);
        if previous >= max {
            counter.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Self(counter))
    }
}

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_refuses_instead_of_waiting() {
        let hasher = BlockingHasher::new(1, 2);
        let phc = password::hash("Correct-Horse-9").unwrap();
        let jobs: Vec<_> = (0..6)
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
        assert_eq!(hasher.queued.load(Ordering::Acquire), 0, "slots are given back");
    }
}
