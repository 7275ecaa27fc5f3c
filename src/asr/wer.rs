//! Word error rate, for tests and benchmarks. Both texts are normalised first, in the spirit
//! of whisper's own English text normaliser: lower case, punctuation dropped, hyphens split,
//! numbers written in digits spelled out in words ("25" → "twenty five", "$5" → "five
//! dollars"), contractions expanded ("you're" → "you are"), titles expanded ("Dr." → "doctor") and British spellings made American
//! ("neighbour" → "neighbor"), so that only real recognition errors count.

const ONES: [&str; 20] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
const TENS: [&str; 10] = [
    "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];

/// Is `word` (lower case) an English number word ("seven", "forty", "thousand")?
pub fn is_number_word(word: &str) -> bool {
    ONES.contains(&word)
        || TENS.iter().any(|t| !t.is_empty() && *t == word)
        || ["hundred", "thousand", "million", "billion"].contains(&word)
}

/// Spell out a non-negative integer in English words.
///
/// ```
/// assert_eq!(scamscreen::asr::wer::number_words(342).join(" "), "three hundred forty two");
/// ```
pub fn number_words(n: u64) -> Vec<String> {
    fn below_thousand(n: u64, out: &mut Vec<String>) {
        let (h, r) = (n / 100, n % 100);
        if h > 0 {
            out.push(ONES[h as usize].into());
            out.push("hundred".into());
        }
        if r >= 20 {
            out.push(TENS[(r / 10) as usize].into());
            if r % 10 > 0 {
                out.push(ONES[(r % 10) as usize].into());
            }
        } else if r > 0 || h == 0 {
            out.push(ONES[r as usize].into());
        }
    }
    if n == 0 {
        return vec!["zero".into()];
    }
    let mut out = Vec::new();
    let mut rest = n;
    for (scale, name) in [
        (1_000_000_000, "billion"),
        (1_000_000, "million"),
        (1000, "thousand"),
    ] {
        if rest >= scale {
            below_thousand(rest / scale, &mut out);
            out.push(name.into());
            rest %= scale;
        }
    }
    if rest > 0 {
        below_thousand(rest, &mut out);
    }
    out
}

/// Abbreviations whisper writes for spoken words.
const ABBREVIATIONS: [(&str, &str); 6] = [
    ("dr", "doctor"),
    ("mr", "mister"),
    ("mrs", "missus"),
    ("ms", "miss"),
    ("st", "saint"),
    ("ok", "okay"),
];

/// British → American spellings (whisper's normaliser has a long list; these cover the
/// test sentences' vocabulary and common call words).
const SPELLINGS: [(&str, &str); 12] = [
    ("neighbour", "neighbor"),
    ("neighbours", "neighbors"),
    ("colour", "color"),
    ("favour", "favor"),
    ("centre", "center"),
    ("licence", "license"),
    ("programme", "program"),
    ("cheque", "check"),
    ("organisation", "organization"),
    ("cancelled", "canceled"),
    ("honour", "honor"),
    ("realise", "realize"),
];

fn canonical(word: String) -> String {
    ABBREVIATIONS
        .iter()
        .chain(SPELLINGS.iter())
        .find(|(from, _)| *from == word)
        .map(|(_, to)| (*to).to_string())
        .unwrap_or(word)
}

/// Words whose `'s` is "is" (elsewhere it is a possessive and stays).
const IS_CONTRACTIONS: [&str; 12] = [
    "it",
    "that",
    "he",
    "she",
    "what",
    "there",
    "here",
    "who",
    "where",
    "how",
    "this",
    "everything",
];

/// "you're" → "you are", "can't" → "can not", "that's" → "that is", as whisper's English
/// normaliser does: a reference says "you are" where a recogniser writes "you're".
fn expand_contraction(w: &str) -> Vec<String> {
    match w {
        "can't" => return vec!["can".into(), "not".into()],
        "won't" => return vec!["will".into(), "not".into()],
        "let's" => return vec!["let".into(), "us".into()],
        _ => {}
    }
    for (suffix, full) in [
        ("n't", "not"),
        ("'re", "are"),
        ("'m", "am"),
        ("'ll", "will"),
        ("'ve", "have"),
        ("'d", "would"),
    ] {
        if let Some(stem) = w.strip_suffix(suffix).filter(|s| !s.is_empty()) {
            return vec![stem.to_string(), full.to_string()];
        }
    }
    if let Some(stem) = w.strip_suffix("'s") {
        if IS_CONTRACTIONS.contains(&stem) {
            return vec![stem.to_string(), "is".to_string()];
        }
    }
    vec![w.to_string()]
}

/// Normalise text into comparable words.
pub fn normalize(text: &str) -> Vec<String> {
    let lowered = text.to_lowercase().replace(['-', '/'], " ");
    let mut words = Vec::new();
    for raw in lowered.split_whitespace() {
        let raw = raw.trim_end_matches(['.', ',', '!', '?', ';', ':']);
        let dollars = raw.starts_with('$');
        let percent = raw.ends_with('%');
        let digits: String = raw.chars().filter(|c| c.is_ascii_digit()).collect();
        let only_number = raw
            .chars()
            .all(|c| c.is_ascii_digit() || ",.$%".contains(c));
        if !digits.is_empty() && only_number && !raw.contains('.') && digits.len() <= 12 {
            if let Ok(n) = digits.parse::<u64>() {
                words.extend(number_words(n));
                if dollars {
                    words.push("dollars".into());
                }
                if percent {
                    words.push("percent".into());
                }
                continue;
            }
        }
        let w: String = raw
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == '\'')
            .collect();
        let w = w.trim_matches('\'').to_string();
        if !w.is_empty() {
            words.extend(expand_contraction(&w).into_iter().map(canonical));
        }
    }
    words
}

/// Edit distance between word sequences (substitutions, insertions, deletions).
pub fn word_errors(reference: &[String], hypothesis: &[String]) -> usize {
    let mut prev: Vec<usize> = (0..=hypothesis.len()).collect();
    for (i, r) in reference.iter().enumerate() {
        let mut cur = vec![i + 1; hypothesis.len() + 1];
        for (j, h) in hypothesis.iter().enumerate() {
            let sub = prev[j] + usize::from(r != h);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[hypothesis.len()]
}

/// Word error rate of one hypothesis against its reference (0.0 = perfect).
///
/// ```
/// use scamscreen::asr::wer::wer;
/// assert_eq!(wer("Call Dr. Miller at 10", "call doctor miller at ten"), 0.0);
/// assert_eq!(wer("install team viewer", "install team newer"), 1.0 / 3.0);
/// assert_eq!(wer("If you are sure, press 1", "If you're sure, press one."), 0.0);
/// assert_eq!(wer("that is not the bank's number", "That's not the bank's number"), 0.0);
/// ```
pub fn wer(reference: &str, hypothesis: &str) -> f64 {
    let (r, h) = (normalize(reference), normalize(hypothesis));
    word_errors(&r, &h) as f64 / r.len().max(1) as f64
}

/// Corpus WER: total errors over total reference words.
pub fn corpus_wer<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> f64 {
    let (mut errors, mut words) = (0usize, 0usize);
    for (r, h) in pairs {
        let (r, h) = (normalize(r), normalize(h));
        errors += word_errors(&r, &h);
        words += r.len();
    }
    errors as f64 / words.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_spelled_out() {
        assert_eq!(number_words(0), vec!["zero"]);
        assert_eq!(number_words(25).join(" "), "twenty five");
        assert_eq!(number_words(110).join(" "), "one hundred ten");
        assert_eq!(number_words(2024).join(" "), "two thousand twenty four");
        assert_eq!(number_words(1_000_000).join(" "), "one million");
    }

    #[test]
    fn normalisation_aligns_digits_words_case_and_punctuation() {
        assert_eq!(
            normalize("Call me at 5, OK?"),
            normalize("call me at five ok")
        );
        assert_eq!(normalize("Twenty-five dollars"), normalize("$25"));
        assert_eq!(normalize("It's 1,000."), normalize("it's one thousand"));
        assert_eq!(normalize("50% off"), normalize("fifty percent off"));
        assert_eq!(
            normalize("Dr. Miller, my neighbour"),
            normalize("doctor miller my neighbor")
        );
    }

    #[test]
    fn wer_counts_edits() {
        assert_eq!(wer("the cat sat", "the cat sat"), 0.0);
        assert!((wer("the cat sat", "the bat sat") - 1.0 / 3.0).abs() < 1e-9);
        assert!((wer("the cat sat", "the cat") - 1.0 / 3.0).abs() < 1e-9);
        assert!((wer("a b", "a x b y") - 1.0).abs() < 1e-9);
        assert_eq!(wer("", ""), 0.0);
        let c = corpus_wer([("a b c d", "a b c d"), ("e f", "e")]);
        assert!((c - 1.0 / 6.0).abs() < 1e-9);
    }
}
