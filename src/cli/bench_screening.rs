//! `scamscreen bench screening`: time to verdict (end of the caller's speech → decision) for
//! one call at a time and for N concurrent screened calls, and scamscreen's memory, with the
//! real model, real UDP SIP/RTP on loopback and espeak-ng speech (the demo's caller/callee).

use crate::cli::demo::Scamscreen;
use anyhow::Context;
use clap::Args;
use scamscreen::demo::{espeak, DemoCallee, DemoCaller};
use scamscreen::store::CallStore;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

pub(crate) const CALLER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
pub(crate) const CALLEE_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const SENTENCE: &str = "Hi, this is Anna from the library. Your book is ready to pick up.";
const BEGIN: &str = "<!-- screen-bench:begin -->";
const END: &str = "<!-- screen-bench:end -->";

#[derive(Args, Debug)]
pub struct ScreeningBenchArgs {
    /// Folder of the default whisper model.
    #[arg(long, default_value = "models", env = "SCAMSCREEN_MODELS")]
    models_dir: PathBuf,
    /// Calls made one after the other.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Calls started together in the concurrent round.
    #[arg(long, default_value_t = 8)]
    concurrent: usize,
    /// Sustained load: at each level this many calls are in progress at any time (each
    /// caller calls again as soon as its call ends); the sweep stops at the first level whose
    /// p95 time to verdict is above 2 s or that leaves a call unscreened.
    #[arg(long, value_delimiter = ',', default_value = "4,8,16,32,48,64")]
    load_levels: Vec<usize>,
    /// Calls each caller makes per load level.
    #[arg(long, default_value_t = 2)]
    calls_per_caller: usize,
    /// Busy loops (`sh -c 'while :; do :; done'`, nice 0) running during the bench, as on a
    /// PBX box doing other work. With loops only the one-at-a-time round runs, reported in
    /// its own section with the slowest calls.
    #[arg(long, default_value_t = 0)]
    background_load: usize,
    /// Measure the second pass instead: `rounds` calls whose caller says something that
    /// leaves the verdict open (a warning), once with `second_pass = false` and once with
    /// `true` (follow-up question off in both), with `background_load` busy loops.
    #[arg(long)]
    two_pass: bool,
    /// Write the results into this markdown file between its screen-bench markers.
    #[arg(long)]
    out: Option<PathBuf>,
}

const BUSY_BEGIN: &str = "<!-- screen-bench-busy:begin -->";
const BUSY_END: &str = "<!-- screen-bench-busy:end -->";

/// Busy loops that are killed when dropped.
pub(crate) struct BusyLoops(Vec<std::process::Child>);

impl BusyLoops {
    pub(crate) fn start(n: usize) -> anyhow::Result<BusyLoops> {
        let mut loops = BusyLoops(Vec::new());
        for _ in 0..n {
            let child = std::process::Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .spawn()
                .context("cannot start a busy loop (sh)")?;
            loops.0.push(child);
        }
        Ok(loops)
    }
}

impl Drop for BusyLoops {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `rounds` calls one at a time with `args.background_load` busy loops beside scamscreen.
fn run_busy(args: &ScreeningBenchArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("cannot make a temporary folder")?;
    let words = espeak(SENTENCE, &dir.path().join("s.wav"))?;
    let callee = DemoCallee::start(CALLEE_IP, Duration::from_millis(200))?;
    let ss = Scamscreen::start_with_ports(&args.models_dir, callee.addr(), dir.path(), 16)?;
    let greeting_ms = crate::cli::demo::greeting_ms();
    let loops = BusyLoops::start(args.background_load)?;
    std::thread::sleep(Duration::from_secs(2));
    let mut failures = 0;
    for i in 0..args.rounds {
        if let Err(e) = one_call(ss.sip, &format!("bench-busy-{i}"), greeting_ms, &words) {
            eprintln!("call {i}: {e:#}");
            failures += 1;
        }
    }
    drop(loops);
    let records = CallStore::open_existing(&ss.db)?.recent(10_000, None)?;
    let mine: Vec<_> = records
        .iter()
        .filter(|r| r.call_id.contains("bench-busy-"))
        .collect();
    let ttv: Vec<u64> = mine.iter().filter_map(|r| r.time_to_verdict_ms).collect();
    let unscreened = mine.iter().filter(|r| r.action == "unscreened").count();
    let fmt = |v: Option<u64>| v.map_or("-".to_string(), |x| format!("{x}"));
    let p95 = percentile(ttv.clone(), 0.95);
    let mut slowest = ttv.clone();
    slowest.sort_unstable_by(|a, b| b.cmp(a));
    slowest.truncate(5);
    let (cpu, cores) = machine();
    let holds = unscreened == 0 && failures == 0 && mine.len() == args.rounds;
    let section = format!(
        "{BUSY_BEGIN}\n## Screening on a busy box: time to verdict (issue 12)\n\n\
         - Command: `make bench` (`scamscreen bench screening --background-load {} --rounds {}`), {}\n\
         - Machine: {cores} cores ({cpu}); {} × `sh -c 'while :; do :; done'` at nice 0 running \
         through the whole round; scamscreen with the default configuration (tiny.en q8_0, \
         `asr_threads = \"auto\"`, screening_timeout_ms 3000)\n\
         - Each call as in the time-to-verdict section: withheld INVITE, the greeting, \
         \"{SENTENCE}\", 4 s of silence, hang-up; one call at a time.\n\n\
         | calls | records | unscreened | failed | p50 ms | p95 ms | max ms |\n|---|---|---|---|---|---|---|\n\
         | {} | {} | {unscreened} | {failures} | {} | {} | {} |\n\n\
         Slowest five (spikes): {} ms. Every call screened: {}. Target p95 ≤ 1500 ms: {}.\n{BUSY_END}\n",
        args.background_load,
        args.rounds,
        chrono_date(),
        args.background_load,
        args.rounds,
        mine.len(),
        fmt(percentile(ttv.clone(), 0.5)),
        fmt(p95),
        fmt(ttv.iter().max().copied()),
        slowest
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        if holds { "yes" } else { "no" },
        if p95.is_some_and(|p| p <= 1500) {
            "met"
        } else {
            "NOT met"
        },
    );
    print!("{section}");
    if let Some(out) = &args.out {
        write_section(out, BUSY_BEGIN, BUSY_END, &section)?;
    }
    Ok(())
}

pub(crate) fn percentile(mut v: Vec<u64>, q: f64) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v.get(i).copied()
}

fn vm_kb(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// One call: greeting, the sentence, wait for the callee to ring, hang up.
pub(crate) fn one_call(
    ss_sip: std::net::SocketAddr,
    name: &str,
    greeting_ms: u64,
    words: &[i16],
) -> anyhow::Result<()> {
    let mut caller = DemoCaller::call(ss_sip, CALLER_IP, name, Duration::from_secs(10))?;
    caller.silence(greeting_ms + 200)?;
    caller.speak(words)?;
    // Silence lets end-of-speech fire; the verdict and the callee's answer follow.
    caller.silence(4000)?;
    caller.hang_up()?;
    Ok(())
}

pub fn run(args: ScreeningBenchArgs) -> anyhow::Result<()> {
    if args.two_pass {
        return crate::cli::bench_two_pass::run(
            &args.models_dir,
            args.rounds,
            args.background_load,
            args.out.as_deref(),
        );
    }
    if args.background_load > 0 {
        return run_busy(&args);
    }
    let dir = tempfile::tempdir().context("cannot make a temporary folder")?;
    let words = espeak(SENTENCE, &dir.path().join("s.wav"))?;
    let callee = DemoCallee::start(CALLEE_IP, Duration::from_millis(200))?;
    // Four RTP ports per call in progress, for the largest round.
    let most = args
        .load_levels
        .iter()
        .copied()
        .chain([args.concurrent])
        .max()
        .unwrap_or(1);
    let ports = u16::try_from(4 * most.max(1) + 8).context("too many calls")?;
    let ss = Scamscreen::start_with_ports(&args.models_dir, callee.addr(), dir.path(), ports)?;
    let pid = ss.child.id();
    let greeting_ms = crate::cli::demo::greeting_ms();
    let idle_rss = vm_kb(pid, "VmRSS:").unwrap_or(0);

    let started = Instant::now();
    for i in 0..args.rounds {
        one_call(ss.sip, &format!("bench-seq-{i}"), greeting_ms, &words)?;
    }
    let seq_secs = started.elapsed().as_secs_f64();
    let after_seq_hwm = vm_kb(pid, "VmHWM:").unwrap_or(0);

    let barrier = Arc::new(Barrier::new(args.concurrent));
    let words = Arc::new(words);
    let sip = ss.sip;
    let handles: Vec<_> = (0..args.concurrent)
        .map(|i| {
            let (b, w) = (barrier.clone(), words.clone());
            std::thread::spawn(move || {
                b.wait();
                one_call(sip, &format!("bench-conc-{i}"), greeting_ms, &w)
            })
        })
        .collect();
    let mut failures = 0;
    for h in handles {
        if !matches!(h.join(), Ok(Ok(()))) {
            failures += 1;
        }
    }
    let peak_rss = vm_kb(pid, "VmHWM:").unwrap_or(0);
    std::thread::sleep(Duration::from_secs(1));

    // Sustained load: `k` callers, each calling again as soon as its call ends, their
    // first calls spread over one call's length so that the calls overlap evenly.
    let call_len = Duration::from_millis(greeting_ms + 200 + words.len() as u64 / 8 + 4_000);
    let mut load_rows = String::new();
    let mut sustained = None;
    for &k in &args.load_levels {
        let per = args.calls_per_caller.max(1);
        let handles: Vec<_> = (0..k)
            .map(|i| {
                let w = words.clone();
                let offset = call_len.mul_f64(i as f64 / k as f64);
                std::thread::spawn(move || {
                    std::thread::sleep(offset);
                    let mut ok = 0;
                    for j in 0..per {
                        let name = format!("bench-load{k}-{i}-{j}");
                        if one_call(sip, &name, greeting_ms, &w).is_ok() {
                            ok += 1;
                        }
                    }
                    ok
                })
            })
            .collect();
        let made: usize = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
        std::thread::sleep(Duration::from_secs(1));
        let recs = CallStore::open_existing(&ss.db)?.recent(10_000, None)?;
        let prefix = format!("bench-load{k}-");
        let mine: Vec<_> = recs
            .iter()
            .filter(|r| r.call_id.contains(&prefix))
            .collect();
        let times: Vec<u64> = mine.iter().filter_map(|r| r.time_to_verdict_ms).collect();
        let unscreened = mine.iter().filter(|r| r.action == "unscreened").count();
        let p95 = percentile(times.clone(), 0.95);
        let holds = made == k * per
            && mine.len() == made
            && unscreened == 0
            && p95.is_some_and(|p| p <= 2_000);
        println!(
            "load {k}: {} calls, {} unscreened, p50 {:?} ms, p95 {:?} ms{}",
            mine.len(),
            unscreened,
            percentile(times.clone(), 0.5),
            p95,
            if holds { "" } else { " (not sustained)" }
        );
        load_rows.push_str(&format!(
            "| {k} | {} | {} | {} | {} | {} | {} |\n",
            mine.len(),
            unscreened,
            percentile(times.clone(), 0.5).map_or("-".into(), |v| v.to_string()),
            p95.map_or("-".into(), |v| v.to_string()),
            times.iter().max().map_or("-".into(), |v| v.to_string()),
            if holds { "yes" } else { "no" }
        ));
        if !holds {
            break;
        }
        sustained = Some(k);
    }

    let store = CallStore::open_existing(&ss.db)?;
    let records = store.recent(10_000, None)?;
    let ttv = |prefix: &str| -> Vec<u64> {
        records
            .iter()
            .filter(|r| r.call_id.contains(prefix))
            .filter_map(|r| r.time_to_verdict_ms)
            .collect()
    };
    let unscreened = |prefix: &str| {
        records
            .iter()
            .filter(|r| r.call_id.contains(prefix) && r.action == "unscreened")
            .count()
    };
    let (seq, conc) = (ttv("bench-seq-"), ttv("bench-conc-"));
    let fmt = |v: Option<u64>| v.map_or("-".to_string(), |x| format!("{x}"));
    // Whisper's compute buffers are allocated by the first transcription (the sequential round),
    // so what the concurrent round adds on top is what the calls themselves cost.
    let per_call_kb = peak_rss.saturating_sub(after_seq_hwm) / args.concurrent.max(1) as u64;
    let (cpu, cores) = machine();
    let section = format!(
        "{BEGIN}\n## Screening: time to verdict (issue 5)\n\n\
         - Command: `make bench` (`scamscreen bench screening --rounds {} --concurrent {}`), {}\n\
         - Machine: {cores} cores ({cpu}); scamscreen with the default configuration (whisper \
         tiny.en q8_0, 1 worker, `asr_threads = \"auto\"`, asr_queue_depth 16, screening_timeout_ms 3000)\n\
         - Each call: withheld INVITE over UDP, PCMU RTP, the greeting, then \"{SENTENCE}\" \
         (espeak-ng), 4 s of silence, hang-up. Time to verdict = end of the caller's speech (end \
         of speech detected) → decision, as scamscreen records it.\n\n\
         | round | calls | verdicts | unscreened | p50 ms | p95 ms | max ms |\n|---|---|---|---|---|---|---|\n\
         | one at a time | {} | {} | {} | {} | {} | {} |\n\
         | {} together | {} | {} | {} | {} | {} | {} |\n\n\
         Memory: scamscreen idle {} MB RSS (model weights loaded), peak {} MB after the sequential \
         round (whisper's compute buffers), peak {} MB with {} screened calls at once: ~{} KB per \
         concurrent screened call on top. Unscreened calls waited longer than screening_timeout_ms \
         for the speech model (or found its queue full) and failed open. \
         Sequential round: {:.1} s for {} calls. Failed calls: {failures}.\n\n\
         Sustained load: N callers each calling again as soon as their call ends (first calls \
         spread over one call's length, {} calls per caller), so about N screened calls are in \
         progress at any time. Sustained = every call screened and p95 ≤ 2 s.\n\n\
         | calls in progress | calls | unscreened | p50 ms | p95 ms | max ms | sustained |\n\
         |---|---|---|---|---|---|---|\n{load_rows}\n\
         Most concurrent screened calls sustained with p95 time to verdict ≤ 2 s: **{}**.\n{END}\n",
        args.rounds,
        args.concurrent,
        chrono_date(),
        args.rounds,
        seq.len(),
        unscreened("bench-seq-"),
        fmt(percentile(seq.clone(), 0.5)),
        fmt(percentile(seq.clone(), 0.95)),
        fmt(seq.iter().max().copied()),
        args.concurrent,
        args.concurrent,
        conc.len(),
        unscreened("bench-conc-"),
        fmt(percentile(conc.clone(), 0.5)),
        fmt(percentile(conc.clone(), 0.95)),
        fmt(conc.iter().max().copied()),
        idle_rss / 1024,
        after_seq_hwm / 1024,
        peak_rss / 1024,
        args.concurrent,
        per_call_kb,
        seq_secs,
        args.rounds,
        args.calls_per_caller,
        sustained.map_or("none of the levels tried".to_string(), |k| k.to_string()),
    );
    print!("{section}");
    if let Some(out) = args.out {
        write_section(&out, BEGIN, END, &section)?;
    }
    Ok(())
}

/// The CPU model and the number of cores, for reports.
pub(crate) fn machine() -> (String, usize) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':').map(|(_, v)| v.trim().to_string()))
        })
        .unwrap_or_else(|| "unknown CPU".into());
    (
        cpu,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    )
}

/// Put `section` into the markdown file `out` between `begin` and `end` (replacing what was
/// there), or append it.
pub(crate) fn write_section(
    out: &std::path::Path,
    begin: &str,
    end: &str,
    section: &str,
) -> anyhow::Result<()> {
    let old = std::fs::read_to_string(out).unwrap_or_default();
    let new = match (old.find(begin), old.find(end)) {
        (Some(a), Some(b)) if a < b => {
            format!(
                "{}{}{}",
                &old[..a],
                section.trim_end(),
                &old[b + end.len()..]
            )
        }
        _ => format!("{}\n\n{section}", old.trim_end()),
    };
    std::fs::write(out, new).with_context(|| format!("cannot write {}", out.display()))
}

/// Today's date (UTC) as YYYY-MM-DD, from the system clock.
pub(crate) fn chrono_date() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let days = secs.div_euclid(86_400);
    // Civil from days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    format!("{}-{m:02}-{d:02}", if m <= 2 { y + 1 } else { y })
}
