//! Everything `scamscreen run` needs to screen calls: model, rules, prompts, ports, store.

use anyhow::Context;
use scamscreen::asr::whisper::{WhisperConfig, WhisperPool, SCREENING_PROMPT};
use scamscreen::call::CallConfig;
use scamscreen::config::Config;
use scamscreen::detect::Detector;
use scamscreen::media::ports::PortPool;
use scamscreen::model::ModelPaths;
use scamscreen::runtime::calls::{load_prompt, Prompts, ScreeningResources};
use scamscreen::store::CallStore;
use scamscreen::store::{StoreWriter, WriterOptions};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

/// The default prompts, spoken with espeak-ng when their WAV files are missing.
pub const GREETING_TEXT: &str =
    "This call is being screened. Please say your name and why you are calling.";
pub const BLOCK_TEXT: &str =
    "This call cannot be connected. The person you are calling does not accept this call. Goodbye.";
pub const REPROMPT_TEXT: &str =
    "Sorry, I did not hear you. Please say your name and why you are calling.";
pub const FOLLOW_UP_TEXT: &str =
    "Which company are you calling from, and what would you like us to do?";
pub const BLOCK_MESSAGE_TEXT: &str = "This call cannot be connected. \
    If you think this is a mistake, please leave a message with your name and number after the tone.";

/// Make `dir/name` with espeak-ng if it does not exist yet, then load it as 8 kHz PCM.
pub fn ensure_prompt(dir: &Path, name: &str, text: &str) -> anyhow::Result<Arc<[i16]>> {
    let path = dir.join(name);
    if !path.exists() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create prompts folder {}", dir.display()))?;
        let ok = std::process::Command::new("espeak-ng")
            .args(["-v", "en-us", "-s", "150", "-w"])
            .arg(&path)
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
    }
    let pcm = load_prompt(&path).with_context(|| format!("prompt {}", path.display()))?;
    Ok(Arc::from(pcm))
}

pub fn resources(
    cfg: &Config,
    models_dir: &Path,
    media_ip: IpAddr,
    call: CallConfig,
) -> anyhow::Result<(ScreeningResources, Option<StoreWriter>)> {
    let model = cfg
        .screening
        .model
        .clone()
        .unwrap_or_else(|| ModelPaths::new(models_dir).default_ggml());
    anyhow::ensure!(
        model.exists(),
        "whisper model {} not found: run `make model` (or `scamscreen model fetch && scamscreen model convert --quantize q8_0`), or use --mode mark",
        model.display()
    );
    let mut wcfg = WhisperConfig::new(model);
    wcfg.initial_prompt = SCREENING_PROMPT.to_string();
    wcfg.queue_depth = cfg.screening.asr_queue_depth;
    wcfg.threads = cfg.screening.asr_threads;
    let pool = WhisperPool::start(&wcfg).context("cannot load the whisper model")?;
    let detector = Detector::load_dir(&cfg.screening.rules_dir, cfg.screening.thresholds())
        .and_then(|d| d.with_model_weight(cfg.screening.model_weight))
        .with_context(|| format!("rule packs in {}", cfg.screening.rules_dir.display()))?;
    let prompts = &cfg.media.prompts_dir;
    let block_message = ensure_prompt(prompts, "block-message.wav", BLOCK_MESSAGE_TEXT)?;
    let prompts = Prompts {
        greeting: ensure_prompt(prompts, "greeting.wav", GREETING_TEXT)?,
        reprompt: ensure_prompt(prompts, "reprompt.wav", REPROMPT_TEXT)?,
        follow_up: ensure_prompt(prompts, "follow-up.wav", FOLLOW_UP_TEXT)?,
        block: ensure_prompt(prompts, "block.wav", BLOCK_TEXT)?,
        // The tone that says "speak now" (a recorded WAV may bring its own).
        block_message: with_tone(&block_message),
    };
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
        transcriber: Arc::new(pool),
        detector: Arc::new(detector),
        prompts,
        ringback: cfg.media.ringback.pcm(),
        ports,
        media_ip,
        call,
        language: Some(cfg.screening.language.clone()),
        // try_record counts and logs drops itself; the call never waits for the disk.
        on_finished: Some(Box::new(move |record| {
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
