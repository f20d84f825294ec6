//! `users`: the cost of an authenticated `GET /api/v1/users/{id}` (token
//! check + one user read from the store + JSON rendering) relative to the
//! bare `GET /healthz` on the same server, connection count and machine.

use std::sync::Arc;

use clap::Args;
use hyper::Method;
use hyper::header::{ACCEPT, AUTHORIZATION};
use serde_json::json;

use crate::common::{CommonArgs, DbArgs, Harness, Plan};
use crate::cpu::CpuWatch;
use crate::load::{FixedRequest, RequestFactory};
use crate::report::Comparison;
use crate::server::Backend;
use crate::util::{Result, random_suffix};

#[derive(Debug, Args)]
pub struct UsersArgs {
    #[command(flatten)]
    pub db: DbArgs,

    #[command(flatten)]
    pub common: CommonArgs,
}

pub const BENCHMARK: &str = "users";
const BASELINE_LABEL: &str = "GET /healthz";
const TARGET_LABEL: &str = "GET /api/v1/users/{id}";

/// Run the benchmark for each selected backend. A backend that fails is
/// reported as an error and the others still run.
pub async fn run(args: &UsersArgs) -> Vec<(String, Result<Comparison>)> {
    let harness = match Harness::new(&args.common, &[]) {
        Ok(h) => h,
        Err(e) => return vec![(BENCHMARK.to_string(), Err(e))],
    };
    args.db
        .per_backend(BENCHMARK, async |backend, plan| run_backend(&harness, args, backend, plan).await)
        .await
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
    let make_db = |dir: &std::path::Path| args.db.make_db(&plan, dir);
    let ((baseline, target), run) = harness
        .with_server(make_db, async |server| {
            let token = server.create_token(&format!("bench-{}", random_suffix(6)))?;
            let api = server.api_with_token(&token);
            // The login deliberately shares no part with the password: the
            // policy refuses passwords containing parts of the username.
            let login = format!("load-{}@example.com", random_suffix(10));
            let user_id = api.create_active_user(&login, "Bench-Passw0rd!").await?;
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
                db_cmdline: None,
                server_threads: false,
            };
            let (b, t) = harness
                .interleaved_rounds(
                    name,
                    server.addr,
                    [BASELINE_LABEL, TARGET_LABEL],
                    &baseline,
                    &target,
                    &watch,
                )
                .await?;
            Ok((b, t))
        })
        .await?;
    let mut meta = serde_json::Map::new();
    meta.insert("backend".into(), json!(name));
    meta.insert("scratch_database".into(), json!(scratch_db));
    Ok(harness.comparison(BENCHMARK, name, baseline, target, run, meta))
}
