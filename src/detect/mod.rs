//! Scam-phrase detection: pure, no I/O in the scoring path, no clock.
//!
//! A [`Detector`] holds rule packs (one per language, `models/rules/<lang>.toml`). Fed a
//! transcript, or a growing one through [`Screening`], it returns a [`Verdict`]: an action
//! (allow / warn / divert), a calibrated score, the rules that fired with the words they matched
//! and when, the point in the call where the verdict became confident, and the sentence the
//! callee will hear.

pub mod baseline;
pub mod eval;
pub mod features;
pub mod linear;
pub mod normalize;
pub mod pack;
pub mod pattern;
pub mod score;
pub mod train;

use std::path::Path;

use linear::LinearModel;
use normalize::{tokenize_timed, Token};
pub use pack::{Category, PackError, RulePack};
pub use score::{Action, Thresholds};

/// Why a call looked like a scam (or not).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Reason {
    pub rule: String,
    pub category: Category,
    pub weight: f64,
    /// The explanation with placeholders filled ("claims to be Microsoft support").
    pub explanation: String,
    /// The words of the transcript that matched.
    pub matched: String,
    /// When in the call the match ended (ms from the start of listening).
    pub at_ms: u64,
}

/// The decision on a transcript.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Verdict {
    pub action: Action,
    pub score: f64,
    pub lang: String,
    pub reasons: Vec<Reason>,
    /// The sentence the callee hears before a warned call is bridged (empty for allow).
    pub warning: String,
    /// When the evidence first crossed the divert threshold, if it did.
    pub confident_at_ms: Option<u64>,
    /// The rules' own score, before the learned model's opinion.
    pub rule_score: f64,
    /// The learned model's probability of "scam", when a model is loaded.
    pub model_score: Option<f64>,
    /// The words that pushed the learned model hardest towards "scam" (for flagged calls).
    pub model_phrases: Vec<String>,
    /// Could more speech from the caller still change the action? (see [`more_speech`])
    pub more_speech_could_change: bool,
    /// Why (or why not): "claim without a request", "no scam signals", ...
    pub more_speech_reason: String,
}

impl Verdict {
    /// Diverting evidence is in: listening can stop early.
    pub fn is_confident(&self) -> bool {
        self.confident_at_ms.is_some()
    }

    /// Open: worth a second, better hearing (the second pass of `scamscreen run`): not a
    /// divert, and a warning or a verdict more speech could change.
    pub fn is_open(&self) -> bool {
        self.action != Action::Divert
            && (self.action == Action::Warn || self.more_speech_could_change)
    }
}

/// Errors loading rule packs.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error(transparent)]
    Pack(#[from] PackError),
    #[error("no rule packs (*.toml) in {0}")]
    NoPacks(String),
    #[error("cannot read rule folder {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Thresholds(String),
    #[error("no rule pack for language {0:?}")]
    UnknownLanguage(String),
    #[error(transparent)]
    Model(#[from] linear::ModelError),
}

/// The language also tried for every call.
pub const FALLBACK_LANG: &str = "en";

/// The file of the learned model inside a rule folder.
pub const MODEL_FILE: &str = "linear.model";

/// The rule engine, with the learned model as a second opinion when one is loaded.
#[derive(Debug, Clone)]
pub struct Detector {
    packs: Vec<RulePack>,
    thresholds: Thresholds,
    model: Option<std::sync::Arc<LinearModel>>,
    model_weight: f64,
}

impl Detector {
    pub fn new(packs: Vec<RulePack>, thresholds: Thresholds) -> Result<Self, DetectError> {
        thresholds.validate().map_err(DetectError::Thresholds)?;
        Ok(Detector {
            packs,
            thresholds,
            model: None,
            model_weight: score::DEFAULT_MODEL_WEIGHT,
        })
    }

    /// Use (or, with `None`, stop using) a learned model.
    pub fn with_model(mut self, model: Option<LinearModel>) -> Self {
        self.model = model.map(std::sync::Arc::new);
        self
    }

    /// How much the model's log-odds count beside the rules' (0 = rules only).
    pub fn with_model_weight(mut self, weight: f64) -> Result<Self, DetectError> {
        if !(0.0..=2.0).contains(&weight) {
            return Err(DetectError::Thresholds(format!(
                "model weight {weight} must be between 0 and 2"
            )));
        }
        self.model_weight = weight;
        Ok(self)
    }

    pub fn model(&self) -> Option<&LinearModel> {
        self.model.as_deref()
    }

    /// Load every `*.toml` pack in a folder; all problems of all packs are reported.
    pub fn load_dir(dir: &Path, thresholds: Thresholds) -> Result<Self, DetectError> {
        let io = |source| DetectError::Io {
            path: dir.display().to_string(),
            source,
        };
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(DetectError::NoPacks(dir.display().to_string()));
        }
        let mut packs = Vec::new();
        let mut problems = Vec::new();
        for f in files {
            match RulePack::load(&f) {
                Ok(p) => packs.push(p),
                // Several bad packs: one error listing all of their problems.
                Err(e) => problems.extend(e.problems),
            }
        }
        if !problems.is_empty() {
            return Err(PackError { problems }.into());
        }
        let model_path = dir.join(MODEL_FILE);
        let model = if model_path.exists() {
            Some(LinearModel::load(&model_path)?)
        } else {
            None
        };
        Ok(Self::new(packs, thresholds)?.with_model(model))
    }

    pub fn thresholds(&self) -> Thresholds {
        self.thresholds
    }

    pub fn languages(&self) -> Vec<&str> {
        self.packs.iter().map(|p| p.lang.as_str()).collect()
    }

    /// The packs for a language, plus English: scam call centres often switch to English
    /// ("sorry, my German is not so good, I am calling from Microsoft").
    fn packs_for(&self, lang: Option<&str>) -> Result<Vec<&RulePack>, DetectError> {
        match lang {
            Some(l) => {
                if !self.packs.iter().any(|p| p.lang == l) {
                    return Err(DetectError::UnknownLanguage(l.to_string()));
                }
                Ok(self
                    .packs
                    .iter()
                    .filter(|p| p.lang == l || p.lang == FALLBACK_LANG)
                    .collect())
            }
            None => Ok(self.packs.iter().collect()),
        }
    }

    /// Score a whole transcript with the packs of `lang` (and English), or every pack for
    /// `None`; the strongest verdict wins.
    pub fn score_text(&self, text: &str, lang: Option<&str>) -> Result<Verdict, DetectError> {
        self.score_tokens(&tokenize_timed(text, 0, 0), lang)
    }

    /// Score a transcript from its timed segments (what the recogniser returns).
    pub fn score_segments(
        &self,
        segments: &[crate::asr::Segment],
        lang: Option<&str>,
    ) -> Result<Verdict, DetectError> {
        let tokens: Vec<Token> = segments
            .iter()
            .flat_map(|s| tokenize_timed(&s.text, s.start_ms, s.end_ms))
            .collect();
        self.score_tokens(&tokens, lang)
    }

    /// Score tokens (with times).
    pub fn score_tokens(
        &self,
        tokens: &[Token],
        lang: Option<&str>,
    ) -> Result<Verdict, DetectError> {
        let packs = self.ordered_packs(lang)?;
        let opinion = self.model.as_ref().map(|m| m.opinion(tokens, 3));
        let verdicts = packs.into_iter().map(|pack| {
            let reasons = find_reasons(pack, tokens, 0, &[]);
            self.verdict(pack, tokens.len(), reasons, opinion.as_ref())
        });
        strongest(verdicts).ok_or_else(|| DetectError::UnknownLanguage(lang.unwrap_or("").into()))
    }

    /// The packs for `lang`, the call's own language first (ties go to it, English when
    /// unknown, not to load order).
    fn ordered_packs(&self, lang: Option<&str>) -> Result<Vec<&RulePack>, DetectError> {
        let mut packs = self.packs_for(lang)?;
        let preferred = lang.unwrap_or(FALLBACK_LANG);
        packs.sort_by_key(|p| p.lang != preferred);
        Ok(packs)
    }

    /// The verdict of one pack's reasons and the model's opinion.
    fn verdict(
        &self,
        pack: &RulePack,
        words: usize,
        mut reasons: Vec<Reason>,
        opinion: Option<&linear::ModelOpinion>,
    ) -> Verdict {
        reasons.sort_by_key(|r| r.at_ms);
        let evidence: Vec<(Category, f64)> =
            reasons.iter().map(|r| (r.category, r.weight)).collect();
        let model_logit = opinion.map(|o| o.logit);
        let combined = score::Combined::new(&evidence, model_logit, self.model_weight);
        let (action, score) = combined.decide(&self.thresholds);
        // The earliest prefix of the evidence (in call time) that already diverts.
        let confident_at_ms = if action == Action::Divert {
            (1..=reasons.len())
                .find(|&n| {
                    score::Combined::new(&evidence[..n], model_logit, self.model_weight)
                        .decide(&self.thresholds)
                        .0
                        == Action::Divert
                })
                .map(|n| reasons[n - 1].at_ms)
        } else {
            None
        };
        let model_phrases = match opinion {
            Some(o) if action != Action::Allow => o.phrases.clone(),
            _ => Vec::new(),
        };
        let warning = if action == Action::Allow {
            String::new()
        } else {
            warning_sentence(pack, &reasons)
        };
        let (more, why) = more_speech(words, action, score, &reasons, &self.thresholds);
        Verdict {
            action,
            score,
            lang: pack.lang.clone(),
            reasons,
            warning,
            confident_at_ms,
            rule_score: combined.rules_only(),
            model_score: model_logit.map(score::sigmoid),
            model_phrases,
            more_speech_could_change: more,
            more_speech_reason: why.to_string(),
        }
    }
}

/// The highest-scoring verdict; the first wins ties.
fn strongest(verdicts: impl Iterator<Item = Verdict>) -> Option<Verdict> {
    let mut best: Option<Verdict> = None;
    for v in verdicts {
        if best.as_ref().is_none_or(|b| v.score > b.score) {
            best = Some(v);
        }
    }
    best
}

/// The reasons of the rules of `pack` that fire in `tokens` and are not among `known`, looking
/// only at matches that end after the first `scanned` tokens (those before were searched by an
/// earlier call; rules that fired then are in `known`). Each rule counts once: its earliest
/// match that is not negated.
fn find_reasons(
    pack: &RulePack,
    tokens: &[Token],
    scanned: usize,
    known: &[Reason],
) -> Vec<Reason> {
    let set_matches = pattern::SetMatches::new(tokens, &pack.sets);
    let mut reasons = Vec::new();
    for rule in &pack.rules {
        if known.iter().any(|r| r.rule == rule.id) {
            continue;
        }
        let not_negated =
            |m: &pattern::Match| !(rule.negatable && negated(tokens, m.start, &pack.negations));
        let found = rule
            .patterns
            .iter()
            .zip(&rule.spans)
            .filter_map(|(p, span)| {
                let from = if scanned == 0 {
                    0
                } else {
                    scanned.saturating_sub(*span)
                };
                p.find_from(tokens, &set_matches, from, |m| {
                    m.end > scanned && not_negated(m)
                })
            });
        // The earliest match of any pattern is the rule's evidence.
        let Some(m) = found.min_by_key(|m| (m.end, m.start)) else {
            continue;
        };
        let mut explanation = rule.explain.clone();
        for (set, phrase) in &m.captures {
            explanation = explanation.replace(&format!("{{{set}}}"), phrase);
        }
        let matched = tokens[m.start..m.end]
            .iter()
            .map(|t| t.text.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let at_ms = tokens.get(m.end.saturating_sub(1)).map_or(0, |t| t.at_ms);
        reasons.push(Reason {
            rule: rule.id.clone(),
            category: rule.category,
            weight: rule.weight,
            explanation,
            matched,
            at_ms,
        });
    }
    reasons
}

/// Fewer words than this and any verdict is premature.
pub const MIN_WORDS_FOR_VERDICT: usize = 8;

/// Could more speech still change the action? A scam opening often says who is calling
/// first and what they want later (recorded messages especially), so a claim or a pretext
/// without a request, or a score just under a threshold, is a reason to keep listening; a
/// divert, or enough words with no signal at all, is not.
pub fn more_speech(
    words: usize,
    action: Action,
    score: f64,
    reasons: &[Reason],
    t: &Thresholds,
) -> (bool, &'static str) {
    use Category::*;
    let has = |cats: &[Category]| {
        reasons
            .iter()
            .any(|r| r.weight > 0.0 && cats.contains(&r.category))
    };
    if action == Action::Divert {
        return (false, "diverting evidence is in");
    }
    if words < MIN_WORDS_FOR_VERDICT {
        return (true, "too few words yet");
    }
    let setup = has(&[Impersonation, Problem, Lure, ThreatUrgency, FamilyEmergency]);
    let ask = has(&[Request, RemoteAccess, Payment, Credential, Secrecy]);
    match action {
        Action::Warn if ask => (true, "a request for money, a code or access would divert"),
        Action::Warn => (true, "claim without a request yet"),
        _ if setup && !ask => (true, "claim without a request yet"),
        _ if ask && !setup => (true, "request without a claim yet"),
        _ if score >= t.warn * 0.6 => (true, "score just below the warning threshold"),
        _ if reasons.iter().any(|r| r.weight < 0.0) => (false, "legitimacy cues, no scam signals"),
        _ => (false, "no scam signals"),
    }
}

/// Verbs that carry a negation over a list when they follow it closely: "we will never ask
/// you for your PIN, passwords or a one-time code".
const NEGATION_CARRIERS: &[&str] = &["ask", "asks", "asking", "fragen", "fragt"];
/// A negation right after one of these belongs to a condition ("if you did not make this
/// purchase, press 1"), not to what follows it.
const CONDITIONALS: &[&str] = &["if", "unless", "wenn", "falls", "sofern"];

/// Is a match at `start` negated? A negation word among the 4 tokens before it, or among the
/// 9 before it when "ask" follows the negation within 3 words ("we will never ask you for
/// your PIN or a code"); a negation inside a condition ("if you did not …") does not count.
pub(crate) fn negated(tokens: &[Token], start: usize, negations: &[String]) -> bool {
    let is_negation = |i: usize| {
        negations.contains(&tokens[i].text)
            && !tokens[i.saturating_sub(3)..i]
                .iter()
                .any(|t| CONDITIONALS.contains(&t.text.as_str()))
    };
    if (start.saturating_sub(4)..start).any(is_negation) {
        return true;
    }
    (start.saturating_sub(9)..start).any(|n| {
        is_negation(n)
            && tokens[n + 1..start.min(n + 4)]
                .iter()
                .any(|t| NEGATION_CARRIERS.contains(&t.text.as_str()))
    })
}

/// The strongest reason of each scam category, in category order, as one sentence.
fn warning_sentence(pack: &RulePack, reasons: &[Reason]) -> String {
    let mut best: Vec<&Reason> = Vec::new();
    for r in reasons.iter().filter(|r| r.weight > 0.0) {
        match best.iter_mut().find(|b| b.category == r.category) {
            Some(b) if b.weight < r.weight => *b = r,
            Some(_) => {}
            None => best.push(r),
        }
    }
    best.sort_by_key(|r| r.category);
    let parts: Vec<String> = best.iter().map(|r| r.explanation.clone()).collect();
    pack.sentence
        .replace("{reasons}", &score::join_reasons(&parts, &pack.joiner))
}

/// A transcript that grows while the caller speaks. Each update costs only its own words:
/// rules that fired keep their evidence, the others are searched only where the new words can
/// complete a match, and the model keeps running sums.
#[derive(Debug, Clone)]
pub struct Screening<'a> {
    detector: &'a Detector,
    lang: Option<String>,
    tokens: Vec<Token>,
    /// Per pack (in [`Detector::ordered_packs`] order): the reasons found so far.
    found: Vec<Vec<Reason>>,
    model: linear::Accumulator,
}

impl<'a> Screening<'a> {
    pub fn new(detector: &'a Detector, lang: Option<&str>) -> Self {
        Screening {
            detector,
            lang: lang.map(str::to_string),
            tokens: Vec::new(),
            found: Vec::new(),
            model: linear::Accumulator::default(),
        }
    }

    /// Add a transcribed segment and return the verdict so far.
    pub fn push_segment(
        &mut self,
        text: &str,
        start_ms: u64,
        end_ms: u64,
    ) -> Result<Verdict, DetectError> {
        let det = self.detector;
        let packs = det.ordered_packs(self.lang.as_deref())?;
        let scanned = self.tokens.len();
        let new = tokenize_timed(text, start_ms, end_ms);
        if let Some(m) = det.model.as_deref() {
            m.accumulate(&mut self.model, &new);
        }
        self.tokens.extend(new);
        self.found.resize(packs.len(), Vec::new());
        for (pack, found) in packs.iter().zip(self.found.iter_mut()) {
            let more = find_reasons(pack, &self.tokens, scanned, found);
            found.extend(more);
        }
        let opinion = det.model.as_deref().map(|m| m.opinion_of(&self.model, 3));
        let verdicts = packs.iter().zip(&self.found).map(|(pack, found)| {
            det.verdict(pack, self.tokens.len(), found.clone(), opinion.as_ref())
        });
        strongest(verdicts)
            .ok_or_else(|| DetectError::UnknownLanguage(self.lang.clone().unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scoring a transcript update by update gives the verdict of scoring it whole.
    #[test]
    fn incremental_screening_equals_scoring_the_whole_transcript() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/rules");
        let det = Detector::load_dir(&dir, Thresholds::default()).expect("packs");
        let corpus = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/openings.jsonl"),
        )
        .expect("corpus");
        for line in corpus.lines().step_by(7) {
            let item: eval::CorpusItem = serde_json::from_str(line).expect("item");
            let lang = item.lang.as_deref();
            let mut s = Screening::new(&det, lang);
            let words: Vec<&str> = item.text.split_whitespace().collect();
            let mut last = None;
            for (i, chunk) in words.chunks(3).enumerate() {
                let t = (i * 1000) as u64;
                last = Some(
                    s.push_segment(&chunk.join(" "), t, t + 1000)
                        .expect("scores"),
                );
            }
            let inc = last.expect("words");
            let whole = det.score_text(&item.text, lang).expect("scores");
            assert_eq!(
                inc.action, whole.action,
                "{}: {inc:?} vs {whole:?}",
                item.id
            );
            assert!((inc.score - whole.score).abs() < 1e-6, "{}", item.id);
            let rules = |v: &Verdict| {
                let mut r: Vec<String> = v.reasons.iter().map(|r| r.rule.clone()).collect();
                r.sort();
                r
            };
            assert_eq!(rules(&inc), rules(&whole), "{}", item.id);
        }
    }
}
