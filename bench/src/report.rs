//! Results: per-round figures, baseline-vs-target comparisons, the console
//! table and the JSON files under `bench/results/`.
//!
//! Nothing here knows about HTTP: a [`RoundResult`] can equally come from an
//! in-process measurement (e.g. a raw argon2 or RSA rate used as baseline).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::cpu::{CpuUsage, ThreadGroup};
use crate::util::Result;

/// One measured round of one side of a comparison.
#[derive(Clone, Debug, Default)]
pub struct RoundResult {
    pub label: String,
    pub round: usize,
    /// Position in the run's overall order (0-based), across both sides.
    pub slot: usize,
    /// Successful operations completed in the measured window.
    pub requests_ok: u64,
    /// Completed operations per second in the measured window (errors
    /// included, so a server failing fast cannot look fast without also
    /// being reported as failing).
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Non-2xx responses by status code, over the whole run incl. warm-up.
    pub non_2xx: BTreeMap<u16, u64>,
    pub transport_errors: u64,
    pub timeouts: u64,
    /// Extra connections that had to be opened (keep-alive not honoured).
    pub reconnects: u64,
    pub response_body_bytes: Option<usize>,
    /// Cores used during the measured window by the server, its database
    /// processes, this harness, and everything else on the machine.
    pub cpu: CpuUsage,
    /// The server's CPU by thread name during the measured window (empty
    /// unless the round's `CpuWatch` asked for it).
    pub server_threads: Vec<ThreadGroup>,
    /// Measured inside this harness (e.g. raw argon2 verifications), not
    /// through the server: CPU cost per operation then comes from the
    /// harness's own CPU (`cpu.client`), and `cpu.server` is a check that
    /// the server sat idle meanwhile.
    pub in_process: bool,
    pub first_error: Option<String>,
}

impl RoundResult {
    /// CPU microseconds the server (plus its database processes, when they
    /// are separate) spent per completed request in this round; for an
    /// in-process round, the harness's CPU per operation instead.
    pub fn server_cpu_us_per_request(&self) -> Option<f64> {
        let cores =
            if self.in_process { self.cpu.client? } else { self.cpu.server? + self.cpu.db.unwrap_or(0.0) };
        (self.rps > 0.0).then(|| cores / self.rps * 1e6)
    }

    /// Minor page faults per completed request: the server's, or for an
    /// in-process round the harness's.
    pub fn faults_per_request(&self) -> Option<f64> {
        let rate =
            if self.in_process { self.cpu.client_faults_per_sec? } else { self.cpu.server_faults_per_sec? };
        (self.rps > 0.0).then(|| rate / self.rps)
    }

    pub fn errors(&self) -> u64 {
        self.non_2xx.values().sum::<u64>() + self.transport_errors + self.timeouts
    }

    pub fn to_json(&self) -> Value {
        let statuses: serde_json::Map<String, Value> =
            self.non_2xx.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        json!({
            "round": self.round,
            "slot": self.slot,
            "server_cpu_us_per_request": self.server_cpu_us_per_request().map(round2),
            "minor_faults_per_request": self.faults_per_request().map(round2),
            "requests_ok": self.requests_ok,
            "rps": round2(self.rps),
            "p50_ms": round3(self.p50_ms),
            "p99_ms": round3(self.p99_ms),
            "max_ms": round3(self.max_ms),
            "errors": self.errors(),
            "non_2xx": statuses,
            "transport_errors": self.transport_errors,
            "timeouts": self.timeouts,
            "reconnects": self.reconnects,
            "response_body_bytes": self.response_body_bytes,
            "cpu_cores": cpu_json(&self.cpu),
            "cpu_per_request_basis": if self.in_process { "harness (in-process)" } else { "server + db" },
            "server_threads": self.server_threads.iter().map(|g| json!({
                "name": g.name,
                "cores": round3(g.cores),
                "per_thread_cores": g.per_thread.iter().map(|c| round3(*c)).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "first_error": self.first_error,
        })
    }
}

/// All rounds of one side (baseline or target).
#[derive(Clone, Debug, Default)]
pub struct Series {
    pub label: String,
    pub rounds: Vec<RoundResult>,
}

impl Series {
    pub fn new(label: impl Into<String>) -> Self {
        Self { label: label.into(), rounds: Vec::new() }
    }

    fn med(&self, f: impl Fn(&RoundResult) -> f64) -> f64 {
        median(self.rounds.iter().map(f).collect())
    }

    pub fn med_opt(&self, f: impl Fn(&RoundResult) -> Option<f64>) -> Option<f64> {
        let v: Vec<f64> = self.rounds.iter().filter_map(f).collect();
        if v.is_empty() { None } else { Some(median(v)) }
    }

    /// Per-field median of the rounds' CPU usage.
    pub fn median_cpu(&self) -> CpuUsage {
        CpuUsage {
            server: self.med_opt(|r| r.cpu.server),
            db: self.med_opt(|r| r.cpu.db),
            client: self.med_opt(|r| r.cpu.client),
            other: self.med_opt(|r| r.cpu.other),
            server_faults_per_sec: self.med_opt(|r| r.cpu.server_faults_per_sec),
            client_faults_per_sec: self.med_opt(|r| r.cpu.client_faults_per_sec),
        }
    }

    /// Median over rounds of server (+ database) CPU µs per request.
    pub fn median_cpu_us(&self) -> Option<f64> {
        self.med_opt(RoundResult::server_cpu_us_per_request)
    }

    pub fn median_rps(&self) -> f64 {
        self.med(|r| r.rps)
    }

    /// (max - min) / median of per-round rps: how noisy this side was.
    pub fn spread(&self) -> f64 {
        let rps: Vec<f64> = self.rounds.iter().map(|r| r.rps).collect();
        let (lo, hi) =
            rps.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
        let m = self.median_rps();
        if rps.is_empty() || m <= 0.0 { 0.0 } else { (hi - lo) / m }
    }

    pub fn errors(&self) -> u64 {
        self.rounds.iter().map(RoundResult::errors).sum()
    }

    pub fn reconnects(&self) -> u64 {
        self.rounds.iter().map(|r| r.reconnects).sum()
    }

    /// Whether this side was measured in-process rather than over HTTP.
    pub fn in_process(&self) -> bool {
        !self.rounds.is_empty() && self.rounds.iter().all(|r| r.in_process)
    }

    /// The round whose rps is the median one (the lower middle for an even
    /// count), for showing one representative round's details.
    pub fn median_round(&self) -> Option<&RoundResult> {
        let mut v: Vec<&RoundResult> = self.rounds.iter().collect();
        v.sort_by(|a, b| a.rps.total_cmp(&b.rps));
        v.get(v.len().saturating_sub(1) / 2).copied()
    }

    pub fn summary_json(&self) -> Value {
        json!({
            "label": self.label,
            "in_process": self.in_process(),
            "median_rps": round2(self.median_rps()),
            "spread": round3(self.spread()),
            "median_p50_ms": round3(self.med(|r| r.p50_ms)),
            "median_p99_ms": round3(self.med(|r| r.p99_ms)),
            "median_cpu_cores": cpu_json(&self.median_cpu()),
            "median_server_cpu_us_per_request": self.median_cpu_us().map(round2),
            "median_minor_faults_per_request": self.med_opt(RoundResult::faults_per_request).map(round2),
            "errors": self.errors(),
            "reconnects": self.reconnects(),
            "rounds": self.rounds.iter().map(RoundResult::to_json).collect::<Vec<_>>(),
        })
    }
}

/// A baseline and a target measured in interleaved rounds on one setup.
#[derive(Clone, Debug)]
pub struct Comparison {
    /// Benchmark name, e.g. `users`.
    pub benchmark: String,
    /// Setup variant, e.g. the storage backend.
    pub variant: String,
    pub baseline: Series,
    pub target: Series,
    /// Run configuration and environment, copied verbatim into the JSON.
    pub meta: serde_json::Map<String, Value>,
    /// Observations worth a human's attention (printed and saved).
    pub notes: Vec<String>,
    /// A ratio the target should reach (e.g. 0.85 of the raw argon2 rate);
    /// reported as met / not met, never a failure by itself.
    pub ratio_goal: Option<f64>,
}

impl Comparison {
    /// target median rps / baseline median rps.
    pub fn ratio(&self) -> f64 {
        let b = self.baseline.median_rps();
        if b > 0.0 { self.target.median_rps() / b } else { 0.0 }
    }

    pub fn errors(&self) -> u64 {
        self.baseline.errors() + self.target.errors()
    }

    /// Server (+ database) CPU per target request over the same per baseline
    /// request: a cost ratio that the load generator sharing the machine
    /// distorts less than the throughput ratio does.
    pub fn cpu_cost_ratio(&self) -> Option<f64> {
        let b = self.baseline.median_cpu_us()?;
        let t = self.target.median_cpu_us()?;
        (b > 0.0).then(|| t / b)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "benchmark": self.benchmark,
            "variant": self.variant,
            "ok": self.errors() == 0,
            "errors": self.errors(),
            "ratio_target_over_baseline": round3(self.ratio()),
            "ratio_goal": self.ratio_goal,
            "ratio_goal_met": self.ratio_goal.map(|g| self.ratio() >= g),
            "cpu_cost_target_over_baseline": self.cpu_cost_ratio().map(round3),
            "baseline": self.baseline.summary_json(),
            "target": self.target.summary_json(),
            "meta": Value::Object(self.meta.clone()),
            "notes": self.notes,
        })
    }

    /// Write `<dir>/<benchmark>-<variant>.json`; returns the path written.
    pub fn write_json(&self, dir: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{}-{}.json", self.benchmark, self.variant));
        let mut text = serde_json::to_string_pretty(&self.to_json())?;
        text.push('\n');
        std::fs::write(&path, text)?;
        Ok(path)
    }

    /// The compact console table for this comparison.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<9}{:<25}{:>10}{:>8}{:>9}{:>9}  {:>6}{:>6}{:>6}{:>6}{:>9}{:>8}",
            "",
            "endpoint",
            "rps(med)",
            "spread",
            "p50 ms",
            "p99 ms",
            "srv",
            "db",
            "cli",
            "oth",
            "cpu us/r",
            "errors"
        );
        for (role, s) in [("baseline", &self.baseline), ("target", &self.target)] {
            let cpu = |v: Option<f64>| v.map(|c| format!("{c:.2}")).unwrap_or_else(|| "-".into());
            let c = s.median_cpu();
            let _ = writeln!(
                out,
                "{:<9}{:<25}{:>10.0}{:>7.1}%{:>9.2}{:>9.2}  {:>6}{:>6}{:>6}{:>6}{:>9}{:>8}",
                role,
                s.label,
                s.median_rps(),
                s.spread() * 100.0,
                s.med(|r| r.p50_ms),
                s.med(|r| r.p99_ms),
                cpu(c.server),
                cpu(c.db),
                cpu(c.client),
                cpu(c.other),
                s.median_cpu_us().map(|u| format!("{u:.1}")).unwrap_or_else(|| "-".into()),
                s.errors(),
            );
        }
        let _ = writeln!(
            out,
            "(srv/db/cli/oth: median cores used by server, database processes, load generator, rest of \
             machine; cpu us/r: (srv + db) CPU microseconds per request{})",
            if self.baseline.in_process() || self.target.in_process() {
                "; for an in-process side: cli is the harness doing the work, cpu us/r its CPU per \
                 operation, and srv should be ~0 (idle server)"
            } else {
                ""
            }
        );
        let ratio = self.ratio();
        let _ = write!(out, "ratio target/baseline = {ratio:.3}");
        if ratio > 0.0 {
            let _ = write!(out, "  (one target request costs ~{:.1}x a baseline request)", 1.0 / ratio);
        }
        let _ = writeln!(out);
        if let Some(goal) = self.ratio_goal {
            let met = if ratio >= goal { "met" } else { "NOT MET" };
            let _ = writeln!(out, "goal: ratio >= {goal:.2} ... {met}");
        }
        if let Some(c) = self.cpu_cost_ratio() {
            let _ = writeln!(out, "server CPU per request, target/baseline = {c:.2}x");
        }
        if let (Some(b), Some(t)) = (
            self.baseline.med_opt(RoundResult::faults_per_request),
            self.target.med_opt(RoundResult::faults_per_request),
        ) {
            let _ = writeln!(
                out,
                "minor page faults per request: baseline {b:.1}, target {t:.1} (server's; the harness's \
                 for an in-process side)"
            );
        }
        if let Some(r) = self.target.median_round().filter(|r| !r.server_threads.is_empty()) {
            let groups: Vec<String> = r
                .server_threads
                .iter()
                .filter(|g| g.cores >= 0.005)
                .map(|g| {
                    let busiest: Vec<String> =
                        g.per_thread.iter().take(4).map(|c| format!("{c:.2}")).collect();
                    let more = if g.per_thread.len() > 4 { " ..." } else { "" };
                    format!(
                        "{} {:.2} ({} thr: {}{more})",
                        g.name,
                        g.cores,
                        g.per_thread.len(),
                        busiest.join(" ")
                    )
                })
                .collect();
            let _ = writeln!(out, "server threads, target round {}: {}", r.round + 1, groups.join("; "));
        }
        let mut order: Vec<&RoundResult> =
            self.baseline.rounds.iter().chain(self.target.rounds.iter()).collect();
        order.sort_by_key(|r| r.slot);
        let per_round: Vec<String> = order
            .iter()
            .map(|r| {
                let tag = if r.label == self.baseline.label { "B" } else { "T" };
                format!("{tag}{}={:.0}", r.round + 1, r.rps)
            })
            .collect();
        let _ = writeln!(out, "rounds (rps): {}", per_round.join(" "));
        let errors = self.errors();
        if errors > 0 {
            let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
            for r in self.baseline.rounds.iter().chain(&self.target.rounds) {
                for (code, n) in &r.non_2xx {
                    *by_status.entry(format!("HTTP {code}")).or_default() += n;
                }
                *by_status.entry("transport".into()).or_default() += r.transport_errors;
                *by_status.entry("timeout".into()).or_default() += r.timeouts;
            }
            let kinds: Vec<String> =
                by_status.iter().filter(|(_, n)| **n > 0).map(|(k, n)| format!("{k} x{n}")).collect();
            let _ = writeln!(
                out,
                "!!! {errors} FAILED REQUESTS ({}) - these figures are NOT valid",
                kinds.join(", ")
            );
        }
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        out
    }
}

/// What a benchmark hands back for one setup (backend): printed, saved and
/// judged by `main` the same way whatever the benchmark measured.
pub trait Outcome {
    /// `benchmark / variant`.
    fn title(&self) -> String;
    /// The console table, notes included.
    fn table(&self) -> String;
    /// Save the results as JSON under `dir`; returns the file written.
    fn write_json(&self, dir: &Path) -> Result<PathBuf>;
    /// One line for the end-of-run summary.
    fn summary(&self) -> String;
    /// Reasons the figures are not valid (empty when they are).
    fn failures(&self) -> Vec<String>;
}

impl Outcome for Comparison {
    fn title(&self) -> String {
        format!("{} / {}", self.benchmark, self.variant)
    }

    fn table(&self) -> String {
        Comparison::table(self)
    }

    fn write_json(&self, dir: &Path) -> Result<PathBuf> {
        Comparison::write_json(self, dir)
    }

    fn summary(&self) -> String {
        format!(
            "target/baseline = {:.3} ({:.1} / {:.1} per s){}",
            self.ratio(),
            self.target.median_rps(),
            self.baseline.median_rps(),
            if self.errors() > 0 { "  [ERRORS]" } else { "" }
        )
    }

    fn failures(&self) -> Vec<String> {
        if self.errors() == 0 {
            return Vec::new();
        }
        vec![format!(
            "{} failed requests (baseline {}, target {}); figures are NOT valid",
            self.errors(),
            self.baseline.errors(),
            self.target.errors()
        )]
    }
}

/// Median of a sample (mean of the two middle values for even counts).
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn cpu_json(c: &CpuUsage) -> Value {
    json!({
        "server": c.server.map(round3),
        "db": c.db.map(round3),
        "client": c.client.map(round3),
        "other": c.other.map(round3),
        "server_minor_faults_per_sec": c.server_faults_per_sec.map(round2),
        "client_minor_faults_per_sec": c.client_faults_per_sec.map(round2),
    })
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Loud banner for failed runs, on stderr.
pub fn shout(lines: &[String]) {
    let bar = "!".repeat(78);
    eprintln!("\n{bar}");
    for l in lines {
        eprintln!("!!! {l}");
    }
    eprintln!("{bar}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(label: &str, round: usize, rps: f64) -> RoundResult {
        RoundResult { label: label.into(), round, rps, ..RoundResult::default() }
    }

    #[test]
    fn median_odd_even() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(vec![]), 0.0);
    }

    #[test]
    fn ratio_uses_medians_and_errors_count() {
        let mut b = Series::new("B");
        b.rounds = vec![round("B", 0, 100.0), round("B", 1, 1000.0), round("B", 2, 110.0)];
        let mut t = Series::new("T");
        t.rounds = vec![round("T", 0, 50.0), round("T", 1, 55.0), round("T", 2, 60.0)];
        t.rounds[1].non_2xx.insert(500, 2);
        t.rounds[2].timeouts = 1;
        let c = Comparison {
            benchmark: "x".into(),
            variant: "y".into(),
            baseline: b,
            target: t,
            meta: serde_json::Map::new(),
            notes: vec![],
            ratio_goal: None,
        };
        assert!((c.ratio() - 0.5).abs() < 1e-9);
        assert_eq!(c.errors(), 3);
        assert_eq!(c.to_json()["ok"], json!(false));
        assert!(c.table().contains("ratio target/baseline = 0.500"));
    }
}
