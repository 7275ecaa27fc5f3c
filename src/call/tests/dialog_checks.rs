//! The checks a UAS core makes on either leg (RFC 3261 §8.2, §12.2.2, §17.2.3, RFC 4028) on a
//! virtual clock: wrong tags, CSeq order, retransmissions, merged INVITEs, CANCEL after the
//! answer, forged ACKs, session timers, `Require`.

use super::*;

/// A call screened as legitimate and bridged to the callee; returns our INVITE to the PBX.
fn bridged(t: &mut T) -> SipMessage {
    let a = screen(t, ScreeningAction::Allow);
    let inv = sent(&a)[0].1.clone();
    t.input(CallInput::FromCallee(pbx_response(&inv, 200)));
    assert_eq!(t.call.stage(), Stage::Bridged);
    inv
}

/// The only message sent, with where it went.
fn only(actions: &[CallAction]) -> (String, SipMessage) {
    let out = sent(actions);
    assert_eq!(out.len(), 1, "{out:?}");
    out.into_iter().next().unwrap()
}

#[test]
fn requests_with_the_wrong_tags_get_481_and_the_call_goes_on() {
    let mut t = T::new(cfg());
    let inv = bridged(&mut t);
    let b_call_id = inv.header("call-id").unwrap().to_string();

    // §12.2.2: the right Call-ID with another From tag, another To tag, or no To tag.
    let forged = [
        Req::caller("BYE", 2).from("<sip:anonymous@anonymous.invalid>;tag=intruder"),
        Req::caller("BYE", 2).to("<sip:100@pbx.example>;tag=not-ours"),
        Req::caller("INVITE", 2).to("<sip:100@pbx.example>;tag=not-ours"),
        Req::caller("INFO", 2).from("<sip:anonymous@anonymous.invalid>"),
        Req::caller("BYE", 2).to("<sip:100@pbx.example>"),
    ];
    for req in &forged {
        let a = t.input(CallInput::FromCaller(req.build()));
        let (to, resp) = only(&a);
        assert_eq!(to, CALLER);
        assert_eq!(resp.status(), Some(481), "{}", req.method);
        assert!(resp.header("to").unwrap().contains("tag="), "§8.2.6.2");
        if req.to.contains("tag=") {
            assert_eq!(resp.header("to"), Some(req.to.as_str()), "To copied");
        }
    }
    // The same from the PBX's side: leg A's tags are not leg B's.
    let a = t.input(CallInput::FromCallee(
        Req::callee("BYE", 1, &b_call_id)
            .to("<sip:anonymous@anonymous.invalid>;tag=ss7a")
            .build(),
    ));
    let (to, resp) = only(&a);
    assert_eq!((to.as_str(), resp.status()), (PBX, Some(481)));
    // An ACK with the wrong tags is not answered at all.
    let a = t.input(CallInput::FromCaller(
        Req::caller("ACK", 2)
            .to("<sip:100@pbx.example>;tag=not-ours")
            .build(),
    ));
    assert!(a.is_empty(), "{a:?}");
    // Nothing was acted on: still bridged, nothing went to the callee, nothing is pending.
    assert_eq!(t.call.stage(), Stage::Bridged);
    assert!(t.run_until(200_000).is_empty());

    // The real BYE, with the caller's CSeq still in order, ends the call.
    let a = t.input(CallInput::FromCaller(caller_request("BYE", 2)));
    let out = sent(&a);
    assert_eq!(out[0].1.status(), Some(200));
    assert_eq!(
        out[0].1.header("to"),
        Some("<sip:100@pbx.example>;tag=ss7a")
    );
    assert!(out
        .iter()
        .any(|(to, m)| to == PBX && m.method() == Some("BYE")));
}

#[test]
fn a_request_with_a_lower_cseq_gets_500_and_is_not_acted_on() {
    let mut t = T::new(cfg());
    bridged(&mut t);
    let a = t.input(CallInput::FromCaller(caller_request("INFO", 5)));
    assert_eq!(only(&a).1.status(), Some(200));
    // §12.2.2: out of order.
    for (method, cseq) in [("OPTIONS", 3), ("BYE", 4), ("INVITE", 1)] {
        let a = t.input(CallInput::FromCaller(caller_request(method, cseq)));
        assert_eq!(only(&a).1.status(), Some(500), "{method} {cseq}");
    }
    assert_eq!(t.call.stage(), Stage::Bridged);
    // An ACK carries its INVITE's CSeq and is never refused for it.
    assert!(t
        .input(CallInput::FromCaller(caller_request("ACK", 1)))
        .is_empty());
    // In order again: the BYE ends the call.
    let a = t.input(CallInput::FromCaller(caller_request("BYE", 6)));
    assert_eq!(sent(&a)[0].1.status(), Some(200));
    assert!(sent(&a)
        .iter()
        .any(|(to, m)| to == PBX && m.method() == Some("BYE")));
}

#[test]
fn a_retransmitted_bye_gets_its_200_again_and_a_new_one_gets_481() {
    let mut t = T::new(cfg());
    t.actions();
    t.input(CallInput::FromCaller(caller_request("ACK", 1)));
    t.input(CallInput::PromptFinished(Leg::A));
    t.at(4000);
    let a = t.input(CallInput::FromCaller(caller_request("BYE", 2)));
    let first = only(&a).1;
    assert_eq!(first.status(), Some(200));
    assert!(matches!(a.last(), Some(CallAction::Finished(_))));
    // Our 200 was lost: the same BYE again (same branch) gets the same 200, nothing else.
    t.at(4500);
    let a = t.input(CallInput::FromCaller(caller_request("BYE", 2)));
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(only(&a).1, first);
    // A new BYE (new transaction) in a dialog that is over: §15.1.2, 481.
    let a = t.input(CallInput::FromCaller(caller_request("BYE", 3)));
    assert_eq!(only(&a).1.status(), Some(481));
    // The call lingers only for Timer J (64*T1), then may be dropped.
    assert!(!t.call.is_done());
    assert!(t.run_until(40_000).is_empty());
    assert!(t.call.is_done());
}

#[test]
fn in_dialog_methods_are_answered_per_rfc() {
    let mut t = T::new(cfg());
    bridged(&mut t);
    let mut cseq = 1;
    let answer = |t: &mut T, req: Req| {
        let a = t.input(CallInput::FromCaller(req.build()));
        only(&a).1
    };
    let mut next = |method: &str| {
        cseq += 1;
        Req::caller(method, cseq)
    };
    // Legacy INFO (DTMF, keepalive): acknowledged, not relayed.
    assert_eq!(answer(&mut t, next("INFO")).status(), Some(200));
    // RFC 6086 §4.2.2: an Info Package we never declared.
    let r = answer(&mut t, next("INFO").header("Info-Package: dtmf"));
    assert_eq!(r.status(), Some(469));
    assert_eq!(r.header("recv-info"), Some(""));
    // §8.2.1: known methods we do not take: 405 with Allow.
    for method in ["REFER", "SUBSCRIBE", "MESSAGE"] {
        let r = answer(&mut t, next(method));
        assert_eq!(r.status(), Some(405), "{method}");
        let allow = r.header("allow").unwrap();
        assert!(allow.contains("BYE") && !allow.contains(method), "{allow}");
    }
    // RFC 6665 §4.1.3 / RFC 3262 §3: nothing of ours to match.
    assert_eq!(answer(&mut t, next("NOTIFY")).status(), Some(481));
    assert_eq!(answer(&mut t, next("PRACK")).status(), Some(481));
    // A method SIP does not define.
    assert_eq!(answer(&mut t, next("FROB")).status(), Some(501));
    // OPTIONS says what we take.
    let r = answer(&mut t, next("OPTIONS"));
    assert_eq!(r.status(), Some(200));
    assert!(r.header("allow").unwrap().contains("UPDATE"));
    // None of it touched the call; a retransmitted REFER gets its 405 again.
    assert_eq!(t.call.stage(), Stage::Bridged);
    let a = t.input(CallInput::FromCaller(caller_request("REFER", 4)));
    assert_eq!(only(&a).1.status(), Some(405));
}

#[test]
fn merged_and_foreign_invites_get_482_and_the_initial_invite_is_recognised() {
    let mut t = T::new(cfg());
    t.actions();
    let initial = SipMessage::parse(INVITE.as_bytes()).unwrap();
    // The initial INVITE again, before the ACK: our 200 again.
    let a = t.input(CallInput::FromCaller(initial.clone()));
    let (_, ok) = only(&a);
    assert_eq!(ok.status(), Some(200));
    assert_eq!(ok.body().as_ref(), b"v=0 (answer for the caller)");
    // §8.2.2.2: the same request by another path (another branch) is merged: 482.
    let mut merged = Req::caller("INVITE", 1)
        .to("<sip:100@pbx.example>")
        .branch("z9hG4bKother-path");
    let a = t.input(CallInput::FromCaller(merged.build()));
    let (_, r) = only(&a);
    assert_eq!(r.status(), Some(482));
    let to_tag = r.header("to").unwrap();
    assert!(
        to_tag.contains("tag=") && !to_tag.contains("tag=ss7a"),
        "{to_tag}"
    );
    // A second dialog on this Call-ID (another From tag): refused the same way.
    merged = merged.from("<sip:someone@example.com>;tag=other-dialog");
    let a = t.input(CallInput::FromCaller(merged.build()));
    assert_eq!(only(&a).1.status(), Some(482));
    // The call is untouched; after the ACK the initial INVITE is absorbed.
    assert_eq!(t.call.stage(), Stage::Greeting);
    t.input(CallInput::FromCaller(caller_request("ACK", 1)));
    assert!(t.input(CallInput::FromCaller(initial)).is_empty());
    assert!(
        t.run_until(40_000).is_empty(),
        "no retransmission after the ACK"
    );
}

#[test]
fn cancel_after_the_answer_has_no_effect() {
    let mut t = T::new(cfg());
    t.actions();
    // §9.2: the INVITE already has its final response.
    let cancel = Req::caller("CANCEL", 1)
        .to("<sip:100@pbx.example>")
        .branch("z9hG4bKinv1");
    let a = t.input(CallInput::FromCaller(cancel.build()));
    let (_, r) = only(&a);
    assert_eq!(r.status(), Some(200));
    assert_eq!(r.header("cseq"), Some("1 CANCEL"));
    assert_eq!(t.call.stage(), Stage::Greeting);
    // A CANCEL for a transaction we do not have.
    let a = t.input(CallInput::FromCaller(
        cancel.branch("z9hG4bKnot-an-invite").build(),
    ));
    assert_eq!(only(&a).1.status(), Some(481));
    // The 200 is still retransmitted until the ACK; the call goes on.
    let a = t.run_until(600);
    assert_eq!(only(&a).1.status(), Some(200));
    t.input(CallInput::FromCaller(caller_request("ACK", 1)));
    let a = t.input(CallInput::PromptFinished(Leg::A));
    assert!(a.is_empty());
    assert_eq!(t.call.stage(), Stage::Listening);
}

#[test]
fn an_ack_with_the_wrong_tags_does_not_stop_the_200() {
    let mut t = T::new(cfg());
    t.actions();
    let forged = Req::caller("ACK", 1).from("<sip:anonymous@anonymous.invalid>;tag=x");
    assert!(t.input(CallInput::FromCaller(forged.build())).is_empty());
    let a = t.run_until(600);
    assert_eq!(only(&a).1.status(), Some(200));
}

#[test]
fn reinvite_200_is_retransmitted_until_its_ack() {
    let mut t = T::new(cfg());
    t.actions();
    t.input(CallInput::FromCaller(caller_request("ACK", 1)));
    t.at(1000);
    let a = t.input(CallInput::FromCaller(
        Req::caller("INVITE", 2).sdp("v=0 hold").build(),
    ));
    let (_, ok) = only(&a);
    assert_eq!(ok.status(), Some(200));
    assert_eq!(ok.body().as_ref(), b"v=0 (answer for the caller)");
    assert_eq!(
        ok.header("contact"),
        Some("<sip:scamscreen@192.0.2.1:5060>")
    );
    let a = t.run_until(1600);
    assert_eq!(only(&a).1, ok);
    // The retransmitted re-INVITE is absorbed (we retransmit on our own clock).
    assert!(t
        .input(CallInput::FromCaller(
            Req::caller("INVITE", 2).sdp("v=0 hold").build()
        ))
        .is_empty());
    t.input(CallInput::FromCaller(caller_request("ACK", 2)));
    assert!(t.run_until(40_000).is_empty());
    assert_eq!(t.call.stage(), Stage::Greeting);
}

#[test]
fn callee_requests_are_checked_against_leg_b() {
    let mut t = T::new(cfg());
    let inv = bridged(&mut t);
    let b_call_id = inv.header("call-id").unwrap().to_string();
    // A session refresh from the PBX: 200 with the SDP we offered it.
    let a = t.input(CallInput::FromCallee(
        Req::callee("UPDATE", 1, &b_call_id).build(),
    ));
    let (to, ok) = only(&a);
    assert_eq!((to.as_str(), ok.status()), (PBX, Some(200)));
    assert!(ok.body().is_empty(), "RFC 3311 §5.2: no offer, no answer");
    let a = t.input(CallInput::FromCallee(
        Req::callee("INVITE", 2, &b_call_id).build(),
    ));
    assert_eq!(only(&a).1.body().as_ref(), b"v=0 (offer for the callee)");
    t.input(CallInput::FromCallee(
        Req::callee("ACK", 2, &b_call_id).build(),
    ));
    // The PBX's BYE with the right tags ends the call; the caller gets our BYE.
    let a = t.input(CallInput::FromCallee(
        Req::callee("BYE", 3, &b_call_id).build(),
    ));
    let out = sent(&a);
    assert_eq!((out[0].0.as_str(), out[0].1.status()), (PBX, Some(200)));
    assert!(out
        .iter()
        .any(|(to, m)| to == CALLER && m.method() == Some("BYE")));
    // Leg B's dialog is over: a new request in it gets 481.
    let a = t.input(CallInput::FromCallee(
        Req::callee("INFO", 4, &b_call_id).build(),
    ));
    assert_eq!(only(&a).1.status(), Some(481));
}

// ---- §17.1.3 / §13.2.2.4: responses from the callee -----------------------------------------

#[test]
fn callee_responses_for_other_transactions_are_ignored() {
    let mut t = T::new(cfg());
    let a = screen(&mut t, ScreeningAction::Allow);
    let inv = sent(&a)[0].1.clone();
    // Another branch, another CSeq, another From tag: not our INVITE's responses.
    let mut other_branch = pbx_response(&inv, 200);
    other_branch.replace_first_value("via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKforged");
    let mut other_cseq = pbx_response(&inv, 200);
    other_cseq.set_header("cseq", "7 INVITE");
    let mut other_from = pbx_response(&inv, 180);
    other_from.set_header("from", "<sip:anonymous@anonymous.invalid>;tag=nope");
    for r in [other_branch, other_cseq, other_from] {
        assert!(t.input(CallInput::FromCallee(r)).is_empty());
    }
    assert_eq!(t.call.stage(), Stage::CallingCallee);
    // A response to a BYE we never sent is dropped too.
    let mut stray = pbx_response(&inv, 200);
    stray.set_header("cseq", "1 BYE");
    assert!(t.input(CallInput::FromCallee(stray)).is_empty());

    // The real 200 bridges.
    let a = t.input(CallInput::FromCallee(pbx_response(&inv, 200)));
    assert_eq!(a.last(), Some(&CallAction::Bridge));
    // A 2xx from another fork: ACKed and hung up, once; the call stays bridged.
    let fork = crate::sip::proxy::response_for_tests(&inv, 200, "fork-2");
    let a = t.input(CallInput::FromCallee(fork.clone()));
    let out = sent(&a);
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(out[0].1.method(), Some("ACK"));
    assert_eq!(out[1].1.method(), Some("BYE"));
    for (_, m) in &out {
        assert!(m.header("to").unwrap().ends_with("tag=fork-2"));
    }
    let a = t.input(CallInput::FromCallee(fork));
    assert_eq!(only(&a).1.method(), Some("ACK"));
    assert_eq!(t.call.stage(), Stage::Bridged);
    let a = t.input(CallInput::FromCallee(pbx_response(&out[1].1, 200)));
    assert!(a.is_empty());
}

// ---- §8.2.2.3 Require, RFC 4028 session timers -------------------------------------------

#[test]
fn require_timer_is_honoured_and_the_session_refreshed_by_the_caller() {
    let invite = invite_with(
        "Supported: timer\r\nRequire: timer\r\nSession-Expires: 1800;refresher=uac\r\n\
         Min-SE: 90\r\n",
    );
    let mut t = T::with_invite(cfg(), &invite);
    let a = t.actions();
    let ok = &sent(&a)[1].1;
    assert_eq!(ok.status(), Some(200));
    // RFC 4028 §9: the interval echoed, the caller refreshes, and says so with Require.
    assert_eq!(ok.header("session-expires"), Some("1800;refresher=uac"));
    assert_eq!(ok.header("require"), Some("timer"));
    assert!(ok.header("supported").unwrap().contains("timer"));
    t.input(CallInput::FromCaller(caller_request("ACK", 1)));

    // The caller refreshes with a re-INVITE at half time: 200 with our current SDP.
    t.run_until(900_000);
    let refresh = Req::caller("INVITE", 2)
        .header("Session-Expires: 1800;refresher=uac")
        .header("Supported: timer")
        .sdp("v=0 same offer");
    let a = t.input(CallInput::FromCaller(refresh.build()));
    let (_, ok) = only(&a);
    assert_eq!(ok.status(), Some(200));
    assert_eq!(ok.body().as_ref(), b"v=0 (answer for the caller)");
    assert_eq!(ok.header("session-expires"), Some("1800;refresher=uac"));
    t.input(CallInput::FromCaller(caller_request("ACK", 2)));
    // …and with an UPDATE without SDP: 200 without SDP (RFC 3311 §5.2).
    t.run_until(1_800_000);
    let update = Req::caller("UPDATE", 3)
        .header("Session-Expires: 1800;refresher=uac")
        .header("Supported: timer");
    let a = t.input(CallInput::FromCaller(update.build()));
    let (_, ok) = only(&a);
    assert_eq!(ok.status(), Some(200));
    assert!(ok.body().is_empty());
    assert_eq!(ok.header("session-expires"), Some("1800;refresher=uac"));

    // Then the caller goes silent. RFC 4028 §10: BYE min(32 s, 1800/3) before expiry.
    let a = t.run_until(1_800_000 + 1_767_000);
    assert!(sent(&a).is_empty(), "{a:?}");
    let a = t.run_until(1_800_000 + 1_768_000);
    let (to, bye) = only(&a);
    assert_eq!((to.as_str(), bye.method()), (CALLER, Some("BYE")));
    let a = t.input(CallInput::FromCaller(pbx_response(&bye, 200)));
    match a.last() {
        Some(CallAction::Finished(r)) => assert_eq!(r.outcome, CallOutcome::Failed),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_session_timer_we_would_have_to_refresh_is_declined() {
    // RFC 4028 Table 2 would make us the refresher: we answer without Session-Expires
    // (§7.2: no session expiration) rather than refresh or refuse.
    let invite = invite_with("Require: timer\r\nSession-Expires: 90;refresher=uas\r\n");
    let mut t = T::with_invite(cfg(), &invite);
    let a = t.actions();
    let ok = &sent(&a)[1].1;
    assert_eq!(ok.status(), Some(200));
    assert_eq!(ok.header("session-expires"), None);
    assert_eq!(ok.header("require"), None);
    t.input(CallInput::FromCaller(caller_request("ACK", 1)));
    assert!(t.run_until(3_600_000).is_empty());
    // Session-Expires from a UAC that does not support timers: ignored the same way.
    let mut t = T::with_invite(cfg(), &invite_with("Session-Expires: 1800\r\n"));
    assert_eq!(sent(&t.actions())[1].1.header("session-expires"), None);
}

#[test]
fn a_require_we_do_not_understand_gets_420() {
    // §8.2.2.3 on the initial INVITE: refused before anything is set up.
    let invite = invite_with("Require: 100rel, precondition\r\n");
    let mut t = T::with_invite(cfg(), &invite);
    let a = t.actions();
    let (to, r) = only(&a);
    assert_eq!(to, CALLER);
    assert_eq!(r.status(), Some(420));
    assert_eq!(r.header("unsupported"), Some("precondition"));
    assert!(r.header("to").unwrap().contains("tag="));
    assert!(!a.iter().any(|x| matches!(x, CallAction::PlayPrompt { .. })));
    match a.last() {
        Some(CallAction::Finished(rec)) => assert_eq!(rec.outcome, CallOutcome::Failed),
        other => panic!("{other:?}"),
    }
    assert!(t.call.is_done(), "the runtime drops it at once");

    // In the dialog: a re-INVITE requiring it is refused and changes nothing; the 420 is
    // retransmitted until its ACK, which the transaction absorbs.
    let mut t = T::new(cfg());
    t.actions();
    t.input(CallInput::FromCaller(caller_request("ACK", 1)));
    let reinvite = Req::caller("INVITE", 2)
        .header("Require: precondition")
        .sdp("v=0 new offer");
    let a = t.input(CallInput::FromCaller(reinvite.build()));
    let (_, r) = only(&a);
    assert_eq!(r.status(), Some(420));
    let again = t.run_until(600);
    assert_eq!(only(&again).1, r, "Timer G");
    let ack = Req::caller("ACK", 2).branch("z9hG4bKINVITE2");
    assert!(t.input(CallInput::FromCaller(ack.build())).is_empty());
    assert!(t.run_until(40_000).is_empty());
    assert_eq!(t.call.stage(), Stage::Greeting);
}
