//! Launching and stopping a real `latchkey` server for a benchmark, plus the
//! scratch database it runs on and a small control-plane HTTP client.
//!
//! The harness never builds the server: it runs whatever binary it finds
//! (`--server-bin`, `LATCHKEY_BIN`, `$CARGO_TARGET_DIR` or `target/` under the
//! workspace root, release before debug).
//!
//! Databases:
//! * SQLite: a fresh file in a scratch directory, removed afterwards.
//! * PostgreSQL: `CREATE DATABASE bench_<random>` on the server named by the
//!   admin URL, done by shelling out to `psql` (a full Postgres client crate
//!   would dwarf the rest of the harness), and `DROP DATABASE ... WITH (FORCE)`
//!   afterwards. Without `psql`, pass `--database-url` to an existing,
//!   disposable database instead; it is left in place.

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::util::{Result, err, random_suffix, strip_ansi};

/// Root of the Cargo workspace this harness belongs to.
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

/// Find the server binary. `explicit` is `--server-bin` / `LATCHKEY_BIN`.
pub fn locate_binary(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(err(format!("server binary {} does not exist", p.display())))
        };
    }
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        candidates.push(dir.join("release/latchkey"));
        candidates.push(dir.join("debug/latchkey"));
    }
    let target = workspace_root().join("target");
    candidates.push(target.join("release/latchkey"));
    candidates.push(target.join("debug/latchkey"));
    for c in &candidates {
        if c.is_file() {
            return Ok(c.clone());
        }
    }
    let tried: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
    Err(err(format!(
        "no latchkey server binary found (tried {}); build it with \
         `cargo build --release -p latchkey` or pass --server-bin / LATCHKEY_BIN",
        tried.join(", ")
    )))
}

/// Whether a binary path looks like an unoptimised build.
pub fn looks_like_debug_build(bin: &Path) -> bool {
    bin.components().any(|c| c.as_os_str() == "debug")
}

/// A directory under the system temp dir, removed on drop.
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    pub fn new(prefix: &str) -> Result<Self> {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", random_suffix(12)));
        std::fs::create_dir(&path)?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Storage backend under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    pub fn from_url(url: &str) -> Result<Self> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(err(format!("unrecognised database URL scheme: {url}")))
        }
    }
}

/// The database a benchmark server runs on, and how to get rid of it.
pub struct Database {
    pub url: String,
    /// `(admin_url, db_name)` of a database this harness created.
    created_pg: Option<(String, String)>,
}

impl Database {
    /// A fresh SQLite file inside `dir` (removed with the directory).
    pub fn sqlite_in(dir: &Path) -> Self {
        Self { url: format!("sqlite://{}", dir.join("latchkey.db").display()), created_pg: None }
    }

    /// `CREATE DATABASE bench_<random>` through `psql` on `admin_url`.
    pub fn create_postgres(admin_url: &str) -> Result<Self> {
        let name = format!("bench_{}", random_suffix(12));
        psql(admin_url, &format!("CREATE DATABASE \"{name}\""))?;
        Ok(Self { url: with_database(admin_url, &name)?, created_pg: Some((admin_url.to_string(), name)) })
    }

    /// A database somebody else owns; it is used as is and never dropped.
    pub fn existing(url: &str) -> Result<Self> {
        Backend::from_url(url)?;
        Ok(Self { url: url.to_string(), created_pg: None })
    }

    /// Drop a Postgres database this harness created. Idempotent.
    pub fn cleanup(&mut self) -> Result<()> {
        if let Some((admin, name)) = self.created_pg.take() {
            let force = psql(&admin, &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
            if force.is_err() {
                // Servers older than PostgreSQL 13 lack WITH (FORCE).
                psql(&admin, &format!("DROP DATABASE IF EXISTS \"{name}\""))?;
            }
        }
        Ok(())
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Err(e) = self.cleanup() {
            eprintln!("warning: could not drop scratch database: {e}");
        }
    }
}

fn psql(url: &str, sql: &str) -> Result<()> {
    let out = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            err(format!(
                "cannot run `psql` ({e}); install the PostgreSQL client or pass \
                 --database-url to an existing disposable database"
            ))
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(err(format!("psql `{sql}` failed: {}", String::from_utf8_lossy(&out.stderr).trim())))
    }
}

/// Replace the database (path) part of a Postgres URL, keeping the query.
pub fn with_database(url: &str, db: &str) -> Result<String> {
    let scheme_end = url.find("://").ok_or_else(|| err(format!("not a URL: {url}")))? + 3;
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let query = rest[authority_end..].find('?').map(|i| &rest[authority_end + i..]);
    Ok(format!("{}{}/{db}{}", &url[..scheme_end], &rest[..authority_end], query.unwrap_or("")))
}

/// Base64 of 32 random bytes from the OS, for `LATCHKEY_MASTER_KEY`.
fn throwaway_master_key() -> Result<String> {
    use base64::Engine as _;
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .map_err(|e| err(format!("cannot read /dev/urandom for a master key: {e}")))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(key))
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// The server's stdout and stderr, read through pipes by two threads that
/// count the bytes and keep only the last few KiB: a server logging every
/// request at INFO writes hundreds of MB per run, which must neither fill the
/// disk nor block the server.
#[derive(Clone, Default)]
pub struct LogCapture {
    bytes: Arc<AtomicU64>,
    ansi: Arc<AtomicBool>,
    tail: Arc<Mutex<Vec<u8>>>,
}

const LOG_TAIL_KEEP: usize = 64 * 1024;

impl LogCapture {
    fn drain(&self, mut pipe: impl Read + Send + 'static) {
        let this = self.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let chunk = &buf[..n];
                this.bytes.fetch_add(n as u64, Ordering::Relaxed);
                if chunk.contains(&0x1b) {
                    this.ansi.store(true, Ordering::Relaxed);
                }
                if let Ok(mut tail) = this.tail.lock() {
                    tail.extend_from_slice(chunk);
                    if tail.len() > 2 * LOG_TAIL_KEEP {
                        let cut = tail.len() - LOG_TAIL_KEEP;
                        tail.drain(..cut);
                    }
                }
            }
        });
    }

    /// Bytes the server has written to stdout and stderr so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Whether the output contained ANSI escape codes (it is not a terminal).
    pub fn has_ansi(&self) -> bool {
        self.ansi.load(Ordering::Relaxed)
    }

    /// Last `lines` lines of output, colour codes removed.
    pub fn tail(&self, lines: usize) -> String {
        let text = match self.tail.lock() {
            Ok(t) => strip_ansi(&String::from_utf8_lossy(&t)),
            Err(_) => return "(log unavailable)".into(),
        };
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// How to start the server.
#[derive(Clone, Debug)]
pub struct LaunchOptions {
    pub bin: PathBuf,
    /// Extra environment for the server process (e.g. log level).
    pub env: Vec<(String, String)>,
    /// Settings written to a TOML file passed with `--config` (key, TOML
    /// value as written, e.g. `("authn_rate_limit_per_ip", "0")`). A file,
    /// not `LATCHKEY_*` variables: the server reads only a few keys from its
    /// environment (not `master_key` nor `authn_rate_limit_*`).
    pub settings: Vec<(String, String)>,
    pub ready_timeout: Duration,
}

impl LaunchOptions {
    /// Write the `--config` file for `db` into `dir` (always, even when
    /// empty, so that a `LATCHKEY_CONFIG` in the caller's environment does
    /// not leak into a benchmark). A PostgreSQL server refuses to start
    /// without a master key (SQLite makes a key file next to the database),
    /// so a throwaway one is added unless `settings` has one.
    pub fn write_config(&self, db: &Database, dir: &Path) -> Result<PathBuf> {
        let mut text = String::from("# written by latchkey-bench for one run\n");
        for (k, v) in &self.settings {
            text.push_str(&format!("{k} = {v}\n"));
        }
        let has_key = self.settings.iter().any(|(k, _)| k == "master_key" || k == "master_key_file");
        if Backend::from_url(&db.url).ok() == Some(Backend::Postgres) && !has_key {
            text.push_str(&format!("master_key = \"{}\"\n", throwaway_master_key()?));
        }
        let path = dir.join("latchkey-bench.toml");
        std::fs::write(&path, text)?;
        Ok(path)
    }
}

/// How the server went down.
#[derive(Clone, Debug)]
pub struct StopReport {
    pub after_secs: f64,
    /// Exit status as text.
    pub status: String,
    /// Stopped by SIGTERM and exited 0.
    pub clean: bool,
}

/// A running `latchkey serve` child process.
pub struct Server {
    child: Option<Child>,
    pid: u32,
    pub addr: SocketAddr,
    pub bin: PathBuf,
    pub db_url: String,
    /// The `--config` file the server (and `token create`) runs with.
    pub config: PathBuf,
    pub log: LogCapture,
    pub startup_secs: f64,
    pub api: Api,
}

impl Server {
    /// Start on a free loopback port and wait for `GET /readyz` to answer 200.
    /// The server's output is captured in memory (see [`LogCapture`]).
    /// `dir` (a scratch directory) receives the `--config` file.
    pub async fn start(opts: &LaunchOptions, db: &Database, dir: &Path) -> Result<Server> {
        let config = opts.write_config(db, dir)?;
        let mut last_err = None;
        for _attempt in 0..3 {
            match Self::start_once(opts, db, &config).await {
                Ok(s) => return Ok(s),
                Err((e, port_clash)) => {
                    if !port_clash {
                        return Err(e);
                    }
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| err("server did not start")))
    }

    async fn start_once(
        opts: &LaunchOptions,
        db: &Database,
        config: &Path,
    ) -> std::result::Result<Server, (crate::util::BoxError, bool)> {
        let plain = |e: crate::util::BoxError| (e, false);
        let port = free_port().map_err(plain)?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let base = format!("http://{addr}");

        let mut cmd = Command::new(&opts.bin);
        cmd.arg("serve")
            .arg("--config")
            .arg(config)
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--public-url")
            .arg(&base)
            .arg("--database-url")
            .arg(&db.url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let started = Instant::now();
        let mut child =
            cmd.spawn().map_err(|e| plain(err(format!("cannot start {}: {e}", opts.bin.display()))))?;
        let log = LogCapture::default();
        if let Some(out) = child.stdout.take() {
            log.drain(out);
        }
        if let Some(errs) = child.stderr.take() {
            log.drain(errs);
        }
        let mut server = Server {
            pid: child.id(),
            child: Some(child),
            addr,
            bin: opts.bin.clone(),
            db_url: db.url.clone(),
            config: config.to_path_buf(),
            log,
            startup_secs: 0.0,
            api: Api::new(base, None),
        };

        let deadline = started + opts.ready_timeout;
        loop {
            if let Some(status) = server.try_wait() {
                // Let the pipe readers catch the last words.
                tokio::time::sleep(Duration::from_millis(100)).await;
                let tail = server.log.tail(30);
                let clash = tail.to_ascii_lowercase().contains("in use");
                return Err((
                    err(format!("server exited during startup ({status}); log tail:\n{tail}")),
                    clash,
                ));
            }
            if let Ok((StatusCode::OK, _)) = server.api.call(Method::GET, "/readyz", None).await {
                server.startup_secs = started.elapsed().as_secs_f64();
                return Ok(server);
            }
            if Instant::now() >= deadline {
                let tail = server.log.tail(30);
                let _ = server.stop();
                return Err(plain(err(format!(
                    "server not ready after {:?}; log tail:\n{tail}",
                    opts.ready_timeout
                ))));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    fn try_wait(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("unknown status: {e}")),
        }
    }

    /// `latchkey token create --name NAME --database-url URL --config FILE`;
    /// returns the token.
    pub fn create_token(&self, name: &str) -> Result<String> {
        let out = Command::new(&self.bin)
            .args(["token", "create", "--name", name, "--database-url", &self.db_url, "--config"])
            .arg(&self.config)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| err(format!("cannot run token create: {e}")))?;
        if !out.status.success() {
            return Err(err(format!(
                "`latchkey token create` failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        stdout
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .map(str::to_string)
            .ok_or_else(|| err("`latchkey token create` printed no token"))
    }

    /// An API client for this server carrying `Authorization: SSWS <token>`.
    pub fn api_with_token(&self, token: &str) -> Api {
        Api::new(self.api.base.clone(), Some(token.to_string()))
    }

    /// SIGTERM, wait up to 10 s, then SIGKILL. Idempotent.
    pub fn stop(&mut self) -> Result<StopReport> {
        let Some(mut child) = self.child.take() else {
            return Err(err("server already stopped"));
        };
        if let Ok(Some(status)) = child.try_wait() {
            return Ok(StopReport {
                after_secs: 0.0,
                status: format!("had already exited: {status}"),
                clean: false,
            });
        }
        let t0 = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        while t0.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(status)) = child.try_wait() {
                return Ok(StopReport {
                    after_secs: t0.elapsed().as_secs_f64(),
                    clean: status.success(),
                    status: status.to_string(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let status = child.wait()?;
        Ok(StopReport {
            after_secs: t0.elapsed().as_secs_f64(),
            status: format!("ignored SIGTERM for 10 s, killed: {status}"),
            clean: false,
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop();
        }
    }
}

/// Minimal JSON-over-HTTP client for setup calls (not used for load).
#[derive(Clone)]
pub struct Api {
    client: Client<HttpConnector, Full<Bytes>>,
    pub base: String,
    token: Option<String>,
}

impl Api {
    pub fn new(base: String, token: Option<String>) -> Self {
        Self { client: Client::builder(TokioExecutor::new()).build_http(), base, token }
    }

    /// Send a request; returns the status and the whole body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        json: Option<&Value>,
    ) -> Result<(StatusCode, Bytes)> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(ACCEPT, "application/json");
        if let Some(t) = &self.token {
            req = req.header(AUTHORIZATION, format!("SSWS {t}"));
        }
        let body = match json {
            Some(v) => {
                req = req.header(CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(v)?)
            }
            None => Bytes::new(),
        };
        let resp =
            tokio::time::timeout(Duration::from_secs(30), self.client.request(req.body(Full::new(body))?))
                .await
                .map_err(|_| err(format!("{path}: no response within 30 s")))??;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }

    /// Create an ACTIVE user with a password (`POST /api/v1/users?activate=true`);
    /// returns its id. The password must satisfy the default policy, which
    /// also refuses any part of the login (pieces of 3+ characters between
    /// `@ . _ - +`).
    pub async fn create_active_user(&self, login: &str, password: &str) -> Result<String> {
        let body = serde_json::json!({
            "profile": {"login": login, "email": login, "firstName": "B", "lastName": "M"},
            "credentials": {"password": {"value": password}}
        });
        let v = self.call_ok(Method::POST, "/api/v1/users?activate=true", Some(&body)).await?;
        v.get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| err(format!("user creation response has no string \"id\": {v}")))
    }

    /// Like [`Api::call`] but requires a 2xx and parses the body as JSON.
    pub async fn call_ok(&self, method: Method, path: &str, json: Option<&Value>) -> Result<Value> {
        let (status, body) = self.call(method.clone(), path, json).await?;
        if !status.is_success() {
            return Err(err(format!(
                "{method} {path} → {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(500)])
            )));
        }
        if body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&body).map_err(|e| err(format!("{method} {path}: response is not JSON ({e})")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_rewrite() -> Result<()> {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "bench_1")?,
            "postgres://postgres@127.0.0.1:5432/bench_1"
        );
        assert_eq!(
            with_database("postgres://u:p@h/postgres?sslmode=disable", "b")?,
            "postgres://u:p@h/b?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h:5432", "b")?, "postgres://h:5432/b");
        assert_eq!(with_database("postgres://h?x=1", "b")?, "postgres://h/b?x=1");
        assert!(with_database("nonsense", "b").is_err());
        Ok(())
    }

    #[test]
    fn backend_from_url() -> Result<()> {
        assert_eq!(Backend::from_url("sqlite:///tmp/x.db")?, Backend::Sqlite);
        assert_eq!(Backend::from_url("postgresql://h/db")?, Backend::Postgres);
        assert!(Backend::from_url("mysql://h/db").is_err());
        Ok(())
    }

    #[test]
    fn debug_build_detection() {
        assert!(looks_like_debug_build(Path::new("/w/target/debug/latchkey")));
        assert!(!looks_like_debug_build(Path::new("/w/target/release/latchkey")));
    }
}
