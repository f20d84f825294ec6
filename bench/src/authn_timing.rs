//! `authn-timing`: can a caller tell from the response time of
//! `POST /api/v1/authn` whether a username exists?
//!
//! Both an unknown username and an existing user with a wrong password must
//! answer 401 `E0000004`, and the server runs one argon2id verification in
//! both cases (against a dummy hash for an unknown user). This benchmark
//! times the two, one request at a time on one keep-alive connection, in
//! adjacent pairs (so a slow drift of the machine lands on both equally)
//! whose inner order is drawn at random by default, and compares the
//! medians with a bootstrap confidence interval.
//!
//! Why not plain a b a b: the server gets a fresh argon2 buffer from the
//! kernel (~4,900 page faults, several ms) on every other verification;
//! with strict alternation that rhythm falls on one kind only and shows up
//! as a large, entirely spurious difference. The server's page faults are
//! recorded per request so this stays visible (`--order alternate` shows it).
//!
//! A second comparison, right password (`SUCCESS`, which writes more to the
//! database) against wrong password, checks that the method can see a
//! difference that is known to exist, and shows its resolution.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::header::{ACCEPT, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode};
use serde_json::{Map, Value, json};

use crate::common::{AUTHN_THROTTLING_OFF, DbArgs, Plan, ServerArgs, git_rev, with_server};
use crate::cpu::{CpuUsage, CpuWatch};
use crate::load::{Sender, connect};
use crate::report::Outcome;
use crate::server::{Api, Backend, looks_like_debug_build};
use crate::signins::PASSWORD;
use crate::stats::{MedianDiff, Summary, bootstrap_median_diff, summarize};
use crate::util::{Result, err, random_suffix, unix_now};

#[derive(Debug, Args)]
pub struct AuthnTimingArgs {
    #[command(flatten)]
    pub db: DbArgs,

    /// Timed requests of each kind in each comparison (at least 200 is
    /// recommended; the run makes 4 x tries timed requests in all).
    #[arg(long, default_value_t = 300)]
    pub tries: usize,

    /// Untimed request pairs before each comparison.
    #[arg(long, default_value_t = 20)]
    pub warmup_tries: usize,

    /// Bootstrap resamples for the 95% confidence intervals.
    #[arg(long, default_value_t = 10_000)]
    pub resamples: usize,

    /// Seed of the bootstrap's generator (fixed, so the same samples always
    /// give the same interval).
    #[arg(long, default_value_t = 0x5eed_1a7c)]
    pub seed: u64,

    /// Request order, always in adjacent a/b pairs so that drift cancels:
    /// `shuffled` (each pair's order drawn from the seeded generator),
    /// `abba` (a b b a a b b a ...) or `alternate` (a b a b ...). With
    /// `alternate` each kind always follows the other, so anything the
    /// server does every other request (it does: see README) lands on one
    /// kind only and looks like a difference between them.
    #[arg(long, value_enum, default_value_t = Order::Shuffled)]
    pub order: Order,

    /// A request slower than this fails the run.
    #[arg(long, default_value_t = 10.0)]
    pub request_timeout_secs: f64,

    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Order {
    Shuffled,
    Abba,
    Alternate,
}

impl Order {
    fn describe(self) -> &'static str {
        match self {
            Order::Shuffled => "adjacent pairs, each pair's order drawn at random (seeded)",
            Order::Abba => "a b b a a b b a ...",
            Order::Alternate => "a b a b ...",
        }
    }

    /// Whether pair `i` runs b first, for `n` pairs.
    fn b_first(self, n: usize, seed: u64) -> Vec<bool> {
        let mut rng = crate::stats::SplitMix64::new(seed ^ 0x0bde_12a5);
        (0..n)
            .map(|i| match self {
                Order::Shuffled => rng.next_u64() & 1 == 1,
                Order::Abba => i % 2 == 1,
                Order::Alternate => false,
            })
            .collect()
    }
}

pub const BENCHMARK: &str = "authn-timing";
/// A request during which the server took at least this many fresh pages
/// from the kernel (4 KiB each: 19 MiB would be 4864) is counted as one
/// that got a fresh argon2 buffer.
const FRESH_BUFFER_FAULTS: u64 = 1000;
/// Below this share of the median, a difference is called negligible even
/// when it is statistically clear.
const NEGLIGIBLE_SHARE: f64 = 0.02;
const LEVEL: f64 = 0.95;

/// What a probe sends and what the server must answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    UnknownUser,
    WrongPassword,
    RightPassword,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::UnknownUser => "unknown user",
            Kind::WrongPassword => "existing user, wrong password",
            Kind::RightPassword => "existing user, right password",
        }
    }
}

struct Probe {
    kind: Kind,
    body: Bytes,
}

impl Probe {
    fn new(kind: Kind, username: &str, password: &str) -> Result<Self> {
        let body = serde_json::to_vec(&json!({"username": username, "password": password}))?;
        Ok(Self { kind, body: Bytes::from(body) })
    }

    /// Whether `status` + `body` is the answer this probe must get.
    fn check(&self, status: StatusCode, body: &[u8]) -> Result<()> {
        let v: Option<Value> = serde_json::from_slice(body).ok();
        let field = |name: &str| v.as_ref().and_then(|v| v.get(name)).and_then(Value::as_str);
        let ok = match self.kind {
            Kind::UnknownUser | Kind::WrongPassword => {
                status == StatusCode::UNAUTHORIZED && field("errorCode") == Some("E0000004")
            }
            Kind::RightPassword => status == StatusCode::OK && field("status") == Some("SUCCESS"),
        };
        if ok {
            return Ok(());
        }
        let expected = match self.kind {
            Kind::RightPassword => "200 with status SUCCESS",
            _ => "401 with errorCode E0000004",
        };
        Err(err(format!(
            "{}: expected {expected}, got {status}: {}",
            self.kind.label(),
            String::from_utf8_lossy(&body[..body.len().min(400)])
        )))
    }
}

/// What else is known about one timed request.
#[derive(Clone, Copy, Debug, Default)]
pub struct SampleInfo {
    pub faults: Option<u64>,
    pub after_same_kind: bool,
}

/// One timed request.
#[derive(Clone, Copy, Debug)]
struct Timed {
    ms: f64,
    info: SampleInfo,
}

/// One comparison: sample `a` against sample `b`, taken interleaved.
#[derive(Clone, Debug)]
pub struct Contrast {
    pub a_label: String,
    pub b_label: String,
    /// Round-trip times in ms, in the order taken.
    pub a: Vec<f64>,
    pub b: Vec<f64>,
    /// Per sample (same order): the server's minor page faults during the
    /// request, and whether the request before it was of the same kind.
    pub a_extra: Vec<SampleInfo>,
    pub b_extra: Vec<SampleInfo>,
    pub a_sum: Summary,
    pub b_sum: Summary,
    /// `median(b) − median(a)`.
    pub diff: MedianDiff,
    /// Median of both samples together; the 2% rule is relative to it.
    pub pooled_median: f64,
    pub cpu: CpuUsage,
    pub wall_secs: f64,
    pub reconnects: u64,
}

impl Contrast {
    fn new(a_kind: Kind, b_kind: Kind, a: Vec<f64>, b: Vec<f64>, resamples: usize, seed: u64) -> Self {
        let (na, nb) = (a.len(), b.len());
        let mut both: Vec<f64> = a.iter().chain(&b).copied().collect();
        both.sort_by(f64::total_cmp);
        Self {
            a_label: a_kind.label().into(),
            b_label: b_kind.label().into(),
            a_sum: summarize(&a),
            b_sum: summarize(&b),
            diff: bootstrap_median_diff(&a, &b, resamples, LEVEL, seed),
            pooled_median: crate::stats::median_sorted(&both),
            a,
            b,
            a_extra: vec![SampleInfo::default(); na],
            b_extra: vec![SampleInfo::default(); nb],
            cpu: CpuUsage::default(),
            wall_secs: 0.0,
            reconnects: 0,
        }
    }

    /// Mean server page faults per request and the share of requests that
    /// took a fresh argon2-sized buffer.
    fn fault_stats(extra: &[SampleInfo]) -> Option<(f64, f64)> {
        let f: Vec<u64> = extra.iter().filter_map(|e| e.faults).collect();
        if f.is_empty() {
            return None;
        }
        let mean = f.iter().sum::<u64>() as f64 / f.len() as f64;
        let fresh = f.iter().filter(|x| **x >= FRESH_BUFFER_FAULTS).count() as f64 / f.len() as f64;
        Some((mean, fresh))
    }

    /// Count and median ms of the samples that `keep` selects.
    fn median_where(
        samples: &[f64],
        extra: &[SampleInfo],
        keep: impl Fn(&SampleInfo) -> bool,
    ) -> (usize, f64) {
        let mut v: Vec<f64> = samples.iter().zip(extra).filter(|(_, e)| keep(e)).map(|(x, _)| *x).collect();
        v.sort_by(f64::total_cmp);
        (v.len(), crate::stats::median_sorted(&v))
    }

    fn after_same(samples: &[f64], extra: &[SampleInfo], same: bool) -> (usize, f64) {
        Self::median_where(samples, extra, |e| e.after_same_kind == same)
    }

    fn with_fresh(samples: &[f64], extra: &[SampleInfo], fresh: bool) -> (usize, f64) {
        Self::median_where(samples, extra, |e| e.faults.is_some_and(|f| (f >= FRESH_BUFFER_FAULTS) == fresh))
    }

    fn diagnostics_json(&self) -> Value {
        let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
        let nm = |(n, m): (usize, f64)| json!({"n": n, "median_ms": r3(m)});
        let side = |samples: &[f64], extra: &[SampleInfo]| {
            let faults = Self::fault_stats(extra);
            json!({
                "after_other_kind": nm(Self::after_same(samples, extra, false)),
                "after_same_kind": nm(Self::after_same(samples, extra, true)),
                "server_minor_faults_mean": faults.map(|f| r3(f.0)),
                "fresh_buffer_share": faults.map(|f| r3(f.1)),
                "fresh_buffer": nm(Self::with_fresh(samples, extra, true)),
                "no_fresh_buffer": nm(Self::with_fresh(samples, extra, false)),
                "server_minor_faults": extra.iter().map(|e| e.faults).collect::<Vec<_>>(),
            })
        };
        json!({
            "fresh_buffer_threshold_faults": FRESH_BUFFER_FAULTS,
            "a": side(&self.a, &self.a_extra),
            "b": side(&self.b, &self.b_extra),
        })
    }

    fn relative(&self) -> f64 {
        if self.pooled_median > 0.0 { self.diff.diff / self.pooled_median } else { 0.0 }
    }

    /// `indistinguishable` when the interval holds 0 or the difference is
    /// under 2% of the median; `distinguishable` otherwise.
    pub fn verdict(&self) -> &'static str {
        if self.diff.contains_zero() || self.relative().abs() < NEGLIGIBLE_SHARE {
            "indistinguishable"
        } else {
            "distinguishable"
        }
    }

    fn to_json(&self) -> Value {
        let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
        let sum = |s: &Summary| {
            json!({
                "n": s.n, "mean_ms": r3(s.mean), "median_ms": r3(s.median), "p10_ms": r3(s.p10),
                "p90_ms": r3(s.p90), "sd_ms": r3(s.sd), "min_ms": r3(s.min), "max_ms": r3(s.max),
            })
        };
        json!({
            "a": {"label": self.a_label, "summary": sum(&self.a_sum),
                  "samples_ms": self.a.iter().map(|x| r3(*x)).collect::<Vec<_>>()},
            "b": {"label": self.b_label, "summary": sum(&self.b_sum),
                  "samples_ms": self.b.iter().map(|x| r3(*x)).collect::<Vec<_>>()},
            "median_diff_b_minus_a_ms": r3(self.diff.diff),
            "median_diff_relative": (self.relative() * 1e4).round() / 1e4,
            "ci_level": self.diff.level,
            "ci_ms": [r3(self.diff.lo), r3(self.diff.hi)],
            "ci_contains_zero": self.diff.contains_zero(),
            "ci_half_width_ms": r3(self.diff.half_width()),
            "bootstrap_resamples": self.diff.resamples,
            "pooled_median_ms": r3(self.pooled_median),
            "verdict": self.verdict(),
            "diagnostics": self.diagnostics_json(),
            "wall_secs": r3(self.wall_secs),
            "reconnects": self.reconnects,
            "cpu_cores": {
                "server": self.cpu.server.map(r3), "db": self.cpu.db.map(r3),
                "client": self.cpu.client.map(r3), "other": self.cpu.other.map(r3),
            },
        })
    }

    fn table(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(
            out,
            "  {:<31}{:>5}{:>9}{:>9}{:>9}{:>9}{:>8}   (ms)",
            "", "n", "mean", "median", "p10", "p90", "sd"
        );
        for (label, s) in [(&self.a_label, &self.a_sum), (&self.b_label, &self.b_sum)] {
            let _ = writeln!(
                out,
                "  {:<31}{:>5}{:>9.2}{:>9.2}{:>9.2}{:>9.2}{:>8.2}",
                label, s.n, s.mean, s.median, s.p10, s.p90, s.sd
            );
        }
        let _ = writeln!(
            out,
            "  median difference ({} - {}) = {:+.3} ms ({:+.1}% of {:.2} ms), {:.0}% CI [{:+.3}, {:+.3}] ms",
            short(&self.b_label),
            short(&self.a_label),
            self.diff.diff,
            self.relative() * 100.0,
            self.pooled_median,
            self.diff.level * 100.0,
            self.diff.lo,
            self.diff.hi
        );
        if let (Some((fa, sa)), Some((fb, sb))) =
            (Self::fault_stats(&self.a_extra), Self::fault_stats(&self.b_extra))
        {
            let show = |(n, m): (usize, f64)| if n > 0 { format!("{m:.2} (n={n})") } else { "-".into() };
            let fresh = |samples: &[f64], extra: &[SampleInfo]| {
                format!(
                    "fresh {} / not {}",
                    show(Self::with_fresh(samples, extra, true)),
                    show(Self::with_fresh(samples, extra, false))
                )
            };
            let _ = writeln!(
                out,
                "  server page faults per request: {} {fa:.0} ({:.0}% fresh buffer), {} {fb:.0} ({:.0}%)",
                short(&self.a_label),
                sa * 100.0,
                short(&self.b_label),
                sb * 100.0
            );
            let _ = writeln!(
                out,
                "  median ms with / without a fresh argon2 buffer (>= {FRESH_BUFFER_FAULTS} faults): \
                 {} {}; {} {}",
                short(&self.a_label),
                fresh(&self.a, &self.a_extra),
                short(&self.b_label),
                fresh(&self.b, &self.b_extra)
            );
        }
        let (na_same, ma_same) = Self::after_same(&self.a, &self.a_extra, true);
        let (nb_same, mb_same) = Self::after_same(&self.b, &self.b_extra, true);
        if na_same > 0 && nb_same > 0 {
            let (_, ma_other) = Self::after_same(&self.a, &self.a_extra, false);
            let (_, mb_other) = Self::after_same(&self.b, &self.b_extra, false);
            let _ = writeln!(
                out,
                "  median ms by previous request: {} after same kind {ma_same:.2} / after other {ma_other:.2}; \
                 {} after same kind {mb_same:.2} / after other {mb_other:.2}",
                short(&self.a_label),
                short(&self.b_label)
            );
        }
        let cpu = |v: Option<f64>| v.map(|c| format!("{c:.2}")).unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "  cores during the comparison: srv {} db {} cli {} oth {}  ({:.0} s{})",
            cpu(self.cpu.server),
            cpu(self.cpu.db),
            cpu(self.cpu.client),
            cpu(self.cpu.other),
            self.wall_secs,
            if self.reconnects > 0 { format!(", {} reconnects", self.reconnects) } else { String::new() }
        );
    }
}

fn short(label: &str) -> &str {
    match label {
        l if l.ends_with("wrong password") => "wrong pw",
        l if l.ends_with("right password") => "right pw",
        "unknown user" => "unknown",
        l => l,
    }
}

/// Both comparisons on one backend.
#[derive(Clone, Debug)]
pub struct TimingReport {
    pub variant: String,
    /// Unknown user (a) against existing user with a wrong password (b).
    pub existence: Contrast,
    /// Wrong password (a) against right password (b): the method's check.
    pub sanity: Contrast,
    pub meta: Map<String, Value>,
    pub notes: Vec<String>,
}

impl TimingReport {
    pub fn sanity_detected(&self) -> bool {
        !self.sanity.diff.contains_zero()
    }
}

impl Outcome for TimingReport {
    fn title(&self) -> String {
        format!("{BENCHMARK} / {}", self.variant)
    }

    fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "does the response time tell whether a username exists? (both answer 401 E0000004)"
        );
        self.existence.table(&mut out);
        let _ = writeln!(
            out,
            "  verdict: {}  (indistinguishable = CI contains 0 or |difference| < {:.0}% of the median)",
            self.existence.verdict().to_uppercase(),
            NEGLIGIBLE_SHARE * 100.0
        );
        let _ =
            writeln!(out, "sanity check: a difference known to exist (SUCCESS writes more to the database)");
        self.sanity.table(&mut out);
        let _ = writeln!(
            out,
            "  {}; resolution of the test: about +/-{:.3} ms (half-width of the 95% CI above)",
            if self.sanity_detected() {
                "the method detects this difference"
            } else {
                "the method does NOT detect this difference"
            },
            self.existence.diff.half_width()
        );
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        out
    }

    fn write_json(&self, dir: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{BENCHMARK}-{}.json", self.variant));
        let v = json!({
            "benchmark": BENCHMARK,
            "variant": self.variant,
            "ok": true,
            "verdict": self.existence.verdict(),
            "existence": self.existence.to_json(),
            "sanity": self.sanity.to_json(),
            "sanity_detected": self.sanity_detected(),
            "resolution_ms": (self.existence.diff.half_width() * 1000.0).round() / 1000.0,
            "meta": Value::Object(self.meta.clone()),
            "notes": self.notes,
        });
        let mut text = serde_json::to_string_pretty(&v)?;
        text.push('\n');
        std::fs::write(&path, text)?;
        Ok(path)
    }

    fn summary(&self) -> String {
        format!(
            "unknown vs wrong password: {:+.3} ms, CI [{:+.3}, {:+.3}] -> {}; sanity right-wrong {:+.3} ms ({})",
            self.existence.diff.diff,
            self.existence.diff.lo,
            self.existence.diff.hi,
            self.existence.verdict(),
            self.sanity.diff.diff,
            if self.sanity_detected() { "detected" } else { "NOT detected" }
        )
    }

    fn failures(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Run the comparisons on each selected backend.
pub async fn run(args: &AuthnTimingArgs) -> Vec<(String, Result<Box<dyn Outcome>>)> {
    let fail = |e| vec![(BENCHMARK.to_string(), Err(e))];
    if args.tries < 2 {
        return fail(err("--tries must be at least 2"));
    }
    let timeout = match Duration::try_from_secs_f64(args.request_timeout_secs) {
        Ok(t) => t,
        Err(e) => return fail(err(format!("--request-timeout-secs: {e}"))),
    };
    let launch = match args.server.launch_options(AUTHN_THROTTLING_OFF) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    args.db
        .per_backend(BENCHMARK, async |backend, plan| {
            run_backend(args, &launch, backend, &plan, timeout).await.map(|r| Box::new(r) as Box<dyn Outcome>)
        })
        .await
}

async fn run_backend(
    args: &AuthnTimingArgs,
    launch: &crate::server::LaunchOptions,
    backend: Backend,
    plan: &Plan,
    timeout: Duration,
) -> Result<TimingReport> {
    let variant = backend.name();
    eprintln!("== {BENCHMARK} / {variant}");
    let make_db = |dir: &Path| args.db.make_db(plan, dir);
    let ((existence, sanity, lockout_before), run) = with_server(launch, make_db, async |server| {
        let token = server.create_token(&format!("bench-{}", random_suffix(6)))?;
        let api = server.api_with_token(&token);
        let lockout_before = disable_lockout(&api).await?;
        // Same length and shape for both usernames and both passwords, so
        // every request carries the same number of bytes.
        let suffix = random_suffix(10);
        let existing = format!("timing-{suffix}@example.com");
        let unknown = format!("nobody-{}@example.com", random_suffix(10));
        api.create_active_user(&existing, PASSWORD).await?;
        let wrong = format!("{}?", &PASSWORD[..PASSWORD.len() - 1]);

        let unknown_user = Probe::new(Kind::UnknownUser, &unknown, &wrong)?;
        let wrong_password = Probe::new(Kind::WrongPassword, &existing, &wrong)?;
        let right_password = Probe::new(Kind::RightPassword, &existing, PASSWORD)?;
        let watch = CpuWatch {
            server_pid: Some(server.pid()),
            db_process: (backend == Backend::Postgres).then(|| "postgres".to_string()),
            db_cmdline: None,
            server_threads: false,
        };
        let mut client = Client::new(server.addr, Some(server.pid()), timeout)?;

        eprintln!("  timing {} pairs: unknown user / existing user with a wrong password", args.tries);
        let mut existence = contrast(&mut client, &watch, &unknown_user, &wrong_password, args).await?;
        existence.reconnects = client.take_reconnects();
        eprintln!("  timing {} pairs: wrong password / right password (sanity check)", args.tries);
        let mut sanity = contrast(&mut client, &watch, &wrong_password, &right_password, args).await?;
        sanity.reconnects = client.take_reconnects();
        Ok((existence, sanity, lockout_before))
    })
    .await?;

    let debug = looks_like_debug_build(&run.bin);
    let mut notes = Vec::new();
    if debug {
        notes.push("server is a DEBUG build: figures are not representative".to_string());
    }
    if args.tries < 200 {
        notes.push(format!("only {} tries per kind; 200 or more are recommended", args.tries));
    }
    if sanity.diff.contains_zero() {
        notes.push(if existence.verdict() == "indistinguishable" {
            "the sanity check saw no difference between right and wrong password either: this run \
             could not resolve the known difference, so its 'indistinguishable' verdict means little \
             (rerun on a quieter machine or with more --tries)"
                .to_string()
        } else {
            format!(
                "the sanity check saw no difference between right and wrong password: the extra \
                 writes of a SUCCESS cost less than this run's resolution (+/-{:.2} ms); the \
                 existence difference above was resolved regardless",
                existence.diff.half_width()
            )
        });
    }
    for c in [&existence, &sanity] {
        if c.cpu.other.is_some_and(|o| o >= 0.25) {
            notes.push(format!(
                "other processes used {:.2} cores during '{}' vs '{}': the machine was busy, \
                 so the spread is wider than on a quiet machine",
                c.cpu.other.unwrap_or(0.0),
                c.a_label,
                c.b_label
            ));
        }
    }
    match &run.stop {
        Ok(s) if !s.clean => notes.push(format!("server did not stop cleanly on SIGTERM: {}", s.status)),
        Err(e) => notes.push(format!("stopping the server failed: {e}")),
        _ => {}
    }
    if let Some(e) = &run.db_cleanup_error {
        notes.push(format!("scratch database was not dropped: {e}"));
    }

    let mut meta = Map::new();
    meta.insert("backend".into(), json!(variant));
    meta.insert("scratch_database".into(), json!(matches!(plan, Plan::Scratch(_))));
    meta.insert("timestamp_unix".into(), json!(unix_now()));
    meta.insert("git_rev".into(), json!(git_rev()));
    meta.insert("cpus".into(), json!(std::thread::available_parallelism().map(usize::from).ok()));
    meta.insert("tries_per_kind".into(), json!(args.tries));
    meta.insert("warmup_pairs".into(), json!(args.warmup_tries));
    meta.insert("bootstrap_resamples".into(), json!(args.resamples));
    meta.insert("bootstrap_seed".into(), json!(args.seed));
    meta.insert("order".into(), json!(args.order.describe()));
    meta.insert(
        "method".into(),
        json!(
            "one keep-alive connection, one request at a time, kinds interleaved (see order); \
               time = request sent to response body read; difference = median(b) - median(a); \
               CI = percentile bootstrap, a and b resampled independently"
        ),
    );
    meta.insert("negligible_share".into(), json!(NEGLIGIBLE_SHARE));
    meta.insert("lockout_max_attempts_before".into(), json!(lockout_before));
    meta.insert("lockout_max_attempts_during".into(), json!(0));
    meta.insert("server_bin".into(), json!(run.bin.display().to_string()));
    meta.insert("server_debug_build".into(), json!(debug));
    meta.insert(
        "server_env".into(),
        json!(launch.env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>()),
    );
    meta.insert("server_settings".into(), json!(crate::common::settings_json(launch)));
    meta.insert("server_log_bytes".into(), json!(run.log_bytes));
    Ok(TimingReport { variant: variant.into(), existence, sanity, meta, notes })
}

/// Set the default password policy's `lockout.maxAttempts` to 0 (never
/// lock), so wrong-password tries stay wrong-password tries instead of
/// turning into locked-user tries after 10. Returns the previous value.
async fn disable_lockout(api: &Api) -> Result<Value> {
    let list = api.call_ok(Method::GET, "/api/v1/policies?type=PASSWORD", None).await?;
    let mut policy = list
        .as_array()
        .and_then(|a| a.first())
        .cloned()
        .ok_or_else(|| err(format!("no PASSWORD policy in {list}")))?;
    let id = policy
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| err("PASSWORD policy has no id"))?;
    let lockout = policy
        .pointer_mut("/settings/password/lockout")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| err("PASSWORD policy has no settings.password.lockout"))?;
    let before = lockout.insert("maxAttempts".into(), json!(0)).unwrap_or(Value::Null);
    let path = format!("/api/v1/policies/{id}");
    api.call_ok(Method::PUT, &path, Some(&policy)).await?;
    let after = api.call_ok(Method::GET, &path, None).await?;
    let now = after.pointer("/settings/password/lockout/maxAttempts").cloned().unwrap_or(Value::Null);
    if now != json!(0) {
        return Err(err(format!("lockout.maxAttempts is {now} after setting it to 0")));
    }
    Ok(before)
}

/// Time `a` and `b` in `args.order`: `warmup_tries` untimed pairs, then
/// `tries` timed pairs. Any unexpected answer fails the run.
async fn contrast(
    client: &mut Client,
    watch: &CpuWatch,
    a: &Probe,
    b: &Probe,
    args: &AuthnTimingArgs,
) -> Result<Contrast> {
    let b_first = args.order.b_first(args.warmup_tries + args.tries, args.seed);
    let pair = |i: usize| if b_first[i] { [b, a] } else { [a, b] };
    for i in 0..args.warmup_tries {
        for p in pair(i) {
            client.time(p).await?;
        }
    }
    let started = Instant::now();
    let cpu0 = watch.sample();
    let (mut ta, mut tb) = (Vec::with_capacity(args.tries), Vec::with_capacity(args.tries));
    for i in 0..args.tries {
        for p in pair(args.warmup_tries + i) {
            let t = client.time(p).await?;
            if p.kind == a.kind {
                ta.push(t);
            } else {
                tb.push(t);
            }
        }
    }
    let cpu = cpu0.usage_until(&watch.sample());
    let ms = |v: &[Timed]| v.iter().map(|t| t.ms).collect::<Vec<_>>();
    let mut c = Contrast::new(a.kind, b.kind, ms(&ta), ms(&tb), args.resamples, args.seed);
    c.a_extra = ta.iter().map(|t| t.info).collect();
    c.b_extra = tb.iter().map(|t| t.info).collect();
    c.cpu = cpu;
    c.wall_secs = started.elapsed().as_secs_f64();
    Ok(c)
}

/// One keep-alive connection, one request at a time.
struct Client {
    addr: SocketAddr,
    /// The server, whose page faults are read around each request.
    server_pid: Option<u32>,
    /// Kind of the previous request sent (warm-up included).
    last: Option<Kind>,
    host: HeaderValue,
    timeout: Duration,
    sender: Option<Sender>,
    opened: u64,
}

impl Client {
    fn new(addr: SocketAddr, server_pid: Option<u32>, timeout: Duration) -> Result<Self> {
        Ok(Self {
            addr,
            server_pid,
            last: None,
            host: HeaderValue::from_str(&addr.to_string())?,
            timeout,
            sender: None,
            opened: 0,
        })
    }

    /// Connections opened beyond the first since the last call.
    fn take_reconnects(&mut self) -> u64 {
        let n = self.opened.saturating_sub(1);
        self.opened = u64::from(self.sender.is_some());
        n
    }

    /// Send one probe, check the answer, return the round trip in ms. The
    /// clock runs from just before the request is written to when the
    /// whole response body has been read; connecting and reading the
    /// server's page-fault counter (before and after) are not timed.
    async fn time(&mut self, probe: &Probe) -> Result<Timed> {
        let mut s = match self.sender.take() {
            Some(s) if !s.is_closed() => s,
            _ => {
                self.opened += 1;
                connect(self.addr).await?
            }
        };
        s.ready().await?;
        let req = Request::builder()
            .method(Method::POST)
            .uri("/api/v1/authn")
            .header(HOST, self.host.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json")
            .body(Full::new(probe.body.clone()))?;
        let faults0 = self.server_pid.and_then(crate::cpu::minor_faults);
        let t0 = Instant::now();
        let exchange = async {
            let resp = s.send_request(req).await?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        };
        let (status, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| err(format!("{}: no answer within {:?}", probe.kind.label(), self.timeout)))??;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        let faults1 = self.server_pid.and_then(crate::cpu::minor_faults);
        probe.check(status, &body)?;
        self.sender = Some(s);
        let info = SampleInfo {
            faults: faults0.zip(faults1).map(|(f0, f1)| f1.saturating_sub(f0)),
            after_same_kind: self.last == Some(probe.kind),
        };
        self.last = Some(probe.kind);
        Ok(Timed { ms, info })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_accept_only_the_expected_answer() -> Result<()> {
        let unknown = Probe::new(Kind::UnknownUser, "u@x.io", "pw")?;
        let e4 = br#"{"errorCode":"E0000004","errorSummary":"Authentication failed"}"#;
        assert!(unknown.check(StatusCode::UNAUTHORIZED, e4).is_ok());
        assert!(unknown.check(StatusCode::TOO_MANY_REQUESTS, br#"{"errorCode":"E0000047"}"#).is_err());
        assert!(unknown.check(StatusCode::UNAUTHORIZED, br#"{"errorCode":"E0000069"}"#).is_err());
        assert!(unknown.check(StatusCode::OK, br#"{"status":"LOCKED_OUT"}"#).is_err());
        let right = Probe::new(Kind::RightPassword, "u@x.io", "pw")?;
        assert!(right.check(StatusCode::OK, br#"{"status":"SUCCESS","sessionToken":"t"}"#).is_ok());
        assert!(right.check(StatusCode::OK, br#"{"status":"MFA_REQUIRED"}"#).is_err());
        Ok(())
    }

    #[test]
    fn verdict_follows_the_ci_and_the_two_percent_rule() {
        let a: Vec<f64> = (0..200).map(|i| 30.0 + f64::from(i % 10) / 10.0).collect();
        let same = Contrast::new(Kind::UnknownUser, Kind::WrongPassword, a.clone(), a.clone(), 1000, 1);
        assert_eq!(same.verdict(), "indistinguishable");
        // +0.3 ms on ~30 ms: clearly resolved, but under 2%: negligible.
        let small: Vec<f64> = a.iter().map(|x| x + 0.3).collect();
        let c = Contrast::new(Kind::UnknownUser, Kind::WrongPassword, a.clone(), small, 1000, 1);
        assert!(!c.diff.contains_zero());
        assert_eq!(c.verdict(), "indistinguishable");
        let big: Vec<f64> = a.iter().map(|x| x + 3.0).collect();
        let c = Contrast::new(Kind::UnknownUser, Kind::WrongPassword, a, big, 1000, 1);
        assert_eq!(c.verdict(), "distinguishable");
        assert!((c.diff.diff - 3.0).abs() < 1e-9);
    }

    #[test]
    fn orders_keep_pairs_and_balance() {
        assert_eq!(Order::Alternate.b_first(4, 1), vec![false; 4]);
        assert_eq!(Order::Abba.b_first(4, 1), vec![false, true, false, true]);
        let s = Order::Shuffled.b_first(1000, 7);
        assert_eq!(s, Order::Shuffled.b_first(1000, 7), "seeded");
        let firsts = s.iter().filter(|x| **x).count();
        assert!((400..600).contains(&firsts), "{firsts}");
    }

    #[test]
    fn wrong_password_has_the_right_passwords_length() {
        let wrong = format!("{}?", &PASSWORD[..PASSWORD.len() - 1]);
        assert_eq!(wrong.len(), PASSWORD.len());
        assert_ne!(wrong, PASSWORD);
    }
}
