//! Screened calls on a virtual clock: every stage, hang-ups from either side, timeouts.

use super::*;
use crate::sip::msg::SipMessage;
use crate::sip::proxy::Peer;
use crate::sip::transaction::TimerConfig;
use bytes::Bytes;
use std::time::{Duration, Instant};

const CALLER: &str = "192.0.2.10:5060";
const PBX: &str = "192.0.2.20:5080";

fn cfg() -> CallConfig {
    CallConfig {
        upstream: Peer::udp(PBX.parse().unwrap()),
        divert_uri: None,
        local_host: "192.0.2.1:5060".into(),
        listen: Duration::from_secs(8),
        screening_timeout: Duration::from_secs(3),
        fail_open: true,
        ring_timeout: Duration::from_secs(60),
        timers: TimerConfig::default(),
    }
}

const INVITE: &str = "INVITE sip:100@pbx.example SIP/2.0\r\n\
    Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKinv1\r\n\
    Max-Forwards: 69\r\n\
    From: \"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=caller1\r\n\
    To: <sip:100@pbx.example>\r\nCall-ID: call-a\r\nCSeq: 1 INVITE\r\n\
    Contact: <sip:trunk@192.0.2.10:5060>\r\nPrivacy: id\r\n\
    Content-Type: application/sdp\r\nContent-Length: 3\r\n\r\nv=0";

struct T {
    call: ScreenedCall,
    t0: Instant,
    now: Instant,
}

impl T {
    fn new(cfg: CallConfig) -> T {
        let t0 = Instant::now();
        let invite = SipMessage::parse(INVITE.as_bytes()).unwrap();
        let call = ScreenedCall::answer(
            t0,
            7,
            &invite,
            Peer::udp(CALLER.parse().unwrap()),
            cfg,
            Bytes::from_static(b"v=0 (answer for the caller)"),
            Bytes::from_static(b"v=0 (offer for the callee)"),
        );
        T { call, t0, now: t0 }
    }

    fn actions(&mut self) -> Vec<CallAction> {
        std::iter::from_fn(|| self.call.poll_action()).collect()
    }

    fn input(&mut self, i: CallInput) -> Vec<CallAction> {
        self.call.handle_input(self.now, i);
        self.actions()
    }

    fn at(&mut self, ms: u64) {
        self.now = self.t0 + Duration::from_millis(ms);
    }

    /// Advance to `ms`, firing timers; collect what happened.
    fn run_until(&mut self, ms: u64) -> Vec<CallAction> {
        let end = self.t0 + Duration::from_millis(ms);
        let mut out = Vec::new();
        while let Some(t) = self.call.poll_timeout() {
            if t > end {
                break;
            }
            self.now = self.now.max(t);
            self.call.handle_timeout(self.now);
            out.extend(self.actions());
        }
        self.now = end;
        out
    }
}

fn sent(actions: &[CallAction]) -> Vec<(String, SipMessage)> {
    actions
        .iter()
        .filter_map(|a| match a {
            CallAction::Send { to, bytes } => {
                Some((to.addr.to_string(), SipMessage::parse(bytes).unwrap()))
            }
            _ => None,
        })
        .collect()
}

fn caller_request(method: &str, cseq: u32) -> SipMessage {
    SipMessage::parse(
        format!(
            "{method} sip:scamscreen@192.0.2.1:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK{method}{cseq}\r\n\
             From: \"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=caller1\r\n\
             To: <sip:100@pbx.example>;tag=ss7a\r\nCall-ID: call-a\r\nCSeq: {cseq} {method}\r\n\
             Content-Length: 0\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap()
}

/// A response from the PBX to a request we sent it.
fn pbx_response(req: &SipMessage, status: u16) -> SipMessage {
    let mut r = crate::sip::proxy::response_for_tests(req, status, "pbx-tag");
    if (200..300).contains(&status) && req.method() == Some("INVITE") {
        r.push_header("Contact", "<sip:100@192.0.2.20:5080>");
        r.set_body(Bytes::from_static(b"v=0 (callee answer)"));
    }
    r
}

fn verdict(action: ScreeningAction) -> ScreeningResult {
    ScreeningResult {
        action,
        score: match action {
            ScreeningAction::Divert => 0.97,
            ScreeningAction::Warn => 0.7,
            _ => 0.05,
        },
        transcript: "hello".into(),
        reason: "test".into(),
        warning: (action == ScreeningAction::Warn)
            .then(|| "Warning: the caller claims to be Microsoft.".to_string()),
        reasons: Vec::new(),
    }
}

/// Answer, greeting, listening, screening → returns the actions after the verdict.
fn screen(t: &mut T, action: ScreeningAction) -> Vec<CallAction> {
    let first = t.actions();
    let to_caller = sent(&first);
    assert_eq!(to_caller[0].1.status(), Some(100));
    assert_eq!(to_caller[1].1.status(), Some(200));
    assert_eq!(to_caller[1].0, CALLER);
    assert_eq!(
        to_caller[1].1.body().as_ref(),
        b"v=0 (answer for the caller)"
    );
    assert!(first.contains(&CallAction::PlayPrompt {
        leg: Leg::A,
        prompt: Prompt::Greeting
    }));
    t.at(100);
    assert!(t
        .input(CallInput::FromCaller(caller_request("ACK", 1)))
        .is_empty());
    t.at(3000);
    let a = t.input(CallInput::PromptFinished(Leg::A));
    assert_eq!(
        a,
        vec![CallAction::StartListening {
            max: Duration::from_secs(8)
        }]
    );
    t.at(7000);
    assert_eq!(t.input(CallInput::SpeechCaptured), vec![CallAction::Screen]);
    t.at(7400);
    t.input(CallInput::Screened(Ok(verdict(action))))
}

#[test]
fn scam_is_blocked_and_the_callee_never_rings() {
    let mut t = T::new(cfg());
    let a = screen(&mut t, ScreeningAction::Divert);
    assert_eq!(
        a,
        vec![CallAction::PlayPrompt {
            leg: Leg::A,
            prompt: Prompt::Block
        }]
    );
    t.at(12_000);
    let a = t.input(CallInput::PromptFinished(Leg::A));
    let out = sent(&a);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, CALLER);
    let bye = &out[0].1;
    assert_eq!(bye.method(), Some("BYE"));
    assert_eq!(bye.request_uri(), Some("sip:trunk@192.0.2.10:5060"));
    let ok = pbx_response(bye, 200);
    let a = t.input(CallInput::FromCaller(ok));
    match a.last() {
        Some(CallAction::Finished(r)) => {
            assert_eq!(r.outcome, CallOutcome::Blocked);
            assert_eq!(r.time_to_verdict, Some(Duration::from_millis(400)));
            assert_eq!(r.listen, Some(Duration::from_secs(4)));
            // Answer → verdict includes the 3 s greeting.
            assert_eq!(r.screening, Some(Duration::from_millis(7400)));
            assert_eq!(r.result.as_ref().unwrap().action, ScreeningAction::Divert);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(t.call.stage(), Stage::Ended);
}

#[test]
fn legit_call_rings_the_callee_with_verdict_headers_then_bridges() {
    let mut t = T::new(cfg());
    let a = screen(&mut t, ScreeningAction::Allow);
    let out = sent(&a);
    assert_eq!(out.len(), 1);
    let (to, inv) = &out[0];
    assert_eq!(to, PBX);
    assert_eq!(inv.method(), Some("INVITE"));
    assert_eq!(inv.request_uri(), Some("sip:100@pbx.example"));
    assert_eq!(inv.header("x-scamscreen-verdict"), Some("allow"));
    assert_eq!(inv.header("x-scamscreen-score"), Some("0.05"));
    assert_eq!(inv.header("x-scamscreen-caller"), Some("withheld"));
    assert_ne!(
        inv.header("call-id"),
        Some("call-a"),
        "leg B has its own Call-ID"
    );
    assert_eq!(inv.body().as_ref(), b"v=0 (offer for the callee)");
    let inv = inv.clone();

    t.at(7500);
    let a = t.input(CallInput::FromCallee(pbx_response(&inv, 180)));
    assert_eq!(a, vec![CallAction::Ringback(true)]);
    t.at(9000);
    let a = t.input(CallInput::FromCallee(pbx_response(&inv, 200)));
    let out = sent(&a);
    assert_eq!(out[0].1.method(), Some("ACK"));
    assert_eq!(out[0].1.request_uri(), Some("sip:100@192.0.2.20:5080"));
    assert!(a.contains(&CallAction::Ringback(false)));
    assert!(a.contains(&CallAction::CalleeSdp(Bytes::from_static(
        b"v=0 (callee answer)"
    ))));
    assert_eq!(a.last(), Some(&CallAction::Bridge));
    assert_eq!(t.call.stage(), Stage::Bridged);

    // A retransmitted 200 is ACKed again, nothing else happens.
    let a = t.input(CallInput::FromCallee(pbx_response(&inv, 200)));
    assert_eq!(sent(&a).len(), 1);

    // The caller hangs up: 200 to the caller, BYE to the callee.
    t.at(60_000);
    let a = t.input(CallInput::FromCaller(caller_request("BYE", 2)));
    let out = sent(&a);
    assert_eq!(out[0].1.status(), Some(200));
    assert_eq!(out[1].0, PBX);
    assert_eq!(out[1].1.method(), Some("BYE"));
    let a = t.input(CallInput::FromCallee(pbx_response(&out[1].1, 200)));
    match a.last() {
        Some(CallAction::Finished(r)) => assert_eq!(r.outcome, CallOutcome::Connected),
        other => panic!("{other:?}"),
    }
}

#[test]
fn warned_call_plays_the_warning_to_the_callee_first() {
    let mut t = T::new(cfg());
    let a = screen(&mut t, ScreeningAction::Warn);
    let inv = sent(&a)[0].1.clone();
    assert_eq!(inv.header("x-scamscreen-verdict"), Some("warn"));
    let a = t.input(CallInput::FromCallee(pbx_response(&inv, 200)));
    assert_eq!(
        a.last(),
        Some(&CallAction::PlayPrompt {
            leg: Leg::B,
            prompt: Prompt::Warning("Warning: the caller claims to be Microsoft.".into())
        })
    );
    assert_eq!(t.call.stage(), Stage::Warning);
    let a = t.input(CallInput::PromptFinished(Leg::B));
    assert_eq!(a, vec![CallAction::Bridge]);
}

#[test]
fn caller_hangs_up_while_listening_nothing_reaches_the_callee() {
    let mut t = T::new(cfg());
    t.actions();
    t.input(CallInput::FromCaller(caller_request("ACK", 1)));
    t.input(CallInput::PromptFinished(Leg::A));
    t.at(4000);
    let a = t.input(CallInput::FromCaller(caller_request("BYE", 2)));
    let out = sent(&a);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1.status(), Some(200));
    match a.last() {
        Some(CallAction::Finished(r)) => {
            assert_eq!(r.outcome, CallOutcome::CallerHungUp);
            assert!(r.result.is_none());
            assert_eq!(r.screening, None);
        }
        other => panic!("{other:?}"),
    }
    // A late verdict is ignored.
    assert!(t
        .input(CallInput::Screened(Ok(verdict(ScreeningAction::Allow))))
        .is_empty());
}

#[test]
fn caller_hangs_up_while_the_callee_rings_cancel_goes_upstream() {
    let mut t = T::new(cfg());
    let a = screen(&mut t, ScreeningAction::Allow);
    let inv = sent(&a)[0].1.clone();
    t.input(CallInput::FromCallee(pbx_response(&inv, 180)));
    let a = t.input(CallInput::FromCaller(caller_request("BYE", 2)));
    let out = sent(&a);
    let cancel = out
        .iter()
        .find(|(_, m)| m.method() == Some("CANCEL"))
        .unwrap();
    assert_eq!(cancel.0, PBX);
    assert_eq!(cancel.1.header("cseq"), Some("1 CANCEL"));
    assert_eq!(cancel.1.header("via"), inv.header("via"));
    t.input(CallInput::FromCallee(pbx_response(&cancel.1, 200)));
    let a = t.input(CallInput::FromCallee(pbx_response(&inv, 487)));
    let out = sent(&a);
    assert_eq!(out[0].1.method(), Some("ACK"));
    // Finished (resources free) at once; the object lingers for Timer D's retransmissions.
    match a.last() {
        Some(CallAction::Finished(r)) => assert_eq!(r.outcome, CallOutcome::CallerHungUp),
        other => panic!("{other:?}"),
    }
    assert!(!t.call.is_done());
    let late = t.run_until(120_000);
    assert!(late.is_empty(), "{late:?}");
    assert!(t.call.is_done());
}

#[test]
fn busy_callee_ends_the_call() {
    let mut t = T::new(cfg());
    let a = screen(&mut t, ScreeningAction::Allow);
    let inv = sent(&a)[0].1.clone();
    let a = t.input(CallInput::FromCallee(pbx_response(&inv, 486)));
    let out = sent(&a);
    assert!(out
        .iter()
        .any(|(to, m)| to == PBX && m.method() == Some("ACK")));
    let bye = out.iter().find(|(_, m)| m.method() == Some("BYE")).unwrap();
    assert_eq!(bye.0, CALLER);
    let a = t.input(CallInput::FromCaller(pbx_response(&bye.1, 200)));
    match a.last() {
        Some(CallAction::Finished(r)) => assert_eq!(r.outcome, CallOutcome::CalleeFailed(486)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn missing_ack_retransmits_the_200_then_gives_up_with_bye() {
    let mut t = T::new(cfg());
    t.actions();
    let a = t.run_until(40_000);
    let out = sent(&a);
    let times = out.iter().filter(|(_, m)| m.status() == Some(200)).count();
    assert!(times >= 6, "200 retransmitted {times} times");
    assert!(out
        .iter()
        .any(|(to, m)| to == CALLER && m.method() == Some("BYE")));
}

#[test]
fn screening_timeout_fails_open_with_unscreened_verdict() {
    let mut t = T::new(cfg());
    t.actions();
    t.input(CallInput::FromCaller(caller_request("ACK", 1)));
    t.input(CallInput::PromptFinished(Leg::A));
    t.at(5000);
    t.input(CallInput::SpeechCaptured);
    let a = t.run_until(9000);
    let inv = sent(&a)
        .into_iter()
        .find(|(_, m)| m.method() == Some("INVITE"))
        .expect("callee rung");
    assert_eq!(inv.1.header("x-scamscreen-verdict"), Some("unscreened"));

    // fail_open = false: the same call is blocked instead.
    let mut c = cfg();
    c.fail_open = false;
    let mut t = T::new(c);
    t.actions();
    t.input(CallInput::FromCaller(caller_request("ACK", 1)));
    t.input(CallInput::PromptFinished(Leg::A));
    t.input(CallInput::SpeechCaptured);
    let a = t.input(CallInput::Screened(Err("ASR queue full".into())));
    assert_eq!(
        a,
        vec![CallAction::PlayPrompt {
            leg: Leg::A,
            prompt: Prompt::Block
        }]
    );
}

#[test]
fn divert_uri_sends_the_scam_to_voicemail_through_the_upstream() {
    let mut c = cfg();
    c.divert_uri = Some("sip:voicemail@pbx.example".into());
    let mut t = T::new(c);
    let a = screen(&mut t, ScreeningAction::Divert);
    let (to, inv) = &sent(&a)[0];
    assert_eq!(to, PBX);
    assert_eq!(inv.request_uri(), Some("sip:voicemail@pbx.example"));
    assert_eq!(inv.header("x-scamscreen-verdict"), Some("divert"));
}

#[test]
fn reinvite_and_options_in_dialog_are_answered() {
    let mut t = T::new(cfg());
    t.actions();
    t.input(CallInput::FromCaller(caller_request("ACK", 1)));
    let a = t.input(CallInput::FromCaller(caller_request("INVITE", 2)));
    let out = sent(&a);
    assert_eq!(out[0].1.status(), Some(200));
    assert_eq!(out[0].1.body().as_ref(), b"v=0 (answer for the caller)");
    let a = t.input(CallInput::FromCaller(caller_request("OPTIONS", 3)));
    assert_eq!(sent(&a)[0].1.status(), Some(200));
    let a = t.input(CallInput::FromCaller(caller_request("SUBSCRIBE", 4)));
    assert_eq!(sent(&a)[0].1.status(), Some(405));
}

#[test]
fn cancel_waits_for_the_callees_first_provisional() {
    let mut t = T::new(cfg());
    let a = screen(&mut t, ScreeningAction::Allow);
    let inv = sent(&a)[0].1.clone();
    // The caller leaves before the PBX said anything: no CANCEL yet (RFC 3261 §9.1).
    let a = t.input(CallInput::FromCaller(caller_request("BYE", 2)));
    assert!(sent(&a).iter().all(|(_, m)| m.method() != Some("CANCEL")));
    let a = t.input(CallInput::FromCallee(pbx_response(&inv, 100)));
    let out = sent(&a);
    assert!(out
        .iter()
        .any(|(to, m)| to == PBX && m.method() == Some("CANCEL")));
}
