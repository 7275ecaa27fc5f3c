//! SIP messages: framing, start line, headers, body (RFC 3261 §7, §18.3, §25).
//!
//! This is a small framing layer of our own rather than `rsip`: rsip rejects six of the
//! thirteen valid RFC 4475 messages and every extension method, which a proxy must forward
//! (RFC 3261 §16). The parser here is deliberately *lenient at the framing level* (it keeps
//! every header as text, in order, exactly as received apart from line folding) and the
//! checks the proxy relies on live in [`super::validate`]. Typed views of the headers the
//! proxy needs (Via, From/To, CSeq, …) are parsed on demand in [`super::uri`] and
//! [`super::via`].
//!
//! Nothing here panics on network input: every index is checked, every number parsed with
//! overflow detection.

use bytes::Bytes;
use std::fmt::Write as _;

/// Version placeholder for a request line with extra or missing spaces (RFC 4475 3.1.2.8
/// lwsruri, 3.1.2.9 lwsstart, 3.1.2.10 trws): parsed far enough to answer 400.
pub const MALFORMED_REQUEST_LINE: &str = "(malformed request line)";

/// Largest message we accept on any transport (a UDP datagram cannot be larger).
pub const MAX_MESSAGE_BYTES: usize = 65_535;

/// Why bytes are not a SIP message at all (the framing failed). Such input is dropped:
/// without a parsable Via there is nobody to send a 400 to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty message")]
    Empty,
    #[error("message larger than {MAX_MESSAGE_BYTES} bytes")]
    TooLarge,
    #[error("no blank line ends the header section")]
    NoHeaderEnd,
    #[error("header section is not UTF-8")]
    NotUtf8,
    #[error("malformed start line: {0}")]
    StartLine(&'static str),
    #[error("malformed header line {line}")]
    HeaderLine { line: usize },
}

/// The `Content-Length` situation of a parsed message (RFC 3261 §18.3, §20.14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentLength {
    /// No header: over UDP the body is the rest of the datagram.
    Absent,
    /// A valid value that matched (or was shorter than) the bytes present.
    Valid(usize),
    /// Declared more bytes than arrived (RFC 4475 3.1.2.2 clerr): invalid.
    TooLong { declared: usize, present: usize },
    /// Not a number, negative, overlarge, or several different values (RFC 4475 3.1.2.3, 3.3.9).
    Malformed,
}

/// Request or status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request {
        method: String,
        uri: String,
        /// `SIP/2.0` unless the peer sent another version (answered 505 by validation).
        version: String,
    },
    Response {
        version: String,
        status: u16,
        reason: String,
    },
}

/// One header field as received (folded lines joined with one space).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The name as written (compact forms kept, case kept).
    pub name: String,
    /// Canonical lower-case long name (`v` → `via`), used for lookups.
    pub key: String,
    /// The value with surrounding whitespace removed.
    pub value: String,
}

/// A SIP request or response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipMessage {
    pub start: StartLine,
    headers: Vec<Header>,
    body: Bytes,
    content_length: ContentLength,
}

/// Map compact header forms (RFC 3261 §7.3.3 and later RFCs) to long names, lower case.
fn canonical_key(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    let long = match lower.as_str() {
        "v" => "via",
        "f" => "from",
        "t" => "to",
        "i" => "call-id",
        "m" => "contact",
        "l" => "content-length",
        "c" => "content-type",
        "e" => "content-encoding",
        "k" => "supported",
        "s" => "subject",
        "o" => "event",
        "r" => "refer-to",
        "b" => "referred-by",
        "u" => "allow-events",
        "x" => "session-expires",
        "a" => "accept-contact",
        "j" => "reject-contact",
        "d" => "request-disposition",
        "y" => "identity",
        _ => return lower,
    };
    long.to_string()
}

/// RFC 3261 §25.1 `token` characters.
pub fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

/// `SIP/` at the start, case-insensitive, without slicing inside a UTF-8 character.
pub fn starts_with_sip_slash(s: &str) -> bool {
    s.as_bytes()
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
}

pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_token_char)
}

/// Find the end of the header section: the index of the first byte of the body and the
/// index where the header text stops. Accepts CRLF CRLF and, leniently, LF LF.
fn find_header_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'\n' {
            // Line ends at i; is the next line empty?
            let next = i + 1;
            if buf.get(next) == Some(&b'\n') {
                return Some((i, next + 1));
            }
            if buf.get(next) == Some(&b'\r') && buf.get(next + 1) == Some(&b'\n') {
                return Some((i, next + 2));
            }
        }
        i += 1;
    }
    None
}

/// Leading CRLFs before a start line are keep-alives (RFC 3261 §7.5, RFC 5626 §3.5.1).
fn skip_leading_newlines(buf: &[u8]) -> &[u8] {
    let n = buf
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    &buf[n..]
}

/// For TCP: how long is the first message in `buf`? `Ok(None)` = need more bytes;
/// `Ok(Some((skip, len)))` = skip `skip` keep-alive bytes, then a message of `len` bytes.
/// Over a stream, `Content-Length` is mandatory (RFC 3261 §18.3).
pub fn frame_stream(buf: &[u8], max: usize) -> Result<Option<(usize, usize)>, ParseError> {
    let rest = skip_leading_newlines(buf);
    let skip = buf.len() - rest.len();
    let Some((head_end, body_start)) = find_header_end(rest) else {
        if rest.len() > max {
            return Err(ParseError::TooLarge);
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&rest[..head_end]).map_err(|_| ParseError::NotUtf8)?;
    let mut declared: Option<usize> = None;
    for line in head.split('\n').skip(1) {
        let line = line.trim_end_matches('\r');
        if let Some((name, value)) = line.split_once(':') {
            if canonical_key(name.trim()) == "content-length" {
                let v = parse_content_length(value).ok_or(ParseError::HeaderLine { line: 0 })?;
                if declared.is_some_and(|d| d != v) {
                    return Err(ParseError::HeaderLine { line: 0 });
                }
                declared = Some(v);
            }
        }
    }
    let declared = declared.ok_or(ParseError::StartLine("no Content-Length over a stream"))?;
    let total = body_start
        .checked_add(declared)
        .ok_or(ParseError::TooLarge)?;
    if total > max {
        return Err(ParseError::TooLarge);
    }
    if rest.len() < total {
        return Ok(None);
    }
    Ok(Some((skip, total)))
}

fn parse_content_length(value: &str) -> Option<usize> {
    let v = value.trim();
    if v.is_empty() || v.len() > 10 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse::<usize>().ok()
}

fn parse_start_line(line: &str) -> Result<StartLine, ParseError> {
    if starts_with_sip_slash(line) {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase (reason may be empty).
        let mut parts = line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default().to_string();
        let code = parts
            .next()
            .ok_or(ParseError::StartLine("no status code"))?;
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::StartLine("status code is not three digits"));
        }
        let status: u16 = code
            .parse()
            .map_err(|_| ParseError::StartLine("status code"))?;
        if !(100..=699).contains(&status) {
            return Err(ParseError::StartLine("status code out of range"));
        }
        let reason = parts.next().unwrap_or_default().to_string();
        return Ok(StartLine::Response {
            version,
            status,
            reason,
        });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version CRLF: exactly single spaces
    // (RFC 4475 3.1.2.8 lwsruri, 3.1.2.9 lwsstart, 3.1.2.10 trws are invalid).
    let parts: Vec<&str> = line.split(' ').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        // Still answerable if the words are there: keep them, validation answers 400.
        let words: Vec<&str> = line.split_whitespace().collect();
        let version = words.last().copied().unwrap_or_default();
        if words.len() >= 3
            && is_token(words[0])
            && version.len() > 4
            && starts_with_sip_slash(version)
        {
            return Ok(StartLine::Request {
                method: words[0].to_string(),
                uri: words[1..words.len() - 1].join(" "),
                version: MALFORMED_REQUEST_LINE.to_string(),
            });
        }
        return Err(ParseError::StartLine(
            "request line is not METHOD SP URI SP VERSION",
        ));
    }
    if !is_token(parts[0]) {
        return Err(ParseError::StartLine("method is not a token"));
    }
    Ok(StartLine::Request {
        method: parts[0].to_string(),
        uri: parts[1].to_string(),
        version: parts[2].to_string(),
    })
}

impl SipMessage {
    /// Parse one message from a datagram (or a frame cut by [`frame_stream`]).
    /// Trailing bytes beyond `Content-Length` are ignored (RFC 4475 3.1.1.8 dblreq).
    pub fn parse(buf: &[u8]) -> Result<SipMessage, ParseError> {
        if buf.len() > MAX_MESSAGE_BYTES {
            return Err(ParseError::TooLarge);
        }
        let buf = skip_leading_newlines(buf);
        if buf.is_empty() {
            return Err(ParseError::Empty);
        }
        // A datagram whose headers run to its end without the blank line is read as headers
        // only, so it can still be judged (and answered 400) rather than dropped unheard.
        let (head_end, body_start) = find_header_end(buf).unwrap_or_else(|| {
            let end = buf.len()
                - buf
                    .iter()
                    .rev()
                    .take_while(|b| **b == b'\r' || **b == b'\n')
                    .count();
            (end, buf.len())
        });
        let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| ParseError::NotUtf8)?;
        let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
        let start = parse_start_line(lines.next().unwrap_or_default())?;

        let mut headers: Vec<Header> = Vec::with_capacity(16);
        for (i, line) in lines.enumerate() {
            if line.starts_with(' ') || line.starts_with('\t') {
                // Folded continuation (RFC 3261 §7.3.1): LWS → one SP.
                let last = headers
                    .last_mut()
                    .ok_or(ParseError::HeaderLine { line: i + 2 })?;
                let cont = line.trim();
                if !cont.is_empty() {
                    if !last.value.is_empty() {
                        last.value.push(' ');
                    }
                    last.value.push_str(cont);
                }
                continue;
            }
            let (name, value) = line
                .split_once(':')
                .ok_or(ParseError::HeaderLine { line: i + 2 })?;
            let name = name.trim_end_matches([' ', '\t']);
            if !is_token(name) {
                return Err(ParseError::HeaderLine { line: i + 2 });
            }
            headers.push(Header {
                name: name.to_string(),
                key: canonical_key(name),
                value: value.trim().to_string(),
            });
        }

        let available = &buf[body_start..];
        let mut content_length = ContentLength::Absent;
        for h in headers.iter().filter(|h| h.key == "content-length") {
            content_length = match (content_length, parse_content_length(&h.value)) {
                (_, None) => ContentLength::Malformed,
                (ContentLength::Absent, Some(n)) => ContentLength::Valid(n),
                (ContentLength::Valid(a), Some(b)) if a == b => ContentLength::Valid(a),
                _ => ContentLength::Malformed,
            };
            if content_length == ContentLength::Malformed {
                break;
            }
        }
        let body = match content_length {
            ContentLength::Valid(n) if n > available.len() => {
                content_length = ContentLength::TooLong {
                    declared: n,
                    present: available.len(),
                };
                available
            }
            ContentLength::Valid(n) => &available[..n],
            _ => available,
        };
        Ok(SipMessage {
            start,
            headers,
            body: Bytes::copy_from_slice(body),
            content_length,
        })
    }

    /// A new message with no headers (used to build responses and ACKs).
    pub fn new(start: StartLine) -> SipMessage {
        SipMessage {
            start,
            headers: Vec::new(),
            body: Bytes::new(),
            content_length: ContentLength::Valid(0),
        }
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The request method, `None` for responses.
    pub fn method(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code, `None` for requests.
    pub fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { status, .. } => Some(*status),
            StartLine::Request { .. } => None,
        }
    }

    pub fn request_uri(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    pub fn set_request_uri(&mut self, new_uri: &str) {
        if let StartLine::Request { uri, .. } = &mut self.start {
            *uri = new_uri.to_string();
        }
    }

    pub fn content_length(&self) -> ContentLength {
        self.content_length
    }

    pub fn body(&self) -> &Bytes {
        &self.body
    }

    pub fn set_body(&mut self, body: Bytes) {
        self.content_length = ContentLength::Valid(body.len());
        self.body = body;
    }

    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// First value of a header by long or compact name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let key = canonical_key(name);
        self.headers
            .iter()
            .find(|h| h.key == key)
            .map(|h| h.value.as_str())
    }

    /// Every header line with this name, in order.
    pub fn header_lines<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + 'a {
        let key = canonical_key(name);
        self.headers
            .iter()
            .filter(move |h| h.key == key)
            .map(|h| h.value.as_str())
    }

    /// Every comma-separated value of a list header (Via, Route, Contact, …) across all its
    /// lines, in order (commas inside quotes or `<>` do not split).
    pub fn header_values<'a>(&'a self, name: &str) -> Vec<&'a str> {
        self.header_lines(name).flat_map(split_list).collect()
    }

    pub fn count(&self, name: &str) -> usize {
        let key = canonical_key(name);
        self.headers.iter().filter(|h| h.key == key).count()
    }

    /// Append a header at the end.
    pub fn push_header(&mut self, name: &str, value: impl Into<String>) {
        self.headers.push(Header {
            name: name.to_string(),
            key: canonical_key(name),
            value: value.into(),
        });
    }

    /// Push a header on top of its kind (Via, Record-Route): before the first header of the
    /// same name, or at the very top if there is none. Same-name lines stay contiguous, so
    /// peers that copy "the Via lines" as a block see all of them.
    pub fn insert_header_first(&mut self, name: &str, value: impl Into<String>) {
        let key = canonical_key(name);
        let pos = self.headers.iter().position(|h| h.key == key).unwrap_or(0);
        self.headers.insert(
            pos,
            Header {
                name: name.to_string(),
                key,
                value: value.into(),
            },
        );
    }

    /// Replace every line of a header with one value (or add it).
    pub fn set_header(&mut self, name: &str, value: impl Into<String>) {
        let key = canonical_key(name);
        let value = value.into();
        match self.headers.iter().position(|h| h.key == key) {
            Some(pos) => {
                self.headers[pos].value = value;
                let mut idx = 0;
                self.headers.retain(|h| {
                    let keep = idx <= pos || h.key != key;
                    idx += 1;
                    keep
                });
            }
            None => self.push_header(name, value),
        }
    }

    pub fn remove_header(&mut self, name: &str) {
        let key = canonical_key(name);
        self.headers.retain(|h| h.key != key);
    }

    /// Remove the first value of a list header (e.g. our own Via, a Route naming us):
    /// either the whole first line or its first comma-separated element. Returns it.
    pub fn remove_first_value(&mut self, name: &str) -> Option<String> {
        let key = canonical_key(name);
        let pos = self.headers.iter().position(|h| h.key == key)?;
        let values = split_list(&self.headers[pos].value);
        let first = values.first()?.to_string();
        if values.len() <= 1 {
            self.headers.remove(pos);
        } else {
            let rest = values[1..].join(", ");
            self.headers[pos].value = rest;
        }
        Some(first)
    }

    /// Replace the first value of a list header.
    pub fn replace_first_value(&mut self, name: &str, new_value: &str) -> bool {
        let key = canonical_key(name);
        let Some(pos) = self.headers.iter().position(|h| h.key == key) else {
            return false;
        };
        let values = split_list(&self.headers[pos].value);
        let mut out = new_value.to_string();
        for v in values.iter().skip(1) {
            out.push_str(", ");
            out.push_str(v);
        }
        self.headers[pos].value = out;
        true
    }

    /// Serialize. `Content-Length` is always written, and always right.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = String::with_capacity(512 + self.headers.len() * 40);
        match &self.start {
            StartLine::Request {
                method,
                uri,
                version,
            } => {
                let _ = write!(out, "{method} {uri} {version}\r\n");
            }
            StartLine::Response {
                version,
                status,
                reason,
            } => {
                let _ = write!(out, "{version} {status} {reason}\r\n");
            }
        }
        for h in self.headers.iter().filter(|h| h.key != "content-length") {
            let _ = write!(out, "{}: {}\r\n", h.name, h.value);
        }
        let _ = write!(out, "Content-Length: {}\r\n\r\n", self.body.len());
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        // Transactions keep these bytes for up to 64*T1: do not keep spare capacity too.
        bytes.shrink_to_fit();
        Bytes::from(bytes)
    }
}

/// Split a header value at top-level commas (not inside `"…"` or `<…>`), trimming each part.
/// Empty parts are kept so validation can see `a,,b`.
pub fn split_list(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut in_quotes = false;
    let mut escaped = false;
    let mut angle = 0u32;
    let mut start = 0;
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
            '<' => angle += 1,
            '>' => angle = angle.saturating_sub(1),
            ',' if angle == 0 => {
                parts.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(value[start..].trim());
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n\
        Max-Forwards: 70\r\n\
        To: Bob <sip:bob@example.com>\r\n\
        From: Alice <sip:alice@example.org>;tag=1928301774\r\n\
        Call-ID: a84b4c76e66710@pc33.example.org\r\n\
        CSeq: 314159 INVITE\r\n\
        Content-Length: 4\r\n\r\nv=0\n";

    #[test]
    fn parses_a_request() {
        let m = SipMessage::parse(INVITE.as_bytes()).unwrap();
        assert_eq!(m.method(), Some("INVITE"));
        assert_eq!(m.request_uri(), Some("sip:bob@example.com"));
        assert_eq!(m.header("CALL-ID"), Some("a84b4c76e66710@pc33.example.org"));
        assert_eq!(m.header("i"), m.header("Call-ID"));
        assert_eq!(m.body().as_ref(), b"v=0\n");
        assert_eq!(m.content_length(), ContentLength::Valid(4));
    }

    #[test]
    fn round_trips() {
        let m = SipMessage::parse(INVITE.as_bytes()).unwrap();
        let again = SipMessage::parse(&m.to_bytes()).unwrap();
        assert_eq!(m, again);
    }

    #[test]
    fn folding_and_compact_forms() {
        let raw =
            "OPTIONS sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP\r\n  h;branch=z9hG4bK1\r\nl: 0\r\n\r\n";
        let m = SipMessage::parse(raw.as_bytes()).unwrap();
        assert_eq!(m.header("via"), Some("SIP/2.0/UDP h;branch=z9hG4bK1"));
        assert_eq!(m.content_length(), ContentLength::Valid(0));
    }

    #[test]
    fn bare_lf_and_leading_crlf() {
        let raw = "\r\n\r\nSIP/2.0 200 OK\nVia: SIP/2.0/UDP h\nContent-Length: 0\n\n";
        let m = SipMessage::parse(raw.as_bytes()).unwrap();
        assert_eq!(m.status(), Some(200));
    }

    #[test]
    fn content_length_cases() {
        let base = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n";
        let m =
            SipMessage::parse(format!("{base}Content-Length: 10\r\n\r\nabc").as_bytes()).unwrap();
        assert_eq!(
            m.content_length(),
            ContentLength::TooLong {
                declared: 10,
                present: 3
            }
        );
        let m = SipMessage::parse(format!("{base}Content-Length: -3\r\n\r\n").as_bytes()).unwrap();
        assert_eq!(m.content_length(), ContentLength::Malformed);
        let m = SipMessage::parse(format!("{base}Content-Length: 1\r\nl: 2\r\n\r\nab").as_bytes())
            .unwrap();
        assert_eq!(m.content_length(), ContentLength::Malformed);
        let m =
            SipMessage::parse(format!("{base}Content-Length: 2\r\n\r\nabcdef").as_bytes()).unwrap();
        assert_eq!(m.body().as_ref(), b"ab");
    }

    #[test]
    fn start_line_errors() {
        for spaced in [
            "INVITE  sip:a@b SIP/2.0\r\n\r\n",
            "INVITE sip:a@b SIP/2.0 \r\n\r\n",
            "INVITE sip:a@b; lr SIP/2.0\r\n\r\n",
        ] {
            let m = SipMessage::parse(spaced.as_bytes()).unwrap();
            assert!(
                matches!(&m.start, StartLine::Request { version, .. } if version == MALFORMED_REQUEST_LINE),
                "{spaced:?}"
            );
        }
        for bad in [
            "INVITE sip:a@b\r\n\r\n",
            "SIP/2.0 4294967301 Big\r\n\r\n",
            "SIP/2.0 20 OK\r\n\r\n",
            "IN<VITE sip:a@b SIP/2.0\r\n\r\n",
        ] {
            assert!(SipMessage::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert_eq!(SipMessage::parse(b""), Err(ParseError::Empty));
        // Found by the fuzzer: multi-byte characters across byte 4 must not panic.
        for odd in [
            "abc\u{e9}\n\n",
            "A b c SIP\u{e9}/2.0\n\n",
            "A b SIP\u{39f}/2.0\n\n",
        ] {
            if let Ok(m) = SipMessage::parse(odd.as_bytes()) {
                assert!(crate::sip::validate::check_request(&m).is_err());
            }
        }
        // No blank line at the end of a datagram: headers only.
        let m = SipMessage::parse(b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\n").unwrap();
        assert_eq!(m.header("via"), Some("x"));
        assert!(m.body().is_empty());
    }

    #[test]
    fn list_values_and_editing() {
        let raw = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=1, SIP/2.0/UDP b;branch=2\r\nVia: SIP/2.0/UDP c\r\nContact: \"x, y\" <sip:a@b>\r\n\r\n";
        let mut m = SipMessage::parse(raw.as_bytes()).unwrap();
        assert_eq!(m.header_values("via").len(), 3);
        assert_eq!(m.header_values("contact"), vec!["\"x, y\" <sip:a@b>"]);
        assert_eq!(
            m.remove_first_value("via").as_deref(),
            Some("SIP/2.0/UDP a;branch=1")
        );
        assert_eq!(
            m.header_values("via"),
            vec!["SIP/2.0/UDP b;branch=2", "SIP/2.0/UDP c"]
        );
        m.insert_header_first("Via", "SIP/2.0/UDP me;branch=z9hG4bKx");
        assert_eq!(m.header("via"), Some("SIP/2.0/UDP me;branch=z9hG4bKx"));
        m.set_header("Max-Forwards", "69");
        assert_eq!(m.header("max-forwards"), Some("69"));
    }

    #[test]
    fn stream_framing() {
        let msg = INVITE.as_bytes();
        let mut buf = b"\r\n\r\n".to_vec();
        buf.extend_from_slice(msg);
        buf.extend_from_slice(&msg[..20]);
        let (skip, len) = frame_stream(&buf, MAX_MESSAGE_BYTES).unwrap().unwrap();
        assert_eq!(skip, 4);
        assert_eq!(len, msg.len());
        assert_eq!(
            frame_stream(&msg[..msg.len() - 1], MAX_MESSAGE_BYTES),
            Ok(None)
        );
        assert!(frame_stream(b"OPTIONS sip:a SIP/2.0\r\nVia: x\r\n\r\n", 1000).is_err());
        assert_eq!(frame_stream(&[b'A'; 2000], 1000), Err(ParseError::TooLarge));
    }
}
