//! Screened calls at the edges, end to end on loopback with `scamscreen run`, the real
//! whisper model, real UDP SIP and RTP: bad offers, a caller who hangs up while screened,
//! RTP from a stranger, an overloaded or timed-out recogniser, and a warned callee.
//!
//! The peers are the demo's (`scamscreen::demo`), as in `tests/screening.rs`; here the caller
//! also offers any SDP, sends its BYE while still talking, and keeps what it hears.

mod common;

use common::screening::{callee, invites, speech, transcribe, Scamscreen, CALLER_IP, GREETING_MS};
use scamscreen::demo::{self, CalleeCall, DemoCallee, DemoCaller};
use scamscreen::media::g711::Codec;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// For tests about what the verdict is, not how fast: a generous screening timeout, so a
/// busy machine (a parallel build, other tests) does not turn the verdict into `unscreened`.
const PATIENT: &str = "[screening]\nscreening_timeout_ms = 20000\n";

/// Offer `body`, expect `want` and nothing else: no 200, no ringing callee, no port taken.
fn refused_offer(ss: &Scamscreen, callee: &DemoCallee, name: &str, body: String, want: u16) {
    let mut caller = DemoCaller::invite(ss.sip, CALLER_IP, name, Some(body)).unwrap();
    let got = caller.wait_final(Duration::from_secs(5)).unwrap();
    assert_eq!(got, Some(want), "{name}: {:?}", caller.sip_log());
    // Anything late (a 200, a BYE, a retransmitted final response) would show up here.
    caller.silence(700).unwrap();
    let statuses: Vec<u16> = caller
        .sip_log()
        .iter()
        .filter_map(|m| demo::status(m))
        .collect();
    assert!(
        statuses.iter().all(|&s| s == 100 || s == want),
        "{name}: {statuses:?}"
    );
    assert!(!caller.got_bye(), "{name}");
    assert!(caller.remote_rtp().is_none(), "{name}");
    assert!(invites(callee).is_empty(), "{name}: the callee was rung");
}

/// Send silence until the callee is rung for `caller`'s call (at most `secs`); that call.
fn wait_for_ring(callee: &DemoCallee, caller: &mut DemoCaller, secs: u64) -> Option<CalleeCall> {
    let id = caller.call_id().to_string();
    caller
        .wait_until(Duration::from_secs(secs), || callee.call_for(&id).is_some())
        .unwrap();
    callee.call_for(&id)
}

/// Hang the (bridged) call up and return its record.
fn record_when_done(caller: &mut DemoCaller, ss: &Scamscreen) -> serde_json::Value {
    caller.hang_up().unwrap();
    ss.record(caller.call_id())
}

/// A config file that makes every verdict time out.
fn timeout_config(fail_open: bool) -> String {
    format!("[screening]\nscreening_timeout_ms = 1\nfail_open = {fail_open}\n")
}

#[test]
fn malformed_sdp_is_refused_with_400() {
    let callee = callee();
    let ss = Scamscreen::start(callee.addr());
    let bodies = [
        (
            "garbage",
            "this is not a session description\r\n".to_string(),
        ),
        (
            "badport",
            "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n\
             m=audio eighty RTP/AVP 0\r\n"
                .to_string(),
        ),
        (
            "badaddr",
            "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 327.0.0.2\r\nt=0 0\r\n\
             m=audio 40000 RTP/AVP 0\r\n"
                .to_string(),
        ),
    ];
    for (name, body) in bodies {
        refused_offer(&ss, &callee, name, body, 400);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(invites(&callee).is_empty(), "the callee was rung");
    ss.assert_ports_free();
}

#[test]
fn g729_only_offer_is_refused_with_488() {
    let callee = callee();
    let ss = Scamscreen::start(callee.addr());
    let body = "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n\
                m=audio 40000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\na=sendrecv\r\n"
        .to_string();
    refused_offer(&ss, &callee, "g729", body, 488);
    std::thread::sleep(Duration::from_millis(300));
    assert!(invites(&callee).is_empty(), "the callee was rung");
    ss.assert_ports_free();
}

#[test]
fn caller_hanging_up_while_screened_frees_everything() {
    let _cpu = common::cpu_heavy();
    let callee = callee();
    let mut ss = Scamscreen::start(callee.addr());
    let words = speech(
        "Hello, this is Doctor Miller's dental office calling to confirm your appointment \
         tomorrow at ten in the morning.",
    );
    let mut caller = ss.dial("hangup");
    caller.silence(GREETING_MS).unwrap();
    // Half the sentence, then BYE mid-word: still listening, no verdict yet.
    caller.speak(&words[..words.len() / 2]).unwrap();
    caller.send_bye().unwrap();
    // The rest of the sentence and the silence that would end listening reach nobody.
    caller.speak(&words[words.len() / 2..]).unwrap();
    caller.silence(2500).unwrap();
    assert!(
        caller.bye_answered(),
        "200 to the BYE: {:?}",
        caller.sip_log()
    );
    assert!(invites(&callee).is_empty(), "the callee was rung");
    assert!(
        !caller.got_bye(),
        "scamscreen sent a BYE for a call that had ended"
    );
    let rec = ss.assert_record(caller.call_id(), "caller_hung_up", "callerhungup");
    assert_eq!(rec["transcript"], "", "{rec}");
    ss.assert_ports_free();

    // Hanging up during the greeting ends the call the same way.
    let mut caller = ss.dial("hangup2");
    caller.silence(1500).unwrap();
    caller.send_bye().unwrap();
    caller.silence(1000).unwrap();
    assert!(
        caller.bye_answered(),
        "200 to the BYE: {:?}",
        caller.sip_log()
    );
    assert!(!caller.got_bye());
    let rec = ss.record(caller.call_id());
    assert_eq!(rec["action"], "caller_hung_up", "{rec}");
    assert_eq!(rec["listen_ms"], 0, "{rec}");
    assert!(invites(&callee).is_empty(), "the callee was rung");
    ss.assert_ports_free();
    // Nothing held inside either: no call, no port pair, no ASR slot (a partial
    // transcription may have been running when the first caller left: it was cancelled).
    std::thread::sleep(Duration::from_millis(500));
    let stats = ss.stop();
    let calls = &stats["calls"];
    assert_eq!(calls["active"], 0, "{stats}");
    assert_eq!(calls["rtp_port_pairs_in_use"], 0, "{stats}");
    assert_eq!(calls["asr_in_flight"], 0, "{stats}");
}

#[test]
fn rtp_from_a_stranger_does_not_reach_the_screening() {
    let _cpu = common::cpu_heavy();
    let callee = callee();
    let ss = Scamscreen::start_with(callee.addr(), 8, Some(PATIENT));
    let words = speech(
        "Hello, this is Doctor Miller's dental office, confirming your appointment tomorrow.",
    );
    let scam = speech(
        "This is Microsoft support. Your computer has a virus. Install TeamViewer now so we \
         can fix it. This is Microsoft support. Install TeamViewer now.",
    );
    // Behind NAT, so only the latch (not the SDP address) tells the caller from the stranger:
    // its SDP names a port it never sends from, so scamscreen only learns where it is from
    // its first RTP packet.
    let decoy = UdpSocket::bind((CALLER_IP, 0)).unwrap();
    let offer = demo::pcmu_sdp(decoy.local_addr().unwrap());
    let mut caller = DemoCaller::invite(ss.sip, CALLER_IP, "bleed", Some(offer)).unwrap();
    let answer = caller.wait_final(Duration::from_secs(10)).unwrap();
    assert_eq!(answer, Some(200), "{:?}", caller.sip_log());
    // The caller's first packets latch its leg.
    caller.silence(GREETING_MS).unwrap();
    let target = caller.remote_rtp().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let rogue = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let sock = UdpSocket::bind("127.0.0.3:0").unwrap();
            let start = Instant::now();
            let mut sent = 0usize;
            for (i, frame) in scam.chunks(demo::FRAME_SAMPLES).enumerate() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let due = start + Duration::from_millis(20 * i as u64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                // A plausible stream: its own SSRC, sequence and timestamps close to the
                // caller's, so only the source address gives it away.
                let (seq, ts) = (1000 + i as u16, 160 * 300 + 160 * i as u32);
                let pkt = demo::rtp_packet(0, seq, ts, 0xbad, &Codec::Pcmu.encode(frame));
                if sock.send_to(&pkt, target).is_ok() {
                    sent += 1;
                }
            }
            sent
        })
    };
    caller.speak(&words).unwrap();
    let call = wait_for_ring(&callee, &mut caller, 20);
    stop.store(true, Ordering::Relaxed);
    let sent = rogue.join().unwrap();
    assert!(sent > 100, "the rogue sent {sent} packets");
    let call = call.expect("the callee was rung");
    let rec = record_when_done(&mut caller, &ss);
    assert_eq!(
        call.scamscreen_header("verdict"),
        Some("allow"),
        "{}\n{rec}",
        call.invite
    );
    let text = rec["transcript"].as_str().unwrap().to_lowercase();
    for w in ["microsoft", "teamviewer", "team viewer", "virus"] {
        assert!(
            !text.contains(w),
            "the stranger's words were screened: {text}"
        );
    }
    assert!(
        text.contains("dental") || text.contains("appointment"),
        "the caller's words: {text}"
    );
}

#[test]
fn full_asr_queue_fails_open() {
    let _cpu = common::cpu_heavy();
    // 1 worker + 4 queued: the 6th to 8th simultaneous screenings find the queue full.
    const CALLERS: usize = 8;
    let callee = callee();
    // Patient: the screenings that got into the queue all finish, so every `unscreened`
    // below is a full queue, not a timeout.
    let config = format!("{PATIENT}asr_queue_depth = 4\n");
    let ss = Scamscreen::start_with(callee.addr(), 4 * CALLERS as u16 + 4, Some(&config));
    let words = speech("Hi, this is Anna from the library. Your book is ready.");
    let barrier = Barrier::new(CALLERS);
    let calls: Vec<Option<CalleeCall>> = std::thread::scope(|s| {
        let (ss, callee, words, barrier) = (&ss, &callee, &words, &barrier);
        let threads: Vec<_> = (0..CALLERS)
            .map(|i| {
                s.spawn(move || {
                    let mut caller = ss.dial(&format!("load{i}"));
                    // Everyone speaks the same words at the same moment, so everyone's speech
                    // ends (and is submitted to ASR) within a few milliseconds.
                    barrier.wait();
                    caller.silence(GREETING_MS).unwrap();
                    caller.speak(words).unwrap();
                    let call = wait_for_ring(callee, &mut caller, 30);
                    caller.hang_up().unwrap();
                    call
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let mut verdicts = Vec::new();
    for (i, call) in calls.iter().enumerate() {
        let call = call
            .as_ref()
            .unwrap_or_else(|| panic!("caller {i} never reached the callee"));
        let header = |name| call.scamscreen_header(name).unwrap_or_default().to_string();
        verdicts.push((header("verdict"), header("reason")));
    }
    let unscreened: Vec<_> = verdicts.iter().filter(|(v, _)| v == "unscreened").collect();
    assert!(!unscreened.is_empty(), "{verdicts:?}");
    assert!(
        unscreened.iter().all(|(_, r)| r.contains("queue full")),
        "unscreened for another reason than a full queue: {verdicts:?}"
    );
    // The ones that were screened were heard as legitimate.
    assert!(
        verdicts
            .iter()
            .all(|(v, _)| v == "allow" || v == "unscreened"),
        "{verdicts:?}"
    );
    assert!(verdicts.iter().any(|(v, _)| v == "allow"), "{verdicts:?}");
    ss.assert_ports_free();
}

#[test]
fn screening_timeout_fails_open_as_unscreened() {
    let _cpu = common::cpu_heavy();
    let callee = callee();
    let ss = Scamscreen::start_with(callee.addr(), 8, Some(&timeout_config(true)));
    let words = speech("Hi, this is Anna from the library. Your book is ready.");
    let mut caller = ss.dial("slowopen");
    caller.silence(GREETING_MS).unwrap();
    caller.speak(&words).unwrap();
    let call = wait_for_ring(&callee, &mut caller, 15).expect("fail_open: the callee is rung");
    assert_eq!(call.scamscreen_header("verdict"), Some("unscreened"));
    let reason = call.scamscreen_header("reason").unwrap_or_default();
    assert!(reason.starts_with("unscreened"), "{reason}");
    let rec = record_when_done(&mut caller, &ss);
    assert_eq!(rec["action"], "unscreened", "{rec}");
    assert_eq!(rec["outcome"], "connected", "{rec}");
}

#[test]
fn screening_timeout_fails_closed_with_the_block_announcement() {
    let _cpu = common::cpu_heavy();
    let callee = callee();
    let ss = Scamscreen::start_with(callee.addr(), 8, Some(&timeout_config(false)));
    let words = speech("Hi, this is Anna from the library. Your book is ready.");
    let mut caller = ss.dial("slowclosed");
    caller.silence(GREETING_MS).unwrap();
    caller.speak(&words).unwrap();
    caller.take_heard();
    assert!(
        caller.wait_for_bye(Duration::from_secs(20)).unwrap(),
        "scamscreen hangs up after the announcement"
    );
    assert!(invites(&callee).is_empty(), "the callee was rung");
    let heard = caller.heard();
    let voiced = heard.iter().filter(|s| s.abs() > 500).count();
    assert!(
        voiced > 8000,
        "the caller heard {} samples, {voiced} voiced",
        heard.len()
    );
    let text = transcribe(heard);
    assert!(
        text.contains("cannot be connected") || text.contains("does not accept"),
        "the caller heard: {text}"
    );
    ss.assert_record(caller.call_id(), "unscreened", "blocked");
    ss.assert_ports_free();
}

#[test]
fn borderline_caller_is_announced_to_the_callee_with_a_warning() {
    let _cpu = common::cpu_heavy();
    // The callee hears the warning and "press 1 / 2", and accepts with 1 (RFC 4733).
    let callee = DemoCallee::start_with_key(
        common::screening::LOOPBACK,
        Duration::ZERO,
        Some(('1', Duration::from_secs(9))),
    )
    .unwrap();
    let ss = Scamscreen::start_with(callee.addr(), 8, Some(PATIENT));
    // Company claim + computer problem, no remote-access request: warn, not divert.
    let words = speech("Hello, this is Microsoft. Your computer has a problem.");
    let later = speech("Please call me back on the office line.");
    let mut caller = ss.dial("warn");
    caller.silence(GREETING_MS).unwrap();
    caller.speak(&words).unwrap();
    let call = wait_for_ring(&callee, &mut caller, 20).expect("the callee was rung");
    assert_eq!(
        call.scamscreen_header("verdict"),
        Some("warn"),
        "{}",
        call.invite
    );
    // The warning plays to the callee; then the legs are bridged and the caller's silence
    // arrives. Wait for a second of it before speaking again.
    let id = caller.call_id().to_string();
    let heard = || callee.call_for(&id).map(|c| c.audio).unwrap_or_default();
    caller
        .wait_until(Duration::from_secs(20), || {
            let a = heard();
            a.len() > 16_000 && a[a.len() - 8000..].iter().all(|s| s.abs() < 64)
        })
        .unwrap();
    let warning_samples = heard().len();
    assert!(
        warning_samples > 8000 * 2,
        "the callee heard {warning_samples} samples"
    );
    caller.speak(&later).unwrap();
    caller.silence(800).unwrap();
    let rec = record_when_done(&mut caller, &ss);
    assert_eq!(rec["action"], "warn", "{rec}");
    // Answer → verdict: the 5 s greeting, the listening and the transcription.
    let (listen, screening) = (rec["listen_ms"].as_u64(), rec["screening_ms"].as_u64());
    assert!(
        screening >= listen.map(|l| l + 4_900),
        "screening_ms counts the greeting: {rec}"
    );
    let heard = heard();
    assert!(heard.len() > warning_samples + later.len() / 2);
    let text = transcribe(&heard);
    let warning_at = ["warning", "claims"]
        .iter()
        .filter_map(|w| text.find(w))
        .min()
        .unwrap_or_else(|| panic!("no warning in what the callee heard: {text}"));
    let later_at = ["call me back", "office"]
        .iter()
        .filter_map(|w| text.find(w))
        .min()
        .unwrap_or_else(|| panic!("the caller's later words are missing: {text}"));
    assert!(warning_at < later_at, "the warning comes first: {text}");
    let warning = rec["warning"].as_str().unwrap_or_default();
    assert!(warning.to_lowercase().contains("microsoft"), "{rec}");
}
