//! Messages the proxy writes itself: responses (RFC 3261 §8.2.6, §16.7), the ACK for a
//! non-2xx final (§17.1.1.3), CANCEL (§9.1), and the Via it pushes (§16.6 step 8).

use crate::sip::msg::{SipMessage, StartLine};
use crate::sip::via::{Via, MAGIC_COOKIE};
use sha2::{Digest, Sha256};

/// Response skeleton copied from a request: all Via (top one with `received`/`rport` set
/// per RFC 3581), From, To, Call-ID, CSeq. `to_tag` is added to To when it has none and the
/// status is above 100 (§8.2.6.2).
pub fn response_to(
    req: &SipMessage,
    status: u16,
    reason: &str,
    top_via: Option<&str>,
    to_tag: Option<&str>,
) -> SipMessage {
    let mut resp = SipMessage::new(StartLine::Response {
        version: "SIP/2.0".into(),
        status,
        reason: reason.into(),
    });
    let vias = req.header_values("via");
    for (i, v) in vias.iter().enumerate() {
        let value = match (i, top_via) {
            (0, Some(top)) => top,
            _ => v,
        };
        resp.push_header("Via", value.to_string());
    }
    if let Some(from) = req.header("from") {
        resp.push_header("From", from.to_string());
    }
    if let Some(to) = req.header("to") {
        let has_tag = crate::sip::uri::NameAddr::parse(to)
            .map(|n| n.tag().is_some())
            .unwrap_or(true);
        match to_tag {
            Some(tag) if status > 100 && !has_tag => {
                resp.push_header("To", format!("{to};tag={tag}"))
            }
            _ => resp.push_header("To", to.to_string()),
        }
    }
    if let Some(cid) = req.header("call-id") {
        resp.push_header("Call-ID", cid.to_string());
    }
    if let Some(cseq) = req.header("cseq") {
        resp.push_header("CSeq", cseq.to_string());
    }
    resp
}

/// The ACK a client INVITE transaction sends for a non-2xx final response (§17.1.1.3):
/// Request-URI, Call-ID, From, top Via and Route of the INVITE; To of the response;
/// CSeq number of the INVITE with method ACK.
pub fn ack_for(invite: &SipMessage, response: &SipMessage) -> SipMessage {
    let uri = invite.request_uri().unwrap_or("sip:invalid").to_string();
    let mut ack = SipMessage::new(StartLine::Request {
        method: "ACK".into(),
        uri,
        version: "SIP/2.0".into(),
    });
    if let Some(via) = invite.header_values("via").first() {
        ack.push_header("Via", via.to_string());
    }
    ack.push_header("Max-Forwards", "70");
    for name in ["from"] {
        if let Some(v) = invite.header(name) {
            ack.push_header("From", v.to_string());
        }
    }
    if let Some(to) = response.header("to") {
        ack.push_header("To", to.to_string());
    }
    if let Some(cid) = invite.header("call-id") {
        ack.push_header("Call-ID", cid.to_string());
    }
    let num = invite
        .header("cseq")
        .and_then(|c| c.split_whitespace().next())
        .unwrap_or("1");
    ack.push_header("CSeq", format!("{num} ACK"));
    for r in invite.header_lines("route") {
        ack.push_header("Route", r.to_string());
    }
    ack
}

/// CANCEL for a forwarded INVITE (§9.1): same Request-URI, Call-ID, To, From, CSeq number,
/// the same single top Via (so the branch matches), and the INVITE's Route headers.
pub fn cancel_for(invite: &SipMessage) -> SipMessage {
    let uri = invite.request_uri().unwrap_or("sip:invalid").to_string();
    let mut cancel = SipMessage::new(StartLine::Request {
        method: "CANCEL".into(),
        uri,
        version: "SIP/2.0".into(),
    });
    if let Some(via) = invite.header_values("via").first() {
        cancel.push_header("Via", via.to_string());
    }
    cancel.push_header("Max-Forwards", "70");
    for (name, canon) in [("from", "From"), ("to", "To"), ("call-id", "Call-ID")] {
        if let Some(v) = invite.header(name) {
            cancel.push_header(canon, v.to_string());
        }
    }
    let num = invite
        .header("cseq")
        .and_then(|c| c.split_whitespace().next())
        .unwrap_or("1");
    cancel.push_header("CSeq", format!("{num} CANCEL"));
    for r in invite.header_lines("route") {
        cancel.push_header("Route", r.to_string());
    }
    cancel
}

/// The loop-detection part of our branch (§16.6 step 8, §16.3 step 4): a hash of the
/// fields that stay the same when a request comes back to us unchanged. Unlike the RFC's
/// suggestion it leaves out the top Via: after a round trip through the PBX the top Via is
/// the PBX's, so including it would hide exactly the loops we want to see. A spiral (the
/// PBX sends the call back with a new Request-URI) changes the hash and is allowed.
pub fn loop_hash(req: &SipMessage) -> String {
    let mut h = Sha256::new();
    for part in [
        req.request_uri().unwrap_or_default(),
        req.header("from").unwrap_or_default(),
        req.header("to").unwrap_or_default(),
        req.header("call-id").unwrap_or_default(),
        req.header("cseq").unwrap_or_default(),
        req.header("proxy-require").unwrap_or_default(),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let d = h.finalize();
    d[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// A branch for a request we forward: magic cookie, our mark, loop hash, unique counter.
pub fn new_branch(loop_hash: &str, id: u64) -> String {
    format!("{MAGIC_COOKIE}-ss-{loop_hash}-{id:x}")
}

/// Does this Via value name us with a branch carrying `loop_hash`? Then the request has
/// been here before with the same routing fields: a loop (482), not a spiral.
pub fn via_is_our_loop(via: &Via, our_host: &str, our_port: u16, loop_hash: &str) -> bool {
    via.host == our_host
        && via.port.unwrap_or(5060) == our_port
        && via
            .branch()
            .is_some_and(|b| b.starts_with(&format!("{MAGIC_COOKIE}-ss-{loop_hash}-")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:bob@192.0.2.9 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bKabc;rport\r\n\
        Via: SIP/2.0/UDP 192.0.2.7;branch=z9hG4bKdef\r\n\
        Route: <sip:192.0.2.9;lr>\r\n\
        To: <sip:bob@example.com>\r\n\
        From: <sip:alice@example.org>;tag=88\r\n\
        Call-ID: c1\r\nCSeq: 7 INVITE\r\nMax-Forwards: 69\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn response_copies_the_right_headers() {
        let req = SipMessage::parse(INVITE.as_bytes()).unwrap();
        let r = response_to(
            &req,
            486,
            "Busy Here",
            Some("SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bKabc;rport=5062"),
            Some("t1"),
        );
        let r = SipMessage::parse(&r.to_bytes()).unwrap();
        assert_eq!(r.status(), Some(486));
        assert_eq!(r.header_values("via").len(), 2);
        assert!(r.header("via").unwrap().ends_with("rport=5062"));
        assert_eq!(r.header("to"), Some("<sip:bob@example.com>;tag=t1"));
        assert_eq!(r.header("cseq"), Some("7 INVITE"));
        assert!(r.header("route").is_none());
        // 100 Trying never gets a To tag.
        let t = response_to(&req, 100, "Trying", None, Some("t1"));
        assert_eq!(t.header("to"), Some("<sip:bob@example.com>"));
    }

    #[test]
    fn ack_and_cancel_follow_the_rfc() {
        let req = SipMessage::parse(INVITE.as_bytes()).unwrap();
        let resp = response_to(&req, 487, "Request Terminated", None, Some("x"));
        let ack = ack_for(&req, &resp);
        assert_eq!(ack.method(), Some("ACK"));
        assert_eq!(ack.header("cseq"), Some("7 ACK"));
        assert_eq!(ack.header("to"), Some("<sip:bob@example.com>;tag=x"));
        assert_eq!(ack.header_values("via").len(), 1);
        assert_eq!(ack.header("route"), Some("<sip:192.0.2.9;lr>"));
        let c = cancel_for(&req);
        assert_eq!(c.header("cseq"), Some("7 CANCEL"));
        assert_eq!(c.header("to"), Some("<sip:bob@example.com>"));
        assert_eq!(
            c.header("via"),
            Some("SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bKabc;rport")
        );
    }

    #[test]
    fn loop_detection() {
        let req = SipMessage::parse(INVITE.as_bytes()).unwrap();
        let h = loop_hash(&req);
        let ours = Via::parse(&format!(
            "SIP/2.0/UDP 10.0.0.1:5060;branch={}",
            new_branch(&h, 5)
        ))
        .unwrap();
        assert!(via_is_our_loop(&ours, "10.0.0.1", 5060, &h));
        assert!(!via_is_our_loop(&ours, "10.0.0.2", 5060, &h));
        let mut spiral = req.clone();
        spiral.set_request_uri("sip:carol@192.0.2.9");
        assert!(!via_is_our_loop(
            &ours,
            "10.0.0.1",
            5060,
            &loop_hash(&spiral)
        ));
    }
}
