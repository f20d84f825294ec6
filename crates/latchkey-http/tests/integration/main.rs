//! HTTP tests of the Okta-compatible API, driven in-process through the router on a real SQLite store.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step fails the test"
)]

mod apps;
mod authn;
mod browser;
mod errors;
mod groups;
mod hosts;
mod logs;
mod oidc;
mod origins;
mod pages;
mod saml;
mod sessions;
mod snapshot;
mod sp;
mod support;
mod users;
