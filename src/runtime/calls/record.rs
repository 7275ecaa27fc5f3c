//! A finished call: its log line and its stored record.

use crate::call::{CallRecordDraft, ScreeningAction};
use crate::store::{CallRecord, RuleHit, VoiceMessage};
use std::time::Duration;
use tracing::{debug, info, info_span, warn};

/// One line per finished call; unscreened calls at warn (they rang through, or were
/// diverted, without a verdict).
pub(super) fn log_finished(id: u64, record: &CallRecordDraft) {
    let span = info_span!("call", call = id);
    let r = record.result.as_ref();
    let action = r.map(|r| r.action.as_str()).unwrap_or("-");
    let score = r.map(|r| r.score).unwrap_or(0.0);
    let reason = r.map(|r| r.reason.as_str()).unwrap_or("");
    let ttv = record.time_to_verdict.map(|d| d.as_millis() as u64);
    let listen_ms = record.listen.map(|d| d.as_millis() as u64);
    span.in_scope(|| {
        if r.is_some_and(|r| r.action == ScreeningAction::Unscreened) {
            let late = record.afterwards.as_ref().map(|a| a.action.as_str());
            warn!(outcome = ?record.outcome, action, reason, afterwards = late, listen_ms, "call finished unscreened");
        } else {
            info!(outcome = ?record.outcome, action, score, reason, time_to_verdict_ms = ttv, listen_ms, message = record.message.is_some(), "call finished");
        }
        if let Some(r) = r {
            debug!(transcript = %r.transcript, "transcript");
        }
    });
}

/// The stored row of a finished call. An unscreened call keeps its action; the transcript,
/// score and reasons made afterwards (when they came in time) fill the rest.
pub(super) fn call_record(
    d: &CallRecordDraft,
    withheld_reason: &str,
    started: std::time::SystemTime,
    lang: Option<&str>,
) -> CallRecord {
    let r = d.result.as_ref();
    let heard = d.afterwards.as_ref().or(r);
    let ms = |x: Option<Duration>| x.map(|d| d.as_millis() as u64);
    let message = d.message.as_ref().map(|pcm| VoiceMessage {
        pcm_8k: pcm.clone(),
    });
    CallRecord {
        call_id: d.call_id.clone(),
        started_at_ms: crate::store::unix_ms(started),
        withheld_reason: withheld_reason.to_string(),
        transcript: heard.map(|r| r.transcript.clone()).unwrap_or_default(),
        language: lang.unwrap_or("en").to_string(),
        score: heard.map(|r| r.score).unwrap_or(0.0),
        action: r
            .map(|r| r.action.as_str().to_string())
            .unwrap_or_else(|| "caller_hung_up".to_string()),
        reasons: heard
            .map(|r| r.reasons.iter().map(RuleHit::from).collect())
            .unwrap_or_default(),
        warning: r.and_then(|r| r.warning.clone()),
        time_to_verdict_ms: ms(d.time_to_verdict),
        listen_ms: ms(d.listen).unwrap_or(0),
        screening_ms: ms(d.screening).unwrap_or(0),
        total_ms: Some(d.total.as_millis() as u64),
        outcome: format!("{:?}", d.outcome).to_lowercase(),
        message_ms: message.as_ref().map(VoiceMessage::duration_ms),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::{CallOutcome, ScreeningResult};

    fn draft(result: Option<ScreeningResult>) -> CallRecordDraft {
        let verdict = result.is_some();
        CallRecordDraft {
            call_id: "c1".into(),
            result,
            outcome: CallOutcome::Connected,
            time_to_verdict: verdict.then(|| Duration::from_millis(400)),
            listen: Some(Duration::from_millis(4000)),
            screening: verdict.then(|| Duration::from_millis(9400)),
            total: Duration::from_secs(30),
            message: None,
            afterwards: None,
        }
    }

    #[test]
    fn record_times_and_actions() {
        let allow = ScreeningResult {
            action: ScreeningAction::Allow,
            score: 0.1,
            transcript: "hello".into(),
            reason: "no scam signals".into(),
            warning: None,
            reasons: Vec::new(),
            more_speech: false,
        };
        let now = std::time::SystemTime::now();
        let r = call_record(&draft(Some(allow)), "Privacy: id", now, Some("en"));
        assert_eq!(r.action, "allow");
        assert_eq!(r.listen_ms, 4000);
        assert_eq!(r.time_to_verdict_ms, Some(400));
        // Answer → verdict, greeting included (not just listening + transcription).
        assert_eq!(r.screening_ms, 9400);
        let r = call_record(&draft(None), "Privacy: id", now, None);
        assert_eq!(r.action, "caller_hung_up");
        assert_eq!(r.screening_ms, 0);
        assert_eq!(r.transcript, "");
    }
}
