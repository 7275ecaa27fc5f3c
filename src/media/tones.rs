//! Call-progress tones made in code: the ringback a screened caller hears while the callee's
//! phone rings.
//!
//! The caller was already answered (200 OK) by scamscreen for screening, so a `180 Ringing`
//! cannot reach their phone any more: the only way to tell them "it is ringing now" is
//! in-band audio on the answered call (what a PBX does after a transfer). Which tone is a
//! matter of country (ITU-T E.180 Supplement 2); silence is offered too, for PBXs that play
//! their own music or announcement.

use std::f32::consts::TAU;
use std::sync::Arc;

use serde::Deserialize;

use super::g711::CLOCK_RATE;

/// What the caller hears while the callee rings (`media.ringback`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ringback {
    /// North America: 440 + 480 Hz, 2 s on, 4 s off.
    #[default]
    Us,
    /// Most of continental Europe (CEPT): 425 Hz, 1 s on, 4 s off.
    Eu,
    /// United Kingdom: 400 + 450 Hz, 0.4 s on, 0.2 s off, 0.4 s on, 2 s off.
    Uk,
    /// Nothing: the caller hears silence until the callee answers.
    Silence,
}

impl Ringback {
    pub fn as_str(self) -> &'static str {
        match self {
            Ringback::Us => "us",
            Ringback::Eu => "eu",
            Ringback::Uk => "uk",
            Ringback::Silence => "silence",
        }
    }

    /// The tone's frequencies in Hz (empty for silence).
    pub fn frequencies(self) -> &'static [f32] {
        match self {
            Ringback::Us => &[440.0, 480.0],
            Ringback::Eu => &[425.0],
            Ringback::Uk => &[400.0, 450.0],
            Ringback::Silence => &[],
        }
    }

    /// One cadence period as (milliseconds on, milliseconds off) pairs.
    pub fn cadence(self) -> &'static [(u32, u32)] {
        match self {
            Ringback::Us => &[(2_000, 4_000)],
            Ringback::Eu => &[(1_000, 4_000)],
            Ringback::Uk => &[(400, 200), (400, 2_000)],
            Ringback::Silence => &[],
        }
    }

    /// One full cadence period as 8 kHz PCM, to be played in a loop; `None` for silence.
    /// The tone sits about 13 dB below full scale (each frequency at −19 dBm0-ish
    /// levels used by exchanges), with 5 ms ramps so the bursts do not click.
    pub fn pcm(self) -> Option<Arc<[i16]>> {
        let freqs = self.frequencies();
        if freqs.is_empty() {
            return None;
        }
        let per_ms = (CLOCK_RATE / 1_000) as usize;
        let amplitude = 0.22 / freqs.len() as f32 * f32::from(i16::MAX);
        let ramp = 5 * per_ms;
        let mut out = Vec::new();
        for &(on, off) in self.cadence() {
            let on = on as usize * per_ms;
            for i in 0..on {
                let t = i as f32 / CLOCK_RATE as f32;
                let envelope = (i.min(on - 1 - i) as f32 / ramp as f32).min(1.0);
                let v: f32 = freqs.iter().map(|f| (TAU * f * t).sin()).sum();
                out.push((v * amplitude * envelope) as i16);
            }
            out.resize(out.len() + off as usize * per_ms, 0);
        }
        Some(out.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Power of `freq` in `x` (Goertzel), normalised by length.
    fn power(x: &[i16], freq: f32) -> f32 {
        let k = 2.0 * (TAU * freq / CLOCK_RATE as f32).cos();
        let (mut s1, mut s2) = (0.0f32, 0.0f32);
        for &v in x {
            let s = f32::from(v) + k * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        (s1 * s1 + s2 * s2 - k * s1 * s2) / (x.len() as f32).powi(2)
    }

    #[test]
    fn cadences_have_the_right_length_and_gaps() {
        let us = Ringback::Us.pcm().unwrap();
        assert_eq!(us.len(), 6 * 8_000);
        assert!(us[2 * 8_000 + 10..].iter().all(|&s| s == 0), "4 s off");
        let eu = Ringback::Eu.pcm().unwrap();
        assert_eq!(eu.len(), 5 * 8_000);
        let uk = Ringback::Uk.pcm().unwrap();
        assert_eq!(uk.len(), 3 * 8_000);
        // 0.4 s on, 0.2 s off, 0.4 s on.
        assert!(uk[3_300..4_700].iter().all(|&s| s == 0));
        assert!(uk[5_000..7_000].iter().any(|&s| s.abs() > 1_000));
        assert!(Ringback::Silence.pcm().is_none());
    }

    #[test]
    fn tones_hold_their_frequencies_and_nothing_else() {
        for rb in [Ringback::Us, Ringback::Eu, Ringback::Uk] {
            let pcm = rb.pcm().unwrap();
            let burst = &pcm[400..3_200]; // inside the first "on" of every cadence
            let off = power(burst, 1_000.0);
            for &f in rb.frequencies() {
                let p = power(burst, f);
                assert!(p > 100.0 * off.max(1.0), "{rb:?} {f} Hz: {p} vs {off}");
            }
            let peak = pcm.iter().map(|s| s.unsigned_abs()).max().unwrap();
            assert!(
                peak < 8_000,
                "{rb:?} peak {peak}: no clipping, not too loud"
            );
        }
    }

    #[test]
    fn bursts_start_and_end_softly() {
        let pcm = Ringback::Eu.pcm().unwrap();
        assert!(pcm[0].abs() < 50 && pcm[7_999].abs() < 50);
    }
}
