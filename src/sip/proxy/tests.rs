//! Whole proxy flows on a virtual clock: no sockets, no sleeping.

use super::*;
use crate::sip::classify::{ClassifyRules, PatternList};
use std::time::Duration;

const TRUNK: &str = "192.0.2.10:5060";
const PBX: &str = "192.0.2.20:5080";
const ME: &str = "192.0.2.1";

fn config() -> ProxyConfig {
    ProxyConfig {
        advertised_host: ME.into(),
        advertised_port: 5060,
        upstream: PBX.parse().unwrap(),
        upstream_transport: Transport::Udp,
        record_route: true,
        trusted: vec!["192.0.2.0/24".parse().unwrap()],
        untrusted: UntrustedAction::Reject,
        rate_limit: RateLimitConfig {
            per_sec: 0.0,
            burst: 1,
            max_sources: 10,
        },
        trusted_rate_limit: RateLimitConfig {
            per_sec: 0.0,
            burst: 1,
            max_sources: 10,
        },
        timers: TimerConfig::default(),
        classify: ClassifyRules::default(),
        screen_calls: false,
        skip_screening_from: Vec::new(),
        limits: Limits::default(),
        upstream_probe: None,
        device_mode: false,
    }
}

fn invite(from: &str, extra: &str, branch: &str) -> String {
    format!(
        "INVITE sip:100@pbx.example SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.10:5060;branch={branch}\r\n\
         Max-Forwards: 70\r\n\
         From: {from};tag=f1\r\n\
         To: <sip:100@pbx.example>\r\n\
         Call-ID: call-{branch}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:trunk@192.0.2.10>\r\n\
         {extra}Content-Length: 0\r\n\r\n"
    )
}

fn peer(s: &str) -> Peer {
    Peer::udp(s.parse().unwrap())
}

/// A harness: the proxy, a virtual clock, and what it sent.
struct Net {
    proxy: Proxy,
    t0: Instant,
    now: Instant,
}

impl Net {
    fn new(cfg: ProxyConfig) -> Net {
        let t0 = Instant::now();
        Net {
            proxy: Proxy::new(cfg),
            t0,
            now: t0,
        }
    }

    fn input(&mut self, from: &str, msg: &str) -> Vec<(Peer, SipMessage)> {
        self.proxy
            .handle_input(self.now, peer(from), msg.as_bytes());
        self.drain()
    }

    fn drain(&mut self) -> Vec<(Peer, SipMessage)> {
        let mut out = Vec::new();
        while let Some(t) = self.proxy.poll_transmit() {
            out.push((t.to, SipMessage::parse(&t.bytes).unwrap()));
        }
        out
    }

    /// Advance the clock to `ms` after start, firing timers on the way; collect sends with
    /// their time.
    fn run_until(&mut self, ms: u64) -> Vec<(u64, Peer, SipMessage)> {
        let end = self.t0 + Duration::from_millis(ms);
        let mut out = Vec::new();
        while let Some(t) = self.proxy.poll_timeout() {
            if t > end {
                break;
            }
            self.now = self.now.max(t);
            self.proxy.handle_timeout(self.now);
            let at = self.now.duration_since(self.t0).as_millis() as u64;
            for (p, m) in self.drain() {
                out.push((at, p, m));
            }
        }
        self.now = end;
        out
    }
}

fn response(req: &SipMessage, status: u16, to_tag: Option<&str>) -> String {
    let r = build::response_to(req, status, "X", None, to_tag);
    String::from_utf8(r.to_bytes().to_vec()).unwrap()
}

#[test]
fn normal_invite_is_forwarded_with_via_record_route_and_max_forwards() {
    let mut net = Net::new(config());
    let out = net.input(TRUNK, &invite("<sip:+4930123@trunk>", "", "z9hG4bKa"));
    assert_eq!(out.len(), 2, "100 Trying + forwarded INVITE");
    let (to, trying) = &out[0];
    assert_eq!(trying.status(), Some(100));
    assert_eq!(to.addr, TRUNK.parse().unwrap());
    let (to, fwd) = &out[1];
    assert_eq!(to.addr, PBX.parse().unwrap());
    assert_eq!(fwd.header_values("via").len(), 2);
    assert!(fwd
        .header("via")
        .unwrap()
        .starts_with("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK"));
    assert_eq!(fwd.header("record-route"), Some("<sip:192.0.2.1:5060;lr>"));
    assert_eq!(fwd.header("max-forwards"), Some("69"));
    assert!(fwd.header("x-scamscreen-caller").is_none());
    assert_eq!(net.proxy.stats().calls_passed, 1);
}

#[test]
fn withheld_caller_is_marked_and_classified_with_a_reason() {
    let mut net = Net::new(config());
    let out = net.input(
        TRUNK,
        &invite(
            "\"Anonymous\" <sip:anonymous@anonymous.invalid>",
            "Privacy: id\r\n",
            "z9hG4bKw",
        ),
    );
    let fwd = &out[1].1;
    assert_eq!(fwd.header("x-scamscreen-caller"), Some("withheld"));
    match net.proxy.poll_event() {
        Some(ProxyEvent::CallClassified { classification, .. }) => {
            assert_eq!(classification.class, CallerClass::Screen);
            assert!(
                classification.reason.contains("Privacy"),
                "{}",
                classification.reason
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn our_headers_from_the_trunk_side_are_removed() {
    let mut net = Net::new(config());
    // A caller with a number claims it was screened and allowed.
    let out = net.input(
        TRUNK,
        &invite(
            "<sip:+4930123@trunk.example>",
            "X-Scamscreen-Verdict: allow\r\nx-scamscreen-score: 0.00\r\nX-Other: kept\r\n",
            "z9hG4bKspoof1",
        ),
    );
    let fwd = &out[1].1;
    assert!(fwd
        .headers()
        .iter()
        .all(|h| !h.key.starts_with("x-scamscreen")));
    assert_eq!(fwd.header("x-other"), Some("kept"));
    // A withheld caller in mark mode: only scamscreen's own marking arrives.
    let out = net.input(
        TRUNK,
        &invite(
            "<sip:anonymous@anonymous.invalid>",
            "X-Scamscreen-Caller: known\r\n",
            "z9hG4bKspoof2",
        ),
    );
    let fwd = &out[1].1;
    assert_eq!(fwd.header_values("x-scamscreen-caller"), vec!["withheld"]);
    assert_eq!(net.proxy.stats().spoofed_headers_removed, 3);
}

#[test]
fn responses_are_relayed_without_our_via_and_100_is_not() {
    let mut net = Net::new(config());
    let out = net.input(TRUNK, &invite("<sip:1@t>", "", "z9hG4bKr"));
    let fwd = out[1].1.clone();
    assert!(net.input(PBX, &response(&fwd, 100, None)).is_empty());
    let up = net.input(PBX, &response(&fwd, 180, Some("pbx")));
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].1.status(), Some(180));
    assert_eq!(up[0].1.header_values("via").len(), 1);
    assert_eq!(up[0].0.addr, TRUNK.parse().unwrap());
    let up = net.input(PBX, &response(&fwd, 200, Some("pbx")));
    assert_eq!(up[0].1.status(), Some(200));
    // A retransmitted 200 is relayed too (RFC 6026 Accepted).
    let up = net.input(PBX, &response(&fwd, 200, Some("pbx")));
    assert_eq!(up.len(), 1);
}

#[test]
fn silent_upstream_gets_retransmissions_then_408() {
    let mut net = Net::new(config());
    let out = net.input(TRUNK, &invite("<sip:1@t>", "", "z9hG4bKs"));
    assert_eq!(out.len(), 2);
    let sent = net.run_until(40_000);
    let to_pbx: Vec<u64> = sent
        .iter()
        .filter(|(_, p, m)| p.addr == PBX.parse().unwrap() && m.method() == Some("INVITE"))
        .map(|(t, _, _)| *t)
        .collect();
    assert_eq!(to_pbx, vec![500, 1500, 3500, 7500, 15500, 31500]);
    let finals: Vec<(u64, u16)> = sent
        .iter()
        .filter(|(_, p, m)| p.addr == TRUNK.parse().unwrap() && m.status().is_some())
        .map(|(t, _, m)| (*t, m.status().unwrap()))
        .collect();
    assert_eq!(finals.first(), Some(&(32_000, 408)));
    assert_eq!(net.proxy.stats().upstream_timeouts, 1);
    // The 408 is retransmitted (Timer G) until the trunk ACKs, then everything ends.
    assert!(finals.len() > 1);
}

#[test]
fn invite_retransmission_is_absorbed_and_answered_from_the_transaction() {
    let mut net = Net::new(config());
    let msg = invite("<sip:1@t>", "", "z9hG4bKrt");
    net.input(TRUNK, &msg);
    let again = net.input(TRUNK, &msg);
    // The server transaction replays its 100; nothing new goes upstream.
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].1.status(), Some(100));
    assert_eq!(net.proxy.stats().retransmissions_in, 1);
}

#[test]
fn cancel_before_and_after_a_provisional() {
    let mut net = Net::new(config());
    let inv = invite("<sip:1@t>", "", "z9hG4bKc");
    let out = net.input(TRUNK, &inv);
    let fwd = out[1].1.clone();
    let cancel = inv
        .replacen("INVITE sip:", "CANCEL sip:", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    // CANCEL before any provisional: 200 to the CANCEL, but nothing upstream yet (§9.1).
    let out = net.input(TRUNK, &cancel);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1.status(), Some(200));
    // The 180 arrives: it is relayed and the CANCEL goes upstream now.
    let out = net.input(PBX, &response(&fwd, 180, Some("pbx")));
    let methods: Vec<_> = out.iter().map(|(_, m)| (m.method(), m.status())).collect();
    assert!(methods.contains(&(None, Some(180))));
    let c = out
        .iter()
        .find(|(_, m)| m.method() == Some("CANCEL"))
        .unwrap();
    assert_eq!(c.1.header("via"), fwd.header_values("via").first().copied());
    // 487 comes back: ACKed hop-by-hop by us, relayed to the trunk.
    let out = net.input(PBX, &response(&fwd, 487, Some("pbx")));
    assert!(out
        .iter()
        .any(|(p, m)| m.method() == Some("ACK") && p.addr == PBX.parse().unwrap()));
    assert!(out
        .iter()
        .any(|(p, m)| m.status() == Some(487) && p.addr == TRUNK.parse().unwrap()));
}

#[test]
fn cancel_for_an_unknown_invite_gets_481() {
    let mut net = Net::new(config());
    let cancel = invite("<sip:1@t>", "", "z9hG4bKnone")
        .replacen("INVITE sip:", "CANCEL sip:", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    let out = net.input(TRUNK, &cancel);
    assert_eq!(out[0].1.status(), Some(481));
}

#[test]
fn max_forwards_zero_loop_and_untrusted() {
    let mut net = Net::new(config());
    let out = net.input(
        TRUNK,
        &invite("<sip:1@t>", "", "z9hG4bKm").replace("Max-Forwards: 70", "Max-Forwards: 0"),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1.status(), Some(483));

    // The forwarded INVITE coming back to us unchanged is a loop.
    let out = net.input(TRUNK, &invite("<sip:1@t>", "", "z9hG4bKl"));
    let fwd = String::from_utf8(out[1].1.to_bytes().to_vec()).unwrap();
    let out = net.input("192.0.2.30:5060", &fwd);
    assert_eq!(out.last().unwrap().1.status(), Some(482));

    let out = net.input("203.0.113.5:5060", &invite("<sip:1@t>", "", "z9hG4bKu"));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1.status(), Some(403));
    assert_eq!(out[0].0.addr, "203.0.113.5:5060".parse().unwrap());
    let mut cfg = config();
    cfg.untrusted = UntrustedAction::Drop;
    let mut net = Net::new(cfg);
    assert!(net
        .input("203.0.113.5:5060", &invite("<sip:1@t>", "", "z9hG4bKu"))
        .is_empty());
    assert_eq!(net.proxy.stats().untrusted, 1);
}

#[test]
fn options_to_us_is_answered_locally() {
    let mut net = Net::new(config());
    let opt = "OPTIONS sip:192.0.2.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKo;rport\r\n\
        Max-Forwards: 70\r\nFrom: <sip:ping@k>;tag=1\r\nTo: <sip:192.0.2.1>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    let out = net.input(TRUNK, opt);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1.status(), Some(200));
    assert!(out[0].1.header("via").unwrap().contains("rport=5060"));
}

#[test]
fn requests_from_the_pbx_go_only_to_trusted_ip_literals() {
    let mut net = Net::new(config());
    let bye = |ruri: &str| {
        format!(
            "BYE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.20:5080;branch=z9hG4bKb{}\r\n\
             Route: <sip:192.0.2.1:5060;lr>\r\nMax-Forwards: 70\r\nFrom: <sip:100@pbx>;tag=p\r\n\
             To: <sip:1@t>;tag=f1\r\nCall-ID: d1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
            ruri.len()
        )
    };
    let out = net.input(PBX, &bye("sip:trunk@192.0.2.10:5060"));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0.addr, TRUNK.parse().unwrap());
    assert!(out[0].1.header("route").is_none(), "our Route is popped");
    // Not an open relay: an outside target or a DNS name is refused.
    let out = net.input(PBX, &bye("sip:x@198.51.100.7"));
    assert_eq!(out[0].1.status(), Some(403));
    let out = net.input(PBX, &bye("sip:x@evil.example"));
    assert_eq!(out[0].1.status(), Some(403));
}

#[test]
fn deny_list_declines_without_forwarding() {
    let mut cfg = config();
    cfg.classify.deny = PatternList::parse(&["+4930666*".to_string()]).unwrap();
    let mut net = Net::new(cfg);
    let out = net.input(TRUNK, &invite("<sip:+4930666111@trunk>", "", "z9hG4bKd"));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1.status(), Some(603));
}

#[test]
fn invalid_requests_get_400_and_are_never_forwarded() {
    let mut net = Net::new(config());
    let bad = invite("<sip:1@t>", "", "z9hG4bKbad").replace("CSeq: 1 INVITE", "CSeq: 1 OPTIONS");
    let out = net.input(TRUNK, &bad);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1.status(), Some(400));
    assert_eq!(net.proxy.stats().forwarded, 0);
    // Garbage is dropped silently.
    assert!(net.input(TRUNK, "\u{0}\u{1}garbage").is_empty());
}

#[test]
fn rate_limit_drops_floods_per_source() {
    let mut cfg = config();
    cfg.trusted_rate_limit = RateLimitConfig {
        per_sec: 1.0,
        burst: 3,
        max_sources: 100,
    };
    let mut net = Net::new(cfg);
    let mut answered = 0;
    for i in 0..10 {
        let out = net.input(TRUNK, &invite("<sip:1@t>", "", &format!("z9hG4bKf{i}")));
        answered += usize::from(!out.is_empty());
    }
    assert_eq!(answered, 3);
    assert_eq!(net.proxy.stats().rate_limited, 7);
}

#[test]
fn contexts_are_freed_after_the_call() {
    let mut net = Net::new(config());
    let out = net.input(TRUNK, &invite("<sip:1@t>", "", "z9hG4bKfree"));
    let fwd = out[1].1.clone();
    net.input(PBX, &response(&fwd, 486, Some("pbx")));
    // Trunk ACKs the 486.
    let ack = invite("<sip:1@t>", "", "z9hG4bKfree")
        .replacen("INVITE sip:", "ACK sip:", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 ACK");
    assert!(net.input(TRUNK, &ack).is_empty());
    assert_eq!(net.proxy.contexts(), 1);
    net.run_until(60_000);
    assert_eq!(net.proxy.contexts(), 0);
    assert!(net.proxy.poll_timeout().is_none());
}

#[test]
fn screened_invites_go_to_the_call_layer_with_their_later_messages() {
    let mut cfg = config();
    cfg.screen_calls = true;
    let mut net = Net::new(cfg);
    let inv = invite(
        "<sip:anonymous@anonymous.invalid>",
        "Privacy: id\r\n",
        "z9hG4bKsc",
    );
    assert!(
        net.input(TRUNK, &inv).is_empty(),
        "nothing forwarded, nothing answered"
    );
    let _classified = net.proxy.poll_event();
    match net.proxy.poll_event() {
        Some(ProxyEvent::ScreenCall { invite, source, .. }) => {
            assert_eq!(invite.header("call-id"), Some("call-z9hG4bKsc"));
            assert_eq!(source.addr, TRUNK.parse().unwrap());
        }
        other => panic!("{other:?}"),
    }
    net.proxy.attach_call("call-z9hG4bKsc", false, 1);
    net.proxy.attach_call("leg-b-1", true, 1);
    let bye = inv
        .replacen("INVITE sip:", "BYE sip:", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 2 BYE");
    assert!(net.input(TRUNK, &bye).is_empty());
    assert!(matches!(
        net.proxy.poll_event(),
        Some(ProxyEvent::CallMessage {
            from_upstream: false,
            ..
        })
    ));
    let resp = "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-call1-1\r\n\
        From: <sip:a@b>;tag=x\r\nTo: <sip:100@pbx>;tag=y\r\nCall-ID: leg-b-1\r\nCSeq: 1 INVITE\r\n\
        Content-Length: 0\r\n\r\n";
    assert!(net.input(PBX, resp).is_empty());
    assert!(matches!(
        net.proxy.poll_event(),
        Some(ProxyEvent::CallMessage {
            from_upstream: true,
            ..
        })
    ));
    // Leg B's peer may send its in-dialog requests from another address (RFC 3261 §12.2.2:
    // a dialog is its Call-ID and tags): a session refresh from the trunk's side with leg
    // B's Call-ID is still leg B's, never proxied.
    let refresh = "UPDATE sip:scamscreen@192.0.2.1:5060 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.77:5082;branch=z9hG4bK-refresh-1\r\nMax-Forwards: 70\r\n\
        From: <sip:100@pbx>;tag=y\r\nTo: <sip:a@b>;tag=x\r\nCall-ID: leg-b-1\r\n\
        CSeq: 7 UPDATE\r\nContent-Length: 0\r\n\r\n";
    assert!(net.input(TRUNK, refresh).is_empty());
    assert!(matches!(
        net.proxy.poll_event(),
        Some(ProxyEvent::CallMessage {
            from_upstream: true,
            call: 1,
            ..
        })
    ));
    net.proxy.detach_call("call-z9hG4bKsc");
    // Detached: a late BYE is an ordinary request again (forwarded upstream).
    let out = net.input(TRUNK, &bye.replace("CSeq: 2 BYE", "CSeq: 3 BYE"));
    assert_eq!(out[0].0.addr, PBX.parse().unwrap());
}

#[test]
fn withheld_calls_from_a_skip_from_source_pass_through_marked_skipped() {
    let mut cfg = config();
    cfg.screen_calls = true;
    cfg.skip_screening_from = vec![TRUNK
        .parse::<std::net::SocketAddr>()
        .map(|a| ipnet::IpNet::from(a.ip()))
        .unwrap()];
    let mut net = Net::new(cfg);
    let inv = invite(
        "<sip:anonymous@anonymous.invalid>",
        "Privacy: id\r\n",
        "z9hG4bKskip",
    );
    let out = net.input(TRUNK, &inv);
    let fwd = out
        .iter()
        .find(|(to, m)| to.addr == PBX.parse().unwrap() && m.method() == Some("INVITE"))
        .map(|(_, m)| m.clone())
        .expect("forwarded to the PBX, not screened");
    assert_eq!(fwd.header("x-scamscreen-verdict"), Some("skipped"));
    assert_eq!(fwd.header("x-scamscreen-caller"), Some("withheld"));
    assert!(std::iter::from_fn(|| net.proxy.poll_event())
        .all(|e| !matches!(e, ProxyEvent::ScreenCall { .. })));
}
