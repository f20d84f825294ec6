//! `latchkey-bench`: benchmarks that run a real Latchkey server on loopback
//! and compare an endpoint against a cheap baseline measured in interleaved
//! rounds on the same machine. See `bench/README.md`.
//!
//! Layout, for adding benchmarks:
//! * `server` — find the binary, scratch databases, start/stop, tokens, setup API calls
//! * `load`   — closed-loop HTTP/1.1 driver fed by a `RequestFactory`; AB/BA schedule
//! * `open_loop` — fixed-arrival-rate driver (latency from the scheduled send time)
//! * `report` — per-round results, baseline/target comparison, table and JSON
//! * `cpu`    — who used the CPU during a window (server, database, harness, rest)
//! * `common` — shared CLI options and the start/measure/stop sequence
//! * `stats`  — summaries and bootstrap intervals for timing comparisons
//! * one module per benchmark (`users`, `signins`, `authn_timing`, `sessions`, `saml`, `oidc`, `memory`)

mod authn_timing;
mod common;
mod cpu;
mod load;
mod memory;
mod oidc;
mod open_loop;
mod report;
mod saml;
mod saml_sp;
mod server;
mod sessions;
mod signins;
mod stats;
mod users;
mod util;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::report::{Outcome, shout};

#[derive(Debug, Parser)]
#[command(name = "latchkey-bench", version, about = "Benchmarks for the Latchkey server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Authenticated `GET /api/v1/users/{id}` versus bare `GET /healthz`.
    Users(users::UsersArgs),
    /// Password sign-ins per second versus raw argon2id verifications per
    /// second computed in-process with the server's parameters.
    Signins(signins::SigninsArgs),
    /// Response time of a sign-in for an unknown user versus an existing
    /// user with a wrong password (user enumeration by timing).
    AuthnTiming(authn_timing::AuthnTimingArgs),
    /// Cookie-authenticated `GET /api/v1/sessions/me` versus bare
    /// `GET /healthz`, then an open-loop latency run of /sessions/me at a
    /// fixed rate (half the measured throughput by default).
    Sessions(sessions::SessionsArgs),
    /// Signed SAML responses per second for a signed-in user (embed link with
    /// the session cookie) versus the machine's RSA-2048 signing rate.
    Saml(saml::SamlArgs),
    /// OpenID Connect code-for-tokens exchanges per second versus the machine's RSA-2048 signing
    /// rate, and discovery and JWKS versus bare `GET /healthz`.
    Oidc(oidc::OidcArgs),
    /// The server's resident memory after start, idle, at the peak of sign-in and SSO loads, and
    /// after the load.
    Memory(memory::MemoryArgs),
}

impl Command {
    fn client_threads(&self) -> usize {
        match self {
            Command::Users(a) => a.common.client_threads,
            Command::Signins(a) => a.common.client_threads,
            Command::AuthnTiming(_) => 1,
            Command::Sessions(a) => a.common.client_threads,
            Command::Saml(a) => a.common.client_threads,
            Command::Oidc(a) => a.common.client_threads,
            Command::Memory(a) => a.common.client_threads,
        }
    }
}

type Outcomes = Vec<(String, Result<Box<dyn Outcome>, util::BoxError>)>;

/// Box each comparison as an [`Outcome`].
fn boxed(v: Vec<(String, util::Result<report::Comparison>)>) -> Outcomes {
    v.into_iter().map(|(name, r)| (name, r.map(|c| Box::new(c) as Box<dyn Outcome>))).collect()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.command.client_threads().max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (outcomes, results_dir): (Outcomes, _) = match &cli.command {
        Command::Users(args) => (boxed(runtime.block_on(users::run(args))), args.common.results_dir()),
        Command::Signins(args) => (boxed(runtime.block_on(signins::run(args))), args.common.results_dir()),
        Command::AuthnTiming(args) => (runtime.block_on(authn_timing::run(args)), args.server.results_dir()),
        Command::Sessions(args) => (runtime.block_on(sessions::run(args)), args.common.results_dir()),
        Command::Saml(args) => (boxed(runtime.block_on(saml::run(args))), args.common.results_dir()),
        Command::Oidc(args) => (boxed(runtime.block_on(oidc::run(args))), args.common.results_dir()),
        Command::Memory(args) => (runtime.block_on(memory::run(args)), args.common.results_dir()),
    };

    let mut failures = Vec::new();
    let mut summary = Vec::new();
    for (name, outcome) in outcomes {
        match outcome {
            Ok(o) => {
                println!("\n== {}", o.title());
                print!("{}", o.table());
                if let Some(dir) = &results_dir {
                    match o.write_json(dir) {
                        Ok(path) => println!("wrote {}", path.display()),
                        Err(e) => failures.push(format!("{name}: cannot write results: {e}")),
                    }
                }
                summary.push(format!("{name}: {}", o.summary()));
                failures.extend(o.failures().into_iter().map(|f| format!("{name}: {f}")));
            }
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    if summary.len() > 1 {
        println!("\n== summary");
        for s in &summary {
            println!("{s}");
        }
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        let mut lines = vec!["BENCHMARK FAILED".to_string()];
        for f in failures {
            lines.extend(f.lines().map(str::to_string));
        }
        shout(&lines);
        ExitCode::FAILURE
    }
}
