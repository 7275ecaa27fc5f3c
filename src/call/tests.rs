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
        max_listen: Duration::from_secs(30),
        no_speech: Duration::from_secs(5),
        early_verdict: false,
        follow_up: false,
        silent_action: SilentAction::Divert,
        message: Duration::ZERO,
        callee_choice: Duration::from_secs(8),
        callee_default_accept: true,
        bypass_code: None,
        screening_timeout: Duration::from_secs(3),
        fail_open: true,
        ring_timeout: Duration::from_secs(60),
        timers: TimerConfig::default(),
        language: "en".into(),
        second_pass: false,
        device: None,
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
    call: CallSession,
    t0: Instant,
    now: Instant,
    /// RTP timestamp of the caller's next audio frame.
    ts: u32,
    /// When the last `talk_until_screened` saw the end of speech (ms).
    speech_end_ms: u64,
}

/// [`INVITE`] with extra header lines (each ending in CRLF).
fn invite_with(extra: &str) -> String {
    INVITE.replacen("Content-Type:", &format!("{extra}Content-Type:"), 1)
}

impl T {
    fn new(cfg: CallConfig) -> T {
        T::with_invite(cfg, INVITE)
    }

    fn with_invite(cfg: CallConfig, invite: &str) -> T {
        let t0 = Instant::now();
        let invite = SipMessage::parse(invite.as_bytes()).unwrap();
        let call = CallSession::answer(
            t0,
            7,
            &invite,
            Peer::udp(CALLER.parse().unwrap()),
            cfg,
            Bytes::from_static(b"v=0 (answer for the caller)"),
            Bytes::from_static(b"v=0 (offer for the callee)"),
        );
        T {
            call,
            t0,
            now: t0,
            ts: 1000,
            speech_end_ms: 0,
        }
    }

    fn ms(&self) -> u64 {
        self.now.saturating_duration_since(self.t0).as_millis() as u64
    }

    /// `ms` of the caller's audio, voiced or silent, one 20 ms frame at a time on the
    /// virtual clock (timers fire as they come due); what the call did meanwhile.
    fn audio(&mut self, voiced: bool, ms: u64) -> Vec<CallAction> {
        let mut out = Vec::new();
        for _ in 0..ms / 20 {
            let from = self.ts as usize;
            let samples = if voiced {
                crate::media::tap::test_vowel(from, 160)
            } else {
                vec![0; 160]
            };
            self.ts = self.ts.wrapping_add(160);
            self.now += Duration::from_millis(20);
            out.extend(self.fire_timers());
            let frame = crate::media::tap::AudioFrame {
                samples,
                rtp_timestamp: self.ts,
                received: self.now,
            };
            if self.call.wants_audio() {
                out.extend(self.input(CallInput::CallerAudio(frame)));
            }
        }
        out
    }

    fn fire_timers(&mut self) -> Vec<CallAction> {
        let mut out = Vec::new();
        while let Some(t) = self.call.poll_timeout() {
            if t > self.now {
                break;
            }
            self.call.handle_timeout(self.now);
            out.extend(self.actions());
        }
        out
    }

    /// Silence until the call asks for a transcription (end of speech); its job and kind.
    fn until_transcribe(&mut self) -> (u64, JobKind, Vec<CallAction>) {
        for _ in 0..1000 {
            let a = self.audio(false, 20);
            if let Some((job, kind)) = transcribe_of(&a) {
                self.speech_end_ms = self.ms();
                return (job, kind, a);
            }
        }
        panic!("no transcription asked for");
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

/// The job and kind of the (last) `Transcribe` among `actions`.
fn transcribe_of(actions: &[CallAction]) -> Option<(u64, JobKind)> {
    actions.iter().rev().find_map(|a| match a {
        CallAction::Transcribe { job, kind, .. } => Some((*job, *kind)),
        _ => None,
    })
}

fn transcribed(job: u64, r: ScreeningResult) -> CallInput {
    CallInput::Transcribed { job, result: Ok(r) }
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
    Req::caller(method, cseq).build()
}

/// A request from one of the peers, with every field a test may want to get wrong.
struct Req {
    method: String,
    cseq: u32,
    branch: String,
    call_id: String,
    from: String,
    to: String,
    extra: String,
    body: String,
}

impl Req {
    /// From the caller, in leg A's dialog (From tag `caller1`, To tag `ss7a`).
    fn caller(method: &str, cseq: u32) -> Req {
        Req {
            method: method.into(),
            cseq,
            branch: format!("z9hG4bK{method}{cseq}"),
            call_id: "call-a".into(),
            from: "\"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=caller1".into(),
            to: "<sip:100@pbx.example>;tag=ss7a".into(),
            extra: String::new(),
            body: String::new(),
        }
    }

    /// From the PBX, in leg B's dialog (From tag `pbx-tag`, To tag `ss7b`).
    fn callee(method: &str, cseq: u32, call_id: &str) -> Req {
        Req {
            method: method.into(),
            cseq,
            branch: format!("z9hG4bKpbx{method}{cseq}"),
            call_id: call_id.into(),
            from: "<sip:100@pbx.example>;tag=pbx-tag".into(),
            to: "\"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=ss7b".into(),
            extra: String::new(),
            body: String::new(),
        }
    }

    fn from(mut self, from: &str) -> Req {
        self.from = from.into();
        self
    }

    fn to(mut self, to: &str) -> Req {
        self.to = to.into();
        self
    }

    fn branch(mut self, branch: &str) -> Req {
        self.branch = branch.into();
        self
    }

    fn header(mut self, line: &str) -> Req {
        self.extra.push_str(line);
        self.extra.push_str("\r\n");
        self
    }

    fn sdp(mut self, body: &str) -> Req {
        self.body = body.into();
        self.header("Content-Type: application/sdp")
    }

    fn build(&self) -> SipMessage {
        let Req {
            method,
            cseq,
            branch,
            call_id,
            from,
            to,
            extra,
            body,
        } = self;
        let text = format!(
            "{method} sip:scamscreen@192.0.2.1:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.10:5060;branch={branch}\r\n\
             From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n\
             Contact: <sip:trunk@192.0.2.10:5060>\r\n{extra}\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        SipMessage::parse(text.as_bytes()).unwrap()
    }
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
        more_speech: false,
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
    assert!(a.is_empty(), "{a:?}");
    assert!(t.call.wants_audio());
    // Two seconds of speech, then silence until the end of speech.
    assert!(transcribe_of(&t.audio(true, 2000)).is_none());
    let (job, kind, _) = t.until_transcribe();
    assert_eq!(kind, JobKind::Full);
    assert!(
        (5_900..=6_200).contains(&t.speech_end_ms),
        "{}",
        t.speech_end_ms
    );
    t.at(t.speech_end_ms + 400);
    t.input(transcribed(job, verdict(action)))
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
            assert_eq!(
                r.listen,
                Some(Duration::from_millis(t.speech_end_ms - 3000))
            );
            // Answer → verdict includes the 3 s greeting.
            assert_eq!(
                r.screening,
                Some(Duration::from_millis(t.speech_end_ms + 400))
            );
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
    // The test PBX's answer is no SDP: leg B's media is not usable.
    assert!(a.contains(&CallAction::CalleeMedia(None)));
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
            prompt: Prompt::Warning(format!(
                "Warning: the caller claims to be Microsoft. {}",
                super::language::texts("en").choice
            ))
        })
    );
    // The caller hears ringback while the callee hears the warning and chooses.
    assert!(a.contains(&CallAction::Ringback(true)));
    assert_eq!(t.call.stage(), Stage::Warning);
    let a = t.input(CallInput::PromptFinished(Leg::B));
    assert!(a.is_empty());
    assert_eq!(t.call.stage(), Stage::CalleeChoice);
    let a = t.input(CallInput::Dtmf {
        leg: Leg::B,
        digit: '1',
    });
    assert_eq!(a, vec![CallAction::Ringback(false), CallAction::Bridge]);
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
        .input(transcribed(1, verdict(ScreeningAction::Allow)))
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
    // The caller hears why, then the call ends.
    assert!(a.contains(&CallAction::PlayPrompt {
        leg: Leg::A,
        prompt: Prompt::Unavailable
    }));
    assert!(!out.iter().any(|(_, m)| m.method() == Some("BYE")));
    let a = t.input(CallInput::PromptFinished(Leg::A));
    let out = sent(&a);
    let bye = out.iter().find(|(_, m)| m.method() == Some("BYE")).unwrap();
    assert_eq!(bye.0, CALLER);
    let a = t.input(CallInput::FromCaller(pbx_response(&bye.1, 200)));
    match a.last() {
        Some(CallAction::Finished(r)) => assert_eq!(r.outcome, CallOutcome::CalleeFailed(486)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_callee_that_never_answers_is_announced_and_the_caller_may_hang_up_on_it() {
    let mut t = T::new(cfg());
    let a = screen(&mut t, ScreeningAction::Allow);
    assert!(sent(&a).iter().any(|(_, m)| m.method() == Some("INVITE")));
    // The PBX went down: the call layer is told while our INVITE is unanswered.
    let a = t.input(CallInput::CalleeUnreachable);
    assert!(a.contains(&CallAction::Ringback(false)));
    assert!(a.contains(&CallAction::PlayPrompt {
        leg: Leg::A,
        prompt: Prompt::Unavailable
    }));
    // The caller hangs up during the announcement: the record keeps the callee's failure.
    let a = t.input(CallInput::FromCaller(caller_request("BYE", 2)));
    let a = if a.iter().any(|x| matches!(x, CallAction::Finished(_))) {
        a
    } else {
        let later = t.ms() + 40_000;
        t.run_until(later)
    };
    match a.iter().find(|x| matches!(x, CallAction::Finished(_))) {
        Some(CallAction::Finished(r)) => assert_eq!(r.outcome, CallOutcome::CalleeFailed(503)),
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
    t.audio(true, 2000);
    let (job, _, _) = t.until_transcribe();
    let end = t.speech_end_ms;
    let a = t.run_until(end + 3_100);
    // The late job is cancelled and the audio queued again, without a deadline, for the
    // record.
    assert!(a.contains(&CallAction::CancelTranscription(job)));
    let (late, kind) = transcribe_of(&a).expect("transcribed afterwards");
    assert_eq!(kind, JobKind::Afterwards);
    let inv = sent(&a)
        .into_iter()
        .find(|(_, m)| m.method() == Some("INVITE"))
        .expect("callee rung");
    assert_eq!(inv.1.header("x-scamscreen-verdict"), Some("unscreened"));
    assert_eq!(
        inv.1.header("x-scamscreen-reason"),
        Some("unscreened: ASR timed out")
    );
    // The callee is busy and the call ends before the afterwards transcript: media is
    // released at once, the record waits for the transcript.
    t.input(CallInput::FromCallee(pbx_response(&inv.1, 486)));
    let a = t.input(CallInput::PromptFinished(Leg::A));
    let bye = sent(&a)
        .into_iter()
        .find(|(_, m)| m.method() == Some("BYE"))
        .expect("BYE to the caller");
    let a = t.input(CallInput::FromCaller(pbx_response(&bye.1, 200)));
    assert!(a.contains(&CallAction::ReleaseMedia), "{a:?}");
    assert!(!a.iter().any(|x| matches!(x, CallAction::Finished(_))));
    assert!(t.call.poll_timeout().is_some());
    let mut heard = verdict(ScreeningAction::Warn);
    heard.transcript = "this is microsoft support".into();
    let a = t.input(transcribed(late, heard));
    match a.last() {
        Some(CallAction::Finished(r)) => {
            assert_eq!(
                r.result.as_ref().unwrap().action,
                ScreeningAction::Unscreened
            );
            assert_eq!(
                r.afterwards.as_ref().unwrap().transcript,
                "this is microsoft support"
            );
        }
        other => panic!("{other:?}"),
    }

    // fail_open = false: the same call is blocked instead.
    let mut c = cfg();
    c.fail_open = false;
    let mut t = T::new(c);
    t.actions();
    t.input(CallInput::FromCaller(caller_request("ACK", 1)));
    t.input(CallInput::PromptFinished(Leg::A));
    t.audio(true, 2000);
    let (job, _, _) = t.until_transcribe();
    let a = t.input(CallInput::Transcribed {
        job,
        result: Err(AsrFailure::Overloaded),
    });
    assert_eq!(
        a.last(),
        Some(&CallAction::PlayPrompt {
            leg: Leg::A,
            prompt: Prompt::Block
        })
    );
    assert_eq!(transcribe_of(&a).map(|j| j.1), Some(JobKind::Afterwards));
}

#[test]
fn asr_that_cannot_make_the_deadline_fails_open_at_once() {
    let mut t = T::new(cfg());
    t.actions();
    t.input(CallInput::FromCaller(caller_request("ACK", 1)));
    t.input(CallInput::PromptFinished(Leg::A));
    t.audio(true, 2000);
    let (job, _, _) = t.until_transcribe();
    // Answered at once, well before screening_timeout: the callee rings now, not in 3 s.
    let a = t.input(CallInput::Transcribed {
        job,
        result: Err(AsrFailure::CannotMakeIt),
    });
    let inv = sent(&a)
        .into_iter()
        .find(|(_, m)| m.method() == Some("INVITE"))
        .expect("callee rung at once");
    assert_eq!(inv.1.header("x-scamscreen-verdict"), Some("unscreened"));
    assert_eq!(
        inv.1.header("x-scamscreen-reason"),
        Some("unscreened: ASR cannot make the deadline")
    );
    // The audio is still transcribed for the record.
    assert_eq!(transcribe_of(&a).map(|j| j.1), Some(JobKind::Afterwards));
}

/// Up to the first pass's verdict with the second pass on; returns the second job.
fn first_pass(t: &mut T, first: ScreeningResult) -> (u64, Vec<CallAction>) {
    t.actions();
    t.input(CallInput::FromCaller(caller_request("ACK", 1)));
    t.input(CallInput::PromptFinished(Leg::A));
    t.audio(true, 2000);
    let (job, kind, _) = t.until_transcribe();
    assert_eq!(kind, JobKind::Full);
    t.at(t.speech_end_ms + 400);
    let a = t.input(transcribed(job, first));
    let (second, kind) = transcribe_of(&a).expect("a second pass");
    assert_eq!(kind, JobKind::Second);
    assert!(sent(&a).is_empty(), "nothing decided yet: {a:?}");
    (second, a)
}

#[test]
fn second_pass_hears_an_open_verdict_again_and_its_verdict_counts() {
    let mut c = cfg();
    c.second_pass = true;
    let mut t = T::new(c);
    let (second, a) = first_pass(&mut t, verdict(ScreeningAction::Warn));
    // It shares the first pass's deadline: end of speech + screening_timeout.
    let deadline = a.iter().find_map(|x| match x {
        CallAction::Transcribe { deadline, .. } => *deadline,
        _ => None,
    });
    let at = deadline
        .expect("a deadline")
        .duration_since(t.t0)
        .as_millis() as u64;
    assert!(
        at.abs_diff(t.speech_end_ms + 3_000) <= 20,
        "{at} vs {}",
        t.speech_end_ms
    );
    // The bigger model heard the request the small one missed: divert.
    t.at(t.speech_end_ms + 1_500);
    let a = t.input(transcribed(second, verdict(ScreeningAction::Divert)));
    assert_eq!(
        a.last(),
        Some(&CallAction::PlayPrompt {
            leg: Leg::A,
            prompt: Prompt::Block
        })
    );
}

#[test]
fn a_late_or_failed_second_pass_leaves_the_first_verdict() {
    let mut c = cfg();
    c.second_pass = true;
    // Late: at the deadline the first verdict (warn) is acted on, the second cancelled.
    let mut t = T::new(c.clone());
    let (second, _) = first_pass(&mut t, verdict(ScreeningAction::Warn));
    let end = t.speech_end_ms;
    let a = t.run_until(end + 3_100);
    assert!(a.contains(&CallAction::CancelTranscription(second)));
    let inv = sent(&a)
        .into_iter()
        .find(|(_, m)| m.method() == Some("INVITE"))
        .expect("callee rung with the first verdict");
    assert_eq!(inv.1.header("x-scamscreen-verdict"), Some("warn"));
    // Failed (the model is busy): the first verdict at once.
    let mut t = T::new(c.clone());
    let (second, _) = first_pass(&mut t, verdict(ScreeningAction::Warn));
    let a = t.input(CallInput::Transcribed {
        job: second,
        result: Err(AsrFailure::CannotMakeIt),
    });
    let inv = sent(&a)
        .into_iter()
        .find(|(_, m)| m.method() == Some("INVITE"))
        .expect("callee rung with the first verdict");
    assert_eq!(inv.1.header("x-scamscreen-verdict"), Some("warn"));
    // A clear verdict (allow with nothing open) is not heard twice.
    let mut t = T::new(c);
    t.actions();
    t.input(CallInput::FromCaller(caller_request("ACK", 1)));
    t.input(CallInput::PromptFinished(Leg::A));
    t.audio(true, 2000);
    let (job, _, _) = t.until_transcribe();
    let a = t.input(transcribed(job, verdict(ScreeningAction::Allow)));
    assert!(transcribe_of(&a).is_none(), "{a:?}");
    assert_eq!(sent(&a)[0].1.header("x-scamscreen-verdict"), Some("allow"));
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

// ---- RFC 3261 §8.2 / §12.2.2: requests the call must not act on ----------------------------

mod dialog_checks;
mod flows;
