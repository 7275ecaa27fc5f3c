//! RTP packets (RFC 3550 §5.1) and [`RtpSender`], which stamps the stream scamscreen sends
//! to one phone so that it stays one continuous stream while its source changes (the
//! greeting prompt, then the other leg's relayed audio, perhaps a warning prompt before).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |V=2|P|X|  CC   |M|     PT      |       sequence number         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                           timestamp                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           synchronization source (SSRC) identifier            |
//! +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
//! |            contributing source (CSRC) identifiers             |
//! |                             ....                              |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! The parser is hand-written (no `rtp` crate): it accepts any CSRC count, skips a header
//! extension (§5.3.1) and strips padding (§5.1, P bit), and never panics. Packets we build
//! have no CSRCs, no extension and no padding: scamscreen is the synchronisation source of
//! what it sends (a B2BUA, not a mixer or translator), so relayed CSRC lists and extensions
//! are not carried over.

use std::time::{Duration, Instant};

/// Length of the fixed RTP header.
pub const HEADER_LEN: usize = 12;
/// The only RTP version (RFC 3550 §5.1).
pub const VERSION: u8 = 2;

/// RFC 3550 Appendix A.1: a forward sequence jump of at least this many packets means the
/// source restarted.
const MAX_DROPOUT: u16 = 3000;
/// RFC 3550 Appendix A.1: packets up to this far behind are late, not a restart.
const MAX_MISORDER: u16 = 100;

/// The fixed header fields scamscreen uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

/// Why bytes are not an RTP packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("RTP packet too short ({len} bytes, need {need})")]
    TooShort { len: usize, need: usize },
    #[error("RTP version {0}, expected 2")]
    BadVersion(u8),
    #[error("RTCP packet (type {0}) where RTP was expected")]
    Rtcp(u8),
    #[error("RTP padding of {padding} bytes but only {available} after the header")]
    BadPadding { padding: usize, available: usize },
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        *b.get(at + 3)?,
    ]))
}

/// Parse an RTP packet into its header and payload (CSRCs, extension and padding removed).
///
/// RTCP (see [`is_rtcp`]) is refused with [`RtpError::Rtcp`] so it is never mistaken for
/// audio with payload type 72–76.
pub fn parse(bytes: &[u8]) -> Result<(RtpHeader, &[u8]), RtpError> {
    let too_short = |need| RtpError::TooShort {
        len: bytes.len(),
        need,
    };
    let (Some(&b0), Some(&b1)) = (bytes.first(), bytes.get(1)) else {
        return Err(too_short(HEADER_LEN));
    };
    if b0 >> 6 != VERSION {
        return Err(RtpError::BadVersion(b0 >> 6));
    }
    if is_rtcp(bytes) {
        return Err(RtpError::Rtcp(b1));
    }
    let (Some(sequence), Some(timestamp), Some(ssrc)) =
        (be16(bytes, 2), be32(bytes, 4), be32(bytes, 8))
    else {
        return Err(too_short(HEADER_LEN));
    };
    let csrc_count = usize::from(b0 & 0x0F);
    let mut start = HEADER_LEN + 4 * csrc_count;
    if bytes.len() < start {
        return Err(too_short(start));
    }
    if b0 & 0x10 != 0 {
        // §5.3.1: 16 bits profile-defined, 16 bits length in 32-bit words, then the words.
        let words = be16(bytes, start + 2).ok_or_else(|| too_short(start + 4))?;
        start += 4 + 4 * usize::from(words);
        if bytes.len() < start {
            return Err(too_short(start));
        }
    }
    let mut end = bytes.len();
    if b0 & 0x20 != 0 {
        // §5.1: the last octet counts the padding octets, itself included.
        let available = end - start;
        let padding = if available == 0 {
            0
        } else {
            usize::from(bytes[end - 1])
        };
        if padding == 0 || padding > available {
            return Err(RtpError::BadPadding { padding, available });
        }
        end -= padding;
    }
    let header = RtpHeader {
        marker: b1 & 0x80 != 0,
        payload_type: b1 & 0x7F,
        sequence,
        timestamp,
        ssrc,
    };
    Ok((header, &bytes[start..end]))
}

/// Build a packet with the fixed header only (no CSRCs, extension or padding).
pub fn build(header: &RtpHeader, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.push(VERSION << 6);
    out.push((u8::from(header.marker) << 7) | (header.payload_type & 0x7F));
    out.extend_from_slice(&header.sequence.to_be_bytes());
    out.extend_from_slice(&header.timestamp.to_be_bytes());
    out.extend_from_slice(&header.ssrc.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Whether a datagram is RTCP rather than RTP: version 2 and a second octet of 192–223,
/// which is where the RTCP packet types (SR 200, RR 201, SDES 202, BYE 203, APP 204, and
/// the feedback and XR types up to 207) fall; RTP payload types 64–95 that would collide
/// with these are not used (RFC 5761 §4).
pub fn is_rtcp(bytes: &[u8]) -> bool {
    matches!(bytes, [b0, b1, ..] if b0 >> 6 == VERSION && (192..=223).contains(b1))
}

/// One RFC 4733 §2.3 telephone-event payload (DTMF digit, flash, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// 0–9, 10 = `*`, 11 = `#`, 12–15 = A–D, 16 = flash.
    pub event: u8,
    /// The E bit: last packets of the event.
    pub end: bool,
    pub volume: u8,
    /// Duration so far in timestamp units; the RTP timestamp is the event's start (§2.3.5).
    pub duration: u16,
}

impl TelephoneEvent {
    /// Parse the 4-byte event payload; `None` when shorter.
    pub fn parse(payload: &[u8]) -> Option<TelephoneEvent> {
        let [event, flags, d0, d1, ..] = *payload else {
            return None;
        };
        Some(TelephoneEvent {
            event,
            end: flags & 0x80 != 0,
            volume: flags & 0x3F,
            duration: u16::from_be_bytes([d0, d1]),
        })
    }
}

/// Where the packets of an outgoing stream currently come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Generated here (a prompt).
    Local,
    /// Relayed from the other leg, whose stream has this SSRC.
    Relayed { ssrc: u32 },
}

/// The newest packet sent, for continuing the timeline after a switch.
#[derive(Debug, Clone, Copy)]
struct LastSent {
    at: Instant,
    timestamp: u32,
    /// The timestamp just after the newest media sent (timestamp + samples, or the end of a
    /// telephone event).
    end: u32,
}

/// Stamps one outgoing RTP stream: our SSRC, continuous sequence numbers and timestamps.
///
/// RFC 3550 §5.1 wants the sequence number to rise by one per packet and the timestamp to
/// follow the sampling clock; a receiver's jitter buffer resets (or plays garbage) when a
/// stream jumps. So when the source changes — prompt → relay, relay → prompt, or the relayed
/// phone's own stream restarts (new SSRC, or a sequence jump per Appendix A.1) — the first
/// packet of the new source gets the next sequence number and a timestamp that continues
/// the old one by the wall-clock time elapsed since the last packet (never less than the
/// last packet's length), and the marker bit (§5.1, RFC 3551 §4.1: start of a talkspurt).
/// Relayed packets after that keep their own spacing, reordering and gaps through fixed
/// offsets; telephone events (RFC 4733) pass unchanged apart from this rewrite.
#[derive(Debug, Clone)]
pub struct RtpSender {
    ssrc: u32,
    clock_rate: u32,
    next_seq: u16,
    initial_timestamp: u32,
    source: Option<Source>,
    seq_offset: u16,
    ts_offset: u32,
    /// Highest input sequence number of the current relayed source.
    highest_in_seq: u16,
    next_local_timestamp: u32,
    last: Option<LastSent>,
    packets_sent: u64,
    octets_sent: u64,
}

/// `a` is at or after `b` in wrapping 32-bit timestamp arithmetic.
fn ts_at_or_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) >= 0
}

impl RtpSender {
    /// A sender with this SSRC and the first sequence number and timestamp it will use
    /// (RFC 3550 §5.1 wants both initial values random).
    pub fn new(ssrc: u32, first_sequence: u16, first_timestamp: u32) -> Self {
        RtpSender {
            ssrc,
            clock_rate: super::g711::CLOCK_RATE,
            next_seq: first_sequence,
            initial_timestamp: first_timestamp,
            source: None,
            seq_offset: 0,
            ts_offset: 0,
            highest_in_seq: 0,
            next_local_timestamp: first_timestamp,
            last: None,
            packets_sent: 0,
            octets_sent: 0,
        }
    }

    /// A sender whose SSRC, first sequence number and timestamp are derived from `seed`
    /// (splitmix64), for callers that have one random number per call.
    pub fn from_seed(seed: u64) -> Self {
        let mut state = seed;
        let mut next = || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let ssrc = next() as u32;
        let seq = next() as u16;
        let ts = next() as u32;
        RtpSender::new(ssrc, seq, ts)
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The sequence number the next new packet will carry.
    pub fn next_sequence(&self) -> u16 {
        self.next_seq
    }

    /// Packets stamped so far (RTCP SR "sender's packet count").
    pub fn packets_sent(&self) -> u64 {
        self.packets_sent
    }

    /// Payload octets stamped so far (RTCP SR "sender's octet count").
    pub fn octets_sent(&self) -> u64 {
        self.octets_sent
    }

    /// The timestamp that continues the stream at `now`.
    fn continue_timestamp(&self, now: Instant) -> u32 {
        let Some(last) = self.last else {
            return self.initial_timestamp;
        };
        let elapsed = now.saturating_duration_since(last.at);
        let by_clock = last.timestamp.wrapping_add(self.samples_in(elapsed));
        if ts_at_or_after(by_clock, last.end) {
            by_clock
        } else {
            last.end
        }
    }

    fn samples_in(&self, d: Duration) -> u32 {
        let samples = d.as_micros() * u128::from(self.clock_rate) / 1_000_000;
        // Capped well inside the half of the 32-bit space that still compares as "later".
        samples.min(1 << 30) as u32
    }

    fn record(&mut self, now: Instant, header: &RtpHeader, samples: u32, payload_len: usize) {
        let end = header.timestamp.wrapping_add(samples);
        match &mut self.last {
            Some(last) if !ts_at_or_after(header.timestamp, last.timestamp) => {
                // A late packet: the timeline is already past it.
                if !ts_at_or_after(last.end, end) {
                    last.end = end;
                }
            }
            _ => {
                let end = match self.last {
                    Some(last) if ts_at_or_after(last.end, end) => last.end,
                    _ => end,
                };
                self.last = Some(LastSent {
                    at: now,
                    timestamp: header.timestamp,
                    end,
                });
            }
        }
        if (header.sequence.wrapping_sub(self.next_seq) as i16) >= 0 {
            self.next_seq = header.sequence.wrapping_add(1);
        }
        self.packets_sent += 1;
        self.octets_sent += payload_len as u64;
    }

    /// Stamp a packet generated here (`samples` long). `start_talkspurt` marks the first
    /// packet of a prompt; a packet after relayed ones also starts a new talkspurt.
    pub fn send_local(
        &mut self,
        now: Instant,
        payload_type: u8,
        payload: &[u8],
        samples: u32,
        start_talkspurt: bool,
    ) -> Vec<u8> {
        let switch = start_talkspurt || self.source != Some(Source::Local);
        let timestamp = if switch {
            self.continue_timestamp(now)
        } else {
            self.next_local_timestamp
        };
        let header = RtpHeader {
            marker: switch,
            payload_type,
            sequence: self.next_seq,
            timestamp,
            ssrc: self.ssrc,
        };
        self.source = Some(Source::Local);
        self.next_local_timestamp = timestamp.wrapping_add(samples);
        self.record(now, &header, samples, payload.len());
        build(&header, payload)
    }

    /// Stamp a relayed packet. `input` is the packet as received, except that its payload
    /// type is already the one to send; `samples` is how far its media reaches past its
    /// timestamp (the payload length for G.711, the duration for a telephone event).
    pub fn forward(
        &mut self,
        now: Instant,
        input: &RtpHeader,
        payload: &[u8],
        samples: u32,
    ) -> Vec<u8> {
        let source = Source::Relayed { ssrc: input.ssrc };
        let restarted = self.source == Some(source) && {
            // Appendix A.1: a big jump either way is a restarted stream, not loss.
            let delta = input.sequence.wrapping_sub(self.highest_in_seq);
            (MAX_DROPOUT..=u16::MAX - MAX_MISORDER).contains(&delta)
        };
        let switch = self.source != Some(source) || restarted;
        if switch {
            self.seq_offset = self.next_seq.wrapping_sub(input.sequence);
            self.ts_offset = self.continue_timestamp(now).wrapping_sub(input.timestamp);
            self.highest_in_seq = input.sequence;
            self.source = Some(source);
        } else if (input.sequence.wrapping_sub(self.highest_in_seq) as i16) > 0 {
            self.highest_in_seq = input.sequence;
        }
        let header = RtpHeader {
            marker: switch || input.marker,
            payload_type: input.payload_type,
            sequence: input.sequence.wrapping_add(self.seq_offset),
            timestamp: input.timestamp.wrapping_add(self.ts_offset),
            ssrc: self.ssrc,
        };
        self.record(now, &header, samples, payload.len());
        build(&header, payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(seq: u16, ts: u32, ssrc: u32) -> RtpHeader {
        RtpHeader {
            marker: false,
            payload_type: 0,
            sequence: seq,
            timestamp: ts,
            ssrc,
        }
    }

    #[test]
    fn build_then_parse() {
        let h = RtpHeader {
            marker: true,
            payload_type: 101,
            sequence: 65535,
            timestamp: 0xDEAD_BEEF,
            ssrc: 0x0102_0304,
        };
        let bytes = build(&h, &[1, 2, 3]);
        assert_eq!(bytes.len(), 15);
        assert_eq!(bytes[0], 0x80);
        assert_eq!(bytes[1], 0x80 | 101);
        assert_eq!(parse(&bytes), Ok((h, &[1u8, 2, 3][..])));
        assert_eq!(parse(&build(&h, &[])), Ok((h, &[][..])));
    }

    #[test]
    fn csrc_extension_and_padding() {
        let mut p = vec![0x80 | 0x20 | 0x10 | 2, 8, 0, 1, 0, 0, 0, 160, 0, 0, 0, 7];
        p.extend_from_slice(&[0xAA; 8]); // two CSRCs
        p.extend_from_slice(&[0xBE, 0xDE, 0, 1, 1, 2, 3, 4]); // extension, one word
        p.extend_from_slice(&[9, 9, 9]); // payload
        p.extend_from_slice(&[0, 0, 3]); // padding, count 3
        let (h, payload) = parse(&p).expect("parses");
        assert_eq!(h.payload_type, 8);
        assert_eq!(h.sequence, 1);
        assert_eq!(h.timestamp, 160);
        assert_eq!(h.ssrc, 7);
        assert_eq!(payload, &[9, 9, 9]);
    }

    #[test]
    fn bad_packets_are_errors() {
        assert!(matches!(parse(&[]), Err(RtpError::TooShort { .. })));
        assert!(matches!(parse(&[0x80; 11]), Err(RtpError::TooShort { .. })));
        assert_eq!(parse(&[0x40; 12]), Err(RtpError::BadVersion(1)));
        // CSRC count beyond the packet.
        let mut p = build(&header(1, 2, 3), &[]);
        p[0] |= 0x03;
        assert!(matches!(
            parse(&p),
            Err(RtpError::TooShort { need: 24, .. })
        ));
        // Extension header cut off, and extension length beyond the packet.
        let mut p = build(&header(1, 2, 3), &[0xBE, 0xDE]);
        p[0] |= 0x10;
        assert!(matches!(parse(&p), Err(RtpError::TooShort { .. })));
        let mut p = build(&header(1, 2, 3), &[0xBE, 0xDE, 0, 9]);
        p[0] |= 0x10;
        assert!(matches!(parse(&p), Err(RtpError::TooShort { .. })));
        // Padding: zero count, larger than the payload, or no payload at all.
        for payload in [&[1u8, 0][..], &[1, 5][..], &[][..]] {
            let mut p = build(&header(1, 2, 3), payload);
            p[0] |= 0x20;
            assert!(
                matches!(parse(&p), Err(RtpError::BadPadding { .. })),
                "{p:?}"
            );
        }
        // RTCP receiver report.
        let rr = [0x81, 201, 0, 7, 0, 0, 0, 1, 0, 0, 0, 0];
        assert!(is_rtcp(&rr));
        assert_eq!(parse(&rr), Err(RtpError::Rtcp(201)));
        assert!(!is_rtcp(&build(&header(1, 2, 3), &[])));
        assert!(!is_rtcp(&[0x80]));
    }

    #[test]
    fn telephone_event_payload() {
        let e = TelephoneEvent::parse(&[5, 0x80 | 10, 0x03, 0x20]).expect("event");
        assert_eq!(
            e,
            TelephoneEvent {
                event: 5,
                end: true,
                volume: 10,
                duration: 800
            }
        );
        assert_eq!(TelephoneEvent::parse(&[5, 0, 1]), None);
    }

    #[test]
    fn local_packets_are_continuous_and_marked_once() {
        let t0 = Instant::now();
        let mut s = RtpSender::new(42, 65534, u32::MAX - 100);
        let mut prev: Option<RtpHeader> = None;
        for i in 0..5u32 {
            let now = t0 + Duration::from_millis(20 * u64::from(i));
            let p = s.send_local(now, 0, &[0xFF; 160], 160, i == 0);
            let (h, payload) = parse(&p).expect("ours parse");
            assert_eq!(payload.len(), 160);
            assert_eq!(h.ssrc, 42);
            assert_eq!(h.marker, i == 0);
            if let Some(prev) = prev {
                assert_eq!(h.sequence, prev.sequence.wrapping_add(1));
                assert_eq!(h.timestamp, prev.timestamp.wrapping_add(160));
            } else {
                assert_eq!((h.sequence, h.timestamp), (65534, u32::MAX - 100));
            }
            prev = Some(h);
        }
        assert_eq!(s.packets_sent(), 5);
        assert_eq!(s.octets_sent(), 800);
    }

    #[test]
    fn switching_to_relayed_continues_the_stream() {
        let t0 = Instant::now();
        let mut s = RtpSender::new(1, 100, 1000);
        for i in 0..3u64 {
            s.send_local(
                t0 + Duration::from_millis(20 * i),
                0,
                &[0; 160],
                160,
                i == 0,
            );
        }
        // Last local packet: seq 102, ts 1320. The relayed stream starts 100 ms later.
        let now = t0 + Duration::from_millis(140);
        let p = s.forward(now, &header(5000, 777_000, 9), &[0; 160], 160);
        let (h, _) = parse(&p).expect("parse");
        assert_eq!(h.sequence, 103);
        assert_eq!(h.timestamp, 1320 + 100 * 8);
        assert!(h.marker, "first packet after a switch is marked");
        assert_eq!(h.ssrc, 1);
        // The relayed stream's own spacing, gaps and reordering are kept.
        let later = |seq, ts| {
            let mut s2 = s.clone();
            let p = s2.forward(now, &header(seq, ts, 9), &[0; 160], 160);
            parse(&p).expect("parse").0
        };
        let h2 = later(5001, 777_160);
        assert_eq!((h2.sequence, h2.timestamp, h2.marker), (104, 2280, false));
        let h3 = later(5003, 777_480);
        assert_eq!((h3.sequence, h3.timestamp), (106, 2600));
        let h0 = later(4999, 776_840);
        assert_eq!((h0.sequence, h0.timestamp), (102, 1960));
    }

    #[test]
    fn restarts_resync_and_local_after_relay_is_marked() {
        let t0 = Instant::now();
        let mut s = RtpSender::new(1, 0, 0);
        let ms = |m| t0 + Duration::from_millis(m);
        s.forward(ms(0), &header(10, 80_000, 9), &[0; 160], 160);
        s.forward(ms(20), &header(11, 80_160, 9), &[0; 160], 160);
        // Sequence jump within one SSRC (phone restarted its stream): resync.
        let (h, _) =
            parse(&s.forward(ms(40), &header(40_000, 5, 9), &[0; 160], 160)).expect("parse");
        assert_eq!((h.sequence, h.timestamp, h.marker), (2, 320, true));
        // New SSRC: resync too, even if it arrives early (never overlaps the last packet).
        let (h, _) = parse(&s.forward(ms(45), &header(7, 0, 10), &[0; 160], 160)).expect("parse");
        assert_eq!((h.sequence, h.timestamp, h.marker), (3, 480, true));
        // A prompt after relayed audio: next seq, timestamp by elapsed time, marked.
        let (h, _) = parse(&s.send_local(ms(1045), 0, &[0; 160], 160, false)).expect("parse");
        assert_eq!((h.sequence, h.timestamp, h.marker), (4, 480 + 8000, true));
        // A telephone event's duration extends the timeline past its start timestamp.
        let mut s = RtpSender::new(1, 0, 0);
        s.forward(ms(0), &header(1, 0, 9), &[1, 0x80, 0x06, 0x40], 1600);
        let (h, _) = parse(&s.send_local(ms(20), 0, &[0; 160], 160, true)).expect("parse");
        assert_eq!(h.timestamp, 1600);
    }

    #[test]
    fn seeded_senders_differ() {
        let a = RtpSender::from_seed(1);
        let b = RtpSender::from_seed(2);
        assert_ne!(a.ssrc(), b.ssrc());
        assert_eq!(a.ssrc(), RtpSender::from_seed(1).ssrc());
    }
}
