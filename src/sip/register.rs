//! Registration client for device mode (RFC 3261 §10.2): scamscreen registers to the home
//! router's PBX (a Fritz!Box, or Asterisk in tests) as an IP phone, keeps the binding
//! refreshed, and removes it on shutdown.
//!
//! [`Registration`] is a pure machine in the style of the transaction layer: every input
//! carries `now`; the owner drains REGISTER requests with [`Registration::poll_transmit`],
//! status changes with [`Registration::poll_event`], and calls
//! [`Registration::handle_timeout`] when [`Registration::poll_timeout`] has passed. Each
//! REGISTER is a [`ClientNonInvite`] transaction (Timer E retransmissions on UDP, Timer F
//! after 64*T1). Digest authentication is [`DigestClient`]'s.
//!
//! ```text
//!                 new()
//!                   |  send REGISTER
//!                   v
//!   +---------> Registering ----- 401/407: resend with credentials (once per nonce)
//!   |            |  |    ^  \---- 423: resend with Min-Expires
//!   |  Retry     |  |    |
//!   |  timer     |  |    | Refresh timer (half the granted time, at most granted - 5 s)
//!   |            |  | 2xx|
//!   |            |  v    |
//!   |            | Registered
//!   |            |
//!   |            | other final, refused credentials, Timer F, transport error
//!   |            v
//!   +------- Failed (retry after 5 s, doubling to 5 min; or Retry-After)
//!
//!   unregister(): any of the above --REGISTER Expires: 0--> Unregistering --any outcome-->
//!   Unregistered (a 401/407 is answered once more; nothing is retried)
//! ```
//!
//! The three timers of the machine itself are data ([`RegTimer`]): `Refresh`, `Retry` and
//! `BindingExpiry` (the granted time ran out without a successful refresh).
//!
//! Request layout (§10.2): Request-URI `sip:<domain>`, To and From the AOR `sip:user@domain`,
//! one Call-ID and From tag for the machine's lifetime, CSeq increasing by one per request,
//! a fresh branch per request, Contact `<sip:user@contact>;expires=N` plus `Expires: N`.

use super::digest::{AuthError, Credentials, DigestClient};
use super::msg::{SipMessage, StartLine};
use super::proxy::Transport;
use super::transaction::{ClientNonInvite, Reliability, TimerConfig, TxEvent};
use super::uri::NameAddr;
use super::via::{Via, MAGIC_COOKIE};
use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Expiry asked for when the configuration does not say (what phones commonly ask).
pub const DEFAULT_EXPIRES_SECS: u32 = 3600;
/// First retry after a failure; doubles per failure in a row up to [`MAX_RETRY`].
pub const FIRST_RETRY: Duration = Duration::from_secs(5);
pub const MAX_RETRY: Duration = Duration::from_secs(300);
/// A refresh goes at half the granted time, and at least this long before expiry.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(5);
/// Never refresh or retry sooner than this after the previous attempt.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// `Retry-After` is honoured up to this long.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
const MAX_FORWARDS: u32 = 70;
/// Branches of our REGISTERs: magic cookie first (§8.1.1.7), then our mark.
pub const REGISTER_BRANCH_PREFIX: &str = "z9hG4bK-ssreg-";

/// What the machine needs to know about the account and the network.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistrationConfig {
    /// Where REGISTERs go (the PBX, e.g. the Fritz!Box at 192.168.178.1:5060).
    pub registrar: SocketAddr,
    pub transport: Transport,
    /// The registrar's domain: Request-URI `sip:<domain>` and the AOR's host
    /// (`fritz.box`, or the PBX's IP address).
    pub domain: String,
    /// The AOR's user part (on a Fritz!Box the IP phone's user name, e.g. `620`).
    pub aor_user: String,
    /// The digest user name (usually the same as `aor_user`).
    pub auth_user: String,
    pub password: String,
    /// Expiry asked for, in seconds.
    pub expires_secs: u32,
    /// Our address as the registrar should reach us (the device-mode socket's).
    pub contact: SocketAddr,
    /// `User-Agent` header value.
    pub user_agent: String,
    pub timers: TimerConfig,
}

impl std::fmt::Debug for RegistrationConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrationConfig")
            .field("registrar", &self.registrar)
            .field("transport", &self.transport)
            .field("domain", &self.domain)
            .field("aor_user", &self.aor_user)
            .field("auth_user", &self.auth_user)
            .field("password", &"<hidden>")
            .field("expires_secs", &self.expires_secs)
            .field("contact", &self.contact)
            .field("user_agent", &self.user_agent)
            .field("timers", &self.timers)
            .finish()
    }
}

/// A configuration the machine cannot register with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterConfigError {
    #[error("domain must be a host name or IP address")]
    Domain,
    #[error("AOR user must be non-empty, of SIP user characters")]
    AorUser,
    #[error("auth user must be non-empty and printable")]
    AuthUser,
    #[error("expires_secs must be at least 1")]
    Expires,
    #[error("contact address must not be unspecified (0.0.0.0 or ::) nor port 0")]
    Contact,
    #[error("user agent must be printable text without line breaks")]
    UserAgent,
}

impl RegistrationConfig {
    /// Every problem at once (an empty list: fine).
    pub fn validate(&self) -> Result<(), Vec<RegisterConfigError>> {
        let mut problems = Vec::new();
        let host_char = |c: char| c.is_ascii_alphanumeric() || "-.[]:".contains(c);
        if self.domain.is_empty() || !self.domain.chars().all(host_char) {
            problems.push(RegisterConfigError::Domain);
        }
        // RFC 3261 §25.1 user = 1*( unreserved / escaped / user-unreserved ).
        let user_char = |c: char| c.is_ascii_alphanumeric() || "-_.!~*'()%&=+$,;?/".contains(c);
        if self.aor_user.is_empty() || !self.aor_user.chars().all(user_char) {
            problems.push(RegisterConfigError::AorUser);
        }
        if self.auth_user.is_empty() || self.auth_user.chars().any(char::is_control) {
            problems.push(RegisterConfigError::AuthUser);
        }
        if self.expires_secs == 0 {
            problems.push(RegisterConfigError::Expires);
        }
        if self.contact.ip().is_unspecified() || self.contact.port() == 0 {
            problems.push(RegisterConfigError::Contact);
        }
        if self.user_agent.chars().any(char::is_control) {
            problems.push(RegisterConfigError::UserAgent);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// A REGISTER to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub to: SocketAddr,
    pub transport: Transport,
    pub bytes: Bytes,
}

/// Why a registration attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegFailure {
    #[error("no final response from the registrar (Timer F)")]
    Timeout,
    #[error("the transport could not reach the registrar")]
    TransportError,
    #[error("authentication failed: {0}")]
    Auth(#[from] AuthError),
    #[error("the registrar answered {status}")]
    Refused { status: u16 },
    #[error("423 Interval Too Brief without a usable Min-Expires")]
    IntervalTooBrief,
    #[error("the 2xx granted our contact no time")]
    NoBinding,
}

/// Where the registration stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegStatus {
    /// A REGISTER is out and no binding is known to be in force.
    Registering,
    /// The registrar holds our binding until `until` (a refresh may be out).
    Registered { until: Instant },
    /// The latest attempt failed; the next goes at `retry_at`. A binding granted before may
    /// still be in force: see [`Registration::bound_until`].
    Failed {
        reason: RegFailure,
        retry_at: Instant,
    },
    /// The un-REGISTER (Expires: 0) is out.
    Unregistering,
    /// Done: nothing more will be sent.
    Unregistered,
}

/// What the machine reports, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegEvent {
    Registered {
        expires: Duration,
    },
    Failed {
        reason: RegFailure,
        retry_in: Duration,
    },
    /// The granted time ran out before a refresh succeeded.
    BindingExpired,
    /// `confirmed`: the registrar answered 2xx to the un-REGISTER.
    Unregistered {
        confirmed: bool,
    },
}

/// The machine's own timers (the transaction's E and F live in its [`ClientNonInvite`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RegTimer {
    /// Send the refreshing REGISTER.
    Refresh,
    /// Try again after a failure.
    Retry,
    /// The binding granted last has run out.
    BindingExpiry,
}

const REG_TIMERS: [RegTimer; 3] = [RegTimer::Refresh, RegTimer::Retry, RegTimer::BindingExpiry];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Registering,
    Registered,
    Failed {
        reason: RegFailure,
        retry_at: Instant,
    },
    Unregistering,
    Unregistered,
}

/// The REGISTER transaction in flight.
#[derive(Debug)]
struct InFlight {
    branch: String,
    /// The expiry this request asked for (0 for the un-REGISTER).
    expires: u32,
    tx: ClientNonInvite,
}

/// Unique tokens (Call-ID, tag, branches, cnonces) from the caller's seed: SHA-256 of the
/// seed and a counter. No randomness inside the machine, so tests are repeatable.
#[derive(Debug)]
struct TokenSource {
    seed: u64,
    counter: u64,
}

impl TokenSource {
    /// `len` lower-case hex digits (at most 64).
    fn hex(&mut self, len: usize) -> String {
        self.counter = self.counter.wrapping_add(1);
        let hash = Sha256::new()
            .chain_update(self.seed.to_le_bytes())
            .chain_update(self.counter.to_le_bytes())
            .finalize();
        let mut out: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        out.truncate(len);
        out
    }
}

/// The registration of one AOR at one registrar. See the module doc.
#[derive(Debug)]
pub struct Registration {
    cfg: RegistrationConfig,
    tokens: TokenSource,
    call_id: String,
    from_tag: String,
    cseq: u32,
    /// What we ask for; raised by a 423's Min-Expires.
    requested_expires: u32,
    request: Option<InFlight>,
    digest: DigestClient,
    phase: Phase,
    binding_until: Option<Instant>,
    /// Failures in a row, for the backoff.
    failures: u32,
    timers: [Option<Instant>; REG_TIMERS.len()],
    transmits: VecDeque<Outgoing>,
    events: VecDeque<RegEvent>,
}

impl Registration {
    /// Starts registering: the first REGISTER is queued at once. `seed` makes the Call-ID,
    /// tag, branches and cnonces unique: give each machine a different, unpredictable one.
    pub fn new(cfg: RegistrationConfig, seed: u64, now: Instant) -> Registration {
        let mut tokens = TokenSource { seed, counter: 0 };
        let call_id = tokens.hex(32);
        let from_tag = tokens.hex(16);
        let digest = DigestClient::new(Credentials {
            user: cfg.auth_user.clone(),
            password: cfg.password.clone(),
        });
        let mut reg = Registration {
            requested_expires: cfg.expires_secs.max(1),
            cfg,
            tokens,
            call_id,
            from_tag,
            cseq: 0,
            request: None,
            digest,
            phase: Phase::Registering,
            binding_until: None,
            failures: 0,
            timers: [None; REG_TIMERS.len()],
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        };
        reg.send_register(now, reg.requested_expires);
        reg
    }

    pub fn config(&self) -> &RegistrationConfig {
        &self.cfg
    }

    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// `sip:user@domain`: From and To of our REGISTERs, and what INVITEs we send are from.
    pub fn aor_uri(&self) -> String {
        format!("sip:{}@{}", self.cfg.aor_user, self.cfg.domain)
    }

    /// `sip:user@host:port[;transport=tcp]`: the Contact we register, and the one to use in
    /// INVITEs and their answers.
    pub fn contact_uri(&self) -> String {
        let transport = match self.cfg.transport {
            Transport::Udp => "",
            Transport::Tcp => ";transport=tcp",
        };
        format!("sip:{}@{}{transport}", self.cfg.aor_user, self.cfg.contact)
    }

    pub fn status(&self) -> RegStatus {
        match &self.phase {
            Phase::Registering | Phase::Registered => match self.binding_until {
                Some(until) => RegStatus::Registered { until },
                None => RegStatus::Registering,
            },
            Phase::Failed { reason, retry_at } => RegStatus::Failed {
                reason: reason.clone(),
                retry_at: *retry_at,
            },
            Phase::Unregistering => RegStatus::Unregistering,
            Phase::Unregistered => RegStatus::Unregistered,
        }
    }

    /// Until when the registrar holds our binding, as far as we know (calls can reach us).
    pub fn bound_until(&self) -> Option<Instant> {
        self.binding_until
    }

    /// Is this a response to one of our REGISTERs (Call-ID ours, CSeq method REGISTER)?
    /// Such responses belong here even when they answer an older request; the runtime routes
    /// them to [`Registration::handle_response`] and nowhere else.
    pub fn is_response_ours(&self, msg: &SipMessage) -> bool {
        !msg.is_request()
            && msg.header("call-id") == Some(self.call_id.as_str())
            && msg
                .header("cseq")
                .and_then(|c| c.split_whitespace().nth(1))
                .is_some_and(|m| m == "REGISTER")
    }

    /// A response arrived. Returns whether it was ours (see
    /// [`Registration::is_response_ours`]); retransmissions and answers to superseded
    /// requests are absorbed.
    pub fn handle_response(&mut self, msg: &SipMessage, now: Instant) -> bool {
        if !self.is_response_ours(msg) {
            return false;
        }
        let Some(status) = msg.status() else {
            return false;
        };
        let branch = msg
            .header_values("via")
            .first()
            .and_then(|v| Via::parse(v).ok())
            .and_then(|v| v.branch().map(str::to_string));
        let Some(request) = self.request.as_mut() else {
            return true;
        };
        if branch.as_deref() != Some(request.branch.as_str()) {
            return true;
        }
        let deliver = request.tx.on_response(now, status);
        let expires_sent = request.expires;
        self.drain_transaction(now);
        if !deliver || status < 200 {
            return true;
        }
        // The transaction lingers in Completed only to absorb retransmitted finals, which
        // the branch check above does as well.
        self.request = None;
        self.on_final_response(msg, status, expires_sent, now);
        true
    }

    /// The transport could not send our request (TCP connection refused, ICMP unreachable).
    pub fn handle_transport_error(&mut self, now: Instant) {
        if let Some(request) = self.request.as_mut() {
            request.tx.on_transport_error(now);
            self.drain_transaction(now);
        }
    }

    /// Fires whatever is due at `now`: transaction timers, refresh, retry, binding expiry.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(request) = self.request.as_mut() {
            request.tx.handle_timeout(now);
            self.drain_transaction(now);
        }
        let mut due: Vec<(Instant, RegTimer)> = REG_TIMERS
            .iter()
            .filter_map(|&t| self.timers[t as usize].map(|at| (at, t)))
            .filter(|(at, _)| *at <= now)
            .collect();
        due.sort_unstable();
        for (_, timer) in due {
            // A handler before may have cancelled or moved it.
            if self.timers[timer as usize].is_none_or(|at| at > now) {
                continue;
            }
            self.timers[timer as usize] = None;
            self.on_timer(timer, now);
        }
    }

    /// When [`Registration::handle_timeout`] is next due; `None` once unregistered.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let tx = self.request.as_ref().and_then(|r| r.tx.poll_timeout());
        self.timers.iter().flatten().copied().chain(tx).min()
    }

    pub fn poll_transmit(&mut self) -> Option<Outgoing> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<RegEvent> {
        self.events.pop_front()
    }

    /// Removes our binding (REGISTER with Expires: 0), once: any outcome ends in
    /// `Unregistered`. Nothing is sent when nothing can be bound.
    pub fn unregister(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Unregistering | Phase::Unregistered) {
            return;
        }
        let anything_bound = self.binding_until.is_some() || self.request.is_some();
        // A REGISTER still out is superseded: its answers no longer match a branch.
        self.request = None;
        self.timers = [None; REG_TIMERS.len()];
        if !anything_bound {
            self.finish_unregister(false);
            return;
        }
        self.phase = Phase::Unregistering;
        self.digest.on_accepted();
        self.send_register(now, 0);
    }

    fn on_timer(&mut self, timer: RegTimer, now: Instant) {
        match timer {
            RegTimer::Refresh if self.phase == Phase::Registered => {
                self.phase = Phase::Registering;
                self.send_register(now, self.requested_expires);
            }
            RegTimer::Retry if matches!(self.phase, Phase::Failed { .. }) => {
                self.phase = Phase::Registering;
                self.send_register(now, self.requested_expires);
            }
            RegTimer::BindingExpiry => {
                if self.binding_until.take().is_some() {
                    tracing::warn!(registrar = %self.cfg.registrar, "registration expired");
                    self.events.push_back(RegEvent::BindingExpired);
                }
            }
            RegTimer::Refresh | RegTimer::Retry => {}
        }
    }

    fn start_timer(&mut self, timer: RegTimer, now: Instant, after: Duration) {
        self.timers[timer as usize] = now.checked_add(after.max(MIN_INTERVAL));
    }

    /// Builds and sends a REGISTER asking for `expires` seconds, as a new transaction.
    fn send_register(&mut self, now: Instant, expires: u32) {
        self.cseq = self.cseq.wrapping_add(1);
        let branch = format!("{REGISTER_BRANCH_PREFIX}{}", self.tokens.hex(20));
        let cnonce = self.tokens.hex(16);
        let request_uri = format!("sip:{}", self.cfg.domain);
        let aor = self.aor_uri();
        let mut msg = SipMessage::new(StartLine::Request {
            method: "REGISTER".to_string(),
            uri: request_uri.clone(),
            version: "SIP/2.0".to_string(),
        });
        debug_assert!(branch.starts_with(MAGIC_COOKIE));
        msg.push_header(
            "Via",
            format!(
                "SIP/2.0/{} {};branch={branch};rport",
                self.cfg.transport.via_name(),
                self.cfg.contact
            ),
        );
        msg.push_header("Max-Forwards", MAX_FORWARDS.to_string());
        msg.push_header("From", format!("<{aor}>;tag={}", self.from_tag));
        msg.push_header("To", format!("<{aor}>"));
        msg.push_header("Call-ID", self.call_id.clone());
        msg.push_header("CSeq", format!("{} REGISTER", self.cseq));
        msg.push_header(
            "Contact",
            format!("<{}>;expires={expires}", self.contact_uri()),
        );
        msg.push_header("Expires", expires.to_string());
        if let Some((name, value)) = self.digest.authorization("REGISTER", &request_uri, &cnonce) {
            msg.push_header(name, value);
        }
        if !self.cfg.user_agent.is_empty() {
            msg.push_header("User-Agent", self.cfg.user_agent.clone());
        }
        let reliability = match self.cfg.transport {
            Transport::Udp => Reliability::Unreliable,
            Transport::Tcp => Reliability::Reliable,
        };
        let tx = ClientNonInvite::new(now, msg.to_bytes(), reliability, &self.cfg.timers);
        tracing::debug!(cseq = self.cseq, expires, "REGISTER");
        self.request = Some(InFlight {
            branch,
            expires,
            tx,
        });
        self.drain_transaction(now);
    }

    /// Moves what the transaction queued to our queues, and acts on its events.
    fn drain_transaction(&mut self, now: Instant) {
        let Some(request) = self.request.as_mut() else {
            return;
        };
        while let Some(bytes) = request.tx.poll_transmit() {
            self.transmits.push_back(Outgoing {
                to: self.cfg.registrar,
                transport: self.cfg.transport,
                bytes,
            });
        }
        let mut failure = None;
        let mut terminated = false;
        while let Some(event) = request.tx.poll_event() {
            match event {
                TxEvent::Timeout => failure = Some(RegFailure::Timeout),
                TxEvent::TransportError => failure = Some(RegFailure::TransportError),
                TxEvent::Terminated => terminated = true,
                TxEvent::SendTrying => {}
            }
        }
        if terminated {
            self.request = None;
        }
        if let Some(reason) = failure {
            self.request = None;
            self.on_failure(reason, None, now);
        }
    }

    fn on_final_response(
        &mut self,
        msg: &SipMessage,
        status: u16,
        expires_sent: u32,
        now: Instant,
    ) {
        match status {
            200..=299 => {
                self.digest.on_accepted();
                if self.phase == Phase::Unregistering {
                    self.finish_unregister(true);
                    return;
                }
                match self.granted_expiry(msg, expires_sent) {
                    0 => self.on_failure(RegFailure::NoBinding, None, now),
                    granted => self.on_registered(granted, now),
                }
            }
            401 | 407 => match self.digest.on_challenge(msg) {
                Ok(()) => self.send_register(now, expires_sent),
                Err(e) => self.on_failure(RegFailure::Auth(e), None, now),
            },
            423 => {
                self.digest.on_accepted();
                match header_u32(msg, "min-expires") {
                    Some(min) if expires_sent != 0 && min > expires_sent => {
                        self.requested_expires = min;
                        self.send_register(now, min);
                    }
                    _ => self.on_failure(RegFailure::IntervalTooBrief, retry_after(msg), now),
                }
            }
            _ => {
                self.digest.on_accepted();
                self.on_failure(RegFailure::Refused { status }, retry_after(msg), now);
            }
        }
    }

    /// The expiry a 2xx grants: the least of our Contact's `expires`, the `Expires` header
    /// and what we asked for (§10.2.4; a registrar may shorten, never lengthen).
    fn granted_expiry(&self, msg: &SipMessage, requested: u32) -> u32 {
        let contacts: Vec<NameAddr> = msg
            .header_values("contact")
            .into_iter()
            .filter_map(|v| NameAddr::parse(v).ok())
            .collect();
        // Ours, or the only one there (a registrar behind NAT handling may rewrite it).
        let ours = contacts
            .iter()
            .find(|c| self.is_our_contact(c))
            .or(match contacts.as_slice() {
                [only] => Some(only),
                _ => None,
            });
        let contact_expires = ours
            .and_then(|c| c.param("expires").flatten())
            .and_then(parse_u32);
        [Some(requested), header_u32(msg, "expires"), contact_expires]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(requested)
    }

    fn is_our_contact(&self, contact: &NameAddr) -> bool {
        let uri = &contact.uri;
        let ip = uri
            .host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>();
        uri.user_decoded().as_deref() == Some(self.cfg.aor_user.as_str())
            && ip == Ok(self.cfg.contact.ip())
            && uri.port.unwrap_or(5060) == self.cfg.contact.port()
    }

    fn on_registered(&mut self, granted_secs: u32, now: Instant) {
        let granted = Duration::from_secs(u64::from(granted_secs));
        self.binding_until = now.checked_add(granted);
        self.timers[RegTimer::BindingExpiry as usize] = self.binding_until;
        self.start_timer(RegTimer::Refresh, now, refresh_interval(granted));
        self.timers[RegTimer::Retry as usize] = None;
        self.phase = Phase::Registered;
        self.failures = 0;
        tracing::info!(registrar = %self.cfg.registrar, expires_secs = granted_secs, "registered");
        self.events
            .push_back(RegEvent::Registered { expires: granted });
    }

    fn on_failure(&mut self, reason: RegFailure, retry_after: Option<Duration>, now: Instant) {
        if self.phase == Phase::Unregistering {
            self.finish_unregister(false);
            return;
        }
        // A fresh start: the next attempt earns its own challenge.
        self.digest.forget();
        self.failures = self.failures.saturating_add(1);
        let delay = match retry_after {
            Some(after) => after.clamp(MIN_INTERVAL, MAX_RETRY_AFTER),
            None => backoff(self.failures),
        };
        self.start_timer(RegTimer::Retry, now, delay);
        self.timers[RegTimer::Refresh as usize] = None;
        let retry_at = self.timers[RegTimer::Retry as usize].unwrap_or(now);
        tracing::warn!(
            registrar = %self.cfg.registrar,
            %reason,
            retry_in_secs = delay.as_secs(),
            "registration failed"
        );
        self.phase = Phase::Failed {
            reason: reason.clone(),
            retry_at,
        };
        self.events.push_back(RegEvent::Failed {
            reason,
            retry_in: delay,
        });
    }

    fn finish_unregister(&mut self, confirmed: bool) {
        self.request = None;
        self.binding_until = None;
        self.timers = [None; REG_TIMERS.len()];
        self.phase = Phase::Unregistered;
        tracing::info!(registrar = %self.cfg.registrar, confirmed, "unregistered");
        self.events.push_back(RegEvent::Unregistered { confirmed });
    }
}

/// When to refresh a binding granted for `granted`: at half of it, and at least
/// [`REFRESH_MARGIN`] before it runs out (never sooner than [`MIN_INTERVAL`]).
pub fn refresh_interval(granted: Duration) -> Duration {
    (granted / 2)
        .min(granted.saturating_sub(REFRESH_MARGIN))
        .max(MIN_INTERVAL)
}

/// Wait before the next attempt after `failures` failures in a row: 5 s, 10 s, 20 s, … 5 min.
pub fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST_RETRY.saturating_mul(1 << doublings).min(MAX_RETRY)
}

fn parse_u32(s: &str) -> Option<u32> {
    let s = s.trim();
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn header_u32(msg: &SipMessage, name: &str) -> Option<u32> {
    msg.header(name).and_then(parse_u32)
}

/// `Retry-After: delta-seconds [comment] *(;param)` (RFC 3261 §20.33).
fn retry_after(msg: &SipMessage) -> Option<Duration> {
    let value = msg.header("retry-after")?.trim();
    let digits = value
        .find(|c: char| !c.is_ascii_digit())
        .map_or(value, |end| &value[..end]);
    parse_u32(digits).map(|secs| Duration::from_secs(u64::from(secs)))
}

#[cfg(test)]
mod tests;
