//! ggml block quantisation of weight rows, written to ggml's reference layouts
//! (`quantize_row_q8_0_ref`, `quantize_row_q5_0_ref`): blocks of 32 values.

/// Values per block for both formats.
pub const BLOCK: usize = 32;

/// Output format of the big weight matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightFormat {
    /// 16-bit floats, as the model ships.
    F16,
    /// 8-bit blocks (34 bytes per 32 weights).
    #[value(name = "q8_0")]
    Q8_0,
    /// 5-bit blocks (22 bytes per 32 weights).
    #[value(name = "q5_0")]
    Q5_0,
}

impl WeightFormat {
    /// Every format.
    pub const ALL: [WeightFormat; 3] = [WeightFormat::F16, WeightFormat::Q8_0, WeightFormat::Q5_0];

    /// The name on the command line and in records: `f16`, `q8_0`, `q5_0`.
    pub fn as_str(self) -> &'static str {
        match self {
            WeightFormat::F16 => "f16",
            WeightFormat::Q8_0 => "q8_0",
            WeightFormat::Q5_0 => "q5_0",
        }
    }

    /// ggml's tensor type id for the weight matrices.
    pub fn ggml_type(self) -> u32 {
        match self {
            WeightFormat::F16 => 1,
            WeightFormat::Q5_0 => 6,
            WeightFormat::Q8_0 => 8,
        }
    }

    /// The file header's ftype: ggml's `GGML_FTYPE_*`, plus `GGML_QNT_VERSION (2) × 1000`
    /// for quantised files, as whisper.cpp's quantize tool writes it.
    pub fn header_ftype(self) -> i32 {
        match self {
            WeightFormat::F16 => 1,
            WeightFormat::Q8_0 => 2000 + 7,
            WeightFormat::Q5_0 => 2000 + 8,
        }
    }

    /// File name suffix: `ggml-tiny.en.bin`, `ggml-tiny.en-q8_0.bin`.
    pub fn suffix(self) -> &'static str {
        match self {
            WeightFormat::F16 => "",
            WeightFormat::Q8_0 => "-q8_0",
            WeightFormat::Q5_0 => "-q5_0",
        }
    }

    /// Encode values (a whole number of blocks for quantised formats).
    pub fn encode(self, values: &[f32], out: &mut Vec<u8>) {
        match self {
            WeightFormat::F16 => {
                for v in values {
                    out.extend_from_slice(&half::f16::from_f32(*v).to_le_bytes());
                }
            }
            WeightFormat::Q8_0 => values.chunks(BLOCK).for_each(|b| q8_0_block(b, out)),
            WeightFormat::Q5_0 => values.chunks(BLOCK).for_each(|b| q5_0_block(b, out)),
        }
    }
}

/// One q8_0 block: f16 scale `d = max|x| / 127`, then 32 × i8 `round(x / d)`.
fn q8_0_block(x: &[f32], out: &mut Vec<u8>) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&half::f16::from_f32(d).to_le_bytes());
    for i in 0..BLOCK {
        let v = x.get(i).copied().unwrap_or(0.0) * id;
        out.push(v.round() as i8 as u8);
    }
}

/// One q5_0 block: f16 scale `d = max / -16` (max = the value of largest magnitude), a u32 of
/// fifth bits, then 16 bytes of low nibbles (value j in the low, j+16 in the high nibble).
fn q5_0_block(x: &[f32], out: &mut Vec<u8>) {
    let get = |i: usize| x.get(i).copied().unwrap_or(0.0);
    let (mut amax, mut max) = (0f32, 0f32);
    for i in 0..BLOCK {
        let v = get(i);
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -16.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut qh: u32 = 0;
    let mut qs = [0u8; BLOCK / 2];
    for (j, q) in qs.iter_mut().enumerate() {
        let x0 = get(j) * id;
        let x1 = get(j + BLOCK / 2) * id;
        let xi0 = ((x0 + 16.5) as i8).min(31) as u8;
        let xi1 = ((x1 + 16.5) as i8).min(31) as u8;
        *q = (xi0 & 0x0F) | ((xi1 & 0x0F) << 4);
        qh |= u32::from((xi0 & 0x10) >> 4) << j;
        qh |= u32::from((xi1 & 0x10) >> 4) << (j + BLOCK / 2);
    }
    out.extend_from_slice(&half::f16::from_f32(d).to_le_bytes());
    out.extend_from_slice(&qh.to_le_bytes());
    out.extend_from_slice(&qs);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dequant_q8_0(b: &[u8]) -> Vec<f32> {
        let d = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
        b[2..34].iter().map(|&q| q as i8 as f32 * d).collect()
    }

    fn dequant_q5_0(b: &[u8]) -> Vec<f32> {
        let d = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        let qs = &b[6..22];
        let mut out = vec![0f32; 32];
        for j in 0..16 {
            let h0 = ((qh >> j) & 1) << 4;
            let h1 = ((qh >> (j + 16)) & 1) << 4;
            out[j] = ((u32::from(qs[j] & 0x0F) | h0) as i32 - 16) as f32 * d;
            out[j + 16] = ((u32::from(qs[j] >> 4) | h1) as i32 - 16) as f32 * d;
        }
        out
    }

    fn sample() -> Vec<f32> {
        (0..64)
            .map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0)
            .collect()
    }

    #[test]
    fn q8_0_layout_and_round_trip() {
        let x = sample();
        let mut out = Vec::new();
        WeightFormat::Q8_0.encode(&x, &mut out);
        assert_eq!(out.len(), 2 * 34);
        for (blk, xs) in out.chunks(34).zip(x.chunks(32)) {
            let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (a, b) in dequant_q8_0(blk).iter().zip(xs) {
                assert!((a - b).abs() <= amax / 127.0, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn q5_0_layout_and_round_trip() {
        let x = sample();
        let mut out = Vec::new();
        WeightFormat::Q5_0.encode(&x, &mut out);
        assert_eq!(out.len(), 2 * 22);
        for (blk, xs) in out.chunks(22).zip(x.chunks(32)) {
            let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (a, b) in dequant_q5_0(blk).iter().zip(xs) {
                assert!((a - b).abs() <= amax / 16.0 + 1e-6, "{a} vs {b}");
            }
        }
    }

    /// Bytes worked out by hand from ggml's `quantize_row_q5_0_ref`: the value of largest
    /// magnitude is -1, so d = -1 / -16 = 0.0625 (f16 0x2C00); -1 → 0 (fifth bit 0), every 0 →
    /// 16 (low nibble 0, fifth bit 1).
    #[test]
    fn q5_0_matches_ggml_reference_bytes() {
        let mut x = [0f32; 32];
        x[0] = -1.0;
        let mut out = Vec::new();
        WeightFormat::Q5_0.encode(&x, &mut out);
        assert_eq!(out.len(), 22);
        assert_eq!(&out[0..2], &[0x00, 0x2C]);
        assert_eq!(&out[2..6], &0xFFFF_FFFEu32.to_le_bytes());
        assert!(out[6..].iter().all(|&b| b == 0));
        // Largest magnitude positive: d = 2 / -16 = -0.125, 2 → 0, -2 → 32 clamps to 31.
        let mut y = [0f32; 32];
        y[0] = 2.0;
        y[16] = -2.0;
        let mut out = Vec::new();
        WeightFormat::Q5_0.encode(&y, &mut out);
        assert_eq!(half::f16::from_le_bytes([out[0], out[1]]).to_f32(), -0.125);
        let back = dequant_q5_0(&out);
        assert_eq!(back[0], 2.0);
        assert_eq!(back[16], -1.875);
        assert!(back[1..16].iter().all(|&v| v == 0.0));
    }

    #[test]
    fn q5_0_round_trip_on_weight_like_values() {
        // 8 blocks of a smooth, signed, weight-like spread; error per value within d / 2
        // (plus the clamp of the extreme opposite value).
        let x: Vec<f32> = (0..256).map(|i| ((i as f32) * 0.37).sin() * 0.08).collect();
        let mut out = Vec::new();
        WeightFormat::Q5_0.encode(&x, &mut out);
        assert_eq!(out.len(), 8 * 22);
        for (blk, xs) in out.chunks(22).zip(x.chunks(32)) {
            let d = half::f16::from_le_bytes([blk[0], blk[1]]).to_f32().abs();
            for (a, b) in dequant_q5_0(blk).iter().zip(xs) {
                assert!((a - b).abs() <= d * 1.01, "{a} vs {b} (d {d})");
            }
        }
    }

    #[test]
    fn names_and_ftypes() {
        let names: Vec<&str> = WeightFormat::ALL.iter().map(|f| f.as_str()).collect();
        assert_eq!(names, ["f16", "q8_0", "q5_0"]);
        for f in WeightFormat::ALL {
            use clap::ValueEnum;
            let v = f.to_possible_value().expect("value");
            assert_eq!(v.get_name(), f.as_str());
        }
        assert_eq!(WeightFormat::Q5_0.header_ftype(), 2008);
        assert_eq!(WeightFormat::Q5_0.ggml_type(), 6);
    }

    #[test]
    fn zero_block_is_all_zero() {
        let mut out = Vec::new();
        WeightFormat::Q8_0.encode(&[0.0; 32], &mut out);
        assert!(out.iter().all(|&b| b == 0));
    }
}
