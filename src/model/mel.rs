//! The mel filter bank whisper uses: librosa's `filters.mel(sr=16000, n_fft=400, n_mels=80)`
//! with the Slaney mel scale and Slaney area normalisation (librosa's defaults). whisper.cpp
//! reads it from the ggml file, so it must match what the model was trained with.

/// Slaney-style Hz → mel: linear below 1 kHz, logarithmic above.
fn hz_to_mel(f: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let logstep = (6.4f64).ln() / 27.0;
    if f >= MIN_LOG_HZ {
        min_log_mel + (f / MIN_LOG_HZ).ln() / logstep
    } else {
        f / F_SP
    }
}

/// Inverse of [`hz_to_mel`].
fn mel_to_hz(m: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let logstep = (6.4f64).ln() / 27.0;
    if m >= min_log_mel {
        MIN_LOG_HZ * (logstep * (m - min_log_mel)).exp()
    } else {
        F_SP * m
    }
}

/// The filter bank as `n_mels` rows of `n_fft / 2 + 1` weights, row-major, computed in f64
/// and rounded to f32 as librosa does.
pub fn mel_filters(sample_rate: u32, n_fft: usize, n_mels: usize) -> Vec<f32> {
    let n_bins = n_fft / 2 + 1;
    let sr = f64::from(sample_rate);
    let fft_freqs: Vec<f64> = (0..n_bins)
        .map(|k| k as f64 * (sr / 2.0) / (n_bins - 1) as f64)
        .collect();
    let (mel_min, mel_max) = (hz_to_mel(0.0), hz_to_mel(sr / 2.0));
    let mel_f: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(mel_min + (mel_max - mel_min) * i as f64 / (n_mels + 1) as f64))
        .collect();
    let mut out = Vec::with_capacity(n_mels * n_bins);
    for i in 0..n_mels {
        let (lo, mid, hi) = (mel_f[i], mel_f[i + 1], mel_f[i + 2]);
        let enorm = 2.0 / (hi - lo);
        for &f in &fft_freqs {
            let lower = (f - lo) / (mid - lo);
            let upper = (hi - f) / (hi - mid);
            out.push((lower.min(upper).max(0.0) * enorm) as f32);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values printed once by librosa 0.11 (`librosa.filters.mel(sr=16000, n_fft=400,
    /// n_mels=80)`); tests/data/mel/librosa_values.py is the script.
    const LIBROSA: &str = include_str!("../../tests/data/mel/librosa_values.tsv");

    #[test]
    fn matches_librosa() {
        let m = mel_filters(16000, 400, 80);
        assert_eq!(m.len(), 80 * 201);
        let rows: Vec<(usize, usize, f32)> = LIBROSA
            .lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                (
                    f[0].parse().expect("row"),
                    f[1].parse().expect("col"),
                    f[2].parse().expect("value"),
                )
            })
            .collect();
        assert!(rows.len() > 40);
        assert!(
            rows.iter().filter(|r| r.2 > 0.0).count() > 25,
            "most picks are non-zero"
        );
        for (row, col, want) in rows {
            let got = m[row * 201 + col];
            assert!(
                (got - want).abs() <= 1e-7 + want.abs() * 1e-5,
                "[{row},{col}] got {got} want {want}"
            );
        }
    }

    #[test]
    fn scale_round_trips() {
        for f in [0.0, 300.0, 999.0, 1000.0, 3400.0, 8000.0] {
            assert!((mel_to_hz(hz_to_mel(f)) - f).abs() < 1e-9);
        }
    }
}
