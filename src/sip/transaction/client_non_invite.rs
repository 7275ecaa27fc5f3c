//! Non-INVITE client transaction (RFC 3261 §17.1.2).

use super::core::{impl_transaction, TxCore};
use super::timers::{Retransmit, Timer};
use super::{Reliability, ResponseClass, TimerConfig, TxEvent};
use bytes::Bytes;
use std::time::Instant;

/// States of [`ClientNonInvite`], named as in RFC 3261 Figure 6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientNonInviteState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// The non-INVITE client transaction (OPTIONS, BYE, CANCEL, REGISTER, …): sends the request,
/// retransmits it on UDP until the final response, and gives up after 64*T1.
///
/// ```text
///                                    |Request from TU
///                                    |send request
///                Timer E             V
///                send request  +-----------+
///                    +---------|           |-------------------+
///                    |         |  Trying   |  Timer F          |
///                    +-------->|           |  or Transport Err.|
///                              +-----------+  inform TU        |
///                 200-699         |  |                         |
///                 resp. to TU     |  |1xx                      |
///                 +---------------+  |resp. to TU              |
///                 |                  |                         |
///                 |   Timer E        V       Timer F           |
///                 |   send req +-----------+ or Transport Err. |
///                 |  +---------|           | inform TU         |
///                 |  |         |Proceeding |------------------>|
///                 |  +-------->|           |-----+             |
///                 |            +-----------+     |1xx          |
///                 |              |      ^        |resp to TU   |
///                 | 200-699      |      +--------+             |
///                 | resp. to TU  |                             |
///                 |              |                             |
///                 |              V                             |
///                 |            +-----------+                   |
///                 |            |           |                   |
///                 |            | Completed |                   |
///                 |            |           |                   |
///                 |            +-----------+                   |
///                 |              ^   |                         |
///                 |              |   | Timer K                 |
///                 +--------------+   | -                       |
///                                    |                         |
///                                    V                         |
///                              +-----------+                   |
///                              |           |                   |
///                              | Terminated|<------------------+
///                              |           |
///                              +-----------+
/// ```
///
/// On UDP Timer E starts at T1 and doubles up to T2 while `Trying` (sends at 0, 0.5, 1.5,
/// 3.5, 7.5, 11.5, … s); once `Proceeding`, the next firing retransmits and every later one
/// comes T2 after the previous. Timer F keeps running in `Proceeding`.
#[derive(Debug)]
pub struct ClientNonInvite {
    /// Keeps the request for Timer E.
    core: TxCore<ClientNonInviteState>,
    timer_e: Retransmit,
}

impl_transaction!(
    ClientNonInvite,
    ClientNonInviteState,
    "non-INVITE client transaction"
);

impl ClientNonInvite {
    /// Starts the transaction in `Trying` with `request` queued for sending.
    pub fn new(
        now: Instant,
        request: Bytes,
        reliability: Reliability,
        config: &TimerConfig,
    ) -> Self {
        let timer_e = Retransmit::new(Timer::E, config.t1, Some(config.t2));
        let mut core = TxCore::new(ClientNonInviteState::Trying, reliability, config);
        core.start_client(request, &timer_e, Timer::F, now);
        Self { core, timer_e }
    }

    /// A response matching this transaction arrived with `status`. Returns whether it goes up
    /// to the TU (provisional and the first final response do; retransmitted finals don't).
    pub fn on_response(&mut self, now: Instant, status: u16) -> bool {
        use ClientNonInviteState::*;
        let core = &mut self.core;
        let deliver = match (core.state(), ResponseClass::of(status)) {
            (_, ResponseClass::Invalid) | (Completed | Terminated, _) => false,
            (Trying, ResponseClass::Provisional) => {
                core.enter(Proceeding);
                true
            }
            (Proceeding, ResponseClass::Provisional) => true,
            (Trying | Proceeding, ResponseClass::Success | ResponseClass::Failure) => {
                core.timers.cancel(Timer::E);
                core.timers.cancel(Timer::F);
                let wait = core.reliability.linger(core.config.t4);
                core.timers.start(Timer::K, now, wait);
                core.enter(Completed);
                true
            }
        };
        self.handle_timeout(now);
        deliver
    }

    /// The transport could not send the request (§17.1.4).
    pub fn on_transport_error(&mut self, now: Instant) {
        match self.state() {
            ClientNonInviteState::Trying | ClientNonInviteState::Proceeding => {
                self.core.terminate(Some(TxEvent::TransportError))
            }
            ClientNonInviteState::Completed | ClientNonInviteState::Terminated => {}
        }
        self.handle_timeout(now);
    }

    fn on_timer(&mut self, timer: Timer, now: Instant) {
        use ClientNonInviteState::*;
        match (timer, self.state()) {
            (Timer::E, Trying) => {
                self.timer_e.back_off();
                self.core.retransmit(&self.timer_e, now);
            }
            (Timer::E, Proceeding) => {
                self.timer_e.hold_at_cap();
                self.core.retransmit(&self.timer_e, now);
            }
            (Timer::F, Trying | Proceeding) => self.core.terminate(Some(TxEvent::Timeout)),
            (Timer::K, Completed) => self.core.terminate(None),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::transaction::testing::VirtualClock;

    const OPTIONS: &[u8] = b"OPTIONS";

    fn options(clock: &VirtualClock, reliability: Reliability) -> ClientNonInvite {
        ClientNonInvite::new(
            clock.now(),
            Bytes::from_static(OPTIONS),
            reliability,
            &TimerConfig::default(),
        )
    }

    #[test]
    fn udp_retransmits_doubling_capped_at_t2_then_timer_f_times_out() {
        let mut clock = VirtualClock::new();
        let mut tx = options(&clock, Reliability::Unreliable);
        let trace = clock.run_until(&mut tx, 60_000);
        assert_eq!(
            trace.sent_at(),
            vec![0, 500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500]
        );
        assert!(trace.sent_bytes().iter().all(|b| *b == OPTIONS));
        assert_eq!(
            trace.events,
            vec![(32_000, TxEvent::Timeout), (32_000, TxEvent::Terminated)]
        );
        assert_eq!(tx.poll_timeout(), None);
    }

    #[test]
    fn reliable_sends_once_then_timer_f_times_out() {
        let mut clock = VirtualClock::new();
        let mut tx = options(&clock, Reliability::Reliable);
        let trace = clock.run_until(&mut tx, 60_000);
        assert_eq!(trace.sent_at(), vec![0]);
        assert_eq!(
            trace.events,
            vec![(32_000, TxEvent::Timeout), (32_000, TxEvent::Terminated)]
        );
    }

    #[test]
    fn proceeding_retransmits_every_t2_until_timer_f() {
        let mut clock = VirtualClock::new();
        let mut tx = options(&clock, Reliability::Unreliable);
        assert_eq!(clock.run_until(&mut tx, 700).sent_at(), vec![0, 500]);
        assert!(tx.on_response(clock.now(), 100));
        assert_eq!(tx.state(), ClientNonInviteState::Proceeding);
        let trace = clock.run_until(&mut tx, 60_000);
        // Timer E was due at 1.5 s; from then on every T2.
        assert_eq!(
            trace.sent_at(),
            vec![1_500, 5_500, 9_500, 13_500, 17_500, 21_500, 25_500, 29_500]
        );
        assert_eq!(
            trace.events,
            vec![(32_000, TxEvent::Timeout), (32_000, TxEvent::Terminated)]
        );
    }

    #[test]
    fn final_response_completes_and_timer_k_terminates() {
        let mut clock = VirtualClock::new();
        let mut tx = options(&clock, Reliability::Unreliable);
        clock.run_until(&mut tx, 600);
        assert!(tx.on_response(clock.now(), 100));
        assert!(tx.on_response(clock.now(), 183));
        clock.run_until(&mut tx, 2_000);
        assert!(tx.on_response(clock.now(), 200));
        assert_eq!(tx.state(), ClientNonInviteState::Completed);
        // Retransmitted finals and late provisionals are absorbed.
        assert!(!tx.on_response(clock.now(), 200));
        assert!(!tx.on_response(clock.now(), 180));
        assert!(!tx.on_response(clock.now(), 481));
        let trace = clock.run_until(&mut tx, 60_000);
        assert!(trace.sent.is_empty());
        assert_eq!(trace.events, vec![(7_000, TxEvent::Terminated)]);
    }

    #[test]
    fn failure_from_trying_completes() {
        let mut clock = VirtualClock::new();
        let mut tx = options(&clock, Reliability::Unreliable);
        assert_eq!(clock.run_until(&mut tx, 100).sent_at(), vec![0]);
        assert!(tx.on_response(clock.now(), 404));
        assert_eq!(tx.state(), ClientNonInviteState::Completed);
        let trace = clock.run_until(&mut tx, 60_000);
        assert!(trace.sent.is_empty());
        assert_eq!(trace.events, vec![(5_100, TxEvent::Terminated)]);
    }

    #[test]
    fn reliable_final_terminates_at_once() {
        let mut clock = VirtualClock::new();
        let mut tx = options(&clock, Reliability::Reliable);
        assert_eq!(clock.run_until(&mut tx, 300).sent_at(), vec![0]);
        assert!(tx.on_response(clock.now(), 200));
        assert!(tx.is_terminated());
        let trace = clock.take(&mut tx);
        assert!(trace.sent.is_empty());
        assert_eq!(trace.events, vec![(300, TxEvent::Terminated)]);
        assert!(!tx.on_response(clock.now(), 200));
    }

    #[test]
    fn transport_error_terminates_while_waiting_for_the_final_response() {
        let clock = VirtualClock::new();
        let mut tx = options(&clock, Reliability::Unreliable);
        assert!(tx.on_response(clock.now(), 100));
        tx.on_transport_error(clock.now());
        let trace = clock.take(&mut tx);
        assert_eq!(
            trace.events,
            vec![(0, TxEvent::TransportError), (0, TxEvent::Terminated)]
        );

        let mut tx = options(&clock, Reliability::Unreliable);
        assert!(tx.on_response(clock.now(), 200));
        tx.on_transport_error(clock.now());
        assert_eq!(tx.state(), ClientNonInviteState::Completed);
        assert!(clock.take(&mut tx).events.is_empty());
    }

    #[test]
    fn any_status_in_any_state_is_handled_without_panicking() {
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
        let prefixes: [&[u16]; 4] = [&[], &[100], &[200], &[100, 500]];
        for reliability in [Reliability::Unreliable, Reliability::Reliable] {
            for prefix in prefixes {
                for status in statuses {
                    let mut clock = VirtualClock::new();
                    let mut tx = options(&clock, reliability);
                    for &earlier in prefix {
                        tx.on_response(clock.now(), earlier);
                    }
                    let before = tx.state();
                    if ResponseClass::of(status) == ResponseClass::Invalid {
                        assert!(!tx.on_response(clock.now(), status));
                        assert_eq!(tx.state(), before);
                    } else {
                        tx.on_response(clock.now(), status);
                    }
                    clock.run_until(&mut tx, 100_000);
                    assert!(tx.is_terminated());
                    assert!(!tx.on_response(clock.now(), status));
                    tx.on_transport_error(clock.now());
                    assert!(clock.take(&mut tx).events.is_empty());
                }
            }
        }
    }
}
