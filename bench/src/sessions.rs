//! `sessions`: the cost of a browser session check, `GET /api/v1/sessions/me`
//! with a `sid` cookie (cookie digest → one session + user read → JSON), against
//! the bare `GET /healthz` on the same server, in interleaved closed-loop rounds;
//! then an open-loop run of `/sessions/me` at a fixed rate (by default half the
//! throughput just measured) for the latency a client sees below saturation.
//!
//! Setup per backend: an admin token, one ACTIVE user, a trusted origin
//! `http://127.0.0.1:9` with scope REDIRECT, and `--sessions` sessions (default:
//! one per connection), each made the way a browser gets one: `POST /api/v1/authn`
//! → `sessionToken` → `GET /login/sessionCookieRedirect?token=...&redirectUrl=...`
//! → `302` with `Set-Cookie: sid=...`. Every cookie is checked once with
//! `/sessions/me` before any timing. Connection `i` always sends cookie
//! `i mod sessions`, so requests are spread over as many session rows.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::header::{ACCEPT, COOKIE, HOST, HeaderValue, LOCATION, SET_COOKIE};
use hyper::{Method, Request, StatusCode};
use serde_json::{Value, json};

use crate::common::{AUTHN_THROTTLING_OFF, CommonArgs, DbArgs, Harness, Plan};
use crate::cpu::CpuWatch;
use crate::load::{FixedRequest, RequestFactory, connect};
use crate::open_loop::{self, OpenLoopConfig, OpenLoopResult};
use crate::report::{Comparison, Outcome, RoundResult, Series};
use crate::server::{Api, Backend};
use crate::signins::PASSWORD;
use crate::util::{Result, err, random_suffix};

#[derive(Debug, Args)]
pub struct SessionsArgs {
    #[command(flatten)]
    pub db: DbArgs,

    /// Sessions to create (one sign-in each); connection i sends cookie
    /// i mod N [default: one per connection, the larger of --concurrency
    /// and the open-loop connections].
    #[arg(long)]
    pub sessions: Option<usize>,

    /// Arrival rate of the open-loop run as a share of the measured
    /// closed-loop throughput (median rps) of /sessions/me.
    #[arg(long, default_value_t = 0.5)]
    pub open_loop_fraction: f64,

    /// Fixed arrival rate for the open-loop run, in requests/s (instead of
    /// --open-loop-fraction of the measured throughput).
    #[arg(long)]
    pub open_loop_rate: Option<f64>,

    /// Connections the open-loop requests are spread over [default: --concurrency].
    #[arg(long)]
    pub open_loop_connections: Option<usize>,

    /// Skip the open-loop latency run.
    #[arg(long)]
    pub no_open_loop: bool,

    #[command(flatten)]
    pub common: CommonArgs,
}

pub const BENCHMARK: &str = "sessions";
const BASELINE_LABEL: &str = "GET /healthz";
const TARGET_LABEL: &str = "GET /api/v1/sessions/me";
/// Session checks/s should reach this share of health checks/s.
const RATIO_GOAL: f64 = 0.5;
/// The trusted origin the cookie redirect goes to (nothing listens there:
/// the redirect is never followed).
const ORIGIN: &str = "http://127.0.0.1:9";
const REDIRECT_URL: &str = "http://127.0.0.1:9/";

/// Run the benchmark for each selected backend.
pub async fn run(args: &SessionsArgs) -> Vec<(String, Result<Box<dyn Outcome>>)> {
    // Sessions are made by sign-ins: throttling off, or the 5th sign-in of
    // the same user within a second is answered 429.
    let harness = match Harness::new(&args.common, AUTHN_THROTTLING_OFF) {
        Ok(h) => h,
        Err(e) => return vec![(BENCHMARK.to_string(), Err(e))],
    };
    if let Err(e) = validate(args) {
        return vec![(BENCHMARK.to_string(), Err(e))];
    }
    args.db
        .per_backend(BENCHMARK, async |backend, plan| {
            run_backend(&harness, args, backend, plan).await.map(|r| Box::new(r) as Box<dyn Outcome>)
        })
        .await
}

fn validate(args: &SessionsArgs) -> Result<()> {
    if args.sessions == Some(0) || args.open_loop_connections == Some(0) {
        return Err(err("--sessions and --open-loop-connections must be at least 1"));
    }
    if !(args.open_loop_fraction > 0.0 && args.open_loop_fraction <= 1.0) {
        return Err(err("--open-loop-fraction must be in (0, 1]"));
    }
    if args.open_loop_rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        return Err(err("--open-loop-rate must be positive"));
    }
    Ok(())
}

/// What the server-side part of a run hands back.
struct Measured {
    baseline: Series,
    target: Series,
    open_loop: Option<OpenLoopResult>,
    sessions: usize,
    setup_secs: f64,
    body_sample: Value,
}

async fn run_backend(
    harness: &Harness,
    args: &SessionsArgs,
    backend: Backend,
    plan: Plan,
) -> Result<SessionsReport> {
    let name = backend.name();
    eprintln!("== {BENCHMARK} / {name}");
    let scratch_db = matches!(plan, Plan::Scratch(_));
    let ol_connections = args.open_loop_connections.unwrap_or(harness.load.concurrency);
    let n_sessions = args.sessions.unwrap_or(harness.load.concurrency.max(ol_connections));
    let make_db = |dir: &Path| args.db.make_db(&plan, dir);
    let (m, run) = harness
        .with_server(make_db, async |server| {
            let setup = Instant::now();
            let token = server.create_token(&format!("bench-{}", random_suffix(6)))?;
            let admin = server.api_with_token(&token);
            let login = format!("sess-{}@example.com", random_suffix(10));
            let user_id = admin.create_active_user(&login, PASSWORD).await?;
            trust_origin(&admin).await?;
            let mut cookies = Vec::with_capacity(n_sessions);
            let mut session_ids = std::collections::BTreeSet::new();
            let mut body_sample = Value::Null;
            for _ in 0..n_sessions {
                let sid = new_session_cookie(&server.api, server.addr, &login).await?;
                let body = check_session(server.addr, &sid, &user_id).await?;
                let id = body.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
                if !session_ids.insert(id.clone()) {
                    return Err(err(format!("two sign-ins gave the same session {id}")));
                }
                body_sample = body;
                cookies.push(sid);
            }
            let setup_secs = setup.elapsed().as_secs_f64();
            eprintln!("  {n_sessions} sessions created and checked in {setup_secs:.1} s");

            let baseline: Arc<dyn RequestFactory> = Arc::new(FixedRequest::get("/healthz"));
            let target: Arc<dyn RequestFactory> = Arc::new(SessionRequests::new(&cookies)?);
            let watch = CpuWatch {
                server_pid: Some(server.pid()),
                db_process: (backend == Backend::Postgres).then(|| "postgres".to_string()),
                // Only the backends serving this run's database: the
                // PostgreSQL server is shared with other users' tests.
                db_cmdline: (backend == Backend::Postgres)
                    .then(|| database_name(&server.db_url))
                    .flatten()
                    .map(|db| format!(" {db} ")),
                server_threads: true,
            };
            let (b, t) = harness.interleaved_rounds(name, server.addr, [BASELINE_LABEL, TARGET_LABEL], &baseline, &target, &watch).await?;

            let open_loop = if args.no_open_loop {
                None
            } else {
                let rate = args.open_loop_rate.unwrap_or(args.open_loop_fraction * t.median_rps());
                if !(rate.is_finite() && rate > 0.0) {
                    return Err(err(format!(
                        "cannot run the open loop: measured throughput of {TARGET_LABEL} is {:.1} rps",
                        t.median_rps()
                    )));
                }
                let cfg = OpenLoopConfig {
                    rate,
                    connections: ol_connections,
                    warmup: harness.load.warmup,
                    duration: harness.load.duration,
                    request_timeout: harness.load.request_timeout,
                };
                eprintln!(
                    "  [{name}] open loop: {TARGET_LABEL} at {rate:.0} req/s over {ol_connections} connections"
                );
                let r = open_loop::run(server.addr, TARGET_LABEL, Arc::clone(&target), cfg, &watch).await?;
                eprintln!(
                    "  [{name}] open loop: achieved {:.0} req/s, p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  \
                     max {:.3} ms{}",
                    r.achieved_rps,
                    r.latency.p50,
                    r.latency.p99,
                    r.latency.p999,
                    r.latency.max,
                    if r.errors() > 0 { format!("  ERRORS {}", r.errors()) } else { String::new() }
                );
                Some(r)
            };
            Ok(Measured { baseline: b, target: t, open_loop, sessions: n_sessions, setup_secs, body_sample })
        })
        .await?;

    let mut meta = serde_json::Map::new();
    meta.insert("backend".into(), json!(name));
    meta.insert("scratch_database".into(), json!(scratch_db));
    meta.insert("sessions".into(), json!(m.sessions));
    meta.insert("setup_secs".into(), json!(m.setup_secs));
    meta.insert("ratio_goal".into(), json!(RATIO_GOAL));
    meta.insert(
        "open_loop_rate_rule".into(),
        json!(match args.open_loop_rate {
            Some(r) => format!("fixed --open-loop-rate {r}"),
            None => format!("{} x median closed-loop rps of {TARGET_LABEL}", args.open_loop_fraction),
        }),
    );
    meta.insert("target_response_sample".into(), m.body_sample);
    let mut cmp = harness.comparison(BENCHMARK, name, m.baseline, m.target, run, meta);
    cmp.ratio_goal = Some(RATIO_GOAL);
    if m.sessions < harness.load.concurrency {
        cmp.notes.push(format!(
            "--sessions {} < --concurrency {}: several connections share a session row",
            m.sessions, harness.load.concurrency
        ));
    }
    if let Some(ol) = &m.open_loop {
        if ol.lag.p99 >= 2.0 {
            cmp.notes.push(format!(
                "open loop: p99 send lag {:.2} ms: requests left late (waiting for the previous answer \
                 on their connection, or for a busy load generator); the latency from the scheduled \
                 time includes it, as it should, but check `cli` before blaming the server",
                ol.lag.p99
            ));
        }
        if ol.cpu.other.is_some_and(|o| o >= 0.25) {
            cmp.notes.push(format!(
                "open loop: other processes used {:.2} cores during the run: tail latencies are \
                 likely inflated by the neighbours",
                ol.cpu.other.unwrap_or(0.0)
            ));
        }
    }
    Ok(SessionsReport { cmp, open_loop: m.open_loop, backend })
}

/// The database name of a PostgreSQL URL (`postgres://u@h:5432/NAME?...`).
fn database_name(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let path = rest.split_once('/')?.1;
    let name = path.split(['?', '#']).next()?;
    (!name.is_empty()).then(|| name.to_string())
}

/// `POST /api/v1/trustedOrigins` for [`ORIGIN`] with scope REDIRECT.
async fn trust_origin(admin: &Api) -> Result<()> {
    let body = json!({
        "name": format!("bench-{}", random_suffix(8)),
        "origin": ORIGIN,
        "scopes": [{"type": "REDIRECT"}],
    });
    admin.call_ok(Method::POST, "/api/v1/trustedOrigins", Some(&body)).await?;
    Ok(())
}

/// Sign in and turn the session token into a `sid` cookie value.
async fn new_session_cookie(api: &Api, addr: SocketAddr, login: &str) -> Result<String> {
    let body = json!({"username": login, "password": PASSWORD});
    let v = api.call_ok(Method::POST, "/api/v1/authn", Some(&body)).await?;
    let token = match (v.get("status").and_then(Value::as_str), v.get("sessionToken").and_then(Value::as_str))
    {
        (Some("SUCCESS"), Some(t)) if !t.is_empty() => t.to_string(),
        _ => {
            return Err(err(format!(
                "sign-in of {login} did not end in SUCCESS with a sessionToken (a sign-on or MFA policy \
                 in the way?): {v}"
            )));
        }
    };
    let path = format!(
        "/login/sessionCookieRedirect?token={}&redirectUrl={}",
        percent_encode(&token),
        percent_encode(REDIRECT_URL)
    );
    let (status, headers, body) = raw_get(addr, &path, &[]).await?;
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    if status != StatusCode::FOUND {
        return Err(err(format!(
            "GET /login/sessionCookieRedirect answered {status} (expected 302): {text}"
        )));
    }
    let location = headers.get(LOCATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if location != REDIRECT_URL {
        return Err(err(format!(
            "GET /login/sessionCookieRedirect redirected to {location:?}, not {REDIRECT_URL:?} (token refused?)"
        )));
    }
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(sid_from_set_cookie)
        .ok_or_else(|| err("GET /login/sessionCookieRedirect set no non-empty sid cookie"))
}

/// The value of `sid` in one `Set-Cookie` header, if it sets a non-empty one.
pub(crate) fn sid_from_set_cookie(header: &str) -> Option<String> {
    let first = header.split(';').next()?.trim();
    let (name, value) = first.split_once('=')?;
    (name.trim() == "sid" && !value.is_empty()).then(|| value.to_string())
}

/// `GET /api/v1/sessions/me` with the cookie must answer 200 with an
/// ACTIVE session of `user_id`; returns the body.
async fn check_session(addr: SocketAddr, sid: &str, user_id: &str) -> Result<Value> {
    let cookie = format!("sid={sid}");
    let (status, _, body) =
        raw_get(addr, "/api/v1/sessions/me", &[(COOKIE, &cookie), (ACCEPT, "application/json")]).await?;
    let text = String::from_utf8_lossy(&body[..body.len().min(400)]).into_owned();
    if status != StatusCode::OK {
        return Err(err(format!("GET /api/v1/sessions/me with a fresh cookie answered {status}: {text}")));
    }
    let v: Value = serde_json::from_slice(&body).map_err(|e| err(format!("/sessions/me: not JSON ({e})")))?;
    let ok = v.get("userId").and_then(Value::as_str) == Some(user_id)
        && v.get("status").and_then(Value::as_str) == Some("ACTIVE")
        && v.get("id").and_then(Value::as_str).is_some_and(|s| !s.is_empty());
    if !ok {
        return Err(err(format!("/sessions/me is not an ACTIVE session of user {user_id}: {text}")));
    }
    Ok(v)
}

/// One GET on a fresh connection, redirects not followed, with the right
/// `Host` (the server answers 421 to any other host).
pub(crate) async fn raw_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(hyper::header::HeaderName, &str)],
) -> Result<(StatusCode, hyper::HeaderMap, Bytes)> {
    let mut sender = connect(addr).await?;
    let mut req = Request::builder().method(Method::GET).uri(path).header(HOST, addr.to_string());
    for (k, v) in headers {
        req = req.header(k, *v);
    }
    let req = req.body(Full::new(Bytes::new()))?;
    let fut = async {
        let resp = sender.send_request(req).await?;
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await?.to_bytes();
        Ok::<_, hyper::Error>((parts.status, parts.headers, bytes))
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), fut)
        .await
        .map_err(|_| err(format!("GET {path}: no response within 30 s")))?
        .map_err(|e| err(format!("GET {path}: {e}")))
}

/// Percent-encode everything but RFC 3986 unreserved characters.
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `GET /api/v1/sessions/me` with connection `worker`'s cookie (`worker mod N`).
struct SessionRequests {
    cookies: Vec<HeaderValue>,
}

impl SessionRequests {
    fn new(sids: &[String]) -> Result<Self> {
        if sids.is_empty() {
            return Err(err("no sessions"));
        }
        let cookies = sids
            .iter()
            .map(|s| HeaderValue::from_str(&format!("sid={s}")))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Self { cookies })
    }
}

impl RequestFactory for SessionRequests {
    fn build(&self, worker: usize, _seq: u64) -> Result<Request<Full<Bytes>>> {
        Ok(Request::builder()
            .method(Method::GET)
            .uri("/api/v1/sessions/me")
            .header(COOKIE, self.cookies[worker % self.cookies.len()].clone())
            .header(ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))?)
    }
}

/// The closed-loop comparison plus the open-loop latency run.
pub struct SessionsReport {
    cmp: Comparison,
    open_loop: Option<OpenLoopResult>,
    backend: Backend,
}

/// Server CPU µs per request by thread name in one round.
fn thread_cost(r: &RoundResult) -> Vec<(String, f64)> {
    if r.rps <= 0.0 {
        return Vec::new();
    }
    r.server_threads.iter().map(|g| (g.name.clone(), g.cores / r.rps * 1e6)).collect()
}

impl SessionsReport {
    /// Per thread name: µs of server CPU per request in the median baseline
    /// and target rounds, busiest in the target first.
    fn thread_costs(&self) -> Vec<(String, f64, f64)> {
        let b = self.cmp.baseline.median_round().map(thread_cost).unwrap_or_default();
        let t = self.cmp.target.median_round().map(thread_cost).unwrap_or_default();
        let mut names: Vec<String> = t.iter().chain(&b).map(|(n, _)| n.clone()).collect();
        let mut seen = std::collections::BTreeSet::new();
        names.retain(|n| seen.insert(n.clone()));
        let get =
            |v: &[(String, f64)], n: &str| v.iter().find(|(m, _)| m == n).map(|(_, c)| *c).unwrap_or(0.0);
        let mut rows: Vec<(String, f64, f64)> =
            names.into_iter().map(|n| (n.clone(), get(&b, &n), get(&t, &n))).collect();
        rows.retain(|(_, b, t)| *b >= 0.5 || *t >= 0.5);
        rows.sort_by(|x, y| y.2.total_cmp(&x.2));
        rows
    }

    fn db_cost(&self, s: &Series) -> Option<f64> {
        s.med_opt(|r| Some(r.cpu.db? / r.rps * 1e6).filter(|_| r.rps > 0.0))
    }
}

impl Outcome for SessionsReport {
    fn title(&self) -> String {
        format!("{BENCHMARK} / {}", self.cmp.variant)
    }

    fn table(&self) -> String {
        let mut out = self.cmp.table();
        let rows = self.thread_costs();
        if !rows.is_empty() {
            let _ = writeln!(out, "server CPU us per request by thread name (median round of each side):");
            let _ = writeln!(out, "  {:<24}{:>10}{:>10}{:>10}", "thread", "healthz", "sess/me", "extra");
            for (name, b, t) in &rows {
                let _ = writeln!(out, "  {:<24}{:>10.1}{:>10.1}{:>+10.1}", name, b, t, t - b);
            }
            if self.backend == Backend::Postgres
                && let (Some(b), Some(t)) = (self.db_cost(&self.cmp.baseline), self.db_cost(&self.cmp.target))
            {
                let _ =
                    writeln!(out, "  {:<24}{:>10.1}{:>10.1}{:>+10.1}", "(postgres processes)", b, t, t - b);
            }
        }
        if let Some(ol) = &self.open_loop {
            out.push_str(&ol.table());
        }
        out
    }

    fn write_json(&self, dir: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{BENCHMARK}-{}.json", self.cmp.variant));
        let mut v = self.cmp.to_json();
        if let Value::Object(map) = &mut v {
            map.insert("ok".into(), json!(self.failures().is_empty()));
            map.insert(
                "server_cpu_us_per_request_by_thread".into(),
                self.thread_costs()
                    .iter()
                    .map(|(n, b, t)| {
                        json!({"thread": n, "baseline_us": (b * 10.0).round() / 10.0,
                               "target_us": (t * 10.0).round() / 10.0})
                    })
                    .collect(),
            );
            map.insert("open_loop".into(), self.open_loop.as_ref().map(OpenLoopResult::to_json).into());
        }
        let mut text = serde_json::to_string_pretty(&v)?;
        text.push('\n');
        std::fs::write(&path, text)?;
        Ok(path)
    }

    fn summary(&self) -> String {
        let mut s = Outcome::summary(&self.cmp);
        if let Some(ol) = &self.open_loop {
            let _ = write!(
                s,
                "; open loop {:.0}/s: p50 {:.2} ms p99 {:.2} ms p99.9 {:.2} ms max {:.2} ms, {}",
                ol.cfg.rate,
                ol.latency.p50,
                ol.latency.p99,
                ol.latency.p999,
                ol.latency.max,
                if ol.kept_up() { "kept up" } else { "DID NOT KEEP UP" }
            );
        }
        s
    }

    fn failures(&self) -> Vec<String> {
        let mut f = Outcome::failures(&self.cmp);
        if let Some(ol) = &self.open_loop
            && ol.errors() > 0
        {
            f.push(format!(
                "{} failed requests in the open-loop run (first: {}); figures are NOT valid",
                ol.errors(),
                ol.first_error.as_deref().unwrap_or("?")
            ));
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sid_cookie_is_read_from_set_cookie() {
        assert_eq!(
            sid_from_set_cookie("sid=abc123_-; Path=/; HttpOnly; Secure; SameSite=None").as_deref(),
            Some("abc123_-")
        );
        assert_eq!(sid_from_set_cookie("sid=; Path=/; Max-Age=0"), None);
        assert_eq!(sid_from_set_cookie("other=x; Path=/"), None);
    }

    #[test]
    fn database_name_from_url() {
        assert_eq!(
            database_name("postgres://postgres@127.0.0.1:5432/bench_ab12").as_deref(),
            Some("bench_ab12")
        );
        assert_eq!(database_name("postgres://h/db?sslmode=disable").as_deref(), Some("db"));
        assert_eq!(database_name("postgres://h:5432"), None);
    }

    #[test]
    fn percent_encoding_of_redirect_url() {
        assert_eq!(percent_encode(REDIRECT_URL), "http%3A%2F%2F127.0.0.1%3A9%2F");
        assert_eq!(percent_encode("a.b-c_d~e"), "a.b-c_d~e");
    }

    #[test]
    fn session_requests_spread_cookies_by_connection() -> Result<()> {
        let f = SessionRequests::new(&["one".to_string(), "two".to_string()])?;
        let cookie = |w| -> Result<String> { Ok(f.build(w, 0)?.headers()[COOKIE].to_str()?.to_string()) };
        assert_eq!(
            (cookie(0)?, cookie(1)?, cookie(2)?),
            ("sid=one".into(), "sid=two".into(), "sid=one".into())
        );
        assert_eq!(f.build(0, 0)?.uri().path(), "/api/v1/sessions/me");
        Ok(())
    }
}
