//! Screened calls at the edges, end to end on loopback with `scamscreen run`, the real
//! whisper model, real UDP SIP and RTP: bad offers, a caller who hangs up while screened,
//! RTP from a stranger, an overloaded or timed-out recogniser, and a warned callee.
//!
//! The helpers are those of `tests/screening.rs`, extended: the caller may offer any SDP,
//! records what it hears, and ACKs final error responses.

mod common;

use scamscreen::media::g711::Codec;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

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

/// A free range of `n` ports starting on an even one, for the RTP pool. Ranges of tests
/// running at the same time must not overlap: each test starts its search elsewhere.
fn free_range(n: u16, from: u16) -> (u16, u16) {
    for start in (from..60_000).step_by(n as usize + 2) {
        let start = start & !1;
        if (start..start + n).all(|p| UdpSocket::bind(("127.0.0.1", p)).is_ok()) {
            return (start, start + n - 1);
        }
    }
    panic!("no free RTP range");
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Scamscreen {
    _proc: Proc,
    sip: SocketAddr,
    rtp: (u16, u16),
    db: PathBuf,
    _dir: tempfile::TempDir,
}

impl Scamscreen {
    /// Every port of the RTP range can be bound again (no call holds one).
    fn assert_ports_free(&self) {
        // Sockets close when the call's reader tasks are aborted: allow a moment.
        let deadline = Instant::now() + Duration::from_secs(3);
        for p in self.rtp.0..=self.rtp.1 {
            loop {
                match UdpSocket::bind(("127.0.0.1", p)) {
                    Ok(_) => break,
                    Err(e) => {
                        assert!(Instant::now() < deadline, "RTP port {p} still held: {e}");
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        }
    }
}

/// `scamscreen run` towards `upstream`, with `ports` RTP ports (searched from `range_from`)
/// and, if given, a config file holding `toml`.
fn start(upstream: u16, ports: u16, range_from: u16, toml: Option<&str>) -> Scamscreen {
    common::model("ggml-tiny.en-q8_0.bin");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let rtp = free_range(ports, range_from);
    let db = dir.path().join("calls.db");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_scamscreen"));
    cmd.arg("run");
    if let Some(toml) = toml {
        let file = dir.path().join("scamscreen.toml");
        std::fs::write(&file, toml).unwrap();
        cmd.arg("--config").arg(file);
    }
    let mut child = cmd
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--upstream", &format!("127.0.0.1:{upstream}")])
        .args(["--trust", "127.0.0.0/8"])
        .args(["--rtp-ports", &format!("{}-{}", rtp.0, rtp.1)])
        .arg("--db")
        .arg(&db)
        .current_dir(common::root())
        .env("SCAMSCREEN_LOG", "info,whisper_rs=off")
        .env_remove("SCAMSCREEN_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start scamscreen");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("listening udp"), "{line:?}");
    Scamscreen {
        _proc: Proc(child),
        sip: format!("127.0.0.1:{port}").parse().unwrap(),
        rtp,
        db,
        _dir: dir,
    }
}

/// espeak-ng speech as 8 kHz PCM.
fn speech(text: &str) -> Vec<i16> {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("s.wav");
    let ok = Command::new("espeak-ng")
        .args(["-v", "en-us+f3", "-s", "160", "-g", "2", "-w"])
        .arg(&wav)
        .arg(text)
        .status()
        .expect("espeak-ng")
        .success();
    assert!(ok);
    scamscreen::runtime::calls::load_prompt(&wav).unwrap()
}

/// The real model on 8 kHz audio, lower-cased.
fn transcribe(pcm: &[i16]) -> String {
    use scamscreen::asr::Transcriber;
    let f: Vec<f32> = pcm.iter().map(|s| f32::from(*s) / 32768.0).collect();
    let pcm16 = scamscreen::asr::resample::resample(&f, 8000, 16_000).unwrap();
    let pool = scamscreen::asr::whisper::WhisperPool::start(
        &scamscreen::asr::whisper::WhisperConfig::new(common::model("ggml-tiny.en-q8_0.bin")),
    )
    .unwrap();
    pool.transcribe(pcm16).unwrap().text.to_lowercase()
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn status(msg: &str) -> Option<u16> {
    msg.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

fn cseq_method(msg: &str) -> String {
    header(msg, "cseq")
        .and_then(|c| c.split_whitespace().nth(1))
        .unwrap_or_default()
        .to_string()
}

fn sdp_port(msg: &str) -> Option<u16> {
    msg.lines()
        .find_map(|l| l.strip_prefix("m=audio "))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn sdp(port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    )
}

/// One RTP packet of PCMU.
fn rtp_packet(seq: u16, ts: u32, ssrc: u32, pcm: &[i16]) -> Vec<u8> {
    let mut pkt = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    pkt[2..4].copy_from_slice(&seq.to_be_bytes());
    pkt[4..8].copy_from_slice(&ts.to_be_bytes());
    pkt[8..12].copy_from_slice(&ssrc.to_be_bytes());
    pkt.extend(Codec::Pcmu.encode(pcm));
    pkt
}

/// The callee: answers INVITEs with 200, records SIP and the audio it receives.
struct Callee {
    port: u16,
    sip_log: Arc<Mutex<Vec<String>>>,
    audio: Arc<Mutex<Vec<i16>>>,
    stop: Arc<AtomicBool>,
}

impl Callee {
    fn start() -> Callee {
        let sip = UdpSocket::bind("127.0.0.1:0").unwrap();
        let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = sip.local_addr().unwrap().port();
        let rtp_port = rtp.local_addr().unwrap().port();
        sip.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        rtp.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let sip_log = Arc::new(Mutex::new(Vec::new()));
        let audio = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, st) = (sip_log.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 65535];
            while !st.load(Ordering::Relaxed) {
                let Ok((n, from)) = sip.recv_from(&mut buf) else {
                    continue;
                };
                let msg = String::from_utf8_lossy(&buf[..n]).to_string();
                log.lock().unwrap().push(msg.clone());
                let method = msg.split(' ').next().unwrap_or_default().to_string();
                if method == "ACK" || status(&msg).is_some() {
                    continue;
                }
                let mut resp = String::from("SIP/2.0 200 OK\r\n");
                for l in msg.lines() {
                    let name = l.split(':').next().unwrap_or_default().to_ascii_lowercase();
                    if ["via", "from", "call-id", "cseq", "record-route"].contains(&name.as_str()) {
                        resp.push_str(l);
                        resp.push_str("\r\n");
                    }
                    if name == "to" {
                        resp.push_str(&format!("{l};tag=callee\r\n"));
                    }
                }
                resp.push_str(&format!("Contact: <sip:callee@127.0.0.1:{port}>\r\n"));
                let body = if method == "INVITE" {
                    sdp(rtp_port)
                } else {
                    String::new()
                };
                if !body.is_empty() {
                    resp.push_str("Content-Type: application/sdp\r\n");
                }
                resp.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
                let _ = sip.send_to(resp.as_bytes(), from);
            }
        });
        let (aud, st) = (audio.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !st.load(Ordering::Relaxed) {
                if let Ok((n, _)) = rtp.recv_from(&mut buf) {
                    if n > 12 && buf[1] & 0x7f == 0 {
                        aud.lock().unwrap().extend(Codec::Pcmu.decode(&buf[12..n]));
                    }
                }
            }
        });
        Callee {
            port,
            sip_log,
            audio,
            stop,
        }
    }

    fn invites(&self) -> Vec<String> {
        self.sip_log
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.starts_with("INVITE "))
            .cloned()
            .collect()
    }

    /// The INVITE leg B of the caller's call carries (its Call-ID embeds the caller's).
    fn invite_for(&self, caller_call_id: &str) -> Option<String> {
        self.invites()
            .into_iter()
            .find(|m| header(m, "call-id").is_some_and(|c| c.contains(caller_call_id)))
    }

    fn samples(&self) -> usize {
        self.audio.lock().unwrap().len()
    }
}

impl Drop for Callee {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The caller: a withheld INVITE with any SDP body, then it speaks in real time, answering
/// whatever scamscreen sends and recording what it hears.
struct Caller {
    sip: UdpSocket,
    rtp: UdpSocket,
    proxy: SocketAddr,
    name: String,
    call_id: String,
    remote_rtp: Option<SocketAddr>,
    log: Vec<String>,
    /// Final status of the INVITE.
    final_status: Option<u16>,
    seq: u16,
    ts: u32,
    got_bye: bool,
    /// 200 OK to our BYE.
    bye_answered: bool,
    to_tag: String,
    contact: String,
    /// PCMU audio received from scamscreen.
    heard: Vec<i16>,
    /// The port a NATed caller's SDP names (it sends from another one).
    _decoy: Option<UdpSocket>,
}

impl Caller {
    /// Send the INVITE (with `body`, or a PCMU offer when `None`); do not wait.
    fn offer(proxy: SocketAddr, name: &str, body: Option<String>) -> Caller {
        let sip = UdpSocket::bind("127.0.0.2:0").unwrap();
        let rtp = UdpSocket::bind("127.0.0.2:0").unwrap();
        sip.set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        rtp.set_nonblocking(true).unwrap();
        let local = sip.local_addr().unwrap();
        let call_id = format!("edge-{name}-{}", local.port());
        let rtp_port = rtp.local_addr().unwrap().port();
        let body = body.unwrap_or_else(|| sdp(rtp_port).replace("127.0.0.1", "127.0.0.2"));
        let invite = format!(
            "INVITE sip:100@127.0.0.1 SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK{name}1;rport\r\n\
             Max-Forwards: 70\r\n\
             From: \"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=c{name}\r\n\
             To: <sip:100@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:caller@{local}>\r\nPrivacy: id\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        sip.send_to(invite.as_bytes(), proxy).unwrap();
        Caller {
            sip,
            rtp,
            proxy,
            name: name.to_string(),
            call_id,
            remote_rtp: None,
            log: Vec::new(),
            final_status: None,
            seq: 1,
            ts: 0,
            got_bye: false,
            bye_answered: false,
            to_tag: String::new(),
            contact: String::new(),
            heard: Vec::new(),
            _decoy: None,
        }
    }

    /// A PCMU call, answered (200 OK received and ACKed).
    fn call(proxy: SocketAddr, name: &str) -> Caller {
        let mut c = Caller::offer(proxy, name, None);
        let status = c.wait_final(Duration::from_secs(10));
        assert_eq!(status, Some(200), "{:?}", c.log);
        c
    }

    /// A caller behind NAT: its SDP names a port it never sends from, so scamscreen only
    /// learns where it is from its first RTP packet (latching).
    fn call_behind_nat(proxy: SocketAddr, name: &str) -> Caller {
        let decoy = UdpSocket::bind("127.0.0.2:0").unwrap();
        let body = sdp(decoy.local_addr().unwrap().port()).replace("127.0.0.1", "127.0.0.2");
        let mut c = Caller::offer(proxy, name, Some(body));
        c._decoy = Some(decoy);
        let status = c.wait_final(Duration::from_secs(10));
        assert_eq!(status, Some(200), "{:?}", c.log);
        c
    }

    /// Wait for the INVITE's final response.
    fn wait_final(&mut self, timeout: Duration) -> Option<u16> {
        let deadline = Instant::now() + timeout;
        while self.final_status.is_none() && Instant::now() < deadline {
            self.poll_sip();
        }
        self.final_status
    }

    fn poll_sip(&mut self) {
        let mut buf = [0u8; 65535];
        while let Ok((n, from)) = self.sip.recv_from(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            self.log.push(msg.clone());
            let st = status(&msg);
            let method = cseq_method(&msg);
            if let (Some(st), "INVITE") = (st, method.as_str()) {
                if st >= 200 && self.final_status.is_none() {
                    self.final_status = Some(st);
                }
                let to = header(&msg, "to").unwrap_or_default();
                if st == 200 && self.remote_rtp.is_none() {
                    let port = sdp_port(&msg).expect("SDP in the 200");
                    self.remote_rtp = Some(format!("127.0.0.1:{port}").parse().unwrap());
                    self.to_tag = to.split("tag=").nth(1).unwrap_or_default().to_string();
                    self.contact = header(&msg, "contact")
                        .unwrap_or_default()
                        .trim_matches(['<', '>'])
                        .to_string();
                    let ack = self.request("ACK", 1);
                    self.sip.send_to(ack.as_bytes(), self.proxy).unwrap();
                } else if st >= 300 {
                    // ACK for a non-2xx final response: same branch as the INVITE (§17.1.1.3).
                    let local = self.sip.local_addr().unwrap();
                    let ack = format!(
                        "ACK sip:100@127.0.0.1 SIP/2.0\r\n\
                         Via: SIP/2.0/UDP {local};branch=z9hG4bK{n}1;rport\r\n\
                         Max-Forwards: 70\r\n\
                         From: \"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=c{n}\r\n\
                         To: {to}\r\nCall-ID: {}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
                        self.call_id,
                        n = self.name,
                    );
                    self.sip.send_to(ack.as_bytes(), self.proxy).unwrap();
                }
            } else if st == Some(200) && method == "BYE" {
                self.bye_answered = true;
            } else if msg.starts_with("BYE ") {
                self.got_bye = true;
                let mut resp = String::from("SIP/2.0 200 OK\r\n");
                for l in msg.lines() {
                    let name = l.split(':').next().unwrap_or_default().to_ascii_lowercase();
                    if ["via", "from", "to", "call-id", "cseq"].contains(&name.as_str()) {
                        resp.push_str(l);
                        resp.push_str("\r\n");
                    }
                }
                resp.push_str("Content-Length: 0\r\n\r\n");
                let _ = self.sip.send_to(resp.as_bytes(), from);
            }
        }
    }

    fn request(&self, method: &str, cseq: u32) -> String {
        let local = self.sip.local_addr().unwrap();
        format!(
            "{method} {} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{method}{cseq}{};rport\r\n\
             Max-Forwards: 70\r\nFrom: \"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=c{}\r\n\
             To: <sip:100@127.0.0.1>;tag={}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\n\
             Content-Length: 0\r\n\r\n",
            self.contact, self.call_id, self.name, self.to_tag, self.call_id
        )
    }

    /// Send 20 ms PCMU packets of `pcm` in real time, handling SIP and recording what
    /// scamscreen sends meanwhile.
    fn speak(&mut self, pcm: &[i16]) {
        let Some(to) = self.remote_rtp else { return };
        let start = Instant::now();
        for (i, frame) in pcm.chunks(160).enumerate() {
            let due = start + Duration::from_millis(20 * i as u64);
            while Instant::now() < due {
                self.poll_sip();
                self.receive_rtp();
                std::thread::sleep(Duration::from_millis(2));
            }
            let _ = self
                .rtp
                .send_to(&rtp_packet(self.seq, self.ts, 0x1234_5678, frame), to);
            self.seq = self.seq.wrapping_add(1);
            self.ts = self.ts.wrapping_add(160);
        }
    }

    fn receive_rtp(&mut self) {
        let mut b = [0u8; 2048];
        while let Ok((n, _)) = self.rtp.recv_from(&mut b) {
            if n > 12 && b[1] & 0x7f == 0 {
                self.heard.extend(Codec::Pcmu.decode(&b[12..n]));
            }
        }
    }

    fn silence(&mut self, ms: u64) {
        self.speak(&vec![0i16; (ms * 8) as usize]);
    }

    fn send_bye(&mut self) {
        let bye = self.request("BYE", 2);
        self.sip.send_to(bye.as_bytes(), self.proxy).unwrap();
    }
}

fn calls_json(db: &Path) -> Vec<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_scamscreen"))
        .args(["calls", "--json", "--db"])
        .arg(db)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The stored record of a call (the store writes in the background: poll for it).
fn record(db: &Path, call_id: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let calls = calls_json(db);
        if let Some(r) = calls.iter().find(|c| c["call_id"] == call_id) {
            return r.clone();
        }
        assert!(Instant::now() < deadline, "no call record: {calls:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The default greeting is 5.0 s; the caller starts talking just after it.
const GREETING_MS: u64 = 5200;

/// For tests about what the verdict is, not how fast: a generous screening timeout, so a
/// busy machine (a parallel build, other tests) does not turn the verdict into `unscreened`.
const PATIENT: &str = "[screening]\nscreening_timeout_ms = 20000\n";

/// Offer `body`, expect `want` and nothing else: no 200, no ringing callee, no port taken.
fn refused_offer(ss: &Scamscreen, callee: &Callee, name: &str, body: String, want: u16) {
    let mut caller = Caller::offer(ss.sip, name, Some(body));
    let got = caller.wait_final(Duration::from_secs(5));
    assert_eq!(got, Some(want), "{name}: {:?}", caller.log);
    // Anything late (a 200, a BYE, a retransmitted final response) would show up here.
    let until = Instant::now() + Duration::from_millis(700);
    while Instant::now() < until {
        caller.poll_sip();
    }
    let statuses: Vec<u16> = caller.log.iter().filter_map(|m| status(m)).collect();
    assert!(
        statuses.iter().all(|&s| s == 100 || s == want),
        "{name}: {statuses:?}"
    );
    assert!(!caller.got_bye, "{name}");
    assert!(caller.remote_rtp.is_none(), "{name}");
    assert!(callee.invites().is_empty(), "{name}: the callee was rung");
}

#[test]
fn malformed_sdp_is_refused_with_400() {
    let callee = Callee::start();
    let ss = start(callee.port, 8, 31_000, None);
    let bodies = [
        (
            "garbage",
            "this is not a session description\r\n".to_string(),
        ),
        (
            "badport",
            "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n\
             m=audio eighty RTP/AVP 0\r\n"
                .to_string(),
        ),
        (
            "badaddr",
            "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 327.0.0.2\r\nt=0 0\r\n\
             m=audio 40000 RTP/AVP 0\r\n"
                .to_string(),
        ),
    ];
    for (name, body) in bodies {
        refused_offer(&ss, &callee, name, body, 400);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(callee.invites().is_empty(), "the callee was rung");
    ss.assert_ports_free();
}

#[test]
fn g729_only_offer_is_refused_with_488() {
    let callee = Callee::start();
    let ss = start(callee.port, 8, 33_000, None);
    let body = "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n\
                m=audio 40000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\na=sendrecv\r\n"
        .to_string();
    refused_offer(&ss, &callee, "g729", body, 488);
    std::thread::sleep(Duration::from_millis(300));
    assert!(callee.invites().is_empty(), "the callee was rung");
    ss.assert_ports_free();
}

#[test]
fn caller_hanging_up_while_screened_frees_everything() {
    let _cpu = common::cpu_heavy();
    let callee = Callee::start();
    let ss = start(callee.port, 8, 35_000, None);
    let words = speech(
        "Hello, this is Doctor Miller's dental office calling to confirm your appointment \
         tomorrow at ten in the morning.",
    );
    let mut caller = Caller::call(ss.sip, "hangup");
    caller.silence(GREETING_MS);
    // Half the sentence, then BYE mid-word: still listening, no verdict yet.
    caller.speak(&words[..words.len() / 2]);
    caller.send_bye();
    // The rest of the sentence and the silence that would end listening reach nobody.
    caller.speak(&words[words.len() / 2..]);
    caller.silence(2500);
    assert!(caller.bye_answered, "200 to the BYE: {:?}", caller.log);
    assert!(callee.invites().is_empty(), "the callee was rung");
    assert!(
        !caller.got_bye,
        "scamscreen sent a BYE for a call that had ended"
    );
    let rec = record(&ss.db, &caller.call_id);
    assert_eq!(rec["action"], "caller_hung_up", "{rec}");
    assert_eq!(rec["outcome"], "callerhungup", "{rec}");
    assert_eq!(rec["transcript"], "", "{rec}");
    ss.assert_ports_free();

    // Hanging up during the greeting ends the call the same way.
    let mut caller = Caller::call(ss.sip, "hangup2");
    caller.silence(1500);
    caller.send_bye();
    caller.silence(1000);
    assert!(caller.bye_answered, "200 to the BYE: {:?}", caller.log);
    assert!(!caller.got_bye);
    let rec = record(&ss.db, &caller.call_id);
    assert_eq!(rec["action"], "caller_hung_up", "{rec}");
    assert_eq!(rec["listen_ms"], 0, "{rec}");
    assert!(callee.invites().is_empty(), "the callee was rung");
    ss.assert_ports_free();
}

#[test]
fn rtp_from_a_stranger_does_not_reach_the_screening() {
    let _cpu = common::cpu_heavy();
    let callee = Callee::start();
    let ss = start(callee.port, 8, 37_000, Some(PATIENT));
    let words = speech(
        "Hello, this is Doctor Miller's dental office, confirming your appointment tomorrow.",
    );
    let scam = speech(
        "This is Microsoft support. Your computer has a virus. Install TeamViewer now so we \
         can fix it. This is Microsoft support. Install TeamViewer now.",
    );
    // Behind NAT, so only the latch (not the SDP address) tells the caller from the stranger.
    let mut caller = Caller::call_behind_nat(ss.sip, "bleed");
    // The caller's first packets latch its leg.
    caller.silence(GREETING_MS);
    let target = caller.remote_rtp.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let rogue = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let sock = UdpSocket::bind("127.0.0.3:0").unwrap();
            let start = Instant::now();
            let mut sent = 0usize;
            for (i, frame) in scam.chunks(160).enumerate() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let due = start + Duration::from_millis(20 * i as u64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                // A plausible stream: its own SSRC, sequence and timestamps close to the
                // caller's, so only the source address gives it away.
                let pkt = rtp_packet(1000 + i as u16, 160 * 300 + 160 * i as u32, 0xbad, frame);
                if sock.send_to(&pkt, target).is_ok() {
                    sent += 1;
                }
            }
            sent
        })
    };
    caller.speak(&words);
    let deadline = Instant::now() + Duration::from_secs(20);
    while callee.invite_for(&caller.call_id).is_none() && Instant::now() < deadline {
        caller.silence(200);
    }
    stop.store(true, Ordering::Relaxed);
    let sent = rogue.join().unwrap();
    assert!(sent > 100, "the rogue sent {sent} packets");
    let invite = callee
        .invite_for(&caller.call_id)
        .expect("the callee was rung");
    let rec = record_when_done(&mut caller, &ss);
    assert_eq!(
        header(&invite, "X-Scamscreen-Verdict"),
        Some("allow"),
        "{invite}\n{rec}"
    );
    let text = rec["transcript"].as_str().unwrap().to_lowercase();
    for w in ["microsoft", "teamviewer", "team viewer", "virus"] {
        assert!(
            !text.contains(w),
            "the stranger's words were screened: {text}"
        );
    }
    assert!(
        text.contains("dental") || text.contains("appointment"),
        "the caller's words: {text}"
    );
}

/// Hang the (bridged) call up and return its record.
fn record_when_done(caller: &mut Caller, ss: &Scamscreen) -> serde_json::Value {
    caller.send_bye();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !caller.bye_answered && Instant::now() < deadline {
        caller.silence(100);
    }
    record(&ss.db, &caller.call_id)
}

#[test]
fn full_asr_queue_fails_open() {
    let _cpu = common::cpu_heavy();
    // 1 worker + 4 queued: the 6th to 8th simultaneous screenings find the queue full.
    const CALLERS: usize = 8;
    let callee = Arc::new(Callee::start());
    // Patient: the screenings that got into the queue all finish, so every `unscreened`
    // below is a full queue, not a timeout.
    let ss = start(callee.port, 4 * CALLERS as u16 + 4, 39_000, Some(PATIENT));
    let words: Arc<[i16]> = speech("Hi, this is Anna from the library. Your book is ready.").into();
    let barrier = Arc::new(Barrier::new(CALLERS));
    let threads: Vec<_> = (0..CALLERS)
        .map(|i| {
            let (callee, words, barrier, sip) =
                (callee.clone(), words.clone(), barrier.clone(), ss.sip);
            std::thread::spawn(move || {
                let mut caller = Caller::call(sip, &format!("load{i}"));
                // Everyone speaks the same words at the same moment, so everyone's speech
                // ends (and is submitted to ASR) within a few milliseconds.
                barrier.wait();
                caller.silence(GREETING_MS);
                caller.speak(&words);
                let deadline = Instant::now() + Duration::from_secs(30);
                while callee.invite_for(&caller.call_id).is_none() && Instant::now() < deadline {
                    caller.silence(200);
                }
                let invite = callee.invite_for(&caller.call_id);
                caller.send_bye();
                caller.silence(300);
                invite
            })
        })
        .collect();
    let invites: Vec<Option<String>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let mut verdicts = Vec::new();
    for (i, inv) in invites.iter().enumerate() {
        let inv = inv
            .as_ref()
            .unwrap_or_else(|| panic!("caller {i} never reached the callee"));
        verdicts.push((
            header(inv, "X-Scamscreen-Verdict")
                .unwrap_or_default()
                .to_string(),
            header(inv, "X-Scamscreen-Reason")
                .unwrap_or_default()
                .to_string(),
        ));
    }
    let unscreened: Vec<_> = verdicts.iter().filter(|(v, _)| v == "unscreened").collect();
    assert!(!unscreened.is_empty(), "{verdicts:?}");
    assert!(
        unscreened.iter().all(|(_, r)| r.contains("queue full")),
        "unscreened for another reason than a full queue: {verdicts:?}"
    );
    // The ones that were screened were heard as legitimate.
    assert!(
        verdicts
            .iter()
            .all(|(v, _)| v == "allow" || v == "unscreened"),
        "{verdicts:?}"
    );
    assert!(verdicts.iter().any(|(v, _)| v == "allow"), "{verdicts:?}");
    ss.assert_ports_free();
}

/// A config file that makes every verdict time out.
fn timeout_config(fail_open: bool) -> String {
    format!("[screening]\nscreening_timeout_ms = 1\nfail_open = {fail_open}\n")
}

#[test]
fn screening_timeout_fails_open_as_unscreened() {
    let _cpu = common::cpu_heavy();
    let callee = Callee::start();
    let ss = start(callee.port, 8, 41_000, Some(&timeout_config(true)));
    let words = speech("Hi, this is Anna from the library. Your book is ready.");
    let mut caller = Caller::call(ss.sip, "slowopen");
    caller.silence(GREETING_MS);
    caller.speak(&words);
    let deadline = Instant::now() + Duration::from_secs(15);
    while callee.invite_for(&caller.call_id).is_none() && Instant::now() < deadline {
        caller.silence(200);
    }
    let invite = callee
        .invite_for(&caller.call_id)
        .expect("fail_open: the callee is rung");
    assert_eq!(header(&invite, "X-Scamscreen-Verdict"), Some("unscreened"));
    let reason = header(&invite, "X-Scamscreen-Reason").unwrap_or_default();
    assert!(reason.starts_with("unscreened"), "{reason}");
    let rec = record_when_done(&mut caller, &ss);
    assert_eq!(rec["action"], "unscreened", "{rec}");
    assert_eq!(rec["outcome"], "connected", "{rec}");
}

#[test]
fn screening_timeout_fails_closed_with_the_block_announcement() {
    let _cpu = common::cpu_heavy();
    let callee = Callee::start();
    let ss = start(callee.port, 8, 43_000, Some(&timeout_config(false)));
    let words = speech("Hi, this is Anna from the library. Your book is ready.");
    let mut caller = Caller::call(ss.sip, "slowclosed");
    caller.silence(GREETING_MS);
    caller.speak(&words);
    caller.heard.clear();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !caller.got_bye && Instant::now() < deadline {
        caller.silence(200);
    }
    assert!(caller.got_bye, "scamscreen hangs up after the announcement");
    assert!(callee.invites().is_empty(), "the callee was rung");
    let voiced = caller.heard.iter().filter(|s| s.abs() > 500).count();
    assert!(
        voiced > 8000,
        "the caller heard {} samples, {voiced} voiced",
        caller.heard.len()
    );
    let text = transcribe(&caller.heard);
    assert!(
        text.contains("cannot be connected") || text.contains("does not accept"),
        "the caller heard: {text}"
    );
    let rec = record(&ss.db, &caller.call_id);
    assert_eq!(rec["action"], "unscreened", "{rec}");
    assert_eq!(rec["outcome"], "blocked", "{rec}");
    ss.assert_ports_free();
}

#[test]
fn borderline_caller_is_announced_to_the_callee_with_a_warning() {
    let _cpu = common::cpu_heavy();
    let callee = Callee::start();
    let ss = start(callee.port, 8, 45_000, Some(PATIENT));
    // Company claim + computer problem, no remote-access request: warn, not divert.
    let words = speech("Hello, this is Microsoft. Your computer has a problem.");
    let later = speech("Please call me back on the office line.");
    let mut caller = Caller::call(ss.sip, "warn");
    caller.silence(GREETING_MS);
    caller.speak(&words);
    let deadline = Instant::now() + Duration::from_secs(20);
    while callee.invite_for(&caller.call_id).is_none() && Instant::now() < deadline {
        caller.silence(200);
    }
    let invite = callee
        .invite_for(&caller.call_id)
        .expect("the callee was rung");
    assert_eq!(
        header(&invite, "X-Scamscreen-Verdict"),
        Some("warn"),
        "{invite}"
    );
    // The warning plays to the callee; then the legs are bridged and the caller's silence
    // arrives. Wait for a second of it before speaking again.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        caller.silence(200);
        let a = callee.audio.lock().unwrap();
        let tail_silent = a.len() > 16_000 && a[a.len() - 8000..].iter().all(|s| s.abs() < 64);
        if tail_silent || Instant::now() > deadline {
            break;
        }
    }
    let warning_samples = callee.samples();
    assert!(
        warning_samples > 8000 * 2,
        "the callee heard {warning_samples} samples"
    );
    caller.speak(&later);
    caller.silence(800);
    let rec = record_when_done(&mut caller, &ss);
    assert_eq!(rec["action"], "warn", "{rec}");
    // Answer → verdict: the 5 s greeting, the listening and the transcription.
    let (listen, screening) = (rec["listen_ms"].as_u64(), rec["screening_ms"].as_u64());
    assert!(
        screening >= listen.map(|l| l + 4_900),
        "screening_ms counts the greeting: {rec}"
    );
    let heard = callee.audio.lock().unwrap().clone();
    assert!(heard.len() > warning_samples + later.len() / 2);
    let text = transcribe(&heard);
    let warning_at = ["warning", "claims"]
        .iter()
        .filter_map(|w| text.find(w))
        .min()
        .unwrap_or_else(|| panic!("no warning in what the callee heard: {text}"));
    let later_at = ["call me back", "office"]
        .iter()
        .filter_map(|w| text.find(w))
        .min()
        .unwrap_or_else(|| panic!("the caller's later words are missing: {text}"));
    assert!(warning_at < later_at, "the warning comes first: {text}");
    let warning = rec["warning"].as_str().unwrap_or_default();
    assert!(warning.to_lowercase().contains("microsoft"), "{rec}");
}
