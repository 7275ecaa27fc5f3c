//! Reader for CTranslate2 model files (`model.bin`, binary version 6).
//!
//! Layout, all little endian:
//! `u32 version`, `u16+bytes spec name`, `u32 spec revision`, `u32 n_variables`, then per
//! variable `u16+bytes name`, `u8 rank`, `rank × u32 dims`, `u8 dtype`, `u32 byte count`,
//! data; then `u32 n_aliases` and pairs of `u16+bytes` (alias, target). Strings carry a
//! trailing NUL. Scalars (rank 0) carry their bytes too.

use std::collections::BTreeMap;

use super::ModelError;

/// The CTranslate2 binary version this reader understands.
pub const SUPPORTED_VERSION: u32 = 6;
/// The spec name of whisper models.
pub const WHISPER_SPEC: &str = "WhisperSpec";

/// Element type of a stored variable (CTranslate2's `DataType` codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    I8,
    I16,
    I32,
    F16,
    BF16,
}

impl DType {
    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => DType::F32,
            1 => DType::I8,
            2 => DType::I16,
            3 => DType::I32,
            4 => DType::F16,
            5 => DType::BF16,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::I8 => 1,
            DType::I16 | DType::F16 | DType::BF16 => 2,
            DType::F32 | DType::I32 => 4,
        }
    }
}

/// One named tensor of the model, borrowing its bytes from the file buffer.
#[derive(Debug, Clone)]
pub struct Variable<'a> {
    pub name: String,
    pub dims: Vec<usize>,
    pub dtype: DType,
    pub data: &'a [u8],
}

impl Variable<'_> {
    /// Number of elements (1 for a scalar).
    pub fn len(&self) -> usize {
        self.dims.iter().product()
    }

    /// True for a tensor with no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values as f32, whatever the stored float or integer type.
    pub fn to_f32(&self) -> Vec<f32> {
        match self.dtype {
            DType::F32 => self
                .data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            DType::F16 => self
                .data
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            DType::BF16 => self
                .data
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            DType::I8 => self.data.iter().map(|&b| b as i8 as f32).collect(),
            DType::I16 => self
                .data
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]) as f32)
                .collect(),
            DType::I32 => self
                .data
                .chunks_exact(4)
                .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32)
                .collect(),
        }
    }

    /// A scalar integer value (e.g. `encoder/num_heads`).
    pub fn scalar_i64(&self) -> Option<i64> {
        if !self.dims.is_empty() {
            return None;
        }
        self.to_f32().first().map(|v| *v as i64)
    }
}

/// A parsed CTranslate2 model.
#[derive(Debug)]
pub struct Ct2Model<'a> {
    pub spec: String,
    pub revision: u32,
    pub variables: BTreeMap<String, Variable<'a>>,
    pub aliases: BTreeMap<String, String>,
}

impl<'a> Ct2Model<'a> {
    /// Parse a whole `model.bin` held in memory. Never panics on bad input.
    pub fn parse(buf: &'a [u8]) -> Result<Self, ModelError> {
        let mut r = Cursor { buf, pos: 0 };
        let version = r.u32()?;
        if version != SUPPORTED_VERSION {
            return Err(ModelError::NotCt2Whisper(format!(
                "CTranslate2 binary version {version}, expected {SUPPORTED_VERSION}"
            )));
        }
        let spec = r.string()?;
        let revision = r.u32()?;
        let n_vars = r.u32()? as usize;
        let mut variables = BTreeMap::new();
        for _ in 0..n_vars {
            let name = r.string()?;
            let rank = r.u8()? as usize;
            let mut dims = Vec::with_capacity(rank);
            for _ in 0..rank {
                dims.push(r.u32()? as usize);
            }
            let code = r.u8()?;
            let dtype = DType::from_code(code).ok_or_else(|| {
                ModelError::NotCt2Whisper(format!("variable {name}: unknown dtype code {code}"))
            })?;
            let nbytes = r.u32()? as usize;
            let data = r.take(nbytes)?;
            let count: usize = dims.iter().product();
            if count.checked_mul(dtype.size()) != Some(nbytes) {
                return Err(ModelError::NotCt2Whisper(format!(
                    "variable {name}: {nbytes} bytes do not hold {dims:?} of {dtype:?}"
                )));
            }
            variables.insert(
                name.clone(),
                Variable {
                    name,
                    dims,
                    dtype,
                    data,
                },
            );
        }
        let mut aliases = BTreeMap::new();
        // Older files end without an alias table.
        if r.pos < buf.len() {
            let n_alias = r.u32()? as usize;
            for _ in 0..n_alias {
                let alias = r.string()?;
                let target = r.string()?;
                aliases.insert(alias, target);
            }
        }
        Ok(Ct2Model {
            spec,
            revision,
            variables,
            aliases,
        })
    }

    /// Check that this is a whisper model this converter knows.
    pub fn require_whisper(&self) -> Result<(), ModelError> {
        if self.spec != WHISPER_SPEC {
            return Err(ModelError::NotCt2Whisper(format!(
                "spec is {:?}, expected {WHISPER_SPEC}",
                self.spec
            )));
        }
        Ok(())
    }

    /// Look a variable up by name, following aliases.
    pub fn get(&self, name: &str) -> Result<&Variable<'a>, ModelError> {
        let name = self.aliases.get(name).map(String::as_str).unwrap_or(name);
        self.variables
            .get(name)
            .ok_or_else(|| ModelError::NotCt2Whisper(format!("missing variable {name}")))
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ModelError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                ModelError::NotCt2Whisper(format!(
                    "file truncated at byte {} (wanted {n} more)",
                    self.pos
                ))
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, ModelError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, ModelError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, ModelError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn string(&mut self) -> Result<String, ModelError> {
        let n = self.u16()? as usize;
        let b = self.take(n)?;
        let b = b.strip_suffix(&[0]).unwrap_or(b);
        String::from_utf8(b.to_vec())
            .map_err(|_| ModelError::NotCt2Whisper("a name is not UTF-8".into()))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Build a tiny CTranslate2 v6 file in memory.
    pub(crate) fn write_ct2(spec: &str, vars: &[(&str, Vec<usize>, u8, Vec<u8>)]) -> Vec<u8> {
        fn s(out: &mut Vec<u8>, v: &str) {
            out.extend_from_slice(&((v.len() + 1) as u16).to_le_bytes());
            out.extend_from_slice(v.as_bytes());
            out.push(0);
        }
        let mut out = Vec::new();
        out.extend_from_slice(&6u32.to_le_bytes());
        s(&mut out, spec);
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(vars.len() as u32).to_le_bytes());
        for (name, dims, dtype, data) in vars {
            s(&mut out, name);
            out.push(dims.len() as u8);
            for d in dims {
                out.extend_from_slice(&(*d as u32).to_le_bytes());
            }
            out.push(*dtype);
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(data);
        }
        out.extend_from_slice(&1u32.to_le_bytes());
        s(&mut out, "alias/x");
        s(&mut out, vars[0].0);
        out
    }

    #[test]
    fn parses_header_variables_and_aliases() {
        let f16: Vec<u8> = [1.0f32, -2.0, 0.5]
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect();
        let buf = write_ct2(
            "WhisperSpec",
            &[
                ("w", vec![3], 4, f16),
                ("encoder/num_heads", vec![], 2, 6i16.to_le_bytes().to_vec()),
            ],
        );
        let m = Ct2Model::parse(&buf).expect("parse");
        assert_eq!(m.spec, "WhisperSpec");
        assert_eq!(m.revision, 3);
        m.require_whisper().expect("whisper");
        assert_eq!(m.get("w").expect("w").to_f32(), vec![1.0, -2.0, 0.5]);
        assert_eq!(m.get("alias/x").expect("alias").dims, vec![3]);
        let heads = m.get("encoder/num_heads").expect("heads");
        assert_eq!(heads.scalar_i64(), Some(6));
    }

    #[test]
    fn rejects_wrong_version_spec_and_truncation() {
        let mut buf = write_ct2("WhisperSpec", &[("w", vec![1], 0, vec![0, 0, 0, 0])]);
        let good = buf.clone();
        buf[0] = 5;
        assert!(
            matches!(Ct2Model::parse(&buf), Err(ModelError::NotCt2Whisper(m)) if m.contains("version 5"))
        );
        let other = write_ct2("TransformerSpec", &[("w", vec![1], 0, vec![0, 0, 0, 0])]);
        let m = Ct2Model::parse(&other).expect("parses");
        assert!(m.require_whisper().is_err());
        for cut in [3, 10, 20, good.len() - 3] {
            assert!(Ct2Model::parse(&good[..cut]).is_err(), "cut at {cut}");
        }
        // Byte count that disagrees with the shape.
        let bad = write_ct2("WhisperSpec", &[("w", vec![2], 0, vec![0, 0, 0, 0])]);
        assert!(Ct2Model::parse(&bad).is_err());
        // Garbage never panics.
        for n in 0..64u8 {
            let junk: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            let _ = Ct2Model::parse(&junk);
        }
    }
}
