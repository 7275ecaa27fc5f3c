//! RFC 4475 torture messages and fuzz seeds thrown at the real binary over UDP.
//!
//! Acceptance criterion: every RFC 4475 message in `tests/data/sip/rfc4475/` and every seed in
//! `pjsip-fuzz-seeds/` and `kamailio-test-misc-sip/`, sent over UDP: the process keeps running
//! and still completes a normal call after each; invalid messages get 400 (or are dropped)
//! and are never forwarded.
//!
//! Three parties on real UDP sockets on loopback, none of which trusts the proxy to be right
//! (they parse by lines and never panic on what they get):
//! - a UAS on the upstream port that records every datagram and answers like a PBX;
//! - a UAC that places a normal call (INVITE / 200 / ACK / BYE / 200) through the proxy;
//! - an "attacker" that sends each test file byte-exact as one datagram.
//!
//! The attacker and the UAC live on their own loopback addresses (127.x.y.2 and 127.x.y.3,
//! inside the trusted 127.0.0.0/8), for two reasons: the proxy answers a request without
//! `rport` at *source IP : Via port* (RFC 3261 §18.2.2), so the attacker must own the Via
//! port (5060, 5040, ...) on its address to hear the answer; and the proxy's rate limiter
//! counts per source IP, so the three parties must not share one bucket. The upstream UAS
//! stays on 127.0.0.1.
//!
//! Several test files reuse another file's Via branch and sent-by (or Call-ID and CSeq); sent
//! within Timer J of the first, the proxy rightly takes them for retransmissions (RFC 3261
//! §17.2.3). Such files are sent once more, alone, to a fresh process and judged by that.
//!
//! `cargo test --release --test sip_torture -- --nocapture` prints the outcome table.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Largest file sent as one datagram.
const MAX_DATAGRAM: usize = 65_000;
/// How long the attacker listens for an answer to each file.
const ANSWER_WINDOW: Duration = Duration::from_millis(100);
/// UAC: retransmit a request after this long without any response.
const UAC_RETRANSMIT: Duration = Duration::from_millis(500);
/// UAC: give up on a transaction after this long.
const UAC_TIMEOUT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------
// Minimal, defensive SIP text handling (by lines; never panics, never trusts the input).
// ---------------------------------------------------------------------------------------

/// Start line and unfolded header lines (up to the first empty line), lossily decoded.
/// The Via branch of scamscreen's OPTIONS probes of its upstream (`sip::proxy::health`).
const PROBE: &[u8] = b"z9hG4bK-ssprobe-";

fn head(bytes: &[u8]) -> (String, Vec<String>) {
    let text = String::from_utf8_lossy(bytes);
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let start = lines.next().unwrap_or_default().to_string();
    let mut headers: Vec<String> = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some(last) = headers.last_mut() {
                last.push(' ');
                last.push_str(line.trim());
                continue;
            }
        }
        headers.push(line.to_string());
    }
    (start, headers)
}

/// (lowercased name, trimmed value) of a header line.
fn split_header(line: &str) -> Option<(String, String)> {
    let (name, value) = line.split_once(':')?;
    Some((name.trim().to_ascii_lowercase(), value.trim().to_string()))
}

/// Values of every header line whose name is one of `names` (lowercase, long and compact).
fn header_values(bytes: &[u8], names: &[&str]) -> Vec<String> {
    head(bytes)
        .1
        .iter()
        .filter_map(|l| split_header(l))
        .filter(|(n, _)| names.contains(&n.as_str()))
        .map(|(_, v)| v)
        .collect()
}

fn header(bytes: &[u8], names: &[&str]) -> Option<String> {
    header_values(bytes, names).into_iter().next()
}

fn call_ids(bytes: &[u8]) -> Vec<String> {
    header_values(bytes, &["call-id", "i"])
        .into_iter()
        .filter(|v| !v.is_empty())
        .collect()
}

fn start_line(bytes: &[u8]) -> String {
    head(bytes).0
}

fn is_response(bytes: &[u8]) -> bool {
    bytes.starts_with(b"SIP/")
}

/// Status code of a response ("SIP/2.0 483 Too Many Hops" → 483).
fn status_of(bytes: &[u8]) -> Option<u16> {
    let line = start_line(bytes);
    let mut it = line.split(' ');
    if !it.next()?.starts_with("SIP/") {
        return None;
    }
    it.next()?.parse().ok()
}

fn cseq_method(bytes: &[u8]) -> Option<String> {
    header(bytes, &["cseq"])?
        .split_whitespace()
        .nth(1)
        .map(str::to_string)
}

fn method_of(bytes: &[u8]) -> Option<String> {
    if is_response(bytes) {
        return None;
    }
    start_line(bytes).split(' ').next().map(str::to_string)
}

/// Split a header value on commas outside `<>` and quotes (Record-Route: a, b).
fn split_commas(value: &str) -> Vec<String> {
    let (mut out, mut cur, mut angle, mut quote) = (Vec::new(), String::new(), false, false);
    for c in value.chars() {
        match c {
            '"' if !angle => quote = !quote,
            '<' if !quote => angle = true,
            '>' if !quote => angle = false,
            ',' if !angle && !quote => {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// The URI of a name-addr or addr-spec.
fn uri_of(value: &str) -> String {
    match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if a < b => value[a + 1..b].to_string(),
        _ => value
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

/// host:port of a `sip:` URI whose host is an IP literal.
fn sip_uri_addr(uri: &str) -> Option<SocketAddr> {
    let rest = uri.strip_prefix("sip:")?;
    let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let hostport = rest.split([';', '?', '>']).next()?;
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (hostport, 5060),
    };
    Some(SocketAddr::new(host.parse().ok()?, port))
}

/// Every `:digits` inside the Via header values: the ports the proxy may answer at.
fn via_ports(bytes: &[u8]) -> Vec<u16> {
    let mut ports = vec![5060];
    for v in header_values(bytes, &["via", "v"]) {
        let b = v.as_bytes();
        for (i, _) in v.match_indices(':') {
            let digits: String = b[i + 1..]
                .iter()
                .skip_while(|c| **c == b' ')
                .take_while(|c| c.is_ascii_digit())
                .map(|c| *c as char)
                .collect();
            if let Ok(p) = digits.parse::<u16>() {
                if p != 0 && !ports.contains(&p) {
                    ports.push(p);
                }
            }
        }
    }
    ports
}

fn unique_token() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!(
        "{:x}{:x}{:x}",
        std::process::id(),
        nanos & 0xffff_ffff,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn short_hash(s: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

// ---------------------------------------------------------------------------------------
// The upstream UAS.
// ---------------------------------------------------------------------------------------

type Log = Arc<Mutex<Vec<Vec<u8>>>>;

struct Uas {
    addr: SocketAddr,
    log: Log,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Uas {
    fn start() -> Uas {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind UAS");
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let log: Log = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (log2, stop2) = (log.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while !stop2.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let msg = buf[..n].to_vec();
                log2.lock().unwrap().push(msg.clone());
                for reply in uas_replies(&msg, addr) {
                    let _ = sock.send_to(reply.as_bytes(), from);
                }
            }
        });
        Uas {
            addr,
            log,
            stop,
            thread: Some(thread),
        }
    }

    fn len(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    fn messages(&self, range: std::ops::Range<usize>) -> Vec<Vec<u8>> {
        let log = self.log.lock().unwrap();
        let end = range.end.min(log.len());
        log[range.start.min(end)..end].to_vec()
    }
}

impl Drop for Uas {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the UAS sends back: INVITE → 180 + 200, ACK → nothing, other requests → 200,
/// responses → nothing.
fn uas_replies(req: &[u8], me: SocketAddr) -> Vec<String> {
    let Some(method) = method_of(req) else {
        return Vec::new();
    };
    if method == "ACK" || method.is_empty() {
        return Vec::new();
    }
    let (_, lines) = head(req);
    let mut vias = Vec::new();
    let mut rrs = Vec::new();
    let (mut from, mut to, mut cid, mut cseq) = (None, None, None, None);
    for l in &lines {
        let Some((n, v)) = split_header(l) else {
            continue;
        };
        match n.as_str() {
            "via" | "v" => vias.push(v),
            "record-route" => rrs.push(v),
            "from" | "f" => from = from.or(Some(v)),
            "to" | "t" => to = to.or(Some(v)),
            "call-id" | "i" => cid = cid.or(Some(v)),
            "cseq" => cseq = cseq.or(Some(v)),
            _ => {}
        }
    }
    let cid = cid.unwrap_or_default();
    let mut to = to.unwrap_or_default();
    if !to.contains("tag=") {
        to.push_str(&format!(";tag=uas{:x}", short_hash(&cid) & 0xffff_ffff));
    }
    let build = |code: u16, reason: &str, dialog: bool| {
        let mut r = format!("SIP/2.0 {code} {reason}\r\n");
        for v in &vias {
            r.push_str(&format!("Via: {v}\r\n"));
        }
        if dialog {
            for rr in &rrs {
                r.push_str(&format!("Record-Route: {rr}\r\n"));
            }
        }
        r.push_str(&format!("From: {}\r\n", from.clone().unwrap_or_default()));
        r.push_str(&format!("To: {to}\r\n"));
        r.push_str(&format!("Call-ID: {cid}\r\n"));
        r.push_str(&format!("CSeq: {}\r\n", cseq.clone().unwrap_or_default()));
        if dialog {
            r.push_str(&format!("Contact: <sip:uas@{me}>\r\n"));
        }
        r.push_str("Content-Length: 0\r\n\r\n");
        r
    };
    if method == "INVITE" {
        vec![build(180, "Ringing", true), build(200, "OK", true)]
    } else {
        vec![build(200, "OK", false)]
    }
}

// ---------------------------------------------------------------------------------------
// The UAC.
// ---------------------------------------------------------------------------------------

struct Uac {
    sock: UdpSocket,
    local: SocketAddr,
    proxy: SocketAddr,
}

impl Uac {
    fn new(ip: IpAddr, proxy: SocketAddr) -> Uac {
        let sock = UdpSocket::bind((ip, 0)).expect("bind UAC");
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let local = sock.local_addr().unwrap();
        Uac { sock, local, proxy }
    }

    fn drain(&self) {
        let mut buf = [0u8; 65_536];
        self.sock.set_nonblocking(true).unwrap();
        while self.sock.recv_from(&mut buf).is_ok() {}
        self.sock.set_nonblocking(false).unwrap();
    }

    /// Send `msg` to `to` and wait for a final response to it (same Call-ID and CSeq
    /// method); retransmit every 500 ms while nothing at all has come back.
    fn transaction(
        &self,
        msg: &str,
        to: SocketAddr,
        call_id: &str,
        method: &str,
    ) -> Result<Vec<u8>, String> {
        let t0 = Instant::now();
        let send = || {
            self.sock
                .send_to(msg.as_bytes(), to)
                .map_err(|e| format!("send {method}: {e}"))
        };
        send()?;
        let mut last_send = Instant::now();
        let mut provisional = Vec::new();
        let mut buf = vec![0u8; 65_536];
        loop {
            if t0.elapsed() > UAC_TIMEOUT {
                return Err(format!(
                    "no final response to {method} within {UAC_TIMEOUT:?} (provisional: {provisional:?})"
                ));
            }
            if provisional.is_empty() && last_send.elapsed() >= UAC_RETRANSMIT {
                send()?;
                last_send = Instant::now();
            }
            let Ok((n, _)) = self.sock.recv_from(&mut buf) else {
                continue;
            };
            let r = &buf[..n];
            let Some(code) = status_of(r) else { continue };
            if !call_ids(r).iter().any(|c| c == call_id)
                || cseq_method(r).as_deref() != Some(method)
            {
                continue;
            }
            if code < 200 {
                provisional.push(code);
                continue;
            }
            return Ok(r.to_vec());
        }
    }

    /// One normal call through the proxy: INVITE, 200, ACK and BYE along the Record-Route.
    fn call(&self, call_id: &str) -> Result<Duration, String> {
        let t0 = Instant::now();
        self.drain();
        let tag = unique_token();
        let local = self.local;
        let proxy = self.proxy;
        let from = format!(
            "\"Alice Example\" <sip:+493012345678@{}>;tag={tag}",
            local.ip()
        );
        let invite = format!(
            "INVITE sip:+498912345678@{proxy} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK{b};rport\r\n\
             Max-Forwards: 70\r\n\
             From: {from}\r\n\
             To: <sip:+498912345678@{proxy}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:alice@{local}>\r\n\
             Content-Length: 0\r\n\r\n",
            b = unique_token()
        );
        let ok = self.transaction(&invite, proxy, call_id, "INVITE")?;
        if status_of(&ok) != Some(200) {
            return Err(format!("INVITE answered {:?}", start_line(&ok)));
        }
        let to = header(&ok, &["to", "t"]).ok_or("200 to INVITE has no To")?;
        if !to.contains("tag=") {
            return Err(format!("200 to INVITE has a To without tag: {to}"));
        }
        let contact = header(&ok, &["contact", "m"]).ok_or("200 to INVITE has no Contact")?;
        let target = uri_of(&contact);
        let routes: Vec<String> = header_values(&ok, &["record-route"])
            .iter()
            .flat_map(|v| split_commas(v))
            .collect();
        let first = routes
            .first()
            .ok_or("200 to INVITE has no Record-Route (the proxy must stay in the path)")?;
        let hop = sip_uri_addr(&uri_of(first))
            .ok_or_else(|| format!("Record-Route {first} is not sip:IP:port"))?;
        if hop != proxy {
            return Err(format!(
                "Record-Route {first} does not name the proxy {proxy}"
            ));
        }
        let route_lines: String = routes.iter().map(|r| format!("Route: {r}\r\n")).collect();
        let in_dialog = |method: &str, cseq: u32| {
            format!(
                "{method} {target} SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {local};branch=z9hG4bK{b};rport\r\n\
                 {route_lines}\
                 Max-Forwards: 70\r\n\
                 From: {from}\r\n\
                 To: {to}\r\n\
                 Call-ID: {call_id}\r\n\
                 CSeq: {cseq} {method}\r\n\
                 Content-Length: 0\r\n\r\n",
                b = unique_token()
            )
        };
        self.sock
            .send_to(in_dialog("ACK", 1).as_bytes(), hop)
            .map_err(|e| format!("send ACK: {e}"))?;
        let bye_ok = self.transaction(&in_dialog("BYE", 2), hop, call_id, "BYE")?;
        if status_of(&bye_ok) != Some(200) {
            return Err(format!("BYE answered {:?}", start_line(&bye_ok)));
        }
        Ok(t0.elapsed())
    }
}

/// A normal call, also checked from the UAS side: INVITE, ACK and BYE all arrived.
fn normal_call(uac: &Uac, uas: &Uas) -> (String, Result<Duration, String>) {
    let call_id = format!("normal-{}@{}", unique_token(), uac.local.ip());
    let mut result = uac.call(&call_id);
    if result.is_ok() {
        let seen: Vec<String> = uas
            .messages(0..usize::MAX)
            .iter()
            .rev()
            .take(64)
            .filter(|m| call_ids(m).contains(&call_id))
            .filter_map(|m| method_of(m))
            .collect();
        for m in ["INVITE", "ACK", "BYE"] {
            if !seen.iter().any(|s| s == m) {
                result = Err(format!("the UAS never got the {m} (it got {seen:?})"));
                break;
            }
        }
    }
    (call_id, result)
}

// ---------------------------------------------------------------------------------------
// The attacker.
// ---------------------------------------------------------------------------------------

struct Attacker {
    ip: IpAddr,
    sender: UdpSocket,
    /// Receive sockets by port on `ip` (the sender is one of them).
    socks: BTreeMap<u16, UdpSocket>,
    unbindable: Vec<u16>,
}

impl Attacker {
    fn new(ip: IpAddr) -> Attacker {
        // Port 5060: the Via default, where most answers go.
        let sender = UdpSocket::bind((ip, 5060))
            .or_else(|_| UdpSocket::bind((ip, 0)))
            .expect("bind attacker");
        sender.set_nonblocking(true).unwrap();
        let mut socks = BTreeMap::new();
        socks.insert(
            sender.local_addr().unwrap().port(),
            sender.try_clone().unwrap(),
        );
        Attacker {
            ip,
            sender,
            socks,
            unbindable: Vec::new(),
        }
    }

    fn sender_port(&self) -> u16 {
        self.sender.local_addr().map_or(0, |a| a.port())
    }

    fn listen_on(&mut self, port: u16) {
        if self.socks.contains_key(&port) || self.unbindable.contains(&port) {
            return;
        }
        match UdpSocket::bind((self.ip, port)) {
            Ok(s) => {
                s.set_nonblocking(true).unwrap();
                self.socks.insert(port, s);
            }
            Err(_) => self.unbindable.push(port),
        }
    }

    fn drain(&self) {
        let mut buf = vec![0u8; 65_536];
        for s in self.socks.values() {
            while s.recv_from(&mut buf).is_ok() {}
        }
    }

    /// Send `bytes` to the proxy and collect every datagram that comes back within the window.
    fn probe(&mut self, bytes: &[u8], proxy: SocketAddr) -> Vec<Vec<u8>> {
        for p in via_ports(bytes) {
            self.listen_on(p);
        }
        self.drain();
        if let Err(e) = self.sender.send_to(bytes, proxy) {
            panic!("attacker send ({} bytes): {e}", bytes.len());
        }
        let end = Instant::now() + ANSWER_WINDOW;
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65_536];
        while Instant::now() < end {
            let mut any = false;
            for s in self.socks.values() {
                while let Ok((n, _)) = s.recv_from(&mut buf) {
                    got.push(buf[..n].to_vec());
                    any = true;
                }
            }
            if !any {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        got
    }
}

// ---------------------------------------------------------------------------------------
// The proxy process.
// ---------------------------------------------------------------------------------------

struct ProxyProcess {
    child: Child,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
}

impl ProxyProcess {
    fn start(port: u16, upstream: SocketAddr) -> ProxyProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_scamscreen"))
            .args([
                "run",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--upstream",
                &upstream.to_string(),
                "--trust",
                "127.0.0.0/8",
                // The SIP edge alone: screened callers are marked and forwarded.
                "--mode",
                "mark",
            ])
            .env_remove("SCAMSCREEN_CONFIG")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start scamscreen");
        let stderr_tail: Arc<Mutex<VecDeque<String>>> = Arc::default();
        let tail = stderr_tail.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut t = tail.lock().unwrap();
                if t.len() == 200 {
                    t.pop_front();
                }
                t.push_back(line);
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut proc = ProxyProcess { child, stderr_tail };
        let ready = rx.recv_timeout(Duration::from_secs(20));
        let line = match ready {
            Ok(l) => l,
            Err(_) => {
                let status = proc.child.try_wait();
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "scamscreen printed no ready line within 20 s (status {status:?}); stderr:\n{}",
                    proc.stderr()
                );
            }
        };
        assert!(
            line.starts_with("listening udp ")
                && line.contains(&format!("127.0.0.1:{port}"))
                && line.contains(&format!("upstream {upstream}")),
            "unexpected ready line {line:?}"
        );
        proc
    }

    fn stderr(&self) -> String {
        let t = self.stderr_tail.lock().unwrap();
        t.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    fn running(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("scamscreen exited: {status}")),
            Err(e) => Err(format!("try_wait: {e}")),
        }
    }

    /// SIGTERM and wait (up to 5 s); the last stderr line is then the stats JSON.
    fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Ok(Some(s)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(50)); // let the stderr reader finish
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- scamscreen stderr (tail) ---\n{}", self.stderr());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free for both UDP and TCP on 127.0.0.1 (the proxy binds both on one address).
fn free_port() -> u16 {
    for _ in 0..100 {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind tcp");
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP");
}

/// A loopback address of our own (127.x.y.`last`), or 127.0.0.1 where only that exists.
fn loopback(last: u8) -> IpAddr {
    let pid = std::process::id();
    let ip = IpAddr::V4(Ipv4Addr::new(127, (pid >> 8) as u8, pid as u8, last));
    match UdpSocket::bind((ip, 0)) {
        Ok(_) => ip,
        Err(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
    }
}

// ---------------------------------------------------------------------------------------
// The test data.
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Case {
    /// Path under tests/data/sip.
    label: String,
    path: PathBuf,
    /// RFC 4475: (name, class) from index.tsv.
    rfc: Option<(String, String)>,
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sip")
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn cases() -> Vec<Case> {
    let root = data_dir();
    let mut cases = Vec::new();
    let index = std::fs::read_to_string(root.join("rfc4475/index.tsv")).expect("index.tsv");
    let mut cols_of = HashMap::new();
    for (i, line) in index.lines().enumerate() {
        let cols: Vec<&str> = line.split('\t').collect();
        if i == 0 {
            for (j, c) in cols.iter().enumerate() {
                cols_of.insert(c.to_string(), j);
            }
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let col = |name: &str| cols[*cols_of.get(name).expect("index.tsv column")].to_string();
        let file = col("file");
        cases.push(Case {
            label: format!("rfc4475/{file}"),
            path: root.join("rfc4475").join(&file),
            rfc: Some((col("name"), col("class"))),
        });
    }
    for folder in ["pjsip-fuzz-seeds", "kamailio-test-misc-sip"] {
        let mut files = Vec::new();
        files_under(&root.join(folder), &mut files);
        for p in files {
            let label = p
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            cases.push(Case {
                label,
                path: p,
                rfc: None,
            });
        }
    }
    cases
}

/// What RFC 4475 asks of a proxy for each message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Forward to the upstream, answer nothing of its own above 2xx.
    Forward,
    /// Refuse with exactly this status, never forward.
    Refuse(u16),
    /// 4xx/5xx or no answer; never forward.
    RefuseOrDrop,
    /// A response that is not ours: drop silently, never forward.
    DropResponse,
    /// Either is allowed (3.2.1: 400, or treat as RFC 2543 and forward); never both.
    Either,
}

fn rfc4475_expectation(name: &str, class: &str) -> Expect {
    match (class, name) {
        // Valid responses (3.1.1.12, 3.1.1.13) match no transaction of ours: a proxy drops
        // them (RFC 3261 §16.7 step 1 → §16.11: the top Via is not ours).
        ("valid", "unreason" | "noreason") => Expect::DropResponse,
        ("valid", _) => Expect::Forward,
        ("invalid", "scalarlg" | "bigcode") => Expect::DropResponse,
        ("invalid", "badvers") => Expect::Refuse(505),
        // Request-Line with extra, embedded or trailing SP (3.1.2.8/9/10) and a display name
        // that is not a token (3.1.2.15, stored without the final blank line): still parsed
        // far enough to answer 400, as RFC 4475 prefers.
        ("invalid", "lwsruri" | "lwsstart" | "trws" | "baddn") => Expect::Refuse(400),
        // The acceptance criterion allows 400 or a silent drop for the rest.
        ("invalid", _) => Expect::RefuseOrDrop,
        ("transaction", _) => Expect::Either,
        // 3.3.1: To, From, Call-ID missing → 400.
        ("application", "insuf") => Expect::Refuse(400),
        // 3.3.2, 3.3.3: a scheme we never route → 416.
        ("application", "unkscm" | "novelsc") => Expect::Refuse(416),
        // 3.3.5: Proxy-Require of an extension we lack → 420.
        ("application", "bext01") => Expect::Refuse(420),
        // 3.3.8 (several To/Call-ID/…), 3.3.9 (two Content-Length) → 400.
        ("application", "multi01" | "mcl01") => Expect::Refuse(400),
        // 3.3.10: a stray response, and its Via names a broadcast address: drop.
        ("application", "bcast") => Expect::DropResponse,
        // 3.3.11: Max-Forwards 0 on a request not for us → 483.
        ("application", "zeromf") => Expect::Refuse(483),
        // 3.3.4, 3.3.6, 3.3.7, 3.3.12–3.3.15: for the UAS or registrar to judge; a proxy
        // forwards them ("proxies should treat this message as they would any other").
        ("application", _) => Expect::Forward,
        // 3.4.1: RFC 2543 syntax must be tolerated.
        ("compat", _) => Expect::Forward,
        _ => panic!("index.tsv: unknown class {class} for {name}"),
    }
}

// ---------------------------------------------------------------------------------------
// The test.
// ---------------------------------------------------------------------------------------

/// What one send of one file led to.
#[derive(Default)]
struct Seen {
    /// Every datagram the attacker got back within the window.
    answers: Vec<Vec<u8>>,
    /// Messages the upstream got that carry the file's Call-ID (or, for a file without a
    /// Call-ID, anything but the normal call).
    upstream: Vec<Vec<u8>>,
    /// Messages the upstream got that are neither the file's nor the normal call's.
    unexplained: Vec<Vec<u8>>,
}

impl Seen {
    fn new(answers: Vec<Vec<u8>>, window: Vec<Vec<u8>>, file: &[u8], normal: &str) -> Seen {
        let cids = call_ids(file);
        let mut seen = Seen {
            answers,
            ..Seen::default()
        };
        for m in window {
            let mc = call_ids(&m);
            if mc.iter().any(|c| c == normal) {
                continue;
            }
            // scamscreen's own health probes of its upstream (OPTIONS every few seconds).
            if m.windows(PROBE.len()).any(|w| w == PROBE) {
                continue;
            }
            if cids.is_empty() || mc.iter().any(|c| cids.contains(c)) {
                seen.upstream.push(m);
            } else {
                seen.unexplained.push(m);
            }
        }
        seen
    }

    fn forwarded(&self) -> bool {
        !self.upstream.is_empty()
    }

    fn statuses(&self) -> Vec<u16> {
        self.answers
            .iter()
            .map(|a| status_of(a).unwrap_or(0))
            .collect()
    }

    fn refused(&self) -> bool {
        self.statuses().iter().any(|s| (400..700).contains(s))
    }

    fn answer_text(&self) -> String {
        if self.answers.is_empty() {
            return "no response".into();
        }
        let mut parts: Vec<String> = Vec::new();
        for a in &self.answers {
            let line = start_line(a);
            let code = status_of(a).map_or_else(
                || line.chars().take(30).collect(),
                |c| {
                    if c < 300 {
                        c.to_string()
                    } else {
                        line.trim_start_matches("SIP/2.0 ")
                            .chars()
                            .take(34)
                            .collect()
                    }
                },
            );
            if parts.last() != Some(&code) {
                parts.push(code);
            }
        }
        parts.join("+")
    }

    fn upstream_text(&self) -> String {
        if self.upstream.is_empty() {
            return "-".into();
        }
        let methods: Vec<String> = self
            .upstream
            .iter()
            .map(|m| {
                let m = method_of(m).unwrap_or_else(|| "response".into());
                m.chars().take(12).collect()
            })
            .collect();
        format!("FORWARDED {}", methods.join(","))
    }
}

struct Outcome {
    case: Case,
    bytes: Vec<u8>,
    answers: Vec<Vec<u8>>,
    /// The upstream log from when the file was sent until the next file was.
    log_start: usize,
    log_end: usize,
    call_id: String,
    call: Result<Duration, String>,
    alive: Result<(), String>,
    seq: Seen,
    /// An earlier file whose still-live server transaction this request matched (same Via
    /// branch and sent-by, or same Call-ID/CSeq/From-tag: RFC 3261 §17.2.3), so the proxy
    /// rightly treated it as a retransmission.
    absorbed_by: Option<String>,
    /// For absorbed files: the same bytes sent alone to a fresh proxy process.
    alone: Option<Seen>,
}

impl Outcome {
    /// The outcome the file is judged by: alone if the sequence hid it behind an earlier
    /// file's transaction.
    fn effective(&self) -> &Seen {
        self.alone.as_ref().unwrap_or(&self.seq)
    }
}

fn has_header_end(bytes: &[u8]) -> bool {
    bytes.windows(4).any(|w| w == b"\r\n\r\n") || bytes.windows(2).any(|w| w == b"\n\n")
}

fn looks_like_request(bytes: &[u8]) -> bool {
    !is_response(bytes) && start_line(bytes).contains("SIP/")
}

/// The `branch` parameter of the first Via, as text.
fn top_branch(bytes: &[u8]) -> Option<String> {
    let via = header(bytes, &["via", "v"])?;
    let lower = via.to_ascii_lowercase();
    let at = lower.find("branch")?;
    let rest = via[at + "branch".len()..].trim_start().strip_prefix('=')?;
    let b: String = rest
        .trim_start()
        .chars()
        .take_while(|c| !matches!(c, ';' | ',' | ' ' | '\t'))
        .collect();
    (!b.is_empty()).then_some(b)
}

/// The sent-by of the first Via, lowercased, with the default port made explicit.
fn top_sent_by(bytes: &[u8]) -> Option<String> {
    let via = header(bytes, &["via", "v"])?;
    let first = via.split([';', ',']).next()?;
    let host = first.split_whitespace().last()?.to_ascii_lowercase();
    Some(if host.contains(':') {
        host
    } else {
        format!("{host}:5060")
    })
}

/// Roughly the server transaction key of RFC 3261 §17.2.3 (ACK and CANCEL aside): branch,
/// sent-by and method; for a branch without the magic cookie, Call-ID, CSeq and sent-by.
fn tx_key(bytes: &[u8]) -> Option<String> {
    let method = method_of(bytes)?;
    let sent_by = top_sent_by(bytes)?;
    match top_branch(bytes) {
        Some(b) if b.starts_with("z9hG4bK") && b.len() > 7 => {
            Some(format!("{b} {sent_by} {method}"))
        }
        _ => Some(format!(
            "{:?} {:?} {sent_by} {method}",
            call_ids(bytes).first(),
            header(bytes, &["cseq"])
        )),
    }
}

/// Send `bytes` alone to a fresh proxy process (fresh transaction table).
fn send_alone(bytes: &[u8], uas: &Uas, attacker: &mut Attacker) -> (Seen, Result<(), String>) {
    let port = free_port();
    let mut proxy = ProxyProcess::start(port, uas.addr);
    let start = uas.len();
    let answers = attacker.probe(bytes, SocketAddr::from(([127, 0, 0, 1], port)));
    let alive = proxy.running();
    let window = uas.messages(start..uas.len());
    (Seen::new(answers, window, bytes, ""), alive)
}

#[test]
fn torture_messages_never_break_the_proxy_or_leak_upstream() {
    let t_start = Instant::now();
    let uas = Uas::start();
    let port = free_port();
    let proxy_addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut proxy = ProxyProcess::start(port, uas.addr);

    let attacker_ip = loopback(2);
    let uac_ip = loopback(3);
    let uac = Uac::new(uac_ip, proxy_addr);
    let mut attacker = Attacker::new(attacker_ip);
    eprintln!(
        "proxy {proxy_addr}, upstream UAS {}, attacker {attacker_ip}, UAC {}",
        uas.addr, uac.local
    );

    // Baseline: a normal call works, and the proxy did its job on the way (§16.6).
    let (base_id, base) = normal_call(&uac, &uas);
    let base_time = base.unwrap_or_else(|e| panic!("baseline call failed: {e}"));
    let invite_up = uas
        .messages(0..usize::MAX)
        .into_iter()
        .find(|m| method_of(m).as_deref() == Some("INVITE") && call_ids(m).contains(&base_id))
        .expect("baseline INVITE upstream");
    let top_via = header(&invite_up, &["via", "v"]).unwrap_or_default();
    assert!(
        top_via.contains(&format!("127.0.0.1:{port}")) && top_via.contains("branch=z9hG4bK"),
        "proxy's Via missing on the forwarded INVITE: {top_via}"
    );
    assert_eq!(
        header(&invite_up, &["max-forwards"]).as_deref(),
        Some("69"),
        "Max-Forwards not decremented"
    );
    assert!(
        header_values(&invite_up, &["record-route"])
            .iter()
            .any(|rr| rr.contains(&format!("127.0.0.1:{port}"))),
        "no Record-Route of the proxy on the forwarded INVITE"
    );

    // OPTIONS to the proxy itself (no user part): answered 200 locally, never forwarded.
    let options_id = format!("options-{}", unique_token());
    let options = format!(
        "OPTIONS sip:{proxy_addr} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {};branch=z9hG4bK{};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:monitor@{}>;tag={}\r\n\
         To: <sip:{proxy_addr}>\r\n\
         Call-ID: {options_id}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n",
        uac.local,
        unique_token(),
        uac.local.ip(),
        unique_token()
    );
    let before = uas.len();
    let answer = uac
        .transaction(&options, proxy_addr, &options_id, "OPTIONS")
        .unwrap_or_else(|e| panic!("OPTIONS to the proxy itself: {e}"));
    assert_eq!(status_of(&answer), Some(200), "{:?}", start_line(&answer));
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        !uas.messages(before..usize::MAX)
            .iter()
            .any(|m| call_ids(m).contains(&options_id)),
        "OPTIONS addressed to the proxy itself was forwarded"
    );

    // Phase 1: every file, each followed by a normal call, against one long-running process.
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut skipped = Vec::new();
    let mut died = None;
    for case in cases() {
        let bytes = std::fs::read(&case.path).unwrap_or_else(|e| panic!("{}: {e}", case.label));
        if bytes.len() > MAX_DATAGRAM {
            skipped.push(case.label.clone());
            continue;
        }
        let log_start = uas.len();
        if let Some(prev) = outcomes.last_mut() {
            prev.log_end = log_start;
        }
        let answers = attacker.probe(&bytes, proxy_addr);
        let (call_id, call) = normal_call(&uac, &uas);
        let alive = proxy.running();
        let dead = alive.is_err();
        outcomes.push(Outcome {
            case,
            bytes,
            answers,
            log_start,
            log_end: usize::MAX,
            call_id,
            call,
            alive,
            seq: Seen::default(),
            absorbed_by: None,
            alone: None,
        });
        if dead {
            died = Some(outcomes.last().unwrap().case.label.clone());
            break;
        }
    }
    // Late forwards of the last file still count.
    std::thread::sleep(ANSWER_WINDOW);
    if let Some(last) = outcomes.last_mut() {
        last.log_end = uas.len();
    }
    let phase1 = t_start.elapsed();
    for o in outcomes.iter_mut() {
        let window = uas.messages(o.log_start..o.log_end);
        o.seq = Seen::new(std::mem::take(&mut o.answers), window, &o.bytes, &o.call_id);
    }

    // Phase 2: test files reuse Via branches and Call-IDs (3.3.13 cparam02 has cparam01's
    // branch and sent-by; pjsip input.3 is 3.1.1.1 again). Within 32 s (Timer J, 64*T1) the
    // proxy must treat such a request as a retransmission of the earlier one: absorb it, or
    // replay the earlier response. Such files are judged by a second send to a fresh process.
    for i in 0..outcomes.len() {
        let o = &outcomes[i];
        if !looks_like_request(&o.bytes) || o.seq.forwarded() || o.seq.refused() {
            continue;
        }
        // Which earlier file's transaction did it hit? The one whose response was replayed,
        // else the one with the same transaction key.
        let replayed: Vec<String> = o.seq.answers.iter().flat_map(|a| call_ids(a)).collect();
        let key = tx_key(&o.bytes);
        let had_tx = |e: &&Outcome| e.seq.forwarded() || e.alone.is_some();
        let earlier = outcomes[..i]
            .iter()
            .rev()
            .filter(had_tx)
            .find(|e| call_ids(&e.bytes).iter().any(|c| replayed.contains(c)))
            .or_else(|| {
                outcomes[..i]
                    .iter()
                    .rev()
                    .filter(had_tx)
                    .find(|e| key.is_some() && tx_key(&e.bytes) == key)
            });
        let Some(earlier) = earlier.map(|e| e.case.label.clone()) else {
            continue;
        };
        let (alone, alive) = send_alone(&outcomes[i].bytes, &uas, &mut attacker);
        let o = &mut outcomes[i];
        if o.alive.is_ok() {
            o.alive = alive.map_err(|e| format!("{e} (sent alone to a fresh process)"));
        }
        // Only a different outcome alone shows the sequence hid it.
        if alone.forwarded() || alone.refused() {
            o.absorbed_by = Some(earlier);
            o.alone = Some(alone);
        }
    }

    // How many test files carry each Call-ID (a shared one cannot be checked globally).
    let mut cid_files: HashMap<String, usize> = HashMap::new();
    for o in &outcomes {
        for c in call_ids(&o.bytes) {
            *cid_files.entry(c).or_default() += 1;
        }
    }
    let everything_upstream = uas.messages(0..usize::MAX);

    let mut failures: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let mut table = Vec::new();
    let mut call_times = Vec::new();
    let (mut n_forwarded, mut n_refused, mut n_silent) = (0, 0, 0);
    for o in &outcomes {
        let label = &o.case.label;
        let eff = o.effective();
        match (eff.forwarded(), eff.refused()) {
            (true, _) => n_forwarded += 1,
            (false, true) => n_refused += 1,
            (false, false) => n_silent += 1,
        }

        // Every file: the process survives and the next call works.
        if let Err(e) = &o.alive {
            failures.push(format!("{label}: {e}"));
        }
        match &o.call {
            Ok(d) => call_times.push(*d),
            Err(e) => failures.push(format!("{label}: the normal call after it failed: {e}")),
        }
        for (how, seen) in [("", Some(&o.seq)), (" (alone)", o.alone.as_ref())] {
            let Some(seen) = seen else { continue };
            // Every file: a request the proxy refused is never forwarded.
            if seen.refused() && seen.forwarded() {
                failures.push(format!(
                    "{label}{how}: answered {} but forwarded upstream anyway",
                    seen.answer_text()
                ));
            }
            for m in &seen.unexplained {
                failures.push(format!(
                    "{label}{how}: the upstream got a message that is neither this file's nor \
                     the normal call's: {:?}",
                    start_line(m)
                ));
            }
        }
        // A response or non-SIP bytes: never answered, never sent upstream.
        if !looks_like_request(&o.bytes) {
            if !o.seq.answers.is_empty() {
                failures.push(format!(
                    "{label}: not a request, yet answered {}",
                    o.seq.answer_text()
                ));
            }
            if o.seq.forwarded() {
                failures.push(format!("{label}: not a request, yet sent upstream"));
            }
        }

        let mut expect_text = String::new();
        if let Some((name, class)) = &o.case.rfc {
            let expect = rfc4475_expectation(name, class);
            expect_text = format!("{expect:?}");
            let statuses = eff.statuses();
            let mut fail = |why: String| failures.push(format!("{label} ({class}): {why}"));
            match expect {
                Expect::Forward => {
                    if !eff.forwarded() {
                        fail(format!(
                            "valid for a proxy, must be forwarded; got {}",
                            eff.answer_text()
                        ));
                    }
                    if statuses.iter().any(|s| *s >= 300) {
                        fail(format!("forwardable, yet answered {}", eff.answer_text()));
                    }
                }
                Expect::Refuse(code) => {
                    if !statuses.contains(&code) || statuses.iter().any(|s| *s < 300) {
                        fail(format!("expected {code}, got {}", eff.answer_text()));
                    }
                    if eff.forwarded() {
                        fail("forwarded upstream".into());
                    }
                }
                Expect::RefuseOrDrop => {
                    if statuses.iter().any(|s| !(400..600).contains(s)) {
                        fail(format!(
                            "expected 4xx/5xx or nothing, got {}",
                            eff.answer_text()
                        ));
                    }
                    if eff.forwarded() {
                        fail("forwarded upstream".into());
                    }
                    if statuses.is_empty() {
                        // Allowed by the acceptance criterion ("400 or dropped"). RFC 4475 would
                        // rather see a 400 where the message can be answered: today the proxy
                        // drops 3.1.2.8 lwsruri, 3.1.2.9 lwsstart and 3.1.2.10 trws unanswered
                        // because its parser refuses the Request-Line itself. (3.1.2.15 baddn
                        // as stored here lacks the empty line that ends the headers.)
                        let why = if has_header_end(&o.bytes) {
                            "its Via is usable: RFC 4475 prefers a 400"
                        } else {
                            "the file has no empty line ending the headers"
                        };
                        notes.push(format!("{label}: dropped without an answer ({why})"));
                    }
                }
                Expect::DropResponse => {
                    if !eff.answers.is_empty() {
                        fail(format!("expected silence, got {}", eff.answer_text()));
                    }
                    if eff.forwarded() {
                        fail("forwarded upstream".into());
                    }
                }
                Expect::Either => {}
            }
            // Invalid messages: their Call-ID never reaches the upstream, at any time.
            if matches!(
                expect,
                Expect::Refuse(_) | Expect::RefuseOrDrop | Expect::DropResponse
            ) {
                for c in call_ids(&o.bytes) {
                    if cid_files.get(&c) == Some(&1)
                        && everything_upstream.iter().any(|m| call_ids(m).contains(&c))
                    {
                        fail(format!("its Call-ID {c} reached the upstream"));
                    }
                }
            }
            // 3.1.1.8: over UDP the octets after Content-Length are ignored: the trailing
            // INVITE is neither forwarded nor part of the forwarded REGISTER.
            if name == "dblreq" {
                let trailing = "dblreq.0ha0isnda977644900765@192.0.2.15";
                if everything_upstream
                    .iter()
                    .any(|m| String::from_utf8_lossy(m).contains(trailing))
                {
                    fail("the trailing INVITE after Content-Length reached the upstream".into());
                }
            }
        }

        let mut answer = eff.answer_text();
        let mut upstream = eff.upstream_text();
        if let Some(by) = &o.absorbed_by {
            answer = format!("{} | alone: {answer}", o.seq.answer_text());
            upstream = format!("{} | alone: {upstream}", o.seq.upstream_text());
            notes.push(format!(
                "{label}: matched the live transaction of {by} (RFC 3261 §17.2.3 retransmission): \
                 {}; sent alone to a fresh process: {}, {}",
                if o.seq.answers.is_empty() {
                    "absorbed silently".to_string()
                } else {
                    format!(
                        "that transaction's response replayed ({})",
                        o.seq.answer_text()
                    )
                },
                eff.answer_text(),
                eff.upstream_text()
            ));
        }
        table.push(format!(
            "{:<50} {:>5}  {:<11} {:<32} {:<24} {:<8} {}",
            label,
            o.bytes.len(),
            o.case.rfc.as_ref().map_or("", |(_, c)| c.as_str()),
            answer,
            upstream,
            match &o.call {
                Ok(_) => "ok",
                Err(_) => "FAILED",
            },
            expect_text
        ));
    }

    let cols = [
        "file",
        "bytes",
        "class",
        "answer to the sender",
        "upstream",
        "call",
        "RFC 4475 expects",
    ];
    eprintln!(
        "{:<50} {:>5}  {:<11} {:<32} {:<24} {:<8} {}",
        cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6]
    );
    for line in &table {
        eprintln!("{line}");
    }
    if !notes.is_empty() {
        eprintln!("notes:");
        for n in &notes {
            eprintln!("  {n}");
        }
    }
    call_times.sort();
    let max_call = call_times.last().copied().unwrap_or_default();
    let median_call = call_times
        .get(call_times.len() / 2)
        .copied()
        .unwrap_or_default();
    eprintln!(
        "{} files sent ({} skipped > {MAX_DATAGRAM} B: {skipped:?}): forwarded {n_forwarded}, \
         refused {n_refused}, dropped silently {n_silent}; {} normal calls ok (baseline {:.1} ms, \
         median {:.1} ms, max {:.1} ms); phase 1 {:.1} s; attacker could not bind Via ports {:?}",
        outcomes.len(),
        skipped.len(),
        call_times.len(),
        base_time.as_secs_f64() * 1e3,
        median_call.as_secs_f64() * 1e3,
        max_call.as_secs_f64() * 1e3,
        phase1.as_secs_f64(),
        attacker.unbindable
    );

    if let Some(label) = &died {
        failures.push(format!(
            "scamscreen died after {label}; the remaining files were not sent"
        ));
    } else {
        match proxy.terminate() {
            Some(status) => eprintln!(
                "scamscreen stopped ({status}); stats: {}",
                proxy
                    .stderr_tail
                    .lock()
                    .unwrap()
                    .iter()
                    .rev()
                    .find(|l| l.starts_with('{'))
                    .cloned()
                    .unwrap_or_default()
            ),
            None => failures.push("scamscreen did not stop within 5 s of SIGTERM".into()),
        }
    }
    if !failures.is_empty() && (attacker.sender_port() != 5060 || !attacker.unbindable.is_empty()) {
        failures.push(format!(
            "hint: the attacker could not bind {attacker_ip}:{:?} (something else holds those \
             UDP ports), so answers sent to the Via port were not heard",
            attacker
                .unbindable
                .iter()
                .chain((attacker.sender_port() != 5060).then_some(&5060))
                .collect::<Vec<_>>()
        ));
    }
    eprintln!("total {:.1} s", t_start.elapsed().as_secs_f64());
    assert!(
        failures.is_empty(),
        "{} problem(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
