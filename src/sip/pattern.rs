//! Allow and deny patterns: which callers the configuration names in `screening.allow` and
//! `screening.deny`.
//!
//! A pattern is one of
//! - a **number**: `+4930*`, `0800*`, `+1555010?`, `0049 (30) 12-34*`;
//! - a **user name**: `alice`, `anonymous`;
//! - **`user@host`**: `*@trusted.example`, `*@*.trusted.example`, `+4930*@carrier.example`.
//!
//! `*` matches any run of characters (also none), `?` exactly one. A leading `sip:`, `sips:`
//! or `tel:` is ignored, so `sip:alice@example.com` and `alice@example.com` are the same
//! pattern. Users and hosts are compared without case, and a host's trailing dot is ignored.
//!
//! Numbers are compared normalized, on both sides: the separators `-.() ` are ignored and a
//! leading `00` is read as `+`, so `0049 30*` and `+4930*` are the same pattern and match a
//! caller sending `+49 30 123`. A caller's `%2B` prefix is read as `+`, and user parameters
//! (`;isub=…`) are ignored. There is no other rewriting: a national `030…` does not match an
//! international `+4930…`; list both if the trunk sends both.
//!
//! A pattern without `@` is matched against the caller's user part alone, whatever the host.
//! A pattern with `@` is matched against `user@host`, and never matches a caller without a
//! host (a `tel:` URI).
//!
//! How the lists are used ([`crate::sip::classify::classify_caller`]): the caller is the
//! From URI, or a trusted P-Asserted-Identity when one is believed. The **deny** list is
//! checked first, and a match diverts the call without screening; deny wins when both lists
//! match, so a number someone chose to block stays blocked. Then an **allow** match passes
//! the call through unscreened under every policy, even a withheld caller (for instance
//! `*@trusted.example`). Within a list the first matching pattern is reported, as written,
//! in the verdict's reason: never the caller's number.
//!
//! Patterns are parsed when the configuration is validated; a bad one is a
//! [`PatternError`] naming the pattern and what is wrong with it.

use std::fmt;

use super::classify::NameAddr;

/// One allow or deny pattern: a number (`+4930*`, `0800*`, `+1555010?`), a user name, or
/// `user@host` (`*@trusted.example`). `*` matches any run of characters, `?` exactly one.
///
/// Numbers are compared normalized: the separators `-.() ` are ignored and a leading `00` is
/// read as `+`, so `0049 30*` and `+4930*` are the same pattern. No other rewriting: a
/// national `030…` does not match an international `+4930…`; list both if the trunk sends
/// both. A leading `sip:`, `sips:` or `tel:` is ignored. Users and hosts are compared without
/// case. The module documentation has the whole syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// As written in the configuration.
    text: String,
    /// Normalized glob.
    glob: Vec<char>,
    /// The glob is matched against `user@host` rather than the user alone.
    with_host: bool,
}

/// Why a pattern is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad pattern {pattern:?}: {kind}")]
pub struct PatternError {
    pub pattern: String,
    pub kind: PatternErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternErrorKind {
    #[error("it is empty")]
    Empty,
    #[error("more than one @")]
    MultipleAt,
    #[error("nothing before @ (write *@host for any user)")]
    EmptyUser,
    #[error("nothing after @")]
    EmptyHost,
    #[error("{0:?} is not allowed here")]
    BadChar(char),
    #[error("+ may only start a number")]
    MisplacedPlus,
    #[error("a lone + matches no number")]
    NoDigits,
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        let err = |kind| PatternError {
            pattern: text.to_string(),
            kind,
        };
        let trimmed = text.trim();
        let body = ["sip:", "sips:", "tel:"]
            .iter()
            .find_map(|s| {
                trimmed
                    .get(..s.len())
                    .filter(|p| p.eq_ignore_ascii_case(s))
                    .map(|_| &trimmed[s.len()..])
            })
            .unwrap_or(trimmed);
        if body.is_empty() {
            return Err(err(PatternErrorKind::Empty));
        }
        let mut parts = body.split('@');
        let user = parts.next().unwrap_or("");
        let host = parts.next();
        if parts.next().is_some() {
            return Err(err(PatternErrorKind::MultipleAt));
        }
        let mut glob = user_glob(user).map_err(err)?;
        if let Some(host) = host {
            if user.is_empty() {
                return Err(err(PatternErrorKind::EmptyUser));
            }
            if host.is_empty() {
                return Err(err(PatternErrorKind::EmptyHost));
            }
            if let Some(c) = host
                .chars()
                .find(|c| !(c.is_alphanumeric() || "-.*?[]:_".contains(*c)))
            {
                return Err(err(PatternErrorKind::BadChar(c)));
            }
            glob.push('@');
            glob.extend(host_key(host).chars());
        }
        Ok(Pattern {
            text: text.trim().to_string(),
            glob,
            with_host: host.is_some(),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The pattern matches the caller `addr`.
    pub fn matches(&self, addr: &NameAddr) -> bool {
        self.matches_key(&CallerKey::of(addr))
    }

    fn matches_key(&self, caller: &CallerKey) -> bool {
        let subject = if self.with_host {
            match &caller.user_at_host {
                Some(s) => s.as_str(),
                None => return false,
            }
        } else {
            caller.user.as_str()
        };
        glob_match(&self.glob, &subject.chars().collect::<Vec<_>>())
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The user part of a pattern as a glob: a normalized number, or the lowercased user.
fn user_glob(user: &str) -> Result<Vec<char>, PatternErrorKind> {
    let numberish = |c: char| c.is_ascii_digit() || c == '+' || c == '*' || c == '?';
    let looks_like_number = user.chars().any(|c| c.is_ascii_digit() || c == '+')
        && user
            .chars()
            .all(|c| numberish(c) || NUMBER_SEPARATORS.contains(&c));
    if looks_like_number {
        let glob = normalize_number(user);
        if glob.chars().skip(1).any(|c| c == '+') {
            return Err(PatternErrorKind::MisplacedPlus);
        }
        if glob == "+" {
            return Err(PatternErrorKind::NoDigits);
        }
        return Ok(glob.chars().collect());
    }
    // SIP userinfo characters (RFC 3261 §25.1) less the ones that end a user (`;`, `:`).
    let allowed = |c: char| c.is_alphanumeric() || "-_.!~*'()&=+$,?/%".contains(c);
    if let Some(c) = user.chars().find(|c| !allowed(*c)) {
        return Err(PatternErrorKind::BadChar(c));
    }
    Ok(user.to_lowercase().chars().collect())
}

/// `*` matches any run (also empty), `?` one character; everything else itself.
fn glob_match(glob: &[char], subject: &[char]) -> bool {
    let (mut g, mut s) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while s < subject.len() {
        match glob.get(g) {
            Some('*') => {
                star = Some((g, s));
                g += 1;
            }
            Some(&c) if c == '?' || c == subject[s] => {
                g += 1;
                s += 1;
            }
            _ => match star {
                Some((sg, ss)) => {
                    g = sg + 1;
                    s = ss + 1;
                    star = Some((sg, ss + 1));
                }
                None => return false,
            },
        }
    }
    glob[g..].iter().all(|c| *c == '*')
}

/// An allow or deny list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PatternList {
    patterns: Vec<Pattern>,
}

impl PatternList {
    /// Parse every pattern; the first bad one is the error.
    pub fn parse(patterns: &[String]) -> Result<PatternList, PatternError> {
        let patterns = patterns
            .iter()
            .map(|p| Pattern::parse(p))
            .collect::<Result<_, _>>()?;
        Ok(PatternList { patterns })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Pattern> {
        self.patterns.iter()
    }

    /// The first pattern that matches the caller `addr`.
    pub fn first_match(&self, addr: &NameAddr) -> Option<&Pattern> {
        self.first_match_key(&CallerKey::of(addr))
    }

    pub(super) fn first_match_key(&self, caller: &CallerKey) -> Option<&Pattern> {
        self.patterns.iter().find(|p| p.matches_key(caller))
    }
}

/// Visual separators in phone numbers, ignored when comparing.
const NUMBER_SEPARATORS: [char; 5] = ['-', '.', '(', ')', ' '];

/// `+4930…`, `0049 30…`, `(030) 123-45`: digits, separators and one leading `+`.
fn is_number(user: &str) -> bool {
    let body = user.strip_prefix('+').unwrap_or(user);
    body.chars().any(|c| c.is_ascii_digit())
        && body
            .chars()
            .all(|c| c.is_ascii_digit() || NUMBER_SEPARATORS.contains(&c))
}

/// Strip separators; a leading international prefix `00` becomes `+`.
fn normalize_number(number: &str) -> String {
    let digits: String = number
        .chars()
        .filter(|c| !NUMBER_SEPARATORS.contains(c))
        .collect();
    match digits.strip_prefix("00") {
        Some(rest) => format!("+{rest}"),
        None => digits,
    }
}

/// The caller as the allow and deny lists see it.
pub(super) struct CallerKey {
    /// Normalized number, or the lowercased user.
    user: String,
    /// `user@host` with the host lowercased; `None` when there is no host (tel: URI).
    user_at_host: Option<String>,
}

impl CallerKey {
    pub(super) fn of(addr: &NameAddr) -> CallerKey {
        let raw = addr.user.as_deref().map(user_without_params).unwrap_or("");
        let raw = match raw.get(..3) {
            Some(p) if p.eq_ignore_ascii_case("%2b") => format!("+{}", &raw[3..]),
            _ => raw.to_string(),
        };
        let user = if is_number(&raw) {
            normalize_number(&raw)
        } else {
            raw.to_lowercase()
        };
        let host = host_key(&addr.host);
        let user_at_host = (!host.is_empty()).then(|| format!("{user}@{host}"));
        CallerKey { user, user_at_host }
    }
}

/// The user part without user parameters (`;isub=…`), trimmed.
pub(super) fn user_without_params(user: &str) -> &str {
    user.split(';').next().unwrap_or("").trim()
}

/// The host as compared: trimmed, lowercased, without a trailing dot.
pub(super) fn host_key(host: &str) -> String {
    host.trim().trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sip(user: &str, host: &str) -> NameAddr {
        NameAddr {
            display: None,
            scheme: "sip".to_string(),
            user: Some(user.to_string()),
            host: host.to_string(),
        }
    }

    fn list(patterns: &[&str]) -> PatternList {
        let owned: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        PatternList::parse(&owned).unwrap()
    }

    fn matches(pattern: &str, user: &str, host: &str) -> bool {
        Pattern::parse(pattern).unwrap().matches(&sip(user, host))
    }

    #[test]
    fn number_patterns() {
        assert!(matches("+4930*", "+49301234567", "h"));
        assert!(matches("+4930*", "0049 30 1234567", "h"));
        assert!(matches("0049 30*", "+49301234567", "h"));
        assert!(matches("+49 (30) 12-34*", "+4930123456", "h"));
        assert!(matches("+4930*", "%2B4930123", "h"));
        assert!(matches("+4930*", "+4930123;isub=12", "h"));
        assert!(!matches("+4930*", "030123456", "h"));
        assert!(!matches("+4930*", "+4940123456", "h"));
        assert!(matches("0800*", "0800-123-456", "h"));
        assert!(matches("+1555010?", "+15550100", "h"));
        assert!(matches("+1555010?", "+1 555 0109", "h"));
        assert!(!matches("+1555010?", "+155501000", "h"));
        assert!(!matches("+1555010?", "+1555010", "h"));
        assert!(matches("+1*0?", "+155501000", "h"));
        assert!(matches("tel:+4930*", "+4930123", ""));
    }

    #[test]
    fn user_and_host_patterns() {
        assert!(matches("*@trusted.example", "alice", "TRUSTED.example."));
        assert!(matches("*@trusted.example", "+4930123", "trusted.example"));
        assert!(!matches("*@trusted.example", "alice", "evil.example"));
        assert!(!matches(
            "*@trusted.example",
            "alice",
            "trusted.example.evil"
        ));
        assert!(matches("*@*.trusted.example", "bob", "pbx.trusted.example"));
        assert!(matches(
            "+4930*@carrier.example",
            "+49 30 123",
            "carrier.example"
        ));
        assert!(matches("sip:Alice@Example.com", "alice", "example.com"));
        assert!(!matches("*@example.com", "+4930", ""));
        assert!(matches("alice", "ALICE", "anywhere"));
        assert!(matches("*", "anonymous", "anonymous.invalid"));
        assert!(matches("*", "", "h"));
    }

    #[test]
    fn glob_backtracks() {
        let g = |p: &str, s: &str| {
            glob_match(
                &p.chars().collect::<Vec<_>>(),
                &s.chars().collect::<Vec<_>>(),
            )
        };
        assert!(g("a*b*c", "aXbYbZc"));
        assert!(g("*ab", "aab"));
        assert!(!g("a*b", "aXc"));
        assert!(g("**", ""));
        assert!(!g("?", ""));
    }

    #[test]
    fn pattern_errors() {
        let kind = |p: &str| Pattern::parse(p).unwrap_err().kind;
        assert_eq!(kind(""), PatternErrorKind::Empty);
        assert_eq!(kind("   "), PatternErrorKind::Empty);
        assert_eq!(kind("sip:"), PatternErrorKind::Empty);
        assert_eq!(kind("a@b@c"), PatternErrorKind::MultipleAt);
        assert_eq!(kind("@example.com"), PatternErrorKind::EmptyUser);
        assert_eq!(kind("alice@"), PatternErrorKind::EmptyHost);
        assert_eq!(kind("49+30"), PatternErrorKind::MisplacedPlus);
        assert_eq!(kind("00+4930"), PatternErrorKind::MisplacedPlus);
        assert_eq!(kind("+"), PatternErrorKind::NoDigits);
        assert_eq!(kind("alice smith"), PatternErrorKind::BadChar(' '));
        assert_eq!(kind("<sip:alice@x>"), PatternErrorKind::BadChar('<'));
        assert_eq!(kind("a@exa mple.com"), PatternErrorKind::BadChar(' '));
        assert_eq!(kind("a;b"), PatternErrorKind::BadChar(';'));
        let e = Pattern::parse("a@b@c").unwrap_err();
        assert_eq!(e.to_string(), "bad pattern \"a@b@c\": more than one @");
    }

    #[test]
    fn pattern_list_reports_the_bad_entry() {
        let patterns = vec!["+4930*".to_string(), "@x".to_string()];
        let e = PatternList::parse(&patterns).unwrap_err();
        assert_eq!(e.pattern, "@x");
        let ok = list(&["+4930*", "0800*"]);
        assert_eq!(ok.len(), 2);
        let hit = ok.first_match(&sip("0800 1", "h"));
        assert_eq!(hit.map(Pattern::as_str), Some("0800*"));
    }
}
