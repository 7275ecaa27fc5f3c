//! Is the upstream (the PBX) there? Probed with OPTIONS (as Kamailio's dispatcher does),
//! and told by the transport (a refused TCP connection). While it is down, a new INVITE is
//! answered 503 at once instead of 408 after Timer B (32 s), and a withheld caller is
//! refused before scamscreen answers (and bills) the call.
//!
//! Safe by construction for a PBX that never answers OPTIONS from scamscreen (an ACL that
//! drops them): unanswered probes only count once a probe has been answered since the
//! start, and any message from the upstream marks it up.

use std::time::{Duration, Instant};

/// A probe without any answer for this long failed.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Failed probes in a row that make an upstream down.
const FAILURES_DOWN: u32 = 2;
/// While down, probe this often (to see it come back quickly).
const DOWN_INTERVAL: Duration = Duration::from_secs(1);

/// What the health check asks the proxy to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthAction {
    /// Send an OPTIONS probe with this branch.
    Probe(String),
    /// The upstream went down (why) or came back.
    Down(&'static str),
    Up,
}

#[derive(Debug)]
pub struct UpstreamHealth {
    interval: Duration,
    up: bool,
    /// A probe has been answered since the start: silence means something.
    answers_probes: bool,
    failures: u32,
    next_probe: Instant,
    outstanding: Option<(String, Instant)>,
    seq: u64,
    actions: Vec<HealthAction>,
}

impl UpstreamHealth {
    /// Probing every `interval` (the first probe at once).
    pub fn new(now: Instant, interval: Duration) -> UpstreamHealth {
        UpstreamHealth {
            interval,
            up: true,
            answers_probes: false,
            failures: 0,
            next_probe: now,
            outstanding: None,
            seq: 0,
            actions: Vec::new(),
        }
    }

    pub fn is_up(&self) -> bool {
        self.up
    }

    /// The next moment something is due. While a probe is out, only its timeout: the next
    /// probe waits for it (a due `next_probe` reported meanwhile would be a timer that never
    /// clears, and the core would spin until the probe times out; found by `make fuzz`).
    pub fn poll_timeout(&self) -> Option<Instant> {
        Some(match &self.outstanding {
            Some((_, sent)) => *sent + PROBE_TIMEOUT,
            None => self.next_probe,
        })
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some((_, sent)) = &self.outstanding {
            if now >= *sent + PROBE_TIMEOUT {
                self.outstanding = None;
                self.failures += 1;
                if self.up && self.answers_probes && self.failures >= FAILURES_DOWN {
                    self.set_down("no answer to OPTIONS");
                }
            }
        }
        if now >= self.next_probe && self.outstanding.is_none() {
            self.seq += 1;
            let branch = format!("{PROBE_BRANCH_PREFIX}{}", self.seq);
            self.outstanding = Some((branch.clone(), now));
            self.actions.push(HealthAction::Probe(branch));
            let every = if self.up {
                self.interval
            } else {
                DOWN_INTERVAL
            };
            self.next_probe = now + every;
        }
    }

    /// A response whose top Via branch is `branch`: true when it answers our probe (then
    /// it is ours, not to be relayed).
    pub fn on_response(&mut self, branch: &str) -> bool {
        if !branch.starts_with(PROBE_BRANCH_PREFIX) {
            return false;
        }
        if self.outstanding.as_ref().is_some_and(|(b, _)| b == branch) {
            self.outstanding = None;
            self.answers_probes = true;
            self.alive();
        }
        true
    }

    /// Anything from the upstream: it is there.
    pub fn alive(&mut self) {
        self.failures = 0;
        if !self.up {
            self.up = true;
            self.actions.push(HealthAction::Up);
        }
    }

    /// The transport says the upstream cannot be reached (TCP refused, ICMP unreachable).
    pub fn unreachable(&mut self, why: &'static str) {
        if self.up {
            self.set_down(why);
        }
    }

    fn set_down(&mut self, why: &'static str) {
        self.up = false;
        self.actions.push(HealthAction::Down(why));
    }

    pub fn poll_action(&mut self) -> Option<HealthAction> {
        (!self.actions.is_empty()).then(|| self.actions.remove(0))
    }
}

/// Branches of our probes (RFC 3261 magic cookie first).
pub const PROBE_BRANCH_PREFIX: &str = "z9hG4bK-ssprobe-";

#[cfg(test)]
mod regression {
    use super::*;

    /// While down, probes go every second but a probe waits 2 s for its answer: the due
    /// next probe must not be reported while one is out.
    #[test]
    fn a_probe_out_hides_the_next_one_so_the_timer_clears() {
        let t0 = Instant::now();
        let mut h = UpstreamHealth::new(t0, Duration::from_secs(1));
        h.handle_timeout(t0);
        assert!(matches!(h.poll_action(), Some(HealthAction::Probe(_))));
        let t = t0 + Duration::from_millis(1500);
        let due = h.poll_timeout().unwrap();
        assert!(due > t, "reported {due:?}, which is already past at 1.5 s");
        h.handle_timeout(t);
        assert!(h.poll_timeout().unwrap() > t, "still due after handling it");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(h: &mut UpstreamHealth) -> Vec<HealthAction> {
        std::iter::from_fn(|| h.poll_action()).collect()
    }

    #[test]
    fn silence_only_counts_once_the_upstream_has_answered_a_probe() {
        let t0 = Instant::now();
        let mut h = UpstreamHealth::new(t0, Duration::from_secs(5));
        // A PBX that never answers OPTIONS: probed, never down.
        for s in 0..30 {
            h.handle_timeout(t0 + Duration::from_secs(s));
        }
        assert!(h.is_up());
        assert!(drain(&mut h)
            .iter()
            .all(|a| matches!(a, HealthAction::Probe(_))));
    }

    #[test]
    fn two_unanswered_probes_make_it_down_and_any_answer_up() {
        let t0 = Instant::now();
        let mut h = UpstreamHealth::new(t0, Duration::from_secs(5));
        h.handle_timeout(t0);
        let HealthAction::Probe(b) = drain(&mut h).remove(0) else {
            panic!()
        };
        assert!(h.on_response(&b));
        assert!(!h.on_response("z9hG4bKsomeoneelse"));
        // Two probes go unanswered.
        let mut t;
        for _ in 0..2 {
            t = h.poll_timeout().unwrap();
            h.handle_timeout(t);
            t += PROBE_TIMEOUT;
            h.handle_timeout(t);
        }
        assert!(!h.is_up());
        assert!(drain(&mut h).contains(&HealthAction::Down("no answer to OPTIONS")));
        // Probed every second while down; an answer brings it back.
        let t = h.poll_timeout().unwrap();
        assert!(t <= t0 + Duration::from_secs(20));
        h.handle_timeout(t);
        let probes: Vec<_> = drain(&mut h);
        let Some(HealthAction::Probe(b)) = probes.last().cloned() else {
            panic!("{probes:?}")
        };
        h.on_response(&b);
        assert!(h.is_up());
        assert_eq!(drain(&mut h), vec![HealthAction::Up]);
    }

    #[test]
    fn a_refused_connection_is_down_at_once() {
        let t0 = Instant::now();
        let mut h = UpstreamHealth::new(t0, Duration::from_secs(5));
        h.unreachable("TCP connection refused");
        assert!(!h.is_up());
        assert_eq!(
            drain(&mut h),
            vec![HealthAction::Down("TCP connection refused")]
        );
        h.alive();
        assert!(h.is_up());
    }
}
