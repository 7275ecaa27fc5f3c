//! `scamscreen detect` and `scamscreen eval`.

use std::path::PathBuf;

use anyhow::{bail, Context};
use scamscreen::detect::eval::{by_condition, misclassified, render, report, CorpusItem, Outcome};
use scamscreen::detect::score::{DEFAULT_DIVERT_THRESHOLD, DEFAULT_WARN_THRESHOLD};
use scamscreen::detect::{Detector, Thresholds, Verdict};

/// Where the rules are and how strict to be.
#[derive(clap::Args, Debug, Clone)]
pub struct RuleArgs {
    /// Folder of rule packs (`<lang>.toml`).
    #[arg(long, default_value = "models/rules", env = "SCAMSCREEN_RULES")]
    pub rules: PathBuf,
    /// Score at or above which the callee is warned.
    #[arg(long, default_value_t = DEFAULT_WARN_THRESHOLD)]
    pub warn_threshold: f64,
    /// Score at or above which the call is diverted.
    #[arg(long, default_value_t = DEFAULT_DIVERT_THRESHOLD)]
    pub divert_threshold: f64,
}

impl RuleArgs {
    pub fn detector(&self) -> anyhow::Result<Detector> {
        let t = Thresholds {
            warn: self.warn_threshold,
            divert: self.divert_threshold,
        };
        Ok(Detector::load_dir(&self.rules, t)?)
    }
}

#[derive(clap::Args, Debug)]
pub struct DetectArgs {
    /// Transcript text to score.
    text: Option<String>,
    /// JSON lines with `id`, `text` and optional `lang`.
    #[arg(long, conflicts_with = "text")]
    file: Option<PathBuf>,
    /// Language of the text (default: every pack, strongest verdict).
    #[arg(long)]
    lang: Option<String>,
    /// One JSON object per input.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    rules: RuleArgs,
}

#[derive(serde::Deserialize)]
struct Input {
    #[serde(default)]
    id: serde_json::Value,
    text: String,
    #[serde(default)]
    lang: Option<String>,
}

fn print_verdict(id: &serde_json::Value, v: &Verdict, json: bool) -> anyhow::Result<()> {
    if json {
        let mut obj = serde_json::to_value(v)?;
        if let Some(o) = obj.as_object_mut() {
            o.insert("id".into(), id.clone());
        }
        println!("{obj}");
        return Ok(());
    }
    let label = match id {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => format!("{s}: "),
        other => format!("{other}: "),
    };
    println!("{label}{} (score {:.2})", v.action.name(), v.score);
    if !v.warning.is_empty() {
        println!("  {}", v.warning);
    }
    for r in &v.reasons {
        println!(
            "  {:+.1} {:<26} {:<16} \"{}\"",
            r.weight,
            r.rule,
            r.category.name(),
            r.matched
        );
    }
    Ok(())
}

pub fn run_detect(args: DetectArgs) -> anyhow::Result<()> {
    let det = args.rules.detector()?;
    match (&args.text, &args.file) {
        (Some(text), None) => {
            let v = det.score_text(text, args.lang.as_deref())?;
            print_verdict(&serde_json::Value::Null, &v, args.json)
        }
        (None, Some(path)) => {
            let src = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            for (n, line) in src
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let input: Input = serde_json::from_str(line).with_context(|| {
                    format!(
                        "{}:{}: expected {{\"id\", \"text\"}}",
                        path.display(),
                        n + 1
                    )
                })?;
                let lang = input.lang.as_deref().or(args.lang.as_deref());
                let v = det.score_text(&input.text, lang)?;
                print_verdict(&input.id, &v, args.json)?;
            }
            Ok(())
        }
        _ => bail!("give a text or --file FILE.jsonl"),
    }
}

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// Labelled corpus: JSON lines with id, label (scam|legit), category, lang, text, split.
    corpus: PathBuf,
    /// Which split to evaluate.
    #[arg(long, value_enum, default_value = "all")]
    split: Split,
    /// Speak each item with espeak-ng, pass it through 8 kHz G.711 and the whisper model, and
    /// evaluate on what whisper heard (English items; the model is English-only).
    #[arg(long)]
    audio: bool,
    /// whisper.cpp model for --audio (default: the models folder's q8_0 model).
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, default_value = "models", env = "SCAMSCREEN_MODELS")]
    models_dir: PathBuf,
    /// Voices for --audio, rotated over the items: VOICE:WPM,… (espeak-ng voice names, or
    /// festival/NAME for a Festival voice, e.g. festival/cmu_us_slt_arctic_hts:160)
    #[arg(long, default_value = crate::eval_audio::DEFAULT_VOICES)]
    voices: String,
    /// Beam width for --audio (1 = greedy).
    #[arg(long, default_value_t = 1)]
    beam: usize,
    /// Decoder prompt for --audio (biases vocabulary; "" for none).
    #[arg(long, default_value = scamscreen::asr::whisper::SCREENING_PROMPT)]
    asr_prompt: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    rules: RuleArgs,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq)]
enum Split {
    All,
    Train,
    Test,
}

pub fn load_corpus(path: &PathBuf) -> anyhow::Result<Vec<CorpusItem>> {
    let src =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    src.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{}:{}: bad corpus line", path.display(), n + 1))
        })
        .collect()
}

pub fn run_eval(args: EvalArgs) -> anyhow::Result<()> {
    let det = args.rules.detector()?;
    let mut items = load_corpus(&args.corpus)?;
    items.retain(|i| match args.split {
        Split::All => true,
        Split::Train => i.split.as_deref() != Some("test"),
        Split::Test => i.split.as_deref() == Some("test"),
    });
    if items.is_empty() {
        bail!(
            "no items in {} for split {:?}",
            args.corpus.display(),
            args.split
        );
    }
    let outcomes = if args.audio {
        let model = args
            .model
            .clone()
            .unwrap_or_else(|| scamscreen::model::ModelPaths::new(&args.models_dir).default_ggml());
        let mut cfg = scamscreen::asr::whisper::WhisperConfig::new(model);
        cfg.beam_size = args.beam;
        cfg.initial_prompt = args.asr_prompt.clone();
        let voices = crate::eval_audio::parse_voices(&args.voices)?;
        crate::eval_audio::outcomes(&det, &items, &cfg, &voices)?
    } else {
        items
            .into_iter()
            .map(|item| {
                let v = det.score_text(&item.text, item.lang.as_deref())?;
                Ok(Outcome {
                    heard: item.text.clone(),
                    condition: String::new(),
                    item,
                    action: v.action,
                    score: v.score,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    let r = report(&outcomes);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    print!("{}", render(&r));
    let per = by_condition(&outcomes);
    if per.len() > 1 {
        println!("by voice");
        for (cond, r) in per {
            println!(
                "  {cond:<16} items {:>3}  scam recall {:>5.1}%  legit flagged {:>4.1}%",
                r.items,
                r.recall * 100.0,
                (r.legit_diverted + r.legit_warned) * 100.0
            );
        }
    }
    let wrong = misclassified(&outcomes);
    println!("\nmisclassified ({})", wrong.len());
    for o in wrong {
        println!(
            "  {:<14} {:<5} {:<18} {:<6} {:.2}  {}",
            o.item.id,
            format!("{:?}", o.item.label).to_lowercase(),
            o.item.category,
            o.action.name(),
            o.score,
            o.heard
        );
    }
    Ok(())
}
