//! Rule packs: `models/rules/<lang>.toml`, loaded and validated. Every problem is reported
//! with its line, all at once, before anything runs.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::pattern::{Pattern, Phrase, PhraseSet};

/// What kind of evidence a rule is. Scores combine across categories (see `score`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Claims to be a company or an authority.
    Impersonation,
    /// The pretext: something is wrong with the callee's computer, account, card, parcel,
    /// taxes, order or line (written `problem`; `computer_problem` is its old name).
    #[serde(alias = "computer_problem")]
    Problem,
    /// A request that keeps the callee on the caller's channel: press a key now, stay on the
    /// line, call back a number the caller gives, confirm or verify details to the caller, go to
    /// the computer. Pointing to an independent channel is a legitimacy cue instead.
    Request,
    /// Asks to install or allow remote access, or to operate the computer.
    RemoteAccess,
    /// Asks for payment by gift card, crypto, wire or cash pickup.
    Payment,
    /// Asks for a code, PIN, password or card number.
    Credential,
    /// Threatens arrest, cut-off, fines, or presses for haste.
    ThreatUrgency,
    /// Offers a refund, prize or windfall.
    Lure,
    /// Asks the callee to keep it secret or stay on the line.
    Secrecy,
    /// Family member in trouble asking for money.
    FamilyEmergency,
    /// Signals of a genuine call (negative weights): call us back on the official number,
    /// "you raised a ticket", an appointment the callee booked.
    LegitCue,
}

impl Category {
    pub fn name(self) -> &'static str {
        match self {
            Category::Impersonation => "impersonation",
            Category::Problem => "problem",
            Category::Request => "request",
            Category::RemoteAccess => "remote_access",
            Category::Payment => "payment",
            Category::Credential => "credential",
            Category::ThreatUrgency => "threat_urgency",
            Category::Lure => "lure",
            Category::Secrecy => "secrecy",
            Category::FamilyEmergency => "family_emergency",
            Category::LegitCue => "legit_cue",
        }
    }
}

/// One validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub category: Category,
    pub weight: f64,
    pub explain: String,
    pub patterns: Vec<Pattern>,
    /// [`Pattern::max_span`] of each pattern.
    pub spans: Vec<usize>,
    /// Discard a match preceded by a negation ("we will never ask for your PIN").
    pub negatable: bool,
    /// 1-based line of the rule in its pack, for messages.
    pub line: usize,
}

/// A validated pack for one language.
#[derive(Debug, Clone)]
pub struct RulePack {
    pub lang: String,
    pub negations: Vec<String>,
    pub sentence: String,
    pub joiner: String,
    pub sets: Vec<PhraseSet>,
    pub rules: Vec<Rule>,
}

/// One problem in a pack.
#[derive(Debug, Clone, PartialEq)]
pub struct PackProblem {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// Packs that did not load: every problem, each with its file and line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", format_problems(.problems))]
pub struct PackError {
    pub problems: Vec<PackProblem>,
}

fn format_problems(problems: &[PackProblem]) -> String {
    problems
        .iter()
        .map(|p| format!("{}:{}: {}", p.file, p.line, p.message))
        .collect::<Vec<_>>()
        .join("\n")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPack {
    lang: String,
    negations: Vec<String>,
    sentence: Spanned<String>,
    joiner: String,
    #[serde(default)]
    sets: BTreeMap<String, Spanned<RawSet>>,
    #[serde(rename = "rule", default)]
    rules: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSet {
    #[serde(default)]
    fuzzy: bool,
    phrases: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    category: Spanned<String>,
    weight: Spanned<f64>,
    explain: String,
    patterns: Vec<Spanned<String>>,
    #[serde(default = "yes")]
    negatable: bool,
    /// Texts the rule must fire on; checked when the pack loads.
    #[serde(default)]
    examples: Vec<String>,
    /// Texts the rule must not fire on (negations, legitimate uses).
    #[serde(default)]
    counterexamples: Vec<String>,
}

fn yes() -> bool {
    true
}

/// Largest |weight| a rule may carry.
pub const MAX_WEIGHT: f64 = 6.0;

fn line_of(src: &str, offset: usize) -> usize {
    src[..offset.min(src.len())].matches('\n').count() + 1
}

impl RulePack {
    /// Load a pack file.
    pub fn load(path: &Path) -> Result<Self, PackError> {
        let file = path.display().to_string();
        let src = std::fs::read_to_string(path).map_err(|e| PackError {
            problems: vec![PackProblem {
                file: file.clone(),
                line: 0,
                message: format!("cannot read: {e}"),
            }],
        })?;
        Self::parse(&src, &file)
    }

    /// Parse and validate pack source; `file` names it in messages.
    pub fn parse(src: &str, file: &str) -> Result<Self, PackError> {
        let raw: RawPack = toml::from_str(src).map_err(|e| PackError {
            problems: vec![PackProblem {
                file: file.to_string(),
                line: e.span().map(|s| line_of(src, s.start)).unwrap_or(0),
                message: e.message().to_string(),
            }],
        })?;
        let mut problems = Vec::new();
        let mut sets = Vec::new();
        let mut set_index = BTreeMap::new();
        for (name, set) in &raw.sets {
            let line = line_of(src, set.span().start);
            if set.get_ref().phrases.is_empty() {
                problems.push(PackProblem {
                    file: file.to_string(),
                    line,
                    message: format!("set {name} has no phrases"),
                });
            }
            let phrases: Vec<Phrase> = set
                .get_ref()
                .phrases
                .iter()
                .map(|p| Phrase::new(p))
                .collect();
            if let Some(p) = phrases.iter().find(|p| p.tokens.is_empty()) {
                problems.push(PackProblem {
                    file: file.to_string(),
                    line,
                    message: format!("set {name}: phrase {:?} has no words", p.display),
                });
            }
            set_index.insert(name.clone(), sets.len());
            sets.push(PhraseSet {
                name: name.clone(),
                fuzzy: set.get_ref().fuzzy,
                phrases,
            });
        }
        if !raw.sentence.get_ref().contains("{reasons}") {
            problems.push(PackProblem {
                file: file.to_string(),
                line: line_of(src, raw.sentence.span().start),
                message: "sentence must contain {reasons}".into(),
            });
        }
        let negations: Vec<String> = raw
            .negations
            .iter()
            .map(|n| super::normalize::fold_word(n))
            .collect();
        let mut rules = Vec::new();
        let mut ids = HashSet::new();
        for spanned in &raw.rules {
            let r = spanned.get_ref();
            let line = line_of(src, spanned.span().start);
            let mut bad = |line: usize, message: String| {
                problems.push(PackProblem {
                    file: file.to_string(),
                    line,
                    message,
                })
            };
            if r.id.trim().is_empty() {
                bad(line, "rule without id".into());
            } else if !ids.insert(r.id.clone()) {
                bad(line, format!("duplicate rule id {:?}", r.id));
            }
            let category: Option<Category> = toml::Value::String(r.category.get_ref().clone())
                .try_into()
                .ok();
            if category.is_none() {
                bad(
                    line_of(src, r.category.span().start),
                    format!("rule {}: unknown category {:?}", r.id, r.category.get_ref()),
                );
            }
            let w = *r.weight.get_ref();
            if !w.is_finite() || w.abs() > MAX_WEIGHT || w == 0.0 {
                bad(
                    line_of(src, r.weight.span().start),
                    format!(
                        "rule {}: weight {w} must be non-zero and within ±{MAX_WEIGHT}",
                        r.id
                    ),
                );
            }
            if r.patterns.is_empty() {
                bad(line, format!("rule {} has no patterns", r.id));
            }
            let mut patterns = Vec::new();
            let mut used_sets = HashSet::new();
            for p in &r.patterns {
                match Pattern::compile(p.get_ref(), &set_index) {
                    Ok(c) => {
                        used_sets.extend(c.set_indices().map(|i| sets[i].name.clone()));
                        patterns.push(c);
                    }
                    Err(e) => bad(
                        line_of(src, p.span().start),
                        format!("rule {}: pattern {:?}: {e}", r.id, p.get_ref()),
                    ),
                }
            }
            for placeholder in placeholders(&r.explain) {
                if !used_sets.contains(placeholder) {
                    bad(
                        line,
                        format!(
                            "rule {}: explanation uses {{{placeholder}}} but no pattern captures @{placeholder}",
                            r.id
                        ),
                    );
                }
            }
            if r.explain.trim().is_empty() {
                bad(line, format!("rule {} has no explanation", r.id));
            }
            let fires = |text: &str| {
                let tokens = super::normalize::tokenize(text);
                patterns.iter().any(|p| {
                    p.find(&tokens, &sets).is_some_and(|m| {
                        !(r.negatable && super::negated(&tokens, m.start, &negations))
                    })
                })
            };
            if patterns.len() == r.patterns.len() {
                for ex in r.examples.iter().filter(|e| !fires(e)) {
                    bad(line, format!("rule {}: example {ex:?} does not fire", r.id));
                }
                for ex in r.counterexamples.iter().filter(|e| fires(e)) {
                    bad(line, format!("rule {}: counterexample {ex:?} fires", r.id));
                }
            }
            if let Some(category) = category {
                rules.push(Rule {
                    id: r.id.clone(),
                    category,
                    weight: w,
                    explain: r.explain.clone(),
                    spans: patterns.iter().map(|p| p.max_span(&sets)).collect(),
                    patterns,
                    negatable: r.negatable,
                    line,
                });
            }
        }
        if raw.rules.is_empty() {
            problems.push(PackProblem {
                file: file.to_string(),
                line: 1,
                message: "the pack has no [[rule]]".into(),
            });
        }
        if !problems.is_empty() {
            problems.sort_by_key(|p| p.line);
            return Err(PackError { problems });
        }
        Ok(RulePack {
            lang: raw.lang,
            negations,
            sentence: raw.sentence.into_inner(),
            joiner: raw.joiner,
            sets,
            rules,
        })
    }
}

/// `{name}` placeholders in an explanation.
pub fn placeholders(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        out.push(&after[..close]);
        rest = &after[close + 1..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
lang = "en"
negations = ["never", "not"]
sentence = "Warning: the caller {reasons}."
joiner = "and"

[sets]
brand = { phrases = ["Microsoft", "Windows"] }

[[rule]]
id = "brand-support"
category = "impersonation"
weight = 2.0
explain = "claims to be {brand} support"
patterns = ["@brand support"]
examples = ["hello this is windows support"]
counterexamples = ["we are never microsoft support"]
"#;

    #[test]
    fn a_good_pack_loads() {
        let p = RulePack::parse(GOOD, "en.toml").expect("loads");
        assert_eq!(p.lang, "en");
        assert_eq!(p.rules.len(), 1);
        assert_eq!(p.rules[0].category, Category::Impersonation);
        assert_eq!(p.rules[0].line, 10);
        assert!(p.rules[0].negatable);
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let bad = GOOD
            .replace("weight = 2.0", "weight = 9.0")
            .replace("this is windows support", "this is apple support")
            + r#"
[[rule]]
id = "brand-support"
category = "nonsense"
weight = 1.0
explain = "asks for {tool}"
patterns = ["@tool now", "... x"]
"#;
        let e = RulePack::parse(&bad, "en.toml").expect_err("bad");
        let msgs: Vec<String> = e
            .problems
            .iter()
            .map(|p| format!("{}: {}", p.line, p.message))
            .collect();
        let all = msgs.join("\n");
        assert!(all.contains("13: rule brand-support: weight 9"), "{all}");
        assert!(all.contains("duplicate rule id"), "{all}");
        assert!(all.contains("unknown category \"nonsense\""), "{all}");
        assert!(all.contains("unknown set @tool"), "{all}");
        assert!(all.contains("cannot start or end with a gap"), "{all}");
        assert!(all.contains("{tool}"), "{all}");
        assert!(
            all.contains("example \"hello this is apple support\" does not fire"),
            "{all}"
        );
        assert!(e.to_string().starts_with("en.toml:"), "{e}");
        // Lines are sorted.
        let lines: Vec<usize> = e.problems.iter().map(|p| p.line).collect();
        let mut sorted = lines.clone();
        sorted.sort();
        assert_eq!(lines, sorted);
    }

    #[test]
    fn syntax_errors_and_unknown_fields_have_lines() {
        let e = RulePack::parse("lang = \"en\"\nnegations = [\n", "x.toml").expect_err("syntax");
        assert!(e.problems[0].line >= 2, "{e}");
        let e = RulePack::parse(&GOOD.replace("joiner", "joyner"), "x.toml").expect_err("field");
        assert!(e.to_string().contains("joyner"), "{e}");
        let e =
            RulePack::parse(&GOOD.replace("{reasons}", "{why}"), "x.toml").expect_err("sentence");
        assert!(e.to_string().contains("{reasons}"), "{e}");
    }
}
