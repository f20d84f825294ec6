//! `memory`: the server's resident memory (RSS) through a day in its life: right after start,
//! idle once setup is over and the server has been quiet, the peak under password sign-in load,
//! the peak under SAML SSO load, and once the load has stopped and the server has been quiet again.
//!
//! RSS is read from `/proc/<pid>/status` (`VmRSS`) every `--sample-ms` while a load runs; the
//! peak is the largest reading, and `VmHWM` (the kernel's own high-water mark) is reported beside
//! it as a check on the sampling. Goals: under 20 MB idle and after the load, under 60 MB at the
//! peak. The sign-in load hashes passwords on every CPU at once (argon2id: 19 MiB each while it
//! runs); the SSO load signs two RSA signatures per response.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Args;
use hyper::header::HeaderValue;
use serde_json::{Value, json};

use crate::common::{AUTHN_THROTTLING_OFF, CommonArgs, DbArgs, Harness, Plan, git_rev};
use crate::cpu::CpuWatch;
use crate::load::{self, RequestFactory};
use crate::report::{Outcome, RoundResult};
use crate::server::{Backend, Server};
use crate::util::{Result, err, random_suffix, unix_now};

#[derive(Debug, Args)]
pub struct MemoryArgs {
    #[command(flatten)]
    pub db: DbArgs,

    /// Users the sign-in load cycles through.
    #[arg(long, default_value_t = 32)]
    pub users: usize,

    /// Seconds without requests before the idle and after-load readings. The server frees its
    /// password-hashing memory after 10 quiet seconds.
    #[arg(long, default_value_t = 13.0)]
    pub quiet_secs: f64,

    /// Milliseconds between RSS readings during a load.
    #[arg(long, default_value_t = 25)]
    pub sample_ms: u64,

    #[command(flatten)]
    pub common: CommonArgs,
}

pub const BENCHMARK: &str = "memory";
const IDLE_GOAL_MB: f64 = 20.0;
const LOAD_GOAL_MB: f64 = 60.0;

pub async fn run(args: &MemoryArgs) -> Vec<(String, Result<Box<dyn Outcome>>)> {
    let harness = match Harness::new(&args.common, AUTHN_THROTTLING_OFF) {
        Ok(h) => h,
        Err(e) => return vec![(BENCHMARK.to_string(), Err(e))],
    };
    if args.users == 0 || args.sample_ms == 0 {
        return vec![(BENCHMARK.to_string(), Err(err("--users and --sample-ms must be at least 1")))];
    }
    let Ok(quiet) = Duration::try_from_secs_f64(args.quiet_secs) else {
        return vec![(BENCHMARK.to_string(), Err(err("--quiet-secs must be a duration")))];
    };
    args.db
        .per_backend(BENCHMARK, async |backend, plan| {
            run_backend(&harness, args, quiet, backend, plan).await.map(|r| Box::new(r) as Box<dyn Outcome>)
        })
        .await
}

/// One reading or one load phase.
struct Phase {
    name: &'static str,
    /// RSS at the reading, or the largest RSS sampled during the load, in bytes.
    rss: u64,
    /// Of that, anonymous memory (the heap, stacks); the rest is mapped files, chiefly the
    /// server's own code.
    anon: u64,
    /// Mean of the samples during a load.
    mean: Option<u64>,
    /// The reading must stay under this many MB.
    goal_mb: f64,
    /// The load's round (throughput, errors), for load phases.
    round: Option<RoundResult>,
}

impl Phase {
    fn met(&self) -> bool {
        mb(self.rss) < self.goal_mb
    }
}

struct MemoryReport {
    backend: Backend,
    phases: Vec<Phase>,
    /// The kernel's high-water mark at the end of the run.
    hwm: Option<u64>,
    threads_after: Option<u64>,
    debug_build: bool,
    bin: PathBuf,
}

async fn run_backend(
    harness: &Harness,
    args: &MemoryArgs,
    quiet: Duration,
    backend: Backend,
    plan: Plan,
) -> Result<MemoryReport> {
    eprintln!("== {BENCHMARK} / {}", backend.name());
    let make_db = |dir: &Path| args.db.make_db(&plan, dir);
    let sample = Duration::from_millis(args.sample_ms);
    let (report, run) = harness
        .with_server(make_db, async |server: &Server| {
            let pid = server.pid();
            let mut phases = Vec::new();
            tokio::time::sleep(Duration::from_millis(500)).await;
            phases.push(reading("after start", pid)?);

            let token = server.create_token(&format!("bench-{}", random_suffix(6)))?;
            let admin = server.api_with_token(&token);
            let logins = crate::signins::create_users(&admin, args.users).await?;
            for login in &logins {
                crate::signins::check_signin(&server.api, login).await?;
            }
            let sso_login = &logins[0];
            let user_id = admin
                .call_ok(hyper::Method::GET, &format!("/api/v1/users/{sso_login}"), None)
                .await?
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| err("the SSO user has no id"))?;
            let embed = crate::saml::create_app(&admin, &user_id, 0, 0).await?;
            let mut cookies = Vec::new();
            for _ in 0..harness.load.concurrency {
                let (sid, _) = crate::saml::first_sso(&server.api, server.addr, sso_login, &embed).await?;
                cookies.push(HeaderValue::from_str(&format!("sid={sid}"))?);
            }
            eprintln!("  {} users, {} SSO sessions; quiet for {quiet:?}", logins.len(), cookies.len());
            tokio::time::sleep(quiet).await;
            phases.push(reading("idle (after setup, quiet)", pid)?);

            let signins: Arc<dyn RequestFactory> = Arc::new(crate::signins::SigninRequests::new(&logins)?);
            phases.push(
                under_load("sign-in load (peak)", "POST /api/v1/authn", signins, server, harness, sample)
                    .await?,
            );
            let sso: Arc<dyn RequestFactory> = Arc::new(crate::saml::EmbedRequests { path: embed, cookies });
            phases.push(under_load("SSO load (peak)", "GET embed link", sso, server, harness, sample).await?);
            tokio::time::sleep(quiet).await;
            phases.push(reading("after the load, quiet", pid)?);
            let hwm = status_field(pid, "VmHWM:");
            let threads_after = status_field(pid, "Threads:");
            Ok((phases, hwm, threads_after))
        })
        .await?;
    let (phases, hwm, threads_after) = report;
    Ok(MemoryReport {
        backend,
        phases,
        hwm,
        threads_after,
        debug_build: crate::server::looks_like_debug_build(&run.bin),
        bin: run.bin,
    })
}

/// One reading of an idle server, held to the idle goal.
fn reading(name: &'static str, pid: u32) -> Result<Phase> {
    let (rss, anon) = rss_bytes(pid).ok_or_else(|| err(format!("cannot read the RSS of pid {pid}")))?;
    eprintln!("  {name}: {:.1} MB", mb(rss));
    Ok(Phase { name, rss, anon, mean: None, goal_mb: IDLE_GOAL_MB, round: None })
}

/// Runs one closed-loop load round of `label` requests while reading the server's RSS `every` so
/// often.
async fn under_load(
    name: &'static str,
    label: &str,
    factory: Arc<dyn RequestFactory>,
    server: &Server,
    harness: &Harness,
    every: Duration,
) -> Result<Phase> {
    let pid = server.pid();
    let watch = CpuWatch { server_pid: Some(pid), db_process: None, db_cmdline: None, server_threads: false };
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Some(sample) = rss_bytes(pid) {
                    samples.push(sample);
                }
                tokio::time::sleep(every).await;
            }
            samples
        })
    };
    let round = load::run(server.addr, label, factory, harness.load, &watch).await;
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.await.map_err(|e| err(format!("RSS sampler failed: {e}")))?;
    let round = round?;
    if round.errors() > 0 {
        return Err(err(format!(
            "{label}: {} failed requests; first: {}",
            round.errors(),
            round.first_error.as_deref().unwrap_or("?")
        )));
    }
    let mean = (!samples.is_empty()).then(|| samples.iter().map(|s| s.0).sum::<u64>() / samples.len() as u64);
    let (rss, anon) = samples.iter().copied().max_by_key(|s| s.0).unwrap_or_default();
    eprintln!("  {name}: {:.1} MB peak, {:.0} req/s", mb(rss), round.rps);
    Ok(Phase { name, rss, anon, mean, goal_mb: LOAD_GOAL_MB, round: Some(round) })
}

/// `(resident, of which anonymous)` in bytes.
fn rss_bytes(pid: u32) -> Option<(u64, u64)> {
    let rss = status_field(pid, "VmRSS:")?;
    let anon = status_field(pid, "RssAnon:")?;
    Some((rss * 1024, anon * 1024))
}

/// A numeric field of `/proc/<pid>/status` (kB fields as kB).
fn status_field(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

impl Outcome for MemoryReport {
    fn title(&self) -> String {
        format!("{BENCHMARK} / {}", self.backend.name())
    }

    fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "  {:<28}{:>10}{:>10}{:>10}{:>10}{:>8}  goal",
            "phase", "RSS MB", "anon MB", "mean MB", "req/s", "errors"
        );
        for p in &self.phases {
            let mean = p.mean.map(|m| format!("{:.1}", mb(m))).unwrap_or_default();
            let rps = p.round.as_ref().map(|r| format!("{:.0}", r.rps)).unwrap_or_default();
            let errors = p.round.as_ref().map(|r| r.errors().to_string()).unwrap_or_default();
            let goal = format!("< {:.0} MB: {}", p.goal_mb, if p.met() { "met" } else { "NOT MET" });
            let _ = writeln!(
                out,
                "  {:<28}{:>10.1}{:>10.1}{:>10}{:>10}{:>8}  {goal}",
                p.name,
                mb(p.rss),
                mb(p.anon),
                mean,
                rps,
                errors
            );
        }
        if let Some(hwm) = self.hwm {
            let _ = writeln!(out, "  kernel high-water mark (VmHWM) over the run: {:.1} MB", mb(hwm * 1024));
        }
        if let Some(t) = self.threads_after {
            let _ = writeln!(out, "  server threads at the end: {t}");
        }
        if self.debug_build {
            let _ = writeln!(out, "  note: the server is a DEBUG build: figures are not representative");
        }
        out
    }

    fn write_json(&self, dir: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{BENCHMARK}-{}.json", self.backend.name()));
        let phases: Vec<Value> = self
            .phases
            .iter()
            .map(|p| {
                json!({
                    "phase": p.name,
                    "rss_bytes": p.rss,
                    "anon_bytes": p.anon,
                    "mean_rss_bytes": p.mean,
                    "goal_mb": p.goal_mb,
                    "met": p.met(),
                    "load": p.round.as_ref().map(RoundResult::to_json),
                })
            })
            .collect();
        let v = json!({
            "benchmark": BENCHMARK,
            "backend": self.backend.name(),
            "when_unix": unix_now(),
            "git_rev": git_rev(),
            "server_bin": self.bin.display().to_string(),
            "phases": phases,
            "vm_hwm_kib": self.hwm,
            "threads_after": self.threads_after,
        });
        std::fs::write(&path, serde_json::to_vec_pretty(&v)?)?;
        Ok(path)
    }

    fn summary(&self) -> String {
        let parts: Vec<String> =
            self.phases.iter().map(|p| format!("{} {:.1} MB", p.name, mb(p.rss))).collect();
        let all_met = self.phases.iter().all(Phase::met);
        format!("{} ({})", parts.join(", "), if all_met { "goals met" } else { "goals NOT MET" })
    }

    fn failures(&self) -> Vec<String> {
        Vec::new()
    }
}
