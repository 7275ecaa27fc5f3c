//! Training the learned second opinion ([`super::linear`]): L2-regularised logistic
//! regression, full-batch gradient descent with AdaGrad steps, classes weighted to count
//! equally. No randomness and a fixed summation order, so the same corpus and parameters give
//! the same bytes (`make train` twice → one file; a test checks the shipped model).

use super::features::{extract, Feature};
use super::linear::LinearModel;
use super::normalize::tokenize;

/// Training parameters (all in the model's metadata).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct TrainParams {
    pub bits: u32,
    pub iterations: usize,
    pub learning_rate: f64,
    /// L2 penalty per weight (on the mean loss).
    pub l2: f64,
    /// Weights smaller than this are dropped from the file.
    pub prune: f64,
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            bits: super::features::DEFAULT_BITS,
            iterations: 300,
            learning_rate: 0.3,
            l2: 1e-5,
            prune: 2e-3,
        }
    }
}

/// One training example.
#[derive(Debug, Clone)]
pub struct Example<'a> {
    pub text: &'a str,
    pub scam: bool,
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Train on `examples`; `metadata` (JSON object text) is stored with the model, with the
/// parameters added.
pub fn train(
    examples: &[Example],
    params: TrainParams,
    metadata: serde_json::Value,
) -> LinearModel {
    let feats: Vec<Vec<Feature>> = examples
        .iter()
        .map(|e| extract(&tokenize(e.text), params.bits))
        .collect();
    let n = examples.len().max(1) as f64;
    let pos = examples.iter().filter(|e| e.scam).count().max(1) as f64;
    let neg = (examples.len() as f64 - pos).max(1.0);
    let class_w = |scam: bool| {
        if scam {
            n / (2.0 * pos)
        } else {
            n / (2.0 * neg)
        }
    };
    let dim = 1usize << params.bits;
    let mut touched: Vec<usize> = feats.iter().flatten().map(|f| f.bucket as usize).collect();
    touched.sort_unstable();
    touched.dedup();
    let mut w = vec![0.0f64; dim];
    let mut grad = vec![0.0f64; dim];
    let mut hist = vec![0.0f64; dim];
    let (mut bias, mut bias_hist) = (0.0f64, 0.0f64);
    for _ in 0..params.iterations {
        for &j in &touched {
            grad[j] = params.l2 * w[j];
        }
        let mut bias_grad = 0.0;
        for (e, fs) in examples.iter().zip(&feats) {
            let z = bias
                + fs.iter()
                    .map(|f| w[f.bucket as usize] * f64::from(f.value))
                    .sum::<f64>();
            let err = class_w(e.scam) * (sigmoid(z) - f64::from(u8::from(e.scam))) / n;
            bias_grad += err;
            for f in fs {
                grad[f.bucket as usize] += err * f64::from(f.value);
            }
        }
        for &j in &touched {
            hist[j] += grad[j] * grad[j];
            w[j] -= params.learning_rate * grad[j] / (hist[j].sqrt() + 1e-8);
        }
        bias_hist += bias_grad * bias_grad;
        bias -= params.learning_rate * bias_grad / (bias_hist.sqrt() + 1e-8);
    }
    let mut meta = match metadata {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    meta.insert(
        "params".into(),
        serde_json::to_value(params).unwrap_or(serde_json::Value::Null),
    );
    meta.insert("examples".into(), examples.len().into());
    meta.insert("scam_examples".into(), (pos as usize).into());
    LinearModel {
        bits: params.bits,
        bias: bias as f32,
        weights: w
            .iter()
            .map(|x| {
                if x.abs() < params.prune {
                    0.0
                } else {
                    *x as f32
                }
            })
            .collect(),
        metadata: serde_json::Value::Object(meta).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn examples() -> Vec<Example<'static>> {
        let scam = [
            "press one to speak to an agent about your warrant",
            "your computer has a virus install anydesk",
            "buy gift cards and read me the numbers",
            "you have won a free cruise press one",
        ];
        let legit = [
            "your prescription is ready for pickup",
            "hi mum it's me calling from work about dinner",
            "the plumber will come on tuesday morning",
            "your appointment with doctor smith is confirmed",
        ];
        scam.iter()
            .map(|t| Example {
                text: t,
                scam: true,
            })
            .chain(legit.iter().map(|t| Example {
                text: t,
                scam: false,
            }))
            .collect()
    }

    #[test]
    fn learns_separable_examples_deterministically() {
        let p = TrainParams {
            bits: 14,
            iterations: 100,
            ..TrainParams::default()
        };
        let a = train(&examples(), p, serde_json::json!({"corpus": "t"}));
        let b = train(&examples(), p, serde_json::json!({"corpus": "t"}));
        assert_eq!(a.to_bytes(), b.to_bytes(), "deterministic");
        for e in examples() {
            let z = a.opinion(&tokenize(e.text), 3).logit;
            assert_eq!(z > 0.0, e.scam, "{} → {z}", e.text);
        }
        assert!(a.metadata.contains("\"corpus\":\"t\""), "{}", a.metadata);
        assert!(a.metadata.contains("iterations"), "{}", a.metadata);
    }
}
