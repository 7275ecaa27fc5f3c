//! INVITE client transaction (RFC 3261 §17.1.1, updated by RFC 6026 §7.2 and §8.4).

use super::core::{impl_transaction, TxCore};
use super::timers::{Retransmit, Timer};
use super::{Reliability, ResponseClass, TimerConfig, TxEvent, TIMER_D_MIN};
use bytes::Bytes;
use std::time::Instant;

/// States of [`ClientInvite`], named as in RFC 3261 Figure 5 and RFC 6026 Figure 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientInviteState {
    Calling,
    Proceeding,
    Accepted,
    Completed,
    Terminated,
}

/// The INVITE client transaction: sends an INVITE, retransmits it on UDP until a response
/// comes, ACKs a non-2xx final response itself and leaves 2xx ACKs to the TU.
///
/// ```text
///                                |INVITE from TU
///              Timer A fires     |INVITE sent      Timer B fires
///              Reset A,          V                 or Transport Err.
///              INVITE sent +-----------+           inform TU
///                +---------|           |---------------------------+
///                |         |  Calling  |                           |
///                +-------->|           |-----------+               |
///   300-699                +-----------+ 2xx       |               |
///   ACK sent                  |  |       2xx to TU |               |
///   resp. to TU               |  |1xx              |               |
///   +-------------------------+  |1xx to TU        |               |
///   |                            |                 |               |
///   |                1xx         V                 |               |
///   |                1xx to TU +-----------+       |               |
///   |                +---------|           |       |               |
///   |                |         |Proceeding |       |               |
///   |                +-------->|           |       |               |
///   |                          +-----------+ 2xx   |               |
///   |         300-699             |    |     2xx to TU             |
///   |         ACK sent,  +--------+    +---------------+           |
///   |         resp. to TU|                         |   |           |
///   |                    |                         |   |           |
///   |                    V                         V   V           |
///   |              +-----------+               +----------+        |
///   +------------->|           |Transport Err. |          |        |
///                  | Completed |Inform TU      | Accepted |        |
///               +--|           |-------+       |          |-+      |
///       300-699 |  +-----------+       |       +----------+ |      |
///       ACK sent|    ^  |              |           |  ^     | 2xx  |
///               |    |  |              |           |  +-----+ 2xx to TU
///               +----+  |              |           |               |
///                       |Timer D fires |  Timer M  |               |
///                       |-             |  fires    |               |
///                       V              |  -        |               |
///                  +-----------+       |           |               |
///                  |           |       |           |               |
///                  | Terminated|<------+-----------+---------------+
///                  |           |
///                  +-----------+
/// ```
///
/// Readings of the RFC:
///
/// * Timer A starts at T1 and doubles without cap (§17.1.1.2; the T2 cap is for non-INVITE
///   requests and INVITE responses): sends at 0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s on UDP.
/// * Timer B only matters in `Calling` ("still in the Calling state when timer B fires"), so
///   the first provisional response cancels it together with Timer A. How long a ringing
///   INVITE may last is the TU's business (a proxy's Timer C, §16.8).
/// * A transport error in `Proceeding` also terminates (§17.1.4 applies to every state that
///   still waits for the final response); in `Accepted` the transaction sends nothing, so
///   there is no error to report and it is absorbed.
#[derive(Debug)]
pub struct ClientInvite {
    /// Keeps the INVITE while `Calling` (Timer A), then the ACK for the non-2xx final
    /// response while `Completed`, to answer its retransmissions.
    core: TxCore<ClientInviteState>,
    timer_a: Retransmit,
}

impl_transaction!(ClientInvite, ClientInviteState, "INVITE client transaction");

impl ClientInvite {
    /// Starts the transaction in `Calling` with `request` (the INVITE) queued for sending.
    pub fn new(
        now: Instant,
        request: Bytes,
        reliability: Reliability,
        config: &TimerConfig,
    ) -> Self {
        let timer_a = Retransmit::new(Timer::A, config.t1, None);
        let mut core = TxCore::new(ClientInviteState::Calling, reliability, config);
        core.start_client(request, &timer_a, Timer::B, now);
        Self { core, timer_a }
    }

    /// A response matching this transaction arrived with `status`. Returns whether it goes up
    /// to the TU. `ack` builds the ACK for a non-2xx final response (§17.1.1.3); it is called
    /// at most once, on the first such response, and the ACK is queued for sending.
    pub fn on_response(&mut self, now: Instant, status: u16, ack: impl FnOnce() -> Bytes) -> bool {
        use ClientInviteState::*;
        let core = &mut self.core;
        let deliver = match (core.state(), ResponseClass::of(status)) {
            (_, ResponseClass::Invalid) | (Terminated, _) => false,
            (Calling, ResponseClass::Provisional) => {
                core.timers.cancel(Timer::A);
                core.timers.cancel(Timer::B);
                // Only Calling retransmits the INVITE (Timer A): let its bytes go, so a
                // transaction lingering in Proceeding or Accepted holds no message.
                core.stop_resending();
                core.enter(Proceeding);
                true
            }
            (Proceeding, ResponseClass::Provisional) => true,
            (Calling | Proceeding, ResponseClass::Success) => {
                core.timers.cancel(Timer::A);
                core.timers.cancel(Timer::B);
                core.stop_resending();
                let wait = core.config.transaction_timeout();
                core.timers.start(Timer::M, now, wait);
                core.enter(Accepted);
                true
            }
            (Calling | Proceeding, ResponseClass::Failure) => {
                core.timers.cancel(Timer::A);
                core.timers.cancel(Timer::B);
                // The ACK replaces the INVITE as the message to send again.
                core.send_and_keep(ack());
                let wait = TIMER_D_MIN.max(core.config.transaction_timeout());
                core.timers
                    .start(Timer::D, now, core.reliability.linger(wait));
                core.enter(Completed);
                true
            }
            (Completed, ResponseClass::Failure) => {
                // A retransmission of the final response: ACK it again, absorb it.
                core.resend();
                false
            }
            // Proxies forward every 2xx, retransmissions included (RFC 6026 §7.2).
            (Accepted, ResponseClass::Success) => true,
            (Completed, _) | (Accepted, _) => false,
        };
        self.handle_timeout(now);
        deliver
    }

    /// The transport could not send the INVITE or the ACK (§17.1.4).
    pub fn on_transport_error(&mut self, now: Instant) {
        match self.state() {
            ClientInviteState::Calling
            | ClientInviteState::Proceeding
            | ClientInviteState::Completed => self.core.terminate(Some(TxEvent::TransportError)),
            ClientInviteState::Accepted | ClientInviteState::Terminated => {}
        }
        self.handle_timeout(now);
    }

    fn on_timer(&mut self, timer: Timer, now: Instant) {
        match (timer, self.state()) {
            (Timer::A, ClientInviteState::Calling) => {
                self.timer_a.back_off();
                self.core.retransmit(&self.timer_a, now);
            }
            (Timer::B, ClientInviteState::Calling) => self.core.terminate(Some(TxEvent::Timeout)),
            (Timer::D, ClientInviteState::Completed) | (Timer::M, ClientInviteState::Accepted) => {
                self.core.terminate(None)
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::transaction::testing::VirtualClock;
    use std::cell::Cell;

    const INVITE: &[u8] = b"INVITE";
    const ACK: &[u8] = b"ACK";

    fn invite(clock: &VirtualClock, reliability: Reliability) -> ClientInvite {
        ClientInvite::new(
            clock.now(),
            Bytes::from_static(INVITE),
            reliability,
            &TimerConfig::default(),
        )
    }

    fn ack() -> Bytes {
        Bytes::from_static(ACK)
    }

    #[test]
    fn udp_retransmits_doubling_then_timer_b_times_out() {
        let mut clock = VirtualClock::new();
        let mut tx = invite(&clock, Reliability::Unreliable);
        let trace = clock.run_until(&mut tx, 60_000);
        assert_eq!(
            trace.sent_at(),
            vec![0, 500, 1_500, 3_500, 7_500, 15_500, 31_500]
        );
        assert!(trace.sent_bytes().iter().all(|b| *b == INVITE));
        assert_eq!(
            trace.events,
            vec![(32_000, TxEvent::Timeout), (32_000, TxEvent::Terminated)]
        );
        assert!(tx.is_terminated());
        assert_eq!(tx.poll_timeout(), None);
    }

    #[test]
    fn reliable_sends_once_then_timer_b_times_out() {
        let mut clock = VirtualClock::new();
        let mut tx = invite(&clock, Reliability::Reliable);
        let trace = clock.run_until(&mut tx, 60_000);
        assert_eq!(trace.sent_at(), vec![0]);
        assert_eq!(
            trace.events,
            vec![(32_000, TxEvent::Timeout), (32_000, TxEvent::Terminated)]
        );
    }

    #[test]
    fn provisional_stops_retransmissions_and_timer_b() {
        let mut clock = VirtualClock::new();
        let mut tx = invite(&clock, Reliability::Unreliable);
        assert_eq!(clock.run_until(&mut tx, 1_000).sent_at(), vec![0, 500]);
        assert!(tx.on_response(clock.now(), 100, ack));
        assert_eq!(tx.state(), ClientInviteState::Proceeding);
        assert!(tx.on_response(clock.now(), 180, ack));
        assert!(tx.on_response(clock.now(), 183, ack));
        // Ringing for ten minutes: no retransmission, no Timer B (Timer C is the TU's).
        let trace = clock.run_until(&mut tx, 600_000);
        assert!(trace.sent.is_empty());
        assert!(trace.events.is_empty());
        assert_eq!(tx.poll_timeout(), None);
        assert_eq!(tx.state(), ClientInviteState::Proceeding);
    }

    #[test]
    fn non_2xx_is_acked_once_and_the_ack_resent_on_retransmissions() {
        let mut clock = VirtualClock::new();
        let mut tx = invite(&clock, Reliability::Unreliable);
        clock.run_until(&mut tx, 1_000);
        let built = Cell::new(0);
        let build_ack = || {
            built.set(built.get() + 1);
            ack()
        };
        assert!(tx.on_response(clock.now(), 486, build_ack));
        assert_eq!(tx.state(), ClientInviteState::Completed);
        assert_eq!(clock.take(&mut tx).sent_bytes(), vec![ACK]);

        clock.run_until(&mut tx, 2_000);
        assert!(!tx.on_response(clock.now(), 486, build_ack));
        assert!(!tx.on_response(clock.now(), 486, build_ack));
        assert_eq!(clock.take(&mut tx).sent_bytes(), vec![ACK, ACK]);
        assert_eq!(built.get(), 1);

        // Provisional and 2xx responses in Completed are absorbed.
        assert!(!tx.on_response(clock.now(), 180, ack));
        assert!(!tx.on_response(clock.now(), 200, ack));

        // Timer D: 32 s after the final response, no INVITE retransmission meanwhile.
        let trace = clock.run_until(&mut tx, 60_000);
        assert!(trace.sent.is_empty());
        assert_eq!(trace.events, vec![(33_000, TxEvent::Terminated)]);
    }

    #[test]
    fn reliable_non_2xx_is_acked_and_terminates_at_once() {
        let mut clock = VirtualClock::new();
        let mut tx = invite(&clock, Reliability::Reliable);
        clock.run_until(&mut tx, 100);
        assert!(tx.on_response(clock.now(), 503, ack));
        assert!(tx.is_terminated());
        let trace = clock.take(&mut tx);
        assert_eq!(trace.sent_bytes(), vec![ACK]);
        assert_eq!(trace.events, vec![(100, TxEvent::Terminated)]);
        assert_eq!(tx.poll_timeout(), None);
    }

    #[test]
    fn success_is_accepted_without_an_ack_and_its_retransmissions_delivered() {
        let mut clock = VirtualClock::new();
        let mut tx = invite(&clock, Reliability::Unreliable);
        clock.run_until(&mut tx, 600);
        assert!(tx.on_response(clock.now(), 180, ack));
        clock.run_until(&mut tx, 5_000);
        let built = Cell::new(false);
        let build_ack = || {
            built.set(true);
            ack()
        };
        assert!(tx.on_response(clock.now(), 200, build_ack));
        assert_eq!(tx.state(), ClientInviteState::Accepted);
        clock.run_until(&mut tx, 5_500);
        assert!(
            tx.on_response(clock.now(), 200, build_ack),
            "2xx retransmission"
        );
        assert!(
            tx.on_response(clock.now(), 202, build_ack),
            "2xx from another fork"
        );
        assert!(!tx.on_response(clock.now(), 180, build_ack));
        assert!(!tx.on_response(clock.now(), 486, build_ack));
        assert!(!built.get(), "the TU ACKs a 2xx, not the transaction");

        // Timer M: 64*T1 after the first 2xx; nothing is ever sent.
        let trace = clock.run_until(&mut tx, 60_000);
        assert!(trace.sent.is_empty());
        assert_eq!(trace.events, vec![(37_000, TxEvent::Terminated)]);
    }

    #[test]
    fn success_while_calling_stops_retransmissions() {
        let mut clock = VirtualClock::new();
        let mut tx = invite(&clock, Reliability::Unreliable);
        assert_eq!(clock.run_until(&mut tx, 200).sent_at(), vec![0]);
        assert!(tx.on_response(clock.now(), 200, ack));
        let trace = clock.run_until(&mut tx, 60_000);
        assert!(trace.sent.is_empty());
        assert_eq!(trace.events, vec![(32_200, TxEvent::Terminated)]);
    }

    /// The caller hangs up while it rings: the proxy sends CANCEL on its own transaction, the
    /// callee answers the INVITE with 487, which crosses a retransmitted 180.
    #[test]
    fn cancelled_invite_gets_487_after_180() {
        let mut clock = VirtualClock::new();
        let mut tx = invite(&clock, Reliability::Unreliable);
        clock.run_until(&mut tx, 100);
        assert!(tx.on_response(clock.now(), 180, ack));
        clock.run_until(&mut tx, 2_000);
        let built = Cell::new(0);
        let build_ack = || {
            built.set(built.get() + 1);
            ack()
        };
        let delivered: Vec<bool> = [180, 487, 487, 180, 487]
            .into_iter()
            .map(|status| tx.on_response(clock.now(), status, build_ack))
            .collect();
        assert_eq!(delivered, vec![true, true, false, false, false]);
        assert_eq!(built.get(), 1);
        assert_eq!(clock.take(&mut tx).sent_bytes(), vec![ACK, ACK, ACK]);
        let trace = clock.run_until(&mut tx, 60_000);
        assert_eq!(trace.events, vec![(34_000, TxEvent::Terminated)]);
    }

    #[test]
    fn transport_error_terminates_unless_accepted() {
        let clock = VirtualClock::new();
        let mut tx = invite(&clock, Reliability::Unreliable);
        tx.on_transport_error(clock.now());
        let trace = clock.take(&mut tx);
        assert_eq!(
            trace.events,
            vec![(0, TxEvent::TransportError), (0, TxEvent::Terminated)]
        );
        assert_eq!(tx.poll_timeout(), None);

        let mut tx = invite(&clock, Reliability::Unreliable);
        assert!(tx.on_response(clock.now(), 486, ack));
        tx.on_transport_error(clock.now());
        assert!(tx.is_terminated());

        let mut tx = invite(&clock, Reliability::Unreliable);
        assert!(tx.on_response(clock.now(), 200, ack));
        tx.on_transport_error(clock.now());
        assert_eq!(tx.state(), ClientInviteState::Accepted);
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
            199,
            200,
            299,
            300,
            487,
            699,
            700,
            999,
            u16::MAX,
        ];
        let prefixes: [&[u16]; 5] = [&[], &[180], &[200], &[486], &[486, 0]];
        for reliability in [Reliability::Unreliable, Reliability::Reliable] {
            for prefix in prefixes {
                for &status in &statuses {
                    let mut clock = VirtualClock::new();
                    let mut tx = invite(&clock, reliability);
                    for &earlier in prefix {
                        tx.on_response(clock.now(), earlier, ack);
                    }
                    let before = tx.state();
                    let delivered = tx.on_response(clock.now(), status, ack);
                    if ResponseClass::of(status) == ResponseClass::Invalid {
                        assert!(!delivered);
                        assert_eq!(tx.state(), before);
                    }
                    tx.on_transport_error(clock.now());
                    clock.run_until(&mut tx, 100_000);
                    assert!(tx.is_terminated());
                    assert!(!tx.on_response(clock.now(), status, ack));
                }
            }
        }
    }

    #[test]
    fn terminated_reports_once_and_absorbs_everything() {
        let mut clock = VirtualClock::new();
        let mut tx = invite(&clock, Reliability::Reliable);
        let trace = clock.run_until(&mut tx, 40_000);
        assert_eq!(trace.events.len(), 2);
        for status in [100, 200, 486] {
            assert!(!tx.on_response(clock.now(), status, ack));
        }
        tx.on_transport_error(clock.now());
        tx.handle_timeout(clock.now());
        let trace = clock.take(&mut tx);
        assert!(trace.sent.is_empty());
        assert!(trace.events.is_empty());
    }
}
