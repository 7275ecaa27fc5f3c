//! The `check-config` summary: the effective configuration, one concern a line. Allow and
//! deny lists are counted, not shown (they hold phone numbers).

use std::fmt;
use std::net::SocketAddr;

use super::Config;

fn addrs(list: &[SocketAddr]) -> String {
    if list.is_empty() {
        return "-".to_string();
    }
    list.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn patterns(n: usize) -> String {
    match n {
        1 => "1 pattern".to_string(),
        n => format!("{n} patterns"),
    }
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (sip, sec, s) = (&self.sip, &self.security, &self.screening);
        writeln!(
            f,
            "listen      udp {}; tcp {}",
            addrs(&sip.listen_udp),
            addrs(&sip.listen_tcp)
        )?;
        writeln!(
            f,
            "upstream    {} over {}; record-route {}; advertised {}",
            sip.upstream.as_deref().unwrap_or("(not set)"),
            sip.upstream_transport.as_str(),
            if sip.record_route { "on" } else { "off" },
            sip.advertised_host
                .as_deref()
                .unwrap_or("(the listen address)")
        )?;
        writeln!(
            f,
            "sip timers  T1 {} ms, T2 {} ms, T4 {} ms; messages up to {} bytes; TCP idle {} s",
            sip.timer_t1_ms,
            sip.timer_t2_ms,
            sip.timer_t4_ms,
            sip.max_message_bytes,
            sip.tcp_idle_secs
        )?;
        writeln!(
            f,
            "sip tcp     trusted sources only, at most {} connections ({} per source), a message within {} s",
            sip.tcp_max_connections, sip.tcp_max_per_source, sip.tcp_message_timeout_secs
        )?;
        let trusted = if sec.trusted.is_empty() {
            "(nobody)".to_string()
        } else {
            sec.trusted
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(
            f,
            "trusted     {trusted}; others: {}",
            match sec.untrusted {
                super::UntrustedAction::Reject => "reject (403)",
                super::UntrustedAction::Drop => "drop",
            }
        )?;
        writeln!(
            f,
            "rate limit  untrusted {}/s per source, burst {}, {} sources tracked; trusted {}",
            sec.rate_limit_per_sec,
            sec.rate_limit_burst,
            sec.rate_limit_sources,
            if sec.trusted_rate_limit_per_sec > 0.0 {
                format!("{}/s per source", sec.trusted_rate_limit_per_sec)
            } else {
                "unlimited".to_string()
            }
        )?;
        writeln!(
            f,
            "screening   {} callers by policy {}; trust P-Asserted-Identity {}; allow {}; deny {}",
            s.mode.as_str(),
            s.policy,
            if s.trust_asserted_identity {
                "yes"
            } else {
                "no"
            },
            patterns(s.allow.len()),
            patterns(s.deny.len())
        )?;
        writeln!(
            f,
            "media       RTP ports {}; prompts {}; ringback {}; call records {} (kept {} days)",
            self.media.rtp_ports,
            self.media.prompts_dir.display(),
            self.media.ringback.as_str(),
            self.store.db.display(),
            self.store.retention_days
        )?;
        writeln!(
            f,
            "verdicts    listen {} s; warn at {}, divert at {}, learned model weight {}; {}",
            s.listen_secs,
            s.warn_threshold,
            s.divert_threshold,
            s.model_weight,
            match s.when_unscreened() {
                super::WhenUnscreened::Allow => "when unscreened: allow (the call rings)",
                super::WhenUnscreened::Divert => "when unscreened: divert",
                super::WhenUnscreened::Refuse =>
                    "when unscreened: 503 before answering when the model cannot keep up (else allow)",
            }
        )?;
        writeln!(
            f,
            "listening   up to {} s while more speech could change the verdict; no speech for \
             {} s: re-prompt, then silent ({}); follow-up question {}; message offer {}; \
             callee choice {} s ({} without a key); bypass code {}; not screened from {} source(s)",
            s.max_listen_secs,
            s.no_speech_secs,
            s.silent_action.as_str(),
            if s.follow_up { "on" } else { "off" },
            if s.message_secs == 0 {
                "off".to_string()
            } else {
                format!("up to {} s", s.message_secs)
            },
            s.callee_choice_secs,
            match s.callee_default {
                super::CalleeDefault::Accept => "accept",
                super::CalleeDefault::Refuse => "refuse",
            },
            // Never the code itself: the summary goes into logs and tickets.
            if s.bypass_code.is_some() {
                "set"
            } else {
                "off"
            },
            s.skip_from.len()
        )?;
        writeln!(
            f,
            "divert to   {}",
            s.divert_uri
                .as_deref()
                .unwrap_or("(announcement, then hang up)")
        )?;
        if let Some(user) = &self.device.user {
            writeln!(
                f,
                "device      registers as {user} at {} (domain {}), asks {} s; rings the house at {}",
                self.sip.upstream.as_deref().unwrap_or("(sip.upstream unset)"),
                self.device
                    .domain
                    .as_deref()
                    .or(self.sip.upstream.as_deref())
                    .unwrap_or("-"),
                self.device.expires_secs,
                self.device.callback
            )?;
        }
        writeln!(
            f,
            "model       {}; rules {}; language {}{}; threads {}; {} screenings may wait, \
             verdict within {} ms",
            s.model
                .as_ref()
                .map_or("(installed default)".to_string(), |m| m
                    .display()
                    .to_string()),
            s.rules_dir.display(),
            s.language,
            s.called
                .iter()
                .map(|c| format!(", {} for calls to {}", c.language, c.number))
                .collect::<String>(),
            s.asr_threads,
            s.asr_queue_depth,
            s.screening_timeout_ms
        )?;
        write!(
            f,
            "log         {} as {}",
            self.log.level,
            self.log.format.as_str()
        )
    }
}
