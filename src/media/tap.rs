//! The recorder tap: the caller's audio on its way to speech recognition, without ever
//! blocking media.
//!
//! The media side holds a [`RecorderTap`] (normally inside the caller's
//! [`MediaLeg`](super::relay::MediaLeg), which pushes every accepted audio packet, decoded
//! to 8 kHz PCM). `push` is a `try_send` on a bounded channel: when the consumer falls
//! behind, frames are dropped and counted, never waited for (STYLE.md §5).
//!
//! The consumer side drains the [`TapReceiver`] into a [`SpeechBuffer`], which collects up
//! to `max_ms` of audio, fills packet-loss gaps with silence (by RTP timestamp), and tells
//! when the caller has finished speaking: voiced speech seen (at least `min_speech_ms`, by
//! the periodicity detector of [`crate::asr::vad`], so line noise does not count), then at
//! least `trailing_silence_ms` without voice.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::asr::vad::{VoiceActivity, FRAME_MS, MIN_VOICED_MS};
use crate::asr::AsrError;

/// Sample rate of tapped audio.
pub const SAMPLE_RATE: u32 = 8000;
/// Gaps in the RTP timeline up to this long are filled with silence; longer jumps mean the
/// stream restarted and are not filled.
const MAX_GAP_SAMPLES: u32 = SAMPLE_RATE;
/// Default silence after speech that ends it.
pub const DEFAULT_TRAILING_SILENCE_MS: u32 = 1000;

/// One packet's worth of decoded audio (normally 20 ms = 160 samples).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioFrame {
    /// 8 kHz mono linear PCM.
    pub samples: Vec<i16>,
    /// The RTP timestamp of the first sample, in the sending phone's timeline.
    pub rtp_timestamp: u32,
    /// When the packet arrived.
    pub received: Instant,
}

/// The media side of the tap.
#[derive(Debug)]
pub struct RecorderTap {
    tx: Sender<AudioFrame>,
    pushed: u64,
    dropped_full: u64,
    dropped_closed: u64,
}

/// The consumer side of the tap.
#[derive(Debug)]
pub struct TapReceiver {
    rx: Receiver<AudioFrame>,
}

/// Why [`TapReceiver::recv_timeout`] returned without a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TapRecvError {
    #[error("no audio frame within the timeout")]
    Timeout,
    #[error("the recorder tap was dropped (the call's media ended)")]
    Closed,
}

impl RecorderTap {
    /// A tap whose queue holds `capacity_frames` frames (at least 1; 50 frames = 1 s).
    pub fn new(capacity_frames: usize) -> (RecorderTap, TapReceiver) {
        let (tx, rx) = crossbeam_channel::bounded(capacity_frames.max(1));
        let tap = RecorderTap {
            tx,
            pushed: 0,
            dropped_full: 0,
            dropped_closed: 0,
        };
        (tap, TapReceiver { rx })
    }

    /// Queue a frame if there is room; never blocks. False when it was dropped.
    pub fn push(&mut self, frame: AudioFrame) -> bool {
        match self.tx.try_send(frame) {
            Ok(()) => {
                self.pushed += 1;
                true
            }
            Err(TrySendError::Full(_)) => {
                self.dropped_full += 1;
                false
            }
            Err(TrySendError::Disconnected(_)) => {
                self.dropped_closed += 1;
                false
            }
        }
    }

    /// Frames queued.
    pub fn pushed(&self) -> u64 {
        self.pushed
    }

    /// Frames dropped, because the queue was full or the consumer has gone.
    pub fn dropped(&self) -> u64 {
        self.dropped_full + self.dropped_closed
    }

    /// Frames dropped because the queue was full (the consumer is too slow).
    pub fn dropped_full(&self) -> u64 {
        self.dropped_full
    }

    /// Whether a push found the consumer gone (later pushes are dropped too).
    pub fn is_closed(&self) -> bool {
        self.dropped_closed > 0
    }
}

impl TapReceiver {
    /// A frame if one is queued.
    pub fn try_recv(&self) -> Option<AudioFrame> {
        self.rx.try_recv().ok()
    }

    /// Wait up to `timeout` for a frame (consumer threads only; never on the media path).
    pub fn recv_timeout(&self, timeout: Duration) -> Result<AudioFrame, TapRecvError> {
        self.rx.recv_timeout(timeout).map_err(|e| match e {
            RecvTimeoutError::Timeout => TapRecvError::Timeout,
            RecvTimeoutError::Disconnected => TapRecvError::Closed,
        })
    }

    /// Move every queued frame into `buffer`; returns its state afterwards.
    pub fn drain_into(&self, buffer: &mut SpeechBuffer) -> SpeechState {
        while let Ok(frame) = self.rx.try_recv() {
            buffer.push(&frame);
        }
        buffer.state()
    }

    /// Frames waiting.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

/// Limits of one listening window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenLimits {
    /// Collect at most this much audio (the config's `listen_secs` × 1000).
    pub max_ms: u32,
    /// Voiced audio needed before the caller counts as having spoken.
    pub min_speech_ms: u32,
    /// Unvoiced time after speech that ends it.
    pub trailing_silence_ms: u32,
}

impl ListenLimits {
    /// `max_ms` with the default speech and silence lengths.
    pub fn new(max_ms: u32) -> Self {
        ListenLimits {
            max_ms,
            min_speech_ms: MIN_VOICED_MS as u32,
            trailing_silence_ms: DEFAULT_TRAILING_SILENCE_MS,
        }
    }
}

/// Where the caller is in their turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpeechState {
    /// No speech yet.
    WaitingForSpeech,
    /// Speech seen, still talking (or pausing briefly).
    Speaking,
    /// Speech seen, then `trailing_silence_ms` without voice.
    EndOfSpeech,
    /// `max_ms` collected; further frames are ignored.
    Full,
}

/// The caller's audio collected for ASR, with end-of-speech detection.
#[derive(Debug, Clone)]
pub struct SpeechBuffer {
    limits: ListenLimits,
    samples: Vec<i16>,
    max_samples: usize,
    vad: VoiceActivity,
    /// Samples already classified, in whole VAD frames.
    analyzed: usize,
    voiced_ms: u32,
    /// Sample index just after the last voiced VAD frame.
    last_voiced_end: Option<usize>,
    next_timestamp: Option<u32>,
    late_frames: u64,
    filled_samples: u64,
}

fn ms_to_samples(ms: u32) -> usize {
    (u64::from(ms) * u64::from(SAMPLE_RATE) / 1000) as usize
}

impl SpeechBuffer {
    pub fn new(limits: ListenLimits) -> Self {
        let max_samples = ms_to_samples(limits.max_ms);
        SpeechBuffer {
            limits,
            samples: Vec::with_capacity(max_samples),
            max_samples,
            vad: VoiceActivity::new(SAMPLE_RATE),
            analyzed: 0,
            voiced_ms: 0,
            last_voiced_end: None,
            next_timestamp: None,
            late_frames: 0,
            filled_samples: 0,
        }
    }

    /// Add a frame. Late or duplicate frames (behind the RTP timeline) are skipped; gaps up
    /// to a second are filled with silence.
    pub fn push(&mut self, frame: &AudioFrame) -> SpeechState {
        if self.samples.len() >= self.max_samples {
            return SpeechState::Full;
        }
        if let Some(expected) = self.next_timestamp {
            let ahead = frame.rtp_timestamp.wrapping_sub(expected) as i32;
            if ahead < 0 && ahead.unsigned_abs() <= MAX_GAP_SAMPLES {
                self.late_frames += 1;
                return self.state();
            }
            if ahead > 0 && ahead.unsigned_abs() <= MAX_GAP_SAMPLES {
                let fill = (ahead as usize).min(self.max_samples - self.samples.len());
                self.samples.resize(self.samples.len() + fill, 0);
                self.filled_samples += fill as u64;
            }
        }
        self.next_timestamp = Some(frame.rtp_timestamp.wrapping_add(frame.samples.len() as u32));
        let room = self.max_samples - self.samples.len();
        let take = frame.samples.len().min(room);
        self.samples.extend_from_slice(&frame.samples[..take]);
        self.analyze();
        self.state()
    }

    fn analyze(&mut self) {
        let frame_len = self.vad.frame_len().max(1);
        while self.analyzed + frame_len <= self.samples.len() {
            let window: Vec<f32> = self.samples[self.analyzed..self.analyzed + frame_len]
                .iter()
                .map(|&s| f32::from(s) / 32768.0)
                .collect();
            self.analyzed += frame_len;
            if self.vad.classify(&window).voiced {
                self.voiced_ms += FRAME_MS as u32;
                self.last_voiced_end = Some(self.analyzed);
            }
        }
    }

    pub fn state(&self) -> SpeechState {
        if self.samples.len() >= self.max_samples {
            return SpeechState::Full;
        }
        match self.last_voiced_end {
            Some(end) if self.voiced_ms >= self.limits.min_speech_ms => {
                let silent = self.analyzed.saturating_sub(end);
                if silent >= ms_to_samples(self.limits.trailing_silence_ms) {
                    SpeechState::EndOfSpeech
                } else {
                    SpeechState::Speaking
                }
            }
            _ => SpeechState::WaitingForSpeech,
        }
    }

    /// The audio so far (8 kHz mono).
    pub fn samples(&self) -> &[i16] {
        &self.samples
    }

    /// Length of the audio so far.
    pub fn duration_ms(&self) -> u64 {
        self.samples.len() as u64 * 1000 / u64::from(SAMPLE_RATE)
    }

    /// Voiced time heard so far.
    pub fn voiced_ms(&self) -> u32 {
        self.voiced_ms
    }

    /// Frames skipped because they arrived behind the timeline.
    pub fn late_frames(&self) -> u64 {
        self.late_frames
    }

    /// Silence inserted for lost packets.
    pub fn filled_samples(&self) -> u64 {
        self.filled_samples
    }

    /// The audio as whisper wants it: 16 kHz mono f32 in [-1, 1).
    pub fn to_whisper_input(&self) -> Result<Vec<f32>, AsrError> {
        let f: Vec<f32> = self
            .samples
            .iter()
            .map(|&s| f32::from(s) / 32768.0)
            .collect();
        crate::asr::resample::resample(&f, SAMPLE_RATE, crate::asr::audio::WHISPER_RATE)
    }
}

/// A vowel-like buzz at 8 kHz (120 Hz with decaying harmonics), samples `from..from + n`
/// of it: voiced for [`crate::asr::vad`]. For tests that need a caller who speaks.
#[cfg(test)]
pub(crate) fn test_vowel(from: usize, n: usize) -> Vec<i16> {
    (from..from + n)
        .map(|i| {
            let t = i as f32 / 8000.0;
            let v: f32 = (1..15)
                .map(|h| (2.0 * std::f32::consts::PI * 120.0 * h as f32 * t).sin() / h as f32)
                .sum();
            (v * 3000.0) as i16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vowel(n: usize) -> Vec<i16> {
        super::test_vowel(0, n)
    }

    fn frames(pcm: &[i16], first_ts: u32, t0: Instant) -> Vec<AudioFrame> {
        pcm.chunks(160)
            .enumerate()
            .map(|(i, c)| AudioFrame {
                samples: c.to_vec(),
                rtp_timestamp: first_ts.wrapping_add(160 * i as u32),
                received: t0 + Duration::from_millis(20 * i as u64),
            })
            .collect()
    }

    #[test]
    fn full_queue_drops_and_counts_without_blocking() {
        let t0 = Instant::now();
        let (mut tap, rx) = RecorderTap::new(2);
        let f = frames(&[0; 800], 0, t0);
        assert!(tap.push(f[0].clone()));
        assert!(tap.push(f[1].clone()));
        assert!(!tap.push(f[2].clone()));
        assert!(!tap.push(f[3].clone()));
        assert_eq!((tap.pushed(), tap.dropped(), tap.dropped_full()), (2, 2, 2));
        assert_eq!(rx.len(), 2);
        assert_eq!(rx.try_recv(), Some(f[0].clone()));
        assert!(tap.push(f[4].clone()));
        assert!(!tap.is_closed());
        drop(rx);
        assert!(!tap.push(f[0].clone()));
        assert!(tap.is_closed());
        assert_eq!(tap.dropped(), 3);
        // The consumer sees the end of the media.
        let (tap, rx) = RecorderTap::new(0);
        drop(tap);
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(1)),
            Err(TapRecvError::Closed)
        );
    }

    #[test]
    fn end_of_speech_after_voice_then_silence() {
        let t0 = Instant::now();
        let mut pcm = vec![0i16; 4000]; // 0.5 s before the caller speaks
        pcm.extend(vowel(8000)); // 1 s of voice
        pcm.extend(vec![0i16; 12000]); // 1.5 s of silence
        let (mut tap, rx) = RecorderTap::new(1000);
        let mut buf = SpeechBuffer::new(ListenLimits::new(8000));
        let mut states = Vec::new();
        for f in frames(&pcm, 1234, t0) {
            assert!(tap.push(f));
            states.push(rx.drain_into(&mut buf));
        }
        assert_eq!(states[10], SpeechState::WaitingForSpeech);
        assert_eq!(states[50], SpeechState::Speaking);
        assert_eq!(
            states[110],
            SpeechState::Speaking,
            "a short pause is not the end"
        );
        let end = states
            .iter()
            .position(|s| *s == SpeechState::EndOfSpeech)
            .expect("ends");
        // Voice stops at 1.5 s; end of speech about 1 s later.
        assert!((120..=132).contains(&end), "end at frame {end}");
        assert!(buf.voiced_ms() >= 900, "{}", buf.voiced_ms());
        assert_eq!(buf.duration_ms(), 3000);
        assert_eq!(buf.to_whisper_input().expect("resample").len(), 48_000);
    }

    #[test]
    fn noise_and_silence_never_end_speech_and_buffer_fills() {
        let t0 = Instant::now();
        let mut s: u32 = 99;
        let hiss: Vec<i16> = (0..40_000)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 4000) as i16 - 2000
            })
            .collect();
        let mut buf = SpeechBuffer::new(ListenLimits::new(4000));
        let mut last = SpeechState::WaitingForSpeech;
        for f in frames(&hiss, 0, t0) {
            last = buf.push(&f);
            assert!(matches!(
                last,
                SpeechState::WaitingForSpeech | SpeechState::Full
            ));
        }
        assert_eq!(last, SpeechState::Full);
        assert_eq!(buf.samples().len(), 32_000);
        assert_eq!(buf.push(&frames(&[1; 160], 0, t0)[0]), SpeechState::Full);
    }

    #[test]
    fn gaps_are_filled_and_late_frames_skipped() {
        let t0 = Instant::now();
        let f = frames(&[100; 160 * 6], u32::MAX - 400, t0);
        let mut buf = SpeechBuffer::new(ListenLimits::new(8000));
        buf.push(&f[0]);
        buf.push(&f[1]);
        buf.push(&f[3]); // f[2] lost
        buf.push(&f[2]); // arrives late: skipped
        buf.push(&f[1]); // duplicate: skipped
        buf.push(&f[4]);
        assert_eq!(buf.samples().len(), 160 * 5);
        assert_eq!(buf.filled_samples(), 160);
        assert_eq!(buf.late_frames(), 2);
        assert!(buf.samples()[320..480].iter().all(|&s| s == 0));
        // A big jump (stream restarted) is appended without filling.
        let mut jump = f[5].clone();
        jump.rtp_timestamp = 1_000_000;
        buf.push(&jump);
        assert_eq!(buf.samples().len(), 160 * 6);
    }
}
