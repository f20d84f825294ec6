//! Options and plumbing shared by all benchmark subcommands: load shape,
//! which server binary to run, and the start-server / measure / stop-server /
//! drop-database sequence with its bookkeeping.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde_json::{Map, Value, json};

use crate::load::LoadConfig;
use crate::report::{Comparison, RoundResult, Series};
use crate::server::{
    Backend, Database, LaunchOptions, ScratchDir, Server, StopReport, locate_binary, looks_like_debug_build,
    workspace_root,
};
use crate::util::{Result, err, unix_now};

#[derive(Clone, Debug, Args)]
pub struct CommonArgs {
    /// Concurrent keep-alive connections, each with one request in flight.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,

    /// Measured seconds per round (each side runs `--rounds` rounds).
    #[arg(long, default_value_t = 10.0)]
    pub duration_secs: f64,

    /// Unmeasured seconds at the start of every round (connections open,
    /// caches and the allocator settle).
    #[arg(long, default_value_t = 1.0)]
    pub warmup_secs: f64,

    /// Rounds per side; baseline and target alternate (AB BA AB ...).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,

    /// Tokio worker threads for the load generator. The server shares the
    /// machine, so every core the client takes is one the server lacks.
    #[arg(long, default_value_t = 1)]
    pub client_threads: usize,

    /// A request slower than this counts as an error (timeout).
    #[arg(long, default_value_t = 10.0)]
    pub request_timeout_secs: f64,

    #[command(flatten)]
    pub server: ServerArgs,
}

impl CommonArgs {
    /// Directory for JSON results, or `None` with `--no-write`.
    pub fn results_dir(&self) -> Option<PathBuf> {
        self.server.results_dir()
    }
}

/// Which server binary to run, how, and where results go: shared by every
/// benchmark, including the ones that are not closed-loop load runs.
#[derive(Clone, Debug, Args)]
pub struct ServerArgs {
    /// Server binary [default: target/release/latchkey, else target/debug/latchkey].
    #[arg(long, env = "LATCHKEY_BIN")]
    pub server_bin: Option<PathBuf>,

    /// Extra environment for the server process, e.g. `--server-env LATCHKEY_LOG=warn`.
    #[arg(long = "server-env", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub server_env: Vec<(String, String)>,

    /// A server setting for its `--config` file, as TOML: KEY=VALUE with the
    /// value as TOML writes it, e.g. `--server-setting authn_rate_limit_per_ip=20`
    /// or `--server-setting 'log_format="json"'` (repeatable).
    #[arg(long = "server-setting", value_name = "KEY=TOML", value_parser = parse_key_value)]
    pub server_settings: Vec<(String, String)>,

    /// Seconds to wait for `GET /readyz` to return 200.
    #[arg(long, default_value_t = 60.0)]
    pub ready_timeout_secs: f64,

    /// Where JSON results go [default: bench/results].
    #[arg(long)]
    pub results_dir: Option<PathBuf>,

    /// Do not write JSON results.
    #[arg(long)]
    pub no_write: bool,
}

impl ServerArgs {
    /// Directory for JSON results, or `None` with `--no-write`.
    pub fn results_dir(&self) -> Option<PathBuf> {
        if self.no_write {
            return None;
        }
        Some(self.results_dir.clone().unwrap_or_else(|| workspace_root().join("bench").join("results")))
    }

    /// Locate the binary and validate the options. `setting_defaults` go to
    /// the server's config file unless `--server-setting` gives the same key.
    pub fn launch_options(&self, setting_defaults: &[(&str, &str)]) -> Result<LaunchOptions> {
        let bin = locate_binary(self.server_bin.as_deref())?;
        let mut settings: Vec<(String, String)> = setting_defaults
            .iter()
            .filter(|(k, _)| !self.server_settings.iter().any(|(given, _)| given == k))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        settings.extend(self.server_settings.iter().cloned());
        Ok(LaunchOptions {
            bin,
            env: self.server_env.clone(),
            settings,
            ready_timeout: secs("ready-timeout-secs", self.ready_timeout_secs)?,
        })
    }
}

/// Server settings that turn primary-authentication throttling off (`0` =
/// unlimited). The defaults (4 tries per username and 20 per address per
/// second) would answer most benchmark requests with 429.
pub const AUTHN_THROTTLING_OFF: &[(&str, &str)] =
    &[("authn_rate_limit_per_username", "0"), ("authn_rate_limit_per_ip", "0")];

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    Sqlite,
    Postgres,
    Both,
}

/// Which database(s) a benchmark runs its server on.
#[derive(Clone, Debug, Args)]
pub struct DbArgs {
    /// Storage backend(s) to run the server on.
    #[arg(long, value_enum, default_value_t = BackendChoice::Sqlite)]
    pub backend: BackendChoice,

    /// Use this existing database instead of a scratch one (the backend is
    /// taken from its scheme; it is not dropped afterwards, and gains
    /// benchmark users and tokens). Useful where `psql` is not installed.
    #[arg(long, conflicts_with = "backend")]
    pub database_url: Option<String>,

    /// Admin URL of the PostgreSQL server on which scratch databases are
    /// created (`CREATE DATABASE bench_<random>` via `psql`) and dropped.
    #[arg(
        long,
        env = "LATCHKEY_BENCH_PG_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub pg_url: String,
}

/// Where one backend's server gets its database.
#[derive(Clone, Debug)]
pub enum Plan {
    Scratch(Backend),
    Existing(String),
}

impl DbArgs {
    /// Runs `run` once per selected backend, in order, labelling each result
    /// `{benchmark}/{backend}`; a selection that cannot be planned is one
    /// error labelled `benchmark`.
    pub async fn per_backend<T>(
        &self,
        benchmark: &str,
        mut run: impl AsyncFnMut(Backend, Plan) -> Result<T>,
    ) -> Vec<(String, Result<T>)> {
        let plans = match self.plans() {
            Ok(p) => p,
            Err(e) => return vec![(benchmark.to_string(), Err(e))],
        };
        let mut out = Vec::new();
        for (backend, plan) in plans {
            let result = run(backend, plan).await;
            out.push((format!("{benchmark}/{}", backend.name()), result));
        }
        out
    }

    /// One plan per selected backend, in run order.
    pub fn plans(&self) -> Result<Vec<(Backend, Plan)>> {
        Ok(match (&self.database_url, self.backend) {
            (Some(url), _) => vec![(Backend::from_url(url)?, Plan::Existing(url.clone()))],
            (None, BackendChoice::Sqlite) => vec![(Backend::Sqlite, Plan::Scratch(Backend::Sqlite))],
            (None, BackendChoice::Postgres) => vec![(Backend::Postgres, Plan::Scratch(Backend::Postgres))],
            (None, BackendChoice::Both) => vec![
                (Backend::Sqlite, Plan::Scratch(Backend::Sqlite)),
                (Backend::Postgres, Plan::Scratch(Backend::Postgres)),
            ],
        })
    }

    /// Create (or adopt) the database for `plan`; `dir` is the run's scratch directory.
    pub fn make_db(&self, plan: &Plan, dir: &Path) -> Result<Database> {
        match plan {
            Plan::Existing(url) => Database::existing(url),
            Plan::Scratch(Backend::Sqlite) => Ok(Database::sqlite_in(dir)),
            Plan::Scratch(Backend::Postgres) => Database::create_postgres(&self.pg_url),
        }
    }
}

fn parse_key_value(s: &str) -> std::result::Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

fn secs(name: &str, v: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(v).map_err(|e| err(format!("--{name} {v}: {e}")))
}

/// What happened to the server around a measurement.
#[derive(Debug)]
pub struct ServerRun {
    pub bin: PathBuf,
    pub startup_secs: f64,
    pub stop: std::result::Result<StopReport, String>,
    pub log_bytes: u64,
    /// The log (stdout/stderr redirected to a file) contains ANSI colours.
    pub log_has_ansi: bool,
    pub db_cleanup_error: Option<String>,
}

/// Validated options plus the located server binary.
#[derive(Clone, Debug)]
pub struct Harness {
    pub load: LoadConfig,
    pub rounds: usize,
    pub client_threads: usize,
    pub launch: LaunchOptions,
}

impl Harness {
    /// `setting_defaults`: server settings the benchmark needs (see
    /// [`ServerArgs::launch_options`]).
    pub fn new(a: &CommonArgs, setting_defaults: &[(&str, &str)]) -> Result<Self> {
        if a.concurrency == 0 || a.rounds == 0 || a.client_threads == 0 {
            return Err(err("--concurrency, --rounds and --client-threads must be at least 1"));
        }
        if a.duration_secs <= 0.0 {
            return Err(err("--duration-secs must be positive"));
        }
        Ok(Self {
            load: LoadConfig {
                concurrency: a.concurrency,
                warmup: secs("warmup-secs", a.warmup_secs)?,
                duration: secs("duration-secs", a.duration_secs)?,
                request_timeout: secs("request-timeout-secs", a.request_timeout_secs)?,
            },
            rounds: a.rounds,
            client_threads: a.client_threads,
            launch: a.server.launch_options(setting_defaults)?,
        })
    }

    /// One progress line per round on stderr.
    pub fn progress(&self, variant: &str, r: &RoundResult) {
        let errors = r.errors();
        eprintln!(
            "  [{variant}] round {} {:<28} {:>9.0} rps  p50 {:>7.2} ms  p99 {:>7.2} ms{}",
            r.round + 1,
            r.label,
            r.rps,
            r.p50_ms,
            r.p99_ms,
            if errors > 0 {
                format!("  ERRORS {errors}: {}", r.first_error.as_deref().unwrap_or("?"))
            } else {
                String::new()
            }
        );
    }

    /// Measures `baseline` and `target` against the server at `addr` in the interleaved round
    /// schedule ([`crate::load::schedule`]), so slow drift on the machine hits both sides alike.
    pub async fn interleaved_rounds(
        &self,
        variant: &str,
        addr: std::net::SocketAddr,
        labels: [&str; 2],
        baseline: &std::sync::Arc<dyn crate::load::RequestFactory>,
        target: &std::sync::Arc<dyn crate::load::RequestFactory>,
        watch: &crate::cpu::CpuWatch,
    ) -> Result<(Series, Series)> {
        let mut b = Series::new(labels[0]);
        let mut t = Series::new(labels[1]);
        for (slot, (round, side)) in crate::load::schedule(self.rounds).into_iter().enumerate() {
            let (series, factory) = match side {
                crate::load::Side::Baseline => (&mut b, baseline),
                crate::load::Side::Target => (&mut t, target),
            };
            let mut r =
                crate::load::run(addr, &series.label, std::sync::Arc::clone(factory), self.load, watch)
                    .await?;
            r.round = round;
            r.slot = slot;
            self.progress(variant, &r);
            series.rounds.push(r);
        }
        Ok((b, t))
    }

    /// Rounds of an in-process baseline (`threads` threads running `op`) alternating with rounds
    /// of `target` against the server; a baseline round starts only after the previous target
    /// round's requests are answered, so the two never compete for the CPU.
    #[allow(clippy::too_many_arguments, reason = "one call site per benchmark, each argument named there")]
    pub async fn in_process_rounds(
        &self,
        variant: &str,
        addr: std::net::SocketAddr,
        labels: [&'static str; 2],
        op: &crate::load::InProcessOp,
        threads: usize,
        target: &std::sync::Arc<dyn crate::load::RequestFactory>,
        watch: &crate::cpu::CpuWatch,
    ) -> Result<(Series, Series)> {
        self.in_process_rounds_prepared(variant, addr, labels, op, threads, target, watch, &mut async |_| {
            Ok(())
        })
        .await
    }

    /// [`Self::in_process_rounds`], calling `prepare(previous_target_ok_per_s)` before each target round
    /// (for a target whose requests use up something, such as single-use authorization codes;
    /// the argument is 0 before the first round).
    #[allow(clippy::too_many_arguments)]
    pub async fn in_process_rounds_prepared(
        &self,
        variant: &str,
        addr: std::net::SocketAddr,
        labels: [&'static str; 2],
        op: &crate::load::InProcessOp,
        threads: usize,
        target: &std::sync::Arc<dyn crate::load::RequestFactory>,
        watch: &crate::cpu::CpuWatch,
        prepare: &mut impl AsyncFnMut(f64) -> Result<()>,
    ) -> Result<(Series, Series)> {
        /// Quiet gap between rounds, so one round's stragglers do not land in the next one.
        const SETTLE: std::time::Duration = std::time::Duration::from_millis(250);
        let mut b = Series::new(labels[0]);
        let mut t = Series::new(labels[1]);
        for (slot, (round, side)) in crate::load::schedule(self.rounds).into_iter().enumerate() {
            if side == crate::load::Side::Target {
                prepare(
                    t.rounds.last().map_or(0.0, |r| r.requests_ok as f64 / self.load.duration.as_secs_f64()),
                )
                .await?;
            }
            tokio::time::sleep(SETTLE).await;
            let (series, mut r) = match side {
                crate::load::Side::Baseline => {
                    let (op, watch) = (std::sync::Arc::clone(op), watch.clone());
                    let (warmup, duration, label) = (self.load.warmup, self.load.duration, labels[0]);
                    let r = tokio::task::spawn_blocking(move || {
                        crate::load::in_process_round(label, threads, warmup, duration, &watch, op)
                    })
                    .await
                    .map_err(|e| crate::util::err(format!("{label}: baseline task failed: {e}")))??;
                    (&mut b, r)
                }
                crate::load::Side::Target => {
                    let factory = std::sync::Arc::clone(target);
                    (&mut t, crate::load::run(addr, labels[1], factory, self.load, watch).await?)
                }
            };
            r.round = round;
            r.slot = slot;
            self.progress(variant, &r);
            series.rounds.push(r);
        }
        Ok((b, t))
    }

    /// See [`with_server`].
    pub async fn with_server<T>(
        &self,
        make_db: impl FnOnce(&Path) -> Result<Database>,
        body: impl AsyncFnOnce(&Server) -> Result<T>,
    ) -> Result<(T, ServerRun)> {
        with_server(&self.launch, make_db, body).await
    }

    /// Assemble a comparison with run metadata and automatic notes.
    pub fn comparison(
        &self,
        benchmark: &str,
        variant: &str,
        baseline: Series,
        target: Series,
        run: ServerRun,
        mut meta: Map<String, Value>,
    ) -> Comparison {
        let debug = looks_like_debug_build(&run.bin);
        let mut notes = Vec::new();
        if debug {
            notes.push("server is a DEBUG build: figures are not representative".to_string());
        }
        for s in [&baseline, &target] {
            if s.reconnects() > 0 {
                notes.push(format!(
                    "{}: the server closed keep-alive connections {} times (reconnects)",
                    s.label,
                    s.reconnects()
                ));
            }
            if s.spread() > 0.2 {
                notes.push(format!(
                    "{}: rps varied {:.0}% between rounds; the machine is noisy, prefer more rounds",
                    s.label,
                    s.spread() * 100.0
                ));
            }
        }
        let client_cores =
            crate::report::median(baseline.rounds.iter().filter_map(|r| r.cpu.client).collect());
        // An in-process baseline *is* the harness using every core; only an
        // HTTP baseline can be starved by its own load generator.
        if !baseline.in_process() && client_cores >= 0.85 * self.client_threads as f64 {
            notes.push(format!(
                "load generator used {client_cores:.2} cores with {} client thread(s) on the \
                 baseline: the baseline may be client-bound, which pulls the ratio towards 1",
                self.client_threads
            ));
        }
        for s in [&baseline, &target] {
            if !s.in_process() {
                continue;
            }
            let server = crate::report::median(s.rounds.iter().filter_map(|r| r.cpu.server).collect());
            if server >= 0.05 {
                notes.push(format!(
                    "{}: the (idle) server used {server:.2} cores during the in-process rounds; \
                     the baseline did not have the machine to itself",
                    s.label
                ));
            }
        }
        let other = crate::report::median(
            baseline.rounds.iter().chain(&target.rounds).filter_map(|r| r.cpu.other).collect(),
        );
        if other >= 0.25 {
            notes.push(format!(
                "other processes used a median {other:.2} cores during the rounds (column `oth`): \
                 the machine was busy, so absolute figures are depressed and noisier"
            ));
        }
        let ratio =
            if baseline.median_rps() > 0.0 { target.median_rps() / baseline.median_rps() } else { 0.0 };
        if ratio > 1.05 {
            notes.push("target is faster than the baseline: check what the baseline does".into());
        }
        let measured: u64 = baseline.rounds.iter().chain(&target.rounds).map(|r| r.requests_ok).sum();
        if measured > 0 {
            let per_req = run.log_bytes as f64 / measured as f64;
            if per_req >= 20.0 {
                notes.push(format!(
                    "server wrote ~{per_req:.0} bytes of log per request ({} bytes in all); \
                     that logging is part of the measured cost",
                    run.log_bytes
                ));
            }
        }
        if run.log_has_ansi {
            notes.push(
                "server writes ANSI colour codes to its log although stdout/stderr is a pipe, \
                 not a terminal"
                    .into(),
            );
        }
        match &run.stop {
            Ok(s) if !s.clean => notes.push(format!("server did not stop cleanly on SIGTERM: {}", s.status)),
            Ok(s) if s.after_secs > 2.0 => {
                notes.push(format!("server took {:.1} s to stop after SIGTERM", s.after_secs))
            }
            Err(e) => notes.push(format!("stopping the server failed: {e}")),
            Ok(_) => {}
        }
        if let Some(e) = &run.db_cleanup_error {
            notes.push(format!("scratch database was not dropped: {e}"));
        }

        meta.insert("timestamp_unix".into(), json!(unix_now()));
        meta.insert("git_rev".into(), json!(git_rev()));
        meta.insert("cpus".into(), json!(std::thread::available_parallelism().map(usize::from).ok()));
        meta.insert("concurrency".into(), json!(self.load.concurrency));
        meta.insert("warmup_secs".into(), json!(self.load.warmup.as_secs_f64()));
        meta.insert("duration_secs".into(), json!(self.load.duration.as_secs_f64()));
        meta.insert("rounds".into(), json!(self.rounds));
        meta.insert("order".into(), json!("AB BA AB ... (pair order flips every round)"));
        meta.insert("client_threads".into(), json!(self.client_threads));
        meta.insert("server_bin".into(), json!(run.bin.display().to_string()));
        meta.insert("server_debug_build".into(), json!(debug));
        meta.insert(
            "server_env".into(),
            json!(self.launch.env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>()),
        );
        meta.insert("server_settings".into(), json!(settings_json(&self.launch)));
        meta.insert("server_startup_secs".into(), json!(run.startup_secs));
        meta.insert("server_log_bytes".into(), json!(run.log_bytes));
        meta.insert(
            "server_stop".into(),
            match &run.stop {
                Ok(s) => json!({"after_secs": s.after_secs, "status": s.status, "clean": s.clean}),
                Err(e) => json!({"error": e}),
            },
        );
        Comparison {
            benchmark: benchmark.into(),
            variant: variant.into(),
            baseline,
            target,
            meta,
            notes,
            ratio_goal: None,
        }
    }
}

/// Make a scratch dir and database, start the server, run `body`, then
/// always stop the server (SIGTERM) and drop the database.
pub async fn with_server<T>(
    launch: &LaunchOptions,
    make_db: impl FnOnce(&Path) -> Result<Database>,
    body: impl AsyncFnOnce(&Server) -> Result<T>,
) -> Result<(T, ServerRun)> {
    let scratch = ScratchDir::new("latchkey-bench")?;
    let mut db = make_db(scratch.path())?;
    let mut server = Server::start(launch, &db, scratch.path()).await?;
    eprintln!(
        "  server {} (pid {}) ready on {} in {:.2} s",
        server.bin.display(),
        server.pid(),
        server.addr,
        server.startup_secs
    );
    let result = body(&server).await;
    let stop = server.stop().map_err(|e| e.to_string());
    let log_bytes = server.log.bytes();
    let log_has_ansi = server.log.has_ansi();
    let log_tail = server.log.tail(30);
    let db_cleanup_error = db.cleanup().err().map(|e| e.to_string());
    let value = result.map_err(|e| err(format!("{e}\n--- server log tail ---\n{log_tail}")))?;
    Ok((
        value,
        ServerRun {
            bin: server.bin.clone(),
            startup_secs: server.startup_secs,
            stop,
            log_bytes,
            log_has_ansi,
            db_cleanup_error,
        },
    ))
}

/// The `--config` settings as `key = value` lines, secrets masked (the
/// generated PostgreSQL master key never appears here: it is added when the
/// file is written).
pub fn settings_json(launch: &LaunchOptions) -> Vec<String> {
    launch
        .settings
        .iter()
        .map(|(k, v)| if k.contains("key") { format!("{k} = ***") } else { format!("{k} = {v}") })
        .collect()
}

pub fn git_rev() -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(workspace_root())
        .args(["rev-parse", "--short", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_parsing() {
        assert_eq!(parse_key_value("RUST_LOG=warn"), Ok(("RUST_LOG".into(), "warn".into())));
        assert_eq!(parse_key_value("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert!(parse_key_value("=x").is_err());
        assert!(parse_key_value("novalue").is_err());
    }
}
