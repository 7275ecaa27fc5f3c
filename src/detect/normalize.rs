//! Text → comparable tokens. Whisper writes "TeamViewer,", "team-viewer", "Team Viewer" and
//! "$300"; people write "Überweisung" or "Ueberweisung". Matching works on tokens that are
//! lower-case, without punctuation, with German umlauts folded (ä → ae, ß → ss) and hyphens
//! and slashes split. Each token keeps the time it was spoken at, when known.

/// One word of a transcript.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub text: String,
    /// Milliseconds from the start of listening (interpolated within a segment).
    pub at_ms: u64,
}

/// Fold one word: lower case, umlauts and ß spelled out, keep letters, digits and
/// apostrophes inside the word.
pub fn fold_word(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    for c in word.chars().flat_map(char::to_lowercase) {
        match c {
            'ä' => out.push_str("ae"),
            'ö' => out.push_str("oe"),
            'ü' => out.push_str("ue"),
            'ß' => out.push_str("ss"),
            'é' | 'è' | 'ê' => out.push('e'),
            'á' | 'à' | 'â' => out.push('a'),
            '’' | '\'' => out.push('\''),
            c if c.is_alphanumeric() => out.push(c),
            _ => {}
        }
    }
    out.trim_matches('\'').to_string()
}

/// Split text into folded tokens spread evenly over `[start_ms, end_ms]`.
pub fn tokenize_timed(text: &str, start_ms: u64, end_ms: u64) -> Vec<Token> {
    let words: Vec<String> = text
        .split(|c: char| c.is_whitespace() || matches!(c, '-' | '/' | '–' | '—' | '_'))
        .flat_map(split_digits_from_letters)
        .map(|w| fold_word(&w))
        .filter(|w| !w.is_empty())
        .collect();
    let n = words.len().max(1) as u64;
    let span = end_ms.saturating_sub(start_ms);
    words
        .into_iter()
        .enumerate()
        .map(|(i, text)| Token {
            text,
            at_ms: start_ms + span * i as u64 / n,
        })
        .collect()
}

/// Split text into folded tokens without times.
pub fn tokenize(text: &str) -> Vec<Token> {
    tokenize_timed(text, 0, 0)
}

/// "$300" → ["$", "300"] is not useful; "300$" and "$300" → "300". "mp3" stays.
fn split_digits_from_letters(word: &str) -> Vec<String> {
    let trimmed = word.trim_matches(|c: char| !c.is_alphanumeric());
    let digits = trimmed.chars().filter(char::is_ascii_digit).count();
    if digits > 0
        && trimmed
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ',' | '.'))
    {
        // "1,000" and "1.000" are one number.
        return vec![trimmed.chars().filter(char::is_ascii_digit).collect()];
    }
    vec![word.to_string()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        tokenize(s).into_iter().map(|t| t.text).collect()
    }

    #[test]
    fn folds_case_punctuation_umlauts_and_hyphens() {
        assert_eq!(words("Hello, Team-Viewer!"), ["hello", "team", "viewer"]);
        assert_eq!(words("Überweisung größer"), ["ueberweisung", "groesser"]);
        assert_eq!(words("It's $1,000."), ["it's", "1000"]);
        assert_eq!(words("«Microsoft» support…"), ["microsoft", "support"]);
        assert_eq!(words("don’t"), ["don't"]);
        assert!(words(" , . ").is_empty());
    }

    #[test]
    fn spreads_times_over_a_segment() {
        let t = tokenize_timed("one two three four", 1000, 2000);
        let at: Vec<u64> = t.iter().map(|t| t.at_ms).collect();
        assert_eq!(at, vec![1000, 1250, 1500, 1750]);
    }
}
