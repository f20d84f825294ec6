//! `latchkey-bench`: benchmarks that run a real Latchkey server on loopback
//! and compare an endpoint against a cheap baseline measured in interleaved
//! rounds on the same machine. See `bench/README.md`.
//!
//! Layout, for adding benchmarks:
//! * `server` — find the binary, scratch databases, start/stop, tokens, setup API calls
//! * `load`   — closed-loop HTTP/1.1 driver fed by a `RequestFactory`; AB/BA schedule
//! * `report` — per-round results, baseline/target comparison, table and JSON
//! * `cpu`    — who used the CPU during a window (server, database, harness, rest)
//! * `cpu`    — who used the CPU during a window (server, database, harness, rest)
//! * `common` — shared CLI options and the start/measure/stop sequence
//! * one module per benchmark (`users`)

mod common;
mod cpu;
mod load;
mod report;
mod server;
mod users;
mod util;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::report::shout;

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
}

impl Command {
    fn client_threads(&self) -> usize {
        match self {
            Command::Users(a) => a.common.client_threads,
        }
    }
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
    let (outcomes, results_dir) = match &cli.command {
        Command::Users(args) => (runtime.block_on(users::run(args)), args.common.results_dir()),
    };

    let mut failures = Vec::new();
    let mut summary = Vec::new();
    for (name, outcome) in outcomes {
        match outcome {
            Ok(cmp) => {
                println!("\n== {} / {}", cmp.benchmark, cmp.variant);
                print!("{}", cmp.table());
                if let Some(dir) = &results_dir {
                    match cmp.write_json(dir) {
                        Ok(path) => println!("wrote {}", path.display()),
                        Err(e) => failures.push(format!("{name}: cannot write results: {e}")),
                    }
                }
                summary.push(format!(
                    "{name}: target/baseline = {:.3} ({:.0} / {:.0} rps){}",
                    cmp.ratio(),
                    cmp.target.median_rps(),
                    cmp.baseline.median_rps(),
                    if cmp.errors() > 0 { "  [ERRORS]" } else { "" }
                ));
                if cmp.errors() > 0 {
                    failures.push(format!(
                        "{name}: {} failed requests (baseline {}, target {}); figures are NOT valid",
                        cmp.errors(),
                        cmp.baseline.errors(),
                        cmp.target.errors()
                    ));
                }
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
