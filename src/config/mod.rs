//! Configuration: `scamscreen.toml`. `scamscreen.example.toml` at the repository root shows
//! every option with its unit and default.
//!
//! [`Config::load`] only parses (unknown fields are errors that name the field and its line);
//! [`Config::apply`] lays the command-line flags over the file; [`Config::validate`] then lists
//! every problem at once, before a socket is bound. Every default is a named constant below.

mod net;
mod summary;
mod validate;

#[cfg(test)]
mod tests;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use crate::asr::cpu::ThreadPolicy;
use crate::detect::score::Thresholds;
pub use crate::detect::score::{DEFAULT_DIVERT_THRESHOLD, DEFAULT_WARN_THRESHOLD};
pub use crate::sip::classify::ScreeningPolicy;
use crate::sip::classify::{ClassifyRules, PatternError, PatternList};
pub use net::{parse_trusted_net, Host, HostPort, HostPortError, NetError};
pub use validate::ConfigProblem;

/// The SIP port, for listen addresses and an upstream given without a port.
pub const DEFAULT_SIP_PORT: u16 = 5060;
/// Listen address for UDP and TCP: every IPv4 interface, port 5060.
pub const DEFAULT_LISTEN_ADDR: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, DEFAULT_SIP_PORT));
pub const DEFAULT_UPSTREAM_TRANSPORT: Transport = Transport::Udp;
pub const DEFAULT_RECORD_ROUTE: bool = true;
/// RFC 3261 T1: round-trip time estimate.
pub const DEFAULT_TIMER_T1_MS: u64 = 500;
/// RFC 3261 T2: longest retransmit interval for non-INVITE requests and INVITE responses.
pub const DEFAULT_TIMER_T2_MS: u64 = 4_000;
/// RFC 3261 T4: longest time a message stays in the network.
pub const DEFAULT_TIMER_T4_MS: u64 = 5_000;
/// Largest SIP message accepted (the TCP framing limit; a UDP datagram cannot be larger).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 65_535;
/// An idle TCP connection is closed after this long.
pub const DEFAULT_TCP_IDLE_SECS: u64 = 300;
/// Accepted TCP connections at once, all sources together.
pub const DEFAULT_TCP_MAX_CONNECTIONS: usize = 1024;
/// Accepted TCP connections one source address may hold.
pub const DEFAULT_TCP_MAX_PER_SOURCE: usize = 32;
/// A SIP message begun on TCP must be complete within this long.
pub const DEFAULT_TCP_MESSAGE_TIMEOUT_SECS: u64 = 10;
/// Longest header field (name and value) passed on.
pub const DEFAULT_MAX_HEADER_BYTES: usize = crate::sip::proxy::DEFAULT_MAX_HEADER_BYTES;
/// Most header fields in a message passed on.
pub const DEFAULT_MAX_HEADERS: usize = crate::sip::proxy::DEFAULT_MAX_HEADERS;
/// Probe the upstream with OPTIONS this often (0: never).
pub const DEFAULT_UPSTREAM_PROBE_SECS: u64 = 5;
/// After SIGTERM, calls in progress may go on this long before they are ended.
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 45;

pub const DEFAULT_UNTRUSTED: UntrustedAction = UntrustedAction::Reject;
/// Token-bucket refill per source IP.
pub const DEFAULT_RATE_LIMIT_PER_SEC: f64 = 50.0;
/// Token-bucket size per source IP.
pub const DEFAULT_RATE_LIMIT_BURST: u32 = 100;
/// How many source IPs the rate limiter tracks at most (bounded memory).
pub const DEFAULT_RATE_LIMIT_SOURCES: usize = 10_000;
/// Trusted peers (the trunk, the PBX) are not rate limited unless this is set.
pub const DEFAULT_TRUSTED_RATE_LIMIT_PER_SEC: f64 = 0.0;

pub const DEFAULT_POLICY: ScreeningPolicy = ScreeningPolicy::Withheld;
pub const DEFAULT_TRUST_ASSERTED_IDENTITY: bool = true;
/// How long the caller is heard at most.
pub const DEFAULT_LISTEN_SECS: u32 = 8;
pub const DEFAULT_RULES_DIR: &str = "models/rules";
/// A call that cannot be screened rings (a home user must not lose the dentist's call).
pub const DEFAULT_WHEN_UNSCREENED: WhenUnscreened = WhenUnscreened::Allow;

/// `screening.when_unscreened`: a call that cannot be screened (the speech model failed, is
/// saturated or cannot meet the deadline).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum WhenUnscreened {
    /// Ring the callee, marked `X-Scamscreen-Verdict: unscreened`.
    #[serde(rename = "allow")]
    Allow,
    /// Divert it like a scam.
    #[serde(rename = "divert")]
    Divert,
    /// Refuse a withheld INVITE with 503 + Retry-After before it is answered when the model
    /// cannot screen it in time, so a dispatcher fails over to another node; a call already
    /// answered that still goes unscreened rings (as `allow`).
    #[serde(rename = "503")]
    Refuse,
}

impl WhenUnscreened {
    pub fn as_str(self) -> &'static str {
        match self {
            WhenUnscreened::Allow => "allow",
            WhenUnscreened::Divert => "divert",
            WhenUnscreened::Refuse => "503",
        }
    }
}
pub const DEFAULT_LANGUAGE: &str = "en";

pub const DEFAULT_LOG_LEVEL: &str = "info";
pub const DEFAULT_LOG_FORMAT: LogFormat = LogFormat::Text;

/// `scamscreen.toml`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub sip: SipConfig,
    pub security: SecurityConfig,
    pub screening: ScreeningConfig,
    pub media: MediaConfig,
    pub store: StoreConfig,
    pub log: LogConfig,
    pub admin: AdminConfig,
    pub notify: NotifyConfig,
    pub run: RunConfig,
    pub device: DeviceConfig,
}

/// Device mode (`[device]`): scamscreen registers to a home router's PBX (sip.upstream) as
/// an IP phone, screens the calls the router sends it, and rings the house by calling an
/// internal number back through the router. On when `user` is set.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeviceConfig {
    /// The IP phone's user name on the router (a Fritz!Box shows it as "Benutzername", e.g.
    /// `620`); also scamscreen's caller ID on the calls it places to the house.
    pub user: Option<String>,
    pub password: String,
    /// Digest user name, when the router wants another than `user`.
    pub auth_user: Option<String>,
    /// The router's SIP domain (`fritz.box`); default: sip.upstream's host.
    pub domain: Option<String>,
    /// Registration time asked for, in seconds (refreshed at about half of what is granted).
    pub expires_secs: u32,
    /// The internal number scamscreen calls to ring the house (Fritz!Box: `**9` rings every
    /// phone, `**610` one DECT handset, or an internal group).
    pub callback: String,
}

pub const DEFAULT_DEVICE_EXPIRES_SECS: u32 = 600;

impl Default for DeviceConfig {
    fn default() -> Self {
        DeviceConfig {
            user: None,
            password: String::new(),
            auth_user: None,
            domain: None,
            expires_secs: DEFAULT_DEVICE_EXPIRES_SECS,
            callback: "**9".into(),
        }
    }
}

impl std::fmt::Debug for DeviceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceConfig")
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .field("auth_user", &self.auth_user)
            .field("domain", &self.domain)
            .field("expires_secs", &self.expires_secs)
            .field("callback", &self.callback)
            .finish()
    }
}

impl DeviceConfig {
    /// Whether device mode is on.
    pub fn enabled(&self) -> bool {
        self.user.is_some()
    }
}

/// The running process (`[run]`).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// A file `run` writes its process id into (and removes when it stops); `scamscreen
    /// reload` signals that process (SIGHUP) instead of calling the admin server.
    pub pidfile: Option<PathBuf>,
}

/// Notifications (`[notify]`).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    /// `http://…` or `https://…`: a JSON event is POSTed for warn, divert and silent calls.
    pub webhook: Option<String>,
    /// Leave the transcript and the matched words out of the event.
    pub redact: bool,
}

/// The admin HTTP server (`[admin]`): metrics, health, the call log page.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9060";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// `ADDR:PORT`, or `off`.
    pub listen: String,
    /// Required when `listen` is not a loopback address: `Authorization: Bearer TOKEN` for
    /// `/metrics` and the API, a login form for the page. `/healthz` is always open.
    pub token: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: DEFAULT_ADMIN_LISTEN.to_string(),
            token: None,
        }
    }
}

impl AdminConfig {
    /// The address to listen on (`None`: off; `Err`: not an address).
    pub fn addr(&self) -> Result<Option<SocketAddr>, String> {
        let l = self.listen.trim();
        if l.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        l.parse()
            .map(Some)
            .map_err(|_| format!("{l:?} is not ADDR:PORT or \"off\""))
    }

    /// Whether the listen address is the built-in default (a clash there is a warning, not
    /// an error: several instances on one box, tests).
    pub fn is_default(&self) -> bool {
        self.listen.trim() == DEFAULT_ADMIN_LISTEN
    }
}

/// What happens to a caller `policy` says to screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScreeningMode {
    /// Answer, listen, transcribe, then allow, warn or divert (the product).
    #[default]
    Screen,
    /// Forward with `X-Scamscreen-Caller: withheld` and let the PBX decide (no model needed).
    Mark,
}

impl ScreeningMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ScreeningMode::Screen => "screen",
            ScreeningMode::Mark => "mark",
        }
    }
}

pub const DEFAULT_RTP_PORTS: &str = "20000-20999";
pub const DEFAULT_PROMPTS_DIR: &str = "models/prompts";
pub const DEFAULT_SCREENING_TIMEOUT_MS: u64 = 3_000;
pub const DEFAULT_RING_SECS: u64 = 60;
/// Waiting screenings: ~0.45 s of whisper each on 2 cores, so 16 waiting ones are ~7 s of
/// work; those that cannot finish within `screening_timeout_ms` time out (fail_open) and
/// are skipped unrun, so a deep queue costs no CPU, only a later "unscreened".
pub const DEFAULT_ASR_QUEUE_DEPTH: usize = 16;
pub const DEFAULT_EARLY_VERDICT: bool = true;
pub const DEFAULT_SECOND_PASS: bool = true;
pub const DEFAULT_MAX_LISTEN_SECS: u32 = 30;
pub const DEFAULT_NO_SPEECH_SECS: u32 = 5;
pub const DEFAULT_FOLLOW_UP: bool = false;
pub const DEFAULT_SILENT_ACTION: SilentAction = SilentAction::Divert;
pub const DEFAULT_MESSAGE_SECS: u32 = 60;
pub const DEFAULT_CALLEE_CHOICE_SECS: u32 = 8;
pub const DEFAULT_CALLEE_DEFAULT: CalleeDefault = CalleeDefault::Accept;

/// `screening.silent_action`: what a caller who says nothing gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SilentAction {
    /// To `divert_uri` when set, else the block announcement.
    Divert,
    /// The block announcement (and the message offer).
    Block,
    /// Ring the callee, marked `X-Scamscreen-Verdict: silent`.
    Allow,
}

impl SilentAction {
    pub fn as_str(self) -> &'static str {
        match self {
            SilentAction::Divert => "divert",
            SilentAction::Block => "block",
            SilentAction::Allow => "allow",
        }
    }
}

/// `screening.callee_default`: a warned callee who presses no key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CalleeDefault {
    Accept,
    Refuse,
}
/// Upper bound for `screening.asr_queue_depth`.
pub const MAX_ASR_QUEUE_DEPTH: usize = 1_024;

/// `[media]`: RTP for screened calls.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// `FIRST-LAST` UDP port range for RTP (two even ports per screened call).
    pub rtp_ports: String,
    /// Address for RTP sockets and our SDP; default: the SIP advertised address.
    pub media_ip: Option<std::net::IpAddr>,
    /// Folder of prompt WAVs (`greeting.wav`, `block.wav`); missing ones are made with
    /// espeak-ng at start.
    pub prompts_dir: PathBuf,
    /// What the caller hears while the callee rings: `us`, `eu`, `uk` or `silence`.
    pub ringback: crate::media::tones::Ringback,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            rtp_ports: DEFAULT_RTP_PORTS.to_string(),
            media_ip: None,
            prompts_dir: PathBuf::from(DEFAULT_PROMPTS_DIR),
            ringback: crate::media::tones::Ringback::default(),
        }
    }
}

impl MediaConfig {
    /// The parsed port range.
    pub fn port_range(&self) -> Option<std::ops::RangeInclusive<u16>> {
        let (a, b) = self.rtp_ports.split_once('-')?;
        let (a, b): (u16, u16) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
        (a > 0 && a < b).then_some(a..=b)
    }
}

pub const DEFAULT_DB: &str = "scamscreen-calls.db";
pub use crate::store::DEFAULT_RETENTION_DAYS;

/// `[store]`: call records (they hold transcripts: personal data).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    pub db: PathBuf,
    pub retention_days: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            db: PathBuf::from(DEFAULT_DB),
            retention_days: DEFAULT_RETENTION_DAYS,
        }
    }
}

/// `[sip]`: where to listen and where to forward.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SipConfig {
    #[serde(deserialize_with = "net::deserialize_socket_addrs")]
    pub listen_udp: Vec<SocketAddr>,
    #[serde(deserialize_with = "net::deserialize_socket_addrs")]
    pub listen_tcp: Vec<SocketAddr>,
    /// `host:port` of the PBX: the only forwarding target. Required for `run`.
    pub upstream: Option<String>,
    pub upstream_transport: Transport,
    pub record_route: bool,
    /// `host` or `host:port` written into Via and Record-Route; default the listen address.
    pub advertised_host: Option<String>,
    pub timer_t1_ms: u64,
    pub timer_t2_ms: u64,
    pub timer_t4_ms: u64,
    pub max_message_bytes: usize,
    pub tcp_idle_secs: u64,
    pub tcp_max_connections: usize,
    pub tcp_max_per_source: usize,
    pub tcp_message_timeout_secs: u64,
    pub shutdown_grace_secs: u64,
    pub upstream_probe_secs: u64,
    pub max_header_bytes: usize,
    pub max_headers: usize,
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            listen_udp: vec![DEFAULT_LISTEN_ADDR],
            listen_tcp: vec![DEFAULT_LISTEN_ADDR],
            upstream: None,
            upstream_transport: DEFAULT_UPSTREAM_TRANSPORT,
            record_route: DEFAULT_RECORD_ROUTE,
            advertised_host: None,
            timer_t1_ms: DEFAULT_TIMER_T1_MS,
            timer_t2_ms: DEFAULT_TIMER_T2_MS,
            timer_t4_ms: DEFAULT_TIMER_T4_MS,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            tcp_idle_secs: DEFAULT_TCP_IDLE_SECS,
            tcp_max_connections: DEFAULT_TCP_MAX_CONNECTIONS,
            tcp_max_per_source: DEFAULT_TCP_MAX_PER_SOURCE,
            tcp_message_timeout_secs: DEFAULT_TCP_MESSAGE_TIMEOUT_SECS,
            shutdown_grace_secs: DEFAULT_SHUTDOWN_GRACE_SECS,
            upstream_probe_secs: DEFAULT_UPSTREAM_PROBE_SECS,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_headers: DEFAULT_MAX_HEADERS,
        }
    }
}

impl SipConfig {
    /// The upstream, parsed; `None` when unset or unparsable ([`Config::validate`] says which).
    pub fn upstream_target(&self) -> Option<HostPort> {
        HostPort::parse(self.upstream.as_deref()?).ok()
    }

    /// The advertised address, parsed; `None` when unset or unparsable.
    pub fn advertised(&self) -> Option<HostPort> {
        HostPort::parse(self.advertised_host.as_deref()?).ok()
    }

    pub fn timer_t1(&self) -> Duration {
        Duration::from_millis(self.timer_t1_ms)
    }

    pub fn timer_t2(&self) -> Duration {
        Duration::from_millis(self.timer_t2_ms)
    }

    pub fn timer_t4(&self) -> Duration {
        Duration::from_millis(self.timer_t4_ms)
    }

    pub fn tcp_idle(&self) -> Duration {
        Duration::from_secs(self.tcp_idle_secs)
    }
}

/// Transport towards the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

/// `[security]`: who may talk to us, and how fast.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// Peers (the ITSP's signalling addresses, the PBX) whose requests are served. A bare IP
    /// is a /32 or /128.
    #[serde(deserialize_with = "net::deserialize_nets")]
    pub trusted: Vec<IpNet>,
    pub untrusted: UntrustedAction,
    pub rate_limit_per_sec: f64,
    pub rate_limit_burst: u32,
    pub rate_limit_sources: usize,
    /// Requests per second per trusted source (burst: twice that); 0 = unlimited.
    pub trusted_rate_limit_per_sec: f64,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            trusted: Vec::new(),
            untrusted: DEFAULT_UNTRUSTED,
            rate_limit_per_sec: DEFAULT_RATE_LIMIT_PER_SEC,
            rate_limit_burst: DEFAULT_RATE_LIMIT_BURST,
            rate_limit_sources: DEFAULT_RATE_LIMIT_SOURCES,
            trusted_rate_limit_per_sec: DEFAULT_TRUSTED_RATE_LIMIT_PER_SEC,
        }
    }
}

impl SecurityConfig {
    /// `ip` is inside one of the trusted networks.
    pub fn is_trusted(&self, ip: std::net::IpAddr) -> bool {
        self.trusted.iter().any(|n| n.contains(&ip))
    }
}

/// What happens to a request from an address that is not trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UntrustedAction {
    /// Answer 403 Forbidden.
    Reject,
    /// Say nothing (scanners learn less).
    Drop,
}

impl UntrustedAction {
    pub fn as_str(self) -> &'static str {
        match self {
            UntrustedAction::Reject => "reject",
            UntrustedAction::Drop => "drop",
        }
    }
}

/// `[screening]`: who is screened and what the verdicts mean.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScreeningConfig {
    pub policy: ScreeningPolicy,
    pub trust_asserted_identity: bool,
    /// Patterns (see [`crate::sip::classify::Pattern`]) passed through unscreened.
    pub allow: Vec<String>,
    /// Patterns diverted without screening; deny wins over allow.
    pub deny: Vec<String>,
    pub listen_secs: u32,
    pub warn_threshold: f64,
    pub divert_threshold: f64,
    /// How much the learned model (`linear.model` in the rules folder) counts beside the
    /// rules: 0 = rules only, 1 = default (see `detect::score::Combined`).
    pub model_weight: f64,
    pub rules_dir: PathBuf,
    /// ggml whisper model; `None` for the installed default.
    pub model: Option<PathBuf>,
    /// What a call that cannot be screened gets; `None`: `fail_open`, else the default.
    pub when_unscreened: Option<WhenUnscreened>,
    /// The old name of `when_unscreened`: true = "allow", false = "divert".
    pub fail_open: Option<bool>,
    /// Where diverted calls go (`sip:` or `sips:` URI); `None`: announcement, then BYE.
    pub divert_uri: Option<String>,
    /// Language of callers (whisper, the rule pack and the prompts) unless a `called` entry
    /// names another for the number called.
    pub language: String,
    /// Language per called number (first match wins).
    pub called: Vec<CalledLanguage>,
    /// Hear an open verdict (a warning, or one more speech could change) again with the
    /// multilingual model, within `screening_timeout_ms`; on English calls that model also
    /// detects a caller who does not speak English. Used when the multilingual model exists.
    pub second_pass: bool,
    /// The multilingual whisper model for calls in a language `model` cannot hear (German
    /// with tiny.en); `None`: `models/ggml-base-q8_0.bin` in the models folder.
    pub multilingual_model: Option<PathBuf>,
    /// `screen` (answer and listen) or `mark` (forward marked, the PBX decides).
    pub mode: ScreeningMode,
    /// Most time from the end of the caller's speech to a verdict before `fail_open` applies.
    pub screening_timeout_ms: u64,
    /// Most time the callee may ring after screening.
    pub ring_secs: u64,
    /// Screenings that may wait for the speech model while it is busy; beyond that a call
    /// is `unscreened` at once. Waiting ones still get a verdict or time out.
    pub asr_queue_depth: usize,
    /// CPU threads per transcription: `"auto"` (as many as cores are free of other work
    /// right now, see [`crate::asr::cpu`]) or a number.
    #[serde(deserialize_with = "deserialize_threads")]
    pub asr_threads: ThreadPolicy,
    /// While the caller still speaks, transcribe what they said so far (only when the
    /// model is idle) and divert at once if that is already a confident scam verdict.
    pub early_verdict: bool,
    /// Most seconds of listening while the caller keeps talking and more speech could
    /// change the action (a recorded message is heard to its point).
    pub max_listen_secs: u32,
    /// Seconds without any speech after the greeting before the re-prompt (then `silent`).
    pub no_speech_secs: u32,
    /// Ask one follow-up question when the first answer leaves the verdict open.
    pub follow_up: bool,
    pub silent_action: SilentAction,
    /// Longest message a blocked caller may leave (0: no message offer).
    pub message_secs: u32,
    /// Seconds a warned callee has to press 1 (accept) or 2 (refuse).
    pub callee_choice_secs: u32,
    pub callee_default: CalleeDefault,
    /// Digits a caller keys during the greeting to be put through at once (off when unset).
    pub bypass_code: Option<String>,
    /// Sources (IP or CIDR) whose withheld calls are passed through unscreened.
    #[serde(deserialize_with = "net::deserialize_nets")]
    pub skip_from: Vec<IpNet>,
}

impl ScreeningConfig {
    /// `when_unscreened`, or what its old name `fail_open` says, or the default.
    pub fn when_unscreened(&self) -> WhenUnscreened {
        match (self.when_unscreened, self.fail_open) {
            (Some(w), _) => w,
            (None, Some(true)) => WhenUnscreened::Allow,
            (None, Some(false)) => WhenUnscreened::Divert,
            (None, None) => DEFAULT_WHEN_UNSCREENED,
        }
    }
}

impl Default for ScreeningConfig {
    fn default() -> Self {
        ScreeningConfig {
            policy: DEFAULT_POLICY,
            trust_asserted_identity: DEFAULT_TRUST_ASSERTED_IDENTITY,
            allow: Vec::new(),
            deny: Vec::new(),
            listen_secs: DEFAULT_LISTEN_SECS,
            warn_threshold: DEFAULT_WARN_THRESHOLD,
            divert_threshold: DEFAULT_DIVERT_THRESHOLD,
            model_weight: crate::detect::score::DEFAULT_MODEL_WEIGHT,
            rules_dir: PathBuf::from(DEFAULT_RULES_DIR),
            model: None,
            when_unscreened: None,
            fail_open: None,
            divert_uri: None,
            language: DEFAULT_LANGUAGE.to_string(),
            called: Vec::new(),
            second_pass: DEFAULT_SECOND_PASS,
            multilingual_model: None,
            mode: ScreeningMode::Screen,
            screening_timeout_ms: DEFAULT_SCREENING_TIMEOUT_MS,
            ring_secs: DEFAULT_RING_SECS,
            asr_queue_depth: DEFAULT_ASR_QUEUE_DEPTH,
            asr_threads: ThreadPolicy::auto(),
            early_verdict: DEFAULT_EARLY_VERDICT,
            max_listen_secs: DEFAULT_MAX_LISTEN_SECS,
            no_speech_secs: DEFAULT_NO_SPEECH_SECS,
            follow_up: DEFAULT_FOLLOW_UP,
            silent_action: DEFAULT_SILENT_ACTION,
            message_secs: DEFAULT_MESSAGE_SECS,
            callee_choice_secs: DEFAULT_CALLEE_CHOICE_SECS,
            callee_default: DEFAULT_CALLEE_DEFAULT,
            bypass_code: None,
            skip_from: Vec::new(),
        }
    }
}

impl ScreeningConfig {
    pub fn listen(&self) -> Duration {
        Duration::from_secs(u64::from(self.listen_secs))
    }

    pub fn thresholds(&self) -> Thresholds {
        Thresholds {
            warn: self.warn_threshold,
            divert: self.divert_threshold,
        }
    }

    /// The rules for [`crate::sip::classify::classify_caller`].
    pub fn classify_rules(&self) -> Result<ClassifyRules, PatternError> {
        Ok(ClassifyRules {
            policy: self.policy,
            trust_asserted_identity: self.trust_asserted_identity,
            allow: PatternList::parse(&self.allow)?,
            deny: PatternList::parse(&self.deny)?,
        })
    }
}

/// `[[screening.called]]`: calls to numbers matching `number` (a pattern as in `allow`) are
/// held in `language`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalledLanguage {
    pub number: String,
    pub language: String,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A level (`trace` … `error`, `off`) or a filter such as `scamscreen::sip=debug,info`.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: DEFAULT_LOG_LEVEL.to_string(),
            format: DEFAULT_LOG_FORMAT,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// A configuration that could not be read, or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "config file {} not found (start from scamscreen.example.toml)",
        path.display()
    )]
    NotFound { path: PathBuf },
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}:{line}:{column}: {message}")]
    Parse {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{}", validate::format_problems(.0))]
    Invalid(Vec<ConfigProblem>),
}

/// Command-line flags that replace the file's values.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Overrides {
    /// `--listen`: replaces both `listen_udp` and `listen_tcp`.
    pub listen: Vec<SocketAddr>,
    /// `--upstream`.
    pub upstream: Option<String>,
    /// `--trust`: replaces `trusted`.
    pub trust: Vec<IpNet>,
    /// `--mode`.
    pub mode: Option<ScreeningMode>,
    /// `--rtp-ports`.
    pub rtp_ports: Option<String>,
    /// `--divert-uri`.
    pub divert_uri: Option<String>,
    /// `--db`.
    pub db: Option<PathBuf>,
    /// `--admin`.
    pub admin: Option<String>,
}

impl Config {
    /// Read and parse `path`. Does not validate (flags may still fill in what is missing).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let src = std::fs::read_to_string(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ConfigError::NotFound {
                    path: path.to_path_buf(),
                }
            } else {
                ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
        let mut cfg = Self::parse(&src, &path.display().to_string())?;
        if let Some(dir) = path.parent() {
            cfg.resolve_paths(&src, dir);
        }
        Ok(cfg)
    }

    /// Relative paths written in the file are relative to the file's folder (so a config in
    /// `/etc/scamscreen` may say `rules_dir = "../../usr/share/scamscreen/rules"`, and the same
    /// tree works unpacked anywhere). Paths the file does not set keep their defaults, which
    /// are relative to the working folder, as are paths given as flags.
    fn resolve_paths(&mut self, src: &str, dir: &Path) {
        let Ok(table) = src.parse::<toml::Table>() else {
            return;
        };
        let written = |section: &str, key: &str| {
            table
                .get(section)
                .and_then(|v| v.as_table())
                .is_some_and(|t| t.contains_key(key))
        };
        let fix = |p: &mut PathBuf| {
            if p.is_relative() && !p.as_os_str().is_empty() {
                *p = dir.join(&*p);
            }
        };
        if written("screening", "rules_dir") {
            fix(&mut self.screening.rules_dir);
        }
        if written("screening", "model") {
            if let Some(m) = self.screening.model.as_mut() {
                fix(m);
            }
        }
        if written("screening", "multilingual_model") {
            if let Some(m) = self.screening.multilingual_model.as_mut() {
                fix(m);
            }
        }
        if written("media", "prompts_dir") {
            fix(&mut self.media.prompts_dir);
        }
        if written("store", "db") {
            fix(&mut self.store.db);
        }
        if written("run", "pidfile") {
            if let Some(p) = self.run.pidfile.as_mut() {
                fix(p);
            }
        }
    }

    /// Parse TOML text; errors name the file as `<config>`.
    pub fn from_toml_str(src: &str) -> Result<Config, ConfigError> {
        Self::parse(src, "<config>")
    }

    fn parse(src: &str, file: &str) -> Result<Config, ConfigError> {
        toml::from_str(src).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|s| line_column(src, s.start))
                .unwrap_or((0, 0));
            ConfigError::Parse {
                file: file.to_string(),
                line,
                column,
                message: e.message().trim_end().to_string(),
            }
        })
    }

    /// Lay command-line flags over the file's values; a flag replaces, it does not add.
    pub fn apply(&mut self, overrides: Overrides) {
        if !overrides.listen.is_empty() {
            self.sip.listen_udp = overrides.listen.clone();
            self.sip.listen_tcp = overrides.listen;
        }
        if let Some(upstream) = overrides.upstream {
            self.sip.upstream = Some(upstream);
        }
        if !overrides.trust.is_empty() {
            self.security.trusted = overrides.trust;
        }
        if let Some(m) = overrides.mode {
            self.screening.mode = m;
        }
        if let Some(p) = overrides.rtp_ports {
            self.media.rtp_ports = p;
        }
        if let Some(d) = overrides.divert_uri {
            self.screening.divert_uri = Some(d);
        }
        if let Some(db) = overrides.db {
            self.store.db = db;
        }
        if let Some(a) = overrides.admin {
            self.admin.listen = a;
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(src: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(src.len());
    while !src.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// serde: `"auto"` or a thread count.
fn deserialize_threads<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ThreadPolicy, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Threads {
        Count(i64),
        Word(String),
    }
    let text = match Threads::deserialize(d)? {
        Threads::Count(n) => n.to_string(),
        Threads::Word(w) => w,
    };
    ThreadPolicy::parse(&text).map_err(serde::de::Error::custom)
}
