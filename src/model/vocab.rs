//! Vocabulary: CTranslate2's `vocabulary.txt` stores GPT-2 byte-level BPE tokens, one per
//! line, where every byte is mapped to a printable unicode character. ggml files want the
//! raw bytes of the ordinary tokens, those before `<|endoftext|>`; whisper.cpp adds the
//! special tokens itself.

use std::collections::HashMap;

use super::ModelError;

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
mod tests {
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

    #[test]
    fn stops_at_end_of_text() {
        let v = "a\nĠb\n<|endoftext|>\n<|startoftranscript|>\n";
        let toks = ordinary_tokens(v).expect("ok");
        assert_eq!(toks, vec![b"a".to_vec(), b" b".to_vec()]);
        assert!(ordinary_tokens("a\nb\n").is_err());
    }
}
