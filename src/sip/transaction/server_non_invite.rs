//! Non-INVITE server transaction (RFC 3261 §17.2.2).

use super::core::{impl_transaction, TxCore};
use super::timers::Timer;
use super::{Reliability, ResponseClass, TimerConfig, TxEvent};
use bytes::Bytes;
use std::time::Instant;

/// States of [`ServerNonInvite`], named as in RFC 3261 Figure 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerNonInviteState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// The non-INVITE server transaction: sends the TU's responses and answers request
/// retransmissions with the latest one. It never retransmits on its own: the client does.
///
/// ```text
///                                   |Request received
///                                   |pass to TU
///                                   V
///                             +-----------+
///                             |           |
///                             | Trying    |-------------+
///                             |           |             |
///                             +-----------+             |200-699 from TU
///                                   |                   |send response
///                                   |1xx from TU        |
///                                   |send response      |
///                                   |                   |
///                Request            V      1xx from TU  |
///                send response+-----------+send response|
///                    +--------|           |--------+    |
///                    |        | Proceeding|        |    |
///                    +------->|           |<-------+    |
///             +<--------------|           |             |
///             |Trnsprt Err    +-----------+             |
///             |Inform TU            |                   |
///             |                     |                   |
///             |                     |200-699 from TU    |
///             |                     |send response      |
///             |  Request            V                   |
///             |  send response+-----------+             |
///             |      +--------|           |             |
///             |      |        | Completed |<------------+
///             |      +------->|           |
///             +<--------------|           |
///             |Trnsprt Err    +-----------+
///             |Inform TU            |
///             |                     |Timer J fires
///             |                     |-
///             |                     |
///             |                     V
///             |               +-----------+
///             |               |           |
///             +-------------->| Terminated|
///                             |           |
///                             +-----------+
/// ```
///
/// Request retransmissions in `Trying` are absorbed: the TU has nothing to say yet.
/// Timer J is 64*T1 on unreliable transports and zero on reliable ones, so over TCP the
/// transaction is `Terminated` as soon as its final response is queued.
#[derive(Debug)]
pub struct ServerNonInvite {
    /// Keeps the most recent provisional response while `Proceeding` and the final response
    /// while `Completed`, for request retransmissions.
    core: TxCore<ServerNonInviteState>,
}

impl_transaction!(
    ServerNonInvite,
    ServerNonInviteState,
    "non-INVITE server transaction"
);

impl ServerNonInvite {
    /// Starts the transaction in `Trying` for a request that has just arrived. (`now` is
    /// taken for symmetry with [`super::ServerInvite::new`]; no timer runs in `Trying`.)
    pub fn new(_now: Instant, reliability: Reliability, config: &TimerConfig) -> Self {
        Self {
            core: TxCore::new(ServerNonInviteState::Trying, reliability, config),
        }
    }

    /// The TU passes a response with `status`. Returns whether it was queued for sending;
    /// once a final response has gone, further responses are discarded.
    pub fn send_response(&mut self, now: Instant, status: u16, response: Bytes) -> bool {
        use ServerNonInviteState::*;
        let core = &mut self.core;
        let queued = match (core.state(), ResponseClass::of(status)) {
            (Trying | Proceeding, ResponseClass::Provisional) => {
                core.send_and_keep(response);
                if core.state() == Trying {
                    core.enter(Proceeding);
                }
                true
            }
            (Trying | Proceeding, ResponseClass::Success | ResponseClass::Failure) => {
                core.send_and_keep(response);
                let wait = core.reliability.linger(core.config.transaction_timeout());
                core.timers.start(Timer::J, now, wait);
                core.enter(Completed);
                true
            }
            _ => false,
        };
        self.handle_timeout(now);
        queued
    }

    /// The request was received again: the latest provisional response is sent again while
    /// `Proceeding`, the final response while `Completed`; otherwise it is absorbed.
    pub fn on_request_retransmission(&mut self, now: Instant) {
        self.core.resend();
        self.handle_timeout(now);
    }

    /// The transport could not send a response (§17.2.4): the TU is told and the
    /// transaction ends. In `Trying` nothing has been sent, so there is nothing to fail.
    pub fn on_transport_error(&mut self, now: Instant) {
        match self.state() {
            ServerNonInviteState::Proceeding | ServerNonInviteState::Completed => {
                self.core.terminate(Some(TxEvent::TransportError))
            }
            ServerNonInviteState::Trying | ServerNonInviteState::Terminated => {}
        }
        self.handle_timeout(now);
    }

    fn on_timer(&mut self, timer: Timer, _now: Instant) {
        if timer == Timer::J && self.state() == ServerNonInviteState::Completed {
            self.core.terminate(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::transaction::testing::VirtualClock;

    fn server(clock: &VirtualClock, reliability: Reliability) -> ServerNonInvite {
        ServerNonInvite::new(clock.now(), reliability, &TimerConfig::default())
    }

    fn bytes(text: &'static str) -> Bytes {
        Bytes::from_static(text.as_bytes())
    }

    #[test]
    fn retransmissions_get_the_latest_response() {
        let mut clock = VirtualClock::new();
        let mut tx = server(&clock, Reliability::Unreliable);
        tx.on_request_retransmission(clock.now());
        assert!(clock.take(&mut tx).sent.is_empty(), "absorbed in Trying");

        assert!(tx.send_response(clock.now(), 100, bytes("100")));
        assert_eq!(tx.state(), ServerNonInviteState::Proceeding);
        assert_eq!(clock.run_until(&mut tx, 4_000).sent_at(), vec![0]);
        tx.on_request_retransmission(clock.now());
        assert_eq!(clock.take(&mut tx).sent_bytes(), vec![b"100"]);

        clock.run_until(&mut tx, 5_000);
        assert!(tx.send_response(clock.now(), 200, bytes("200")));
        assert_eq!(tx.state(), ServerNonInviteState::Completed);
        tx.on_request_retransmission(clock.now());
        tx.on_request_retransmission(clock.now());
        // Once final, later responses from the TU are discarded.
        assert!(!tx.send_response(clock.now(), 500, bytes("500")));
        assert!(!tx.send_response(clock.now(), 180, bytes("180")));
        assert_eq!(
            clock.take(&mut tx).sent_bytes(),
            vec![b"200", b"200", b"200"]
        );

        // Timer J: 64*T1 after the final response, with no retransmission of its own.
        let trace = clock.run_until(&mut tx, 60_000);
        assert!(trace.sent.is_empty());
        assert_eq!(trace.events, vec![(37_000, TxEvent::Terminated)]);
        tx.on_request_retransmission(clock.now());
        assert!(clock.take(&mut tx).sent.is_empty());
    }

    #[test]
    fn final_straight_from_trying_completes() {
        let mut clock = VirtualClock::new();
        let mut tx = server(&clock, Reliability::Unreliable);
        clock.run_until(&mut tx, 10);
        assert!(tx.send_response(clock.now(), 481, bytes("481")));
        assert_eq!(tx.state(), ServerNonInviteState::Completed);
        tx.on_request_retransmission(clock.now());
        let trace = clock.run_until(&mut tx, 60_000);
        assert_eq!(trace.sent_at(), vec![10, 10]);
        assert_eq!(trace.events, vec![(32_010, TxEvent::Terminated)]);
    }

    #[test]
    fn reliable_final_terminates_at_once() {
        let mut clock = VirtualClock::new();
        let mut tx = server(&clock, Reliability::Reliable);
        clock.run_until(&mut tx, 20);
        assert!(tx.send_response(clock.now(), 200, bytes("200")));
        assert!(tx.is_terminated());
        let trace = clock.take(&mut tx);
        assert_eq!(trace.sent_bytes(), vec![b"200"]);
        assert_eq!(trace.events, vec![(20, TxEvent::Terminated)]);
        assert_eq!(tx.poll_timeout(), None);
    }

    #[test]
    fn transport_error_terminates_once_a_response_was_sent() {
        let clock = VirtualClock::new();
        let mut tx = server(&clock, Reliability::Unreliable);
        tx.on_transport_error(clock.now());
        assert_eq!(tx.state(), ServerNonInviteState::Trying);
        assert!(clock.take(&mut tx).events.is_empty());

        assert!(tx.send_response(clock.now(), 100, bytes("100")));
        tx.on_transport_error(clock.now());
        assert!(tx.is_terminated());
        assert_eq!(
            clock.take(&mut tx).events,
            vec![(0, TxEvent::TransportError), (0, TxEvent::Terminated)]
        );

        let mut tx = server(&clock, Reliability::Unreliable);
        assert!(tx.send_response(clock.now(), 200, bytes("200")));
        tx.on_transport_error(clock.now());
        assert!(tx.is_terminated());
        assert_eq!(tx.poll_timeout(), None);
    }

    #[test]
    fn any_input_in_any_state_is_handled_without_panicking() {
        let statuses = [
            0,
            1,
            99,
            100,
            180,
            200,
            299,
            300,
            487,
            699,
            700,
            999,
            u16::MAX,
        ];
        let prefixes: [&[u16]; 4] = [&[], &[100], &[200], &[100, 404]];
        for reliability in [Reliability::Unreliable, Reliability::Reliable] {
            for prefix in prefixes {
                for status in statuses {
                    let mut clock = VirtualClock::new();
                    let mut tx = server(&clock, reliability);
                    for &earlier in prefix {
                        tx.send_response(clock.now(), earlier, bytes("earlier"));
                    }
                    let before = tx.state();
                    let queued = tx.send_response(clock.now(), status, bytes("response"));
                    if ResponseClass::of(status) == ResponseClass::Invalid {
                        assert!(!queued);
                        assert_eq!(tx.state(), before);
                    }
                    tx.on_request_retransmission(clock.now());
                    clock.run_until(&mut tx, 100_000);
                    if tx.is_terminated() {
                        assert!(!tx.send_response(clock.now(), status, bytes("late")));
                        tx.on_request_retransmission(clock.now());
                        tx.on_transport_error(clock.now());
                        let trace = clock.take(&mut tx);
                        assert!(trace.sent.is_empty() && trace.events.is_empty());
                    }
                }
            }
        }
    }
}
