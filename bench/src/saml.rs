//! `saml`: signed SSO responses per second for a signed-in user (`GET` of
//! an app's embed link with the `sid` cookie → 200 with an auto-posting form
//! carrying a signed `SAMLResponse`), against the machine's RSA-2048 signing
//! rate measured in this process in the same run.
//!
//! Each response carries two RSA-SHA256 signatures (the Assertion's and the
//! Response's, Latchkey's default), so one baseline operation is two
//! signatures with the server's library (aws-lc-rs, PKCS#1 v1.5) over a
//! SignedInfo-sized message. The ratio responses/s ÷ operations/s is the
//! share of the machine left to the signatures; the goal is at least 0.8
//! (at most 20 % overhead beyond the signatures: HTTP, the session and app
//! reads, XML, base64, the system log write).
//!
//! `--groups 1000` measures the grant through groups instead: the SSO user is in
//! `--member-of` (50) of 1,000 groups, the app is assigned to one of those groups only, and
//! its assertion carries a GROUP statement with a REGEX filter that half of the user's groups
//! pass. The goal is the same.

use std::net::SocketAddr;
use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use bytes::Bytes;
use clap::Args;
use http_body_util::Full;
use hyper::header::{ACCEPT, COOKIE, HeaderValue, SET_COOKIE};
use hyper::{Method, Request, StatusCode};
use serde_json::{Value, json};

use crate::common::{AUTHN_THROTTLING_OFF, CommonArgs, DbArgs, Harness, Plan};
use crate::cpu::CpuWatch;
use crate::load::{InProcessOp, RequestFactory};
use crate::report::Comparison;
use crate::server::{Api, Backend};
use crate::sessions::{percent_encode, raw_get, sid_from_set_cookie};
use crate::util::{Result, err, random_suffix};

#[derive(Debug, Args)]
pub struct SamlArgs {
    #[command(flatten)]
    pub db: DbArgs,

    /// Signed-in browser sessions the load cycles through (one per connection by default).
    #[arg(long)]
    pub sessions: Option<usize>,

    /// Threads for the in-process RSA baseline [default: one per CPU].
    #[arg(long)]
    pub baseline_threads: Option<usize>,

    /// Groups in the organisation; with more than 0 the app is assigned through a group the
    /// user is in, and the assertion carries a filtered GROUP statement [default: 0].
    #[arg(long, default_value_t = 0)]
    pub groups: usize,

    /// How many of those groups the SSO user is in (with --groups).
    #[arg(long, default_value_t = 50)]
    pub member_of: usize,

    #[command(flatten)]
    pub common: CommonArgs,
}

pub const BENCHMARK: &str = "saml";
const BASELINE_LABEL: &str = "2 x RSA-2048 sign (in-proc)";
const TARGET_LABEL: &str = "GET /home/{app}/{id}/{link}";
const RATIO_GOAL: f64 = 0.8;
const PASSWORD: &str = "Bench-Passw0rd!";
/// An ACS nobody listens on: the benchmark only reads the form the IdP returns.
const ACS: &str = "http://127.0.0.1:9/acs";
/// About the size of a SignedInfo element (what the IdP signs).
const SIGNED_BYTES: usize = 560;

pub async fn run(args: &SamlArgs) -> Vec<(String, Result<Comparison>)> {
    let harness = match Harness::new(&args.common, AUTHN_THROTTLING_OFF) {
        Ok(h) => h,
        Err(e) => return vec![(BENCHMARK.to_string(), Err(e))],
    };
    args.db
        .per_backend(BENCHMARK, async |backend, plan| run_backend(&harness, args, backend, plan).await)
        .await
}

/// Two RSA-2048 PKCS#1 v1.5 SHA-256 signatures, as one response costs.
pub(crate) fn signing_op() -> Result<InProcessOp> {
    let key = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|e| err(format!("RSA key generation: {e}")))?;
    let key = Arc::new(key);
    let message = vec![b'x'; SIGNED_BYTES];
    Ok(Arc::new(move || {
        let rng = SystemRandom::new();
        let mut signature = vec![0u8; key.public_modulus_len()];
        for _ in 0..2 {
            key.sign(&RSA_PKCS1_SHA256, &rng, &message, &mut signature)
                .map_err(|e| format!("RSA sign: {e}"))?;
        }
        Ok(())
    }))
}

async fn run_backend(harness: &Harness, args: &SamlArgs, backend: Backend, plan: Plan) -> Result<Comparison> {
    let name = backend.name();
    eprintln!("== {BENCHMARK} / {name}");
    let scratch_db = matches!(plan, Plan::Scratch(_));
    let cpus = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
    let threads = args.baseline_threads.unwrap_or(cpus).max(1);
    let n_sessions = args.sessions.unwrap_or(harness.load.concurrency).max(1);
    let op = signing_op()?;
    let make_db = |dir: &std::path::Path| args.db.make_db(&plan, dir);
    let ((baseline, target, sample_len), run) = harness
        .with_server(make_db, async |server| {
            let token = server.create_token(&format!("bench-{}", random_suffix(6)))?;
            let admin = server.api_with_token(&token);
            let login = format!("saml-{}@example.com", random_suffix(10));
            let user_id = admin.create_active_user(&login, PASSWORD).await?;
            let embed = create_app(&admin, &user_id, args.groups, args.member_of).await?;
            let mut cookies = Vec::with_capacity(n_sessions);
            let mut sample_len = 0;
            for _ in 0..n_sessions {
                let (sid, len) = first_sso(&server.api, server.addr, &login, &embed).await?;
                sample_len = len;
                cookies.push(HeaderValue::from_str(&format!("sid={sid}"))?);
            }
            eprintln!("  {n_sessions} signed-in sessions, each answered once ({sample_len} bytes)");
            let target: Arc<dyn RequestFactory> = Arc::new(EmbedRequests { path: embed, cookies });
            let watch = CpuWatch {
                server_pid: Some(server.pid()),
                db_process: (backend == Backend::Postgres).then(|| "postgres".to_string()),
                db_cmdline: None,
                server_threads: true,
            };
            let (b, t) = harness
                .in_process_rounds(
                    name,
                    server.addr,
                    [BASELINE_LABEL, TARGET_LABEL],
                    &op,
                    threads,
                    &target,
                    &watch,
                )
                .await?;
            Ok((b, t, sample_len))
        })
        .await?;
    let mut meta = serde_json::Map::new();
    meta.insert("backend".into(), json!(name));
    meta.insert("scratch_database".into(), json!(scratch_db));
    meta.insert("sessions".into(), json!(n_sessions));
    meta.insert("baseline_threads".into(), json!(threads));
    meta.insert("signatures_per_response".into(), json!(2));
    meta.insert("response_page_bytes".into(), json!(sample_len));
    meta.insert("ratio_goal".into(), json!(RATIO_GOAL));
    if args.groups > 0 {
        meta.insert("groups".into(), json!(args.groups));
        meta.insert("user_member_of".into(), json!(args.member_of.min(args.groups)));
        meta.insert("group_statement".into(), json!(GROUP_FILTER));
    }
    let mut cmp = harness.comparison(BENCHMARK, name, baseline, target, run, meta);
    cmp.ratio_goal = Some(RATIO_GOAL);
    if let (Some(t), Some(b)) = (cmp.target.median_cpu_us(), cmp.baseline.median_cpu_us())
        && b > 0.0
    {
        cmp.notes.push(format!(
            "CPU per signed response (server{}) is {:.0} us against {:.0} us for its two signatures: \
             {:.0} us ({:+.0}%) beyond the signatures",
            if backend == Backend::Postgres { " + postgres" } else { "" },
            t,
            b,
            t - b,
            (t / b - 1.0) * 100.0
        ));
    }
    Ok(cmp)
}

/// Name of the benchmark's group `i`, and the REGEX filter of its GROUP statement: the whole
/// name must match, so this passes the groups numbered below 500.
fn group_name(i: usize) -> String {
    format!("bench-group-{i:04}")
}
const GROUP_FILTER: &str = "bench-group-0[0-4][0-9]{2}";

/// A SAML app with the default signing (Assertion and Response); returns the embed link's path.
/// Without groups it is assigned to `user_id`. With `groups`, that many groups are created, the
/// user joins `member_of` of them spread evenly, the app is assigned to the first of those, and
/// its assertion carries the user's groups that pass `GROUP_FILTER`.
async fn create_app(admin: &Api, user_id: &str, groups: usize, member_of: usize) -> Result<String> {
    let mut statements = vec![
        json!({"type": "EXPRESSION", "name": "email", "values": ["user.email"]}),
        json!({"type": "EXPRESSION", "name": "name", "values": ["user.firstName + \" \" + user.lastName"]}),
    ];
    if groups > 0 {
        statements.push(
            json!({"type": "GROUP", "name": "groups", "filterType": "REGEX", "filterValue": GROUP_FILTER}),
        );
    }
    let body = json!({
        "label": format!("Bench SP {}", random_suffix(6)),
        "signOnMode": "SAML_2_0",
        "settings": {"signOn": {
            "ssoAcsUrl": ACS,
            "audience": "https://bench.example/sp",
            "attributeStatements": statements
        }}
    });
    let app = admin.call_ok(Method::POST, "/api/v1/apps", Some(&body)).await?;
    let id = app.get("id").and_then(Value::as_str).ok_or_else(|| err(format!("no app id: {app}")))?;
    if groups == 0 {
        admin
            .call_ok(Method::POST, &format!("/api/v1/apps/{id}/users"), Some(&json!({"id": user_id})))
            .await?;
    } else {
        let step = (groups / member_of.clamp(1, groups)).max(1);
        let mut assigned = false;
        for i in 0..groups {
            let group = json!({"profile": {"name": group_name(i), "description": "latchkey-bench"}});
            let group = admin.call_ok(Method::POST, "/api/v1/groups", Some(&group)).await?;
            let gid = group
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| err(format!("no group id: {group}")))?;
            if i % step == 0 && i / step < member_of {
                admin.call_ok(Method::PUT, &format!("/api/v1/groups/{gid}/users/{user_id}"), None).await?;
                if !assigned {
                    admin
                        .call_ok(Method::PUT, &format!("/api/v1/apps/{id}/groups/{gid}"), Some(&json!({})))
                        .await?;
                    assigned = true;
                }
            }
        }
        eprintln!(
            "  {groups} groups, the user in {} of them, the app assigned through one",
            member_of.min(groups)
        );
    }
    let href = app
        .pointer("/_links/appLinks/0/href")
        .and_then(Value::as_str)
        .ok_or_else(|| err(format!("no embed link: {app}")))?;
    let path = href.split_once("://").and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_string()));
    path.ok_or_else(|| err(format!("embed link without a path: {href}")))
}

/// Signs in, opens the embed link with the session token (creating the browser session), checks
/// the answer carries a SAMLResponse, and returns the `sid` cookie and the page size.
async fn first_sso(api: &Api, addr: SocketAddr, login: &str, embed: &str) -> Result<(String, usize)> {
    let v = api
        .call_ok(Method::POST, "/api/v1/authn", Some(&json!({"username": login, "password": PASSWORD})))
        .await?;
    let token = v
        .get("sessionToken")
        .and_then(Value::as_str)
        .ok_or_else(|| err(format!("sign-in of {login} gave no sessionToken: {v}")))?;
    let path = format!("{embed}?sessionToken={}", percent_encode(token));
    let (status, headers, body) = raw_get(addr, &path, &[]).await?;
    check_form(status, &body)?;
    let sid = headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(sid_from_set_cookie)
        .ok_or_else(|| err("the embed link set no sid cookie"))?;
    // The steady state the benchmark measures: the cookie alone gets a fresh response.
    let cookie = format!("sid={sid}");
    let (status, _, body) = raw_get(addr, embed, &[(COOKIE, &cookie), (ACCEPT, "text/html")]).await?;
    check_form(status, &body)?;
    Ok((sid, body.len()))
}

fn check_form(status: StatusCode, body: &Bytes) -> Result<()> {
    let text = String::from_utf8_lossy(body);
    if status != StatusCode::OK || !text.contains("name=\"SAMLResponse\"") {
        let head: String = text.chars().take(300).collect();
        return Err(err(format!("the embed link answered {status} without a SAMLResponse form: {head}")));
    }
    Ok(())
}

/// `GET` of the embed link with connection `worker`'s session cookie.
struct EmbedRequests {
    path: String,
    cookies: Vec<HeaderValue>,
}

impl RequestFactory for EmbedRequests {
    fn build(&self, worker: usize, _seq: u64) -> Result<Request<Full<Bytes>>> {
        Ok(Request::builder()
            .method(Method::GET)
            .uri(&self.path)
            .header(COOKIE, self.cookies[worker % self.cookies.len()].clone())
            .header(ACCEPT, "text/html")
            .body(Full::new(Bytes::new()))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_op_signs_twice_per_call() -> Result<()> {
        let op = signing_op()?;
        let started = std::time::Instant::now();
        op().map_err(err)?;
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        Ok(())
    }
}
