//! From SIP headers to the [`CallerIdentity`] that `classify_caller` judges.

use crate::sip::classify::{CallerIdentity, NameAddr as Caller};
use crate::sip::msg::SipMessage;
use crate::sip::uri::NameAddr;
use crate::sip::validate::Facts;

fn caller(n: &NameAddr) -> Caller {
    let uri = &n.uri;
    let (user, host) = if uri.is_sip() {
        (uri.user_decoded(), uri.host.clone())
    } else {
        (uri.number_or_user(), String::new())
    };
    Caller {
        display: n.display.clone(),
        scheme: uri.scheme.clone(),
        user,
        host,
    }
}

/// Collect what the INVITE says about the caller: From, Privacy (RFC 3323),
/// P-Asserted-Identity (RFC 3325), Remote-Party-ID and its `privacy` parameter.
pub fn caller_identity(msg: &SipMessage, facts: &Facts, from_trusted_peer: bool) -> CallerIdentity {
    let privacy = msg
        .header_lines("privacy")
        .flat_map(|l| l.split([';', ',']))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    let asserted = msg
        .header_values("p-asserted-identity")
        .first()
        .and_then(|v| NameAddr::parse(v).ok())
        .map(|n| caller(&n));
    let remote_party_id = msg
        .header_values("remote-party-id")
        .first()
        .and_then(|v| NameAddr::parse(v).ok())
        .map(|n| {
            let privacy = n.param("privacy").flatten().map(|p| p.to_ascii_lowercase());
            (caller(&n), privacy)
        });
    CallerIdentity {
        from: caller(&facts.from),
        privacy,
        asserted,
        remote_party_id,
        from_trusted_peer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::validate::check_request;

    #[test]
    fn reads_every_identity_header() {
        let raw = "INVITE sip:100@pbx SIP/2.0\r\n\
            Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
            From: \"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=1\r\n\
            To: <sip:100@pbx>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\
            Privacy: id;critical\r\n\
            P-Asserted-Identity: <sip:+4930123@trunk.example>\r\n\
            Remote-Party-ID: <sip:+4930123@trunk.example>;privacy=full;screen=yes\r\n\
            Content-Length: 0\r\n\r\n";
        let msg = SipMessage::parse(raw.as_bytes()).unwrap();
        let (facts, _) = check_request(&msg).unwrap();
        let id = caller_identity(&msg, &facts, true);
        assert_eq!(id.from.user.as_deref(), Some("anonymous"));
        assert_eq!(id.from.host, "anonymous.invalid");
        assert_eq!(id.from.display.as_deref(), Some("Anonymous"));
        assert_eq!(id.privacy, vec!["id", "critical"]);
        assert_eq!(id.asserted.unwrap().user.as_deref(), Some("+4930123"));
        assert_eq!(id.remote_party_id.unwrap().1.as_deref(), Some("full"));
    }
}
