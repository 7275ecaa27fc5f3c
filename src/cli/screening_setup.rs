//! Everything `scamscreen run` needs to screen calls: model, rules, prompts, ports, store.

use anyhow::Context;
use scamscreen::asr::whisper::{model_is_multilingual, WhisperConfig, WhisperPool};
use scamscreen::asr::Transcriber;
use scamscreen::call::language::{self, LanguageByNumber};
use scamscreen::call::CallConfig;
use scamscreen::config::Config;
use scamscreen::detect::Detector;
use scamscreen::media::ports::PortPool;
use scamscreen::model::ModelPaths;
use scamscreen::runtime::calls::{load_prompt, PromptBook, Prompts, ScreeningResources};
use scamscreen::runtime::sip_server::ScreeningReload;
use scamscreen::store::CallStore;
use scamscreen::store::{StoreWriter, WriterOptions};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Make `dir/name` with espeak-ng if it does not exist yet, then load it as 8 kHz PCM.
pub fn ensure_prompt(
    dir: &Path,
    name: &str,
    text: &str,
    voice: &str,
) -> anyhow::Result<Arc<[i16]>> {
    let path = dir.join(name);
    if !path.exists() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create prompts folder {}", dir.display()))?;
        // Spoken into a file of this process's own, then renamed into place: another
        // scamscreen starting at the same moment never reads a half-written prompt.
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let ok = std::process::Command::new("espeak-ng")
            .args(["-v", voice, "-s", "150", "-w"])
            .arg(&tmp)
            .arg(text)
            .status()
            .with_context(|| {
                format!(
                    "cannot run espeak-ng to make {} (install espeak-ng or provide the WAV)",
                    path.display()
                )
            })?
            .success();
        anyhow::ensure!(ok, "espeak-ng failed to make {}", path.display());
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("cannot put the prompt in place at {}", path.display()))?;
    }
    let pcm = load_prompt(&path).with_context(|| format!("prompt {}", path.display()))?;
    Ok(Arc::from(pcm))
}

/// Which speech models the configuration needs, checked against the files: the first model
/// for English calls (and all calls when it is multilingual), the multilingual one for calls
/// in a language the first cannot hear.
#[derive(Debug, Clone)]
pub struct SpeechPlan {
    pub first: PathBuf,
    pub first_multilingual: bool,
    pub multilingual: Option<PathBuf>,
    /// Every language calls may be held in (the default first).
    pub languages: Vec<String>,
    /// The model of the second pass on English calls (the multilingual one, when it exists
    /// and `second_pass` is on).
    pub second: Option<PathBuf>,
}

impl SpeechPlan {
    pub fn of(cfg: &Config, models_dir: &Path) -> anyhow::Result<SpeechPlan> {
        let paths = ModelPaths::new(models_dir);
        let first = cfg
            .screening
            .model
            .clone()
            .unwrap_or_else(|| paths.default_ggml());
        anyhow::ensure!(
            first.exists(),
            "whisper model {} not found: run `make model` (or `scamscreen model fetch && scamscreen model convert --quantize q8_0`), or use --mode mark",
            first.display()
        );
        let first_multilingual = model_is_multilingual(&first)?;
        let mut languages = vec![language::base(&cfg.screening.language).to_string()];
        for c in &cfg.screening.called {
            let l = language::base(&c.language).to_string();
            if !languages.contains(&l) {
                languages.push(l);
            }
        }
        let foreign: Vec<&String> = languages.iter().filter(|l| *l != "en").collect();
        let multilingual = if first_multilingual || foreign.is_empty() {
            None
        } else {
            let m = cfg
                .screening
                .multilingual_model
                .clone()
                .unwrap_or_else(|| models_dir.join(DEFAULT_MULTILINGUAL));
            let langs = foreign
                .iter()
                .map(|l| l.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            anyhow::ensure!(
                m.exists(),
                "calls in {langs} need a multilingual whisper model, and {} (English only) cannot hear {langs}: \
                 {} not found; run `scamscreen model fetch --model base && scamscreen model convert --model base --quantize q8_0`, \
                 or set screening.multilingual_model",
                first.display(),
                m.display()
            );
            anyhow::ensure!(
                model_is_multilingual(&m)?,
                "screening.multilingual_model {} is an English-only model: it cannot hear {langs}",
                m.display()
            );
            Some(m)
        };
        let second = if cfg.screening.second_pass && !first_multilingual {
            let m = cfg
                .screening
                .multilingual_model
                .clone()
                .unwrap_or_else(|| models_dir.join(DEFAULT_MULTILINGUAL));
            (m.exists() && model_is_multilingual(&m).unwrap_or(false)).then_some(m)
        } else {
            None
        };
        Ok(SpeechPlan {
            first,
            first_multilingual,
            multilingual,
            languages,
            second,
        })
    }
}

/// The multilingual model looked for in the models folder.
pub const DEFAULT_MULTILINGUAL: &str = "ggml-base-q8_0.bin";

/// Each language's prompts: recorded WAVs from the prompts folder (`greeting.wav`,
/// `de/greeting.wav`, …), made with espeak-ng when missing.
pub fn prompt_book(dir: &Path, languages: &[String]) -> anyhow::Result<PromptBook> {
    let mut langs = Vec::new();
    for lang in languages {
        let t = language::texts(lang);
        let v = language::voice(lang);
        let d = dir.join(language::prompt_subdir(lang));
        let block_message = ensure_prompt(&d, "block-message.wav", t.block_message, v)?;
        langs.push((
            lang.clone(),
            Prompts {
                greeting: ensure_prompt(&d, "greeting.wav", t.greeting, v)?,
                reprompt: ensure_prompt(&d, "reprompt.wav", t.reprompt, v)?,
                follow_up: ensure_prompt(&d, "follow-up.wav", t.follow_up, v)?,
                block: ensure_prompt(&d, "block.wav", t.block, v)?,
                unavailable: ensure_prompt(&d, "unavailable.wav", t.unavailable, v)?,
                // The tone that says "speak now" (a recorded WAV may bring its own).
                block_message: with_tone(&block_message),
            },
        ));
    }
    Ok(PromptBook::new(langs))
}

fn pool(model: &Path, cfg: &Config) -> anyhow::Result<WhisperPool> {
    let mut wcfg = WhisperConfig::new(model).for_screening();
    wcfg.queue_depth = cfg.screening.asr_queue_depth;
    wcfg.threads = cfg.screening.asr_threads;
    WhisperPool::start(&wcfg)
        .with_context(|| format!("cannot load the whisper model {}", model.display()))
}

/// What a reload can change in the call layer: the rule packs with their thresholds, the
/// prompts of `languages`, and the language per called number (at start and on SIGHUP).
pub fn rules_and_prompts(cfg: &Config, languages: &[String]) -> anyhow::Result<ScreeningReload> {
    let detector = Detector::load_dir(&cfg.screening.rules_dir, cfg.screening.thresholds())
        .and_then(|d| d.with_model_weight(cfg.screening.model_weight))
        .with_context(|| format!("rule packs in {}", cfg.screening.rules_dir.display()))?;
    let prompts = prompt_book(&cfg.media.prompts_dir, languages)?;
    let by_number = LanguageByNumber::new(
        cfg.screening
            .called
            .iter()
            .map(|c| (c.number.as_str(), c.language.as_str())),
    )
    .context("screening.called")?;
    Ok(ScreeningReload {
        detector: Arc::new(detector),
        prompts,
        languages: by_number,
    })
}

pub fn resources(
    cfg: &Config,
    models_dir: &Path,
    media_ip: IpAddr,
    call: CallConfig,
    metrics: Option<Arc<scamscreen::admin::metrics::Metrics>>,
) -> anyhow::Result<(ScreeningResources, Option<StoreWriter>)> {
    let plan = SpeechPlan::of(cfg, models_dir)?;
    let notifier = match &cfg.notify.webhook {
        Some(url) => Some(
            scamscreen::notify::Notifier::start(url.clone(), cfg.notify.redact)
                .context("cannot start the webhook sender")?,
        ),
        None => None,
    };
    let first = pool(&plan.first, cfg)?;
    // One pool for the multilingual model, whether it serves German calls, second passes
    // or both.
    let multilingual = match plan.multilingual.as_ref().or(plan.second.as_ref()) {
        Some(m) => Some(Arc::new(pool(m, cfg)?) as Arc<dyn Transcriber>),
        None => None,
    };
    let second = plan.second.as_ref().and(multilingual.clone());
    let ScreeningReload {
        detector,
        prompts,
        languages,
    } = rules_and_prompts(cfg, &plan.languages)?;
    let range = cfg
        .media
        .port_range()
        .context("media.rtp_ports is not a range")?;
    let ports = PortPool::new(range).map_err(|e| anyhow::anyhow!("media.rtp_ports: {e}"))?;
    let store = CallStore::open(&cfg.store.db)?;
    let writer = StoreWriter::start(
        store,
        WriterOptions {
            retention: Some(std::time::Duration::from_secs(
                u64::from(cfg.store.retention_days) * 86_400,
            )),
            ..WriterOptions::default()
        },
    )?;
    let recorder = writer.recorder();
    let res = ScreeningResources {
        transcriber: Arc::new(first),
        transcriber_multilingual: plan.first_multilingual,
        multilingual,
        second,
        detector,
        prompts,
        languages,
        ringback: cfg.media.ringback.pcm(),
        ports,
        media_ip,
        call,
        refuse_when_saturated: cfg.screening.when_unscreened()
            == scamscreen::config::WhenUnscreened::Refuse,
        language: Some(cfg.screening.language.clone()),
        // try_record counts and logs drops itself; the call never waits for the disk.
        on_finished: Some(Box::new(move |record| {
            if let Some(m) = &metrics {
                m.observe_call(&record);
            }
            if let Some(n) = &notifier {
                n.call_finished(&record);
            }
            let _ = recorder.try_record(record);
        })),
    };
    Ok((res, Some(writer)))
}

/// `pcm` followed by 300 ms of quiet and a 400 ms 1 kHz tone (8 kHz).
fn with_tone(pcm: &[i16]) -> Arc<[i16]> {
    let mut out = pcm.to_vec();
    out.extend(std::iter::repeat_n(0, 2_400));
    out.extend((0..3_200).map(|i| {
        let t = i as f32 / 8_000.0;
        ((2.0 * std::f32::consts::PI * 1_000.0 * t).sin() * 8_000.0) as i16
    }));
    Arc::from(out)
}
