//! Listening to the caller as long as the evidence needs: turns, partial looks, the
//! extension past `listen`, the re-prompt for silent callers, the follow-up question, and
//! the transcription jobs that carry it all.
//!
//! ```text
//!  greeting ─▶ turn ── end of speech ─────────────────────────────▶ Full job ─▶ verdict
//!               │  ├─ nothing heard by `no_speech` ─▶ re-prompt ─▶ turn (once) ─▶ `silent`
//!               │  ├─ partial look says divert ──────────────────▶ verdict (early divert)
//!               │  └─ `listen` reached, caller still talking:
//!               │       verdict clear (latest partial, or a Checkpoint job) ─▶ verdict
//!               │       else keep listening: end of speech, a clear partial, or `max_listen`
//!               └─ Full verdict still open and `follow_up` ─▶ question ─▶ turn ─▶ Full over both
//! ```
//!
//! "Clear" is a divert, or the detector's `more_speech_could_change` being false with
//! legitimacy cues or over [`NO_SIGNAL_WORDS`] words (a short "no scam signals" may be the
//! recogniser garbling the claim). A recorded scam message says who it claims to be first
//! and what it wants later, so a claim without a request keeps the call listening up to
//! `max_listen`, while a caller who stops talking is screened at once on what they said.
//!
//! Every job's audio is the caller's turns joined with a short silence; the job remembers
//! where each turn began in the call, so each rule hit's `at_ms` becomes time in the call
//! (ms from answering it).
//!
//! A transcription that fails or misses `screening_timeout` makes the call `unscreened`;
//! the audio is then transcribed again without a deadline (`JobKind::Afterwards`), so the
//! record still gets its transcript and score.

use super::io::{CallAction, JobKind, Prompt, Stage};
use super::stage::CallSession;
use super::verdict::{Action, AsrFailure, ScreeningResult};
use crate::media::tap::{AudioFrame, ListenLimits, SpeechBuffer, SpeechState, SAMPLE_RATE};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Speech (voiced ms) before the first partial look at what the caller said, and between
/// looks.
pub const PARTIAL_FIRST_MS: u32 = 3_000;
pub const PARTIAL_STEP_MS: u32 = 2_000;
/// Silence put between two turns in one job.
const TURN_GAP_MS: u64 = 400;
/// How long a finished call's record waits for the afterwards transcript.
pub const AFTERWARDS_WAIT: Duration = Duration::from_secs(120);

/// One stretch of the caller talking: after the greeting, the re-prompt, or the follow-up.
struct Turn {
    /// Time in the call (ms from the answer) at which the turn began.
    call_ms: u64,
    buffer: SpeechBuffer,
    no_speech_at: Instant,
    window_at: Instant,
    max_at: Instant,
    /// `listen` has passed with the caller still talking.
    past_window: bool,
}

/// A transcription in flight.
struct Job {
    id: u64,
    kind: JobKind,
    /// (ms into the job's audio, ms in the call) where each turn begins.
    pieces: Vec<(u64, u64)>,
}

/// The listening state of one call.
#[derive(Default)]
pub(super) struct Listener {
    turn: Option<Turn>,
    /// Earlier turns with speech: their audio and where they began in the call (ms).
    earlier: Vec<(Vec<i16>, u64)>,
    jobs: Vec<Job>,
    next_job: u64,
    next_partial_ms: u32,
    /// The newest partial or checkpoint verdict of this turn.
    latest: Option<ScreeningResult>,
    /// `listen` passed while a partial look was running: it serves as the checkpoint.
    checkpoint_wanted: bool,
    reprompted: bool,
    followed_up: bool,
    /// The first pass's full verdict while the second pass runs.
    first: Option<ScreeningResult>,
    /// The second pass was used (once per call).
    second_used: bool,
}

impl Listener {
    fn in_flight(&self, kind: JobKind) -> bool {
        self.jobs.iter().any(|j| j.kind == kind)
    }

    pub(super) fn afterwards_pending(&self) -> bool {
        self.in_flight(JobKind::Afterwards)
    }

    /// Cancel every job but the afterwards one (the record still wants that).
    pub(super) fn cancel_all(&mut self, actions: &mut VecDeque<CallAction>) {
        self.cancel(actions, |k| k != JobKind::Afterwards);
    }

    pub(super) fn drop_afterwards(&mut self, actions: &mut VecDeque<CallAction>) {
        self.cancel(actions, |k| k == JobKind::Afterwards);
    }

    fn cancel(&mut self, actions: &mut VecDeque<CallAction>, which: impl Fn(JobKind) -> bool) {
        self.jobs.retain(|j| {
            if which(j.kind) {
                actions.push_back(CallAction::CancelTranscription(j.id));
                false
            } else {
                true
            }
        });
    }
}

/// Words of transcript after which "no scam signals" ends the listening of a caller who is
/// still talking past `listen`. Fewer, and the detector's "no signals" may only mean the
/// recogniser garbled the claim (tiny.en hears "fraud prevention team" as something else):
/// a caller talking on without a pause is worth hearing to the point.
pub const NO_SIGNAL_WORDS: usize = 40;

/// Is the verdict clear enough to stop a caller who is still talking past `listen`? A
/// divert, a verdict the detector calls final because of legitimacy cues, or "no scam
/// signals" over enough words.
fn clear_while_talking(r: &ScreeningResult) -> bool {
    if r.action == Action::Divert {
        return true;
    }
    if r.more_speech {
        return false;
    }
    let cues = r.reasons.iter().any(|h| h.weight < 0.0);
    cues || r.transcript.split_whitespace().count() >= NO_SIGNAL_WORDS
}

fn ms_of(samples: usize) -> u64 {
    samples as u64 * 1000 / u64::from(SAMPLE_RATE)
}

fn samples_of(ms: u64) -> usize {
    (ms * u64::from(SAMPLE_RATE) / 1000) as usize
}

impl CallSession {
    /// The greeting (or a question) has played: the caller's turn.
    pub(super) fn start_turn(&mut self, now: Instant) {
        self.stage = Stage::Listening;
        self.listen_started.get_or_insert(now);
        let cfg = &self.cfg;
        let max_listen = cfg.max_listen.max(cfg.listen);
        // The buffer holds a little more than the longest turn: the wall clock ends it.
        let limits = ListenLimits::new((max_listen.as_millis() as u32).saturating_add(1000));
        let l = &mut self.listener;
        l.turn = Some(Turn {
            call_ms: now.saturating_duration_since(self.started).as_millis() as u64,
            buffer: SpeechBuffer::new(limits),
            no_speech_at: now + cfg.no_speech.min(cfg.listen),
            window_at: now + cfg.listen,
            max_at: now + max_listen,
            past_window: false,
        });
        l.next_partial_ms = PARTIAL_FIRST_MS;
        l.latest = None;
        l.checkpoint_wanted = false;
    }

    /// When listening needs attention next.
    pub(super) fn listening_deadline(&self) -> Option<Instant> {
        if self.stage != Stage::Listening {
            return None;
        }
        let t = self.listener.turn.as_ref()?;
        let mut d = t.max_at;
        if t.buffer.voiced_ms() == 0 {
            d = d.min(t.no_speech_at);
        }
        if !t.past_window {
            d = d.min(t.window_at);
        }
        Some(d)
    }

    pub(super) fn listening_timeout(&mut self, now: Instant) {
        let Some(t) = self.listener.turn.as_mut() else {
            return;
        };
        if now >= t.max_at {
            self.end_turn(now);
            return;
        }
        let talking = t.buffer.state() == SpeechState::Speaking;
        if t.buffer.voiced_ms() == 0 && now >= t.no_speech_at {
            self.end_turn(now);
            return;
        }
        if t.past_window || now < t.window_at {
            return;
        }
        t.past_window = true;
        if !talking {
            self.end_turn(now);
            return;
        }
        // The caller is still talking at the end of the window: stop only if the verdict
        // is already clear.
        match self.listener.latest.clone() {
            Some(r) if clear_while_talking(&r) => self.stop_with(now, r),
            _ if self.listener.in_flight(JobKind::Partial) => {
                self.listener.checkpoint_wanted = true;
            }
            _ => self.submit(JobKind::Checkpoint),
        }
    }

    pub(super) fn on_caller_audio(&mut self, now: Instant, frame: &AudioFrame) {
        match self.stage {
            Stage::Listening => {}
            Stage::Message => {
                self.message_audio(now, frame);
                return;
            }
            _ => return,
        }
        let Some(t) = self.listener.turn.as_mut() else {
            return;
        };
        match t.buffer.push(frame) {
            SpeechState::EndOfSpeech | SpeechState::Full => self.end_turn(now),
            SpeechState::Speaking => {
                let voiced = t.buffer.voiced_ms();
                let l = &self.listener;
                if self.cfg.early_verdict
                    && voiced >= l.next_partial_ms
                    && !l.in_flight(JobKind::Partial)
                    && !l.in_flight(JobKind::Checkpoint)
                {
                    self.listener.next_partial_ms = voiced + PARTIAL_STEP_MS;
                    self.submit(JobKind::Partial);
                }
            }
            SpeechState::WaitingForSpeech => {}
        }
    }

    /// The caller's turn is over (end of speech, a deadline): screen what was said, or
    /// re-prompt a caller who said nothing.
    fn end_turn(&mut self, now: Instant) {
        let Some(turn) = self.listener.turn.take() else {
            return;
        };
        self.listener.cancel_all(&mut self.actions);
        let heard = turn.buffer.state() != SpeechState::WaitingForSpeech;
        if heard {
            self.listener
                .earlier
                .push((turn.buffer.samples().to_vec(), turn.call_ms));
        }
        if self.listener.earlier.is_empty() {
            self.no_speech(now);
            return;
        }
        self.stage = Stage::Screening;
        self.speech_ended = Some(now);
        self.deadline = Some(now + self.cfg.screening_timeout);
        self.submit(JobKind::Full);
    }

    /// Nothing heard: the re-prompt once, then the verdict `silent`.
    fn no_speech(&mut self, now: Instant) {
        self.listener.earlier.clear();
        if self.listener.reprompted {
            let r = ScreeningResult::without_transcript(
                Action::Silent,
                "no speech after the greeting and the re-prompt".into(),
            );
            self.decide(now, r);
            return;
        }
        self.listener.reprompted = true;
        self.ask(Prompt::Reprompt);
    }

    /// Play a question to the caller; their next turn starts when it has played.
    fn ask(&mut self, prompt: Prompt) {
        self.stage = Stage::Prompting;
        self.deadline = None;
        self.speech_ended = None;
        self.actions.push_back(CallAction::PlayPrompt {
            leg: super::io::Leg::A,
            prompt,
        });
    }

    /// A partial or checkpoint verdict is clear: stop listening and act on it.
    fn stop_with(&mut self, now: Instant, r: ScreeningResult) {
        if let Some(turn) = self.listener.turn.take() {
            self.listener
                .earlier
                .push((turn.buffer.samples().to_vec(), turn.call_ms));
        }
        self.listener.cancel_all(&mut self.actions);
        self.speech_ended = Some(now);
        self.decide(now, r);
    }

    /// Stop listening at once (bypass code): the turn's jobs are cancelled.
    pub(super) fn stop_listening(&mut self) {
        self.listener.turn = None;
        self.listener.cancel_all(&mut self.actions);
    }

    /// Queue a transcription of everything the caller said so far.
    fn submit(&mut self, kind: JobKind) {
        let l = &mut self.listener;
        let mut pcm: Vec<i16> = Vec::new();
        let mut pieces = Vec::new();
        let current = l.turn.as_ref().map(|t| (t.buffer.samples(), t.call_ms));
        let turns = l
            .earlier
            .iter()
            .map(|(s, ms)| (s.as_slice(), *ms))
            .chain(current);
        for (samples, call_ms) in turns {
            if !pcm.is_empty() {
                pcm.resize(pcm.len() + samples_of(TURN_GAP_MS), 0);
            }
            pieces.push((ms_of(pcm.len()), call_ms));
            pcm.extend_from_slice(samples);
        }
        l.next_job += 1;
        let id = l.next_job;
        l.jobs.push(Job { id, kind, pieces });
        // The second pass shares the first's deadline; the others get the runtime's.
        let deadline = (kind == JobKind::Second).then_some(self.deadline).flatten();
        self.actions.push_back(CallAction::Transcribe {
            job: id,
            kind,
            pcm,
            deadline,
        });
    }

    pub(super) fn on_transcribed(
        &mut self,
        now: Instant,
        job: u64,
        result: Result<ScreeningResult, AsrFailure>,
    ) {
        let Some(i) = self.listener.jobs.iter().position(|j| j.id == job) else {
            return; // cancelled, or the call moved on
        };
        let job = self.listener.jobs.remove(i);
        let result = result.map(|mut r| {
            for hit in &mut r.reasons {
                hit.at_ms = call_time(&job.pieces, hit.at_ms);
            }
            r
        });
        match (job.kind, result) {
            (JobKind::Partial, Ok(r)) if self.stage == Stage::Listening => {
                let past_window = self.listener.turn.as_ref().is_some_and(|t| t.past_window);
                let wanted = std::mem::take(&mut self.listener.checkpoint_wanted);
                if r.action == Action::Divert
                    || ((past_window || wanted) && clear_while_talking(&r))
                {
                    self.stop_with(now, r);
                } else {
                    self.listener.latest = Some(r);
                }
            }
            (JobKind::Partial, Err(_))
                if self.stage == Stage::Listening && self.listener.checkpoint_wanted =>
            {
                // The look meant to serve as the checkpoint failed: ask for a real one.
                self.listener.checkpoint_wanted = false;
                self.submit(JobKind::Checkpoint);
            }
            (JobKind::Checkpoint, Ok(r)) if self.stage == Stage::Listening => {
                if clear_while_talking(&r) {
                    self.stop_with(now, r);
                } else {
                    self.listener.latest = Some(r);
                }
            }
            (JobKind::Full, Ok(r)) if self.stage == Stage::Screening => self.full_verdict(now, r),
            (JobKind::Second, r) if self.stage == Stage::Screening => {
                let first = self.listener.first.take();
                match (r, first) {
                    (Ok(second), _) if !second.transcript.trim().is_empty() => {
                        self.after_verdict(now, second)
                    }
                    (_, Some(first)) => self.after_verdict(now, first),
                    (_, None) => {
                        self.unscreened(now, AsrFailure::Failed("no first verdict".into()))
                    }
                }
            }
            (JobKind::Full, Err(e)) if self.stage == Stage::Screening => self.unscreened(now, e),
            (JobKind::Afterwards, r) => {
                self.afterwards = r.ok();
                self.afterwards_until = None;
                self.maybe_finish(now);
            }
            _ => {}
        }
    }

    fn full_verdict(&mut self, now: Instant, r: ScreeningResult) {
        if r.transcript.trim().is_empty() {
            // Voice-like sound but no words (music, a tone, a cough): as if nothing was said.
            self.no_speech(now);
            return;
        }
        if self.cfg.second_pass
            && !self.listener.second_used
            && open_verdict(&r)
            && self.deadline.is_some_and(|d| d >= now + SECOND_PASS_MIN)
        {
            self.listener.second_used = true;
            self.listener.first = Some(r);
            self.submit(JobKind::Second);
            return;
        }
        self.after_verdict(now, r);
    }

    /// A full verdict (first or second pass): one follow-up question if it is open and
    /// configured, else act on it.
    fn after_verdict(&mut self, now: Instant, r: ScreeningResult) {
        let l = &self.listener;
        if r.more_speech && r.action != Action::Divert && self.cfg.follow_up && !l.followed_up {
            self.listener.followed_up = true;
            self.ask(Prompt::FollowUp);
            return;
        }
        self.decide(now, r);
    }

    pub(super) fn screening_timed_out(&mut self, now: Instant) {
        if let Some(first) = self.listener.first.take() {
            // The second pass is late: the first pass's verdict stands.
            self.listener
                .cancel(&mut self.actions, |k| k == JobKind::Second);
            self.after_verdict(now, first);
            return;
        }
        self.listener
            .cancel(&mut self.actions, |k| k == JobKind::Full);
        self.unscreened(now, AsrFailure::TimedOut);
    }

    /// No verdict: `unscreened` (fail_open decides), and the audio is transcribed again
    /// without a deadline for the record.
    fn unscreened(&mut self, now: Instant, why: AsrFailure) {
        let r =
            ScreeningResult::without_transcript(Action::Unscreened, format!("unscreened: {why}"));
        if matches!(
            why,
            AsrFailure::TimedOut | AsrFailure::Overloaded | AsrFailure::CannotMakeIt
        ) && !self.listener.earlier.is_empty()
        {
            self.submit(JobKind::Afterwards);
            self.afterwards_until = Some(now + AFTERWARDS_WAIT);
        }
        self.decide(now, r);
    }
}

/// Least time left before the screening deadline for a second pass to be worth starting
/// (base on 2 cores: ~1 s for a 10 s turn; the recogniser itself refuses at once when its
/// recent speed says it cannot make it).
pub const SECOND_PASS_MIN: Duration = Duration::from_millis(1_000);

/// A full verdict worth a second, better hearing: not a divert, and either a warning (the
/// bigger model may confirm it as a divert or clear it) or more speech could change it
/// (few words, a claim without a request: often what a small model misheard).
fn open_verdict(r: &ScreeningResult) -> bool {
    r.action != Action::Divert && (r.action == Action::Warn || r.more_speech)
}

/// Milliseconds into a job's audio → milliseconds in the call.
fn call_time(pieces: &[(u64, u64)], at_ms: u64) -> u64 {
    match pieces.iter().rev().find(|(start, _)| *start <= at_ms) {
        Some((start, call_ms)) => call_ms + (at_ms - start),
        None => at_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::call_time;

    #[test]
    fn hit_times_map_through_the_turns() {
        let pieces = [(0, 3_000), (5_400, 14_000)];
        assert_eq!(call_time(&pieces, 0), 3_000);
        assert_eq!(call_time(&pieces, 4_000), 7_000);
        assert_eq!(call_time(&pieces, 5_400), 14_000);
        assert_eq!(call_time(&pieces, 6_000), 14_600);
        assert_eq!(call_time(&[], 250), 250);
    }
}
