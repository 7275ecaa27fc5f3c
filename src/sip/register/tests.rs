//! The registration machine on a virtual clock, against a scripted registrar.

use super::*;
use crate::sip::digest::Challenge;

const NONCE: &str = "4f3a9c2e1b";

fn config(expires_secs: u32, transport: Transport) -> RegistrationConfig {
    RegistrationConfig {
        registrar: "192.168.178.1:5060".parse().unwrap(),
        transport,
        domain: "fritz.box".to_string(),
        aor_user: "620".to_string(),
        auth_user: "scamscreen".to_string(),
        password: "secret".to_string(),
        expires_secs,
        contact: "192.168.178.20:5062".parse().unwrap(),
        user_agent: "scamscreen/0.1".to_string(),
        timers: TimerConfig::default(),
    }
}

/// A virtual clock that drives a [`Registration`] and records what it sends.
struct Clock {
    base: Instant,
    now: Instant,
}

impl Clock {
    fn new() -> Clock {
        let base = Instant::now();
        Clock { base, now: base }
    }

    fn ms(&self) -> u64 {
        u64::try_from((self.now - self.base).as_millis()).unwrap()
    }

    fn at(&self, ms: u64) -> Instant {
        self.base + Duration::from_millis(ms)
    }

    /// Runs to `until_ms`, firing every deadline on the way; what was sent, stamped in ms.
    /// Checks on every wake-up that the machine does not ask to be woken in the past.
    fn run_until(&mut self, reg: &mut Registration, until_ms: u64) -> Vec<(u64, SipMessage)> {
        let until = self.at(until_ms);
        let mut sent = self.sent(reg);
        let mut wakeups = 0;
        while let Some(deadline) = reg.poll_timeout() {
            if deadline > until {
                break;
            }
            wakeups += 1;
            assert!(wakeups < 10_000, "the machine keeps asking to be woken");
            self.now = deadline.max(self.now);
            reg.handle_timeout(self.now);
            assert_not_spinning(reg, self.now);
            sent.extend(self.sent(reg));
        }
        self.now = until.max(self.now);
        sent
    }

    /// What the machine queued, stamped now.
    fn sent(&self, reg: &mut Registration) -> Vec<(u64, SipMessage)> {
        let registrar = reg.config().registrar;
        std::iter::from_fn(|| reg.poll_transmit())
            .map(|out| {
                assert_eq!(out.to, registrar);
                (self.ms(), SipMessage::parse(&out.bytes).unwrap())
            })
            .collect()
    }

    /// Exactly one request queued now.
    fn one(&self, reg: &mut Registration) -> SipMessage {
        let mut sent = self.sent(reg);
        assert_eq!(sent.len(), 1, "{sent:?}");
        sent.remove(0).1
    }
}

fn assert_not_spinning(reg: &Registration, now: Instant) {
    if let Some(next) = reg.poll_timeout() {
        assert!(
            next > now,
            "asks to be woken at {next:?}, not after {now:?}"
        );
    }
}

fn events(reg: &mut Registration) -> Vec<RegEvent> {
    std::iter::from_fn(|| reg.poll_event()).collect()
}

/// The registrar's answer to `req`, with `extra` headers.
fn reply(req: &SipMessage, status: u16, extra: &[(&str, &str)]) -> SipMessage {
    let mut raw = format!("SIP/2.0 {status} Whatever\r\n");
    for via in req.header_lines("via") {
        raw.push_str(&format!("Via: {via};received=192.168.178.20\r\n"));
    }
    for name in ["From", "Call-ID", "CSeq"] {
        raw.push_str(&format!("{name}: {}\r\n", req.header(name).unwrap()));
    }
    raw.push_str(&format!("To: {};tag=pbx1\r\n", req.header("to").unwrap()));
    for (name, value) in extra {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    raw.push_str("Content-Length: 0\r\n\r\n");
    SipMessage::parse(raw.as_bytes()).unwrap()
}

fn challenge(nonce: &str, stale: bool) -> String {
    let stale = if stale { ", stale=true" } else { "" };
    format!(
        "Digest realm=\"fritz.box\", nonce=\"{nonce}\", qop=\"auth\", algorithm=MD5, \
         opaque=\"op\"{stale}"
    )
}

fn auth_param(req: &SipMessage, name: &str) -> Option<String> {
    let value = req.header("authorization")?;
    let start = value.find(&format!(" {name}="))? + name.len() + 2;
    let rest = &value[start..];
    let rest = rest.strip_prefix('"').unwrap_or(rest);
    let end = rest.find(['"', ',']).unwrap_or(rest.len());
    Some(rest[..end].to_string())
}

fn cseq(req: &SipMessage) -> u32 {
    req.header("cseq")
        .and_then(|c| c.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap()
}

fn branch(req: &SipMessage) -> String {
    Via::parse(req.header("via").unwrap())
        .unwrap()
        .branch()
        .unwrap()
        .to_string()
}

/// A machine registered for `granted` seconds at 0 ms (via 401 and credentials); returns the
/// authenticated REGISTER.
fn registered(clock: &Clock, granted: u32) -> (Registration, SipMessage) {
    let mut reg = Registration::new(config(3600, Transport::Udp), 7, clock.now);
    let first = clock.one(&mut reg);
    let c = challenge(NONCE, false);
    assert!(reg.handle_response(&reply(&first, 401, &[("WWW-Authenticate", &c)]), clock.now));
    let second = clock.one(&mut reg);
    let contact = format!("<sip:620@192.168.178.20:5062>;expires={granted}");
    assert!(reg.handle_response(&reply(&second, 200, &[("Contact", &contact)]), clock.now));
    assert_eq!(
        events(&mut reg),
        vec![RegEvent::Registered {
            expires: Duration::from_secs(u64::from(granted))
        }]
    );
    (reg, second)
}

#[test]
fn challenge_then_credentials_then_registered_then_refresh_at_half() {
    let mut clock = Clock::new();
    let mut reg = Registration::new(config(120, Transport::Udp), 7, clock.now);
    assert_eq!(reg.status(), RegStatus::Registering);
    let first = clock.one(&mut reg);
    assert_eq!(first.method(), Some("REGISTER"));
    assert_eq!(first.request_uri(), Some("sip:fritz.box"));
    assert!(branch(&first).starts_with(REGISTER_BRANCH_PREFIX));
    assert!(first.header("via").unwrap().ends_with(";rport"));
    assert_eq!(first.header("to"), Some("<sip:620@fritz.box>"));
    let from = first.header("from").unwrap().to_string();
    assert!(from.starts_with("<sip:620@fritz.box>;tag="), "{from}");
    assert_eq!(first.header("cseq"), Some("1 REGISTER"));
    assert_eq!(
        first.header("contact"),
        Some("<sip:620@192.168.178.20:5062>;expires=120")
    );
    assert_eq!(first.header("expires"), Some("120"));
    assert_eq!(first.header("max-forwards"), Some("70"));
    assert_eq!(first.header("user-agent"), Some("scamscreen/0.1"));
    assert_eq!(first.header("content-length"), Some("0"));
    assert_eq!(first.header("authorization"), None);

    clock.run_until(&mut reg, 100);
    let c = challenge(NONCE, false);
    assert!(reg.handle_response(&reply(&first, 401, &[("WWW-Authenticate", &c)]), clock.now));
    let second = clock.one(&mut reg);
    assert_eq!(second.header("call-id"), first.header("call-id"));
    assert_eq!(second.header("from"), Some(from.as_str()));
    assert_eq!(cseq(&second), 2);
    assert_ne!(branch(&second), branch(&first));
    // The Authorization value is exactly what the digest module computes.
    let cnonce = auth_param(&second, "cnonce").unwrap();
    let creds = Credentials {
        user: "scamscreen".into(),
        password: "secret".into(),
    };
    let expected =
        Challenge::parse(&c)
            .unwrap()
            .authorize("REGISTER", "sip:fritz.box", &creds, &cnonce, 1);
    assert_eq!(second.header("authorization"), Some(expected.as_str()));

    clock.run_until(&mut reg, 200);
    let ok = reply(
        &second,
        200,
        &[
            ("Contact", "<sip:other@192.168.178.30>;expires=3600"),
            ("Contact", "<sip:620@192.168.178.20:5062>;expires=120"),
        ],
    );
    assert!(reg.handle_response(&ok, clock.now));
    assert_eq!(
        reg.status(),
        RegStatus::Registered {
            until: clock.at(120_200)
        }
    );
    assert_eq!(reg.poll_timeout(), Some(clock.at(60_200)));
    // A retransmitted 200 changes nothing.
    assert!(reg.handle_response(&ok, clock.now));
    assert_eq!(events(&mut reg).len(), 1);

    assert!(clock.run_until(&mut reg, 60_199).is_empty());
    let refresh = clock.run_until(&mut reg, 60_200);
    assert_eq!(refresh.len(), 1);
    let refresh = &refresh[0].1;
    assert_eq!(cseq(refresh), 3);
    // The cached nonce is used again at once, counted.
    assert_eq!(auth_param(refresh, "nonce").as_deref(), Some(NONCE));
    assert_eq!(auth_param(refresh, "nc").as_deref(), Some("00000002"));
    assert!(matches!(reg.status(), RegStatus::Registered { .. }));
    // Granted 60 s by the Expires header this time (no Contact in the answer).
    assert!(reg.handle_response(&reply(refresh, 200, &[("Expires", "60")]), clock.now));
    assert_eq!(reg.poll_timeout(), Some(clock.at(90_200)));
}

#[test]
fn short_grants_refresh_five_seconds_early() {
    assert_eq!(
        refresh_interval(Duration::from_secs(3600)),
        Duration::from_secs(1800)
    );
    assert_eq!(
        refresh_interval(Duration::from_secs(8)),
        Duration::from_secs(3)
    );
    assert_eq!(refresh_interval(Duration::from_secs(4)), MIN_INTERVAL);
    let mut clock = Clock::new();
    let (mut reg, _) = registered(&clock, 8);
    let sent = clock.run_until(&mut reg, 3_000);
    assert_eq!(sent.iter().map(|s| s.0).collect::<Vec<_>>(), vec![3_000]);
}

#[test]
fn the_granted_expiry_is_the_least_of_contact_header_and_request() {
    let clock = Clock::new();
    let mut reg = Registration::new(config(600, Transport::Udp), 1, clock.now);
    let req = clock.one(&mut reg);
    let ok = reply(
        &req,
        200,
        &[
            ("Expires", "300"),
            ("Contact", "<sip:620@192.168.178.20:5062>;expires=400"),
        ],
    );
    reg.handle_response(&ok, clock.now);
    assert_eq!(reg.bound_until(), Some(clock.at(300_000)));
    // The registrar cannot lengthen what we asked for.
    let mut reg = Registration::new(config(600, Transport::Udp), 2, clock.now);
    let req = clock.one(&mut reg);
    let ok = reply(
        &req,
        200,
        &[("Contact", "<sip:620@192.168.178.20:5062>;expires=9000")],
    );
    reg.handle_response(&ok, clock.now);
    assert_eq!(reg.bound_until(), Some(clock.at(600_000)));
}

#[test]
fn interval_too_brief_retries_with_min_expires() {
    let mut clock = Clock::new();
    let mut reg = Registration::new(config(60, Transport::Udp), 3, clock.now);
    let first = clock.one(&mut reg);
    reg.handle_response(&reply(&first, 423, &[("Min-Expires", "1800")]), clock.now);
    let second = clock.one(&mut reg);
    assert_eq!(cseq(&second), 2);
    assert_eq!(second.header("expires"), Some("1800"));
    assert_eq!(
        second.header("contact"),
        Some("<sip:620@192.168.178.20:5062>;expires=1800")
    );
    // A registrar that still finds it too brief: a failure, not a loop.
    reg.handle_response(&reply(&second, 423, &[("Min-Expires", "1800")]), clock.now);
    assert!(clock.sent(&mut reg).is_empty());
    assert_eq!(
        reg.status(),
        RegStatus::Failed {
            reason: RegFailure::IntervalTooBrief,
            retry_at: clock.at(5_000)
        }
    );
    // The raised expiry is kept for later attempts.
    let retry = clock.run_until(&mut reg, 5_000);
    assert_eq!(retry[0].1.header("expires"), Some("1800"));
}

#[test]
fn a_wrong_password_backs_off_and_retries_later() {
    let mut clock = Clock::new();
    let mut reg = Registration::new(config(3600, Transport::Udp), 4, clock.now);
    let c = challenge(NONCE, false);
    let mut retry_times = Vec::new();
    let mut request = clock.one(&mut reg);
    for _ in 0..9 {
        assert_eq!(request.header("authorization"), None, "a fresh start");
        reg.handle_response(
            &reply(&request, 401, &[("WWW-Authenticate", &c)]),
            clock.now,
        );
        let with_credentials = clock.one(&mut reg);
        assert!(with_credentials.header("authorization").is_some());
        reg.handle_response(
            &reply(&with_credentials, 401, &[("WWW-Authenticate", &c)]),
            clock.now,
        );
        let RegStatus::Failed { reason, retry_at } = reg.status() else {
            panic!("{:?}", reg.status())
        };
        assert_eq!(reason, RegFailure::Auth(AuthError::Rejected));
        assert!(clock.sent(&mut reg).is_empty());
        let retry_ms = u64::try_from((retry_at - clock.now).as_millis()).unwrap();
        retry_times.push(retry_ms / 1000);
        // Nothing until the retry is due.
        let at = clock.ms() + retry_ms;
        assert!(clock.run_until(&mut reg, at - 1).is_empty());
        let mut sent = clock.run_until(&mut reg, at);
        assert_eq!(sent.len(), 1);
        request = sent.remove(0).1;
    }
    assert_eq!(retry_times, vec![5, 10, 20, 40, 80, 160, 300, 300, 300]);
    // Success resets the backoff.
    reg.handle_response(&reply(&request, 200, &[]), clock.now);
    assert!(matches!(reg.status(), RegStatus::Registered { .. }));
    let request = clock
        .run_until(&mut reg, clock.ms() + 1_800_000)
        .remove(0)
        .1;
    reg.handle_response(&reply(&request, 500, &[]), clock.now);
    let RegStatus::Failed { retry_at, .. } = reg.status() else {
        panic!()
    };
    assert_eq!(retry_at - clock.now, FIRST_RETRY);
}

#[test]
fn a_stale_nonce_is_answered_again() {
    let mut clock = Clock::new();
    let (mut reg, _) = registered(&clock, 60);
    let refresh = clock.run_until(&mut reg, 30_000).remove(0).1;
    let c = challenge("fresh", true);
    reg.handle_response(
        &reply(&refresh, 401, &[("WWW-Authenticate", &c)]),
        clock.now,
    );
    let again = clock.one(&mut reg);
    assert_eq!(auth_param(&again, "nonce").as_deref(), Some("fresh"));
    assert_eq!(auth_param(&again, "nc").as_deref(), Some("00000001"));
    reg.handle_response(&reply(&again, 200, &[]), clock.now);
    assert!(matches!(reg.status(), RegStatus::Registered { .. }));
}

#[test]
fn udp_retransmits_per_timer_e_and_times_out_at_64_t1() {
    let mut clock = Clock::new();
    let mut reg = Registration::new(config(3600, Transport::Udp), 5, clock.now);
    let sent = clock.run_until(&mut reg, 32_000);
    assert_eq!(
        sent.iter().map(|s| s.0).collect::<Vec<_>>(),
        vec![0, 500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500]
    );
    assert!(sent.iter().all(|s| s.1 == sent[0].1), "the same request");
    assert_eq!(
        reg.status(),
        RegStatus::Failed {
            reason: RegFailure::Timeout,
            retry_at: clock.at(37_000)
        }
    );
    let retry = clock.run_until(&mut reg, 37_000);
    assert_eq!(retry.len(), 1);
    assert_eq!(retry[0].0, 37_000);
    assert_eq!(cseq(&retry[0].1), 2);
}

#[test]
fn tcp_sends_once_and_times_out_at_64_t1() {
    let mut clock = Clock::new();
    let mut reg = Registration::new(config(3600, Transport::Tcp), 6, clock.now);
    let sent = clock.run_until(&mut reg, 36_000);
    assert_eq!(sent.len(), 1);
    assert!(sent[0].1.header("via").unwrap().starts_with("SIP/2.0/TCP "));
    assert_eq!(
        sent[0].1.header("contact"),
        Some("<sip:620@192.168.178.20:5062;transport=tcp>;expires=3600")
    );
    assert!(matches!(
        reg.status(),
        RegStatus::Failed {
            reason: RegFailure::Timeout,
            ..
        }
    ));
    // A refused connection fails at once.
    let mut reg = Registration::new(config(3600, Transport::Tcp), 6, clock.now);
    reg.handle_transport_error(clock.now);
    assert!(matches!(
        reg.status(),
        RegStatus::Failed {
            reason: RegFailure::TransportError,
            ..
        }
    ));
}

#[test]
fn provisional_responses_keep_the_request_going() {
    let mut clock = Clock::new();
    let mut reg = Registration::new(config(3600, Transport::Udp), 8, clock.now);
    let req = clock.one(&mut reg);
    assert!(reg.handle_response(&reply(&req, 100, &[]), clock.now));
    assert_eq!(reg.status(), RegStatus::Registering);
    // Proceeding: Timer E at T2.
    let sent = clock.run_until(&mut reg, 9_000);
    assert_eq!(
        sent.iter().map(|s| s.0).collect::<Vec<_>>(),
        vec![500, 4_500, 8_500]
    );
}

#[test]
fn service_unavailable_honours_retry_after() {
    let mut clock = Clock::new();
    let mut reg = Registration::new(config(3600, Transport::Udp), 9, clock.now);
    let req = clock.one(&mut reg);
    reg.handle_response(
        &reply(
            &req,
            503,
            &[("Retry-After", "120 (maintenance);duration=60")],
        ),
        clock.now,
    );
    assert_eq!(
        reg.status(),
        RegStatus::Failed {
            reason: RegFailure::Refused { status: 503 },
            retry_at: clock.at(120_000)
        }
    );
    assert_eq!(
        events(&mut reg),
        vec![RegEvent::Failed {
            reason: RegFailure::Refused { status: 503 },
            retry_in: Duration::from_secs(120)
        }]
    );
    assert!(clock.run_until(&mut reg, 119_999).is_empty());
    let req = clock.run_until(&mut reg, 120_000).remove(0).1;
    // Absurd values are capped; garbage falls back to the backoff.
    reg.handle_response(&reply(&req, 503, &[("Retry-After", "99999999")]), clock.now);
    let RegStatus::Failed { retry_at, .. } = reg.status() else {
        panic!()
    };
    assert_eq!(retry_at - clock.now, MAX_RETRY_AFTER);
    let req = clock.run_until(&mut reg, 120_000 + 3_600_000).remove(0).1;
    reg.handle_response(&reply(&req, 503, &[("Retry-After", "soon")]), clock.now);
    let RegStatus::Failed { retry_at, .. } = reg.status() else {
        panic!()
    };
    assert_eq!(retry_at - clock.now, backoff(3));
}

#[test]
fn unregister_sends_expires_zero_once() {
    let mut clock = Clock::new();
    let (mut reg, _) = registered(&clock, 3600);
    clock.run_until(&mut reg, 10_000);
    reg.unregister(clock.now);
    assert_eq!(reg.status(), RegStatus::Unregistering);
    let bye = clock.one(&mut reg);
    assert_eq!(bye.header("expires"), Some("0"));
    assert_eq!(
        bye.header("contact"),
        Some("<sip:620@192.168.178.20:5062>;expires=0")
    );
    assert_eq!(auth_param(&bye, "nc").as_deref(), Some("00000002"));
    reg.unregister(clock.now);
    assert!(clock.sent(&mut reg).is_empty(), "once");
    // A challenge is answered once more.
    let c = challenge("other", false);
    reg.handle_response(&reply(&bye, 401, &[("WWW-Authenticate", &c)]), clock.now);
    let bye2 = clock.one(&mut reg);
    assert_eq!(bye2.header("expires"), Some("0"));
    assert_eq!(auth_param(&bye2, "nonce").as_deref(), Some("other"));
    reg.handle_response(&reply(&bye2, 200, &[]), clock.now);
    assert_eq!(reg.status(), RegStatus::Unregistered);
    assert_eq!(reg.poll_timeout(), None);
    assert_eq!(reg.bound_until(), None);
    assert!(events(&mut reg).contains(&RegEvent::Unregistered { confirmed: true }));
    assert!(clock.run_until(&mut reg, 10_000_000).is_empty());
}

#[test]
fn unregister_without_an_answer_or_a_binding() {
    let mut clock = Clock::new();
    let (mut reg, _) = registered(&clock, 3600);
    reg.unregister(clock.now);
    let sent = clock.run_until(&mut reg, 40_000);
    assert_eq!(sent.len(), 11, "retransmitted, then Timer F");
    assert_eq!(reg.status(), RegStatus::Unregistered);
    assert!(events(&mut reg).contains(&RegEvent::Unregistered { confirmed: false }));
    // Never registered and nothing out: nothing to remove, nothing sent.
    let mut reg = Registration::new(config(3600, Transport::Udp), 10, clock.now);
    clock.run_until(&mut reg, clock.ms() + 36_000);
    assert!(matches!(reg.status(), RegStatus::Failed { .. }));
    reg.unregister(clock.now);
    assert!(clock.sent(&mut reg).is_empty());
    assert_eq!(reg.status(), RegStatus::Unregistered);
    // Still registering: the REGISTER may have bound us, so un-REGISTER.
    let mut reg = Registration::new(config(3600, Transport::Udp), 11, clock.now);
    let first = clock.one(&mut reg);
    reg.unregister(clock.now);
    let bye = clock.one(&mut reg);
    assert_eq!(bye.header("expires"), Some("0"));
    // The answer to the superseded REGISTER is absorbed.
    assert!(reg.handle_response(&reply(&first, 200, &[]), clock.now));
    assert_eq!(reg.status(), RegStatus::Unregistering);
}

#[test]
fn the_binding_expires_when_refreshes_fail() {
    let mut clock = Clock::new();
    let (mut reg, _) = registered(&clock, 60);
    // The refresh at 30 s and every retry go unanswered.
    clock.run_until(&mut reg, 59_999);
    assert!(reg.bound_until().is_some());
    clock.run_until(&mut reg, 60_000);
    assert_eq!(reg.bound_until(), None);
    assert!(events(&mut reg).contains(&RegEvent::BindingExpired));
}

#[test]
fn responses_are_routed_by_call_id_and_cseq_method() {
    let clock = Clock::new();
    let mut reg = Registration::new(config(3600, Transport::Udp), 12, clock.now);
    let req = clock.one(&mut reg);
    let ok = reply(&req, 200, &[]);
    assert!(reg.is_response_ours(&ok));
    let raw = String::from_utf8(ok.to_bytes().to_vec()).unwrap();
    let other_call = raw.replace(reg.call_id(), "someone-else");
    let other_method = raw.replace("1 REGISTER", "1 INVITE");
    for text in [other_call, other_method] {
        let msg = SipMessage::parse(text.as_bytes()).unwrap();
        assert!(!reg.is_response_ours(&msg));
        assert!(!reg.handle_response(&msg, clock.now));
    }
    assert!(
        !reg.handle_response(&req, clock.now),
        "a request is not a response"
    );
    assert_eq!(reg.status(), RegStatus::Registering);
}

#[test]
fn malformed_responses_do_not_panic() {
    let mut clock = Clock::new();
    let cases: &[(u16, &[(&str, &str)])] = &[
        (401, &[]),
        (401, &[("WWW-Authenticate", "Digest")]),
        (401, &[("WWW-Authenticate", "Digest realm=\"x")]),
        (401, &[("WWW-Authenticate", "Basic realm=\"x\"")]),
        (
            401,
            &[(
                "WWW-Authenticate",
                "Digest realm=x, nonce=y, algorithm=AKAv1-MD5",
            )],
        ),
        (
            407,
            &[("Proxy-Authenticate", "Digest realm=\"\u{e9}\", nonce=\"\\")],
        ),
        (423, &[]),
        (423, &[("Min-Expires", "-5")]),
        (423, &[("Min-Expires", "99999999999999")]),
        (200, &[("Contact", "<<garbage"), ("Expires", "x")]),
        (200, &[("Contact", "*")]),
        (
            200,
            &[("Contact", "<sip:620@192.168.178.20:5062>;expires=")],
        ),
        (200, &[("Expires", "0")]),
        (503, &[("Retry-After", "")]),
    ];
    for (i, (status, extra)) in cases.iter().enumerate() {
        let mut reg = Registration::new(config(3600, Transport::Udp), 100 + i as u64, clock.now);
        let req = clock.one(&mut reg);
        assert!(reg.handle_response(&reply(&req, *status, extra), clock.now));
        assert_not_spinning(&reg, clock.now);
        match (status, reg.status()) {
            (200, RegStatus::Registered { until }) => {
                assert_eq!(until, clock.now + Duration::from_secs(3600), "{extra:?}")
            }
            (200, RegStatus::Failed { reason, .. }) => {
                assert_eq!(reason, RegFailure::NoBinding, "{extra:?}")
            }
            (_, RegStatus::Failed { .. }) => {}
            (_, other) => panic!("{status} {extra:?}: {other:?}"),
        }
        clock.run_until(&mut reg, clock.ms() + 1);
    }
    // Responses lacking the headers matching needs are not ours, or ignored.
    let mut reg = Registration::new(config(3600, Transport::Udp), 200, clock.now);
    let call_id = reg.call_id().to_string();
    for raw in [
        format!("SIP/2.0 200 OK\r\nCall-ID: {call_id}\r\n\r\n"),
        format!("SIP/2.0 200 OK\r\nCall-ID: {call_id}\r\nCSeq: REGISTER\r\n\r\n"),
        format!("SIP/2.0 200 OK\r\nCall-ID: {call_id}\r\nCSeq: 1 REGISTER\r\n\r\n"),
        format!("SIP/2.0 200 OK\r\nVia: garbage\r\nCall-ID: {call_id}\r\nCSeq: 1 REGISTER\r\n\r\n"),
        "SIP/2.0 401 X\r\nWWW-Authenticate: Digest\r\n\r\n".to_string(),
    ] {
        let msg = SipMessage::parse(raw.as_bytes()).unwrap();
        reg.handle_response(&msg, clock.now);
        assert_eq!(reg.status(), RegStatus::Registering, "{raw:?}");
    }
}

#[test]
fn config_validation_reports_every_problem() {
    assert_eq!(config(3600, Transport::Udp).validate(), Ok(()));
    let mut bad = config(0, Transport::Udp);
    bad.domain = "fritz box".into();
    bad.aor_user = String::new();
    bad.auth_user = "a\nb".into();
    bad.contact = "0.0.0.0:5060".parse().unwrap();
    bad.user_agent = "x\r\nEvil: 1".into();
    assert_eq!(
        bad.validate(),
        Err(vec![
            RegisterConfigError::Domain,
            RegisterConfigError::AorUser,
            RegisterConfigError::AuthUser,
            RegisterConfigError::Expires,
            RegisterConfigError::Contact,
            RegisterConfigError::UserAgent,
        ])
    );
    assert!(!format!("{bad:?}").contains("secret"));
}

/// Property: whatever the registrar answers and whenever, after `handle_timeout(t)` the next
/// deadline is later than `t` (no spinning), and nothing panics.
#[test]
fn never_asks_to_be_woken_in_the_past() {
    for seed in 0..40u64 {
        let mut rng = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut next = move |n: u64| {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (rng >> 33) % n
        };
        let transport = if seed % 3 == 0 {
            Transport::Tcp
        } else {
            Transport::Udp
        };
        let mut clock = Clock::new();
        let mut reg = Registration::new(config(1 + next(200) as u32, transport), seed, clock.now);
        let mut last: Option<SipMessage> = None;
        for _ in 0..300 {
            for (_, msg) in clock.sent(&mut reg) {
                last = Some(msg);
            }
            match next(6) {
                0 | 1 => {
                    let until = clock.ms() + next(70_000);
                    for (_, msg) in clock.run_until(&mut reg, until) {
                        last = Some(msg);
                    }
                }
                2 => {
                    // Wake up at an arbitrary moment, early or late.
                    clock.now += Duration::from_millis(next(5_000));
                    reg.handle_timeout(clock.now);
                    assert_not_spinning(&reg, clock.now);
                }
                3 if next(20) == 0 => reg.unregister(clock.now),
                3 => reg.handle_transport_error(clock.now),
                _ => {
                    let Some(req) = &last else { continue };
                    let nonce = format!("n{}", next(3));
                    let c = challenge(&nonce, next(2) == 0);
                    let min = next(400).to_string();
                    let secs = next(100).to_string();
                    let contact = format!("<sip:620@192.168.178.20:5062>;expires={secs}");
                    let (status, extra): (u16, Vec<(&str, &str)>) = match next(12) {
                        0 => (100, vec![]),
                        1 => (200, vec![("Contact", &contact)]),
                        2 => (200, vec![("Expires", &secs)]),
                        3 => (401, vec![("WWW-Authenticate", &c)]),
                        4 => (407, vec![("Proxy-Authenticate", &c)]),
                        5 => (423, vec![("Min-Expires", &min)]),
                        6 => (503, vec![("Retry-After", &secs)]),
                        7 => (401, vec![("WWW-Authenticate", "Digest nonce")]),
                        8 => (403, vec![]),
                        9 => (302, vec![]),
                        10 => (408, vec![]),
                        _ => (600, vec![]),
                    };
                    reg.handle_response(&reply(req, status, &extra), clock.now);
                }
            }
            let _ = events(&mut reg);
            if reg.status() == RegStatus::Unregistered {
                assert_eq!(reg.poll_timeout(), None);
                reg = Registration::new(config(60, transport), seed + 1000, clock.now);
            }
        }
    }
}
