//! Screened calls end to end on loopback: `scamscreen run` with the real whisper model, real
//! UDP SIP and RTP, a caller that speaks espeak-ng speech as G.711, and a callee that records
//! what it hears.

mod common;

use scamscreen::media::g711::Codec;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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

/// A free even port with the next one free too, for an RTP range of `n` ports.
fn free_range(n: u16) -> (u16, u16) {
    for start in (30_000..60_000).step_by(n as usize + 2) {
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
    db: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn start(upstream: u16) -> Scamscreen {
    common::model("ggml-tiny.en-q8_0.bin");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let rtp = free_range(8);
    let db = dir.path().join("calls.db");
    let mut child = Command::new(env!("CARGO_BIN_EXE_scamscreen"))
        .args(["run", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--upstream", &format!("127.0.0.1:{upstream}")])
        .args(["--trust", "127.0.0.0/8"])
        .args(["--rtp-ports", &format!("{}-{}", rtp.0, rtp.1)])
        .arg("--db")
        .arg(&db)
        .current_dir(common::root())
        .env("SCAMSCREEN_LOG", "info,whisper_rs=off")
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

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn status(msg: &str) -> Option<u16> {
    msg.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
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
}

impl Drop for Callee {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The caller: a withheld INVITE, then it speaks `utterances` (each after the previous
/// one plus `gap`), answering whatever scamscreen sends. Returns the SIP it received.
struct Caller {
    sip: UdpSocket,
    rtp: UdpSocket,
    proxy: SocketAddr,
    call_id: String,
    remote_rtp: Option<SocketAddr>,
    log: Vec<String>,
    seq: u16,
    ts: u32,
    got_bye: bool,
    to_tag: String,
    contact: String,
}

impl Caller {
    fn call(proxy: SocketAddr, name: &str) -> Caller {
        let sip = UdpSocket::bind("127.0.0.2:0").unwrap();
        let rtp = UdpSocket::bind("127.0.0.2:0").unwrap();
        sip.set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        rtp.set_nonblocking(true).unwrap();
        let local = sip.local_addr().unwrap();
        let call_id = format!("e2e-{name}-{}", local.port());
        let rtp_port = rtp.local_addr().unwrap().port();
        let body = sdp(rtp_port).replace("127.0.0.1", "127.0.0.2");
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
        let mut c = Caller {
            sip,
            rtp,
            proxy,
            call_id,
            remote_rtp: None,
            log: Vec::new(),
            seq: 1,
            ts: 0,
            got_bye: false,
            to_tag: String::new(),
            contact: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while c.remote_rtp.is_none() {
            assert!(Instant::now() < deadline, "no 200 OK: {:?}", c.log);
            c.poll_sip();
        }
        c
    }

    fn poll_sip(&mut self) {
        let mut buf = [0u8; 65535];
        while let Ok((n, from)) = self.sip.recv_from(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            self.log.push(msg.clone());
            if status(&msg) == Some(200) && msg.contains("INVITE") && self.remote_rtp.is_none() {
                let port = sdp_port(&msg).expect("SDP in the 200");
                self.remote_rtp = Some(format!("127.0.0.1:{port}").parse().unwrap());
                let to = header(&msg, "to").unwrap_or_default();
                self.to_tag = to.split("tag=").nth(1).unwrap_or_default().to_string();
                self.contact = header(&msg, "contact")
                    .unwrap_or_default()
                    .trim_matches(['<', '>'])
                    .to_string();
                let ack = self.request("ACK", 1);
                self.sip.send_to(ack.as_bytes(), self.proxy).unwrap();
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
             Max-Forwards: 70\r\nFrom: \"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=c1\r\n\
             To: <sip:100@127.0.0.1>;tag={}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\n\
             Content-Length: 0\r\n\r\n",
            self.contact, self.call_id, self.to_tag, self.call_id
        )
    }

    /// Send 20 ms PCMU packets of `pcm` in real time, handling SIP meanwhile.
    fn speak(&mut self, pcm: &[i16]) {
        let Some(to) = self.remote_rtp else { return };
        let start = Instant::now();
        for (i, frame) in pcm.chunks(160).enumerate() {
            let due = start + Duration::from_millis(20 * i as u64);
            while Instant::now() < due {
                self.poll_sip();
                let mut b = [0u8; 2048];
                while self.rtp.recv_from(&mut b).is_ok() {}
                std::thread::sleep(Duration::from_millis(2));
            }
            let mut pkt = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78];
            pkt[2..4].copy_from_slice(&self.seq.to_be_bytes());
            pkt[4..8].copy_from_slice(&self.ts.to_be_bytes());
            pkt.extend(Codec::Pcmu.encode(frame));
            let _ = self.rtp.send_to(&pkt, to);
            self.seq = self.seq.wrapping_add(1);
            self.ts = self.ts.wrapping_add(160);
        }
    }

    fn silence(&mut self, ms: u64) {
        self.speak(&vec![0i16; (ms * 8) as usize]);
    }

    fn hang_up(&mut self) {
        let bye = self.request("BYE", 2);
        self.sip.send_to(bye.as_bytes(), self.proxy).unwrap();
        self.silence(300);
    }
}

fn calls_json(db: &std::path::Path) -> Vec<serde_json::Value> {
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

/// The default greeting is 5.0 s; the caller starts talking just after it.
const GREETING_MS: u64 = 5200;

#[test]
fn tech_support_scam_is_blocked_and_the_callee_never_rings() {
    let _cpu = common::cpu_heavy();
    let callee = Callee::start();
    let ss = start(callee.port);
    // Said within the default 8 s listening window.
    let words = speech(
        "This is Microsoft support. Your computer has a virus. Install TeamViewer now so we \
         can fix it.",
    );
    let mut caller = Caller::call(ss.sip, "scam");
    caller.silence(GREETING_MS);
    caller.speak(&words);
    let deadline = Instant::now() + Duration::from_secs(25);
    while !caller.got_bye && Instant::now() < deadline {
        caller.silence(200);
    }
    assert!(
        caller.got_bye,
        "scamscreen hangs up after the block announcement"
    );
    assert!(callee.invites().is_empty(), "the callee's phone never rang");
    std::thread::sleep(Duration::from_millis(300));
    let calls = calls_json(&ss.db);
    let rec = calls
        .iter()
        .find(|c| c["call_id"] == caller.call_id.as_str())
        .unwrap_or_else(|| panic!("call record: {calls:?}"));
    assert_eq!(rec["action"], "divert", "{rec}");
    assert_eq!(rec["withheld_reason"], "Privacy: id");
    let text = rec["transcript"].as_str().unwrap().to_lowercase();
    assert!(
        text.contains("microsoft") || text.contains("computer"),
        "{text}"
    );
    let ttv = rec["time_to_verdict_ms"].as_u64().unwrap();
    assert!(ttv < 5_000, "time to verdict {ttv} ms");
    // Every port is back: the RTP range can be bound again.
    for p in ss.rtp.0..=ss.rtp.1 {
        assert!(
            UdpSocket::bind(("127.0.0.1", p)).is_ok(),
            "RTP port {p} still held"
        );
    }
}

#[test]
fn legitimate_caller_is_bridged_and_the_callee_hears_them() {
    let _cpu = common::cpu_heavy();
    let callee = Callee::start();
    let ss = start(callee.port);
    let first = speech(
        "Hello, this is Doctor Miller's dental office calling to confirm your appointment \
         tomorrow at ten in the morning.",
    );
    let second =
        speech("Please remember to bring your insurance card and arrive ten minutes early.");
    let mut caller = Caller::call(ss.sip, "legit");
    caller.silence(GREETING_MS);
    caller.speak(&first);
    // Silence ends the listening; wait for the callee to be rung and answer.
    let deadline = Instant::now() + Duration::from_secs(20);
    while callee.invites().is_empty() && Instant::now() < deadline {
        caller.silence(200);
    }
    let invites = callee.invites();
    assert_eq!(invites.len(), 1, "the callee rings once");
    assert_eq!(header(&invites[0], "X-Scamscreen-Verdict"), Some("allow"));
    assert!(header(&invites[0], "X-Scamscreen-Score").is_some());
    caller.silence(1000);
    caller.speak(&second);
    caller.silence(500);
    caller.hang_up();
    std::thread::sleep(Duration::from_millis(500));
    let heard: Vec<f32> = {
        let a = callee.audio.lock().unwrap();
        a.iter().map(|s| f32::from(*s) / 32768.0).collect()
    };
    assert!(
        heard.len() > 8000 * 3,
        "the callee received {} samples",
        heard.len()
    );
    let pcm16 = scamscreen::asr::resample::resample(&heard, 8000, 16_000).unwrap();
    let pool = scamscreen::asr::whisper::WhisperPool::start(
        &scamscreen::asr::whisper::WhisperConfig::new(common::model("ggml-tiny.en-q8_0.bin")),
    )
    .unwrap();
    use scamscreen::asr::Transcriber;
    let text = pool.transcribe(pcm16).unwrap().text.to_lowercase();
    assert!(
        text.contains("insurance") || text.contains("early"),
        "the callee heard: {text}"
    );
    let bye = callee
        .sip_log
        .lock()
        .unwrap()
        .iter()
        .any(|m| m.starts_with("BYE "));
    assert!(bye, "the caller's hang-up reached the callee");
}
