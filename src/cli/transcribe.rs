//! `scamscreen transcribe FILE…`

use std::path::PathBuf;

use anyhow::bail;
use scamscreen::asr::audio::read_wav_16k;
use scamscreen::asr::cpu::ThreadPolicy;
use scamscreen::asr::whisper::{WhisperConfig, WhisperPool};
use scamscreen::asr::{Transcriber, Transcript};
use scamscreen::detect::{Detector, Verdict};
use scamscreen::model::ModelPaths;

#[derive(clap::Args, Debug)]
pub struct TranscribeArgs {
    /// WAV files to transcribe.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// One JSON object per file (file, text, segments, audio_ms, elapsed_ms).
    #[arg(long)]
    json: bool,
    /// whisper.cpp ggml model (default: models/ggml-tiny.en-q8_0.bin, else the f16 one).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Folder of the default model.
    #[arg(long, default_value = "models", env = "SCAMSCREEN_MODELS")]
    models_dir: PathBuf,
    /// CPU threads for the recogniser: `auto` (as many as cores are free of other work,
    /// chosen per file) or a number.
    #[arg(long, default_value = "auto", value_parser = ThreadPolicy::parse)]
    threads: ThreadPolicy,
    /// Spoken language (`en`, `de`, or `auto` for the model to detect); other than English
    /// needs a multilingual model (e.g. models/ggml-base-q8_0.bin).
    #[arg(long, default_value = "en")]
    language: String,
    /// Also score each transcript for scam phrases (allow / warn / divert, with reasons).
    #[arg(long)]
    detect: bool,
    #[command(flatten)]
    rules: crate::cli::detect::RuleArgs,
}

/// The verdict on a transcript, with the rules of the language heard.
fn verdict(det: &Detector, t: &Transcript) -> anyhow::Result<Verdict> {
    Ok(det.score_segments(&t.segments, Some(&t.language))?)
}

fn print_text(file: &str, t: &Transcript) {
    println!(
        "{file}: {:.1} s of audio, transcribed in {:.2} s",
        t.audio_ms as f64 / 1000.0,
        t.elapsed_ms as f64 / 1000.0
    );
    if t.segments.is_empty() {
        println!("  (no speech)");
    }
    for s in &t.segments {
        println!(
            "  [{:>6.2} → {:>6.2}] {}",
            s.start_ms as f64 / 1000.0,
            s.end_ms as f64 / 1000.0,
            s.text
        );
    }
}

pub fn run(args: TranscribeArgs) -> anyhow::Result<()> {
    let model = args
        .model
        .unwrap_or_else(|| ModelPaths::new(&args.models_dir).default_ggml());
    if args.language != "en" && !scamscreen::asr::whisper::model_is_multilingual(&model)? {
        bail!(
            "{} is English only and cannot hear {:?}: use a multilingual model \
             (scamscreen model fetch --model base && scamscreen model convert --model base --quantize q8_0)",
            model.display(),
            args.language
        );
    }
    let mut cfg = WhisperConfig::new(model);
    cfg.threads = args.threads;
    cfg.language = args.language.clone();
    let pool = WhisperPool::start(&cfg)?;
    let detector = if args.detect {
        Some(args.rules.detector()?)
    } else {
        None
    };
    let mut failed = 0;
    for path in &args.files {
        let name = path.display().to_string();
        let result = read_wav_16k(path).and_then(|pcm| pool.transcribe(pcm));
        match (result, args.json) {
            (Ok(t), false) => {
                print_text(&name, &t);
                if let Some(det) = &detector {
                    let v = verdict(det, &t)?;
                    println!("  → {} (score {:.2})", v.action.name(), v.score);
                    if !v.warning.is_empty() {
                        println!("    {}", v.warning);
                    }
                }
            }
            (Ok(t), true) => {
                let mut v = serde_json::to_value(&t)?;
                if let Some(o) = v.as_object_mut() {
                    o.insert("file".into(), name.into());
                    if let Some(det) = &detector {
                        o.insert("verdict".into(), serde_json::to_value(verdict(det, &t)?)?);
                    }
                }
                println!("{v}");
            }
            (Err(e), json) => {
                failed += 1;
                if json {
                    println!(
                        "{}",
                        serde_json::json!({ "file": name, "error": e.to_string() })
                    );
                } else {
                    eprintln!("error: {name}: {e}");
                }
            }
        }
    }
    if failed > 0 {
        bail!(
            "{failed} of {} files could not be transcribed",
            args.files.len()
        );
    }
    Ok(())
}
