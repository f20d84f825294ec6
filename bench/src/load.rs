//! Closed-loop HTTP/1.1 load driver.
//!
//! `concurrency` workers each own one keep-alive connection and send the next
//! request as soon as the previous response body has been read (closed loop:
//! offered load adapts to the server, so requests/s *is* the capacity at that
//! concurrency). Requests come from a [`RequestFactory`], so any benchmark can
//! reuse the driver for its own endpoint.
//!
//! A run is `warmup` followed by `duration`; only responses that complete
//! inside the measured window count towards throughput and latency. Errors
//! (non-2xx, transport failures, timeouts) are counted over the whole run,
//! warm-up included, because any error makes the figures suspect.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HOST, HeaderName, HeaderValue};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::cpu::CpuWatch;
use crate::report::RoundResult;
use crate::util::{Result, err};

/// Builds the request a worker sends next. `worker` is the worker index and
/// `seq` the number of requests that worker has sent so far, so factories can
/// vary requests (e.g. rotate through several users) deterministically.
///
/// The URI should be origin-form (`/path?query`); the driver adds `Host`.
pub trait RequestFactory: Send + Sync + 'static {
    fn build(&self, worker: usize, seq: u64) -> Result<Request<Full<Bytes>>>;
}

impl<F> RequestFactory for F
where
    F: Fn(usize, u64) -> Result<Request<Full<Bytes>>> + Send + Sync + 'static,
{
    fn build(&self, worker: usize, seq: u64) -> Result<Request<Full<Bytes>>> {
        self(worker, seq)
    }
}

/// The same request every time (method, path, headers, body).
#[derive(Clone, Debug)]
pub struct FixedRequest {
    pub method: Method,
    pub path: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

impl FixedRequest {
    pub fn get(path: impl Into<String>) -> Self {
        Self { method: Method::GET, path: path.into(), headers: Vec::new(), body: Bytes::new() }
    }

    pub fn header(mut self, name: HeaderName, value: &str) -> Result<Self> {
        self.headers.push((name, HeaderValue::from_str(value)?));
        Ok(self)
    }
}

impl RequestFactory for FixedRequest {
    fn build(&self, _worker: usize, _seq: u64) -> Result<Request<Full<Bytes>>> {
        let mut builder = Request::builder().method(self.method.clone()).uri(self.path.as_str());
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        Ok(builder.body(Full::new(self.body.clone()))?)
    }
}

/// Shape of one closed-loop run.
#[derive(Clone, Copy, Debug)]
pub struct LoadConfig {
    pub concurrency: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// A single request taking longer than this counts as an error and the
    /// connection is replaced.
    pub request_timeout: Duration,
}

/// Every kind of failed request, counted the same way by the closed-loop and open-loop drivers.
#[derive(Default)]
pub(crate) struct Failures {
    /// Non-2xx answers that count against the measured window.
    pub measured: u64,
    /// Non-2xx statuses over the whole run, by code.
    pub statuses: BTreeMap<u16, u64>,
    pub transport: u64,
    pub timeouts: u64,
    pub first: Option<String>,
}

impl Failures {
    fn note(&mut self, what: String) {
        if self.first.is_none() {
            self.first = Some(what);
        }
    }

    /// A non-2xx answer; `measured` when it falls in the measured window.
    pub fn http(&mut self, status: hyper::StatusCode, body: &[u8], measured: bool) {
        if measured {
            self.measured += 1;
        }
        *self.statuses.entry(status.as_u16()).or_default() += 1;
        let snippet = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        self.note(format!("HTTP {status}: {snippet}"));
    }

    pub fn transport(&mut self, what: String) {
        self.transport += 1;
        self.note(what);
    }

    pub fn timeout(&mut self, after: Duration) {
        self.timeouts += 1;
        self.note(format!("request timed out after {after:?}"));
    }

    pub fn merge(&mut self, other: Failures) {
        self.measured += other.measured;
        for (code, n) in other.statuses {
            *self.statuses.entry(code).or_default() += n;
        }
        self.transport += other.transport;
        self.timeouts += other.timeouts;
        if self.first.is_none() {
            self.first = other.first;
        }
    }
}

/// Everything one worker saw.
#[derive(Default)]
struct WorkerStats {
    /// Latencies (ns) of 2xx responses completed inside the measured window.
    latencies_ns: Vec<u64>,
    failures: Failures,
    /// Connections opened beyond the first one (server closed keep-alive,
    /// transport error, timeout).
    reconnects: u64,
    body_bytes_sample: Option<usize>,
}

/// Run one closed-loop round against `addr` and summarise it.
///
/// `label` names the endpoint in reports; `watch` says whose CPU use to
/// report for the measured window.
pub async fn run(
    addr: SocketAddr,
    label: &str,
    factory: Arc<dyn RequestFactory>,
    cfg: LoadConfig,
    watch: &CpuWatch,
) -> Result<RoundResult> {
    if cfg.concurrency == 0 {
        return Err(err("concurrency must be at least 1"));
    }
    let host = HeaderValue::from_str(&addr.to_string())?;
    let start = Instant::now();
    let measure_start = start + cfg.warmup;
    let end = measure_start + cfg.duration;

    let mut handles = Vec::with_capacity(cfg.concurrency);
    for worker in 0..cfg.concurrency {
        let factory = Arc::clone(&factory);
        let host = host.clone();
        handles.push(tokio::spawn(async move {
            worker_loop(addr, host, worker, factory, measure_start, end, cfg).await
        }));
    }

    // Sample CPU at the window edges (best effort, diagnostics only).
    tokio::time::sleep_until(measure_start.into()).await;
    let cpu0 = watch.sample();
    tokio::time::sleep_until(end.into()).await;
    let cpu1 = watch.sample();
    let cpu = cpu0.usage_until(&cpu1);
    let server_threads = cpu0.threads_until(&cpu1);

    let mut total = WorkerStats::default();
    for h in handles {
        let s = h.await.map_err(|e| err(format!("load worker failed: {e}")))?;
        total.latencies_ns.extend(s.latencies_ns);
        total.failures.merge(s.failures);
        total.reconnects += s.reconnects;
        total.body_bytes_sample = total.body_bytes_sample.or(s.body_bytes_sample);
    }

    let window = cfg.duration.as_secs_f64();
    let mut lat = total.latencies_ns;
    lat.sort_unstable();
    let ok = lat.len() as u64;
    let completed = ok + total.failures.measured;
    Ok(RoundResult {
        label: label.to_string(),
        round: 0,
        slot: 0,
        requests_ok: ok,
        rps: if window > 0.0 { completed as f64 / window } else { 0.0 },
        p50_ms: percentile_ms(&lat, 50.0),
        p99_ms: percentile_ms(&lat, 99.0),
        max_ms: lat.last().map(|ns| *ns as f64 / 1e6).unwrap_or(0.0),
        non_2xx: total.failures.statuses,
        transport_errors: total.failures.transport,
        timeouts: total.failures.timeouts,
        reconnects: total.reconnects,
        response_body_bytes: total.body_bytes_sample,
        cpu,
        server_threads,
        in_process: false,
        first_error: total.failures.first,
    })
}

/// The sending half of one HTTP/1.1 client connection.
pub type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// Open one keep-alive HTTP/1.1 connection with `TCP_NODELAY`.
pub async fn connect(addr: SocketAddr) -> Result<Sender> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    // The connection task ends by itself when `sender` is dropped or the
    // server closes the socket.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn worker_loop(
    addr: SocketAddr,
    host: HeaderValue,
    worker: usize,
    factory: Arc<dyn RequestFactory>,
    measure_start: Instant,
    end: Instant,
    cfg: LoadConfig,
) -> WorkerStats {
    let mut stats = WorkerStats::default();
    let mut sender: Option<Sender> = None;
    let mut opened = 0u64;
    let mut seq = 0u64;

    while Instant::now() < end {
        let mut s = match sender.take() {
            Some(s) if !s.is_closed() => s,
            _ => match connect(addr).await {
                Ok(s) => {
                    opened += 1;
                    s
                }
                Err(e) => {
                    stats.failures.transport(format!("connect: {e}"));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        if s.ready().await.is_err() {
            // The server closed the connection: not an error by itself, but
            // it shows up as `reconnects` (keep-alive not honoured).
            continue;
        }
        let mut req = match factory.build(worker, seq) {
            Ok(r) => r,
            Err(e) => {
                stats.failures.transport(format!("request factory: {e}"));
                break;
            }
        };
        seq += 1;
        if !req.headers().contains_key(HOST) {
            req.headers_mut().insert(HOST, host.clone());
        }

        let t0 = Instant::now();
        let exchange = async {
            let resp = s.send_request(req).await?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        };
        match tokio::time::timeout(cfg.request_timeout, exchange).await {
            Ok(Ok((status, body))) => {
                let t1 = Instant::now();
                let measured = t1 >= measure_start && t1 <= end;
                if status.is_success() {
                    if measured {
                        let ns = u64::try_from(t1.duration_since(t0).as_nanos()).unwrap_or(u64::MAX);
                        stats.latencies_ns.push(ns);
                    }
                    if stats.body_bytes_sample.is_none() {
                        stats.body_bytes_sample = Some(body.len());
                    }
                } else {
                    stats.failures.http(status, &body, measured);
                }
                sender = Some(s);
            }
            Ok(Err(e)) => stats.failures.transport(format!("request: {e}")),
            Err(_) => stats.failures.timeout(cfg.request_timeout),
        }
    }
    stats.reconnects = opened.saturating_sub(1);
    stats
}

/// Nearest-rank percentile of sorted nanosecond samples, in milliseconds.
pub fn percentile_ms(sorted_ns: &[u64], pct: f64) -> f64 {
    if sorted_ns.is_empty() {
        return 0.0;
    }
    let n = sorted_ns.len();
    // The small slack keeps binary rounding (0.999 * 1000 = 999.0000000000001)
    // from moving the rank one sample up.
    let rank = ((pct / 100.0) * n as f64 - 1e-9).ceil() as usize;
    let idx = rank.clamp(1, n) - 1;
    sorted_ns[idx] as f64 / 1e6
}

/// Which side of a comparison runs in a given slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Baseline,
    Target,
}

/// Interleaved order for `rounds` rounds of each side: the pair order flips
/// every round (AB BA AB ...), so a slow linear drift of the machine (other
/// tenants, thermal, a growing database) hits both sides equally instead of
/// always favouring whichever runs first.
pub fn schedule(rounds: usize) -> Vec<(usize, Side)> {
    let mut out = Vec::with_capacity(rounds * 2);
    for r in 0..rounds {
        if r % 2 == 0 {
            out.push((r, Side::Baseline));
            out.push((r, Side::Target));
        } else {
            out.push((r, Side::Target));
            out.push((r, Side::Baseline));
        }
    }
    out
}

/// An operation an in-process baseline repeats (a hash verification, an RSA signature).
pub type InProcessOp = Arc<dyn Fn() -> std::result::Result<(), String> + Send + Sync>;

/// One in-process baseline round: `threads` OS threads run `op` back to back for
/// `warmup + duration`; operations completing in the measured window count. Blocking.
pub fn in_process_round(
    label: &str,
    threads: usize,
    warmup: Duration,
    duration: Duration,
    watch: &CpuWatch,
    op: InProcessOp,
) -> Result<RoundResult> {
    let start = Instant::now();
    let measure_start = start + warmup;
    let end = measure_start + duration;
    let workers: Vec<_> = (0..threads.max(1))
        .map(|_| {
            let op = Arc::clone(&op);
            std::thread::spawn(move || -> std::result::Result<Vec<u64>, String> {
                let mut latencies = Vec::new();
                while Instant::now() < end {
                    let t0 = Instant::now();
                    op()?;
                    let t1 = Instant::now();
                    if t1 >= measure_start && t1 <= end {
                        latencies.push(u64::try_from((t1 - t0).as_nanos()).unwrap_or(u64::MAX));
                    }
                }
                Ok(latencies)
            })
        })
        .collect();

    std::thread::sleep(measure_start.saturating_duration_since(Instant::now()));
    let cpu0 = watch.sample();
    std::thread::sleep(end.saturating_duration_since(Instant::now()));
    let cpu1 = watch.sample();

    let mut lat = Vec::new();
    for w in workers {
        let part = w.join().map_err(|_| err(format!("{label}: baseline thread panicked")))?.map_err(err)?;
        lat.extend(part);
    }
    lat.sort_unstable();
    let window = duration.as_secs_f64();
    Ok(RoundResult {
        label: label.to_string(),
        requests_ok: lat.len() as u64,
        rps: if window > 0.0 { lat.len() as f64 / window } else { 0.0 },
        p50_ms: percentile_ms(&lat, 50.0),
        p99_ms: percentile_ms(&lat, 99.0),
        max_ms: lat.last().map(|ns| *ns as f64 / 1e6).unwrap_or(0.0),
        cpu: cpu0.usage_until(&cpu1),
        in_process: true,
        ..RoundResult::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<u64> = (1..=100).map(|i| i * 1_000_000).collect();
        assert_eq!(percentile_ms(&v, 50.0), 50.0);
        assert_eq!(percentile_ms(&v, 99.0), 99.0);
        assert_eq!(percentile_ms(&v, 100.0), 100.0);
        assert_eq!(percentile_ms(&[7_000_000], 99.0), 7.0);
        assert_eq!(percentile_ms(&[], 50.0), 0.0);
    }

    #[test]
    fn schedule_alternates_and_balances() {
        let s = schedule(3);
        let sides: Vec<Side> = s.iter().map(|(_, side)| *side).collect();
        use Side::*;
        assert_eq!(sides, vec![Baseline, Target, Target, Baseline, Baseline, Target]);
        assert_eq!(s.iter().filter(|(_, x)| *x == Target).count(), 3);
    }

    #[test]
    fn fixed_request_builds_origin_form() -> Result<()> {
        let f = FixedRequest::get("/api/v1/users/abc").header(hyper::header::AUTHORIZATION, "SSWS t")?;
        let req = f.build(0, 0)?;
        assert_eq!(req.uri().path(), "/api/v1/users/abc");
        assert_eq!(req.headers()[hyper::header::AUTHORIZATION], "SSWS t");
        Ok(())
    }
}
