//! From fired rules to a calibrated score, an action, and the sentence the callee hears.
//!
//! The score is a logistic function of the evidence: `score = 1 / (1 + e^-z)` with
//! `z = BIAS + Σ_category contribution`. Within a category the strongest rule counts fully and
//! the others at [`SAME_CATEGORY_FACTOR`], so ten ways of saying "Microsoft" add up to little,
//! while impersonation + a computer problem + remote access add up to a lot. Legitimacy cues
//! have negative weights and count in full. With BIAS = −3.5, a lone brand claim (≈ 2) stays near
//! 0.2; claim + problem (≈ 4) warns; add remote access (≈ 7) and it is above 0.95.

use super::pack::Category;

/// Evidence of nothing at all.
pub const BIAS: f64 = -3.5;
/// Weight of the second and later rules of one category.
pub const SAME_CATEGORY_FACTOR: f64 = 0.3;

/// What to do with the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Warn,
    Divert,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Warn => "warn",
            Action::Divert => "divert",
        }
    }
}

/// Thresholds on the score; they come from configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub warn: f64,
    pub divert: f64,
}

/// Default warn threshold.
pub const DEFAULT_WARN_THRESHOLD: f64 = 0.5;
/// Default divert threshold.
pub const DEFAULT_DIVERT_THRESHOLD: f64 = 0.85;

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            warn: DEFAULT_WARN_THRESHOLD,
            divert: DEFAULT_DIVERT_THRESHOLD,
        }
    }
}

impl Thresholds {
    /// Both in (0, 1) and warn ≤ divert.
    pub fn validate(&self) -> Result<(), String> {
        let ok = |v: f64| v > 0.0 && v < 1.0;
        if !ok(self.warn) || !ok(self.divert) {
            return Err(format!(
                "thresholds must be between 0 and 1 (warn {}, divert {})",
                self.warn, self.divert
            ));
        }
        if self.warn > self.divert {
            return Err(format!(
                "warn threshold {} is above divert threshold {}",
                self.warn, self.divert
            ));
        }
        Ok(())
    }

    pub fn action(&self, score: f64) -> Action {
        if score >= self.divert {
            Action::Divert
        } else if score >= self.warn {
            Action::Warn
        } else {
            Action::Allow
        }
    }
}

/// How much the learned model's log-odds count beside the rules' by default.
pub const DEFAULT_MODEL_WEIGHT: f64 = 1.0;
/// The model cancels a warning the rules make on their own only when it is this sure the call
/// is legitimate (log-odds −2: p < 0.12) or a legitimacy cue fired: two kinds of scam evidence
/// are policy, and a second opinion that merely leans the other way does not silence them.
pub const MODEL_VETO_LOGIT: f64 = -2.0;
/// The model's log-odds are clamped to ±this before weighting: a second opinion, never a veto.
pub const MODEL_LOGIT_CLAMP: f64 = 4.0;

pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// The rules' evidence and the learned model's opinion, combined.
///
/// `z = z_rules + model_weight · clamp(model_logit, ±4)`; the model may only lower the score
/// when no rule has fired. Actions:
/// - **divert** when the rules alone reach `divert` and `σ(z)` still does (converging evidence
///   the rules explain; the model can hold a divert back to a warning, never make one: a
///   look-alike whose legitimate words the recogniser garbled is not diverted on the model's
///   word);
/// - **warn** when `σ(z) ≥ warn` and at least one rule fired (every warning has a reason), or
///   when the rules alone warn, no legitimacy cue fired and the model is not sure the call is
///   legitimate ([`MODEL_VETO_LOGIT`]);
/// - **allow** otherwise. The score reported is clamped into the action's band so the two
///   never disagree.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Combined {
    model: f64,
    z_rules: f64,
    z: f64,
    any_rule: bool,
    any_cue: bool,
}

impl Combined {
    pub fn new(evidence: &[(Category, f64)], model_logit: Option<f64>, model_weight: f64) -> Self {
        let z_rules = logit(evidence);
        let any_rule = evidence.iter().any(|(_, w)| *w > 0.0);
        let any_cue = evidence.iter().any(|(_, w)| *w < 0.0);
        let mut m = model_logit.map_or(0.0, |l| {
            model_weight * l.clamp(-MODEL_LOGIT_CLAMP, MODEL_LOGIT_CLAMP)
        });
        if !any_rule {
            m = m.min(0.0);
        }
        Combined {
            model: model_logit.unwrap_or(f64::INFINITY),
            z_rules,
            z: z_rules + m,
            any_rule,
            any_cue,
        }
    }

    pub fn rules_only(&self) -> f64 {
        sigmoid(self.z_rules)
    }

    /// The action and the score that goes with it.
    pub fn decide(&self, t: &Thresholds) -> (Action, f64) {
        let s = sigmoid(self.z);
        const BELOW: f64 = 0.01;
        if s >= t.divert && self.rules_only() >= t.divert {
            (Action::Divert, s)
        } else if (s >= t.warn && self.any_rule)
            || (self.rules_only() >= t.warn && !self.any_cue && self.model > MODEL_VETO_LOGIT)
        {
            (Action::Warn, s.clamp(t.warn, t.divert - BELOW))
        } else {
            (Action::Allow, s.min(t.warn - BELOW))
        }
    }
}

/// The combined score of (category, weight) evidence.
pub fn combine(evidence: &[(Category, f64)]) -> f64 {
    sigmoid(logit(evidence))
}

/// The log-odds of (category, weight) evidence.
pub fn logit(evidence: &[(Category, f64)]) -> f64 {
    let mut z = BIAS;
    let mut cats: Vec<Category> = evidence.iter().map(|(c, _)| *c).collect();
    cats.sort();
    cats.dedup();
    for c in cats {
        let mut ws: Vec<f64> = evidence
            .iter()
            .filter(|(k, _)| *k == c)
            .map(|(_, w)| *w)
            .collect();
        let negative: f64 = ws.iter().filter(|w| **w < 0.0).sum();
        ws.retain(|w| *w > 0.0);
        ws.sort_by(|a, b| b.total_cmp(a));
        let positive = ws
            .iter()
            .enumerate()
            .map(|(i, w)| if i == 0 { *w } else { w * SAME_CATEGORY_FACTOR })
            .sum::<f64>();
        z += positive + negative;
    }
    z
}

/// Join reasons as a sentence list: "a", "a and b", "a, b and c".
pub fn join_reasons(reasons: &[String], joiner: &str) -> String {
    match reasons {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} {joiner} {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Category::*;

    #[test]
    fn evidence_combines_across_not_within_categories() {
        let nothing = combine(&[]);
        assert!(nothing < 0.04);
        let brand = combine(&[(Impersonation, 2.0)]);
        let many_brands = combine(&[
            (Impersonation, 2.0),
            (Impersonation, 2.0),
            (Impersonation, 1.5),
        ]);
        let full = combine(&[(Impersonation, 2.0), (Problem, 2.0), (RemoteAccess, 3.0)]);
        assert!(brand < 0.2, "{brand}");
        assert!(many_brands < 0.5, "{many_brands}");
        assert!(full > 0.95, "{full}");
        let cued = combine(&[(Impersonation, 2.0), (Problem, 2.0), (LegitCue, -3.0)]);
        assert!(cued < brand, "{cued}");
        // Monotone: more positive evidence never lowers the score.
        assert!(combine(&[(Impersonation, 2.0), (Payment, 0.5)]) > brand);
    }

    #[test]
    fn the_model_is_a_second_opinion_not_a_verdict() {
        let t = Thresholds::default();
        let claim = [(Impersonation, 2.0)];
        let claim_and_ask = [(Impersonation, 2.0), (Request, 2.0)];
        // Rules alone.
        assert_eq!(Combined::new(&claim, None, 0.5).decide(&t).0, Action::Allow);
        assert_eq!(
            Combined::new(&claim_and_ask, None, 0.5).decide(&t).0,
            Action::Warn
        );
        // A confident model lifts a lone claim to a warning, never to a divert.
        let lifted = Combined::new(&claim, Some(9.0), 0.5).decide(&t);
        assert_eq!(lifted.0, Action::Warn, "{lifted:?}");
        let strong = Combined::new(&claim, Some(9.0), 2.0).decide(&t);
        assert_eq!(
            strong.0,
            Action::Warn,
            "the model never makes a divert: {strong:?}"
        );
        assert!(strong.1 < t.divert);
        let two_kinds = Combined::new(&claim_and_ask, Some(9.0), 2.0).decide(&t);
        assert_eq!(two_kinds.0, Action::Warn, "{two_kinds:?}");
        // Rules that divert, and a model that disagrees strongly, make a warning.
        let full = [(Impersonation, 2.0), (Problem, 2.0), (RemoteAccess, 3.6)];
        assert_eq!(
            Combined::new(&full, Some(0.0), 1.0).decide(&t).0,
            Action::Divert
        );
        assert_eq!(
            Combined::new(&full, Some(-4.0), 1.0).decide(&t).0,
            Action::Warn
        );
        // Without any rule the model alone never warns, but it can lower.
        let none = Combined::new(&[], Some(9.0), 2.0).decide(&t);
        assert_eq!(none.0, Action::Allow);
        assert!(none.1 < t.warn);
        // A confident "legitimate" pulls a warning down; a leaning one does not.
        let calmed = Combined::new(&claim_and_ask, Some(-6.0), 0.5).decide(&t);
        assert_eq!(calmed.0, Action::Allow, "{calmed:?}");
        let leaning = Combined::new(&claim_and_ask, Some(-1.5), 1.0).decide(&t);
        assert_eq!(leaning.0, Action::Warn, "{leaning:?}");
        // With a legitimacy cue among the evidence, leaning is enough.
        let cued = [(Impersonation, 2.0), (Request, 2.5), (LegitCue, -0.3)];
        assert_eq!(Combined::new(&cued, None, 1.0).decide(&t).0, Action::Warn);
        assert_eq!(
            Combined::new(&cued, Some(-1.5), 1.0).decide(&t).0,
            Action::Allow
        );
    }

    #[test]
    fn thresholds_pick_actions_and_validate() {
        let t = Thresholds::default();
        assert_eq!(t.action(0.1), Action::Allow);
        assert_eq!(t.action(0.6), Action::Warn);
        assert_eq!(t.action(0.9), Action::Divert);
        assert!(t.validate().is_ok());
        assert!(Thresholds {
            warn: 0.9,
            divert: 0.5
        }
        .validate()
        .is_err());
        assert!(Thresholds {
            warn: 0.0,
            divert: 0.5
        }
        .validate()
        .is_err());
    }

    #[test]
    fn reasons_join_like_a_sentence() {
        let r = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(join_reasons(&r(&["a"]), "and"), "a");
        assert_eq!(join_reasons(&r(&["a", "b"]), "and"), "a and b");
        assert_eq!(join_reasons(&r(&["a", "b", "c"]), "und"), "a, b und c");
    }
}
