//! `ScreenedCall`: the signalling and stage logic of one screened call.
//!
//! Both legs are dialogs whose far ends we do not trust. Every request passes the UAS
//! core's checks in RFC 3261 order before it is acted on:
//!
//! ```text
//!  request ─▶ transaction (§17.2.3: branch + method) ── retransmission ─▶ same answer again
//!     │                                               └─ ACK of our non-2xx ─▶ absorbed
//!     ├─ no To tag (§8.2.2.2, §9.2): initial INVITE again ─▶ our 200 again (until ACK)
//!     │                              CANCEL of the initial INVITE ─▶ 200, no effect
//!     │                              another INVITE (merged / Call-ID reuse) ─▶ 482
//!     │                              anything else ─▶ 481
//!     ├─ dialog (§12.2.2): tags not this leg's, or leg hung up ─▶ 481 (not acted on)
//!     │                    CSeq lower than the peer's last ─▶ 500
//!     ├─ method (§8.2.1): PRACK, NOTIFY ─▶ 481; SUBSCRIBE, REFER, MESSAGE … ─▶ 405 + Allow;
//!     │                   unknown ─▶ 501
//!     ├─ Require (§8.2.2.3): an option tag we do not understand ─▶ 420 + Unsupported
//!     └─ act: BYE ─▶ 200 and hang up; re-INVITE / UPDATE ─▶ 200 with our SDP (RFC 4028
//!             refresh); OPTIONS ─▶ 200; INFO ─▶ 200 (469 for an Info Package, RFC 6086)
//! ```
//!
//! Answers to requests that are not in our dialogs (481, 482) go statelessly (§8.2.7), so
//! a forged request costs one datagram and no state; answers inside a dialog go through a
//! server transaction, so retransmissions get the same answer. Responses from the callee
//! count only for the transaction they name (§17.1.3); a 2xx from another fork of our
//! INVITE is ACKed and hung up (§13.2.2.4).

use super::dialog::{
    accepted_session_expires, cseq_of, refusal_for_invite, refusal_for_method, session_bye_after,
    session_timer_headers, tag_of, top_branch, Dialog, PendingAnswers, Refusal, ServedRequests,
    ALLOWED_METHODS, SUPPORTED_EXTENSIONS,
};
use crate::sip::msg::SipMessage;
use crate::sip::proxy::Peer;
use crate::sip::transaction::{ClientInvite, ClientNonInvite, Reliability, TimerConfig, TxEvent};
use bytes::Bytes;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Which side of the B2BUA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Leg {
    /// The caller (we are its UAS).
    A,
    /// The callee or divert target behind the upstream (we are its UAC).
    B,
}

/// What the screening decided (mirrors `detect::score::Action`, plus the failure case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    Warn,
    Divert,
    /// ASR failed, was overloaded or timed out: `fail_open` decides.
    Unscreened,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Warn => "warn",
            Action::Divert => "divert",
            Action::Unscreened => "unscreened",
        }
    }
}

/// A prompt to play on a leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    Greeting,
    /// The warning sentence for the callee (synthesized by the runtime).
    Warning(String),
    Block,
}

/// The verdict on what the caller said.
#[derive(Debug, Clone, PartialEq)]
pub struct ScreeningResult {
    pub action: Action,
    pub score: f64,
    pub transcript: String,
    /// One line for the `X-Scamscreen-Reason` header (no personal data beyond rule names).
    pub reason: String,
    /// The sentence the callee hears when warned.
    pub warning: Option<String>,
    /// The rules that fired, with the words they matched and when.
    pub reasons: Vec<crate::detect::Reason>,
}

/// Configuration of screened calls.
#[derive(Debug, Clone)]
pub struct CallConfig {
    /// Where leg B goes: the upstream PBX (always).
    pub upstream: Peer,
    /// Request-URI for leg B when the call is allowed or warned (default: the original
    /// Request-URI).
    pub divert_uri: Option<String>,
    /// `host:port` for our Via and Contact.
    pub local_host: String,
    pub listen: Duration,
    /// Most time from the end of the caller's speech to a verdict before `fail_open` applies.
    pub screening_timeout: Duration,
    pub fail_open: bool,
    /// Most time the callee may ring.
    pub ring_timeout: Duration,
    pub timers: TimerConfig,
}

/// Something the call asks the runtime to do.
#[derive(Debug, Clone, PartialEq)]
pub enum CallAction {
    /// Send SIP bytes.
    Send {
        to: Peer,
        bytes: Bytes,
    },
    PlayPrompt {
        leg: Leg,
        prompt: Prompt,
    },
    /// Record the caller until end of speech or `max`; answer with `SpeechCaptured`.
    StartListening {
        max: Duration,
    },
    /// Transcribe what was captured and score it; answer with `Screened`.
    Screen,
    /// Ringback towards the caller while the callee rings (on/off).
    Ringback(bool),
    /// The callee's SDP answer (for leg B's media).
    CalleeSdp(Bytes),
    /// Relay media between the legs from now on.
    Bridge,
    /// The call is over: free its ports and ASR slot, store the record.
    Finished(CallRecordDraft),
}

/// What happened to a call, for the call record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// Bridged to the callee (allow, warn, or fail-open).
    Connected,
    /// Diverted to `divert_uri` and answered there.
    Diverted,
    /// Blocked with the announcement.
    Blocked,
    /// The caller hung up before a verdict or before the callee answered.
    CallerHungUp,
    /// The callee did not answer, was busy or failed.
    CalleeFailed(u16),
    /// Something timed out or failed in signalling.
    Failed,
}

/// The record of a finished call (the store turns it into a row).
#[derive(Debug, Clone, PartialEq)]
pub struct CallRecordDraft {
    pub call_id: String,
    pub result: Option<ScreeningResult>,
    pub outcome: CallOutcome,
    /// End of the caller's speech → verdict.
    pub time_to_verdict: Option<Duration>,
    /// Answer → end of listening.
    pub listen: Option<Duration>,
    /// Answer → verdict: greeting, listening and transcription.
    pub screening: Option<Duration>,
    /// Whole call.
    pub total: Duration,
}

/// Input to the call.
#[derive(Debug, Clone, PartialEq)]
pub enum CallInput {
    /// A SIP message on leg A (requests from the caller, responses to our BYE).
    FromCaller(SipMessage),
    /// A SIP message on leg B.
    FromCallee(SipMessage),
    PromptFinished(Leg),
    /// Listening ended (end of speech, or `listen` reached).
    SpeechCaptured,
    Screened(Result<ScreeningResult, String>),
    /// No RTP on a leg for too long.
    MediaTimeout(Leg),
}

/// Where the call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Greeting,
    Listening,
    Screening,
    CallingCallee,
    Warning,
    Bridged,
    Blocking,
    Ending,
    Ended,
}

/// A request we sent (BYE, CANCEL) and its client transaction, matched by branch and CSeq
/// method (§17.1.3).
struct SentRequest {
    leg: Leg,
    branch: String,
    method: &'static str,
    tx: ClientNonInvite,
}

pub struct ScreenedCall {
    id: u64,
    cfg: CallConfig,
    stage: Stage,
    a: Dialog,
    b: Option<Dialog>,
    b_invite: Option<ClientInvite>,
    /// Bytes of our INVITE to B (for CANCEL).
    b_invite_msg: Option<SipMessage>,
    /// Leg B's dialog is up and must be ended with BYE.
    b_answered: bool,
    /// A 2xx to our INVITE has come (later ones are retransmissions or other forks).
    b_confirmed: bool,
    b_ringing: bool,
    /// CANCEL wanted before the callee's first provisional response.
    cancel_pending: bool,
    /// To tags of other forks' 2xx that we ACKed and hung up (§13.2.2.4).
    ended_forks: Vec<String>,
    /// Non-INVITE client transactions we run (BYE, CANCEL).
    requests: Vec<SentRequest>,
    /// Server transactions of the requests the peers sent us.
    served: ServedRequests,
    /// 2xx responses to INVITEs awaiting their ACK.
    answers: PendingAnswers,
    /// The caller's BYE came: leg A's dialog is over (§15.1.2).
    a_hung_up: bool,
    /// Our 200 to the INVITE (for retransmitted INVITEs).
    invite_response: Bytes,
    /// Top Via branch and CSeq number of the initial INVITE.
    invite_branch: String,
    invite_cseq: u32,
    /// RFC 4028 §10: when we send BYE unless the peer refreshes the session first, per
    /// leg (A, B).
    session_bye: [Option<Instant>; 2],
    original_uri: String,
    original_from: String,
    original_to: String,
    local_sdp_b: Bytes,
    result: Option<ScreeningResult>,
    outcome: Option<CallOutcome>,
    started: Instant,
    listen_started: Option<Instant>,
    speech_ended: Option<Instant>,
    verdict_at: Option<Instant>,
    deadline: Option<Instant>,
    branch_seq: u32,
    actions: VecDeque<CallAction>,
}

impl ScreenedCall {
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
    ) -> ScreenedCall {
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
        let mut call = ScreenedCall {
            id,
            stage: Stage::Greeting,
            b: None,
            b_invite: None,
            b_invite_msg: None,
            b_answered: false,
            b_confirmed: false,
            b_ringing: false,
            cancel_pending: false,
            ended_forks: Vec::new(),
            requests: Vec::new(),
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

    fn peer(&self, leg: Leg) -> Peer {
        match leg {
            Leg::A => self.a.peer,
            Leg::B => self.cfg.upstream,
        }
    }

    fn send(&mut self, leg: Leg, bytes: Bytes) {
        let to = self.peer(leg);
        self.actions.push_back(CallAction::Send { to, bytes });
    }

    fn branch(&mut self) -> String {
        self.branch_seq += 1;
        format!("z9hG4bK-call{:x}-{}", self.id, self.branch_seq)
    }

    fn reliability(&self, leg: Leg) -> Reliability {
        reliability_of(self.peer(leg))
    }

    fn session_bye_mut(&mut self, leg: Leg) -> &mut Option<Instant> {
        match leg {
            Leg::A => &mut self.session_bye[0],
            Leg::B => &mut self.session_bye[1],
        }
    }

    /// The earliest time `handle_timeout` has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Vec<Instant> = Vec::new();
        t.extend(self.answers.poll_timeout());
        if let Some(d) = self.deadline {
            t.push(d);
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
        if self.deadline.is_some_and(|d| now >= d) {
            self.deadline = None;
            match self.stage {
                Stage::Listening => self.listening_done(now),
                Stage::Screening => self.screened(now, Err("screening timed out".into())),
                Stage::CallingCallee => {
                    // The callee rang too long: stop ringing it, end the call.
                    self.cancel_b(now);
                    self.hang_up(now, CallOutcome::CalleeFailed(408));
                }
                _ => {}
            }
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
        while let Some((leg, bytes)) = self.served.poll_transmit() {
            let to = peer(leg);
            self.actions.push_back(CallAction::Send { to, bytes });
        }
        if self.b_invite.as_ref().is_some_and(|t| t.is_terminated()) {
            self.b_invite = None;
        }
        if b_timeout && !self.b_answered && self.stage == Stage::CallingCallee {
            self.hang_up(now, CallOutcome::CalleeFailed(408));
        }
        self.maybe_finish(now);
    }

    pub fn handle_input(&mut self, now: Instant, input: CallInput) {
        match input {
            CallInput::FromCaller(msg) => self.on_caller_message(now, msg),
            CallInput::FromCallee(msg) => self.on_callee_message(now, msg),
            CallInput::PromptFinished(leg) => self.prompt_finished(now, leg),
            CallInput::SpeechCaptured => {
                if self.stage == Stage::Listening {
                    self.listening_done(now);
                }
            }
            CallInput::Screened(r) => {
                if self.stage == Stage::Screening {
                    self.screened(now, r);
                }
            }
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
            (Stage::Greeting, Leg::A) => {
                self.stage = Stage::Listening;
                self.listen_started = Some(now);
                self.deadline = Some(now + self.cfg.listen);
                self.actions.push_back(CallAction::StartListening {
                    max: self.cfg.listen,
                });
            }
            (Stage::Warning, Leg::B) => {
                self.stage = Stage::Bridged;
                self.actions.push_back(CallAction::Bridge);
            }
            (Stage::Blocking, Leg::A) => {
                self.outcome = Some(CallOutcome::Blocked);
                self.hang_up(now, CallOutcome::Blocked);
            }
            _ => {}
        }
    }

    fn listening_done(&mut self, now: Instant) {
        self.speech_ended = Some(now);
        self.stage = Stage::Screening;
        self.deadline = Some(now + self.cfg.screening_timeout);
        self.actions.push_back(CallAction::Screen);
    }

    fn screened(&mut self, now: Instant, r: Result<ScreeningResult, String>) {
        self.deadline = None;
        self.verdict_at = Some(now);
        let result = r.unwrap_or_else(|reason| ScreeningResult {
            action: Action::Unscreened,
            score: 0.0,
            transcript: String::new(),
            reason: format!("unscreened: {reason}"),
            warning: None,
            reasons: Vec::new(),
        });
        let action = match result.action {
            Action::Unscreened if self.cfg.fail_open => Action::Allow,
            Action::Unscreened => Action::Divert,
            a => a,
        };
        let verdict_header = result.action.as_str();
        let score = result.score;
        let reason = result.reason.clone();
        self.result = Some(result);
        match action {
            Action::Divert if self.cfg.divert_uri.is_none() => {
                self.stage = Stage::Blocking;
                self.actions.push_back(CallAction::PlayPrompt {
                    leg: Leg::A,
                    prompt: Prompt::Block,
                });
            }
            _ => {
                let uri = match action {
                    Action::Divert => self.cfg.divert_uri.clone().unwrap_or_default(),
                    _ => self.original_uri.clone(),
                };
                self.call_b(now, &uri, verdict_header, score, &reason);
            }
        }
    }

    fn call_b(&mut self, now: Instant, uri: &str, verdict: &str, score: f64, reason: &str) {
        let contact = format!("<sip:scamscreen@{}>", self.cfg.local_host);
        let local = NameAddrText::of(&self.original_from);
        let remote = NameAddrText::of(&self.original_to);
        let mut b = Dialog::new_uac(
            &format!("ss-{}-{:x}", self.a.call_id, self.id),
            &local,
            &format!("ss{:x}b", self.id),
            &remote,
            uri,
            self.cfg.upstream,
            &contact,
            &self.cfg.local_host,
        );
        let branch = self.branch();
        let mut invite = b.request("INVITE", &branch, None);
        invite.push_header("X-Scamscreen-Caller", "withheld");
        invite.push_header("X-Scamscreen-Verdict", verdict);
        invite.push_header("X-Scamscreen-Score", format!("{score:.2}"));
        invite.push_header("X-Scamscreen-Reason", reason.replace(['\r', '\n'], " "));
        invite.push_header("Content-Type", "application/sdp");
        invite.set_body(self.local_sdp_b.clone());
        let reliability = self.reliability(Leg::B);
        self.b_invite = Some(ClientInvite::new(
            now,
            invite.to_bytes(),
            reliability,
            &self.cfg.timers,
        ));
        self.b_invite_msg = Some(invite);
        self.b = Some(b);
        self.stage = Stage::CallingCallee;
        self.deadline = Some(now + self.cfg.ring_timeout);
    }

    fn on_caller_message(&mut self, now: Instant, msg: SipMessage) {
        if msg.is_request() {
            self.on_request(now, Leg::A, msg);
        } else {
            // A response on leg A: to our BYE.
            self.response_to_request(now, Leg::A, &msg);
        }
    }

    /// A request from either peer, through the UAS core's checks in RFC 3261 order (see
    /// the module comment): transaction (§17.2.3), dialog (§8.2.2.2, §12.2.2), method
    /// (§8.2.1), Require (§8.2.2.3), then the method itself.
    fn on_request(&mut self, now: Instant, leg: Leg, msg: SipMessage) {
        let method = msg.method().unwrap_or_default().to_string();
        let branch = top_branch(&msg).unwrap_or_default();
        if self.served.absorb(now, leg, &msg) {
            return;
        }
        if tag_of(&msg, "to").is_none() {
            self.on_request_without_to_tag(now, leg, &method, &branch, &msg);
            return;
        }
        let admitted = match (leg, &mut self.b) {
            (Leg::A, _) if self.a_hung_up => Err(Refusal::no_dialog()),
            (Leg::A, _) => self.a.admit_request(&msg),
            (Leg::B, Some(b)) => b.admit_request(&msg),
            (Leg::B, None) => Err(Refusal::no_dialog()),
        };
        if let Err(refusal) = admitted {
            // Not acted on. An ACK is never answered (§17.1.1.3).
            if method != "ACK" {
                self.refuse_statelessly(leg, &msg, &refusal);
            }
            return;
        }
        match method.as_str() {
            "ACK" => self.on_ack(leg, &msg),
            "CANCEL" => {
                // §9.2: a CANCEL inside a dialog is for a re-INVITE, which we answered at
                // once: 200, and no effect. One for no request of ours: 481.
                let known = self.served.answered_invite(leg, &branch);
                let resp = match known {
                    true => self.dialog(leg).map(|d| d.response(&msg, 200, "OK")),
                    false => self
                        .dialog(leg)
                        .map(|d| Refusal::no_dialog().response(&msg, &d.local_tag)),
                };
                if let Some(resp) = resp {
                    self.reply(now, leg, &msg, resp);
                }
            }
            _ => self.on_dialog_request(now, leg, &method, &msg),
        }
    }

    fn dialog(&self, leg: Leg) -> Option<&Dialog> {
        match leg {
            Leg::A => Some(&self.a),
            Leg::B => self.b.as_ref(),
        }
    }

    /// A request with no To tag on a Call-ID this call owns: only the initial INVITE's own
    /// transaction may lack it.
    fn on_request_without_to_tag(
        &mut self,
        now: Instant,
        leg: Leg,
        method: &str,
        branch: &str,
        msg: &SipMessage,
    ) {
        let initial = leg == Leg::A && !branch.is_empty() && branch == self.invite_branch;
        let cseq = cseq_of(msg).map(|c| c.0);
        match method {
            // Acknowledges nothing of ours (our responses all carry a To tag).
            "ACK" => {}
            "INVITE" if initial => {
                // The initial INVITE again: our 200 again while we still retransmit it
                // (§13.3.1.4); after its ACK the transaction is over and this is absorbed.
                let cseq = self.invite_cseq;
                if self.answers.awaits_ack(Leg::A, cseq) {
                    let bytes = self.invite_response.clone();
                    self.send(Leg::A, bytes);
                }
            }
            "CANCEL" if initial && cseq == Some(self.invite_cseq) => {
                // §9.2: the INVITE has its final response, so the CANCEL gets 200 and has
                // no effect on the call (the caller hangs up with BYE, §15).
                let ok = self.a.response(msg, 200, "OK");
                self.reply(now, leg, msg, ok);
            }
            // §8.2.2.2: the same request again by another path (same From tag, Call-ID and
            // CSeq, another branch) is a merged request. A new INVITE reusing this Call-ID
            // with another From tag would be a second dialog this call cannot host (one
            // call per Call-ID): refused the same way.
            "INVITE" => self.refuse_statelessly(leg, msg, &Refusal::new(482, "Loop Detected")),
            // §9.2, §12.2.2, §15.1.2: no transaction or dialog of ours matches.
            _ => self.refuse_statelessly(leg, msg, &Refusal::no_dialog()),
        }
    }

    /// An ACK in the dialog: the 2xx it acknowledges is no longer retransmitted.
    fn on_ack(&mut self, leg: Leg, msg: &SipMessage) {
        if let Some((cseq, _)) = cseq_of(msg) {
            self.answers.acked(leg, cseq);
        }
    }

    /// A request admitted into a leg's dialog (tags and CSeq checked).
    fn on_dialog_request(&mut self, now: Instant, leg: Leg, method: &str, msg: &SipMessage) {
        let Some(local_tag) = self.dialog(leg).map(|d| d.local_tag.clone()) else {
            return;
        };
        let refusal = refusal_for_method(msg);
        if let Some(refusal) = refusal {
            let resp = refusal.response(msg, &local_tag);
            self.reply(now, leg, msg, resp);
            return;
        }
        match method {
            "BYE" => self.on_bye(now, leg, msg),
            "INVITE" | "UPDATE" => self.accept_session_update(now, leg, msg),
            "OPTIONS" => {
                // §11.2: what we can do, in the dialog.
                if let Some(mut ok) = self.dialog(leg).map(|d| d.response(msg, 200, "OK")) {
                    ok.push_header("Allow", ALLOWED_METHODS);
                    ok.push_header("Accept", "application/sdp");
                    ok.push_header("Supported", SUPPORTED_EXTENSIONS);
                    self.reply(now, leg, msg, ok);
                }
            }
            _ => {
                // INFO. Legacy INFO (RFC 6086 §2: no Info-Package header; DTMF, keepalives)
                // is acknowledged with 200 and not relayed. An Info Package we never
                // declared in Recv-Info gets 469 with an empty Recv-Info (RFC 6086 §4.2.2).
                let resp = if msg.header("info-package").is_some() {
                    Refusal::new(469, "Bad Info Package")
                        .with("Recv-Info", "")
                        .response(msg, &local_tag)
                } else {
                    crate::call::dialog::response_to(msg, 200, "OK", &local_tag)
                };
                self.reply(now, leg, msg, resp);
            }
        }
    }

    fn on_bye(&mut self, now: Instant, leg: Leg, msg: &SipMessage) {
        let Some(ok) = self.dialog(leg).map(|d| d.response(msg, 200, "OK")) else {
            return;
        };
        self.reply(now, leg, msg, ok);
        match leg {
            Leg::A => {
                self.a_hung_up = true;
                self.a_gone(now);
            }
            Leg::B => {
                self.b_answered = false;
                self.b = None;
                if !matches!(self.stage, Stage::Ending | Stage::Ended) {
                    let outcome = self.outcome.unwrap_or(CallOutcome::Connected);
                    self.hang_up(now, outcome);
                }
            }
        }
    }

    /// A re-INVITE or UPDATE (hold, a codec change, or only a session refresh, RFC 4028):
    /// the session stays as it is. A re-INVITE gets our current SDP (the answer to its
    /// offer, or our offer when it had none, §14.2); an UPDATE gets it only when it carried
    /// an offer (RFC 3311 §5.2). The session timer is settled again (RFC 4028 §9, see
    /// [`accepted_session_expires`]) and our 2xx to a re-INVITE is retransmitted until its
    /// ACK like the first one (§13.3.1.4).
    fn accept_session_update(&mut self, now: Instant, leg: Leg, msg: &SipMessage) {
        let is_invite = msg.method() == Some("INVITE");
        let sdp = match leg {
            Leg::A => sdp_of(&self.invite_response),
            Leg::B => Some(self.local_sdp_b.clone()),
        };
        let session_expires = accepted_session_expires(msg);
        let dialog = match leg {
            Leg::A => &mut self.a,
            Leg::B => match &mut self.b {
                Some(b) => b,
                None => return,
            },
        };
        dialog.refresh_target(msg);
        let mut ok = dialog.response(msg, 200, "OK");
        ok.push_header("Allow", ALLOWED_METHODS);
        ok.push_header("Supported", SUPPORTED_EXTENSIONS);
        for (name, value) in session_expires.into_iter().flat_map(session_timer_headers) {
            ok.push_header(name, value);
        }
        if is_invite || !msg.body().is_empty() {
            if let Some(sdp) = sdp {
                ok.push_header("Content-Type", "application/sdp");
                ok.set_body(sdp);
            }
        }
        *self.session_bye_mut(leg) = session_expires.map(|s| now + session_bye_after(s));
        let bytes = ok.to_bytes();
        if is_invite {
            let cseq = cseq_of(msg).map(|c| c.0).unwrap_or(0);
            self.answers.start(now, leg, cseq, bytes.clone());
        }
        self.reply_bytes(now, leg, msg, 200, bytes);
    }

    /// Our answer to a request, through a server transaction so its retransmissions get the
    /// same answer (§17.2; see [`ServedRequests`]).
    fn reply(&mut self, now: Instant, leg: Leg, req: &SipMessage, resp: SipMessage) {
        let status = resp.status().unwrap_or(500);
        self.reply_bytes(now, leg, req, status, resp.to_bytes());
    }

    fn reply_bytes(&mut self, now: Instant, leg: Leg, req: &SipMessage, status: u16, bytes: Bytes) {
        self.served.answer(now, leg, req, status, bytes);
        while let Some((leg, bytes)) = self.served.poll_transmit() {
            self.send(leg, bytes);
        }
    }

    /// A refusal for a request that is not in our dialogs, sent once and forgotten
    /// (§8.2.7): a forged request costs one datagram and no state; its retransmissions are
    /// refused again the same way. (It goes to the leg's peer, like everything we send.)
    fn refuse_statelessly(&mut self, leg: Leg, msg: &SipMessage, refusal: &Refusal) {
        let tag = format!("ss{:x}x", self.id);
        let bytes = refusal.response(msg, &tag).to_bytes();
        self.send(leg, bytes);
    }

    /// The caller left: end leg B, whatever its state.
    fn a_gone(&mut self, now: Instant) {
        if matches!(self.stage, Stage::Ending | Stage::Ended) {
            return;
        }
        self.answers.clear();
        let outcome = if self.stage == Stage::Bridged || self.stage == Stage::Warning {
            self.outcome.unwrap_or(CallOutcome::Connected)
        } else {
            CallOutcome::CallerHungUp
        };
        self.outcome = Some(outcome);
        self.end_b(now);
        self.stage = Stage::Ending;
        self.maybe_finish(now);
    }

    fn on_callee_message(&mut self, now: Instant, msg: SipMessage) {
        if msg.is_request() {
            self.on_request(now, Leg::B, msg);
            return;
        }
        let status = msg.status().unwrap_or(0);
        let Some((cseq, cseq_method)) = cseq_of(&msg) else {
            return;
        };
        if cseq_method != "INVITE" {
            self.response_to_request(now, Leg::B, &msg);
            return;
        }
        // Only responses to our INVITE count: its branch and CSeq (§17.1.3), our From tag.
        let Some(inv) = &self.b_invite_msg else {
            return;
        };
        let invite_cseq = cseq_of(inv).map(|c| c.0).unwrap_or(1);
        if top_branch(&msg) != top_branch(inv)
            || cseq != invite_cseq
            || tag_of(&msg, "from") != tag_of(inv, "from")
        {
            return;
        }
        let deliver = match &mut self.b_invite {
            Some(tx) => tx.on_response(now, status, || {
                crate::sip::proxy::ack_for_non_2xx(inv, &msg).to_bytes()
            }),
            // A 2xx retransmission after the transaction ended: ACK it again below.
            None => (200..300).contains(&status),
        };
        if !deliver {
            return;
        }
        match status {
            100..=199 if self.cancel_pending => {
                self.cancel_pending = false;
                self.cancel_b(now);
            }
            100 => {}
            101..=199 => {
                if !self.b_ringing && self.stage == Stage::CallingCallee {
                    self.b_ringing = true;
                    self.actions.push_back(CallAction::Ringback(true));
                }
            }
            200..=299 => {
                let first = !self.b_confirmed;
                let to_tag = tag_of(&msg, "to").unwrap_or_default();
                if !first && self.b.as_ref().is_some_and(|b| b.remote_tag != to_tag) {
                    self.end_fork(now, &msg, invite_cseq, to_tag);
                    return;
                }
                if let Some(b) = &mut self.b {
                    if first {
                        b.confirm_from_response(&msg);
                    }
                    // ACK for 2xx is the UAC core's, sent for every 2xx (§13.2.2.4).
                    let branch = format!("z9hG4bK-call{:x}-ack", self.id);
                    let ack = b.request("ACK", &branch, Some(invite_cseq)).to_bytes();
                    self.actions.push_back(CallAction::Send {
                        to: self.cfg.upstream,
                        bytes: ack,
                    });
                }
                if !first {
                    return;
                }
                self.b_confirmed = true;
                self.b_answered = true;
                self.deadline = None;
                if self.stage != Stage::CallingCallee {
                    // The caller left while the callee was being rung: hang up on B.
                    self.end_b(now);
                    return;
                }
                if self.b_ringing {
                    self.actions.push_back(CallAction::Ringback(false));
                }
                self.actions
                    .push_back(CallAction::CalleeSdp(msg.body().clone()));
                let diverted = self
                    .result
                    .as_ref()
                    .is_some_and(|r| r.action == Action::Divert);
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
                        self.stage = Stage::Warning;
                        self.actions.push_back(CallAction::PlayPrompt {
                            leg: Leg::B,
                            prompt: Prompt::Warning(text),
                        });
                    }
                    None => {
                        self.stage = Stage::Bridged;
                        self.actions.push_back(CallAction::Bridge);
                    }
                }
            }
            _ => {
                // Busy, declined, not found…: the caller is already answered, so end it.
                self.b = None;
                if self.stage == Stage::CallingCallee {
                    self.hang_up(now, CallOutcome::CalleeFailed(status));
                }
            }
        }
    }

    /// A 2xx from another fork of our INVITE than the one we bridged: ACK it (every 2xx
    /// is ACKed) and hang it up once (§13.2.2.4).
    fn end_fork(&mut self, now: Instant, msg: &SipMessage, invite_cseq: u32, to_tag: String) {
        let Some(b) = &self.b else {
            return;
        };
        let mut fork = b.clone();
        fork.confirm_from_response(msg);
        let ack_branch = format!("z9hG4bK-call{:x}-ack", self.id);
        let ack = fork
            .request("ACK", &ack_branch, Some(invite_cseq))
            .to_bytes();
        self.send(Leg::B, ack);
        if self.ended_forks.contains(&to_tag) {
            return;
        }
        self.ended_forks.push(to_tag);
        let branch = self.branch();
        let bye = fork.request("BYE", &branch, None).to_bytes();
        self.push_request(now, Leg::B, branch, "BYE", bye);
    }

    /// A response to one of our BYEs or CANCELs: its branch and CSeq method name the
    /// transaction (§17.1.3); anything else is dropped.
    fn response_to_request(&mut self, now: Instant, leg: Leg, msg: &SipMessage) {
        let status = msg.status().unwrap_or(0);
        let branch = top_branch(msg);
        let method = cseq_of(msg).map(|c| c.1);
        for r in &mut self.requests {
            if r.leg == leg
                && branch.as_deref() == Some(r.branch.as_str())
                && method.as_deref() == Some(r.method)
            {
                r.tx.on_response(now, status);
            }
        }
    }

    /// Stop ringing B (CANCEL) or hang up B (BYE), whichever applies.
    fn cancel_b(&mut self, now: Instant) {
        use crate::sip::transaction::ClientInviteState as CI;
        if self.b_answered {
            return;
        }
        match self.b_invite.as_ref().map(|t| t.state()) {
            Some(CI::Proceeding) => {}
            Some(CI::Calling) => {
                // §9.1: no CANCEL before a provisional response; send it when one comes.
                self.cancel_pending = true;
                return;
            }
            _ => return, // already final: nothing to cancel
        }
        if self
            .requests
            .iter()
            .any(|r| r.leg == Leg::B && r.method == "CANCEL")
        {
            return; // one CANCEL is enough
        }
        if let Some(inv) = &self.b_invite_msg {
            if self.b_invite.is_some() {
                let cancel = crate::sip::proxy::cancel_for_invite(inv);
                let branch = top_branch(&cancel).unwrap_or_default();
                self.push_request(now, Leg::B, branch, "CANCEL", cancel.to_bytes());
            }
        }
    }

    fn end_b(&mut self, now: Instant) {
        if self.b_answered {
            if let Some(b) = &mut self.b {
                self.branch_seq += 1;
                let branch = format!("z9hG4bK-call{:x}-{}", self.id, self.branch_seq);
                let bye = b.request("BYE", &branch, None).to_bytes();
                self.push_request(now, Leg::B, branch, "BYE", bye);
            }
            self.b_answered = false;
        } else {
            self.cancel_b(now);
        }
    }

    fn push_request(
        &mut self,
        now: Instant,
        leg: Leg,
        branch: String,
        method: &'static str,
        bytes: Bytes,
    ) {
        let reliability = self.reliability(leg);
        self.requests.push(SentRequest {
            leg,
            branch,
            method,
            tx: ClientNonInvite::new(now, bytes, reliability, &self.cfg.timers),
        });
    }

    /// End the call from our side: BYE the caller (if still there) and end leg B.
    fn hang_up(&mut self, now: Instant, outcome: CallOutcome) {
        if matches!(self.stage, Stage::Ending | Stage::Ended) {
            return;
        }
        self.outcome = Some(self.outcome.unwrap_or(outcome));
        if self.outcome == Some(CallOutcome::Connected) && outcome != CallOutcome::Connected {
            self.outcome = Some(outcome);
        }
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
        self.stage == Stage::Ended && self.poll_timeout().is_none()
    }

    fn maybe_finish(&mut self, now: Instant) {
        if self.stage != Stage::Ending || self.awaiting_final() {
            return;
        }
        self.stage = Stage::Ended;
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
            total: now.saturating_duration_since(self.started),
        };
        self.actions.push_back(CallAction::Finished(record));
    }
}

fn reliability_of(peer: Peer) -> Reliability {
    match peer.transport {
        crate::sip::proxy::Transport::Udp => Reliability::Unreliable,
        crate::sip::proxy::Transport::Tcp => Reliability::Reliable,
    }
}

fn sdp_of(response: &Bytes) -> Option<Bytes> {
    let msg = SipMessage::parse(response).ok()?;
    let body = msg.body().clone();
    (!body.is_empty()).then_some(body)
}

/// `"Display" <uri>` without header parameters (the tag is ours to choose).
struct NameAddrText;

impl NameAddrText {
    fn of(value: &str) -> String {
        match crate::sip::uri::NameAddr::parse(value) {
            Ok(n) => match n.display {
                Some(d) => format!("\"{}\" <{}>", d.replace('"', ""), n.uri_text),
                None => format!("<{}>", n.uri_text),
            },
            Err(_) => "<sip:anonymous@anonymous.invalid>".to_string(),
        }
    }
}
