//! The whisper.cpp recogniser (the only file that imports whisper-rs).
//!
//! The model is loaded once; `workers` threads each own a whisper state and take jobs from a
//! bounded queue. Submitting never blocks: a full queue is [`AsrError::QueueFull`]. Each job is
//! screened by voice activity first (no speech → empty transcript, no hallucinated "Thank
//! you."), and runs with `audio_ctx` sized to the clip: whisper normally encodes a 30 s window
//! whatever the clip length, which costs about twice the time on short clips; a context
//! tighter than ~15 s makes tiny.en loop or hallucinate, so [`MIN_AUDIO_CTX`] is the floor.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState,
};

use super::cpu::{self, CpuLoad, ThreadPolicy};
use super::vad::VoiceActivity;
use super::{
    AsrError, AsrRequest, CancelToken, PendingTranscript, Segment, Transcriber, Transcript,
    ASR_COUNTERS,
};

/// Encoder frames per second of audio (whisper: 1500 frames per 30 s).
const FRAMES_PER_SEC: f64 = 50.0;
/// Smallest encoder context used (frames; 768 = 15.36 s). Measured: tiny.en keeps its text
/// at 768 on 3–10 s clips and degrades below it.
pub const MIN_AUDIO_CTX: i32 = 768;
/// whisper's full window.
const FULL_AUDIO_CTX: i32 = 1500;

/// Decoder prompt for screening calls: the spellings of the names scam callers use. Measured
/// on the corpus through espeak + G.711 (train split): scam recall 62.7% → 66.7% with no more
/// legitimate calls flagged (BENCHMARKS.md).
pub const SCREENING_PROMPT: &str = "Microsoft, Windows, Apple, iCloud, Amazon, PayPal, TeamViewer, AnyDesk, computer, bank account, gift cards, bitcoin, police, IRS, refund.";

/// The same for German calls (multilingual models): the names and words German scam callers
/// use, spelled as the rule pack expects them.
pub const SCREENING_PROMPT_DE: &str = "Microsoft, Windows, Apple, Amazon, PayPal, TeamViewer, AnyDesk, Computer, Bankkonto, Sparkasse, Volksbank, Polizei, Staatsanwaltschaft, Europol, Gutscheinkarten, Bitcoin, Rückerstattung.";

/// The decoder prompt for screening calls in `lang`.
pub fn screening_prompt(lang: &str) -> &'static str {
    match lang.split(['-', '_']).next().unwrap_or(lang) {
        "de" => SCREENING_PROMPT_DE,
        _ => SCREENING_PROMPT,
    }
}

/// Defaults, named once.
pub const DEFAULT_WORKERS: usize = 1;
pub const DEFAULT_QUEUE_DEPTH: usize = 4;

/// How to run the recogniser.
#[derive(Debug, Clone)]
pub struct WhisperConfig {
    pub model: PathBuf,
    /// Parallel transcriptions (each holds a whisper state, ~20–40 MB for tiny.en).
    pub workers: usize,
    /// CPU threads each transcription uses: `auto` (default) picks them per transcription
    /// from the CPU time free right now (see [`super::cpu`]).
    pub threads: ThreadPolicy,
    /// Jobs that may wait for a worker before submissions are refused.
    pub queue_depth: usize,
    /// Spoken language, `"en"` for tiny.en.
    pub language: String,
    /// Beam width; 1 is greedy decoding (the default: fastest, see BENCHMARKS.md).
    pub beam_size: usize,
    /// Text given to the decoder as if it had been said before: biases spelling and
    /// vocabulary (e.g. brand and tool names). Empty for none.
    pub initial_prompt: String,
    /// Per language, a prompt used instead of `initial_prompt` for jobs in that language
    /// (an English prompt pulls a multilingual model towards English).
    pub initial_prompts: Vec<(String, String)>,
}

impl WhisperConfig {
    pub fn new(model: impl Into<PathBuf>) -> Self {
        WhisperConfig {
            model: model.into(),
            workers: DEFAULT_WORKERS,
            threads: ThreadPolicy::auto(),
            queue_depth: DEFAULT_QUEUE_DEPTH,
            language: "en".into(),
            beam_size: 1,
            initial_prompt: String::new(),
            initial_prompts: Vec::new(),
        }
    }

    /// Screening calls: the decoder prompts of every language.
    pub fn for_screening(mut self) -> Self {
        self.initial_prompt = SCREENING_PROMPT.to_string();
        self.initial_prompts = ["en", "de"]
            .iter()
            .map(|l| (l.to_string(), screening_prompt(l).to_string()))
            .collect();
        self
    }
}

struct Job {
    request: AsrRequest,
    deadline: Option<Instant>,
    cancel: CancelToken,
    reply: tokio::sync::oneshot::Sender<Result<Transcript, AsrError>>,
    /// Counts the job in [`Transcriber::in_flight`] until it is dropped (done or discarded).
    _slot: Slot,
}

/// One unit of [`WhisperPool`]'s in-flight count, given back on drop.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(count: &Arc<AtomicUsize>) -> Slot {
        count.fetch_add(1, Ordering::SeqCst);
        Slot(count.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A pool of whisper workers behind a bounded queue.
pub struct WhisperPool {
    tx: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
    in_flight: Arc<AtomicUsize>,
    /// What the workers learned about their speed (ms per transcription of speech).
    speed: Arc<Speed>,
    /// The CPU sampler behind `threads = auto` (kept alive by the pool).
    load: Option<Arc<CpuLoad>>,
}

impl std::fmt::Debug for WhisperPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhisperPool")
            .field("workers", &self.workers.len())
            .finish()
    }
}

/// Encoder context for a clip of `samples` at 16 kHz.
pub fn audio_ctx_for(samples: usize) -> i32 {
    let frames = (samples as f64 / 16_000.0 * FRAMES_PER_SEC).ceil() as i32 + 16;
    if frames > FULL_AUDIO_CTX {
        // Longer than one window: whisper slides full 30 s windows.
        return 0;
    }
    frames.clamp(MIN_AUDIO_CTX, FULL_AUDIO_CTX)
}

/// Whether a whisper.cpp ggml model hears other languages than English (its header's
/// vocabulary: the `.en` models have no language tokens).
pub fn model_is_multilingual(model: &Path) -> Result<bool, AsrError> {
    crate::model::ggml::read_hparams(model)
        .map(|h| h.multilingual())
        .map_err(|e| AsrError::ModelLoad {
            path: model.display().to_string(),
            reason: e.to_string(),
        })
}

fn load(model: &Path) -> Result<WhisperContext, AsrError> {
    if !model.is_file() {
        return Err(AsrError::ModelMissing(model.display().to_string()));
    }
    whisper_rs::install_logging_hooks();
    let path = model.to_str().ok_or_else(|| {
        AsrError::ModelMissing(format!("{} (path is not UTF-8)", model.display()))
    })?;
    WhisperContext::new_with_params(path, WhisperContextParameters::default()).map_err(|e| {
        AsrError::ModelLoad {
            path: path.into(),
            reason: format!("{e} (not a whisper.cpp ggml model, or a damaged one)"),
        }
    })
}

impl WhisperPool {
    /// Load the model and start the workers.
    pub fn start(cfg: &WhisperConfig) -> Result<Self, AsrError> {
        let ctx = Arc::new(load(&cfg.model)?);
        let (tx, rx) = crossbeam_channel::bounded::<Job>(cfg.queue_depth);
        let load = match cfg.threads {
            ThreadPolicy::Auto { .. } => Some(cpu::start_sampler()),
            ThreadPolicy::Fixed(_) => None,
        };
        let speed = Arc::new(Speed::new(first_guess_ms(&cfg.model)));
        let mut workers = Vec::new();
        for i in 0..cfg.workers.max(1) {
            let state = ctx
                .create_state()
                .map_err(|e| AsrError::Engine(format!("whisper state: {e}")))?;
            let rx = rx.clone();
            let worker = Worker {
                state,
                threads: cfg.threads,
                load: load.clone(),
                language: cfg.language.clone(),
                beam_size: cfg.beam_size.max(1),
                initial_prompt: cfg.initial_prompt.clone(),
                initial_prompts: cfg.initial_prompts.clone(),
                vad: VoiceActivity::new(16_000),
                speed: speed.clone(),
            };
            let handle = std::thread::Builder::new()
                .name(format!("asr-{i}"))
                .spawn(move || worker.run(rx))
                .map_err(|e| AsrError::Engine(format!("cannot start ASR thread: {e}")))?;
            workers.push(handle);
        }
        Ok(WhisperPool {
            tx: Some(tx),
            workers,
            in_flight: Arc::new(AtomicUsize::new(0)),
            speed,
            load,
        })
    }

    /// Cores free of other processes' work right now (`threads = auto` only).
    pub fn free_cores(&self) -> Option<f64> {
        self.load.as_ref().and_then(|l| l.free_cores())
    }

    /// When a job submitted now would be done, from the jobs ahead of it and the workers'
    /// recent speed. The job being run is counted as half done.
    fn expected_done(&self, now: Instant) -> Instant {
        let typical = self.speed.typical();
        let ahead = self.in_flight.load(Ordering::SeqCst) as f64;
        let waits = (ahead / self.workers.len().max(1) as f64 - 0.5).max(0.0);
        now + typical.mul_f64(waits) + typical
    }
}

impl Transcriber for WhisperPool {
    fn submit(&self, request: AsrRequest) -> Result<PendingTranscript, AsrError> {
        let tx = self.tx.as_ref().ok_or(AsrError::ShutDown)?;
        // Say at once when the deadline cannot be met, rather than at the deadline: the
        // call can act on it seconds earlier, and the model's time goes to calls that can.
        if let Some(deadline) = request.deadline {
            let now = Instant::now();
            let done = self.expected_done(now);
            if done > deadline && !self.speed.stale(now) {
                let e = AsrError::CannotMakeIt {
                    expected_ms: done.saturating_duration_since(now).as_millis() as u64,
                    left_ms: deadline.saturating_duration_since(now).as_millis() as u64,
                };
                ASR_COUNTERS.count::<()>(&Err(e.clone()), 0);
                return Err(e);
            }
        }
        let (reply, rx) = tokio::sync::oneshot::channel();
        let cancel = CancelToken::default();
        let job = Job {
            deadline: request.deadline,
            request,
            cancel: cancel.clone(),
            reply,
            _slot: Slot::take(&self.in_flight),
        };
        match tx.try_send(job) {
            Ok(()) => Ok(PendingTranscript::new(rx, cancel)),
            Err(TrySendError::Full(_)) => {
                ASR_COUNTERS.count::<()>(&Err(AsrError::QueueFull), 0);
                Err(AsrError::QueueFull)
            }
            Err(TrySendError::Disconnected(_)) => Err(AsrError::ShutDown),
        }
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    fn capacity(&self) -> Option<super::AsrCapacity> {
        let tx = self.tx.as_ref()?;
        Some(super::AsrCapacity {
            typical: self.speed.typical(),
            workers: self.workers.len().max(1),
            in_flight: self.in_flight.load(Ordering::SeqCst),
            queue_free: tx
                .capacity()
                .map_or(usize::MAX, |c| c.saturating_sub(tx.len())),
        })
    }
}

impl Drop for WhisperPool {
    fn drop(&mut self) {
        // Closing the queue lets each worker finish its job and exit.
        self.tx.take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

struct Worker {
    state: WhisperState,
    threads: ThreadPolicy,
    load: Option<Arc<CpuLoad>>,
    language: String,
    beam_size: usize,
    initial_prompt: String,
    initial_prompts: Vec<(String, String)>,
    vad: VoiceActivity,
    /// How long a transcription of speech takes here (moving average, shared by the
    /// workers): a job with less time than this left before its deadline is refused.
    speed: Arc<Speed>,
}

/// First guess of the typical transcription time (ms): tiny.en q8_0 on 2 cores, 3–10 s
/// clips (BENCHMARKS.md). Learned from the first jobs on.
const TYPICAL_TRANSCRIPTION_MS: u64 = 350;
/// tiny.en q8_0's size, for scaling the first guess to bigger models (base q8_0, 82 MB, is
/// ~1.8× tiny's time on the same clip: BENCHMARKS.md).
const TINY_Q8_BYTES: u64 = 44_000_000;
/// A speed not confirmed for this long is stale: one job may run to measure it again (else
/// a model once measured slow on a busy box would be refused for good).
const SPEED_STALE: Duration = Duration::from_secs(60);

/// The first guess of the time per transcription for `model`, by its size.
fn first_guess_ms(model: &Path) -> u64 {
    let size = std::fs::metadata(model).map_or(TINY_Q8_BYTES, |m| m.len());
    (TYPICAL_TRANSCRIPTION_MS * size / TINY_Q8_BYTES).max(TYPICAL_TRANSCRIPTION_MS)
}

/// How long a transcription of speech takes on this box now (moving average shared by
/// the workers), and when that was last measured.
#[derive(Debug)]
struct Speed {
    typical_ms: AtomicU64,
    /// When `typical_ms` was last measured, in ms after `epoch`.
    measured_ms: AtomicU64,
    epoch: Instant,
}

impl Speed {
    fn new(first_guess_ms: u64) -> Speed {
        Speed {
            typical_ms: AtomicU64::new(first_guess_ms),
            measured_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn typical(&self) -> Duration {
        Duration::from_millis(self.typical_ms.load(Ordering::Relaxed))
    }

    fn stamp(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.epoch).as_millis() as u64;
        self.measured_ms.store(ms.max(1), Ordering::Relaxed);
    }

    /// A transcription finished in `ms`.
    fn observe(&self, now: Instant, ms: u64) {
        let old = self.typical_ms.load(Ordering::Relaxed);
        self.typical_ms.store((old * 3 + ms) / 4, Ordering::Relaxed);
        self.stamp(now);
    }

    /// A transcription was stopped unfinished after `ms`: it takes longer, by an unknown
    /// amount; a quarter more is assumed, so the next job with as little time is refused
    /// at once instead of being stopped at its deadline again.
    fn at_least(&self, now: Instant, ms: u64) {
        let old = self.typical_ms.load(Ordering::Relaxed);
        self.typical_ms
            .store(old.max(ms + ms / 4), Ordering::Relaxed);
        self.stamp(now);
    }

    /// Measured (not first-guessed) and not for [`SPEED_STALE`].
    fn stale(&self, now: Instant) -> bool {
        let at = self.measured_ms.load(Ordering::Relaxed);
        at != 0
            && now.saturating_duration_since(self.epoch) > Duration::from_millis(at) + SPEED_STALE
    }
}

impl Worker {
    fn run(mut self, rx: Receiver<Job>) {
        while let Ok(job) = rx.recv() {
            let now = Instant::now();
            let typical = self.speed.typical();
            let result = if job.cancel.is_cancelled() {
                Err(AsrError::Cancelled)
            } else if let Some(d) = job
                .deadline
                .filter(|&d| now + typical > d && !self.speed.stale(now))
            {
                Err(AsrError::CannotMakeIt {
                    expected_ms: typical.as_millis() as u64,
                    left_ms: d.saturating_duration_since(now).as_millis() as u64,
                })
            } else {
                let lang = job.request.language.clone();
                let r = job.request.into_16k().and_then(|pcm| {
                    self.transcribe(&pcm, &job.cancel, job.deadline, lang.as_deref())
                });
                match &r {
                    Ok(t) if t.speech.has_speech() && !t.text.is_empty() => {
                        self.speed.observe(Instant::now(), t.elapsed_ms);
                    }
                    // Stopped at its deadline (by the deadline itself or by the caller
                    // giving up at the same moment): unfinished after this long.
                    Err(AsrError::TimedOut | AsrError::Cancelled)
                        if job.deadline.is_some_and(|d| Instant::now() >= d) =>
                    {
                        let spent = now.elapsed().as_millis() as u64;
                        self.speed.at_least(Instant::now(), spent);
                    }
                    _ => {}
                }
                r
            };
            let model_ms = result.as_ref().map_or(0, |t| t.elapsed_ms);
            ASR_COUNTERS.count(&result, model_ms);
            // The requester may have gone away; that is fine.
            let _ = job.reply.send(result);
        }
    }

    /// Threads for the next transcription (see [`cpu::threads_for`]).
    fn threads_now(&self) -> usize {
        cpu::threads_for(
            self.threads,
            self.load.as_ref().and_then(|l| l.free_cores()),
        )
    }

    fn transcribe(
        &mut self,
        pcm: &[f32],
        cancel: &CancelToken,
        deadline: Option<Instant>,
        language: Option<&str>,
    ) -> Result<Transcript, AsrError> {
        let started = Instant::now();
        let threads = self.threads_now();
        let audio_ms = (pcm.len() as u64 * 1000) / 16_000;
        let speech = self.vad.analyze(pcm);
        let done = |segments: Vec<Segment>, speech, language: String| {
            let text = segments
                .iter()
                .map(|s| s.text.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            Transcript {
                text,
                segments,
                speech,
                audio_ms,
                elapsed_ms: started.elapsed().as_millis() as u64,
                threads,
                language,
            }
        };
        if !speech.has_speech() {
            let asked = language.unwrap_or(&self.language).to_string();
            return Ok(done(Vec::new(), speech, asked));
        }
        let strategy = if self.beam_size > 1 {
            SamplingStrategy::BeamSearch {
                beam_size: self.beam_size as i32,
                patience: -1.0,
            }
        } else {
            SamplingStrategy::Greedy { best_of: 1 }
        };
        let mut params = FullParams::new(strategy);
        let mut language = language.unwrap_or(&self.language).to_string();
        let prompt = self
            .initial_prompts
            .iter()
            .find(|(l, _)| *l == language)
            .map_or(self.initial_prompt.as_str(), |(_, p)| p.as_str());
        if !prompt.is_empty() {
            params.set_initial_prompt(prompt);
        }
        params.set_n_threads(threads as i32);
        // "auto": a multilingual model detects the language first (English-only ones hear
        // English whatever they are told).
        params.set_language(Some(&language));
        params.set_translate(false);
        params.set_no_context(true);
        params.set_audio_ctx(audio_ctx_for(pcm.len()));
        // Fallback to higher temperatures makes results random and slow; off.
        params.set_temperature(0.0);
        params.set_temperature_inc(0.0);
        params.set_suppress_blank(true);
        params.set_suppress_nst(true);
        params.set_print_special(false);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_timestamps(false);
        // whisper-rs 0.16's `set_abort_callback_safe` casts its boxed closure to the wrong
        // type (undefined behaviour: it aborted every encode here), so the raw API is used
        // with plain data: the cancel flag and the deadline. A job past its deadline stops
        // at once (whisper checks between graph nodes), so the model is free for the next.
        let abort = AbortWhen {
            cancel: cancel.flag_ptr(),
            deadline,
        };
        // SAFETY: the callback only reads `abort`, which lives on this stack frame, and the
        // AtomicBool it points to, kept alive by `cancel`; both outlive `self.state.full`,
        // the only call that can invoke the callback.
        unsafe {
            params.set_abort_callback(Some(abort_if_cancelled));
            params
                .set_abort_callback_user_data(&abort as *const AbortWhen as *mut std::ffi::c_void);
        }
        // whisper pads clips shorter than one second badly; give it a second of silence.
        let mut padded;
        let input = if pcm.len() < 16_000 {
            padded = pcm.to_vec();
            padded.resize(16_000, 0.0);
            &padded[..]
        } else {
            pcm
        };
        let res = self.state.full(params, input);
        if cancel.is_cancelled() {
            return Err(AsrError::Cancelled);
        }
        if abort.past_deadline() {
            return Err(AsrError::TimedOut);
        }
        if language == "auto" {
            let id = self.state.full_lang_id_from_state();
            language = whisper_rs::get_lang_str(id).unwrap_or("en").to_string();
        }
        res.map_err(|e| AsrError::Engine(e.to_string()))?;
        let mut segments = Vec::new();
        let audio_ms = pcm.len() as u64 * 1000 / 16_000;
        for seg in self.state.as_iter() {
            let text = seg
                .to_str_lossy()
                .map_err(|e| AsrError::Engine(e.to_string()))?
                .trim()
                .to_string();
            if text.is_empty() || is_non_speech_marker(&text) {
                continue;
            }
            let text = super::repeats::collapse_repeats(&text);
            let (start_ms, end_ms) =
                segment_ms(seg.start_timestamp(), seg.end_timestamp(), audio_ms);
            segments.push(Segment {
                start_ms,
                end_ms,
                text,
                no_speech_prob: seg.no_speech_probability(),
            });
        }
        super::repeats::dedup_segments(&mut segments, |s: &Segment| s.text.as_str());
        Ok(done(segments, speech, language))
    }
}

/// A segment's times in ms from whisper's centisecond timestamps, inside the audio. A last
/// segment without an end timestamp ends at whisper's window (30 s) whatever the clip's
/// length, which would spread its words over time never spoken (and put a rule hit at 26 s
/// of a 5 s clip): the end is clamped to the audio, the start to the end.
fn segment_ms(t0: i64, t1: i64, audio_ms: u64) -> (u64, u64) {
    let end = (t1.max(0) as u64 * 10).min(audio_ms);
    let start = (t0.max(0) as u64 * 10).min(end);
    (start, end)
}

/// When whisper should stop: the job was cancelled, or its deadline has passed.
struct AbortWhen {
    cancel: *const std::sync::atomic::AtomicBool,
    deadline: Option<Instant>,
}

impl AbortWhen {
    fn past_deadline(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

/// whisper.cpp's abort callback: `user_data` points at an [`AbortWhen`].
unsafe extern "C" fn abort_if_cancelled(user_data: *mut std::ffi::c_void) -> bool {
    // SAFETY: set above to a pointer to an AbortWhen alive during the call, whose `cancel`
    // points to an AtomicBool kept alive by the job's CancelToken.
    let abort = unsafe { &*(user_data as *const AbortWhen) };
    let flag = unsafe { &*abort.cancel };
    flag.load(std::sync::atomic::Ordering::Relaxed) || abort.past_deadline()
}

/// whisper's annotations for non-speech: "[BLANK_AUDIO]", "(music)", "*coughs*".
fn is_non_speech_marker(text: &str) -> bool {
    let t = text.trim();
    let wrapped = |a: char, b: char| t.starts_with(a) && t.ends_with(b);
    wrapped('[', ']') || wrapped('(', ')') || wrapped('*', '*')
}

#[cfg(test)]
mod segment_tests {
    #[test]
    fn segment_times_stay_inside_the_audio() {
        assert_eq!(super::segment_ms(0, 400, 5_600), (0, 4_000));
        // No end timestamp: whisper's 30 s window.
        assert_eq!(super::segment_ms(120, 3_000, 5_600), (1_200, 5_600));
        assert_eq!(super::segment_ms(700, 3_000, 5_600), (5_600, 5_600));
        assert_eq!(super::segment_ms(-1, -1, 5_600), (0, 0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_ctx_has_a_floor_and_a_ceiling() {
        assert_eq!(audio_ctx_for(16_000 * 3), MIN_AUDIO_CTX);
        assert_eq!(audio_ctx_for(16_000 * 10), MIN_AUDIO_CTX);
        assert_eq!(audio_ctx_for(16_000 * 20), 1016);
        assert_eq!(audio_ctx_for(16_000 * 29), 1466);
        assert_eq!(audio_ctx_for(16_000 * 31), 0);
    }

    #[test]
    fn markers_are_recognised() {
        assert!(is_non_speech_marker("[BLANK_AUDIO]"));
        assert!(is_non_speech_marker("(music playing)"));
        assert!(!is_non_speech_marker("Hello (again)"));
    }

    #[test]
    fn missing_model_says_how_to_get_it() {
        let e =
            WhisperPool::start(&WhisperConfig::new("/nonexistent/ggml.bin")).expect_err("missing");
        assert!(e.to_string().contains("scamscreen model fetch"), "{e}");
    }
}
