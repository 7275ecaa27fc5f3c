//! CTranslate2 whisper → whisper.cpp ggml, from the facts in docs/model.md:
//! fused self-attention q/k/v in `self_attention/linear_0` (rows 0..d, d..2d, 2d..3d; the key
//! bias is zero and dropped), cross-attention query in `attention/linear_0`, fused key/value
//! in `attention/linear_1`, output in `attention/linear_2`.
//!
//! Tensor types follow whisper.cpp's loader: 2-D weight matrices and the token embedding in
//! the chosen [`WeightFormat`], convolution kernels in f16, everything else (biases, norms,
//! positional embeddings) in f32. Conv biases are stored as `[1, n_state]`.

use std::ops::Range;

use super::ct2::{Ct2Model, Variable};
use super::ggml::{GgmlWriter, HParams, TYPE_F16, TYPE_F32};
use super::quant::{WeightFormat, BLOCK};
use super::{mel, vocab, ModelError};

/// How a tensor is stored in the ggml file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Storage {
    F32,
    F16,
    Weight,
}

/// One output tensor: where its values come from in the CTranslate2 model.
#[derive(Debug, Clone)]
struct Planned {
    name: String,
    source: String,
    /// Rows of the source (dimension 0) this tensor takes; `None` = all.
    rows: Option<Range<usize>>,
    storage: Storage,
    /// Extra leading unit dimension (conv biases are `[n_state, 1]` in ggml's view).
    as_column: bool,
}

fn plan(name: impl Into<String>, source: impl Into<String>, storage: Storage) -> Planned {
    Planned {
        name: name.into(),
        source: source.into(),
        rows: None,
        storage,
        as_column: false,
    }
}

fn rows(mut p: Planned, r: Range<usize>) -> Planned {
    p.rows = Some(r);
    p
}

fn count_layers(m: &Ct2Model, prefix: &str) -> usize {
    (0..)
        .take_while(|i| {
            m.variables
                .contains_key(&format!("{prefix}/layer_{i}/ffn/linear_0/weight"))
        })
        .count()
}

fn scalar(m: &Ct2Model, name: &str) -> Result<i32, ModelError> {
    m.get(name)?
        .scalar_i64()
        .map(|v| v as i32)
        .ok_or_else(|| ModelError::NotCt2Whisper(format!("{name} is not a scalar")))
}

fn dim(v: &Variable, i: usize) -> Result<usize, ModelError> {
    v.dims
        .get(i)
        .copied()
        .ok_or_else(|| ModelError::NotCt2Whisper(format!("{} has shape {:?}", v.name, v.dims)))
}

/// Read the hyper-parameters from the variables' shapes.
pub fn hparams(m: &Ct2Model, format: WeightFormat) -> Result<HParams, ModelError> {
    let enc_pos = m.get("encoder/position_encodings/encodings")?;
    let dec_pos = m.get("decoder/position_encodings/encodings")?;
    let conv1 = m.get("encoder/conv1/weight")?;
    let emb = m.get("decoder/embeddings/weight")?;
    let h = HParams {
        n_vocab: dim(emb, 0)? as i32,
        n_audio_ctx: dim(enc_pos, 0)? as i32,
        n_audio_state: dim(enc_pos, 1)? as i32,
        n_audio_head: scalar(m, "encoder/num_heads")?,
        n_audio_layer: count_layers(m, "encoder") as i32,
        n_text_ctx: dim(dec_pos, 0)? as i32,
        n_text_state: dim(dec_pos, 1)? as i32,
        n_text_head: scalar(m, "decoder/num_heads")?,
        n_text_layer: count_layers(m, "decoder") as i32,
        n_mels: dim(conv1, 1)? as i32,
        ftype: format.header_ftype(),
    };
    if h.n_audio_layer == 0 || h.n_text_layer == 0 || h.n_audio_state != h.n_text_state {
        return Err(ModelError::NotCt2Whisper(format!(
            "unexpected shapes: {h:?}"
        )));
    }
    if format != WeightFormat::F16 && !(h.n_audio_state as usize).is_multiple_of(BLOCK) {
        return Err(ModelError::NotCt2Whisper(format!(
            "state size {} is not a multiple of {BLOCK}; use f16",
            h.n_audio_state
        )));
    }
    Ok(h)
}

/// The ordered list of output tensors.
fn tensor_plan(h: &HParams) -> Vec<Planned> {
    use Storage::*;
    let d = h.n_audio_state as usize;
    let mut p = Vec::new();
    p.push(plan(
        "encoder.positional_embedding",
        "encoder/position_encodings/encodings",
        F32,
    ));
    for c in ["conv1", "conv2"] {
        p.push(plan(
            format!("encoder.{c}.weight"),
            format!("encoder/{c}/weight"),
            F16,
        ));
        let mut b = plan(
            format!("encoder.{c}.bias"),
            format!("encoder/{c}/bias"),
            F32,
        );
        b.as_column = true;
        p.push(b);
    }
    let norm = |p: &mut Vec<Planned>, to: &str, from: &str| {
        p.push(plan(format!("{to}.weight"), format!("{from}/gamma"), F32));
        p.push(plan(format!("{to}.bias"), format!("{from}/beta"), F32));
    };
    let linear = |p: &mut Vec<Planned>, to: &str, from: &str| {
        p.push(plan(
            format!("{to}.weight"),
            format!("{from}/weight"),
            Weight,
        ));
        p.push(plan(format!("{to}.bias"), format!("{from}/bias"), F32));
    };
    // q, k, v from a fused projection starting at row block `first` (0 for qkv).
    let split = |p: &mut Vec<Planned>, to: &str, from: &str, parts: &[(&str, usize)]| {
        for &(part, block) in parts {
            let r = block * d..(block + 1) * d;
            let w = plan(
                format!("{to}.{part}.weight"),
                format!("{from}/weight"),
                Weight,
            );
            p.push(rows(w, r.clone()));
            if part != "key" {
                let b = plan(format!("{to}.{part}.bias"), format!("{from}/bias"), F32);
                p.push(rows(b, r));
            }
        }
    };
    // Blocks: self-attention and MLP in both stacks, cross-attention in the decoder's.
    let block = |p: &mut Vec<Planned>, side: &str, i: i32| {
        let (to, from) = (format!("{side}.blocks.{i}"), format!("{side}/layer_{i}"));
        let sa = format!("{from}/self_attention");
        norm(p, &format!("{to}.attn_ln"), &format!("{sa}/layer_norm"));
        let qkv = [("query", 0), ("key", 1), ("value", 2)];
        split(p, &format!("{to}.attn"), &format!("{sa}/linear_0"), &qkv);
        linear(p, &format!("{to}.attn.out"), &format!("{sa}/linear_1"));
        if side == "decoder" {
            let ca = format!("{from}/attention");
            norm(
                p,
                &format!("{to}.cross_attn_ln"),
                &format!("{ca}/layer_norm"),
            );
            linear(
                p,
                &format!("{to}.cross_attn.query"),
                &format!("{ca}/linear_0"),
            );
            let kv = [("key", 0), ("value", 1)];
            split(
                p,
                &format!("{to}.cross_attn"),
                &format!("{ca}/linear_1"),
                &kv,
            );
            linear(
                p,
                &format!("{to}.cross_attn.out"),
                &format!("{ca}/linear_2"),
            );
        }
        norm(
            p,
            &format!("{to}.mlp_ln"),
            &format!("{from}/ffn/layer_norm"),
        );
        linear(p, &format!("{to}.mlp.0"), &format!("{from}/ffn/linear_0"));
        linear(p, &format!("{to}.mlp.2"), &format!("{from}/ffn/linear_1"));
    };
    for i in 0..h.n_audio_layer {
        block(&mut p, "encoder", i);
    }
    norm(&mut p, "encoder.ln_post", "encoder/layer_norm");
    p.push(plan(
        "decoder.positional_embedding",
        "decoder/position_encodings/encodings",
        F32,
    ));
    p.push(plan(
        "decoder.token_embedding.weight",
        "decoder/embeddings/weight",
        Weight,
    ));
    for i in 0..h.n_text_layer {
        block(&mut p, "decoder", i);
    }
    norm(&mut p, "decoder.ln", "decoder/layer_norm");
    p
}

/// What a conversion did, for the manifest and the log.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConvertSummary {
    pub hparams: HParams,
    pub tensors: usize,
    pub vocabulary: usize,
    /// Multilingual by whisper.cpp's rule (vocabulary of 51865 tokens and more).
    pub multilingual: bool,
    /// Largest |value| of the dropped key biases (should be 0).
    pub dropped_key_bias_max: f32,
}

/// Take the planned slice of a variable as f32 and its row-major shape.
fn values(v: &Variable, rows: &Option<Range<usize>>) -> Result<(Vec<f32>, Vec<usize>), ModelError> {
    let all = v.to_f32();
    let mut shape = v.dims.clone();
    let Some(r) = rows else {
        return Ok((all, shape));
    };
    let d0 = dim(v, 0)?;
    if r.end > d0 {
        return Err(ModelError::NotCt2Whisper(format!(
            "{} has {d0} rows, cannot take {r:?}",
            v.name
        )));
    }
    let stride = all.len() / d0.max(1);
    shape[0] = r.len();
    Ok((all[r.start * stride..r.end * stride].to_vec(), shape))
}

/// Convert a parsed model to ggml, calling `progress(done, total)` after each tensor.
pub fn convert<W: std::io::Write>(
    model: &Ct2Model,
    vocabulary_txt: &str,
    format: WeightFormat,
    out: W,
    mut progress: impl FnMut(usize, usize),
) -> Result<(W, ConvertSummary), ModelError> {
    model.require_whisper()?;
    let h = hparams(model, format)?;
    let lines: Vec<&str> = vocabulary_txt.lines().collect();
    vocab::check_special_tokens(&lines, h.n_vocab.max(0) as usize)?;
    let tokens = vocab::ordinary_tokens(vocabulary_txt)?;
    let filters = mel::mel_filters(16_000, 400, h.n_mels as usize);
    let plan = tensor_plan(&h);
    let mut w = GgmlWriter::new(out);
    w.header(&h)?;
    w.mel_filters(h.n_mels as usize, 201, &filters)?;
    w.vocabulary(&tokens)?;

    let mut dropped_key_bias_max = 0f32;
    for (i, t) in plan.iter().enumerate() {
        let src = model.get(&t.source)?;
        let (vals, mut shape) = values(src, &t.rows)?;
        if t.storage == Storage::Weight && t.name.ends_with(".key.weight") {
            // The matching key bias, which whisper does not have: check it is zero.
            let bias = model.get(&t.source.replace("/weight", "/bias"))?;
            let (b, _) = values(bias, &t.rows)?;
            dropped_key_bias_max = b.iter().fold(dropped_key_bias_max, |m, v| m.max(v.abs()));
        }
        if t.as_column {
            shape.push(1);
        }
        let ne: Vec<usize> = shape.iter().rev().copied().collect();
        let mut bytes = Vec::with_capacity(vals.len() * 4);
        let ty = match (t.storage, shape.len()) {
            (Storage::Weight, 2) => {
                format.encode(&vals, &mut bytes);
                if format == WeightFormat::F16 {
                    TYPE_F16
                } else {
                    format.ggml_type()
                }
            }
            (Storage::F16, _) => {
                WeightFormat::F16.encode(&vals, &mut bytes);
                TYPE_F16
            }
            _ => {
                bytes.extend(vals.iter().flat_map(|v| v.to_le_bytes()));
                TYPE_F32
            }
        };
        w.tensor(&t.name, &ne, ty, &bytes)?;
        progress(i + 1, plan.len());
    }
    let out = w.finish()?;
    let multilingual = h.multilingual();
    Ok((
        out,
        ConvertSummary {
            hparams: h,
            tensors: plan.len(),
            vocabulary: tokens.len(),
            multilingual,
            dropped_key_bias_max,
        },
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::ct2::tests::write_ct2;
    use super::*;

    const D: usize = 32;

    fn f16(vals: impl IntoIterator<Item = f32>) -> Vec<u8> {
        vals.into_iter()
            .flat_map(|v| half::f16::from_f32(v).to_le_bytes())
            .collect()
    }

    /// A one-layer whisper with state size 32 whose fused weights encode their row number.
    pub(crate) fn tiny_model() -> Vec<u8> {
        tiny_model_with_vocab(4)
    }

    fn tiny_model_with_vocab(n_vocab: usize) -> Vec<u8> {
        let mut vars: Vec<(String, Vec<usize>, u8, Vec<u8>)> = Vec::new();
        let mut add = |name: &str, dims: Vec<usize>, f: &dyn Fn(usize) -> f32| {
            let n: usize = dims.iter().product();
            vars.push((name.to_string(), dims, 4, f16((0..n).map(f))));
        };
        let row = |cols: usize| move |i: usize| (i / cols) as f32;
        add("encoder/conv1/weight", vec![D, 4, 3], &|_| 0.5);
        add("encoder/conv1/bias", vec![D], &|_| 0.25);
        add("encoder/conv2/weight", vec![D, D, 3], &|_| 0.5);
        add("encoder/conv2/bias", vec![D], &|_| 0.25);
        add("encoder/position_encodings/encodings", vec![10, D], &|_| {
            0.0
        });
        add("decoder/position_encodings/encodings", vec![8, D], &|_| 0.0);
        add("decoder/embeddings/weight", vec![n_vocab, D], &|_| 1.0);
        for side in ["encoder", "decoder"] {
            add(&format!("{side}/layer_norm/gamma"), vec![D], &|_| 1.0);
            add(&format!("{side}/layer_norm/beta"), vec![D], &|_| 0.0);
            let l = format!("{side}/layer_0");
            let mut blocks = vec!["self_attention", "ffn"];
            if side == "decoder" {
                blocks.push("attention");
            }
            for b in blocks {
                add(&format!("{l}/{b}/layer_norm/gamma"), vec![D], &|_| 1.0);
                add(&format!("{l}/{b}/layer_norm/beta"), vec![D], &|_| 0.0);
            }
            add(
                &format!("{l}/self_attention/linear_0/weight"),
                vec![3 * D, D],
                &row(D),
            );
            add(
                &format!("{l}/self_attention/linear_0/bias"),
                vec![3 * D],
                &|i| {
                    if (D..2 * D).contains(&i) {
                        0.0
                    } else {
                        i as f32
                    }
                },
            );
            add(
                &format!("{l}/self_attention/linear_1/weight"),
                vec![D, D],
                &row(D),
            );
            add(
                &format!("{l}/self_attention/linear_1/bias"),
                vec![D],
                &|_| 0.0,
            );
            add(&format!("{l}/ffn/linear_0/weight"), vec![4 * D, D], &row(D));
            add(&format!("{l}/ffn/linear_0/bias"), vec![4 * D], &|_| 0.0);
            add(
                &format!("{l}/ffn/linear_1/weight"),
                vec![D, 4 * D],
                &row(4 * D),
            );
            add(&format!("{l}/ffn/linear_1/bias"), vec![D], &|_| 0.0);
            if side == "decoder" {
                add(
                    &format!("{l}/attention/linear_0/weight"),
                    vec![D, D],
                    &row(D),
                );
                add(&format!("{l}/attention/linear_0/bias"), vec![D], &|_| 0.0);
                add(
                    &format!("{l}/attention/linear_1/weight"),
                    vec![2 * D, D],
                    &row(D),
                );
                add(&format!("{l}/attention/linear_1/bias"), vec![2 * D], &|i| {
                    if i < D {
                        0.0
                    } else {
                        7.0
                    }
                });
                add(
                    &format!("{l}/attention/linear_2/weight"),
                    vec![D, D],
                    &row(D),
                );
                add(&format!("{l}/attention/linear_2/bias"), vec![D], &|_| 0.0);
            }
        }
        let mut all: Vec<(&str, Vec<usize>, u8, Vec<u8>)> = vars
            .iter()
            .map(|(n, d, t, b)| (n.as_str(), d.clone(), *t, b.clone()))
            .collect();
        all.push(("encoder/num_heads", vec![], 2, 2i16.to_le_bytes().to_vec()));
        all.push(("decoder/num_heads", vec![], 2, 2i16.to_le_bytes().to_vec()));
        write_ct2("WhisperSpec", &all)
    }

    /// Parse the tensors of a ggml file back: name → (ne, type, data).
    fn read_tensors(b: &[u8]) -> Vec<(String, Vec<i32>, i32, Vec<u8>)> {
        let i32at = |p: usize| i32::from_le_bytes([b[p], b[p + 1], b[p + 2], b[p + 3]]);
        let mut p = 4 + 11 * 4;
        let (n_mel, n_fft) = (i32at(p), i32at(p + 4));
        p += 8 + (n_mel * n_fft) as usize * 4;
        let n_vocab = i32at(p);
        p += 4;
        for _ in 0..n_vocab {
            p += 4 + i32at(p) as usize;
        }
        let mut out = Vec::new();
        while p < b.len() {
            let (nd, nl, ty) = (i32at(p), i32at(p + 4) as usize, i32at(p + 8));
            p += 12;
            let ne: Vec<i32> = (0..nd as usize).map(|i| i32at(p + 4 * i)).collect();
            p += 4 * nd as usize;
            let name = String::from_utf8(b[p..p + nl].to_vec()).expect("utf8");
            p += nl;
            let n: i32 = ne.iter().product();
            let size = match ty {
                0 => n as usize * 4,
                1 => n as usize * 2,
                8 => n as usize / 32 * 34,
                6 => n as usize / 32 * 22,
                _ => panic!("type {ty}"),
            };
            out.push((name, ne, ty, b[p..p + size].to_vec()));
            p += size;
        }
        out
    }

    fn f16_values(b: &[u8]) -> Vec<f32> {
        b.chunks(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect()
    }

    #[test]
    fn splits_fused_qkv_and_kv_and_sets_types() {
        let buf = tiny_model();
        let m = Ct2Model::parse(&buf).expect("parse");
        let vocab = "a\nb\n<|endoftext|>\n<|startoftranscript|>\n";
        let (out, sum) =
            convert(&m, vocab, WeightFormat::F16, Vec::new(), |_, _| {}).expect("convert");
        assert_eq!(sum.vocabulary, 2);
        assert_eq!(sum.dropped_key_bias_max, 0.0);
        assert_eq!(sum.hparams.n_audio_layer, 1);
        assert_eq!(sum.hparams.n_mels, 4);
        let t = read_tensors(&out);
        assert_eq!(t.len(), sum.tensors);
        let get = |n: &str| t.iter().find(|x| x.0 == n).unwrap_or_else(|| panic!("{n}"));
        // q rows 0..D have values 0..D, k rows D..2D, v rows 2D..3D.
        for (part, first) in [("query", 0.0), ("key", D as f32), ("value", 2.0 * D as f32)] {
            let (_, ne, ty, data) = get(&format!("encoder.blocks.0.attn.{part}.weight"));
            assert_eq!((ne.clone(), *ty), (vec![D as i32, D as i32], 1));
            let v = f16_values(data);
            assert_eq!(v[0], first);
            assert_eq!(v[D * D - 1], first + D as f32 - 1.0);
        }
        assert!(t.iter().all(|x| x.0 != "encoder.blocks.0.attn.key.bias"));
        let (_, _, ty, data) = get("encoder.blocks.0.attn.value.bias");
        assert_eq!(*ty, 0);
        assert_eq!(
            f32::from_le_bytes([data[0], data[1], data[2], data[3]]),
            2.0 * D as f32
        );
        // Cross attention: key = rows 0..D, value = rows D..2D with bias 7.
        let (_, _, _, k) = get("decoder.blocks.0.cross_attn.key.weight");
        assert_eq!(f16_values(k)[0], 0.0);
        let (_, _, _, v) = get("decoder.blocks.0.cross_attn.value.weight");
        assert_eq!(f16_values(v)[0], D as f32);
        let (_, _, _, vb) = get("decoder.blocks.0.cross_attn.value.bias");
        assert_eq!(f32::from_le_bytes([vb[0], vb[1], vb[2], vb[3]]), 7.0);
        // Conv kernel f16 in reversed dims, conv bias as [1, D] f32.
        let (_, ne, ty, _) = get("encoder.conv1.weight");
        assert_eq!((ne.clone(), *ty), (vec![3, 4, D as i32], 1));
        let (_, ne, ty, _) = get("encoder.conv1.bias");
        assert_eq!((ne.clone(), *ty), (vec![1, D as i32], 0));
        let (_, ne, ty, _) = get("encoder.positional_embedding");
        assert_eq!((ne.clone(), *ty), (vec![D as i32, 10], 0));
    }

    #[test]
    fn quantizes_only_weight_matrices() {
        let buf = tiny_model();
        let m = Ct2Model::parse(&buf).expect("parse");
        let vocab = "a\n<|endoftext|>\n";
        for (format, ftype, ty) in [(WeightFormat::Q8_0, 2007, 8), (WeightFormat::Q5_0, 2008, 6)] {
            let (out, sum) = convert(&m, vocab, format, Vec::new(), |_, _| {}).expect("convert");
            assert_eq!(
                i32::from_le_bytes([out[44], out[45], out[46], out[47]]),
                ftype
            );
            assert!(!sum.multilingual);
            for (name, ne, t, data) in read_tensors(&out) {
                let want = if name.contains("conv") && name.ends_with("weight") {
                    1
                } else if name.ends_with(".weight") && ne.len() == 2 && !name.contains("ln") {
                    ty
                } else {
                    0
                };
                assert_eq!(t, want, "{name}");
                if name == "decoder.blocks.0.attn.value.weight" && ty == 6 {
                    // Rows 2D..3D of a fused matrix whose rows hold their index: the first
                    // block is 32 × 64.0, exact in q5_0 (d = -4, every q = 0).
                    assert_eq!(half::f16::from_le_bytes([data[0], data[1]]).to_f32(), -4.0);
                    assert!(data[2..22].iter().all(|&b| b == 0), "{:?}", &data[..22]);
                }
            }
        }
    }

    #[test]
    fn multilingual_vocabulary_keeps_50257_ordinary_tokens() {
        use super::super::vocab::tests::whisper_vocab;
        let buf = tiny_model_with_vocab(51865);
        let m = Ct2Model::parse(&buf).expect("parse");
        let vocab = whisper_vocab(51865, "nocaptions").join("\n");
        let (out, sum) =
            convert(&m, &vocab, WeightFormat::Q8_0, Vec::new(), |_, _| {}).expect("convert");
        assert!(sum.multilingual);
        assert_eq!(sum.hparams.n_vocab, 51865);
        // whisper.cpp: 51865 → multilingual, <|endoftext|> = 50257 = the first token it adds.
        assert_eq!(sum.vocabulary, 50257);
        let voc = 48 + 8 + 4 * 4 * 201;
        assert_eq!(
            i32::from_le_bytes([out[voc], out[voc + 1], out[voc + 2], out[voc + 3]]),
            50257
        );
        let emb = read_tensors(&out)
            .into_iter()
            .find(|t| t.0 == "decoder.token_embedding.weight")
            .expect("embedding");
        assert_eq!((emb.1, emb.2), (vec![D as i32, 51865], 8));
        // The English layout (one token short, specials shifted) is refused, not converted.
        let english = whisper_vocab(51864, "nocaptions").join("\n");
        let e = convert(&m, &english, WeightFormat::Q8_0, Vec::new(), |_, _| {})
            .expect_err("wrong vocabulary");
        assert!(e.to_string().contains("51864 tokens"), "{e}");
    }

    #[test]
    fn missing_variable_is_a_clear_error() {
        let buf = write_ct2("WhisperSpec", &[("x", vec![1], 0, vec![0; 4])]);
        let m = Ct2Model::parse(&buf).expect("parse");
        let e = convert(
            &m,
            "<|endoftext|>\n",
            WeightFormat::F16,
            Vec::new(),
            |_, _| {},
        );
        assert!(matches!(e, Err(ModelError::NotCt2Whisper(s)) if s.contains("missing variable")));
    }
}
