//! HTTP Digest authentication, client side, as SIP uses it (RFC 3261 §22.2, §22.4; RFC 2617;
//! RFC 7616; RFC 8760 for SHA-256).
//!
//! A registrar or proxy answers 401 (`WWW-Authenticate`) or 407 (`Proxy-Authenticate`); the
//! client sends the request again with an `Authorization` or `Proxy-Authorization` header
//! computed from the challenge, its credentials, a client nonce (cnonce) and a nonce count.
//!
//! * [`Challenge`] parses one challenge and computes the header value for a request. It is
//!   a pure function of its inputs, tested against the RFC examples.
//! * [`DigestClient`] is the per-account state a UAC keeps across requests (REGISTER, and the
//!   INVITEs a device sends through its registrar): the challenge it last answered and its
//!   nonce count, and the rule "answer each nonce once; a second challenge with the same
//!   nonce and no `stale=true` means the credentials are wrong".
//!
//! Supported: algorithms `MD5`, `MD5-sess`, `SHA-256`, `SHA-256-sess`; `qop=auth` (chosen
//! whenever offered) and the RFC 2069 form without qop. Not supported: `auth-int` alone,
//! `userhash`, SHA-512-256, AKA. Nothing here panics on network input.

use super::msg::{is_token_char, SipMessage};
use md5::Md5;
use sha2::{Digest as _, Sha256};
use std::fmt::Write as _;

/// Credentials answered to successive challenges of one request before giving up (stale
/// nonces included): a server that keeps challenging is refusing us.
pub const MAX_CHALLENGES_PER_REQUEST: u32 = 3;

/// Why a challenge cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("the response carries no {0} header")]
    NoChallenge(&'static str),
    #[error("not a Digest challenge (scheme {0:?})")]
    NotDigest(String),
    #[error("malformed challenge: {0}")]
    Syntax(&'static str),
    #[error("challenge lacks the {0} parameter")]
    Missing(&'static str),
    #[error("unsupported digest algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    #[error("unsupported qop {0:?} (only auth is implemented)")]
    UnsupportedQop(String),
    #[error("a -sess algorithm without qop cannot be answered")]
    SessWithoutQop,
}

/// Why a [`DigestClient`] gives up on a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("status {0} is not a challenge")]
    NotAChallenge(u16),
    #[error("cannot answer the challenge: {0}")]
    Unusable(#[from] DigestError),
    #[error("credentials refused (challenged again for the same nonce)")]
    Rejected,
    #[error("challenged {MAX_CHALLENGES_PER_REQUEST} times in a row")]
    TooManyChallenges,
}

/// The hash function and whether HA1 is per session (RFC 7616 §3.4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
}

impl Algorithm {
    /// The token as the RFCs spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    fn parse(token: &str) -> Result<Algorithm, DigestError> {
        [
            Algorithm::Md5,
            Algorithm::Md5Sess,
            Algorithm::Sha256,
            Algorithm::Sha256Sess,
        ]
        .into_iter()
        .find(|a| a.as_str().eq_ignore_ascii_case(token))
        .ok_or_else(|| DigestError::UnsupportedAlgorithm(token.to_string()))
    }

    fn is_sess(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess)
    }

    /// Lower-case hex of the hash of `input`.
    fn hex(self, input: &str) -> String {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => hex(&Md5::digest(input.as_bytes())),
            Algorithm::Sha256 | Algorithm::Sha256Sess => hex(&Sha256::digest(input.as_bytes())),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Which header carried the challenge, and so which header answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeHeader {
    /// 401, `WWW-Authenticate` → `Authorization` (a registrar or UAS).
    Www,
    /// 407, `Proxy-Authenticate` → `Proxy-Authorization` (a proxy).
    Proxy,
}

impl ChallengeHeader {
    /// The header to answer with.
    pub fn credentials_header(self) -> &'static str {
        match self {
            ChallengeHeader::Www => "Authorization",
            ChallengeHeader::Proxy => "Proxy-Authorization",
        }
    }

    /// The header the challenge is in.
    pub fn challenge_header(self) -> &'static str {
        match self {
            ChallengeHeader::Www => "WWW-Authenticate",
            ChallengeHeader::Proxy => "Proxy-Authenticate",
        }
    }

    /// By status code: 401 or 407.
    pub fn of_status(status: u16) -> Option<ChallengeHeader> {
        match status {
            401 => Some(ChallengeHeader::Www),
            407 => Some(ChallengeHeader::Proxy),
            _ => None,
        }
    }
}

/// Who we are to the server.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// One parsed Digest challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    /// `MD5` when the challenge names none.
    pub algorithm: Algorithm,
    /// `qop=auth` will be used (offered); `false` = RFC 2069 form, no cnonce or nc.
    pub qop_auth: bool,
    /// The server says our previous nonce merely went stale: the password was right.
    pub stale: bool,
}

impl Challenge {
    /// Parses a `WWW-Authenticate` or `Proxy-Authenticate` value:
    /// `Digest realm="…", nonce="…", [opaque="…"], [algorithm=…], [qop="auth,auth-int"],
    /// [stale=true]`. Unknown parameters are ignored; of a repeated one the first counts.
    pub fn parse(value: &str) -> Result<Challenge, DigestError> {
        let value = value.trim();
        let scheme_end = value
            .find(|c: char| c.is_ascii_whitespace())
            .unwrap_or(value.len());
        let (scheme, rest) = value.split_at(scheme_end);
        if !scheme.eq_ignore_ascii_case("Digest") {
            return Err(DigestError::NotDigest(scheme.to_string()));
        }
        let params = parse_auth_params(rest)?;
        let get = |name: &str| {
            params
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let realm = get("realm").ok_or(DigestError::Missing("realm"))?;
        let nonce = get("nonce").ok_or(DigestError::Missing("nonce"))?;
        let algorithm = match get("algorithm") {
            Some(a) => Algorithm::parse(a.trim())?,
            None => Algorithm::Md5,
        };
        let qop_auth = match get("qop") {
            None => false,
            Some(list) => {
                if !list
                    .split(',')
                    .any(|q| q.trim().eq_ignore_ascii_case("auth"))
                {
                    return Err(DigestError::UnsupportedQop(list.to_string()));
                }
                true
            }
        };
        if algorithm.is_sess() && !qop_auth {
            return Err(DigestError::SessWithoutQop);
        }
        Ok(Challenge {
            realm: realm.to_string(),
            nonce: nonce.to_string(),
            opaque: get("opaque").map(str::to_string),
            algorithm,
            qop_auth,
            stale: get("stale").is_some_and(|s| s.trim().eq_ignore_ascii_case("true")),
        })
    }

    /// The first challenge of `header` kind in `response` that we can answer (RFC 8760 §2.4:
    /// a server lists one per algorithm, most preferred first). If none can be answered, the
    /// reason the first one could not.
    pub fn from_response(
        response: &SipMessage,
        header: ChallengeHeader,
    ) -> Result<Challenge, DigestError> {
        let mut first_error = None;
        for value in response.header_lines(header.challenge_header()) {
            match Challenge::parse(value) {
                Ok(challenge) => return Ok(challenge),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or(DigestError::NoChallenge(header.challenge_header())))
    }

    /// The `response` value: RFC 7616 §3.4.1 with qop, RFC 2069 (RFC 2617 §3.2.2.1) without.
    pub fn response(
        &self,
        method: &str,
        uri: &str,
        credentials: &Credentials,
        cnonce: &str,
        nc: u32,
    ) -> String {
        let alg = self.algorithm;
        let mut ha1 = alg.hex(&format!(
            "{}:{}:{}",
            credentials.user, self.realm, credentials.password
        ));
        if alg.is_sess() {
            ha1 = alg.hex(&format!("{ha1}:{}:{cnonce}", self.nonce));
        }
        let ha2 = alg.hex(&format!("{method}:{uri}"));
        if self.qop_auth {
            alg.hex(&format!(
                "{ha1}:{}:{nc:08x}:{cnonce}:auth:{ha2}",
                self.nonce
            ))
        } else {
            alg.hex(&format!("{ha1}:{}:{ha2}", self.nonce))
        }
    }

    /// The value of the `Authorization` / `Proxy-Authorization` header answering this
    /// challenge for a request `method` to `uri` (the Request-URI as sent), with client nonce
    /// `cnonce` and nonce count `nc` (1 for the first use of a nonce, then 2, 3, …).
    pub fn authorize(
        &self,
        method: &str,
        uri: &str,
        credentials: &Credentials,
        cnonce: &str,
        nc: u32,
    ) -> String {
        let response = self.response(method, uri, credentials, cnonce, nc);
        let mut out = String::with_capacity(256);
        let _ = write!(
            out,
            "Digest username={}, realm={}, nonce={}, uri={}, response={}, algorithm={}",
            quote(&credentials.user),
            quote(&self.realm),
            quote(&self.nonce),
            quote(uri),
            quote(&response),
            self.algorithm.as_str(),
        );
        if self.qop_auth {
            let _ = write!(out, ", cnonce={}, qop=auth, nc={nc:08x}", quote(cnonce));
        }
        if let Some(opaque) = &self.opaque {
            let _ = write!(out, ", opaque={}", quote(opaque));
        }
        out
    }
}

/// `"…"` with `"` and `\` escaped (RFC 3261 §25.1 quoted-pair).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// `auth-param *(COMMA auth-param)`, `auth-param = token "=" (token / quoted-string)`.
/// Names lower-cased, quoted values unescaped. Unquoted values are read leniently up to the
/// next comma or whitespace (some servers leave a nonce unquoted).
fn parse_auth_params(s: &str) -> Result<Vec<(String, String)>, DigestError> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut chars = s.char_indices().peekable();
    let skip_ws = |chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>| {
        while chars.next_if(|(_, c)| c.is_ascii_whitespace()).is_some() {}
    };
    loop {
        // Separators, including empty list elements.
        while chars
            .next_if(|(_, c)| c.is_ascii_whitespace() || *c == ',')
            .is_some()
        {}
        let Some(&(start, _)) = chars.peek() else {
            break;
        };
        let mut end = start;
        while let Some((i, c)) = chars.next_if(|(_, c)| is_token_char(*c)) {
            end = i + c.len_utf8();
        }
        if end == start {
            return Err(DigestError::Syntax("expected a parameter name"));
        }
        let name = s[start..end].to_ascii_lowercase();
        skip_ws(&mut chars);
        if chars.next_if(|(_, c)| *c == '=').is_none() {
            return Err(DigestError::Syntax("expected '=' after a parameter name"));
        }
        skip_ws(&mut chars);
        let mut value = String::new();
        if chars.next_if(|(_, c)| *c == '"').is_some() {
            let mut closed = false;
            while let Some((_, c)) = chars.next() {
                match c {
                    '"' => {
                        closed = true;
                        break;
                    }
                    '\\' => match chars.next() {
                        Some((_, escaped)) => value.push(escaped),
                        None => break,
                    },
                    _ => value.push(c),
                }
            }
            if !closed {
                return Err(DigestError::Syntax("unterminated quoted string"));
            }
        } else {
            while let Some((_, c)) = chars.next_if(|(_, c)| !c.is_ascii_whitespace() && *c != ',') {
                value.push(c);
            }
            if value.is_empty() {
                return Err(DigestError::Syntax("empty parameter value"));
            }
        }
        skip_ws(&mut chars);
        if chars.next_if(|(_, c)| *c == ',').is_none() && chars.peek().is_some() {
            return Err(DigestError::Syntax("expected ',' between parameters"));
        }
        if !out.iter().any(|(n, _)| *n == name) {
            out.push((name, value));
        }
    }
    Ok(out)
}

/// The challenge a [`DigestClient`] answers, and how often it has used its nonce.
#[derive(Debug, Clone)]
struct Answering {
    challenge: Challenge,
    header: ChallengeHeader,
    /// Nonce count of the latest request that carried credentials for this nonce.
    nc: u32,
}

/// The digest state of one account on one server: the challenge last received and its
/// nonce count. Later requests carry credentials for the cached nonce at once (RFC 3261
/// §22.1 lets a UAC reuse them), saving a round trip until the server's nonce expires.
///
/// Per request: call [`DigestClient::authorization`] while building it; on a 401/407 call
/// [`DigestClient::on_challenge`] and, if it says so, build the request again (new CSeq, new
/// branch); on any other final response call [`DigestClient::on_accepted`].
#[derive(Debug, Clone)]
pub struct DigestClient {
    credentials: Credentials,
    answering: Option<Answering>,
    /// Challenges received since the last non-challenge final response.
    challenges_in_a_row: u32,
}

impl DigestClient {
    pub fn new(credentials: Credentials) -> DigestClient {
        DigestClient {
            credentials,
            answering: None,
            challenges_in_a_row: 0,
        }
    }

    /// The challenge being answered, if any.
    pub fn challenge(&self) -> Option<&Challenge> {
        self.answering.as_ref().map(|a| &a.challenge)
    }

    /// A 401 or 407 arrived for a request of ours. `Ok(())`: send the request again, with
    /// [`DigestClient::authorization`]. An error: give up (and [`DigestClient::forget`]).
    pub fn on_challenge(&mut self, response: &SipMessage) -> Result<(), AuthError> {
        let status = response.status().unwrap_or(0);
        let header = ChallengeHeader::of_status(status).ok_or(AuthError::NotAChallenge(status))?;
        let challenge = Challenge::from_response(response, header)?;
        // The request carried credentials for this very nonce, and the server does not say
        // it went stale: it refused them (RFC 3261 §22.2, RFC 7616 §3.3).
        let answered_this_nonce = self.answering.as_ref().is_some_and(|a| {
            a.nc > 0 && a.header == header && a.challenge.nonce == challenge.nonce
        });
        if answered_this_nonce && !challenge.stale {
            return Err(AuthError::Rejected);
        }
        self.challenges_in_a_row += 1;
        if self.challenges_in_a_row > MAX_CHALLENGES_PER_REQUEST {
            return Err(AuthError::TooManyChallenges);
        }
        self.answering = Some(Answering {
            challenge,
            header,
            nc: 0,
        });
        Ok(())
    }

    /// The server accepted or refused a request for reasons other than credentials: the next
    /// challenge starts a fresh count.
    pub fn on_accepted(&mut self) {
        self.challenges_in_a_row = 0;
    }

    /// Drops the cached challenge: the next request goes without credentials.
    pub fn forget(&mut self) {
        self.answering = None;
        self.challenges_in_a_row = 0;
    }

    /// The credentials header `(name, value)` for the next request `method` to `uri`, with a
    /// fresh client nonce `cnonce`; `None` before the first challenge. Counts the nonce use.
    pub fn authorization(
        &mut self,
        method: &str,
        uri: &str,
        cnonce: &str,
    ) -> Option<(&'static str, String)> {
        let answering = self.answering.as_mut()?;
        answering.nc = answering.nc.saturating_add(1);
        let value =
            answering
                .challenge
                .authorize(method, uri, &self.credentials, cnonce, answering.nc);
        Some((answering.header.credentials_header(), value))
    }
}

#[cfg(test)]
mod tests;
