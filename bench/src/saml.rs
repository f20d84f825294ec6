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
//! `--flow sp` and `--flow sp-signed` measure SP-initiated sign-on instead: `GET` of the app's SSO
//! URL with a fresh HTTP-Redirect AuthnRequest per request (unsigned, or signed by the SP's
//! RSA-2048 key, which the IdP verifies), which the IdP records against replay before it answers.
//! `--flow all` runs the three one after the other, each on its own server.
//!
//! `--groups 1000` measures the grant through groups instead: the SSO user is in
//! `--member-of` (50) of 1,000 groups, the app is assigned to one of those groups only, and
//! its assertion carries a GROUP statement with a REGEX filter that half of the user's groups
//! pass. The goal is the same.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use clap::{Args, ValueEnum};
use http_body_util::Full;
use hyper::header::{ACCEPT, COOKIE, HeaderValue, SET_COOKIE};
use hyper::{Method, Request, StatusCode};
use serde_json::{Value, json};

use crate::common::{AUTHN_THROTTLING_OFF, CommonArgs, DbArgs, Harness, Plan};
use crate::cpu::CpuWatch;
use crate::load::{InProcessOp, RequestFactory};
use crate::report::Comparison;
use crate::saml_sp::{self, SpKey, SpRequests};
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

    /// Which sign-on: IdP-initiated (the embed link), SP-initiated with unsigned or signed
    /// AuthnRequests, or all three.
    #[arg(long, value_enum, default_value_t = FlowChoice::Idp)]
    pub flow: FlowChoice,

    /// AuthnRequests prepared per SP-initiated run, each used once [default: twice what the
    /// machine's signing rate allows in every target round, warm-up included].
    #[arg(long)]
    pub sp_requests: Option<usize>,

    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FlowChoice {
    Idp,
    Sp,
    SpSigned,
    All,
}

/// One sign-on flow measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Idp,
    Sp { signed: bool },
}

impl FlowChoice {
    fn flows(self) -> Vec<Flow> {
        match self {
            FlowChoice::Idp => vec![Flow::Idp],
            FlowChoice::Sp => vec![Flow::Sp { signed: false }],
            FlowChoice::SpSigned => vec![Flow::Sp { signed: true }],
            FlowChoice::All => vec![Flow::Idp, Flow::Sp { signed: false }, Flow::Sp { signed: true }],
        }
    }
}

impl Flow {
    /// Suffix of the result's variant name (the IdP-initiated flow keeps the backend's name alone).
    fn suffix(self) -> &'static str {
        match self {
            Flow::Idp => "",
            Flow::Sp { signed: false } => "-sp",
            Flow::Sp { signed: true } => "-sp-signed",
        }
    }

    fn target_label(self) -> &'static str {
        match self {
            Flow::Idp => "GET /home/{app}/{id}/{link}",
            Flow::Sp { signed: false } => "GET .../sso/saml?SAMLRequest",
            Flow::Sp { signed: true } => "GET .../sso/saml (signed req)",
        }
    }
}

pub const BENCHMARK: &str = "saml";
const BASELINE_LABEL: &str = "2 x RSA-2048 sign (in-proc)";
/// The SP's entity ID (the app's audience).
const SP_ENTITY_ID: &str = "https://bench.example/sp";
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
    let plans = match args.db.plans() {
        Ok(p) => p,
        Err(e) => return vec![(BENCHMARK.to_string(), Err(e))],
    };
    let mut out = Vec::new();
    for (backend, plan) in plans {
        for flow in args.flow.flows() {
            let label = format!("{BENCHMARK}/{}{}", backend.name(), flow.suffix());
            out.push((label, run_backend(&harness, args, backend, plan.clone(), flow).await));
        }
    }
    out
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

/// Signature pairs per second on one thread, over a quarter of a second.
fn signing_rate(op: &InProcessOp) -> Result<f64> {
    let started = std::time::Instant::now();
    let mut done = 0u32;
    while started.elapsed() < std::time::Duration::from_millis(250) {
        op().map_err(err)?;
        done += 1;
    }
    Ok(f64::from(done) / started.elapsed().as_secs_f64())
}

async fn run_backend(
    harness: &Harness,
    args: &SamlArgs,
    backend: Backend,
    plan: Plan,
    flow: Flow,
) -> Result<Comparison> {
    let name = backend.name();
    let variant = format!("{name}{}", flow.suffix());
    eprintln!("== {BENCHMARK} / {variant}");
    let sp_key = match flow {
        Flow::Sp { signed: true } => Some(Arc::new(SpKey::generate()?)),
        _ => None,
    };
    let op = signing_op()?;
    let sp_requests = match args.sp_requests {
        Some(n) => n,
        None if matches!(flow, Flow::Sp { .. }) => {
            // No run can answer faster than its signatures allow: twice that is enough.
            let per_round = (harness.load.warmup + harness.load.duration).as_secs_f64();
            let cpus = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
            (2.0 * signing_rate(&op)? * cpus as f64 * per_round * harness.rounds as f64).ceil() as usize
        }
        None => 0,
    };
    let scratch_db = matches!(plan, Plan::Scratch(_));
    let cpus = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
    let threads = args.baseline_threads.unwrap_or(cpus).max(1);
    let n_sessions = args.sessions.unwrap_or(harness.load.concurrency).max(1);
    let make_db = |dir: &std::path::Path| args.db.make_db(&plan, dir);
    let ((baseline, target, sample_len), run) = harness
        .with_server(make_db, async |server| {
            let token = server.create_token(&format!("bench-{}", random_suffix(6)))?;
            let admin = server.api_with_token(&token);
            let login = format!("saml-{}@example.com", random_suffix(10));
            let user_id = admin.create_active_user(&login, PASSWORD).await?;
            let sp_certificate = sp_key.as_ref().map(|k| k.certificate_b64.as_str());
            let embed =
                create_app_with(&admin, &user_id, args.groups, args.member_of, sp_certificate).await?;
            let mut cookies = Vec::with_capacity(n_sessions);
            let mut sample_len = 0;
            for _ in 0..n_sessions {
                let (sid, len) = first_sso(&server.api, server.addr, &login, &embed.link).await?;
                sample_len = len;
                cookies.push(HeaderValue::from_str(&format!("sid={sid}"))?);
            }
            eprintln!("  {n_sessions} signed-in sessions, each answered once ({sample_len} bytes)");
            let target: Arc<dyn RequestFactory> = match flow {
                Flow::Idp => Arc::new(EmbedRequests { path: embed.link, cookies }),
                Flow::Sp { .. } => {
                    let sso_url = sso_url(&admin, &embed.app_id).await?;
                    let shape = saml_sp::RequestShape {
                        sso_url: sso_url.clone(),
                        sp_entity_id: SP_ENTITY_ID.to_string(),
                        acs_url: ACS.to_string(),
                    };
                    let made = std::time::Instant::now();
                    let mut queries = saml_sp::make_queries(&shape, sp_key.clone(), sp_requests + 1)?;
                    eprintln!(
                        "  {} AuthnRequests made in {:.1} s",
                        queries.len(),
                        made.elapsed().as_secs_f64()
                    );
                    let path = path_of(&sso_url)?;
                    let (first, first_id) = queries.remove(0);
                    check_sp_initiated(server.addr, &path, &first, &first_id, &cookies[0]).await?;
                    let queries = queries.into_iter().map(|(q, _)| q).collect();
                    Arc::new(SpRequests { path, queries, next: AtomicUsize::new(0), cookies })
                }
            };
            let watch = CpuWatch {
                server_pid: Some(server.pid()),
                db_process: (backend == Backend::Postgres).then(|| "postgres".to_string()),
                db_cmdline: None,
                server_threads: true,
            };
            let (b, t) = harness
                .in_process_rounds(
                    &variant,
                    server.addr,
                    [BASELINE_LABEL, flow.target_label()],
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
    let flow_text = match flow {
        Flow::Idp => "IdP-initiated (embed link)",
        Flow::Sp { signed: false } => "SP-initiated, unsigned HTTP-Redirect AuthnRequests, a fresh ID each",
        Flow::Sp { signed: true } => {
            "SP-initiated, HTTP-Redirect AuthnRequests signed with RSA-SHA256, a fresh ID each"
        }
    };
    meta.insert("flow".into(), json!(flow_text));
    if matches!(flow, Flow::Sp { .. }) {
        meta.insert("sp_requests_prepared".into(), json!(sp_requests));
    }
    meta.insert("response_page_bytes".into(), json!(sample_len));
    meta.insert("ratio_goal".into(), json!(RATIO_GOAL));
    if args.groups > 0 {
        meta.insert("groups".into(), json!(args.groups));
        meta.insert("user_member_of".into(), json!(args.member_of.min(args.groups)));
        meta.insert("group_statement".into(), json!(GROUP_FILTER));
    }
    let mut cmp = harness.comparison(BENCHMARK, &variant, baseline, target, run, meta);
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
pub(crate) async fn create_app(
    admin: &Api,
    user_id: &str,
    groups: usize,
    member_of: usize,
) -> Result<String> {
    Ok(create_app_with(admin, user_id, groups, member_of, None).await?.link)
}

/// A created app: its id and its embed link's path.
struct CreatedApp {
    app_id: String,
    link: String,
}

/// As [`create_app`]; with `sp_certificate` (base64 DER) the app requires signed AuthnRequests
/// by that certificate's key.
async fn create_app_with(
    admin: &Api,
    user_id: &str,
    groups: usize,
    member_of: usize,
    sp_certificate: Option<&str>,
) -> Result<CreatedApp> {
    let mut statements = vec![
        json!({"type": "EXPRESSION", "name": "email", "values": ["user.email"]}),
        json!({"type": "EXPRESSION", "name": "name", "values": ["user.firstName + \" \" + user.lastName"]}),
    ];
    if groups > 0 {
        statements.push(
            json!({"type": "GROUP", "name": "groups", "filterType": "REGEX", "filterValue": GROUP_FILTER}),
        );
    }
    let mut body = json!({
        "label": format!("Bench SP {}", random_suffix(6)),
        "signOnMode": "SAML_2_0",
        "settings": {"signOn": {
            "ssoAcsUrl": ACS,
            "audience": SP_ENTITY_ID,
            "attributeStatements": statements
        }}
    });
    if let Some(certificate) = sp_certificate {
        body["settings"]["signOn"]["spCertificate"] = json!({"x5c": [certificate]});
        body["settings"]["signOn"]["samlSignedRequestEnabled"] = json!(true);
    }
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
    Ok(CreatedApp { app_id: id.to_string(), link: path_of(href)? })
}

/// The path (and query) of an absolute URL.
fn path_of(url: &str) -> Result<String> {
    let path = url.split_once("://").and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_string()));
    path.ok_or_else(|| err(format!("a URL without a path: {url}")))
}

/// The app's HTTP-Redirect SingleSignOnService location, from its IdP metadata.
async fn sso_url(admin: &Api, app_id: &str) -> Result<String> {
    let (status, body) =
        admin.call(Method::GET, &format!("/api/v1/apps/{app_id}/sso/saml/metadata"), None).await?;
    let xml = String::from_utf8_lossy(&body);
    if status != StatusCode::OK {
        return Err(err(format!("the app's metadata answered {status}")));
    }
    let redirect = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
    xml.split("SingleSignOnService ")
        .skip(1)
        .map(|element| element.split('>').next().unwrap_or_default())
        .find(|element| element.contains(redirect))
        .and_then(|element| element.split("Location=\"").nth(1))
        .and_then(|rest| rest.split('"').next())
        .map(str::to_owned)
        .ok_or_else(|| err("the app's metadata has no HTTP-Redirect SingleSignOnService"))
}

/// One SP-initiated request must answer with a SAMLResponse in response to it, and the same
/// request again must be refused (the replay protection the benchmark exercises).
async fn check_sp_initiated(
    addr: SocketAddr,
    path: &str,
    query: &str,
    id: &str,
    cookie: &HeaderValue,
) -> Result<()> {
    let url = format!("{path}?{query}");
    let cookie = cookie.to_str()?;
    let (status, _, body) = raw_get(addr, &url, &[(COOKIE, cookie), (ACCEPT, "text/html")]).await?;
    check_form(status, &body)?;
    let page = String::from_utf8_lossy(&body);
    let response = page
        .split("name=\"SAMLResponse\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .and_then(|b64| STANDARD.decode(b64).ok())
        .map(|xml| String::from_utf8_lossy(&xml).into_owned())
        .unwrap_or_default();
    if !response.contains(&format!("InResponseTo=\"{id}\"")) {
        return Err(err(format!("the SP-initiated answer is not InResponseTo the request {id}")));
    }
    let (status, _, body) = raw_get(addr, &url, &[(COOKIE, cookie), (ACCEPT, "text/html")]).await?;
    if String::from_utf8_lossy(&body).contains("name=\"SAMLResponse\"") {
        return Err(err(format!(
            "the same AuthnRequest was answered twice ({status}): no replay protection"
        )));
    }
    eprintln!("  an SP-initiated request was answered, and refused when sent again ({status})");
    Ok(())
}

/// Signs in, opens the embed link with the session token (creating the browser session), checks
/// the answer carries a SAMLResponse, and returns the `sid` cookie and the page size.
pub(crate) async fn first_sso(
    api: &Api,
    addr: SocketAddr,
    login: &str,
    embed: &str,
) -> Result<(String, usize)> {
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
pub(crate) struct EmbedRequests {
    pub path: String,
    pub cookies: Vec<HeaderValue>,
}

impl RequestFactory for EmbedRequests {
    fn build(&self, worker: usize, _seq: u64) -> Result<Request<Full<Bytes>>> {
        browser_get(&self.path, &self.cookies[worker % self.cookies.len()])
    }
}

/// A browser's `GET` of `uri` with its session cookie, asking for HTML.
pub(crate) fn browser_get(uri: &str, cookie: &HeaderValue) -> Result<Request<Full<Bytes>>> {
    Ok(Request::builder()
        .method(Method::GET)
        .uri(uri)
        .header(COOKIE, cookie.clone())
        .header(ACCEPT, "text/html")
        .body(Full::new(Bytes::new()))?)
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
