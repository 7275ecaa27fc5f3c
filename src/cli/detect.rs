//! `scamscreen detect` and `scamscreen eval`.

use std::path::PathBuf;

use anyhow::{bail, Context};
use scamscreen::detect::baseline::KeywordBaseline;
use scamscreen::detect::eval::{
    by_condition, misclassified, render, render_comparison, report, CorpusItem, Label, Outcome,
};
use scamscreen::detect::score::{DEFAULT_DIVERT_THRESHOLD, DEFAULT_WARN_THRESHOLD};
use scamscreen::detect::train::{train, Example, TrainParams};
use scamscreen::detect::Action;
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
    /// How much the learned model counts beside the rules (0 = rules only).
    #[arg(long, default_value_t = scamscreen::detect::score::DEFAULT_MODEL_WEIGHT)]
    pub model_weight: f64,
}

impl RuleArgs {
    pub fn detector(&self) -> anyhow::Result<Detector> {
        let t = Thresholds {
            warn: self.warn_threshold,
            divert: self.divert_threshold,
        };
        Ok(Detector::load_dir(&self.rules, t)?.with_model_weight(self.model_weight)?)
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
    if let Some(m) = v.model_score {
        let phrases = if v.model_phrases.is_empty() {
            String::new()
        } else {
            format!(", strongest words: \"{}\"", v.model_phrases.join("\", \""))
        };
        println!("  rules {:.2}, learned model {m:.2}{phrases}", v.rule_score);
    }
    if v.more_speech_could_change {
        println!("  more speech could change this: {}", v.more_speech_reason);
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
    /// Labelled corpus: JSON lines with id, author, label (scam|legit), type, lang, text, split.
    #[arg(default_value = "tests/corpus/openings.jsonl")]
    corpus: PathBuf,
    /// Which split to evaluate: train (rule and model authors' material), test (held-out
    /// authors: look at the numbers, never tune on the items), all.
    #[arg(long, value_enum, default_value = "train")]
    split: Split,
    /// Only items in this language (en, de).
    #[arg(long)]
    lang: Option<String>,
    /// The naive keyword baseline to compare with.
    #[arg(long, default_value = "tests/corpus/baseline_keywords.toml")]
    baseline: PathBuf,
    /// Speak each item (espeak-ng, MBROLA or Festival voices), pass it through 8 kHz G.711 and
    /// the whisper model, and evaluate on what whisper heard (English items; tiny.en is
    /// English-only).
    #[arg(long)]
    audio: bool,
    /// With --audio: cut each call's audio at this many seconds, as a fixed listening window
    /// would.
    #[arg(long)]
    listen_secs: Option<f64>,
    /// With --audio: evaluate at most this many items (spread evenly over the corpus order).
    #[arg(long)]
    limit: Option<usize>,
    /// whisper.cpp model for --audio (default: the models folder's q8_0 model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// With --audio: the second pass of `scamscreen run`: items whose first verdict is open
    /// (a warning, or more speech could change it) are heard again by this (multilingual)
    /// model in the item's language, and scored again.
    #[arg(long)]
    second_model: Option<PathBuf>,
    #[arg(long, default_value = "models", env = "SCAMSCREEN_MODELS")]
    models_dir: PathBuf,
    /// Voices for --audio, rotated over the items: VOICE:WPM,… (espeak-ng voice names such as
    /// en-us+f2 or mb-us1 for MBROLA, or festival/NAME for a Festival voice). Default: two
    /// espeak-ng and two MBROLA voices of the language (--lang, else English).
    #[arg(long)]
    voices: Option<String>,
    /// Beam width for --audio (1 = greedy).
    #[arg(long, default_value_t = 1)]
    beam: usize,
    /// Decoder prompt for --audio (biases vocabulary; "" for none). Default: the screening
    /// prompt of the language.
    #[arg(long)]
    asr_prompt: Option<String>,
    /// List the items the combined scorer got wrong (off for the held-out split unless asked:
    /// reading held-out misses is how a corpus gets fitted).
    #[arg(long)]
    misses: bool,
    /// Print the reports as JSON.
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

/// The four scorers `eval` compares, on one heard text.
pub struct Scorers {
    pub baseline: KeywordBaseline,
    pub rules: Detector,
    pub combined: Detector,
}

impl Scorers {
    pub fn names(&self) -> Vec<&'static str> {
        if self.combined.model().is_some() {
            vec!["baseline", "rules", "model", "combined"]
        } else {
            vec!["baseline", "rules"]
        }
    }

    /// (action, score) of every scorer of [`Scorers::names`] on `text`, in that order. The model
    /// alone and the combined scorer read one verdict.
    pub fn score(&self, text: &str, lang: Option<&str>) -> anyhow::Result<Vec<(Action, f64)>> {
        let (b, hits) = self.baseline.action(text, lang);
        let rules = self.rules.score_text(text, lang)?;
        let mut out = vec![(b, hits as f64), (rules.action, rules.score)];
        if self.combined.model().is_some() {
            let v = self.combined.score_text(text, lang)?;
            let p = v.model_score.unwrap_or(0.0);
            out.push((self.combined.thresholds().action(p), p));
            out.push((v.action, v.score));
        }
        Ok(out)
    }
}

pub fn run_eval(args: EvalArgs) -> anyhow::Result<()> {
    let combined = args.rules.detector()?;
    let scorers = Scorers {
        baseline: KeywordBaseline::load(&args.baseline)?,
        rules: combined.clone().with_model(None),
        combined,
    };
    let mut items = load_corpus(&args.corpus)?;
    items.retain(|i| match args.split {
        Split::All => true,
        Split::Train => i.split.as_deref() != Some("test"),
        Split::Test => i.split.as_deref() == Some("test"),
    });
    if let Some(l) = &args.lang {
        items.retain(|i| i.lang.as_deref().unwrap_or("en") == l);
    }
    if items.is_empty() {
        bail!(
            "no items in {} for split {:?}",
            args.corpus.display(),
            args.split
        );
    }
    // (item, what was heard, condition, scoring language)
    let mut passes: Option<(usize, Vec<u64>, Vec<u64>)> = None;
    // With the second pass: what the first pass alone heard, to compare in the same run.
    let mut first_only: Vec<(CorpusItem, String, String, Option<String>)> = Vec::new();
    let heard: Vec<(CorpusItem, String, String, Option<String>)> = if args.audio {
        let model = args
            .model
            .clone()
            .unwrap_or_else(|| scamscreen::model::ModelPaths::new(&args.models_dir).default_ggml());
        let lang = args.lang.clone().unwrap_or_else(|| "en".to_string());
        if lang != "en" && !scamscreen::asr::whisper::model_is_multilingual(&model)? {
            bail!(
                "{} is English only and cannot hear {lang}: use --model with a multilingual \
                 model (scamscreen model convert --model base --quantize q8_0 makes \
                 models/ggml-base-q8_0.bin)",
                model.display()
            );
        }
        let mut cfg = scamscreen::asr::whisper::WhisperConfig::new(model);
        cfg.beam_size = args.beam;
        cfg.language = lang.clone();
        cfg.initial_prompt = args
            .asr_prompt
            .clone()
            .unwrap_or_else(|| scamscreen::asr::whisper::screening_prompt(&lang).to_string());
        let voices = crate::cli::eval_audio::parse_voices(
            args.voices
                .as_deref()
                .unwrap_or(crate::cli::eval_audio::default_voices(&lang)),
        )?;
        let mut english: Vec<CorpusItem> = items
            .into_iter()
            .filter(|i| i.lang.as_deref().unwrap_or("en") == lang)
            .collect();
        if let Some(n) = args.limit.filter(|n| *n > 0 && *n < english.len()) {
            let step = english.len() as f64 / n as f64;
            english = (0..n)
                .map(|k| english[(k as f64 * step) as usize].clone())
                .collect();
        }
        let open = |text: &str, lang: Option<&str>| {
            scorers
                .combined
                .score_text(text, lang)
                .map(|v| v.is_open())
                .unwrap_or(false)
        };
        let second = match &args.second_model {
            Some(m) => {
                let mut c = scamscreen::asr::whisper::WhisperConfig::new(m).for_screening();
                c.beam_size = args.beam;
                Some(crate::cli::eval_audio::SecondPass {
                    asr: c,
                    open: &open,
                })
            }
            None => None,
        };
        let heard = crate::cli::eval_audio::transcripts(
            &english,
            &cfg,
            &voices,
            args.listen_secs,
            second.as_ref(),
        )?;
        if second.is_some() {
            let used = heard.iter().filter(|h| h.second_ms.is_some()).count();
            let first: Vec<u64> = heard.iter().map(|h| h.first_ms).collect();
            let both: Vec<u64> = heard
                .iter()
                .map(|h| h.first_ms + h.second_ms.unwrap_or(0))
                .collect();
            passes = Some((used, first, both));
            first_only = heard
                .iter()
                .map(|h| {
                    let (text, lang) = h.first.clone();
                    (h.item.clone(), text, h.condition.clone(), lang)
                })
                .collect();
        }
        heard
            .into_iter()
            .map(|h| (h.item, h.text, h.condition, h.lang))
            .collect()
    } else {
        items
            .into_iter()
            .map(|i| {
                let t = i.text.clone();
                let l = i.lang.clone();
                (i, t, String::new(), l)
            })
            .collect()
    };
    let names = scorers.names();
    let mut outcomes: Vec<Vec<Outcome>> = vec![Vec::new(); names.len()];
    for (item, text, cond, lang) in &heard {
        for (k, (action, score)) in scorers
            .score(text, lang.as_deref())?
            .into_iter()
            .enumerate()
        {
            outcomes[k].push(Outcome {
                item: item.clone(),
                action,
                score,
                heard: text.clone(),
                condition: cond.clone(),
            });
        }
    }
    let reports: Vec<(&str, scamscreen::detect::eval::Report)> = names
        .iter()
        .zip(&outcomes)
        .map(|(n, o)| (*n, report(o)))
        .collect();
    let combined_outcomes = outcomes.pop().unwrap_or_default();
    if args.json {
        let obj: serde_json::Map<String, serde_json::Value> = reports
            .iter()
            .map(|(n, r)| Ok((n.to_string(), serde_json::to_value(r)?)))
            .collect::<anyhow::Result<_>>()?;
        let mut obj = obj;
        if let Some(p) = &passes {
            obj.insert("two_pass".into(), two_pass_json(p));
            let r = report(&combined_only(&scorers, &first_only)?);
            obj.insert("combined_first_pass_only".into(), serde_json::to_value(r)?);
        }
        println!("{}", serde_json::to_string_pretty(&obj)?);
        return Ok(());
    }
    let (last_name, last) = reports.last().expect("at least two scorers");
    println!(
        "{} items ({:?} split{}{})\n",
        last.items,
        args.split,
        if args.audio { ", audio" } else { ", text" },
        args.listen_secs
            .map(|s| format!(", cut at {s} s"))
            .unwrap_or_default()
    );
    print!("{}", render(last));
    if let Some((used, first, both)) = &passes {
        let r = report(&combined_only(&scorers, &first_only)?);
        println!("\ncombined on the first pass alone (tiny.en), same run:");
        print!("{}", render(&r));
        let pct = |v: &[u64], q: f64| percentile_ms(v, q);
        println!(
            "\nsecond pass: {used} of {} items heard again; recogniser time per item p50/p95: \
             first pass only {}/{} ms, with the second pass {}/{} ms",
            first.len(),
            pct(first, 0.5),
            pct(first, 0.95),
            pct(both, 0.5),
            pct(both, 0.95)
        );
    }
    println!("\n{last_name} vs the others\n");
    let refs: Vec<(&str, &scamscreen::detect::eval::Report)> =
        reports.iter().map(|(n, r)| (*n, r)).collect();
    print!("{}", render_comparison(&refs));
    let per = by_condition(&combined_outcomes);
    if per.len() > 1 {
        println!("by voice ({last_name})");
        for (cond, r) in per {
            println!(
                "  {cond:<22} items {:>3}  scam caught {:>5.1}%  legit flagged {:>4.1}%",
                r.items,
                r.recall * 100.0,
                (r.legit_diverted + r.legit_warned) * 100.0
            );
        }
    }
    let wrong = misclassified(&combined_outcomes);
    if !args.misses {
        println!("\n{} misclassified (list them with --misses)", wrong.len());
        return Ok(());
    }
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

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Labelled corpus; only its train split is used (held-out authors never are).
    #[arg(default_value = "tests/corpus/openings.jsonl")]
    corpus: PathBuf,
    /// Where to write the model (the rule folder, so it travels with the packs).
    #[arg(long, default_value = "models/rules/linear.model")]
    out: PathBuf,
    /// Gradient steps.
    #[arg(long, default_value_t = TrainParams::default().iterations)]
    iterations: usize,
    /// L2 penalty.
    #[arg(long, default_value_t = TrainParams::default().l2)]
    l2: f64,
    /// Weights smaller than this are dropped from the file.
    #[arg(long, default_value_t = TrainParams::default().prune)]
    prune: f64,
    /// Instead of writing a model: leave-one-author-out cross-validation on the train split
    /// (each train author scored by a model trained on the others), for model-only and
    /// combined scoring at several model weights. This is how the model weight and the
    /// training parameters are chosen without looking at held-out authors.
    #[arg(long)]
    cv: bool,
    /// Folder of rule packs for --cv's combined scores.
    #[arg(long, default_value = "models/rules", env = "SCAMSCREEN_RULES")]
    rules: PathBuf,
}

/// The train-split examples of a corpus, in corpus order.
pub fn training_examples(items: &[CorpusItem]) -> Vec<Example<'_>> {
    items
        .iter()
        .filter(|i| i.split.as_deref() != Some("test"))
        .map(|i| Example {
            text: &i.text,
            scam: i.label == Label::Scam,
        })
        .collect()
}

pub fn run_train(args: TrainArgs) -> anyhow::Result<()> {
    let items = load_corpus(&args.corpus)?;
    let examples = training_examples(&items);
    if examples.is_empty() {
        bail!("no train-split items in {}", args.corpus.display());
    }
    let params = TrainParams {
        iterations: args.iterations,
        l2: args.l2,
        prune: args.prune,
        ..TrainParams::default()
    };
    if args.cv {
        return cross_validate(&items, params, &args.rules);
    }
    let corpus_hash = {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for e in &examples {
            h.update(e.text.as_bytes());
            h.update([u8::from(e.scam), b'\n']);
        }
        h.finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let model = train(
        &examples,
        params,
        serde_json::json!({"corpus_sha256": corpus_hash, "split": "train"}),
    );
    let bytes = model.to_bytes();
    let tmp = args.out.with_extension("partial");
    std::fs::write(&tmp, &bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &args.out)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    let nz = model.weights.iter().filter(|w| **w != 0.0).count();
    println!(
        "trained on {} examples ({} scam); {} non-zero weights; wrote {} ({} bytes)",
        examples.len(),
        examples.iter().filter(|e| e.scam).count(),
        nz,
        args.out.display(),
        bytes.len()
    );
    Ok(())
}

/// Leave-one-author-out cross-validation over the train split (see `TrainArgs::cv`).
fn cross_validate(
    items: &[CorpusItem],
    params: TrainParams,
    rules: &std::path::Path,
) -> anyhow::Result<()> {
    let train_items: Vec<&CorpusItem> = items
        .iter()
        .filter(|i| i.split.as_deref() != Some("test"))
        .collect();
    let mut authors: Vec<&str> = train_items.iter().map(|i| i.author.as_str()).collect();
    authors.sort_unstable();
    authors.dedup();
    if authors.len() < 2 {
        bail!("cross-validation needs at least two train authors");
    }
    let base = Detector::load_dir(rules, Thresholds::default())?.with_model(None);
    let weights = [0.0, 0.25, 0.5, 0.75, 1.0, 1.5];
    // (weight → outcomes), plus the model alone.
    let mut by_weight: Vec<Vec<Outcome>> = vec![Vec::new(); weights.len()];
    let mut model_only = Vec::new();
    for author in &authors {
        let examples: Vec<Example> = train_items
            .iter()
            .filter(|i| i.author != *author)
            .map(|i| Example {
                text: &i.text,
                scam: i.label == Label::Scam,
            })
            .collect();
        let model = train(&examples, params, serde_json::json!({}));
        for (k, w) in weights.iter().enumerate() {
            let det = base
                .clone()
                .with_model(Some(model.clone()))
                .with_model_weight(*w)?;
            for item in train_items.iter().filter(|i| i.author == *author) {
                let v = det.score_text(&item.text, item.lang.as_deref())?;
                if k == 0 {
                    let p = v.model_score.unwrap_or(0.0);
                    model_only.push(Outcome {
                        item: (*item).clone(),
                        action: det.thresholds().action(p),
                        score: p,
                        heard: item.text.clone(),
                        condition: author.to_string(),
                    });
                }
                by_weight[k].push(Outcome {
                    item: (*item).clone(),
                    action: v.action,
                    score: v.score,
                    heard: item.text.clone(),
                    condition: author.to_string(),
                });
            }
        }
        eprintln!("fold {author}: done");
    }
    println!(
        "leave-one-author-out over {} train authors ({})",
        authors.len(),
        authors.join(", ")
    );
    let names: Vec<String> = std::iter::once("model".to_string())
        .chain(weights.iter().map(|w| format!("w={w}")))
        .collect();
    let reports: Vec<scamscreen::detect::eval::Report> = std::iter::once(report(&model_only))
        .chain(by_weight.iter().map(|o| report(o)))
        .collect();
    let refs: Vec<(&str, &scamscreen::detect::eval::Report)> = names
        .iter()
        .map(String::as_str)
        .zip(reports.iter())
        .collect();
    print!("{}", render_comparison(&refs));
    Ok(())
}

/// The `q` quantile of `v` (ms), 0 for none.
fn percentile_ms(v: &[u64], q: f64) -> u64 {
    let mut v = v.to_vec();
    v.sort_unstable();
    match v.len() {
        0 => 0,
        n => v[((n as f64 - 1.0) * q).round() as usize],
    }
}

/// The second pass's share and recogniser times, for `eval --json`.
fn two_pass_json((used, first, both): &(usize, Vec<u64>, Vec<u64>)) -> serde_json::Value {
    serde_json::json!({
        "items": first.len(),
        "second_pass_items": used,
        "first_ms_p50": percentile_ms(first, 0.5),
        "first_ms_p95": percentile_ms(first, 0.95),
        "two_pass_ms_p50": percentile_ms(both, 0.5),
        "two_pass_ms_p95": percentile_ms(both, 0.95),
    })
}

/// The combined scorer's outcomes on `heard` (item, text, condition, scoring language).
fn combined_only(
    scorers: &Scorers,
    heard: &[(CorpusItem, String, String, Option<String>)],
) -> anyhow::Result<Vec<Outcome>> {
    heard
        .iter()
        .map(|(item, text, cond, lang)| {
            let v = scorers.combined.score_text(text, lang.as_deref())?;
            Ok(Outcome {
                item: item.clone(),
                action: v.action,
                score: v.score,
                heard: text.clone(),
                condition: cond.clone(),
            })
        })
        .collect()
}
