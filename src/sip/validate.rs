//! What the proxy checks before it acts on a message (RFC 3261 §16.3, §8.2; RFC 4475).
//!
//! A request that fails gets a response code (400, 416, 420, 505); a response that fails
//! is dropped. The checks cover every invalid message of RFC 4475 §3.1.2 and the
//! application-layer cases of §3.3 a proxy is concerned with. Values the proxy uses later
//! are returned parsed, so no other module re-parses them.

use super::msg::{is_token, ContentLength, SipMessage, StartLine};
use super::uri::{NameAddr, Uri};
use super::via::Via;

/// Largest CSeq number (RFC 3261 §8.1.1.5: less than 2**31).
const MAX_CSEQ: u64 = (1 << 31) - 1;

/// Why a request is refused, as a SIP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub status: u16,
    pub reason: &'static str,
    /// What exactly was wrong (for logs and the `Warning`-free reason phrase).
    pub detail: String,
    /// Extra headers for the response (e.g. `Unsupported` with 420).
    pub headers: Vec<(&'static str, String)>,
}

impl Reject {
    fn bad(detail: impl Into<String>) -> Reject {
        Reject {
            status: 400,
            reason: "Bad Request",
            detail: detail.into(),
            headers: Vec::new(),
        }
    }
}

/// The parsed facts of a valid message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub vias: Vec<Via>,
    pub from: NameAddr,
    pub to: NameAddr,
    pub call_id: String,
    pub cseq: u32,
    pub cseq_method: String,
    /// `None` when the header is absent (a proxy adds it, RFC 3261 §16.6 step 3).
    pub max_forwards: Option<u8>,
}

impl Facts {
    pub fn top_via(&self) -> &Via {
        // `vias` is never empty: parse_common refuses a message without Via.
        &self.vias[0]
    }
}

fn single<'a>(msg: &'a SipMessage, name: &str) -> Result<&'a str, Reject> {
    let values = msg.header_values(name);
    match values.len() {
        0 => Err(Reject::bad(format!("missing {name}"))),
        1 => Ok(values[0]),
        _ => Err(Reject::bad(format!("more than one {name}"))),
    }
}

fn parse_cseq(value: &str) -> Result<(u32, String), Reject> {
    let mut it = value.split_whitespace();
    let (Some(num), Some(method), None) = (it.next(), it.next(), it.next()) else {
        return Err(Reject::bad("CSeq is not 'number method'"));
    };
    if num.is_empty() || num.len() > 10 || !num.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Reject::bad("CSeq number is not a 32-bit number"));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| Reject::bad("CSeq number is not a number"))?;
    if n > MAX_CSEQ {
        return Err(Reject::bad("CSeq number too large"));
    }
    if !is_token(method) {
        return Err(Reject::bad("CSeq method is not a token"));
    }
    Ok((n as u32, method.to_string()))
}

fn parse_common(msg: &SipMessage) -> Result<Facts, Reject> {
    match msg.content_length() {
        ContentLength::Malformed => return Err(Reject::bad("malformed Content-Length")),
        ContentLength::TooLong { declared, present } => {
            return Err(Reject::bad(format!(
                "Content-Length {declared} but only {present} bytes"
            )))
        }
        _ => {}
    }
    let via_values = msg.header_values("via");
    if via_values.is_empty() {
        return Err(Reject::bad("missing Via"));
    }
    let mut vias = Vec::with_capacity(via_values.len());
    for v in via_values {
        vias.push(Via::parse(v).map_err(|e| Reject::bad(format!("bad Via: {e}")))?);
    }
    let from =
        NameAddr::parse(single(msg, "from")?).map_err(|e| Reject::bad(format!("bad From: {e}")))?;
    let to =
        NameAddr::parse(single(msg, "to")?).map_err(|e| Reject::bad(format!("bad To: {e}")))?;
    let call_id = single(msg, "call-id")?;
    if call_id.is_empty() || call_id.chars().any(char::is_whitespace) {
        return Err(Reject::bad("bad Call-ID"));
    }
    let (cseq, cseq_method) = parse_cseq(single(msg, "cseq")?)?;
    let max_forwards = match msg.count("max-forwards") {
        0 => None,
        1 => {
            let v = msg.header("max-forwards").unwrap_or_default();
            // Leading zeros are allowed (RFC 4475 3.1.1.1 has "0068").
            let digits = v.trim_start_matches('0');
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 3 {
                return Err(Reject::bad("Max-Forwards is not a number 0-255"));
            }
            let n: u16 = if digits.is_empty() {
                0
            } else {
                digits.parse().unwrap_or(u16::MAX)
            };
            Some(u8::try_from(n).map_err(|_| Reject::bad("Max-Forwards above 255"))?)
        }
        _ => return Err(Reject::bad("more than one Max-Forwards")),
    };
    for name in ["contact", "route", "record-route"] {
        for v in msg.header_values(name) {
            if name == "contact" && v == "*" {
                continue;
            }
            NameAddr::parse(v).map_err(|e| Reject::bad(format!("bad {name}: {e}")))?;
        }
    }
    if let Some(date) = msg.header("date") {
        // rfc1123-date ends in "GMT" (RFC 3261 §20.17; RFC 4475 3.1.2.12).
        if !date.trim_end().ends_with("GMT") {
            return Err(Reject::bad("Date is not in GMT"));
        }
    }
    if let Some(exp) = msg.header("expires") {
        if exp.is_empty() || exp.len() > 10 || !exp.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Reject::bad("Expires is not a 32-bit number"));
        }
        exp.parse::<u32>()
            .map_err(|_| Reject::bad("Expires too large"))?;
    }
    Ok(Facts {
        vias,
        from,
        to,
        call_id: call_id.to_string(),
        cseq,
        cseq_method,
        max_forwards,
    })
}

/// Check a request; on success return its parsed facts and its Request-URI.
pub fn check_request(msg: &SipMessage) -> Result<(Facts, Uri), Reject> {
    let StartLine::Request {
        method,
        uri,
        version,
    } = &msg.start
    else {
        return Err(Reject::bad("not a request"));
    };
    if version == super::msg::MALFORMED_REQUEST_LINE {
        return Err(Reject::bad("request line has extra or missing spaces"));
    }
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        if version.len() > 4 && super::msg::starts_with_sip_slash(version) {
            return Err(Reject {
                status: 505,
                reason: "Version Not Supported",
                detail: format!("version {version}"),
                headers: Vec::new(),
            });
        }
        return Err(Reject::bad("bad SIP version"));
    }
    let facts = parse_common(msg)?;
    if facts.cseq_method != *method {
        return Err(Reject::bad("CSeq method does not match the request method"));
    }
    if uri.starts_with('<') {
        return Err(Reject::bad("Request-URI enclosed in <>"));
    }
    let ruri = Uri::parse(uri).map_err(|e| Reject::bad(format!("bad Request-URI: {e}")))?;
    if !matches!(ruri.scheme.as_str(), "sip" | "sips" | "tel") {
        return Err(Reject {
            status: 416,
            reason: "Unsupported URI Scheme",
            detail: format!("scheme {}", ruri.scheme),
            headers: Vec::new(),
        });
    }
    if ruri.headers.is_some() {
        // RFC 3261 §19.1.1 table: headers are not allowed in a Request-URI (RFC 4475 3.1.2.11).
        return Err(Reject::bad("headers in the Request-URI"));
    }
    // A proxy supports no extensions, so any Proxy-Require is refused (RFC 3261 §16.3 step 3;
    // RFC 4475 3.3.5). Require is for the UAS and is not examined here.
    let proxy_require: Vec<&str> = msg
        .header_values("proxy-require")
        .into_iter()
        .filter(|v| !v.is_empty())
        .collect();
    if !proxy_require.is_empty() {
        return Err(Reject {
            status: 420,
            reason: "Bad Extension",
            detail: format!("Proxy-Require: {}", proxy_require.join(", ")),
            headers: vec![("Unsupported", proxy_require.join(", "))],
        });
    }
    Ok((facts, ruri))
}

/// Check a response; `None` means drop it.
pub fn check_response(msg: &SipMessage) -> Option<Facts> {
    let StartLine::Response { version, .. } = &msg.start else {
        return None;
    };
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        return None;
    }
    parse_common(msg).ok()
}
