//! The learned second opinion: a logistic-regression model over hashed word and character
//! n-grams ([`super::features`]), trained by `scamscreen train` (`make train`, see
//! [`super::train`]) and shipped as `models/rules/linear.model` beside the rule packs.
//!
//! File format (little endian): magic `SSLM`, u32 version (1), u32 hash bits, f32 bias,
//! u32 length + UTF-8 JSON metadata (how it was trained), u32 count, then `count` pairs of
//! (u32 bucket, f32 weight) in ascending bucket order. Buckets not listed weigh 0.

use std::path::Path;

use super::features::for_each_feature;
use super::normalize::Token;
use super::pattern::is_function_word;

const MAGIC: &[u8; 4] = b"SSLM";
const VERSION: u32 = 1;

/// A trained linear model.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearModel {
    pub bits: u32,
    pub bias: f32,
    /// Dense weights, `2^bits` long.
    pub weights: Vec<f32>,
    /// How the model was trained (corpus hash, items, parameters), as JSON text.
    pub metadata: String,
}

/// What the model says about a text.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModelOpinion {
    /// Log-odds of "scam".
    pub logit: f64,
    /// The words of the text that pushed hardest towards "scam", strongest first.
    pub phrases: Vec<String>,
}

/// The model's running sums over a growing transcript (see [`LinearModel::accumulate`]).
#[derive(Debug, Clone, Default)]
pub struct Accumulator {
    /// Feature counts by bucket.
    counts: std::collections::HashMap<u32, f64>,
    /// The words of word features, for explanations.
    words: std::collections::HashMap<u32, String>,
    /// Σ weight·count and Σ count² (the vector is scaled to unit length when read).
    dot: f64,
    sumsq: f64,
    /// The last word so far (the next update's first bigram starts with it).
    last: Option<String>,
}

/// Errors reading a model file.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read model {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("model {path}: {why}")]
    Format { path: String, why: String },
}

impl LinearModel {
    /// An untrained model (all weights 0).
    pub fn zeros(bits: u32) -> Self {
        LinearModel {
            bits,
            bias: 0.0,
            weights: vec![0.0; 1 << bits],
            metadata: "{}".into(),
        }
    }

    /// The opinion on `tokens`, with up to `top` phrases that count most towards "scam".
    pub fn opinion(&self, tokens: &[Token], top: usize) -> ModelOpinion {
        let mut acc = Accumulator::default();
        self.accumulate(&mut acc, tokens);
        self.opinion_of(&acc, top)
    }

    /// Add the features of `tokens`, which follow the ones already in `acc` (a transcript that
    /// grows: each update costs only its own words).
    pub fn accumulate(&self, acc: &mut Accumulator, tokens: &[Token]) {
        let prev = acc.last.take();
        for_each_feature(prev.as_deref(), tokens, self.bits, |b, words| {
            let c = acc.counts.entry(b).or_insert(0.0);
            // (c+1)² − c² = 2c + 1
            acc.sumsq += 2.0 * *c + 1.0;
            *c += 1.0;
            acc.dot += f64::from(self.weights[b as usize]);
            if let Some(w) = words {
                acc.words.entry(b).or_insert_with(|| w.text());
            }
        });
        acc.last = tokens.last().map(|t| t.text.clone()).or(prev);
    }

    /// The opinion on everything accumulated so far.
    pub fn opinion_of(&self, acc: &Accumulator, top: usize) -> ModelOpinion {
        let norm = acc.sumsq.sqrt();
        if norm == 0.0 {
            return ModelOpinion {
                logit: f64::from(self.bias),
                phrases: Vec::new(),
            };
        }
        let logit = f64::from(self.bias) + acc.dot / norm;
        // Function words say nothing a listener could check ("a", "the").
        let telling = |w: &str| w.split(' ').any(|x| x.len() > 2 && !is_function_word(x));
        let mut words: Vec<(f64, &str)> = acc
            .words
            .iter()
            .filter_map(|(b, w)| {
                let c = f64::from(self.weights[*b as usize]) * acc.counts[b] / norm;
                (c > 0.02 && telling(w)).then_some((c, w.as_str()))
            })
            .collect();
        words.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
        let mut phrases: Vec<String> = Vec::new();
        for (_, w) in words {
            // A bigram covers its words: do not list "press" after "press one".
            if phrases
                .iter()
                .any(|p| p.contains(w) || w.contains(p.as_str()))
            {
                continue;
            }
            phrases.push(w.to_string());
            if phrases.len() == top {
                break;
            }
        }
        ModelOpinion { logit, phrases }
    }

    /// Serialise (only non-zero weights).
    pub fn to_bytes(&self) -> Vec<u8> {
        let nz: Vec<(u32, f32)> = self
            .weights
            .iter()
            .enumerate()
            .filter(|(_, w)| **w != 0.0)
            .map(|(i, w)| (i as u32, *w))
            .collect();
        let mut out = Vec::with_capacity(24 + self.metadata.len() + nz.len() * 8);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.bits.to_le_bytes());
        out.extend_from_slice(&self.bias.to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u32).to_le_bytes());
        out.extend_from_slice(self.metadata.as_bytes());
        out.extend_from_slice(&(nz.len() as u32).to_le_bytes());
        for (i, w) in nz {
            out.extend_from_slice(&i.to_le_bytes());
            out.extend_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// Parse a model file's bytes; `path` names it in errors.
    pub fn from_bytes(bytes: &[u8], path: &str) -> Result<Self, ModelError> {
        let bad = |why: &str| ModelError::Format {
            path: path.to_string(),
            why: why.to_string(),
        };
        let mut r = Reader { bytes, at: 0 };
        if r.take(4).ok_or_else(|| bad("truncated header"))? != MAGIC {
            return Err(bad("not a scamscreen linear model (magic)"));
        }
        let version = r.u32().ok_or_else(|| bad("truncated header"))?;
        if version != VERSION {
            return Err(bad(&format!(
                "version {version}, this scamscreen reads {VERSION}"
            )));
        }
        let bits = r.u32().ok_or_else(|| bad("truncated header"))?;
        if !(8..=24).contains(&bits) {
            return Err(bad(&format!("hash bits {bits} outside 8..=24")));
        }
        let bias = r.f32().ok_or_else(|| bad("truncated header"))?;
        let meta_len = r.u32().ok_or_else(|| bad("truncated header"))? as usize;
        let metadata = String::from_utf8(
            r.take(meta_len)
                .ok_or_else(|| bad("truncated metadata"))?
                .to_vec(),
        )
        .map_err(|_| bad("metadata is not UTF-8"))?;
        let count = r.u32().ok_or_else(|| bad("truncated weights"))? as usize;
        let mut weights = vec![0.0f32; 1 << bits];
        for _ in 0..count {
            let (i, w) = r
                .u32()
                .zip(r.f32())
                .ok_or_else(|| bad("truncated weights"))?;
            let slot = weights
                .get_mut(i as usize)
                .ok_or_else(|| bad(&format!("bucket {i} outside 2^{bits}")))?;
            if !w.is_finite() {
                return Err(bad(&format!("weight of bucket {i} is not finite")));
            }
            *slot = w;
        }
        if r.at != bytes.len() {
            return Err(bad("trailing bytes"));
        }
        if !bias.is_finite() {
            return Err(bad("bias is not finite"));
        }
        Ok(LinearModel {
            bits,
            bias,
            weights,
            metadata,
        })
    }

    /// Load a model file.
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
            path: name.clone(),
            source,
        })?;
        Self::from_bytes(&bytes, &name)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn f32(&mut self) -> Option<f32> {
        Some(f32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::super::features::extract;
    use super::super::normalize::tokenize;
    use super::*;

    #[test]
    fn round_trips_and_rejects_damage() {
        let mut m = LinearModel::zeros(10);
        m.bias = -1.5;
        m.weights[3] = 0.25;
        m.weights[1000] = -2.0;
        m.metadata = "{\"items\":2}".into();
        let bytes = m.to_bytes();
        assert_eq!(LinearModel::from_bytes(&bytes, "m").expect("parses"), m);
        for cut in [0, 3, 10, 20, bytes.len() - 1] {
            assert!(
                LinearModel::from_bytes(&bytes[..cut], "m").is_err(),
                "{cut}"
            );
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(LinearModel::from_bytes(&extra, "m").is_err());
        let mut magic = bytes.clone();
        magic[0] = b'X';
        let e = LinearModel::from_bytes(&magic, "m.bin").expect_err("magic");
        assert!(e.to_string().contains("m.bin"), "{e}");
    }

    #[test]
    fn incremental_opinion_equals_the_whole_transcript() {
        let mut m = LinearModel::zeros(16);
        for (i, w) in m.weights.iter_mut().enumerate() {
            *w = ((i % 7) as f32 - 3.0) * 0.1;
        }
        m.bias = -0.5;
        let toks = tokenize("hello this is the tax office press one now to speak to an officer");
        let whole = m.opinion(&toks, 3);
        let mut acc = Accumulator::default();
        for chunk in toks.chunks(3) {
            m.accumulate(&mut acc, chunk);
        }
        let parts = m.opinion_of(&acc, 3);
        assert!(
            (whole.logit - parts.logit).abs() < 1e-9,
            "{whole:?} {parts:?}"
        );
        assert_eq!(whole.phrases, parts.phrases);
        // And both equal the training-side computation.
        let direct = f64::from(m.bias)
            + extract(&toks, 16)
                .iter()
                .map(|f| f64::from(m.weights[f.bucket as usize] * f.value))
                .sum::<f64>();
        assert!(
            (whole.logit - direct).abs() < 1e-5,
            "{} {direct}",
            whole.logit
        );
    }

    #[test]
    fn opinion_names_the_words_that_count() {
        let mut m = LinearModel::zeros(18);
        let toks = tokenize("please press one now");
        for_each_feature(None, &toks, 18, |b, w| {
            if w.is_some_and(|w| w.text() == "press one") {
                m.weights[b as usize] = 3.0;
            }
        });
        let o = m.opinion(&toks, 3);
        assert!(o.logit > 0.3, "{o:?}");
        assert_eq!(o.phrases, vec!["press one".to_string()]);
    }
}
