//! What the four transaction machines share: the current state, the timer table, the
//! message a retransmission sends again, and the queues of transmissions and [`TxEvent`]s
//! the owner drains (quinn-proto style, see the module doc). Each machine embeds one [`TxCore`] and keeps only its own RFC 3261 §17
//! transitions; [`impl_transaction`] writes their shared public methods once for all four.

use super::timers::{Retransmit, Timer, TimerTable};
use super::{Reliability, TimerConfig, TxEvent};
use bytes::Bytes;
use std::collections::VecDeque;
use std::fmt::Debug;
use std::time::Instant;

/// The state enum of a machine (RFC 3261 Figures 5-8, RFC 6026 Figures 5 and 7).
pub(super) trait TxState: Copy + Eq + Debug {
    /// The state every transaction ends in; entered only through [`TxCore::terminate`].
    const TERMINATED: Self;
    /// The machine's name in log lines, e.g. "INVITE client transaction".
    const MACHINE: &'static str;
}

/// The state, the timers and the output queues of one transaction.
#[derive(Debug)]
pub(super) struct TxCore<S> {
    state: S,
    pub(super) reliability: Reliability,
    pub(super) config: TimerConfig,
    pub(super) timers: TimerTable,
    /// The message to send again when a retransmit timer fires or the peer retransmits;
    /// see [`TxCore::send_and_keep`].
    kept: Option<Bytes>,
    transmits: VecDeque<Bytes>,
    events: VecDeque<TxEvent>,
}

impl<S: TxState> TxCore<S> {
    /// A transaction in `state` with no timer running and nothing queued.
    pub(super) fn new(state: S, reliability: Reliability, config: &TimerConfig) -> Self {
        Self {
            state,
            reliability,
            config: *config,
            timers: TimerTable::default(),
            kept: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub(super) fn state(&self) -> S {
        self.state
    }

    pub(super) fn is_terminated(&self) -> bool {
        self.state == S::TERMINATED
    }

    pub(super) fn enter(&mut self, state: S) {
        tracing::debug!(from = ?self.state, to = ?state, "{}", S::MACHINE);
        self.state = state;
    }

    /// Goes to `Terminated`: reports `reason` (if any) and then [`TxEvent::Terminated`],
    /// stops every timer and lets the kept message go. Queued transmissions stay to be
    /// drained.
    pub(super) fn terminate(&mut self, reason: Option<TxEvent>) {
        self.events.extend(reason);
        self.timers.cancel_all();
        self.kept = None;
        self.enter(S::TERMINATED);
        self.events.push_back(TxEvent::Terminated);
    }

    /// Queues `message` for sending to the peer.
    pub(super) fn send(&mut self, message: Bytes) {
        self.transmits.push_back(message);
    }

    /// Queues `message` and keeps it as the one to send again, replacing any kept before:
    /// the request while a client waits for a response (timers A, E), the ACK of a non-2xx
    /// final response (§17.1.1.3), a server's latest response (§17.2.1, §17.2.2).
    pub(super) fn send_and_keep(&mut self, message: Bytes) {
        self.kept = Some(message.clone());
        self.send(message);
    }

    /// Queues the kept message again; nothing if none is kept.
    pub(super) fn resend(&mut self) {
        self.transmits.extend(self.kept.clone());
    }

    /// Lets the kept message go: the current state never sends it again.
    pub(super) fn stop_resending(&mut self) {
        self.kept = None;
    }

    /// The message [`TxCore::resend`] would send.
    pub(super) fn kept(&self) -> Option<&Bytes> {
        self.kept.as_ref()
    }

    /// Queues `event` for the TU.
    pub(super) fn report(&mut self, event: TxEvent) {
        self.events.push_back(event);
    }

    /// A client transaction starts (§17.1.1.2, §17.1.2.2): queues and keeps `request`, starts its
    /// retransmit timer (A or E) on unreliable transports and its `timeout` timer (B or F)
    /// at 64*T1.
    pub(super) fn start_client(
        &mut self,
        request: Bytes,
        retransmit: &Retransmit,
        timeout: Timer,
        now: Instant,
    ) {
        self.send_and_keep(request);
        self.start_retransmit(retransmit, now);
        let wait = self.config.transaction_timeout();
        self.timers.start(timeout, now, wait);
    }

    /// Starts `retransmit`'s timer at its current interval, on unreliable transports only:
    /// reliable ones retransmit for us (Table 4, timers A, E, G).
    pub(super) fn start_retransmit(&mut self, retransmit: &Retransmit, now: Instant) {
        if !self.reliability.is_reliable() {
            self.timers
                .start(retransmit.timer(), now, retransmit.interval());
        }
    }

    /// `retransmit`'s timer fired: queues the kept message again and restarts the timer at
    /// the interval the caller has set (backed off, or held at T2).
    pub(super) fn retransmit(&mut self, retransmit: &Retransmit, now: Instant) {
        self.resend();
        self.timers
            .start(retransmit.timer(), now, retransmit.interval());
    }

    pub(super) fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmits.pop_front()
    }

    pub(super) fn poll_event(&mut self) -> Option<TxEvent> {
        self.events.pop_front()
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// The timers due at `now`, as a snapshot (see [`TimerTable::due`]).
    pub(super) fn due_timers(&self, now: Instant) -> Vec<Timer> {
        self.timers.due(now)
    }

    /// Whether `timer` is still due at `now`; stops it if so (see [`TimerTable::take_due`]).
    pub(super) fn take_due(&mut self, timer: Timer, now: Instant) -> bool {
        self.timers.take_due(timer, now)
    }
}

/// Declares `$machine` a transaction whose state enum is `$state` (which must have a
/// `Terminated` variant) and whose log lines are named `$name`: implements [`TxState`] for
/// `$state` and writes the public API every machine shares, `state`, `is_terminated` and the
/// draining methods, as inherent methods of `$machine`, so the owner calls them without
/// importing a trait. The machine keeps its [`TxCore`] in a field `core` and handles a timer
/// that fired in its own `fn on_timer(&mut self, timer: Timer, now: Instant)`.
macro_rules! impl_transaction {
    ($machine:ident, $state:ident, $name:literal) => {
        impl $crate::sip::transaction::core::TxState for $state {
            const TERMINATED: Self = $state::Terminated;
            const MACHINE: &'static str = $name;
        }

        impl $machine {
            pub fn state(&self) -> $state {
                self.core.state()
            }

            pub fn is_terminated(&self) -> bool {
                self.core.is_terminated()
            }

            /// Bytes to send to the peer, in order.
            pub fn poll_transmit(&mut self) -> Option<::bytes::Bytes> {
                self.core.poll_transmit()
            }

            /// When [`handle_timeout`](Self::handle_timeout) is next due.
            pub fn poll_timeout(&self) -> Option<::std::time::Instant> {
                self.core.poll_timeout()
            }

            /// Fires the timers due at `now`, earliest first. A timer an earlier handler
            /// cancelled or restarted meanwhile does not fire.
            pub fn handle_timeout(&mut self, now: ::std::time::Instant) {
                for timer in self.core.due_timers(now) {
                    if self.core.take_due(timer, now) {
                        self.on_timer(timer, now);
                    }
                }
            }

            /// What the transaction tells its TU, in order; [`TxEvent::Terminated`](crate::sip::transaction::TxEvent::Terminated) last.
            pub fn poll_event(&mut self) -> Option<$crate::sip::transaction::TxEvent> {
                self.core.poll_event()
            }
        }
    };
}

pub(super) use impl_transaction;
