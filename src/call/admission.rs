//! Can a new withheld call still be screened in time? With `when_unscreened = "503"` a call
//! that cannot is refused before it is answered, so a dispatcher in front of several
//! scamscreen nodes fails over to another (answering first and then failing open would
//! leave the caller unscreened on a busy node while an idle one waits).
//!
//! Looking at the speech model's queue alone is not enough: a flood of withheld calls
//! starts with an empty queue (every caller is still listening to the greeting) and fills
//! it seconds later, all at once. So the calls being screened count too: each will need
//! one transcription within about one listening window. And calls that arrive together
//! (a burst) finish speaking together: their transcriptions are asked for at about the same
//! moment, so those that began within one deadline of each other must all fit into one
//! deadline. This is conservative by design (with tiny.en at 350 ms and a 3 s deadline, four
//! calls per 3 s per worker): a refused call goes to another node, an admitted one that
//! misses its deadline rings through unscreened.

use crate::asr::AsrCapacity;
use std::time::Duration;

/// The share of the model's time that screening may plan to use; the rest absorbs the
/// partial looks, the second passes and the bunching of calls.
const PLANNED_SHARE: f64 = 0.8;
/// The share of one deadline a burst may plan to use: the transcriptions are asked for only
/// after the end of speech is detected (part of the deadline is gone), the model runs slower
/// while the burst's media flows, and the first calls' speed is still a guess.
const BURST_SHARE: f64 = 0.5;

/// Why a new call cannot be screened in time, or `None` when it can.
///
/// - the queue is full;
/// - the queued work alone already takes longer than `timeout` (the screening deadline);
/// - the calls being screened (`undecided`, each needing about one transcription of
///   `cap.typical` within one listening `window`) and this one would take more than
///   [`PLANNED_SHARE`] of what the workers can do in that window;
/// - the calls being screened that began less than `timeout` ago (`recent`, a burst that
///   will ask at about the same moment) and this one would take more than [`BURST_SHARE`]
///   of what the workers can do within one deadline.
pub fn saturated(
    cap: AsrCapacity,
    undecided: usize,
    recent: usize,
    timeout: Duration,
    window: Duration,
) -> Option<&'static str> {
    if cap.queue_free == 0 {
        return Some("speech model queue full");
    }
    let workers = cap.workers.max(1) as f64;
    let typical = cap.typical.as_secs_f64();
    let queued = cap.in_flight as f64 / workers * typical + typical;
    if queued > timeout.as_secs_f64() {
        return Some("speech model cannot meet the deadline");
    }
    let demand = (undecided + 1) as f64 * typical;
    if demand > window.as_secs_f64() * workers * PLANNED_SHARE {
        return Some("speech model fully planned");
    }
    let burst = (recent + 1) as f64 * typical;
    if burst > timeout.as_secs_f64() * workers * BURST_SHARE {
        return Some("too many calls at once for the speech model");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(typical_ms: u64, in_flight: usize, queue_free: usize) -> AsrCapacity {
        AsrCapacity {
            typical: Duration::from_millis(typical_ms),
            workers: 1,
            in_flight,
            queue_free,
        }
    }

    const TIMEOUT: Duration = Duration::from_millis(3000);
    const WINDOW: Duration = Duration::from_secs(6);

    #[test]
    fn an_idle_model_takes_calls() {
        assert_eq!(saturated(cap(350, 0, 16), 0, 0, TIMEOUT, WINDOW), None);
        assert_eq!(saturated(cap(350, 2, 14), 5, 0, TIMEOUT, WINDOW), None);
    }

    #[test]
    fn a_full_queue_or_a_long_wait_refuses() {
        assert!(saturated(cap(350, 16, 0), 0, 0, TIMEOUT, WINDOW).is_some());
        // 9 jobs ahead at 350 ms: 3.15 s + its own > 3 s.
        assert!(saturated(cap(350, 9, 7), 0, 0, TIMEOUT, WINDOW).is_some());
    }

    #[test]
    fn a_flood_is_refused_before_the_queue_fills() {
        // 6 s × 0.8 / 350 ms ≈ 13.7 calls: the 14th is the first refused.
        assert_eq!(saturated(cap(350, 0, 16), 12, 0, TIMEOUT, WINDOW), None);
        assert!(saturated(cap(350, 0, 16), 13, 0, TIMEOUT, WINDOW).is_some());
        // A slower model (a busy box) plans fewer.
        assert!(saturated(cap(900, 0, 16), 5, 0, TIMEOUT, WINDOW).is_some());
        // Two workers, twice as many.
        let two = AsrCapacity {
            workers: 2,
            ..cap(350, 0, 16)
        };
        assert_eq!(saturated(two, 26, 0, TIMEOUT, WINDOW), None);
    }

    #[test]
    fn a_burst_gets_what_one_deadline_can_screen() {
        // 3 s × 0.5 / 350 ms ≈ 4.3: four calls begun together fit, the fifth does not.
        assert_eq!(saturated(cap(350, 0, 16), 3, 3, TIMEOUT, WINDOW), None);
        assert!(saturated(cap(350, 0, 16), 4, 4, TIMEOUT, WINDOW).is_some());
        // Calls begun earlier count only against the listening window.
        assert_eq!(saturated(cap(350, 0, 16), 10, 0, TIMEOUT, WINDOW), None);
    }
}
