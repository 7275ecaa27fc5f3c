//! The transaction-stateful proxy core (RFC 3261 §16), pure: told the time, fed datagrams
//! and stream frames, drained for what to send and when to wake up.
//!
//! ```text
//!  trusted peer ──request──▶ [server tx] ── Context ── [client tx] ──▶ upstream (PBX)
//!               ◀─response──            ◀──────────────            ◀──
//! ```
//! One *response context* per forwarded request pairs the server transaction facing the
//! sender with the client transaction facing the single target (§16.2, §16.6). Only the
//! configured upstream is a target for requests from anyone else; requests from the
//! upstream (in-dialog requests towards the caller, e.g. the callee's BYE) may go only to
//! an IP-literal next hop inside the trusted networks. Nothing else is ever a target,
//! whatever the Request-URI says: scamscreen is never an open relay.
//!
//! Order of checks for every datagram: rate limit (per source IP) → trusted source →
//! parse → validate (400/416/420/505, never forwarded) → transaction matching → Max-Forwards
//! (483) → loop (482) → local OPTIONS (200) → routing → classification of new INVITEs.
//!
//! - this file: the types, the core's state, input, output and timers;
//! - `request.rs`: requests in the order above; `forward.rs`: where they go and how;
//! - `contexts.rs`: responses and CANCEL through the response contexts;
//! - `build.rs`: messages we make; `identity.rs`: who is calling; `health.rs`: the
//!   upstream's liveness; `overload.rs`: shedding; `stats.rs`: the counters.

mod build;
mod contexts;
mod forward;
pub mod health;
mod identity;
pub mod overload;
mod request;
mod stats;
#[cfg(test)]
mod tests;

pub use build::{ack_for as ack_for_non_2xx, cancel_for as cancel_for_invite};
pub use identity::caller_identity;
pub use stats::ProxyStats;

use crate::sip::classify::{classify_caller, CallerClass, Classification, ClassifyRules};
use crate::sip::msg::SipMessage;
use crate::sip::ratelimit::{RateLimitConfig, RateLimiter};
use crate::sip::transaction::{
    ClientInvite, ClientNonInvite, Reliability, ServerInvite, ServerNonInvite, TimerConfig, TxEvent,
};
use crate::sip::uri::{NameAddr, Uri};
use crate::sip::validate::{check_request, Facts, Reject};
use crate::sip::via::Via;
use bytes::Bytes;
use ipnet::IpNet;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Transport of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }

    fn reliability(self) -> Reliability {
        match self {
            Transport::Udp => Reliability::Unreliable,
            Transport::Tcp => Reliability::Reliable,
        }
    }
}

/// Where a message came from or goes to. `conn` names an existing TCP connection (the
/// runtime's id); `None` over TCP means "connect to `addr`".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub addr: SocketAddr,
    pub transport: Transport,
    pub conn: Option<u64>,
}

impl Peer {
    pub fn udp(addr: SocketAddr) -> Peer {
        Peer {
            addr,
            transport: Transport::Udp,
            conn: None,
        }
    }
}

/// Bytes to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: Peer,
    pub bytes: Bytes,
}

/// What to do with requests from sources outside the trusted networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UntrustedAction {
    /// Answer 403 Forbidden (ACKs are dropped).
    Reject,
    /// Say nothing.
    Drop,
}

/// Retry-After (seconds) on the 503s a saturated or draining node sends (RFC 3261 §21.5.4).
pub const RETRY_AFTER_SECS: u32 = 5;

/// Where the responses to a request go (RFC 3261 §18.2.2, RFC 3581 §4): back on the same
/// connection for TCP; over UDP to the source IP ("received") and either the source port
/// (the client asked with `rport`) or the port in the top Via's sent-by (default 5060).
/// Never simply "the dialog's peer": a trunk with several SBC ports sends a BYE from
/// another port than its INVITE, and the answer must go where the BYE came from.
pub fn reply_peer(top_via: &crate::sip::via::Via, from: Peer) -> Peer {
    if from.transport == Transport::Tcp {
        return from;
    }
    let port = if top_via.param("rport").is_some() {
        from.addr.port()
    } else {
        top_via.port.unwrap_or(5060)
    };
    Peer::udp(SocketAddr::new(from.addr.ip(), port))
}

/// The top Via as our responses carry it: `received` when the source IP differs from
/// sent-by, `rport` filled in when the client asked (RFC 3581 §4).
fn response_via(facts: &Facts, from: Peer) -> String {
    let mut via = facts.top_via().clone();
    let src_ip = from.addr.ip().to_string();
    if via.host.trim_start_matches('[').trim_end_matches(']') != src_ip {
        via.set_param("received", Some(src_ip));
    }
    if via.param("rport").is_some() {
        via.set_param("rport", Some(from.addr.port().to_string()));
        via.set_param("received", Some(from.addr.ip().to_string()));
    }
    via.to_header_value()
}

/// To tags of the final responses we send without a transaction (rejections, shed
/// requests): an ACK carrying one answers us and goes no further.
const STATELESS_TAGS: [&str; 5] = [
    "ss-err",
    "ss403",
    overload::SHED_TAG,
    "ss-call",
    "ss-options",
];

/// Everything the proxy core needs from the configuration.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Host and port we put into Via and Record-Route, and recognise in Route.
    pub advertised_host: String,
    pub advertised_port: u16,
    /// The PBX: the only target for requests from anyone else.
    pub upstream: SocketAddr,
    pub upstream_transport: Transport,
    pub record_route: bool,
    pub trusted: Vec<IpNet>,
    pub untrusted: UntrustedAction,
    /// Per-source limit for untrusted sources (checked before anything is parsed).
    pub rate_limit: RateLimitConfig,
    /// Per-source limit for trusted sources (`per_sec` 0 = off).
    pub trusted_rate_limit: RateLimitConfig,
    pub timers: TimerConfig,
    pub classify: ClassifyRules,
    /// Hand screened INVITEs to the call layer (`ProxyEvent::ScreenCall`) instead of
    /// forwarding them marked `X-Scamscreen-Caller`.
    pub screen_calls: bool,
    /// Sources whose withheld calls are known to be fine (`screening.skip_from`): passed
    /// through marked `X-Scamscreen-Verdict: skipped` instead of screened.
    pub skip_screening_from: Vec<IpNet>,
    /// Sanity limits on what may pass to the PBX (see [`Limits`]).
    pub limits: Limits,
    /// Probe the upstream with OPTIONS this often (`None`: never; see [`health`]).
    pub upstream_probe: Option<Duration>,
    /// Device mode: the upstream is a home router we are registered to as an IP phone; the
    /// new calls it sends us are the ones it wants screened (its rule for withheld
    /// callers), so they are screened instead of routed.
    pub device_mode: bool,
}

/// Size limits on messages (Kamailio's sanity module in spirit): a parser on the PBX's side
/// should never see what scamscreen itself would not send. PROTOS INVITEs with a 33 KB Via
/// host crashed sipp's UAS behind scamscreen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest message, start line, headers and body (bytes).
    pub message_bytes: usize,
    /// Largest header field, name and value (bytes).
    pub header_bytes: usize,
    /// Most header fields in one message.
    pub headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            message_bytes: crate::sip::msg::MAX_MESSAGE_BYTES,
            header_bytes: DEFAULT_MAX_HEADER_BYTES,
            headers: DEFAULT_MAX_HEADERS,
        }
    }
}

/// Longest header field accepted by default: well above real Via, Route, P-Asserted-
/// Identity or Allow lines (a few hundred bytes), far below a parser-breaking one.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 4096;
/// Most header fields in one message by default.
pub const DEFAULT_MAX_HEADERS: usize = 128;

/// Something the runtime should know about (logged with a span per call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyEvent {
    /// A new INVITE was classified (`call_id` for correlation; no personal data).
    CallClassified {
        call_id: String,
        classification: Classification,
    },
    /// A request was refused with a status (400, 403, 416, 420, 482, 483, 505, 603 …).
    Refused {
        status: u16,
        detail: String,
        source: SocketAddr,
    },
    /// The upstream stopped or started answering (OPTIONS probes, the transport).
    Upstream { up: bool, why: &'static str },
    /// A new INVITE to screen (`ProxyConfig::screen_calls`): the call layer answers it. The
    /// runtime must `attach_call` its Call-ID (or `respond` with an error) right away.
    ScreenCall {
        invite: SipMessage,
        source: Peer,
        classification: Classification,
    },
    /// A message for a call the call layer owns.
    CallMessage {
        /// The call layer's number for the call (given to `attach_call`).
        call: u64,
        call_id: String,
        /// `true` when it came from the upstream side (leg B), else from the caller (leg A).
        from_upstream: bool,
        msg: SipMessage,
        source: Peer,
    },
}

enum ServerTx {
    Invite(ServerInvite),
    NonInvite(ServerNonInvite),
}

enum ClientTx {
    Invite(ClientInvite),
    NonInvite(ClientNonInvite),
}

macro_rules! delegate {
    ($ty:ident { $($var:ident),* }) => {
        impl $ty {
            fn poll_transmit(&mut self) -> Option<Bytes> {
                match self { $($ty::$var(tx) => tx.poll_transmit()),* }
            }
            fn poll_event(&mut self) -> Option<TxEvent> {
                match self { $($ty::$var(tx) => tx.poll_event()),* }
            }
            fn poll_timeout(&self) -> Option<Instant> {
                match self { $($ty::$var(tx) => tx.poll_timeout()),* }
            }
            fn handle_timeout(&mut self, now: Instant) {
                match self { $($ty::$var(tx) => tx.handle_timeout(now)),* }
            }
            fn is_terminated(&self) -> bool {
                match self { $($ty::$var(tx) => tx.is_terminated()),* }
            }
        }
    };
}
delegate!(ServerTx { Invite, NonInvite });
delegate!(ClientTx { Invite, NonInvite });

impl ClientTx {
    fn on_transport_error(&mut self, now: Instant) {
        match self {
            ClientTx::Invite(tx) => tx.on_transport_error(now),
            ClientTx::NonInvite(tx) => tx.on_transport_error(now),
        }
    }
}

impl ServerTx {
    /// Hand a response to the server transaction; `false` if its state refuses it.
    fn send_response(&mut self, now: Instant, status: u16, bytes: Bytes) -> bool {
        match self {
            ServerTx::Invite(tx) => tx.send_response(now, status, bytes),
            ServerTx::NonInvite(tx) => tx.send_response(now, status, bytes),
        }
    }
}

/// A response context (§16): one received request, at most one forwarded copy.
struct Context {
    server: ServerTx,
    client: Option<ClientTx>,
    /// CANCEL we forwarded for this INVITE (its responses are absorbed).
    cancel: Option<ClientNonInvite>,
    /// The request as received, for building our own responses (100, 408); dropped once a
    /// final response went out, as is `forwarded`: a context then lingers for its timers
    /// (up to 64*T1) holding little more than its keys.
    received: Option<SipMessage>,
    /// The top Via of `received` with `received`/`rport` filled in (RFC 3581).
    response_via: String,
    /// Where responses go (§18.2.2).
    reply_to: Peer,
    /// The request as forwarded (ACK and CANCEL are built from it).
    forwarded: Option<SipMessage>,
    target: Peer,
    server_key: ServerKey,
    branch: String,
    provisional_seen: bool,
    final_sent: bool,
    cancel_pending: bool,
    to_tag: String,
    /// The wake-up currently queued for this context.
    scheduled: Option<Instant>,
}

/// Server transaction key (§17.2.3): branch + sent-by + method (ACK matches INVITE);
/// for RFC 2543 peers without the magic cookie, Call-ID + CSeq number + From tag + sent-by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ServerKey {
    Rfc3261 {
        branch: String,
        sent_by: String,
        method: String,
    },
    Rfc2543 {
        call_id: String,
        cseq: u32,
        from_tag: String,
        sent_by: String,
        method: String,
    },
}

fn server_key(facts: &Facts, method: &str) -> ServerKey {
    let via = facts.top_via();
    let method = if method == "ACK" { "INVITE" } else { method }.to_string();
    match via.branch() {
        Some(b) if via.has_rfc3261_branch() => ServerKey::Rfc3261 {
            branch: b.to_string(),
            sent_by: via.sent_by(),
            method,
        },
        _ => ServerKey::Rfc2543 {
            call_id: facts.call_id.clone(),
            cseq: facts.cseq,
            from_tag: facts.from.tag().unwrap_or_default().to_string(),
            sent_by: via.sent_by(),
            method,
        },
    }
}

/// Methods that create dialogs and so get our Record-Route (RFC 3261 §16.6 step 4).
fn creates_dialog(method: &str) -> bool {
    matches!(method, "INVITE" | "SUBSCRIBE" | "REFER" | "NOTIFY")
}

pub struct Proxy {
    cfg: ProxyConfig,
    contexts: HashMap<u64, Context>,
    by_server: HashMap<ServerKey, u64>,
    by_branch: HashMap<String, u64>,
    wakeups: BinaryHeap<Reverse<(Instant, u64)>>,
    out: VecDeque<Transmit>,
    events: VecDeque<ProxyEvent>,
    limiter: RateLimiter,
    trusted_limiter: RateLimiter,
    next_id: u64,
    stats: ProxyStats,
    /// Contexts touched since the last flush.
    dirty: Vec<u64>,
    /// Call-IDs of calls the call layer owns: leg A (caller side) and leg B (upstream side).
    /// The only Call-ID table of screened calls: Call-ID → the call layer's call number, per
    /// side (leg A's Call-ID from the caller's side, leg B's from the upstream).
    calls_a: std::collections::HashMap<String, u64>,
    calls_b: std::collections::HashMap<String, u64>,
    /// Why OPTIONS to us answers 503 now (saturated, draining); `None`: 200.
    unavailable: Option<&'static str>,
    /// Shutting down: new INVITEs get 503 + Retry-After, OPTIONS 503.
    draining: bool,
    /// The message being handled came through [`Proxy::shed_input`]: a new request gets 503.
    shedding: bool,
    /// Whether the upstream answers (created at the first `handle_timeout` when probing).
    health: Option<health::UpstreamHealth>,
}

impl Proxy {
    pub fn new(cfg: ProxyConfig) -> Proxy {
        Proxy {
            limiter: RateLimiter::new(cfg.rate_limit),
            trusted_limiter: RateLimiter::new(cfg.trusted_rate_limit),
            cfg,
            contexts: HashMap::new(),
            by_server: HashMap::new(),
            by_branch: HashMap::new(),
            wakeups: BinaryHeap::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            next_id: 1,
            stats: ProxyStats::default(),
            dirty: Vec::new(),
            calls_a: Default::default(),
            calls_b: Default::default(),
            unavailable: None,
            draining: false,
            shedding: false,
            health: None,
        }
    }

    /// The call layer owns this Call-ID from now on (leg A: from the caller's side; leg B:
    /// the call it places towards the upstream).
    pub fn attach_call(&mut self, call_id: &str, upstream_leg: bool, call: u64) {
        if upstream_leg {
            self.calls_b.insert(call_id.to_string(), call);
        } else {
            self.calls_a.insert(call_id.to_string(), call);
        }
    }

    /// The call owning a request's Call-ID, and whether it is that call's leg B. A request
    /// inside a dialog is matched by its Call-ID and tags (RFC 3261 §12.2.2), not by where it
    /// came from: a PBX may send its in-dialog requests (a session refresh, RFC 4028; a BYE)
    /// from another address or transport than the one we send to, as Asterisk does for an
    /// endpoint bound to a second transport in the hairpin. Leg B's Call-ID is one we made,
    /// so only if both legs held the same Call-ID would the source decide.
    fn call_of_request(&self, call_id: &str, from: Peer) -> Option<(u64, bool)> {
        match (self.calls_a.get(call_id), self.calls_b.get(call_id)) {
            (Some(&a), Some(&b)) => Some(match self.is_upstream(from) {
                true => (b, true),
                false => (a, false),
            }),
            (Some(&a), None) => Some((a, false)),
            (None, Some(&b)) => Some((b, true)),
            (None, None) => None,
        }
    }

    pub fn detach_call(&mut self, call_id: &str) {
        self.calls_a.remove(call_id);
        self.calls_b.remove(call_id);
    }

    /// Answer a request statelessly (e.g. 488 or 503 for an INVITE the call layer could not
    /// take).
    pub fn respond(&mut self, req: &SipMessage, source: Peer, status: u16, reason: &str) {
        self.respond_with(req, source, status, reason, &[]);
    }

    /// [`Proxy::respond`] with extra headers (`Unsupported` on a 420, `Allow` on a 405).
    /// Say whether this node can take calls: `Some(reason)` makes OPTIONS to us answer 503
    /// with Retry-After (saturated, draining), `None` 200 again.
    pub fn set_unavailable(&mut self, why: Option<&'static str>) {
        self.unavailable = if self.draining {
            Some("shutting down")
        } else {
            why
        };
    }

    /// Shutting down (SIGTERM): refuse new INVITEs with 503 + Retry-After and answer
    /// OPTIONS with 503 from now on; transactions and dialogs in progress go on.
    pub fn start_draining(&mut self) {
        self.draining = true;
        self.unavailable = Some("shutting down");
    }

    pub fn respond_with(
        &mut self,
        req: &SipMessage,
        source: Peer,
        status: u16,
        reason: &str,
        headers: &[(&str, String)],
    ) {
        if let Ok((facts, _)) = check_request(req) {
            let via = response_via(&facts, source);
            let mut resp = build::response_to(req, status, reason, Some(&via), Some("ss-call"));
            for (name, value) in headers {
                resp.push_header(name, value.clone());
            }
            self.send(self.reply_peer(&facts, source), resp.to_bytes());
        }
    }

    /// Queue bytes the call layer wants sent.
    pub fn send_raw(&mut self, to: Peer, bytes: Bytes) {
        self.send(to, bytes);
    }

    pub fn stats(&self) -> &ProxyStats {
        &self.stats
    }

    /// Live response contexts (transactions in flight or lingering).
    pub fn contexts(&self) -> usize {
        self.contexts.len()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<ProxyEvent> {
        self.events.pop_front()
    }

    /// The earliest instant at which `handle_timeout` has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let ctx = self.wakeups.peek().map(|Reverse((t, _))| *t);
        match (ctx, self.health.as_ref().and_then(|h| h.poll_timeout())) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Is the upstream answering (true when not probed)?
    pub fn upstream_up(&self) -> bool {
        self.health.as_ref().is_none_or(|h| h.is_up())
    }

    /// The transport cannot reach `addr` (a TCP connection refused or timed out): if it is
    /// the upstream, it is down from now on (until it answers again), and the requests
    /// waiting on it are answered 503 at once (§16.7 step 2, not 408 after Timer B).
    pub fn unreachable(&mut self, now: Instant, addr: SocketAddr, why: &'static str) {
        // Only the upstream's own address: an ICMP error for a phone that hung up on the
        // same host says nothing about the PBX.
        if addr != self.cfg.upstream {
            return;
        }
        if let Some(h) = &mut self.health {
            h.unreachable(why);
        }
        let ids: Vec<u64> = self
            .contexts
            .iter()
            .filter(|(_, c)| c.target.addr == addr && c.client.is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(c) = self.contexts.get_mut(&id).and_then(|c| c.client.as_mut()) {
                c.on_transport_error(now);
            }
            self.mark(id, now);
        }
        self.health_actions(now);
        self.flush_all_dirty(now);
    }

    /// Probe timers, and what the health check asks for.
    fn health_timeout(&mut self, now: Instant) {
        if self.health.is_none() {
            if let Some(every) = self.cfg.upstream_probe {
                self.health = Some(health::UpstreamHealth::new(now, every));
            }
        }
        if let Some(h) = &mut self.health {
            h.handle_timeout(now);
        }
        self.health_actions(now);
    }

    fn health_actions(&mut self, _now: Instant) {
        while let Some(a) = self.health.as_mut().and_then(|h| h.poll_action()) {
            match a {
                health::HealthAction::Probe(branch) => {
                    let to = Peer {
                        addr: self.cfg.upstream,
                        transport: self.cfg.upstream_transport,
                        conn: None,
                    };
                    let bytes = self.probe(&branch, to);
                    self.send(to, bytes);
                }
                health::HealthAction::Down(why) => {
                    self.stats.upstream_down += 1;
                    self.events
                        .push_back(ProxyEvent::Upstream { up: false, why });
                }
                health::HealthAction::Up => {
                    self.events.push_back(ProxyEvent::Upstream {
                        up: true,
                        why: "answering again",
                    });
                }
            }
        }
    }

    /// An OPTIONS probe for the upstream (max-forwards 0: for the next hop itself, §11).
    fn probe(&self, branch: &str, to: Peer) -> Bytes {
        let (host, port) = (&self.cfg.advertised_host, self.cfg.advertised_port);
        let transport = to.transport.via_name();
        format!(
            "OPTIONS sip:{} SIP/2.0\r\n\
             Via: SIP/2.0/{transport} {host}:{port};branch={branch};rport\r\n\
             Max-Forwards: 0\r\n\
             From: <sip:scamscreen@{host}:{port}>;tag=ssprobe\r\n\
             To: <sip:{}>\r\n\
             Call-ID: {branch}@{host}\r\n\
             CSeq: 1 OPTIONS\r\n\
             User-Agent: scamscreen health check\r\n\
             Content-Length: 0\r\n\r\n",
            to.addr, to.addr
        )
        .into_bytes()
        .into()
    }

    /// Whether `ip` is in the trusted networks (the readers sort messages with it).
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.cfg.trusted.iter().any(|n| n.contains(&ip))
    }

    fn is_upstream(&self, peer: Peer) -> bool {
        match peer.transport {
            Transport::Udp => peer.addr == self.cfg.upstream,
            Transport::Tcp => peer.addr.ip() == self.cfg.upstream.ip(),
        }
    }

    fn refuse(&mut self, status: u16, detail: String, source: SocketAddr) {
        self.stats.refused += 1;
        self.events.push_back(ProxyEvent::Refused {
            status,
            detail,
            source,
        });
    }

    /// A reloaded configuration (SIGHUP): who is screened. Transactions and calls in
    /// progress keep going; the next request sees the new rules.
    pub fn reconfigure(&mut self, classify: ClassifyRules, skip_screening_from: Vec<IpNet>) {
        self.cfg.classify = classify;
        self.cfg.skip_screening_from = skip_screening_from;
    }

    /// Feed a message from the new-request lane while the core is behind
    /// ([`overload::Shedder`]): a retransmission, an ACK or CANCEL is handled as usual, a new
    /// request is refused with 503 + Retry-After before anything is created for it.
    pub fn shed_input(&mut self, now: Instant, from: Peer, bytes: &[u8]) {
        self.shedding = true;
        self.handle_input(now, from, bytes);
        self.shedding = false;
    }

    /// Feed one datagram (UDP) or one framed message (TCP).
    pub fn handle_input(&mut self, now: Instant, from: Peer, bytes: &[u8]) {
        self.stats.received += 1;
        let trusted = self.is_trusted(from.addr.ip());
        let limiter = if trusted {
            &mut self.trusted_limiter
        } else {
            &mut self.limiter
        };
        if !limiter.allow(from.addr.ip(), now) {
            self.stats.rate_limited += 1;
            return;
        }
        if bytes.len() > self.cfg.limits.message_bytes {
            // Too large to be worth an answer (which would echo it): dropped.
            self.stats.too_large += 1;
            self.refuse(513, format!("message of {} bytes", bytes.len()), from.addr);
            return;
        }
        let msg = match SipMessage::parse(bytes) {
            Ok(m) => m,
            Err(_) => {
                self.stats.unparsable += 1;
                return;
            }
        };
        if !trusted {
            self.stats.untrusted += 1;
            if self.cfg.untrusted == UntrustedAction::Reject
                && msg.is_request()
                && msg.method() != Some("ACK")
            {
                if let Ok((facts, _)) = check_request(&msg) {
                    let via = response_via(&facts, from);
                    let resp =
                        build::response_to(&msg, 403, "Forbidden", Some(&via), Some("ss403"));
                    self.send(self.reply_peer(&facts, from), resp.to_bytes());
                }
            }
            self.refuse(403, "untrusted source".into(), from.addr);
            return;
        }
        if self.is_upstream(from) {
            if let Some(h) = &mut self.health {
                h.alive();
            }
            self.health_actions(now);
        }
        if msg.is_request() {
            self.handle_request(now, from, msg);
        } else {
            self.handle_response(now, from, msg);
        }
        self.flush_all_dirty(now);
    }

    fn send(&mut self, to: Peer, bytes: Bytes) {
        self.stats.sent += 1;
        self.out.push_back(Transmit { to, bytes });
    }

    /// Where responses go (§18.2.2, RFC 3581): the same connection for TCP; over UDP the
    /// source IP and either the source port (rport) or the sent-by port.
    fn reply_peer(&self, facts: &Facts, from: Peer) -> Peer {
        reply_peer(facts.top_via(), from)
    }
}

/// A response to `req` as a peer would send it (tests of other modules).
#[cfg(test)]
pub fn response_for_tests(req: &SipMessage, status: u16, to_tag: &str) -> SipMessage {
    build::response_to(req, status, "Test", None, Some(to_tag))
}

/// Prefix of the headers scamscreen adds for the PBX (case-insensitive).
pub const OWN_HEADER_PREFIX: &str = "x-scamscreen-";

/// Remove every `X-Scamscreen-*` header; returns how many lines were removed.
pub fn strip_own_headers(msg: &mut SipMessage) -> usize {
    let mut names: Vec<String> = msg
        .headers()
        .iter()
        .filter(|h| h.key.starts_with(OWN_HEADER_PREFIX))
        .map(|h| h.key.clone())
        .collect();
    let count = names.len();
    names.sort();
    names.dedup();
    for n in names {
        msg.remove_header(&n);
    }
    count
}
