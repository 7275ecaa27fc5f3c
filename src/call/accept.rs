//! The step before a screened call exists: an INVITE becomes a [`PendingCall`] or a
//! refusal, before any RTP port is bound or any ASR slot taken (the shape of quinn's
//! `Incoming`). The runtime binds ports only for a pending call, then [`PendingCall::answer`]
//! makes the [`CallSession`].
//!
//! Refused here: a `Require` we cannot honour (420 with `Unsupported`, RFC 3261 §8.2.2.3),
//! an SDP offer that is not UTF-8 or cannot be parsed (400), one without G.711 audio
//! (488, RFC 3264 §6). Out of ports is the runtime's refusal (503).

use super::config::CallConfig;
use super::dialog::{refusal_for_invite, Refusal};
use super::stage::CallSession;
use crate::media::sdp::{self, Negotiated, SdpError, SessionDescription};
use crate::sip::msg::SipMessage;
use crate::sip::proxy::Peer;
use bytes::Bytes;
use std::net::IpAddr;
use std::time::Instant;

/// A screened INVITE we can answer once ports are bound.
#[derive(Debug)]
pub struct PendingCall {
    invite: SipMessage,
    source: Peer,
    offer: SessionDescription,
}

/// Check a screened INVITE: a pending call, or the refusal to send.
pub fn accept(invite: &SipMessage, source: Peer) -> Result<PendingCall, Refusal> {
    if let Some(r) = refusal_for_invite(invite) {
        return Err(r);
    }
    let offer = std::str::from_utf8(invite.body())
        .map_err(|_| SdpError::Malformed("SDP is not UTF-8".into()))
        .and_then(SessionDescription::parse)
        .and_then(|o| {
            // A common codec must exist before any port is worth binding.
            sdp::answer(&o, IpAddr::from([0, 0, 0, 0]), 0, 0, 1).map(|_| o)
        });
    match offer {
        Ok(offer) => Ok(PendingCall {
            invite: invite.clone(),
            source,
            offer,
        }),
        Err(e) => Err(sdp_refusal(&e)),
    }
}

fn sdp_refusal(e: &SdpError) -> Refusal {
    match e.sip_status() {
        488 => Refusal::new(488, "Not Acceptable Here"),
        _ => Refusal::new(400, "Bad Request"),
    }
}

/// What answering needs from the runtime: where media goes.
#[derive(Debug, Clone, Copy)]
pub struct MediaPorts {
    pub ip: IpAddr,
    /// Leg A's RTP port (the caller's) and leg B's (the callee's).
    pub a: u16,
    pub b: u16,
}

impl PendingCall {
    pub fn invite(&self) -> &SipMessage {
        &self.invite
    }

    pub fn source(&self) -> Peer {
        self.source
    }

    /// Answer it: the RFC 3264 answer for the caller on `ports.a`, the offer leg B will carry
    /// on `ports.b` (preferring the caller's codec, so no transcoding is needed when the
    /// callee takes it), and the session. Also returns what leg A negotiated.
    pub fn answer(
        self,
        now: Instant,
        id: u64,
        cfg: CallConfig,
        ports: MediaPorts,
    ) -> Result<(CallSession, Negotiated), Refusal> {
        let (negotiated, answer_sdp) =
            sdp::answer(&self.offer, ports.ip, ports.a, id, 1).map_err(|e| sdp_refusal(&e))?;
        let offer_b = sdp::offer_preferring(negotiated.codec, ports.ip, ports.b, id, 1);
        let call = CallSession::answer(
            now,
            id,
            &self.invite,
            self.source,
            cfg,
            Bytes::from(answer_sdp),
            Bytes::from(offer_b),
        );
        Ok((call, negotiated))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invite(extra: &str, body: &str) -> SipMessage {
        let text = format!(
            "INVITE sip:100@pbx.example SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKa1\r\nMax-Forwards: 70\r\n\
             From: <sip:anonymous@anonymous.invalid>;tag=c1\r\nTo: <sip:100@pbx.example>\r\n\
             Call-ID: acc-1\r\nCSeq: 1 INVITE\r\nContact: <sip:c@192.0.2.10>\r\n{extra}\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        SipMessage::parse(text.as_bytes()).unwrap()
    }

    const PCMU: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\n\
                        t=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    const G729: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\n\
                        t=0 0\r\nm=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";

    fn peer() -> Peer {
        Peer::udp("192.0.2.10:5060".parse().unwrap())
    }

    #[test]
    fn refusals_come_before_any_port() {
        let r = accept(&invite("", G729), peer()).unwrap_err();
        assert_eq!(r.status, 488);
        let r = accept(&invite("", "garbage"), peer()).unwrap_err();
        assert_eq!(r.status, 400);
        let r = accept(&invite("Require: 100rel-not-known\r\n", PCMU), peer()).unwrap_err();
        assert_eq!(r.status, 420);
        assert!(r.headers.iter().any(|(n, _)| *n == "Unsupported"));
        assert!(accept(&invite("", PCMU), peer()).is_ok());
    }
}
