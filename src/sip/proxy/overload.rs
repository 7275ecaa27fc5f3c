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
//! - [`Shedder`] looks at how long new messages wait (the queueing delay, which is what a
//!   caller feels, not a rate that depends on the machine) and at the core's pace per new
//!   request while they queue; a reader refuses a new arrival when the requests ahead of it
//!   at that pace would make it wait longer than [`SHED_ABOVE`] ([`too_long_a_wait`]), and
//!   the core refuses one that waited longer anyway. Only the excess over what the core can
//!   do is refused, and it recovers as soon as a flood is over (the lane is short);
//! - when the wait would be too long, or the new lane is full, the readers answer a new request at
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
use std::time::{Duration, Instant};

/// A new request that waited longer than this starts shedding. Below T1 (500 ms, RFC 3261
/// §17.1.1.2): a UDP client whose INVITE got no 100 Trying by then retransmits, and the
/// retransmissions add to the load just when it is too high. Well above the jitter of a
/// busy box at full rate (waits of 100–260 ms were seen at 6,000 calls/s on 2 cores shared
/// with the load generator), which must not shed calls that would have been served.
pub const SHED_ABOVE: Duration = Duration::from_millis(400);
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

/// What the log says about shedding: once a second while it goes on, and when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShedChange {
    /// New requests were refused in the last report period (`at_door` by the readers,
    /// `in_core` because they had waited too long); the longest wait seen.
    Shedding {
        at_door: u64,
        in_core: u64,
        max_wait: Duration,
    },
    /// A whole report period without a refusal.
    Ended,
}

/// Back-to-back takes per pace window, and windows kept for the median.
const PACE_TAKES: u32 = 32;
const PACE_WINDOWS: usize = 7;

/// How often a shedding episode is reported.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// The core's side of overload control. Pure: told the time, how long each new request
/// waited, and the readers' refusal count.
///
/// Admission at the door is by expected wait (Little's law): the core measures how long it
/// takes per new request while the lane has a backlog ([`Shedder::service_interval`]), and
/// the readers refuse a new arrival when the requests ahead of it times that interval would
/// pass [`SHED_ABOVE`]. So only the excess over what the core can do is refused, not bursts
/// of good calls; and a request that waited too long anyway (the estimate lagged) is refused
/// by the core when taken.
#[derive(Debug, Default)]
pub struct Shedder {
    /// The core's time per new request when they queue: the median of the last
    /// [`PACE_WINDOWS`] windows' means (a window: [`PACE_TAKES`] back-to-back takes), so one
    /// stall of the process (the scheduler, a page fault) does not read as a slow core.
    interval: Option<Duration>,
    window_busy: Duration,
    window_takes: u32,
    windows: std::collections::VecDeque<Duration>,
    /// When the previous new request was taken, and whether others were still waiting.
    last_take: Option<(Instant, bool)>,
    /// Report period: start, refusals at the door (the readers' total) at its start,
    /// refusals in the core during it, longest wait.
    period_start: Option<Instant>,
    door_at_start: u64,
    in_core: u64,
    period_max_wait: Duration,
    shedding: bool,
    change: Option<ShedChange>,
    /// Report periods with refusals since start.
    pub episodes: u64,
    /// Longest queueing delay of a new request seen.
    pub max_wait: Duration,
}

impl Shedder {
    pub fn new() -> Shedder {
        Shedder::default()
    }

    /// A new request is taken from its lane at `now` after waiting `waited`, with
    /// `backlog` others still waiting: `true` means refuse it (503: it waited longer than
    /// [`SHED_ABOVE`]), `false` process it.
    pub fn take(&mut self, now: Instant, waited: Duration, backlog: usize) -> bool {
        self.max_wait = self.max_wait.max(waited);
        self.period_max_wait = self.period_max_wait.max(waited);
        if let Some((prev, queued)) = self.last_take {
            // Only back-to-back takes measure the core's pace; a gap with an empty lane
            // measures the arrivals.
            if queued {
                self.window_busy += now.saturating_duration_since(prev);
                self.window_takes += 1;
                if self.window_takes >= PACE_TAKES {
                    self.windows.push_back(self.window_busy / self.window_takes);
                    if self.windows.len() > PACE_WINDOWS {
                        self.windows.pop_front();
                    }
                    self.window_busy = Duration::ZERO;
                    self.window_takes = 0;
                    let mut sorted: Vec<Duration> = self.windows.iter().copied().collect();
                    sorted.sort_unstable();
                    self.interval = sorted.get(sorted.len() / 2).copied();
                }
            }
        }
        self.last_take = Some((now, backlog > 0));
        let stale = waited > SHED_ABOVE;
        if stale {
            self.in_core += 1;
        }
        stale
    }

    /// The core's time per new request under backlog (`None` until measured).
    pub fn service_interval(&self) -> Option<Duration> {
        self.interval
    }

    /// Close a report period when due: `door_total` is the readers' refusal count so far.
    pub fn tick(&mut self, now: Instant, door_total: u64) {
        let Some(start) = self.period_start else {
            self.period_start = Some(now);
            self.door_at_start = door_total;
            return;
        };
        if now.saturating_duration_since(start) < REPORT_EVERY {
            return;
        }
        let at_door = door_total.saturating_sub(self.door_at_start);
        if at_door + self.in_core > 0 {
            if !self.shedding {
                self.episodes += 1;
            }
            self.shedding = true;
            self.change = Some(ShedChange::Shedding {
                at_door,
                in_core: self.in_core,
                max_wait: self.period_max_wait,
            });
        } else if self.shedding {
            self.shedding = false;
            self.change = Some(ShedChange::Ended);
        }
        self.period_start = Some(now);
        self.door_at_start = door_total;
        self.in_core = 0;
        self.period_max_wait = Duration::ZERO;
    }

    /// The last report since the previous call.
    pub fn poll_change(&mut self) -> Option<ShedChange> {
        self.change.take()
    }
}

/// Whether a new arrival with `ahead` requests before it would wait longer than
/// [`SHED_ABOVE`] at the core's pace `interval`.
pub fn too_long_a_wait(ahead: usize, interval: Option<Duration>) -> bool {
    interval.is_some_and(|i| i.saturating_mul(ahead as u32) > SHED_ABOVE)
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
    fn refuses_what_waited_too_long_and_learns_the_pace_under_backlog() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let mut s = Shedder::new();
        assert!(!s.take(t0, ms(5), 0));
        // A gap with an empty lane says nothing about the core's pace.
        assert!(!s.take(t0 + ms(500), ms(5), 3));
        assert_eq!(s.service_interval(), None);
        let mut t = t0 + ms(500);
        for _ in 0..PACE_TAKES {
            t += ms(1);
            assert!(!s.take(t, ms(300), 2));
        }
        assert_eq!(s.service_interval(), Some(ms(1)));
        // One stall of 100 ms in the next window does not make the core look slow.
        t += ms(100);
        for _ in 0..2 * PACE_TAKES {
            t += ms(1);
            assert!(!s.take(t, ms(300), 2));
        }
        assert_eq!(s.service_interval(), Some(ms(1)));
        assert!(s.take(t + ms(1), ms(450), 1), "stale: refused");
        assert_eq!(s.max_wait, ms(450));
        // 1 ms a request: 400 ahead is the limit.
        assert!(!too_long_a_wait(400, s.service_interval()));
        assert!(too_long_a_wait(401, s.service_interval()));
        assert!(
            !too_long_a_wait(100_000, None),
            "not measured: the lane's length decides"
        );
    }

    #[test]
    fn reports_once_a_second_while_refusing_and_when_it_ends() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let mut s = Shedder::new();
        s.tick(t0, 0);
        assert!(s.take(t0 + ms(10), ms(450), 0));
        s.tick(t0 + ms(500), 7);
        assert_eq!(s.poll_change(), None, "not a second yet");
        s.tick(t0 + ms(1000), 7);
        assert_eq!(
            s.poll_change(),
            Some(ShedChange::Shedding {
                at_door: 7,
                in_core: 1,
                max_wait: ms(450)
            })
        );
        s.tick(t0 + ms(2000), 9);
        assert!(matches!(
            s.poll_change(),
            Some(ShedChange::Shedding {
                at_door: 2,
                in_core: 0,
                ..
            })
        ));
        s.tick(t0 + ms(3000), 9);
        assert_eq!(s.poll_change(), Some(ShedChange::Ended));
        s.tick(t0 + ms(4000), 9);
        assert_eq!(s.poll_change(), None);
        assert_eq!(s.episodes, 1);
    }
}
