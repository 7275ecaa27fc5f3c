//! Evaluation of the detector on a labelled corpus: precision, recall, F1, the confusion
//! matrix, per-category recall and the misclassified items.

use std::collections::BTreeMap;

use super::score::Action;

/// One corpus line (`tests/corpus/openings.jsonl`, see `tests/corpus/build_corpus.py`).
#[derive(Debug, Clone, PartialEq, Default, serde::Deserialize, serde::Serialize)]
pub struct CorpusItem {
    pub id: String,
    /// Who wrote it; whole authors are held out.
    #[serde(default)]
    pub author: String,
    pub label: Label,
    /// The scam or legitimate type (`tech_support`, `pharmacy_ivr`, ...).
    #[serde(default, rename = "type", alias = "category")]
    pub category: String,
    #[serde(default)]
    pub lang: Option<String>,
    pub text: String,
    #[serde(default)]
    pub split: Option<String>,
    /// A legitimate call that shares words with scams.
    #[serde(default)]
    pub hard: bool,
    /// Written the way a recogniser garbles a phone line.
    #[serde(default)]
    pub garbled: bool,
    #[serde(default)]
    pub variety: Option<String>,
    /// `ivr` or `live`.
    #[serde(default)]
    pub style: Option<String>,
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Deserialize,
    serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Label {
    Scam,
    #[default]
    Legit,
}

/// One decision to score.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub item: CorpusItem,
    pub action: Action,
    pub score: f64,
    /// The text the detector saw (differs from the item's text in audio evaluation).
    pub heard: String,
    /// How the item was presented (e.g. the synthetic voice); empty for text.
    pub condition: String,
}

/// Aggregated metrics.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    pub items: usize,
    /// confusion[label][action] counts.
    pub confusion: BTreeMap<String, BTreeMap<String, usize>>,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub legit_diverted: f64,
    pub legit_warned: f64,
    /// Hard negatives (legitimate calls that share words with scams): count, diverted, warned.
    pub hard_negatives: usize,
    pub hard_diverted: f64,
    pub hard_warned: f64,
    /// category → (caught, total) for scams; (flagged, total) for legitimate calls.
    pub scam_recall_by_category: BTreeMap<String, (usize, usize)>,
    pub legit_flagged_by_category: BTreeMap<String, (usize, usize)>,
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Compute the report. A scam counts as caught when it is warned or diverted.
pub fn report(outcomes: &[Outcome]) -> Report {
    let mut r = Report {
        items: outcomes.len(),
        ..Report::default()
    };
    let (mut tp, mut fp, mut fn_) = (0, 0, 0);
    let (mut legit, mut legit_div, mut legit_warn) = (0, 0, 0);
    let (mut hard, mut hard_div, mut hard_warn) = (0, 0, 0);
    for o in outcomes {
        let label = match o.item.label {
            Label::Scam => "scam",
            Label::Legit => "legit",
        };
        *r.confusion
            .entry(label.into())
            .or_default()
            .entry(o.action.name().into())
            .or_default() += 1;
        let flagged = o.action != Action::Allow;
        match o.item.label {
            Label::Scam => {
                if flagged {
                    tp += 1
                } else {
                    fn_ += 1
                }
                let e = r
                    .scam_recall_by_category
                    .entry(o.item.category.clone())
                    .or_default();
                e.0 += usize::from(flagged);
                e.1 += 1;
            }
            Label::Legit => {
                legit += 1;
                if flagged {
                    fp += 1
                }
                legit_div += usize::from(o.action == Action::Divert);
                legit_warn += usize::from(o.action == Action::Warn);
                if o.item.hard {
                    hard += 1;
                    hard_div += usize::from(o.action == Action::Divert);
                    hard_warn += usize::from(o.action == Action::Warn);
                }
                let e = r
                    .legit_flagged_by_category
                    .entry(o.item.category.clone())
                    .or_default();
                e.0 += usize::from(flagged);
                e.1 += 1;
            }
        }
    }
    r.precision = ratio(tp, tp + fp);
    r.recall = ratio(tp, tp + fn_);
    r.f1 = if r.precision + r.recall > 0.0 {
        2.0 * r.precision * r.recall / (r.precision + r.recall)
    } else {
        0.0
    };
    r.legit_diverted = ratio(legit_div, legit);
    r.legit_warned = ratio(legit_warn, legit);
    r.hard_negatives = hard;
    r.hard_diverted = ratio(hard_div, hard);
    r.hard_warned = ratio(hard_warn, hard);
    r
}

/// Several scorers side by side: overall numbers, scam recall per type and legitimate calls
/// flagged per type, one column per scorer.
pub fn render_comparison(reports: &[(&str, &Report)]) -> String {
    let pct = |v: f64| format!("{:.1}%", v * 100.0);
    let mut s = String::new();
    let head: String = reports.iter().map(|(n, _)| format!("{n:>10}")).collect();
    s += &format!("{:<34}{head}\n", "");
    let row = |s: &mut String, name: &str, f: &dyn Fn(&Report) -> String| {
        let cells: String = reports
            .iter()
            .map(|(_, r)| format!("{:>10}", f(r)))
            .collect();
        *s += &format!("{name:<34}{cells}\n");
    };
    row(&mut s, "scam caught (warn or divert)", &|r| pct(r.recall));
    row(&mut s, "legitimate diverted", &|r| pct(r.legit_diverted));
    row(&mut s, "legitimate warned", &|r| pct(r.legit_warned));
    row(&mut s, "hard negatives diverted", &|r| pct(r.hard_diverted));
    row(&mut s, "hard negatives warned", &|r| pct(r.hard_warned));
    row(&mut s, "precision", &|r| pct(r.precision));
    let Some((_, first)) = reports.first() else {
        return s;
    };
    type PerType = BTreeMap<String, (usize, usize)>;
    type Table = fn(&Report) -> &PerType;
    let tables: [(&str, Table); 2] = [
        ("scam caught by type", |r| &r.scam_recall_by_category),
        ("legitimate flagged by type", |r| {
            &r.legit_flagged_by_category
        }),
    ];
    for (title, table) in tables {
        s += &format!("{title}\n");
        for (c, (_, total)) in table(first) {
            row(&mut s, &format!("  {c} ({total})"), &|r| {
                table(r)
                    .get(c)
                    .map_or("-".into(), |(k, t)| pct(ratio(*k, *t)))
            });
        }
    }
    s
}

/// Scam recall and legitimate calls flagged per presentation condition (voice).
pub fn by_condition(outcomes: &[Outcome]) -> BTreeMap<String, Report> {
    let mut groups: BTreeMap<String, Vec<Outcome>> = BTreeMap::new();
    for o in outcomes {
        groups
            .entry(o.condition.clone())
            .or_default()
            .push(o.clone());
    }
    groups.into_iter().map(|(k, v)| (k, report(&v))).collect()
}

/// Items the detector got wrong: scams allowed, legitimate calls warned or diverted.
pub fn misclassified(outcomes: &[Outcome]) -> Vec<&Outcome> {
    outcomes
        .iter()
        .filter(|o| match o.item.label {
            Label::Scam => o.action == Action::Allow,
            Label::Legit => o.action != Action::Allow,
        })
        .collect()
}

/// Render the report as the text `scamscreen eval` prints.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let pct = |v: f64| format!("{:.1}%", v * 100.0);
    s += &format!(
        "items {}  precision {}  recall {}  F1 {:.3}\nlegitimate calls diverted {}  warned {}\n\n",
        r.items,
        pct(r.precision),
        pct(r.recall),
        r.f1,
        pct(r.legit_diverted),
        pct(r.legit_warned)
    );
    s += "confusion     allow   warn  divert\n";
    for label in ["scam", "legit"] {
        let row = r.confusion.get(label);
        let get = |a: &str| row.and_then(|m| m.get(a)).copied().unwrap_or(0);
        s += &format!(
            "{label:<10} {:>7} {:>6} {:>7}\n",
            get("allow"),
            get("warn"),
            get("divert")
        );
    }
    s += "\nscam recall by category\n";
    for (c, (caught, total)) in &r.scam_recall_by_category {
        s += &format!(
            "  {c:<20} {caught:>3}/{total:<3} {}\n",
            pct(ratio(*caught, *total))
        );
    }
    s += "legitimate calls flagged by category\n";
    for (c, (flagged, total)) in &r.legit_flagged_by_category {
        s += &format!(
            "  {c:<20} {flagged:>3}/{total:<3} {}\n",
            pct(ratio(*flagged, *total))
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(label: Label, cat: &str, action: Action) -> Outcome {
        Outcome {
            item: CorpusItem {
                id: "x".into(),
                label,
                category: cat.into(),
                hard: cat == "bank",
                ..CorpusItem::default()
            },
            action,
            score: 0.0,
            heard: String::new(),
            condition: String::new(),
        }
    }

    #[test]
    fn metrics_count_warn_and_divert_as_caught() {
        let outs = vec![
            o(Label::Scam, "tech", Action::Divert),
            o(Label::Scam, "tech", Action::Warn),
            o(Label::Scam, "tax", Action::Allow),
            o(Label::Legit, "doctor", Action::Allow),
            o(Label::Legit, "bank", Action::Warn),
            o(Label::Legit, "bank", Action::Allow),
            o(Label::Legit, "bank", Action::Divert),
            o(Label::Legit, "school", Action::Allow),
        ];
        let r = report(&outs);
        assert!((r.recall - 2.0 / 3.0).abs() < 1e-9);
        assert!((r.precision - 0.5).abs() < 1e-9);
        assert!((r.legit_diverted - 0.2).abs() < 1e-9);
        assert!((r.legit_warned - 0.2).abs() < 1e-9);
        assert_eq!(r.scam_recall_by_category["tech"], (2, 2));
        assert_eq!(r.legit_flagged_by_category["bank"], (2, 3));
        assert_eq!(r.confusion["legit"]["warn"], 1);
        assert_eq!(misclassified(&outs).len(), 3);
        let text = render(&r);
        assert!(text.contains("precision 50.0%"), "{text}");
        assert_eq!(r.hard_negatives, 3);
        assert!((r.hard_diverted - 1.0 / 3.0).abs() < 1e-9);
        let table = render_comparison(&[("a", &r), ("b", &r)]);
        assert!(table.contains("  tech (2)"), "{table}");
        assert!(table.contains("  bank (3)"), "{table}");
    }
}
