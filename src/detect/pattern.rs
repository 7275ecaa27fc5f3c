//! Rule patterns: a small token language that survives ASR noise.
//!
//! | syntax | matches |
//! |---|---|
//! | `word` | that token (folded: case, umlauts) |
//! | `word*` | any token starting with `word` |
//! | `~word` | `word` within a small edit distance (1 for 5–7 letters, 2 from 8) |
//! | `a\|b\|c*` | any of the alternatives |
//! | `one_time\|otp` | an alternative of several words, joined by `_` |
//! | `word?` | the token or nothing |
//! | `...` / `..N` | a gap of up to 3 / N tokens |
//! | `@set` | any phrase of the pack's named set; multi-word phrases also match written together or apart ("team viewer" = "teamviewer"), fuzzily if the set says so |
//! | `#` | a number, in digits or words (also as an alternative: `money\|#`) |

use std::collections::BTreeMap;

use super::normalize::{fold_word, Token};

/// A named list of phrases (e.g. remote-access tools).
#[derive(Debug, Clone, PartialEq)]
pub struct PhraseSet {
    pub name: String,
    pub fuzzy: bool,
    pub phrases: Vec<Phrase>,
}

/// One phrase of a set, with the spelling used in explanations. A phrase written `~Name`
/// matches fuzzily even in a set that does not.
#[derive(Debug, Clone, PartialEq)]
pub struct Phrase {
    pub display: String,
    pub tokens: Vec<String>,
    pub compact: String,
    pub fuzzy: bool,
}

impl Phrase {
    pub fn new(spec: &str) -> Self {
        let (display, fuzzy) = match spec.strip_prefix('~') {
            Some(d) => (d, true),
            None => (spec, false),
        };
        let tokens: Vec<String> = super::normalize::tokenize(display)
            .into_iter()
            .map(|t| t.text)
            .collect();
        let compact = tokens.concat();
        Phrase {
            display: display.to_string(),
            tokens,
            compact,
            fuzzy,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum AltKind {
    Exact,
    Prefix,
    Fuzzy,
    Number,
}

/// One alternative: one or more words (`one_time`, `run*_out`), each with its own kind.
#[derive(Debug, Clone, PartialEq)]
struct Alt {
    words: Vec<(String, AltKind)>,
}

#[derive(Debug, Clone, PartialEq)]
enum Elem {
    Word { alts: Vec<Alt>, optional: bool },
    Gap(usize),
    Set(usize),
    Number,
}

/// A compiled pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    pub source: String,
    elems: Vec<Elem>,
}

/// Where a pattern matched.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    /// Token range `[start, end)`.
    pub start: usize,
    pub end: usize,
    /// (set name, phrase display) for each `@set` in the pattern.
    pub captures: Vec<(String, String)>,
}

/// Largest edit distance accepted for a word of `len` characters.
pub fn fuzzy_budget(len: usize) -> usize {
    match len {
        0..=4 => 0,
        5..=7 => 1,
        _ => 2,
    }
}

/// Function words never accepted as a fuzzy match, and never as part of a fuzzily matched
/// compact phrase: "connect with" is not ConnectWise, "apples and" is not Apple card. A
/// recogniser's misheard brand name is a content word or a fragment, not one of these.
const FUNCTION_WORDS: &[&str] = &[
    "a", "about", "after", "all", "also", "am", "an", "and", "any", "are", "as", "at", "be",
    "because", "been", "but", "by", "can", "could", "did", "do", "does", "for", "from", "had",
    "has", "have", "he", "her", "here", "him", "his", "how", "i", "if", "in", "into", "is", "it",
    "its", "just", "me", "my", "no", "not", "now", "of", "off", "on", "one", "or", "our", "out",
    "over", "she", "so", "some", "than", "that", "the", "their", "them", "then", "there", "these",
    "they", "this", "those", "to", "too", "up", "us", "very", "was", "we", "were", "what", "when",
    "where", "which", "who", "will", "with", "would", "you", "your", "yours", "aber", "als", "am",
    "an", "auch", "auf", "aus", "bei", "bin", "bis", "das", "dass", "dem", "den", "der", "des",
    "die", "doch", "du", "ein", "eine", "einem", "einen", "einer", "er", "es", "fuer", "hat",
    "haben", "ich", "ihr", "ihre", "ihnen", "im", "in", "ist", "ja", "kann", "mit", "nach",
    "nicht", "noch", "nur", "oder", "sie", "sind", "so", "um", "und", "uns", "von", "vor", "war",
    "was", "wie", "wir", "wird", "zu", "zum", "zur",
];

pub fn is_function_word(t: &str) -> bool {
    FUNCTION_WORDS.contains(&t)
}

fn fuzzy_eq(a: &str, b: &str) -> bool {
    if a != b && is_function_word(a) {
        return false;
    }
    let budget = fuzzy_budget(b.chars().count());
    if budget == 0 {
        return a == b;
    }
    let (la, lb) = (a.chars().count(), b.chars().count());
    la.abs_diff(lb) <= budget && strsim::levenshtein(a, b) <= budget
}

/// German number words (English ones come from `asr::wer`), folded (ü → ue).
const GERMAN_NUMBER_WORDS: [&str; 20] = [
    "eins",
    "zwei",
    "drei",
    "vier",
    "fuenf",
    "sechs",
    "sieben",
    "acht",
    "neun",
    "zehn",
    "zwoelf",
    "zwanzig",
    "dreissig",
    "vierzig",
    "fuenfzig",
    "hundert",
    "tausend",
    "million",
    "millionen",
    "milliarde",
];

fn is_number(t: &str) -> bool {
    // "one" and "ein" are far more often a pronoun or an article than an amount ("give me one
    // moment", "ein Formular"); rules that mean the key 1 write `one|#`.
    (!t.is_empty() && t.chars().all(|c| c.is_ascii_digit()))
        || (!matches!(t, "zero" | "one") && crate::asr::wer::is_number_word(t))
        || GERMAN_NUMBER_WORDS.contains(&t)
}

impl Pattern {
    /// Compile `source` against the pack's sets (by name → index).
    pub fn compile(source: &str, sets: &BTreeMap<String, usize>) -> Result<Self, String> {
        let mut elems = Vec::new();
        for raw in source.split_whitespace() {
            if raw == "..." {
                elems.push(Elem::Gap(3));
            } else if let Some(n) = raw.strip_prefix("..") {
                let n: usize = n
                    .parse()
                    .map_err(|_| format!("bad gap {raw:?}: write ... or ..N"))?;
                if n == 0 || n > 12 {
                    return Err(format!("gap {raw:?} must be between ..1 and ..12"));
                }
                elems.push(Elem::Gap(n));
            } else if raw == "#" {
                elems.push(Elem::Number);
            } else if let Some(name) = raw.strip_prefix('@') {
                let idx = sets
                    .get(name)
                    .ok_or_else(|| format!("unknown set @{name}"))?;
                elems.push(Elem::Set(*idx));
            } else {
                let (body, optional) = match raw.strip_suffix('?') {
                    Some(b) => (b, true),
                    None => (raw, false),
                };
                let mut alts = Vec::new();
                for alt in body.split('|') {
                    if alt == "#" {
                        alts.push(Alt {
                            words: vec![(String::new(), AltKind::Number)],
                        });
                        continue;
                    }
                    let mut words = Vec::new();
                    for w in alt.split('_') {
                        let (w, fuzzy) = match w.strip_prefix('~') {
                            Some(a) => (a, true),
                            None => (w, false),
                        };
                        let (w, prefix) = match w.strip_suffix('*') {
                            Some(a) => (a, true),
                            None => (w, false),
                        };
                        let text = fold_word(w);
                        if text.is_empty() || w.contains(['*', '~', '@', '#']) {
                            return Err(format!("bad word {alt:?} in {raw:?}"));
                        }
                        if fuzzy && prefix {
                            return Err(format!(
                                "{raw:?}: a word cannot be both ~fuzzy and prefix*"
                            ));
                        }
                        let kind = match (fuzzy, prefix) {
                            (true, _) => AltKind::Fuzzy,
                            (_, true) => AltKind::Prefix,
                            _ => AltKind::Exact,
                        };
                        words.push((text, kind));
                    }
                    alts.push(Alt { words });
                }
                elems.push(Elem::Word { alts, optional });
            }
        }
        match (elems.first(), elems.last()) {
            (None, _) => return Err("empty pattern".into()),
            (Some(Elem::Gap(_)), _) | (_, Some(Elem::Gap(_))) => {
                return Err("a pattern cannot start or end with a gap".into())
            }
            _ => {}
        }
        if elems
            .iter()
            .all(|e| matches!(e, Elem::Word { optional: true, .. } | Elem::Gap(_)))
        {
            return Err("a pattern needs at least one required element".into());
        }
        Ok(Pattern {
            source: source.to_string(),
            elems,
        })
    }

    /// Names of the sets this pattern uses.
    pub fn set_indices(&self) -> impl Iterator<Item = usize> + '_ {
        self.elems.iter().filter_map(|e| match e {
            Elem::Set(i) => Some(*i),
            _ => None,
        })
    }

    /// The earliest match in `tokens`.
    pub fn find(&self, tokens: &[Token], sets: &[PhraseSet]) -> Option<Match> {
        self.find_from(tokens, &SetMatches::new(tokens, sets), 0, |_| true)
    }

    /// The earliest match starting at or after `from` that `accept` takes (a negated match
    /// does not hide a later one). Set matches come from `sets`, shared with other patterns
    /// (one [`SetMatches`] per transcript and pack: a set such as `@authority` is used by many
    /// rules, and matching its phrases, fuzzily, at every word is most of the work).
    pub fn find_from(
        &self,
        tokens: &[Token],
        sets: &SetMatches,
        from: usize,
        accept: impl Fn(&Match) -> bool,
    ) -> Option<Match> {
        (from..tokens.len()).find_map(|start| {
            let mut captures = Vec::new();
            self.match_at(0, start, tokens, sets, &mut captures)
                .map(|end| Match {
                    start,
                    end,
                    captures,
                })
                .filter(&accept)
        })
    }

    /// The most words a match can span: a transcript that grows by some words can only gain
    /// matches that start fewer than this many words before its old end.
    pub fn max_span(&self, sets: &[PhraseSet]) -> usize {
        self.elems
            .iter()
            .map(|e| match e {
                Elem::Word { alts, .. } => alts.iter().map(|a| a.words.len()).max().unwrap_or(1),
                Elem::Gap(n) => *n,
                Elem::Number => 1,
                Elem::Set(i) => sets.get(*i).map_or(3, |s| {
                    s.phrases
                        .iter()
                        .map(|p| p.tokens.len().max(3))
                        .max()
                        .unwrap_or(3)
                }),
            })
            .sum()
    }

    fn match_at(
        &self,
        ei: usize,
        ti: usize,
        tokens: &[Token],
        sets: &SetMatches,
        caps: &mut Vec<(String, String)>,
    ) -> Option<usize> {
        let Some(elem) = self.elems.get(ei) else {
            return Some(ti);
        };
        match elem {
            Elem::Word { alts, optional } => {
                for alt in alts {
                    if let Some(len) = alt_matches(alt, &tokens[ti.min(tokens.len())..]) {
                        if let Some(end) = self.match_at(ei + 1, ti + len, tokens, sets, caps) {
                            return Some(end);
                        }
                    }
                }
                if *optional {
                    self.match_at(ei + 1, ti, tokens, sets, caps)
                } else {
                    None
                }
            }
            Elem::Gap(n) => (0..=*n)
                .take_while(|skip| ti + skip <= tokens.len())
                .find_map(|skip| self.match_at(ei + 1, ti + skip, tokens, sets, caps)),
            Elem::Number => {
                let t = tokens.get(ti)?;
                if is_number(&t.text) {
                    self.match_at(ei + 1, ti + 1, tokens, sets, caps)
                } else {
                    None
                }
            }
            Elem::Set(idx) => {
                let set = sets.sets.get(*idx)?;
                for (phrase, len) in sets.at(*idx, ti).iter() {
                    let phrase = &set.phrases[*phrase];
                    caps.push((set.name.clone(), phrase.display.clone()));
                    if let Some(end) = self.match_at(ei + 1, ti + len, tokens, sets, caps) {
                        return Some(end);
                    }
                    caps.pop();
                }
                None
            }
        }
    }
}

/// (phrase index, words spanned) of the phrases of a set that match at one word.
type PhraseHits = std::rc::Rc<[(usize, usize)]>;

/// Which phrases of which set match at which word of one transcript, computed on first use.
pub struct SetMatches<'a> {
    sets: &'a [PhraseSet],
    tokens: &'a [Token],
    /// `[set * (tokens + 1) + position]` → (phrase index, words spanned), in phrase order.
    memo: std::cell::RefCell<Vec<Option<PhraseHits>>>,
}

impl<'a> SetMatches<'a> {
    pub fn new(tokens: &'a [Token], sets: &'a [PhraseSet]) -> Self {
        SetMatches {
            sets,
            tokens,
            memo: std::cell::RefCell::new(vec![None; sets.len() * (tokens.len() + 1)]),
        }
    }

    fn at(&self, set: usize, ti: usize) -> PhraseHits {
        let slot = set * (self.tokens.len() + 1) + ti.min(self.tokens.len());
        if let Some(hit) = &self.memo.borrow()[slot] {
            return hit.clone();
        }
        let s = &self.sets[set];
        let mut found = Vec::new();
        for (pi, phrase) in s.phrases.iter().enumerate() {
            for len in phrase_spans(phrase) {
                if ti + len <= self.tokens.len()
                    && phrase_matches(phrase, &self.tokens[ti..ti + len], s.fuzzy || phrase.fuzzy)
                {
                    found.push((pi, len));
                }
            }
        }
        let found: PhraseHits = found.into();
        self.memo.borrow_mut()[slot] = Some(found.clone());
        found
    }
}

/// How many tokens at the start of `rest` the alternative matches, if it does.
fn alt_matches(alt: &Alt, rest: &[Token]) -> Option<usize> {
    if rest.len() < alt.words.len() {
        return None;
    }
    for ((word, kind), token) in alt.words.iter().zip(rest) {
        let ok = match kind {
            AltKind::Exact => token.text == *word,
            AltKind::Prefix => token.text.starts_with(word.as_str()),
            AltKind::Fuzzy => fuzzy_eq(&token.text, word),
            AltKind::Number => is_number(&token.text),
        };
        if !ok {
            return None;
        }
    }
    Some(alt.words.len())
}

/// How many transcript tokens a phrase may span: its own count, or its words written together
/// or split up ("log me in" for LogMeIn), at most 3.
fn phrase_spans(p: &Phrase) -> impl Iterator<Item = usize> {
    let n = p.tokens.len().max(1);
    std::iter::once(n).chain((1..=3).filter(move |&k| k != n))
}

fn phrase_matches(p: &Phrase, window: &[Token], fuzzy: bool) -> bool {
    if window.len() == p.tokens.len() && window.iter().zip(&p.tokens).all(|(t, w)| t.text == *w) {
        return true;
    }
    // Cheap rejections before building the joined string (this runs for every phrase at
    // every position): an exact join must start with the first word, a fuzzy one with its
    // first letter.
    let Some(first) = window.first() else {
        return false;
    };
    let same_initial = first.text.chars().next() == p.compact.chars().next();
    if !same_initial || (!fuzzy && !p.compact.starts_with(first.text.as_str())) {
        return false;
    }
    let joined: String = window.iter().map(|t| t.text.as_str()).collect();
    if joined == p.compact {
        return true;
    }
    // Fuzzy only on the compact form, and only when the first letter agrees: ASR errors
    // rarely change the first sound, and this keeps short common words out. A window that
    // includes a function word is ordinary speech, not a misheard name.
    if window.iter().any(|t| is_function_word(&t.text)) {
        return false;
    }
    fuzzy && joined.chars().next() == p.compact.chars().next() && fuzzy_eq(&joined, &p.compact)
}

#[cfg(test)]
mod tests {
    use super::super::normalize::tokenize;
    use super::*;

    fn sets() -> (Vec<PhraseSet>, BTreeMap<String, usize>) {
        let tools = PhraseSet {
            name: "tool".into(),
            fuzzy: true,
            phrases: ["TeamViewer", "AnyDesk", "Ammyy Admin"]
                .iter()
                .map(|p| Phrase::new(p))
                .collect(),
        };
        let brands = PhraseSet {
            name: "brand".into(),
            fuzzy: false,
            phrases: ["Microsoft", "Windows"]
                .iter()
                .map(|p| Phrase::new(p))
                .collect(),
        };
        let idx = [("tool".to_string(), 0), ("brand".to_string(), 1)]
            .into_iter()
            .collect();
        (vec![tools, brands], idx)
    }

    fn find(p: &str, text: &str) -> Option<Match> {
        let (s, idx) = sets();
        Pattern::compile(p, &idx)
            .expect("compiles")
            .find(&tokenize(text), &s)
    }

    #[test]
    fn words_alternatives_prefix_optional() {
        assert!(find("your computer", "Sir, your computer is broken").is_some());
        assert!(find("your computer|pc", "your PC").is_some());
        assert!(find("infect*", "it is infected").is_some());
        assert!(find("technical? support", "Microsoft support").is_some());
        assert!(find("technical? support", "technical support").is_some());
        assert!(find("your computer", "computer your").is_none());
    }

    #[test]
    fn gaps_are_bounded() {
        assert!(find("calling ... @brand", "calling you from Microsoft").is_some());
        assert!(find("calling ... @brand", "calling you today from the Microsoft").is_none());
        assert!(find("calling ..5 @brand", "calling you today from the Microsoft").is_some());
    }

    #[test]
    fn sets_match_split_joined_and_misheard_names() {
        let m = find("install ..3 @tool", "please install Team Viewer now").expect("split");
        assert_eq!(m.captures, vec![("tool".into(), "TeamViewer".into())]);
        assert!(find("@tool", "download anydesk").is_some());
        assert!(find("@tool", "download any desk").is_some());
        assert!(find("@tool", "ammyyadmin").is_some());
        // ASR: "Team Newer" is within two edits of teamviewer.
        assert!(find("@tool", "install team newer").is_some());
        // Not fuzzy for the brand set, and short words never fuzzy.
        assert!(find("@brand", "microsof").is_none());
        assert!(find("@tool", "the team").is_none());
        // Ordinary words next to each other are not a misheard tool name.
        let (mut s, idx) = sets();
        s[0].phrases.push(Phrase::new("ConnectWise"));
        let p = Pattern::compile("@tool", &idx).expect("compiles");
        assert!(p
            .find(&tokenize("we want to connect with you"), &s)
            .is_none());
        assert!(p.find(&tokenize("open connect wise"), &s).is_some());
        assert_eq!(
            find("@brand support", "windows support")
                .expect("m")
                .captures[0]
                .1,
            "Windows"
        );
    }

    #[test]
    fn fuzzy_words_and_numbers() {
        assert!(find("~license", "your licence key").is_some());
        assert!(find("~license", "your license").is_some());
        assert!(
            find("~virus", "your viruses").is_none(),
            "5-letter budget is 1, plural adds 2"
        );
        assert!(find("# dollars", "pay 300 dollars").is_some());
        assert!(find("# dollars", "pay three hundred dollars").is_some());
        assert!(find("# euro", "fünfhundert euro").is_none());
        assert!(find("# euro", "500 Euro").is_some());
        assert!(find("owe money|#", "you owe 500").is_some());
        // "one" and "ein" are words, not amounts; "one|#" still takes the key.
        assert!(find("give ..2 #", "give me one moment").is_none());
        assert!(find("press one|#", "press one").is_some());
        assert!(find("# formular", "ein Formular").is_none());
        assert!(find("one_time|otp code", "your one time code").is_some());
        assert!(find("one_time|otp code", "your OTP code").is_some());
        assert!(find("one_time|otp code", "one code").is_none());
        assert!(find("run*_out|expir*", "it is running out").is_some());
    }

    #[test]
    fn bad_patterns_are_rejected_with_reasons() {
        let (_, idx) = sets();
        for (p, why) in [
            ("", "empty"),
            ("... computer", "gap"),
            ("computer ..99 x", "between"),
            ("computer ..x y", "bad gap"),
            ("@nope", "unknown set"),
            ("a? b?", "required"),
            ("~foo* x", "both"),
            ("x|| y", "bad word"),
        ] {
            let e = Pattern::compile(p, &idx).expect_err(p);
            assert!(e.contains(why), "{p:?}: {e}");
        }
    }

    #[test]
    fn match_reports_token_range() {
        let m = find("your computer", "hello sir your computer").expect("m");
        assert_eq!((m.start, m.end), (2, 4));
    }
}
