//! RFC 3261 §17 transactions, with the RFC 6026 `Accepted` states for INVITE.
//!
//! Four pure state machines, one per file: [`ClientInvite`] (§17.1.1), [`ClientNonInvite`]
//! (§17.1.2), [`ServerInvite`] (§17.2.1) and [`ServerNonInvite`] (§17.2.2). None of them
//! reads a clock, owns a socket or spawns a task: every input carries `now`, and the owner
//! drains what the machine wants done, quinn-proto style:
//!
//! * [`poll_transmit`](ClientInvite::poll_transmit): message bytes to send to this
//!   transaction's peer, in order;
//! * [`poll_event`](ClientInvite::poll_event): [`TxEvent`]s for the transaction user (TU);
//! * [`poll_timeout`](ClientInvite::poll_timeout): the earliest timer deadline; the owner
//!   calls [`handle_timeout`](ClientInvite::handle_timeout) once it has passed.
//!
//! The transaction layer deals in opaque bytes. The owner (the proxy core, which parses
//! messages) matches messages to transactions (§17.1.3, §17.2.3) and tells a machine the
//! status code of a response, or that a request was a retransmission or an ACK. Whether a
//! response or ACK should go up to the TU is the boolean the input method returns.
//!
//! The state, the [`Timer`] table of deadlines (see `timers.rs`), the message to retransmit
//! and the output queues live in a `TxCore` each machine embeds (see `core.rs`); a machine
//! file holds only its own transitions. Timers are data: the next wake-up is the earliest deadline in the table.
//! Every input method ends by firing the timers due at its `now`, so a timer whose duration
//! is zero (D, I, J, K on reliable transports) fires before the input that started it
//! returns: a reliable non-INVITE client transaction is `Terminated` as soon as its final
//! response has been handed over. Queued transmissions survive termination; drain them.
//!
//! Deliberate readings of the RFCs, each explained where it is implemented:
//!
//! * Timer B only guards `Calling` (§17.1.1.2 "still in the Calling state when timer B
//!   fires"): a provisional response cancels it. An INVITE that rings forever is ended by
//!   the proxy's Timer C (§16.6 step 11, §16.8), which belongs to the TU.
//! * Timer D is `max(32 s, 64*T1)` on unreliable transports (§17.1.1.2 "at least 32
//!   seconds"), zero on reliable ones.
//! * Server INVITE transactions stay in their state on a transport error and only inform
//!   the TU (RFC 6026 §7.1 "MUST remain in its current state"); client transactions and
//!   non-INVITE server transactions go to `Terminated` (§17.1.4, §17.2.2 diagram).
//! * Input the RFC says nothing about in the current state is absorbed, never an error.

mod client_invite;
mod client_non_invite;
mod core;
mod server_invite;
mod server_non_invite;
#[cfg(test)]
mod testing;
mod timers;

pub use client_invite::{ClientInvite, ClientInviteState};
pub use client_non_invite::{ClientNonInvite, ClientNonInviteState};
pub use server_invite::{ServerInvite, ServerInviteState};
pub use server_non_invite::{ServerNonInvite, ServerNonInviteState};
pub use timers::Timer;

use std::time::Duration;

/// RFC 3261 T1 default: the round-trip time estimate (§17.1.1.1).
pub const DEFAULT_T1: Duration = Duration::from_millis(500);
/// RFC 3261 T2 default: the longest retransmit interval for non-INVITE requests and INVITE
/// responses.
pub const DEFAULT_T2: Duration = Duration::from_secs(4);
/// RFC 3261 T4 default: the longest a message stays in the network.
pub const DEFAULT_T4: Duration = Duration::from_secs(5);
/// Timer D's floor on unreliable transports (§17.1.1.2 "at least 32 seconds").
pub const TIMER_D_MIN: Duration = Duration::from_secs(32);
/// How long an INVITE server transaction waits for the TU's first response before asking
/// for a 100 (Trying) (§17.2.1 "within 200 ms").
pub const TRYING_DELAY: Duration = Duration::from_millis(200);

/// The RFC 3261 base timer values (Appendix A, Table 4). All other timers derive from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            t1: DEFAULT_T1,
            t2: DEFAULT_T2,
            t4: DEFAULT_T4,
        }
    }
}

impl TimerConfig {
    /// 64*T1: timers B, F, H, L, M, and J on unreliable transports (32 s by default).
    pub fn transaction_timeout(&self) -> Duration {
        self.t1.saturating_mul(64)
    }
}

/// Whether the transport under a transaction retransmits for us (Table 4): on reliable
/// transports (TCP, TLS, SCTP) the retransmit timers A, E, G are not set and the linger
/// timers D, I, J, K are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reliability {
    /// UDP.
    Unreliable,
    /// TCP, TLS, SCTP, WebSocket.
    Reliable,
}

impl Reliability {
    pub fn is_reliable(self) -> bool {
        self == Reliability::Reliable
    }

    /// `wait` on an unreliable transport, zero on a reliable one (timers D, I, J, K).
    pub(crate) fn linger(self, wait: Duration) -> Duration {
        match self {
            Reliability::Unreliable => wait,
            Reliability::Reliable => Duration::ZERO,
        }
    }
}

/// What a transaction tells its TU, drained with `poll_event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxEvent {
    /// The transaction timed out: Timer B or F on a client (the TU answers 408 on behalf of
    /// the silent peer, §16.7 step 2), Timer H on an INVITE server (the ACK never came).
    /// `Terminated` follows.
    Timeout,
    /// The transport reported it could not send this transaction's message (§17.1.4,
    /// §17.2.4). `Terminated` follows, except on an INVITE server transaction (RFC 6026 §7.1).
    TransportError,
    /// An INVITE server transaction has had no response from the TU for 200 ms: the owner
    /// must build a 100 (Trying) and pass it to `send_response` (§17.2.1).
    SendTrying,
    /// The transaction reached `Terminated` and can be dropped. Reported exactly once, last.
    Terminated,
}

/// The classes of status code the state machines tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResponseClass {
    /// 100-199.
    Provisional,
    /// 200-299.
    Success,
    /// 300-699: redirection and failure, the "non-2xx final" responses.
    Failure,
    /// Anything else: not a SIP status code, always absorbed.
    Invalid,
}

impl ResponseClass {
    pub(crate) fn of(status: u16) -> Self {
        match status {
            100..=199 => ResponseClass::Provisional,
            200..=299 => ResponseClass::Success,
            300..=699 => ResponseClass::Failure,
            _ => ResponseClass::Invalid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_rfc_values() {
        let config = TimerConfig::default();
        assert_eq!(config.t1, Duration::from_millis(500));
        assert_eq!(config.t2, Duration::from_secs(4));
        assert_eq!(config.t4, Duration::from_secs(5));
        assert_eq!(config.transaction_timeout(), Duration::from_secs(32));
    }

    #[test]
    fn status_classes() {
        assert_eq!(ResponseClass::of(99), ResponseClass::Invalid);
        assert_eq!(ResponseClass::of(100), ResponseClass::Provisional);
        assert_eq!(ResponseClass::of(199), ResponseClass::Provisional);
        assert_eq!(ResponseClass::of(200), ResponseClass::Success);
        assert_eq!(ResponseClass::of(299), ResponseClass::Success);
        assert_eq!(ResponseClass::of(300), ResponseClass::Failure);
        assert_eq!(ResponseClass::of(699), ResponseClass::Failure);
        assert_eq!(ResponseClass::of(700), ResponseClass::Invalid);
        assert_eq!(ResponseClass::of(0), ResponseClass::Invalid);
        assert_eq!(ResponseClass::of(u16::MAX), ResponseClass::Invalid);
    }

    #[test]
    fn linger_is_zero_on_reliable_transports() {
        let wait = Duration::from_secs(5);
        assert_eq!(Reliability::Unreliable.linger(wait), wait);
        assert_eq!(Reliability::Reliable.linger(wait), Duration::ZERO);
    }
}
