//! scamscreen in front of a real FreeSWITCH 1.10, configured from its vanilla configuration
//! with the project's `dialplans/freeswitch/` files applied as dialplans/README.md says
//! (`external-profile.xml`'s params in the stock external profile, `00_scamscreen.xml`
//! included at the top of the stock public.xml; addresses and ports substituted only): the
//! trunk caller (127.0.0.2) calls scamscreen (127.0.0.1), which passes or screens the call
//! and sends it to FreeSWITCH (127.0.0.4); the snippet reads the `X-Scamscreen-*` headers and
//! the public context rings a phone (127.0.0.3) or takes the caller to voicemail.
//!
//! The hairpin files (`dialplans/freeswitch/hairpin/`: the "scamscreen" sofia profile,
//! `hairpin.xml` included right after `00_scamscreen.xml`) are installed in every run; they
//! act only on calls that do not come from scamscreen's address, so the other scenarios pass
//! through them. In (i) the trunk caller calls FreeSWITCH directly, and FreeSWITCH sends
//! only withheld callers to scamscreen and back.
//!
//! One FreeSWITCH for all scenarios (it takes a few seconds to start); each scenario has its
//! own dialled number and phone, and its own scamscreen when it needs other settings. A
//! failing scenario does not stop the others; the test fails at the end with each failure
//! and FreeSWITCH's dialplan log of that scenario.
//!
//! Needs `make peers` (the FreeSWITCH build in target/peers). While working on it:
//! `PBX_FS_ONLY=c,h` runs only those scenarios; `PBX_FS_KEEP_LOG=1` keeps FreeSWITCH's log
//! (SIP trace included) in the temp folder even when everything passed.

mod common;

use common::freeswitch::{Dialled, FreeSwitch, PHONE_IP};
use common::pbx::{answered, phone_call};
use common::screening::{speech, transcribe, Scamscreen, CALLER_IP, GREETING_MS};
use scamscreen::demo::{header, CalleeCall, DemoCallee, DemoCaller};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

const LEGIT: &str = "Hello, this is Doctor Miller's dental office calling to confirm your \
                     appointment tomorrow at ten in the morning.";
const SCAM: &str = "This is Microsoft support. Your computer has a virus. Install TeamViewer \
                    now so we can fix it.";
const BORDERLINE: &str = "Hello, this is Microsoft. Your computer has a problem.";

/// The numbers the scenarios dial. 10xx are the stock public_extensions numbers (routed to
/// the default context before any public/*.xml file); the others ring a phone of their own.
const PASS: &str = "5551001";
const ALLOW: &str = "5551002";
const DIVERT: &str = "5551003";
const WARN: &str = "5551004";
const SILENT: &str = "5551005";
const MARK: &str = "5551007";
const TCP: &str = "5551008";
const HAIRPIN: &str = "5551009";
const UNSCREENED: &str = "1000";
const UNSCREENED_TCP: &str = "1010";

struct Bench {
    fs: FreeSwitch,
    phones: Vec<(&'static str, DemoCallee)>,
}

impl Bench {
    fn phone(&self, number: &str) -> &DemoCallee {
        &self
            .phones
            .iter()
            .find(|(n, _)| *n == number)
            .unwrap_or_else(|| panic!("no phone for {number}"))
            .1
    }

    /// scamscreen in front of FreeSWITCH: patient screening (a busy box must not turn a
    /// verdict into `unscreened`) unless `timeout_ms` says otherwise, scams diverted to
    /// FreeSWITCH's `scam-divert`, `sip` and `screening` appended to their sections.
    fn scamscreen(&self, sip: &str, screening: &str, timeout_ms: u32) -> Scamscreen {
        let toml = format!(
            "[sip]\nupstream_probe_secs = 0\n{sip}\n\
             [screening]\nscreening_timeout_ms = {timeout_ms}\nmessage_secs = 0\n\
             divert_uri = \"sip:scam-divert@{}\"\n{screening}\n",
            self.fs.sip
        );
        Scamscreen::start_with(self.fs.sip, 8, Some(&toml))
    }
}

/// A call to `number` through scamscreen: withheld unless `from` gives a caller ID. Returns
/// the relay that makes it dial `number` and the caller (INVITE sent); bound in this order,
/// the caller is dropped first (its BYE still passes the relay).
fn call(ss: &Scamscreen, name: &str, number: &str, from: Option<&str>) -> (Dialled, DemoCaller) {
    let relay = Dialled::start(CALLER_IP, ss.sip, number);
    let caller = DemoCaller::invite_from(relay.addr(), CALLER_IP, name, None, from).unwrap();
    (relay, caller)
}

/// Send silence until `phone` has answered a call (FreeSWITCH's own Call-ID: its newest).
fn rung(phone: &DemoCallee, caller: &mut DemoCaller, secs: u64) -> CalleeCall {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(c) = phone.calls().into_iter().last().filter(|c| c.answered) {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "the phone was not rung within {secs} s; the caller saw: {:?}",
            caller
                .sip_log()
                .iter()
                .map(|m| m.lines().next())
                .collect::<Vec<_>>()
        );
        caller.silence(100).unwrap();
    }
}

/// The From header's display name in an INVITE.
fn display_name(invite: &str) -> String {
    header(invite, "from")
        .and_then(|f| f.split('"').nth(1))
        .unwrap_or_default()
        .to_string()
}

fn voiced(pcm: &[i16]) -> usize {
    pcm.iter().filter(|s| s.abs() > 500).count()
}

/// Wait until `phone`'s newest call has ended (a BYE from FreeSWITCH).
fn phone_hung_up(phone: &DemoCallee, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if phone.calls().last().is_some_and(|c| c.ended) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// The snippet's log line for a call to `number` (`scamscreen_log`, NOTICE).
fn snippet_notice(b: &Bench, mark: usize, number: &str, verdict: &str) -> String {
    b.fs.wait_log(
        mark,
        &[
            &format!("scamscreen: to {number}: caller=withheld verdict={verdict} "),
            "[NOTICE]",
        ],
        Duration::from_secs(10),
    )
    .unwrap_or_else(|| panic!("no scamscreen_log line for {number} with verdict={verdict:?}"))
}

/// FreeSWITCH ran `voicemail(default <domain> 1000)` for the call (after `mark`).
fn assert_voicemail(b: &Bench, mark: usize) {
    let line = b.fs.wait_log(
        mark,
        &["EXECUTE", "voicemail(default 127.0.0.4 1000)"],
        Duration::from_secs(10),
    );
    assert!(line.is_some(), "FreeSWITCH did not run voicemail");
}

/// (a) A caller with a number: scamscreen passes the INVITE through, FreeSWITCH's public
/// context rings the phone, speech flows from the caller to the phone; the phone hangs up
/// and the BYE reaches the caller.
fn pass_through(b: &Bench, ss: &Scamscreen) {
    let mark = b.fs.log_mark();
    let phone = b.phone(PASS);
    let (_relay, mut caller) = call(ss, "fs-numbered", PASS, Some("+4930123456"));
    answered(&mut caller, 10);
    let call = rung(phone, &mut caller, 5);
    assert!(
        call.invite.contains("4930123456"),
        "the caller's number reaches the phone: {}",
        call.invite
    );
    assert!(call.scamscreen_headers.is_empty(), "{}", call.invite);
    caller
        .speak(&speech(
            "Hello, it is me, your neighbour. Are you coming to the garden party tonight?",
        ))
        .unwrap();
    caller.silence(600).unwrap();
    let heard = phone.calls().last().unwrap().audio.clone();
    assert!(
        voiced(&heard) > 8000,
        "the phone heard {} voiced samples",
        voiced(&heard)
    );
    let text = transcribe(&heard);
    assert!(
        text.contains("neighbo") || text.contains("party") || text.contains("coming"),
        "the phone heard: {text}"
    );
    // (g) The phone hangs up: FreeSWITCH → scamscreen (record-routed) → the caller.
    phone.hang_up(&call.call_id);
    assert!(
        caller.wait_for_bye(Duration::from_secs(5)).unwrap(),
        "the phone's hang-up reached the caller: {:?}",
        caller
            .sip_log()
            .iter()
            .map(|m| m.lines().next())
            .collect::<Vec<_>>()
    );
    let log = b.fs.log_since(mark);
    assert!(
        !log.contains("scamscreen: to "),
        "the snippet logged a call that has a caller ID"
    );
}

/// (b) A legitimate withheld caller: screened and allowed, the snippet labels the caller
/// "Screened caller" on the phone; speech flows after the bridge; the caller hangs up and
/// FreeSWITCH hangs up the phone.
fn allow(b: &Bench, ss: &Scamscreen) {
    let mark = b.fs.log_mark();
    let phone = b.phone(ALLOW);
    let (_relay, mut caller) = call(ss, "fs-allow", ALLOW, None);
    answered(&mut caller, 10);
    caller.silence(GREETING_MS).unwrap();
    caller.speak(&speech(LEGIT)).unwrap();
    let call = rung(phone, &mut caller, 25);
    snippet_notice(b, mark, ALLOW, "allow");
    assert_eq!(
        display_name(&call.invite),
        "Screened caller",
        "{}",
        call.invite
    );
    caller
        .speak(&speech("Please bring your insurance card."))
        .unwrap();
    caller.silence(600).unwrap();
    let heard = phone.calls().last().unwrap().audio.clone();
    let text = transcribe(&heard);
    assert!(text.contains("insurance"), "the phone heard: {text}");
    // (g) The caller hangs up: scamscreen → FreeSWITCH → the phone.
    caller.hang_up().unwrap();
    assert!(caller.bye_answered(), "{:?}", caller.sip_log());
    assert!(phone_hung_up(phone, 5), "FreeSWITCH hung up the phone");
    ss.assert_record(caller.call_id(), "allow", "connected");
}

/// (c) A tech-support scam with `divert_uri` = FreeSWITCH's `scam-divert`: the snippet's
/// `scamscreen_divert` answers with voicemail; the phone of the dialled number never rings.
fn divert(b: &Bench, ss: &Scamscreen) {
    let mark = b.fs.log_mark();
    let phone = b.phone(DIVERT);
    let (_relay, mut caller) = call(ss, "fs-divert", DIVERT, None);
    answered(&mut caller, 10);
    caller.silence(GREETING_MS).unwrap();
    caller.speak(&speech(SCAM)).unwrap();
    let id = caller.call_id().to_string();
    let line = b.fs.wait_log(
        mark,
        &["scamscreen: to scam-divert: caller=withheld verdict=divert "],
        Duration::from_secs(25),
    );
    assert!(
        line.is_some(),
        "no divert call reached FreeSWITCH's scam-divert"
    );
    assert_voicemail(b, mark);
    // The caller leaves a message after the voicemail greeting and the tone.
    let before = b.fs.voicemails("1000");
    assert!(
        caller
            .wait_until(Duration::from_secs(15), || b
                .fs
                .log_since(mark)
                .contains("voicemail/vm-record_message.wav"))
            .unwrap(),
        "FreeSWITCH's voicemail did not ask for a message"
    );
    caller.silence(3500).unwrap();
    caller
        .speak(&speech(
            "Hi, this is Tom from the garage. Your car is ready, please call me back.",
        ))
        .unwrap();
    // Hanging up ends the recording; voicemail keeps the message.
    caller.silence(1500).unwrap();
    caller.hang_up().unwrap();
    let (path, audio) =
        b.fs.finished_voicemail("1000", &before, Duration::from_secs(10))
            .expect("no complete voicemail message stored");
    assert_eq!(audio.rate, 8000, "{}", path.display());
    let pcm: Vec<i16> = audio.samples.iter().map(|s| (s * 32767.0) as i16).collect();
    let text = transcribe(&pcm);
    assert!(
        text.contains("garage") || text.contains("call me back"),
        "the voicemail message: {text}"
    );
    assert!(
        phone.calls().is_empty(),
        "the phone rang for a diverted scam"
    );
    ss.assert_record(&id, "divert", "diverted");
}

/// (d) A borderline caller: warn; the phone shows "SCAM WARNING <score>" and presses 2
/// (RFC 4733 to FreeSWITCH, which sends it on to scamscreen): the callee refused.
fn warn(b: &Bench, ss: &Scamscreen) {
    let mark = b.fs.log_mark();
    let phone = b.phone(WARN);
    let (_relay, mut caller) = call(ss, "fs-warn", WARN, None);
    answered(&mut caller, 10);
    caller.silence(GREETING_MS).unwrap();
    caller.speak(&speech(BORDERLINE)).unwrap();
    let call = rung(phone, &mut caller, 25);
    snippet_notice(b, mark, WARN, "warn");
    let name = display_name(&call.invite);
    let score = name.strip_prefix("SCAM WARNING ").unwrap_or_else(|| {
        panic!(
            "display name {name:?}, not \"SCAM WARNING <score>\": {}",
            call.invite
        )
    });
    assert!(
        score.len() == 4 && score.parse::<f64>().is_ok_and(|s| (0.0..=1.0).contains(&s)),
        "score {score:?}"
    );
    assert!(
        caller.wait_for_bye(Duration::from_secs(30)).unwrap(),
        "the callee's 2 ends the call for the caller"
    );
    assert!(phone_hung_up(phone, 5), "the refused phone was hung up");
    let rec = ss.record(caller.call_id());
    assert_eq!(rec["action"], "warn", "{rec}");
    assert_eq!(
        rec["outcome"], "calleerefused",
        "the phone's 2 did not reach scamscreen through FreeSWITCH: {rec}"
    );
    assert_eq!(
        format!("{:.2}", rec["score"].as_f64().unwrap_or(-1.0)),
        score,
        "{rec}"
    );
}

/// (e) Nobody listened (every verdict times out): `unscreened`, and the snippet sends the
/// caller to voicemail; FreeSWITCH hangs up. Dialled 1000, a stock public_extensions number: the snippet included
/// at the top of public.xml decides before public_extensions would transfer the call to the
/// default context.
fn unscreened(b: &Bench, ss: &Scamscreen, number: &str, name: &str) {
    let mark = b.fs.log_mark();
    let (_relay, mut caller) = call(ss, name, number, None);
    answered(&mut caller, 10);
    caller.silence(GREETING_MS).unwrap();
    caller
        .speak(&speech("Hello, this is Anna. Please call me back."))
        .unwrap();
    let id = caller.call_id().to_string();
    caller
        .wait_until(Duration::from_secs(20), || {
            b.fs.log_since(mark).contains("scamscreen: to ")
        })
        .unwrap();
    snippet_notice(b, mark, number, "unscreened");
    assert_voicemail(b, mark);
    let log = b.fs.log_since(mark);
    assert!(
        log.contains("Regex (PASS) [scamscreen_unscreened]"),
        "the snippet's scamscreen_unscreened extension did not match"
    );
    assert!(
        !log.contains("[public_extensions]") && !log.contains("XML default"),
        "public_extensions saw the call before the snippet"
    );
    // (g) FreeSWITCH hangs up (as voicemail does after a message): its BYE on scamscreen's
    // own call reaches the caller.
    caller.silence(300).unwrap();
    b.fs.api("hupall NORMAL_CLEARING");
    assert!(
        caller.wait_for_bye(Duration::from_secs(5)).unwrap(),
        "FreeSWITCH's hang-up reached the caller"
    );
    let rec = ss.record(&id);
    assert_eq!(rec["action"], "unscreened", "{rec}");
}

/// (f) `mode = "mark"`: the caller's INVITE passed through with `X-Scamscreen-Caller`, no
/// verdict; the snippet's `scamscreen_marked` takes it to voicemail, the phone never rings.
fn mark(b: &Bench, ss: &Scamscreen) {
    let mark = b.fs.log_mark();
    let phone = b.phone(MARK);
    let (_relay, mut caller) = call(ss, "fs-mark", MARK, None);
    answered(&mut caller, 10);
    snippet_notice(b, mark, MARK, "");
    assert_voicemail(b, mark);
    assert!(
        b.fs.log_since(mark)
            .contains("Regex (PASS) [scamscreen_marked]"),
        "the snippet's scamscreen_marked extension did not match"
    );
    caller.silence(500).unwrap();
    caller.hang_up().unwrap();
    assert!(caller.bye_answered(), "{:?}", caller.sip_log());
    assert!(
        phone.calls().is_empty(),
        "the phone rang for a marked caller"
    );
}

/// (j) A caller who says nothing, with `silent_action = "allow"`: the snippet logs
/// `verdict=silent` and FreeSWITCH rings the phone as for any caller; the caller hangs up.
fn silent(b: &Bench, ss: &Scamscreen) {
    let mark = b.fs.log_mark();
    let phone = b.phone(SILENT);
    let (_relay, mut caller) = call(ss, "fs-silent", SILENT, None);
    answered(&mut caller, 10);
    rung(phone, &mut caller, 45);
    snippet_notice(b, mark, SILENT, "silent");
    caller.hang_up().unwrap();
    assert!(caller.bye_answered(), "{:?}", caller.sip_log());
    assert!(phone_hung_up(phone, 5), "FreeSWITCH hung up the phone");
    ss.assert_record(caller.call_id(), "silent", "connected");
}

/// (h) TCP between scamscreen and FreeSWITCH: a call with a number to the phone (the phone
/// hangs up), then an unscreened withheld call to voicemail (scamscreen's own INVITE).
fn tcp(b: &Bench, ss: &Scamscreen) {
    let mark = b.fs.log_mark();
    let phone = b.phone(TCP);
    let (_relay, mut caller) = call(ss, "fs-tcp", TCP, Some("+4930999888"));
    answered(&mut caller, 10);
    let call = rung(phone, &mut caller, 5);
    caller.speak(&speech("Hello over TCP.")).unwrap();
    caller.silence(300).unwrap();
    assert!(
        voiced(&phone.calls().last().unwrap().audio) > 2000,
        "no speech reached the phone"
    );
    phone.hang_up(&call.call_id);
    assert!(
        caller.wait_for_bye(Duration::from_secs(5)).unwrap(),
        "the phone's hang-up reached the caller"
    );
    // Every SIP message between scamscreen and FreeSWITCH went over TCP.
    let trace = sip_trace(&b.fs.log_since(mark));
    let invite = trace
        .iter()
        .find(|m| m.first_line.starts_with(&format!("INVITE sip:{TCP}@")))
        .expect("FreeSWITCH's SIP trace has the INVITE");
    assert_eq!(invite.transport, "tcp", "{invite:?}");
    let udp: Vec<_> = trace
        .iter()
        .filter(|m| m.peer.starts_with("[127.0.0.1]") && m.transport != "tcp")
        .collect();
    assert!(udp.is_empty(), "not over TCP: {udp:?}");
    // scamscreen's own INVITE (unscreened: FreeSWITCH's voicemail hangs up after the
    // message) and the in-dialog requests both ways.
    let mark = b.fs.log_mark();
    unscreened(b, ss, UNSCREENED_TCP, "fs-tcp-unscreened");
    let trace = sip_trace(&b.fs.log_since(mark));
    let invite = trace
        .iter()
        .find(|m| {
            m.first_line
                .starts_with(&format!("INVITE sip:{UNSCREENED_TCP}@"))
        })
        .expect("FreeSWITCH's SIP trace has scamscreen's INVITE");
    assert_eq!(invite.transport, "tcp", "{invite:?}");
    let udp: Vec<_> = trace
        .iter()
        .filter(|m| m.peer.starts_with("[127.0.0.1]") && m.transport != "tcp")
        .collect();
    assert!(
        udp.is_empty(),
        "scamscreen's own call (upstream_transport = \"tcp\") has messages over UDP; \
         a Contact without ;transport=tcp sends FreeSWITCH's in-dialog requests over UDP: \
         {udp:?}"
    );
}

/// A call from the trunk straight to FreeSWITCH's external profile (hairpin: FreeSWITCH has
/// the trunk), to `number`; withheld unless `from` gives a caller ID.
fn trunk_call(b: &Bench, name: &str, number: &str, from: Option<&str>) -> (Dialled, DemoCaller) {
    let relay = Dialled::start(CALLER_IP, b.fs.sip, number);
    let caller = DemoCaller::invite_from(relay.addr(), CALLER_IP, name, None, from).unwrap();
    (relay, caller)
}

/// (i) Hairpin (dialplans/freeswitch/hairpin/): the trunk calls FreeSWITCH, whose public
/// context sends only withheld callers to scamscreen (bridged out of the "scamscreen"
/// profile, not scamscreen's `sip.upstream`); scamscreen screens them and calls FreeSWITCH
/// back, where 00_scamscreen.xml reads the verdict. A caller with a number rings the phone
/// and scamscreen never sees it; a legitimate withheld caller reaches the phone labelled
/// "Screened caller" and speech flows; a scam goes to scam-divert (voicemail), the phone
/// stays quiet.
fn hairpin(b: &Bench, ss: &Scamscreen) {
    let phone = b.phone(HAIRPIN);
    // The second profile listens on UDP only (bind-params).
    let status = b.fs.api("sofia status profile scamscreen");
    assert!(
        status.lines().any(|l| l.starts_with("BIND-URL")
            && l.trim_end()
                .ends_with(&format!("{};transport=udp", b.fs.hairpin))),
        "the scamscreen profile is not UDP only:\n{status}"
    );
    // A caller with a number: FreeSWITCH rings the phone itself.
    let mark = b.fs.log_mark();
    {
        let (_relay, mut caller) = trunk_call(b, "fs-hp-numbered", HAIRPIN, Some("+4930123456"));
        answered(&mut caller, 10);
        let call = phone_call(phone, &mut caller, 5, 0);
        assert!(call.invite.contains("4930123456"), "{}", call.invite);
        assert!(call.scamscreen_headers.is_empty(), "{}", call.invite);
        caller
            .speak(&speech("Hello, it is me, your neighbour."))
            .unwrap();
        caller.silence(300).unwrap();
        let heard = voiced(&phone.calls()[0].audio);
        assert!(heard > 2000, "the phone heard {heard} voiced samples");
        caller.hang_up().unwrap();
        assert!(caller.bye_answered(), "{:?}", caller.sip_log());
        assert!(phone_hung_up(phone, 5), "FreeSWITCH hung up the phone");
    }
    assert!(
        ss.calls().is_empty(),
        "scamscreen saw a caller with a number: {:?}",
        ss.calls()
    );
    assert!(
        !b.fs.log_since(mark).contains("scamscreen hairpin:"),
        "the hairpin took a caller with a number"
    );

    // Withheld and legitimate: through scamscreen and back, labelled.
    let mark = b.fs.log_mark();
    {
        let (_relay, mut caller) = trunk_call(b, "fs-hp-dentist", HAIRPIN, None);
        answered(&mut caller, 10);
        b.fs.wait_log(
            mark,
            &[&format!("scamscreen hairpin: withheld caller to {HAIRPIN}")],
            Duration::from_secs(5),
        )
        .expect("the hairpin extension did not take the withheld caller");
        caller.silence(GREETING_MS).unwrap();
        caller.speak(&speech(LEGIT)).unwrap();
        let call = phone_call(phone, &mut caller, 25, 1);
        snippet_notice(b, mark, HAIRPIN, "allow");
        // Sent to scamscreen out of the "scamscreen" profile, not out of sip.upstream.
        let via = format!("Via: SIP/2.0/UDP {};", b.fs.hairpin);
        assert!(
            b.fs.log_since(mark).contains(&via),
            "FreeSWITCH's INVITE to scamscreen did not leave from {}",
            b.fs.hairpin
        );
        assert_eq!(
            display_name(&call.invite),
            "Screened caller",
            "{}",
            call.invite
        );
        caller
            .speak(&speech("Please bring your insurance card."))
            .unwrap();
        caller.silence(500).unwrap();
        let text = transcribe(&phone.calls()[1].audio);
        assert!(text.contains("insurance"), "the phone heard: {text}");
        // The caller hangs up: FreeSWITCH → scamscreen → FreeSWITCH → the phone.
        caller.hang_up().unwrap();
        assert!(caller.bye_answered(), "{:?}", caller.sip_log());
        assert!(phone_hung_up(phone, 5), "the phone got no BYE");
    }
    let rec = ss.calls();
    assert_eq!(rec.len(), 1, "scamscreen's calls: {rec:?}");
    assert_eq!(rec[0]["action"], "allow", "{rec:?}");
    // scamscreen's call back was not hairpinned again.
    let hairpinned =
        b.fs.log_since(mark)
            .lines()
            .filter(|l| l.contains("[NOTICE]") && l.contains("scamscreen hairpin: withheld"))
            .count();
    assert_eq!(hairpinned, 1, "the hairpin took {hairpinned} calls");

    // A scam: diverted to voicemail through FreeSWITCH, the phone stays quiet. This caller
    // sends From "Anonymous" without a Privacy header: the hairpin's caller_id_number test.
    let mark = b.fs.log_mark();
    {
        let (_relay, mut caller) = trunk_call(b, "fs-hp-scam", HAIRPIN, Some("Anonymous"));
        answered(&mut caller, 10);
        assert!(
            b.fs.log_since(mark)
                .contains("Regex (PASS) [scamscreen_hairpin] caller_id_number(Anonymous)"),
            "the hairpin did not take From \"Anonymous\" by its caller_id_number condition"
        );
        caller.silence(GREETING_MS).unwrap();
        caller.speak(&speech(SCAM)).unwrap();
        let line = b.fs.wait_log(
            mark,
            &["scamscreen: to scam-divert: caller=withheld verdict=divert "],
            Duration::from_secs(25),
        );
        assert!(
            line.is_some(),
            "no divert call reached FreeSWITCH's scam-divert"
        );
        assert_voicemail(b, mark);
        caller.silence(300).unwrap();
        caller.hang_up().unwrap();
        assert!(caller.bye_answered(), "{:?}", caller.sip_log());
    }
    assert_eq!(phone.calls().len(), 2, "the phone rang for a scam");
    let rec = ss.calls();
    assert_eq!(rec.len(), 2, "scamscreen's calls: {rec:?}");
    assert!(
        rec.iter()
            .any(|r| r["action"] == "divert" && r["outcome"] == "diverted"),
        "{rec:?}"
    );

    // scamscreen not there (nothing listens on the bridge target): the hairpin fails open,
    // the withheld caller rings the phone unscreened and FreeSWITCH logs a warning.
    let dead = std::net::UdpSocket::bind((common::screening::LOOPBACK, 0))
        .and_then(|s| s.local_addr())
        .unwrap();
    b.fs.hairpin_to(dead);
    let mark = b.fs.log_mark();
    let t = Instant::now();
    {
        let (_relay, mut caller) = trunk_call(b, "fs-hp-failopen", HAIRPIN, None);
        answered(&mut caller, 40);
        let call = phone_call(phone, &mut caller, 5, 2);
        assert!(
            call.scamscreen_headers.is_empty() && display_name(&call.invite) != "Screened caller",
            "{}",
            call.invite
        );
        caller.hang_up().unwrap();
        assert!(caller.bye_answered(), "{:?}", caller.sip_log());
    }
    let line =
        b.fs.wait_log(
            mark,
            &["[WARNING]", "scamscreen hairpin: scamscreen unreachable"],
            Duration::ZERO,
        )
        .expect("no fail-open warning");
    eprintln!("fail open after {:.1} s: {line}", t.elapsed().as_secs_f64());
    assert_eq!(ss.calls().len(), 2);
}

/// One message of FreeSWITCH's SIP trace (`sofia global siptrace on`).
#[derive(Debug)]
#[allow(dead_code)]
struct Traced {
    /// "recv" or "send".
    dir: String,
    transport: String,
    /// `[ip]:port`.
    peer: String,
    first_line: String,
}

/// The SIP trace in a stretch of FreeSWITCH's log: "recv 775 bytes from udp/[127.0.0.1]:57112
/// at 17:52:32.202210:", a line of dashes, then the message.
fn sip_trace(log: &str) -> Vec<Traced> {
    let lines: Vec<&str> = log.lines().collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let (dir, rest) = match l.split_once(' ') {
            Some((d @ ("recv" | "send"), rest)) if l.contains(" bytes ") => (d, rest),
            _ => continue,
        };
        let Some(addr) = rest.split_whitespace().nth(3) else {
            continue;
        };
        let Some((transport, peer)) = addr.split_once('/') else {
            continue;
        };
        out.push(Traced {
            dir: dir.to_string(),
            transport: transport.to_string(),
            peer: peer.to_string(),
            first_line: lines.get(i + 2).unwrap_or(&"").to_string(),
        });
    }
    out
}

/// Run one scenario; a failure is recorded with FreeSWITCH's log digest, not propagated.
fn scenario(b: &Bench, name: &str, failures: &mut Vec<String>, f: impl FnOnce()) {
    if let Ok(only) = std::env::var("PBX_FS_ONLY") {
        if !only.split(',').any(|o| name.starts_with(&format!("({o})"))) {
            return;
        }
    }
    let mark = b.fs.log_mark();
    let t = Instant::now();
    eprintln!("== {name}");
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(()) => eprintln!("== {name}: ok ({:.1} s)", t.elapsed().as_secs_f64()),
        Err(e) => {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            eprintln!("== {name}: FAILED ({:.1} s)", t.elapsed().as_secs_f64());
            failures.push(format!(
                "{name}: {msg}\n  FreeSWITCH during it:\n{}",
                b.fs.digest(mark)
            ));
        }
    }
}

#[test]
fn freeswitch_runs_the_project_snippets() {
    let _cpu = common::cpu_heavy();
    let started = Instant::now();
    let ring = Duration::from_millis(300);
    let plain = || DemoCallee::start(PHONE_IP, ring).unwrap();
    let phones = vec![
        (PASS, plain()),
        (ALLOW, plain()),
        (DIVERT, plain()),
        (
            WARN,
            DemoCallee::start_with_key(PHONE_IP, ring, Some(('2', Duration::from_secs(3))))
                .unwrap(),
        ),
        (MARK, plain()),
        (SILENT, plain()),
        (TCP, plain()),
        (HAIRPIN, plain()),
    ];
    let routes: Vec<(&str, std::net::SocketAddr)> =
        phones.iter().map(|(n, p)| (*n, p.addr())).collect();
    let fs = FreeSwitch::start(&routes);
    eprintln!(
        "FreeSWITCH up in {:.1} s: external profile {} (UDP+TCP), RTP {}-{}",
        started.elapsed().as_secs_f64(),
        fs.sip,
        fs.rtp.0,
        fs.rtp.1
    );
    let b = Bench { fs, phones };
    let mut failures = Vec::new();
    {
        let ss = b.scamscreen("", "", 20_000);
        scenario(
            &b,
            "(a) caller ID: passed through to the phone",
            &mut failures,
            || pass_through(&b, &ss),
        );
        scenario(
            &b,
            "(b) withheld, allowed: \"Screened caller\"",
            &mut failures,
            || allow(&b, &ss),
        );
        scenario(
            &b,
            "(c) scam: diverted to scam-divert",
            &mut failures,
            || divert(&b, &ss),
        );
        scenario(
            &b,
            "(d) warn: display and the phone's 2",
            &mut failures,
            || warn(&b, &ss),
        );
    }
    {
        let ss = b.scamscreen("", "", 1);
        scenario(
            &b,
            "(e) unscreened to 1000: voicemail, before public_extensions",
            &mut failures,
            || unscreened(&b, &ss, UNSCREENED, "fs-unscreened"),
        );
    }
    {
        let ss = b.scamscreen("", "mode = \"mark\"", 20_000);
        scenario(&b, "(f) mark mode: voicemail", &mut failures, || {
            mark(&b, &ss)
        });
    }
    {
        let ss = b.scamscreen("", "silent_action = \"allow\"\nno_speech_secs = 1", 20_000);
        scenario(
            &b,
            "(j) silent caller, silent_action = allow: verdict=silent, rung",
            &mut failures,
            || silent(&b, &ss),
        );
    }
    {
        let ss = b.scamscreen("upstream_transport = \"tcp\"", "", 1);
        scenario(&b, "(h) TCP to FreeSWITCH", &mut failures, || tcp(&b, &ss));
    }
    {
        let ss = b.scamscreen("", "", 20_000);
        b.fs.hairpin_to(ss.sip);
        scenario(
            &b,
            "(i) hairpin: only withheld trunk callers through scamscreen",
            &mut failures,
            || hairpin(&b, &ss),
        );
    }
    // Every call is over on FreeSWITCH too; and the RTP range raised no warning.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut channels = b.fs.api("show channels count");
    while !channels.contains("0 total") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        channels = b.fs.api("show channels count");
    }
    let log = b.fs.log();
    let mut end = Vec::new();
    if !channels.contains("0 total") {
        end.push(format!("channels left on FreeSWITCH: {channels}"));
    }
    if let Some(l) = log.lines().find(|l| l.contains("Rounding odd")) {
        end.push(format!("the suggested RTP range made FreeSWITCH warn: {l}"));
    }
    if !log.contains("sofia/external/") {
        end.push("no call went through the external profile".into());
    }
    eprintln!(
        "FreeSWITCH scenarios: {} failed, {:.1} s",
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    failures.extend(end);
    if !failures.is_empty() || std::env::var_os("PBX_FS_KEEP_LOG").is_some() {
        let saved = std::env::temp_dir().join(format!(
            "scamscreen-pbx-freeswitch-{}.log",
            std::process::id()
        ));
        if b.fs.save_log(&saved).is_ok() {
            failures.push(format!("FreeSWITCH's whole log: {}", saved.display()));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}
