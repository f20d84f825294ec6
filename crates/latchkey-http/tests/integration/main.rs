//! HTTP tests of the Okta-compatible API, driven in-process through the router on a real SQLite store.

mod errors;
mod support;
mod users;
