//! Overload control: when the core falls behind, new requests are refused with 503 and
//! Retry-After (RFC 3261 §21.5.4) instead of waiting in socket buffers, while everything
//! that belongs to calls already admitted (responses, ACK, BYE, re-INVITE, CANCEL) keeps
//! flowing.
//!
//! How it works, in the spirit of Kamailio's load-based shedding and of CoDel:
//! - the socket readers sort every message into a lane with [`lane`], a scan of the first
//!   line and the `To` header (no full parse): [`Lane::Dialog`] for responses and requests
//!   inside a dialog from a trusted source, [`Lane::New`] for everything else (new requests,
//!   and anything from an untrusted source, which must never delay the trunk's dialogs);
//! - the core always empties the dialog lane first; the new lane is a short bounded queue,
//!   and every message in it carries the moment it was read;
//! - [`Shedder`] looks at how long each new message waited (the queueing delay, which is what
//!   a caller feels, not a rate that depends on the machine): above [`SHED_ABOVE`] the core is
//!   behind and starts shedding; it stops when a message waited less than [`SHED_BELOW`] or
//!   the lane ran empty, so it recovers as soon as a flood is over;
//! - while shedding, and whenever the new lane is full, the readers answer a new request at
//!   the door with [`shed_reply`] (503 + Retry-After, built from one parse, nothing stored)
//!   so the trunk or a dispatcher fails over at once; what cannot be answered (an ACK,
//!   garbage, an untrusted source) is dropped there.
//!
//! Memory stays bounded: the new lane holds at most a fixed number of messages, the dialog
//! lane is bounded and back-pressures its reader, and shed requests create no transaction.

use super::{reply_peer, Peer, RETRY_AFTER_SECS};
use crate::sip::msg::SipMessage;
use crate::sip::validate::{check_request, Facts};
use bytes::Bytes;
use std::time::Duration;

/// A new request that waited longer than this starts shedding.
pub const SHED_ABOVE: Duration = Duration::from_millis(100);
/// While shedding, a new request that waited less than this ends it.
pub const SHED_BELOW: Duration = Duration::from_millis(20);
/// The To tag of our stateless 503s for shed requests (their ACKs are absorbed).
pub const SHED_TAG: &str = "ss-shed";

/// Which queue a message waits in before the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Part of something already admitted: never shed.
    Dialog,
    /// A new request (or from an untrusted source): shed under overload.
    New,
}

/// Sort a message by a scan of its start line and `To` header (RFC 3261 §7.3.3 compact
/// form `t` included). Requests with a To tag are inside a dialog (§12.2); ACK and CANCEL
/// belong to a transaction already under way (§17.1.1.3, §9.1), so they never wait behind
/// new calls. A source outside the trusted networks always gets the new lane.
pub fn lane(trusted: bool, bytes: &[u8]) -> Lane {
    if !trusted {
        return Lane::New;
    }
    if bytes.starts_with(b"SIP/2.0 ") {
        return Lane::Dialog;
    }
    if bytes.starts_with(b"ACK ") || bytes.starts_with(b"CANCEL ") {
        return Lane::Dialog;
    }
    if to_has_tag(bytes) {
        Lane::Dialog
    } else {
        Lane::New
    }
}

/// Whether the `To` header (first one, header section only) carries a `tag` parameter.
fn to_has_tag(bytes: &[u8]) -> bool {
    let mut lines = bytes.split(|&b| b == b'\n');
    let _start_line = lines.next();
    let mut in_to = false;
    for raw in lines {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.is_empty() {
            break;
        }
        let folded = matches!(line.first(), Some(b' ' | b'\t'));
        if folded {
            // A continuation of the previous header (§7.3.1).
            if in_to && has_tag_param(line) {
                return true;
            }
            continue;
        }
        if in_to {
            // The To header ended without a tag.
            return false;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if name.eq_ignore_ascii_case(b"to") || name.eq_ignore_ascii_case(b"t") {
            if has_tag_param(&line[colon + 1..]) {
                return true;
            }
            in_to = true;
        }
    }
    false
}

/// `;tag=` anywhere after the address (case-insensitive, spaces around `;` and `=`
/// allowed as §25.1 LWS permits). A `tag=` inside `<…>` belongs to the URI, not To.
fn has_tag_param(value: &[u8]) -> bool {
    let after_uri = match value.iter().rposition(|&b| b == b'>') {
        Some(i) => &value[i + 1..],
        None => value,
    };
    after_uri.split(|&b| b == b';').skip(1).any(|param| {
        let name = match param.iter().position(|&b| b == b'=') {
            Some(eq) => &param[..eq],
            None => param,
        };
        name.trim_ascii().eq_ignore_ascii_case(b"tag")
    })
}

/// The 503 + Retry-After for a new request refused at the door, and where it goes
/// (§18.2.2, RFC 3581). `None` when nothing should be said: a response, an ACK, or a
/// message too broken to answer.
pub fn shed_reply(bytes: &[u8], from: Peer) -> Option<(Peer, Bytes)> {
    let msg = SipMessage::parse(bytes).ok()?;
    if !msg.is_request() || msg.method() == Some("ACK") {
        return None;
    }
    let (facts, _) = check_request(&msg).ok()?;
    let resp = shed_response(&msg, &facts, from);
    Some((reply_peer(facts.top_via(), from), resp.to_bytes()))
}

/// The 503 for a shed request: Retry-After so the trunk tries again elsewhere or later,
/// and a Warning that says why.
pub(super) fn shed_response(msg: &SipMessage, facts: &Facts, from: Peer) -> SipMessage {
    let via = super::response_via(facts, from);
    let mut resp =
        super::build::response_to(msg, 503, "Service Unavailable", Some(&via), Some(SHED_TAG));
    resp.push_header("Retry-After", RETRY_AFTER_SECS.to_string());
    resp.push_header("Warning", "399 scamscreen \"overloaded\"".to_string());
    resp
}

/// A change of the shedding state, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShedChange {
    /// Shedding began: a new request had waited this long.
    Started { waited: Duration },
    /// Shedding ended after refusing this many requests in the core (the readers count
    /// their own).
    Ended { shed: u64 },
}

/// The shedding decision from queueing delays. Pure: told how long each new request
/// waited, or that the lane is empty.
#[derive(Debug, Default)]
pub struct Shedder {
    shedding: bool,
    shed_this_time: u64,
    change: Option<ShedChange>,
    /// Times shedding began since start.
    pub episodes: u64,
    /// Longest queueing delay of a new request seen.
    pub max_wait: Duration,
}

impl Shedder {
    pub fn new() -> Shedder {
        Shedder::default()
    }

    /// Shedding now: the readers refuse new requests at the door.
    pub fn shedding(&self) -> bool {
        self.shedding
    }

    /// A new request is taken from its lane after waiting `waited`: `true` means refuse it
    /// (503), `false` process it.
    pub fn admit_after(&mut self, waited: Duration) -> bool {
        self.max_wait = self.max_wait.max(waited);
        if !self.shedding && waited > SHED_ABOVE {
            self.shedding = true;
            self.episodes += 1;
            self.shed_this_time = 0;
            self.change = Some(ShedChange::Started { waited });
        } else if self.shedding && waited < SHED_BELOW {
            self.stop();
            return false;
        }
        if self.shedding {
            self.shed_this_time += 1;
        }
        self.shedding
    }

    /// The new lane ran empty: whatever the backlog was, it is gone.
    pub fn lane_empty(&mut self) {
        if self.shedding {
            self.stop();
        }
    }

    fn stop(&mut self) {
        self.shedding = false;
        self.change = Some(ShedChange::Ended {
            shed: self.shed_this_time,
        });
    }

    /// The last change since the previous call (for a log line per episode, not per message).
    pub fn poll_change(&mut self) -> Option<ShedChange> {
        self.change.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    const INVITE: &str = "INVITE sip:100@pbx SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK-1;rport\r\n\
        Max-Forwards: 70\r\n\
        From: <sip:anonymous@anonymous.invalid>;tag=a1\r\n\
        To: <sip:100@pbx>\r\n\
        Call-ID: c1\r\n\
        CSeq: 1 INVITE\r\n\
        Contact: <sip:a@192.0.2.1:5070>\r\n\
        Content-Length: 0\r\n\r\n";

    #[test]
    fn lanes() {
        assert_eq!(lane(true, INVITE.as_bytes()), Lane::New);
        assert_eq!(lane(false, INVITE.as_bytes()), Lane::New);
        let reinvite = INVITE.replace("To: <sip:100@pbx>", "To: <sip:100@pbx>;tag=b2");
        assert_eq!(lane(true, reinvite.as_bytes()), Lane::Dialog);
        assert_eq!(lane(false, reinvite.as_bytes()), Lane::New);
        let compact = INVITE.replace("To: <sip:100@pbx>", "t :<sip:100@pbx> ; TAG = b2");
        assert_eq!(lane(true, compact.as_bytes()), Lane::Dialog);
        let folded = INVITE.replace("To: <sip:100@pbx>", "To: <sip:100@pbx>\r\n  ;tag=b2");
        assert_eq!(lane(true, folded.as_bytes()), Lane::Dialog);
        // A tag inside the URI is not the To tag.
        let in_uri = INVITE.replace("To: <sip:100@pbx>", "To: <sip:100@pbx;tag=x>");
        assert_eq!(lane(true, in_uri.as_bytes()), Lane::New);
        // Only the header section counts.
        let in_body = INVITE.replace(
            "Content-Length: 0\r\n\r\n",
            "Content-Length: 9\r\n\r\nTo: x;tag=y",
        );
        assert_eq!(lane(true, in_body.as_bytes()), Lane::New);
        assert_eq!(lane(true, b"SIP/2.0 200 OK\r\n\r\n"), Lane::Dialog);
        assert_eq!(lane(true, b"ACK sip:x SIP/2.0\r\n\r\n"), Lane::Dialog);
        assert_eq!(lane(true, b"CANCEL sip:x SIP/2.0\r\n\r\n"), Lane::Dialog);
        assert_eq!(lane(true, b"\x00\x01garbage"), Lane::New);
        assert_eq!(lane(true, b""), Lane::New);
    }

    #[test]
    fn shed_reply_is_a_503_with_retry_after_to_the_via_port() {
        let from = Peer::udp("192.0.2.1:40000".parse::<SocketAddr>().unwrap());
        let (to, bytes) = shed_reply(INVITE.as_bytes(), from).expect("a reply");
        assert_eq!(to.addr, from.addr, "rport: back to the source port");
        let resp = SipMessage::parse(&bytes).unwrap();
        assert_eq!(resp.status(), Some(503));
        assert_eq!(resp.header("retry-after"), Some("5"));
        assert!(resp.header("to").unwrap().contains(SHED_TAG));
        assert!(resp.header("via").unwrap().contains("rport=40000"));
        // Nothing to answer: an ACK, a response, garbage.
        let ack = INVITE
            .replace("INVITE sip", "ACK sip")
            .replace("1 INVITE", "1 ACK");
        assert!(shed_reply(ack.as_bytes(), from).is_none());
        assert!(shed_reply(b"SIP/2.0 200 OK\r\n\r\n", from).is_none());
        assert!(shed_reply(b"garbage", from).is_none());
    }

    #[test]
    fn sheds_above_the_delay_and_recovers_below_it_or_when_empty() {
        let ms = Duration::from_millis;
        let mut s = Shedder::new();
        assert!(!s.admit_after(ms(5)));
        assert!(!s.admit_after(ms(90)));
        assert_eq!(s.poll_change(), None);
        assert!(s.admit_after(ms(150)), "behind: shed");
        assert_eq!(
            s.poll_change(),
            Some(ShedChange::Started { waited: ms(150) })
        );
        assert!(s.shedding());
        // Between the thresholds while shedding: still shed (drains the backlog fast).
        assert!(s.admit_after(ms(50)));
        assert!(!s.admit_after(ms(10)), "caught up: process");
        assert_eq!(s.poll_change(), Some(ShedChange::Ended { shed: 2 }));
        assert!(!s.shedding());
        // Between the thresholds while not shedding: process.
        assert!(!s.admit_after(ms(50)));
        assert!(s.admit_after(ms(101)));
        s.lane_empty();
        assert!(!s.shedding());
        assert_eq!(s.episodes, 2);
        assert_eq!(s.max_wait, ms(150));
    }
}
