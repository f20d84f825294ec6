//! A port for CPU-heavy work that must not run on the caller's async runtime (RSA key generation).
//!
//! The core is runtime-agnostic, so it cannot spawn threads itself; the adapter that owns the runtime
//! decides where such work runs (tokio's blocking pool in the server and the command line).

use std::future::Future;

pub trait Offload: Send + Sync {
    /// Runs `job` away from the async runtime; `None` when it could not be run (the pool is gone).
    fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> impl Future<Output = Option<T>> + Send;
}
