//! `ScreenedCall`: one screened call's stages, the verdict → action logic, and the types
//! the runtime speaks to it with ([`CallInput`], [`CallAction`]).
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

use super::dialog::{
    accepted_session_expires, cseq_of, refusal_for_invite, session_bye_after,
    session_timer_headers, top_branch, Dialog, PendingAnswers, ServedRequests, ALLOWED_METHODS,
    SUPPORTED_EXTENSIONS,
};
use super::uac::SentRequest;
use crate::sip::msg::SipMessage;
use crate::sip::proxy::Peer;
use crate::sip::transaction::{ClientInvite, Reliability, TimerConfig, TxEvent};
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

/// One screened call: leg A's dialog (we are the caller's UAS) and leg B's (we are the
/// callee's UAC), the stage, and the actions waiting for the runtime. Its fields are shared
/// with `uas.rs` and `uac.rs`.
pub struct ScreenedCall {
    pub(super) id: u64,
    pub(super) cfg: CallConfig,
    pub(super) stage: Stage,
    pub(super) a: Dialog,
    pub(super) b: Option<Dialog>,
    pub(super) b_invite: Option<ClientInvite>,
    /// Bytes of our INVITE to B (for CANCEL).
    pub(super) b_invite_msg: Option<SipMessage>,
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

    /// The callee answered (leg B's first 2xx, ACKed by `uac.rs`) while we were calling
    /// it: stop the ringback, give the runtime the callee's SDP, and warn the callee first
    /// when the verdict says so.
    pub(super) fn callee_answered(&mut self, sdp: Bytes) {
        if self.b_ringing {
            self.actions.push_back(CallAction::Ringback(false));
        }
        self.actions.push_back(CallAction::CalleeSdp(sdp));
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

    /// The caller left: end leg B, whatever its state.
    pub(super) fn a_gone(&mut self, now: Instant) {
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

    /// End the call from our side: BYE the caller (if still there) and end leg B.
    pub(super) fn hang_up(&mut self, now: Instant, outcome: CallOutcome) {
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
