//! The demo callee: a test phone behind scamscreen that answers and records what it hears.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{header, headers, method, pcmu_sdp, response, rtp_audio, status, token, DemoError};

/// What the callee saw of one call (one Call-ID on its side).
#[derive(Debug, Clone, Default)]
pub struct CalleeCall {
    /// The Call-ID of the INVITE it got (scamscreen's leg towards the callee).
    pub call_id: String,
    /// The INVITE as received.
    pub invite: String,
    /// Its `X-Scamscreen-*` headers (name as sent, value), in order.
    pub scamscreen_headers: Vec<(String, String)>,
    /// Whether it answered (sent 200 OK).
    pub answered: bool,
    /// Whether the call ended with a BYE (from either side).
    pub ended: bool,
    /// The audio it received: 8 kHz PCM, PCMU or PCMA decoded.
    pub audio: Vec<i16>,
}

impl CalleeCall {
    /// The value of the INVITE's `X-Scamscreen-<name>` header (`name` case-insensitive,
    /// e.g. `"verdict"`).
    pub fn scamscreen_header(&self, name: &str) -> Option<&str> {
        self.scamscreen_headers.iter().find_map(|(n, v)| {
            let suffix = n.get("x-scamscreen-".len()..)?;
            suffix.eq_ignore_ascii_case(name).then_some(v.as_str())
        })
    }
}

#[derive(Default)]
struct Shared {
    calls: Vec<CalleeCall>,
    log: Vec<String>,
    /// Calls the test asked the callee to hang up (Call-IDs), for its thread.
    hang_ups: Vec<String>,
}

struct Pending {
    invite: String,
    from: SocketAddr,
    answer_at: Instant,
}

/// A UAS on a loopback UDP port: rings (180) for the configured time, answers INVITEs with 200
/// and an SDP answer for PCMU on a fresh RTP port, records the audio it receives per call and
/// the `X-Scamscreen-*` headers of the INVITE, answers BYE (and any other request) with 200.
pub struct DemoCallee {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for DemoCallee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoCallee")
            .field("addr", &self.addr)
            .finish()
    }
}

impl DemoCallee {
    /// Listen on `ip` (a free port) and answer every INVITE after ringing for `ring`.
    pub fn start(ip: IpAddr, ring: Duration) -> Result<DemoCallee, DemoError> {
        DemoCallee::start_with_key(ip, ring, None)
    }

    /// Like [`DemoCallee::start`], and after answering each call press `key.0` (RFC 4733
    /// telephone-event to the caller's SDP address) `key.1` after the answer: the callee's
    /// choice after a warning ("press 1 to accept, 2 to refuse").
    pub fn start_with_key(
        ip: IpAddr,
        ring: Duration,
        key: Option<(char, Duration)>,
    ) -> Result<DemoCallee, DemoError> {
        let sip = UdpSocket::bind((ip, 0)).map_err(|e| {
            DemoError::io(format!("cannot bind the callee's SIP socket on {ip}"), e)
        })?;
        sip.set_read_timeout(Some(Duration::from_millis(10)))
            .map_err(|e| DemoError::io("socket option", e))?;
        let addr = sip
            .local_addr()
            .map_err(|e| DemoError::io("local address", e))?;
        let shared = Arc::new(Mutex::new(Shared::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let uas = Uas {
            sip,
            addr,
            ring,
            to_tag: format!("p{}", token()),
            shared: shared.clone(),
            stop: stop.clone(),
            media: HashMap::new(),
            pending: Vec::new(),
            key,
            answered: HashMap::new(),
        };
        let thread = std::thread::Builder::new()
            .name("demo-callee".into())
            .spawn(move || uas.run())
            .map_err(|e| DemoError::io("cannot start the callee thread", e))?;
        Ok(DemoCallee {
            addr,
            shared,
            stop,
            thread: Some(thread),
        })
    }

    /// The callee's SIP address (give it to scamscreen as `--upstream`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The calls it got so far, in order (audio up to now).
    pub fn calls(&self) -> Vec<CalleeCall> {
        self.lock().calls.clone()
    }

    /// The call scamscreen placed for the caller's call `caller_call_id` (scamscreen's
    /// Call-ID towards the callee embeds the caller's), as it is now.
    pub fn call_for(&self, caller_call_id: &str) -> Option<CalleeCall> {
        self.lock()
            .calls
            .iter()
            .find(|c| c.call_id.contains(caller_call_id))
            .cloned()
    }

    /// Hang up the answered call whose Call-ID contains `call_id` (the callee's BYE,
    /// sent to where its INVITE came from, with the INVITE's Record-Route as Route).
    pub fn hang_up(&self, call_id: &str) {
        self.lock().hang_ups.push(call_id.to_string());
    }

    /// Every SIP message it received, in order.
    pub fn sip_log(&self) -> Vec<String> {
        self.lock().log.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for DemoCallee {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One call's media: its RTP socket and the thread recording from it.
struct Media {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Media {
    fn start(
        ip: IpAddr,
        shared: Arc<Mutex<Shared>>,
        index: usize,
        mut press: Option<(char, Instant, SocketAddr)>,
    ) -> Result<Media, DemoError> {
        let rtp = UdpSocket::bind((ip, 0)).map_err(|e| {
            DemoError::io(format!("cannot bind the callee's RTP socket on {ip}"), e)
        })?;
        rtp.set_read_timeout(Some(Duration::from_millis(20)))
            .map_err(|e| DemoError::io("socket option", e))?;
        let addr = rtp
            .local_addr()
            .map_err(|e| DemoError::io("local address", e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let thread = std::thread::Builder::new()
            .name("demo-callee-rtp".into())
            .spawn(move || {
                let mut buf = [0u8; 2048];
                while !st.load(Ordering::Relaxed) {
                    if let Some((digit, at, to)) = press {
                        if Instant::now() >= at {
                            press = None;
                            for pkt in super::dtmf_packets(digit, 1, 8000, 0x5eed) {
                                let _ = rtp.send_to(&pkt, to);
                                std::thread::sleep(Duration::from_millis(20));
                            }
                        }
                    }
                    if let Ok((n, _)) = rtp.recv_from(&mut buf) {
                        if let Some(pcm) = rtp_audio(&buf[..n]) {
                            let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
                            s.calls[index].audio.extend(pcm);
                        }
                    }
                }
            })
            .map_err(|e| DemoError::io("cannot start the callee's RTP thread", e))?;
        Ok(Media {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Uas {
    sip: UdpSocket,
    addr: SocketAddr,
    ring: Duration,
    to_tag: String,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    /// Media per Call-ID.
    media: HashMap<String, Media>,
    /// INVITEs that are ringing.
    pending: Vec<Pending>,
    /// A key to press after answering, and when.
    key: Option<(char, Duration)>,
    /// Answered INVITEs and where they came from, per Call-ID (for the callee's BYE).
    answered: HashMap<String, (String, SocketAddr)>,
}

impl Uas {
    fn run(mut self) {
        let mut buf = [0u8; 65535];
        while !self.stop.load(Ordering::Relaxed) {
            if let Ok((n, from)) = self.sip.recv_from(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).to_string();
                self.on_message(&msg, from);
            }
            let now = Instant::now();
            let due: Vec<Pending> = {
                let (due, waiting) = std::mem::take(&mut self.pending)
                    .into_iter()
                    .partition(|p| p.answer_at <= now);
                self.pending = waiting;
                due
            };
            for p in due {
                self.answer(&p.invite, p.from);
            }
            let hang_ups = std::mem::take(&mut self.lock().hang_ups);
            for id in hang_ups {
                self.send_bye(&id);
            }
        }
        for m in self.media.values_mut() {
            m.stop();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send(&self, msg: &str, to: SocketAddr) {
        let _ = self.sip.send_to(msg.as_bytes(), to);
    }

    fn on_message(&mut self, msg: &str, from: SocketAddr) {
        self.lock().log.push(msg.to_string());
        if status(msg).is_some() {
            return;
        }
        let call_id = header(msg, "call-id").unwrap_or_default().to_string();
        match method(msg) {
            Some("INVITE") => self.on_invite(msg, &call_id, from),
            Some("ACK") => {}
            Some("CANCEL") => {
                let ok = response(msg, 200, "OK", &self.to_tag) + "Content-Length: 0\r\n\r\n";
                self.send(&ok, from);
                if let Some(i) = self
                    .pending
                    .iter()
                    .position(|p| header(&p.invite, "call-id") == Some(call_id.as_str()))
                {
                    let p = self.pending.remove(i);
                    let gone = response(&p.invite, 487, "Request Terminated", &self.to_tag)
                        + "Content-Length: 0\r\n\r\n";
                    self.send(&gone, p.from);
                    self.end(&call_id);
                }
            }
            Some("BYE") => {
                let ok = response(msg, 200, "OK", &self.to_tag) + "Content-Length: 0\r\n\r\n";
                self.send(&ok, from);
                self.end(&call_id);
            }
            Some(_) => {
                let ok = response(msg, 200, "OK", &self.to_tag) + "Content-Length: 0\r\n\r\n";
                self.send(&ok, from);
            }
            None => {}
        }
    }

    fn on_invite(&mut self, msg: &str, call_id: &str, from: SocketAddr) {
        let known = self.media.contains_key(call_id);
        if !known {
            let index = {
                let mut s = self.lock();
                s.calls.push(CalleeCall {
                    call_id: call_id.to_string(),
                    invite: msg.to_string(),
                    scamscreen_headers: headers(msg)
                        .filter(|(n, _)| n.to_ascii_lowercase().starts_with("x-scamscreen-"))
                        .map(|(n, v)| (n.to_string(), v.to_string()))
                        .collect(),
                    ..CalleeCall::default()
                });
                s.calls.len() - 1
            };
            let press = self.key.and_then(|(digit, after)| {
                let to = super::sdp_media(msg)?;
                Some((digit, Instant::now() + self.ring + after, to))
            });
            match Media::start(self.addr.ip(), self.shared.clone(), index, press) {
                Ok(m) => {
                    self.media.insert(call_id.to_string(), m);
                }
                Err(_) => {
                    let busy = response(msg, 503, "Service Unavailable", &self.to_tag)
                        + "Content-Length: 0\r\n\r\n";
                    self.send(&busy, from);
                    return;
                }
            }
        }
        let ringing = self
            .pending
            .iter()
            .any(|p| header(&p.invite, "call-id") == Some(call_id));
        if known && !ringing {
            // A retransmission after the answer, or a re-INVITE: (re)send the 200.
            self.answer(msg, from);
            return;
        }
        let trying = response(msg, 180, "Ringing", &self.to_tag)
            + &format!(
                "Contact: <sip:callee@{}>\r\nContent-Length: 0\r\n\r\n",
                self.addr
            );
        self.send(&trying, from);
        if !ringing {
            self.pending.push(Pending {
                invite: msg.to_string(),
                from,
                answer_at: Instant::now() + self.ring,
            });
        }
    }

    fn answer(&mut self, invite: &str, from: SocketAddr) {
        let call_id = header(invite, "call-id").unwrap_or_default().to_string();
        let Some(media) = self.media.get(&call_id) else {
            return;
        };
        let body = pcmu_sdp(media.addr);
        let ok = response(invite, 200, "OK", &self.to_tag)
            + &format!(
                "Contact: <sip:callee@{}>\r\nContent-Type: application/sdp\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                self.addr,
                body.len()
            );
        self.send(&ok, from);
        self.answered
            .insert(call_id.clone(), (invite.to_string(), from));
        let mut s = self.lock();
        if let Some(c) = s.calls.iter_mut().find(|c| c.call_id == call_id) {
            c.answered = true;
        }
    }

    /// The callee's BYE (RFC 3261 §15.1.1): To/From swapped, our own CSeq, the INVITE's
    /// Record-Route as Route, to the INVITE's previous hop.
    fn send_bye(&mut self, wanted: &str) {
        let Some(call_id) = self.answered.keys().find(|k| k.contains(wanted)).cloned() else {
            return;
        };
        let Some((invite, from)) = self.answered.get(&call_id).cloned() else {
            return;
        };
        let target = header(&invite, "contact")
            .and_then(|c| c.split(['<', '>']).nth(1).map(str::to_string))
            .unwrap_or_else(|| format!("sip:{from}"));
        let routes: String = headers(&invite)
            .filter(|(n, _)| n.eq_ignore_ascii_case("record-route"))
            .map(|(_, v)| format!("Route: {v}\r\n"))
            .collect();
        let bye = format!(
            "BYE {target} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK{};rport\r\n\
             Max-Forwards: 70\r\n{routes}From: {};tag={}\r\nTo: {}\r\nCall-ID: {call_id}\r\n\
             CSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
            self.addr,
            super::token(),
            header(&invite, "to").unwrap_or_default(),
            self.to_tag,
            header(&invite, "from").unwrap_or_default(),
        );
        self.send(&bye, from);
        self.end(&call_id);
    }

    fn end(&mut self, call_id: &str) {
        if let Some(m) = self.media.get_mut(call_id) {
            m.stop();
        }
        let mut s = self.lock();
        if let Some(c) = s.calls.iter_mut().find(|c| c.call_id == call_id) {
            c.ended = true;
        }
    }
}
