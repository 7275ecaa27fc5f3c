//! Every parser and every entry point that takes bytes from the network, fed random,
//! truncated and mutated input: nothing panics.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::g711::Codec;
use super::relay::{LegId, MediaLeg, PacketVerdict, RtpRelay};
use super::rtp::{build, is_rtcp, parse, RtpHeader, RtpSender, TelephoneEvent};
use super::sdp::{accept_answer, answer, Direction, Negotiated, SessionDescription};
use super::tap::RecorderTap;

/// xorshift64*: deterministic, no crate needed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max + 1);
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// Flip, overwrite, insert or delete a few bytes.
    fn mutate(&mut self, input: &[u8]) -> Vec<u8> {
        let mut v = input.to_vec();
        for _ in 0..=self.below(4) {
            let at = self.below(v.len());
            match self.below(4) {
                0 if !v.is_empty() => v[at] ^= 1 << self.below(8),
                1 if !v.is_empty() => v[at] = self.next() as u8,
                2 => v.insert(at.min(v.len()), self.next() as u8),
                _ if !v.is_empty() => {
                    v.remove(at);
                }
                _ => {}
            }
        }
        v
    }
}

fn rtp_samples() -> Vec<Vec<u8>> {
    let h = RtpHeader {
        marker: true,
        payload_type: 0,
        sequence: 1,
        timestamp: 160,
        ssrc: 9,
    };
    let mut ext = vec![
        0x80 | 0x20 | 0x10 | 1,
        0,
        0,
        1,
        0,
        0,
        0,
        160,
        0,
        0,
        0,
        9,
        1,
        1,
        1,
        1,
    ];
    ext.extend_from_slice(&[0xBE, 0xDE, 0, 1, 1, 2, 3, 4, 7, 7, 0, 2]);
    vec![
        build(&h, &[0xFF; 160]),
        build(
            &RtpHeader {
                payload_type: 101,
                ..h
            },
            &[1, 0x8A, 3, 0x20],
        ),
        ext,
        vec![0x81, 200, 0, 6, 0, 0, 0, 9, 0, 0, 0, 0],
    ]
}

const SDPS: [&str; 3] = [
    "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
     m=audio 4000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\n\
     a=fmtp:101 0-15\r\na=ptime:20\r\na=rtcp:4001 IN IP4 192.0.2.1\r\na=sendonly\r\n\
     m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n",
    "v=0\no=bob 5 5 IN IP6 2001:db8::1\ns=-\nc=IN IP6 2001:db8::1\nt=0 0\n\
     m=audio 20000 RTP/AVP 112 0\na=rtpmap:112 PCMA/8000/1\nc=IN IP6 ::\n",
    "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\n\
     c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
];

#[test]
fn rtp_parsers_survive_anything() {
    let mut rng = Rng(0x5EED_0001);
    let samples = rtp_samples();
    for round in 0..200_000 {
        let input = match round % 3 {
            0 => rng.bytes(64),
            1 => {
                let s = &samples[rng.below(samples.len())];
                s[..rng.below(s.len() + 1)].to_vec()
            }
            _ => {
                let i = rng.below(samples.len());
                rng.mutate(&samples[i])
            }
        };
        let _ = is_rtcp(&input);
        let _ = TelephoneEvent::parse(&input);
        if let Ok((h, payload)) = parse(&input) {
            assert!(payload.len() + 12 <= input.len());
            assert!(h.payload_type < 128);
            // What parses, rebuilds and parses again to the same thing.
            let again = build(&h, payload);
            assert_eq!(parse(&again), Ok((h, payload)));
        }
    }
}

#[test]
fn g711_decodes_any_bytes() {
    let mut rng = Rng(3);
    for _ in 0..1000 {
        let b = rng.bytes(400);
        for c in [Codec::Pcmu, Codec::Pcma] {
            assert_eq!(c.decode(&b).len(), b.len());
            assert_eq!(c.transcode(Codec::Pcmu, &b).len(), b.len());
        }
    }
}

#[test]
fn sdp_parser_survives_anything() {
    let mut rng = Rng(0x5D9);
    let local = "192.0.2.200".parse().expect("ip");
    for round in 0..60_000 {
        let input: Vec<u8> = match round % 4 {
            0 => rng.bytes(300),
            1 => {
                let s = SDPS[rng.below(SDPS.len())].as_bytes();
                s[..rng.below(s.len() + 1)].to_vec()
            }
            2 => {
                let i = rng.below(SDPS.len());
                rng.mutate(SDPS[i].as_bytes())
            }
            _ => {
                // Splice random lines into a valid body.
                let s = SDPS[rng.below(SDPS.len())];
                let mut lines: Vec<String> = s.lines().map(str::to_string).collect();
                let junk = [
                    "a=rtpmap:",
                    "a=rtpmap:0 ",
                    "m=audio",
                    "c=IN IP4",
                    "a=rtcp:",
                    "a=ptime:1e309",
                    "a=fmtp:",
                    "m=audio 1 RTP/AVP",
                    "o=",
                    "c=IN IP6 ::ffff:1.2.3.4",
                    "a=rtpmap:96 telephone-event/",
                    "m=audio 65535 RTP/AVP 0",
                    "a=rtcp:65535 IN IP4 0.0.0.0",
                ];
                let at = rng.below(lines.len() + 1);
                lines.insert(at, junk[rng.below(junk.len())].to_string());
                lines.join("\r\n").into_bytes()
            }
        };
        let text = String::from_utf8_lossy(&input);
        let Ok(sdp) = SessionDescription::parse(&text) else {
            continue;
        };
        if let Ok((n, body)) = answer(&sdp, local, 30_000, 1, 1) {
            assert!(n.payload_type < 128);
            let ours = SessionDescription::parse(&body).expect("our answers always parse");
            assert_eq!(
                ours.media.len(),
                sdp.media.len(),
                "one m= line per offered stream"
            );
        }
        let _ = accept_answer(&sdp);
    }
}

#[test]
fn media_legs_survive_anything() {
    let t0 = Instant::now();
    let neg = |codec: Codec, pt, te| Negotiated {
        codec,
        payload_type: pt,
        telephone_event: te,
        remote: Some(SocketAddr::from(([192, 0, 2, 1], 4000))),
        remote_rtcp: Some(SocketAddr::from(([192, 0, 2, 1], 4001))),
        direction: Direction::SendRecv,
        ptime_ms: 20,
    };
    let mut relay = RtpRelay::new(
        MediaLeg::new(t0, neg(Codec::Pcmu, 0, Some(101)), RtpSender::from_seed(1)),
        MediaLeg::new(t0, neg(Codec::Pcma, 8, None), RtpSender::from_seed(2)),
    );
    let (tap, rx) = RecorderTap::new(4);
    relay.leg_mut(LegId::Caller).set_tap(Some(tap));
    let mut rng = Rng(77);
    let samples = rtp_samples();
    // The SDP address's IP (two ports) may latch; the third source is a stranger.
    let sources: Vec<SocketAddr> = vec![
        SocketAddr::from(([192, 0, 2, 1], 4000)),
        SocketAddr::from(([192, 0, 2, 1], 5000)),
        SocketAddr::from(([10, 0, 0, 3], 5000)),
    ];
    for round in 0..100_000u64 {
        let now = t0 + Duration::from_millis(round);
        let input = match round % 2 {
            0 => rng.bytes(200),
            _ => {
                let i = rng.below(samples.len());
                rng.mutate(&samples[i])
            }
        };
        let from = if rng.below(2) == 0 {
            LegId::Caller
        } else {
            LegId::Callee
        };
        let src = sources[rng.below(sources.len())];
        if let Some((_, out)) = relay.relay(now, from, src, &input) {
            let (h, _) = parse(&out).expect("what we send parses");
            assert!(matches!(h.payload_type, 0 | 8 | 101));
        }
        relay.relay_rtcp(now, from, src, &input);
        if let PacketVerdict::Accept(p) = relay.leg_mut(from).on_packet(now, src, &input) {
            assert!(p.payload.len() <= input.len());
        }
        while rx.try_recv().is_some() {}
    }
    let s = relay.leg(LegId::Caller).stats();
    assert!(
        s.dropped_malformed > 0 && s.packets_in > 0 && s.dropped_wrong_source > 0,
        "{s:?}"
    );
}
