//! INVITE server transaction (RFC 3261 §17.2.1, updated by RFC 6026 §7.1 and §8.5-8.7).

use super::core::{impl_transaction, TxCore};
use super::timers::{Retransmit, Timer};
use super::{Reliability, ResponseClass, TimerConfig, TxEvent, TRYING_DELAY};
use bytes::Bytes;
use std::time::Instant;

/// States of [`ServerInvite`], named as in RFC 3261 Figure 7 and RFC 6026 Figure 7.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerInviteState {
    Proceeding,
    Accepted,
    Completed,
    Confirmed,
    Terminated,
}

/// The INVITE server transaction: sends the TU's responses, answers INVITE retransmissions
/// with the latest response, and retransmits a non-2xx final response on UDP until the ACK
/// comes. 2xx responses are the TU's to retransmit (§13.3.1.4); the transaction passes them
/// through while `Accepted`.
///
/// ```text
///                                    |INVITE
///                                    |pass INV to TU
///                 INVITE             V send 100 if TU won't in 200 ms
///                 send response+------------+
///                     +--------|            |--------+ 101-199 from TU
///                     |        |            |        | send response
///                     +------->|            |<-------+
///                              | Proceeding |
///                              |            |--------+ Transport Err.
///                              |            |        | Inform TU
///                              |            |<-------+
///                              +------------+
///                 300-699 from TU |    |2xx from TU
///                 send response   |    |send response
///                  +--------------+    +------------+
///                  |                                |
/// INVITE           V          Timer G fires         |
/// send response +-----------+ send response         |
///      +--------|           |--------+              |
///      |        |           |        |              |
///      +------->| Completed |<-------+      INVITE  |  Transport Err.
///               |           |               -       |  Inform TU
///      +--------|           |----+          +-----+ |  +---+
///      |        +-----------+    | ACK      |     | v  |   v
///      |          ^   |          | -        |  +------------+
///      |          |   |          |          |  |            |---+ ACK
///      +----------+   |          |          +->|  Accepted  |   | to TU
///      Transport Err. |          |             |            |<--+
///      Inform TU      |          V             +------------+
///                     |      +-----------+        |  ^     |
///                     |      |           |        |  |     |
///                     |      | Confirmed |        |  +-----+
///                     |      |           |        |  2xx from TU
///       Timer H fires |      +-----------+        |  send response
///       -             |          |                |
///                     |          | Timer I fires  |
///                     |          | -              | Timer L fires
///                     |          V                | -
///                     |        +------------+     |
///                     |        |            |<----+
///                     +------->| Terminated |
///                              |            |
///                              +------------+
/// ```
///
/// Readings of the RFCs:
///
/// * The 100 (Trying) rule is the [`Timer::Trying`] timer: 200 ms after the INVITE, if the TU
///   has sent no response, the transaction reports [`TxEvent::SendTrying`] and the owner
///   builds the 100 and passes it to [`send_response`](Self::send_response).
/// * Timer G starts at T1 and doubles up to T2 (sends at 0, 0.5, 1.5, 3.5, 7.5, 11.5, … s
///   after the final response); Timer H (64*T1) ends `Completed` with
///   [`TxEvent::Timeout`] because the ACK never came.
/// * A transport error only informs the TU; the state stays and timers end it (RFC 6026 §7.1).
/// * Responses the TU passes in a state that does not take them (a 487 after the call was
///   answered, a second non-2xx final) are discarded: `send_response` returns false.
#[derive(Debug)]
pub struct ServerInvite {
    /// Keeps the most recent provisional response while `Proceeding` and the non-2xx final
    /// response while `Completed`, for INVITE retransmissions and Timer G.
    core: TxCore<ServerInviteState>,
    timer_g: Retransmit,
}

impl_transaction!(ServerInvite, ServerInviteState, "INVITE server transaction");

impl ServerInvite {
    /// Starts the transaction in `Proceeding` for an INVITE that arrived at `now`.
    pub fn new(now: Instant, reliability: Reliability, config: &TimerConfig) -> Self {
        let mut core = TxCore::new(ServerInviteState::Proceeding, reliability, config);
        core.timers.start(Timer::Trying, now, TRYING_DELAY);
        Self {
            core,
            timer_g: Retransmit::new(Timer::G, config.t1, Some(config.t2)),
        }
    }

    /// Whether the TU has sent any response yet (a 100 included).
    pub fn has_responded(&self) -> bool {
        self.core.kept().is_some() || self.state() != ServerInviteState::Proceeding
    }

    /// The TU passes a response with `status`. Returns whether it was queued for sending;
    /// a response the current state does not take is discarded.
    pub fn send_response(&mut self, now: Instant, status: u16, response: Bytes) -> bool {
        use ServerInviteState::*;
        let core = &mut self.core;
        let queued = match (core.state(), ResponseClass::of(status)) {
            (Proceeding, ResponseClass::Provisional) => {
                core.timers.cancel(Timer::Trying);
                core.send_and_keep(response);
                true
            }
            (Proceeding, ResponseClass::Success) => {
                core.timers.cancel(Timer::Trying);
                // Accepted never replays a provisional: let its bytes go.
                core.stop_resending();
                let wait = core.config.transaction_timeout();
                core.timers.start(Timer::L, now, wait);
                core.enter(Accepted);
                core.send(response);
                true
            }
            (Proceeding, ResponseClass::Failure) => {
                core.timers.cancel(Timer::Trying);
                core.send_and_keep(response);
                core.start_retransmit(&self.timer_g, now);
                let wait = core.config.transaction_timeout();
                core.timers.start(Timer::H, now, wait);
                core.enter(Completed);
                true
            }
            // Further 2xx (retransmissions by the TU, or from other forks) pass through.
            (Accepted, ResponseClass::Success) => {
                core.send(response);
                true
            }
            _ => false,
        };
        self.handle_timeout(now);
        queued
    }

    /// The INVITE was received again: the latest provisional response is sent again while
    /// `Proceeding`, the final response while `Completed`; otherwise it is absorbed.
    pub fn on_request_retransmission(&mut self, now: Instant) {
        self.core.resend();
        self.handle_timeout(now);
    }

    /// An ACK matching this transaction arrived. Returns whether it goes up to the TU: an ACK
    /// for a non-2xx final is the transaction's own and absorbed, one for a 2xx is the TU's.
    pub fn on_ack(&mut self, now: Instant) -> bool {
        let core = &mut self.core;
        let deliver = match core.state() {
            ServerInviteState::Completed => {
                core.timers.cancel(Timer::G);
                core.timers.cancel(Timer::H);
                // Confirmed absorbs INVITE retransmissions.
                core.stop_resending();
                let wait = core.reliability.linger(core.config.t4);
                core.timers.start(Timer::I, now, wait);
                core.enter(ServerInviteState::Confirmed);
                false
            }
            ServerInviteState::Accepted => true,
            _ => false,
        };
        self.handle_timeout(now);
        deliver
    }

    /// The transport could not send a response. The TU is told; the state stays and the
    /// timers end it (RFC 6026 §7.1).
    pub fn on_transport_error(&mut self, now: Instant) {
        if !self.is_terminated() {
            self.core.report(TxEvent::TransportError);
        }
        self.handle_timeout(now);
    }

    fn on_timer(&mut self, timer: Timer, now: Instant) {
        use ServerInviteState::*;
        match (timer, self.state()) {
            (Timer::Trying, Proceeding) if self.core.kept().is_none() => {
                self.core.report(TxEvent::SendTrying);
            }
            (Timer::G, Completed) => {
                self.timer_g.back_off();
                self.core.retransmit(&self.timer_g, now);
            }
            (Timer::H, Completed) => self.core.terminate(Some(TxEvent::Timeout)),
            (Timer::I, Confirmed) | (Timer::L, Accepted) => self.core.terminate(None),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::transaction::testing::VirtualClock;

    fn server(clock: &VirtualClock, reliability: Reliability) -> ServerInvite {
        ServerInvite::new(clock.now(), reliability, &TimerConfig::default())
    }

    fn bytes(text: &'static str) -> Bytes {
        Bytes::from_static(text.as_bytes())
    }

    #[test]
    fn asks_for_100_trying_when_the_tu_is_silent_for_200_ms() {
        let mut clock = VirtualClock::new();
        let mut tx = server(&clock, Reliability::Unreliable);
        let trace = clock.run_until(&mut tx, 1_000);
        assert_eq!(trace.events, vec![(200, TxEvent::SendTrying)]);
        assert!(!tx.has_responded());
        assert!(tx.send_response(clock.now(), 100, bytes("100")));
        assert!(tx.has_responded());
        assert_eq!(clock.take(&mut tx).sent_bytes(), vec![b"100"]);
        assert_eq!(tx.poll_timeout(), None);
    }

    #[test]
    fn no_100_trying_when_the_tu_responds_within_200_ms() {
        for status in [180, 200, 486] {
            let mut clock = VirtualClock::new();
            let mut tx = server(&clock, Reliability::Unreliable);
            clock.run_until(&mut tx, 150);
            assert!(tx.send_response(clock.now(), status, bytes("response")));
            let trace = clock.run_until(&mut tx, 300);
            assert!(!trace.events.contains(&(200, TxEvent::SendTrying)));
        }
    }

    #[test]
    fn invite_retransmission_resends_the_latest_provisional() {
        let mut clock = VirtualClock::new();
        let mut tx = server(&clock, Reliability::Unreliable);
        tx.on_request_retransmission(clock.now());
        assert!(clock.take(&mut tx).sent.is_empty(), "nothing to resend yet");
        assert!(tx.send_response(clock.now(), 100, bytes("100")));
        clock.run_until(&mut tx, 1_000);
        assert!(tx.send_response(clock.now(), 180, bytes("180")));
        assert!(tx.send_response(clock.now(), 183, bytes("183")));
        assert_eq!(clock.take(&mut tx).sent_bytes(), vec![b"180", b"183"]);
        tx.on_request_retransmission(clock.now());
        assert_eq!(clock.take(&mut tx).sent_bytes(), vec![b"183"]);
        assert_eq!(tx.state(), ServerInviteState::Proceeding);
    }

    #[test]
    fn udp_final_is_retransmitted_by_timer_g_until_timer_h() {
        let mut clock = VirtualClock::new();
        let mut tx = server(&clock, Reliability::Unreliable);
        assert!(tx.send_response(clock.now(), 486, bytes("486")));
        assert_eq!(tx.state(), ServerInviteState::Completed);
        let trace = clock.run_until(&mut tx, 60_000);
        assert_eq!(
            trace.sent_at(),
            vec![0, 500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500]
        );
        assert!(trace.sent_bytes().iter().all(|b| *b == b"486"));
        assert_eq!(
            trace.events,
            vec![(32_000, TxEvent::Timeout), (32_000, TxEvent::Terminated)]
        );
    }

    #[test]
    fn invite_retransmission_in_completed_resends_the_final() {
        let mut clock = VirtualClock::new();
        let mut tx = server(&clock, Reliability::Unreliable);
        assert!(tx.send_response(clock.now(), 180, bytes("180")));
        assert!(tx.send_response(clock.now(), 603, bytes("603")));
        clock.run_until(&mut tx, 200);
        tx.on_request_retransmission(clock.now());
        // Late responses from the TU are discarded.
        assert!(!tx.send_response(clock.now(), 180, bytes("180")));
        assert!(!tx.send_response(clock.now(), 200, bytes("200")));
        assert!(!tx.send_response(clock.now(), 500, bytes("500")));
        assert_eq!(clock.take(&mut tx).sent_bytes(), vec![b"603"]);
    }

    #[test]
    fn ack_confirms_stops_retransmissions_and_timer_i_terminates() {
        let mut clock = VirtualClock::new();
        let mut tx = server(&clock, Reliability::Unreliable);
        assert!(tx.send_response(clock.now(), 404, bytes("404")));
        let trace = clock.run_until(&mut tx, 2_000);
        assert_eq!(trace.sent_at(), vec![0, 500, 1_500]);
        assert!(
            !tx.on_ack(clock.now()),
            "the ACK of a non-2xx is the transaction's"
        );
        assert_eq!(tx.state(), ServerInviteState::Confirmed);
        // Retransmitted ACKs and INVITEs are absorbed in Confirmed.
        assert!(!tx.on_ack(clock.now()));
        tx.on_request_retransmission(clock.now());
        let trace = clock.run_until(&mut tx, 60_000);
        assert!(trace.sent.is_empty());
        assert_eq!(trace.events, vec![(7_000, TxEvent::Terminated)]);
    }

    #[test]
    fn reliable_final_is_not_retransmitted_and_ack_terminates_at_once() {
        let mut clock = VirtualClock::new();
        let mut tx = server(&clock, Reliability::Reliable);
        assert!(tx.send_response(clock.now(), 486, bytes("486")));
        let trace = clock.run_until(&mut tx, 10_000);
        assert_eq!(trace.sent_at(), vec![0]);
        assert!(!tx.on_ack(clock.now()));
        assert!(tx.is_terminated());
        assert_eq!(
            clock.take(&mut tx).events,
            vec![(10_000, TxEvent::Terminated)]
        );

        // Without the ACK, Timer H still runs on a reliable transport.
        let mut clock = VirtualClock::new();
        let mut tx = server(&clock, Reliability::Reliable);
        assert!(tx.send_response(clock.now(), 486, bytes("486")));
        let trace = clock.run_until(&mut tx, 60_000);
        assert_eq!(trace.sent_at(), vec![0]);
        assert_eq!(
            trace.events,
            vec![(32_000, TxEvent::Timeout), (32_000, TxEvent::Terminated)]
        );
    }

    /// The caller's CANCEL crosses the callee's 200: the transaction is already `Accepted`,
    /// so the 487 the TU would send is discarded and the 2xx retransmissions pass through.
    #[test]
    fn accepted_passes_2xx_and_acks_through_and_discards_late_487() {
        let mut clock = VirtualClock::new();
        let mut tx = server(&clock, Reliability::Unreliable);
        assert!(tx.send_response(clock.now(), 180, bytes("180")));
        clock.run_until(&mut tx, 3_000);
        assert!(tx.send_response(clock.now(), 200, bytes("200")));
        assert_eq!(tx.state(), ServerInviteState::Accepted);
        assert!(!tx.send_response(clock.now(), 487, bytes("487")));
        assert!(!tx.send_response(clock.now(), 180, bytes("180")));
        tx.on_request_retransmission(clock.now());
        assert_eq!(clock.take(&mut tx).sent_bytes(), vec![b"200"]);
        assert!(clock.run_until(&mut tx, 3_500).sent.is_empty());
        assert!(
            tx.send_response(clock.now(), 200, bytes("200")),
            "TU's 2xx retransmission"
        );
        assert_eq!(clock.take(&mut tx).sent_bytes(), vec![b"200"]);
        assert!(tx.on_ack(clock.now()), "the ACK of a 2xx is the TU's");
        assert!(tx.on_ack(clock.now()));
        let trace = clock.run_until(&mut tx, 60_000);
        assert!(
            trace.sent.is_empty(),
            "the transaction never retransmits a 2xx"
        );
        assert_eq!(trace.events, vec![(35_000, TxEvent::Terminated)]);
    }

    #[test]
    fn transport_error_informs_the_tu_and_keeps_the_state() {
        let mut clock = VirtualClock::new();
        let mut tx = server(&clock, Reliability::Unreliable);
        assert!(tx.send_response(clock.now(), 100, bytes("100")));
        tx.on_transport_error(clock.now());
        assert_eq!(tx.state(), ServerInviteState::Proceeding);
        assert!(tx.send_response(clock.now(), 500, bytes("500")));
        tx.on_transport_error(clock.now());
        assert_eq!(tx.state(), ServerInviteState::Completed);
        let trace = clock.take(&mut tx);
        assert_eq!(
            trace.events,
            vec![(0, TxEvent::TransportError), (0, TxEvent::TransportError)]
        );
        let trace = clock.run_until(&mut tx, 60_000);
        assert_eq!(
            trace.events,
            vec![(32_000, TxEvent::Timeout), (32_000, TxEvent::Terminated)]
        );
        tx.on_transport_error(clock.now());
        assert!(clock.take(&mut tx).events.is_empty());
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
        let prefixes: [&[u16]; 4] = [&[], &[180], &[200], &[486]];
        for reliability in [Reliability::Unreliable, Reliability::Reliable] {
            for prefix in prefixes {
                for with_ack in [false, true] {
                    for status in statuses {
                        let mut clock = VirtualClock::new();
                        let mut tx = server(&clock, reliability);
                        for &earlier in prefix {
                            tx.send_response(clock.now(), earlier, bytes("earlier"));
                        }
                        if with_ack {
                            tx.on_ack(clock.now());
                        }
                        let before = tx.state();
                        let queued = tx.send_response(clock.now(), status, bytes("response"));
                        if ResponseClass::of(status) == ResponseClass::Invalid {
                            assert!(!queued);
                            assert_eq!(tx.state(), before);
                        }
                        tx.on_request_retransmission(clock.now());
                        tx.on_transport_error(clock.now());
                        clock.run_until(&mut tx, 100_000);
                        let ended = tx.is_terminated();
                        assert!(ended || tx.state() == ServerInviteState::Proceeding);
                        if ended {
                            assert!(!tx.send_response(clock.now(), status, bytes("late")));
                            assert!(!tx.on_ack(clock.now()));
                            tx.on_request_retransmission(clock.now());
                            let trace = clock.take(&mut tx);
                            assert!(trace.sent.is_empty() && trace.events.is_empty());
                        }
                    }
                }
            }
        }
    }
}
