//! Fuzz device mode's registration client and its digest authentication with what a router
//! (or anyone who can reach the socket) may answer.
//!
//! The input is split at the first NUL: the first part is a response template in which
//! `@CALLID@`, `@BRANCH@` and `@CSEQ@` are replaced with the REGISTER last sent (so the
//! fuzzer reaches the paths of a response that matches), the second the text of a
//! `WWW-Authenticate` value. Each byte of the tail also advances the virtual clock.
//!
//! Properties checked: nothing panics; after `handle_timeout(t)` the machine never asks to be
//! woken at or before `t` (a timer that stays due spins the core); a REGISTER it sends parses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scamscreen::sip::digest::{Challenge, Credentials};
use scamscreen::sip::msg::SipMessage;
use scamscreen::sip::proxy::Transport;
use scamscreen::sip::register::{Registration, RegistrationConfig};
use scamscreen::sip::transaction::TimerConfig;
use std::time::{Duration, Instant};

fn config() -> RegistrationConfig {
    RegistrationConfig {
        registrar: "192.0.2.1:5060".parse().unwrap(),
        transport: Transport::Udp,
        domain: "fritz.box".into(),
        aor_user: "620".into(),
        auth_user: "620".into(),
        password: "secret".into(),
        expires_secs: 600,
        contact: "192.0.2.20:5060".parse().unwrap(),
        user_agent: "scamscreen-fuzz".into(),
        timers: TimerConfig::default(),
    }
}

fuzz_target!(|data: &[u8]| {
    let (template, rest) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let challenge_text = String::from_utf8_lossy(rest);
    if let Ok(ch) = Challenge::parse(&challenge_text) {
        let creds = Credentials {
            user: "620".into(),
            password: "secret".into(),
        };
        let _ = ch.authorize("REGISTER", "sip:fritz.box", &creds, "0a4f113b", 1);
    }
    let mut now = Instant::now();
    let mut reg = Registration::new(config(), 7, now);
    let template = String::from_utf8_lossy(template).to_string();
    for round in 0..4u64 {
        let mut last = None;
        while let Some(out) = reg.poll_transmit() {
            let sent = SipMessage::parse(&out.bytes).expect("our REGISTER parses");
            last = Some(sent);
        }
        if let Some(sent) = &last {
            let branch = sent
                .header("via")
                .and_then(|v| v.split("branch=").nth(1))
                .map(|b| b.split(';').next().unwrap_or(b).to_string())
                .unwrap_or_default();
            let cseq = sent.header("cseq").unwrap_or_default().to_string();
            let text = template
                .replace("@CALLID@", reg.call_id())
                .replace("@BRANCH@", &branch)
                .replace("@CSEQ@", &cseq);
            if let Ok(msg) = SipMessage::parse(text.as_bytes()) {
                if reg.is_response_ours(&msg) {
                    reg.handle_response(&msg, now);
                }
            }
        }
        while reg.poll_event().is_some() {}
        let step = rest.get(round as usize).copied().unwrap_or(200);
        now += Duration::from_millis(u64::from(step) * 250 + 1);
        if reg.poll_timeout().is_some_and(|t| t <= now) {
            reg.handle_timeout(now);
            assert!(
                reg.poll_timeout().is_none_or(|t| t > now),
                "a timer stays due after handle_timeout"
            );
        }
    }
    reg.unregister(now);
    while reg.poll_transmit().is_some() {}
});
