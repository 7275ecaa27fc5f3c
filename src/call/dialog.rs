//! One leg's SIP dialog (RFC 3261 §12): identifiers, sequence numbers, route set, and the
//! in-dialog requests and responses built from them; plus the UAS core's side of it: the
//! checks made on a request before acting on it (§8.2, §12.2.2), the server transactions
//! holding our answers (§17.2), the 2xx retransmission (§13.3.1.4), and the session timer
//! we accept (RFC 4028).
//!
//! Where a leg's requests go is fixed when the leg is created: the caller side answers to
//! the address the INVITE came from, the callee side is always the configured upstream.
//! The route set and remote target are still honoured in the message (Route headers and
//! Request-URI, §12.2.1.1), so the peer can route, but scamscreen never sends to an address
//! a peer names: it cannot be turned into a relay.

use super::Leg;
use crate::sip::msg::{SipMessage, StartLine};
use crate::sip::proxy::Peer;
use crate::sip::transaction::{Reliability, ServerInvite, ServerNonInvite, TimerConfig};
use crate::sip::uri::NameAddr;
use bytes::Bytes;
use std::time::{Duration, Instant};

/// Methods a screened call accepts inside its dialogs, for `Allow` (§20.5). Everything else
/// is refused with 405 (a method SIP defines) or 501 (one it does not), §8.2.1.
pub const ALLOWED_METHODS: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO";

/// Option tags for `Supported` (§20.37): session timers, as the side that does not refresh.
pub const SUPPORTED_EXTENSIONS: &str = "timer";

/// Option tags a peer may put in `Require` (§8.2.2.3) without a 420:
/// - `timer` (RFC 4028): see [`accepted_session_expires`];
/// - `100rel` (RFC 3262): it obliges a UAS to send its non-100 provisional responses
///   reliably, and a screened call sends none (100 Trying, then 200 at once), so there is
///   nothing to make reliable. It is not advertised in `Supported`.
pub const UNDERSTOOD_EXTENSIONS: [&str; 2] = ["timer", "100rel"];

/// RFC 4028 §4: the smallest session interval allowed (also the default `Min-SE`). We
/// never tear a session down sooner than this after its last refresh, whatever the peer
/// asked.
pub const MIN_SESSION_EXPIRES: Duration = Duration::from_secs(90);

/// Why a request is answered with an error instead of being acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: &'static str,
    /// Extra headers for the response (`Unsupported` with 420, `Allow` with 405 …).
    pub headers: Vec<(&'static str, String)>,
}

impl Refusal {
    pub fn new(status: u16, reason: &'static str) -> Refusal {
        Refusal {
            status,
            reason,
            headers: Vec::new(),
        }
    }

    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Refusal {
        self.headers.push((name, value.into()));
        self
    }

    /// §12.2.2, §15.1.2: the request names a dialog we do not have (wrong tags, a leg
    /// already hung up, or no dialog yet).
    pub fn no_dialog() -> Refusal {
        Refusal::new(481, "Call/Transaction Does Not Exist")
    }

    /// §8.2.1: a method SIP defines that this call does not take.
    pub fn method_not_allowed() -> Refusal {
        Refusal::new(405, "Method Not Allowed").with("Allow", ALLOWED_METHODS)
    }

    /// A response to `request` carrying this refusal (`to_tag` is added when the request's
    /// To has none, §8.2.6.2).
    pub fn response(&self, request: &SipMessage, to_tag: &str) -> SipMessage {
        let mut r = response_to(request, self.status, self.reason, to_tag);
        for (name, value) in &self.headers {
            r.push_header(name, value.clone());
        }
        r
    }
}

/// The tag parameter of a From or To header, if any.
pub fn tag_of(msg: &SipMessage, header: &str) -> Option<String> {
    msg.header(header)
        .and_then(|v| NameAddr::parse(v).ok())
        .and_then(|n| n.tag().map(str::to_string))
}

/// CSeq number and method (§20.16); `None` when missing or malformed.
pub fn cseq_of(msg: &SipMessage) -> Option<(u32, String)> {
    let mut parts = msg.header("cseq")?.split_whitespace();
    let number = parts.next()?.parse().ok()?;
    let method = parts.next()?.to_string();
    Some((number, method))
}

/// The branch of the top Via, which names the transaction (§17.2.3).
pub fn top_branch(msg: &SipMessage) -> Option<String> {
    msg.header_values("via")
        .first()
        .and_then(|v| crate::sip::via::Via::parse(v).ok())
        .and_then(|v| v.branch().map(str::to_string))
}

/// A response to `request` (§8.2.6.2): Via, From, Call-ID and CSeq copied; To copied, with
/// `to_tag` added when the request's To has no tag (a 100 is left without one).
pub fn response_to(request: &SipMessage, status: u16, reason: &str, to_tag: &str) -> SipMessage {
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
            r.push_header("To", format!("{t};tag={to_tag}"));
        }
    }
    if let Some(c) = request.header("call-id") {
        r.push_header("Call-ID", c.to_string());
    }
    if let Some(c) = request.header("cseq") {
        r.push_header("CSeq", c.to_string());
    }
    r
}

/// Option tags in the request's `Require` that we do not understand (§8.2.2.3: the answer
/// is 420 Bad Extension listing them in `Unsupported`). ACK and CANCEL are never refused
/// for this (the caller must not call it for them).
pub fn unsupported_extensions(req: &SipMessage) -> Vec<String> {
    req.header_values("require")
        .into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .filter(|t| {
            !UNDERSTOOD_EXTENSIONS
                .iter()
                .any(|u| u.eq_ignore_ascii_case(t))
        })
        .map(str::to_string)
        .collect()
}

/// The 420 for a request requiring extensions we lack (§8.2.2.3), if it does.
pub fn bad_extension(req: &SipMessage) -> Option<Refusal> {
    let missing = unsupported_extensions(req);
    (!missing.is_empty())
        .then(|| Refusal::new(420, "Bad Extension").with("Unsupported", missing.join(", ")))
}

/// Whether a new INVITE must be refused before a call is set up for it (only a `Require`
/// we cannot honour, §8.2.2.3, today). Pure: the runtime may call it before it allocates
/// ports or an ASR slot; [`super::CallSession::answer`] applies it too.
pub fn refusal_for_invite(invite: &SipMessage) -> Option<Refusal> {
    bad_extension(invite)
}

/// The session interval (seconds) we accept for an INVITE or UPDATE we answer 2xx, as the
/// side that does *not* refresh (RFC 4028 §9), or `None` for no session timer.
///
/// | request                                              | our 2xx                          |
/// |------------------------------------------------------|----------------------------------|
/// | `Session-Expires: N` (refresher absent or `uac`) and `timer` in Supported or Require | `Session-Expires: N;refresher=uac` + `Require: timer` |
/// | `refresher=uas`, or no `timer` support from the UAC  | no Session-Expires              |
/// | no Session-Expires                                   | no Session-Expires              |
///
/// Table 2 of §9 would make us the refresher in the second row; we never send refreshes,
/// so we decline the timer there instead, which a 2xx without Session-Expires does (§7.2:
/// "there is no session expiration"). `Require: timer` is therefore always honoured and
/// never answered 420. N is echoed unchanged (a UAS must not raise it; values under 90 s
/// are echoed too, but we wait at least [`MIN_SESSION_EXPIRES`], see
/// [`session_bye_after`]).
pub fn accepted_session_expires(req: &SipMessage) -> Option<u32> {
    let value = req.header("session-expires")?;
    let mut parts = value.split(';');
    let seconds: u32 = parts.next()?.trim().parse().ok()?;
    let refresher = parts
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("refresher"))
        .map(|(_, v)| v.trim().to_ascii_lowercase());
    let lists_timer = |h: &str| {
        req.header_values(h)
            .iter()
            .any(|t| t.trim().eq_ignore_ascii_case("timer"))
    };
    let uac_supports = lists_timer("supported") || lists_timer("require");
    (uac_supports && refresher.as_deref() != Some("uas")).then_some(seconds)
}

/// The headers of a 2xx accepting a session interval of `seconds` (RFC 4028 §9: with
/// `refresher=uac` the UAS must also send `Require: timer`).
pub fn session_timer_headers(seconds: u32) -> [(&'static str, String); 2] {
    [
        ("Session-Expires", format!("{seconds};refresher=uac")),
        ("Require", "timer".to_string()),
    ]
}

/// How long after a refresh the side that does not refresh waits before it sends BYE
/// (RFC 4028 §10: "slightly before the session expiration", by the smaller of 32 seconds
/// and a third of the interval). The interval is taken as at least
/// [`MIN_SESSION_EXPIRES`].
pub fn session_bye_after(seconds: u32) -> Duration {
    let interval = Duration::from_secs(seconds.into()).max(MIN_SESSION_EXPIRES);
    interval - (interval / 3).min(Duration::from_secs(32))
}

/// How a request admitted into a dialog is refused, if it is: method first (§8.2.1), then
/// `Require` (§8.2.2.3). A screened call relays no signalling between its legs, so:
///
/// | method                                   | answer                                      |
/// |------------------------------------------|---------------------------------------------|
/// | INVITE, UPDATE, BYE, OPTIONS, INFO        | acted on (420 if it requires what we lack) |
/// | ACK, CANCEL                              | acted on (never 420, §8.2.2.3)             |
/// | PRACK                                    | 481: no reliable provisional awaits one (RFC 3262 §3) |
/// | NOTIFY                                   | 481: we never subscribe (RFC 6665 §4.1.3; RFC 5057: only that usage ends) |
/// | SUBSCRIBE, REFER, MESSAGE, PUBLISH, REGISTER | 405 with Allow: no transfer, presence or messages through us |
/// | anything else                            | 501 (§21.5.2), with Allow                   |
pub fn refusal_for_method(req: &SipMessage) -> Option<Refusal> {
    match req.method().unwrap_or_default() {
        "ACK" | "CANCEL" => None,
        "INVITE" | "UPDATE" | "BYE" | "OPTIONS" | "INFO" => bad_extension(req),
        "PRACK" => Some(Refusal::no_dialog()),
        "NOTIFY" => Some(Refusal::new(481, "Subscription Does Not Exist")),
        "SUBSCRIBE" | "REFER" | "MESSAGE" | "PUBLISH" | "REGISTER" => {
            Some(Refusal::method_not_allowed())
        }
        _ => Some(Refusal::new(501, "Not Implemented").with("Allow", ALLOWED_METHODS)),
    }
}

/// Live server transactions a call keeps at most; answers past it go statelessly (§8.2.7),
/// so a peer flooding in-dialog requests cannot grow the call's memory.
pub const MAX_SERVED: usize = 32;

enum ServerTx {
    Invite(ServerInvite),
    NonInvite(ServerNonInvite),
}

struct Served {
    leg: Leg,
    /// Where its answers go (§18.2.2: where the request came from, per its top Via).
    to: Peer,
    branch: String,
    method: String,
    tx: ServerTx,
}

/// The server transactions (§17.2) holding a call's answers to the requests its peers sent,
/// matched by leg, top Via branch and method (§17.2.3; an ACK matches its INVITE's). So a
/// retransmitted request gets the answer already given, and the ACK of a non-2xx final to
/// an INVITE is absorbed. Drained like the transactions themselves: `poll_transmit`,
/// `poll_timeout`, `handle_timeout`.
pub struct ServedRequests {
    timers: TimerConfig,
    /// Of leg A's and leg B's transport.
    reliability: [Reliability; 2],
    served: Vec<Served>,
    /// Answers sent without a transaction (no branch, or [`MAX_SERVED`] reached).
    stateless: Vec<(Peer, Bytes)>,
}

impl ServedRequests {
    pub fn new(timers: TimerConfig, leg_a: Reliability, leg_b: Reliability) -> ServedRequests {
        ServedRequests {
            timers,
            reliability: [leg_a, leg_b],
            served: Vec::new(),
            stateless: Vec::new(),
        }
    }

    /// Is this request a retransmission, or the ACK of our non-2xx final? Then its
    /// transaction has dealt with it (answered again, or absorbed) and true is returned.
    pub fn absorb(&mut self, now: Instant, leg: Leg, req: &SipMessage) -> bool {
        let method = req.method().unwrap_or_default();
        let wanted = if method == "ACK" { "INVITE" } else { method };
        let Some(branch) = top_branch(req) else {
            return false;
        };
        let Some(served) = self
            .served
            .iter_mut()
            .find(|s| s.leg == leg && s.branch == branch && s.method == wanted)
        else {
            return false;
        };
        match (&mut served.tx, method) {
            (ServerTx::Invite(tx), "ACK") => !tx.on_ack(now),
            (ServerTx::NonInvite(_), "ACK") => false,
            (ServerTx::Invite(tx), _) => {
                tx.on_request_retransmission(now);
                true
            }
            (ServerTx::NonInvite(tx), _) => {
                tx.on_request_retransmission(now);
                true
            }
        }
    }

    /// Did we answer an INVITE with this branch on this leg (what an in-dialog CANCEL
    /// names, §9.2)?
    pub fn answered_invite(&self, leg: Leg, branch: &str) -> bool {
        self.served
            .iter()
            .any(|s| s.leg == leg && s.branch == branch && s.method == "INVITE")
    }

    /// Our answer (`status`, `bytes`) to `req` on `leg`, for `to`, queued for
    /// `poll_transmit`; its retransmissions go to the same place.
    pub fn answer(
        &mut self,
        now: Instant,
        (leg, to): (Leg, Peer),
        req: &SipMessage,
        status: u16,
        bytes: Bytes,
    ) {
        let branch = top_branch(req).unwrap_or_default();
        if branch.is_empty() || self.served.len() >= MAX_SERVED {
            self.stateless.push((to, bytes));
            return;
        }
        let method = req.method().unwrap_or_default().to_string();
        let (timers, reliability) = match leg {
            Leg::A => (&self.timers, self.reliability[0]),
            Leg::B => (&self.timers, self.reliability[1]),
        };
        let tx = if method == "INVITE" {
            let mut tx = ServerInvite::new(now, reliability, timers);
            tx.send_response(now, status, bytes);
            ServerTx::Invite(tx)
        } else {
            let mut tx = ServerNonInvite::new(now, reliability, timers);
            tx.send_response(now, status, bytes);
            ServerTx::NonInvite(tx)
        };
        self.served.push(Served {
            leg,
            to,
            branch,
            method,
            tx,
        });
    }

    /// The next answer to send, with where it goes. Finished transactions are dropped here.
    pub fn poll_transmit(&mut self) -> Option<(Peer, Bytes)> {
        if !self.stateless.is_empty() {
            return Some(self.stateless.remove(0));
        }
        for s in &mut self.served {
            let bytes = match &mut s.tx {
                ServerTx::Invite(tx) => tx.poll_transmit(),
                ServerTx::NonInvite(tx) => tx.poll_transmit(),
            };
            if let Some(bytes) = bytes {
                return Some((s.to, bytes));
            }
        }
        // Events need nothing from us: a refusal whose ACK never came (Timer H) stands.
        self.served.retain_mut(|s| match &mut s.tx {
            ServerTx::Invite(tx) => {
                while tx.poll_event().is_some() {}
                !tx.is_terminated()
            }
            ServerTx::NonInvite(tx) => {
                while tx.poll_event().is_some() {}
                !tx.is_terminated()
            }
        });
        None
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.served
            .iter()
            .filter_map(|s| match &s.tx {
                ServerTx::Invite(tx) => tx.poll_timeout(),
                ServerTx::NonInvite(tx) => tx.poll_timeout(),
            })
            .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        for s in &mut self.served {
            match &mut s.tx {
                ServerTx::Invite(tx) => tx.handle_timeout(now),
                ServerTx::NonInvite(tx) => tx.handle_timeout(now),
            }
        }
    }
}

/// 2xx responses to INVITEs (the first, or re-INVITEs) that the UAS core retransmits until
/// their ACK (§13.3.1.4; the transaction layer does not): T1 doubling to T2, for at most
/// 64*T1, after which the session should end with BYE.
pub struct PendingAnswers {
    timers: TimerConfig,
    pending: Vec<PendingAnswer>,
    transmits: Vec<(Leg, Bytes)>,
}

struct PendingAnswer {
    leg: Leg,
    /// CSeq number of the INVITE (its ACK carries it).
    cseq: u32,
    bytes: Bytes,
    next: Instant,
    interval: Duration,
    give_up: Instant,
}

impl PendingAnswers {
    pub fn new(timers: TimerConfig) -> PendingAnswers {
        PendingAnswers {
            timers,
            pending: Vec::new(),
            transmits: Vec::new(),
        }
    }

    /// Our 2xx (`bytes`, just sent) to the INVITE numbered `cseq` on `leg`. It replaces an
    /// older one on that leg: the newer INVITE shows the peer got past it.
    pub fn start(&mut self, now: Instant, leg: Leg, cseq: u32, bytes: Bytes) {
        self.pending.retain(|a| a.leg != leg);
        self.pending.push(PendingAnswer {
            leg,
            cseq,
            bytes,
            next: now + self.timers.t1,
            interval: self.timers.t1,
            give_up: now + self.timers.transaction_timeout(),
        });
    }

    /// An ACK with this CSeq number came on `leg`.
    pub fn acked(&mut self, leg: Leg, cseq: u32) {
        self.pending.retain(|a| !(a.leg == leg && a.cseq == cseq));
    }

    pub fn awaits_ack(&self, leg: Leg, cseq: u32) -> bool {
        self.pending.iter().any(|a| a.leg == leg && a.cseq == cseq)
    }

    /// Stop retransmitting (we are hanging up).
    pub fn clear(&mut self) {
        self.pending.clear();
        self.transmits.clear();
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending.iter().map(|a| a.next.min(a.give_up)).min()
    }

    /// Queues the retransmissions due at `now`. Returns true when a 2xx went 64*T1 without
    /// its ACK (it is dropped; the owner ends the session with BYE).
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        let t2 = self.timers.t2;
        for a in &mut self.pending {
            if now < a.give_up && now >= a.next {
                self.transmits.push((a.leg, a.bytes.clone()));
                a.interval = (a.interval * 2).min(t2);
                a.next = now + a.interval;
            }
        }
        let before = self.pending.len();
        self.pending.retain(|a| now < a.give_up);
        self.pending.len() < before
    }

    pub fn poll_transmit(&mut self) -> Option<(Leg, Bytes)> {
        (!self.transmits.is_empty()).then(|| self.transmits.remove(0))
    }
}

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
    /// (with our tag), Call-ID and CSeq copied (§8.2.6.2); Contact in a 2xx to a target
    /// refresh request (INVITE, UPDATE: §12.1.1, RFC 3311 §5.2), Record-Route in a 2xx to
    /// INVITE (§12.1.1).
    pub fn response(&self, request: &SipMessage, status: u16, reason: &str) -> SipMessage {
        let mut r = response_to(request, status, reason, &self.local_tag);
        let method = request.method().unwrap_or_default();
        if (200..300).contains(&status) && (method == "INVITE" || method == "UPDATE") {
            if method == "INVITE" {
                for rr in request.header_values("record-route") {
                    r.push_header("Record-Route", rr.to_string());
                }
            }
            r.push_header("Contact", self.contact.clone());
        }
        r
    }

    /// Admit a request that carries a To tag into this dialog (§12.2.2). Its tags must be
    /// this dialog's: From tag = remote tag, To tag = our tag (else 481, and it must not be
    /// acted on). Its CSeq must not be lower than the peer's last one (else 500, "out of
    /// order"); ACK and CANCEL carry the CSeq number of the request they belong to and are
    /// not checked. An admitted request moves the remote sequence number to its own. A
    /// remote CSeq of 0 counts as empty (the peer has sent nothing yet).
    pub fn admit_request(&mut self, req: &SipMessage) -> Result<(), Refusal> {
        if !self.matches_request(req) {
            return Err(Refusal::no_dialog());
        }
        let Some((cseq, _)) = cseq_of(req) else {
            return Err(Refusal::new(400, "Bad Request"));
        };
        if matches!(req.method(), Some("ACK" | "CANCEL")) {
            return Ok(());
        }
        if self.remote_cseq != 0 && cseq < self.remote_cseq {
            return Err(Refusal::new(500, "Server Internal Error"));
        }
        self.remote_cseq = cseq;
        Ok(())
    }

    /// A target refresh request we accept (re-INVITE, UPDATE) replaces the remote target
    /// with its Contact (§12.2.2). Where this leg's messages are sent does not change.
    pub fn refresh_target(&mut self, req: &SipMessage) {
        if let Some(contact) = req
            .header_values("contact")
            .first()
            .and_then(|c| NameAddr::parse(c).ok())
        {
            self.remote_target = contact.uri_text;
        }
    }

    /// Does an incoming request belong to this dialog (Call-ID and tags, §12.2.2)?
    pub fn matches_request(&self, req: &SipMessage) -> bool {
        req.header("call-id") == Some(self.call_id.as_str())
            && tag_of(req, "to").as_deref() == Some(self.local_tag.as_str())
            && tag_of(req, "from").unwrap_or_default() == self.remote_tag
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

    fn request(text: &str) -> SipMessage {
        SipMessage::parse(text.as_bytes()).unwrap()
    }

    fn in_dialog(method: &str, cseq: u32, from_tag: &str, extra: &str) -> SipMessage {
        request(&format!(
            "{method} sip:ss@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK{cseq}\r\n\
             From: <sip:anonymous@anonymous.invalid>;tag={from_tag}\r\nTo: <sip:100@pbx>;tag=ss1\r\n\
             Call-ID: c1\r\nCSeq: {cseq} {method}\r\n{extra}Content-Length: 0\r\n\r\n"
        ))
    }

    #[test]
    fn admission_checks_tags_then_cseq_order() {
        let inv = SipMessage::parse(INVITE.as_bytes()).unwrap();
        let mut d = Dialog::from_invite(&inv, "ss1", peer(), "<sip:ss@192.0.2.1>", "192.0.2.1");
        assert_eq!(d.remote_cseq, 7);
        // §12.2.2: wrong tags → 481, whatever the CSeq.
        let r = d.admit_request(&in_dialog("BYE", 9, "someone-else", ""));
        assert_eq!(r.unwrap_err().status, 481);
        assert_eq!(d.remote_cseq, 7, "a refused request moves nothing");
        // In order: admitted, and the remote CSeq follows.
        assert!(d
            .admit_request(&in_dialog("INFO", 9, "caller1", ""))
            .is_ok());
        assert_eq!(d.remote_cseq, 9);
        // Lower: out of order → 500. Equal is not lower.
        let r = d.admit_request(&in_dialog("BYE", 8, "caller1", ""));
        assert_eq!(r.unwrap_err().status, 500);
        assert!(d
            .admit_request(&in_dialog("OPTIONS", 9, "caller1", ""))
            .is_ok());
        // ACK and CANCEL carry their INVITE's number and are not checked against it.
        assert!(d.admit_request(&in_dialog("ACK", 7, "caller1", "")).is_ok());
        assert_eq!(d.remote_cseq, 9);

        // A UAC dialog has no remote CSeq yet: the first request sets it.
        let mut b = Dialog::new_uac(
            "c1",
            "<sip:100@pbx>",
            "ss1",
            "<sip:anonymous@anonymous.invalid>",
            "sip:x@192.0.2.20",
            peer(),
            "<sip:ss@192.0.2.1>",
            "192.0.2.1",
        );
        b.remote_tag = "caller1".into();
        assert!(b
            .admit_request(&in_dialog("INFO", 3, "caller1", ""))
            .is_ok());
        assert_eq!(b.remote_cseq, 3);
    }

    #[test]
    fn require_and_method_policy() {
        let ok = in_dialog("INVITE", 8, "caller1", "Require: timer, 100rel\r\n");
        assert!(unsupported_extensions(&ok).is_empty());
        assert_eq!(refusal_for_method(&ok), None);
        let bad = in_dialog("BYE", 8, "caller1", "Require: Timer, sec-agree\r\n");
        let r = refusal_for_method(&bad).unwrap();
        assert_eq!(r.status, 420);
        assert_eq!(r.headers, vec![("Unsupported", "sec-agree".to_string())]);
        // Never for ACK or CANCEL (§8.2.2.3).
        let ack = in_dialog("ACK", 7, "caller1", "Require: sec-agree\r\n");
        assert_eq!(refusal_for_method(&ack), None);
        let status =
            |m: &str| refusal_for_method(&in_dialog(m, 8, "caller1", "")).map(|r| r.status);
        assert_eq!(status("REFER"), Some(405));
        assert_eq!(status("NOTIFY"), Some(481));
        assert_eq!(status("PRACK"), Some(481));
        assert_eq!(status("FROB"), Some(501));
        assert_eq!(status("INFO"), None);
        let r = refusal_for_method(&in_dialog("SUBSCRIBE", 8, "caller1", "")).unwrap();
        assert_eq!(r.headers, vec![("Allow", ALLOWED_METHODS.to_string())]);
        // The 420 for a new INVITE, before any call exists.
        let inv = SipMessage::parse(
            INVITE
                .replace("Contact:", "Require: foo\r\nContact:")
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(refusal_for_invite(&inv).map(|r| r.status), Some(420));
    }

    #[test]
    fn session_timer_is_accepted_only_when_the_caller_refreshes() {
        let se = |extra: &str| accepted_session_expires(&in_dialog("INVITE", 8, "caller1", extra));
        // RFC 4028 §9, Table 2.
        assert_eq!(
            se("Supported: timer\r\nSession-Expires: 1800\r\n"),
            Some(1800)
        );
        assert_eq!(
            se("Require: timer\r\nSession-Expires: 600;refresher=uac\r\n"),
            Some(600)
        );
        assert_eq!(se("k: timer\r\nx: 1200;refresher=UAC\r\n"), Some(1200));
        assert_eq!(
            se("Supported: timer\r\nSession-Expires: 1800;refresher=uas\r\n"),
            None
        );
        assert_eq!(
            se("Session-Expires: 1800\r\n"),
            None,
            "no timer support: we'd refresh"
        );
        assert_eq!(se("Supported: timer\r\n"), None);
        assert_eq!(se("Supported: timer\r\nSession-Expires: soon\r\n"), None);
        assert_eq!(
            session_timer_headers(1800),
            [
                ("Session-Expires", "1800;refresher=uac".to_string()),
                ("Require", "timer".to_string())
            ]
        );
        // §10: BYE min(32 s, SE/3) before expiry; never sooner than 90 s allows.
        assert_eq!(session_bye_after(1800), Duration::from_secs(1768));
        assert_eq!(session_bye_after(90), Duration::from_secs(60));
        assert_eq!(session_bye_after(1), Duration::from_secs(60));
    }
}
