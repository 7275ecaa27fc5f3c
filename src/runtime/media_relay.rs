//! A bridged call's media on its own task: RTP relayed between the two legs' sockets, RTCP
//! generated per leg, inactivity reported to the core.
//!
//! Once the legs are bridged the SIP core has nothing to do with media any more, so the
//! relay runs on any runtime worker: bridged media never waits for the core, and a busy
//! core (a burst of INVITEs, a slow disk) never delays a packet.
//!
//! **RTCP is generated, not passed through.** The relay rewrites every packet into the
//! receiving phone's stream (our SSRC, sequence numbers and timestamps, see
//! [`crate::media::relay`]), so the phones' own reports would describe streams the other
//! phone never saw. Instead each leg gets its own [`RtcpReporter`] (RFC 3550 §6): a sender
//! report about the stream we send to that phone, with a report block about the stream we
//! receive from it (loss, jitter, LSR/DLSR from its sender reports), SDES CNAME, every 5 s
//! on average, and a BYE when the call ends. Phones' RTCP arriving on our RTCP ports is
//! checked against the leg's latched source, counts as activity and feeds LSR/DLSR.

use crate::call::Leg;
use crate::media::relay::{LegId, RtpRelay};
use crate::media::rtcp::{cname_from_seed, RtcpReporter};
use crate::media::rtp;
use crate::runtime::calls::{CallEvent, RTP_INACTIVITY};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant as TokioInstant;
use tracing::{info, info_span};

/// One leg's bound ports: RTP and RTCP (RTP + 1, RFC 3550 §11).
#[derive(Clone)]
pub struct LegSockets {
    pub rtp: Arc<UdpSocket>,
    pub rtcp: Arc<UdpSocket>,
}

/// The handle the core keeps: dropping it ends the relay (RTCP BYE sent, counters logged).
pub struct RelayTask {
    stop: Option<oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<()>,
}

impl RelayTask {
    /// Start relaying call `call`'s two legs on the current runtime.
    pub fn spawn(
        relay: RtpRelay,
        caller: LegSockets,
        callee: LegSockets,
        call: u64,
        events: mpsc::Sender<CallEvent>,
    ) -> RelayTask {
        let (stop, stopped) = oneshot::channel();
        let handle = tokio::spawn(relay_media(relay, [caller, callee], call, events, stopped));
        RelayTask {
            stop: Some(stop),
            handle,
        }
    }
}

impl Drop for RelayTask {
    fn drop(&mut self) {
        // Ask it to say BYE, log its counters and end; abort in case it is not listening.
        match self.stop.take().map(|s| s.send(())) {
            Some(Ok(())) => {}
            _ => self.handle.abort(),
        }
    }
}

/// Per leg: its sockets and the RTCP it generates.
struct Side {
    id: LegId,
    sockets: LegSockets,
    rtcp: RtcpReporter,
}

fn sides(relay: &RtpRelay, sockets: [LegSockets; 2], call: u64) -> [Side; 2] {
    let now = std::time::Instant::now();
    // One CNAME for all of scamscreen's streams in this call (RFC 3550 §6.5.1), random per
    // call (RFC 7022): no host or user name leaks.
    let seed = call
        ^ SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    let cname = cname_from_seed(seed);
    let [a, b] = sockets;
    let side = |id: LegId, sockets: LegSockets, n: u64| Side {
        id,
        rtcp: RtcpReporter::new(
            now,
            relay.leg(id).sender().ssrc(),
            cname.clone(),
            crate::media::g711::CLOCK_RATE,
            seed.rotate_left(17) ^ n,
        ),
        sockets,
    };
    [side(LegId::Caller, a, 1), side(LegId::Callee, b, 2)]
}

/// Relays until stopped (the call ended) or a leg is silent for [`RTP_INACTIVITY`]
/// (reported as [`CallEvent::MediaTimeout`]; relaying goes on until the core ends the call).
/// Logs the legs' counters at the end (packets from strangers dropped: RTP bleed attempts).
async fn relay_media(
    mut relay: RtpRelay,
    sockets: [LegSockets; 2],
    call: u64,
    events: mpsc::Sender<CallEvent>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut legs = sides(&relay, sockets, call);
    // The sockets again, outside `legs` (which the handlers change).
    let (a, b) = (legs[0].sockets.clone(), legs[1].sockets.clone());
    let mut bufs = [[0u8; 2048]; 4];
    let [rtp_a, rtp_b, rtcp_a, rtcp_b] = &mut bufs;
    let mut check = tokio::time::interval(Duration::from_secs(1));
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // One timer for RTCP, moved only when the next report's time changes (a new timer per
    // packet would cost more than relaying the packet).
    let next_rtcp = |legs: &[Side; 2]| legs.iter().filter_map(|s| s.rtcp.poll_timeout()).min();
    let far = || TokioInstant::now() + Duration::from_secs(3_600);
    let mut rtcp_due = next_rtcp(&legs);
    let rtcp_timer = tokio::time::sleep_until(rtcp_due.map_or_else(far, TokioInstant::from_std));
    tokio::pin!(rtcp_timer);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            r = a.rtp.recv_from(rtp_a) => match r {
                Ok((n, src)) => {
                    relay_rtp(&mut relay, &mut legs, 0, src, &rtp_a[..n]);
                    drain_rtp(&mut relay, &mut legs, 0, &a.rtp, rtp_a);
                }
                // ICMP errors surface on the next receive; they say nothing about the call.
                Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
            },
            r = b.rtp.recv_from(rtp_b) => match r {
                Ok((n, src)) => {
                    relay_rtp(&mut relay, &mut legs, 1, src, &rtp_b[..n]);
                    drain_rtp(&mut relay, &mut legs, 1, &b.rtp, rtp_b);
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
            },
            r = a.rtcp.recv_from(rtcp_a) => match r {
                Ok((n, src)) => receive_rtcp(&mut relay, &mut legs[0], src, &rtcp_a[..n]),
                Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
            },
            r = b.rtcp.recv_from(rtcp_b) => match r {
                Ok((n, src)) => receive_rtcp(&mut relay, &mut legs[1], src, &rtcp_b[..n]),
                Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
            },
            _ = &mut rtcp_timer => {
                let (now, wall) = (std::time::Instant::now(), SystemTime::now());
                for side in &mut legs {
                    if let Some(report) = side.rtcp.poll_transmit(now, wall) {
                        send_rtcp(&relay, side, &report);
                    }
                }
            }
            _ = check.tick() => {
                if let Some(leg) = relay.inactive_leg(std::time::Instant::now(), RTP_INACTIVITY) {
                    let leg = if leg == LegId::Caller { Leg::A } else { Leg::B };
                    let _ = events.send(CallEvent::MediaTimeout { call, leg }).await;
                    check.reset_after(RTP_INACTIVITY);
                }
            }
        }
        let due = next_rtcp(&legs);
        if due != rtcp_due {
            rtcp_due = due;
            rtcp_timer
                .as_mut()
                .reset(due.map_or_else(far, TokioInstant::from_std));
        }
    }
    // RFC 3550 §6.6: say we are leaving, to each phone we sent to.
    let (now, wall) = (std::time::Instant::now(), SystemTime::now());
    for side in &mut legs {
        if let Some(bye) = side.rtcp.bye(now, wall, Some("call ended")) {
            send_rtcp(&relay, side, &bye);
        }
    }
    let (a, b) = (
        relay.leg(LegId::Caller).stats(),
        relay.leg(LegId::Callee).stats(),
    );
    info_span!("call", call).in_scope(|| {
        info!(
            caller_in = a.packets_in,
            caller_out = a.packets_out,
            callee_in = b.packets_in,
            callee_out = b.packets_out,
            rtcp_in = a.rtcp_in + b.rtcp_in,
            dropped_wrong_source = a.dropped_wrong_source + b.dropped_wrong_source,
            dropped_malformed = a.dropped_malformed + b.dropped_malformed,
            caller_jitter = legs[0].rtcp.receiver_stats().jitter(),
            callee_jitter = legs[1].rtcp.receiver_stats().jitter(),
            "media relay ended"
        )
    });
}

/// Packets already waiting on `sock` after the one that woke the task: relayed without
/// another trip through the scheduler (bounded, so the other leg is not starved).
fn drain_rtp(
    relay: &mut RtpRelay,
    legs: &mut [Side; 2],
    from: usize,
    sock: &UdpSocket,
    buf: &mut [u8],
) {
    for _ in 0..16 {
        match sock.try_recv_from(buf) {
            Ok((n, src)) => relay_rtp(relay, legs, from, src, &buf[..n]),
            Err(_) => return,
        }
    }
}

/// One RTP datagram from leg `from` (0 caller, 1 callee): relayed out of the other leg's
/// socket if accepted; both legs' RTCP statistics updated.
fn relay_rtp(
    relay: &mut RtpRelay,
    legs: &mut [Side; 2],
    from: usize,
    src: SocketAddr,
    bytes: &[u8],
) {
    let now = std::time::Instant::now();
    let (accepted, out) = relay.relay_observed(now, legs[from].id, src, bytes);
    if let Some(h) = accepted {
        legs[from].rtcp.on_rtp_received(now, &h);
    }
    if let Some((to, packet)) = out {
        let other = &mut legs[1 - from];
        // Never wait: a full socket buffer drops the packet (late audio is useless).
        if other.sockets.rtp.try_send_to(&packet, to).is_ok() {
            if let Ok((h, payload)) = rtp::parse(&packet) {
                other.rtcp.on_rtp_sent(now, h.timestamp, payload.len());
            }
        }
    }
}

/// A phone's RTCP on our RTCP port: accepted only from the leg's latched address.
fn receive_rtcp(relay: &mut RtpRelay, side: &mut Side, src: SocketAddr, bytes: &[u8]) {
    let now = std::time::Instant::now();
    if relay.relay_rtcp(now, side.id, src, bytes) {
        let _ = side.rtcp.on_rtcp_received(now, bytes);
    }
}

fn send_rtcp(relay: &RtpRelay, side: &Side, packet: &[u8]) {
    if let Some(to) = relay.leg(side.id).rtcp_target() {
        let _ = side.sockets.rtcp.try_send_to(packet, to);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::relay::MediaLeg;
    use crate::media::rtcp::{parse_compound, PT_BYE};
    use crate::media::rtp::RtpSender;
    use crate::media::sdp::{accept_answer, SessionDescription};

    /// A phone: RTP and RTCP sockets on loopback.
    struct Phone {
        rtp: UdpSocket,
        rtcp: UdpSocket,
    }

    async fn phone() -> Phone {
        // RTCP must be RTP + 1: find a free even pair.
        loop {
            let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let port = rtp.local_addr().unwrap().port();
            if port % 2 == 1 {
                continue;
            }
            if let Ok(rtcp) = UdpSocket::bind(("127.0.0.1", port + 1)).await {
                return Phone { rtp, rtcp };
            }
        }
    }

    async fn leg_sockets() -> LegSockets {
        let p = phone().await;
        LegSockets {
            rtp: Arc::new(p.rtp),
            rtcp: Arc::new(p.rtcp),
        }
    }

    fn leg_to(phone: &Phone, seed: u64) -> MediaLeg {
        let port = phone.rtp.local_addr().unwrap().port();
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
        );
        let n = accept_answer(&SessionDescription::parse(&sdp).unwrap()).unwrap();
        MediaLeg::new(std::time::Instant::now(), n, RtpSender::from_seed(seed))
    }

    fn rtp_packet(seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        p.extend([0xffu8; 160]);
        p
    }

    #[tokio::test]
    async fn relays_both_ways_reports_rtcp_and_says_bye() {
        let (caller, callee) = (phone().await, phone().await);
        let (ours_a, ours_b) = (leg_sockets().await, leg_sockets().await);
        let relay = RtpRelay::new(leg_to(&caller, 1), leg_to(&callee, 2));
        let ssrc_to_callee = relay.leg(LegId::Callee).sender().ssrc();
        let (events, _rx) = mpsc::channel(8);
        let a_port = ours_a.rtp.local_addr().unwrap();
        let b_port = ours_b.rtp.local_addr().unwrap();
        let task = RelayTask::spawn(relay, ours_a, ours_b, 7, events);

        // 3 s of speech each way, 20 ms packets.
        let mut buf = [0u8; 2048];
        let mut got_by_callee = 0;
        let mut got_by_caller = 0;
        let mut sr_ssrcs = Vec::new();
        let start = TokioInstant::now();
        let mut seq = 0u16;
        while start.elapsed() < Duration::from_millis(4_000) {
            seq += 1;
            caller.rtp.send_to(&rtp_packet(seq), a_port).await.unwrap();
            callee.rtp.send_to(&rtp_packet(seq), b_port).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            while let Ok((n, _)) = callee.rtp.try_recv_from(&mut buf) {
                let (h, payload) = rtp::parse(&buf[..n]).unwrap();
                assert_eq!((h.ssrc, payload.len()), (ssrc_to_callee, 160));
                got_by_callee += 1;
            }
            while caller.rtp.try_recv_from(&mut buf).is_ok() {
                got_by_caller += 1;
            }
            while let Ok((n, _)) = callee.rtcp.try_recv_from(&mut buf) {
                let s = parse_compound(&buf[..n]).expect("our RTCP parses");
                if let Some(sr) = s.sender_report {
                    sr_ssrcs.push(sr.ssrc);
                    assert!(sr.info.packet_count > 0);
                }
                assert!(
                    !s.report_blocks.is_empty(),
                    "a report block about the callee"
                );
            }
        }
        assert!(
            got_by_callee >= 150 && got_by_caller >= 150,
            "{got_by_callee} {got_by_caller}"
        );
        // First report 1.25–3.75 s after the bridge (RFC 3550 §6.2), from the stream's SSRC.
        assert!(!sr_ssrcs.is_empty(), "no sender report within 4 s");
        assert!(sr_ssrcs.iter().all(|&s| s == ssrc_to_callee));

        drop(task);
        let mut bye = false;
        let deadline = TokioInstant::now() + Duration::from_secs(2);
        while !bye && TokioInstant::now() < deadline {
            if let Ok(Ok((n, _))) =
                tokio::time::timeout(Duration::from_millis(200), callee.rtcp.recv_from(&mut buf))
                    .await
            {
                bye = parse_compound(&buf[..n]).map(|s| s.bye).unwrap_or(false)
                    || buf[..n]
                        .windows(2)
                        .any(|w| w[1] == PT_BYE && w[0] & 0xc0 == 0x80);
            }
        }
        assert!(bye, "RTCP BYE when the call ends");
    }

    #[tokio::test]
    async fn rtcp_from_a_stranger_is_ignored() {
        let (caller, callee) = (phone().await, phone().await);
        let (ours_a, ours_b) = (leg_sockets().await, leg_sockets().await);
        let relay = RtpRelay::new(leg_to(&caller, 1), leg_to(&callee, 2));
        let (events, _rx) = mpsc::channel(8);
        let a_port = ours_a.rtp.local_addr().unwrap();
        let a_rtcp = ours_a.rtcp.local_addr().unwrap();
        let _task = RelayTask::spawn(relay, ours_a, ours_b, 8, events);
        // The caller latches; a stranger then sprays garbage and RTCP at our ports.
        caller.rtp.send_to(&rtp_packet(1), a_port).await.unwrap();
        let stranger = UdpSocket::bind("127.0.0.3:0").await.unwrap();
        for i in 0..200u16 {
            stranger.send_to(&rtp_packet(i), a_port).await.unwrap();
            stranger
                .send_to(&[0x80, 200, 0, 1, 0, 0, 0, 0], a_rtcp)
                .await
                .unwrap();
            stranger.send_to(&[0xff; 3], a_rtcp).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut buf = [0u8; 2048];
        let mut relayed = 0;
        while callee.rtp.try_recv_from(&mut buf).is_ok() {
            relayed += 1;
        }
        assert_eq!(relayed, 1, "only the caller's packet reaches the callee");
    }
}
