//! scamscreen in front of a real Asterisk 22 (chan_pjsip), configured with the project's
//! `dialplans/asterisk/` files (addresses and ports substituted only): the trunk caller
//! (127.0.0.2) calls scamscreen (127.0.0.1), which passes or screens the call and sends it to
//! Asterisk (127.0.0.1, its own port); Asterisk's dialplan reads the `X-Scamscreen-*`
//! headers and rings the phone (127.0.0.3) or takes the caller to voicemail.
//!
//! Needs `make peers` (the Asterisk build in target/peers).

mod common;

use common::asterisk::{display_name, Asterisk, Layout, Setup, PHONE_IP};
use common::pbx::{answered, phone_call};
use common::screening::{speech, Scamscreen, CALLER_IP, GREETING_MS};
use scamscreen::demo::{DemoCallee, DemoCaller};
use std::time::{Duration, Instant};

const LEGIT: &str = "Hello, this is Doctor Miller's dental office calling to confirm your \
                     appointment tomorrow at ten in the morning.";
const SCAM: &str = "This is Microsoft support. Your computer has a virus. Install TeamViewer \
                    now so we can fix it.";
const BORDERLINE: &str = "Hello, this is Microsoft. Your computer has a problem.";

/// scamscreen's settings for these tests: patient screening (a busy box must not turn a
/// verdict into `unscreened`), no upstream probes, `extra` appended to `[screening]`.
fn toml(screening: &str, sip: &str, ast_port: u16) -> String {
    let patient = if screening.contains("screening_timeout_ms") {
        ""
    } else {
        "screening_timeout_ms = 20000\n"
    };
    format!(
        "[sip]\nupstream_probe_secs = 0\n{sip}\n\
         [screening]\n{patient}\
         divert_uri = \"sip:scam-divert@127.0.0.1:{ast_port}\"\n{screening}\n"
    )
}

/// A phone, scamscreen with `settings`, and Asterisk between them.
struct Bench {
    phone: DemoCallee,
    ss: Scamscreen,
    ast: Asterisk,
}

fn bench(screening: &str, sip: &str, phone_key: Option<(char, Duration)>) -> Bench {
    let phone =
        DemoCallee::start_with_key(PHONE_IP, Duration::from_millis(300), phone_key).unwrap();
    let port = Setup::free_port();
    let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let ss = Scamscreen::start_with(upstream, 8, Some(&toml(screening, sip, port)));
    let ast = Asterisk::start(Setup {
        port,
        scamscreen: ss.sip,
        phone: phone.addr(),
        extensions: String::new(),
        pjsip: String::new(),
        layout: Layout::Inline,
        port2: 0,
    });
    Bench { phone, ss, ast }
}

fn screened_call(ss: &Scamscreen, name: &str, words: &str) -> DemoCaller {
    let mut caller = ss.dial(name);
    caller.silence(GREETING_MS).unwrap();
    caller.speak(&speech(words)).unwrap();
    caller
}

/// A caller with a number: scamscreen passes the INVITE through, Asterisk rings the phone,
/// and speech flows between caller and phone (media straight through Asterisk). Then a
/// legitimate withheld caller: screened, allowed, and Asterisk's dialplan reads the verdict
/// (the phone shows "Screened caller"); the phone hangs up.
#[test]
fn pass_through_and_allow_reach_the_phone_with_the_verdict() {
    let _cpu = common::cpu_heavy();
    let b = bench("", "", None);
    // Caller ID present: passed through, no screening.
    let mut caller =
        DemoCaller::invite_from(b.ss.sip, CALLER_IP, "numbered", None, Some("+4930123456"))
            .unwrap();
    answered(&mut caller, 10);
    let call = phone_call(&b.phone, &mut caller, 5, 0);
    assert!(call.scamscreen_headers.is_empty(), "{}", call.invite);
    assert!(call.invite.contains("4930123456"), "{}", call.invite);
    caller
        .speak(&speech("Hello, it is me, your neighbour."))
        .unwrap();
    caller.silence(500).unwrap();
    let heard = b.phone.calls().last().unwrap().audio.clone();
    let voiced = heard.iter().filter(|s| s.abs() > 500).count();
    assert!(
        voiced > 4000,
        "the phone heard {} samples, {voiced} voiced",
        heard.len()
    );
    caller.hang_up().unwrap();
    assert!(caller.bye_answered(), "{:?}", caller.sip_log());
    assert!(
        b.ss.calls().is_empty()
            || b.ss
                .calls()
                .iter()
                .all(|c| c["call_id"] != caller.call_id())
    );

    // Withheld, but its network asserts who it is (RFC 3325) from a trusted peer: scamscreen
    // believes the P-Asserted-Identity and passes the call through; Asterisk
    // (trust_id_inbound=yes) takes the number and keeps it private.
    let mut caller =
        DemoCaller::invite_asserted(b.ss.sip, CALLER_IP, "asserted", "sip:+4930555777@127.0.0.2")
            .unwrap();
    answered(&mut caller, 10);
    let line = b
        .ast
        .wait_log(&["test: to 100 from +4930555777"], Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no asserted number in Asterisk's log:\n{}", b.ast.log()));
    assert!(line.contains("prohib"), "{line}");
    caller.hang_up().unwrap();
    assert!(caller.bye_answered(), "{:?}", caller.sip_log());
    let screened = b.ss.calls();
    assert!(screened.is_empty(), "{screened:?}");

    // Withheld and legitimate: allowed; the dialplan labels the caller.
    let mut caller = screened_call(&b.ss, "dentist", LEGIT);
    let call = phone_call(&b.phone, &mut caller, 30, 2);
    assert_eq!(
        display_name(&call.invite),
        "Screened caller",
        "{}",
        call.invite
    );
    let line = b
        .ast
        .wait_log(&["scamscreen:", "verdict=allow"], Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no scamscreen line in Asterisk's log:\n{}", b.ast.log()));
    assert!(line.contains("caller=withheld"), "{line}");
    // The phone hangs up: the BYE reaches the caller through Asterisk and scamscreen.
    let id = call.call_id.clone();
    caller.silence(1000).unwrap();
    b.phone.hang_up(&id);
    assert!(
        caller.wait_for_bye(Duration::from_secs(10)).unwrap(),
        "the caller got no BYE: {:?}",
        caller.sip_log()
    );
    b.ss.assert_record(caller.call_id(), "allow", "connected");
}

/// A scam is diverted to Asterisk's `scam-divert` extension (voicemail): the phone never
/// rings, the message is in the mailbox. A borderline caller is warned: the phone shows
/// "SCAM WARNING", hears the warning, and presses 1 (RFC 4733 through Asterisk) to accept.
#[test]
fn divert_goes_to_voicemail_and_warn_asks_the_phone() {
    let _cpu = common::cpu_heavy();
    // The phone presses 1 during the warning (a key ends it early).
    let b = bench("", "", Some(('1', Duration::from_secs(4))));
    let mut caller = screened_call(&b.ss, "scam", SCAM);
    let line = dialplan_saw(
        &b.ast,
        &mut caller,
        &["scamscreen:", "to scam-divert", "verdict=divert"],
    );
    caller.silence(1500).unwrap();
    caller.hang_up().unwrap();
    assert!(line.contains("caller=withheld"), "{line}");
    assert!(b.phone.calls().is_empty(), "the phone rang for a scam");
    let rec = b.ss.record(caller.call_id());
    assert_eq!(rec["action"], "divert", "{rec}");
    assert!(
        b.ast.log().contains("VoiceMail(\"PJSIP/scamscreen")
            || !b.ast.voicemails("default", "100").is_empty(),
        "voicemail not reached:\n{}",
        b.ast.log()
    );

    let mut caller = screened_call(&b.ss, "borderline", BORDERLINE);
    let call = phone_call(&b.phone, &mut caller, 30, 0);
    assert!(
        display_name(&call.invite).starts_with("SCAM WARNING 0."),
        "{}",
        call.invite
    );
    caller.silence(6_000).unwrap();
    caller
        .speak(&speech("Please call me back on the office line."))
        .unwrap();
    caller.silence(500).unwrap();
    caller.hang_up().unwrap();
    let rec = b.ss.record(caller.call_id());
    assert_eq!(rec["action"], "warn", "{rec}");
    assert_eq!(
        rec["outcome"], "connected",
        "the phone's 1 accepted the call: {rec}"
    );
}

/// Wait until Asterisk's log has a line with all of `what`, the caller keeping its line
/// alive (silence) meanwhile.
fn dialplan_saw(ast: &Asterisk, caller: &mut DemoCaller, what: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(l) = ast.wait_log(what, Duration::ZERO) {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "no line with {what:?} in Asterisk's log:\n{}",
            ast.log()
        );
        caller.silence(200).unwrap();
    }
}

/// Whether Asterisk ran VoiceMail for a call from scamscreen.
fn voicemail_ran(ast: &Asterisk) -> bool {
    ast.log()
        .lines()
        .any(|l| l.contains("VoiceMail(\"PJSIP/scamscreen"))
}

/// `unscreened` (no verdict in time, `fail_open`) goes to voicemail by the dialplan, never
/// to the phone; so does a withheld caller in mark mode (headers on the caller's own INVITE,
/// no verdict); a silent caller with `silent_action = "allow"` rings with `verdict=silent`.
#[test]
fn unscreened_marked_and_silent_callers_follow_the_dialplan() {
    let _cpu = common::cpu_heavy();
    let b = bench("screening_timeout_ms = 1\nfail_open = true", "", None);
    let mut caller = screened_call(&b.ss, "unscreened", LEGIT);
    let line = dialplan_saw(&b.ast, &mut caller, &["scamscreen:", "verdict=unscreened"]);
    assert!(line.contains("reason=unscreened"), "{line}");
    caller.silence(3000).unwrap();
    assert!(voicemail_ran(&b.ast), "{}", b.ast.log());
    caller.hang_up().unwrap();
    assert!(
        b.phone.calls().is_empty(),
        "an unscreened caller rang the phone"
    );
    let rec = b.ss.record(caller.call_id());
    assert_eq!(rec["action"], "unscreened", "{rec}");
    drop(b);

    // Mark mode: no model, the caller's INVITE passed through with X-Scamscreen-Caller.
    let b = bench("mode = \"mark\"", "", None);
    let mut caller = DemoCaller::invite(b.ss.sip, CALLER_IP, "marked", None).unwrap();
    answered(&mut caller, 10);
    let line = dialplan_saw(
        &b.ast,
        &mut caller,
        &["scamscreen:", "caller=withheld", "verdict= "],
    );
    assert!(line.contains("reason=Privacy: id"), "{line}");
    caller.silence(2000).unwrap();
    assert!(voicemail_ran(&b.ast), "{}", b.ast.log());
    caller.hang_up().unwrap();
    assert!(caller.bye_answered(), "{:?}", caller.sip_log());
    assert!(b.phone.calls().is_empty(), "a marked caller rang the phone");
    drop(b);

    // A silent caller, let through as the setting says: the dialplan logs the verdict.
    let b = bench("silent_action = \"allow\"\nno_speech_secs = 1", "", None);
    let mut caller = b.ss.dial("silent");
    phone_call(&b.phone, &mut caller, 45, 0);
    dialplan_saw(&b.ast, &mut caller, &["scamscreen:", "verdict=silent"]);
    caller.hang_up().unwrap();
    let rec = b.ss.record(caller.call_id());
    assert_eq!(rec["action"], "silent", "{rec}");
}

/// TCP between scamscreen and Asterisk (sip.upstream_transport = "tcp"): the allowed call
/// reaches the phone and either side's BYE crosses the TCP leg.
#[test]
fn tcp_to_asterisk() {
    let _cpu = common::cpu_heavy();
    let b = bench("", "upstream_transport = \"tcp\"", None);
    let mut caller = screened_call(&b.ss, "tcp", LEGIT);
    let call = phone_call(&b.phone, &mut caller, 30, 0);
    assert_eq!(
        display_name(&call.invite),
        "Screened caller",
        "{}",
        call.invite
    );
    caller.silence(1000).unwrap();
    caller.hang_up().unwrap();
    assert!(caller.bye_answered(), "{:?}", caller.sip_log());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !b.phone.calls().last().is_some_and(|c| c.ended) {
        assert!(Instant::now() < deadline, "the phone got no BYE");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        b.ast
            .cli("pjsip show channels")
            .contains("No objects found")
            || !b.ast.cli("pjsip show channels").contains("scamscreen"),
    );
}

/// Hairpin (dialplans/asterisk/hairpin/): the trunk calls Asterisk; Asterisk sends only the
/// withheld callers to scamscreen (from its second socket), which screens them and sends them
/// back into `[from-scamscreen]`. A caller with a number rings the phone without scamscreen;
/// a legitimate withheld caller reaches the phone labelled "Screened caller"; a scam is
/// diverted to voicemail and the phone never rings.
///
/// Session timers (RFC 4028) on the way: the `scamscreen` endpoint has `timers=always` and
/// the smallest interval Asterisk allows (90 s). On leg A Asterisk is the UAC and offers
/// `Session-Expires`, which scamscreen accepts with Asterisk as refresher (§9); on leg B
/// scamscreen's INVITE does not support `timer`, so Asterisk as UAS refreshes there too.
/// Each refresh (UPDATE or re-INVITE at half the interval, leg B's from Asterisk's second
/// transport) must get a 2xx from scamscreen, or Asterisk ends the call: the dentist's call
/// lives through a refresh on each leg and still carries speech afterwards.
#[test]
fn hairpin_sends_only_withheld_callers_through_scamscreen() {
    let cpu = common::cpu_heavy();
    let phone = DemoCallee::start(PHONE_IP, Duration::from_millis(300)).unwrap();
    let (port, port2) = (Setup::free_port(), Setup::free_port());
    let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let ss = Scamscreen::start_with(upstream, 8, Some(&toml("", "", port)));
    let ast = Asterisk::start(Setup {
        port,
        port2,
        scamscreen: ss.sip,
        phone: phone.addr(),
        extensions: String::new(),
        // `(+)` adds to the first `[scamscreen]` section: the endpoint.
        pjsip: "[scamscreen](+)\ntimers=always\ntimers_min_se=90\ntimers_sess_expires=90\n"
            .to_string(),
        layout: Layout::Hairpin,
    });
    let endpoint = ast.cli("pjsip show endpoint scamscreen");
    assert!(
        endpoint
            .lines()
            .any(|l| l.trim_start().starts_with("timers ") && l.contains("always")),
        "{endpoint}"
    );
    assert!(ast.cli("pjsip set logger on").contains("nabled"));
    // A caller with a number: Asterisk rings the phone itself.
    let mut caller = DemoCaller::invite_from(
        ast.addr,
        CALLER_IP,
        "hp-numbered",
        None,
        Some("+4930123456"),
    )
    .unwrap();
    answered(&mut caller, 10);
    let call = phone_call(&phone, &mut caller, 5, 0);
    assert!(call.invite.contains("4930123456"), "{}", call.invite);
    caller.hang_up().unwrap();
    assert!(caller.bye_answered(), "{:?}", caller.sip_log());
    assert!(
        ss.calls().is_empty(),
        "scamscreen saw a caller with a number"
    );

    // Withheld and legitimate: through scamscreen and back, labelled.
    let mut caller = DemoCaller::invite(ast.addr, CALLER_IP, "hp-dentist", None).unwrap();
    answered(&mut caller, 10);
    caller.silence(GREETING_MS).unwrap();
    caller.speak(&speech(LEGIT)).unwrap();
    let call = phone_call(&phone, &mut caller, 30, 1);
    assert_eq!(
        display_name(&call.invite),
        "Screened caller",
        "{}",
        call.invite
    );
    dialplan_saw(&ast, &mut caller, &["scamscreen:", "verdict=allow"]);
    caller
        .speak(&speech("Please bring your insurance card."))
        .unwrap();
    caller.silence(500).unwrap();
    let heard = phone.calls()[1].audio.clone();
    let text = common::screening::transcribe(&heard);
    assert!(text.contains("insurance"), "the phone heard: {text}");
    // The session refreshes come 45 s after the answer; other tests use the model meanwhile.
    drop(cpu);
    let answered = Instant::now();
    let refreshed = loop {
        let r = refreshes(&ast.log(), ss.sip);
        if r.iter().filter(|r| r.answered == Some(200)).count() >= 2 {
            break r;
        }
        assert!(
            answered.elapsed() < Duration::from_secs(70) && !caller.got_bye(),
            "not two answered session refreshes: {r:?}; Asterisk's log:\n{}",
            ast.log()
        );
        caller.silence(500).unwrap();
    };
    for r in &refreshed {
        println!(
            "refresh: {} on {} ({}) answered {:?}",
            r.method, r.call_id, r.cseq, r.answered
        );
    }
    let legs: std::collections::HashSet<_> = refreshed.iter().map(|r| &r.call_id).collect();
    assert_eq!(legs.len(), 2, "a refresh on each leg: {refreshed:?}");
    assert!(
        refreshed.iter().all(|r| r.answered == Some(200)),
        "{refreshed:?}"
    );
    // Still up, still carrying speech.
    let before = phone.calls()[1].audio.len();
    caller.speak(&speech("See you tomorrow.")).unwrap();
    caller.silence(500).unwrap();
    let voiced = phone.calls()[1].audio[before..]
        .iter()
        .filter(|s| s.abs() > 500)
        .count();
    assert!(
        voiced > 2000,
        "after the refreshes the phone heard {voiced} voiced samples"
    );
    let _cpu = common::cpu_heavy();
    caller.hang_up().unwrap();
    assert!(caller.bye_answered(), "{:?}", caller.sip_log());
    let rec = ss.calls();
    assert_eq!(rec.len(), 1, "{rec:?}");
    assert_eq!(rec[0]["action"], "allow", "{rec:?}");

    // A scam: diverted to voicemail through the PBX, the phone stays quiet.
    let mut caller = DemoCaller::invite(ast.addr, CALLER_IP, "hp-scam", None).unwrap();
    caller.wait_final(Duration::from_secs(10)).unwrap();
    caller.silence(GREETING_MS).unwrap();
    caller.speak(&speech(SCAM)).unwrap();
    dialplan_saw(
        &ast,
        &mut caller,
        &["scamscreen:", "to scam-divert", "verdict=divert"],
    );
    caller.silence(3000).unwrap();
    assert!(voicemail_ran(&ast), "{}", ast.log());
    caller.hang_up().unwrap();
    assert_eq!(phone.calls().len(), 2, "the phone rang for a scam");
}

/// A session refresh Asterisk sent to scamscreen, as pjsip's logger printed it.
#[derive(Debug)]
struct Refresh {
    method: String,
    call_id: String,
    cseq: String,
    answered: Option<u16>,
}

/// In-dialog INVITEs and UPDATEs (a To tag) Asterisk sent to `to`, with the status of
/// the response it received for each (same Call-ID and CSeq).
fn refreshes(log: &str, to: std::net::SocketAddr) -> Vec<Refresh> {
    let blocks: Vec<&str> = log.split("<--- ").skip(1).collect();
    let header = |block: &str, name: &str| {
        block
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    let mut out: Vec<Refresh> = Vec::new();
    for block in &blocks {
        let mut lines = block.lines();
        let head = lines.next().unwrap_or_default();
        let first = lines.next().unwrap_or_default();
        if head.starts_with("Transmitting SIP request") && head.contains(&to.to_string()) {
            let method = first.split(' ').next().unwrap_or_default();
            if (method == "INVITE" || method == "UPDATE") && header(block, "To").contains("tag=") {
                out.push(Refresh {
                    method: method.to_string(),
                    call_id: header(block, "Call-ID"),
                    cseq: header(block, "CSeq"),
                    answered: None,
                });
            }
        } else if head.starts_with("Received SIP response") {
            let status = first.split(' ').nth(1).and_then(|s| s.parse().ok());
            let (id, cseq) = (header(block, "Call-ID"), header(block, "CSeq"));
            if let Some(r) = out
                .iter_mut()
                .find(|r| r.call_id == id && r.cseq == cseq && status >= Some(200))
            {
                r.answered = status;
            }
        }
    }
    out
}
