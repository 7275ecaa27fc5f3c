//! The languages a screened call can be held in: what scamscreen says in each (every prompt,
//! the callee's "press 1 / 2"), the espeak-ng voice that says it, and which language a call
//! gets from the number it was made to.
//!
//! English and German are complete: prompts here, rule packs in `models/rules/{en,de}.toml`.
//! A recorded WAV in the prompts folder (`greeting.wav` for English, `de/greeting.wav` for
//! German, …) replaces the spoken text.

use crate::sip::classify::NameAddr;
use crate::sip::pattern::{Pattern, PatternError};
use crate::sip::uri::Uri;

/// Languages with prompts and a rule pack.
pub const SUPPORTED: [&str; 2] = ["en", "de"];

/// What scamscreen says in one language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Texts {
    pub greeting: &'static str,
    /// Once, when the caller said nothing after the greeting.
    pub reprompt: &'static str,
    /// Once, when the first answer leaves the verdict open (`follow_up = true`).
    pub follow_up: &'static str,
    /// Divert without `divert_uri` and without a message offer.
    pub block: &'static str,
    /// Divert with the message offer (a tone follows).
    pub block_message: &'static str,
    /// After the warning, to the callee.
    pub choice: &'static str,
    /// To a screened caller whose callee cannot be reached (busy, no answer, PBX down).
    pub unavailable: &'static str,
}

const EN: Texts = Texts {
    greeting: "This call is being screened. Please say your name and why you are calling.",
    reprompt: "Sorry, I did not hear you. Please say your name and why you are calling.",
    follow_up: "Which company are you calling from, and what would you like us to do?",
    block: "This call cannot be connected. The person you are calling does not accept this \
            call. Goodbye.",
    block_message: "This call cannot be connected. If you think this is a mistake, please \
                    leave a message with your name and number after the tone.",
    choice: "Press 1 to accept the call, or 2 to refuse it.",
    unavailable: "The person you are calling cannot be reached right now. Please try again \
                  later. Goodbye.",
};

const DE: Texts = Texts {
    greeting: "Dieser Anruf wird geprüft. Bitte nennen Sie Ihren Namen und den Grund Ihres \
               Anrufs.",
    reprompt: "Entschuldigung, ich habe Sie nicht gehört. Bitte nennen Sie Ihren Namen und \
               den Grund Ihres Anrufs.",
    follow_up: "Von welcher Firma rufen Sie an, und was sollen wir für Sie tun?",
    block: "Dieser Anruf kann nicht verbunden werden. Die angerufene Person nimmt diesen \
            Anruf nicht an. Auf Wiederhören.",
    block_message: "Dieser Anruf kann nicht verbunden werden. Wenn Sie glauben, dass das ein \
                    Irrtum ist, hinterlassen Sie bitte nach dem Ton eine Nachricht mit Ihrem \
                    Namen und Ihrer Nummer.",
    choice: "Drücken Sie die 1, um den Anruf anzunehmen, oder die 2, um ihn abzulehnen.",
    unavailable: "Die angerufene Person ist im Moment nicht erreichbar. Bitte versuchen Sie \
                  es später noch einmal. Auf Wiederhören.",
};

/// The texts of `lang` (English for a language without its own).
pub fn texts(lang: &str) -> &'static Texts {
    match base(lang) {
        "de" => &DE,
        _ => &EN,
    }
}

/// The espeak-ng voice for `lang`.
pub fn voice(lang: &str) -> &'static str {
    match base(lang) {
        "de" => "de",
        _ => "en-us",
    }
}

/// Where `lang`'s prompt WAVs live inside the prompts folder: English at its top (as before
/// there were languages), others in a subfolder named for the language.
pub fn prompt_subdir(lang: &str) -> &'static str {
    match base(lang) {
        "de" => "de",
        _ => "",
    }
}

/// `de-CH` → `de`.
pub fn base(lang: &str) -> &str {
    let l = lang.split(['-', '_']).next().unwrap_or(lang);
    SUPPORTED
        .iter()
        .find(|s| s.eq_ignore_ascii_case(l))
        .copied()
        .unwrap_or("en")
}

/// Whether `lang` is one scamscreen can hold a call in.
pub fn is_supported(lang: &str) -> bool {
    let l = lang.split(['-', '_']).next().unwrap_or(lang);
    SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(l))
}

/// Called numbers → language, first match wins; no match: the default.
#[derive(Debug, Clone, Default)]
pub struct LanguageByNumber {
    rules: Vec<(Pattern, String)>,
}

impl LanguageByNumber {
    /// `(pattern, language)` pairs as configured (`[[screening.called]]`).
    pub fn new<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, PatternError> {
        let mut rules = Vec::new();
        for (p, l) in pairs {
            rules.push((Pattern::parse(p)?, l.to_string()));
        }
        Ok(LanguageByNumber { rules })
    }

    /// The language for a call to `request_uri`, if a pattern names its number.
    pub fn language_for(&self, request_uri: &str) -> Option<&str> {
        let uri = Uri::parse(request_uri).ok()?;
        let called = NameAddr {
            display: None,
            user: uri.number_or_user(),
            host: if uri.is_sip() {
                uri.host.clone()
            } else {
                String::new()
            },
            scheme: uri.scheme.clone(),
        };
        self.rules
            .iter()
            .find(|(p, _)| p.matches(&called))
            .map(|(_, l)| l.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_has_every_text() {
        for l in SUPPORTED {
            let t = texts(l);
            for s in [
                t.greeting,
                t.reprompt,
                t.follow_up,
                t.block,
                t.block_message,
                t.choice,
            ] {
                assert!(s.len() > 10, "{l}: {s}");
                assert!(!s.contains("  "), "{l}: double space in {s:?}");
            }
            assert!(t.choice.contains('1') && t.choice.contains('2'));
        }
        assert_eq!(texts("de-CH").greeting, DE.greeting);
        assert_eq!(texts("fr").greeting, EN.greeting);
        assert_eq!(voice("de"), "de");
        assert!(is_supported("de-AT") && !is_supported("fr"));
    }

    #[test]
    fn called_numbers_pick_the_language() {
        let by =
            LanguageByNumber::new([("+4144*", "de"), ("0041*", "de"), ("lobby", "en")]).unwrap();
        assert_eq!(by.language_for("sip:+41441234567@pbx.example"), Some("de"));
        assert_eq!(by.language_for("sip:0041441234567@pbx.example"), Some("de"));
        assert_eq!(by.language_for("tel:+41441234567"), Some("de"));
        assert_eq!(by.language_for("sip:lobby@pbx.example"), Some("en"));
        assert_eq!(by.language_for("sip:+4930123@pbx.example"), None);
        assert_eq!(by.language_for("not a uri"), None);
    }
}
