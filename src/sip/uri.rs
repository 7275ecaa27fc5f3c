//! SIP URIs and name-addr values (RFC 3261 §19.1, §20.10, §25.1).
//!
//! Parsed on demand from header text. Strict where RFC 4475 names an invalid form (spaces
//! inside `<>`, an unterminated quote, non-token display names, an addr-spec carrying `?`
//! headers outside `<>`), lenient elsewhere: unknown schemes are kept opaque so the proxy can
//! answer 416 for a Request-URI and forward them untouched in other headers.

use super::msg::{is_token, is_token_char};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    #[error("no scheme")]
    NoScheme,
    #[error("whitespace inside a URI")]
    Whitespace,
    #[error("bad host")]
    Host,
    #[error("bad port")]
    Port,
    #[error("bad parameter")]
    Param,
    #[error("unterminated quoted string")]
    Quote,
    #[error("display name is neither a token list nor a quoted string")]
    DisplayName,
    #[error("missing '>'")]
    Angle,
    #[error("addr-spec with headers or commas must be enclosed in <>")]
    AddrSpec,
}

/// A parsed URI. `sip`/`sips` are split into parts; other schemes keep `opaque`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    /// Lower-case scheme.
    pub scheme: String,
    /// The user part as written (may contain %-escapes); `None` if absent.
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    /// `;name[=value]` URI parameters, names lower-cased.
    pub params: Vec<(String, Option<String>)>,
    /// The `?headers` part, if any.
    pub headers: Option<String>,
    /// Everything after `scheme:` for schemes we do not take apart (tel, http, …).
    pub opaque: Option<String>,
}

impl Uri {
    pub fn is_sip(&self) -> bool {
        self.scheme == "sip" || self.scheme == "sips"
    }

    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref())
    }

    /// The user part with %-escapes decoded (lossy for invalid UTF-8).
    pub fn user_decoded(&self) -> Option<String> {
        self.user.as_deref().map(percent_decode)
    }

    /// For `tel:` URIs the number, for SIP URIs the decoded user part.
    pub fn number_or_user(&self) -> Option<String> {
        if self.is_sip() {
            return self.user_decoded();
        }
        if self.scheme == "tel" {
            let o = self.opaque.as_deref()?;
            return Some(o.split(';').next().unwrap_or(o).to_string());
        }
        None
    }

    pub fn parse(s: &str) -> Result<Uri, UriError> {
        if s.chars().any(|c| c.is_whitespace()) {
            return Err(UriError::Whitespace);
        }
        let (scheme, rest) = s.split_once(':').ok_or(UriError::NoScheme)?;
        if scheme.is_empty()
            || !scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            || !scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        {
            return Err(UriError::NoScheme);
        }
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "sip" && scheme != "sips" {
            return Ok(Uri {
                scheme,
                user: None,
                host: String::new(),
                port: None,
                params: Vec::new(),
                headers: None,
                opaque: Some(rest.to_string()),
            });
        }
        // userinfo ends at the last '@' (the user part may hold ';', '?', ',' — RFC 4475
        // 3.1.1.2 intmeth, 3.1.1.9 semiuri).
        let (user, hostpart) = match rest.rfind('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let (hostpart, headers) = match hostpart.split_once('?') {
            Some((h, q)) => (h, Some(q.to_string())),
            None => (hostpart, None),
        };
        let mut pieces = hostpart.split(';');
        let hostport = pieces.next().unwrap_or_default();
        let (host, port) = split_host_port(hostport)?;
        let mut params = Vec::new();
        for p in pieces {
            params.push(parse_param(p)?);
        }
        let user = match user {
            Some(u) => {
                // user:password — keep the user only.
                let u = u.split(':').next().unwrap_or(u);
                if u.is_empty() {
                    None
                } else {
                    Some(u.to_string())
                }
            }
            None => None,
        };
        Ok(Uri {
            scheme,
            user,
            host,
            port,
            params,
            headers,
            opaque: None,
        })
    }
}

/// `host[:port]` with IPv6 references in brackets. Host is lower-cased.
pub fn split_host_port(s: &str) -> Result<(String, Option<u16>), UriError> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']').ok_or(UriError::Host)?;
        let host = &rest[..end];
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(UriError::Host);
        }
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(UriError::Host),
        };
        (format!("[{host}]"), port)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (s.to_string(), None),
        }
    };
    if host.is_empty()
        || !host.starts_with('[')
            && !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err(UriError::Host);
    }
    let port = match port {
        Some(p) => {
            if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(UriError::Port);
            }
            Some(p.parse::<u16>().map_err(|_| UriError::Port)?)
        }
        None => None,
    };
    Ok((host.to_ascii_lowercase(), port))
}

/// One `name[=value]` parameter (whitespace around `=` tolerated, as folded headers have it).
pub fn parse_param(p: &str) -> Result<(String, Option<String>), UriError> {
    let (name, value) = match p.split_once('=') {
        Some((n, v)) => (n.trim(), Some(v.trim())),
        None => (p.trim(), None),
    };
    if name.is_empty()
        || !name
            .chars()
            .all(|c| is_token_char(c) || c == '[' || c == ']')
    {
        return Err(UriError::Param);
    }
    if let Some(v) = value {
        let quoted = v.len() >= 2 && v.starts_with('"') && v.ends_with('"');
        if v.is_empty() || (!quoted && !v.chars().all(is_param_value_char)) {
            return Err(UriError::Param);
        }
    }
    Ok((name.to_ascii_lowercase(), value.map(str::to_string)))
}

fn is_param_value_char(c: char) -> bool {
    is_token_char(c) || "[]:/&+$@".contains(c) || !c.is_ascii()
}

pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `[display-name] <uri> *(;param)` or `addr-spec *(;param)` (From, To, Contact, Route,
/// P-Asserted-Identity, Remote-Party-ID …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name, unquoted and unescaped.
    pub display: Option<String>,
    pub uri: Uri,
    /// The URI text as written.
    pub uri_text: String,
    /// Header parameters after the address (`tag`, `privacy`, `lr`…), names lower-cased.
    pub params: Vec<(String, Option<String>)>,
}

impl NameAddr {
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref())
    }

    pub fn tag(&self) -> Option<&str> {
        self.param("tag").flatten()
    }

    pub fn parse(value: &str) -> Result<NameAddr, UriError> {
        let value = value.trim();
        // Find '<' outside quotes.
        let mut in_quotes = false;
        let mut escaped = false;
        let mut lt = None;
        for (i, c) in value.char_indices() {
            if in_quotes {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    in_quotes = false;
                }
                continue;
            }
            match c {
                '"' => in_quotes = true,
                '<' => {
                    lt = Some(i);
                    break;
                }
                _ => {}
            }
        }
        if in_quotes {
            return Err(UriError::Quote);
        }
        match lt {
            Some(lt) => {
                let display = parse_display_name(value[..lt].trim())?;
                let rest = &value[lt + 1..];
                let gt = rest.find('>').ok_or(UriError::Angle)?;
                let uri_text = &rest[..gt];
                let uri = Uri::parse(uri_text)?;
                let params = parse_header_params(&rest[gt + 1..])?;
                Ok(NameAddr {
                    display,
                    uri,
                    uri_text: uri_text.to_string(),
                    params,
                })
            }
            None => {
                // addr-spec: parameters after the first ';' belong to the header, so the
                // URI cannot carry its own; '?' or ',' make it invalid (RFC 4475 3.1.2.13).
                let (uri_text, params) = match value.split_once(';') {
                    Some((u, p)) => (u.trim(), parse_header_params(&format!(";{p}"))?),
                    None => (value, Vec::new()),
                };
                if uri_text.contains('?') || uri_text.contains(',') || uri_text.contains('"') {
                    return Err(UriError::AddrSpec);
                }
                let uri = Uri::parse(uri_text)?;
                Ok(NameAddr {
                    display: None,
                    uri,
                    uri_text: uri_text.to_string(),
                    params,
                })
            }
        }
    }
}

/// `*(;param)` after a name-addr. Empty parameters (`;;`) are invalid (RFC 4475 3.1.2.1).
fn parse_header_params(s: &str) -> Result<Vec<(String, Option<String>)>, UriError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(Vec::new());
    }
    let s = s.strip_prefix(';').ok_or(UriError::Param)?;
    let mut out = Vec::new();
    for p in split_params(s) {
        out.push(parse_param(p)?);
    }
    Ok(out)
}

/// Split at ';' outside quotes.
fn split_params(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut in_quotes = false;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            ';' if !in_quotes => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// `display-name = *(token LWS) / quoted-string` (RFC 3261 §25.1).
fn parse_display_name(s: &str) -> Result<Option<String>, UriError> {
    if s.is_empty() {
        return Ok(None);
    }
    if let Some(inner) = s.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = inner.chars();
        loop {
            match chars.next() {
                None => return Err(UriError::Quote),
                Some('\\') => match chars.next() {
                    Some(c) => out.push(c),
                    None => return Err(UriError::Quote),
                },
                Some('"') => break,
                Some(c) => out.push(c),
            }
        }
        if !chars.as_str().trim().is_empty() {
            return Err(UriError::DisplayName);
        }
        return Ok(Some(out));
    }
    if s.split_whitespace().all(is_token) {
        return Ok(Some(s.split_whitespace().collect::<Vec<_>>().join(" ")));
    }
    Err(UriError::DisplayName)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_uris() {
        let u =
            Uri::parse("sip:alice:secret@Example.COM:5070;transport=tcp;lr?subject=hi").unwrap();
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.host, "example.com");
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.param("transport"), Some(Some("tcp")));
        assert_eq!(u.param("lr"), Some(None));
        assert_eq!(u.headers.as_deref(), Some("subject=hi"));
        let u = Uri::parse("sip:[2001:db8::1]:5060").unwrap();
        assert_eq!(u.host, "[2001:db8::1]");
        assert_eq!(u.port, Some(5060));
        let u = Uri::parse("sip:user;par=u%40example.net@example.com").unwrap();
        assert_eq!(u.user_decoded().as_deref(), Some("user;par=u@example.net"));
        assert_eq!(u.host, "example.com");
        let t = Uri::parse("tel:+1-201-555-0123;phone-context=x").unwrap();
        assert_eq!(t.number_or_user().as_deref(), Some("+1-201-555-0123"));
    }

    #[test]
    fn bad_uris() {
        for bad in [
            "sip:a@b c",
            "nocolon",
            "sip:a@",
            "sip:a@host:99999",
            "sip:a@host:x",
            "sip:a@[zz]",
            "sip:a@ho_st",
            "1sip:a@b",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn name_addrs() {
        let n =
            NameAddr::parse("\"J Rosenberg \\\\\\\"\"  <sip:jdrosen@example.com> ;  tag = 98asjd8")
                .unwrap();
        assert_eq!(n.display.as_deref(), Some("J Rosenberg \\\""));
        assert_eq!(n.tag(), Some("98asjd8"));
        let n = NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(n.display.as_deref(), Some("caller"));
        let n = NameAddr::parse("sip:user@example.com;tag=1").unwrap();
        assert_eq!(n.uri.user.as_deref(), Some("user"));
        assert_eq!(n.tag(), Some("1"));
        assert!(n.uri.params.is_empty());
        let n = NameAddr::parse("<sip:a@b;lr>").unwrap();
        assert_eq!(n.uri.param("lr"), Some(None));
    }

    #[test]
    fn bad_name_addrs() {
        for bad in [
            "\"Bell, Alexander <sip:a@b>;tag=1",
            "Bell, Alexander <sip:a@b>",
            "< sip:t.watson@example.org >",
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            "\"Joe\" <sip:joe@example.org>;;;;",
            "<sip:a@b",
        ] {
            assert!(NameAddr::parse(bad).is_err(), "{bad}");
        }
    }
}
