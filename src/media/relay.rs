//! Anchored media: one [`MediaLeg`] per phone, and the [`RtpRelay`] that joins two legs.
//!
//! **Symmetric RTP with latching.** Phones behind NAT send from an address their SDP does
//! not name, and expect media back where they send from (symmetric RTP, RFC 4961). So the
//! SDP address is only the initial send target: the source of the first valid RTP packet
//! (right version, a negotiated payload type) is latched, and from then on media goes there
//! and packets from any other source are dropped and counted (`dropped_wrong_source`). That
//! is "RTP bleed" protection: a stranger spraying the port range cannot inject audio into
//! or steal audio from a call. One exception: a packet from exactly the SDP address takes
//! the latch over, so a stranger who won the race to the first packet loses it as soon as
//! an un-NATed phone speaks (spoofing that address gains nothing spoofing the latched one
//! would not). The latch is reset when a re-INVITE moves the phone to a new SDP address
//! ([`MediaLeg::renegotiate`]).
//!
//! **Who may latch** (the learning window, as rtpengine's strict source): before the first
//! packet, only packets from the SDP connection address's IP latch (the port may differ:
//! NAT). When that address is private or unroutable (a phone behind NAT writes its LAN
//! address) and the signalling came from a routable address, the signalling source's IP
//! takes its place ([`MediaLeg::with_signalling_source`]). Until a packet latches, media goes
//! to the SDP address only when that is where media is expected (a routable address, or
//! everything on one private network); a NATed phone gets nothing until it has sent, so a
//! stranger never receives a greeting. Trade-off: a phone whose media leaves from another
//! IP than both its SDP and its signalling (a media gateway beside an SBC that writes its
//! own address, unusual) is not heard; a stranger behind the caller's own NAT address can
//! still win the race (it is the caller's network).
//!
//! **One continuous stream per phone.** Each leg owns the [`RtpSender`] for what scamscreen
//! sends to that phone; prompts ([`MediaLeg::transmit_prompt`]) and relayed packets
//! ([`RtpRelay::relay`]) both go through it, so the phone sees one SSRC with continuous
//! sequence numbers and timestamps however often the source changes.
//!
//! **Transcoding.** When the legs negotiated different G.711 laws the payload is re-encoded
//! (PCMU ↔ PCMA); telephone events (RFC 4733) keep their payload and get the other leg's
//! telephone-event payload type, or are dropped (counted) if that leg has none.
//!
//! **RTCP is terminated, not relayed.** Because every relayed packet gets our SSRC,
//! sequence numbers and timestamps, the other phone's sender and receiver reports would
//! describe a stream the receiving phone never saw (RFC 3550 §7.1 lets a translator that
//! changes the stream forward RTCP only after rewriting it). RTCP from a leg is checked
//! (latched like RTP, from the same address as RTP once that is latched), counted and
//! counts as activity (a phone on hold that only sends RTCP stays alive), then dropped.
//!
//! The caller's audio goes to ASR through the leg's optional [`RecorderTap`]: every
//! accepted audio packet is decoded and pushed, whether or not it is relayed.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::prompt::PromptPlayer;
use super::rtp::{is_rtcp, parse, RtpError, RtpHeader, RtpSender, TelephoneEvent};
use super::sdp::Negotiated;
use super::tap::{AudioFrame, RecorderTap};

/// Which side of a screened call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LegId {
    /// The withheld caller (scamscreen answered them).
    Caller,
    /// The callee (scamscreen called them).
    Callee,
}

impl LegId {
    pub fn other(self) -> LegId {
        match self {
            LegId::Caller => LegId::Callee,
            LegId::Callee => LegId::Caller,
        }
    }
}

/// What an accepted packet carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadKind {
    /// The leg's negotiated G.711 codec.
    Audio,
    /// An RFC 4733 telephone event.
    TelephoneEvent,
}

/// An accepted RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received<'a> {
    pub header: RtpHeader,
    pub payload: &'a [u8],
    pub kind: PayloadKind,
}

/// Why a packet was not accepted or not relayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropReason {
    /// From an address other than the latched one (RTP bleed protection).
    WrongSource,
    /// Not a valid RTP packet.
    Malformed(RtpError),
    /// A payload type this leg did not negotiate.
    UnexpectedPayloadType(u8),
    /// RTCP: counted, never relayed.
    Rtcp,
}

/// The verdict on an incoming packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacketVerdict<'a> {
    Accept(Received<'a>),
    Drop(DropReason),
}

/// Counters of one leg.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LegStats {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    pub rtcp_in: u64,
    pub dropped_wrong_source: u64,
    pub dropped_malformed: u64,
    pub dropped_payload_type: u64,
    /// Packets for this leg that could not be sent: no address (hold) or not sending.
    pub dropped_no_target: u64,
    /// Telephone events for this leg, which negotiated none.
    pub dropped_telephone_event: u64,
}

/// One phone's media as scamscreen sees it.
#[derive(Debug)]
pub struct MediaLeg {
    negotiated: Negotiated,
    /// The last address the phone's SDP named (kept through hold).
    sdp_address: Option<SocketAddr>,
    latched: Option<SocketAddr>,
    latched_rtcp: Option<SocketAddr>,
    /// Where the phone's signalling came from (the INVITE's source, or the PBX).
    signalling: Option<std::net::IpAddr>,
    sender: RtpSender,
    tap: Option<RecorderTap>,
    created: Instant,
    last_activity: Option<Instant>,
    stats: LegStats,
}

impl MediaLeg {
    /// A leg with what its SDP negotiated and the sender for our stream to it.
    pub fn new(now: Instant, negotiated: Negotiated, sender: RtpSender) -> Self {
        MediaLeg {
            sdp_address: negotiated.remote,
            negotiated,
            latched: None,
            latched_rtcp: None,
            signalling: None,
            sender,
            tap: None,
            created: now,
            last_activity: None,
            stats: LegStats::default(),
        }
    }

    /// The IP the phone's signalling came from: it may latch instead of a private SDP
    /// address (see the module documentation).
    pub fn with_signalling_source(mut self, ip: std::net::IpAddr) -> Self {
        self.signalling = Some(ip);
        self
    }

    /// The IP whose packets may take the first latch, and whether media may be sent to
    /// the SDP address before anything is latched.
    fn learning(&self) -> (Option<std::net::IpAddr>, bool) {
        let sdp = self
            .sdp_address
            .map(|a| a.ip())
            .filter(|ip| !ip.is_unspecified());
        let sig = self.signalling;
        match (sdp, sig) {
            (Some(s), Some(g)) if unroutable(s) && !unroutable(g) => (Some(g), false),
            (Some(s), _) => (Some(s), true),
            (None, g) => (g, false),
        }
    }

    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    /// New SDP from a re-INVITE. The latch is kept unless the phone moved to a different
    /// address (putting a call on hold with `c=0.0.0.0` and taking it back keeps it).
    pub fn renegotiate(&mut self, negotiated: Negotiated) {
        if negotiated.remote.is_some() && negotiated.remote != self.sdp_address {
            self.latched = None;
            self.latched_rtcp = None;
            self.sdp_address = negotiated.remote;
        }
        self.negotiated = negotiated;
    }

    /// Attach (or detach) the recorder tap; returns the previous one.
    pub fn set_tap(&mut self, tap: Option<RecorderTap>) -> Option<RecorderTap> {
        std::mem::replace(&mut self.tap, tap)
    }

    pub fn tap(&self) -> Option<&RecorderTap> {
        self.tap.as_ref()
    }

    pub fn sender(&self) -> &RtpSender {
        &self.sender
    }

    pub fn stats(&self) -> &LegStats {
        &self.stats
    }

    /// The latched RTP source, once a packet has arrived.
    pub fn latched(&self) -> Option<SocketAddr> {
        self.latched
    }

    /// Where media for this phone goes: the latched source, else the SDP address. `None`
    /// when the phone is on hold (`c=0.0.0.0`, RFC 3264 §8.4) or our direction on this leg
    /// does not send.
    pub fn send_target(&self) -> Option<SocketAddr> {
        if !self.negotiated.direction.sends() {
            return None;
        }
        self.negotiated.remote?;
        match self.latched {
            Some(l) => Some(l),
            None => self
                .learning()
                .1
                .then_some(self.negotiated.remote)
                .flatten(),
        }
    }

    /// Where RTCP for this phone would go (latched RTCP source, else `a=rtcp` / port + 1).
    pub fn rtcp_target(&self) -> Option<SocketAddr> {
        self.negotiated.remote_rtcp?;
        self.latched_rtcp.or(self.negotiated.remote_rtcp)
    }

    /// The last accepted RTP or RTCP packet.
    pub fn last_activity(&self) -> Option<Instant> {
        self.last_activity
    }

    /// Nothing accepted for `timeout` (counted from creation if nothing ever came). Never
    /// true while the phone is not supposed to send (we are sendonly or inactive).
    pub fn is_inactive(&self, now: Instant, timeout: Duration) -> bool {
        if !self.negotiated.direction.receives() {
            return false;
        }
        let since = self.last_activity.unwrap_or(self.created);
        now.saturating_duration_since(since) >= timeout
    }

    /// A datagram arrived on this leg's RTP port from `src`.
    pub fn on_packet<'a>(
        &mut self,
        now: Instant,
        src: SocketAddr,
        bytes: &'a [u8],
    ) -> PacketVerdict<'a> {
        if is_rtcp(bytes) {
            // RTCP multiplexed on the RTP port (RFC 5761), though we never offer it.
            self.accept_rtcp(now, src);
            return PacketVerdict::Drop(DropReason::Rtcp);
        }
        let (header, payload) = match parse(bytes) {
            Ok(p) => p,
            Err(e) => {
                self.stats.dropped_malformed += 1;
                return PacketVerdict::Drop(DropReason::Malformed(e));
            }
        };
        // The exact address the SDP names may take the latch over: a stranger who won the
        // race to the first packet loses it as soon as the (un-NATed) phone itself sends.
        let from_sdp_address = Some(src) == self.sdp_address;
        let may_learn = self.learning().0.is_none_or(|ip| same_ip(ip, src.ip()));
        let wrong = match self.latched {
            Some(l) => l != src,
            None => !may_learn,
        };
        if wrong && !from_sdp_address {
            self.stats.dropped_wrong_source += 1;
            return PacketVerdict::Drop(DropReason::WrongSource);
        }
        let kind = if header.payload_type == self.negotiated.payload_type {
            PayloadKind::Audio
        } else if Some(header.payload_type) == self.negotiated.telephone_event {
            PayloadKind::TelephoneEvent
        } else {
            self.stats.dropped_payload_type += 1;
            return PacketVerdict::Drop(DropReason::UnexpectedPayloadType(header.payload_type));
        };
        self.latched = Some(src);
        self.last_activity = Some(now);
        self.stats.packets_in += 1;
        self.stats.bytes_in += bytes.len() as u64;
        if kind == PayloadKind::Audio {
            if let Some(tap) = &mut self.tap {
                tap.push(AudioFrame {
                    samples: self.negotiated.codec.decode(payload),
                    rtp_timestamp: header.timestamp,
                    received: now,
                });
            }
        }
        PacketVerdict::Accept(Received {
            header,
            payload,
            kind,
        })
    }

    /// A datagram arrived on this leg's RTCP port. RTCP is never relayed (see the module
    /// documentation); this checks, counts and notes activity.
    pub fn on_rtcp(&mut self, now: Instant, src: SocketAddr, bytes: &[u8]) -> DropReason {
        // The smallest RTCP compound packet is an empty receiver report (8 bytes).
        if !is_rtcp(bytes) || bytes.len() < 8 {
            self.stats.dropped_malformed += 1;
            return DropReason::Malformed(RtpError::TooShort {
                len: bytes.len(),
                need: 8,
            });
        }
        if !self.accept_rtcp(now, src) {
            return DropReason::WrongSource;
        }
        DropReason::Rtcp
    }

    fn accept_rtcp(&mut self, now: Instant, src: SocketAddr) -> bool {
        let ip_ok = match self.latched {
            Some(l) => l.ip() == src.ip(),
            None => self.learning().0.is_none_or(|ip| same_ip(ip, src.ip())),
        };
        let src_ok = self.latched_rtcp.is_none_or(|l| l == src);
        if !(ip_ok && src_ok) {
            self.stats.dropped_wrong_source += 1;
            return false;
        }
        self.latched_rtcp.get_or_insert(src);
        self.stats.rtcp_in += 1;
        self.last_activity = Some(now);
        true
    }

    /// A player for `pcm` (8 kHz mono) in this leg's codec and payload type.
    pub fn prompt_player(&self, pcm: Arc<[i16]>, start: Instant) -> PromptPlayer {
        PromptPlayer::new(
            pcm,
            self.negotiated.codec,
            self.negotiated.payload_type,
            start,
        )
    }

    /// Send every prompt packet due at `now` to this phone. Packets due while the phone
    /// has no target (hold) are consumed and counted, so the prompt keeps its timing.
    pub fn transmit_prompt(
        &mut self,
        now: Instant,
        player: &mut PromptPlayer,
    ) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(packet) = player.poll_transmit(now, &mut self.sender) {
            match self.send_target() {
                Some(to) => {
                    self.note_sent(packet.len());
                    out.push((to, packet));
                }
                None => self.stats.dropped_no_target += 1,
            }
        }
        out
    }

    fn note_sent(&mut self, len: usize) {
        self.stats.packets_out += 1;
        self.stats.bytes_out += len as u64;
    }

    /// Send a packet accepted on the other leg (negotiated `from`) to this phone.
    fn forward(
        &mut self,
        now: Instant,
        packet: &Received<'_>,
        from: &Negotiated,
    ) -> Option<(SocketAddr, Vec<u8>)> {
        let Some(to) = self.send_target() else {
            self.stats.dropped_no_target += 1;
            return None;
        };
        let (payload_type, payload, samples) = match packet.kind {
            PayloadKind::Audio => {
                let payload = if from.codec == self.negotiated.codec {
                    Cow::Borrowed(packet.payload)
                } else {
                    Cow::Owned(from.codec.transcode(self.negotiated.codec, packet.payload))
                };
                let samples = packet.payload.len() as u32;
                (self.negotiated.payload_type, payload, samples)
            }
            PayloadKind::TelephoneEvent => {
                let Some(pt) = self.negotiated.telephone_event else {
                    self.stats.dropped_telephone_event += 1;
                    return None;
                };
                let samples =
                    TelephoneEvent::parse(packet.payload).map_or(0, |e| u32::from(e.duration));
                (pt, Cow::Borrowed(packet.payload), samples)
            }
        };
        let header = RtpHeader {
            payload_type,
            ..packet.header
        };
        let bytes = self.sender.forward(now, &header, &payload, samples);
        self.note_sent(bytes.len());
        Some((to, bytes))
    }
}

/// Two legs joined: what one phone sends, the other hears.
#[derive(Debug)]
pub struct RtpRelay {
    caller: MediaLeg,
    callee: MediaLeg,
    /// Per source leg: relay its packets (true) or only accept them (false).
    forward_from_caller: bool,
    forward_from_callee: bool,
}

impl RtpRelay {
    /// Join two legs; both directions relay.
    pub fn new(caller: MediaLeg, callee: MediaLeg) -> Self {
        RtpRelay {
            caller,
            callee,
            forward_from_caller: true,
            forward_from_callee: true,
        }
    }

    pub fn leg(&self, id: LegId) -> &MediaLeg {
        match id {
            LegId::Caller => &self.caller,
            LegId::Callee => &self.callee,
        }
    }

    pub fn leg_mut(&mut self, id: LegId) -> &mut MediaLeg {
        match id {
            LegId::Caller => &mut self.caller,
            LegId::Callee => &mut self.callee,
        }
    }

    /// Take the legs apart again (caller, callee).
    pub fn into_legs(self) -> (MediaLeg, MediaLeg) {
        (self.caller, self.callee)
    }

    /// Relay packets from `from` (true) or only accept and tap them (false), e.g. while
    /// the callee hears the warning prompt.
    pub fn set_forwarding(&mut self, from: LegId, on: bool) {
        match from {
            LegId::Caller => self.forward_from_caller = on,
            LegId::Callee => self.forward_from_callee = on,
        }
    }

    /// An RTP datagram arrived on leg `from`'s port: the packet to send to the other
    /// phone, rewritten into that phone's stream (and transcoded if needed), if any.
    pub fn relay(
        &mut self,
        now: Instant,
        from: LegId,
        src: SocketAddr,
        bytes: &[u8],
    ) -> Option<(SocketAddr, Vec<u8>)> {
        self.relay_observed(now, from, src, bytes).1
    }

    /// [`RtpRelay::relay`], also giving the header of the packet if leg `from` accepted
    /// it (what the RTCP receiver statistics of that leg count).
    pub fn relay_observed(
        &mut self,
        now: Instant,
        from: LegId,
        src: SocketAddr,
        bytes: &[u8],
    ) -> (Option<RtpHeader>, Option<(SocketAddr, Vec<u8>)>) {
        let (inbound, outbound, forwarding) = match from {
            LegId::Caller => (&mut self.caller, &mut self.callee, self.forward_from_caller),
            LegId::Callee => (&mut self.callee, &mut self.caller, self.forward_from_callee),
        };
        let PacketVerdict::Accept(packet) = inbound.on_packet(now, src, bytes) else {
            return (None, None);
        };
        let header = Some(packet.header);
        if !forwarding {
            return (header, None);
        }
        (header, outbound.forward(now, &packet, &inbound.negotiated))
    }

    /// An RTCP datagram arrived on leg `from`'s RTCP port: counted, never relayed. True
    /// when it was accepted (right source, plausible RTCP): then our own RTCP for that leg
    /// may read it (the peer's sender report, for LSR/DLSR).
    pub fn relay_rtcp(&mut self, now: Instant, from: LegId, src: SocketAddr, bytes: &[u8]) -> bool {
        self.leg_mut(from).on_rtcp(now, src, bytes) == DropReason::Rtcp
    }

    /// A leg that has been silent for `timeout` (the caller's first).
    pub fn inactive_leg(&self, now: Instant, timeout: Duration) -> Option<LegId> {
        [LegId::Caller, LegId::Callee]
            .into_iter()
            .find(|&id| self.leg(id).is_inactive(now, timeout))
    }
}

#[cfg(test)]
mod tests;

/// Addresses a phone behind NAT writes into its SDP: private (RFC 1918, RFC 6598 shared,
/// RFC 4193 unique local), link-local, unspecified. Loopback is not among them (everything
/// on one host is one network).
pub fn unroutable(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || (o[0] == 100 && (o[1] & 0xC0) == 64)
        }
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => unroutable(std::net::IpAddr::V4(v4)),
            None => {
                let s = v6.segments();
                v6.is_unspecified() || (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfe80
            }
        },
    }
}

/// The same IP, an IPv4-mapped IPv6 address counting as its IPv4 address.
fn same_ip(a: std::net::IpAddr, b: std::net::IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}
