//! `CallSession`: one screened call's stages and the verdict → action logic; the types the
//! runtime speaks to it with ([`CallInput`], [`CallAction`]) are in `io.rs`.
//!
//! ```text
//!  Greeting ─(greeting played)─▶ Listening ─(end of speech, or `listen`)─▶ Screening ─(verdict)─▶
//!    ├─ allow, divert to `divert_uri` ─▶ CallingCallee ─(callee's 2xx)─▶ Bridged
//!    ├─ warn ─▶ CallingCallee ─(callee's 2xx)─▶ Warning ─(warning played to B)─▶ Bridged
//!    └─ divert, no `divert_uri` ─▶ Blocking ─(announcement played to A)─▶ Ending
//!  any stage ─(hang-up, failure, timeout)─▶ Ending ─(our requests have their finals)─▶ Ended
//! ```
//!
//! No verdict by `screening_timeout`, or a failed ASR, is `unscreened`: `fail_open` makes it
//! allow, else divert.
//!
//! The SIP of each leg is in the files beside this one: `uas.rs` checks and answers the
//! requests the peers send us; `uac.rs` runs the requests we send (the INVITE to the
//! callee, BYE, CANCEL) and takes their responses.

use super::config::CallConfig;
use super::dialog::{
    accepted_session_expires, cseq_of, refusal_for_invite, session_bye_after,
    session_timer_headers, top_branch, Dialog, PendingAnswers, ServedRequests, ALLOWED_METHODS,
    SUPPORTED_EXTENSIONS,
};
use super::io::{CallAction, CallInput, Leg, Prompt, Stage};
use super::keys::MessageRecorder;
use super::listen::Listener;
use super::uac::SentRequest;
use super::verdict::{Action, CallOutcome, CallRecordDraft, ScreeningResult, SilentAction};
use crate::media::dtmf::DigitBuffer;
use crate::sip::msg::SipMessage;
use crate::sip::proxy::Peer;
use crate::sip::transaction::{ClientInvite, Reliability, TxEvent};
use bytes::Bytes;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long the "cannot be reached" announcement may take before the call is ended anyway.
const RELEASE_WITHIN: Duration = Duration::from_secs(15);

/// One screened call: leg A's dialog (we are the caller's UAS) and leg B's (we are the
/// callee's UAC), the stage, and the actions waiting for the runtime. Its fields are shared
/// with `uas.rs` and `uac.rs`.
pub struct CallSession {
    pub(super) id: u64,
    pub(super) cfg: CallConfig,
    pub(super) stage: Stage,
    pub(super) a: Dialog,
    pub(super) b: Option<Dialog>,
    pub(super) b_invite: Option<ClientInvite>,
    /// Bytes of our INVITE to B (for CANCEL).
    pub(super) b_invite_msg: Option<SipMessage>,
    /// Device mode: answers the router's digest challenges to our INVITE.
    pub(super) b_auth: Option<crate::sip::digest::DigestClient>,
    /// Leg B's dialog is up and must be ended with BYE.
    pub(super) b_answered: bool,
    /// A 2xx to our INVITE has come (later ones are retransmissions or other forks).
    pub(super) b_confirmed: bool,
    pub(super) b_ringing: bool,
    /// CANCEL wanted before the callee's first provisional response.
    pub(super) cancel_pending: bool,
    /// To tags of other forks' 2xx that we ACKed and hung up (§13.2.2.4).
    pub(super) ended_forks: Vec<String>,
    /// Non-INVITE client transactions we run (BYE, CANCEL).
    pub(super) requests: Vec<SentRequest>,
    /// Server transactions of the requests the peers sent us.
    pub(super) served: ServedRequests,
    /// Where the request being handled came from (set while a [`CallInput::Sip`] is).
    pub(super) request_source: Option<Peer>,
    /// 2xx responses to INVITEs awaiting their ACK.
    pub(super) answers: PendingAnswers,
    /// The caller's BYE came: leg A's dialog is over (§15.1.2).
    pub(super) a_hung_up: bool,
    /// Our 200 to the INVITE (for retransmitted INVITEs).
    pub(super) invite_response: Bytes,
    /// Top Via branch and CSeq number of the initial INVITE.
    pub(super) invite_branch: String,
    pub(super) invite_cseq: u32,
    /// RFC 4028 §10: when we send BYE unless the peer refreshes the session first, per
    /// leg (A, B).
    pub(super) session_bye: [Option<Instant>; 2],
    pub(super) original_uri: String,
    pub(super) original_from: String,
    pub(super) original_to: String,
    pub(super) local_sdp_b: Bytes,
    pub(super) result: Option<ScreeningResult>,
    pub(super) outcome: Option<CallOutcome>,
    pub(super) started: Instant,
    pub(super) listen_started: Option<Instant>,
    pub(super) speech_ended: Option<Instant>,
    pub(super) verdict_at: Option<Instant>,
    pub(super) deadline: Option<Instant>,
    pub(super) branch_seq: u32,
    pub(super) actions: VecDeque<CallAction>,
    /// Turns, transcription jobs and partial verdicts (`listen.rs`).
    pub(super) listener: Listener,
    /// Keys the caller pressed (bypass code), and how many.
    pub(super) digits: DigitBuffer,
    pub(super) keys_pressed: usize,
    /// The blocked caller's message while it is recorded (`keys.rs`).
    pub(super) message: Option<MessageRecorder>,
    /// What the message recorder kept, for the record.
    pub(super) message_pcm: Option<Vec<i16>>,
    /// Leg B goes to `divert_uri`, not the callee.
    pub(super) diverted: bool,
    /// `ReleaseMedia` was sent; the record may still wait for `afterwards`.
    pub(super) media_released: bool,
    pub(super) finished: bool,
    /// Until when the record waits for the afterwards transcript of an unscreened call.
    pub(super) afterwards_until: Option<Instant>,
    pub(super) afterwards: Option<ScreeningResult>,
    /// When signalling ended (the record's `total`).
    pub(super) ended_at: Option<Instant>,
}

impl CallSession {
    /// Answer a screened INVITE: 200 with `local_sdp_a` (the runtime's RFC 3264 answer for
    /// the caller's offer), then the greeting. `local_sdp_b` is the offer leg B will carry.
    ///
    /// An INVITE that [`refusal_for_invite`] refuses (a `Require` we cannot honour) is
    /// answered 420 instead, statelessly (§8.2.7), and the call ends at once: `Finished`
    /// comes with the 420 and [`is_done`](Self::is_done) is true, so the runtime drops it
    /// and a retry without the extension (same Call-ID, §8.1.3.5) is a new call.
    ///
    /// A `Session-Expires` the caller offers is accepted as in
    /// [`accepted_session_expires`]: we never refresh, and hang up (RFC 4028 §10) if the
    /// caller, the refresher, stops refreshing.
    pub fn answer(
        now: Instant,
        id: u64,
        invite: &SipMessage,
        source: Peer,
        cfg: CallConfig,
        local_sdp_a: Bytes,
        local_sdp_b: Bytes,
    ) -> CallSession {
        let contact = format!("<sip:scamscreen@{}>", cfg.local_host);
        let a = Dialog::from_invite(
            invite,
            &format!("ss{id:x}a"),
            source,
            &contact,
            &cfg.local_host,
        );
        let session_expires = accepted_session_expires(invite);
        let mut ok = a.response(invite, 200, "OK");
        ok.push_header("Allow", ALLOWED_METHODS);
        ok.push_header("Supported", SUPPORTED_EXTENSIONS);
        for (name, value) in session_expires.into_iter().flat_map(session_timer_headers) {
            ok.push_header(name, value);
        }
        ok.push_header("Content-Type", "application/sdp");
        ok.set_body(local_sdp_a);
        let bytes = ok.to_bytes();
        let invite_cseq = cseq_of(invite).map(|c| c.0).unwrap_or(0);
        let mut call = CallSession {
            id,
            stage: Stage::Greeting,
            b: None,
            b_invite: None,
            b_invite_msg: None,
            b_auth: None,
            b_answered: false,
            b_confirmed: false,
            b_ringing: false,
            cancel_pending: false,
            ended_forks: Vec::new(),
            requests: Vec::new(),
            request_source: None,
            served: ServedRequests::new(
                cfg.timers,
                reliability_of(source),
                reliability_of(cfg.upstream),
            ),
            answers: PendingAnswers::new(cfg.timers),
            a_hung_up: false,
            invite_response: bytes.clone(),
            invite_branch: top_branch(invite).unwrap_or_default(),
            invite_cseq,
            session_bye: [session_expires.map(|s| now + session_bye_after(s)), None],
            original_uri: invite.request_uri().unwrap_or_default().to_string(),
            original_from: invite.header("from").unwrap_or_default().to_string(),
            original_to: invite.header("to").unwrap_or_default().to_string(),
            local_sdp_b,
            result: None,
            outcome: None,
            started: now,
            listen_started: None,
            speech_ended: None,
            verdict_at: None,
            deadline: None,
            branch_seq: 0,
            actions: VecDeque::new(),
            listener: Listener::default(),
            digits: DigitBuffer::new(),
            keys_pressed: 0,
            message: None,
            message_pcm: None,
            diverted: false,
            media_released: false,
            finished: false,
            afterwards_until: None,
            afterwards: None,
            ended_at: None,
            a,
            cfg,
        };
        if let Some(refusal) = refusal_for_invite(invite) {
            // No greeting, no media: the call ends with the refusal.
            let refused = refusal.response(invite, &call.a.local_tag).to_bytes();
            call.send(Leg::A, refused);
            call.session_bye = [None, None];
            call.outcome = Some(CallOutcome::Failed);
            call.stage = Stage::Ending;
            call.maybe_finish(now);
            return call;
        }
        let trying = call.a.response(invite, 100, "Trying").to_bytes();
        call.send(Leg::A, trying);
        call.answers.start(now, Leg::A, invite_cseq, bytes.clone());
        call.send(Leg::A, bytes);
        call.actions.push_back(CallAction::PlayPrompt {
            leg: Leg::A,
            prompt: Prompt::Greeting,
        });
        call
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// Call-ID of leg A (the caller's) and, once created, of leg B.
    pub fn call_ids(&self) -> (String, Option<String>) {
        (
            self.a.call_id.clone(),
            self.b.as_ref().map(|b| b.call_id.clone()),
        )
    }

    pub fn poll_action(&mut self) -> Option<CallAction> {
        self.actions.pop_front()
    }

    pub(super) fn peer(&self, leg: Leg) -> Peer {
        match leg {
            Leg::A => self.a.peer,
            Leg::B => self.cfg.upstream,
        }
    }

    pub(super) fn send(&mut self, leg: Leg, bytes: Bytes) {
        let to = self.peer(leg);
        self.actions.push_back(CallAction::Send { to, bytes });
    }

    pub(super) fn branch(&mut self) -> String {
        self.branch_seq += 1;
        format!("z9hG4bK-call{:x}-{}", self.id, self.branch_seq)
    }

    pub(super) fn reliability(&self, leg: Leg) -> Reliability {
        reliability_of(self.peer(leg))
    }

    /// The earliest time `handle_timeout` has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Vec<Instant> = Vec::new();
        t.extend(self.answers.poll_timeout());
        if let Some(d) = self.deadline {
            t.push(d);
        }
        t.extend(self.listening_deadline());
        if !self.finished {
            t.extend(self.afterwards_until);
        }
        if !matches!(self.stage, Stage::Ending | Stage::Ended) {
            t.extend(self.session_bye.iter().flatten());
        }
        if let Some(tx) = &self.b_invite {
            t.extend(tx.poll_timeout());
        }
        t.extend(self.requests.iter().filter_map(|r| r.tx.poll_timeout()));
        t.extend(self.served.poll_timeout());
        t.into_iter().min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.answers.handle_timeout(now) {
            // No ACK for our 2xx (§13.3.1.4): end the dialog with BYE.
            self.hang_up(now, CallOutcome::Failed);
        }
        while let Some((leg, bytes)) = self.answers.poll_transmit() {
            self.send(leg, bytes);
        }
        let live = !matches!(self.stage, Stage::Ending | Stage::Ended);
        if live && self.session_bye.iter().flatten().any(|t| now >= *t) {
            // RFC 4028 §10: the refresher let the session expire.
            self.session_bye = [None, None];
            self.hang_up(now, CallOutcome::Failed);
        }
        if self.listening_deadline().is_some_and(|d| now >= d) {
            self.listening_timeout(now);
        }
        if self.deadline.is_some_and(|d| now >= d) {
            self.deadline = None;
            match self.stage {
                Stage::Screening => self.screening_timed_out(now),
                Stage::CallingCallee => {
                    // The callee rang too long: stop ringing it, end the call.
                    self.cancel_b(now);
                    self.callee_failed(now, 408);
                }
                Stage::CalleeChoice => self.callee_chose(now, self.cfg.callee_default_accept),
                Stage::Message => self.message_done(now),
                // The announcement never reported its end: end the call anyway.
                Stage::Releasing => self.hang_up(now, CallOutcome::Failed),
                _ => {}
            }
        }
        if self.afterwards_until.is_some_and(|d| now >= d) {
            // The transcript for the record did not come in time: store the record without.
            self.afterwards_until = None;
            self.listener.drop_afterwards(&mut self.actions);
        }
        if let Some(tx) = &mut self.b_invite {
            tx.handle_timeout(now);
        }
        for r in &mut self.requests {
            r.tx.handle_timeout(now);
        }
        self.served.handle_timeout(now);
        self.drain_transactions(now);
    }

    fn drain_transactions(&mut self, now: Instant) {
        let upstream = self.cfg.upstream;
        let a_peer = self.a.peer;
        let peer = |leg: Leg| if leg == Leg::A { a_peer } else { upstream };
        let mut b_timeout = false;
        if let Some(tx) = &mut self.b_invite {
            while let Some(bytes) = tx.poll_transmit() {
                self.actions.push_back(CallAction::Send {
                    to: upstream,
                    bytes,
                });
            }
            while let Some(ev) = tx.poll_event() {
                b_timeout |= matches!(ev, TxEvent::Timeout | TxEvent::TransportError);
            }
        }
        for r in &mut self.requests {
            while let Some(bytes) = r.tx.poll_transmit() {
                let to = peer(r.leg);
                self.actions.push_back(CallAction::Send { to, bytes });
            }
            while r.tx.poll_event().is_some() {}
        }
        self.requests.retain(|r| !r.tx.is_terminated());
        while let Some((to, bytes)) = self.served.poll_transmit() {
            self.actions.push_back(CallAction::Send { to, bytes });
        }
        if self.b_invite.as_ref().is_some_and(|t| t.is_terminated()) {
            self.b_invite = None;
        }
        if b_timeout && !self.b_answered && self.stage == Stage::CallingCallee {
            self.callee_failed(now, 408);
        }
        self.maybe_finish(now);
    }

    pub fn handle_input(&mut self, now: Instant, input: CallInput) {
        match input {
            CallInput::FromCaller(msg) => self.on_caller_message(now, msg),
            CallInput::FromCallee(msg) => self.on_callee_message(now, msg),
            CallInput::Sip {
                upstream,
                msg,
                source,
            } => {
                self.request_source = Some(source);
                if upstream {
                    self.on_callee_message(now, msg);
                } else {
                    self.on_caller_message(now, msg);
                }
                self.request_source = None;
            }
            CallInput::PromptFinished(leg) => self.prompt_finished(now, leg),
            CallInput::Shutdown => {
                self.hang_up(now, CallOutcome::Shutdown);
                self.maybe_finish(now);
            }
            CallInput::CalleeUnreachable => {
                // Only while nothing at all came back for our INVITE: a callee that rings
                // is reachable, whatever the probes say.
                use crate::sip::transaction::ClientInviteState as CI;
                let silent = self
                    .b_invite
                    .as_ref()
                    .is_some_and(|t| t.state() == CI::Calling);
                if self.stage == Stage::CallingCallee && silent {
                    self.callee_failed(now, 503);
                    self.maybe_finish(now);
                }
            }
            CallInput::CallerAudio(frame) => self.on_caller_audio(now, &frame),
            CallInput::Dtmf { leg, digit } => self.on_dtmf(now, leg, digit),
            CallInput::Transcribed { job, result } => self.on_transcribed(now, job, result),
            CallInput::MediaTimeout(_) => {
                if !matches!(self.stage, Stage::Ending | Stage::Ended) {
                    self.cancel_b(now);
                    self.hang_up(now, CallOutcome::Failed);
                }
            }
        }
        self.drain_transactions(now);
    }

    fn prompt_finished(&mut self, now: Instant, leg: Leg) {
        match (self.stage, leg) {
            (Stage::Greeting, Leg::A) => self.start_turn(now),
            (Stage::Prompting, Leg::A) => self.start_turn(now),
            (Stage::Warning, Leg::B) => {
                // The warning and "press 1 / 2" were heard: the callee's turn to choose.
                self.stage = Stage::CalleeChoice;
                self.deadline = Some(now + self.cfg.callee_choice);
            }
            (Stage::Releasing, Leg::A) => self.hang_up(now, CallOutcome::Failed),
            (Stage::Blocking, Leg::A) => {
                if self.refused_by_callee() {
                    self.hang_up(now, CallOutcome::CalleeRefused);
                } else if self.cfg.message.is_zero() {
                    self.hang_up(now, CallOutcome::Blocked);
                } else {
                    self.outcome = Some(CallOutcome::Blocked);
                    self.start_message(now);
                }
            }
            _ => {}
        }
    }

    /// Act on the verdict: ring the callee (allow, warn, bypass, fail-open), divert, or
    /// block; `silent` and `unscreened` map through `silent_action` and `fail_open`.
    pub(super) fn decide(&mut self, now: Instant, result: ScreeningResult) {
        self.deadline = None;
        self.verdict_at = Some(now);
        if self.speech_ended.is_none() {
            self.speech_ended = Some(now);
        }
        enum To {
            Callee,
            DivertUri,
            Block,
        }
        let divert = |uri: &Option<String>| {
            if uri.is_some() {
                To::DivertUri
            } else {
                To::Block
            }
        };
        let to = match result.action {
            Action::Allow | Action::Warn | Action::Bypass => To::Callee,
            Action::Divert => divert(&self.cfg.divert_uri),
            Action::Unscreened if self.cfg.fail_open => To::Callee,
            Action::Unscreened => divert(&self.cfg.divert_uri),
            Action::Silent => match self.cfg.silent_action {
                SilentAction::Allow => To::Callee,
                SilentAction::Block => To::Block,
                SilentAction::Divert => divert(&self.cfg.divert_uri),
            },
        };
        let verdict_header = result.action.as_str();
        let score = result.score;
        let reason = header_reason(&result);
        self.result = Some(result);
        match to {
            To::Block => {
                self.stage = Stage::Blocking;
                let prompt = if self.cfg.message.is_zero() {
                    Prompt::Block
                } else {
                    Prompt::BlockMessage
                };
                self.actions.push_back(CallAction::PlayPrompt {
                    leg: Leg::A,
                    prompt,
                });
            }
            To::DivertUri => {
                self.diverted = true;
                let uri = self.cfg.divert_uri.clone().unwrap_or_default();
                self.call_b(now, &uri, verdict_header, score, &reason);
            }
            To::Callee => {
                let uri = self.original_uri.clone();
                self.call_b(now, &uri, verdict_header, score, &reason);
            }
        }
    }

    /// The callee answered (leg B's first 2xx, ACKed by `uac.rs`) while we were calling
    /// it: stop the ringback, give the runtime the callee's SDP, and warn the callee first
    /// when the verdict says so.
    pub(super) fn callee_answered(&mut self, sdp: Bytes) {
        // RFC 3264 §6: what the callee's answer agreed on for leg B's media (`None`: no
        // usable answer; the legs are then bridged in signalling only).
        let negotiated = std::str::from_utf8(&sdp)
            .ok()
            .and_then(|t| crate::media::sdp::SessionDescription::parse(t).ok())
            .and_then(|s| crate::media::sdp::accept_answer(&s).ok());
        self.actions.push_back(CallAction::CalleeMedia(negotiated));
        let diverted = self.diverted;
        self.outcome = Some(if diverted {
            CallOutcome::Diverted
        } else {
            CallOutcome::Connected
        });
        let warning = self
            .result
            .as_ref()
            .filter(|r| r.action == Action::Warn)
            .and_then(|r| r.warning.clone());
        match warning {
            Some(text) => {
                // The caller hears ringback while the callee hears the warning and chooses.
                if !self.b_ringing {
                    self.b_ringing = true;
                    self.actions.push_back(CallAction::Ringback(true));
                }
                self.stage = Stage::Warning;
                self.actions.push_back(CallAction::PlayPrompt {
                    leg: Leg::B,
                    prompt: Prompt::Warning(format!(
                        "{text} {}",
                        super::language::texts(&self.cfg.language).choice
                    )),
                });
            }
            None => self.bridge(),
        }
    }

    /// Join the legs: ringback off, media relayed from now on.
    pub(super) fn bridge(&mut self) {
        if self.b_ringing {
            self.b_ringing = false;
            self.actions.push_back(CallAction::Ringback(false));
        }
        self.stage = Stage::Bridged;
        self.actions.push_back(CallAction::Bridge);
    }

    /// The caller left: end leg B, whatever its state.
    pub(super) fn a_gone(&mut self, now: Instant) {
        if matches!(self.stage, Stage::Ending | Stage::Ended) {
            return;
        }
        self.answers.clear();
        let outcome = match self.stage {
            Stage::Bridged | Stage::Warning | Stage::CalleeChoice => {
                self.outcome.unwrap_or(CallOutcome::Connected)
            }
            // Hanging up after the announcement (or the message) is how a blocked call ends.
            Stage::Blocking | Stage::Message => {
                self.keep_message();
                self.outcome.unwrap_or(CallOutcome::Blocked)
            }
            // The caller hung up on "cannot be reached": the callee's failure is the outcome.
            Stage::Releasing => self.outcome.unwrap_or(CallOutcome::CallerHungUp),
            _ => CallOutcome::CallerHungUp,
        };
        self.listener.cancel_all(&mut self.actions);
        self.outcome = Some(outcome);
        self.end_b(now);
        self.stage = Stage::Ending;
        self.maybe_finish(now);
    }

    /// End the call from our side: BYE the caller (if still there) and end leg B.
    /// The callee cannot be reached (a final error, no answer in time, the PBX down) while
    /// the caller, already answered, hears ringback: tell the caller, then end the call. The
    /// record says `CalleeFailed(status)`; leg B is already over or being cancelled.
    pub(super) fn callee_failed(&mut self, now: Instant, status: u16) {
        self.outcome = Some(self.outcome.unwrap_or(CallOutcome::CalleeFailed(status)));
        self.b_ringing = false;
        self.actions.push_back(CallAction::Ringback(false));
        self.stage = Stage::Releasing;
        self.actions.push_back(CallAction::PlayPrompt {
            leg: Leg::A,
            prompt: Prompt::Unavailable,
        });
        // The longest the announcement may take before the call ends regardless.
        self.deadline = Some(now + RELEASE_WITHIN);
    }

    pub(super) fn hang_up(&mut self, now: Instant, outcome: CallOutcome) {
        if matches!(self.stage, Stage::Ending | Stage::Ended) {
            return;
        }
        self.outcome = Some(self.outcome.unwrap_or(outcome));
        if self.outcome == Some(CallOutcome::Connected) && outcome != CallOutcome::Connected {
            self.outcome = Some(outcome);
        }
        self.listener.cancel_all(&mut self.actions);
        self.keep_message();
        self.end_b(now);
        if !self.a_hung_up {
            let branch = self.branch();
            let bye = self.a.request("BYE", &branch, None).to_bytes();
            self.push_request(now, Leg::A, branch, "BYE", bye);
        }
        self.answers.clear();
        self.stage = Stage::Ending;
    }

    /// Is any of our requests still waiting for its final response? (Transactions that got
    /// one may linger for their timers; that does not hold the call's resources.)
    fn awaiting_final(&self) -> bool {
        use crate::sip::transaction::{ClientInviteState as CI, ClientNonInviteState as CN};
        let b = self
            .b_invite
            .as_ref()
            .is_some_and(|t| matches!(t.state(), CI::Calling | CI::Proceeding));
        b || self
            .requests
            .iter()
            .any(|r| matches!(r.tx.state(), CN::Trying | CN::Proceeding))
    }

    /// Nothing left to absorb or retransmit: the runtime may drop the call. Server
    /// transactions linger up to 64*T1 after their answer (UDP) so retransmitted requests
    /// (a BYE whose 200 was lost) are answered again.
    pub fn is_done(&self) -> bool {
        self.stage == Stage::Ended && self.finished && self.poll_timeout().is_none()
    }

    /// Does the call want the caller's decoded audio now ([`CallInput::CallerAudio`])?
    pub fn wants_audio(&self) -> bool {
        matches!(self.stage, Stage::Listening | Stage::Message)
    }

    pub(super) fn maybe_finish(&mut self, now: Instant) {
        if self.stage == Stage::Ending && !self.awaiting_final() {
            self.stage = Stage::Ended;
            self.ended_at = Some(now);
        }
        if self.stage != Stage::Ended || self.finished {
            return;
        }
        if !self.media_released {
            self.media_released = true;
            self.actions.push_back(CallAction::ReleaseMedia);
        }
        if self.listener.afterwards_pending() && self.afterwards_until.is_some() {
            return; // the record waits for the transcript of an unscreened call
        }
        self.finished = true;
        let record = CallRecordDraft {
            call_id: self.a.call_id.clone(),
            result: self.result.clone(),
            outcome: self.outcome.unwrap_or(CallOutcome::Failed),
            time_to_verdict: match (self.speech_ended, self.verdict_at) {
                (Some(s), Some(v)) => Some(v.saturating_duration_since(s)),
                _ => None,
            },
            listen: match (self.listen_started, self.speech_ended) {
                (Some(l), Some(s)) => Some(s.saturating_duration_since(l)),
                _ => None,
            },
            screening: self
                .verdict_at
                .map(|v| v.saturating_duration_since(self.started)),
            total: self
                .ended_at
                .unwrap_or(now)
                .saturating_duration_since(self.started),
            message: self.message_pcm.take(),
            afterwards: self.afterwards.take(),
        };
        self.actions
            .push_back(CallAction::Finished(Box::new(record)));
    }
}

fn reliability_of(peer: Peer) -> Reliability {
    match peer.transport {
        crate::sip::proxy::Transport::Udp => Reliability::Unreliable,
        crate::sip::proxy::Transport::Tcp => Reliability::Reliable,
    }
}

/// The `X-Scamscreen-Reason` value: each rule with the time in the call it was heard
/// (`claims-company@4.2s,remote-tool@15.1s`), or the verdict's one-line reason.
pub(super) fn header_reason(r: &ScreeningResult) -> String {
    let mut seen: Vec<&str> = Vec::new();
    let hits: Vec<String> = r
        .reasons
        .iter()
        .filter(|h| {
            let new = !seen.contains(&h.rule.as_str());
            seen.push(&h.rule);
            new
        })
        .map(|h| format!("{}@{:.1}s", h.rule, h.at_ms as f64 / 1000.0))
        .collect();
    if hits.is_empty() {
        r.reason.clone()
    } else {
        hits.join(",")
    }
}
