//! Test helper: a virtual clock that runs a transaction forward, firing its timers at the
//! instants it asks for and recording what it sends and reports, stamped in milliseconds
//! since the clock started.

use super::{ClientInvite, ClientNonInvite, ServerInvite, ServerNonInvite, TxEvent};
use bytes::Bytes;
use std::time::{Duration, Instant};

/// The draining half of the API the four machines share.
pub(crate) trait Machine {
    fn poll_transmit(&mut self) -> Option<Bytes>;
    fn poll_timeout(&self) -> Option<Instant>;
    fn handle_timeout(&mut self, now: Instant);
    fn poll_event(&mut self) -> Option<TxEvent>;
}

macro_rules! impl_machine {
    ($($machine:ty),*) => {$(
        impl Machine for $machine {
            fn poll_transmit(&mut self) -> Option<Bytes> {
                <$machine>::poll_transmit(self)
            }
            fn poll_timeout(&self) -> Option<Instant> {
                <$machine>::poll_timeout(self)
            }
            fn handle_timeout(&mut self, now: Instant) {
                <$machine>::handle_timeout(self, now)
            }
            fn poll_event(&mut self) -> Option<TxEvent> {
                <$machine>::poll_event(self)
            }
        }
    )*};
}

impl_machine!(ClientInvite, ClientNonInvite, ServerInvite, ServerNonInvite);

/// What a machine did while the clock ran: `(ms, bytes)` sent and `(ms, event)` reported.
#[derive(Debug, Default)]
pub(crate) struct Trace {
    pub sent: Vec<(u64, Bytes)>,
    pub events: Vec<(u64, TxEvent)>,
}

impl Trace {
    /// The instants (ms) at which something was sent.
    pub fn sent_at(&self) -> Vec<u64> {
        self.sent.iter().map(|(ms, _)| *ms).collect()
    }

    /// What was sent, in order.
    pub fn sent_bytes(&self) -> Vec<&[u8]> {
        self.sent.iter().map(|(_, bytes)| bytes.as_ref()).collect()
    }
}

pub(crate) struct VirtualClock {
    base: Instant,
    now: Instant,
}

impl VirtualClock {
    pub fn new() -> Self {
        let base = Instant::now();
        Self { base, now: base }
    }

    /// The current virtual instant, to pass as `now` to an input.
    pub fn now(&self) -> Instant {
        self.now
    }

    fn ms(&self, instant: Instant) -> u64 {
        u64::try_from((instant - self.base).as_millis()).unwrap()
    }

    /// Advances to `until_ms`, calling `handle_timeout` at every deadline the machine asks
    /// for on the way. Whatever the machine had queued before is stamped with the time the
    /// clock had reached.
    pub fn run_until(&mut self, machine: &mut impl Machine, until_ms: u64) -> Trace {
        let until = self.base + Duration::from_millis(until_ms);
        assert!(until >= self.now, "the virtual clock only runs forward");
        let mut trace = Trace::default();
        self.drain(machine, &mut trace);
        let mut wakeups = 0;
        while let Some(deadline) = machine.poll_timeout() {
            if deadline > until {
                break;
            }
            wakeups += 1;
            assert!(wakeups < 10_000, "machine keeps asking to be woken");
            self.now = deadline.max(self.now);
            machine.handle_timeout(self.now);
            self.drain(machine, &mut trace);
        }
        self.now = until;
        trace
    }

    /// Collects what the machine has queued, stamped with the current time.
    pub fn drain(&self, machine: &mut impl Machine, trace: &mut Trace) {
        let ms = self.ms(self.now);
        while let Some(bytes) = machine.poll_transmit() {
            trace.sent.push((ms, bytes));
        }
        while let Some(event) = machine.poll_event() {
            trace.events.push((ms, event));
        }
    }

    /// Collects what the machine queued in response to an input given at the current time.
    pub fn take(&self, machine: &mut impl Machine) -> Trace {
        let mut trace = Trace::default();
        self.drain(machine, &mut trace);
        trace
    }
}
