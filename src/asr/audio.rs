//! Audio input: WAV files in PCM (8/16/24/32-bit), float, µ-law or A-law, any sample rate,
//! any channel count, decoded with symphonia and turned into the 16 kHz mono f32 whisper
//! expects.

use std::path::Path;

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::DecoderOptions;
use symphonia::core::errors::Error as SymErr;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use super::resample::resample;
use super::AsrError;

/// Whisper's input rate.
pub const WHISPER_RATE: u32 = 16_000;

/// Decoded audio, channels mixed down to mono.
#[derive(Debug, Clone)]
pub struct MonoAudio {
    pub rate: u32,
    pub samples: Vec<f32>,
}

impl MonoAudio {
    pub fn duration_secs(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.rate.max(1))
    }
}

fn bad(path: &Path, why: impl std::fmt::Display) -> AsrError {
    AsrError::BadAudio(format!("{}: {why}", path.display()))
}

/// Decode a WAV file to mono at its own rate.
pub fn read_wav(path: &Path) -> Result<MonoAudio, AsrError> {
    let file = std::fs::File::open(path).map_err(|e| bad(path, e))?;
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    hint.with_extension("wav");
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            mss,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(|e| bad(path, format!("not a readable WAV file ({e})")))?;
    let mut format = probed.format;
    let track = format
        .default_track()
        .ok_or_else(|| bad(path, "no audio track"))?;
    let params = track.codec_params.clone();
    let track_id = track.id;
    let rate = params
        .sample_rate
        .ok_or_else(|| bad(path, "no sample rate"))?;
    let mut decoder = symphonia::default::get_codecs()
        .make(&params, &DecoderOptions::default())
        .map_err(|e| bad(path, format!("unsupported encoding ({e})")))?;
    let mut samples = Vec::new();
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymErr::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(bad(path, e)),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = decoder.decode(&packet).map_err(|e| bad(path, e))?;
        let spec = *decoded.spec();
        let channels = spec.channels.count().max(1);
        let mut buf = SampleBuffer::<f32>::new(decoded.capacity() as u64, spec);
        buf.copy_interleaved_ref(decoded);
        samples.extend(
            buf.samples()
                .chunks(channels)
                .map(|frame| frame.iter().sum::<f32>() / channels as f32),
        );
    }
    Ok(MonoAudio { rate, samples })
}

/// Decode a WAV file and convert it to 16 kHz mono.
pub fn read_wav_16k(path: &Path) -> Result<Vec<f32>, AsrError> {
    let audio = read_wav(path)?;
    resample(&audio.samples, audio.rate, WHISPER_RATE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pcm16(path: &Path, rate: u32, channels: u16, frames: &[i16]) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).expect("create");
        for s in frames {
            w.write_sample(*s).expect("write");
        }
        w.finalize().expect("finalize");
    }

    /// A minimal WAV with format tag 7 (µ-law) or 6 (A-law), one byte per sample.
    fn write_g711(path: &Path, tag: u16, rate: u32, data: &[u8]) {
        let mut b = Vec::new();
        b.extend_from_slice(b"RIFF");
        b.extend_from_slice(&(4 + 26 + 8 + data.len() as u32).to_le_bytes());
        b.extend_from_slice(b"WAVEfmt ");
        b.extend_from_slice(&18u32.to_le_bytes());
        b.extend_from_slice(&tag.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&rate.to_le_bytes());
        b.extend_from_slice(&rate.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&8u16.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(b"data");
        b.extend_from_slice(&(data.len() as u32).to_le_bytes());
        b.extend_from_slice(data);
        std::fs::write(path, b).expect("write");
    }

    #[test]
    fn stereo_pcm16_is_mixed_to_mono() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("s.wav");
        write_pcm16(&p, 16000, 2, &[16384, 0, 16384, 0, -16384, -16384]);
        let a = read_wav(&p).expect("read");
        assert_eq!(a.rate, 16000);
        assert_eq!(a.samples.len(), 3);
        assert!((a.samples[0] - 0.25).abs() < 1e-3);
        assert!((a.samples[2] + 0.5).abs() < 1e-3);
    }

    #[test]
    fn mulaw_and_alaw_decode() {
        let dir = tempfile::tempdir().expect("tmp");
        // µ-law 0xFF and A-law 0xD5 are (near) zero; µ-law 0x80 is the largest positive.
        let p = dir.path().join("u.wav");
        write_g711(&p, 7, 8000, &[0xFF, 0x80, 0x00]);
        let a = read_wav(&p).expect("mulaw");
        assert_eq!(a.rate, 8000);
        assert!(a.samples[0].abs() < 1e-3);
        assert!(a.samples[1] > 0.9 && a.samples[2] < -0.9, "{:?}", a.samples);
        let p = dir.path().join("a.wav");
        write_g711(&p, 6, 8000, &[0xD5, 0xAA, 0x2A]);
        let a = read_wav(&p).expect("alaw");
        assert!(a.samples[0].abs() < 1e-2);
        assert!(a.samples[1] > 0.9 && a.samples[2] < -0.9, "{:?}", a.samples);
    }

    #[test]
    fn eight_khz_becomes_sixteen() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("n.wav");
        let tone: Vec<i16> = (0..8000)
            .map(|i| {
                ((i as f32 * 2.0 * std::f32::consts::PI * 440.0 / 8000.0).sin() * 8000.0) as i16
            })
            .collect();
        write_pcm16(&p, 8000, 1, &tone);
        let s = read_wav_16k(&p).expect("read");
        assert!((s.len() as i64 - 16000).abs() <= 2, "{}", s.len());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("g.wav");
        std::fs::write(&p, b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk").expect("write");
        assert!(matches!(read_wav(&p), Err(AsrError::BadAudio(_))));
        assert!(matches!(
            read_wav(&dir.path().join("missing.wav")),
            Err(AsrError::BadAudio(_))
        ));
    }
}
