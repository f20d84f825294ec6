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
    /// Count only the `db_process` processes whose command line contains
    /// this text, e.g. the scratch database's name: a PostgreSQL backend
    /// shows `postgres: USER DBNAME HOST(PORT) STATE` there. Leaves out the
    /// backends of everybody else sharing the database server (and the
    /// server's own background processes: WAL writer, checkpointer).
    pub db_cmdline: Option<String>,
    /// Also sample the server's threads one by one (`/proc/PID/task`), to
    /// split its CPU by thread name (async workers vs. blocking pool vs.
    /// SQLite connection threads).
    pub server_threads: bool,
}

/// Cumulative CPU seconds at one instant.
#[derive(Clone, Debug)]
pub struct CpuSample {
    at: Instant,
    server: Option<f64>,
    db: Option<f64>,
    client: Option<f64>,
    machine: Option<f64>,
    /// Minor page faults so far of the server and of this harness.
    server_faults: Option<u64>,
    client_faults: Option<u64>,
    /// `(tid, comm, ticks)` of every server thread, when asked for.
    threads: Vec<(u32, String, u64)>,
}

/// CPU of the server's threads that share one name, over a window.
#[derive(Clone, Debug, PartialEq)]
pub struct ThreadGroup {
    /// Thread name as the kernel keeps it (`comm`, at most 15 bytes, e.g.
    /// `tokio-runtime-w`).
    pub name: String,
    /// Cores used by all of them together.
    pub cores: f64,
    /// Cores used by each thread, busiest first.
    pub per_thread: Vec<f64>,
}

/// Average cores used between two samples.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuUsage {
    pub server: Option<f64>,
    pub db: Option<f64>,
    pub client: Option<f64>,
    /// Machine busy time not accounted to the three above.
    pub other: Option<f64>,
    /// Minor page faults per second of the server and of this harness: a
    /// process that keeps getting fresh memory from the kernel (and zeroing
    /// it) instead of reusing its own shows up here.
    pub server_faults_per_sec: Option<f64>,
    pub client_faults_per_sec: Option<f64>,
}

impl CpuWatch {
    pub fn sample(&self) -> CpuSample {
        let read = |path: String| std::fs::read_to_string(path).ok();
        let server_text = self.server_pid.and_then(|p| read(format!("/proc/{p}/stat")));
        let client_text = read("/proc/self/stat".into());
        let server = server_text.as_deref().and_then(parse_stat);
        let client = client_text.as_deref().and_then(parse_stat);
        CpuSample {
            at: Instant::now(),
            server: server.map(|s| s.ticks as f64 / clock_ticks_per_sec()),
            db: self
                .db_process
                .as_deref()
                .and_then(|c| processes_named_cpu_secs(c, self.db_cmdline.as_deref())),
            client: client.map(|s| s.ticks as f64 / clock_ticks_per_sec()),
            server_faults: server.map(|s| s.minflt),
            client_faults: client.map(|s| s.minflt),
            machine: machine_busy_cpu_secs(),
            threads: match self.server_pid {
                Some(pid) if self.server_threads => thread_ticks(pid),
                _ => Vec::new(),
            },
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
        let rate = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) if wall > 0.0 => Some(b.saturating_sub(a) as f64 / wall),
            _ => None,
        };
        CpuUsage {
            server,
            db,
            client,
            other,
            server_faults_per_sec: rate(self.server_faults, later.server_faults),
            client_faults_per_sec: rate(self.client_faults, later.client_faults),
        }
    }

    /// Server CPU between the two samples by thread name, busiest group
    /// first. Threads that exited in between are missing (their last ticks
    /// are lost); threads born in between count from zero.
    pub fn threads_until(&self, later: &CpuSample) -> Vec<ThreadGroup> {
        let wall = later.at.duration_since(self.at).as_secs_f64();
        if wall <= 0.0 {
            return Vec::new();
        }
        let mut groups: Vec<ThreadGroup> = Vec::new();
        for (tid, comm, ticks) in &later.threads {
            let before =
                self.threads.iter().find(|(t, c, _)| t == tid && c == comm).map(|(_, _, n)| *n).unwrap_or(0);
            let cores = ticks.saturating_sub(before) as f64 / clock_ticks_per_sec() / wall;
            match groups.iter_mut().find(|g| &g.name == comm) {
                Some(g) => {
                    g.cores += cores;
                    g.per_thread.push(cores);
                }
                None => groups.push(ThreadGroup { name: comm.clone(), cores, per_thread: vec![cores] }),
            }
        }
        for g in &mut groups {
            g.per_thread.sort_by(|a, b| b.total_cmp(a));
        }
        groups.sort_by(|a, b| b.cores.total_cmp(&a.cores));
        groups
    }
}

/// Minor page faults of process `pid` so far (all its threads).
pub fn minor_faults(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat).map(|s| s.minflt)
}

/// `(tid, comm, utime + stime)` of every thread of `pid`.
fn thread_ticks(pid: u32) -> Vec<(u32, String, u64)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if let Ok(stat) = std::fs::read_to_string(entry.path().join("stat"))
            && let Some(st) = parse_stat(&stat)
        {
            out.push((tid, st.comm.to_string(), st.ticks));
        }
    }
    out
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

/// Summed CPU seconds of every process whose command name is `comm` (and,
/// with `cmdline`, whose command line contains that text). Processes that
/// start or exit between two samples are counted only partly (one that
/// exits takes its past CPU with it, which can make the difference
/// negative, shown as 0); long-lived database backends dominate anyway.
fn processes_named_cpu_secs(comm: &str, cmdline: Option<&str>) -> Option<f64> {
    let mut ticks = 0u64;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(stat) = std::fs::read_to_string(entry.path().join("stat"))
            && let Some(st) = parse_stat(&stat)
            && st.comm == comm
            && cmdline.is_none_or(|want| {
                std::fs::read(entry.path().join("cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(want))
            })
        {
            ticks += st.ticks;
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

/// The fields of a `/proc/PID/stat` (or `/proc/PID/task/TID/stat`) line
/// this module uses.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Stat<'a> {
    comm: &'a str,
    /// utime + stime, in clock ticks.
    ticks: u64,
    /// Minor page faults.
    minflt: u64,
}

/// Parse a `/proc/PID/stat` line. The command name (field 2) may contain
/// spaces and parentheses, so it runs to the last `)`.
fn parse_stat(stat: &str) -> Option<Stat<'_>> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?;
    // The rest starts at field 3 (state): minflt is field 10 (index 7),
    // utime field 14 (index 11), stime field 15.
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().take(13).collect();
    let num = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    Some(Stat { comm, ticks: num(11)? + num(12)?, minflt: num(7)? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parsing_handles_spaces_in_comm() {
        let line = "1234 (my (odd) prog) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0";
        assert_eq!(parse_stat(line), Some(Stat { comm: "my (odd) prog", ticks: 300, minflt: 100 }));
    }

    #[test]
    fn machine_busy_excludes_idle_and_iowait() {
        let line = "cpu  100 5 50 1000 30 1 2 3 7 0";
        assert_eq!(parse_machine_busy_ticks(line), Some(100 + 5 + 50 + 1 + 2 + 3));
        assert_eq!(parse_machine_busy_ticks("cpu0 1 2 3 4 5"), None);
    }

    #[test]
    fn own_process_is_measurable() {
        let watch = CpuWatch {
            server_pid: Some(std::process::id()),
            db_process: None,
            db_cmdline: None,
            server_threads: true,
        };
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
            let groups = a.threads_until(&b);
            assert!(!groups.is_empty());
            assert!(groups.iter().all(|g| !g.per_thread.is_empty() && g.cores >= 0.0));
        }
    }
}
