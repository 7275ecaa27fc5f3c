//! The per-call B2BUA for screened calls: a pure state machine told the time.
//!
//! ```text
//!  caller ──INVITE──▶ [leg A: UAS]                    [leg B: UAC] ──INVITE──▶ upstream (PBX)
//!         ◀─100/200──   Greeting → Listening → Screening → (allow|warn|divert)
//!                                      │                       ▲
//!                               media + ASR actions            │ only after the verdict
//! ```
//!
//! Signalling lives here; media and ASR are asked for as [`CallAction`]s and answered with
//! [`CallInput`]s, so a whole call — greeting, verdict, ringing, bridging, hang-ups from
//! either side at any stage — runs in a unit test on a virtual clock.
//!
//! Stages (`Stage`):
//! - `Greeting`: leg A answered with 200 + our SDP (RFC 3264 answer made by the runtime);
//!   the greeting plays. 2xx retransmitted until the ACK (§13.3.1.4).
//! - `Listening`: the caller's audio is recorded until end of speech or `listen`.
//! - `Screening`: transcript and verdict are being computed (bounded by `screening_timeout`).
//! - `CallingCallee`: INVITE to the upstream (allow, warn, or divert to `divert_uri`) with
//!   `X-Scamscreen-Verdict/Score/Reason`; the caller hears silence or ringback.
//! - `Warning`: the callee answered and hears the warning before the legs are joined.
//! - `Bridged`: media relayed between the legs.
//! - `Blocking`: divert without `divert_uri`: the caller hears the block announcement.
//! - `Ending`: hung up; a request of ours (BYE, CANCEL, INVITE) awaits its final response.
//! - `Ended`: every leg is finished; `CallAction::Finished` carries the record.
//!
//! Requests on either leg are matched by Call-ID in the runtime, so the call itself checks
//! each one as a UAS core must before acting on it (RFC 3261 §8.2, §12.2.2, §17.2.3): wrong
//! tags get 481, an out-of-order CSeq 500, a merged INVITE 482, methods it does not take
//! 405/501, a `Require` it lacks 420; retransmissions get the same answer again. Session
//! timers (RFC 4028) are accepted with the caller as refresher.
//!
//! Files:
//! - `stage.rs`: [`CallSession`]'s stages, the verdict → action logic, timers and the
//!   call record.
//! - `io.rs`: the [`CallInput`] / [`CallAction`] types the runtime speaks, and [`Stage`];
//!   `verdict.rs`: the screening result, its action, the outcome and the record;
//!   `config.rs`: [`CallConfig`] and device mode's [`DeviceLeg`].
//! - `uas.rs`: the requests the peers send us, on either leg: the checks in RFC 3261
//!   order, retransmitted requests, the answers to BYE, re-INVITE / UPDATE (session
//!   timers), OPTIONS, INFO, CANCEL and the refused methods.
//! - `uac.rs`: the requests we send: the INVITE to the callee and its responses (forks,
//!   ACK), CANCEL, BYE on either leg.
//! - `dialog.rs`: one leg's dialog state and each rule the checks apply (refusals, server
//!   transactions, 2xx retransmission, session-timer values).

mod accept;
pub mod admission;
mod config;
pub mod dialog;
mod io;
mod keys;
pub mod language;
mod listen;
mod stage;
mod uac;
mod uas;
mod verdict;

pub use accept::{accept, MediaPorts, PendingCall};
pub use dialog::{refusal_for_invite, Refusal};

pub use config::{CallConfig, DeviceLeg};
pub use io::{CallAction, CallInput, JobKind, Leg, Prompt, Stage};
pub use listen::{AFTERWARDS_WAIT, PARTIAL_FIRST_MS, PARTIAL_STEP_MS};
pub use stage::CallSession;
pub use verdict::{
    Action as ScreeningAction, AsrFailure, CallOutcome, CallRecordDraft, ScreeningResult,
    SilentAction,
};

#[cfg(test)]
mod tests;
