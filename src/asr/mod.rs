//! Speech recognition for the rest of the system.
//!
//! [`Transcriber`] is what the call layer talks to: it hands over 16 kHz mono PCM and gets a
//! [`PendingTranscript`] back at once, never blocking. [`whisper::WhisperPool`] is the real
//! implementation (whisper.cpp through whisper-rs, a bounded queue in front of a fixed pool of
//! worker threads, each with its own whisper state). A full queue is [`AsrError::QueueFull`],
//! which the caller answers with its fail-open policy.

pub mod audio;
pub mod cpu;
pub mod repeats;
pub mod resample;
pub mod vad;
pub mod wer;
pub mod whisper;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use vad::SpeechReport;

/// Errors of the speech recogniser.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AsrError {
    #[error("the speech recogniser is busy (queue full)")]
    QueueFull,
    #[error("transcription cancelled")]
    Cancelled,
    #[error("transcription timed out")]
    TimedOut,
    /// Said before or instead of starting: the work ahead (queue, recent speed) cannot be
    /// done before the deadline.
    #[error("the speech recogniser cannot make the deadline (needs about {expected_ms} ms, {left_ms} ms left)")]
    CannotMakeIt { expected_ms: u64, left_ms: u64 },
    #[error("the speech recogniser has shut down")]
    ShutDown,
    #[error("no speech model at {0}; run: make model (or scamscreen model fetch && scamscreen model convert --quantize q8_0)")]
    ModelMissing(String),
    #[error("cannot load speech model {path}: {reason}")]
    ModelLoad { path: String, reason: String },
    #[error("bad audio: {0}")]
    BadAudio(String),
    #[error("speech recogniser failed: {0}")]
    Engine(String),
}

/// One stretch of recognised text.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Segment {
    pub start_ms: u64,
    pub end_ms: u64,
    pub text: String,
    /// whisper's probability that the stretch holds no speech.
    pub no_speech_prob: f32,
}

/// The result of one transcription.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Transcript {
    pub text: String,
    pub segments: Vec<Segment>,
    /// Voice activity found before transcription.
    pub speech: SpeechReport,
    /// Length of the audio.
    pub audio_ms: u64,
    /// Time spent in the recogniser (not waiting in the queue).
    pub elapsed_ms: u64,
    /// CPU threads the recogniser used (chosen per transcription with `threads = auto`).
    pub threads: usize,
    /// The language heard: the one asked for, or the one a multilingual model detected
    /// when asked for `auto`.
    pub language: String,
}

/// A request for transcription: 16 kHz mono samples in [-1, 1].
#[derive(Debug, Clone)]
pub struct AsrRequest {
    pub pcm_16k: Vec<f32>,
    /// Telephone audio (8 kHz mono) instead of `pcm_16k`: the worker resamples it, so the
    /// caller's thread (the SIP core) never does.
    pub pcm_8k: Option<Vec<i16>>,
    /// When the answer is no longer wanted (the screening timeout). A worker skips a job
    /// it cannot finish by then (answering [`AsrError::TimedOut`] at once) instead of
    /// spending the model on it: under overload, the model's time goes to calls that can
    /// still get a verdict.
    pub deadline: Option<std::time::Instant>,
    /// The spoken language (`en`, `de`, or `auto` for a multilingual model to detect);
    /// `None`: the recogniser's configured one.
    pub language: Option<String>,
}

impl AsrRequest {
    /// 8 kHz telephone audio, resampled by the worker.
    pub fn telephone(pcm_8k: Vec<i16>, deadline: Option<std::time::Instant>) -> AsrRequest {
        AsrRequest {
            pcm_16k: Vec::new(),
            pcm_8k: Some(pcm_8k),
            deadline,
            language: None,
        }
    }

    /// The same request, spoken in `lang`.
    pub fn in_language(mut self, lang: &str) -> AsrRequest {
        self.language = Some(lang.to_string());
        self
    }

    /// The audio at 16 kHz (resampling telephone audio).
    pub fn into_16k(self) -> Result<Vec<f32>, AsrError> {
        match self.pcm_8k {
            Some(pcm) => {
                let f: Vec<f32> = pcm.iter().map(|&s| f32::from(s) / 32768.0).collect();
                resample::resample(&f, 8_000, audio::WHISPER_RATE)
            }
            None => Ok(self.pcm_16k),
        }
    }
}

/// A flag shared between the requester and the worker.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
    /// The flag's address, for a C callback that polls it while the token is alive.
    pub(crate) fn flag_ptr(&self) -> *const AtomicBool {
        Arc::as_ptr(&self.0)
    }
}

/// A transcription on its way. Dropping it cancels the work.
#[derive(Debug)]
pub struct PendingTranscript {
    rx: Option<tokio::sync::oneshot::Receiver<Result<Transcript, AsrError>>>,
    cancel: CancelToken,
}

impl PendingTranscript {
    pub fn new(
        rx: tokio::sync::oneshot::Receiver<Result<Transcript, AsrError>>,
        cancel: CancelToken,
    ) -> Self {
        PendingTranscript {
            rx: Some(rx),
            cancel,
        }
    }

    /// Ask the worker to stop; the result becomes [`AsrError::Cancelled`].
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// A clone of the cancel flag, e.g. for a call that hangs up.
    pub fn cancel_token(&self) -> CancelToken {
        self.cancel.clone()
    }

    /// Block the current (non-async) thread until the result arrives.
    pub fn wait(mut self) -> Result<Transcript, AsrError> {
        let r = match self.rx.take() {
            Some(rx) => rx.blocking_recv().unwrap_or(Err(AsrError::ShutDown)),
            None => Err(AsrError::ShutDown),
        };
        self.disarm();
        r
    }

    /// Block for at most `timeout`; on timeout the work is cancelled.
    pub fn wait_timeout(mut self, timeout: Duration) -> Result<Transcript, AsrError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let Some(rx) = self.rx.as_mut() else {
                return Err(AsrError::ShutDown);
            };
            match rx.try_recv() {
                Ok(r) => {
                    self.disarm();
                    return r;
                }
                Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {
                    return Err(AsrError::ShutDown)
                }
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {}
            }
            if std::time::Instant::now() >= deadline {
                self.cancel.cancel();
                return Err(AsrError::TimedOut);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Await the result from async code.
    pub async fn recv(mut self) -> Result<Transcript, AsrError> {
        let r = match self.rx.take() {
            Some(rx) => rx.await.unwrap_or(Err(AsrError::ShutDown)),
            None => Err(AsrError::ShutDown),
        };
        self.disarm();
        r
    }

    /// After a result was received, dropping must not flag a cancel.
    fn disarm(&mut self) {
        self.cancel = CancelToken::default();
    }
}

impl Drop for PendingTranscript {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Anything that turns speech into text without blocking the caller.
/// What the speech model did since the process started, for `/metrics`.
#[derive(Debug)]
pub struct AsrCounters {
    /// Transcriptions that finished with a transcript.
    pub transcribed: AtomicU64,
    /// Milliseconds the model spent on them.
    pub model_ms: AtomicU64,
    /// Transcriptions stopped at their deadline, unfinished.
    pub timed_out: AtomicU64,
    /// Refused before starting: the work ahead could not be done before the deadline.
    pub cannot_make_it: AtomicU64,
    /// Refused because the queue was full.
    pub queue_full: AtomicU64,
}

pub static ASR_COUNTERS: AsrCounters = AsrCounters {
    transcribed: AtomicU64::new(0),
    model_ms: AtomicU64::new(0),
    timed_out: AtomicU64::new(0),
    cannot_make_it: AtomicU64::new(0),
    queue_full: AtomicU64::new(0),
};

impl AsrCounters {
    /// Count a finished (or refused) transcription.
    pub fn count<T>(&self, result: &Result<T, AsrError>, model_ms: u64) {
        let c = match result {
            Ok(_) => {
                self.model_ms.fetch_add(model_ms, Ordering::Relaxed);
                &self.transcribed
            }
            Err(AsrError::TimedOut) => &self.timed_out,
            Err(AsrError::CannotMakeIt { .. }) => &self.cannot_make_it,
            Err(AsrError::QueueFull) => &self.queue_full,
            Err(_) => return,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// The recogniser's load and speed at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsrCapacity {
    /// Recent time per transcription of speech (moving average).
    pub typical: std::time::Duration,
    /// Transcriptions that run at once.
    pub workers: usize,
    /// Jobs queued or running.
    pub in_flight: usize,
    /// Room left in the queue.
    pub queue_free: usize,
}

pub trait Transcriber: Send + Sync {
    /// Queue a transcription. Returns at once: [`AsrError::QueueFull`] when there is no room.
    fn submit(&self, request: AsrRequest) -> Result<PendingTranscript, AsrError>;

    /// Jobs accepted and not yet finished (queued or running): the ASR slots in use. A
    /// cancelled job counts until its worker has let go of it.
    fn in_flight(&self) -> usize {
        0
    }

    /// What the recogniser can take on now, for refusing calls before they are answered;
    /// `None` when it cannot say.
    fn capacity(&self) -> Option<AsrCapacity> {
        None
    }

    /// Convenience for tools and tests: submit and wait.
    fn transcribe(&self, pcm_16k: Vec<f32>) -> Result<Transcript, AsrError> {
        self.submit(AsrRequest {
            pcm_16k,
            pcm_8k: None,
            deadline: None,
            language: None,
        })?
        .wait()
    }
}
