//! G.711 (ITU-T Recommendation G.711, 1988): µ-law (PCMU) and A-law (PCMA), the two codecs
//! scamscreen speaks on the telephone side. One byte per sample at 8 kHz, so a 20 ms packet
//! carries 160 bytes (RFC 3551 §4.5.14).
//!
//! The per-sample functions are the classic segment/mantissa algorithms (as in the public
//! domain Sun `g711.c`): encoders take 16-bit linear PCM, decoders return it. Decoding goes
//! through 256-entry tables built at compile time.

/// Clock rate of both G.711 laws (RFC 3551 §6, Table 4).
pub const CLOCK_RATE: u32 = 8000;

/// A G.711 law.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// µ-law, static payload type 0.
    Pcmu,
    /// A-law, static payload type 8.
    Pcma,
}

impl Codec {
    /// The static payload type of RFC 3551 §6 (0 for PCMU, 8 for PCMA).
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The encoding name used in `a=rtpmap` ("PCMU" / "PCMA").
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// The codec with this encoding name (case-insensitive, RFC 4566 §6 `rtpmap`).
    pub fn from_name(name: &str) -> Option<Codec> {
        if name.eq_ignore_ascii_case("PCMU") {
            Some(Codec::Pcmu)
        } else if name.eq_ignore_ascii_case("PCMA") {
            Some(Codec::Pcma)
        } else {
            None
        }
    }

    /// The codec a static payload type stands for when no `a=rtpmap` says otherwise.
    pub fn from_static_payload_type(pt: u8) -> Option<Codec> {
        match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        }
    }

    /// Clock rate in Hz (always 8000).
    pub fn clock_rate(self) -> u32 {
        CLOCK_RATE
    }

    /// The byte that encodes digital silence (linear 0).
    pub fn silence_byte(self) -> u8 {
        match self {
            Codec::Pcmu => 0xFF,
            Codec::Pcma => 0xD5,
        }
    }

    /// Encode linear PCM, one byte per sample.
    pub fn encode(self, pcm: &[i16]) -> Vec<u8> {
        match self {
            Codec::Pcmu => pcm.iter().map(|&s| ulaw_encode(s)).collect(),
            Codec::Pcma => pcm.iter().map(|&s| alaw_encode(s)).collect(),
        }
    }

    /// Decode to linear PCM, one sample per byte. Every byte is valid.
    pub fn decode(self, bytes: &[u8]) -> Vec<i16> {
        let table = match self {
            Codec::Pcmu => &ULAW_DECODE,
            Codec::Pcma => &ALAW_DECODE,
        };
        bytes.iter().map(|&b| table[usize::from(b)]).collect()
    }

    /// Re-encode a payload from `self` to `to` (decode then encode, sample by sample).
    pub fn transcode(self, to: Codec, bytes: &[u8]) -> Vec<u8> {
        match (self, to) {
            (Codec::Pcmu, Codec::Pcmu) | (Codec::Pcma, Codec::Pcma) => bytes.to_vec(),
            (Codec::Pcmu, Codec::Pcma) => {
                bytes.iter().map(|&b| alaw_encode(ulaw_decode(b))).collect()
            }
            (Codec::Pcma, Codec::Pcmu) => {
                bytes.iter().map(|&b| ulaw_encode(alaw_decode(b))).collect()
            }
        }
    }
}

/// µ-law bias added before the segment search (G.711 Table 2a: 33 in 14-bit units, ×4).
const ULAW_BIAS: i32 = 0x84;
/// Largest magnitude µ-law can represent before the bias would overflow 15 bits.
const ULAW_CLIP: i32 = 32635;

/// Encode one sample to µ-law.
pub fn ulaw_encode(sample: i16) -> u8 {
    let mut x = i32::from(sample);
    let sign = if x < 0 {
        x = -x;
        0x80
    } else {
        0x00
    };
    let x = x.min(ULAW_CLIP) + ULAW_BIAS;
    // Segment = position of the highest set bit above bit 7 (0..=7).
    let exponent = (31 - x.leading_zeros() as i32 - 7).clamp(0, 7);
    let mantissa = (x >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) as u8 | mantissa as u8)
}

/// Decode one µ-law byte.
pub fn ulaw_decode(byte: u8) -> i16 {
    ULAW_DECODE[usize::from(byte)]
}

const fn ulaw_decode_calc(byte: u8) -> i16 {
    let u = !byte;
    let exponent = ((u >> 4) & 0x07) as i32;
    let mantissa = (u & 0x0F) as i32;
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// Encode one sample to A-law.
pub fn alaw_encode(sample: i16) -> u8 {
    // A-law works on 13-bit magnitudes; negative values are one's-complemented.
    let mut x = i32::from(sample) >> 3;
    let mask = if x >= 0 {
        0xD5
    } else {
        x = -x - 1;
        0x55
    };
    // Segment ends for the 13-bit magnitude.
    const SEG_END: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
    let Some(segment) = SEG_END.iter().position(|&end| x <= end) else {
        return 0x7F ^ mask;
    };
    let shift = if segment < 2 { 1 } else { segment as i32 };
    let value = ((segment as i32) << 4) | ((x >> shift) & 0x0F);
    (value as u8) ^ mask
}

/// Decode one A-law byte.
pub fn alaw_decode(byte: u8) -> i16 {
    ALAW_DECODE[usize::from(byte)]
}

const fn alaw_decode_calc(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let mut t = ((a & 0x0F) as i32) << 4;
    let segment = ((a & 0x70) >> 4) as i32;
    match segment {
        0 => t += 8,
        1 => t += 0x108,
        _ => t = (t + 0x108) << (segment - 1),
    }
    if a & 0x80 != 0 {
        t as i16
    } else {
        -t as i16
    }
}

const fn table(alaw: bool) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if alaw {
            alaw_decode_calc(i as u8)
        } else {
            ulaw_decode_calc(i as u8)
        };
        i += 1;
    }
    t
}

static ULAW_DECODE: [i16; 256] = table(false);
static ALAW_DECODE: [i16; 256] = table(true);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_decode(0x2A), -32256);
        assert_eq!(Codec::Pcmu.silence_byte(), ulaw_encode(0));
        assert_eq!(Codec::Pcma.silence_byte(), alaw_encode(0));
    }

    #[test]
    fn round_trip_error_is_within_half_a_step() {
        for s in i16::MIN..=i16::MAX {
            let x = i32::from(s);
            let u = i32::from(ulaw_decode(ulaw_encode(s)));
            let a = i32::from(alaw_decode(alaw_encode(s)));
            // Steps double per segment: half a step is at most ~1/32 of the magnitude.
            let bound = (x.abs() + 132) / 32 + 1;
            assert!((x - u).abs() <= bound, "µ-law {s} → {u}");
            assert!((x - a).abs() <= bound.max(16), "A-law {s} → {a}");
            // Signs survive (zero may come back as a small value of either sign).
            if x.abs() > 16 {
                assert_eq!(x.signum(), u.signum(), "µ-law sign {s}");
                assert_eq!(x.signum(), a.signum(), "A-law sign {s}");
            }
        }
    }

    #[test]
    fn every_code_decodes_and_re_encodes_to_itself() {
        for b in 0..=255u8 {
            assert_eq!(alaw_encode(alaw_decode(b)), b, "A-law {b:#x}");
            // µ-law has two zeros (0xFF and 0x7F); 0x7F comes back as 0xFF.
            let want = if b == 0x7F { 0xFF } else { b };
            assert_eq!(ulaw_encode(ulaw_decode(b)), want, "µ-law {b:#x}");
        }
        // µ-law decoding is monotonic: 0x00 is the most negative code, 0x7F and 0xFF are
        // zero, 0x80 is the most positive.
        let order: Vec<i16> = (0x00..=0x7Fu8)
            .chain((0x80..=0xFFu8).rev())
            .map(ulaw_decode)
            .collect();
        assert!(order.windows(2).all(|w| w[0] <= w[1]));
        let mut a: Vec<i16> = (0..=255u8).map(alaw_decode).collect();
        a.sort_unstable();
        a.dedup();
        assert_eq!(a.len(), 256, "A-law has no duplicate codes");
    }

    #[test]
    fn codec_helpers() {
        assert_eq!(Codec::Pcmu.payload_type(), 0);
        assert_eq!(Codec::Pcma.payload_type(), 8);
        assert_eq!(Codec::from_name("pcma"), Some(Codec::Pcma));
        assert_eq!(Codec::from_name("G729"), None);
        assert_eq!(Codec::from_static_payload_type(0), Some(Codec::Pcmu));
        assert_eq!(Codec::from_static_payload_type(18), None);
        let pcm: Vec<i16> = (0..160).map(|i| (i * 200 - 16000) as i16).collect();
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let bytes = codec.encode(&pcm);
            assert_eq!(bytes.len(), 160);
            assert_eq!(codec.decode(&bytes).len(), 160);
            assert_eq!(codec.transcode(codec, &bytes), bytes);
        }
        let u = Codec::Pcmu.encode(&pcm);
        let a = Codec::Pcmu.transcode(Codec::Pcma, &u);
        let back = Codec::Pcma.decode(&a);
        for (x, y) in pcm.iter().zip(back) {
            let x = i32::from(*x);
            assert!(
                (x - i32::from(y)).abs() <= (x.abs() + 132) / 16 + 16,
                "{x} {y}"
            );
        }
    }
}
