//! How many CPU threads a transcription may use right now.
//!
//! whisper.cpp (ggml without OpenMP) synchronises its threads after every operation of the
//! graph with a barrier that spins: a thread that arrives first burns its core until the
//! others arrive. On an idle box that is the fastest way to wait. On a busy one it is a
//! disaster: when the scheduler takes one of the threads away for a time slice (a few ms),
//! the others spin for nothing, hundreds of times per transcription. Measured on 2 cores with
//! two busy loops beside it (issue 12): 2 threads 10× slower than idle, 1 thread 1.4×.
//!
//! So the thread count is chosen per transcription from the CPU time actually free: a
//! sampler reads `/proc/stat` (only the CPUs this process may run on) and the process's own
//! CPU time from `/proc/self/stat` a few times a second; what the CPUs did beyond this
//! process is the load of others. A transcription gets as many threads as whole cores are
//! free (at least 1, at most the configured maximum). Idle: every thread, spinning is
//! cheap. Busy: one thread, which has no barrier to spin at. The same holds in a container:
//! [`std::thread::available_parallelism`] (affinity and cgroup quota) caps the maximum.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How often the sampler reads the counters.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// The first measurement's window (taken before the sampler returns).
const FIRST_LOOK: Duration = Duration::from_millis(100);
/// Samples over which the load of others is averaged (with [`SAMPLE_EVERY`]: about 1 s).
const WINDOW: usize = 5;
/// A core counts as free when at most this much of it is busy with others' work: 0.25 of a
/// core busy elsewhere already makes a second spinning thread lose more than it gains.
const FREE_MARGIN: f64 = 0.25;

/// How many threads a transcription uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadPolicy {
    /// As many as whole cores are free right now, between 1 and `max`.
    Auto { max: usize },
    /// Always this many (benchmarks, or an operator who knows the box).
    Fixed(usize),
}

impl ThreadPolicy {
    /// `auto` capped at the CPUs this process may use (affinity, cgroup quota), at most 4:
    /// tiny/base gain little beyond 4 threads and a PBX box has other work.
    pub fn auto() -> ThreadPolicy {
        ThreadPolicy::Auto {
            max: allowed_cpus().clamp(1, 4),
        }
    }

    /// Parse `auto` or a thread count (config files and command lines).
    pub fn parse(s: &str) -> Result<ThreadPolicy, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("auto") {
            return Ok(ThreadPolicy::auto());
        }
        match s.parse::<usize>() {
            Ok(n) if (1..=64).contains(&n) => Ok(ThreadPolicy::Fixed(n)),
            _ => Err(format!(
                "threads must be `auto` or a number from 1 to 64, not `{s}`"
            )),
        }
    }

    /// The most threads this policy ever uses.
    pub fn max(self) -> usize {
        match self {
            ThreadPolicy::Auto { max } => max.max(1),
            ThreadPolicy::Fixed(n) => n.max(1),
        }
    }
}

impl std::fmt::Display for ThreadPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ThreadPolicy::Auto { max } => write!(f, "auto (1–{max} by free CPU)"),
            ThreadPolicy::Fixed(n) => write!(f, "{n}"),
        }
    }
}

/// CPUs this process may run on (affinity and cgroup quota), at least 1.
pub fn allowed_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Threads for one transcription when `free_cores` cores are free of others' work.
pub fn threads_for(policy: ThreadPolicy, free_cores: Option<f64>) -> usize {
    match policy {
        ThreadPolicy::Fixed(n) => n.max(1),
        ThreadPolicy::Auto { max } => match free_cores {
            // Unknown (no /proc): every thread, as whisper.cpp would.
            None => max.max(1),
            Some(free) => ((free + FREE_MARGIN).floor().max(1.0) as usize).clamp(1, max.max(1)),
        },
    }
}

/// CPU counters at one moment, in clock ticks: over the CPUs this process may use, all time
/// and idle time (`/proc/stat`), and this process's own user + system time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuSnapshot {
    pub total: u64,
    pub idle: u64,
    pub own: u64,
    /// CPUs the totals cover.
    pub cpus: usize,
}

/// Cores' worth of work done by others between two snapshots (0 when nothing can be said).
pub fn others_load(a: &CpuSnapshot, b: &CpuSnapshot) -> Option<f64> {
    if b.cpus == 0 || b.cpus != a.cpus || b.total <= a.total {
        return None;
    }
    let total = (b.total - a.total) as f64;
    let busy = total - b.idle.saturating_sub(a.idle) as f64;
    let own = b.own.saturating_sub(a.own) as f64;
    let per_cpu = total / b.cpus as f64;
    Some(((busy - own) / per_cpu).clamp(0.0, b.cpus as f64))
}

/// Parse `/proc/stat`: sum the `cpuN` lines whose N is in `allowed` (all when `None`).
pub fn parse_proc_stat(text: &str, allowed: Option<&[usize]>) -> Option<(u64, u64, usize)> {
    let (mut total, mut idle, mut cpus) = (0u64, 0u64, 0usize);
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(name) = fields.next() else { continue };
        let Some(n) = name.strip_prefix("cpu").filter(|n| !n.is_empty()) else {
            continue;
        };
        let Ok(n) = n.parse::<usize>() else { continue };
        if allowed.is_some_and(|a| !a.contains(&n)) {
            continue;
        }
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        let v: Vec<u64> = fields.take(8).filter_map(|f| f.parse().ok()).collect();
        if v.len() < 5 {
            return None;
        }
        total += v.iter().sum::<u64>();
        idle += v[3] + v[4];
        cpus += 1;
    }
    (cpus > 0).then_some((total, idle, cpus))
}

/// Parse `/proc/self/stat`: utime + stime (fields 14 and 15; the command name in field 2 may
/// hold spaces and parentheses, so counting starts after its last `)`).
pub fn parse_self_stat(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    // After ")": state is field 3, so utime (14) is index 11 and stime (15) index 12.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// The CPUs in this process's affinity mask (Linux), `None` when unknown.
fn affinity() -> Option<Vec<usize>> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it for this process.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
                return None;
            }
            let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
                .filter(|&i| libc::CPU_ISSET(i, &set))
                .collect();
            (!cpus.is_empty()).then_some(cpus)
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// Read the counters now (`None` without /proc).
pub fn snapshot(allowed: Option<&[usize]>) -> Option<CpuSnapshot> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let own = parse_self_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
    let (total, idle, cpus) = parse_proc_stat(&stat, allowed)?;
    Some(CpuSnapshot {
        total,
        idle,
        own,
        cpus,
    })
}

/// The latest measurement, shared between the sampler and the ASR workers.
#[derive(Debug)]
pub struct CpuLoad {
    /// Free cores × 1000, or `u32::MAX` when unknown.
    free_milli: AtomicU32,
}

impl CpuLoad {
    /// Cores free of others' work, averaged over the last second (`None` when unknown).
    pub fn free_cores(&self) -> Option<f64> {
        match self.free_milli.load(Ordering::Relaxed) {
            u32::MAX => None,
            m => Some(f64::from(m) / 1000.0),
        }
    }

    fn set(&self, free: Option<f64>) {
        let m = free.map_or(u32::MAX, |f| (f.max(0.0) * 1000.0) as u32);
        self.free_milli.store(m, Ordering::Relaxed);
    }
}

/// A background thread that keeps a [`CpuLoad`] current; it stops when the last handle to
/// the load is dropped.
pub fn start_sampler() -> Arc<CpuLoad> {
    let load = Arc::new(CpuLoad {
        free_milli: AtomicU32::new(u32::MAX),
    });
    let allowed = affinity();
    let limit = allowed_cpus() as f64;
    // A first measurement before returning, so the first transcription already knows.
    let first = snapshot(allowed.as_deref());
    if let Some(a) = first {
        std::thread::sleep(FIRST_LOOK);
        if let Some(b) = snapshot(allowed.as_deref()) {
            if let Some(others) = others_load(&a, &b) {
                load.set(Some((b.cpus as f64).min(limit) - others));
            }
        }
    }
    let weak: Weak<CpuLoad> = Arc::downgrade(&load);
    let spawned = std::thread::Builder::new()
        .name("asr-cpu".into())
        .spawn(move || {
            let mut ring: std::collections::VecDeque<CpuSnapshot> =
                std::collections::VecDeque::with_capacity(WINDOW + 1);
            loop {
                let Some(load) = weak.upgrade() else { return };
                let Some(now) = snapshot(allowed.as_deref()) else {
                    load.set(None);
                    return;
                };
                ring.push_back(now);
                if ring.len() > WINDOW + 1 {
                    ring.pop_front();
                }
                if let (Some(first), Some(last)) = (ring.front(), ring.back()) {
                    if let Some(others) = others_load(first, last) {
                        load.set(Some((last.cpus as f64).min(limit) - others));
                    }
                }
                drop(load);
                std::thread::sleep(SAMPLE_EVERY);
            }
        });
    if spawned.is_err() {
        tracing::warn!("cannot start the CPU sampler; the speech model uses every thread");
    }
    load
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  300 0 100 1000 0 0 0 0 0 0\n\
        cpu0 100 0 50 500 0 0 0 0 0 0\n\
        cpu1 200 0 50 500 0 0 0 0 0 0\n\
        intr 1 2 3\nctxt 5\n";

    #[test]
    fn proc_stat_sums_the_allowed_cpus() {
        assert_eq!(parse_proc_stat(STAT, None), Some((1400, 1000, 2)));
        assert_eq!(parse_proc_stat(STAT, Some(&[1])), Some((750, 500, 1)));
        assert_eq!(parse_proc_stat("intr 1\n", None), None);
        assert_eq!(parse_proc_stat("cpu0 1 2\n", None), None);
    }

    #[test]
    fn self_stat_survives_odd_command_names() {
        let s = "4242 (a b) c)) S 1 2 3 4 5 6 7 8 9 10 123 45 0 0 20 0 9 0";
        assert_eq!(parse_self_stat(s), Some(168));
        assert_eq!(parse_self_stat("garbage"), None);
    }

    fn snap(total: u64, idle: u64, own: u64) -> CpuSnapshot {
        CpuSnapshot {
            total,
            idle,
            own,
            cpus: 2,
        }
    }

    #[test]
    fn others_load_leaves_out_our_own_work() {
        // 1 s on 2 CPUs (200 ticks): both busy, half of it ours → others used one core.
        let l = others_load(&snap(0, 0, 0), &snap(200, 0, 100)).unwrap();
        assert!((l - 1.0).abs() < 1e-9);
        // Idle box while we spin on both cores: nobody else.
        let l = others_load(&snap(0, 0, 0), &snap(200, 0, 200)).unwrap();
        assert!(l.abs() < 1e-9);
        // Idle box, nothing running.
        let l = others_load(&snap(0, 0, 0), &snap(200, 200, 0)).unwrap();
        assert!(l.abs() < 1e-9);
        assert_eq!(others_load(&snap(5, 0, 0), &snap(5, 0, 0)), None);
    }

    #[test]
    fn threads_follow_the_free_cores() {
        let auto = ThreadPolicy::Auto { max: 2 };
        assert_eq!(threads_for(auto, Some(2.0)), 2);
        assert_eq!(threads_for(auto, Some(1.8)), 2);
        // Two busy loops, or one, or a transcoder using half a core: one thread.
        assert_eq!(threads_for(auto, Some(0.0)), 1);
        assert_eq!(threads_for(auto, Some(1.0)), 1);
        assert_eq!(threads_for(auto, Some(1.5)), 1);
        assert_eq!(threads_for(auto, None), 2);
        assert_eq!(threads_for(ThreadPolicy::Auto { max: 4 }, Some(3.9)), 4);
        assert_eq!(threads_for(ThreadPolicy::Fixed(3), Some(0.0)), 3);
    }

    #[test]
    fn policies_parse() {
        assert!(matches!(
            ThreadPolicy::parse("auto"),
            Ok(ThreadPolicy::Auto { .. })
        ));
        assert_eq!(ThreadPolicy::parse(" 2 "), Ok(ThreadPolicy::Fixed(2)));
        assert!(ThreadPolicy::parse("0").is_err());
        assert!(ThreadPolicy::parse("many").is_err());
    }

    #[test]
    fn the_sampler_measures_this_box() {
        let load = start_sampler();
        if std::path::Path::new("/proc/stat").exists() {
            let free = load.free_cores().expect("a first measurement at once");
            assert!((0.0..=allowed_cpus() as f64).contains(&free), "{free}");
        }
    }
}
