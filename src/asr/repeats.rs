//! The repetition guard: whisper, decoding greedily with temperature fallback off (needed
//! for stable, fast results, see BENCHMARKS.md), can fall into a loop and write the same word
//! or phrase over and over ("no no no no …", "your computer your computer …"), and repeat
//! a whole segment. Nobody says a phrase more than a few times in a row, and a loop would
//! let one scam phrase fire its rule as often as it is repeated, so runs of the same 1–4
//! word phrase are cut to [`MAX_REPEATS`] and identical consecutive segments to one.

/// Most consecutive occurrences of the same phrase kept.
pub const MAX_REPEATS: usize = 3;
/// Longest phrase (in words) looked for.
const MAX_PHRASE_WORDS: usize = 4;

/// `text` with every run of more than [`MAX_REPEATS`] copies of a 1–4 word phrase cut to
/// [`MAX_REPEATS`] copies. Words compare case-insensitively, ignoring punctuation.
pub fn collapse_repeats(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let key: Vec<String> = words
        .iter()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric() || *c == '\'')
                .flat_map(char::to_lowercase)
                .collect()
        })
        .collect();
    let mut keep = vec![true; words.len()];
    for n in 1..=MAX_PHRASE_WORDS {
        let mut i = 0;
        while i + n <= words.len() {
            // How many times the phrase at i repeats back to back.
            let same = |a: usize, b: usize| (0..n).all(|k| key[a + k] == key[b + k]);
            let mut copies = 1;
            while i + (copies + 1) * n <= words.len() && same(i, i + copies * n) {
                copies += 1;
            }
            if copies > MAX_REPEATS && key[i..i + n].iter().any(|k| !k.is_empty()) {
                for k in keep
                    .iter_mut()
                    .skip(i + MAX_REPEATS * n)
                    .take((copies - MAX_REPEATS) * n)
                {
                    *k = false;
                }
                i += copies * n;
            } else {
                i += 1;
            }
        }
    }
    words
        .iter()
        .zip(keep)
        .filter_map(|(w, k)| k.then_some(*w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Drop segments whose text equals the one before (whisper repeating a whole segment).
pub fn dedup_segments<T>(segments: &mut Vec<T>, text: impl Fn(&T) -> &str) {
    let mut last: Option<String> = None;
    segments.retain(|s| {
        let t = text(s).trim().to_lowercase();
        let repeat = last.as_deref() == Some(t.as_str());
        last = Some(t);
        !repeat
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_loops_are_cut_to_three() {
        assert_eq!(collapse_repeats("no no no no no no no"), "no no no");
        assert_eq!(
            collapse_repeats("Hello, no, no, no, no, no. Bye"),
            "Hello, no, no, no, Bye"
        );
    }

    #[test]
    fn phrase_loops_are_cut_to_three() {
        let t = "install teamviewer install teamviewer install teamviewer install teamviewer \
                 install teamviewer now";
        assert_eq!(
            collapse_repeats(t),
            "install teamviewer install teamviewer install teamviewer now"
        );
        let t = "your computer has a virus your computer has a virus your computer has a virus \
                 your computer has a virus";
        // A five-word phrase is longer than the guard looks; its 4-word pieces do not repeat
        // back to back, so it is kept (rare in practice, and only a score inflation).
        assert_eq!(collapse_repeats(t), t);
    }

    #[test]
    fn normal_speech_is_untouched() {
        for t in [
            "This is Microsoft support. Your computer has a virus.",
            "bye bye",
            "no no no, that is fine",
            "very very very good",
            "",
        ] {
            assert_eq!(
                collapse_repeats(t),
                t.split_whitespace().collect::<Vec<_>>().join(" ")
            );
        }
    }

    #[test]
    fn repeated_segments_are_dropped() {
        let mut s = vec![
            "Your computer has a virus.",
            "your computer has a virus.",
            "Call us.",
        ];
        dedup_segments(&mut s, |t| t);
        assert_eq!(s, vec!["Your computer has a virus.", "Call us."]);
    }
}
