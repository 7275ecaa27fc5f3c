//! `scamscreen model convert`: CTranslate2 folder → ggml file, written atomically, with a
//! record of the input and output hashes so that a second run is a no-op.

use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};

use super::convert::{convert, ConvertSummary};
use super::ct2::Ct2Model;
use super::store::{read_record, sha256_file, write_record, AtomicFile};
use super::{ModelError, ModelPaths, WeightFormat};

/// Written next to the ggml file as `<file>.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ConvertRecord {
    pub format: String,
    pub source_model_sha256: String,
    pub output_sha256: String,
    pub converter_version: String,
}

/// Result of a conversion.
#[derive(Debug)]
pub enum ConvertOutcome {
    UpToDate(PathBuf),
    Converted {
        path: PathBuf,
        sha256: String,
        summary: ConvertSummary,
    },
}

fn record_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".json");
    PathBuf::from(s)
}

/// Convert the fetched model to `format` at `out` (default: the standard name under the
/// models directory).
pub fn convert_model(
    paths: &ModelPaths,
    format: WeightFormat,
    out: Option<&Path>,
    show_progress: bool,
) -> Result<ConvertOutcome, ModelError> {
    let ct2 = paths.ct2_dir();
    let model_bin = ct2.join("model.bin");
    let vocab_txt = ct2.join("vocabulary.txt");
    for p in [&model_bin, &vocab_txt] {
        if !p.exists() {
            return Err(ModelError::NotFetched(p.clone()));
        }
    }
    let out = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| paths.ggml(format));
    let source_sha = sha256_file(&model_bin)?;
    let want = |output_sha256: String| ConvertRecord {
        format: format!("{format:?}").to_lowercase(),
        source_model_sha256: source_sha.clone(),
        output_sha256,
        converter_version: env!("CARGO_PKG_VERSION").into(),
    };
    if let Some(rec) = read_record::<ConvertRecord>(&record_path(&out)) {
        if out.exists()
            && rec == want(rec.output_sha256.clone())
            && sha256_file(&out)? == rec.output_sha256
        {
            return Ok(ConvertOutcome::UpToDate(out));
        }
    }

    let bytes = std::fs::read(&model_bin).map_err(|e| ModelError::io(&model_bin, e))?;
    let vocab = std::fs::read_to_string(&vocab_txt).map_err(|e| ModelError::io(&vocab_txt, e))?;
    let model = Ct2Model::parse(&bytes)?;
    let bar = if show_progress {
        ProgressBar::new(0)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("converting {bar:30} {pos}/{len} tensors")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let file = AtomicFile::create(&out)?;
    let (file, summary) = match convert(&model, &vocab, format, file, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    }) {
        Ok(v) => v,
        Err(e) => {
            // The partial file stays behind only as `<name>.partial` and is overwritten next run.
            return Err(e.at(&out));
        }
    };
    bar.finish_and_clear();
    let sha256 = file.commit()?;
    write_record(&record_path(&out), &want(sha256.clone()))?;
    Ok(ConvertOutcome::Converted {
        path: out,
        sha256,
        summary,
    })
}
