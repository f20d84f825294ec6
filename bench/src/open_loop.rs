//! Open-loop (fixed arrival rate) HTTP/1.1 load driver.
//!
//! Requests are *scheduled* at a constant aggregate rate, whatever the
//! server does: `connections` keep-alive connections each run a
//! `tokio::time::interval` with period `connections / rate`, their first
//! ticks staggered by `1 / rate`, so the ticks of all connections together
//! are evenly spaced. A connection sends one request per tick; when a
//! response is late, the connection's next ticks are already due and fire at
//! once (`MissedTickBehavior::Burst`) so that the schedule, not the server,
//! sets the pace.
//!
//! **Latency is counted from the scheduled send time**, not from the moment
//! the request was actually written: a request that had to wait for the
//! previous one on its connection (or for the load generator) has waited in
//! the client's queue, and that waiting is part of what a user would see.
//! Counting from the actual send would hide exactly the stalls the run is
//! meant to find (coordinated omission). The service time (from the actual
//! send) and the send lag (actual send − scheduled) are recorded as well, so
//! the two parts can be told apart; tokio's timer has millisecond
//! resolution, so a lag of up to ~1 ms is the timer, not the server.
//!
//! Requests scheduled inside the measured window count, whenever their
//! responses arrive. At the end of the window no new request is started;
//! requests that were due by then but never sent (the connection was still
//! busy) are counted as `unsent`: their latency would have been at least
//! the time they had already waited, so a run with many is a run the server
//! did not keep up with.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::header::{HOST, HeaderValue};
use serde_json::{Value, json};
use tokio::time::MissedTickBehavior;

use crate::cpu::{CpuUsage, CpuWatch, ThreadGroup};
use crate::load::{Failures, RequestFactory, Sender, connect, percentile_ms};
use crate::util::{Result, err};

/// Shape of one open-loop run.
#[derive(Clone, Copy, Debug)]
pub struct OpenLoopConfig {
    /// Requests per second scheduled over all connections together.
    pub rate: f64,
    pub connections: usize,
    /// Unmeasured seconds at the same rate before the window.
    pub warmup: Duration,
    pub duration: Duration,
    /// A request slower than this (from its actual send) is an error and
    /// its connection is replaced.
    pub request_timeout: Duration,
}

impl OpenLoopConfig {
    /// Interval between two ticks of one connection.
    fn period(&self) -> Duration {
        Duration::from_secs_f64(self.connections as f64 / self.rate)
    }

    /// First tick of connection `c`, `start` being the run's start.
    fn first_tick(&self, start: Instant, c: usize) -> Instant {
        start + Duration::from_secs_f64(c as f64 / self.rate)
    }
}

/// Ticks `first + k * period` (k ≥ 0) strictly before `t`.
fn ticks_before(first: Instant, period: Duration, t: Instant) -> u64 {
    if t <= first {
        return 0;
    }
    let span = (t - first).as_nanos();
    let p = period.as_nanos().max(1);
    u64::try_from(span.div_ceil(p)).unwrap_or(u64::MAX)
}

/// One request scheduled inside the measured window and answered 2xx.
#[derive(Clone, Copy, Debug)]
struct Sample {
    /// Scheduled send time, ns after the window opened.
    at_ns: u64,
    /// Scheduled send → whole response read.
    latency_ns: u64,
    /// Actual send → whole response read.
    service_ns: u64,
    /// Scheduled send → actual send.
    lag_ns: u64,
}

#[derive(Default)]
struct ConnStats {
    samples: Vec<Sample>,
    scheduled_in_window: u64,
    sent_in_window: u64,
    /// Responses (any status) that completed inside the window.
    completed_in_window: u64,
    /// Failed requests; non-2xx answers to requests scheduled inside the window are "measured".
    failures: Failures,
    reconnects: u64,
}

/// Latency figures in milliseconds (nearest rank).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    fn of(mut ns: Vec<u64>) -> Self {
        ns.sort_unstable();
        Self {
            p50: percentile_ms(&ns, 50.0),
            p90: percentile_ms(&ns, 90.0),
            p99: percentile_ms(&ns, 99.0),
            p999: percentile_ms(&ns, 99.9),
            max: ns.last().map(|n| *n as f64 / 1e6).unwrap_or(0.0),
        }
    }

    fn to_json(self) -> Value {
        let r = |x: f64| (x * 1000.0).round() / 1000.0;
        json!({"p50_ms": r(self.p50), "p90_ms": r(self.p90), "p99_ms": r(self.p99),
               "p99_9_ms": r(self.p999), "max_ms": r(self.max)})
    }
}

/// One second of the measured window (by scheduled send time).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SecondBin {
    /// 2xx answers to requests scheduled in this second.
    pub answered: u64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Everything one open-loop run measured.
#[derive(Clone, Debug)]
pub struct OpenLoopResult {
    pub label: String,
    pub cfg: OpenLoopConfig,
    /// Requests scheduled inside the window (rate × duration, give or take one).
    pub scheduled: u64,
    /// Of those, actually sent (the rest were still queued when the window closed).
    pub sent: u64,
    pub unsent: u64,
    /// 2xx answers to requests scheduled inside the window.
    pub answered_ok: u64,
    /// Responses completed inside the window ÷ window: the rate the server
    /// actually delivered.
    pub achieved_rps: f64,
    /// From the scheduled send time: what a client sees.
    pub latency: Percentiles,
    /// From the actual send: the server (plus loopback) alone.
    pub service: Percentiles,
    /// Actual send − scheduled send: timer resolution, load-generator
    /// delays and waiting for the previous response on the connection.
    pub lag: Percentiles,
    pub per_second: Vec<SecondBin>,
    pub non_2xx: BTreeMap<u16, u64>,
    pub transport_errors: u64,
    pub timeouts: u64,
    pub reconnects: u64,
    pub first_error: Option<String>,
    pub cpu: CpuUsage,
    pub server_threads: Vec<ThreadGroup>,
}

/// Achieved rate must reach this share of the target rate to count as "kept up".
pub const KEPT_UP_SHARE: f64 = 0.98;

impl OpenLoopResult {
    pub fn errors(&self) -> u64 {
        self.non_2xx.values().sum::<u64>() + self.transport_errors + self.timeouts
    }

    /// The server delivered (nearly) the scheduled rate and no more than one
    /// request per connection was still queued when the window closed.
    pub fn kept_up(&self) -> bool {
        self.errors() == 0
            && self.achieved_rps >= KEPT_UP_SHARE * self.cfg.rate
            && self.unsent <= self.cfg.connections as u64
    }

    /// Server (+ database) CPU µs per answered request.
    pub fn server_cpu_us_per_request(&self) -> Option<f64> {
        let cores = self.cpu.server? + self.cpu.db.unwrap_or(0.0);
        (self.achieved_rps > 0.0).then(|| cores / self.achieved_rps * 1e6)
    }

    pub fn to_json(&self) -> Value {
        let r2 = |x: f64| (x * 100.0).round() / 100.0;
        let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
        let statuses: serde_json::Map<String, Value> =
            self.non_2xx.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        json!({
            "label": self.label,
            "target_rps": r2(self.cfg.rate),
            "achieved_rps": r2(self.achieved_rps),
            "achieved_over_target": if self.cfg.rate > 0.0 { r3(self.achieved_rps / self.cfg.rate) } else { 0.0 },
            "kept_up": self.kept_up(),
            "kept_up_rule": format!(
                "no errors, achieved >= {KEPT_UP_SHARE} x target, and at most one unsent request per \
                 connection when the window closed"
            ),
            "connections": self.cfg.connections,
            "warmup_secs": self.cfg.warmup.as_secs_f64(),
            "duration_secs": self.cfg.duration.as_secs_f64(),
            "scheduled": self.scheduled,
            "sent": self.sent,
            "unsent": self.unsent,
            "answered_ok": self.answered_ok,
            "latency_from_scheduled": self.latency.to_json(),
            "service_time_from_send": self.service.to_json(),
            "send_lag": self.lag.to_json(),
            "errors": self.errors(),
            "non_2xx": statuses,
            "transport_errors": self.transport_errors,
            "timeouts": self.timeouts,
            "reconnects": self.reconnects,
            "first_error": self.first_error,
            "cpu_cores": {
                "server": self.cpu.server.map(r3),
                "db": self.cpu.db.map(r3),
                "client": self.cpu.client.map(r3),
                "other": self.cpu.other.map(r3),
            },
            "server_cpu_us_per_request": self.server_cpu_us_per_request().map(r2),
            "server_threads": self.server_threads.iter().map(|g| json!({
                "name": g.name, "cores": r3(g.cores),
            })).collect::<Vec<_>>(),
            "per_second": self.per_second.iter().map(|b| json!({
                "answered": b.answered, "p99_ms": r3(b.p99_ms), "max_ms": r3(b.max_ms),
            })).collect::<Vec<_>>(),
        })
    }

    /// Console lines for this run.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let cpu = |v: Option<f64>| v.map(|c| format!("{c:.2}")).unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "open loop: {} at a fixed {:.0} req/s over {} connections for {:.1} s (after {:.1} s warm-up)",
            self.label,
            self.cfg.rate,
            self.cfg.connections,
            self.cfg.duration.as_secs_f64(),
            self.cfg.warmup.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "  achieved {:.0} req/s ({:.1}% of target); scheduled {}, sent {}, unsent at close {}, \
             answered 2xx {}  =>  {}",
            self.achieved_rps,
            if self.cfg.rate > 0.0 { self.achieved_rps / self.cfg.rate * 100.0 } else { 0.0 },
            self.scheduled,
            self.sent,
            self.unsent,
            self.answered_ok,
            if self.kept_up() { "server KEPT UP" } else { "server DID NOT KEEP UP" }
        );
        let _ =
            writeln!(out, "  {:<34}{:>9}{:>9}{:>9}{:>10}{:>9}", "ms", "p50", "p90", "p99", "p99.9", "max");
        for (name, p) in [
            ("latency (from scheduled send)", self.latency),
            ("service time (from actual send)", self.service),
            ("send lag (actual - scheduled)", self.lag),
        ] {
            let _ = writeln!(
                out,
                "  {:<34}{:>9.3}{:>9.3}{:>9.3}{:>10.3}{:>9.3}",
                name, p.p50, p.p90, p.p99, p.p999, p.max
            );
        }
        let _ = writeln!(
            out,
            "  cores: srv {} db {} cli {} oth {}; server{} CPU per request {}",
            cpu(self.cpu.server),
            cpu(self.cpu.db),
            cpu(self.cpu.client),
            cpu(self.cpu.other),
            if self.cpu.db.is_some() { " + db" } else { "" },
            self.server_cpu_us_per_request().map(|u| format!("{u:.1} us")).unwrap_or_else(|| "-".into())
        );
        if let Some(worst) =
            self.per_second.iter().enumerate().max_by(|a, b| a.1.max_ms.total_cmp(&b.1.max_ms))
        {
            let _ = writeln!(
                out,
                "  worst second: #{} (max {:.2} ms, p99 {:.2} ms); per-second p99 in the JSON",
                worst.0 + 1,
                worst.1.max_ms,
                worst.1.p99_ms
            );
        }
        if self.errors() > 0 {
            let _ = writeln!(
                out,
                "!!! {} FAILED REQUESTS in the open-loop run (first: {}) - these figures are NOT valid",
                self.errors(),
                self.first_error.as_deref().unwrap_or("?")
            );
        }
        out
    }
}

/// Run one open-loop load against `addr` (see the module docs).
pub async fn run(
    addr: SocketAddr,
    label: &str,
    factory: Arc<dyn RequestFactory>,
    cfg: OpenLoopConfig,
    watch: &CpuWatch,
) -> Result<OpenLoopResult> {
    if cfg.connections == 0 {
        return Err(err("open loop: at least one connection is needed"));
    }
    if !(cfg.rate.is_finite() && cfg.rate > 0.0) {
        return Err(err(format!("open loop: the rate must be positive, got {}", cfg.rate)));
    }
    if cfg.period() < Duration::from_micros(10) {
        return Err(err(format!(
            "open loop: {:.0} req/s over {} connections is more than one request per 10 us per \
             connection; use more connections",
            cfg.rate, cfg.connections
        )));
    }
    let host = HeaderValue::from_str(&addr.to_string())?;
    // Connections are opened before the schedule starts, so the first ticks
    // do not pay for the TCP handshake.
    let mut senders = Vec::with_capacity(cfg.connections);
    for _ in 0..cfg.connections {
        senders.push(connect(addr).await?);
    }
    let start = Instant::now() + Duration::from_millis(20);
    let measure_start = start + cfg.warmup;
    let end = measure_start + cfg.duration;

    let mut handles = Vec::with_capacity(cfg.connections);
    for (c, sender) in senders.into_iter().enumerate() {
        let factory = Arc::clone(&factory);
        let host = host.clone();
        handles.push(tokio::spawn(async move {
            connection_loop(addr, host, c, sender, factory, cfg, start, measure_start, end).await
        }));
    }

    tokio::time::sleep_until(measure_start.into()).await;
    let cpu0 = watch.sample();
    tokio::time::sleep_until(end.into()).await;
    let cpu1 = watch.sample();

    let mut total = ConnStats::default();
    for h in handles {
        let s = h.await.map_err(|e| err(format!("open-loop connection task failed: {e}")))?;
        total.samples.extend(s.samples);
        total.scheduled_in_window += s.scheduled_in_window;
        total.sent_in_window += s.sent_in_window;
        total.completed_in_window += s.completed_in_window;
        total.failures.merge(s.failures);
        total.reconnects += s.reconnects;
    }
    let window = cfg.duration.as_secs_f64();
    let seconds = cfg.duration.as_secs_f64().ceil().max(1.0) as usize;
    let mut bins: Vec<Vec<u64>> = vec![Vec::new(); seconds];
    for s in &total.samples {
        let i = usize::try_from(s.at_ns / 1_000_000_000).unwrap_or(usize::MAX).min(seconds - 1);
        bins[i].push(s.latency_ns);
    }
    let per_second = bins
        .into_iter()
        .map(|mut v| {
            v.sort_unstable();
            SecondBin {
                answered: v.len() as u64,
                p99_ms: percentile_ms(&v, 99.0),
                max_ms: v.last().map(|n| *n as f64 / 1e6).unwrap_or(0.0),
            }
        })
        .collect();
    Ok(OpenLoopResult {
        label: label.to_string(),
        cfg,
        scheduled: total.scheduled_in_window,
        sent: total.sent_in_window,
        unsent: total.scheduled_in_window.saturating_sub(total.sent_in_window),
        answered_ok: total.samples.len() as u64,
        achieved_rps: if window > 0.0 { total.completed_in_window as f64 / window } else { 0.0 },
        latency: Percentiles::of(total.samples.iter().map(|s| s.latency_ns).collect()),
        service: Percentiles::of(total.samples.iter().map(|s| s.service_ns).collect()),
        lag: Percentiles::of(total.samples.iter().map(|s| s.lag_ns).collect()),
        per_second,
        non_2xx: total.failures.statuses,
        transport_errors: total.failures.transport,
        timeouts: total.failures.timeouts,
        reconnects: total.reconnects,
        first_error: total.failures.first,
        cpu: cpu0.usage_until(&cpu1),
        server_threads: cpu0.threads_until(&cpu1),
    })
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[allow(clippy::too_many_arguments)]
async fn connection_loop(
    addr: SocketAddr,
    host: HeaderValue,
    c: usize,
    first_sender: Sender,
    factory: Arc<dyn RequestFactory>,
    cfg: OpenLoopConfig,
    start: Instant,
    measure_start: Instant,
    end: Instant,
) -> ConnStats {
    let mut stats = ConnStats::default();
    let period = cfg.period();
    let first = cfg.first_tick(start, c);
    stats.scheduled_in_window = ticks_before(first, period, end) - ticks_before(first, period, measure_start);

    let mut interval = tokio::time::interval_at(first.into(), period);
    // Late ticks fire at once, one after the other, and keep their own
    // scheduled times: the schedule does not slide when the server is slow.
    interval.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut sender = Some(first_sender);
    let mut seq = 0u64;
    loop {
        let scheduled = interval.tick().await.into_std();
        if scheduled >= end || Instant::now() >= end {
            // Either the schedule is over, or the window closed while this
            // request was still queued behind the previous one (counted as
            // unsent from `scheduled_in_window - sent_in_window`).
            break;
        }
        let in_window = scheduled >= measure_start;
        let mut s = match sender.take() {
            Some(s) if !s.is_closed() => s,
            _ => match connect(addr).await {
                Ok(s) => {
                    stats.reconnects += 1;
                    s
                }
                Err(e) => {
                    stats.failures.transport(format!("connect: {e}"));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        if let Err(e) = s.ready().await {
            stats.failures.transport(format!("connection not ready: {e}"));
            continue;
        }
        let mut req = match factory.build(c, seq) {
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
        if in_window {
            stats.sent_in_window += 1;
        }
        let sent = Instant::now();
        let exchange = async {
            let resp = s.send_request(req).await?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        };
        match tokio::time::timeout(cfg.request_timeout, exchange).await {
            Ok(Ok((status, body))) => {
                let done = Instant::now();
                if done >= measure_start && done <= end {
                    stats.completed_in_window += 1;
                }
                if status.is_success() {
                    if in_window {
                        stats.samples.push(Sample {
                            at_ns: ns(scheduled - measure_start),
                            latency_ns: ns(done - scheduled),
                            service_ns: ns(done - sent),
                            lag_ns: ns(sent.saturating_duration_since(scheduled)),
                        });
                    }
                } else {
                    stats.failures.http(status, &body, in_window);
                }
                sender = Some(s);
            }
            Ok(Err(e)) => stats.failures.transport(format!("request: {e}")),
            Err(_) => stats.failures.timeout(cfg.request_timeout),
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_counting() {
        let t0 = Instant::now();
        let p = Duration::from_millis(10);
        assert_eq!(ticks_before(t0, p, t0), 0);
        assert_eq!(ticks_before(t0, p, t0 + Duration::from_millis(1)), 1);
        assert_eq!(ticks_before(t0, p, t0 + Duration::from_millis(10)), 1);
        assert_eq!(ticks_before(t0, p, t0 + Duration::from_millis(11)), 2);
        assert_eq!(ticks_before(t0 + p, p, t0), 0);
    }

    #[test]
    fn connections_together_schedule_the_rate() {
        let cfg = OpenLoopConfig {
            rate: 1000.0,
            connections: 8,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(2),
            request_timeout: Duration::from_secs(1),
        };
        let start = Instant::now();
        let (ms, end) = (start + cfg.warmup, start + cfg.warmup + cfg.duration);
        let total: u64 = (0..cfg.connections)
            .map(|c| {
                let first = cfg.first_tick(start, c);
                ticks_before(first, cfg.period(), end) - ticks_before(first, cfg.period(), ms)
            })
            .sum();
        assert!((1999..=2001).contains(&total), "{total}");
    }

    /// A keep-alive HTTP/1.1 server on loopback (plain threads) that answers
    /// every request with `status` and a 2-byte body.
    fn tiny_server(status: u16) -> Result<SocketAddr> {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        std::thread::spawn(move || {
            for mut sock in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let _ = sock.set_nodelay(true);
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while let Ok(n) = sock.read(&mut chunk) {
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            let resp = format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\n\r\nok");
                            if sock.write_all(resp.as_bytes()).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        Ok(addr)
    }

    fn short_run(rate: f64) -> OpenLoopConfig {
        OpenLoopConfig {
            rate,
            connections: 4,
            warmup: Duration::from_millis(100),
            duration: Duration::from_millis(500),
            request_timeout: Duration::from_secs(2),
        }
    }

    #[tokio::test]
    async fn fixed_rate_is_kept_against_a_fast_server() -> Result<()> {
        let addr = tiny_server(200)?;
        let factory: Arc<dyn RequestFactory> = Arc::new(crate::load::FixedRequest::get("/x"));
        let r = run(addr, "x", factory, short_run(400.0), &CpuWatch::default()).await?;
        assert_eq!(r.errors(), 0, "{:?}", r.first_error);
        assert!((195..=205).contains(&r.scheduled), "scheduled {}", r.scheduled);
        assert!(r.answered_ok + r.unsent >= r.scheduled - 1 && r.sent == r.answered_ok);
        assert!(r.latency.p50 >= r.service.p50 && r.latency.max >= r.lag.max);
        // Lenient (a busy machine can stall the test itself); `kept_up` wants 98%.
        assert!(r.achieved_rps >= 0.9 * r.cfg.rate, "achieved {} of {}", r.achieved_rps, r.cfg.rate);
        Ok(())
    }

    #[tokio::test]
    async fn non_2xx_answers_are_errors() -> Result<()> {
        let addr = tiny_server(404)?;
        let factory: Arc<dyn RequestFactory> = Arc::new(crate::load::FixedRequest::get("/x"));
        let r = run(addr, "x", factory, short_run(200.0), &CpuWatch::default()).await?;
        assert!(r.errors() > 0 && r.non_2xx.contains_key(&404) && r.answered_ok == 0);
        assert!(!r.kept_up());
        assert!(r.table().contains("FAILED REQUESTS"));
        Ok(())
    }

    #[test]
    fn percentiles_of_samples() {
        let p = Percentiles::of((1..=1000).map(|i| i * 1_000_000).collect());
        assert_eq!((p.p50, p.p90, p.p99, p.p999, p.max), (500.0, 900.0, 990.0, 999.0, 1000.0));
    }
}
