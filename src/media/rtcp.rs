//! RTCP that scamscreen generates for each leg (RFC 3550 §6).
//!
//! The phones' own RTCP is terminated at the relay (see [`super::relay`]): every relayed
//! packet gets our SSRC, sequence numbers and timestamps, so their reports would describe
//! streams the other phone never saw. Instead each leg reports on the two streams it
//! really carries: the one the phone sends us ([`ReceiverStats`], a report block) and the
//! one we send the phone ([`SenderStats`], the SR sender info).
//!
//! [`RtcpReporter`] ties the pieces together for one leg as a state machine told the time:
//! feed it the RTP received and sent and the RTCP received, and drain it with
//! [`RtcpReporter::poll_timeout`] / [`RtcpReporter::poll_transmit`]; [`RtcpReporter::bye`]
//! at hang-up. Every compound packet is SR or RR, then SDES CNAME (§6.1), and BYE last.
//!
//! Simplifications for a two-party unicast call (each leg is its own session with exactly
//! two members, scamscreen and the phone):
//! - one report block at most: the phone is the only other source;
//! - a new SSRC from the phone replaces the old source (its stream restarted) rather than
//!   adding a member; SSRC collisions with our own (§8.2) are not handled;
//! - no probation (Appendix A.1 `MIN_SEQUENTIAL`): the relay only hands us packets from the
//!   latched address with a negotiated payload type, which is what probation guards;
//! - the interval is the 5 s minimum randomised (§6.2, §6.3.1) without timer
//!   reconsideration, which only matters for large or changing groups.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::rtp::{RtpHeader, VERSION};

/// Sender report (§6.4.1).
pub const PT_SR: u8 = 200;
/// Receiver report (§6.4.2).
pub const PT_RR: u8 = 201;
/// Source description (§6.5).
pub const PT_SDES: u8 = 202;
/// Goodbye (§6.6).
pub const PT_BYE: u8 = 203;
/// SDES item type of the canonical name (§6.5.1).
const SDES_CNAME: u8 = 1;
/// Length of a report block (§6.4.1).
const REPORT_BLOCK_LEN: usize = 24;
/// Length of the RTCP header plus sender SSRC.
const HEADER_AND_SSRC_LEN: usize = 8;
/// Length of the SR sender info (NTP, RTP timestamp, packet and octet counts).
const SENDER_INFO_LEN: usize = 20;
/// Appendix A.1: a forward jump of at least this many is a restart, not loss.
const MAX_DROPOUT: u16 = 3000;
/// Appendix A.1: packets up to this far behind are late, not a restart.
const MAX_MISORDER: u16 = 100;
/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;
/// §6.2: the minimum (and, for a two-party G.711 call, the actual) report interval.
pub const MIN_REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// A 64-bit NTP timestamp (§4): seconds since 1900 in the high word, fraction in the low.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NtpTimestamp(pub u64);

impl NtpTimestamp {
    /// The wall clock as NTP; times before 1970 become 1970. The seconds wrap in 2036, as
    /// the 32-bit field does on the wire.
    pub fn from_system_time(t: SystemTime) -> Self {
        let since_unix = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since_unix.as_secs().wrapping_add(NTP_UNIX_OFFSET_SECS) & 0xFFFF_FFFF;
        let frac = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
        NtpTimestamp((secs << 32) | frac)
    }

    /// The middle 32 bits: what a report block echoes as LSR (§6.4.1).
    pub fn middle_32(self) -> u32 {
        (self.0 >> 16) as u32
    }
}

/// A duration in units of 1/65536 s, as DLSR (§6.4.1); saturates at `u32::MAX`.
fn in_1_65536_secs(d: Duration) -> u32 {
    (d.as_nanos() * 65_536 / 1_000_000_000).min(u128::from(u32::MAX)) as u32
}

/// A duration in RTP timestamp units at `clock_rate`, modulo 2^32 (timestamps wrap).
fn in_rtp_units(d: Duration, clock_rate: u32) -> u32 {
    (d.as_nanos() * u128::from(clock_rate) / 1_000_000_000) as u32
}

/// `a` is at or after `b` in wrapping 32-bit timestamp arithmetic.
fn ts_at_or_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) >= 0
}

/// One reception report block (§6.4.1): what we know about one source we receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlock {
    /// The source reported on.
    pub ssrc: u32,
    /// Packets lost since the previous report, as a fraction of 256 (Appendix A.3).
    pub fraction_lost: u8,
    /// Expected minus received since the start; negative with duplicates. 24-bit signed
    /// on the wire, so kept within `-0x80_0000..=0x7F_FFFF`.
    pub cumulative_lost: i32,
    /// Wrap count in the high 16 bits, highest sequence number in the low (Appendix A.1).
    pub extended_highest_seq: u32,
    /// Interarrival jitter in RTP timestamp units (Appendix A.8).
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the source's last SR, 0 if none.
    pub last_sr: u32,
    /// Time since that SR arrived, in 1/65536 s, 0 if none.
    pub delay_since_last_sr: u32,
}

impl ReportBlock {
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        let lost = self.cumulative_lost.clamp(-0x80_0000, 0x7F_FFFF) as u32 & 0x00FF_FFFF;
        out.extend_from_slice(&((u32::from(self.fraction_lost) << 24) | lost).to_be_bytes());
        out.extend_from_slice(&self.extended_highest_seq.to_be_bytes());
        out.extend_from_slice(&self.jitter.to_be_bytes());
        out.extend_from_slice(&self.last_sr.to_be_bytes());
        out.extend_from_slice(&self.delay_since_last_sr.to_be_bytes());
    }

    fn read(b: &[u8]) -> Option<ReportBlock> {
        let lost_word = be32(b, 4)?;
        Some(ReportBlock {
            ssrc: be32(b, 0)?,
            fraction_lost: (lost_word >> 24) as u8,
            // Sign-extend the 24-bit field.
            cumulative_lost: ((lost_word << 8) as i32) >> 8,
            extended_highest_seq: be32(b, 8)?,
            jitter: be32(b, 12)?,
            last_sr: be32(b, 16)?,
            delay_since_last_sr: be32(b, 20)?,
        })
    }
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let bytes = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// The SR's sender info (§6.4.1): which RTP timestamp corresponds to which wall-clock time,
/// and how much we have sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderInfo {
    pub ntp: NtpTimestamp,
    pub rtp_timestamp: u32,
    /// Packets sent, modulo 2^32.
    pub packet_count: u32,
    /// Payload octets sent (no headers or padding), modulo 2^32.
    pub octet_count: u32,
}

/// The per-source state of Appendix A.1 plus the jitter of A.8.
#[derive(Debug, Clone)]
struct SourceState {
    ssrc: u32,
    max_seq: u16,
    /// Sequence number wraps since `base_seq` (A.1 keeps `cycles` shifted by 16).
    cycles: u64,
    base_seq: u16,
    /// The sequence number that would confirm a restart after a big jump.
    bad_seq: Option<u16>,
    received: u64,
    expected_prior: i64,
    received_prior: u64,
    /// Arrival instant that is 0 in arrival-time RTP units.
    epoch: Instant,
    /// Relative transit time of the previous packet (A.8).
    transit: Option<u32>,
    /// Jitter × 16, the integer form of A.8.
    jitter_q4: u64,
}

impl SourceState {
    fn new(ssrc: u32, seq: u16, epoch: Instant) -> Self {
        SourceState {
            ssrc,
            max_seq: seq,
            cycles: 0,
            base_seq: seq,
            bad_seq: None,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            epoch,
            transit: None,
            jitter_q4: 0,
        }
    }

    /// A.1 `init_seq`: start counting afresh from `seq` (the jitter is kept, the transit
    /// baseline is not, since the timestamps jumped too).
    fn restart(&mut self, seq: u16) {
        self.base_seq = seq;
        self.max_seq = seq;
        self.bad_seq = None;
        self.cycles = 0;
        self.received = 0;
        self.expected_prior = 0;
        self.received_prior = 0;
        self.transit = None;
    }

    /// A.1 `update_seq` without probation; whether the packet counts as received.
    fn update_seq(&mut self, seq: u16) -> bool {
        let udelta = seq.wrapping_sub(self.max_seq);
        if udelta < MAX_DROPOUT {
            // In order, with a permissible gap.
            if seq < self.max_seq {
                self.cycles += 1;
            }
            self.max_seq = seq;
        } else if udelta <= u16::MAX - MAX_MISORDER + 1 {
            // A very large jump: a restart if the next packet follows on, else ignored.
            if self.bad_seq == Some(seq) {
                self.restart(seq);
            } else {
                self.bad_seq = Some(seq.wrapping_add(1));
                return false;
            }
        }
        // Otherwise a duplicate or reordered packet: counted, max_seq unchanged.
        self.received += 1;
        true
    }

    /// A.8: `J += (|D(i-1,i)| - J) / 16`, with arrival converted to RTP units.
    fn update_jitter(&mut self, arrival: Instant, rtp_ts: u32, clock_rate: u32) {
        let arrival_ts = in_rtp_units(arrival.saturating_duration_since(self.epoch), clock_rate);
        let transit = arrival_ts.wrapping_sub(rtp_ts);
        if let Some(previous) = self.transit {
            let d = u64::from((transit.wrapping_sub(previous) as i32).unsigned_abs());
            self.jitter_q4 = self.jitter_q4 - ((self.jitter_q4 + 8) >> 4) + d;
        }
        self.transit = Some(transit);
    }

    fn extended_max(&self) -> u64 {
        (self.cycles << 16) + u64::from(self.max_seq)
    }
}

/// The last SR received from the peer, for LSR/DLSR.
#[derive(Debug, Clone, Copy)]
struct LastSr {
    ssrc: u32,
    middle_32: u32,
    arrival: Instant,
}

/// Reception statistics for the one RTP source a leg receives (the phone), RFC 3550
/// Appendix A.1 (sequence validation), A.3 (loss) and A.8 (jitter).
#[derive(Debug, Clone)]
pub struct ReceiverStats {
    clock_rate: u32,
    source: Option<SourceState>,
    last_sr: Option<LastSr>,
}

impl ReceiverStats {
    /// Statistics for a stream with this RTP clock rate (8000 for G.711).
    pub fn new(clock_rate: u32) -> Self {
        ReceiverStats {
            clock_rate,
            source: None,
            last_sr: None,
        }
    }

    /// Record an RTP packet that arrived at `arrival`. Returns whether it was counted: the
    /// first packet after a jump of more than `MAX_DROPOUT` is not (A.1); if the next one
    /// follows it, the source is taken to have restarted and counting starts again. A new
    /// SSRC replaces the old source.
    pub fn on_packet(&mut self, arrival: Instant, seq: u16, rtp_ts: u32, ssrc: u32) -> bool {
        let clock_rate = self.clock_rate;
        let source = match &mut self.source {
            Some(source) if source.ssrc == ssrc => source,
            other => other.insert(SourceState::new(ssrc, seq, arrival)),
        };
        if !source.update_seq(seq) {
            return false;
        }
        source.update_jitter(arrival, rtp_ts, clock_rate);
        true
    }

    /// Record an SR from the source (§6.4.1): its NTP time is echoed as LSR, and the time
    /// since `arrival` as DLSR, in the next report blocks about `ssrc`.
    pub fn on_sender_report(&mut self, arrival: Instant, ssrc: u32, ntp: NtpTimestamp) {
        self.last_sr = Some(LastSr {
            ssrc,
            middle_32: ntp.middle_32(),
            arrival,
        });
    }

    /// The SSRC of the source, once a packet has arrived.
    pub fn source_ssrc(&self) -> Option<u32> {
        self.source.as_ref().map(|s| s.ssrc)
    }

    /// Packets counted since the source (re)started.
    pub fn packets_received(&self) -> u64 {
        self.source.as_ref().map_or(0, |s| s.received)
    }

    /// Interarrival jitter in RTP timestamp units.
    pub fn jitter(&self) -> u32 {
        self.source
            .as_ref()
            .map_or(0, |s| (s.jitter_q4 >> 4).min(u64::from(u32::MAX)) as u32)
    }

    /// The report block about the source at `now`, `None` before any packet. This starts a
    /// new interval for `fraction_lost` (A.3), so call it once per report sent.
    pub fn report_block(&mut self, now: Instant) -> Option<ReportBlock> {
        let source = self.source.as_mut()?;
        let extended_max = source.extended_max();
        let expected = extended_max as i64 - i64::from(source.base_seq) + 1;
        let received = source.received as i64;
        let expected_interval = expected - source.expected_prior;
        let received_interval = received - source.received_prior as i64;
        source.expected_prior = expected;
        source.received_prior = source.received;
        let lost_interval = expected_interval - received_interval;
        let fraction_lost = if expected_interval <= 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval).min(255) as u8
        };
        let (last_sr, delay_since_last_sr) = match self.last_sr {
            Some(sr) if sr.ssrc == source.ssrc => (
                sr.middle_32,
                in_1_65536_secs(now.saturating_duration_since(sr.arrival)),
            ),
            _ => (0, 0),
        };
        Some(ReportBlock {
            ssrc: source.ssrc,
            fraction_lost,
            cumulative_lost: (expected - received).clamp(-0x80_0000, 0x7F_FFFF) as i32,
            extended_highest_seq: extended_max as u32,
            jitter: (source.jitter_q4 >> 4).min(u64::from(u32::MAX)) as u32,
            last_sr,
            delay_since_last_sr,
        })
    }
}

/// What we have sent on one outgoing stream, for the SR sender info.
#[derive(Debug, Clone)]
pub struct SenderStats {
    clock_rate: u32,
    packets: u64,
    octets: u64,
    /// The newest RTP timestamp sent and the instant it was sent: the reference point
    /// from which the SR's RTP timestamp is extrapolated.
    reference: Option<(u32, Instant)>,
    last_sent_at: Option<Instant>,
}

impl SenderStats {
    pub fn new(clock_rate: u32) -> Self {
        SenderStats {
            clock_rate,
            packets: 0,
            octets: 0,
            reference: None,
            last_sent_at: None,
        }
    }

    /// Record a packet sent at `now` with this timestamp and payload length. A packet
    /// whose timestamp is behind the newest (a late relayed packet) is counted but does
    /// not move the timestamp reference.
    pub fn on_packet_sent(&mut self, now: Instant, rtp_ts: u32, payload_len: usize) {
        self.packets += 1;
        self.octets += payload_len as u64;
        self.last_sent_at = Some(now);
        match self.reference {
            Some((newest, _)) if !ts_at_or_after(rtp_ts, newest) => {}
            _ => self.reference = Some((rtp_ts, now)),
        }
    }

    pub fn packets(&self) -> u64 {
        self.packets
    }

    pub fn octets(&self) -> u64 {
        self.octets
    }

    /// When the newest packet was sent.
    pub fn last_sent_at(&self) -> Option<Instant> {
        self.last_sent_at
    }

    /// The sender info for an SR at `now` (`wallclock` is the same moment on the system
    /// clock), `None` before anything was sent. §6.4.1: the RTP timestamp is the one
    /// "now" would carry, extrapolated from the newest packet by the elapsed time, not
    /// the newest packet's timestamp.
    pub fn sender_info(&self, now: Instant, wallclock: SystemTime) -> Option<SenderInfo> {
        let (timestamp, at) = self.reference?;
        let elapsed = now.saturating_duration_since(at);
        Some(SenderInfo {
            ntp: NtpTimestamp::from_system_time(wallclock),
            rtp_timestamp: timestamp.wrapping_add(in_rtp_units(elapsed, self.clock_rate)),
            packet_count: self.packets as u32,
            octet_count: self.octets as u32,
        })
    }
}

/// Start an RTCP packet; [`finish_packet`] fills in its length.
fn start_packet(out: &mut Vec<u8>, count: u8, packet_type: u8) -> usize {
    let start = out.len();
    out.push((VERSION << 6) | (count & 0x1F));
    out.push(packet_type);
    out.extend_from_slice(&[0, 0]);
    start
}

/// §6.4.1: the length field is the packet's length in 32-bit words minus one.
fn finish_packet(out: &mut [u8], start: usize) {
    let words = ((out.len() - start) / 4 - 1) as u16;
    out[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());
}

/// At most 255 bytes of `s`, cut at a character boundary (SDES items and BYE reasons
/// have an 8-bit length).
fn text_255(s: &str) -> &[u8] {
    let mut end = s.len().min(255);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s.as_bytes()[..end]
}

fn pad_to_word(out: &mut Vec<u8>) {
    out.resize(out.len().next_multiple_of(4), 0);
}

fn write_sender_report(
    out: &mut Vec<u8>,
    ssrc: u32,
    info: &SenderInfo,
    block: Option<&ReportBlock>,
) {
    let start = start_packet(out, u8::from(block.is_some()), PT_SR);
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(&info.ntp.0.to_be_bytes());
    out.extend_from_slice(&info.rtp_timestamp.to_be_bytes());
    out.extend_from_slice(&info.packet_count.to_be_bytes());
    out.extend_from_slice(&info.octet_count.to_be_bytes());
    if let Some(block) = block {
        block.write(out);
    }
    finish_packet(out, start);
}

fn write_receiver_report(out: &mut Vec<u8>, ssrc: u32, block: Option<&ReportBlock>) {
    let start = start_packet(out, u8::from(block.is_some()), PT_RR);
    out.extend_from_slice(&ssrc.to_be_bytes());
    if let Some(block) = block {
        block.write(out);
    }
    finish_packet(out, start);
}

/// §6.5: one chunk with a CNAME item, then at least one null octet ending the item list,
/// then nulls to the next 32-bit boundary.
fn write_sdes_cname(out: &mut Vec<u8>, ssrc: u32, cname: &str) {
    let start = start_packet(out, 1, PT_SDES);
    out.extend_from_slice(&ssrc.to_be_bytes());
    let text = text_255(cname);
    out.push(SDES_CNAME);
    out.push(text.len() as u8);
    out.extend_from_slice(text);
    out.push(0);
    pad_to_word(out);
    finish_packet(out, start);
}

/// §6.6: our SSRC, then optionally a length-prefixed reason padded with nulls.
fn write_bye(out: &mut Vec<u8>, ssrc: u32, reason: Option<&str>) {
    let start = start_packet(out, 1, PT_BYE);
    out.extend_from_slice(&ssrc.to_be_bytes());
    if let Some(reason) = reason {
        let text = text_255(reason);
        out.push(text.len() as u8);
        out.extend_from_slice(text);
        pad_to_word(out);
    }
    finish_packet(out, start);
}

/// A sender report (§6.4.1) with zero or one report block.
pub fn sender_report(ssrc: u32, info: &SenderInfo, block: Option<&ReportBlock>) -> Vec<u8> {
    let mut out = Vec::new();
    write_sender_report(&mut out, ssrc, info, block);
    out
}

/// A receiver report (§6.4.2) with zero or one report block.
pub fn receiver_report(ssrc: u32, block: Option<&ReportBlock>) -> Vec<u8> {
    let mut out = Vec::new();
    write_receiver_report(&mut out, ssrc, block);
    out
}

/// An SDES packet (§6.5) carrying only our CNAME (truncated to 255 bytes).
pub fn sdes_cname(ssrc: u32, cname: &str) -> Vec<u8> {
    let mut out = Vec::new();
    write_sdes_cname(&mut out, ssrc, cname);
    out
}

/// A BYE packet (§6.6) for our SSRC, with an optional reason (truncated to 255 bytes).
pub fn bye(ssrc: u32, reason: Option<&str>) -> Vec<u8> {
    let mut out = Vec::new();
    write_bye(&mut out, ssrc, reason);
    out
}

/// A compound report (§6.1): SR if `sender` is given (we sent recently), else RR; then
/// SDES CNAME.
pub fn compound_report(
    ssrc: u32,
    sender: Option<&SenderInfo>,
    block: Option<&ReportBlock>,
    cname: &str,
) -> Vec<u8> {
    let mut out = Vec::new();
    match sender {
        Some(info) => write_sender_report(&mut out, ssrc, info, block),
        None => write_receiver_report(&mut out, ssrc, block),
    }
    write_sdes_cname(&mut out, ssrc, cname);
    out
}

/// A CNAME for one session derived from a random seed: 24 hex digits, in the spirit of
/// RFC 7022's random per-session CNAMEs (no user or host name leaks to the phones).
pub fn cname_from_seed(seed: u64) -> String {
    let mut state = seed;
    let high = splitmix64(&mut state);
    let low = splitmix64(&mut state);
    format!("{:016x}{:08x}", high, low as u32)
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Why bytes are not a valid compound RTCP packet (RFC 3550 Appendix A.2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    #[error("empty RTCP datagram")]
    Empty,
    #[error("RTCP header cut off at byte {offset} ({remaining} bytes left, need 4)")]
    TruncatedHeader { offset: usize, remaining: usize },
    #[error("RTCP version {version} at byte {offset}, expected 2")]
    BadVersion { offset: usize, version: u8 },
    #[error("compound RTCP starts with packet type {0}, not SR (200) or RR (201)")]
    NotStartingWithReport(u8),
    #[error("RTCP packet at byte {offset} declares {declared} bytes, only {available} remain")]
    LengthBeyondDatagram {
        offset: usize,
        declared: usize,
        available: usize,
    },
    #[error("RTCP padding on the packet at byte {offset}, which is not the last")]
    PaddingNotLast { offset: usize },
    #[error("RTCP padding of {padding} bytes in a {len}-byte packet")]
    BadPadding { padding: usize, len: usize },
    #[error(
        "RTCP packet type {packet_type} with {count} report blocks needs {need} bytes, has {len}"
    )]
    TooShortForReports {
        packet_type: u8,
        count: usize,
        need: usize,
        len: usize,
    },
}

/// An SR received from the peer: its SSRC and sender info.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceivedSenderReport {
    pub ssrc: u32,
    pub info: SenderInfo,
}

/// What scamscreen takes from a compound RTCP packet: the first SR's sender info, all
/// report blocks of SRs and RRs (the peer's view of what we send it) and whether it said
/// goodbye. SDES, APP and feedback packets are validated for framing only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RtcpSummary {
    pub sender_report: Option<ReceivedSenderReport>,
    pub report_blocks: Vec<ReportBlock>,
    pub bye: bool,
}

/// Validate a compound RTCP packet per Appendix A.2 and summarise it: every packet is
/// version 2, the first is SR or RR, only the last may be padded, and the lengths add up to
/// exactly the datagram. Reduced-size RTCP (RFC 5506) is refused. Never panics.
pub fn parse_compound(bytes: &[u8]) -> Result<RtcpSummary, RtcpError> {
    if bytes.is_empty() {
        return Err(RtcpError::Empty);
    }
    let mut summary = RtcpSummary::default();
    let mut offset = 0;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        let [b0, packet_type, l0, l1, ..] = *rest else {
            return Err(RtcpError::TruncatedHeader {
                offset,
                remaining: rest.len(),
            });
        };
        if b0 >> 6 != VERSION {
            return Err(RtcpError::BadVersion {
                offset,
                version: b0 >> 6,
            });
        }
        if offset == 0 && packet_type != PT_SR && packet_type != PT_RR {
            return Err(RtcpError::NotStartingWithReport(packet_type));
        }
        let len = (usize::from(u16::from_be_bytes([l0, l1])) + 1) * 4;
        let Some(packet) = rest.get(..len) else {
            return Err(RtcpError::LengthBeyondDatagram {
                offset,
                declared: len,
                available: rest.len(),
            });
        };
        let mut body_len = len;
        if b0 & 0x20 != 0 {
            if len != rest.len() {
                return Err(RtcpError::PaddingNotLast { offset });
            }
            // The last octet counts the padding, itself included; the header stays.
            let padding = usize::from(packet[len - 1]);
            if padding == 0 || padding > len - 4 {
                return Err(RtcpError::BadPadding { padding, len });
            }
            body_len -= padding;
        }
        let body = &packet[..body_len];
        let count = usize::from(b0 & 0x1F);
        match packet_type {
            PT_SR | PT_RR => {
                let fixed = if packet_type == PT_SR {
                    HEADER_AND_SSRC_LEN + SENDER_INFO_LEN
                } else {
                    HEADER_AND_SSRC_LEN
                };
                let need = fixed + count * REPORT_BLOCK_LEN;
                if body.len() < need {
                    return Err(RtcpError::TooShortForReports {
                        packet_type,
                        count,
                        need,
                        len: body.len(),
                    });
                }
                if packet_type == PT_SR && summary.sender_report.is_none() {
                    summary.sender_report = read_sender_report(body);
                }
                let blocks = body[fixed..need].chunks_exact(REPORT_BLOCK_LEN);
                summary
                    .report_blocks
                    .extend(blocks.filter_map(ReportBlock::read));
            }
            PT_BYE => summary.bye = true,
            _ => {}
        }
        offset += len;
    }
    Ok(summary)
}

/// The SSRC and sender info of an SR whose length has been checked.
fn read_sender_report(body: &[u8]) -> Option<ReceivedSenderReport> {
    let ntp = (u64::from(be32(body, 8)?) << 32) | u64::from(be32(body, 12)?);
    Some(ReceivedSenderReport {
        ssrc: be32(body, 4)?,
        info: SenderInfo {
            ntp: NtpTimestamp(ntp),
            rtp_timestamp: be32(body, 16)?,
            packet_count: be32(body, 20)?,
            octet_count: be32(body, 24)?,
        },
    })
}

/// The time until the next report (§6.2, §6.3.1 simplified for two members): the 5 s
/// minimum, halved for the first report, times a factor uniform in [0.5, 1.5] taken from
/// `random` in [0, 1] (anything else counts as 0.5). Without timer reconsideration there
/// is no division by e − 3/2.
pub fn report_interval(random: f64, initial: bool) -> Duration {
    let random = if random.is_finite() {
        random.clamp(0.0, 1.0)
    } else {
        0.5
    };
    let nominal = if initial {
        MIN_REPORT_INTERVAL / 2
    } else {
        MIN_REPORT_INTERVAL
    };
    nominal.mul_f64(0.5 + random)
}

/// RTCP for one leg: statistics of the stream from the phone and the stream to it, and the
/// schedule of compound reports. Told the time; sends nothing itself.
#[derive(Debug, Clone)]
pub struct RtcpReporter {
    ssrc: u32,
    cname: String,
    receiver: ReceiverStats,
    sender: SenderStats,
    rng: u64,
    /// `None` once BYE has been sent.
    next_report: Option<Instant>,
    last_report: Option<Instant>,
    report_before_last: Option<Instant>,
}

impl RtcpReporter {
    /// A reporter for the stream we send with `ssrc` (the leg's [`super::rtp::RtpSender`]
    /// SSRC), whose first report is due about 2.5 s after `now`. `seed` drives the interval
    /// randomisation.
    pub fn new(now: Instant, ssrc: u32, cname: String, clock_rate: u32, seed: u64) -> Self {
        let mut reporter = RtcpReporter {
            ssrc,
            cname,
            receiver: ReceiverStats::new(clock_rate),
            sender: SenderStats::new(clock_rate),
            rng: seed,
            next_report: None,
            last_report: None,
            report_before_last: None,
        };
        reporter.next_report = Some(now + reporter.next_interval(true));
        reporter
    }

    fn next_interval(&mut self, initial: bool) -> Duration {
        let random = (splitmix64(&mut self.rng) >> 11) as f64 / (1u64 << 53) as f64;
        report_interval(random, initial)
    }

    /// An accepted RTP packet from the phone; whether it was counted (see
    /// [`ReceiverStats::on_packet`]).
    pub fn on_rtp_received(&mut self, arrival: Instant, header: &RtpHeader) -> bool {
        self.receiver
            .on_packet(arrival, header.sequence, header.timestamp, header.ssrc)
    }

    /// An RTP packet we sent to the phone, with its timestamp and payload length.
    pub fn on_rtp_sent(&mut self, now: Instant, rtp_timestamp: u32, payload_len: usize) {
        self.sender.on_packet_sent(now, rtp_timestamp, payload_len);
    }

    /// RTCP from the phone: validated, its SR remembered for LSR/DLSR.
    pub fn on_rtcp_received(
        &mut self,
        arrival: Instant,
        bytes: &[u8],
    ) -> Result<RtcpSummary, RtcpError> {
        let summary = parse_compound(bytes)?;
        if let Some(sr) = summary.sender_report {
            self.receiver
                .on_sender_report(arrival, sr.ssrc, sr.info.ntp);
        }
        Ok(summary)
    }

    /// When the next report is due; `None` after BYE.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_report
    }

    /// The compound report due at `now` (`wallclock` being the same moment), if any, and
    /// the next one scheduled.
    pub fn poll_transmit(&mut self, now: Instant, wallclock: SystemTime) -> Option<Vec<u8>> {
        if now < self.next_report? {
            return None;
        }
        let packet = self.build_report(now, wallclock);
        self.next_report = Some(now + self.next_interval(false));
        Some(packet)
    }

    /// The final compound report ending in BYE (§6.6), sent at hang-up; `None` if already
    /// sent, or if we never sent RTP or RTCP on this leg (§6.3.7: then no BYE at all).
    /// Stops the schedule.
    pub fn bye(
        &mut self,
        now: Instant,
        wallclock: SystemTime,
        reason: Option<&str>,
    ) -> Option<Vec<u8>> {
        self.next_report?;
        let ever_sent = self.last_report.is_some() || self.sender.last_sent_at().is_some();
        self.next_report = None;
        if !ever_sent {
            return None;
        }
        let mut packet = self.build_report(now, wallclock);
        write_bye(&mut packet, self.ssrc, reason);
        Some(packet)
    }

    fn build_report(&mut self, now: Instant, wallclock: SystemTime) -> Vec<u8> {
        // §6.4: an SR if we sent data since the report before last, else an RR.
        let we_sent = match (self.sender.last_sent_at(), self.report_before_last) {
            (Some(sent), Some(before_last)) => sent >= before_last,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let info = we_sent
            .then(|| self.sender.sender_info(now, wallclock))
            .flatten();
        let block = self.receiver.report_block(now);
        self.report_before_last = self.last_report;
        self.last_report = Some(now);
        compound_report(self.ssrc, info.as_ref(), block.as_ref(), &self.cname)
    }

    pub fn receiver_stats(&self) -> &ReceiverStats {
        &self.receiver
    }

    pub fn sender_stats(&self) -> &SenderStats {
        &self.sender
    }
}

#[cfg(test)]
mod tests;
