//! One leg's SIP dialog (RFC 3261 §12): identifiers, sequence numbers, route set, and the
//! in-dialog requests and responses built from them.
//!
//! Where a leg's requests go is fixed when the leg is created: the caller side answers to
//! the address the INVITE came from, the callee side is always the configured upstream.
//! The route set and remote target are still honoured in the message (Route headers and
//! Request-URI, §12.2.1.1), so the peer can route, but scamscreen never sends to an address
//! a peer names: it cannot be turned into a relay.

use crate::sip::msg::{SipMessage, StartLine};
use crate::sip::proxy::Peer;
use crate::sip::uri::NameAddr;

/// Dialog state of one leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    pub call_id: String,
    /// Our URI and tag (From of our requests).
    pub local: String,
    pub local_tag: String,
    /// The peer's URI and tag (To of our requests); the tag is empty until known.
    pub remote: String,
    pub remote_tag: String,
    /// Last CSeq number we used, and the last one the peer used.
    pub local_cseq: u32,
    pub remote_cseq: u32,
    /// The peer's Contact (Request-URI of our in-dialog requests).
    pub remote_target: String,
    /// Route headers for our in-dialog requests, in order.
    pub route_set: Vec<String>,
    /// Where our messages for this leg are sent.
    pub peer: Peer,
    /// Our Contact.
    pub contact: String,
    /// Our Via sent-by (`host:port`) and transport name for Via.
    pub via_host: String,
}

fn uri_of(value: &str) -> String {
    NameAddr::parse(value)
        .map(|n| format!("<{}>", n.uri_text))
        .unwrap_or_else(|_| value.to_string())
}

impl Dialog {
    /// The UAS side of a dialog created by an INVITE we answer (§12.1.1).
    pub fn from_invite(
        invite: &SipMessage,
        local_tag: &str,
        peer: Peer,
        contact: &str,
        via_host: &str,
    ) -> Dialog {
        let from = invite.header("from").unwrap_or_default();
        let to = invite.header("to").unwrap_or_default();
        let remote_tag = NameAddr::parse(from)
            .ok()
            .and_then(|n| n.tag().map(str::to_string))
            .unwrap_or_default();
        let remote_target = invite
            .header_values("contact")
            .first()
            .and_then(|c| NameAddr::parse(c).ok())
            .map(|n| n.uri_text)
            .unwrap_or_else(|| invite.request_uri().unwrap_or_default().to_string());
        let remote_cseq = invite
            .header("cseq")
            .and_then(|c| c.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        Dialog {
            call_id: invite.header("call-id").unwrap_or_default().to_string(),
            local: uri_of(to),
            local_tag: local_tag.to_string(),
            remote: uri_of(from),
            remote_tag,
            local_cseq: 0,
            remote_cseq,
            remote_target,
            route_set: invite
                .header_values("record-route")
                .iter()
                .map(|s| s.to_string())
                .collect(),
            peer,
            contact: contact.to_string(),
            via_host: via_host.to_string(),
        }
    }

    /// The UAC side before the answer: we send the INVITE (§12.1.2 once answered).
    #[allow(clippy::too_many_arguments)]
    pub fn new_uac(
        call_id: &str,
        local: &str,
        local_tag: &str,
        remote: &str,
        request_uri: &str,
        peer: Peer,
        contact: &str,
        via_host: &str,
    ) -> Dialog {
        Dialog {
            call_id: call_id.to_string(),
            local: local.to_string(),
            local_tag: local_tag.to_string(),
            remote: remote.to_string(),
            remote_tag: String::new(),
            local_cseq: 0,
            remote_cseq: 0,
            remote_target: request_uri.to_string(),
            route_set: Vec::new(),
            peer,
            contact: contact.to_string(),
            via_host: via_host.to_string(),
        }
    }

    /// Complete a UAC dialog from a 2xx (or reliable 1xx) to our INVITE (§12.1.2): remote tag,
    /// remote target from Contact, route set from Record-Route in reverse.
    pub fn confirm_from_response(&mut self, response: &SipMessage) {
        if let Some(tag) = response
            .header("to")
            .and_then(|t| NameAddr::parse(t).ok())
            .and_then(|n| n.tag().map(str::to_string))
        {
            self.remote_tag = tag;
        }
        if let Some(target) = response
            .header_values("contact")
            .first()
            .and_then(|c| NameAddr::parse(c).ok())
        {
            self.remote_target = target.uri_text;
        }
        let mut rr: Vec<String> = response
            .header_values("record-route")
            .iter()
            .map(|s| s.to_string())
            .collect();
        rr.reverse();
        self.route_set = rr;
    }

    fn our_from(&self) -> String {
        format!("{};tag={}", self.local, self.local_tag)
    }

    fn their_to(&self) -> String {
        if self.remote_tag.is_empty() {
            self.remote.clone()
        } else {
            format!("{};tag={}", self.remote, self.remote_tag)
        }
    }

    /// A request in this dialog (§12.2.1.1). `cseq` `None` takes the next local number.
    pub fn request(&mut self, method: &str, branch: &str, cseq: Option<u32>) -> SipMessage {
        let cseq = match cseq {
            Some(n) => n,
            None => {
                self.local_cseq += 1;
                self.local_cseq
            }
        };
        let mut m = SipMessage::new(StartLine::Request {
            method: method.to_string(),
            uri: self.remote_target.clone(),
            version: "SIP/2.0".into(),
        });
        m.push_header(
            "Via",
            format!(
                "SIP/2.0/{} {};branch={branch};rport",
                self.peer.transport.via_name(),
                self.via_host
            ),
        );
        m.push_header("Max-Forwards", "70");
        for r in &self.route_set {
            m.push_header("Route", r.clone());
        }
        m.push_header("From", self.our_from());
        m.push_header("To", self.their_to());
        m.push_header("Call-ID", self.call_id.clone());
        m.push_header("CSeq", format!("{cseq} {method}"));
        if method == "INVITE" || method == "UPDATE" {
            m.push_header("Contact", self.contact.clone());
        }
        m
    }

    /// A response to a request the peer sent in (or to create) this dialog: Via, From, To
    /// (with our tag), Call-ID and CSeq copied (§8.2.6.2), Contact for dialog-creating 2xx.
    pub fn response(&self, request: &SipMessage, status: u16, reason: &str) -> SipMessage {
        let mut r = SipMessage::new(StartLine::Response {
            version: "SIP/2.0".into(),
            status,
            reason: reason.into(),
        });
        for v in request.header_values("via") {
            r.push_header("Via", v.to_string());
        }
        if let Some(f) = request.header("from") {
            r.push_header("From", f.to_string());
        }
        if let Some(t) = request.header("to") {
            let has_tag = NameAddr::parse(t).is_ok_and(|n| n.tag().is_some());
            if has_tag || status == 100 {
                r.push_header("To", t.to_string());
            } else {
                r.push_header("To", format!("{t};tag={}", self.local_tag));
            }
        }
        if let Some(c) = request.header("call-id") {
            r.push_header("Call-ID", c.to_string());
        }
        if let Some(c) = request.header("cseq") {
            r.push_header("CSeq", c.to_string());
        }
        if request.method() == Some("INVITE") && (200..300).contains(&status) {
            for rr in request.header_values("record-route") {
                r.push_header("Record-Route", rr.to_string());
            }
            r.push_header("Contact", self.contact.clone());
        }
        r
    }

    /// Does an incoming request belong to this dialog (Call-ID and tags, §12.2.2)?
    pub fn matches_request(&self, req: &SipMessage) -> bool {
        let to_tag = req
            .header("to")
            .and_then(|t| NameAddr::parse(t).ok())
            .and_then(|n| n.tag().map(str::to_string));
        let from_tag = req
            .header("from")
            .and_then(|t| NameAddr::parse(t).ok())
            .and_then(|n| n.tag().map(str::to_string));
        req.header("call-id") == Some(self.call_id.as_str())
            && to_tag.as_deref() == Some(self.local_tag.as_str())
            && from_tag.as_deref().unwrap_or_default() == self.remote_tag
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:100@pbx SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKa\r\n\
        Record-Route: <sip:192.0.2.5;lr>\r\n\
        From: \"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=caller1\r\n\
        To: <sip:100@pbx>\r\nCall-ID: c1\r\nCSeq: 7 INVITE\r\n\
        Contact: <sip:trunk@192.0.2.10:5060>\r\nContent-Length: 0\r\n\r\n";

    fn peer() -> Peer {
        Peer::udp("192.0.2.10:5060".parse().unwrap())
    }

    #[test]
    fn uas_dialog_answers_and_hangs_up_per_rfc() {
        let inv = SipMessage::parse(INVITE.as_bytes()).unwrap();
        let mut d = Dialog::from_invite(
            &inv,
            "ss1",
            peer(),
            "<sip:ss@192.0.2.1:5060>",
            "192.0.2.1:5060",
        );
        let ok = d.response(&inv, 200, "OK");
        assert_eq!(ok.header("to"), Some("<sip:100@pbx>;tag=ss1"));
        assert_eq!(ok.header("contact"), Some("<sip:ss@192.0.2.1:5060>"));
        assert_eq!(ok.header("record-route"), Some("<sip:192.0.2.5;lr>"));
        let bye = d.request("BYE", "z9hG4bKb1", None);
        assert_eq!(bye.request_uri(), Some("sip:trunk@192.0.2.10:5060"));
        assert_eq!(bye.header("route"), Some("<sip:192.0.2.5;lr>"));
        assert_eq!(bye.header("from"), Some("<sip:100@pbx>;tag=ss1"));
        assert_eq!(
            bye.header("to"),
            Some("<sip:anonymous@anonymous.invalid>;tag=caller1")
        );
        assert_eq!(bye.header("cseq"), Some("1 BYE"));
        // The caller's BYE matches the dialog; another Call-ID does not.
        let their_bye =
            "BYE sip:ss@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKx\r\n\
             From: <sip:anonymous@anonymous.invalid>;tag=caller1\r\nTo: <sip:100@pbx>;tag=ss1\r\n\
             Call-ID: c1\r\nCSeq: 8 BYE\r\nContent-Length: 0\r\n\r\n";
        let their_bye = SipMessage::parse(their_bye.as_bytes()).unwrap();
        assert!(d.matches_request(&their_bye));
    }

    #[test]
    fn uac_dialog_takes_tag_target_and_reversed_route_set() {
        let mut d = Dialog::new_uac(
            "b-1",
            "<sip:anonymous@anonymous.invalid>",
            "ssb",
            "<sip:100@pbx>",
            "sip:100@192.0.2.20:5080",
            Peer::udp("192.0.2.20:5080".parse().unwrap()),
            "<sip:ss@192.0.2.1:5060>",
            "192.0.2.1:5060",
        );
        let inv = d.request("INVITE", "z9hG4bKi", None);
        assert_eq!(inv.header("cseq"), Some("1 INVITE"));
        let resp = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKi\r\n\
            Record-Route: <sip:p1;lr>, <sip:p2;lr>\r\n\
            From: <sip:anonymous@anonymous.invalid>;tag=ssb\r\nTo: <sip:100@pbx>;tag=pbx9\r\n\
            Call-ID: b-1\r\nCSeq: 1 INVITE\r\nContact: <sip:100@192.0.2.21:5080>\r\n\
            Content-Length: 0\r\n\r\n";
        d.confirm_from_response(&SipMessage::parse(resp.as_bytes()).unwrap());
        let ack = d.request("ACK", "z9hG4bKack", Some(1));
        assert_eq!(ack.request_uri(), Some("sip:100@192.0.2.21:5080"));
        assert_eq!(
            ack.header_values("route"),
            vec!["<sip:p2;lr>", "<sip:p1;lr>"]
        );
        assert_eq!(ack.header("to"), Some("<sip:100@pbx>;tag=pbx9"));
        assert_eq!(ack.header("cseq"), Some("1 ACK"));
    }
}
