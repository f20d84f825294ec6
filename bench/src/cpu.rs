//! CPU accounting from Linux `/proc`, to tell who the bottleneck was during
//! a measured window on a small shared machine: the server, its database
//! (when it is a separate process, e.g. PostgreSQL backends), this load
//! generator, or something else entirely. Diagnostics only: every figure is
//! `None` where `/proc` is unavailable.

use std::sync::OnceLock;
use std::time::Instant;

/// Which processes to attribute CPU to.
#[derive(Clone, Debug, Default)]
pub struct CpuWatch {
    pub server_pid: Option<u32>,
    /// Command name (`comm`) of database processes, e.g. `postgres`. Every
    /// process of that name counts, including ones serving other clients.
    pub db_process: Option<String>,
}

/// Cumulative CPU seconds at one instant.
#[derive(Clone, Debug)]
pub struct CpuSample {
    at: Instant,
    server: Option<f64>,
    db: Option<f64>,
    client: Option<f64>,
    machine: Option<f64>,
}

/// Average cores used between two samples.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuUsage {
    pub server: Option<f64>,
    pub db: Option<f64>,
    pub client: Option<f64>,
    /// Machine busy time not accounted to the three above.
    pub other: Option<f64>,
}

impl CpuWatch {
    pub fn sample(&self) -> CpuSample {
        CpuSample {
            at: Instant::now(),
            server: self.server_pid.and_then(|p| process_cpu_secs(&format!("/proc/{p}/stat"))),
            db: self.db_process.as_deref().and_then(processes_named_cpu_secs),
            client: process_cpu_secs("/proc/self/stat"),
            machine: machine_busy_cpu_secs(),
        }
    }
}

impl CpuSample {
    pub fn usage_until(&self, later: &CpuSample) -> CpuUsage {
        let wall = later.at.duration_since(self.at).as_secs_f64();
        let cores = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if wall > 0.0 => Some(((b - a) / wall).max(0.0)),
            _ => None,
        };
        let server = cores(self.server, later.server);
        let db = cores(self.db, later.db);
        let client = cores(self.client, later.client);
        let other = cores(self.machine, later.machine)
            .map(|all| (all - server.unwrap_or(0.0) - db.unwrap_or(0.0) - client.unwrap_or(0.0)).max(0.0));
        CpuUsage { server, db, client, other }
    }
}

fn clock_ticks_per_sec() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// User + system CPU seconds of one process (all its threads), from its
/// `/proc/PID/stat` file.
fn process_cpu_secs(stat_path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    parse_stat(&stat).map(|(_, ticks)| ticks as f64 / clock_ticks_per_sec())
}

/// Summed CPU seconds of every process whose command name is `comm`.
/// Processes that start or exit between two samples are counted only
/// partly; long-lived database backends dominate anyway.
fn processes_named_cpu_secs(comm: &str) -> Option<f64> {
    let mut ticks = 0u64;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(stat) = std::fs::read_to_string(entry.path().join("stat"))
            && let Some((c, t)) = parse_stat(&stat)
            && c == comm
        {
            ticks += t;
        }
    }
    Some(ticks as f64 / clock_ticks_per_sec())
}

/// Busy CPU seconds of the whole machine, summed over cores (the `cpu` line
/// of `/proc/stat` minus idle and iowait).
fn machine_busy_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_machine_busy_ticks(stat.lines().next()?).map(|t| t as f64 / clock_ticks_per_sec())
}

fn parse_machine_busy_ticks(cpu_line: &str) -> Option<u64> {
    let mut fields = cpu_line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    // user nice system idle iowait irq softirq steal [guest guest_nice];
    // guest time is already included in user/nice, so stop after steal.
    let v: Vec<u64> = fields.take(8).map(|f| f.parse().ok()).collect::<Option<_>>()?;
    if v.len() < 5 {
        return None;
    }
    Some(v.iter().sum::<u64>() - v[3] - v[4])
}

/// (comm, utime + stime) from a `/proc/PID/stat` line. The command name
/// (field 2) may contain spaces and parentheses, so it runs to the last `)`.
fn parse_stat(stat: &str) -> Option<(&str, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?;
    let mut fields = stat[close + 1..].split_whitespace();
    // The rest starts at field 3 (state); utime is field 14 → index 11.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((comm, utime + stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parsing_handles_spaces_in_comm() {
        let line = "1234 (my (odd) prog) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0";
        assert_eq!(parse_stat(line), Some(("my (odd) prog", 300)));
    }

    #[test]
    fn machine_busy_excludes_idle_and_iowait() {
        let line = "cpu  100 5 50 1000 30 1 2 3 7 0";
        assert_eq!(parse_machine_busy_ticks(line), Some(100 + 5 + 50 + 1 + 2 + 3));
        assert_eq!(parse_machine_busy_ticks("cpu0 1 2 3 4 5"), None);
    }

    #[test]
    fn own_process_is_measurable() {
        let watch = CpuWatch { server_pid: Some(std::process::id()), db_process: None };
        let a = watch.sample();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        let b = watch.sample();
        let u = a.usage_until(&b);
        assert!(x != 1 || u.client.is_some());
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(u.server.is_some() && u.client.is_some() && u.other.is_some());
            assert_eq!(u.db, None);
        }
    }
}
