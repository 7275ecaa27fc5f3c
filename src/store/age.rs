//! Ages on the command line: `90s`, `30m`, `2h`, `7d`, `2w`.

use std::time::Duration;

/// A malformed age.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgeError {
    #[error("age {0:?} is not a number followed by s, m, h, d or w (e.g. 2h, 7d)")]
    Malformed(String),
    #[error("age {0:?} is too long")]
    TooLong(String),
}

/// Parses a number followed by a unit: `s` seconds, `m` minutes, `h` hours, `d` days,
/// `w` weeks. A bare number is seconds.
pub fn parse_age(text: &str) -> Result<Duration, AgeError> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let malformed = || AgeError::Malformed(text.to_string());
    if digits.is_empty() {
        return Err(malformed());
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| AgeError::TooLong(text.to_string()))?;
    let unit_secs = match unit.trim() {
        "" | "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 24 * 3600,
        "w" => 7 * 24 * 3600,
        _ => return Err(malformed()),
    };
    n.checked_mul(unit_secs)
        .map(Duration::from_secs)
        .ok_or_else(|| AgeError::TooLong(text.to_string()))
}
