//! What the screened-call tests share: `scamscreen run` as a child process with the real
//! model, and the demo's caller and callee (`scamscreen::demo`) on loopback around it.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use scamscreen::demo::{self, DemoCallee, DemoCaller};

/// Where scamscreen and the callee listen.
pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
/// Where the withheld callers call from.
pub const CALLER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// The default greeting is 5.0 s; the caller starts talking just after it.
pub const GREETING_MS: u64 = 5200;

/// `scamscreen run` on loopback (default configuration unless a config file is given),
/// killed when dropped.
pub struct Scamscreen {
    child: Child,
    /// The last JSON line scamscreen wrote to stderr (its counters at shutdown).
    last_json: Arc<Mutex<Option<String>>>,
    /// Everything scamscreen wrote to stderr, as bytes (lines with their newline).
    pub log: Arc<Mutex<Vec<u8>>>,
    pub tcp: Option<SocketAddr>,
    /// The admin HTTP server (metrics, health, call log), on an ephemeral loopback port.
    pub admin: Option<SocketAddr>,
    /// The configuration file it was started with (when one was given).
    pub config: Option<PathBuf>,
    pub sip: SocketAddr,
    pub rtp: (u16, u16),
    pub db: PathBuf,
    _dir: tempfile::TempDir,
}

impl Scamscreen {
    /// Towards `upstream`, with 8 RTP ports and the default configuration.
    pub fn start(upstream: SocketAddr) -> Scamscreen {
        Scamscreen::start_with(upstream, 8, None)
    }

    /// Towards `upstream`, with `rtp_ports` RTP ports and, if given, a config file holding
    /// `toml`.
    pub fn start_with(upstream: SocketAddr, rtp_ports: u16, toml: Option<&str>) -> Scamscreen {
        Scamscreen::start_opts(
            upstream,
            Opts {
                rtp_ports,
                toml,
                ..Opts::default()
            },
        )
    }

    /// Towards `upstream`, with everything in `opts`.
    pub fn start_opts(upstream: SocketAddr, opts: Opts<'_>) -> Scamscreen {
        let Opts {
            rtp_ports,
            toml,
            trust,
            nofile,
        } = opts;
        super::model("ggml-tiny.en-q8_0.bin");
        let dir = tempfile::tempdir().unwrap();
        let port = demo::free_sip_port(LOOPBACK).unwrap();
        let rtp = demo::free_rtp_range(LOOPBACK, rtp_ports).unwrap();
        let db = dir.path().join("calls.db");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_scamscreen"));
        cmd.arg("run");
        let mut config = None;
        if let Some(toml) = toml {
            let file = dir.path().join("scamscreen.toml");
            std::fs::write(&file, toml).unwrap();
            cmd.arg("--config").arg(&file);
            config = Some(file);
        }
        cmd.args(["--listen", &format!("{LOOPBACK}:{port}")])
            .args(["--upstream", &upstream.to_string()])
            .args(trust.iter().flat_map(|t| ["--trust", t]))
            .args(["--rtp-ports", &format!("{}-{}", rtp.0, rtp.1)])
            .arg("--db")
            .arg(&db)
            .args(["--admin", "127.0.0.1:0"])
            .current_dir(super::root())
            .env("SCAMSCREEN_LOG", "info,whisper_rs=off")
            .env_remove("SCAMSCREEN_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: only setrlimit between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().expect("start scamscreen");
        // Pass the log through, keeping the counters line that SIGTERM prints.
        let last_json = Arc::new(Mutex::new(None));
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let (keep, all) = (last_json.clone(), log.clone());
        std::thread::spawn(move || {
            let mut r = BufReader::new(stderr);
            let mut buf = Vec::new();
            while r.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
                all.lock().unwrap().extend_from_slice(&buf);
                let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                eprintln!("{line}");
                if line.starts_with('{') {
                    *keep.lock().unwrap() = Some(line);
                }
                buf.clear();
            }
        });
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("listening udp"), "{line:?}");
        // "listening udp A tcp B upstream C"
        let tcp = line
            .split_whitespace()
            .skip_while(|w| *w != "tcp")
            .nth(1)
            .and_then(|a| a.split(',').next())
            .and_then(|a| a.parse().ok());
        let admin = line
            .split_whitespace()
            .skip_while(|w| *w != "admin")
            .nth(1)
            .and_then(|a| a.parse().ok());
        Scamscreen {
            child,
            last_json,
            log,
            tcp,
            admin,
            config,
            sip: SocketAddr::new(LOOPBACK, port),
            rtp,
            db,
            _dir: dir,
        }
    }

    /// A withheld call from [`CALLER_IP`], answered by scamscreen.
    pub fn dial(&self, name: &str) -> DemoCaller {
        DemoCaller::call(self.sip, CALLER_IP, name, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("the {name} call: {e}"))
    }

    /// Every call record, as `scamscreen calls --json` prints them.
    pub fn calls(&self) -> Vec<serde_json::Value> {
        let out = Command::new(env!("CARGO_BIN_EXE_scamscreen"))
            .args(["calls", "--json", "--db"])
            .arg(&self.db)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The stored record of a call (the store writes in the background: poll for it).
    pub fn record(&self, call_id: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let calls = self.calls();
            if let Some(r) = calls.iter().find(|c| c["call_id"] == call_id) {
                return r.clone();
            }
            assert!(Instant::now() < deadline, "no call record: {calls:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The stored record of `call_id` (waited for) has this action and outcome.
    pub fn assert_record(&self, call_id: &str, action: &str, outcome: &str) -> serde_json::Value {
        let rec = self.record(call_id);
        assert_eq!(rec["action"], action, "{rec}");
        assert_eq!(rec["outcome"], outcome, "{rec}");
        rec
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send SIGHUP (reload the configuration).
    pub fn sighup(&self) {
        // SAFETY: signalling our own child, not yet reaped.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGHUP);
        }
    }

    /// Send SIGTERM without waiting.
    pub fn sigterm(&self) {
        // SAFETY: signalling our own child, not yet reaped.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
    }

    /// Whether the process has exited (reaping it).
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    /// SIGTERM, wait for the exit, and return the counters it printed (`calls` holds the
    /// call layer's resources: active calls, port pairs in use, ASR jobs in flight).
    pub fn stop(&mut self) -> serde_json::Value {
        // SAFETY: signalling our own child, not yet reaped.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "scamscreen did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            if let Some(l) = self.last_json.lock().unwrap().clone() {
                return serde_json::from_str(&l).expect("counters are JSON");
            }
            assert!(Instant::now() < deadline, "no counters line on stderr");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every port of the RTP range can be bound again (no call holds one).
    pub fn assert_ports_free(&self) {
        // Sockets close when the call's reader tasks are aborted: allow a moment.
        let deadline = Instant::now() + Duration::from_secs(3);
        for p in self.rtp.0..=self.rtp.1 {
            while let Err(e) = UdpSocket::bind((LOOPBACK, p)) {
                // Another test's ephemeral socket may sit in the range: only a socket of
                // this scamscreen counts.
                if !self.holds_udp_port(p) {
                    break;
                }
                assert!(Instant::now() < deadline, "RTP port {p} still held: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Whether this scamscreen process has a UDP socket bound to `port` (/proc/net/udp's
    /// inode among the process's file descriptors).
    fn holds_udp_port(&self, port: u16) -> bool {
        let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
        let inodes: Vec<String> = table
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let local = f.get(1)?;
                let hex = local.rsplit(':').next()?;
                (u16::from_str_radix(hex, 16).ok()? == port)
                    .then(|| f.get(9).map(|s| s.to_string()))?
            })
            .collect();
        let Ok(fds) = std::fs::read_dir(format!("/proc/{}/fd", self.child.id())) else {
            return true;
        };
        fds.filter_map(|e| e.ok())
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .any(|l| {
                let l = l.to_string_lossy();
                inodes.iter().any(|i| l == format!("socket:[{i}]"))
            })
    }
}

/// How to start scamscreen in a test.
pub struct Opts<'a> {
    pub rtp_ports: u16,
    pub toml: Option<&'a str>,
    /// `--trust` networks.
    pub trust: Vec<&'a str>,
    /// Open-file limit (soft and hard) for the process.
    pub nofile: Option<u64>,
}

impl Default for Opts<'_> {
    fn default() -> Self {
        Opts {
            rtp_ports: 8,
            toml: None,
            trust: vec!["127.0.0.0/8"],
            nofile: None,
        }
    }
}

impl Drop for Scamscreen {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The callee behind scamscreen: answers at once and records what it hears.
pub fn callee() -> DemoCallee {
    DemoCallee::start(LOOPBACK, Duration::ZERO).unwrap()
}

/// The INVITEs the callee received (retransmissions included).
pub fn invites(callee: &DemoCallee) -> Vec<String> {
    callee
        .sip_log()
        .into_iter()
        .filter(|m| m.starts_with("INVITE "))
        .collect()
}

/// espeak-ng speech as 8 kHz PCM.
pub fn speech(text: &str) -> Vec<i16> {
    let dir = tempfile::tempdir().unwrap();
    demo::espeak(text, &dir.path().join("s.wav")).unwrap()
}

/// The real model on 8 kHz audio, lower-cased.
pub fn transcribe(pcm: &[i16]) -> String {
    use scamscreen::asr::Transcriber;
    let pool = scamscreen::asr::whisper::WhisperPool::start(
        &scamscreen::asr::whisper::WhisperConfig::new(super::model("ggml-tiny.en-q8_0.bin")),
    )
    .unwrap();
    let text = pool.transcribe(demo::to_16k(pcm).unwrap()).unwrap().text;
    text.to_lowercase()
}
