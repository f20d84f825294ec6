//! The id of the request being handled (`X-Okta-Request-Id`), for the log lines and error pages of
//! that request. `middleware::observe` sets it around each request.

use std::future::Future;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// Runs `handling` with `id` as the current request's id.
pub(crate) async fn scope<F: Future>(id: String, handling: F) -> F::Output {
    REQUEST_ID.scope(id, handling).await
}

/// The id of the request being handled (empty outside a request).
pub(crate) fn current() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}
