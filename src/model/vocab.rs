//! Vocabulary: CTranslate2's `vocabulary.txt` stores GPT-2 byte-level BPE tokens, one per
//! line, where every byte is mapped to a printable unicode character. ggml files want the
//! raw bytes of the ordinary tokens, those before `<|endoftext|>`; whisper.cpp adds the
//! special tokens itself, at ids it derives from the vocabulary size alone: 51864 tokens is an
//! English-only model (`<|endoftext|>` = 50256, 50256 ordinary tokens), 51865 and more is
//! multilingual (`<|endoftext|>` = 50257: 50257 ordinary tokens, id 50256 being the empty
//! string), with `n_vocab - 51765 - 1` language tokens. [`check_special_tokens`] makes sure a
//! vocabulary file agrees, since a shifted special token would make whisper.cpp decode with
//! the wrong language or task.

use std::collections::HashMap;

use super::ModelError;

/// whisper's language codes in token order (`<|en|>` first), as whisper.cpp's `g_lang`: the
/// first 99 are those of the multilingual models up to large-v2, `yue` came with large-v3.
pub const WHISPER_LANGUAGES: [&str; 100] = [
    "en", "zh", "de", "es", "ru", "ko", "fr", "ja", "pt", "tr", "pl", "ca", "nl", "ar", "sv", "it",
    "id", "hi", "fi", "vi", "he", "uk", "el", "ms", "cs", "ro", "da", "hu", "ta", "no", "th", "ur",
    "hr", "bg", "lt", "la", "mi", "ml", "cy", "sk", "te", "fa", "lv", "bn", "sr", "az", "sl", "kn",
    "et", "mk", "br", "eu", "is", "hy", "ne", "mn", "bs", "kk", "sq", "sw", "gl", "mr", "pa", "si",
    "km", "sn", "yo", "so", "af", "oc", "ka", "be", "tg", "sd", "gu", "am", "yi", "lo", "uz", "fo",
    "ht", "ps", "tk", "nn", "mt", "sa", "lb", "my", "bo", "tl", "mg", "as", "tt", "haw", "ln",
    "ha", "ba", "jw", "su", "yue",
];

/// Smallest vocabulary of a real whisper model (English only); below it (test models) the
/// special-token layout is not checked.
pub const N_VOCAB_ENGLISH: usize = 51864;
/// Smallest vocabulary whisper.cpp treats as multilingual.
pub const N_VOCAB_MULTILINGUAL: usize = 51865;

/// Is a model with this vocabulary size multilingual, by whisper.cpp's rule?
pub fn is_multilingual(n_vocab: usize) -> bool {
    n_vocab >= N_VOCAB_MULTILINGUAL
}

/// Check that the special tokens of a real whisper vocabulary (`n_vocab` ≥ 51864 lines) sit
/// at the ids whisper.cpp assumes for that size: `<|endoftext|>`, `<|startoftranscript|>`,
/// the language tokens in whisper's order, the task tokens and `<|0.00|>`.
pub fn check_special_tokens(lines: &[&str], n_vocab: usize) -> Result<(), ModelError> {
    if n_vocab < N_VOCAB_ENGLISH {
        return Ok(());
    }
    let bad = |what: String| ModelError::NotCt2Whisper(format!("vocabulary: {what}"));
    if lines.len() != n_vocab {
        return Err(bad(format!(
            "{} tokens, but the model's embedding has {n_vocab} rows",
            lines.len()
        )));
    }
    let multilingual = is_multilingual(n_vocab);
    let eot = 50256 + usize::from(multilingual);
    let n_langs = n_vocab - 51765 - usize::from(multilingual);
    if n_langs > WHISPER_LANGUAGES.len() {
        return Err(bad(format!(
            "{n_langs} languages is more than whisper knows"
        )));
    }
    let expect = |id: usize, want: &[&str]| -> Result<(), ModelError> {
        let got = lines[id];
        if want.contains(&got) {
            Ok(())
        } else {
            Err(bad(format!(
                "token {id} is {got:?}, whisper.cpp expects {} there for {n_vocab} tokens",
                want.join(" or ")
            )))
        }
    };
    expect(eot, &["<|endoftext|>"])?;
    expect(eot + 1, &["<|startoftranscript|>"])?;
    for (i, code) in WHISPER_LANGUAGES[..n_langs].iter().enumerate() {
        let want = format!("<|{code}|>");
        // Older tokenizers spell Hebrew with its former code.
        let alt = if *code == "he" { "<|iw|>" } else { "" };
        expect(eot + 2 + i, &[&want, alt])?;
    }
    let task = eot + 2 + n_langs;
    let specials: [&[&str]; 7] = [
        &["<|translate|>"],
        &["<|transcribe|>"],
        &["<|startoflm|>"],
        &["<|startofprev|>"],
        &["<|nocaptions|>", "<|nospeech|>"],
        &["<|notimestamps|>"],
        &["<|0.00|>"],
    ];
    for (i, want) in specials.iter().enumerate() {
        expect(task + i, want)?;
    }
    Ok(())
}

/// The lines of a CTranslate2 vocabulary: `vocabulary.txt` (one token a line) or the
/// `vocabulary.json` newer CTranslate2 versions write (a JSON array of strings), as text with
/// one token a line (byte-level tokens never contain a newline).
pub fn vocabulary_text(dir: &std::path::Path) -> Result<String, ModelError> {
    let txt = dir.join("vocabulary.txt");
    if txt.exists() {
        return std::fs::read_to_string(&txt).map_err(|e| ModelError::io(&txt, e));
    }
    let json = dir.join("vocabulary.json");
    let bytes = std::fs::read(&json).map_err(|e| ModelError::io(&json, e))?;
    let tokens: Vec<String> = serde_json::from_slice(&bytes)
        .map_err(|e| ModelError::NotCt2Whisper(format!("{}: {e}", json.display())))?;
    if let Some(t) = tokens.iter().find(|t| t.contains('\n')) {
        return Err(ModelError::NotCt2Whisper(format!(
            "{}: token {t:?} holds a newline",
            json.display()
        )));
    }
    let mut out = tokens.join("\n");
    out.push('\n');
    Ok(out)
}

/// GPT-2's `bytes_to_unicode` table, inverted: printable char → byte.
fn unicode_to_byte() -> HashMap<char, u8> {
    let mut printable: Vec<u32> = Vec::new();
    printable.extend(u32::from(b'!')..=u32::from(b'~'));
    printable.extend(0xA1..=0xAC);
    printable.extend(0xAE..=0xFF);
    let mut map = HashMap::with_capacity(256);
    let mut extra = 0u32;
    for b in 0u32..256 {
        let c = if printable.contains(&b) {
            b
        } else {
            extra += 1;
            255 + extra
        };
        if let Some(ch) = char::from_u32(c) {
            map.insert(ch, b as u8);
        }
    }
    map
}

/// Decode one byte-level token back to its bytes.
pub fn token_bytes(token: &str, table: &HashMap<char, u8>) -> Result<Vec<u8>, ModelError> {
    token
        .chars()
        .map(|c| {
            table.get(&c).copied().ok_or_else(|| {
                ModelError::NotCt2Whisper(format!("vocabulary token {token:?} is not byte-level"))
            })
        })
        .collect()
}

/// The ordinary tokens of a vocabulary file as raw bytes, in id order.
pub fn ordinary_tokens(vocabulary_txt: &str) -> Result<Vec<Vec<u8>>, ModelError> {
    let table = unicode_to_byte();
    let mut out = Vec::new();
    for line in vocabulary_txt.lines() {
        if line == "<|endoftext|>" {
            return Ok(out);
        }
        out.push(token_bytes(line, &table)?);
    }
    Err(ModelError::NotCt2Whisper(
        "vocabulary.txt has no <|endoftext|> token".into(),
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn maps_gpt2_byte_level_tokens() {
        let t = unicode_to_byte();
        assert_eq!(t.len(), 256);
        // 'Ġ' (U+0120) is the space byte, 'Ċ' (U+010A) the newline.
        assert_eq!(token_bytes("Ġhello", &t).expect("ok"), b" hello");
        assert_eq!(token_bytes("Ċ", &t).expect("ok"), b"\n");
        assert_eq!(token_bytes("!", &t).expect("ok"), b"!");
        // "é" as UTF-8 is C3 A9, which byte-level BPE writes as "Ã©".
        assert_eq!(token_bytes("Ã©", &t).expect("ok"), "é".as_bytes());
        assert!(token_bytes("€", &t).is_err());
    }

    /// A whisper vocabulary of `n_vocab` tokens laid out as whisper's tokenizer does.
    pub(crate) fn whisper_vocab(n_vocab: usize, nospeech: &str) -> Vec<String> {
        let multilingual = is_multilingual(n_vocab);
        let ordinary = 50256 + usize::from(multilingual);
        let n_langs = n_vocab - 51765 - usize::from(multilingual);
        let mut v: Vec<String> = (0..ordinary).map(|i| format!("t{i}")).collect();
        v.push("<|endoftext|>".into());
        v.push("<|startoftranscript|>".into());
        v.extend(
            WHISPER_LANGUAGES[..n_langs]
                .iter()
                .map(|c| format!("<|{c}|>")),
        );
        for t in [
            "translate",
            "transcribe",
            "startoflm",
            "startofprev",
            nospeech,
        ] {
            v.push(format!("<|{t}|>"));
        }
        v.push("<|notimestamps|>".into());
        let mut ts = 0;
        while v.len() < n_vocab {
            v.push(format!("<|{}.{:02}|>", ts / 50, (ts % 50) * 2));
            ts += 1;
        }
        v
    }

    #[test]
    fn special_tokens_where_whisper_cpp_expects_them() {
        for (n, ordinary) in [(51864, 50256), (51865, 50257)] {
            let v = whisper_vocab(n, "nocaptions");
            let lines: Vec<&str> = v.iter().map(String::as_str).collect();
            check_special_tokens(&lines, n).expect("layout");
            let text = v.join("\n");
            assert_eq!(ordinary_tokens(&text).expect("tokens").len(), ordinary);
        }
        // Newer tokenizers: <|nospeech|>; old tiny.en: <|iw|> for Hebrew.
        let mut v = whisper_vocab(51865, "nospeech");
        let he = v.iter().position(|t| t == "<|he|>").expect("he");
        v[he] = "<|iw|>".into();
        let lines: Vec<&str> = v.iter().map(String::as_str).collect();
        check_special_tokens(&lines, 51865).expect("layout");
        // An English layout in a multilingual model shifts every special token.
        let v = whisper_vocab(51864, "nocaptions");
        let mut lines: Vec<&str> = v.iter().map(String::as_str).collect();
        lines.push("<|30.00|>");
        let e = check_special_tokens(&lines, 51865).expect_err("shifted");
        assert!(e.to_string().contains("token 50257"), "{e}");
        // A vocabulary that does not match the embedding.
        let e = check_special_tokens(&lines[..51000], 51865).expect_err("short");
        assert!(e.to_string().contains("51000 tokens"), "{e}");
        // Languages out of order.
        let mut v = whisper_vocab(51865, "nocaptions");
        v.swap(50259, 50260);
        let lines: Vec<&str> = v.iter().map(String::as_str).collect();
        assert!(check_special_tokens(&lines, 51865).is_err());
        // Test-sized vocabularies are not checked.
        check_special_tokens(&["a", "<|endoftext|>"], 4).expect("small");
    }

    #[test]
    fn reads_vocabulary_json_too() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(
            dir.path().join("vocabulary.json"),
            r#"["a", "\u0120b", "", "<|endoftext|>"]"#,
        )
        .expect("write");
        let text = vocabulary_text(dir.path()).expect("json");
        assert_eq!(text, "a\nĠb\n\n<|endoftext|>\n");
        let toks = ordinary_tokens(&text).expect("tokens");
        assert_eq!(toks, vec![b"a".to_vec(), b" b".to_vec(), Vec::new()]);
        std::fs::write(dir.path().join("vocabulary.txt"), "x\n").expect("write");
        assert_eq!(vocabulary_text(dir.path()).expect("txt"), "x\n");
        let empty = tempfile::tempdir().expect("tmp");
        assert!(vocabulary_text(empty.path()).is_err());
    }

    #[test]
    fn stops_at_end_of_text() {
        let v = "a\nĠb\n<|endoftext|>\n<|startoftranscript|>\n";
        let toks = ordinary_tokens(v).expect("ok");
        assert_eq!(toks, vec![b"a".to_vec(), b" b".to_vec()]);
        assert!(ordinary_tokens("a\nb\n").is_err());
    }
}
