//! The ways out of screening: keys and messages.
//!
//! ```text
//!  caller keys `bypass_code` (greeting, listening, a question) ─▶ verdict `bypass`: callee rung
//!  warn ─▶ callee hears the warning + "press 1 / 2" (caller hears ringback)
//!          1 ─▶ bridged;  2 ─▶ callee hung up, caller hears the block announcement
//!          no key within `callee_choice` ─▶ `callee_default`
//!  block (no `divert_uri`) ─▶ announcement offering a message, tone ─▶ record up to
//!          `message`; ends at 4 s of silence after speech, 10 s without any, or hang-up
//! ```
//!
//! Keys arrive as RFC 4733 telephone-events (read by the runtime from RTP) or SIP INFO
//! (`application/dtmf-relay`, `application/dtmf`; read in `uas.rs`).

use super::io::{CallAction, Leg, Prompt, Stage};
use super::stage::CallSession;
use super::verdict::{Action, CallOutcome, ScreeningResult};
use crate::media::tap::{AudioFrame, ListenLimits, SpeechBuffer, SpeechState};
use std::time::{Duration, Instant};

/// Keys a caller may press per call, beyond the code's own length, before the bypass stops
/// listening to keys: a wrong guess or two is fine, a sweep through the code space is not
/// (a de Bruijn sequence would otherwise try every 4-digit code in one long call).
const BYPASS_SPARE_KEYS: usize = 4;
/// Silence after speech that ends a message.
const MESSAGE_TRAILING_SILENCE_MS: u32 = 4_000;
/// A caller who says nothing this long after the tone has left no message.
const MESSAGE_NO_SPEECH: Duration = Duration::from_secs(10);
/// Beyond `message`: RTP that stops arriving still ends the recording.
const MESSAGE_GRACE: Duration = Duration::from_secs(2);

/// The blocked caller's message while it is recorded.
pub(super) struct MessageRecorder {
    started: Instant,
    buffer: SpeechBuffer,
}

impl CallSession {
    pub(super) fn on_dtmf(&mut self, now: Instant, leg: Leg, digit: char) {
        match leg {
            Leg::A => self.caller_key(now, digit),
            Leg::B => match (self.stage, digit) {
                (Stage::Warning | Stage::CalleeChoice, '1') => self.callee_chose(now, true),
                (Stage::Warning | Stage::CalleeChoice, '2') => self.callee_chose(now, false),
                _ => {}
            },
        }
    }

    fn caller_key(&mut self, now: Instant, digit: char) {
        let Some(code) = self.cfg.bypass_code.clone() else {
            return;
        };
        if !matches!(
            self.stage,
            Stage::Greeting | Stage::Listening | Stage::Prompting
        ) {
            return;
        }
        self.keys_pressed += 1;
        if self.keys_pressed > code.len() + BYPASS_SPARE_KEYS {
            return; // too many keys: no more guesses in this call
        }
        self.digits.push(now, digit);
        if !self.digits.ends_with(&code) {
            return;
        }
        if matches!(self.stage, Stage::Greeting | Stage::Prompting) {
            self.actions.push_back(CallAction::StopPrompt(Leg::A));
        }
        self.stop_listening();
        self.listen_started.get_or_insert(now);
        self.speech_ended = Some(now);
        let r = ScreeningResult::without_transcript(Action::Bypass, "bypass code".into());
        self.decide(now, r);
    }

    /// The warned callee chose (or `callee_choice` ran out): bridge, or refuse the call.
    pub(super) fn callee_chose(&mut self, now: Instant, accept: bool) {
        if self.stage == Stage::Warning {
            self.actions.push_back(CallAction::StopPrompt(Leg::B));
        }
        self.deadline = None;
        if accept {
            self.bridge();
            return;
        }
        // Refused: hang up on the callee, tell the caller the call is not accepted.
        self.outcome = Some(CallOutcome::CalleeRefused);
        self.end_b(now);
        if self.b_ringing {
            self.b_ringing = false;
            self.actions.push_back(CallAction::Ringback(false));
        }
        self.stage = Stage::Blocking;
        self.actions.push_back(CallAction::PlayPrompt {
            leg: Leg::A,
            prompt: Prompt::Block,
        });
    }

    pub(super) fn refused_by_callee(&self) -> bool {
        self.outcome == Some(CallOutcome::CalleeRefused)
    }

    /// The announcement offering a message has played (it ends with the tone): record.
    pub(super) fn start_message(&mut self, now: Instant) {
        let limits = ListenLimits {
            trailing_silence_ms: MESSAGE_TRAILING_SILENCE_MS,
            ..ListenLimits::new(self.cfg.message.as_millis() as u32)
        };
        self.message = Some(MessageRecorder {
            started: now,
            buffer: SpeechBuffer::new(limits),
        });
        self.stage = Stage::Message;
        self.deadline = Some(now + MESSAGE_NO_SPEECH.min(self.cfg.message + MESSAGE_GRACE));
    }

    pub(super) fn message_audio(&mut self, now: Instant, frame: &AudioFrame) {
        let Some(m) = self.message.as_mut() else {
            return;
        };
        match m.buffer.push(frame) {
            SpeechState::EndOfSpeech | SpeechState::Full => self.message_done(now),
            SpeechState::Speaking => {
                // Speech began: the limit is the message length, not the no-speech wait.
                self.deadline = Some(m.started + self.cfg.message + MESSAGE_GRACE);
            }
            SpeechState::WaitingForSpeech => {}
        }
    }

    /// Recording ends (silence, the limit, no RTP): keep the message, hang up.
    pub(super) fn message_done(&mut self, now: Instant) {
        self.keep_message();
        self.hang_up(now, CallOutcome::Blocked);
    }

    /// Move a recorded message (if the caller said something) into the record.
    pub(super) fn keep_message(&mut self) {
        if let Some(m) = self.message.take() {
            if m.buffer.state() != SpeechState::WaitingForSpeech {
                self.message_pcm = Some(m.buffer.samples().to_vec());
            }
        }
    }
}
