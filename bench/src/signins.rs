//! `signins`: password sign-ins (`POST /api/v1/authn` with the right
//! password, answered `SUCCESS` with a session token) per second, against
//! the machine's raw argon2id rate measured in this process with the
//! server's parameters.
//!
//! A sign-in is one argon2id verification (m=19456 KiB, t=2, p=1) plus HTTP,
//! JSON, a user lookup, the policy reads and the writes of a successful
//! sign-in (failed-attempt reset, last login, the session). The hash should
//! dominate: the ratio sign-ins/s ÷ verifications/s says how much of the
//! machine the rest costs (goal: at least 0.85).
//!
//! Baseline rounds (in-process argon2 on one thread per CPU) and sign-in
//! rounds alternate (B T | T B | B T); a baseline round starts only after
//! every request of the previous sign-in round has been answered, so the
//! two never compete for the CPU, and the idle server's CPU is recorded
//! during baseline rounds to show it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use bytes::Bytes;
use clap::Args;
use http_body_util::Full;
use hyper::header::{ACCEPT, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode};
use serde_json::{Value, json};

use crate::common::{AUTHN_THROTTLING_OFF, CommonArgs, DbArgs, Harness, Plan};
use crate::cpu::CpuWatch;
use crate::load::{self, RequestFactory};
use crate::report::{Comparison, RoundResult};
use crate::server::{Api, Backend};
use crate::util::{Result, err, random_suffix};

#[derive(Debug, Args)]
pub struct SigninsArgs {
    #[command(flatten)]
    pub db: DbArgs,

    /// Users to create; sign-ins go to them round-robin.
    #[arg(long, default_value_t = 64)]
    pub users: usize,

    /// Threads for the in-process argon2 baseline [default: one per CPU,
    /// as many hashes as the server runs at once].
    #[arg(long)]
    pub baseline_threads: Option<usize>,

    #[command(flatten)]
    pub common: CommonArgs,
}

pub const BENCHMARK: &str = "signins";
const BASELINE_LABEL: &str = "argon2id verify (in-proc)";
const TARGET_LABEL: &str = "POST /api/v1/authn";
/// Satisfies the default password policy (8+ characters, upper, lower,
/// digit) and shares no 3-character piece with the benchmark logins.
pub const PASSWORD: &str = "Bench-Passw0rd!";
/// Sign-ins/s should reach this share of the raw verification rate.
const RATIO_GOAL: f64 = 0.85;

/// The server's argon2id parameters (`latchkey_core::password`): OWASP's
/// 19 MiB, 2 passes, 1 lane. Kept in sync by hand; the JSON records them.
pub const ARGON2_M_KIB: u32 = 19 * 1024;
pub const ARGON2_T: u32 = 2;
pub const ARGON2_P: u32 = 1;

fn argon2() -> Result<Argon2<'static>> {
    let params = Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, None)
        .map_err(|e| err(format!("argon2 params: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// A PHC string for [`PASSWORD`] with the server's parameters and a fixed salt.
fn reference_phc() -> Result<String> {
    let salt =
        SaltString::encode_b64(b"latchkey-bench-salt").map_err(|e| err(format!("argon2 salt: {e}")))?;
    argon2()?
        .hash_password(PASSWORD.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| err(format!("argon2 hash: {e}")))
}

/// Run the benchmark for each selected backend.
pub async fn run(args: &SigninsArgs) -> Vec<(String, Result<Comparison>)> {
    let harness = match Harness::new(&args.common, AUTHN_THROTTLING_OFF) {
        Ok(h) => h,
        Err(e) => return vec![(BENCHMARK.to_string(), Err(e))],
    };
    if args.users == 0 {
        return vec![(BENCHMARK.to_string(), Err(err("--users must be at least 1")))];
    }
    args.db
        .per_backend(BENCHMARK, async |backend, plan| run_backend(&harness, args, backend, plan).await)
        .await
}

async fn run_backend(
    harness: &Harness,
    args: &SigninsArgs,
    backend: Backend,
    plan: Plan,
) -> Result<Comparison> {
    let name = backend.name();
    eprintln!("== {BENCHMARK} / {name}");
    let scratch_db = matches!(plan, Plan::Scratch(_));
    let cpus = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
    let threads = args.baseline_threads.unwrap_or(cpus).max(1);
    let phc = Arc::new(reference_phc()?);
    let make_db = |dir: &std::path::Path| args.db.make_db(&plan, dir);
    let ((baseline, target, setup_secs), run) = harness
        .with_server(make_db, async |server| {
            let setup = Instant::now();
            let token = server.create_token(&format!("bench-{}", random_suffix(6)))?;
            let api = server.api_with_token(&token);
            let logins = create_users(&api, args.users).await?;
            // Every user signs in once, checked, before any timing: proves
            // the password and the SUCCESS answer, and warms the caches.
            for login in &logins {
                check_signin(&server.api, login).await?;
            }
            let setup_secs = setup.elapsed().as_secs_f64();
            eprintln!("  {} users created and signed in once in {setup_secs:.1} s", logins.len());

            let target: Arc<dyn RequestFactory> = Arc::new(SigninRequests::new(&logins)?);
            let watch = CpuWatch {
                server_pid: Some(server.pid()),
                db_process: (backend == Backend::Postgres).then(|| "postgres".to_string()),
                db_cmdline: None,
                server_threads: true,
            };
            let verify = argon2_op(&phc);
            let (b, t) = harness
                .in_process_rounds(
                    name,
                    server.addr,
                    [BASELINE_LABEL, TARGET_LABEL],
                    &verify,
                    threads,
                    &target,
                    &watch,
                )
                .await?;
            Ok((b, t, setup_secs))
        })
        .await?;
    let mut notes_extra = Vec::new();
    let mut meta = serde_json::Map::new();
    meta.insert("backend".into(), json!(name));
    meta.insert("scratch_database".into(), json!(scratch_db));
    meta.insert("users".into(), json!(args.users));
    meta.insert("setup_secs".into(), json!(setup_secs));
    meta.insert(
        "argon2".into(),
        json!({
            "algorithm": "argon2id", "version": 19,
            "m_kib": ARGON2_M_KIB, "t": ARGON2_T, "p": ARGON2_P,
            "baseline_threads": threads,
            "baseline": "PasswordHash::new + Argon2::verify_password per operation, as the server's \
                         latchkey_core::password::verify does",
        }),
    );
    meta.insert("ratio_goal".into(), json!(RATIO_GOAL));
    if threads != cpus {
        notes_extra.push(format!(
            "the baseline ran on {threads} thread(s) while the server hashes on up to {cpus} at once: \
             the throughput ratio compares unlike things (the CPU-per-request ratio still holds)"
        ));
    }
    let mut cmp = harness.comparison(BENCHMARK, name, baseline, target, run, meta);
    cmp.ratio_goal = Some(RATIO_GOAL);
    cmp.notes.extend(notes_extra);
    if args.users < harness.load.concurrency {
        cmp.notes.push(format!(
            "--users {} < --concurrency {}: the same user is signed in on several connections at \
             once, so version-guarded user updates may collide and retry",
            args.users, harness.load.concurrency
        ));
    }
    if let (Some(t), Some(b)) = (cmp.target.median_cpu_us(), cmp.baseline.median_cpu_us())
        && b > 0.0
    {
        cmp.notes.push(format!(
            "CPU per sign-in (server{}) is {:.0} us against {:.0} us per raw verification: \
             {:.0} us ({:+.0}%) of CPU beyond the hash",
            if backend == Backend::Postgres { " + postgres" } else { "" },
            t,
            b,
            t - b,
            (t / b - 1.0) * 100.0
        ));
    }
    if let Some(f) = cmp.target.med_opt(RoundResult::faults_per_request)
        && f >= 500.0
    {
        cmp.notes.push(format!(
            "the server took ~{f:.0} fresh pages (~{:.1} MiB) from the kernel per sign-in: argon2's \
             19 MiB buffer is often faulted in (and zeroed) afresh instead of reused, which costs \
             CPU beyond the hash itself (see README)",
            f * 4096.0 / (1024.0 * 1024.0)
        ));
    }
    Ok(cmp)
}

/// Create `n` ACTIVE users with [`PASSWORD`], a few at a time (each
/// creation hashes the password); returns their logins in creation order.
pub(crate) async fn create_users(api: &Api, n: usize) -> Result<Vec<String>> {
    let run = random_suffix(8);
    // `signin007-<run>@example.com`: no piece of the login appears in the password.
    let logins: Vec<String> = (0..n).map(|i| format!("signin{i:03}-{run}@example.com")).collect();
    let parallel = std::thread::available_parallelism().map(usize::from).unwrap_or(1) * 2;
    for chunk in logins.chunks(parallel) {
        let mut set = tokio::task::JoinSet::new();
        for login in chunk {
            let (api, login) = (api.clone(), login.clone());
            set.spawn(async move { api.create_active_user(&login, PASSWORD).await });
        }
        while let Some(done) = set.join_next().await {
            done.map_err(|e| err(format!("user creation task failed: {e}")))??;
        }
    }
    Ok(logins)
}

/// One sign-in that must answer 200 `SUCCESS` with a session token.
pub(crate) async fn check_signin(api: &Api, login: &str) -> Result<()> {
    let body = json!({"username": login, "password": PASSWORD});
    let (status, bytes) = api.call(Method::POST, "/api/v1/authn", Some(&body)).await?;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(400)]).into_owned();
    if status != StatusCode::OK {
        return Err(err(format!("sign-in of {login} answered {status}: {text}")));
    }
    let v: Value =
        serde_json::from_slice(&bytes).map_err(|e| err(format!("sign-in answer not JSON: {e}")))?;
    let ok = v.get("status").and_then(Value::as_str) == Some("SUCCESS")
        && v.get("sessionToken").and_then(Value::as_str).is_some_and(|t| !t.is_empty());
    if !ok {
        return Err(err(format!(
            "sign-in of {login} did not end in SUCCESS with a sessionToken (a sign-on or MFA policy \
             in the way?): {text}"
        )));
    }
    Ok(())
}

/// `POST /api/v1/authn` bodies for every user, handed out round-robin
/// across all connections (consecutive requests go to different users).
pub(crate) struct SigninRequests {
    bodies: Vec<Bytes>,
    next: AtomicUsize,
}

impl SigninRequests {
    pub(crate) fn new(logins: &[String]) -> Result<Self> {
        let bodies = logins
            .iter()
            .map(|login| {
                serde_json::to_vec(&json!({"username": login, "password": PASSWORD})).map(Bytes::from)
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        if bodies.is_empty() {
            return Err(err("no users to sign in"));
        }
        Ok(Self { bodies, next: AtomicUsize::new(0) })
    }
}

impl RequestFactory for SigninRequests {
    fn build(&self, _worker: usize, _seq: u64) -> Result<Request<Full<Bytes>>> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.bodies.len();
        Ok(Request::builder()
            .method(Method::POST)
            .uri("/api/v1/authn")
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json")
            .body(Full::new(self.bodies[i].clone()))?)
    }
}

/// One baseline operation: verify [`PASSWORD`] against `phc`, parsing the PHC string and building
/// the hasher each time, as the server does.
fn argon2_op(phc: &Arc<String>) -> load::InProcessOp {
    let phc = Arc::clone(phc);
    Arc::new(move || -> std::result::Result<(), String> {
        let parsed = PasswordHash::new(&phc).map_err(|e| format!("PHC parse: {e}"))?;
        let hasher = argon2().map_err(|e| e.to_string())?;
        hasher
            .verify_password(PASSWORD.as_bytes(), &parsed)
            .map_err(|e| format!("argon2 verification failed: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_hash_has_the_server_parameters_and_verifies() -> Result<()> {
        let phc = reference_phc()?;
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        let parsed = PasswordHash::new(&phc).map_err(|e| err(e.to_string()))?;
        assert!(argon2()?.verify_password(PASSWORD.as_bytes(), &parsed).is_ok());
        assert!(argon2()?.verify_password(b"wrong", &parsed).is_err());
        Ok(())
    }

    #[test]
    fn signin_requests_rotate_through_users() -> Result<()> {
        let f = SigninRequests::new(&["a@x.io".to_string(), "b@x.io".to_string()])?;
        let users: Vec<String> = (0..3)
            .map(|i| {
                let req = f.build(i, 0)?;
                assert_eq!(req.method(), Method::POST);
                assert_eq!(req.uri().path(), "/api/v1/authn");
                Ok(format!("{:?}", req.body()))
            })
            .collect::<Result<_>>()?;
        assert!(users[0].contains("a@x.io") && users[1].contains("b@x.io") && users[2].contains("a@x.io"));
        Ok(())
    }

    #[test]
    fn password_avoids_login_parts() {
        let lower = PASSWORD.to_lowercase();
        for part in ["signin007", "0123abcd", "example", "com"] {
            assert!(!lower.contains(part), "{part}");
        }
    }

    #[test]
    fn short_argon2_round_counts_verifications() -> Result<()> {
        let phc = Arc::new(reference_phc()?);
        let r = load::in_process_round(
            "t",
            1,
            std::time::Duration::from_millis(10),
            std::time::Duration::from_millis(300),
            &CpuWatch::default(),
            argon2_op(&phc),
        )?;
        assert!(r.in_process && r.requests_ok >= 1 && r.rps > 0.0 && r.p50_ms > 0.0);
        Ok(())
    }
}
