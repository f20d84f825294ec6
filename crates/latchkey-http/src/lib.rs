//! Latchkey's HTTP surface: the Okta-compatible `/api/v1` routers, the browser endpoints, the
//! hosted pages, the SAML endpoints, health endpoints and middleware.
//!
//! This crate maps HTTP onto the core's use cases and back: it parses requests (bounded, with
//! Okta's error codes for anything malformed), authenticates admin calls, renders Okta-shaped JSON
//! with absolute links built from the configured public URL (never from the `Host` header), and
//! turns every failure into Okta's error envelope in exactly one place ([`error`]).
//!
//! Layout: the shared modules — [`state`] (the state and the wiring of the core's use cases), `error`,
//! `extract` (extractors), `middleware`, `request_id`, `hosts`, `hashing`, `audit` and `web` (what every
//! browser-facing feature shares) — and the feature modules, one per part of the surface: the API routers
//! (`users`, `apps`, `client_secrets`, `authorization_servers`, `authn`, `sessions`, `policies`, `factors`, `origins`, `logs`, `health`), `browser`,
//! `pages`, `saml`, `oidc` and `demo`. A feature module uses the shared ones and never another feature; this file
//! composes the features into one router.

mod audit;
pub mod backchannel;
pub mod error;
mod extract;
mod hashing;
mod hosts;
mod middleware;
mod request_id;
mod shapes;
pub mod state;
mod web;

mod apps;
mod authn;
mod authorization_servers;
mod browser;
mod client_secrets;
pub mod demo;
mod factors;
mod groups;
mod health;
mod logs;
mod oidc;
mod origins;
mod pages;
mod policies;
mod saml;
mod sessions;
mod users;

use axum::Router;
use axum::extract::DefaultBodyLimit;

pub use hashing::{BlockingHasher, SpawnBlocking};
pub use state::{
    AppState, DEFAULT_BODY_LIMIT, DEFAULT_HSTS_MAX_AGE_SECS, HttpConfig, strict_transport_security,
};
pub use web::Pages;

/// Makes sure the organisation has an active signing key (generating it on the first start) and
/// returns its kid.
pub async fn ensure_signing_key(state: &AppState) -> Result<String, String> {
    match state.signing_keys().current().await {
        Ok(keys) => Ok(keys.active.kid().to_owned()),
        Err(e) => Err(format!("cannot prepare the SAML signing key: {e:?}")),
    }
}

/// The whole application: API routes, health endpoints, Okta-shaped fallbacks, and middleware.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.body_limit;
    let demo = if state.config.test_sp { demo::routes() } else { Router::new() };
    Router::new()
        .merge(demo)
        .merge(users::routes())
        .merge(apps::routes())
        .merge(groups::routes())
        .merge(saml::routes())
        .merge(oidc::routes())
        .merge(client_secrets::routes())
        .merge(authorization_servers::routes())
        .merge(authn::routes())
        .merge(policies::routes())
        .merge(factors::routes())
        .merge(origins::routes())
        .merge(sessions::routes())
        .merge(browser::routes())
        .merge(pages::routes())
        .merge(web::assets::routes())
        .merge(logs::routes())
        .merge(health::routes())
        .route_layer(axum::middleware::from_fn(middleware::label_route))
        .fallback(error::not_found_fallback)
        .method_not_allowed_fallback(error::method_not_allowed_fallback)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::guard))
        .layer(axum::middleware::from_fn_with_state(state.clone(), origins::cors))
        // Defence in depth: the code has no panics (lints deny them), but if one ever happens the
        // client still gets the envelope, not a dropped connection.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(error::panic_response))
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::route_host))
        .layer(axum::middleware::from_fn(middleware::observe))
        .with_state(state)
}
