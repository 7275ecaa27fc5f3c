//! `ScreenedCall`: the signalling and stage logic of one screened call.

use super::dialog::Dialog;
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

/// Leg A's 2xx retransmission (RFC 3261 §13.3.1.4): T1 doubling to T2 until the ACK, give
/// up after 64*T1.
struct AnswerRetransmit {
    bytes: Bytes,
    next: Instant,
    interval: Duration,
    give_up: Instant,
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
    b_answered: bool,
    b_ringing: bool,
    /// CANCEL wanted before the callee's first provisional response.
    cancel_pending: bool,
    /// Non-INVITE client transactions we run (BYE, CANCEL), with their leg and branch.
    requests: Vec<(Leg, String, ClientNonInvite)>,
    answer: Option<AnswerRetransmit>,
    acked: bool,
    /// Our 200 to the INVITE (for retransmitted INVITEs).
    invite_response: Bytes,
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
        let mut ok = a.response(invite, 200, "OK");
        ok.push_header("Content-Type", "application/sdp");
        ok.set_body(local_sdp_a);
        let bytes = ok.to_bytes();
        let t1 = cfg.timers.t1;
        let mut call = ScreenedCall {
            id,
            stage: Stage::Greeting,
            b: None,
            b_invite: None,
            b_invite_msg: None,
            b_answered: false,
            b_ringing: false,
            cancel_pending: false,
            requests: Vec::new(),
            answer: Some(AnswerRetransmit {
                bytes: bytes.clone(),
                next: now + t1,
                interval: t1,
                give_up: now + cfg.timers.transaction_timeout(),
            }),
            acked: false,
            invite_response: bytes.clone(),
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
        let trying = call.a.response(invite, 100, "Trying").to_bytes();
        call.send(Leg::A, trying);
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

    /// The earliest time `handle_timeout` has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Vec<Instant> = Vec::new();
        if let Some(a) = &self.answer {
            t.push(a.next.min(a.give_up));
        }
        if let Some(d) = self.deadline {
            t.push(d);
        }
        if let Some(tx) = &self.b_invite {
            t.extend(tx.poll_timeout());
        }
        for (_, _, tx) in &self.requests {
            t.extend(tx.poll_timeout());
        }
        t.into_iter().min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(a) = &mut self.answer {
            if now >= a.give_up {
                // No ACK for our 200 (§13.3.1.4): end the dialog with BYE.
                self.answer = None;
                self.hang_up(now, CallOutcome::Failed);
            } else if now >= a.next {
                let bytes = a.bytes.clone();
                a.interval = (a.interval * 2).min(self.cfg.timers.t2);
                a.next = now + a.interval;
                self.send(Leg::A, bytes);
            }
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
        for (_, _, tx) in &mut self.requests {
            tx.handle_timeout(now);
        }
        self.drain_transactions(now);
    }

    fn drain_transactions(&mut self, now: Instant) {
        let upstream = self.cfg.upstream;
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
        let a_peer = self.a.peer;
        for (leg, _, tx) in &mut self.requests {
            let to = if *leg == Leg::A { a_peer } else { upstream };
            while let Some(bytes) = tx.poll_transmit() {
                self.actions.push_back(CallAction::Send { to, bytes });
            }
            while tx.poll_event().is_some() {}
        }
        self.requests.retain(|(_, _, tx)| !tx.is_terminated());
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
        let reliability = match self.cfg.upstream.transport {
            crate::sip::proxy::Transport::Udp => Reliability::Unreliable,
            crate::sip::proxy::Transport::Tcp => Reliability::Reliable,
        };
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
        let Some(method) = msg.method().map(str::to_string) else {
            // A response on leg A: to our BYE.
            self.response_to_request(now, Leg::A, &msg);
            return;
        };
        match method.as_str() {
            "ACK" => {
                self.acked = true;
                self.answer = None;
            }
            "INVITE" if !self.acked && msg.header("to").is_some_and(|t| !t.contains("tag=")) => {
                // Retransmitted initial INVITE: our 200 again.
                let bytes = self.invite_response.clone();
                self.send(Leg::A, bytes);
            }
            "BYE" | "CANCEL" => {
                let ok = self.a.response(&msg, 200, "OK").to_bytes();
                self.send(Leg::A, ok);
                self.a_gone(now);
            }
            _ => self.answer_in_dialog(Leg::A, &msg),
        }
    }

    /// The caller left: end leg B, whatever its state.
    fn a_gone(&mut self, now: Instant) {
        if matches!(self.stage, Stage::Ending | Stage::Ended) {
            return;
        }
        self.answer = None;
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

    /// Requests we do not act on (re-INVITE, UPDATE, INFO, OPTIONS…): answered sensibly.
    fn answer_in_dialog(&mut self, leg: Leg, msg: &SipMessage) {
        let dialog = match leg {
            Leg::A => &self.a,
            Leg::B => match &self.b {
                Some(b) => b,
                None => return,
            },
        };
        let method = msg.method().unwrap_or_default();
        let resp = match method {
            // A re-INVITE or UPDATE (session refresh, hold): keep our session as it is.
            "INVITE" | "UPDATE" if leg == Leg::A => {
                let mut r = dialog.response(msg, 200, "OK");
                if let Some(sdp) = sdp_of(&self.invite_response) {
                    r.push_header("Content-Type", "application/sdp");
                    r.set_body(sdp);
                }
                r
            }
            "INVITE" | "UPDATE" => {
                let mut r = dialog.response(msg, 200, "OK");
                r.push_header("Content-Type", "application/sdp");
                r.set_body(self.local_sdp_b.clone());
                r
            }
            "INFO" | "OPTIONS" | "NOTIFY" | "MESSAGE" => dialog.response(msg, 200, "OK"),
            "PRACK" => dialog.response(msg, 200, "OK"),
            _ => dialog.response(msg, 405, "Method Not Allowed"),
        };
        let bytes = resp.to_bytes();
        self.send(leg, bytes);
    }

    fn on_callee_message(&mut self, now: Instant, msg: SipMessage) {
        if let Some(method) = msg.method().map(str::to_string) {
            match method.as_str() {
                "BYE" => {
                    if let Some(b) = &self.b {
                        let ok = b.response(&msg, 200, "OK").to_bytes();
                        self.send(Leg::B, ok);
                    }
                    self.b_answered = false;
                    self.b = None;
                    if !matches!(self.stage, Stage::Ending | Stage::Ended) {
                        let outcome = self.outcome.unwrap_or(CallOutcome::Connected);
                        self.hang_up(now, outcome);
                    }
                }
                "ACK" => {}
                _ => self.answer_in_dialog(Leg::B, &msg),
            }
            return;
        }
        let status = msg.status().unwrap_or(0);
        let cseq_method = msg
            .header("cseq")
            .and_then(|c| c.split_whitespace().nth(1))
            .unwrap_or_default()
            .to_string();
        if cseq_method != "INVITE" {
            self.response_to_request(now, Leg::B, &msg);
            return;
        }
        // Our INVITE to B.
        let deliver = match (&mut self.b_invite, &self.b_invite_msg) {
            (Some(tx), Some(inv)) => tx.on_response(now, status, || {
                crate::sip::proxy::ack_for_non_2xx(inv, &msg).to_bytes()
            }),
            // A 2xx retransmission after the transaction ended: ACK it again below.
            _ => (200..300).contains(&status),
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
                let first = !self.b_answered;
                if let Some(b) = &mut self.b {
                    if first {
                        b.confirm_from_response(&msg);
                    }
                    // ACK for 2xx is the UAC core's, sent for every 2xx (§13.2.2.4).
                    let branch = format!("z9hG4bK-call{:x}-ack", self.id);
                    let cseq = b.local_cseq.max(1);
                    let ack = b.request("ACK", &branch, Some(cseq)).to_bytes();
                    self.actions.push_back(CallAction::Send {
                        to: self.cfg.upstream,
                        bytes: ack,
                    });
                }
                if !first {
                    return;
                }
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

    fn response_to_request(&mut self, now: Instant, leg: Leg, msg: &SipMessage) {
        let status = msg.status().unwrap_or(0);
        let branch = via_branch(msg);
        for (l, b, tx) in &mut self.requests {
            if *l == leg && branch.as_deref() == Some(b.as_str()) {
                tx.on_response(now, status);
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
        if let Some(inv) = &self.b_invite_msg {
            if self.b_invite.is_some() {
                let cancel = crate::sip::proxy::cancel_for_invite(inv);
                let branch = via_branch(&cancel).unwrap_or_default();
                self.push_request(now, Leg::B, branch, cancel.to_bytes());
            }
        }
    }

    fn end_b(&mut self, now: Instant) {
        if self.b_answered {
            if let Some(b) = &mut self.b {
                self.branch_seq += 1;
                let branch = format!("z9hG4bK-call{:x}-{}", self.id, self.branch_seq);
                let bye = b.request("BYE", &branch, None).to_bytes();
                self.push_request(now, Leg::B, branch, bye);
            }
            self.b_answered = false;
        } else {
            self.cancel_b(now);
        }
    }

    fn push_request(&mut self, now: Instant, leg: Leg, branch: String, bytes: Bytes) {
        let reliability = match self.peer(leg).transport {
            crate::sip::proxy::Transport::Udp => Reliability::Unreliable,
            crate::sip::proxy::Transport::Tcp => Reliability::Reliable,
        };
        self.requests.push((
            leg,
            branch,
            ClientNonInvite::new(now, bytes, reliability, &self.cfg.timers),
        ));
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
        let branch = self.branch();
        let bye = self.a.request("BYE", &branch, None).to_bytes();
        self.push_request(now, Leg::A, branch, bye);
        self.answer = None;
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
            .any(|(_, _, t)| matches!(t.state(), CN::Trying | CN::Proceeding))
    }

    /// Nothing left to absorb or retransmit: the runtime may drop the call.
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

fn via_branch(msg: &SipMessage) -> Option<String> {
    msg.header_values("via")
        .first()
        .and_then(|v| crate::sip::via::Via::parse(v).ok())
        .and_then(|v| v.branch().map(str::to_string))
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
