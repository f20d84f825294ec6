//! The state every handler shares, and the one place where the core's use cases are wired to
//! their collaborators (the store, the clock, the hashing pool, the system log, the node's key
//! cache). Handlers reach a use case through it (`state.sign_on()`, `state.sessions()`, ...), never
//! by building one themselves.

use std::sync::Arc;

use latchkey_core::authn::AuthnStatus;
use latchkey_core::authn::machine::{Authn, AuthnLimits, AuthnOptions, AuthnView, ClientContext, RateQuota};
use latchkey_core::crypto::MasterKey;
use latchkey_core::events::{AuditLog as _, Event};
use latchkey_core::groups::service::Groups;
use latchkey_core::oidc::service::OAuth;
use latchkey_core::policy::Policies;
use latchkey_core::sessions::TokenPrecedence;
use latchkey_core::sessions::service::Sessions;
use latchkey_core::signing_keys::KeyCache;
use latchkey_core::signing_keys::service::SigningKeys;
use latchkey_core::signon::service::SignOn;
use latchkey_core::store::PolicyStore as _;
use latchkey_core::{Clock, CoreError, SystemClock};
use latchkey_store::Store;

use crate::audit::EventLog;
use crate::hashing::{BlockingHasher, SpawnBlocking};
use crate::web::Pages;

/// Largest request body accepted anywhere (Okta objects are small; a profile is a few KiB).
pub const DEFAULT_BODY_LIMIT: usize = 256 * 1024;

/// The time every failed primary authentication takes, from the start of the check (several times
/// an argon2id verification, so the database work of either path is hidden inside it).
const FAILURE_FLOOR: std::time::Duration = std::time::Duration::from_millis(150);

/// Settings the HTTP layer needs, already validated by the binary.
#[derive(Clone)]
pub struct HttpConfig {
    /// Base of every absolute link, without a trailing slash (e.g. `http://127.0.0.1:8080`).
    pub public_url: String,
    pub body_limit: usize,
    /// Renders the Prometheus exposition for `/metrics`; `None` answers 404.
    pub metrics: Option<Arc<dyn Fn() -> String + Send + Sync>>,
    /// The bearer token `/metrics` asks for; without one, only loopback peers may read it.
    pub metrics_token: Option<String>,
    pub authn_limits: AuthnLimits,
    /// The organisation's id (`00o…`), shown as the identity provider of its sessions.
    pub org_id: String,
    pub session_token_precedence: TokenPrecedence,
    /// Additional public base URLs (custom domains) the organisation answers on.
    pub custom_domains: Vec<String>,
    /// A directory whose files replace the hosted pages' embedded templates, style sheet and
    /// strings (branding); see [`crate::Pages::load`].
    pub pages_dir: Option<std::path::PathBuf>,
    /// Mount the demo kiosk portal and the built-in test SP (`serve --demo`, or `test_sp = true`).
    pub test_sp: bool,
    /// `GET /login/signout` ends a session only for a same-site request or the sign-out form's
    /// (a cross-site link gets a confirmation); off by default, as in Okta.
    pub signout_requires_same_site: bool,
    /// The `Strict-Transport-Security` value sent under an `https` base; `None` sends none.
    pub strict_transport_security: Option<axum::http::HeaderValue>,
}

/// HSTS for a year, as browsers' preload lists ask.
pub const DEFAULT_HSTS_MAX_AGE_SECS: u64 = 31_536_000;

/// The `Strict-Transport-Security` value for `max_age_secs` (`None` for 0: HSTS off).
pub fn strict_transport_security(max_age_secs: u64) -> Option<axum::http::HeaderValue> {
    if max_age_secs == 0 {
        return None;
    }
    axum::http::HeaderValue::from_str(&format!("max-age={max_age_secs}")).ok()
}

impl HttpConfig {
    pub fn new(public_url: &str) -> Self {
        Self {
            public_url: public_url.trim_end_matches('/').to_owned(),
            body_limit: DEFAULT_BODY_LIMIT,
            metrics: None,
            metrics_token: None,
            authn_limits: AuthnLimits::default(),
            org_id: String::new(),
            session_token_precedence: TokenPrecedence::Token,
            custom_domains: Vec::new(),
            pages_dir: None,
            test_sp: false,
            signout_requires_same_site: false,
            strict_transport_security: strict_transport_security(DEFAULT_HSTS_MAX_AGE_SECS),
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
    /// A PHC string no password matches, verified against for unknown users (equal work).
    dummy_hash: Arc<str>,
    /// This node's opened signing keys and current key set.
    signing_key_cache: Arc<KeyCache>,
    /// The system log, committed in groups.
    audit: Arc<EventLog>,
    /// The hosted pages' templates, style sheet and strings.
    pub(crate) pages: Arc<Pages>,
}

impl AppState {
    pub fn new(store: Store, config: HttpConfig, master_key: MasterKey) -> Self {
        let audit = Arc::new(EventLog::start(store.clone()));
        // Not computed: a real hash here would leave 19 MiB of argon2 memory on this thread.
        let dummy_hash = latchkey_core::password::unmatchable_hash();
        // The binary checks the pages directory before it gets here (`web::Pages::load`); should
        // it fail now anyway, the embedded pages serve rather than none.
        let pages = match config.pages_dir.as_deref().map(|dir| Pages::load(Some(dir))) {
            Some(Ok(pages)) => pages,
            Some(Err(problem)) => {
                tracing::error!(problem, "the pages directory cannot be used; serving the embedded pages");
                Pages::embedded()
            }
            None => Pages::embedded(),
        };
        let inner = StateInner {
            store,
            hasher: BlockingHasher::with_default_limit(),
            clock: Arc::new(SystemClock),
            config: Arc::new(config),
            master_key: Arc::new(master_key),
            dummy_hash: Arc::from(dummy_hash),
            signing_key_cache: Arc::default(),
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
    pub(crate) fn signing_keys(&self) -> SigningKeys<'_, Store, SpawnBlocking, EventLog> {
        SigningKeys {
            store: &self.store,
            master_key: Some(&self.master_key),
            clock: self.clock.as_ref(),
            cache: &self.signing_key_cache,
            offload: &SpawnBlocking,
            audit: &self.audit,
        }
    }

    /// The OAuth use cases for a request that came to `org_url`, signing with `keys`.
    pub(crate) fn oauth<'a>(
        &'a self,
        keys: &'a SigningKeys<'a, Store, SpawnBlocking, EventLog>,
        org_url: &'a str,
    ) -> OAuth<'a, Store, SpawnBlocking, EventLog> {
        OAuth {
            store: &self.store,
            keys,
            clock: self.clock.as_ref(),
            audit: &self.audit,
            org_url,
            org_id: &self.config.org_id,
        }
    }

    /// The system log, for use cases that write to it themselves.
    pub(crate) fn audit(&self) -> &EventLog {
        &self.audit
    }

    /// Writes an event to the system log (returns once it is committed).
    pub(crate) async fn log(&self, event: Event) {
        self.audit.record(event).await;
    }

    /// The session use cases (the session-token rule among them), logging to the system log.
    pub(crate) fn sessions(&self) -> Sessions<'_, Store, EventLog> {
        Sessions { store: &self.store, clock: self.clock.as_ref(), audit: &self.audit }
    }

    /// The sign-on use cases (the access decision every protocol encodes).
    pub(crate) fn sign_on(&self) -> SignOn<'_, Store, EventLog> {
        SignOn { store: &self.store, audit: &self.audit, clock: self.clock.as_ref() }
    }

    /// The group use cases (groups, members, rules, apps assigned to groups).
    pub(crate) fn groups(&self) -> Groups<'_, Store, EventLog> {
        Groups { store: &self.store, audit: &self.audit, clock: self.clock.as_ref() }
    }

    /// The policies in force (read per use: a change on any node applies at once).
    pub(crate) async fn policies(&self) -> Result<Policies, CoreError> {
        self.store.policies().await
    }

    /// Primary authentication for `/api/v1/authn`, the hosted sign-in page and the demo kiosk alike.
    ///
    /// Failures all take the same time: an existing user's failure does database work (the lockout
    /// count) that an unknown user's does not, and that difference must not tell an attacker which
    /// usernames exist. Throttled requests are not delayed (they did no work).
    pub(crate) async fn primary_authn(
        &self,
        username: &str,
        password: &str,
        options: AuthnOptions,
        relay_state: Option<String>,
        context: &ClientContext,
    ) -> (Result<AuthnView, CoreError>, Option<RateQuota>) {
        let started = tokio::time::Instant::now();
        let (result, quota) = self.authn().primary(username, password, options, relay_state, context).await;
        let failed = matches!(&result, Err(CoreError::AuthenticationFailed))
            || matches!(&result, Ok(view) if view.status == AuthnStatus::LockedOut);
        if failed {
            tokio::time::sleep_until(started + FAILURE_FLOOR).await;
        }
        (result, quota)
    }

    /// The public base URL of the current request: the configured public URL or the custom
    /// domain the browser used.
    pub(crate) fn base(&self) -> String {
        crate::hosts::current_base(&self.config.public_url)
    }

    /// An absolute URL under the public base.
    pub(crate) fn link(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }
}
