//! Latchkey's HTTP surface: the Okta-compatible `/api/v1` routers, health endpoints and middleware.
//!
//! This crate maps HTTP onto the core's use cases and back: it parses requests (bounded, with
//! Okta's error codes for anything malformed), authenticates admin calls, renders Okta-shaped JSON
//! with absolute links built from the configured public URL (never from the `Host` header), and
//! turns every failure into Okta's error envelope in exactly one place ([`error`]).

mod apps;
mod audit;
mod authn;
mod browser;
pub mod error;
mod extract;
mod factors;
mod hashing;
mod health;
mod hosts;
mod logs;
mod middleware;
mod origins;
pub mod pages;
mod policies;
mod saml;
mod sessions;
mod users;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use latchkey_core::authn::machine::{Authn, AuthnLimits};
use latchkey_core::crypto::MasterKey;
use latchkey_core::events::{AuditLog as _, Event};
use latchkey_core::sessions::TokenPrecedence;
use latchkey_core::signing_keys::{KeyCache, SigningKeys};
use latchkey_core::{Clock, SystemClock};
use latchkey_store::Store;

pub use hashing::{BlockingHasher, SpawnBlocking};

/// Largest request body accepted anywhere (Okta objects are small; a profile is a few KiB).
pub const DEFAULT_BODY_LIMIT: usize = 256 * 1024;

/// Settings the HTTP layer needs, already validated by the binary.
#[derive(Clone)]
pub struct HttpConfig {
    /// Base of every absolute link, without a trailing slash (e.g. `http://127.0.0.1:8080`).
    pub public_url: String,
    pub body_limit: usize,
    /// Renders the Prometheus exposition for `/metrics`; `None` answers 404.
    pub metrics: Option<Arc<dyn Fn() -> String + Send + Sync>>,
    pub authn_limits: AuthnLimits,
    /// The organisation's id (`00o…`), shown as the identity provider of its sessions.
    pub org_id: String,
    pub session_token_precedence: TokenPrecedence,
    /// Additional public base URLs (custom domains) the organisation answers on.
    pub custom_domains: Vec<String>,
    /// A directory whose files replace the hosted pages' embedded templates, style sheet and
    /// strings (branding); see [`pages::Pages::load`].
    pub pages_dir: Option<std::path::PathBuf>,
    /// Mount the demo kiosk portal and the built-in test SP (`serve --demo`, or `test_sp = true`).
    pub test_sp: bool,
}

impl HttpConfig {
    pub fn new(public_url: &str) -> Self {
        Self {
            public_url: public_url.trim_end_matches('/').to_owned(),
            body_limit: DEFAULT_BODY_LIMIT,
            metrics: None,
            authn_limits: AuthnLimits::default(),
            org_id: String::new(),
            session_token_precedence: TokenPrecedence::Token,
            custom_domains: Vec::new(),
            pages_dir: None,
            test_sp: false,
        }
    }
}

/// Shared state of every handler: one reference count to bump per clone (axum clones the state
/// for every extractor and middleware layer of every request), fields reached through `Deref`.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<StateInner>,
}

impl std::ops::Deref for AppState {
    type Target = StateInner;

    fn deref(&self) -> &StateInner {
        &self.inner
    }
}

/// What [`AppState`] shares.
#[derive(Clone)]
pub struct StateInner {
    pub store: Store,
    pub hasher: BlockingHasher,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<HttpConfig>,
    pub master_key: Arc<MasterKey>,
    /// argon2id hash of a random password, verified against for unknown users (equal work).
    dummy_hash: Arc<str>,
    /// This node's opened signing keys and current key set.
    signing_key_cache: Arc<KeyCache>,
    /// The built-in test SP's outstanding requests (demo only).
    test_sp: Arc<pages::demo::TestSp>,
    /// The system log, committed in groups.
    audit: Arc<audit::EventLog>,
    /// The hosted pages' templates, style sheet and strings.
    pub(crate) pages: Arc<pages::Pages>,
}

impl AppState {
    /// Blocks briefly: computes the dummy password hash with the production parameters.
    pub fn new(store: Store, config: HttpConfig, master_key: MasterKey) -> Self {
        let audit = Arc::new(audit::EventLog::start(store.clone()));
        let random = latchkey_core::ids::Secret::generate();
        let dummy_hash = latchkey_core::password::hash(random.expose()).unwrap_or_default();
        // The binary checks the pages directory before it gets here (`pages::Pages::load`); should
        // it fail now anyway, the embedded pages serve rather than none.
        let pages = match config.pages_dir.as_deref().map(|dir| pages::Pages::load(Some(dir))) {
            Some(Ok(pages)) => pages,
            Some(Err(problem)) => {
                tracing::error!(problem, "the pages directory cannot be used; serving the embedded pages");
                pages::Pages::embedded()
            }
            None => pages::Pages::embedded(),
        };
        let inner = StateInner {
            store,
            hasher: BlockingHasher::with_default_limit(),
            clock: Arc::new(SystemClock),
            config: Arc::new(config),
            master_key: Arc::new(master_key),
            dummy_hash: Arc::from(dummy_hash),
            signing_key_cache: Arc::default(),
            test_sp: Arc::default(),
            audit,
            pages: Arc::new(pages),
        };
        Self { inner: Arc::new(inner) }
    }

    /// Replaces the clock (tests move time forward to reach expiry and auto-unlock).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        Arc::make_mut(&mut self.inner).clock = clock;
        self
    }

    /// The authentication state machine wired to this state's collaborators.
    pub(crate) fn authn(&self) -> Authn<'_, Store, BlockingHasher> {
        Authn {
            store: &self.store,
            hasher: &self.hasher,
            clock: self.clock.as_ref(),
            master_key: &self.master_key,
            dummy_hash: &self.dummy_hash,
            limits: self.config.authn_limits,
        }
    }

    /// The core's user use cases wired to this state's collaborators.
    pub fn users(&self) -> latchkey_core::users::service::Users<'_, Store, BlockingHasher> {
        latchkey_core::users::service::Users {
            store: &self.store,
            hasher: &self.hasher,
            clock: self.clock.as_ref(),
        }
    }

    /// The signing-keys use cases wired to this node's key cache.
    pub(crate) fn signing_keys(&self) -> SigningKeys<'_, Store, SpawnBlocking, audit::EventLog> {
        SigningKeys {
            store: &self.store,
            master_key: Some(&self.master_key),
            clock: self.clock.as_ref(),
            cache: &self.signing_key_cache,
            offload: &SpawnBlocking,
            audit: &self.audit,
        }
    }

    /// Writes an event to the system log (returns once it is committed).
    pub(crate) async fn log(&self, event: Event) {
        self.audit.record(event).await;
    }

    /// The public base URL of the current request: the configured public URL or the custom
    /// domain the browser used.
    pub(crate) fn base(&self) -> String {
        hosts::current_base(&self.config.public_url)
    }

    /// An absolute URL under the public base.
    pub(crate) fn link(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }
}

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
    let demo = if state.config.test_sp { pages::demo::routes() } else { Router::new() };
    Router::new()
        .merge(demo)
        .merge(users::routes())
        .merge(apps::routes())
        .merge(saml::routes())
        .merge(authn::routes())
        .merge(policies::routes())
        .merge(factors::routes())
        .merge(origins::routes())
        .merge(sessions::routes())
        .merge(browser::routes())
        .merge(pages::routes())
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
        .layer(axum::middleware::from_fn_with_state(state.clone(), hosts::route_host))
        .layer(axum::middleware::from_fn(middleware::observe))
        .with_state(state)
}
