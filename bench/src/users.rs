//! `users`: the cost of an authenticated `GET /api/v1/users/{id}` (token
//! check + one user read from the store + JSON rendering) relative to the
//! bare `GET /healthz` on the same server, connection count and machine.

use std::sync::Arc;

use clap::{Args, ValueEnum};
use hyper::Method;
use hyper::header::{ACCEPT, AUTHORIZATION};
use serde_json::{Value, json};

use crate::common::{CommonArgs, Harness};
use crate::cpu::CpuWatch;
use crate::load::{self, FixedRequest, RequestFactory, Side};
use crate::report::{Comparison, Series};
use crate::server::{Backend, Database};
use crate::util::{Result, err, random_suffix};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    Sqlite,
    Postgres,
    Both,
}

#[derive(Debug, Args)]
pub struct UsersArgs {
    /// Storage backend(s) to run the server on.
    #[arg(long, value_enum, default_value_t = BackendChoice::Sqlite)]
    pub backend: BackendChoice,

    /// Use this existing database instead of a scratch one (the backend is
    /// taken from its scheme; it is not dropped afterwards, and gains a
    /// benchmark user and token). Useful where `psql` is not installed.
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

    #[command(flatten)]
    pub common: CommonArgs,
}

pub const BENCHMARK: &str = "users";
const BASELINE_LABEL: &str = "GET /healthz";
const TARGET_LABEL: &str = "GET /api/v1/users/{id}";

/// Where one backend's server gets its database.
enum Plan {
    Scratch(Backend),
    Existing(String),
}

/// Run the benchmark for each selected backend. A backend that fails is
/// reported as an error and the others still run.
pub async fn run(args: &UsersArgs) -> Vec<(String, Result<Comparison>)> {
    let harness = match Harness::new(&args.common) {
        Ok(h) => h,
        Err(e) => return vec![(BENCHMARK.to_string(), Err(e))],
    };
    let plans = match (&args.database_url, args.backend) {
        (Some(url), _) => vec![Plan::Existing(url.clone())],
        (None, BackendChoice::Sqlite) => vec![Plan::Scratch(Backend::Sqlite)],
        (None, BackendChoice::Postgres) => vec![Plan::Scratch(Backend::Postgres)],
        (None, BackendChoice::Both) => {
            vec![Plan::Scratch(Backend::Sqlite), Plan::Scratch(Backend::Postgres)]
        }
    };
    let mut out = Vec::new();
    for plan in plans {
        let backend = match &plan {
            Plan::Scratch(b) => Ok(*b),
            Plan::Existing(url) => Backend::from_url(url),
        };
        match backend {
            Ok(b) => {
                let result = run_backend(&harness, args, b, plan).await;
                out.push((format!("{BENCHMARK}/{}", b.name()), result));
            }
            Err(e) => out.push((BENCHMARK.to_string(), Err(e))),
        }
    }
    out
}

async fn run_backend(
    harness: &Harness,
    args: &UsersArgs,
    backend: Backend,
    plan: Plan,
) -> Result<Comparison> {
    let name = backend.name();
    eprintln!("== {BENCHMARK} / {name}");
    let scratch_db = matches!(plan, Plan::Scratch(_));
    let make_db = |dir: &std::path::Path| match &plan {
        Plan::Existing(url) => Database::existing(url),
        Plan::Scratch(Backend::Sqlite) => Ok(Database::sqlite_in(dir)),
        Plan::Scratch(Backend::Postgres) => Database::create_postgres(&args.pg_url),
    };
    let ((baseline, target), run) = harness
        .with_server(make_db, async |server| {
            let token = server.create_token(&format!("bench-{}", random_suffix(6)))?;
            let api = server.api_with_token(&token);
            let user_id = create_user(&api).await?;
            // Sanity check outside the timed loop, with a readable error.
            api.call_ok(Method::GET, &format!("/api/v1/users/{user_id}"), None).await?;

            let baseline: Arc<dyn RequestFactory> = Arc::new(FixedRequest::get("/healthz"));
            let target: Arc<dyn RequestFactory> = Arc::new(
                FixedRequest::get(format!("/api/v1/users/{user_id}"))
                    .header(AUTHORIZATION, &format!("SSWS {token}"))?
                    .header(ACCEPT, "application/json")?,
            );
            let watch = CpuWatch {
                server_pid: Some(server.pid()),
                db_process: (backend == Backend::Postgres).then(|| "postgres".to_string()),
            };
            let mut b = Series::new(BASELINE_LABEL);
            let mut t = Series::new(TARGET_LABEL);
            for (slot, (round, side)) in load::schedule(harness.rounds).into_iter().enumerate() {
                let (series, factory) = match side {
                    Side::Baseline => (&mut b, &baseline),
                    Side::Target => (&mut t, &target),
                };
                let mut r =
                    load::run(server.addr, &series.label, Arc::clone(factory), harness.load, &watch).await?;
                r.round = round;
                r.slot = slot;
                harness.progress(name, &r);
                series.rounds.push(r);
            }
            Ok((b, t))
        })
        .await?;
    let mut meta = serde_json::Map::new();
    meta.insert("backend".into(), json!(name));
    meta.insert("scratch_database".into(), json!(scratch_db));
    Ok(harness.comparison(BENCHMARK, name, baseline, target, run, meta))
}

/// Create and activate one user; returns its id.
///
/// The login deliberately shares no part with the password: the password
/// policy rejects passwords containing parts of the username, so the obvious
/// `bench@example.com` / `Bench-Passw0rd!` pair is refused with a 400.
async fn create_user(api: &crate::server::Api) -> Result<String> {
    let login = format!("load-{}@example.com", random_suffix(10));
    let body = json!({
        "profile": {"login": login, "email": login, "firstName": "B", "lastName": "M"},
        "credentials": {"password": {"value": "Bench-Passw0rd!"}}
    });
    let v: Value = api.call_ok(Method::POST, "/api/v1/users?activate=true", Some(&body)).await?;
    v.get("id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| err(format!("user creation response has no string \"id\": {v}")))
}
