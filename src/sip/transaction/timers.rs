//! Transaction timers as data: an enum of the RFC 3261 timers (Appendix A, Table 4, plus
//! RFC 6026's L and M) and a table of their deadlines. A machine's next wake-up is the
//! earliest deadline in its table.

use std::time::{Duration, Instant};

/// A transaction timer. Values are for the default T1 = 500 ms, T2 = 4 s, T4 = 5 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// INVITE client: request retransmit, T1 doubling (unreliable transports only).
    A,
    /// INVITE client: transaction timeout in `Calling`, 64*T1.
    B,
    /// INVITE client: wait for response retransmits in `Completed`, ≥ 32 s (0 reliable).
    D,
    /// Non-INVITE client: request retransmit, T1 doubling up to T2 (unreliable only).
    E,
    /// Non-INVITE client: transaction timeout, 64*T1.
    F,
    /// INVITE server: response retransmit, T1 doubling up to T2 (unreliable only).
    G,
    /// INVITE server: wait for ACK in `Completed`, 64*T1.
    H,
    /// INVITE server: wait for ACK retransmits in `Confirmed`, T4 (0 reliable).
    I,
    /// Non-INVITE server: wait for request retransmits in `Completed`, 64*T1 (0 reliable).
    J,
    /// Non-INVITE client: wait for response retransmits in `Completed`, T4 (0 reliable).
    K,
    /// INVITE server (RFC 6026): wait for 2xx from the TU and INVITE retransmits in
    /// `Accepted`, 64*T1.
    L,
    /// INVITE client (RFC 6026): wait for 2xx retransmits and forked 2xx in `Accepted`,
    /// 64*T1.
    M,
    /// INVITE server, not an RFC-named timer: 200 ms after the INVITE, ask the owner for a
    /// 100 (Trying) if the TU has not responded (§17.2.1).
    Trying,
}

impl Timer {
    const COUNT: usize = Timer::Trying as usize + 1;
}

/// Retransmit intervals never go below this, so a zero T1 cannot make a machine ask to be
/// woken at the instant it was woken, forever.
const MIN_RETRANSMIT_INTERVAL: Duration = Duration::from_millis(1);

/// The next retransmit interval after `interval`: doubled, at most `cap` (T2) when there
/// is one (timers E and G), uncapped for Timer A.
pub(crate) fn backoff(interval: Duration, cap: Option<Duration>) -> Duration {
    let doubled = interval.saturating_mul(2);
    let capped = match cap {
        Some(cap) => doubled.min(cap),
        None => doubled,
    };
    capped.max(MIN_RETRANSMIT_INTERVAL)
}

/// The first retransmit interval (T1, or T2 if T2 is configured below T1).
pub(crate) fn first_interval(t1: Duration, cap: Option<Duration>) -> Duration {
    let first = match cap {
        Some(cap) => t1.min(cap),
        None => t1,
    };
    first.max(MIN_RETRANSMIT_INTERVAL)
}

/// A retransmit timer (A, E or G) and its current interval: T1, doubled on every firing, at
/// most T2 for E and G (§17.1.1.2, §17.1.2.2, §17.2.1); Timer A has no cap.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retransmit {
    timer: Timer,
    interval: Duration,
    cap: Option<Duration>,
}

impl Retransmit {
    pub(crate) fn new(timer: Timer, t1: Duration, cap: Option<Duration>) -> Self {
        Self {
            timer,
            interval: first_interval(t1, cap),
            cap,
        }
    }

    pub(crate) fn timer(&self) -> Timer {
        self.timer
    }

    /// How long after the latest send the next one is due.
    pub(crate) fn interval(&self) -> Duration {
        self.interval
    }

    /// The timer fired: doubles the interval, at most the cap.
    pub(crate) fn back_off(&mut self) {
        self.interval = backoff(self.interval, self.cap);
    }

    /// From now on every interval is the cap: Timer E in `Proceeding` is "reset with a value
    /// of T2" (§17.1.2.2). Without a cap the interval stays as it is.
    pub(crate) fn hold_at_cap(&mut self) {
        self.interval = first_interval(self.cap.unwrap_or(self.interval), None);
    }
}

/// Deadlines of the timers a machine has running, one slot per [`Timer`].
#[derive(Debug, Clone, Default)]
pub(crate) struct TimerTable {
    deadlines: [Option<Instant>; Timer::COUNT],
}

impl TimerTable {
    /// Starts (or restarts) `timer` to fire `after` from `now`. A deadline too far away to
    /// represent is treated as never.
    pub(crate) fn start(&mut self, timer: Timer, now: Instant, after: Duration) {
        self.deadlines[timer as usize] = now.checked_add(after);
    }

    pub(crate) fn cancel(&mut self, timer: Timer) {
        self.deadlines[timer as usize] = None;
    }

    pub(crate) fn cancel_all(&mut self) {
        self.deadlines = [None; Timer::COUNT];
    }

    /// The earliest deadline, if any timer runs.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// The timers due at `now`, earliest deadline first (ties in [`Timer`] order). A
    /// snapshot: a handler that restarts or cancels timers does not change it, so pair it
    /// with [`TimerTable::take_due`].
    pub(crate) fn due(&self, now: Instant) -> Vec<Timer> {
        let mut due: Vec<(Instant, Timer)> = TIMERS
            .iter()
            .filter_map(|&timer| {
                self.deadlines[timer as usize]
                    .filter(|&deadline| deadline <= now)
                    .map(|deadline| (deadline, timer))
            })
            .collect();
        due.sort_unstable();
        due.into_iter().map(|(_, timer)| timer).collect()
    }

    /// Stops `timer` and returns true if it is running and due at `now`; false if an
    /// earlier handler cancelled or restarted it meanwhile.
    pub(crate) fn take_due(&mut self, timer: Timer, now: Instant) -> bool {
        let slot = &mut self.deadlines[timer as usize];
        match *slot {
            Some(deadline) if deadline <= now => {
                *slot = None;
                true
            }
            _ => false,
        }
    }
}

const TIMERS: [Timer; Timer::COUNT] = [
    Timer::A,
    Timer::B,
    Timer::D,
    Timer::E,
    Timer::F,
    Timer::G,
    Timer::H,
    Timer::I,
    Timer::J,
    Timer::K,
    Timer::L,
    Timer::M,
    Timer::Trying,
];

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn next_is_the_earliest_deadline() {
        let now = Instant::now();
        let mut table = TimerTable::default();
        assert_eq!(table.next(), None);
        table.start(Timer::B, now, 32_000 * MS);
        table.start(Timer::A, now, 500 * MS);
        assert_eq!(table.next(), Some(now + 500 * MS));
        table.cancel(Timer::A);
        assert_eq!(table.next(), Some(now + 32_000 * MS));
        table.cancel_all();
        assert_eq!(table.next(), None);
    }

    #[test]
    fn due_is_ordered_by_deadline_then_timer() {
        let now = Instant::now();
        let mut table = TimerTable::default();
        table.start(Timer::H, now, 10 * MS);
        table.start(Timer::G, now, 20 * MS);
        table.start(Timer::A, now, 10 * MS);
        table.start(Timer::M, now, 30 * MS);
        assert_eq!(table.due(now), vec![]);
        assert_eq!(table.due(now + 20 * MS), vec![Timer::A, Timer::H, Timer::G]);
        assert!(table.take_due(Timer::A, now + 20 * MS));
        assert!(!table.take_due(Timer::A, now + 20 * MS));
        assert!(!table.take_due(Timer::M, now + 20 * MS));
        assert!(table.take_due(Timer::H, now + 20 * MS));
        assert!(table.take_due(Timer::G, now + 20 * MS));
        assert_eq!(table.next(), Some(now + 30 * MS), "M still runs");
    }

    #[test]
    fn unrepresentable_deadline_never_fires() {
        let now = Instant::now();
        let mut table = TimerTable::default();
        table.start(Timer::B, now, Duration::MAX);
        assert_eq!(table.next(), None);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let t1 = 500 * MS;
        let t2 = 4000 * MS;
        assert_eq!(backoff(t1, Some(t2)), 1000 * MS);
        assert_eq!(backoff(2000 * MS, Some(t2)), t2);
        assert_eq!(backoff(t2, Some(t2)), t2);
        assert_eq!(backoff(16_000 * MS, None), 32_000 * MS);
        assert_eq!(backoff(Duration::MAX, None), Duration::MAX);
        assert_eq!(backoff(Duration::ZERO, None), MS);
        assert_eq!(first_interval(Duration::ZERO, Some(t2)), MS);
        assert_eq!(first_interval(t1, Some(100 * MS)), 100 * MS);
    }
}
