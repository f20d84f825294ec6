//! The command-line contract (docs/architecture.md, "Command line and configuration"), exercised through the
//! real binary: configuration layering and validation, `token create`, `migrate`, and `serve` with a graceful
//! stop on SIGTERM.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step fails the test"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn latchkey(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_latchkey"));
    cmd.current_dir(dir);
    for (key, _) in std::env::vars() {
        if key.starts_with("LATCHKEY_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run latchkey")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A minimal HTTP/1.1 exchange; returns (status, body).
fn http(port: u16, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    try_http(port, method, path, token, body).unwrap()
}

fn try_http(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    let auth = token.map(|t| format!("Authorization: SSWS {t}\r\n")).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    Ok((status, body))
}

struct Server {
    child: Child,
    port: u16,
}

fn start(dir: &Path, extra_env: &[(&str, &str)]) -> Server {
    let port = free_port();
    let mut cmd = latchkey(dir);
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    // Dropping the server (also when a test fails) kills the process.
    let server = Server { child: cmd.spawn().unwrap(), port };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        // Polling a port nobody listens on yet can succeed by connecting to itself (TCP
        // simultaneous open on loopback), so readiness is a real answer, and failures are retried.
        if try_http(port, "GET", "/readyz", None, "").is_ok_and(|(status, _)| status == 200) {
            return server;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("server did not become ready");
}

impl Server {
    fn terminate(&self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn config_check_prints_documented_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(latchkey(dir.path()).args(["config", "check"]));
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("listen = \"127.0.0.1:8080\""), "{text}");
    assert!(text.contains("public_url = \"http://127.0.0.1:8080\""), "{text}");
    assert!(text.contains("database_url = \"sqlite://latchkey-data/latchkey.db\""), "{text}");
    assert!(text.contains("session_token_precedence = \"token\""), "{text}");
    assert!(text.contains("hsts_max_age_secs = 31536000"), "{text}");
    let out =
        run(latchkey(dir.path()).args(["config", "check"]).env("LATCHKEY_HSTS_MAX_AGE_SECS", "99999999"));
    assert_eq!(out.status.code(), Some(2), "more than two years is refused: {out:?}");
    assert!(
        stdout(&out).contains("hsts_max_age_secs")
            || String::from_utf8_lossy(&out.stderr).contains("hsts_max_age_secs")
    );
}

#[test]
fn flags_beat_env_beat_file_and_secrets_are_masked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("latchkey.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:7001\"\npublic_url = \"https://file.example.com\"\ndatabase_url = \"postgres://lk:hunter2@db.example.com/lk\"\nsession_token_precedence = \"cookie\"\nmaster_key = \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"\n",
    )
    .unwrap();
    let out = run(latchkey(dir.path())
        .args(["config", "check", "--config", file.to_str().unwrap(), "--listen", "127.0.0.1:7003"])
        .env("LATCHKEY_LISTEN", "127.0.0.1:7002")
        .env("LATCHKEY_PUBLIC_URL", "https://env.example.com"));
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("listen = \"127.0.0.1:7003\""), "flag wins: {text}");
    assert!(text.contains("public_url = \"https://env.example.com\""), "env beats file: {text}");
    assert!(text.contains("session_token_precedence = \"cookie\""), "file beats default: {text}");
    assert!(text.contains("postgres://lk:***@db.example.com/lk"), "{text}");
    assert!(!text.contains("hunter2"), "password masked: {text}");
    assert!(
        text.contains("master_key = \"***\"")
            && !text.contains("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="),
        "key masked: {text}"
    );
}

#[test]
fn invalid_configuration_lists_every_problem_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(latchkey(dir.path())
        .args(["config", "check", "--listen", "not-an-address"])
        .env("LATCHKEY_DATABASE_URL", "mysql://x")
        .env("LATCHKEY_SESSION_TOKEN_PRECEDENCE", "sometimes"));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in ["listen:", "database_url:", "session_token_precedence:"] {
        assert!(err.contains(needle), "{needle} missing from: {err}");
    }
    let unknown_key = dir.path().join("bad.toml");
    std::fs::write(&unknown_key, "lisen = \"127.0.0.1:1\"\n").unwrap();
    let out = run(latchkey(dir.path()).args(["config", "check", "--config", unknown_key.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(2), "typos in the file are refused");
    let missing = run(latchkey(dir.path()).args(["config", "check", "--config", "nope.toml"]));
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn migrate_then_token_create_then_serve_and_stop_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let migrated = run(latchkey(dir.path()).arg("migrate"));
    assert!(migrated.status.success(), "{migrated:?}");
    let first = stdout(&migrated);
    assert!(first.starts_with("applied ") && !first.starts_with("applied 0"), "{first}");
    assert!(dir.path().join("latchkey-data/latchkey.db").is_file(), "default database location");
    assert_eq!(stdout(&run(latchkey(dir.path()).arg("migrate"))).trim(), "applied 0 migration(s)");

    let created = run(latchkey(dir.path()).args(["token", "create", "--name", "ci"]));
    assert!(created.status.success(), "{created:?}");
    let token = stdout(&created).trim().to_owned();
    assert!(token.len() >= 40 && !token.contains(' '), "{token}");
    let db = std::fs::read(dir.path().join("latchkey-data/latchkey.db")).unwrap();
    assert!(!db.windows(token.len()).any(|w| w == token.as_bytes()), "only the hash is stored");
    let nameless = run(latchkey(dir.path()).args(["token", "create", "--name", " "]));
    assert_eq!(nameless.status.code(), Some(2));

    let mut server = start(dir.path(), &[]);
    let port = server.port;
    assert_eq!(http(port, "GET", "/healthz", None, "").0, 200);
    assert_eq!(http(port, "GET", "/api/v1/users", Some(&token), "").0, 200);
    assert_eq!(http(port, "GET", "/api/v1/users", Some("wrong"), "").0, 401);
    let (status, metrics) = http(port, "GET", "/metrics", None, "");
    assert_eq!(status, 200);
    assert!(metrics.contains("latchkey_http_requests_total"), "{metrics}");

    // Requests in flight when SIGTERM arrives still complete.
    let in_flight: Vec<_> = (0..4)
        .map(|i| {
            let token = token.clone();
            std::thread::spawn(move || {
                let body = format!(
                    r#"{{"profile":{{"login":"t{i}@example.com","email":"t{i}@example.com","firstName":"T","lastName":"U"}},"credentials":{{"password":{{"value":"Correct-Horse-9"}}}}}}"#
                );
                http(port, "POST", "/api/v1/users", Some(&token), &body).0
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(20));
    server.terminate();
    for handle in in_flight {
        assert_eq!(handle.join().unwrap(), 200, "in-flight request finished");
    }
    let status = server.child.wait().unwrap();
    assert!(status.success(), "clean exit: {status:?}");
    let mut log = String::new();
    if let Some(stderr) = server.child.stderr.take() {
        for line in BufReader::new(stderr).lines() {
            log.push_str(&line.unwrap_or_default());
            log.push('\n');
        }
    }
    assert!(log.contains("stopped cleanly"), "{log}");
    assert!(!log.contains(&token), "the token never appears in logs");
    assert!(!log.contains("Correct-Horse-9"), "passwords never appear in logs");
}

#[test]
fn env_vars_configure_serve() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/elsewhere/x.db", dir.path().display());
    let server = start(
        dir.path(),
        &[
            ("LATCHKEY_DATABASE_URL", &db),
            ("LATCHKEY_PUBLIC_URL", "https://id.example.com"),
            ("LATCHKEY_METRICS_TOKEN", "scrape-me-please-0123"),
        ],
    );
    assert!(dir.path().join("elsewhere/x.db").is_file());
    assert!(!dir.path().join("latchkey-data").exists());
    // With a metrics token even a loopback scraper must present it.
    assert_eq!(http(server.port, "GET", "/metrics", None, "").0, 401);
    server.terminate();
    let mut server = server;
    assert!(server.child.wait().unwrap().success());
}

#[test]
fn slow_clients_are_cut_off_and_do_not_block_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    // Half a request, never finished (slow-loris).
    let mut slow = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    write!(slow, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let started = Instant::now();
    let mut buffer = Vec::new();
    let _ = slow.read_to_end(&mut buffer);
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(15),
        "the server closed the connection after the header deadline: {waited:?}"
    );
    assert_eq!(http(server.port, "GET", "/healthz", None, "").0, 200, "others are still served");

    // A half-sent request does not hold SIGTERM forever either.
    let mut stuck = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    write!(stuck, "POST /api/v1/users HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\n{{").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    server.terminate();
    let mut server = server;
    let stopped = Instant::now();
    let status = server.child.wait().unwrap();
    assert!(status.success());
    assert!(stopped.elapsed() < Duration::from_secs(40), "drain deadline bounds shutdown");
}
