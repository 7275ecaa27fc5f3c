//! A call's transcription jobs: the right model for the call's language, deadlines, a
//! blocking task that waits for the words and scores them with the detector.

use super::{CallEvent, CallManager};
use crate::asr::{AsrError, AsrRequest};
use crate::call::{AsrFailure, JobKind, ScreeningAction, ScreeningResult, AFTERWARDS_WAIT};
use crate::detect::score::Action as DetectAction;
use crate::detect::Detector;
use std::time::Instant;

impl CallManager {
    /// Queue a transcription for a call: the speech model resamples and transcribes on its
    /// own threads; a blocking task waits (bounded) and scores. A partial look is only run
    /// on an idle model, so it never delays a full screening.
    pub(super) fn transcribe(
        &mut self,
        id: u64,
        job: u64,
        kind: JobKind,
        pcm: Vec<i16>,
        deadline: Option<Instant>,
    ) -> Option<AsrFailure> {
        let res = &self.res;
        let call_lang = self.calls.get(&id).map_or("en", |c| c.language.as_str());
        // The second pass: the bigger model, in the call's language. Not `auto`: whisper.cpp
        // detects the language by encoding a full 30 s window whatever the clip's length,
        // which made base's second pass 4.5 s instead of 0.8 s on 2 cores (BENCHMARKS.md),
        // past any screening deadline; a line that expects German callers says so
        // (`[[screening.called]] language = "de"`).
        let (transcriber, asr_lang) = if kind == JobKind::Second {
            match &res.second {
                Some(t) => (t, call_lang),
                None => return Some(AsrFailure::Failed("no second model".into())),
            }
        } else {
            (res.transcriber_for(call_lang), call_lang)
        };
        if kind == JobKind::Partial && transcriber.in_flight() > 0 {
            return Some(AsrFailure::Skipped);
        }
        let now = Instant::now();
        let (deadline, wait) = match (kind, deadline) {
            (JobKind::Afterwards, _) => (None, AFTERWARDS_WAIT),
            (_, Some(d)) => (Some(d), d.saturating_duration_since(now)),
            (_, None) => (
                Some(now + res.call.screening_timeout),
                res.call.screening_timeout,
            ),
        };
        let request = AsrRequest::telephone(pcm, deadline).in_language(asr_lang);
        let call_lang = call_lang.to_string();
        let pending = match transcriber.submit(request) {
            Ok(p) => p,
            Err(e) => return Some(asr_failure(&e)),
        };
        if let Some(c) = self.calls.get_mut(&id) {
            c.jobs.insert(job, pending.cancel_token());
        }
        let (events, detector) = (self.events.clone(), res.detector.clone());
        tokio::task::spawn_blocking(move || {
            let result = match pending.wait_timeout(wait) {
                Ok(t) => {
                    // Rules of the language heard (a German caller on an English line is
                    // scored with the German rules once the bigger model has heard German).
                    let lang = if crate::call::language::SUPPORTED.contains(&t.language.as_str()) {
                        t.language.clone()
                    } else {
                        call_lang
                    };
                    score(&detector, &t, Some(&lang)).map_err(AsrFailure::Failed)
                }
                Err(e) => Err(asr_failure(&e)),
            };
            let _ = events.blocking_send(CallEvent::Transcribed {
                call: id,
                job,
                result,
            });
        });
        None
    }
}

pub(super) fn asr_failure(e: &AsrError) -> AsrFailure {
    match e {
        AsrError::QueueFull => AsrFailure::Overloaded,
        AsrError::TimedOut => AsrFailure::TimedOut,
        AsrError::CannotMakeIt { .. } => AsrFailure::CannotMakeIt,
        other => AsrFailure::Failed(other.to_string()),
    }
}

/// Score a transcript: the verdict the call acts on. Scored from its timed segments, so every
/// reason carries the time in the call at which it was said (ms from the start of listening).
pub fn score(
    detector: &Detector,
    t: &crate::asr::Transcript,
    lang: Option<&str>,
) -> Result<ScreeningResult, String> {
    let transcript = t.text.as_str();
    let v = detector
        .score_segments(&t.segments, lang)
        .map_err(|e| format!("scoring failed: {e}"))?;
    let action = match v.action {
        DetectAction::Allow => ScreeningAction::Allow,
        DetectAction::Warn => ScreeningAction::Warn,
        DetectAction::Divert => ScreeningAction::Divert,
    };
    let reason = if v.reasons.is_empty() {
        "no scam signals".to_string()
    } else {
        v.reasons
            .iter()
            .map(|r| r.rule.as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    Ok(ScreeningResult {
        action,
        score: v.score,
        transcript: transcript.to_string(),
        reason,
        warning: (!v.warning.is_empty()).then(|| v.warning.clone()),
        reasons: v.reasons,
        more_speech: v.more_speech_could_change,
    })
}
