//! Notifications (`[notify] webhook`): a JSON event is POSTed for every screened call whose
//! verdict was warn, divert or silent, so a home user's phone or a chat bot hears about it.
//!
//! Never in the way of a call: events go into a bounded queue (full: dropped and counted,
//! with a warning) and one thread sends them with ureq (a small blocking HTTP client; rustls
//! for https), each request bounded to [`TIMEOUT`] and tried [`ATTEMPTS`] times with a
//! growing pause. A dead receiver costs that thread's time only.

use crate::store::CallRecord;
use crossbeam_channel::{bounded, Sender, TrySendError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Events waiting to be sent at most.
pub const QUEUE: usize = 256;
/// Time for one request (connect, send, answer).
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// Tries per event, and the pause before each retry.
pub const ATTEMPTS: usize = 3;
const PAUSES: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(5)];

/// The verdicts that are worth telling someone about.
pub fn worth_telling(action: &str) -> bool {
    matches!(action, "warn" | "divert" | "silent")
}

/// The event's JSON: what the call was, without the transcript when `redact`.
pub fn event(r: &CallRecord, redact: bool) -> serde_json::Value {
    let reasons: Vec<serde_json::Value> = r
        .reasons
        .iter()
        .map(|h| {
            let mut v = serde_json::json!({
                "rule": h.rule,
                "category": h.category,
                "explanation": h.explanation,
                "at_ms": h.at_ms,
            });
            if !redact {
                v["matched"] = serde_json::json!(h.matched);
            }
            v
        })
        .collect();
    let mut v = serde_json::json!({
        "event": "screened_call",
        "call_id": r.call_id,
        "started_at_ms": r.started_at_ms,
        "verdict": r.action,
        "score": r.score,
        "outcome": r.outcome,
        "reasons": reasons,
    });
    if !redact {
        v["transcript"] = serde_json::json!(r.transcript);
    }
    v
}

/// Counters of the notifier.
#[derive(Debug, Default)]
pub struct NotifyCounters {
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
}

/// The sending side: cheap to call from the call layer.
pub struct Notifier {
    tx: Sender<serde_json::Value>,
    redact: bool,
    pub counters: Arc<NotifyCounters>,
}

impl Notifier {
    /// Start the sending thread for `url` (`http://` or `https://`).
    pub fn start(url: String, redact: bool) -> std::io::Result<Notifier> {
        let (tx, rx) = bounded::<serde_json::Value>(QUEUE);
        let counters = Arc::new(NotifyCounters::default());
        let c = counters.clone();
        std::thread::Builder::new()
            .name("scamscreen-notify".into())
            .spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .timeout_global(Some(TIMEOUT))
                    .build()
                    .into();
                for ev in rx {
                    let mut ok = false;
                    for attempt in 0..ATTEMPTS {
                        if attempt > 0 {
                            std::thread::sleep(PAUSES[(attempt - 1).min(PAUSES.len() - 1)]);
                        }
                        match agent.post(&url).send_json(&ev) {
                            Ok(_) => {
                                ok = true;
                                break;
                            }
                            Err(e) => {
                                tracing::debug!(error = %e, attempt, "webhook failed");
                            }
                        }
                    }
                    if ok {
                        c.sent.fetch_add(1, Ordering::Relaxed);
                    } else {
                        c.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            attempts = ATTEMPTS,
                            "webhook receiver did not take the event; dropped"
                        );
                    }
                }
            })?;
        Ok(Notifier {
            tx,
            redact,
            counters,
        })
    }

    /// Tell the receiver about this call if its verdict is worth it. Never blocks.
    pub fn call_finished(&self, r: &CallRecord) {
        if !worth_telling(&r.action) {
            return;
        }
        match self.tx.try_send(event(r, self.redact)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                let n = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n == 1 || n.is_power_of_two() {
                    tracing::warn!(dropped = n, "webhook queue full: events dropped");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_say_what_happened_and_redact_words() {
        let r = CallRecord {
            call_id: "c1".into(),
            action: "divert".into(),
            transcript: "this is microsoft support".into(),
            reasons: vec![crate::store::RuleHit {
                rule: "tech-support".into(),
                category: "impersonation".into(),
                weight: 1.0,
                explanation: "claims to be Microsoft".into(),
                matched: "microsoft support".into(),
                at_ms: 5900,
            }],
            ..CallRecord::default()
        };
        let v = event(&r, false);
        assert_eq!(v["verdict"], "divert");
        assert_eq!(v["transcript"], "this is microsoft support");
        assert_eq!(v["reasons"][0]["matched"], "microsoft support");
        let v = event(&r, true);
        assert!(v.get("transcript").is_none());
        assert!(v["reasons"][0].get("matched").is_none());
        assert!(worth_telling("warn") && worth_telling("silent") && !worth_telling("allow"));
    }
}
