//! What the runtime and a call say to each other: the [`CallInput`]s it feeds a
//! [`CallSession`](super::CallSession), the [`CallAction`]s it drains, and the call's
//! [`Stage`].

use super::verdict::{AsrFailure, CallRecordDraft, ScreeningResult};
use crate::sip::msg::SipMessage;
use crate::sip::proxy::Peer;
use bytes::Bytes;
use std::time::Instant;

/// Which side of the B2BUA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Leg {
    /// The caller (we are its UAS).
    A,
    /// The callee or divert target behind the upstream (we are its UAC).
    B,
}

/// What a transcription is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// What the caller said so far, while they still talk (only run on an idle model).
    Partial,
    /// At the end of the `listen` window with the caller still talking: is the verdict clear?
    Checkpoint,
    /// Everything the caller said: the verdict.
    Full,
    /// After an unscreened verdict, for the record only (no deadline).
    Afterwards,
    /// The full verdict was open: the same audio again, heard by the bigger (multilingual)
    /// model, within the same screening deadline. Its verdict replaces the first one; when it
    /// fails or is late, the first one stands.
    Second,
}

/// A prompt to play on a leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    Greeting,
    /// "I did not hear you…": once, when the caller said nothing after the greeting.
    Reprompt,
    /// The follow-up question when the first answer left the verdict open (`follow_up`).
    FollowUp,
    /// The warning sentence for the callee, then "press 1 / 2" (synthesized by the runtime).
    Warning(String),
    Block,
    /// The block announcement that offers to leave a message, ending with a tone.
    BlockMessage,
    /// "The person you are calling cannot be reached right now…": the callee failed.
    Unavailable,
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
    /// Stop a prompt playing on a leg (a key was pressed).
    StopPrompt(Leg),
    /// Transcribe the caller's audio (8 kHz mono) and score it; answer with
    /// [`CallInput::Transcribed`] carrying the same `job`.
    Transcribe {
        job: u64,
        kind: JobKind,
        pcm: Vec<i16>,
        /// When the answer is no longer wanted; `None`: `screening_timeout` from now (no
        /// deadline for `Afterwards`).
        deadline: Option<Instant>,
    },
    /// The job's answer is no longer wanted.
    CancelTranscription(u64),
    /// Ringback towards the caller while the callee rings (on/off).
    Ringback(bool),
    /// The callee's SDP answer (for leg B's media).
    CalleeMedia(Option<crate::media::sdp::Negotiated>),
    /// Relay media between the legs from now on.
    Bridge,
    /// Signalling and media are over: free the call's ports and sockets.
    ReleaseMedia,
    /// The call is over: store the record (after `ReleaseMedia`; later when a transcript
    /// was still being made for an unscreened call).
    Finished(Box<CallRecordDraft>),
}

/// Input to the call.
#[derive(Debug, Clone, PartialEq)]
pub enum CallInput {
    /// A SIP message on leg A (requests from the caller, responses to our BYE).
    FromCaller(SipMessage),
    /// A SIP message on leg B.
    FromCallee(SipMessage),
    /// A SIP message on leg B (`upstream`) or A, with the address it came from: answers to
    /// a request go there per its top Via (RFC 3261 §18.2.2, RFC 3581), not to the leg's
    /// usual peer. (`FromCaller`/`FromCallee` assume the leg's usual peer.)
    Sip {
        upstream: bool,
        msg: SipMessage,
        source: Peer,
    },
    PromptFinished(Leg),
    /// scamscreen is stopping: end the call now on both legs (BYE, or CANCEL for a callee
    /// still ringing) and record it.
    Shutdown,
    /// The upstream (through which the callee is rung) stopped answering: a call whose
    /// INVITE to the callee got no response at all yet fails now (CalleeFailed(503)).
    CalleeUnreachable,
    /// The caller's decoded audio (leg A), while [`CallSession::wants_audio`] is true.
    CallerAudio(crate::media::tap::AudioFrame),
    /// A key pressed on a leg (RFC 4733 telephone-event; SIP INFO is read by the call).
    Dtmf {
        leg: Leg,
        digit: char,
    },
    /// The answer to [`CallAction::Transcribe`].
    Transcribed {
        job: u64,
        result: Result<ScreeningResult, AsrFailure>,
    },
    /// No RTP on a leg for too long.
    MediaTimeout(Leg),
}

/// Where the call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Greeting,
    Listening,
    /// The re-prompt or the follow-up question plays to the caller.
    Prompting,
    Screening,
    CallingCallee,
    Warning,
    /// The warned callee heard the warning; waiting for 1 (accept) or 2 (refuse).
    CalleeChoice,
    Bridged,
    Blocking,
    /// The blocked caller leaves a message.
    Message,
    /// The caller hears that the callee cannot be reached; then the call ends.
    Releasing,
    Ending,
    Ended,
}
