//! What screening found and what became of the call: the verdict's action, a failed
//! transcription, the result the rules gave, and the record of a finished call.

use std::time::Duration;

/// What the screening decided (mirrors `detect::score::Action`, plus the cases without a
/// transcript to score).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    Warn,
    Divert,
    /// ASR failed, was overloaded or timed out: `fail_open` decides.
    Unscreened,
    /// The caller said nothing, even after the re-prompt: `silent_action` decides.
    Silent,
    /// The caller keyed the bypass code: put through at once.
    Bypass,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Warn => "warn",
            Action::Divert => "divert",
            Action::Unscreened => "unscreened",
            Action::Silent => "silent",
            Action::Bypass => "bypass",
        }
    }
}

/// What a silent caller gets (`screening.silent_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SilentAction {
    /// To `divert_uri` when set, else the block announcement.
    Divert,
    /// The block announcement (and the message offer), whatever `divert_uri` says.
    Block,
    /// Ring the callee, marked `X-Scamscreen-Verdict: silent`.
    Allow,
}

/// Why a transcription brought no transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AsrFailure {
    /// A partial look the runtime did not run because the model was busy.
    Skipped,
    /// The speech model's queue was full.
    Overloaded,
    /// No transcript within `screening_timeout`.
    TimedOut,
    /// The recogniser said early that it cannot finish by `screening_timeout` (work ahead of
    /// the job, its recent speed): the call acts now instead of at the deadline.
    CannotMakeIt,
    /// The model or the scoring failed.
    Failed(String),
}

impl std::fmt::Display for AsrFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AsrFailure::Skipped => f.write_str("skipped (model busy)"),
            AsrFailure::Overloaded => f.write_str("ASR overloaded (queue full)"),
            AsrFailure::TimedOut => f.write_str("ASR timed out"),
            AsrFailure::CannotMakeIt => f.write_str("ASR cannot make the deadline"),
            AsrFailure::Failed(why) => write!(f, "ASR failed: {why}"),
        }
    }
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
    /// The rules that fired, with the words they matched and when (`at_ms`: ms into the
    /// transcribed audio as the runtime scores it; the call turns it into time in the call).
    pub reasons: Vec<crate::detect::Reason>,
    /// The detector says more speech could still change the action.
    pub more_speech: bool,
}

impl ScreeningResult {
    /// A verdict without a transcript (silent caller, bypass code, failure).
    pub fn without_transcript(action: Action, reason: String) -> ScreeningResult {
        ScreeningResult {
            action,
            score: 0.0,
            transcript: String::new(),
            reason,
            warning: None,
            reasons: Vec::new(),
            more_speech: false,
        }
    }
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
    /// The warned callee pressed 2 (or let the choice time out with `callee_default`
    /// "refuse").
    CalleeRefused,
    /// Something timed out or failed in signalling.
    Failed,
    /// scamscreen was stopped (SIGTERM) and ended the call after the shutdown grace.
    Shutdown,
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
    /// The message a blocked caller left (8 kHz mono), when they said something.
    pub message: Option<Vec<i16>>,
    /// For an unscreened call: the transcript and score made afterwards, if it came in time.
    pub afterwards: Option<ScreeningResult>,
}
