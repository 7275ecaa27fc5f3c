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
//! Then, in this order (the lists are [`PatternList`]s; [`crate::sip::pattern`] has their
//! syntax):
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

use super::pattern::{host_key, user_without_params, CallerKey};
pub use super::pattern::{Pattern, PatternError, PatternErrorKind, PatternList};

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

#[cfg(test)]
mod tests;
