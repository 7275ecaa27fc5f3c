//! Real peers on loopback: sipp as caller and callee through `scamscreen run`, and baresip
//! as a real phone. Scenarios and command lines: tests/peers/README.md.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sipp_dir() -> PathBuf {
    root().join("tests/peers/sipp")
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A port free on both UDP and TCP (scamscreen listens on both with one --listen).
fn free_port() -> u16 {
    for _ in 0..100 {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port");
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start scamscreen; wait for its "listening" line.
fn start_proxy(port: u16, upstream: u16, trust: &str) -> Proc {
    // sipp with -m 1 counts an OPTIONS it answers as its one call: no health probes.
    let config = std::env::temp_dir().join(format!("scamscreen-sip-peers-{port}.toml"));
    std::fs::write(&config, "[sip]\nupstream_probe_secs = 0\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_scamscreen"))
        .args([
            "run",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--upstream",
            &format!("127.0.0.1:{upstream}"),
            "--trust",
            trust,
            // The SIP edge alone: screened callers are marked and forwarded (tests/screening.rs
            // covers answering them).
            "--mode",
            "mark",
        ])
        .arg("--config")
        .arg(&config)
        .env("SCAMSCREEN_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start scamscreen");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    assert!(line.starts_with("listening udp"), "{line}");
    Proc(child)
}

fn sipp(scenario: &str, port: u16, target: Option<u16>, extra: &[&str], cwd: &Path) -> Child {
    sipp_at("127.0.0.1", scenario, port, target, extra, cwd)
}

fn sipp_at(
    ip: &str,
    scenario: &str,
    port: u16,
    target: Option<u16>,
    extra: &[&str],
    cwd: &Path,
) -> Child {
    let mut cmd = Command::new("sipp");
    cmd.arg("-sf")
        .arg(sipp_dir().join(scenario))
        .args(["-i", ip, "-p", &port.to_string()])
        .args(["-m", "1", "-nostdin", "-timeout", "10", "-timeout_error"])
        .args(["-trace_err", "-trace_msg"])
        .args(extra)
        .current_dir(cwd)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(t) = target {
        cmd.arg(format!("127.0.0.1:{t}"));
    }
    cmd.spawn().expect("start sipp")
}

fn wait_udp_port(port: u16) {
    let hex = format!(":{port:04X} ");
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
        if table.lines().any(|l| l.contains(&hex)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn exit_code(mut child: Child) -> i32 {
    child.wait().ok().and_then(|s| s.code()).unwrap_or(-1)
}

/// Run a UAS and a UAC through a fresh scamscreen; return (uac, uas) exit codes.
fn through_proxy(uas: &str, uac: &str, uac_extra: &[&str], trust: &str) -> (i32, i32) {
    assert!(
        have("sipp"),
        "sipp is required (apt-get install sip-tester; make deps)"
    );
    let dir = tempfile::tempdir().unwrap();
    let (proxy_port, uas_port, uac_port) = (free_port(), free_port(), free_port());
    let _proxy = start_proxy(proxy_port, uas_port, trust);
    let uas = sipp(uas, uas_port, None, &[], dir.path());
    wait_udp_port(uas_port);
    let uac = sipp(uac, uac_port, Some(proxy_port), uac_extra, dir.path());
    let uac_rc = exit_code(uac);
    let uas_rc = {
        let mut uas = uas;
        let deadline = Instant::now() + Duration::from_secs(12);
        loop {
            if let Ok(Some(s)) = uas.try_wait() {
                break s.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = uas.kill();
                let _ = uas.wait();
                break -2;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    if uac_rc != 0 || uas_rc != 0 {
        for entry in std::fs::read_dir(dir.path()).unwrap().flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            eprintln!(
                "--- {}\n{}",
                entry.path().display(),
                &text[..text.len().min(4000)]
            );
        }
    }
    (uac_rc, uas_rc)
}

const CALLER: [&str; 4] = ["-s", "15550002000", "-key", "caller"];

fn caller_args(number: &str) -> Vec<&str> {
    let mut v = CALLER.to_vec();
    v.push(number);
    v
}

#[test]
fn normal_call_completes() {
    let (uac, uas) = through_proxy(
        "uas_call.xml",
        "uac_call.xml",
        &caller_args("15550001000"),
        "127.0.0.0/8",
    );
    assert_eq!((uac, uas), (0, 0));
}

#[test]
fn cancelled_call_ends_with_487() {
    let mut args = caller_args("15550001000");
    args.extend(["-d", "200"]);
    let (uac, uas) = through_proxy(
        "uas_ring_forever.xml",
        "uac_cancel.xml",
        &args,
        "127.0.0.0/8",
    );
    assert_eq!((uac, uas), (0, 0));
}

#[test]
fn withheld_call_arrives_marked() {
    let (uac, uas) = through_proxy(
        "uas_expect_marked.xml",
        "uac_withheld.xml",
        &["-s", "15550002000"],
        "127.0.0.0/8",
    );
    assert_eq!((uac, uas), (0, 0));
}

#[test]
fn normal_caller_is_not_marked() {
    // The marking UAS refuses unmarked INVITEs: 500 to the caller (exit 1), itself exit 97.
    let (uac, uas) = through_proxy(
        "uas_expect_marked.xml",
        "uac_call.xml",
        &caller_args("15550001000"),
        "127.0.0.0/8",
    );
    assert_eq!((uac, uas), (1, 97));
}

#[test]
fn untrusted_source_is_refused_and_nothing_reaches_the_pbx() {
    // Only 10.0.0.0/8 and the upstream's own address (127.0.0.1, always trusted) may talk
    // to us; the caller sits on 127.0.0.2.
    let dir = tempfile::tempdir().unwrap();
    let (proxy_port, uas_port, uac_port) = (free_port(), free_port(), free_port());
    let _proxy = start_proxy(proxy_port, uas_port, "10.0.0.0/8");
    let uas = Command::new("sipp")
        .arg("-sf")
        .arg(sipp_dir().join("uas_call.xml"))
        .args(["-i", "127.0.0.1", "-p", &uas_port.to_string()])
        .args([
            "-m",
            "1",
            "-nostdin",
            "-timeout",
            "3",
            "-timeout_error",
            "-aa",
        ])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_udp_port(uas_port);
    let uac = sipp_at(
        "127.0.0.2",
        "uac_expect_403.xml",
        uac_port,
        Some(proxy_port),
        &caller_args("15550009999"),
        dir.path(),
    );
    assert_eq!(exit_code(uac), 0, "caller got 403");
    // The UAS times out (255): it never saw an INVITE.
    assert_eq!(exit_code(uas), 255);
}

#[test]
fn options_is_answered() {
    assert!(have("sipp"));
    let dir = tempfile::tempdir().unwrap();
    let (proxy_port, uac_port) = (free_port(), free_port());
    let _proxy = start_proxy(proxy_port, free_port(), "127.0.0.0/8");
    let uac = sipp(
        "uac_options.xml",
        uac_port,
        Some(proxy_port),
        &[],
        dir.path(),
    );
    assert_eq!(exit_code(uac), 0);
}

#[test]
fn baresip_calls_through_scamscreen() {
    assert!(
        have("baresip"),
        "baresip is required (apt-get install baresip; make deps)"
    );
    let dir = tempfile::tempdir().unwrap();
    for f in ["config", "accounts"] {
        std::fs::copy(
            root().join("tests/peers/baresip").join(f),
            dir.path().join(f),
        )
        .unwrap();
    }
    let (proxy_port, uas_port) = (free_port(), free_port());
    let _proxy = start_proxy(proxy_port, uas_port, "127.0.0.0/8");
    let uas = sipp("uas_call.xml", uas_port, None, &[], dir.path());
    wait_udp_port(uas_port);
    let out = Command::new("timeout")
        .args(["-k", "2", "15", "baresip", "-f"])
        .arg(dir.path())
        .args([
            "-e",
            &format!("/dial sip:15550002000@127.0.0.1:{proxy_port}"),
            "-t",
            "3",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        exit_code(uas),
        0,
        "sipp UAS saw INVITE, ACK and BYE\n{text}"
    );
    assert!(text.contains("Call established"), "{text}");
}
