//! A fresh application per test: temporary SQLite database, one admin token, the real router.

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt as _;
use latchkey_core::store::{ApiTokenStore, PolicyStore};
use latchkey_core::tokens::ApiToken;
use latchkey_core::{Clock, Timestamp};
use latchkey_http::{AppState, HttpConfig};
use latchkey_store::Store;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use tower::ServiceExt as _;

pub const BASE: &str = "http://id.example.test";

/// A clock the test moves by hand.
pub struct TestClock(AtomicI64);

impl TestClock {
    pub fn advance_secs(&self, seconds: i64) {
        self.0.fetch_add(seconds * 1000, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

pub struct App {
    pub router: Router,
    /// The server's state (for background work a test runs by hand, such as back-channel logout).
    pub state: AppState,
    pub clock: Arc<TestClock>,
    pub token: String,
    pub store: Store,
    /// The master key's base64 text form, for tests that seal a record as the server would.
    pub master_key: String,
    _dir: tempfile::TempDir,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["errorCode"].as_str().unwrap_or("")
    }

    pub fn causes(&self) -> Vec<String> {
        self.body["errorCauses"]
            .as_array()
            .map(|a| a.iter().filter_map(|c| c["errorSummary"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }
}

pub async fn app() -> App {
    app_with(|_| {}).await
}

/// An app whose HTTP configuration the test adjusts first.
pub async fn app_with(adjust: impl FnOnce(&mut HttpConfig)) -> App {
    // Start at a fixed instant in the middle of a second, so throttling windows are deterministic.
    app_at(1_800_000_000_500, adjust).await
}

/// An app whose clock starts at the real time (SAML responses are checked by SP libraries against
/// their own clocks).
pub async fn app_realtime(adjust: impl FnOnce(&mut HttpConfig)) -> App {
    app_at(latchkey_core::SystemClock.now().millis(), adjust).await
}

async fn app_at(start_millis: i64, adjust: impl FnOnce(&mut HttpConfig)) -> App {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::connect(&format!("sqlite://{}/t.db", dir.path().display())).await.unwrap();
    store.migrate().await.unwrap();
    // As `serve` does: sessions are checked through the server's cache.
    store.claim_server().await.unwrap();
    let (token, secret) = ApiToken::issue("test", Timestamp(0));
    store.insert_api_token(&token).await.unwrap();
    store.ensure_policies(&latchkey_core::policy::default_rows(Timestamp(0))).await.unwrap();
    let (key, master_key) = latchkey_core::crypto::MasterKey::generate().unwrap();
    let clock = Arc::new(TestClock(AtomicI64::new(start_millis)));
    let mut config = HttpConfig::new(BASE);
    config.org_id = store.org_setting("org_id", "00oTESTORG0000000000").await.unwrap();
    config.authn_limits = latchkey_core::authn::machine::AuthnLimits { per_username: 4, per_ip: 0 };
    adjust(&mut config);
    let state = AppState::new(store.clone(), config, key).with_clock(clock.clone());
    let router = latchkey_http::router(state.clone());
    App { router, state, clock, token: secret.expose().to_owned(), store, master_key, _dir: dir }
}

impl App {
    pub async fn send(&self, method: Method, uri: &str, auth: Option<&str>, body: Body) -> Reply {
        let mut req = Request::builder().method(method).uri(uri).header("content-type", "application/json");
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        let res = self.router.clone().oneshot(req.body(body).unwrap()).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        assert!(headers.contains_key("x-okta-request-id"), "{uri}: every response carries X-Okta-Request-Id");
        Reply { status, headers, body }
    }

    /// An anonymous call (no admin token), as okta-auth-js makes to `/api/v1/authn*`.
    pub async fn public(&self, uri: &str, body: Value) -> Reply {
        self.send(Method::POST, uri, None, Body::from(body.to_string())).await
    }

    /// An admin call with a JSON body (or none for `Value::Null`).
    pub async fn call(&self, method: Method, uri: &str, body: Value) -> Reply {
        let body = if body.is_null() { Body::empty() } else { Body::from(body.to_string()) };
        self.send(method, uri, Some(&format!("SSWS {}", self.token)), body).await
    }

    pub async fn create(&self, login: &str, password: Option<&str>, query: &str) -> Reply {
        let mut body =
            json!({"profile": {"login": login, "email": login, "firstName": "Test", "lastName": "User"}});
        if let Some(pw) = password {
            body["credentials"] = json!({"password": {"value": pw}});
        }
        self.call(Method::POST, &format!("/api/v1/users{query}"), body).await
    }

    pub async fn create_ok(&self, login: &str) -> String {
        let reply = self.create(login, Some("Correct-Horse-9"), "?activate=true").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.body["id"].as_str().unwrap().to_owned()
    }
}

/// Polls all futures at once on the current task, so requests through the router really overlap.
pub async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, fut) in pinned.iter_mut().enumerate() {
            if outputs[i].is_none() {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => outputs[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// Log lines written on this thread while the guard lives (a `#[tokio::test]` runs the router on
/// its one thread), as text without colours.
pub struct CapturedLogs {
    lines: Arc<std::sync::Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

struct CaptureWriter(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn capture_logs() -> CapturedLogs {
    let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || CaptureWriter(writer.clone()))
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    CapturedLogs { lines, _guard: tracing::subscriber::set_default(subscriber) }
}

impl CapturedLogs {
    pub fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.lines.lock().unwrap()).lines().map(str::to_owned).collect()
    }
}
