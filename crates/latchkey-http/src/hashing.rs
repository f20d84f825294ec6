//! Password hashing off the async runtime: argon2id runs on tokio's blocking pool, at most one job
//! per CPU at a time, so a burst of sign-ins queues instead of exhausting memory (19 MiB per hash).

use std::sync::Arc;

use latchkey_core::password::{self, PasswordHashing};
use tokio::sync::Semaphore;

#[derive(Clone)]
pub struct BlockingHasher {
    permits: Arc<Semaphore>,
}

impl BlockingHasher {
    pub fn new(concurrency: usize) -> Self {
        Self { permits: Arc::new(Semaphore::new(concurrency.max(1))) }
    }

    /// One concurrent hash per available CPU.
    pub fn with_default_limit() -> Self {
        Self::new(std::thread::available_parallelism().map(usize::from).unwrap_or(2))
    }

    async fn run<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let _permit = self.permits.acquire().await.ok()?;
        tokio::task::spawn_blocking(job).await.ok()
    }
}

impl PasswordHashing for BlockingHasher {
    async fn hash(&self, password: String) -> Option<String> {
        self.run(move || password::hash(&password).ok()).await.flatten()
    }

    async fn verify(&self, password: String, phc: String) -> bool {
        self.run(move || password::verify(&password, &phc)).await.unwrap_or(false)
    }
}
