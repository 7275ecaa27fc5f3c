//! `scamscreen bench hostile`: the hostile-network figures (issue 13) against a real
//! `scamscreen run` on loopback, each bounded in count and time:
//! - TCP: connections a stranger and a trusted source can hold, descriptors used;
//! - a flood of new INVITEs from the trusted trunk far above the SIP edge's capacity: how
//!   many were shed with 503, taken, or lost, whether the dialogs already up kept working,
//!   memory, and how soon after the flood new calls got through;
//! - a flood of withheld calls: how many were screened, let through unscreened or refused,
//!   with `when_unscreened = "allow"` (the default) and `"503"` (pools).

use crate::cli::bench_screening::{chrono_date, machine, write_section};
use crate::cli::demo::Scamscreen;
use anyhow::Context;
use clap::Args;
use scamscreen::demo::{espeak, DemoCallee, DemoCaller};
use scamscreen::store::CallStore;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BEGIN: &str = "<!-- hostile-bench:begin -->";
const END: &str = "<!-- hostile-bench:end -->";
const PBX_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const TRUNK_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// Outside the trusted networks of the TCP part.
const STRANGER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 66));
/// The SIP edge's measured capacity (BENCHMARKS.md, "SIP edge": 6,000 calls/s passed, the
/// sipp pair's own ceiling), the reference for the flood rate.
const CAPACITY_CALLS_PER_SEC: f64 = 6000.0;
const LEGIT: &str = "Hi, this is Anna from the library. Your book is ready to pick up.";

#[derive(Args, Debug)]
pub struct HostileBenchArgs {
    /// Folder of the default whisper model.
    #[arg(long, default_value = "models", env = "SCAMSCREEN_MODELS")]
    models_dir: PathBuf,
    /// New INVITEs in the trunk flood (sent as fast as one thread can).
    #[arg(long, default_value_t = 40_000)]
    flood: usize,
    /// Withheld callers calling at the same moment.
    #[arg(long, default_value_t = 40)]
    withheld: usize,
    /// Write the results into this markdown file between its hostile-bench markers.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(args: HostileBenchArgs) -> anyhow::Result<()> {
    let tcp = tcp_part(&args.models_dir)?;
    let flood = trunk_flood(&args.models_dir, args.flood)?;
    let allow = withheld_flood(&args.models_dir, args.withheld, "allow")?;
    let refuse = withheld_flood(&args.models_dir, args.withheld, "503")?;
    let (cpu, cores) = machine();
    let rate = flood.sent as f64 / flood.took.as_secs_f64();
    let section = format!(
        "{BEGIN}\n## Hostile network (issue 13)\n\n\
         - Command: `make bench` (`scamscreen bench hostile --flood {} --withheld {}`), {}\n\
         - Machine: {cores} cores ({cpu}); scamscreen `run` with the real model (tiny.en q8_0), \
         everything on loopback.\n\n\
         **TCP** (`tcp_max_per_source` 32, `tcp_max_connections` 1024; trusted 127.0.0.1-2 only): \
         of {} connections from a stranger, {} still open after 1 s; of {} from one trusted \
         source, {} held (the per-source cap); scamscreen's open descriptors {} before, {} while \
         held, {} after the connections closed.\n\n\
         **Trunk flood** (numbered calls, passed through to a PBX answering 200 at once): {} new \
         INVITEs in {:.2} s = {:.0}/s, {:.1}× the SIP edge's capacity ({CAPACITY_CALLS_PER_SEC:.0} \
         calls/s). Answers: {} × 503 with Retry-After (shed), {} × 200 (taken), {} none (lost in \
         socket buffers before scamscreen read them). {} calls up before the flood hung up \
         during it: {} of {} BYEs answered. Peak RSS {} MiB before, {} MiB after. First new \
         call answered 200 that was sent {} ms after the flood's last INVITE. Overload \
         episodes: {}, longest wait of a new request in the core's queue: {} ms.\n\n\
         **Withheld flood** ({} callers at once, each saying \"{LEGIT}\"; ASR queue depth 8):\n\n\
         | when_unscreened | answered | refused 503 | screened | unscreened (rang through) | why unscreened | no final answer |\n\
         |---|---|---|---|---|---|---|\n{}\n{}\n\n\
         Before the fixes (the review's figures): a stranger's idle TCP connections up to the \
         descriptor limit, after which every withheld call got 503 until restart; at 10× \
         capacity from the trunk no 503, about 60 % of INVITEs lost, half of the normal calls \
         failed, RSS 536–553 MB, recovery 2.8–4.3 s; 320 withheld calls in 10 s: 2–14 of 250 \
         answered were screened.\n{END}\n",
        args.flood,
        args.withheld,
        chrono_date(),
        tcp.strangers,
        tcp.strangers_open,
        tcp.trusted,
        tcp.trusted_open,
        tcp.fds_before,
        tcp.fds_held,
        tcp.fds_after,
        flood.sent,
        flood.took.as_secs_f64(),
        rate,
        rate / CAPACITY_CALLS_PER_SEC,
        flood.shed,
        flood.ok,
        flood.sent.saturating_sub(flood.shed + flood.ok),
        flood.dialogs,
        flood.byes_answered,
        flood.dialogs,
        flood.rss_before,
        flood.rss_after,
        flood
            .recovered
            .map_or("none within 3 s".into(), |d| d.as_millis().to_string()),
        flood.episodes.map_or("?".into(), |e| e.to_string()),
        flood.max_wait_ms.map_or("?".into(), |e| e.to_string()),
        args.withheld,
        allow.row(),
        refuse.row(),
    );
    print!("{section}");
    if let Some(out) = &args.out {
        write_section(out, BEGIN, END, &section)?;
    }
    Ok(())
}

struct TcpFigures {
    strangers: usize,
    strangers_open: usize,
    trusted: usize,
    trusted_open: usize,
    fds_before: usize,
    fds_held: usize,
    fds_after: usize,
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn connect_from(ip: IpAddr, to: SocketAddr) -> anyhow::Result<TcpStream> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    sock.bind(&SocketAddr::new(ip, 0).into())?;
    sock.connect_timeout(&to.into(), Duration::from_secs(2))?;
    Ok(sock.into())
}

/// Whether the other side has not closed `s` within `wait`.
fn still_open(s: &TcpStream, wait: Duration) -> bool {
    use std::io::Read;
    let _ = s.set_read_timeout(Some(wait));
    let mut b = [0u8; 16];
    let mut r = s;
    matches!(r.read(&mut b), Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
}

fn tcp_part(models: &Path) -> anyhow::Result<TcpFigures> {
    let dir = tempfile::tempdir()?;
    let callee = DemoCallee::start(PBX_IP, Duration::ZERO)?;
    let ss = Scamscreen::start_trusting(
        models,
        callee.addr(),
        dir.path(),
        8,
        None,
        &["127.0.0.1/32", "127.0.0.2/32"],
    )?;
    let pid = ss.child.id();
    let fds_before = fds(pid);
    let strangers: Vec<TcpStream> = (0..500)
        .filter_map(|_| connect_from(STRANGER_IP, ss.sip).ok())
        .collect();
    let strangers_open = strangers
        .iter()
        .filter(|s| still_open(s, Duration::from_millis(2)))
        .count();
    std::thread::sleep(Duration::from_secs(1));
    let strangers_open = strangers_open.min(
        strangers
            .iter()
            .filter(|s| still_open(s, Duration::from_millis(2)))
            .count(),
    );
    let trusted: Vec<TcpStream> = (0..100)
        .filter_map(|_| connect_from(TRUNK_IP, ss.sip).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let trusted_open = trusted
        .iter()
        .filter(|s| still_open(s, Duration::from_millis(5)))
        .count();
    let fds_held = fds(pid);
    let (n_strangers, n_trusted) = (strangers.len(), trusted.len());
    drop(strangers);
    drop(trusted);
    std::thread::sleep(Duration::from_millis(500));
    Ok(TcpFigures {
        strangers: n_strangers,
        strangers_open,
        trusted: n_trusted,
        trusted_open,
        fds_before,
        fds_held,
        fds_after: fds(pid),
    })
}

/// The header lines a UAS copies into its response (RFC 3261 §8.2.6.2).
fn copied(req: &str) -> String {
    req.lines()
        .filter(|l| {
            ["Via:", "From:", "Call-ID:", "CSeq:", "Record-Route:"]
                .iter()
                .any(|h| l.starts_with(h))
        })
        .map(|l| format!("{l}\r\n"))
        .collect()
}

/// A PBX answering every INVITE 200 at once and BYE/OPTIONS 200; ACKs ignored.
fn fast_pbx(sock: UdpSocket, stop: Arc<AtomicBool>) {
    let _ = sock.set_read_timeout(Some(Duration::from_millis(50)));
    let me = sock.local_addr().ok();
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let req = String::from_utf8_lossy(&buf[..n]);
        if req.starts_with("ACK ") || req.starts_with("SIP/2.0") {
            continue;
        }
        let Some(to) = req.lines().find(|l| l.starts_with("To:")) else {
            continue;
        };
        let to = if to.contains(";tag=") {
            to.to_string()
        } else {
            format!("{to};tag=pbx")
        };
        let contact = match (req.starts_with("INVITE "), me) {
            (true, Some(me)) => format!("Contact: <sip:100@{me}>\r\n"),
            _ => String::new(),
        };
        let resp = format!(
            "SIP/2.0 200 OK\r\n{}{to}\r\n{contact}Content-Length: 0\r\n\r\n",
            copied(&req)
        );
        let _ = sock.send_to(resp.as_bytes(), from);
    }
}

fn numbered_invite(from: SocketAddr, to: SocketAddr, call_id: &str) -> String {
    let body = scamscreen::demo::pcmu_sdp(SocketAddr::new(from.ip(), 40_000));
    format!(
        "INVITE sip:100@{to} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from};branch=z9hG4bK{call_id};rport\r\nMax-Forwards: 70\r\n\
         From: <sip:+4930123456@trunk.example>;tag=t{call_id}\r\n\
         To: <sip:100@{to}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:caller@{from}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn status_of(resp: &str) -> Option<u16> {
    resp.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

/// Everything that arrives on `sock` within `wait`.
fn responses(sock: &UdpSocket, wait: Duration) -> Vec<String> {
    let deadline = Instant::now() + wait;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65_536];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let _ = sock.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => out.push(String::from_utf8_lossy(&buf[..n]).to_string()),
            Err(_) => break,
        }
    }
    out
}

fn peak_rss_mib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
        / 1024
}

struct FloodFigures {
    sent: usize,
    took: Duration,
    shed: usize,
    ok: usize,
    dialogs: usize,
    byes_answered: usize,
    rss_before: u64,
    rss_after: u64,
    recovered: Option<Duration>,
    episodes: Option<u64>,
    max_wait_ms: Option<u64>,
}

fn trunk_flood(models: &Path, flood: usize) -> anyhow::Result<FloodFigures> {
    let dir = tempfile::tempdir()?;
    let sock = UdpSocket::bind((PBX_IP, 0))?;
    let pbx = sock.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let pbx_thread = {
        let stop = stop.clone();
        std::thread::spawn(move || fast_pbx(sock, stop))
    };
    let config = dir.path().join("bench.toml");
    std::fs::write(&config, "[sip]\nupstream_probe_secs = 0\n")?;
    let mut ss = Scamscreen::start_with_config(models, pbx, dir.path(), 8, Some(&config))?;
    let target = ss.sip;
    // Calls up before the flood.
    let phones = UdpSocket::bind((TRUNK_IP, 0))?;
    let me = phones.local_addr()?;
    let dialogs = 20;
    for i in 0..dialogs {
        phones.send_to(
            numbered_invite(me, target, &format!("up{i}")).as_bytes(),
            target,
        )?;
    }
    let got = responses(&phones, Duration::from_secs(2));
    let mut to_headers = Vec::new();
    for i in 0..dialogs {
        let cid = format!("Call-ID: up{i}\r");
        let to = got
            .iter()
            .find(|r| status_of(r) == Some(200) && r.contains(&cid))
            .and_then(|r| r.lines().find(|l| l.starts_with("To:")))
            .with_context(|| format!("call up{i} was not set up before the flood"))?;
        to_headers.push(to.to_string());
    }
    let pid = ss.child.id();
    let rss_before = peak_rss_mib(pid);
    let flooder = UdpSocket::bind((TRUNK_IP, 0))?;
    let flood_addr = flooder.local_addr()?;
    let counter = flooder.try_clone()?;
    let counting = std::thread::spawn(move || {
        let (mut shed, mut ok) = (0usize, 0usize);
        let mut buf = vec![0u8; 65_536];
        let _ = counter.set_read_timeout(Some(Duration::from_secs(3)));
        while let Ok((n, _)) = counter.recv_from(&mut buf) {
            let r = String::from_utf8_lossy(&buf[..n]);
            match status_of(&r) {
                Some(503) if r.contains("Retry-After:") => shed += 1,
                Some(200) => ok += 1,
                _ => {}
            }
        }
        (shed, ok)
    });
    let flooding = std::thread::spawn(move || {
        let started = Instant::now();
        for i in 0..flood {
            let _ = flooder.send_to(
                numbered_invite(flood_addr, target, &format!("flood{i}")).as_bytes(),
                target,
            );
        }
        let took = started.elapsed();
        let Ok(probe) = UdpSocket::bind((TRUNK_IP, 0)) else {
            return (took, None);
        };
        let Ok(probe_addr) = probe.local_addr() else {
            return (took, None);
        };
        let end = Instant::now();
        let mut sent = Vec::new();
        for i in 0..60 {
            let _ = probe.send_to(
                numbered_invite(probe_addr, target, &format!("after{i}")).as_bytes(),
                target,
            );
            sent.push(Instant::now());
            let got = responses(&probe, Duration::from_millis(50));
            if let Some(j) = (0..=i).find(|j| {
                got.iter().any(|r| {
                    status_of(r) == Some(200) && r.contains(&format!("Call-ID: after{j}\r"))
                })
            }) {
                return (took, Some(sent[j].saturating_duration_since(end)));
            }
        }
        (took, None)
    });
    // The calls that were up hang up during the flood, retransmitting as a UA does.
    std::thread::sleep(Duration::from_millis(100));
    let mut unanswered: std::collections::BTreeSet<usize> = (0..dialogs).collect();
    let mut wait = Duration::from_millis(500);
    let give_up = Instant::now() + Duration::from_secs(16);
    while !unanswered.is_empty() && Instant::now() < give_up {
        for &i in &unanswered {
            let bye = format!(
                "BYE sip:100@{pbx} SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {me};branch=z9hG4bKbye{i};rport\r\nMax-Forwards: 70\r\n\
                 From: <sip:+4930123456@trunk.example>;tag=tup{i}\r\n{}\r\n\
                 Call-ID: up{i}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
                to_headers[i]
            );
            phones.send_to(bye.as_bytes(), target)?;
        }
        for r in responses(&phones, wait) {
            if status_of(&r) == Some(200) && r.contains("CSeq: 2 BYE") {
                if let Some(i) = (0..dialogs).find(|i| r.contains(&format!("Call-ID: up{i}\r"))) {
                    unanswered.remove(&i);
                }
            }
        }
        wait = (wait * 2).min(Duration::from_secs(4));
    }
    let (took, recovered) = flooding
        .join()
        .map_err(|_| anyhow::anyhow!("flood thread"))?;
    let (shed, ok) = counting
        .join()
        .map_err(|_| anyhow::anyhow!("counting thread"))?;
    let rss_after = peak_rss_mib(pid);
    let counters = ss.stop_and_counters();
    stop.store(true, Ordering::Relaxed);
    let _ = pbx_thread.join();
    Ok(FloodFigures {
        sent: flood,
        took,
        shed,
        ok,
        dialogs,
        byes_answered: dialogs - unanswered.len(),
        rss_before,
        rss_after,
        recovered,
        episodes: counters
            .as_ref()
            .and_then(|c| c["overload_episodes"].as_u64()),
        max_wait_ms: counters
            .as_ref()
            .and_then(|c| c["max_new_request_wait_ms"].as_u64()),
    })
}

struct WithheldFigures {
    policy: &'static str,
    answered: usize,
    refused: usize,
    screened: usize,
    unscreened: usize,
    no_answer: usize,
    /// Why the unscreened calls were (count × reason header).
    why: String,
}

impl WithheldFigures {
    fn row(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            self.policy,
            self.answered,
            self.refused,
            self.screened,
            self.unscreened,
            if self.why.is_empty() { "-" } else { &self.why },
            self.no_answer
        )
    }
}

fn withheld_flood(
    models: &Path,
    callers: usize,
    policy: &'static str,
) -> anyhow::Result<WithheldFigures> {
    let dir = tempfile::tempdir()?;
    let words = espeak(LEGIT, &dir.path().join("s.wav"))?;
    let callee = DemoCallee::start(PBX_IP, Duration::from_millis(200))?;
    let config = dir.path().join("bench.toml");
    std::fs::write(
        &config,
        format!("[screening]\nwhen_unscreened = \"{policy}\"\nasr_queue_depth = 8\n"),
    )?;
    let ports = u16::try_from(4 * callers + 8).unwrap_or(u16::MAX);
    let ss =
        Scamscreen::start_with_config(models, callee.addr(), dir.path(), ports, Some(&config))?;
    let greeting_ms = crate::cli::demo::greeting_ms();
    let barrier = std::sync::Barrier::new(callers);
    let finals: Vec<Option<u16>> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..callers)
            .map(|i| {
                let (barrier, words, sip) = (&barrier, &words, ss.sip);
                s.spawn(move || {
                    barrier.wait();
                    let name = format!("hostile-{policy}-{i}");
                    let mut c = DemoCaller::invite(sip, TRUNK_IP, &name, None).ok()?;
                    let status = c.wait_final(Duration::from_secs(10)).ok()??;
                    if status == 200 {
                        let _ = c.silence(greeting_ms + 200);
                        let _ = c.speak(words);
                        let _ = c.silence(5000);
                        let _ = c.hang_up();
                    }
                    Some(status)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap_or(None))
            .collect()
    });
    std::thread::sleep(Duration::from_secs(2));
    let records = CallStore::open_existing(&ss.db)?.recent(10_000, None)?;
    let mine: Vec<_> = records
        .iter()
        .filter(|r| r.call_id.contains(&format!("hostile-{policy}-")))
        .collect();
    let unscreened = mine.iter().filter(|r| r.action == "unscreened").count();
    // Why they rang through unscreened: the reason header the phone saw.
    let mut why = std::collections::BTreeMap::<String, usize>::new();
    for call in callee.calls() {
        if call.scamscreen_header("verdict") == Some("unscreened") {
            let reason = call.scamscreen_header("reason").unwrap_or("?").to_string();
            *why.entry(reason).or_default() += 1;
        }
    }
    Ok(WithheldFigures {
        why: why
            .iter()
            .map(|(r, n)| format!("{n}× {r}"))
            .collect::<Vec<_>>()
            .join("; "),
        policy,
        answered: finals.iter().filter(|f| **f == Some(200)).count(),
        refused: finals.iter().filter(|f| **f == Some(503)).count(),
        screened: mine.len() - unscreened,
        unscreened,
        no_answer: finals.iter().filter(|f| f.is_none()).count(),
    })
}
