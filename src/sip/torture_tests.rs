//! RFC 4475 torture messages through the parser and validator.

use super::msg::SipMessage;
use super::validate::{check_request, check_response};
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/sip/rfc4475")
}

/// Outcome: Ok(()) = accepted, Err(code) = rejected with code (0 = dropped).
fn outcome(bytes: &[u8]) -> Result<(), u16> {
    let msg = SipMessage::parse(bytes).map_err(|_| 0u16)?;
    if msg.is_request() {
        check_request(&msg).map(|_| ()).map_err(|r| r.status)
    } else {
        check_response(&msg).map(|_| ()).ok_or(0)
    }
}

#[test]
fn rfc4475_messages_are_judged_as_the_rfc_says() {
    let index = std::fs::read_to_string(dir().join("index.tsv")).unwrap();
    let mut failures = Vec::new();
    for line in index.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (file, name, class) = (cols[0], cols[2], cols[4]);
        let bytes = std::fs::read(dir().join(file)).unwrap();
        let got = outcome(&bytes);
        let expected: Result<(), u16> = match (class, name) {
            ("invalid", _) => Err(u16::MAX), // any rejection
            ("application", "unkscm") | ("application", "novelsc") => Err(416),
            ("application", "bext01") => Err(420),
            ("application", "mcl01") | ("application", "insuf") | ("application", "multi01") => {
                Err(400)
            }
            _ => Ok(()),
        };
        let ok = match (&expected, &got) {
            (Err(u16::MAX), Err(_)) => true,
            (a, b) => a == b,
        };
        if !ok {
            failures.push(format!("{file}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
