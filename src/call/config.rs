//! How screened calls behave (`[screening]`, `[sip]` and `[device]` as the call layer
//! needs them).

use super::verdict::SilentAction;
use crate::sip::proxy::Peer;
use crate::sip::transaction::TimerConfig;
use std::time::Duration;

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
    /// The listening window when the verdict is clear (`listen_secs`).
    pub listen: Duration,
    /// Most listening while the caller keeps talking and more speech could change the
    /// action (`max_listen_secs`).
    pub max_listen: Duration,
    /// No speech this long after the greeting: re-prompt once, then `silent`.
    pub no_speech: Duration,
    /// Transcribe partial speech while the caller talks (divert early, stop when clear).
    pub early_verdict: bool,
    /// Ask one follow-up question when the first answer leaves the verdict open.
    pub follow_up: bool,
    pub silent_action: SilentAction,
    /// Longest message a blocked caller may leave; zero: no message offer.
    pub message: Duration,
    /// How long the warned callee has to press 1 or 2 after the warning.
    pub callee_choice: Duration,
    /// No key from the warned callee: accept (true) or refuse.
    pub callee_default_accept: bool,
    /// Digits that put a caller through at once when keyed during the greeting or listening.
    pub bypass_code: Option<String>,
    /// Most time from the end of the caller's speech to a verdict before `fail_open` applies.
    pub screening_timeout: Duration,
    pub fail_open: bool,
    /// Most time the callee may ring.
    pub ring_timeout: Duration,
    pub timers: TimerConfig,
    /// The call's language (prompts, the callee's "press 1 / 2"): `en`, `de`.
    pub language: String,
    /// An open full verdict is heard again by a bigger model (`JobKind::Second`) when at
    /// least `SECOND_PASS_MIN` of the screening deadline is left.
    pub second_pass: bool,
    /// Device mode: leg B rings the house through the router as this registered device.
    pub device: Option<DeviceLeg>,
}

/// How leg B looks in device mode: scamscreen calls an internal number of the router as
/// its own registered device (never anonymous, so the router's withheld-caller rule cannot
/// send the call back to us), the verdict in the display name, with digest credentials
/// for the router's challenge.
#[derive(Clone, PartialEq)]
pub struct DeviceLeg {
    /// Request-URI and To of allowed and warned calls: `sip:**9@fritz.box`.
    pub callback_uri: String,
    /// Our address-of-record: the From of leg B (`sip:620@fritz.box`).
    pub aor: String,
    /// The user part of our Contact (the registered one).
    pub user: String,
    pub credentials: crate::sip::digest::Credentials,
}

impl std::fmt::Debug for DeviceLeg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceLeg")
            .field("callback_uri", &self.callback_uri)
            .field("aor", &self.aor)
            .finish_non_exhaustive()
    }
}
