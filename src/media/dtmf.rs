//! DTMF key presses from a screened caller, as RFC 4733 telephone events in RTP or as SIP INFO
//! bodies, and the buffer that matches them against a code. Pure: no I/O, and the time is
//! passed in.
//!
//! # RTP telephone events (RFC 4733)
//!
//! A key press is sent as a stream of packets that all describe one event (§2.3, the
//! 4-byte payload parsed by [`TelephoneEvent::parse`]):
//!
//! * The RTP timestamp is the instant the event *began* and stays the same in every packet
//!   of the event, while the duration field grows (§2.3.5, §2.5.1.2). The timestamp (with
//!   the SSRC, which distinguishes streams) is therefore the event's identity; the sequence
//!   number is not, and the marker bit on the first packet (§2.5.1.2) may be lost with it.
//! * The E bit marks the end of the event (§2.3.2), and the final packet is sent three
//!   times (§2.5.1.4), so a receiver sees the end several times, perhaps before a late
//!   update packet.
//! * An event longer than the 16-bit duration field can express (0xFFFF timestamp units,
//!   about 8 s at 8 kHz) is cut into segments: the segment that reaches the maximum duration
//!   has no E bit, and the next one carries the same event code with the timestamp at which
//!   that maximum was reached, i.e. the previous timestamp + 0xFFFF (§2.5.1.3, §2.5.2.3).
//!   It is the same key press, not a new one.
//!
//! [`DtmfReceiver`] reports each key as soon as the first packet of its event arrives (a
//! caller keying a code should not wait for the end packets), once per (SSRC, timestamp),
//! and remembers only the last [`REMEMBERED_EVENTS`] events. Event codes 0–15 (§3.2, digits,
//! `*`, `#`, A–D) are keys; flash (16) and the other events of RFC 4734 are not.
//!
//! # SIP INFO
//!
//! Phones that do not send telephone events often send each key in a SIP INFO request,
//! with one of two de-facto bodies (neither is an RFC):
//!
//! * `application/dtmf-relay`: lines `Signal=5` and `Duration=160` (CRLF-separated); some
//!   phones send `Signal=10` for `*` and `Signal=11` for `#`.
//! * `application/dtmf`: the key itself, `5`.
//!
//! [`parse_info_dtmf`] reads either.
//!
//! # Matching a code
//!
//! [`DigitBuffer`] keeps the last [`MAX_DIGITS`] keys of the current sequence; a key pressed
//! more than [`INTER_DIGIT_TIMEOUT`] after the previous one starts a new sequence, and
//! [`DigitBuffer::ends_with`] says whether the sequence ends with a code.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::rtp::{RtpHeader, TelephoneEvent};

/// How many recent events (SSRC, timestamp) [`DtmfReceiver`] remembers to drop the repeated
/// packets of an event it already reported.
pub const REMEMBERED_EVENTS: usize = 16;

/// Longest duration field of one segment of a long event (RFC 4733 §2.5.1.3); the next
/// segment starts this many timestamp units after the previous one.
const SEGMENT_LENGTH: u32 = 0xFFFF;

/// Tolerance around [`SEGMENT_LENGTH`] for senders that start the next segment at a packet
/// boundary rather than exactly at 0xFFFF (128 ms at 8 kHz).
const SEGMENT_SLACK: u32 = 1024;

/// A packet whose timestamp is at most this far behind the newest event of its SSRC is a
/// late packet of an older event that has been forgotten, not a new press (2^20 units:
/// about 131 s at 8 kHz, longer than [`REMEMBERED_EVENTS`] presses take). Further behind,
/// the sender restarted its timestamps and it is a new event.
const STALE_WINDOW: u32 = 1 << 20;

/// A key press is separate from the previous one (a new sequence) when it comes more than
/// this long after it.
pub const INTER_DIGIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Keys a [`DigitBuffer`] keeps (the newest ones).
pub const MAX_DIGITS: usize = 32;

/// The key of an RFC 4733 §3.2 DTMF event code: `0`–`9`, `*` (10), `#` (11), `A`–`D`
/// (12–15). `None` for flash (16) and every other event.
pub fn event_char(event: u8) -> Option<char> {
    match event {
        0..=9 => Some(char::from(b'0' + event)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + (event - 12))),
        _ => None,
    }
}

/// One event the receiver has seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SeenEvent {
    ssrc: u32,
    /// The event's start, its identity within the stream (RFC 4733 §2.3.5).
    timestamp: u32,
    event: u8,
    /// An end packet (E bit) has arrived.
    ended: bool,
}

/// Turns RFC 4733 telephone-event packets into key presses, each reported once.
///
/// Feed it every packet of the negotiated `telephone-event` payload type (the caller checks
/// the payload type; this only reads the header and payload).
#[derive(Debug, Clone, Default)]
pub struct DtmfReceiver {
    /// Oldest first, at most [`REMEMBERED_EVENTS`].
    seen: VecDeque<SeenEvent>,
}

impl DtmfReceiver {
    pub fn new() -> Self {
        DtmfReceiver {
            seen: VecDeque::with_capacity(REMEMBERED_EVENTS),
        }
    }

    /// The key pressed, if this packet is the first one seen of a new DTMF event; `None`
    /// for the further packets of an event (updates, the end packet and its
    /// retransmissions, packets arriving after the end), for the next segment of a long
    /// event, and for malformed payloads and non-DTMF events.
    pub fn on_event(&mut self, header: &RtpHeader, payload: &[u8]) -> Option<char> {
        let event = TelephoneEvent::parse(payload)?;
        let key = event_char(event.event)?;
        if let Some(seen) = self
            .seen
            .iter_mut()
            .find(|s| s.ssrc == header.ssrc && s.timestamp == header.timestamp)
        {
            // Already reported: an update, an end packet, a retransmission, or a late one.
            seen.ended |= event.end;
            return None;
        }
        let mut report = true;
        // Arrival order of remembered events is timestamp order (stale ones are never
        // remembered), so the last one of this SSRC is its newest.
        if let Some(prev) = self.seen.iter().rev().find(|s| s.ssrc == header.ssrc) {
            let ahead = header.timestamp.wrapping_sub(prev.timestamp);
            let behind = prev.timestamp.wrapping_sub(header.timestamp);
            if behind <= STALE_WINDOW {
                // A late packet of an event older than the newest one, already forgotten.
                return None;
            }
            let next_segment = prev.event == event.event
                && !prev.ended
                && ahead.abs_diff(SEGMENT_LENGTH) <= SEGMENT_SLACK;
            report = !next_segment;
        }
        if self.seen.len() == REMEMBERED_EVENTS {
            self.seen.pop_front();
        }
        self.seen.push_back(SeenEvent {
            ssrc: header.ssrc,
            timestamp: header.timestamp,
            event: event.event,
            ended: event.end,
        });
        report.then_some(key)
    }
}

/// A key written as itself: `0`–`9`, `*`, `#`, `A`–`D` (either case, returned upper-case).
fn key_char(b: u8) -> Option<char> {
    match b {
        b'0'..=b'9' | b'*' | b'#' | b'A'..=b'D' => Some(char::from(b)),
        b'a'..=b'd' => Some(char::from(b.to_ascii_uppercase())),
        _ => None,
    }
}

/// A `Signal=` value: one key, or the event codes `10` (`*`) and `11` (`#`).
fn signal_value(value: &[u8]) -> Option<char> {
    match value {
        [b] => key_char(*b),
        b"10" => Some('*'),
        b"11" => Some('#'),
        _ => None,
    }
}

/// The key in a SIP INFO body, given the request's Content-Type (media type matched
/// case-insensitively, parameters ignored):
///
/// * `application/dtmf-relay`: the value of the first `Signal=` line (key case-insensitive,
///   spaces around key and value allowed, lines ending in CRLF, LF or CR), a key, or `10`
///   for `*` and `11` for `#`.
/// * `application/dtmf`: the body's first character after leading whitespace (a whole
///   body of `10` or `11` is `*` or `#`).
///
/// `None` for any other content type, and for a body without a valid key. Never panics, on
/// any bytes.
pub fn parse_info_dtmf(content_type: &str, body: &[u8]) -> Option<char> {
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    if media_type.eq_ignore_ascii_case("application/dtmf-relay") {
        body.split(|&b| b == b'\n' || b == b'\r')
            .find_map(|line| {
                let eq = line.iter().position(|&b| b == b'=')?;
                let (key, value) = (&line[..eq], &line[eq + 1..]);
                key.trim_ascii()
                    .eq_ignore_ascii_case(b"signal")
                    .then(|| value.trim_ascii())
            })
            .and_then(signal_value)
    } else if media_type.eq_ignore_ascii_case("application/dtmf") {
        let body = body.trim_ascii();
        signal_value(body).or_else(|| key_char(*body.first()?))
    } else {
        None
    }
}

/// The keys of the current sequence, each with the time it arrived, for matching a code.
#[derive(Debug, Clone, Default)]
pub struct DigitBuffer {
    /// Oldest first, at most [`MAX_DIGITS`].
    digits: VecDeque<(Instant, char)>,
}

impl DigitBuffer {
    pub fn new() -> Self {
        DigitBuffer {
            digits: VecDeque::with_capacity(MAX_DIGITS),
        }
    }

    /// Add a key pressed at `now`. A key more than [`INTER_DIGIT_TIMEOUT`] after the
    /// previous one starts a new sequence; only the newest [`MAX_DIGITS`] are kept.
    /// Characters that are not DTMF keys (`0`–`9`, `*`, `#`, `A`–`D`, `a`–`d`) are ignored.
    pub fn push(&mut self, now: Instant, c: char) {
        let Some(c) = u8::try_from(c).ok().and_then(key_char) else {
            return;
        };
        if let Some(&(last, _)) = self.digits.back() {
            if now.saturating_duration_since(last) > INTER_DIGIT_TIMEOUT {
                self.digits.clear();
            }
        }
        if self.digits.len() == MAX_DIGITS {
            self.digits.pop_front();
        }
        self.digits.push_back((now, c));
    }

    /// Whether the current sequence ends with `code` (`A`–`D` in either case). An empty
    /// code never matches.
    pub fn ends_with(&self, code: &str) -> bool {
        !code.is_empty()
            && code.chars().count() <= self.digits.len()
            && self
                .digits
                .iter()
                .rev()
                .zip(code.chars().rev())
                .all(|(&(_, d), c)| d.eq_ignore_ascii_case(&c))
    }

    /// Forget every key (after a code matched, say).
    pub fn reset(&mut self) {
        self.digits.clear();
    }

    /// Keys in the current sequence.
    pub fn len(&self) -> usize {
        self.digits.len()
    }

    pub fn is_empty(&self) -> bool {
        self.digits.is_empty()
    }

    /// The current sequence, oldest key first.
    pub fn digits(&self) -> String {
        self.digits.iter().map(|&(_, c)| c).collect()
    }

    /// When the newest key arrived.
    pub fn last_at(&self) -> Option<Instant> {
        self.digits.back().map(|&(at, _)| at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SSRC: u32 = 0x1234_5678;

    fn header(sequence: u16, timestamp: u32, marker: bool) -> RtpHeader {
        RtpHeader {
            marker,
            payload_type: 101,
            sequence,
            timestamp,
            ssrc: SSRC,
        }
    }

    fn payload(event: u8, end: bool, duration: u16) -> [u8; 4] {
        let [d0, d1] = duration.to_be_bytes();
        [event, (u8::from(end) << 7) | 10, d0, d1]
    }

    /// The packets of one event as a sender makes them: first (marked), updates every
    /// 160 units, then the end packet three times (RFC 4733 §2.5.1).
    fn event_packets(
        seq: &mut u16,
        timestamp: u32,
        event: u8,
        updates: u16,
    ) -> Vec<(RtpHeader, [u8; 4])> {
        let mut out = Vec::new();
        for i in 0..=updates {
            out.push((
                header(*seq, timestamp, i == 0),
                payload(event, false, 160 * (i + 1)),
            ));
            *seq = seq.wrapping_add(1);
        }
        for _ in 0..3 {
            out.push((
                header(*seq, timestamp, false),
                payload(event, true, 160 * (updates + 2)),
            ));
            *seq = seq.wrapping_add(1);
        }
        out
    }

    fn feed(rx: &mut DtmfReceiver, packets: &[(RtpHeader, [u8; 4])]) -> String {
        packets
            .iter()
            .filter_map(|(h, p)| rx.on_event(h, p))
            .collect()
    }

    #[test]
    fn event_chars() {
        let all: String = (0..=15).filter_map(event_char).collect();
        assert_eq!(all, "0123456789*#ABCD");
        for e in 16..=255 {
            assert_eq!(event_char(e), None, "event {e}");
        }
    }

    #[test]
    fn one_event_is_one_digit_reported_on_its_first_packet() {
        let mut rx = DtmfReceiver::new();
        let packets = event_packets(&mut 100, 8000, 5, 10);
        assert_eq!(packets.len(), 14);
        let (h, p) = &packets[0];
        assert_eq!(rx.on_event(h, p), Some('5'), "reported without waiting");
        assert_eq!(feed(&mut rx, &packets[1..]), "");
        // Everything again (duplicated by the network): still nothing new.
        assert_eq!(feed(&mut rx, &packets), "");
    }

    #[test]
    fn same_digit_twice_is_two_presses() {
        let mut rx = DtmfReceiver::new();
        let mut seq = 0;
        let mut packets = event_packets(&mut seq, 1000, 1, 4);
        packets.extend(event_packets(&mut seq, 3000, 1, 4));
        assert_eq!(feed(&mut rx, &packets), "11");
    }

    #[test]
    fn a_code_keyed_in() {
        let mut rx = DtmfReceiver::new();
        let mut seq = 65530; // sequence numbers wrap
        let packets: Vec<_> = [(1, 2), (2, 0), (11, 3), (10, 1), (13, 0)]
            .iter()
            .enumerate()
            .flat_map(|(i, &(event, updates))| {
                event_packets(&mut seq, 160_000 + 2400 * i as u32, event, updates)
            })
            .collect();
        assert_eq!(feed(&mut rx, &packets), "12#*B");
    }

    #[test]
    fn reordered_end_packet() {
        let mut rx = DtmfReceiver::new();
        let ts = 40_000;
        assert_eq!(
            rx.on_event(&header(1, ts, true), &payload(7, false, 160)),
            Some('7')
        );
        // The end packet overtakes the last update, which then arrives after the event ended.
        assert_eq!(
            rx.on_event(&header(3, ts, false), &payload(7, true, 480)),
            None
        );
        assert_eq!(
            rx.on_event(&header(2, ts, false), &payload(7, false, 320)),
            None
        );
        assert_eq!(
            rx.on_event(&header(4, ts, false), &payload(7, true, 480)),
            None
        );

        // Only end packets got through (first packets lost or late): the first of them
        // reports the key, and the late start and updates are ignored.
        let ts = 44_000;
        assert_eq!(
            rx.on_event(&header(9, ts, false), &payload(8, true, 800)),
            Some('8')
        );
        assert_eq!(
            rx.on_event(&header(5, ts, true), &payload(8, false, 160)),
            None
        );
        assert_eq!(
            rx.on_event(&header(10, ts, false), &payload(8, true, 800)),
            None
        );
        assert_eq!(
            rx.on_event(&header(6, ts, false), &payload(8, false, 320)),
            None
        );
    }

    #[test]
    fn late_packet_of_the_previous_event_is_not_a_new_press() {
        let mut rx = DtmfReceiver::new();
        assert_eq!(
            rx.on_event(&header(1, 1000, true), &payload(3, false, 160)),
            Some('3')
        );
        assert_eq!(
            rx.on_event(&header(5, 3000, true), &payload(4, false, 160)),
            Some('4')
        );
        // The first event's end packet, after the second event started.
        assert_eq!(
            rx.on_event(&header(2, 1000, false), &payload(3, true, 480)),
            None
        );
    }

    #[test]
    fn flash_and_other_events_are_ignored() {
        let mut rx = DtmfReceiver::new();
        for (i, event) in [16u8, 32, 64, 255].into_iter().enumerate() {
            let ts = 1000 * i as u32;
            assert_eq!(
                rx.on_event(&header(1, ts, true), &payload(event, false, 160)),
                None
            );
            assert_eq!(
                rx.on_event(&header(2, ts, false), &payload(event, true, 320)),
                None
            );
        }
        // And they do not disturb the keys around them.
        assert_eq!(
            rx.on_event(&header(3, 9000, true), &payload(0, false, 160)),
            Some('0')
        );
    }

    #[test]
    fn short_payload_is_ignored() {
        let mut rx = DtmfReceiver::new();
        for p in [&[][..], &[5], &[5, 0x80], &[5, 0x80, 1]] {
            assert_eq!(rx.on_event(&header(1, 500, true), p), None, "{p:?}");
        }
        // A malformed packet does not use up the event: its valid packets still count.
        assert_eq!(
            rx.on_event(&header(2, 500, false), &payload(5, false, 320)),
            Some('5')
        );
        // Extra bytes after the 4-byte event are tolerated (the first event is read).
        let mut long = payload(6, false, 160).to_vec();
        long.extend_from_slice(&[9, 9, 9, 9]);
        assert_eq!(rx.on_event(&header(3, 2000, true), &long), Some('6'));
    }

    #[test]
    fn streams_are_told_apart_by_ssrc() {
        let mut rx = DtmfReceiver::new();
        let h = header(1, 7000, true);
        let other = RtpHeader { ssrc: 99, ..h };
        assert_eq!(rx.on_event(&h, &payload(2, false, 160)), Some('2'));
        assert_eq!(rx.on_event(&other, &payload(2, false, 160)), Some('2'));
        assert_eq!(rx.on_event(&h, &payload(2, true, 320)), None);
        assert_eq!(rx.on_event(&other, &payload(2, true, 320)), None);
    }

    #[test]
    fn long_event_segments_are_one_press() {
        let mut rx = DtmfReceiver::new();
        let t = u32::MAX - 30_000; // and the segments cross the timestamp wrap
        assert_eq!(
            rx.on_event(&header(1, t, true), &payload(9, false, 160)),
            Some('9')
        );
        assert_eq!(
            rx.on_event(&header(2, t, false), &payload(9, false, 0xFFFF)),
            None
        );
        // §2.5.1.3: the next segment starts where the maximum duration was reached.
        let t2 = t.wrapping_add(0xFFFF);
        assert_eq!(
            rx.on_event(&header(3, t2, false), &payload(9, false, 160)),
            None
        );
        assert_eq!(
            rx.on_event(&header(4, t2, false), &payload(9, false, 0xFFFF)),
            None
        );
        // A sender that starts the next segment on a packet boundary.
        let t3 = t2.wrapping_add(0xFFFF - 95);
        assert_eq!(
            rx.on_event(&header(5, t3, false), &payload(9, false, 160)),
            None
        );
        for seq in 6..9 {
            assert_eq!(
                rx.on_event(&header(seq, t3, false), &payload(9, true, 800)),
                None
            );
        }
        // The key pressed again afterwards is a new press.
        let t4 = t3.wrapping_add(2000);
        assert_eq!(
            rx.on_event(&header(9, t4, true), &payload(9, false, 160)),
            Some('9')
        );
    }

    #[test]
    fn lost_end_packets_do_not_merge_two_presses() {
        let mut rx = DtmfReceiver::new();
        // All three end packets of the first press are lost.
        assert_eq!(
            rx.on_event(&header(1, 8000, true), &payload(4, false, 160)),
            Some('4')
        );
        assert_eq!(
            rx.on_event(&header(2, 8000, false), &payload(4, false, 800)),
            None
        );
        assert_eq!(
            rx.on_event(&header(6, 10_400, true), &payload(4, false, 160)),
            Some('4')
        );
        // A different key exactly one segment later is a new press too.
        let t = 10_400 + 0xFFFF;
        assert_eq!(
            rx.on_event(&header(7, t, false), &payload(5, false, 160)),
            Some('5')
        );
        // As is the same key one segment after an event that ended.
        assert_eq!(
            rx.on_event(&header(8, t, false), &payload(5, true, 160)),
            None
        );
        let t = t + 0xFFFF;
        assert_eq!(
            rx.on_event(&header(9, t, false), &payload(5, false, 160)),
            Some('5')
        );
    }

    #[test]
    fn memory_is_bounded_and_forgotten_events_stay_reported() {
        let mut rx = DtmfReceiver::new();
        let mut seq = 0;
        let mut packets = Vec::new();
        for i in 0..100u32 {
            packets.extend(event_packets(
                &mut seq,
                1_000 + 2_000 * i,
                (i % 10) as u8,
                2,
            ));
        }
        assert_eq!(feed(&mut rx, &packets).len(), 100);
        assert!(rx.seen.len() <= REMEMBERED_EVENTS);
        // A straggler of a long-forgotten event is not reported again.
        let (h, p) = &packets[0];
        assert_eq!(rx.on_event(h, p), None);
        // The sender restarts its timestamps far away (same SSRC): new presses count.
        assert_eq!(
            rx.on_event(&header(1, 0x8000_0000, true), &payload(1, false, 160)),
            Some('1')
        );
    }

    #[test]
    fn info_dtmf_relay() {
        let relay = "application/dtmf-relay";
        assert_eq!(
            parse_info_dtmf(relay, b"Signal=5\r\nDuration=160\r\n"),
            Some('5')
        );
        assert_eq!(
            parse_info_dtmf(relay, b"Signal=#\r\nDuration=100"),
            Some('#')
        );
        assert_eq!(
            parse_info_dtmf(relay, b"Signal=*\nDuration=250\n"),
            Some('*')
        );
        assert_eq!(
            parse_info_dtmf(relay, b"Signal=10\r\nDuration=160\r\n"),
            Some('*')
        );
        assert_eq!(
            parse_info_dtmf(relay, b"Signal=11\r\nDuration=160\r\n"),
            Some('#')
        );
        assert_eq!(parse_info_dtmf(relay, b"Signal=D\r\n"), Some('D'));
        assert_eq!(parse_info_dtmf(relay, b"Signal=b\r\n"), Some('B'));
        // Whitespace, key casing, line order.
        assert_eq!(parse_info_dtmf(relay, b"  signal = 7 \r\n"), Some('7'));
        assert_eq!(parse_info_dtmf(relay, b"SIGNAL=\t0\t"), Some('0'));
        assert_eq!(
            parse_info_dtmf(relay, b"Duration=160\r\nSignal=9\r\n"),
            Some('9')
        );
        assert_eq!(parse_info_dtmf(relay, b"\r\n\r\nSignal=3"), Some('3'));
        // Content type: casing, parameters, spaces.
        for ct in [
            "Application/DTMF-Relay",
            "APPLICATION/DTMF-RELAY",
            "application/dtmf-relay; charset=utf-8",
            "  application/dtmf-relay ;foo",
        ] {
            assert_eq!(parse_info_dtmf(ct, b"Signal=1\r\n"), Some('1'), "{ct}");
        }
    }

    #[test]
    fn info_dtmf() {
        let dtmf = "application/dtmf";
        assert_eq!(parse_info_dtmf(dtmf, b"5"), Some('5'));
        assert_eq!(parse_info_dtmf(dtmf, b"#\r\n"), Some('#'));
        assert_eq!(parse_info_dtmf(dtmf, b" \r\n*"), Some('*'));
        assert_eq!(parse_info_dtmf(dtmf, b"c"), Some('C'));
        assert_eq!(parse_info_dtmf(dtmf, b"10"), Some('*'));
        assert_eq!(parse_info_dtmf(dtmf, b"11\r\n"), Some('#'));
        assert_eq!(parse_info_dtmf(dtmf, b"42"), Some('4'), "first character");
        assert_eq!(parse_info_dtmf("Application/DTMF; x=y", b"8"), Some('8'));
    }

    #[test]
    fn info_garbage_is_none() {
        let relay = "application/dtmf-relay";
        let dtmf = "application/dtmf";
        for body in [
            &b""[..],
            b"\r\n",
            b"Signal=",
            b"Signal=\r\nDuration=160",
            b"Signal=12",
            b"Signal=55",
            b"Signal=E",
            b"Signal=16",
            b"Signal=-1",
            b"Signal 5",
            b"Signals=5",
            b"Duration=160\r\n",
            b"=5",
            b"Signal=\xff",
            b"Signal=\xc3\xa9",
            b"\xff\xfe\x00\x01Signal",
            b"Signal=x\r\nSignal=5", // the first Signal line decides
        ] {
            assert_eq!(parse_info_dtmf(relay, body), None, "{body:?}");
        }
        for body in [
            &b""[..],
            b"   \r\n",
            b"\xff",
            b"\xc3\xa9",
            b"x5",
            b"E",
            b"\x00",
        ] {
            assert_eq!(parse_info_dtmf(dtmf, body), None, "{body:?}");
        }
        // Other content types, even with a body that would parse.
        for ct in [
            "",
            ";",
            "text/plain",
            "application/dtmf-relayx",
            "application/dtmfx",
            "application/sdp",
            "application/dtmf relay",
            "application / dtmf",
        ] {
            assert_eq!(parse_info_dtmf(ct, b"Signal=5\r\n"), None, "{ct}");
            assert_eq!(parse_info_dtmf(ct, b"5"), None, "{ct}");
        }
        // Every short body, and pseudo-random long ones, in both formats: no panic.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut bodies: Vec<Vec<u8>> = (0..=255u8)
            .flat_map(|a| {
                [
                    vec![a],
                    vec![a, b'='],
                    vec![b'=', a],
                    b"Signal=".iter().copied().chain([a]).collect(),
                ]
            })
            .collect();
        for len in 0..200 {
            bodies.push(
                (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        [b'S', b'=', b'\r', b'\n', b' ', (state >> 24) as u8][(state % 6) as usize]
                    })
                    .collect(),
            );
        }
        for body in &bodies {
            for ct in [relay, dtmf] {
                if let Some(c) = parse_info_dtmf(ct, body) {
                    assert!("0123456789*#ABCD".contains(c), "{ct} {body:?} → {c:?}");
                }
            }
        }
    }

    #[test]
    fn digit_buffer_matches_codes() {
        let t0 = Instant::now();
        let ms = |m| t0 + Duration::from_millis(m);
        let mut b = DigitBuffer::new();
        assert!(b.is_empty());
        assert!(!b.ends_with("1"));
        for (i, c) in "9123".chars().enumerate() {
            b.push(ms(400 * i as u64), c);
        }
        assert_eq!(b.digits(), "9123");
        assert_eq!(b.len(), 4);
        assert_eq!(b.last_at(), Some(ms(1200)));
        assert!(b.ends_with("123"));
        assert!(b.ends_with("9123"));
        assert!(b.ends_with("3"));
        assert!(!b.ends_with("09123"), "longer than the sequence");
        assert!(!b.ends_with("12"));
        assert!(!b.ends_with(""), "an empty code never matches");
        // A–D in either case; characters that are not keys are ignored.
        b.push(ms(1500), 'x');
        b.push(ms(1600), 'd');
        b.push(ms(1700), '#');
        assert_eq!(b.digits(), "9123D#");
        assert!(b.ends_with("3d#"));
        assert!(b.ends_with("3D#"));
        b.reset();
        assert!(b.is_empty());
        assert!(!b.ends_with("#"));
        assert_eq!(b.last_at(), None);
    }

    #[test]
    fn digit_buffer_inter_digit_timeout() {
        let t0 = Instant::now();
        let mut b = DigitBuffer::new();
        b.push(t0, '1');
        b.push(t0 + Duration::from_secs(1), '2');
        // Exactly the timeout later: still the same sequence.
        b.push(t0 + Duration::from_secs(1) + INTER_DIGIT_TIMEOUT, '3');
        assert!(b.ends_with("123"));
        // More than the timeout after the previous key: a new sequence.
        let t1 = t0 + Duration::from_secs(1) + INTER_DIGIT_TIMEOUT;
        b.push(t1 + INTER_DIGIT_TIMEOUT + Duration::from_millis(1), '4');
        assert!(!b.ends_with("34"));
        assert!(b.ends_with("4"));
        assert_eq!(b.digits(), "4");
        // A clock that seems to go backwards does not break the sequence.
        b.push(t1, '5');
        assert_eq!(b.digits(), "45");
    }

    #[test]
    fn digit_buffer_is_bounded() {
        let t0 = Instant::now();
        let mut b = DigitBuffer::new();
        let keys = "0123456789*#ABCD";
        for i in 0..100u64 {
            let c = keys.as_bytes()[(i % 16) as usize];
            b.push(t0 + Duration::from_millis(100 * i), char::from(c));
        }
        assert_eq!(b.len(), MAX_DIGITS);
        // 100 keys: the last 32 are keys 68..100, i.e. starting at 68 % 16 = 4.
        assert_eq!(b.digits(), "456789*#ABCD0123456789*#ABCD0123");
        assert!(b.ends_with("*#ABCD0123"));
    }
}
