//! The screening flows on a virtual clock: listening extended by the detector, early
//! divert, silent callers, the follow-up question, the callee's choice, the message, the
//! bypass code, hang-ups at every stage. Audio is a synthetic voice fed frame by frame;
//! transcriptions are answered by hand.

use super::*;
use crate::detect::{Category, Reason};

fn hit(rule: &str, at_ms: u64) -> Reason {
    Reason {
        rule: rule.into(),
        category: Category::Impersonation,
        weight: 2.0,
        explanation: rule.into(),
        matched: rule.into(),
        at_ms,
    }
}

fn open(action: ScreeningAction) -> ScreeningResult {
    ScreeningResult {
        more_speech: true,
        ..verdict(action)
    }
}

/// Answered, ACKed, greeting played at 3 s: the caller's turn.
fn listening(cfg: CallConfig) -> T {
    let mut t = T::new(cfg);
    t.actions();
    t.input(CallInput::FromCaller(caller_request("ACK", 1)));
    t.at(3000);
    t.input(CallInput::PromptFinished(Leg::A));
    assert_eq!(t.call.stage(), Stage::Listening);
    t
}

fn invite_of(actions: &[CallAction]) -> Option<SipMessage> {
    sent(actions)
        .into_iter()
        .find(|(_, m)| m.method() == Some("INVITE"))
        .map(|(_, m)| m)
}

fn plays(actions: &[CallAction], leg: Leg, prompt: Prompt) -> bool {
    actions.contains(&CallAction::PlayPrompt { leg, prompt })
}

/// End a call that is hanging up: answer our BYEs with 200 until the record comes.
fn finish(t: &mut T, mut actions: Vec<CallAction>) -> CallRecordDraft {
    for _ in 0..4 {
        if let Some(CallAction::Finished(r)) = actions.last() {
            return (**r).clone();
        }
        let byes: Vec<_> = sent(&actions)
            .into_iter()
            .filter(|(_, m)| m.method() == Some("BYE"))
            .collect();
        assert!(!byes.is_empty(), "no BYE and no record in {actions:?}");
        actions = Vec::new();
        for (to, bye) in byes {
            let ok = pbx_response(&bye, 200);
            actions.extend(if to == CALLER {
                t.input(CallInput::FromCaller(ok))
            } else {
                t.input(CallInput::FromCallee(ok))
            });
        }
    }
    panic!("no record: {actions:?}")
}

#[test]
fn a_caller_still_talking_at_the_window_is_heard_until_the_request() {
    let mut c = cfg();
    c.early_verdict = true;
    let mut t = listening(c);
    // 3 s of speech: the first partial look.
    let a = t.audio(true, 3100);
    let (p1, kind) = transcribe_of(&a).expect("partial look");
    assert_eq!(kind, JobKind::Partial);
    // A claim without a request yet: the verdict is open.
    let mut claim = open(ScreeningAction::Allow);
    claim.reasons = vec![hit("claims-company", 2_500)];
    assert!(t.input(transcribed(p1, claim)).is_empty());
    // Past the 8 s window the caller still talks: listening goes on.
    let a = t.audio(true, 6000);
    assert!(t.ms() > 11_000 + 500, "{}", t.ms());
    assert_eq!(t.call.stage(), Stage::Listening);
    let jobs: Vec<_> = a
        .iter()
        .filter_map(|x| match x {
            CallAction::Transcribe { job, kind, .. } => Some((*job, *kind)),
            _ => None,
        })
        .collect();
    assert!(!jobs.is_empty());
    assert!(jobs.iter().all(|(_, k)| *k == JobKind::Partial));
    // Each partial that leaves the verdict open keeps the call listening.
    let (p2, _) = jobs[0];
    assert!(t
        .input(transcribed(p2, open(ScreeningAction::Allow)))
        .is_empty());
    assert_eq!(t.call.stage(), Stage::Listening);
    // At 15 s into the turn the request comes: the next look diverts at once.
    let a = t.audio(true, 4000);
    let (p3, _) = transcribe_of(&a).expect("another look");
    let mut scam = verdict(ScreeningAction::Divert);
    scam.reasons = vec![hit("claims-company", 2_500), hit("remote-tool", 14_000)];
    let a = t.input(transcribed(p3, scam));
    assert!(plays(&a, Leg::A, Prompt::Block), "{a:?}");
    assert_eq!(t.call.stage(), Stage::Blocking);
    let a = t.input(CallInput::PromptFinished(Leg::A));
    let r = finish(&mut t, a);
    let result = r.result.expect("verdict");
    // Hit times are times in the call: the turn began 3 s after the answer.
    assert_eq!(result.reasons[1].at_ms, 17_000);
    assert!(r.listen.expect("listened") > Duration::from_secs(12));
}

#[test]
fn without_partial_looks_a_checkpoint_at_the_window_decides_whether_to_go_on() {
    // Clear at the window: stop there and act.
    let mut t = listening(cfg());
    let a = t.audio(true, 8_100);
    let (job, kind) = transcribe_of(&a).expect("checkpoint");
    assert_eq!(kind, JobKind::Checkpoint);
    assert_eq!(t.call.stage(), Stage::Listening);
    let mut dentist = verdict(ScreeningAction::Allow);
    dentist.reasons = vec![Reason {
        weight: -2.0,
        ..hit("legit-everyday", 4_000)
    }];
    let a = t.input(transcribed(job, dentist));
    let inv = invite_of(&a).expect("callee rung");
    assert_eq!(inv.header("x-scamscreen-verdict"), Some("allow"));

    // "No scam signals" over a few words is not clear while the caller talks on (the
    // recogniser may have garbled the claim); over enough words it is.
    let mut t = listening(cfg());
    let a = t.audio(true, 8_100);
    let (job, _) = transcribe_of(&a).unwrap();
    assert!(t
        .input(transcribed(job, verdict(ScreeningAction::Allow)))
        .is_empty());
    assert_eq!(t.call.stage(), Stage::Listening);
    let mut t = listening(cfg());
    let a = t.audio(true, 8_100);
    let (job, _) = transcribe_of(&a).unwrap();
    let mut long = verdict(ScreeningAction::Allow);
    long.transcript = "word ".repeat(crate::call::listen::NO_SIGNAL_WORDS);
    assert!(invite_of(&t.input(transcribed(job, long))).is_some());

    // Open at the window: keep listening until the caller stops, then the full verdict.
    let mut t = listening(cfg());
    let a = t.audio(true, 8_100);
    let (job, _) = transcribe_of(&a).unwrap();
    assert!(t
        .input(transcribed(job, open(ScreeningAction::Allow)))
        .is_empty());
    assert!(transcribe_of(&t.audio(true, 5_000)).is_none());
    let (job, kind, _) = t.until_transcribe();
    assert_eq!(kind, JobKind::Full);
    assert!(t.speech_end_ms > 14_000);
    let a = t.input(transcribed(job, verdict(ScreeningAction::Warn)));
    assert_eq!(
        invite_of(&a).unwrap().header("x-scamscreen-verdict"),
        Some("warn")
    );
}

#[test]
fn listening_ends_at_max_listen_however_long_the_caller_talks() {
    let mut c = cfg();
    c.max_listen = Duration::from_secs(20);
    let mut t = listening(c);
    let a = t.audio(true, 8_100);
    let (job, _) = transcribe_of(&a).unwrap();
    t.input(transcribed(job, open(ScreeningAction::Allow)));
    let a = t.audio(true, 12_000);
    let (job, kind) = transcribe_of(&a).expect("full at max_listen");
    assert_eq!(kind, JobKind::Full);
    assert!((22_900..=23_100).contains(&t.ms()), "{}", t.ms());
    let a = t.input(transcribed(job, open(ScreeningAction::Allow)));
    assert!(invite_of(&a).is_some());
}

#[test]
fn a_confident_partial_diverts_before_the_window() {
    let mut c = cfg();
    c.early_verdict = true;
    let mut t = listening(c);
    let a = t.audio(true, 3_100);
    let (job, _) = transcribe_of(&a).unwrap();
    let a = t.input(transcribed(job, verdict(ScreeningAction::Divert)));
    assert!(plays(&a, Leg::A, Prompt::Block));
    assert!(!t.call.wants_audio());
    let a = t.input(CallInput::PromptFinished(Leg::A));
    let r = finish(&mut t, a);
    assert_eq!(r.outcome, CallOutcome::Blocked);
    assert_eq!(r.time_to_verdict, Some(Duration::ZERO));
}

#[test]
fn a_silent_caller_is_reprompted_once_then_silent() {
    let mut t = listening(cfg());
    let a = t.audio(false, 5_100);
    assert!(plays(&a, Leg::A, Prompt::Reprompt), "{a:?}");
    assert_eq!(t.call.stage(), Stage::Prompting);
    t.at(11_000);
    t.input(CallInput::PromptFinished(Leg::A));
    let a = t.audio(false, 5_100);
    // silent_action "divert" without divert_uri: the block announcement.
    assert!(plays(&a, Leg::A, Prompt::Block), "{a:?}");
    let a = t.input(CallInput::PromptFinished(Leg::A));
    let r = finish(&mut t, a);
    assert_eq!(r.result.unwrap().action, ScreeningAction::Silent);
    assert_eq!(r.outcome, CallOutcome::Blocked);

    // silent_action "allow": the callee is rung, marked silent.
    let mut c = cfg();
    c.silent_action = SilentAction::Allow;
    let mut t = listening(c);
    t.audio(false, 5_100);
    t.input(CallInput::PromptFinished(Leg::A));
    let a = t.audio(false, 5_100);
    let inv = invite_of(&a).expect("callee rung");
    assert_eq!(inv.header("x-scamscreen-verdict"), Some("silent"));

    // With a divert_uri, "divert" sends it there.
    let mut c = cfg();
    c.divert_uri = Some("sip:voicemail@pbx.example".into());
    let mut t = listening(c);
    t.audio(false, 5_100);
    t.input(CallInput::PromptFinished(Leg::A));
    let inv = invite_of(&t.audio(false, 5_100)).expect("diverted");
    assert_eq!(inv.request_uri(), Some("sip:voicemail@pbx.example"));
    assert_eq!(inv.header("x-scamscreen-verdict"), Some("silent"));
}

#[test]
fn sound_without_words_counts_as_silence() {
    let mut t = listening(cfg());
    t.audio(true, 1_000);
    let (job, _, _) = t.until_transcribe();
    let mut nothing = verdict(ScreeningAction::Allow);
    nothing.transcript = " ".into();
    let a = t.input(transcribed(job, nothing));
    assert!(plays(&a, Leg::A, Prompt::Reprompt), "{a:?}");
}

#[test]
fn the_follow_up_question_is_asked_once_and_both_answers_scored_together() {
    let mut c = cfg();
    c.follow_up = true;
    let mut t = listening(c);
    t.audio(true, 2_000);
    let (job, _, first) = t.until_transcribe();
    let first_len = match first
        .iter()
        .find(|a| matches!(a, CallAction::Transcribe { .. }))
    {
        Some(CallAction::Transcribe { pcm, .. }) => pcm.len(),
        _ => unreachable!(),
    };
    let a = t.input(transcribed(job, open(ScreeningAction::Allow)));
    assert!(plays(&a, Leg::A, Prompt::FollowUp), "{a:?}");
    let asked_at = t.ms();
    t.at(asked_at + 4_000);
    t.input(CallInput::PromptFinished(Leg::A));
    let second_turn_ms = t.ms();
    t.audio(true, 2_000);
    let (job, kind, a) = t.until_transcribe();
    assert_eq!(kind, JobKind::Full);
    let len = match a
        .iter()
        .find(|a| matches!(a, CallAction::Transcribe { .. }))
    {
        Some(CallAction::Transcribe { pcm, .. }) => pcm.len(),
        _ => unreachable!(),
    };
    assert!(
        len > first_len * 2 - 8_000,
        "both turns: {len} vs {first_len}"
    );
    // A hit in the second answer carries its time in the call.
    let mut r = open(ScreeningAction::Warn);
    let into_job = first_len as u64 / 8 + 400 + 500;
    r.reasons = vec![hit("remote-tool", into_job)];
    let a = t.input(transcribed(job, r));
    // Asked once only: the open verdict is acted on.
    let inv = invite_of(&a).expect("callee rung");
    assert_eq!(inv.header("x-scamscreen-verdict"), Some("warn"));
    let at = second_turn_ms + 500;
    assert_eq!(
        inv.header("x-scamscreen-reason").map(str::to_string),
        Some(format!("remote-tool@{:.1}s", at as f64 / 1000.0))
    );
}

fn warned(cfg: CallConfig) -> (T, SipMessage) {
    let mut t = T::new(cfg);
    let a = screen(&mut t, ScreeningAction::Warn);
    let inv = sent(&a)[0].1.clone();
    t.input(CallInput::FromCallee(pbx_response(&inv, 200)));
    assert_eq!(t.call.stage(), Stage::Warning);
    (t, inv)
}

#[test]
fn the_warned_callee_pressing_2_is_never_bridged() {
    let (mut t, _) = warned(cfg());
    // Keys count while the warning still plays: it stops.
    let a = t.input(CallInput::Dtmf {
        leg: Leg::B,
        digit: '2',
    });
    assert!(a.contains(&CallAction::StopPrompt(Leg::B)));
    assert!(!a.contains(&CallAction::Bridge));
    let bye = sent(&a)
        .into_iter()
        .find(|(to, _)| to == PBX)
        .expect("BYE to B");
    assert_eq!(bye.1.method(), Some("BYE"));
    assert!(plays(&a, Leg::A, Prompt::Block));
    let mut all = t.input(CallInput::FromCallee(pbx_response(&bye.1, 200)));
    all.extend(t.input(CallInput::PromptFinished(Leg::A)));
    assert!(!all.contains(&CallAction::Bridge));
    let r = finish(&mut t, all);
    assert_eq!(r.outcome, CallOutcome::CalleeRefused);
}

#[test]
fn the_callee_can_choose_by_sip_info_too() {
    let (mut t, inv) = warned(cfg());
    t.input(CallInput::PromptFinished(Leg::B));
    let call_id = inv.header("call-id").unwrap().to_string();
    let info = Req::callee("INFO", 2, &call_id)
        .header("Content-Type: application/dtmf-relay")
        .sdp("Signal=2\r\nDuration=160\r\n")
        .build();
    let a = t.input(CallInput::FromCallee(info));
    assert_eq!(sent(&a)[0].1.status(), Some(200));
    assert!(plays(&a, Leg::A, Prompt::Block), "{a:?}");
}

#[test]
fn no_key_from_the_callee_applies_callee_default() {
    let (mut t, _) = warned(cfg());
    t.input(CallInput::PromptFinished(Leg::B));
    let now = t.ms();
    let a = t.run_until(now + 8_100);
    assert!(a.contains(&CallAction::Bridge), "{a:?}");

    let mut c = cfg();
    c.callee_default_accept = false;
    let (mut t, _) = warned(c);
    t.input(CallInput::PromptFinished(Leg::B));
    let now = t.ms();
    let a = t.run_until(now + 8_100);
    assert!(!a.contains(&CallAction::Bridge));
    assert!(plays(&a, Leg::A, Prompt::Block));
}

#[test]
fn a_blocked_caller_can_leave_a_message() {
    let mut c = cfg();
    c.message = Duration::from_secs(60);
    let mut t = T::new(c);
    let a = screen(&mut t, ScreeningAction::Divert);
    assert!(plays(&a, Leg::A, Prompt::BlockMessage));
    t.at(t.ms() + 6_000);
    assert!(t.input(CallInput::PromptFinished(Leg::A)).is_empty());
    assert_eq!(t.call.stage(), Stage::Message);
    assert!(t.call.wants_audio());
    t.audio(true, 3_000);
    // 4 s of silence after the message ends the recording.
    let a = t.audio(false, 4_200);
    let r = finish(&mut t, a);
    assert_eq!(r.outcome, CallOutcome::Blocked);
    let msg = r.message.expect("message kept");
    assert!(
        (6_800 * 8..=7_300 * 8).contains(&msg.len()),
        "{}",
        msg.len()
    );

    // Hanging up after speaking keeps the message too; saying nothing keeps none.
    let mut c = cfg();
    c.message = Duration::from_secs(60);
    let mut t = T::new(c.clone());
    screen(&mut t, ScreeningAction::Divert);
    t.input(CallInput::PromptFinished(Leg::A));
    t.audio(true, 2_000);
    let a = t.input(CallInput::FromCaller(caller_request("BYE", 2)));
    let r = finish(&mut t, a);
    assert!(r.message.is_some());
    assert_eq!(r.outcome, CallOutcome::Blocked);
    let mut t = T::new(c);
    screen(&mut t, ScreeningAction::Divert);
    t.input(CallInput::PromptFinished(Leg::A));
    let a = t.audio(false, 10_100);
    let r = finish(&mut t, a);
    assert!(r.message.is_none());
}

#[test]
fn the_bypass_code_puts_the_caller_through_during_the_greeting() {
    let mut c = cfg();
    c.bypass_code = Some("4711".into());
    let mut t = T::new(c);
    t.actions();
    t.at(1_000);
    let mut a = Vec::new();
    for d in "94711".chars() {
        a = t.input(CallInput::Dtmf {
            leg: Leg::A,
            digit: d,
        });
    }
    assert!(a.contains(&CallAction::StopPrompt(Leg::A)));
    let inv = invite_of(&a).expect("callee rung at once");
    assert_eq!(inv.header("x-scamscreen-verdict"), Some("bypass"));
    assert_eq!(t.call.stage(), Stage::CallingCallee);

    // Guessing is bounded: after the code's length plus a few keys, even the right code
    // is ignored in this call.
    let mut c = cfg();
    c.bypass_code = Some("4711".into());
    let mut t = listening(c);
    for d in "12345678".chars().chain("4711".chars()) {
        let a = t.input(CallInput::Dtmf {
            leg: Leg::A,
            digit: d,
        });
        assert!(invite_of(&a).is_none());
    }
    assert_eq!(t.call.stage(), Stage::Listening);

    // Without a configured code, keys do nothing.
    let mut t = listening(cfg());
    for d in "4711".chars() {
        assert!(t
            .input(CallInput::Dtmf {
                leg: Leg::A,
                digit: d
            })
            .is_empty());
    }
}

#[test]
fn the_caller_hanging_up_at_any_stage_ends_everything() {
    // (stage reached, config) → the caller's BYE ends the call with no Bridge and every
    // transcription cancelled.
    let mut c = cfg();
    c.message = Duration::from_secs(60);
    type Setup = fn(&mut T);
    let stages: [(Stage, Setup); 6] = [
        (Stage::Greeting, |_| {}),
        (Stage::Listening, |t| {
            t.input(CallInput::PromptFinished(Leg::A));
            t.audio(true, 1_000);
        }),
        (Stage::Prompting, |t| {
            t.input(CallInput::PromptFinished(Leg::A));
            t.audio(false, 5_100);
        }),
        (Stage::Screening, |t| {
            t.input(CallInput::PromptFinished(Leg::A));
            t.audio(true, 1_000);
            t.until_transcribe();
        }),
        (Stage::Blocking, |t| {
            screen(t, ScreeningAction::Divert);
        }),
        (Stage::Message, |t| {
            screen(t, ScreeningAction::Divert);
            t.input(CallInput::PromptFinished(Leg::A));
        }),
    ];
    for (stage, setup) in stages {
        let mut t = T::new(c.clone());
        if !matches!(stage, Stage::Blocking | Stage::Message) {
            t.actions();
            t.input(CallInput::FromCaller(caller_request("ACK", 1)));
        }
        setup(&mut t);
        assert_eq!(t.call.stage(), stage);
        let a = t.input(CallInput::FromCaller(caller_request("BYE", 2)));
        assert_eq!(sent(&a)[0].1.status(), Some(200), "{stage:?}");
        assert!(!a.contains(&CallAction::Bridge));
        if stage == Stage::Screening {
            assert!(a
                .iter()
                .any(|x| matches!(x, CallAction::CancelTranscription(_))));
        }
        assert!(a.contains(&CallAction::ReleaseMedia), "{stage:?}: {a:?}");
        assert!(
            matches!(a.last(), Some(CallAction::Finished(_))),
            "{stage:?}"
        );
        assert!(!t.call.wants_audio());
    }
    // While the callee chooses: the callee gets a BYE too.
    let (mut t, _) = warned(cfg());
    t.input(CallInput::PromptFinished(Leg::B));
    let a = t.input(CallInput::FromCaller(caller_request("BYE", 2)));
    assert!(sent(&a)
        .iter()
        .any(|(to, m)| to == PBX && m.method() == Some("BYE")));
    let r = finish(&mut t, a);
    assert_eq!(r.outcome, CallOutcome::Connected);
}

#[test]
fn the_callees_sdp_answer_sets_leg_b_media() {
    let mut t = T::new(cfg());
    let a = screen(&mut t, ScreeningAction::Allow);
    let inv = invite_of(&a).unwrap();
    let mut ok = pbx_response(&inv, 200);
    ok.set_body(Bytes::from_static(
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.20\r\ns=-\r\nc=IN IP4 192.0.2.20\r\nt=0 0\r\n\
          m=audio 7000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n",
    ));
    let a = t.input(CallInput::FromCallee(ok));
    let media = a.iter().find_map(|x| match x {
        CallAction::CalleeMedia(m) => Some(m.clone()),
        _ => None,
    });
    let n = media.flatten().expect("PCMA negotiated");
    assert_eq!(n.codec, crate::media::g711::Codec::Pcma);
}
