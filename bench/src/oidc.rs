//! `oidc`: the OpenID Connect token endpoint and the endpoints relying parties poll.
//!
//! 1. `POST /oauth2/v1/token` with `grant_type=authorization_code` (a confidential client with
//!    `client_secret_basic`, PKCE S256): each exchange spends a code (one conditional update,
//!    shared with concurrent spends), reads the user, and signs an access token and an id_token
//!    (two RS256 signatures). Against two RSA-2048 signatures in-process, measured in the same run;
//!    the goal is 0.8, as for SAML. Codes are single-use and live 60 s, so before each measured
//!    round a pool is filled through `authorize` with the user's session cookie (outside the
//!    measured window), sized from the previous round's rate.
//! 2. `GET /.well-known/openid-configuration` and `GET /oauth2/v1/keys` against `GET /healthz`
//!    of the same server: the goal is at least half its rate.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use clap::Args;
use http_body_util::Full;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use hyper::{Method, Request};
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::common::{AUTHN_THROTTLING_OFF, CommonArgs, DbArgs, Harness, Plan};
use crate::cpu::CpuWatch;
use crate::load::{FixedRequest, RequestFactory};
use crate::report::Comparison;
use crate::saml::signing_op;
use crate::server::{Api, Backend};
use crate::sessions::{percent_encode, raw_get, sid_from_set_cookie};
use crate::util::{Result, err, random_suffix};

#[derive(Debug, Args)]
pub struct OidcArgs {
    #[command(flatten)]
    pub db: DbArgs,

    /// Threads for the in-process RSA baseline [default: one per CPU].
    #[arg(long)]
    pub baseline_threads: Option<usize>,

    #[command(flatten)]
    pub common: CommonArgs,
}

pub const BENCHMARK: &str = "oidc";
const BASELINE_LABEL: &str = "2 x RSA-2048 sign (in-proc)";
const TOKEN_LABEL: &str = "POST /oauth2/v1/token (code)";
const RATIO_GOAL: f64 = 0.8;
const METADATA_GOAL: f64 = 0.5;
const PASSWORD: &str = "Bench-Passw0rd!";
const REDIRECT: &str = "http://127.0.0.1:9/callback";
const VERIFIER: &str = "bench-code-verifier-bench-code-verifier-bench-code-verifier";
/// Codes fetched at once while filling the pool.
const FILL_CONCURRENCY: usize = 8;

pub async fn run(args: &OidcArgs) -> Vec<(String, Result<Comparison>)> {
    let harness = match Harness::new(&args.common, AUTHN_THROTTLING_OFF) {
        Ok(h) => h,
        Err(e) => return vec![(BENCHMARK.to_string(), Err(e))],
    };
    let mut out = args
        .db
        .per_backend(BENCHMARK, async |backend, plan| run_token(&harness, args, backend, plan).await)
        .await;
    for (label, path) in [("discovery", "/.well-known/openid-configuration"), ("keys", "/oauth2/v1/keys")] {
        let name = format!("{BENCHMARK}-{label}");
        out.extend(
            args.db
                .per_backend(&name, async |backend, plan| {
                    run_metadata(&harness, args, backend, plan, &name, path).await
                })
                .await,
        );
    }
    out
}

/// An OIDC web app assigned to a new user, and that user's session cookie.
struct Client {
    id: String,
    secret: String,
    cookie: String,
}

async fn client(api: &Api, addr: SocketAddr) -> Result<Client> {
    let login = format!("oidc-{}@example.com", random_suffix(10));
    let user_id = api.create_active_user(&login, PASSWORD).await?;
    let body = json!({
        "name": "oidc_client",
        "label": format!("Bench RP {}", random_suffix(6)),
        "signOnMode": "OPENID_CONNECT",
        "credentials": {"oauthClient": {"token_endpoint_auth_method": "client_secret_basic"}},
        "settings": {"oauthClient": {
            "redirect_uris": [REDIRECT],
            "response_types": ["code"],
            "grant_types": ["authorization_code"],
            "application_type": "web",
        }},
    });
    let app = api.call_ok(Method::POST, "/api/v1/apps", Some(&body)).await?;
    let id =
        app.get("id").and_then(Value::as_str).ok_or_else(|| err(format!("no app id: {app}")))?.to_owned();
    let secret = app
        .pointer("/credentials/oauthClient/client_secret")
        .and_then(Value::as_str)
        .ok_or_else(|| err(format!("no client secret: {app}")))?
        .to_owned();
    api.call_ok(Method::POST, &format!("/api/v1/apps/{id}/users"), Some(&json!({"id": user_id}))).await?;
    let v = api
        .call_ok(Method::POST, "/api/v1/authn", Some(&json!({"username": login, "password": PASSWORD})))
        .await?;
    let token =
        v.get("sessionToken").and_then(Value::as_str).ok_or_else(|| err(format!("no sessionToken: {v}")))?;
    let path = format!("{}&sessionToken={}", authorize_path(&id), percent_encode(token));
    let (status, headers, _) = raw_get(addr, &path, &[]).await?;
    let sid = headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(sid_from_set_cookie)
        .ok_or_else(|| err(format!("authorize with a session token answered {status} without a session")))?;
    Ok(Client { id, secret, cookie: format!("sid={sid}") })
}

fn authorize_path(client_id: &str) -> String {
    let challenge =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(VERIFIER.as_bytes()));
    format!(
        "/oauth2/v1/authorize?client_id={client_id}&redirect_uri={}&response_type=code&scope=openid%20email\
         &state=bench&nonce=bench&code_challenge={challenge}&code_challenge_method=S256",
        percent_encode(REDIRECT)
    )
}

/// One code from `authorize` with the session cookie, on a kept-alive connection.
async fn one_code(sender: &mut crate::load::Sender, addr: SocketAddr, client: &Client) -> Result<String> {
    let request = Request::builder()
        .method(Method::GET)
        .uri(authorize_path(&client.id))
        .header(hyper::header::HOST, addr.to_string())
        .header(COOKIE, &client.cookie)
        .body(Full::new(Bytes::new()))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let location =
        response.headers().get(LOCATION).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    // Drain the (empty) body so the connection can carry the next request.
    let _ = http_body_util::BodyExt::collect(response.into_body()).await;
    let query = location.split_once('?').map(|(_, q)| q).unwrap_or_default();
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| err(format!("authorize answered {status} without a code: {location}")))
}

/// Token requests, each with a fresh code from the pool.
struct TokenRequests {
    codes: Arc<Mutex<VecDeque<String>>>,
    authorization: String,
}

impl RequestFactory for TokenRequests {
    fn build(&self, _worker: usize, _seq: u64) -> Result<Request<Full<Bytes>>> {
        let code = self.codes.lock().map_err(|_| err("code pool poisoned"))?.pop_front().unwrap_or_default();
        let body = format!(
            "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={VERIFIER}",
            percent_encode(&code),
            percent_encode(REDIRECT)
        );
        Ok(Request::builder()
            .method(Method::POST)
            .uri("/oauth2/v1/token")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(AUTHORIZATION, &self.authorization)
            .body(Full::new(Bytes::from(body)))?)
    }
}

async fn run_token(harness: &Harness, args: &OidcArgs, backend: Backend, plan: Plan) -> Result<Comparison> {
    let name = backend.name();
    eprintln!("== {BENCHMARK} / {name}");
    let scratch_db = matches!(plan, Plan::Scratch(_));
    let cpus = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
    let threads = args.baseline_threads.unwrap_or(cpus).max(1);
    let op = signing_op()?;
    let make_db = |dir: &std::path::Path| args.db.make_db(&plan, dir);
    let window = (harness.load.warmup + harness.load.duration).as_secs_f64();
    let ((baseline, target), run) = harness
        .with_server(make_db, async |server| {
            let token = server.create_token(&format!("bench-{}", random_suffix(6)))?;
            let admin = server.api_with_token(&token);
            let client = Arc::new(client(&admin, server.addr).await?);
            let codes: Arc<Mutex<VecDeque<String>>> = Arc::default();
            let basic =
                base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", client.id, client.secret));
            let target: Arc<dyn RequestFactory> =
                Arc::new(TokenRequests { codes: codes.clone(), authorization: format!("Basic {basic}") });
            let addr = server.addr;
            let mut fill = async |previous_rps: f64| -> Result<()> {
                // Enough for the whole round at the last rate and a half (8,000 before the first).
                let wanted = if previous_rps > 0.0 { (previous_rps * window * 1.5) as usize } else { 8000 };
                let stale = codes.lock().map_err(|_| err("code pool poisoned"))?.drain(..).count();
                let mut tasks = Vec::new();
                for worker in 0..FILL_CONCURRENCY {
                    let (client, codes) = (Arc::clone(&client), Arc::clone(&codes));
                    let share = wanted / FILL_CONCURRENCY + usize::from(worker < wanted % FILL_CONCURRENCY);
                    tasks.push(tokio::spawn(async move {
                        let mut sender = crate::load::connect(addr).await?;
                        for _ in 0..share {
                            let code = one_code(&mut sender, addr, &client).await?;
                            codes.lock().map_err(|_| err("code pool poisoned"))?.push_back(code);
                        }
                        Ok::<_, crate::util::BoxError>(())
                    }));
                }
                for task in tasks {
                    task.await.map_err(|e| err(format!("filling the code pool: {e}")))??;
                }
                eprintln!(
                    "  code pool: {wanted} fresh codes ({stale} left over from the last round dropped)"
                );
                Ok(())
            };
            let watch = CpuWatch {
                server_pid: Some(server.pid()),
                db_process: (backend == Backend::Postgres).then(|| "postgres".to_string()),
                db_cmdline: None,
                server_threads: true,
            };
            harness
                .in_process_rounds_prepared(
                    name,
                    server.addr,
                    [BASELINE_LABEL, TOKEN_LABEL],
                    &op,
                    threads,
                    &target,
                    &watch,
                    &mut fill,
                )
                .await
        })
        .await?;
    let mut meta = serde_json::Map::new();
    meta.insert("backend".into(), json!(name));
    meta.insert("scratch_database".into(), json!(scratch_db));
    meta.insert("baseline_threads".into(), json!(threads));
    meta.insert("signatures_per_exchange".into(), json!(2));
    meta.insert("ratio_goal".into(), json!(RATIO_GOAL));
    let mut cmp = harness.comparison(BENCHMARK, name, baseline, target, run, meta);
    cmp.ratio_goal = Some(RATIO_GOAL);
    if let (Some(t), Some(b)) = (cmp.target.median_cpu_us(), cmp.baseline.median_cpu_us())
        && b > 0.0
    {
        cmp.notes.push(format!(
            "CPU per exchange (server{}) is {:.0} us against {:.0} us for its two signatures: {:.0} us ({:+.0}%) beyond the signatures",
            if backend == Backend::Postgres { " + postgres" } else { "" },
            t,
            b,
            t - b,
            (t / b - 1.0) * 100.0
        ));
    }
    Ok(cmp)
}

async fn run_metadata(
    harness: &Harness,
    args: &OidcArgs,
    backend: Backend,
    plan: Plan,
    benchmark: &str,
    path: &'static str,
) -> Result<Comparison> {
    let name = backend.name();
    eprintln!("== {BENCHMARK} {path} / {name}");
    let make_db = |dir: &std::path::Path| args.db.make_db(&plan, dir);
    let ((baseline, target), run) = harness
        .with_server(make_db, async |server| {
            let (status, _, _) = raw_get(server.addr, path, &[]).await?;
            if !status.is_success() {
                return Err(err(format!("GET {path} answered {status}")));
            }
            let baseline: Arc<dyn RequestFactory> = Arc::new(FixedRequest::get("/healthz"));
            let target: Arc<dyn RequestFactory> = Arc::new(FixedRequest::get(path));
            let watch = CpuWatch {
                server_pid: Some(server.pid()),
                db_process: None,
                db_cmdline: None,
                server_threads: false,
            };
            harness
                .interleaved_rounds(name, server.addr, ["GET /healthz", path], &baseline, &target, &watch)
                .await
        })
        .await?;
    let mut meta = serde_json::Map::new();
    meta.insert("backend".into(), json!(name));
    meta.insert("ratio_goal".into(), json!(METADATA_GOAL));
    let mut cmp = harness.comparison(benchmark, name, baseline, target, run, meta);
    cmp.ratio_goal = Some(METADATA_GOAL);
    Ok(cmp)
}
