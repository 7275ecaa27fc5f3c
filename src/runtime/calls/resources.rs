//! What the call layer is given at start (and again at reload): models, rules, prompts,
//! ports and the call settings; the recorded prompts by language, and espeak-ng for the
//! warning spoken to the callee.

use crate::asr::{AsrError, Transcriber};
use crate::call::{CallConfig, Prompt};
use crate::detect::Detector;
use crate::media::ports::PortPool;
use crate::store::CallRecord;
use std::net::IpAddr;
use std::sync::Arc;

/// Receives every finished call (the call record store).
pub type FinishedHook = Box<dyn Fn(CallRecord) + Send>;

/// The recorded prompts (8 kHz mono) the calls ask for.
#[derive(Clone)]
pub struct Prompts {
    pub greeting: Arc<[i16]>,
    /// Played once to a caller who said nothing.
    pub reprompt: Arc<[i16]>,
    /// The follow-up question (`screening.follow_up`).
    pub follow_up: Arc<[i16]>,
    pub block: Arc<[i16]>,
    /// The block announcement offering a message, ending with a tone.
    pub block_message: Arc<[i16]>,
    /// "The person you are calling cannot be reached…" (the callee failed).
    pub unavailable: Arc<[i16]>,
}

/// The prompts of every language calls may be held in.
#[derive(Clone)]
pub struct PromptBook {
    langs: Vec<(String, Prompts)>,
}

impl PromptBook {
    /// One set per language; the first is used for a language without its own.
    pub fn new(langs: Vec<(String, Prompts)>) -> PromptBook {
        PromptBook { langs }
    }

    pub(super) fn get(&self, lang: &str) -> Option<&Prompts> {
        let base = crate::call::language::base(lang);
        self.langs
            .iter()
            .find(|(l, _)| crate::call::language::base(l) == base)
            .or(self.langs.first())
            .map(|(_, p)| p)
    }
}

impl Prompts {
    pub(super) fn pcm(&self, prompt: &Prompt) -> Option<Arc<[i16]>> {
        Some(match prompt {
            Prompt::Greeting => self.greeting.clone(),
            Prompt::Reprompt => self.reprompt.clone(),
            Prompt::FollowUp => self.follow_up.clone(),
            Prompt::Block => self.block.clone(),
            Prompt::BlockMessage => self.block_message.clone(),
            Prompt::Unavailable => self.unavailable.clone(),
            Prompt::Warning(_) => return None,
        })
    }
}

/// What the call layer needs, built once at start.
pub struct ScreeningResources {
    /// The speech model for English calls (and every call when it is multilingual).
    pub transcriber: Arc<dyn Transcriber>,
    /// Whether `transcriber` hears other languages than English.
    pub transcriber_multilingual: bool,
    /// The multilingual model for calls in a language `transcriber` cannot hear.
    pub multilingual: Option<Arc<dyn Transcriber>>,
    /// The bigger model that hears an open verdict again (`JobKind::Second`); `None`: no
    /// second pass.
    pub second: Option<Arc<dyn Transcriber>>,
    pub detector: Arc<Detector>,
    pub prompts: PromptBook,
    /// The language of calls to numbers named in `screening.called`.
    pub languages: crate::call::language::LanguageByNumber,
    /// One cadence of the ringback tone, looped while the callee rings; `None`: silence.
    pub ringback: Option<Arc<[i16]>>,
    pub ports: PortPool,
    /// Address put into our SDP and bound for RTP.
    pub media_ip: IpAddr,
    pub call: CallConfig,
    /// `when_unscreened = "503"`: refuse a withheld INVITE with 503 before answering when
    /// the speech model cannot screen it in time (see [`crate::call::admission`]).
    pub refuse_when_saturated: bool,
    /// The language of calls no `languages` entry names.
    pub language: Option<String>,
    /// Called with every finished call (the call record store).
    pub on_finished: Option<FinishedHook>,
}

impl ScreeningResources {
    /// The model that hears `lang`: the first one for English or when it is multilingual,
    /// else the multilingual one (start-up refuses a language no model hears).
    pub fn transcriber_for(&self, lang: &str) -> &Arc<dyn Transcriber> {
        if self.transcriber_multilingual || crate::call::language::base(lang) == "en" {
            return &self.transcriber;
        }
        self.multilingual.as_ref().unwrap_or(&self.transcriber)
    }
}

/// Speak `text` with espeak-ng's `voice` into 8 kHz mono PCM (the warning prompt).
pub fn synthesize(text: &str, voice: &str) -> Option<Vec<i16>> {
    let dir = tempfile::tempdir().ok()?;
    let wav = dir.path().join("warning.wav");
    let ok = std::process::Command::new("espeak-ng")
        .args(["-v", voice, "-s", "150", "-w"])
        .arg(&wav)
        .arg(text)
        .status()
        .ok()?
        .success();
    if !ok {
        return None;
    }
    load_prompt(&wav).ok()
}

/// Any WAV → 8 kHz mono i16.
pub fn load_prompt(path: &std::path::Path) -> Result<Vec<i16>, AsrError> {
    let audio = crate::asr::audio::read_wav(path)?;
    crate::media::prompt::to_8k_mono(&audio.samples, audio.rate)
}
