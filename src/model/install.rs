//! `scamscreen model convert [--model NAME]`: CTranslate2 folder → ggml file, written
//! atomically, with a record of the input and output hashes so that a second run is a no-op.

use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};

use super::convert::{convert, hparams, ConvertSummary};
use super::ct2::Ct2Model;
use super::store::{read_record, sha256_file, write_record, AtomicFile};
use super::{vocab, ModelError, ModelName, ModelPaths, WeightFormat};

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

/// Refuse a CTranslate2 folder that holds another model than its name says (e.g. base
/// weights put in `ct2-small/`): the output would be named after the wrong model.
fn check_is(
    m: &Ct2Model,
    want: ModelName,
    format: WeightFormat,
    dir: &Path,
) -> Result<(), ModelError> {
    m.require_whisper()?;
    let h = hparams(m, format)?;
    match h.model_name() {
        Some(got) if got == want => Ok(()),
        got => Err(ModelError::WrongModel(format!(
            "{} holds {} (state {}, {} layers, {} tokens), not whisper {want}",
            dir.display(),
            got.map_or("another whisper model".to_string(), |g| format!(
                "whisper {g}"
            )),
            h.n_audio_state,
            h.n_audio_layer,
            h.n_vocab
        ))),
    }
}

/// Convert the fetched model to `format` at `out` (default: the standard name under the
/// models directory, `ggml-NAME[-FORMAT].bin`). The CTranslate2 folder need not come from
/// `fetch`: a `model.bin` with `vocabulary.txt` (or `vocabulary.json`) put there by hand is
/// converted the same way.
pub fn convert_model(
    paths: &ModelPaths,
    model: ModelName,
    format: WeightFormat,
    out: Option<&Path>,
    show_progress: bool,
) -> Result<ConvertOutcome, ModelError> {
    let ct2 = paths.ct2_dir_for(model);
    let model_bin = ct2.join("model.bin");
    let vocab_txt = ct2.join("vocabulary.txt");
    let not_fetched = |path: &Path| ModelError::NotFetched {
        path: path.to_path_buf(),
        hint: model.fetch_hint(),
    };
    if !model_bin.exists() {
        return Err(not_fetched(&model_bin));
    }
    if !vocab_txt.exists() && !ct2.join("vocabulary.json").exists() {
        return Err(not_fetched(&vocab_txt));
    }
    let out = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| paths.ggml_for(model, format));
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
    let vocab = vocab::vocabulary_text(&ct2)?;
    let ct2_model = Ct2Model::parse(&bytes)?;
    check_is(&ct2_model, model, format, &ct2)?;
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
    let (file, summary) = match convert(&ct2_model, &vocab, format, file, |done, total| {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_fetched_names_the_file_and_the_command() {
        let dir = tempfile::tempdir().expect("tmp");
        let paths = ModelPaths::new(dir.path());
        let e = convert_model(&paths, ModelName::Base, WeightFormat::Q8_0, None, false)
            .expect_err("not fetched");
        let s = e.to_string();
        assert!(s.contains("ct2-base/model.bin"), "{s}");
        assert!(
            s.ends_with("run: scamscreen model fetch --model base"),
            "{s}"
        );
        let e = convert_model(&paths, ModelName::TinyEn, WeightFormat::F16, None, false)
            .expect_err("not fetched");
        assert!(
            e.to_string().ends_with("run: scamscreen model fetch"),
            "{e}"
        );
        // model.bin without any vocabulary.
        std::fs::create_dir_all(paths.ct2_dir_for(ModelName::Small)).expect("mkdir");
        std::fs::write(paths.ct2_dir_for(ModelName::Small).join("model.bin"), b"x").expect("write");
        let e = convert_model(&paths, ModelName::Small, WeightFormat::Q8_0, None, false)
            .expect_err("no vocabulary");
        assert!(e.to_string().contains("vocabulary.txt"), "{e}");
    }

    #[test]
    fn a_folder_holding_another_model_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let paths = ModelPaths::new(dir.path());
        let ct2 = paths.ct2_dir_for(ModelName::Base);
        std::fs::create_dir_all(&ct2).expect("mkdir");
        std::fs::write(
            ct2.join("model.bin"),
            super::super::convert::tests::tiny_model(),
        )
        .expect("write");
        std::fs::write(ct2.join("vocabulary.txt"), "a\n<|endoftext|>\n").expect("write");
        let e = convert_model(&paths, ModelName::Base, WeightFormat::Q8_0, None, false)
            .expect_err("not base");
        assert!(matches!(e, ModelError::WrongModel(_)), "{e}");
        assert!(e.to_string().contains("not whisper base"), "{e}");
        assert!(!paths.ggml_for(ModelName::Base, WeightFormat::Q8_0).exists());
    }
}
