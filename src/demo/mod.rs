//! Loopback SIP peers for `scamscreen demo` and the end-to-end tests: a withheld caller that
//! speaks PCM as paced PCMU RTP ([`DemoCaller`]) and a test phone that answers and records what
//! it hears ([`DemoCallee`]).
//!
//! Both are deliberately small, blocking (std threads and UDP sockets, no tokio) and written
//! from the wire's point of view: they share no SIP or RTP code with scamscreen (only the G.711
//! tables), so a bug there cannot hide behind the same bug here. They are meant for loopback
//! only: no authentication, no DNS, UDP only, PCMU only, one dialog per call.
//!
//! Tests that need more than a well-behaved call get it from the same peers: a caller can
//! offer any SDP body and see the final error response ([`DemoCaller::invite`],
//! [`DemoCaller::wait_final`]), send its BYE while it keeps talking ([`DemoCaller::send_bye`]),
//! and anyone can build RTP ([`rtp_packet`]) or read raw SIP ([`status`], [`header`]).

mod callee;
mod caller;

pub use callee::{CalleeCall, DemoCallee};
pub use caller::DemoCaller;

use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Samples per 20 ms packet at 8 kHz.
pub const FRAME_SAMPLES: usize = 160;
/// Audio sample rate of the peers (G.711).
pub const RATE: u32 = 8000;

/// What can go wrong on a demo call.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("the call was rejected with {status} {reason}")]
    Rejected { status: u16, reason: String },
    #[error("no answer to the INVITE within {secs} s (got: {got})")]
    NoAnswer { secs: u64, got: String },
    #[error("the 200 OK to the INVITE has no usable SDP (m=audio and c=)")]
    NoSdp,
    #[error(
        "espeak-ng is not installed (it speaks the demo calls): run `make deps` or \
         `sudo apt-get install espeak-ng`"
    )]
    NoEspeak,
    #[error("espeak-ng failed: {0}")]
    Espeak(String),
    #[error("no free {0} on loopback")]
    NoFreePort(&'static str),
}

impl DemoError {
    fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        DemoError::Io {
            what: what.into(),
            source,
        }
    }
}

/// A free port on `ip` for both UDP and TCP (what `scamscreen run --listen` binds).
pub fn free_sip_port(ip: IpAddr) -> Result<u16, DemoError> {
    for _ in 0..100 {
        let udp = UdpSocket::bind((ip, 0)).map_err(|e| DemoError::io(format!("bind {ip}"), e))?;
        let port = udp
            .local_addr()
            .map_err(|e| DemoError::io("local address", e))?
            .port();
        if TcpListener::bind((ip, port)).is_ok() {
            return Ok(port);
        }
    }
    Err(DemoError::NoFreePort("SIP port"))
}

/// A free range of `n` UDP ports on `ip` starting at an even port, for `--rtp-ports`.
///
/// A range is free when it can be bound now; as it is only bound later (by the `scamscreen run`
/// it is given to), the ranges a process was given before are remembered and never given
/// again, so that tests running side by side in one process get disjoint ranges.
pub fn free_rtp_range(ip: IpAddr, n: u16) -> Result<(u16, u16), DemoError> {
    static GIVEN: Mutex<Vec<(u16, u16)>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    let n = n.max(2);
    // Start somewhere that depends on the process, so that parallel runs rarely collide.
    let offset = (std::process::id() % 500) as u16 * 40;
    let starts = (30_000u16..60_000).step_by(usize::from(n) + 2);
    for start in starts.map(|s| 30_000 + (s - 30_000 + offset) % 30_000) {
        let start = start & !1;
        let Some(end) = start.checked_add(n - 1) else {
            continue;
        };
        if given.iter().any(|&(a, b)| start <= b && a <= end) {
            continue;
        }
        if (start..=end).all(|p| UdpSocket::bind((ip, p)).is_ok()) {
            given.push((start, end));
            return Ok((start, end));
        }
    }
    Err(DemoError::NoFreePort("RTP port range"))
}

/// Speak `text` with espeak-ng (US English, female voice, 160 words a minute) and return it as
/// 8 kHz mono PCM. `wav` is where espeak-ng writes its file (kept, so callers can keep it).
pub fn espeak(text: &str, wav: &Path) -> Result<Vec<i16>, DemoError> {
    let out = std::process::Command::new("espeak-ng")
        .args(["-v", "en-us+f3", "-s", "160", "-g", "2", "-w"])
        .arg(wav)
        .arg(text)
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => DemoError::NoEspeak,
            _ => DemoError::io("cannot run espeak-ng", e),
        })?;
    if !out.status.success() {
        return Err(DemoError::Espeak(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    crate::runtime::calls::load_prompt(wav).map_err(|e| DemoError::Espeak(e.to_string()))
}

/// Write 8 kHz mono PCM as a 16-bit WAV file.
pub fn write_wav(path: &Path, pcm: &[i16]) -> Result<(), DemoError> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let wrap = |e: hound::Error| {
        DemoError::io(
            format!("cannot write {}", path.display()),
            std::io::Error::other(e.to_string()),
        )
    };
    let mut w = hound::WavWriter::create(path, spec).map_err(wrap)?;
    for s in pcm {
        w.write_sample(*s).map_err(wrap)?;
    }
    w.finalize().map_err(wrap)
}

/// 8 kHz PCM as 16 kHz floats in [-1, 1], what [`crate::asr::Transcriber`] takes.
pub fn to_16k(pcm: &[i16]) -> Result<Vec<f32>, crate::asr::AsrError> {
    let f: Vec<f32> = pcm.iter().map(|s| f32::from(*s) / 32768.0).collect();
    crate::asr::resample::resample(&f, RATE, 16_000)
}

/// An SDP offer or answer for PCMU and telephone-event on `addr` (what both peers send; a
/// test can name another address in it, e.g. a caller behind NAT).
pub fn pcmu_sdp(addr: SocketAddr) -> String {
    let ip = addr.ip();
    let port = addr.port();
    let family = if ip.is_ipv6() { "IP6" } else { "IP4" };
    format!(
        "v=0\r\no=- 1 1 IN {family} {ip}\r\ns=-\r\nc=IN {family} {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    )
}

/// The media address of an SDP body: the `c=` address and the first `m=audio` port.
pub(crate) fn sdp_media(msg: &str) -> Option<SocketAddr> {
    let body = msg.split_once("\r\n\r\n").map_or(msg, |(_, b)| b);
    let port: u16 = body
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let ip: IpAddr = body
        .lines()
        .find_map(|l| l.strip_prefix("c=IN "))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(SocketAddr::new(ip, port))
}

/// The first header `name` of a SIP message (case-insensitive, long names only), trimmed.
pub fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    headers(msg)
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// The header lines of a message as (name, value), in order.
pub(crate) fn headers(msg: &str) -> impl Iterator<Item = (&str, &str)> {
    let head = msg.split_once("\r\n\r\n").map_or(msg, |(h, _)| h);
    head.lines().skip(1).filter_map(|l| {
        let (n, v) = l.split_once(':')?;
        Some((n.trim(), v.trim()))
    })
}

/// The status code of a SIP response, `None` for a request.
pub fn status(msg: &str) -> Option<u16> {
    msg.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

/// The method of a request, `None` for a response.
pub(crate) fn method(msg: &str) -> Option<&str> {
    if msg.starts_with("SIP/2.0 ") {
        return None;
    }
    msg.split(' ').next().filter(|m| !m.is_empty())
}

/// The method named in CSeq.
pub(crate) fn cseq_method(msg: &str) -> Option<&str> {
    header(msg, "cseq")?.split_whitespace().nth(1)
}

/// A response to `req` with `status`, copying Via, From, To, Call-ID, CSeq and Record-Route;
/// `to_tag` is added to To when it has none.
pub(crate) fn response(req: &str, status: u16, reason: &str, to_tag: &str) -> String {
    let mut resp = format!("SIP/2.0 {status} {reason}\r\n");
    for (name, value) in headers(req) {
        let lower = name.to_ascii_lowercase();
        match lower.as_str() {
            "via" | "v" | "from" | "f" | "call-id" | "i" | "cseq" | "record-route" => {
                resp.push_str(&format!("{name}: {value}\r\n"));
            }
            "to" | "t" => {
                if value.contains(";tag=") || to_tag.is_empty() {
                    resp.push_str(&format!("{name}: {value}\r\n"));
                } else {
                    resp.push_str(&format!("{name}: {value};tag={to_tag}\r\n"));
                }
            }
            _ => {}
        }
    }
    resp
}

/// A token unique enough for tags, branches and Call-IDs on one host.
pub(crate) fn token() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{:x}{:x}{:x}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// An RTP packet (version 2, no extension) carrying `payload` (e.g. PCMU:
/// `Codec::Pcmu.encode(pcm)` with payload type 0), for sending media from anywhere.
pub fn rtp_packet(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut pkt = Vec::with_capacity(12 + payload.len());
    pkt.extend_from_slice(&[0x80, pt & 0x7f]);
    pkt.extend_from_slice(&seq.to_be_bytes());
    pkt.extend_from_slice(&ts.to_be_bytes());
    pkt.extend_from_slice(&ssrc.to_be_bytes());
    pkt.extend_from_slice(payload);
    pkt
}

/// The RFC 4733 packets of one key press as a phone sends them, 20 ms apart: the first
/// with the marker bit, updates with growing duration, and the end packet three times (§2.5.1.4).
/// Payload type 101 (what [`pcmu_sdp`] offers); all share the event's timestamp `ts`.
pub fn dtmf_packets(digit: char, seq: u16, ts: u32, ssrc: u32) -> Vec<Vec<u8>> {
    let event = match digit {
        '0'..='9' => digit as u8 - b'0',
        '*' => 10,
        '#' => 11,
        _ => return Vec::new(),
    };
    let mut out = Vec::new();
    for i in 0..8u16 {
        let end = i >= 5;
        let duration = 160 * (i.min(5) + 1);
        let flags = if end { 0x80 | 10 } else { 10 };
        let [d0, d1] = duration.to_be_bytes();
        let mut pkt = rtp_packet(101, seq.wrapping_add(i), ts, ssrc, &[event, flags, d0, d1]);
        if i == 0 {
            pkt[1] |= 0x80; // marker: the start of the event
        }
        out.push(pkt);
    }
    out
}

/// The G.711 audio of an RTP packet (PCMU or PCMA), decoded; `None` for anything else
/// (telephone-event, comfort noise, garbage).
pub(crate) fn rtp_audio(pkt: &[u8]) -> Option<Vec<i16>> {
    if pkt.len() < 12 || pkt[0] >> 6 != 2 {
        return None;
    }
    let csrc = usize::from(pkt[0] & 0x0f) * 4;
    let mut start = 12 + csrc;
    if pkt[0] & 0x10 != 0 {
        let ext = pkt.get(start + 2..start + 4)?;
        start += 4 + usize::from(u16::from_be_bytes([ext[0], ext[1]])) * 4;
    }
    let mut end = pkt.len();
    if pkt[0] & 0x20 != 0 {
        end = end.checked_sub(usize::from(*pkt.last()?))?;
    }
    let payload = pkt.get(start..end)?;
    let codec = crate::media::g711::Codec::from_static_payload_type(pkt[1] & 0x7f)?;
    Some(codec.decode(payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdp_round_trips_and_rtp_decodes() {
        let addr: SocketAddr = "127.0.0.2:4000".parse().unwrap();
        let body = pcmu_sdp(addr);
        let msg = format!("SIP/2.0 200 OK\r\nCSeq: 1 INVITE\r\n\r\n{body}");
        assert_eq!(sdp_media(&msg), Some(addr));
        assert_eq!(status(&msg), Some(200));
        assert_eq!(cseq_method(&msg), Some("INVITE"));
        assert_eq!(method(&msg), None);
        let pcm = vec![1000i16; FRAME_SAMPLES];
        let payload = crate::media::g711::Codec::Pcmu.encode(&pcm);
        let pkt = rtp_packet(0, 7, 160, 1, &payload);
        let back = rtp_audio(&pkt).unwrap();
        assert_eq!(back.len(), FRAME_SAMPLES);
        assert!((back[0] - 1000).abs() < 40, "{}", back[0]);
        assert_eq!(rtp_audio(&rtp_packet(101, 7, 160, 1, &[0; 4])), None);
    }

    #[test]
    fn responses_copy_the_dialog_headers_and_tag_the_to() {
        let req = "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\n\
                   From: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
                   X-Scamscreen-Verdict: allow\r\nContent-Length: 0\r\n\r\n";
        let r = response(req, 180, "Ringing", "t9");
        assert!(r.starts_with("SIP/2.0 180 Ringing\r\n"), "{r}");
        assert!(r.contains("To: <sip:a@b>;tag=t9\r\n"), "{r}");
        assert!(
            r.contains("Via: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\n"),
            "{r}"
        );
        assert!(!r.contains("X-Scamscreen"), "{r}");
        assert_eq!(header(req, "x-scamscreen-verdict"), Some("allow"));
        assert_eq!(method(req), Some("INVITE"));
    }
}
