//! Voice activity: is there speech in this audio at all, and where?
//!
//! A frame (30 ms) is *voiced* when it is loud enough and periodic at a speaking pitch: its
//! normalised autocorrelation peaks above a threshold at a lag of 2.5–16 ms (62–400 Hz).
//! Voiced speech always has such frames, even through the 300–3400 Hz telephone band, where
//! the harmonics keep the period; silence is too quiet, and white or hiss-like noise has no
//! periodicity. Whisper is only asked to transcribe clips with enough voiced frames, which is
//! what keeps it from writing "Thank you." over silence or noise.

/// Frame length in milliseconds.
pub const FRAME_MS: usize = 30;
/// Frames quieter than this are never voiced (dBFS, RMS).
pub const MIN_LEVEL_DBFS: f32 = -50.0;
/// Autocorrelation peak above which a frame counts as periodic.
pub const MIN_PERIODICITY: f32 = 0.45;
/// Voiced time a clip needs to count as speech.
pub const MIN_VOICED_MS: usize = 150;

/// What one frame looked like.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameInfo {
    pub level_dbfs: f32,
    pub periodicity: f32,
    pub voiced: bool,
}

/// Frame-by-frame voice activity for audio at one sample rate.
#[derive(Debug, Clone)]
pub struct VoiceActivity {
    rate: u32,
    frame_len: usize,
    min_lag: usize,
    max_lag: usize,
}

impl VoiceActivity {
    pub fn new(rate: u32) -> Self {
        let per_ms = rate as usize / 1000;
        VoiceActivity {
            rate,
            frame_len: per_ms * FRAME_MS,
            min_lag: (rate as usize / 400).max(2),
            max_lag: (rate as usize * 16 / 1000).max(3),
        }
    }

    /// Samples per frame.
    pub fn frame_len(&self) -> usize {
        self.frame_len
    }

    /// Classify one frame (any length; normally [`Self::frame_len`]).
    pub fn classify(&self, frame: &[f32]) -> FrameInfo {
        let n = frame.len();
        let energy: f64 = frame.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        // Periodicity is measured on the frame without its DC offset.
        let mean = frame.iter().map(|&v| f64::from(v)).sum::<f64>() / n.max(1) as f64;
        let centered: Vec<f64> = frame.iter().map(|&v| f64::from(v) - mean).collect();
        let frame = &centered[..];
        let rms = (energy / n.max(1) as f64).sqrt();
        let level_dbfs = (20.0 * rms.max(1e-10).log10()) as f32;
        let mut periodicity = 0f32;
        if level_dbfs > MIN_LEVEL_DBFS && n > self.max_lag + self.min_lag {
            // Prefix sums of energy give each lag's normalisation in O(1).
            let mut prefix = Vec::with_capacity(n + 1);
            prefix.push(0f64);
            for &v in frame {
                let last = prefix.last().copied().unwrap_or(0.0);
                prefix.push(last + v * v);
            }
            for lag in self.min_lag..=self.max_lag {
                let m = n - lag;
                let mut dot = 0f64;
                for i in 0..m {
                    dot += frame[i] * frame[i + lag];
                }
                let e0 = prefix[m] - prefix[0];
                let e1 = prefix[n] - prefix[lag];
                let norm = (e0 * e1).sqrt();
                if norm > 0.0 {
                    periodicity = periodicity.max((dot / norm) as f32);
                }
            }
        }
        FrameInfo {
            level_dbfs,
            periodicity,
            voiced: level_dbfs > MIN_LEVEL_DBFS && periodicity > MIN_PERIODICITY,
        }
    }

    /// Analyse a whole clip.
    pub fn analyze(&self, samples: &[f32]) -> SpeechReport {
        let mut report = SpeechReport::default();
        for (i, frame) in samples.chunks_exact(self.frame_len.max(1)).enumerate() {
            report.frames += 1;
            if self.classify(frame).voiced {
                report.voiced_frames += 1;
                let start = (i * self.frame_len * 1000 / self.rate as usize) as u64;
                report.first_voiced_ms.get_or_insert(start);
                report.last_voiced_ms = Some(start + FRAME_MS as u64);
            }
        }
        report
    }
}

/// Voice activity over a clip.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SpeechReport {
    pub frames: usize,
    pub voiced_frames: usize,
    pub first_voiced_ms: Option<u64>,
    pub last_voiced_ms: Option<u64>,
}

impl SpeechReport {
    /// Enough voiced time to be worth transcribing.
    pub fn has_speech(&self) -> bool {
        self.voiced_frames * FRAME_MS >= MIN_VOICED_MS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random source (xorshift), uniform in [-1, 1).
    fn noise(n: usize, amp: f32) -> Vec<f32> {
        let mut s: u32 = 0x1234_5678;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32 * 2.0 - 1.0) * amp
            })
            .collect()
    }

    /// A vowel-like buzz: 120 Hz fundamental with decaying harmonics.
    fn vowel(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let t = i as f32 / 16000.0;
                (1..20)
                    .map(|h| (2.0 * std::f32::consts::PI * 120.0 * h as f32 * t).sin() / h as f32)
                    .sum::<f32>()
                    * 0.1
            })
            .collect()
    }

    #[test]
    fn silence_and_white_noise_are_not_speech() {
        let vad = VoiceActivity::new(16000);
        assert!(!vad.analyze(&vec![0.0; 16000 * 5]).has_speech());
        let r = vad.analyze(&noise(16000 * 5, 0.3));
        assert!(!r.has_speech(), "{r:?}");
        assert!(!vad.analyze(&noise(16000 * 5, 0.001)).has_speech());
    }

    #[test]
    fn periodic_voice_is_speech_and_located() {
        let vad = VoiceActivity::new(16000);
        let mut clip = vec![0.0; 16000];
        clip.extend(vowel(16000));
        clip.extend(vec![0.0; 8000]);
        let r = vad.analyze(&clip);
        assert!(r.has_speech(), "{r:?}");
        let first = r.first_voiced_ms.expect("voiced");
        let last = r.last_voiced_ms.expect("voiced");
        assert!((960..=1050).contains(&first), "{first}");
        assert!((1980..=2040).contains(&last), "{last}");
        // Speech under moderate noise is still found.
        let mixed: Vec<f32> = vowel(16000)
            .iter()
            .zip(noise(16000, 0.05))
            .map(|(a, b)| a + b)
            .collect();
        assert!(vad.analyze(&mixed).has_speech());
    }

    #[test]
    fn frame_info_reports_level() {
        let vad = VoiceActivity::new(8000);
        assert_eq!(vad.frame_len(), 240);
        let f = vad.classify(&[0.5; 240]);
        assert!((f.level_dbfs + 6.02).abs() < 0.1);
        assert!(!f.voiced, "DC is not a voice");
        assert!(!vad.classify(&[]).voiced);
    }
}
