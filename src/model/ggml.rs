//! Writer for whisper.cpp's legacy ggml model file, as whisper.cpp's loader
//! (`whisper_model_load`) reads it:
//! magic `0x67676d6c`; eleven i32 hyper-parameters; the mel filter bank (`i32 n_mel`,
//! `i32 n_fft`, f32 values); the vocabulary (`i32 count`, then `u32 len` + bytes each);
//! then tensors: `i32 n_dims`, `i32 name_len`, `i32 type`, `n_dims × i32` dims innermost
//! first, the name, the data.

use std::io::Write;

/// `"ggml"` as the loader reads it (little endian u32).
pub const GGML_MAGIC: u32 = 0x6767_6d6c;
/// ggml tensor type ids used here.
pub const TYPE_F32: u32 = 0;
pub const TYPE_F16: u32 = 1;

/// whisper's hyper-parameters, in file order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HParams {
    pub n_vocab: i32,
    pub n_audio_ctx: i32,
    pub n_audio_state: i32,
    pub n_audio_head: i32,
    pub n_audio_layer: i32,
    pub n_text_ctx: i32,
    pub n_text_state: i32,
    pub n_text_head: i32,
    pub n_text_layer: i32,
    pub n_mels: i32,
    pub ftype: i32,
}

impl HParams {
    /// Multilingual by whisper.cpp's rule (51865 tokens and more).
    pub fn multilingual(&self) -> bool {
        super::vocab::is_multilingual(self.n_vocab.max(0) as usize)
    }

    /// The model this is, by its shape (`None` for other whisper sizes).
    pub fn model_name(&self) -> Option<super::ModelName> {
        use super::ModelName::*;
        match (self.n_audio_state, self.n_audio_layer, self.multilingual()) {
            (384, 4, false) => Some(TinyEn),
            (512, 6, true) => Some(Base),
            (768, 12, true) => Some(Small),
            _ => None,
        }
    }
}

/// Read the hyper-parameters of a ggml file (its first 48 bytes), e.g. to tell whether a
/// configured model is multilingual before loading it.
pub fn read_hparams(path: &std::path::Path) -> Result<HParams, super::ModelError> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| super::ModelError::io(path, e))?;
    let mut b = [0u8; 48];
    f.read_exact(&mut b)
        .map_err(|e| super::ModelError::io(path, e))?;
    let at = |i: usize| i32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
    if at(0) as u32 != GGML_MAGIC {
        return Err(super::ModelError::NotGgml(path.to_path_buf()));
    }
    Ok(HParams {
        n_vocab: at(1),
        n_audio_ctx: at(2),
        n_audio_state: at(3),
        n_audio_head: at(4),
        n_audio_layer: at(5),
        n_text_ctx: at(6),
        n_text_state: at(7),
        n_text_head: at(8),
        n_text_layer: at(9),
        n_mels: at(10),
        ftype: at(11),
    })
}

/// Streams a ggml file to any writer.
pub struct GgmlWriter<W: Write> {
    out: W,
}

impl<W: Write> GgmlWriter<W> {
    pub fn new(out: W) -> Self {
        GgmlWriter { out }
    }

    pub fn header(&mut self, h: &HParams) -> std::io::Result<()> {
        self.out.write_all(&GGML_MAGIC.to_le_bytes())?;
        for v in [
            h.n_vocab,
            h.n_audio_ctx,
            h.n_audio_state,
            h.n_audio_head,
            h.n_audio_layer,
            h.n_text_ctx,
            h.n_text_state,
            h.n_text_head,
            h.n_text_layer,
            h.n_mels,
            h.ftype,
        ] {
            self.out.write_all(&v.to_le_bytes())?;
        }
        Ok(())
    }

    pub fn mel_filters(&mut self, n_mel: usize, n_fft: usize, data: &[f32]) -> std::io::Result<()> {
        self.out.write_all(&(n_mel as i32).to_le_bytes())?;
        self.out.write_all(&(n_fft as i32).to_le_bytes())?;
        for v in data {
            self.out.write_all(&v.to_le_bytes())?;
        }
        Ok(())
    }

    pub fn vocabulary(&mut self, tokens: &[Vec<u8>]) -> std::io::Result<()> {
        self.out.write_all(&(tokens.len() as i32).to_le_bytes())?;
        for t in tokens {
            self.out.write_all(&(t.len() as u32).to_le_bytes())?;
            self.out.write_all(t)?;
        }
        Ok(())
    }

    /// One tensor. `ne` is in ggml order: the innermost (fastest-varying) dimension first,
    /// i.e. the reverse of a row-major shape.
    pub fn tensor(
        &mut self,
        name: &str,
        ne: &[usize],
        ggml_type: u32,
        data: &[u8],
    ) -> std::io::Result<()> {
        self.out.write_all(&(ne.len() as i32).to_le_bytes())?;
        self.out.write_all(&(name.len() as i32).to_le_bytes())?;
        self.out.write_all(&ggml_type.to_le_bytes())?;
        for d in ne {
            self.out.write_all(&(*d as i32).to_le_bytes())?;
        }
        self.out.write_all(name.as_bytes())?;
        self.out.write_all(data)
    }

    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_layout_whisper_cpp_reads() {
        let mut w = GgmlWriter::new(Vec::new());
        let h = HParams {
            n_vocab: 51864,
            n_audio_ctx: 1500,
            n_audio_state: 384,
            n_audio_head: 6,
            n_audio_layer: 4,
            n_text_ctx: 448,
            n_text_state: 384,
            n_text_head: 6,
            n_text_layer: 4,
            n_mels: 80,
            ftype: 1,
        };
        w.header(&h).expect("io");
        w.mel_filters(1, 2, &[0.5, 1.0]).expect("io");
        w.vocabulary(&[b"a".to_vec(), b" b".to_vec()]).expect("io");
        w.tensor("x.bias", &[1, 3], TYPE_F32, &[0u8; 12])
            .expect("io");
        let b = w.finish().expect("io");
        assert_eq!(&b[0..4], b"lmgg"); // 0x67676d6c little endian
        assert_eq!(i32::from_le_bytes([b[4], b[5], b[6], b[7]]), 51864);
        assert_eq!(i32::from_le_bytes([b[44], b[45], b[46], b[47]]), 1); // ftype
        let mel = 48;
        assert_eq!(
            i32::from_le_bytes([b[mel], b[mel + 1], b[mel + 2], b[mel + 3]]),
            1
        );
        let voc = mel + 8 + 8;
        assert_eq!(
            i32::from_le_bytes([b[voc], b[voc + 1], b[voc + 2], b[voc + 3]]),
            2
        );
        let t = voc + 4 + 5 + 6;
        let ints: Vec<i32> = b[t..t + 20]
            .chunks(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(ints, vec![2, 6, 0, 1, 3]);
        assert_eq!(&b[t + 20..t + 26], b"x.bias");
        assert_eq!(b.len(), t + 26 + 12);

        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("m.bin");
        std::fs::write(&p, &b).expect("write");
        let back = read_hparams(&p).expect("read");
        assert_eq!(back, h);
        assert!(!back.multilingual());
        assert_eq!(back.model_name(), Some(super::super::ModelName::TinyEn));
        let base = HParams {
            n_vocab: 51865,
            n_audio_state: 512,
            n_audio_layer: 6,
            ..h
        };
        assert!(base.multilingual());
        assert_eq!(base.model_name(), Some(super::super::ModelName::Base));
        std::fs::write(&p, [0u8; 48]).expect("write");
        assert!(matches!(
            read_hparams(&p),
            Err(super::super::ModelError::NotGgml(_))
        ));
        std::fs::write(&p, [0u8; 10]).expect("write");
        assert!(read_hparams(&p).is_err());
    }
}
