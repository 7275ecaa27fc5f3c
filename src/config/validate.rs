//! [`Config::validate`]: every problem at once, each naming its field and how to fix it.
//! [`Config::warnings`]: legal but probably not meant. [`Config::check_paths`]: files exist.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use super::net::{Host, HostPort};
use super::{Config, Transport, MAX_ASR_QUEUE_DEPTH};
use crate::sip::classify::Pattern;

/// Longest listening window: whisper hears at most 30 s at once.
pub const MAX_LISTEN_SECS: u32 = 30;
/// Upper bound for `screening.max_listen_secs`.
pub const MAX_MAX_LISTEN_SECS: u32 = 120;
/// Upper bound for `screening.message_secs`.
pub const MAX_MESSAGE_SECS: u32 = 300;
/// Upper bound for `screening.callee_choice_secs`.
pub const MAX_CALLEE_CHOICE_SECS: u32 = 60;
/// Smallest sensible message limit: a typical INVITE with SDP is 1–2 kB.
pub const MIN_MESSAGE_BYTES: usize = 1_024;
/// Largest message limit (TCP framing; bounds memory per connection).
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// One problem in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// `section.field`, or `section.field[i]` for a list entry.
    pub field: String,
    /// What is wrong, and how to fix it.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

pub(super) fn format_problems(problems: &[ConfigProblem]) -> String {
    let noun = if problems.len() == 1 {
        "problem"
    } else {
        "problems"
    };
    let mut out = format!("{} {noun} in the configuration:", problems.len());
    for p in problems {
        out.push_str(&format!("\n  {p}"));
    }
    out
}

#[derive(Default)]
struct Problems(Vec<ConfigProblem>);

impl Problems {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigProblem {
            field: field.into(),
            message: message.into(),
        });
    }
}

impl Config {
    /// Every problem that would stop scamscreen from running as configured.
    pub fn validate(&self) -> Result<(), Vec<ConfigProblem>> {
        let mut p = Problems::default();
        self.validate_sip(&mut p);
        self.validate_security(&mut p);
        self.validate_screening(&mut p);
        self.validate_log(&mut p);
        self.validate_admin(&mut p);
        self.validate_device(&mut p);
        if let Some(url) = &self.notify.webhook {
            let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
            if !scheme_ok || url.len() < 10 {
                p.push(
                    "notify.webhook",
                    format!("{url:?} is not an http:// or https:// URL"),
                );
            }
        }
        if p.0.is_empty() {
            Ok(())
        } else {
            Err(p.0)
        }
    }

    fn validate_device(&self, p: &mut Problems) {
        let d = &self.device;
        let Some(user) = &d.user else {
            return;
        };
        let token = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.!~*'()&=+$,;?/%".contains(c))
        };
        if !token(user) {
            p.push(
                "device.user",
                format!(
                    "{user:?}: give the IP phone's user name on the router (letters, digits, -_.)"
                ),
            );
        }
        if d.password.is_empty() {
            p.push(
                "device.password",
                "device mode needs the IP phone's password on the router",
            );
        }
        if let Some(a) = &d.auth_user {
            if !token(a) {
                p.push("device.auth_user", format!("{a:?} is not a SIP user name"));
            }
        }
        let dial_ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "*#+-_.".contains(c))
        };
        if !dial_ok(&d.callback) {
            p.push(
                "device.callback",
                format!(
                    "{:?}: give the internal number that rings the house (digits, * and #; \
                     Fritz!Box: **9 for every phone)",
                    d.callback
                ),
            );
        }
        if !(60..=86_400).contains(&d.expires_secs) {
            p.push(
                "device.expires_secs",
                format!("{} is outside 60..=86400", d.expires_secs),
            );
        }
        if self.sip.upstream_transport != Transport::Udp {
            p.push(
                "sip.upstream_transport",
                "device mode registers and calls over UDP: set \"udp\"",
            );
        }
        if self.screening.mode != super::ScreeningMode::Screen {
            p.push(
                "screening.mode",
                "device mode answers the calls the router sends: set \"screen\"",
            );
        }
    }

    fn validate_admin(&self, p: &mut Problems) {
        match self.admin.addr() {
            Err(e) => p.push("admin.listen", e),
            Ok(Some(addr)) if !addr.ip().is_loopback() => {
                let weak = self
                    .admin
                    .token
                    .as_deref()
                    .is_none_or(|t| t.trim().len() < 16);
                if weak {
                    p.push(
                        "admin.token",
                        format!(
                            "admin.listen {addr} is reachable from other machines: set a token of \
                             at least 16 characters (the call log holds transcripts)"
                        ),
                    );
                }
            }
            Ok(_) => {}
        }
    }

    fn validate_sip(&self, p: &mut Problems) {
        let sip = &self.sip;
        if sip.listen_udp.is_empty() && sip.listen_tcp.is_empty() {
            p.push(
                "sip.listen_udp",
                "no listen address: set listen_udp and/or listen_tcp, or pass --listen",
            );
        }
        match sip.upstream.as_deref().map(HostPort::parse) {
            None => p.push(
                "sip.upstream",
                "missing: the PBX to forward calls to (host:port), in the file or --upstream",
            ),
            Some(Err(e)) => p.push("sip.upstream", e.to_string()),
            Some(Ok(target)) => {
                if let Host::Ip(ip) = target.host {
                    if ip.is_unspecified() {
                        p.push("sip.upstream", format!("{ip} is not an address to send to"));
                    } else if self.upstream_is_self(ip, target.port_or(super::DEFAULT_SIP_PORT)) {
                        p.push(
                            "sip.upstream",
                            format!(
                                "{target} is scamscreen's own listen address: calls would loop"
                            ),
                        );
                    }
                }
            }
        }
        if let Some(adv) = &sip.advertised_host {
            match HostPort::parse(adv) {
                Err(e) => p.push("sip.advertised_host", e.to_string()),
                Ok(HostPort {
                    host: Host::Ip(ip), ..
                }) if ip.is_unspecified() => p.push(
                    "sip.advertised_host",
                    format!("{ip} cannot be reached: give the address peers send to"),
                ),
                Ok(_) => {}
            }
        }
        if sip.timer_t1_ms == 0 {
            p.push("sip.timer_t1_ms", "must be above 0 (RFC 3261 default 500)");
        }
        if sip.timer_t2_ms == 0 {
            p.push("sip.timer_t2_ms", "must be above 0 (RFC 3261 default 4000)");
        }
        if sip.timer_t4_ms == 0 {
            p.push("sip.timer_t4_ms", "must be above 0 (RFC 3261 default 5000)");
        }
        if sip.timer_t1_ms > sip.timer_t2_ms {
            p.push(
                "sip.timer_t1_ms",
                format!(
                    "T1 ({} ms) is above T2 ({} ms): retransmissions start at T1 and back off to T2",
                    sip.timer_t1_ms, sip.timer_t2_ms
                ),
            );
        }
        if !(MIN_MESSAGE_BYTES..=MAX_MESSAGE_BYTES).contains(&sip.max_message_bytes) {
            p.push(
                "sip.max_message_bytes",
                format!(
                    "{} is outside {MIN_MESSAGE_BYTES}..={MAX_MESSAGE_BYTES}",
                    sip.max_message_bytes
                ),
            );
        }
        if sip.tcp_idle_secs == 0 {
            p.push("sip.tcp_idle_secs", "must be above 0");
        }
        if sip.tcp_max_connections == 0 {
            p.push("sip.tcp_max_connections", "must be above 0");
        }
        if sip.tcp_max_per_source == 0 {
            p.push("sip.tcp_max_per_source", "must be above 0");
        } else if sip.tcp_max_per_source > sip.tcp_max_connections {
            p.push(
                "sip.tcp_max_per_source",
                format!(
                    "{} is above tcp_max_connections ({})",
                    sip.tcp_max_per_source, sip.tcp_max_connections
                ),
            );
        }
        if !(256..=MAX_MESSAGE_BYTES).contains(&sip.max_header_bytes) {
            p.push(
                "sip.max_header_bytes",
                format!(
                    "{} is outside 256..={MAX_MESSAGE_BYTES}",
                    sip.max_header_bytes
                ),
            );
        }
        if !(16..=1024).contains(&sip.max_headers) {
            p.push(
                "sip.max_headers",
                format!("{} is outside 16..=1024", sip.max_headers),
            );
        }
        if sip.upstream_probe_secs > 3600 {
            p.push(
                "sip.upstream_probe_secs",
                format!("{} is above 3600", sip.upstream_probe_secs),
            );
        }
        if sip.shutdown_grace_secs > 3600 {
            p.push(
                "sip.shutdown_grace_secs",
                format!("{} is above 3600 (an hour)", sip.shutdown_grace_secs),
            );
        }
        if sip.tcp_message_timeout_secs == 0 {
            p.push("sip.tcp_message_timeout_secs", "must be above 0");
        }
    }

    /// `ip:port` reaches one of our own sockets of the upstream transport.
    fn upstream_is_self(&self, ip: IpAddr, port: u16) -> bool {
        let listen = match self.sip.upstream_transport {
            Transport::Udp => &self.sip.listen_udp,
            Transport::Tcp => &self.sip.listen_tcp,
        };
        listen.iter().any(|l: &SocketAddr| {
            l.port() == port
                && (l.ip() == ip
                    || (l.ip().is_unspecified()
                        && ip.is_loopback()
                        && l.ip().is_ipv4() == ip.is_ipv4()))
        })
    }

    fn validate_security(&self, p: &mut Problems) {
        let sec = &self.security;
        if sec.trusted.is_empty() {
            p.push(
                "security.trusted",
                "empty: every peer would be refused. List the ITSP's signalling addresses and \
                 the PBX (\"192.0.2.10\", \"198.51.100.0/24\"), or pass --trust",
            );
        }
        if !(sec.rate_limit_per_sec.is_finite() && sec.rate_limit_per_sec > 0.0) {
            p.push(
                "security.rate_limit_per_sec",
                format!(
                    "{} is not a rate: give requests per second above 0",
                    sec.rate_limit_per_sec
                ),
            );
        }
        if sec.rate_limit_burst == 0 {
            p.push(
                "security.rate_limit_burst",
                "must be at least 1 (no request would pass)",
            );
        }
        if !(sec.trusted_rate_limit_per_sec.is_finite() && sec.trusted_rate_limit_per_sec >= 0.0) {
            p.push(
                "security.trusted_rate_limit_per_sec",
                "give requests per second, 0 or more (0 = unlimited)",
            );
        }
        if sec.rate_limit_sources == 0 {
            p.push("security.rate_limit_sources", "must be at least 1");
        }
    }

    fn validate_screening(&self, p: &mut Problems) {
        let s = &self.screening;
        for (list, patterns) in [("allow", &s.allow), ("deny", &s.deny)] {
            for (i, pattern) in patterns.iter().enumerate() {
                if let Err(e) = Pattern::parse(pattern) {
                    p.push(format!("screening.{list}[{i}]"), e.to_string());
                }
            }
        }
        if self
            .media
            .port_range()
            .is_none_or(|r| r.end() - r.start() < 3)
        {
            p.push(
                "media.rtp_ports",
                format!(
                    "{:?} is not a range FIRST-LAST of at least 4 ports (e.g. \"20000-20999\")",
                    self.media.rtp_ports
                ),
            );
        }
        if s.screening_timeout_ms == 0 {
            p.push("screening.screening_timeout_ms", "must be above 0");
        }
        if s.ring_secs == 0 {
            p.push("screening.ring_secs", "must be above 0");
        }
        if s.asr_queue_depth == 0 || s.asr_queue_depth > MAX_ASR_QUEUE_DEPTH {
            p.push(
                "screening.asr_queue_depth",
                format!("{} is outside 1..={MAX_ASR_QUEUE_DEPTH}", s.asr_queue_depth),
            );
        }
        if self.store.retention_days == 0 {
            p.push("store.retention_days", "must be at least 1 day");
        }
        if let (Some(w), Some(open)) = (s.when_unscreened, s.fail_open) {
            let same = matches!(
                (w, open),
                (super::WhenUnscreened::Allow, true) | (super::WhenUnscreened::Divert, false)
            );
            if !same {
                p.push(
                    "screening.fail_open",
                    format!(
                        "fail_open = {open} contradicts when_unscreened = \"{}\" (fail_open is its old name: set only when_unscreened)",
                        w.as_str()
                    ),
                );
            }
        }
        if s.listen_secs == 0 || s.listen_secs > MAX_LISTEN_SECS {
            p.push(
                "screening.listen_secs",
                format!("{} is outside 1..={MAX_LISTEN_SECS}", s.listen_secs),
            );
        }
        let too_short =
            (1..=MAX_LISTEN_SECS).contains(&s.listen_secs) && s.max_listen_secs < s.listen_secs;
        if too_short || s.max_listen_secs > MAX_MAX_LISTEN_SECS {
            p.push(
                "screening.max_listen_secs",
                format!(
                    "{} is outside listen_secs..={MAX_MAX_LISTEN_SECS} ({}..={MAX_MAX_LISTEN_SECS})",
                    s.max_listen_secs, s.listen_secs
                ),
            );
        }
        // (A bad listen_secs is reported once, above, not again through this one.)
        let listen_ok = (1..=MAX_LISTEN_SECS).contains(&s.listen_secs);
        if s.no_speech_secs == 0 || (listen_ok && s.no_speech_secs > s.listen_secs) {
            p.push(
                "screening.no_speech_secs",
                format!(
                    "{} is outside 1..=listen_secs (1..={})",
                    s.no_speech_secs, s.listen_secs
                ),
            );
        }
        if s.message_secs > MAX_MESSAGE_SECS {
            p.push(
                "screening.message_secs",
                format!("{} is outside 0..={MAX_MESSAGE_SECS}", s.message_secs),
            );
        }
        if s.callee_choice_secs == 0 || s.callee_choice_secs > MAX_CALLEE_CHOICE_SECS {
            p.push(
                "screening.callee_choice_secs",
                format!(
                    "{} is outside 1..={MAX_CALLEE_CHOICE_SECS}",
                    s.callee_choice_secs
                ),
            );
        }
        if let Some(code) = &s.bypass_code {
            let keys = code
                .chars()
                .all(|c| c.is_ascii_digit() || c == '*' || c == '#');
            if !keys || !(3..=16).contains(&code.len()) {
                p.push(
                    "screening.bypass_code",
                    format!("{code:?} is not 3 to 16 keys (0-9, *, #)"),
                );
            }
        }
        let in_range = |v: f64| v > 0.0 && v < 1.0;
        for (field, v) in [
            ("screening.warn_threshold", s.warn_threshold),
            ("screening.divert_threshold", s.divert_threshold),
        ] {
            if !in_range(v) {
                p.push(field, format!("{v} is not strictly between 0 and 1"));
            }
        }
        if s.warn_threshold > s.divert_threshold {
            p.push(
                "screening.warn_threshold",
                format!(
                    "{} is above divert_threshold {}: warn must not exceed divert",
                    s.warn_threshold, s.divert_threshold
                ),
            );
        }
        if !(0.0..=2.0).contains(&s.model_weight) {
            p.push(
                "screening.model_weight",
                format!("{} is outside 0..=2 (0 = rules only)", s.model_weight),
            );
        }
        if s.rules_dir.as_os_str().is_empty() {
            p.push(
                "screening.rules_dir",
                "empty: the folder of rule packs (<lang>.toml)",
            );
        }
        if s.model.as_ref().is_some_and(|m| m.as_os_str().is_empty()) {
            p.push(
                "screening.model",
                "empty: give a model file, or leave it out for the default",
            );
        }
        if let Some(uri) = &s.divert_uri {
            let lower = uri.trim().to_ascii_lowercase();
            let rest = lower
                .strip_prefix("sip:")
                .or_else(|| lower.strip_prefix("sips:"));
            if rest.is_none_or(|r| r.is_empty() || r.contains(char::is_whitespace)) {
                p.push(
                    "screening.divert_uri",
                    format!(
                        "{uri:?} is not a sip: or sips: URI (e.g. \"sip:voicemail@pbx.example\")"
                    ),
                );
            }
        }
        let supported = crate::call::language::SUPPORTED.join(", ");
        if !crate::call::language::SUPPORTED.contains(&s.language.as_str()) {
            p.push(
                "screening.language",
                format!(
                    "{:?} is not a language scamscreen can screen in (prompts and rules: {supported})",
                    s.language
                ),
            );
        }
        for (i, c) in s.called.iter().enumerate() {
            if let Err(e) = crate::sip::pattern::Pattern::parse(&c.number) {
                p.push(format!("screening.called[{i}].number"), e.to_string());
            }
            if !crate::call::language::SUPPORTED.contains(&c.language.as_str()) {
                p.push(
                    format!("screening.called[{i}].language"),
                    format!(
                        "{:?} is not a language scamscreen can screen in ({supported})",
                        c.language
                    ),
                );
            }
        }
    }

    fn validate_log(&self, p: &mut Problems) {
        const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
        let level = self.log.level.trim();
        let directive_ok = |d: &str| {
            let lvl = d.rsplit_once('=').map_or(
                d,
                |(target, lvl)| {
                    if target.trim().is_empty() {
                        ""
                    } else {
                        lvl
                    }
                },
            );
            LEVELS.contains(&lvl.trim().to_ascii_lowercase().as_str())
        };
        if level.is_empty() || !level.split(',').all(directive_ok) {
            p.push(
                "log.level",
                format!(
                    "{:?} is not a level ({}) or filter (\"scamscreen::sip=debug,info\")",
                    self.log.level,
                    LEVELS.join(", ")
                ),
            );
        }
    }

    /// Legal settings that are probably not meant; print them, do not refuse to start.
    pub fn warnings(&self) -> Vec<ConfigProblem> {
        let mut p = Problems::default();
        let sip = &self.sip;
        let wildcard = sip
            .listen_udp
            .iter()
            .chain(&sip.listen_tcp)
            .find(|a| a.ip().is_unspecified());
        if let (Some(addr), None) = (wildcard, &sip.advertised_host) {
            p.push(
                "sip.advertised_host",
                format!(
                    "not set while listening on {addr}: set it to the address peers reach \
                     scamscreen at, for Via and Record-Route"
                ),
            );
        }
        if let Some(net) = self.security.trusted.iter().find(|n| n.prefix_len() == 0) {
            p.push(
                "security.trusted",
                format!(
                    "{net} trusts every address: anyone may assert an identity \
                     (P-Asserted-Identity) and skip screening"
                ),
            );
        }
        // The upstream's own address needs no entry in `security.trusted`: the proxy always
        // trusts it (its requests are the PBX's).
        p.0
    }

    /// The rule folder and model file exist (relative paths are from the working directory).
    pub fn check_paths(&self) -> Vec<ConfigProblem> {
        let mut p = Problems::default();
        let s = &self.screening;
        if !s.rules_dir.as_os_str().is_empty() && !s.rules_dir.is_dir() {
            p.push(
                "screening.rules_dir",
                format!("{} is not a folder", s.rules_dir.display()),
            );
        }
        if let Some(model) = s.model.as_ref().filter(|m| !m.as_os_str().is_empty()) {
            if !model.is_file() {
                p.push(
                    "screening.model",
                    format!("{} is not a file", model.display()),
                );
            }
        }
        p.0
    }
}
