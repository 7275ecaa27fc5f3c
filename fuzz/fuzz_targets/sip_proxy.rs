//! Fuzz the whole proxy core: a `Proxy` fed a sequence of datagrams from several peers,
//! with time passing, replies synthesized to what it sends, and all timers run out.
//!
//! Input format (so that a plain SIP message, e.g. a seed file, is a valid input on its own):
//! the input is split at `SEP` (`"\0<NEXT>"`, in `fuzz/sip.dict`). The first chunk is a
//! datagram from the trusted caller over UDP. Every later chunk starts with one control
//! byte `c`, then the chunk bytes:
//!
//! | bits        | meaning |
//! |-------------|---------|
//! | `c & 0x03`  | source: 0 trusted caller 127.0.0.2:5060, 1 upstream 127.0.0.1:5080, 2 untrusted 192.0.2.66:5060, 3 trusted 127.0.0.3:5070 |
//! | `c>>2 & 7`  | time advance before delivery: 0, 10 ms, 200 ms, 500 ms, 1 s, 4 s, 32 s, 64 s (due timers run); with 10 ms the chunk is delivered as from the new-request lane while the core is behind (`shed_input`) |
//! | `c & 0x20`  | reply mode: do not send the chunk; instead a peer the proxy sent a request to answers it (see below) |
//! | `c & 0x40`  | the source uses TCP (connection id 1..4) instead of UDP |
//! | `c & 0x80`  | cut the chunk into frames with `frame_stream` first (as the TCP reader does) |
//!
//! Reply mode: `(c & 3) | (c & 0xc0) >> 4` picks one of the last 16 requests the proxy sent
//! (0 = the latest); its receiver answers with the status in the chunk's first 3 digits (or
//! `STATUSES[first byte & 15]`), copying Via, From, To (+tag), Call-ID, CSeq and
//! Record-Route; the rest of the chunk is inserted as extra header text.
//!
//! Properties checked: nothing panics; every datagram the proxy transmits is non-empty
//! and parses as a SIP message (unless it outgrew `MAX_MESSAGE_BYTES`); a timer never keeps
//! firing without time passing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scamscreen::sip::classify::ClassifyRules;
use scamscreen::sip::msg::{frame_stream, ParseError, SipMessage, MAX_MESSAGE_BYTES};
use scamscreen::sip::proxy::{
    Limits, Peer, Proxy, ProxyConfig, Transmit, Transport, UntrustedAction,
};
use scamscreen::sip::ratelimit::RateLimitConfig;
use scamscreen::sip::transaction::TimerConfig;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const SEP: &[u8] = b"\0<NEXT>";

const UPSTREAM: &str = "127.0.0.1:5080";
const SOURCES: [&str; 4] = [
    "127.0.0.2:5060",
    UPSTREAM,
    "192.0.2.66:5060",
    "127.0.0.3:5070",
];
const ADVANCE_MS: [u64; 8] = [0, 10, 200, 500, 1_000, 4_000, 32_000, 64_000];
const STATUSES: [u16; 16] = [
    100, 180, 181, 183, 200, 202, 301, 401, 404, 407, 408, 480, 486, 487, 503, 603,
];

fn config() -> ProxyConfig {
    ProxyConfig {
        advertised_host: "127.0.0.1".into(),
        advertised_port: 5060,
        upstream: UPSTREAM.parse().unwrap(),
        upstream_transport: Transport::Udp,
        record_route: true,
        trusted: vec!["127.0.0.0/8".parse().unwrap()],
        untrusted: UntrustedAction::Reject,
        // Both limiters off: the fuzzer's datagrams all arrive at nearly the same instant.
        rate_limit: RateLimitConfig {
            per_sec: 0.0,
            burst: 0,
            max_sources: 16,
        },
        trusted_rate_limit: RateLimitConfig {
            per_sec: 0.0,
            burst: 0,
            max_sources: 16,
        },
        timers: TimerConfig::default(),
        classify: ClassifyRules::default(),
        screen_calls: false,
        skip_screening_from: Vec::new(),
        limits: Limits::default(),
        // Probes on, so the upstream's health (down, 503 to new calls, up again) is fuzzed;
        // every 30 s, so the final run-out below is not mostly probes (5 s made it 40 exec/s).
        upstream_probe: Some(Duration::from_secs(30)),
        device_mode: false,
    }
}

fn split(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(pos) = rest.windows(SEP.len()).position(|w| w == SEP) {
        out.push(&rest[..pos]);
        rest = &rest[pos + SEP.len()..];
    }
    out.push(rest);
    out
}

/// `SCAMSCREEN_FUZZ_TRACE=1` prints every datagram in and out (for reproducing a crash:
/// `SCAMSCREEN_FUZZ_TRACE=1 fuzz/target/x86_64-unknown-linux-gnu/release/sip_proxy FILE`).
fn trace() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("SCAMSCREEN_FUZZ_TRACE").is_some())
}

struct Harness {
    proxy: Proxy,
    now: Instant,
    /// The last requests the proxy sent, latest first, and to whom (for reply mode).
    requests: VecDeque<(Peer, SipMessage)>,
    sent: usize,
}

impl Harness {
    fn drain(&mut self) {
        while let Some(Transmit { to, bytes }) = self.proxy.poll_transmit() {
            self.sent += 1;
            if trace() {
                eprintln!("<<< to {to:?}\n{}", String::from_utf8_lossy(&bytes));
            }
            assert!(
                !bytes.is_empty(),
                "proxy transmitted an empty datagram to {to:?}"
            );
            match SipMessage::parse(&bytes) {
                Ok(msg) => {
                    if msg.is_request() {
                        self.requests.push_front((to, msg));
                        self.requests.truncate(16);
                    }
                }
                Err(ParseError::TooLarge) if bytes.len() > MAX_MESSAGE_BYTES => {}
                Err(e) => panic!(
                    "proxy transmitted an unparsable message ({e}) to {to:?}: {:?}",
                    String::from_utf8_lossy(&bytes)
                ),
            }
        }
        while self.proxy.poll_event().is_some() {}
    }

    /// Move the clock forward, running every timer that falls due on the way.
    fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        // Each wake-up is handled at its own instant, as the runtime would. A timer that
        // keeps rescheduling itself at the same instant would spin the runtime: fail on it.
        let mut same_instant = 0u32;
        loop {
            match self.proxy.poll_timeout() {
                Some(t) if t <= end => {
                    if t <= self.now {
                        same_instant += 1;
                        assert!(
                            same_instant < 10_000,
                            "poll_timeout stays at/before now after 10000 handle_timeout calls"
                        );
                    } else {
                        same_instant = 0;
                        self.now = t;
                    }
                    self.proxy.handle_timeout(self.now);
                    self.drain();
                }
                _ => {
                    self.now = end;
                    return;
                }
            }
        }
    }

    fn input(&mut self, from: Peer, bytes: &[u8], shed: bool) {
        if trace() {
            eprintln!(">>> from {from:?} (shed: {shed})\n{}", String::from_utf8_lossy(bytes));
        }
        if shed {
            self.proxy.shed_input(self.now, from, bytes);
        } else {
            self.proxy.handle_input(self.now, from, bytes);
        }
        self.drain();
    }

    /// The receiver of the `which`-th latest request the proxy sent answers it.
    fn reply(&mut self, which: usize, chunk: &[u8]) {
        let Some((peer, req)) = self.requests.get(which).cloned() else {
            return;
        };
        let (status, extra) = match chunk {
            [a, b, c, rest @ ..]
                if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() =>
            {
                let s = (*a - b'0') as u16 * 100 + (*b - b'0') as u16 * 10 + (*c - b'0') as u16;
                (s, rest)
            }
            [first, rest @ ..] => (STATUSES[(*first & 0x0f) as usize], rest),
            [] => (200, &[][..]),
        };
        let mut text = format!("SIP/2.0 {status} Fuzz\r\n");
        for v in req.header_values("via") {
            text.push_str(&format!("Via: {v}\r\n"));
        }
        for (name, canon) in [("from", "From"), ("call-id", "Call-ID"), ("cseq", "CSeq")] {
            if let Some(v) = req.header(name) {
                text.push_str(&format!("{canon}: {v}\r\n"));
            }
        }
        if let Some(to) = req.header("to") {
            if status > 100 && !to.contains(";tag=") {
                text.push_str(&format!("To: {to};tag=fuzz{status}\r\n"));
            } else {
                text.push_str(&format!("To: {to}\r\n"));
            }
        }
        for rr in req.header_values("record-route") {
            text.push_str(&format!("Record-Route: {rr}\r\n"));
        }
        if (200..300).contains(&status) {
            text.push_str(&format!("Contact: <sip:callee@{}>\r\n", peer.addr));
        }
        let mut bytes = text.into_bytes();
        if !extra.is_empty() {
            bytes.extend_from_slice(extra);
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        self.input(peer, &bytes, false);
    }
}

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let mut h = Harness {
        proxy: Proxy::new(config()),
        now,
        requests: VecDeque::new(),
        sent: 0,
    };
    for (i, chunk) in split(data).into_iter().enumerate() {
        let (ctl, body) = if i == 0 {
            (0u8, chunk)
        } else {
            match chunk.split_first() {
                Some((c, rest)) => (*c, rest),
                None => continue,
            }
        };
        h.advance(Duration::from_millis(ADVANCE_MS[((ctl >> 2) & 7) as usize]));
        if ctl & 0x20 != 0 {
            h.reply(((ctl & 3) | ((ctl & 0xc0) >> 4)) as usize, body);
            continue;
        }
        let addr: SocketAddr = SOURCES[(ctl & 3) as usize].parse().unwrap();
        let from = if ctl & 0x40 != 0 {
            Peer {
                addr,
                transport: Transport::Tcp,
                conn: Some(1 + (ctl & 3) as u64),
            }
        } else {
            Peer::udp(addr)
        };
        let shed = (ctl >> 2) & 7 == 1;
        if ctl & 0x80 != 0 {
            let mut buf = body;
            while let Ok(Some((skip, len))) = frame_stream(buf, MAX_MESSAGE_BYTES) {
                h.input(from, &buf[skip..skip + len], shed);
                buf = &buf[skip + len..];
            }
        } else {
            h.input(from, body, shed);
        }
    }
    // One timeout 64 s (= 64*T1, timers B/F/H/J) ahead, then run every timer still
    // scheduled, each at its own instant.
    h.proxy.handle_timeout(h.now + Duration::from_secs(64));
    h.drain();
    // 10 minutes: past Timer C (3 min) and every transaction timer; the probes are periodic
    // and never run out.
    h.advance(Duration::from_secs(600));
    let _ = (h.sent, h.proxy.contexts(), h.proxy.stats());
});
