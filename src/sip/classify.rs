//! Who is withheld? [`classify_caller`] looks at the identity headers of a new INVITE and
//! decides whether the call passes through untouched, is screened, or is denied outright, and
//! says why in words.
//!
//! Pure: the message parser fills a [`CallerIdentity`]; nothing here reads SIP text.
//!
//! A caller is **withheld** when any of these holds (checked in this order; the reason names
//! the first that fired):
//! 1. `Privacy: id`, `user` or `header` (RFC 3323, RFC 3325). `none`, `session` and
//!    `critical` alone are not withheld.
//! 2. `Remote-Party-ID` with `privacy=full`, `uri` or `name` (`off` is not withheld).
//! 3. From user `anonymous`, `restricted`, `unknown`, `unavailable`, `private`, `withheld`
//!    (any case), or empty or missing.
//! 4. From host `anonymous.invalid`.
//! 5. A display name made of "Anonymous", "Private", "Withheld", "Unavailable", "Unknown" or
//!    "Restricted" (any case), optionally with filler words: "Private Number",
//!    "Number Withheld", "Unknown Caller".
//!
//! Exception: a `P-Asserted-Identity` from a trusted peer, with `trust_asserted_identity` on,
//! is the caller's identity (RFC 3325 §9.1: within the trust domain the network vouches for
//! it). It overrides every signal above, and its number is the one the allow and deny lists
//! see. A P-Asserted-Identity that is itself anonymous (`sip:anonymous@anonymous.invalid`, no
//! user) is ignored. From an untrusted peer it is always ignored.
//!
//! Then, in this order:
//! 1. **deny list** match → [`CallerClass::Deny`] (deny wins when both lists match: a number
//!    someone chose to block stays blocked).
//! 2. **allow list** match → [`CallerClass::PassThrough`], under every policy.
//! 3. withheld → [`CallerClass::Screen`] under every policy.
//! 4. caller id present → pass through under `withheld`; screen under `unknown` and `all`.
//!
//! Reasons never contain the caller's number or name (personal data, STYLE §9): they name
//! the header, a fixed keyword, or the configured pattern that matched.

use std::fmt;

use serde::Deserialize;

/// A SIP `name-addr` (or `addr-spec`) as the message parser found it. For a `tel:` URI the
/// number is the `user` and `host` is empty.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NameAddr {
    /// Display name, unquoted.
    pub display: Option<String>,
    /// `sip`, `sips` or `tel`.
    pub scheme: String,
    /// User part, percent-decoded if the parser does so; user parameters (`;isub=`) may
    /// remain and are ignored here.
    pub user: Option<String>,
    /// Host without port.
    pub host: String,
}

/// What an INVITE says about who is calling.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CallerIdentity {
    pub from: NameAddr,
    /// `Privacy` header values as tokens, lowercased (RFC 3323: none, header, session, user,
    /// id, critical). Tokens are also split on `;` and `,` and lowercased here, to be safe.
    pub privacy: Vec<String>,
    /// The first `P-Asserted-Identity` (RFC 3325).
    pub asserted: Option<NameAddr>,
    /// `Remote-Party-ID` (draft-ietf-sip-privacy-04) and its `privacy=` parameter.
    pub remote_party_id: Option<(NameAddr, Option<String>)>,
    /// The INVITE came from an address in `security.trusted`.
    pub from_trusted_peer: bool,
}

/// Which callers are screened (`screening.policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScreeningPolicy {
    /// Only callers who withhold their number.
    #[default]
    Withheld,
    /// Everyone not on the allow list.
    Unknown,
    /// Everyone (the allow list still passes callers through).
    All,
}

impl ScreeningPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            ScreeningPolicy::Withheld => "withheld",
            ScreeningPolicy::Unknown => "unknown",
            ScreeningPolicy::All => "all",
        }
    }
}

impl fmt::Display for ScreeningPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The screening rules from configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClassifyRules {
    pub policy: ScreeningPolicy,
    /// Believe a P-Asserted-Identity from a trusted peer even when Privacy is set.
    pub trust_asserted_identity: bool,
    pub allow: PatternList,
    pub deny: PatternList,
}

/// What to do with a new call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerClass {
    /// Proxy the call transparently; media untouched.
    PassThrough,
    /// Answer, listen, transcribe, then allow, warn or divert.
    Screen,
    /// Divert without screening (deny list).
    Deny,
}

impl CallerClass {
    pub fn as_str(self) -> &'static str {
        match self {
            CallerClass::PassThrough => "pass-through",
            CallerClass::Screen => "screen",
            CallerClass::Deny => "deny",
        }
    }
}

impl fmt::Display for CallerClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer of [`classify_caller`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    pub class: CallerClass,
    /// The caller withholds their identity (whatever the class).
    pub withheld: bool,
    /// Why, in words without personal data: "Privacy: id", "allow list: +4930*".
    pub reason: String,
}

impl fmt::Display for Classification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.class, self.reason)
    }
}

/// Decide what happens to a new call. See the module documentation for the rules.
pub fn classify_caller(id: &CallerIdentity, rules: &ClassifyRules) -> Classification {
    let asserted = trusted_assertion(id, rules);
    let withheld = match asserted {
        Some(_) => None,
        None => withheld_reason(id),
    };
    let is_withheld = withheld.is_some();
    let verdict = |class, reason: String| Classification {
        class,
        withheld: is_withheld,
        reason,
    };
    let caller = CallerKey::of(asserted.unwrap_or(&id.from));
    if let Some(p) = rules.deny.first_match_key(&caller) {
        return verdict(CallerClass::Deny, format!("deny list: {p}"));
    }
    if let Some(p) = rules.allow.first_match_key(&caller) {
        return verdict(CallerClass::PassThrough, format!("allow list: {p}"));
    }
    if let Some(reason) = withheld {
        return verdict(CallerClass::Screen, reason);
    }
    let present = match asserted {
        Some(_) => "caller id present (P-Asserted-Identity)",
        None => "caller id present",
    };
    match rules.policy {
        ScreeningPolicy::Withheld => verdict(CallerClass::PassThrough, present.to_string()),
        ScreeningPolicy::Unknown => verdict(
            CallerClass::Screen,
            "policy unknown: not on the allow list".to_string(),
        ),
        ScreeningPolicy::All => verdict(CallerClass::Screen, "policy all".to_string()),
    }
}

/// From-user values that mean "no number" (compared lowercased).
pub const WITHHELD_USERS: [&str; 6] = [
    "anonymous",
    "restricted",
    "unknown",
    "unavailable",
    "private",
    "withheld",
];

/// The host RFC 3323 §4.1.1.3 prescribes for an anonymous From.
pub const ANONYMOUS_HOST: &str = "anonymous.invalid";

/// Display-name words that mean "no number" (compared lowercased).
pub const WITHHELD_DISPLAY_WORDS: [&str; 6] = [
    "anonymous",
    "private",
    "withheld",
    "unavailable",
    "unknown",
    "restricted",
];

/// Words that may accompany a withheld display word: "Private Number", "Unknown Caller".
const DISPLAY_FILLER_WORDS: [&str; 6] = ["number", "caller", "call", "id", "name", "cli"];

/// `Privacy` tokens that withhold the caller's identity, in the order they are reported.
const WITHHOLDING_PRIVACY: [&str; 3] = ["id", "user", "header"];

/// `Remote-Party-ID` privacy values that withhold the caller's identity.
const WITHHOLDING_RPID_PRIVACY: [&str; 3] = ["full", "uri", "name"];

/// The trusted P-Asserted-Identity to use as the caller's identity, if any.
fn trusted_assertion<'a>(id: &'a CallerIdentity, rules: &ClassifyRules) -> Option<&'a NameAddr> {
    if !rules.trust_asserted_identity || !id.from_trusted_peer {
        return None;
    }
    let pai = id.asserted.as_ref()?;
    anonymous_uri_reason(pai, "P-Asserted-Identity")
        .is_none()
        .then_some(pai)
}

/// Why the caller counts as withheld, ignoring any P-Asserted-Identity.
fn withheld_reason(id: &CallerIdentity) -> Option<String> {
    let tokens: Vec<String> = id
        .privacy
        .iter()
        .flat_map(|v| v.split([';', ',']))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    if let Some(t) = WITHHOLDING_PRIVACY
        .iter()
        .find(|w| tokens.iter().any(|t| t == *w))
    {
        return Some(format!("Privacy: {t}"));
    }
    if let Some((_, Some(privacy))) = &id.remote_party_id {
        let privacy = privacy.trim().trim_matches('"').to_ascii_lowercase();
        if WITHHOLDING_RPID_PRIVACY.contains(&privacy.as_str()) {
            return Some(format!("Remote-Party-ID privacy={privacy}"));
        }
    }
    if let Some(reason) = anonymous_uri_reason(&id.from, "From") {
        return Some(reason);
    }
    let display = id.from.display.as_deref().unwrap_or("");
    if withheld_display(display) {
        let shown = display.trim().trim_matches('"').trim();
        return Some(format!("display name {shown}"));
    }
    None
}

/// Why a URI says "anonymous" by its user or host; `header` names it in the reason.
fn anonymous_uri_reason(addr: &NameAddr, header: &str) -> Option<String> {
    let user = addr.user.as_deref().map(user_without_params).unwrap_or("");
    match addr.user {
        None => return Some(format!("{header} user missing")),
        Some(_) if user.is_empty() => return Some(format!("{header} user empty")),
        Some(_) => {}
    }
    let lower = user.to_ascii_lowercase();
    if let Some(w) = WITHHELD_USERS.iter().find(|w| **w == lower) {
        return Some(format!("{header} user {w}"));
    }
    if host_key(&addr.host) == ANONYMOUS_HOST {
        return Some(format!("{header} host {ANONYMOUS_HOST}"));
    }
    None
}

/// The display name consists of withheld words, with optional filler words.
fn withheld_display(display: &str) -> bool {
    let lower = display.trim().trim_matches('"').to_lowercase();
    let mut keywords = 0;
    for word in lower.split(|c: char| c.is_whitespace() || c == '-' || c == '_') {
        if word.is_empty() || DISPLAY_FILLER_WORDS.contains(&word) {
            continue;
        }
        if !WITHHELD_DISPLAY_WORDS.contains(&word) {
            return false;
        }
        keywords += 1;
    }
    keywords > 0
}

fn user_without_params(user: &str) -> &str {
    user.split(';').next().unwrap_or("").trim()
}

fn host_key(host: &str) -> String {
    host.trim().trim_end_matches('.').to_ascii_lowercase()
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
struct CallerKey {
    /// Normalized number, or the lowercased user.
    user: String,
    /// `user@host` with the host lowercased; `None` when there is no host (tel: URI).
    user_at_host: Option<String>,
}

impl CallerKey {
    fn of(addr: &NameAddr) -> CallerKey {
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

/// One allow or deny pattern: a number (`+4930*`, `0800*`, `+1555010?`), a user name, or
/// `user@host` (`*@trusted.example`). `*` matches any run of characters, `?` exactly one.
///
/// Numbers are compared normalized: the separators `-.() ` are ignored and a leading `00` is
/// read as `+`, so `0049 30*` and `+4930*` are the same pattern. No other rewriting: a
/// national `030…` does not match an international `+4930…`; list both if the trunk sends
/// both. A leading `sip:`, `sips:` or `tel:` is ignored. Users and hosts are compared without
/// case.
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

    fn first_match_key(&self, caller: &CallerKey) -> Option<&Pattern> {
        self.patterns.iter().find(|p| p.matches_key(caller))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sip(display: Option<&str>, user: Option<&str>, host: &str) -> NameAddr {
        NameAddr {
            display: display.map(str::to_string),
            scheme: "sip".to_string(),
            user: user.map(str::to_string),
            host: host.to_string(),
        }
    }

    fn from(user: &str) -> CallerIdentity {
        CallerIdentity {
            from: sip(None, Some(user), "trunk.example"),
            ..CallerIdentity::default()
        }
    }

    fn rules() -> ClassifyRules {
        ClassifyRules {
            trust_asserted_identity: true,
            ..ClassifyRules::default()
        }
    }

    fn list(patterns: &[&str]) -> PatternList {
        let owned: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        PatternList::parse(&owned).unwrap()
    }

    fn check(id: &CallerIdentity, rules: &ClassifyRules, class: CallerClass, reason: &str) {
        let c = classify_caller(id, rules);
        assert_eq!((c.class, c.reason.as_str()), (class, reason), "{id:?}");
    }

    fn screened(id: &CallerIdentity, reason: &str) {
        check(id, &rules(), CallerClass::Screen, reason);
        assert!(classify_caller(id, &rules()).withheld);
    }

    fn passed(id: &CallerIdentity) {
        check(id, &rules(), CallerClass::PassThrough, "caller id present");
        assert!(!classify_caller(id, &rules()).withheld);
    }

    #[test]
    fn withheld_from_users() {
        for user in [
            "anonymous",
            "Anonymous",
            "RESTRICTED",
            "unknown",
            "Unavailable",
            "private",
            "withheld",
        ] {
            let reason = format!("From user {}", user.to_ascii_lowercase());
            screened(&from(user), &reason);
        }
        screened(&from(""), "From user empty");
        screened(&from(";isub=1"), "From user empty");
        let mut missing = from("x");
        missing.from.user = None;
        screened(&missing, "From user missing");
    }

    #[test]
    fn withheld_anonymous_host() {
        let id = CallerIdentity {
            from: sip(None, Some("caller"), "Anonymous.Invalid"),
            ..CallerIdentity::default()
        };
        screened(&id, "From host anonymous.invalid");
    }

    #[test]
    fn withheld_display_names() {
        for display in [
            "Anonymous",
            "PRIVATE",
            "Withheld",
            "unavailable",
            "Unknown",
            "Restricted",
            "\"Withheld\"",
            "Private Number",
            "Number Withheld",
            "Unknown Caller",
        ] {
            let mut id = from("+493012345");
            id.from.display = Some(display.to_string());
            let shown = display.trim_matches('"');
            screened(&id, &format!("display name {shown}"));
        }
        for display in ["Private Bank", "Alice", "Number", ""] {
            let mut id = from("+493012345");
            id.from.display = Some(display.to_string());
            passed(&id);
        }
    }

    #[test]
    fn withheld_privacy_header() {
        for (privacy, reason) in [
            (vec!["id"], "Privacy: id"),
            (vec!["user"], "Privacy: user"),
            (vec!["header"], "Privacy: header"),
            (vec!["header", "id", "critical"], "Privacy: id"),
            (vec!["ID;Critical"], "Privacy: id"),
        ] {
            let mut id = from("+493012345");
            id.privacy = privacy.into_iter().map(str::to_string).collect();
            screened(&id, reason);
        }
    }

    #[test]
    fn privacy_none_session_critical_are_not_withheld() {
        for privacy in ["none", "session", "critical"] {
            let mut id = from("+493012345");
            id.privacy = vec![privacy.to_string()];
            passed(&id);
        }
    }

    #[test]
    fn privacy_none_does_not_hide_an_anonymous_from() {
        let mut id = from("anonymous");
        id.privacy = vec!["none".to_string()];
        screened(&id, "From user anonymous");
    }

    #[test]
    fn normal_callers_pass() {
        passed(&from("+493012345"));
        passed(&from("0301234567"));
        passed(&from("alice"));
        let mut tel = from("+1-555-0100");
        tel.from.scheme = "tel".to_string();
        tel.from.host = String::new();
        passed(&tel);
    }

    #[test]
    fn remote_party_id_privacy() {
        for (privacy, withheld) in [
            ("full", true),
            ("uri", true),
            ("name", true),
            ("FULL", true),
            ("off", false),
        ] {
            let mut id = from("+493012345");
            let rpid = sip(None, Some("+493012345"), "trunk.example");
            id.remote_party_id = Some((rpid, Some(privacy.to_string())));
            if withheld {
                let reason = format!("Remote-Party-ID privacy={}", privacy.to_lowercase());
                screened(&id, &reason);
            } else {
                passed(&id);
            }
        }
        let mut id = from("+493012345");
        id.remote_party_id = Some((sip(None, Some("+493012345"), "t"), None));
        passed(&id);
    }

    fn pai_call(trusted: bool) -> CallerIdentity {
        CallerIdentity {
            from: sip(Some("Anonymous"), Some("anonymous"), "anonymous.invalid"),
            privacy: vec!["id".to_string()],
            asserted: Some(sip(None, Some("+493012345"), "carrier.example")),
            remote_party_id: None,
            from_trusted_peer: trusted,
        }
    }

    #[test]
    fn asserted_identity_from_a_trusted_peer_is_a_caller_id() {
        let id = pai_call(true);
        let c = classify_caller(&id, &rules());
        assert_eq!(c.class, CallerClass::PassThrough);
        assert_eq!(c.reason, "caller id present (P-Asserted-Identity)");
        assert!(!c.withheld);
    }

    #[test]
    fn asserted_identity_from_an_untrusted_peer_is_ignored() {
        screened(&pai_call(false), "Privacy: id");
    }

    #[test]
    fn asserted_identity_ignored_when_trust_is_off() {
        let r = ClassifyRules {
            trust_asserted_identity: false,
            ..rules()
        };
        check(&pai_call(true), &r, CallerClass::Screen, "Privacy: id");
    }

    #[test]
    fn anonymous_asserted_identity_is_no_caller_id() {
        let mut id = pai_call(true);
        id.asserted = Some(sip(None, Some("anonymous"), "anonymous.invalid"));
        screened(&id, "Privacy: id");
    }

    #[test]
    fn trusted_asserted_identity_overrides_rpid_privacy() {
        let mut id = pai_call(true);
        id.privacy.clear();
        id.remote_party_id = Some((sip(None, Some("+493012345"), "c"), Some("full".into())));
        check(
            &id,
            &rules(),
            CallerClass::PassThrough,
            "caller id present (P-Asserted-Identity)",
        );
    }

    #[test]
    fn asserted_number_feeds_the_lists_only_when_trusted() {
        let r = ClassifyRules {
            deny: list(&["+4930*"]),
            ..rules()
        };
        check(&pai_call(true), &r, CallerClass::Deny, "deny list: +4930*");
        check(&pai_call(false), &r, CallerClass::Screen, "Privacy: id");
    }

    #[test]
    fn policy_withheld() {
        let r = rules();
        check(
            &from("+4930123"),
            &r,
            CallerClass::PassThrough,
            "caller id present",
        );
        check(
            &from("anonymous"),
            &r,
            CallerClass::Screen,
            "From user anonymous",
        );
    }

    #[test]
    fn policy_unknown() {
        let r = ClassifyRules {
            policy: ScreeningPolicy::Unknown,
            allow: list(&["+4930*"]),
            ..rules()
        };
        check(
            &from("+4930123"),
            &r,
            CallerClass::PassThrough,
            "allow list: +4930*",
        );
        check(
            &from("+4940123"),
            &r,
            CallerClass::Screen,
            "policy unknown: not on the allow list",
        );
        check(
            &from("anonymous"),
            &r,
            CallerClass::Screen,
            "From user anonymous",
        );
    }

    #[test]
    fn policy_all() {
        let r = ClassifyRules {
            policy: ScreeningPolicy::All,
            allow: list(&["+4930*"]),
            ..rules()
        };
        check(&from("+4940123"), &r, CallerClass::Screen, "policy all");
        check(
            &from("+4930123"),
            &r,
            CallerClass::PassThrough,
            "allow list: +4930*",
        );
        check(
            &from("private"),
            &r,
            CallerClass::Screen,
            "From user private",
        );
    }

    #[test]
    fn deny_wins_over_allow() {
        let r = ClassifyRules {
            allow: list(&["+49*"]),
            deny: list(&["+49900*"]),
            ..rules()
        };
        check(
            &from("+49900123"),
            &r,
            CallerClass::Deny,
            "deny list: +49900*",
        );
        check(
            &from("+4930123"),
            &r,
            CallerClass::PassThrough,
            "allow list: +49*",
        );
    }

    #[test]
    fn deny_list_applies_to_callers_with_a_number() {
        let r = ClassifyRules {
            deny: list(&["0900*"]),
            ..rules()
        };
        let c = classify_caller(&from("0900-123 456"), &r);
        assert_eq!((c.class, c.withheld), (CallerClass::Deny, false));
    }

    #[test]
    fn lists_can_name_anonymous_callers_by_host() {
        let r = ClassifyRules {
            deny: list(&["*@anonymous.invalid"]),
            ..rules()
        };
        let id = CallerIdentity {
            from: sip(None, Some("anonymous"), "anonymous.invalid"),
            ..CallerIdentity::default()
        };
        let c = classify_caller(&id, &r);
        assert_eq!(c.class, CallerClass::Deny);
        assert!(c.withheld);
    }

    #[test]
    fn allow_list_passes_a_withheld_caller_it_names() {
        let r = ClassifyRules {
            allow: list(&["*@trusted.example"]),
            ..rules()
        };
        let mut id = from("+4930123");
        id.from.host = "Trusted.Example".to_string();
        id.privacy = vec!["id".to_string()];
        check(
            &id,
            &r,
            CallerClass::PassThrough,
            "allow list: *@trusted.example",
        );
    }

    #[test]
    fn reasons_never_contain_the_number() {
        let mut id = from("+493012345");
        id.privacy = vec!["id".to_string()];
        for policy in [
            ScreeningPolicy::Withheld,
            ScreeningPolicy::Unknown,
            ScreeningPolicy::All,
        ] {
            for privacy in [vec![], vec!["id".to_string()]] {
                id.privacy = privacy;
                let r = ClassifyRules { policy, ..rules() };
                assert!(!classify_caller(&id, &r).reason.contains("3012345"));
            }
        }
    }

    fn matches(pattern: &str, user: &str, host: &str) -> bool {
        Pattern::parse(pattern)
            .unwrap()
            .matches(&sip(None, Some(user), host))
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
        let hit = ok.first_match(&sip(None, Some("0800 1"), "h"));
        assert_eq!(hit.map(Pattern::as_str), Some("0800*"));
    }

    #[test]
    fn policy_names() {
        #[derive(Deserialize)]
        struct P {
            policy: ScreeningPolicy,
        }
        let p: P = toml::from_str("policy = \"unknown\"").unwrap();
        assert_eq!(p.policy, ScreeningPolicy::Unknown);
        assert_eq!(ScreeningPolicy::All.to_string(), "all");
        assert!(toml::from_str::<P>("policy = \"none\"").is_err());
    }
}
