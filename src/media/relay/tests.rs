//! Relay tests on a virtual clock.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::media::g711::Codec;
use crate::media::prompt::PromptPlayer;
use crate::media::rtp::build;
use crate::media::sdp::Direction;
use crate::media::tap::RecorderTap;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

fn neg(codec: Codec, pt: u8, te: Option<u8>, remote: &str) -> Negotiated {
    let remote = addr(remote);
    Negotiated {
        codec,
        payload_type: pt,
        telephone_event: te,
        remote: Some(remote),
        remote_rtcp: Some(SocketAddr::new(remote.ip(), remote.port() + 1)),
        direction: Direction::SendRecv,
        ptime_ms: 20,
    }
}

const CALLER_SDP: &str = "192.168.1.20:4000";
const CALLER_NAT: &str = "203.0.113.9:61000";
const CALLEE_SDP: &str = "10.0.0.50:20000";
const STRANGER: &str = "198.51.100.66:4000";

fn packet(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    build(
        &RtpHeader {
            marker: false,
            payload_type: pt,
            sequence: seq,
            timestamp: ts,
            ssrc,
        },
        payload,
    )
}

fn parsed(bytes: &[u8]) -> (RtpHeader, Vec<u8>) {
    let (h, p) = parse(bytes).expect("relayed packets parse");
    (h, p.to_vec())
}

fn relay(t0: Instant, caller: Negotiated, callee: Negotiated) -> RtpRelay {
    RtpRelay::new(
        // The caller's INVITE came through its NAT; the callee is the PBX on the LAN.
        MediaLeg::new(t0, caller, RtpSender::new(0xCA11, 100, 10_000))
            .with_signalling_source(addr(CALLER_NAT).ip()),
        MediaLeg::new(t0, callee, RtpSender::new(0xCA1E, 5000, 90_000))
            .with_signalling_source(addr(CALLEE_SDP).ip()),
    )
}

#[test]
fn first_source_is_latched_and_strangers_are_dropped() {
    let t0 = Instant::now();
    let mut leg = MediaLeg::new(
        t0,
        neg(Codec::Pcmu, 0, Some(101), CALLER_SDP),
        RtpSender::new(1, 0, 0),
    )
    .with_signalling_source(addr(CALLER_NAT).ip());
    assert_eq!(
        leg.send_target(),
        None,
        "a NATed phone's private SDP address gets nothing before it has sent"
    );
    // Junk and unexpected payload types never latch.
    assert!(matches!(
        leg.on_packet(t0, addr(STRANGER), &[1, 2, 3]),
        PacketVerdict::Drop(DropReason::Malformed(_))
    ));
    let g729 = packet(18, 1, 0, 7, &[0; 20]);
    assert_eq!(
        leg.on_packet(t0, addr(CALLER_NAT), &g729),
        PacketVerdict::Drop(DropReason::UnexpectedPayloadType(18))
    );
    assert_eq!(leg.latched(), None);
    // The phone's first real packet comes through its NAT.
    let p = packet(0, 1, 0, 7, &[0xFF; 160]);
    assert!(matches!(
        leg.on_packet(t0, addr(CALLER_NAT), &p),
        PacketVerdict::Accept(Received {
            kind: PayloadKind::Audio,
            ..
        })
    ));
    assert_eq!(leg.latched(), Some(addr(CALLER_NAT)));
    assert_eq!(leg.send_target(), Some(addr(CALLER_NAT)));
    // Anyone else is dropped and counted.
    for src in [STRANGER, "203.0.113.9:61001", "192.168.1.20:4002"] {
        assert_eq!(
            leg.on_packet(t0, addr(src), &p),
            PacketVerdict::Drop(DropReason::WrongSource)
        );
    }
    let dtmf = packet(101, 2, 0, 7, &[1, 10, 0, 160]);
    assert!(matches!(
        leg.on_packet(t0, addr(CALLER_NAT), &dtmf),
        PacketVerdict::Accept(Received {
            kind: PayloadKind::TelephoneEvent,
            ..
        })
    ));
    let s = leg.stats();
    assert_eq!(
        (
            s.packets_in,
            s.dropped_wrong_source,
            s.dropped_malformed,
            s.dropped_payload_type
        ),
        (2, 3, 1, 1)
    );
    assert_eq!(s.bytes_in, (p.len() + dtmf.len()) as u64);
}

#[test]
fn a_stranger_cannot_take_the_first_latch() {
    let t0 = Instant::now();
    let mut leg = MediaLeg::new(
        t0,
        neg(Codec::Pcmu, 0, None, CALLEE_SDP),
        RtpSender::new(1, 0, 0),
    );
    let p = packet(0, 1, 0, 7, &[0xFF; 160]);
    // Before the phone's first packet: a stranger is dropped and gets nothing back.
    assert_eq!(
        leg.on_packet(t0, addr(STRANGER), &p),
        PacketVerdict::Drop(DropReason::WrongSource)
    );
    assert_eq!(leg.latched(), None);
    assert_eq!(
        leg.send_target(),
        Some(addr(CALLEE_SDP)),
        "only the SDP address"
    );
    // The SDP address's IP from another port (NAT keeps the IP) latches.
    let other_port = "10.0.0.50:20400";
    assert!(matches!(
        leg.on_packet(t0, addr(other_port), &p),
        PacketVerdict::Accept(_)
    ));
    assert_eq!(leg.send_target(), Some(addr(other_port)));
    // The exact SDP address may still take it over; strangers never.
    assert!(matches!(
        leg.on_packet(t0, addr(CALLEE_SDP), &p),
        PacketVerdict::Accept(_)
    ));
    assert_eq!(leg.send_target(), Some(addr(CALLEE_SDP)));
    assert_eq!(
        leg.on_packet(t0, addr(STRANGER), &p),
        PacketVerdict::Drop(DropReason::WrongSource)
    );
    // Prompts are made in the leg's codec.
    let mut player = leg.prompt_player(Arc::from(vec![0i16; 160]), t0);
    let sent = leg.transmit_prompt(t0, &mut player);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, addr(CALLEE_SDP));
    assert_eq!(parsed(&sent[0].1).1, vec![0xFF; 160]);
}

#[test]
fn a_nated_phone_latches_from_its_signalling_address_only() {
    let t0 = Instant::now();
    let mut leg = MediaLeg::new(
        t0,
        neg(Codec::Pcmu, 0, None, CALLER_SDP),
        RtpSender::new(1, 0, 0),
    )
    .with_signalling_source(addr(CALLER_NAT).ip());
    let p = packet(0, 1, 0, 7, &[0xFF; 160]);
    // A stranger who sprays the port first: dropped, and no greeting goes anywhere.
    assert_eq!(
        leg.on_packet(t0, addr(STRANGER), &p),
        PacketVerdict::Drop(DropReason::WrongSource)
    );
    let mut player = leg.prompt_player(Arc::from(vec![0i16; 160]), t0);
    assert!(leg.transmit_prompt(t0, &mut player).is_empty());
    // The phone's NAT address (any port) latches, and the stranger stays out for good.
    assert!(matches!(
        leg.on_packet(t0, addr("203.0.113.9:40000"), &p),
        PacketVerdict::Accept(_)
    ));
    assert_eq!(
        leg.on_packet(t0, addr(STRANGER), &p),
        PacketVerdict::Drop(DropReason::WrongSource)
    );
    assert_eq!(leg.send_target(), Some(addr("203.0.113.9:40000")));
    // Both private (everything on one LAN): the SDP address is where media goes.
    let lan = MediaLeg::new(
        t0,
        neg(Codec::Pcmu, 0, None, CALLER_SDP),
        RtpSender::new(1, 0, 0),
    )
    .with_signalling_source("192.168.1.1".parse().unwrap());
    assert_eq!(lan.send_target(), Some(addr(CALLER_SDP)));
}

#[test]
fn unroutable_addresses() {
    for a in [
        "10.1.2.3",
        "172.16.0.1",
        "192.168.0.9",
        "100.64.1.1",
        "169.254.1.1",
        "0.0.0.0",
        "fd00::1",
        "fe80::1",
        "::ffff:192.168.1.2",
    ] {
        assert!(unroutable(a.parse().unwrap()), "{a}");
    }
    for a in [
        "203.0.113.9",
        "8.8.8.8",
        "100.128.0.1",
        "127.0.0.1",
        "2001:db8::1",
        "::1",
    ] {
        assert!(!unroutable(a.parse().unwrap()), "{a}");
    }
}

#[test]
fn prompt_then_relay_is_one_continuous_stream() {
    let t0 = Instant::now();
    let mut r = relay(
        t0,
        neg(Codec::Pcmu, 0, Some(101), CALLER_SDP),
        neg(Codec::Pcmu, 0, Some(101), CALLEE_SDP),
    );
    // The caller (behind NAT) has sent a first packet; then it hears a 1 s greeting.
    let first = packet(0, 1, 0, 7, &[0xFF; 160]);
    assert!(matches!(
        r.leg_mut(LegId::Caller)
            .on_packet(t0, addr(CALLER_NAT), &first),
        PacketVerdict::Accept(_)
    ));
    let mut greeting = PromptPlayer::new(Arc::from(vec![0i16; 8000]), Codec::Pcmu, 0, t0);
    let mut to_caller = Vec::new();
    let mut now = t0;
    while let Some(deadline) = greeting.poll_timeout() {
        now = deadline;
        to_caller.extend(r.leg_mut(LegId::Caller).transmit_prompt(now, &mut greeting));
    }
    assert_eq!(to_caller.len(), 50);
    assert!(to_caller.iter().all(|(to, _)| *to == addr(CALLER_NAT)));
    // The callee answers and talks; its packets are relayed 30 ms after the prompt ended.
    for i in 0..20u16 {
        let at = now + Duration::from_millis(30 + 20 * u64::from(i));
        let p = packet(
            0,
            40_000 + i,
            7_000_000 + 160 * u32::from(i),
            0xBEEF,
            &[0x55; 160],
        );
        let (to, bytes) = r
            .relay(at, LegId::Callee, addr(CALLEE_SDP), &p)
            .expect("relayed");
        to_caller.push((to, bytes));
    }
    let headers: Vec<RtpHeader> = to_caller.iter().map(|(_, b)| parsed(b).0).collect();
    assert!(headers.iter().all(|h| h.ssrc == 0xCA11), "one SSRC");
    for (i, w) in headers.windows(2).enumerate() {
        assert_eq!(w[1].sequence, w[0].sequence.wrapping_add(1), "seq at {i}");
        let step = w[1].timestamp.wrapping_sub(w[0].timestamp);
        assert_eq!(step, if i == 49 { 240 } else { 160 }, "ts at {i}");
    }
    let markers: Vec<usize> = headers
        .iter()
        .enumerate()
        .filter(|(_, h)| h.marker)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        markers,
        vec![0, 50],
        "first prompt packet and first relayed packet"
    );
    assert_eq!(r.leg(LegId::Caller).stats().packets_out, 70);
}

#[test]
fn transcoding_keeps_the_audio() {
    let t0 = Instant::now();
    let mut r = relay(
        t0,
        neg(Codec::Pcmu, 0, Some(101), CALLER_SDP),
        neg(Codec::Pcma, 8, Some(96), CALLEE_SDP),
    );
    let tone: Vec<i16> = (0..1600)
        .map(|i| ((2.0 * std::f32::consts::PI * 400.0 * i as f32 / 8000.0).sin() * 12_000.0) as i16)
        .collect();
    let mut heard = Vec::new();
    for (i, chunk) in tone.chunks(160).enumerate() {
        let p = packet(0, i as u16, 160 * i as u32, 9, &Codec::Pcmu.encode(chunk));
        let now = t0 + Duration::from_millis(20 * i as u64);
        let (to, bytes) = r
            .relay(now, LegId::Caller, addr(CALLER_NAT), &p)
            .expect("relayed");
        assert_eq!(to, addr(CALLEE_SDP));
        let (h, payload) = parsed(&bytes);
        assert_eq!(h.payload_type, 8);
        heard.extend(Codec::Pcma.decode(&payload));
    }
    assert_eq!(heard.len(), tone.len());
    for (a, b) in tone.iter().zip(&heard) {
        let (a, b) = (i32::from(*a), i32::from(*b));
        // Two G.711 quantisations: within two half-steps.
        assert!((a - b).abs() <= (a.abs() + 132) / 16 + 16, "{a} vs {b}");
    }
    // And back: PCMA from the callee reaches the caller as PCMU.
    let p = packet(8, 1, 0, 3, &Codec::Pcma.encode(&tone[..160]));
    let (to, bytes) = r
        .relay(t0, LegId::Callee, addr(CALLEE_SDP), &p)
        .expect("relayed");
    assert_eq!(to, addr(CALLER_NAT));
    let (h, payload) = parsed(&bytes);
    assert_eq!(h.payload_type, 0);
    assert_eq!(payload.len(), 160);
}

#[test]
fn telephone_events_are_mapped_or_dropped() {
    let t0 = Instant::now();
    let mut r = relay(
        t0,
        neg(Codec::Pcmu, 0, Some(101), CALLER_SDP),
        neg(Codec::Pcma, 8, Some(96), CALLEE_SDP),
    );
    let event = [5, 0x0A, 0x01, 0x40];
    let p = packet(101, 7, 12345, 9, &event);
    let (_, bytes) = r
        .relay(t0, LegId::Caller, addr(CALLER_NAT), &p)
        .expect("relayed");
    let (h, payload) = parsed(&bytes);
    assert_eq!(h.payload_type, 96);
    assert_eq!(payload, event, "event payload unchanged");
    // A callee without telephone-event gets no DTMF packets.
    let mut r = relay(
        t0,
        neg(Codec::Pcmu, 0, Some(101), CALLER_SDP),
        neg(Codec::Pcmu, 0, None, CALLEE_SDP),
    );
    assert_eq!(r.relay(t0, LegId::Caller, addr(CALLER_NAT), &p), None);
    assert_eq!(r.leg(LegId::Callee).stats().dropped_telephone_event, 1);
    // The callee sending 101 when it did not negotiate it: unexpected payload type.
    assert_eq!(r.relay(t0, LegId::Callee, addr(CALLEE_SDP), &p), None);
    assert_eq!(r.leg(LegId::Callee).stats().dropped_payload_type, 1);
}

#[test]
fn hold_reinvite_and_forwarding_switch() {
    let t0 = Instant::now();
    let mut r = relay(
        t0,
        neg(Codec::Pcmu, 0, None, CALLER_SDP),
        neg(Codec::Pcmu, 0, None, CALLEE_SDP),
    );
    let p = packet(0, 1, 0, 9, &[0xFF; 160]);
    assert!(r.relay(t0, LegId::Caller, addr(CALLER_NAT), &p).is_some());
    assert!(r.relay(t0, LegId::Callee, addr(CALLEE_SDP), &p).is_some());
    // The callee puts the call on hold: c=0.0.0.0, sendonly → we are recvonly.
    let mut hold = neg(Codec::Pcmu, 0, None, CALLEE_SDP);
    hold.remote = None;
    hold.direction = Direction::RecvOnly;
    r.leg_mut(LegId::Callee).renegotiate(hold);
    assert_eq!(r.leg(LegId::Callee).send_target(), None);
    assert_eq!(r.relay(t0, LegId::Caller, addr(CALLER_NAT), &p), None);
    assert_eq!(r.leg(LegId::Callee).stats().dropped_no_target, 1);
    // Back from hold at the same address: the latch was kept.
    r.leg_mut(LegId::Callee)
        .renegotiate(neg(Codec::Pcmu, 0, None, CALLEE_SDP));
    assert_eq!(r.leg(LegId::Callee).latched(), Some(addr(CALLEE_SDP)));
    // Moved to a new address: latch reset, the new source is accepted.
    r.leg_mut(LegId::Callee)
        .renegotiate(neg(Codec::Pcmu, 0, None, "10.0.0.51:20000"));
    assert_eq!(r.leg(LegId::Callee).latched(), None);
    assert!(r
        .relay(t0, LegId::Callee, addr("10.0.0.51:20000"), &p)
        .is_some());
    // While the callee hears the warning, the caller's audio is accepted but not relayed.
    r.set_forwarding(LegId::Caller, false);
    assert_eq!(r.relay(t0, LegId::Caller, addr(CALLER_NAT), &p), None);
    assert_eq!(r.leg(LegId::Caller).stats().packets_in, 3);
    r.set_forwarding(LegId::Caller, true);
    assert!(r.relay(t0, LegId::Caller, addr(CALLER_NAT), &p).is_some());
    let (caller, callee) = r.into_legs();
    assert_eq!(caller.stats().packets_in, 4);
    assert_eq!(callee.stats().packets_out, 2);
}

#[test]
fn inactivity_and_rtcp() {
    let t0 = Instant::now();
    let s = |secs| t0 + Duration::from_secs(secs);
    let timeout = Duration::from_secs(30);
    let mut r = relay(
        t0,
        neg(Codec::Pcmu, 0, None, CALLER_SDP),
        neg(Codec::Pcmu, 0, None, CALLEE_SDP),
    );
    assert_eq!(r.inactive_leg(s(29), timeout), None);
    assert_eq!(r.inactive_leg(s(30), timeout), Some(LegId::Caller));
    let p = packet(0, 1, 0, 9, &[0xFF; 160]);
    r.relay(s(30), LegId::Caller, addr(CALLER_NAT), &p);
    assert_eq!(r.inactive_leg(s(30), timeout), Some(LegId::Callee));
    // RTCP from the callee keeps it alive, and is not relayed.
    let rr = [0x80, 201, 0, 1, 0, 0, 0, 9];
    r.relay_rtcp(s(40), LegId::Callee, addr("10.0.0.50:20001"), &rr);
    assert_eq!(r.leg(LegId::Callee).stats().rtcp_in, 1);
    assert_eq!(r.leg(LegId::Callee).last_activity(), Some(s(40)));
    assert!(!r.leg(LegId::Callee).is_inactive(s(69), timeout));
    assert!(r.leg(LegId::Caller).is_inactive(s(60), timeout));
    // RTCP from the wrong address once RTP is latched, or junk: dropped and counted.
    let caller = r.leg_mut(LegId::Caller);
    assert_eq!(
        caller.on_rtcp(s(41), addr(STRANGER), &rr),
        DropReason::WrongSource
    );
    assert!(matches!(
        caller.on_rtcp(s(41), addr(CALLER_NAT), &rr[..4]),
        DropReason::Malformed(_)
    ));
    assert_eq!(
        caller.on_rtcp(s(41), addr("203.0.113.9:61001"), &rr),
        DropReason::Rtcp
    );
    assert_eq!(caller.rtcp_target(), Some(addr("203.0.113.9:61001")));
    // RTCP muxed onto the RTP port is recognised, not parsed as audio.
    assert_eq!(
        caller.on_packet(s(42), addr("203.0.113.9:61001"), &rr),
        PacketVerdict::Drop(DropReason::Rtcp)
    );
    assert_eq!(caller.stats().rtcp_in, 2);
    // A leg we only send to (they are recvonly) never times out.
    let mut sendonly = neg(Codec::Pcmu, 0, None, CALLER_SDP);
    sendonly.direction = Direction::SendOnly;
    let leg = MediaLeg::new(t0, sendonly, RtpSender::new(1, 0, 0));
    assert!(!leg.is_inactive(s(3600), timeout));
}

#[test]
fn the_tap_gets_the_callers_decoded_audio() {
    let t0 = Instant::now();
    let mut r = relay(
        t0,
        neg(Codec::Pcma, 8, None, CALLER_SDP),
        neg(Codec::Pcmu, 0, None, CALLEE_SDP),
    );
    let (tap, rx) = RecorderTap::new(2);
    assert!(r.leg_mut(LegId::Caller).set_tap(Some(tap)).is_none());
    let pcm = vec![1000i16; 160];
    for i in 0..3u16 {
        let p = packet(8, i, 160 * u32::from(i), 9, &Codec::Pcma.encode(&pcm));
        assert!(
            r.relay(t0, LegId::Caller, addr(CALLER_NAT), &p).is_some(),
            "relaying never waits for the tap"
        );
    }
    let frame = rx.try_recv().expect("frame");
    assert_eq!(frame.samples.len(), 160);
    assert!(frame.samples.iter().all(|&s| (s - 1000).abs() < 40));
    assert_eq!(frame.rtp_timestamp, 0);
    let tap = r.leg(LegId::Caller).tap().expect("tap");
    assert_eq!((tap.pushed(), tap.dropped_full()), (2, 1));
}
