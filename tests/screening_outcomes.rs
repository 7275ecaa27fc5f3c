//! The outcomes beyond allow/warn/divert, end to end with the real model: a recorded-style
//! message whose request comes after the listening window, a silent caller, the warned
//! callee refusing with 2, the blocked caller's message, the bypass code.

mod common;

use common::screening::{callee, invites, speech, Scamscreen, GREETING_MS, LOOPBACK};
use scamscreen::demo::DemoCallee;
use std::process::Command;
use std::time::Duration;

#[test]
fn a_caller_still_talking_past_the_window_is_heard_until_the_request() {
    let _cpu = common::cpu_heavy();
    let callee = callee();
    let ss = Scamscreen::start_with(
        callee.addr(),
        8,
        Some("[screening]\nscreening_timeout_ms = 20000\nmessage_secs = 0\n"),
    );
    // Who they claim to be first; what they want only after 15 s.
    let words = speech(
        "Hello, this is an important message from the fraud prevention team of your bank. \
         We have noticed some unusual activity on your account over the last few days, and \
         we would like to review a number of recent transactions together with you today. \
         To keep your money safe, please tell us the one time passcode we just sent to your \
         phone, and transfer your savings to a safe account.",
    );
    let secs = words.len() as f64 / 8000.0;
    assert!(secs > 17.0, "the message lasts {secs:.1} s");
    let mut caller = ss.dial("long");
    caller.silence(GREETING_MS).unwrap();
    caller.speak(&words).unwrap();
    caller.wait_for_bye(Duration::from_secs(30)).unwrap();
    let rec = ss.record(caller.call_id());
    let action = rec["action"].as_str().unwrap();
    assert!(action == "warn" || action == "divert", "{rec}");
    assert!(rec["listen_ms"].as_u64().unwrap() > 12_000, "{rec}");
    // Hit times are times in the call (greeting included): the request came after 15 s.
    let last = rec["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["at_ms"].as_u64())
        .max()
        .unwrap_or(0);
    assert!(last > 15_000, "latest hit at {last} ms: {rec}");
    // …and not after the caller had finished (greeting + message + a second).
    let said_until = GREETING_MS + (secs * 1000.0) as u64 + 1_000;
    assert!(
        last <= said_until,
        "hit at {last} ms, speech ended by {said_until} ms: {rec}"
    );
}

#[test]
fn a_silent_caller_is_reprompted_then_silent_not_allowed() {
    let _cpu = common::cpu_heavy();
    let callee = callee();
    let ss = Scamscreen::start_with(callee.addr(), 8, Some("[screening]\nmessage_secs = 0\n"));
    let mut caller = ss.dial("silent");
    assert!(
        caller.wait_for_bye(Duration::from_secs(40)).unwrap(),
        "hung up on"
    );
    assert!(invites(&callee).is_empty(), "the callee's phone never rang");
    ss.assert_record(caller.call_id(), "silent", "blocked");
    // The caller heard the greeting, the re-prompt and the announcement.
    let heard = caller.heard().len() as f64 / 8000.0;
    assert!(heard > 12.0, "heard {heard:.1} s");
    ss.assert_ports_free();
}

#[test]
fn the_warned_callee_pressing_2_is_never_bridged() {
    let _cpu = common::cpu_heavy();
    let callee = DemoCallee::start_with_key(
        LOOPBACK,
        Duration::ZERO,
        Some(('2', Duration::from_secs(3))),
    )
    .unwrap();
    let ss = Scamscreen::start_with(
        callee.addr(),
        8,
        Some("[screening]\nscreening_timeout_ms = 20000\n"),
    );
    let words = speech("Hello, this is Microsoft. Your computer has a problem.");
    let mut caller = ss.dial("refused");
    caller.silence(GREETING_MS).unwrap();
    caller.speak(&words).unwrap();
    let later = speech("Hello? Are you there? This is the caller speaking after the warning.");
    caller.speak(&later).unwrap();
    assert!(
        caller.wait_for_bye(Duration::from_secs(30)).unwrap(),
        "the caller is hung up on"
    );
    let id = caller.call_id().to_string();
    let call = callee.call_for(&id).expect("the callee was rung");
    assert_eq!(call.scamscreen_header("verdict"), Some("warn"));
    assert!(call.ended, "scamscreen hung up on the callee");
    let rec = ss.record(&id);
    assert_eq!(rec["outcome"], "calleerefused", "{rec}");
    // The callee heard only the warning (cut short by the key), never the caller.
    let heard = common::screening::transcribe(&call.audio);
    assert!(
        !heard.contains("are you there") && !heard.contains("speaking"),
        "{heard}"
    );
    // The caller heard ringback, then the announcement.
    assert!(caller.heard().len() > 8000 * 8);
    ss.assert_ports_free();
}

#[test]
fn a_blocked_caller_leaves_a_message_that_is_stored_and_listed() {
    let _cpu = common::cpu_heavy();
    let callee = callee();
    let ss = Scamscreen::start_with(
        callee.addr(),
        8,
        Some("[screening]\nscreening_timeout_ms = 20000\n"),
    );
    let scam = speech(
        "This is Microsoft support. Your computer has a virus. Install TeamViewer now so we \
         can fix it.",
    );
    let message =
        speech("Hi, this is Tom from the garage. Your car is ready, please call me back. Thanks.");
    let mut caller = ss.dial("message");
    caller.silence(GREETING_MS).unwrap();
    caller.speak(&scam).unwrap();
    // The announcement offering a message, then the tone: about 9 s.
    caller.silence(14_000).unwrap();
    caller.speak(&message).unwrap();
    assert!(
        caller.wait_for_bye(Duration::from_secs(15)).unwrap(),
        "hung up after the message"
    );
    assert!(invites(&callee).is_empty());
    let rec = ss.record(caller.call_id());
    assert_eq!(rec["action"], "divert", "{rec}");
    let ms = rec["message_ms"].as_u64().expect("a message");
    assert!(ms > 3_000, "{rec}");
    // Exported as WAV and intelligible.
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("m.wav");
    let out = Command::new(env!("CARGO_BIN_EXE_scamscreen"))
        .args(["calls", "--db"])
        .arg(&ss.db)
        .args(["--message", caller.call_id(), "--out"])
        .arg(&wav)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let audio = scamscreen::asr::audio::read_wav(&wav).unwrap();
    let pcm: Vec<i16> = audio.samples.iter().map(|s| (s * 32767.0) as i16).collect();
    let text = common::screening::transcribe(&pcm);
    assert!(
        text.contains("garage") || text.contains("call me back"),
        "{text}"
    );
    // Listed by `scamscreen calls`.
    let out = Command::new(env!("CARGO_BIN_EXE_scamscreen"))
        .args(["calls", "--db"])
        .arg(&ss.db)
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(list.contains("msg"), "{list}");
}

#[test]
fn a_caller_keying_the_bypass_code_is_put_through() {
    let _cpu = common::cpu_heavy();
    let callee = callee();
    let ss = Scamscreen::start_with(
        callee.addr(),
        8,
        Some("[screening]\nbypass_code = \"4711\"\n"),
    );
    let mut caller = ss.dial("bypass");
    caller.silence(1_000).unwrap();
    caller.press("4711").unwrap();
    let id = caller.call_id().to_string();
    caller
        .wait_until(Duration::from_secs(10), || callee.call_for(&id).is_some())
        .unwrap();
    let call = callee.call_for(&id).expect("put through");
    assert_eq!(call.scamscreen_header("verdict"), Some("bypass"));
    caller.silence(500).unwrap();
    caller.hang_up().unwrap();
    let rec = ss.record(&id);
    assert_eq!(rec["action"], "bypass", "{rec}");
    assert!(rec["screening_ms"].as_u64().unwrap() < 4_000, "{rec}");
}
