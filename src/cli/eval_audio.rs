//! `scamscreen eval --audio`: each corpus item of the language (`--lang`, default English) is spoken by espeak-ng (voices and
//! speeds rotate), band-limited and stored as 8 kHz G.711 µ-law by sox, transcribed by the real
//! whisper model, and the transcript is scored.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};
use scamscreen::asr::audio::read_wav_16k;
use scamscreen::asr::whisper::{WhisperConfig, WhisperPool};
use scamscreen::asr::{AsrRequest, Transcriber};
use scamscreen::detect::eval::CorpusItem;

/// Default rotation of `voice:words-per-minute`: two espeak-ng voices (a clear female one, a
/// male one) and two MBROLA diphone voices through espeak-ng (`mb-us1` female, `mb-us2` male;
/// Debian's contrib/non-free `mbrola-us1`/`-us2`, installed by `make deps-bench`), which sound
/// more like people.
pub const DEFAULT_VOICES: &str = "en-us+f2:140,mb-us1:140,en-us+m1:140,mb-us2:140";

/// German: four MBROLA diphone voices (`mb-de2`, `mb-de6` male; `mb-de5`, `mb-de7` female;
/// Debian's contrib/non-free `mbrola-de*`), closer to people than espeak-ng's own German.
pub const DEFAULT_VOICES_DE: &str = "mb-de2:140,mb-de5:140,mb-de6:140,mb-de7:140";

/// The default voices for items in `lang`.
pub fn default_voices(lang: &str) -> &'static str {
    match lang {
        "de" => DEFAULT_VOICES_DE,
        _ => DEFAULT_VOICES,
    }
}

/// Parse `voice:wpm,voice:wpm`.
pub fn parse_voices(spec: &str) -> anyhow::Result<Vec<(String, String)>> {
    spec.split(',')
        .map(|v| {
            let (voice, wpm) = v
                .trim()
                .split_once(':')
                .ok_or_else(|| anyhow::anyhow!("voice {v:?}: expected VOICE:WPM"))?;
            if wpm.parse::<u32>().is_err() {
                bail!("voice {v:?}: words per minute must be a number");
            }
            Ok((voice.to_string(), wpm.to_string()))
        })
        .collect()
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {:?} (install it: make deps)", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{:?} failed: {}",
            cmd.get_program(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Speak `text` into an 8 kHz µ-law WAV at `out`.
pub fn synthesize(
    text: &str,
    voice: &str,
    wpm: &str,
    dir: &Path,
    out: &Path,
) -> anyhow::Result<()> {
    let raw = dir.join("raw.wav");
    if let Some(name) = voice.strip_prefix("festival/") {
        // Festival's HTS and diphone voices are closer to natural speech than espeak-ng's.
        // Its speaking rate is a duration stretch; 160 wpm is about its natural pace.
        let wpm: f64 = wpm.parse().unwrap_or(160.0);
        let txt = dir.join("text.txt");
        std::fs::write(&txt, text)?;
        run(Command::new("text2wave")
            .arg("-eval")
            .arg(format!(
                "(begin (voice_{name}) (Parameter.set 'Duration_Stretch {:.2}))",
                160.0 / wpm.max(1.0)
            ))
            .arg(&txt)
            .arg("-o")
            .arg(&raw))?;
    } else {
        run(Command::new("espeak-ng")
            .args(["-g", "4", "-v", voice, "-s", wpm, "-w"])
            .arg(&raw)
            .arg(text))?;
    }
    run(Command::new("sox")
        .arg(&raw)
        .args(["-r", "8000", "-c", "1", "-e", "u-law"])
        .arg(out)
        .args(["sinc", "300-3400", "norm", "-3"]))
}

/// What whisper heard of one item.
pub struct Heard {
    pub item: CorpusItem,
    pub text: String,
    /// `voice:wpm`.
    pub condition: String,
    /// The language to score in: the item's, or the one the second pass detected.
    pub lang: Option<String>,
    /// What the first pass heard (text, scoring language), when a second pass replaced it.
    pub first: (String, Option<String>),
    /// Recogniser time: the first pass, and the second when there was one (ms).
    pub first_ms: u64,
    pub second_ms: Option<u64>,
}

/// The second pass as `scamscreen run` does it: a bigger model hears the item again when
/// `open` says the first verdict is open, in the item's language.
pub struct SecondPass<'a> {
    pub asr: WhisperConfig,
    pub open: &'a dyn Fn(&str, Option<&str>) -> bool,
}

/// Speak, cut, transcribe: what whisper heard of each item, with the voice used.
pub fn transcripts(
    items: &[CorpusItem],
    asr: &WhisperConfig,
    voices: &[(String, String)],
    listen_secs: Option<f64>,
    second: Option<&SecondPass>,
) -> anyhow::Result<Vec<Heard>> {
    if voices.is_empty() {
        bail!("no voices");
    }
    if let Some(s) = listen_secs.filter(|s| !(s.is_finite() && *s > 0.0)) {
        bail!("--listen-secs {s}: must be a positive number of seconds");
    }
    let pool = WhisperPool::start(asr)?;
    let second_pool = match second {
        Some(s) => Some(WhisperPool::start(&s.asr)?),
        None => None,
    };
    let dir = tempfile::tempdir()?;
    let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        indicatif::ProgressBar::new(items.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut out = Vec::new();
    for (n, item) in items.iter().enumerate() {
        let (voice, wpm) = &voices[n % voices.len()];
        let wav = dir.path().join("item.wav");
        synthesize(&item.text, voice, wpm, dir.path(), &wav)?;
        let mut audio = read_wav_16k(&wav)?;
        if let Some(secs) = listen_secs {
            audio.truncate((secs * 16_000.0) as usize);
        }
        let t = pool.transcribe(audio.clone())?;
        let mut heard = Heard {
            item: item.clone(),
            text: t.text.clone(),
            condition: format!("{voice}:{wpm}"),
            lang: item.lang.clone(),
            first: (t.text.clone(), item.lang.clone()),
            first_ms: t.elapsed_ms,
            second_ms: None,
        };
        if let (Some(s), Some(p)) = (second, &second_pool) {
            if (s.open)(&t.text, item.lang.as_deref()) {
                let t2 = p.submit(AsrRequest {
                    pcm_16k: audio,
                    pcm_8k: None,
                    deadline: None,
                    // As in a call: the second pass hears the call's language.
                    language: Some(item.lang.clone().unwrap_or_else(|| "en".into())),
                })?;
                let t2 = t2.wait()?;
                heard.second_ms = Some(t2.elapsed_ms);
                if !t2.text.trim().is_empty() {
                    heard.text = t2.text.clone();
                    if ["en", "de"].contains(&t2.language.as_str()) {
                        heard.lang = Some(t2.language.clone());
                    }
                }
            }
        }
        bar.inc(1);
        out.push(heard);
    }
    bar.finish_and_clear();
    Ok(out)
}
