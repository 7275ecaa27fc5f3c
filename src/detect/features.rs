//! Text → hashed n-gram features for the learned second opinion ([`super::linear`]).
//!
//! Features are counted over the folded tokens of [`super::normalize`]: word unigrams and
//! bigrams (what was said) and character 3–5-grams inside each word with boundary marks (how
//! it sounds when a recogniser garbles it: "team newer" still shares "<te", "ewer>"...). Each
//! feature name is hashed (FNV-1a, 64 bit) into `2^bits` buckets; the vector is scaled to unit
//! length so a long monologue and a short opening weigh alike.

use super::normalize::Token;

/// Buckets of the hashed feature space (2^18).
pub const DEFAULT_BITS: u32 = 18;
const CHAR_NGRAMS: std::ops::RangeInclusive<usize> = 3..=5;

/// One feature of a text: its bucket and its (normalised) value.
#[derive(Debug, Clone, PartialEq)]
pub struct Feature {
    pub bucket: u32,
    pub value: f32,
}

fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in *p {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

fn bucket(bits: u32, parts: &[&[u8]]) -> u32 {
    (fnv1a(parts) & ((1u64 << bits) - 1)) as u32
}

/// Calls `f(bucket, words)` for every feature occurrence of `tokens`, where `prev` is the word
/// before them (for the bigram across an update's boundary). `words` names word features
/// ("press", "press one"); character n-grams get `None`. The one definition of the features,
/// used by training ([`extract`]) and by incremental scoring ([`super::linear::Accumulator`]).
pub fn for_each_feature(
    prev: Option<&str>,
    tokens: &[Token],
    bits: u32,
    mut f: impl FnMut(u32, Option<WordFeature<'_>>),
) {
    let mut before = prev;
    let mut buf = String::new();
    for t in tokens {
        let w = t.text.as_bytes();
        f(bucket(bits, &[b"w:", w]), Some(WordFeature::One(&t.text)));
        if let Some(p) = before {
            f(
                bucket(bits, &[b"b:", p.as_bytes(), b" ", w]),
                Some(WordFeature::Two(p, &t.text)),
            );
        }
        before = Some(&t.text);
        let chars: Vec<char> = std::iter::once('<')
            .chain(t.text.chars())
            .chain(std::iter::once('>'))
            .collect();
        for n in CHAR_NGRAMS {
            for win in chars.windows(n) {
                buf.clear();
                buf.extend(win);
                f(bucket(bits, &[b"c:", buf.as_bytes()]), None);
            }
        }
    }
}

/// The words of a word feature.
#[derive(Debug, Clone, Copy)]
pub enum WordFeature<'a> {
    One(&'a str),
    Two(&'a str, &'a str),
}

impl WordFeature<'_> {
    pub fn text(&self) -> String {
        match self {
            WordFeature::One(a) => (*a).to_string(),
            WordFeature::Two(a, b) => format!("{a} {b}"),
        }
    }
}

/// The feature vector of `tokens`, sorted by bucket, duplicates summed, unit length (what the
/// model is trained on).
pub fn extract(tokens: &[Token], bits: u32) -> Vec<Feature> {
    let mut raw: Vec<u32> = Vec::with_capacity(tokens.len() * 12);
    for_each_feature(None, tokens, bits, |b, _| raw.push(b));
    raw.sort_unstable();
    let mut out: Vec<Feature> = Vec::with_capacity(raw.len());
    for b in raw {
        match out.last_mut() {
            Some(last) if last.bucket == b => last.value += 1.0,
            _ => out.push(Feature {
                bucket: b,
                value: 1.0,
            }),
        }
    }
    let norm = out.iter().map(|f| f.value * f.value).sum::<f32>().sqrt();
    if norm > 0.0 {
        for f in &mut out {
            f.value /= norm;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::normalize::tokenize;
    use super::*;

    #[test]
    fn features_are_unit_length_sorted_and_name_their_words() {
        let toks = tokenize("Press one, press ONE now");
        let f = extract(&toks, 18);
        let norm: f32 = f.iter().map(|x| x.value * x.value).sum();
        assert!((norm - 1.0).abs() < 1e-5);
        assert!(f.windows(2).all(|w| w[0].bucket < w[1].bucket));
        let mut named = Vec::new();
        for_each_feature(None, &toks, 18, |b, w| {
            if let Some(w) = w {
                named.push((b, w.text()));
            }
        });
        let (bigram, _) = named
            .iter()
            .find(|(_, w)| w == "press one")
            .expect("the bigram is named");
        assert!(f.iter().any(|x| x.bucket == *bigram));
        assert!(f.iter().all(|x| x.bucket < 1 << 18));
        assert!(extract(&[], 18).is_empty());
    }

    #[test]
    fn garbled_names_share_character_features() {
        let a = extract(&tokenize("teamviewer"), 18);
        let b = extract(&tokenize("teamnewer"), 18);
        let shared = a
            .iter()
            .filter(|x| b.iter().any(|y| y.bucket == x.bucket))
            .count();
        assert!(shared >= 5, "{shared}");
    }
}
