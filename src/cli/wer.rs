//! `scamscreen wer REFS.tsv HYPS.jsonl`: word error rate of transcripts against references,
//! with the normaliser the tests use (see `asr::wer`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use scamscreen::asr::wer::{normalize, word_errors};

#[derive(clap::Args, Debug)]
pub struct WerArgs {
    /// Reference texts: lines of `file<TAB>text` (file names are matched by base name).
    refs: PathBuf,
    /// Transcripts: JSON lines with `file` and `text` (as `scamscreen transcribe --json` prints).
    hyps: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn base(name: &str) -> String {
    Path::new(name)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.to_string())
}

pub fn run(args: WerArgs) -> anyhow::Result<()> {
    let refs_text = std::fs::read_to_string(&args.refs)
        .with_context(|| format!("cannot read {}", args.refs.display()))?;
    let mut refs = HashMap::new();
    for (n, line) in refs_text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let Some((file, text)) = line.split_once('\t') else {
            bail!("{}:{}: expected file<TAB>text", args.refs.display(), n + 1);
        };
        refs.insert(base(file), text.to_string());
    }
    let hyps_text = std::fs::read_to_string(&args.hyps)
        .with_context(|| format!("cannot read {}", args.hyps.display()))?;
    let (mut errors, mut words, mut clips) = (0usize, 0usize, 0usize);
    for (n, line) in hyps_text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not JSON", args.hyps.display(), n + 1))?;
        let file = v["file"].as_str().unwrap_or_default();
        let Some(reference) = refs.get(&base(file)) else {
            bail!(
                "{}:{}: no reference for {file:?}",
                args.hyps.display(),
                n + 1
            );
        };
        let (r, h) = (
            normalize(reference),
            normalize(v["text"].as_str().unwrap_or_default()),
        );
        errors += word_errors(&r, &h);
        words += r.len();
        clips += 1;
    }
    let wer = errors as f64 / words.max(1) as f64;
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "wer": wer, "errors": errors, "words": words, "clips": clips })
        );
    } else {
        println!(
            "WER {:.1}% ({errors} errors in {words} words, {clips} clips)",
            wer * 100.0
        );
    }
    Ok(())
}
