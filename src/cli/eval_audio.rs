//! `scamscreen eval --audio`: each corpus item of the language (`--lang`, default English) is spoken by espeak-ng (voices and
//! speeds rotate), band-limited and stored as 8 kHz G.711 µ-law by sox, transcribed by the real
//! whisper model, and the transcript is scored.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};
use scamscreen::asr::audio::read_wav_16k;
use scamscreen::asr::whisper::{WhisperConfig, WhisperPool};
use scamscreen::asr::Transcriber;
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

/// Speak, cut, transcribe: what whisper heard of each (English) item, with the voice used.
pub fn transcripts(
    items: &[CorpusItem],
    asr: &WhisperConfig,
    voices: &[(String, String)],
    listen_secs: Option<f64>,
) -> anyhow::Result<Vec<(CorpusItem, String, String)>> {
    if voices.is_empty() {
        bail!("no voices");
    }
    if let Some(s) = listen_secs.filter(|s| !(s.is_finite() && *s > 0.0)) {
        bail!("--listen-secs {s}: must be a positive number of seconds");
    }
    let pool = WhisperPool::start(asr)?;
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
        let t = pool.transcribe(audio)?;
        bar.inc(1);
        out.push((item.clone(), t.text.clone(), format!("{voice}:{wpm}")));
    }
    bar.finish_and_clear();
    Ok(out)
}
