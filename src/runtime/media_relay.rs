//! A bridged call's media on its own task: the pure [`MediaBridge`] (relay, RTCP per leg,
//! inactivity) fed from the two legs' sockets and drained into them.
//!
//! Once the legs are bridged the SIP core has nothing to do with media any more, so the
//! relay runs on any runtime worker: bridged media never waits for the core, and a busy
//! core (a burst of INVITEs, a slow disk) never delays a packet. This file only moves
//! datagrams and runs the bridge's timer; what is relayed, reported or dropped is the
//! bridge's (see [`crate::media::bridge`]).

use crate::call::Leg;
use crate::media::bridge::{BridgeEvent, MediaBridge, Port};
use crate::media::relay::{LegId, RtpRelay};
use crate::runtime::calls::{CallEvent, RTP_INACTIVITY};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant as TokioInstant;
use tracing::{info, info_span};

/// RTP packets of bridged calls since start, added when each call's relay ends (for
/// `/metrics`; one process-wide set, like a metrics registry).
#[derive(Debug, Default)]
pub struct MediaCounters {
    pub relayed: AtomicU64,
    pub dropped_wrong_source: AtomicU64,
    pub dropped_malformed: AtomicU64,
}

pub static MEDIA_COUNTERS: MediaCounters = MediaCounters {
    relayed: AtomicU64::new(0),
    dropped_wrong_source: AtomicU64::new(0),
    dropped_malformed: AtomicU64::new(0),
};

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
        let seed = call
            ^ SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
        let now = std::time::Instant::now();
        let bridge = MediaBridge::new(now, relay, seed, RTP_INACTIVITY);
        let (stop, stopped) = oneshot::channel();
        let handle = tokio::spawn(relay_media(bridge, [caller, callee], call, events, stopped));
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

/// Send what the bridge has for the sockets. Never waits: a full socket buffer drops the
/// packet (late audio is useless).
fn flush(bridge: &mut MediaBridge, sockets: &[LegSockets; 2]) {
    while let Some(t) = bridge.poll_transmit() {
        let leg = &sockets[usize::from(t.leg == LegId::Callee)];
        let sock = match t.port {
            Port::Rtp => &leg.rtp,
            Port::Rtcp => &leg.rtcp,
        };
        let _ = sock.try_send_to(&t.bytes, t.to);
    }
}

/// Packets already waiting on `sock` after the one that woke the task: fed to the bridge
/// without another trip through the scheduler (bounded, so the other leg is not starved).
fn drain(bridge: &mut MediaBridge, leg: LegId, port: Port, sock: &UdpSocket, buf: &mut [u8]) {
    for _ in 0..16 {
        match sock.try_recv_from(buf) {
            Ok((n, src)) => {
                let now = std::time::Instant::now();
                match port {
                    Port::Rtp => bridge.on_rtp(now, leg, src, &buf[..n]),
                    Port::Rtcp => bridge.on_rtcp(now, leg, src, &buf[..n]),
                }
            }
            Err(_) => return,
        }
    }
}

/// Relays until stopped (the call ended); a leg silent for [`RTP_INACTIVITY`] is reported
/// as [`CallEvent::MediaTimeout`] (relaying goes on until the core ends the call). Logs the
/// legs' counters at the end (packets from strangers dropped: RTP bleed attempts).
async fn relay_media(
    mut bridge: MediaBridge,
    sockets: [LegSockets; 2],
    call: u64,
    events: mpsc::Sender<CallEvent>,
    mut stop: oneshot::Receiver<()>,
) {
    let [a, b] = sockets.clone();
    let mut bufs = [[0u8; 2048]; 4];
    let [rtp_a, rtp_b, rtcp_a, rtcp_b] = &mut bufs;
    // One timer, moved only when the bridge's next wake-up changes (a new timer per packet
    // would cost more than relaying the packet).
    let far = || TokioInstant::now() + Duration::from_secs(3_600);
    let mut due = bridge.poll_timeout();
    let timer = tokio::time::sleep_until(due.map_or_else(far, TokioInstant::from_std));
    tokio::pin!(timer);
    loop {
        // ICMP errors surface on the next receive; they say nothing about the call.
        tokio::select! {
            _ = &mut stop => break,
            r = a.rtp.recv_from(rtp_a) => match r {
                Ok((n, src)) => {
                    bridge.on_rtp(std::time::Instant::now(), LegId::Caller, src, &rtp_a[..n]);
                    drain(&mut bridge, LegId::Caller, Port::Rtp, &a.rtp, rtp_a);
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
            },
            r = b.rtp.recv_from(rtp_b) => match r {
                Ok((n, src)) => {
                    bridge.on_rtp(std::time::Instant::now(), LegId::Callee, src, &rtp_b[..n]);
                    drain(&mut bridge, LegId::Callee, Port::Rtp, &b.rtp, rtp_b);
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
            },
            r = a.rtcp.recv_from(rtcp_a) => match r {
                Ok((n, src)) => bridge.on_rtcp(std::time::Instant::now(), LegId::Caller, src, &rtcp_a[..n]),
                Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
            },
            r = b.rtcp.recv_from(rtcp_b) => match r {
                Ok((n, src)) => bridge.on_rtcp(std::time::Instant::now(), LegId::Callee, src, &rtcp_b[..n]),
                Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
            },
            _ = &mut timer => bridge.handle_timeout(std::time::Instant::now(), SystemTime::now()),
        }
        flush(&mut bridge, &sockets);
        while let Some(BridgeEvent::Inactive(leg)) = bridge.poll_event() {
            let leg = if leg == LegId::Caller { Leg::A } else { Leg::B };
            let _ = events.send(CallEvent::MediaTimeout { call, leg }).await;
        }
        let next = bridge.poll_timeout();
        if next != due {
            due = next;
            timer
                .as_mut()
                .reset(due.map_or_else(far, TokioInstant::from_std));
        }
    }
    // RFC 3550 §6.6: say we are leaving, to each phone we sent to.
    bridge.end(std::time::Instant::now(), SystemTime::now());
    flush(&mut bridge, &sockets);
    let relay = bridge.relay();
    let (a, b) = (
        relay.leg(LegId::Caller).stats(),
        relay.leg(LegId::Callee).stats(),
    );
    let add = |c: &AtomicU64, v: u64| c.fetch_add(v, Ordering::Relaxed);
    add(&MEDIA_COUNTERS.relayed, a.packets_out + b.packets_out);
    add(
        &MEDIA_COUNTERS.dropped_wrong_source,
        a.dropped_wrong_source + b.dropped_wrong_source,
    );
    add(
        &MEDIA_COUNTERS.dropped_malformed,
        a.dropped_malformed + b.dropped_malformed,
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
            caller_jitter = bridge.reporter(LegId::Caller).receiver_stats().jitter(),
            callee_jitter = bridge.reporter(LegId::Callee).receiver_stats().jitter(),
            "media relay ended"
        )
    });
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
                let (h, payload) = crate::media::rtp::parse(&buf[..n]).unwrap();
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
