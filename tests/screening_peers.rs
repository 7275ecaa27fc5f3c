//! Screened calls with real peers: a sipp caller that plays espeak-ng speech from a pcap
//! (tests/peers/make_rtp_pcap.py + play_pcap_audio), scamscreen with the real whisper model,
//! and on the callee side a sipp UAS (blocked call: must never ring) or baresip answering
//! automatically (allowed call: rung and bridged). Command lines: tests/peers/README.md.

mod common;

use common::screening::{Scamscreen, LOOPBACK};
use scamscreen::demo;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// sipp with -m 1 counts an OPTIONS it answers as its one call: no health probes of the
/// upstream in these tests (real PBXs answer them, see tests/hostile_network.rs).
const NO_PROBES: &str = "[sip]\nupstream_probe_secs = 0\n";

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn require(tools: &[&str]) {
    for t in tools {
        assert!(
            have(t),
            "{t} is required (apt-get install sip-tester baresip espeak-ng python3; make deps)"
        );
    }
}

/// A port free on both UDP and TCP.
fn free_port() -> u16 {
    demo::free_sip_port(LOOPBACK).unwrap()
}

fn wait_udp_port(port: u16) {
    let hex = format!(":{port:04X} ");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
        if table.lines().any(|l| l.contains(&hex)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on UDP port {port}");
}

/// A child (always `timeout -k 2 N prog ...`) that is stopped if the test lets go of it.
/// SIGTERM first: `timeout` passes it on to the program and SIGKILLs it 2 s later. A bare
/// SIGKILL would kill only `timeout` and leave the program running, orphaned.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            self.terminate(Duration::from_secs(4));
        }
    }
}

impl Proc {
    /// Exit code, waiting at most `limit`; -2 (and killed) past it, -1 for a signal.
    fn wait(&mut self, limit: Duration) -> i32 {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(s)) = self.0.try_wait() {
                return s.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                // `timeout` has had its TERM (or its own limit) by now if it was going to
                // exit; this only reaps a hung wrapper.
                unsafe {
                    libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM);
                }
                std::thread::sleep(Duration::from_millis(2500));
                let _ = self.0.kill();
                let _ = self.0.wait();
                return -2;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM (so the program can flush and exit), then wait.
    fn terminate(&mut self, limit: Duration) -> i32 {
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM);
        }
        self.wait(limit)
    }
}

/// `dir/speech.pcap`: espeak-ng speech as RTP/PCMU, after 5.2 s of silence (scamscreen's
/// greeting is 5.0 s) and followed by `trail_ms` of silence (ends the listening early).
fn speech_pcap(dir: &Path, text: &str, trail_ms: u32) {
    let wav = dir.join("speech.wav");
    let pcm = demo::espeak(text, &dir.join("speech-espeak.wav")).unwrap();
    demo::write_wav(&wav, &pcm).unwrap();
    let mut cmd = Command::new("python3");
    cmd.arg(common::root().join("tests/peers/make_rtp_pcap.py"))
        .arg(&wav)
        .arg(dir.join("speech.pcap"))
        .args(["--lead-silence-ms", "5200"])
        .args(["--trail-silence-ms", &trail_ms.to_string()]);
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// sipp under `timeout`, cwd = `dir` (play_pcap_audio finds speech.pcap there, and the
/// -trace_err/-trace_msg logs land there).
fn sipp(
    scenario: &str,
    port: u16,
    target: Option<u16>,
    secs: u32,
    extra: &[&str],
    dir: &Path,
) -> Proc {
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "2", &(secs + 5).to_string(), "sipp", "-sf"])
        .arg(common::root().join("tests/peers/sipp").join(scenario))
        .args(["-i", "127.0.0.1", "-p", &port.to_string()])
        .args([
            "-m",
            "1",
            "-nostdin",
            "-timeout",
            &secs.to_string(),
            "-timeout_error",
        ])
        .args(["-trace_err", "-trace_msg"])
        .args(extra)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(t) = target {
        cmd.arg(format!("127.0.0.1:{t}"));
    }
    Proc(cmd.spawn().expect("start sipp"))
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Everything in the test's temp dir that explains a failure.
fn logs(dir: &Path) -> String {
    let mut s = String::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".log") || name.ends_with(".out") {
            let text = strip_ansi(&std::fs::read_to_string(&p).unwrap_or_default());
            let tail = &text[text.len().saturating_sub(6000)..];
            s += &format!("--- {name}\n{tail}\n");
        }
    }
    s
}

#[test]
fn sipp_scam_caller_is_blocked_and_the_sipp_callee_never_rings() {
    require(&["sipp", "espeak-ng", "python3", "timeout"]);
    let _cpu = common::cpu_heavy();
    let dir = tempfile::tempdir().unwrap();
    speech_pcap(
        dir.path(),
        "This is Microsoft support. Your computer has a virus. Install TeamViewer now so we \
         can fix it.",
        3000,
    );
    let (uas_port, uac_port) = (free_port(), free_port());
    // No message offer: sipp's scenario expects the BYE right after the announcement.
    let ss = Scamscreen::start_with(
        SocketAddr::new(LOOPBACK, uas_port),
        8,
        Some("[sip]\nupstream_probe_secs = 0\n[screening]\nmessage_secs = 0\n"),
    );
    // The callee: must never get an INVITE, so it runs into its -timeout (exit 255). Its 30 s
    // outlast the whole blocked call (greeting, listening, verdict, announcement, BYE: ~20 s).
    let mut uas = sipp("uas_call.xml", uas_port, None, 30, &[], dir.path());
    wait_udp_port(uas_port);
    let started = Instant::now();
    let mut uac = sipp(
        "uac_screened_scam.xml",
        uac_port,
        Some(ss.sip.port()),
        35,
        &["-s", "15550001000"],
        dir.path(),
    );
    let uac_rc = uac.wait(Duration::from_secs(45));
    let call_secs = started.elapsed().as_secs_f32();
    let uas_rc = uas.wait(Duration::from_secs(35));
    eprintln!("scam call: caller exit {uac_rc} after {call_secs:.1} s, callee exit {uas_rc}");
    assert_eq!(
        uac_rc,
        0,
        "the caller gets scamscreen's BYE\n{}",
        logs(dir.path())
    );
    assert!(
        call_secs < 29.0,
        "blocked within the callee's timeout: {call_secs:.1} s"
    );
    assert_eq!(
        uas_rc,
        255,
        "the callee never saw an INVITE\n{}",
        logs(dir.path())
    );
    std::thread::sleep(Duration::from_millis(300));
    let calls = ss.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let rec = &calls[0];
    assert_eq!(rec["action"], "divert", "{rec}");
    assert_eq!(rec["withheld_reason"], "Privacy: id", "{rec}");
    let text = rec["transcript"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(
        text.contains("microsoft") || text.contains("computer") || text.contains("virus"),
        "{rec}"
    );
}

#[test]
fn sipp_legit_caller_is_bridged_to_baresip() {
    require(&["sipp", "baresip", "espeak-ng", "python3", "timeout"]);
    let _cpu = common::cpu_heavy();
    let dir = tempfile::tempdir().unwrap();
    speech_pcap(
        dir.path(),
        "Hello, this is Doctor Miller's dental office calling to confirm your appointment \
         tomorrow at ten in the morning.",
        6000,
    );
    // baresip is the callee, listening on scamscreen's upstream port; its account answers
    // automatically (answermode=auto in tests/peers/baresip/accounts).
    let bs_port = free_port();
    let config = std::fs::read_to_string(common::root().join("tests/peers/baresip/config"))
        .unwrap()
        .lines()
        .map(|l| {
            if l.starts_with("sip_listen") {
                format!("sip_listen\t\t127.0.0.1:{bs_port}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let bs_dir = dir.path().join("baresip");
    std::fs::create_dir(&bs_dir).unwrap();
    std::fs::write(bs_dir.join("config"), config + "\n").unwrap();
    std::fs::copy(
        common::root().join("tests/peers/baresip/accounts"),
        bs_dir.join("accounts"),
    )
    .unwrap();
    let bs_out = std::fs::File::create(dir.path().join("baresip.out")).unwrap();
    let mut baresip = Proc(
        Command::new("timeout")
            .args(["-k", "2", "60", "baresip", "-f"])
            .arg(&bs_dir)
            .stdin(Stdio::null())
            .stdout(bs_out.try_clone().unwrap())
            .stderr(bs_out)
            .spawn()
            .expect("start baresip"),
    );
    wait_udp_port(bs_port);
    let ss = Scamscreen::start_with(SocketAddr::new(LOOPBACK, bs_port), 8, Some(NO_PROBES));
    let uac_port = free_port();
    let started = Instant::now();
    let mut uac = sipp(
        "uac_screened_legit.xml",
        uac_port,
        Some(ss.sip.port()),
        35,
        &["-s", "15550001000"],
        dir.path(),
    );
    let uac_rc = uac.wait(Duration::from_secs(45));
    let call_secs = started.elapsed().as_secs_f32();
    // Let the BYE reach baresip, then stop it (SIGTERM through `timeout`: it flushes).
    std::thread::sleep(Duration::from_millis(500));
    let bs_rc = baresip.terminate(Duration::from_secs(5));
    let out = strip_ansi(&std::fs::read_to_string(dir.path().join("baresip.out")).unwrap());
    eprintln!("legit call: caller exit {uac_rc} after {call_secs:.1} s, baresip exit {bs_rc}");
    for l in out
        .lines()
        .filter(|l| l.contains("Call ") || l.contains("call "))
    {
        eprintln!("baresip: {l}");
    }
    assert_eq!(
        uac_rc,
        0,
        "the caller talks for 20 s and hangs up (97 = scamscreen hung up)\n{}",
        logs(dir.path())
    );
    assert!(
        out.contains("Call established"),
        "baresip answered the screened call\n{}",
        logs(dir.path())
    );
    assert!(
        out.contains("terminated"),
        "the caller's BYE reached baresip\n{out}"
    );
    let calls = ss.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["action"], "allow", "{}", calls[0]);
}

#[test]
fn sipp_legit_caller_is_bridged_to_a_sipp_callee() {
    require(&["sipp", "espeak-ng", "python3", "timeout"]);
    let _cpu = common::cpu_heavy();
    let dir = tempfile::tempdir().unwrap();
    speech_pcap(
        dir.path(),
        "Hello, this is Doctor Miller's dental office calling to confirm your appointment \
         tomorrow at ten in the morning.",
        6000,
    );
    let (uas_port, uac_port) = (free_port(), free_port());
    let ss = Scamscreen::start_with(SocketAddr::new(LOOPBACK, uas_port), 8, Some(NO_PROBES));
    // sipp as the callee: rings, answers, echoes the media it gets back (-rtp_echo), and
    // waits for the BYE that scamscreen sends when the caller hangs up.
    let mut uas = sipp(
        "uas_call.xml",
        uas_port,
        None,
        60,
        &["-rtp_echo"],
        dir.path(),
    );
    wait_udp_port(uas_port);
    let mut uac = sipp(
        "uac_screened_legit.xml",
        uac_port,
        Some(ss.sip.port()),
        45,
        &["-s", "15550001000"],
        dir.path(),
    );
    let uac_rc = uac.wait(Duration::from_secs(55));
    let uas_rc = uas.wait(Duration::from_secs(10));
    eprintln!("legit call: caller exit {uac_rc}, sipp callee exit {uas_rc}");
    assert_eq!(
        uac_rc,
        0,
        "the caller talks and hangs up\n{}",
        logs(dir.path())
    );
    assert_eq!(
        uas_rc,
        0,
        "the sipp callee answered and got the BYE\n{}",
        logs(dir.path())
    );
    let calls = ss.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["action"], "allow", "{}", calls[0]);
}
