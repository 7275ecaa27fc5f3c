//! The naive keyword baseline of `scamscreen eval` (`tests/corpus/baseline_keywords.toml`): a
//! list of common scam words written before any tuning. An item scores the number of distinct
//! keywords it contains. It exists to be beaten: the rules and the model must do better on
//! every number, or they are not worth their complexity.

use std::path::Path;

use super::normalize::tokenize;
use super::score::Action;

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeywordBaseline {
    pub warn_at: usize,
    pub divert_at: usize,
    pub en: Vec<String>,
    pub de: Vec<String>,
}

impl KeywordBaseline {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let src = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let b: KeywordBaseline =
            toml::from_str(&src).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        if b.warn_at == 0 || b.divert_at < b.warn_at {
            anyhow::bail!("{}: need 0 < warn_at ≤ divert_at", path.display());
        }
        Ok(b)
    }

    /// The distinct keywords of the item's language (and English) found in `text`.
    pub fn hits(&self, text: &str, lang: Option<&str>) -> Vec<String> {
        let words: Vec<String> = tokenize(text).into_iter().map(|t| t.text).collect();
        let lists = match lang {
            Some("de") => vec![&self.de, &self.en],
            _ => vec![&self.en],
        };
        let mut found: Vec<String> = Vec::new();
        for kw in lists.into_iter().flatten() {
            let (body, prefix) = match kw.strip_suffix('*') {
                Some(b) => (b, true),
                None => (kw.as_str(), false),
            };
            let parts: Vec<String> = tokenize(body).into_iter().map(|t| t.text).collect();
            if parts.is_empty() || found.contains(kw) {
                continue;
            }
            let last = parts.len() - 1;
            let hit = words.windows(parts.len()).any(|w| {
                w.iter().zip(&parts).enumerate().all(|(i, (a, b))| {
                    if prefix && i == last {
                        a.starts_with(b.as_str())
                    } else {
                        a == b
                    }
                })
            });
            if hit {
                found.push(kw.clone());
            }
        }
        found
    }

    pub fn action(&self, text: &str, lang: Option<&str>) -> (Action, usize) {
        let n = self.hits(text, lang).len();
        let a = if n >= self.divert_at {
            Action::Divert
        } else if n >= self.warn_at {
            Action::Warn
        } else {
            Action::Allow
        };
        (a, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_distinct_keywords_with_prefixes_and_phrases() {
        let b = KeywordBaseline {
            warn_at: 2,
            divert_at: 3,
            en: vec!["gift card*".into(), "press one".into(), "virus".into()],
            de: vec!["polizei".into()],
        };
        assert_eq!(
            b.action("buy gift cards, press one", Some("en")).0,
            Action::Warn
        );
        assert_eq!(b.action("virus virus virus", None).1, 1);
        assert_eq!(
            b.action("Polizei! gift cards, virus", Some("de")).0,
            Action::Divert
        );
        assert_eq!(b.action("Polizei", Some("en")).1, 0);
    }
}
