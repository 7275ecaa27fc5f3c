//! Sample-rate conversion with rubato's FFT resampler, for whole clips. The resampler's
//! delay is trimmed so output sample `n` lines up with input time `n / rate_out`.

use rubato::{FftFixedIn, Resampler};

use super::AsrError;

const CHUNK: usize = 1024;

/// Convert mono audio from `from` Hz to `to` Hz. Output length is `len × to / from`.
pub fn resample(input: &[f32], from: u32, to: u32) -> Result<Vec<f32>, AsrError> {
    if from == to {
        return Ok(input.to_vec());
    }
    if from == 0 || to == 0 {
        return Err(AsrError::BadAudio(format!("sample rate {from} → {to}")));
    }
    let mut r = FftFixedIn::<f32>::new(from as usize, to as usize, CHUNK, 2, 1)
        .map_err(|e| AsrError::BadAudio(format!("resampler: {e}")))?;
    let want = (input.len() as u64 * u64::from(to) / u64::from(from)) as usize;
    let delay = r.output_delay();
    let mut out = Vec::with_capacity(want + delay + CHUNK * 4);
    let mut pos = 0;
    let err = |e: rubato::ResampleError| AsrError::BadAudio(format!("resampler: {e}"));
    while pos + r.input_frames_next() <= input.len() {
        let n = r.input_frames_next();
        let o = r.process(&[&input[pos..pos + n]], None).map_err(err)?;
        out.extend_from_slice(&o[0]);
        pos += n;
    }
    // The tail, then zeros until the delayed output has caught up.
    if pos < input.len() {
        let o = r
            .process_partial(Some(&[&input[pos..]]), None)
            .map_err(err)?;
        out.extend_from_slice(&o[0]);
    }
    while out.len() < want + delay {
        let o = r.process_partial::<&[f32]>(None, None).map_err(err)?;
        if o[0].is_empty() {
            break;
        }
        out.extend_from_slice(&o[0]);
    }
    let end = (delay + want).min(out.len());
    Ok(out[delay.min(end)..end].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsampling_keeps_length_and_phase() {
        let f = 300.0;
        let x: Vec<f32> = (0..8000)
            .map(|i| (2.0 * std::f32::consts::PI * f * i as f32 / 8000.0).sin())
            .collect();
        let y = resample(&x, 8000, 16000).expect("resample");
        assert_eq!(y.len(), 16000);
        // Away from the edges the output is the same sine at 16 kHz.
        for n in (2000..14000).step_by(997) {
            let want = (2.0 * std::f32::consts::PI * f * n as f32 / 16000.0).sin();
            assert!((y[n] - want).abs() < 0.02, "n={n} {} vs {want}", y[n]);
        }
    }

    #[test]
    fn odd_rates_and_short_input() {
        assert_eq!(resample(&[0.0; 441], 44100, 16000).expect("ok").len(), 160);
        assert_eq!(resample(&[], 8000, 16000).expect("ok").len(), 0);
        // A whole number of resampler chunks leaves no tail.
        assert_eq!(
            resample(&[0.1; 2 * CHUNK], 8000, 16000).expect("ok").len(),
            4 * CHUNK
        );
        assert_eq!(resample(&[0.5; 3], 16000, 16000).expect("ok"), vec![0.5; 3]);
        assert!(resample(&[0.0; 3], 0, 16000).is_err());
    }
}
