//! `MediaBridge`: a bridged call's media as a pure machine, told the time. It owns the
//! [`RtpRelay`] joining the two legs, one [`RtcpReporter`] per leg and the inactivity check;
//! the runtime feeds it datagrams and drains what to send with
//! [`poll_transmit`](MediaBridge::poll_transmit), the wake-up with
//! [`poll_timeout`](MediaBridge::poll_timeout) and what to report with
//! [`poll_event`](MediaBridge::poll_event) (the shape of the SIP core and the call session).
//!
//! **RTCP is generated, not passed through.** The relay rewrites every packet into the
//! receiving phone's stream (our SSRC, sequence numbers and timestamps, see
//! [`crate::media::relay`]), so the phones' own reports would describe streams the other
//! phone never saw (RFC 3550 §7.1). Instead each leg gets its own reporter (RFC 3550 §6): a
//! sender report about the stream we send to that phone, with a report block about the
//! stream we receive from it (loss, jitter, LSR/DLSR from its sender reports), SDES CNAME,
//! every 5 s on average, and a BYE when the call ends ([`MediaBridge::end`]). Phones' RTCP is
//! checked against the leg's latched source, counts as activity and feeds LSR/DLSR.
//!
//! A packet handed out by `poll_transmit` is counted as sent in the leg's sender statistics;
//! the runtime never waits for a full socket buffer (late audio is useless), so a dropped
//! send makes the octet count in our SR slightly high, never the call late.

use super::relay::{LegId, RtpRelay};
use super::rtcp::{cname_from_seed, RtcpReporter};
use super::rtp;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

/// Which of a leg's two ports a datagram is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    Rtp,
    Rtcp,
}

/// A datagram to send out of one leg's socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub leg: LegId,
    pub port: Port,
    pub to: SocketAddr,
    pub bytes: Vec<u8>,
}

/// What the call should know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeEvent {
    /// The leg sent nothing (RTP or RTCP) for the inactivity timeout.
    Inactive(LegId),
}

/// How often the legs' activity is checked.
const CHECK_EVERY: Duration = Duration::from_secs(1);

pub struct MediaBridge {
    relay: RtpRelay,
    rtcp: [RtcpReporter; 2],
    inactivity: Duration,
    next_check: Instant,
    out: VecDeque<Transmit>,
    events: VecDeque<BridgeEvent>,
    ended: bool,
}

fn index(leg: LegId) -> usize {
    match leg {
        LegId::Caller => 0,
        LegId::Callee => 1,
    }
}

impl MediaBridge {
    /// Bridge the relay's legs. `seed` makes the call's CNAME (random per call, RFC 7022:
    /// no host or user name leaks) and the reporters' timing; `inactivity` is how long a leg
    /// may stay silent before [`BridgeEvent::Inactive`].
    pub fn new(now: Instant, relay: RtpRelay, seed: u64, inactivity: Duration) -> MediaBridge {
        // One CNAME for all of scamscreen's streams in this call (RFC 3550 §6.5.1).
        let cname = cname_from_seed(seed);
        let reporter = |id: LegId, n: u64| {
            RtcpReporter::new(
                now,
                relay.leg(id).sender().ssrc(),
                cname.clone(),
                crate::media::g711::CLOCK_RATE,
                seed.rotate_left(17) ^ n,
            )
        };
        let rtcp = [reporter(LegId::Caller, 1), reporter(LegId::Callee, 2)];
        MediaBridge {
            relay,
            rtcp,
            inactivity,
            next_check: now + CHECK_EVERY,
            out: VecDeque::new(),
            events: VecDeque::new(),
            ended: false,
        }
    }

    pub fn relay(&self) -> &RtpRelay {
        &self.relay
    }

    pub fn reporter(&self, leg: LegId) -> &RtcpReporter {
        &self.rtcp[index(leg)]
    }

    /// An RTP datagram arrived on leg `from`'s RTP port from `src`.
    pub fn on_rtp(&mut self, now: Instant, from: LegId, src: SocketAddr, bytes: &[u8]) {
        if self.ended {
            return;
        }
        let (accepted, out) = self.relay.relay_observed(now, from, src, bytes);
        if let Some(h) = accepted {
            self.rtcp[index(from)].on_rtp_received(now, &h);
        }
        if let Some((to, packet)) = out {
            let other = from.other();
            if let Ok((h, payload)) = rtp::parse(&packet) {
                self.rtcp[index(other)].on_rtp_sent(now, h.timestamp, payload.len());
            }
            self.out.push_back(Transmit {
                leg: other,
                port: Port::Rtp,
                to,
                bytes: packet,
            });
        }
    }

    /// A datagram arrived on leg `from`'s RTCP port: accepted only from the leg's latched
    /// address.
    pub fn on_rtcp(&mut self, now: Instant, from: LegId, src: SocketAddr, bytes: &[u8]) {
        if self.relay.relay_rtcp(now, from, src, bytes) {
            let _ = self.rtcp[index(from)].on_rtcp_received(now, bytes);
        }
    }

    /// The earliest time [`handle_timeout`](Self::handle_timeout) has work: the next RTCP
    /// report or activity check.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.ended {
            return None;
        }
        self.rtcp
            .iter()
            .filter_map(RtcpReporter::poll_timeout)
            .chain([self.next_check])
            .min()
    }

    /// Reports that are due; the activity check. `wall` is the NTP time in sender reports.
    pub fn handle_timeout(&mut self, now: Instant, wall: SystemTime) {
        if self.ended {
            return;
        }
        for leg in [LegId::Caller, LegId::Callee] {
            if let Some(report) = self.rtcp[index(leg)].poll_transmit(now, wall) {
                self.push_rtcp(leg, report);
            }
        }
        if now >= self.next_check {
            self.next_check = now + CHECK_EVERY;
            if let Some(leg) = self.relay.inactive_leg(now, self.inactivity) {
                self.events.push_back(BridgeEvent::Inactive(leg));
                // Said once per timeout: the call decides what to do.
                self.next_check = now + self.inactivity;
            }
        }
    }

    /// The call ends: an RTCP BYE to each phone we sent to (RFC 3550 §6.6); nothing more
    /// after that.
    pub fn end(&mut self, now: Instant, wall: SystemTime) {
        if self.ended {
            return;
        }
        for leg in [LegId::Caller, LegId::Callee] {
            if let Some(bye) = self.rtcp[index(leg)].bye(now, wall, Some("call ended")) {
                self.push_rtcp(leg, bye);
            }
        }
        self.ended = true;
    }

    fn push_rtcp(&mut self, leg: LegId, bytes: Vec<u8>) {
        if let Some(to) = self.relay.leg(leg).rtcp_target() {
            self.out.push_back(Transmit {
                leg,
                port: Port::Rtcp,
                to,
                bytes,
            });
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<BridgeEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::relay::MediaLeg;
    use crate::media::rtcp::parse_compound;
    use crate::media::rtp::RtpSender;
    use crate::media::sdp::{accept_answer, SessionDescription};

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn leg(now: Instant, port: u16, seed: u64) -> MediaLeg {
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
        );
        let n = accept_answer(&SessionDescription::parse(&sdp).unwrap()).unwrap();
        MediaLeg::new(now, n, RtpSender::from_seed(seed))
    }

    fn packet(seq: u16, ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        p.extend(ssrc.to_be_bytes());
        p.extend([0xffu8; 160]);
        p
    }

    fn bridge(t0: Instant) -> MediaBridge {
        let relay = RtpRelay::new(leg(t0, 4000, 1), leg(t0, 6000, 2));
        MediaBridge::new(t0, relay, 42, Duration::from_secs(60))
    }

    /// Run the bridge's timers up to `until`, collecting what it sends.
    fn run(b: &mut MediaBridge, until: Instant) -> Vec<Transmit> {
        let mut out = Vec::new();
        while let Some(t) = b.poll_timeout().filter(|t| *t <= until) {
            b.handle_timeout(t, SystemTime::now());
            out.extend(std::iter::from_fn(|| b.poll_transmit()));
        }
        out
    }

    #[test]
    fn relays_both_ways_and_reports_on_each_leg() {
        let t0 = Instant::now();
        let mut b = bridge(t0);
        let (caller, callee) = (addr("192.0.2.1:4000"), addr("192.0.2.1:6000"));
        let mut sent = Vec::new();
        for i in 0..400u16 {
            let now = t0 + Duration::from_millis(20 * u64::from(i));
            sent.extend(run(&mut b, now));
            b.on_rtp(now, LegId::Caller, caller, &packet(i, 0xaaaa));
            b.on_rtp(now, LegId::Callee, callee, &packet(i, 0xbbbb));
            sent.extend(std::iter::from_fn(|| b.poll_transmit()));
        }
        let rtp = |leg| {
            sent.iter()
                .filter(|t| t.port == Port::Rtp && t.leg == leg)
                .count()
        };
        assert_eq!((rtp(LegId::Callee), rtp(LegId::Caller)), (400, 400));
        // Each leg got at least one sender report, from our stream's SSRC, to RTP port + 1.
        for (leg, to) in [(LegId::Caller, 4001), (LegId::Callee, 6001)] {
            let reports: Vec<_> = sent
                .iter()
                .filter(|t| t.port == Port::Rtcp && t.leg == leg)
                .collect();
            assert!(!reports.is_empty(), "{leg:?}");
            assert!(reports.iter().all(|t| t.to.port() == to));
            assert!(parse_compound(&reports[0].bytes).is_ok());
        }
        // The end: a BYE to each phone, then nothing.
        let end = t0 + Duration::from_secs(9);
        b.end(end, SystemTime::now());
        let byes: Vec<_> = std::iter::from_fn(|| b.poll_transmit()).collect();
        assert_eq!(byes.len(), 2);
        for t in &byes {
            assert!(parse_compound(&t.bytes).unwrap().bye);
        }
        b.on_rtp(end, LegId::Caller, caller, &packet(500, 0xaaaa));
        assert!(b.poll_transmit().is_none());
        assert!(b.poll_timeout().is_none());
    }

    #[test]
    fn a_silent_leg_is_reported_once_per_timeout_and_strangers_do_not_count() {
        let t0 = Instant::now();
        let mut b = bridge(t0);
        let caller = addr("192.0.2.1:4000");
        b.on_rtp(t0, LegId::Caller, caller, &packet(1, 0xaaaa));
        b.on_rtp(
            t0,
            LegId::Callee,
            addr("192.0.2.1:6000"),
            &packet(1, 0xbbbb),
        );
        // The caller keeps talking; a stranger sprays the callee's port and RTCP port.
        for s in 1..=70u64 {
            let now = t0 + Duration::from_secs(s);
            run(&mut b, now);
            b.on_rtp(now, LegId::Caller, caller, &packet(s as u16 + 1, 0xaaaa));
            b.on_rtp(now, LegId::Callee, addr("198.51.100.9:6000"), &packet(9, 9));
            b.on_rtcp(
                now,
                LegId::Callee,
                addr("198.51.100.9:6001"),
                &[0x80, 201, 0, 1, 0, 0, 0, 9],
            );
        }
        let events: Vec<_> = std::iter::from_fn(|| b.poll_event()).collect();
        assert_eq!(events, vec![BridgeEvent::Inactive(LegId::Callee)]);
        // 70 RTP and 70 RTCP packets from the stranger: all dropped, none counted as activity.
        assert_eq!(
            b.relay().leg(LegId::Callee).stats().dropped_wrong_source,
            140
        );
    }
}
