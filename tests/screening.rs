//! Screened calls end to end on loopback: `scamscreen run` with the real whisper model, real
//! UDP SIP and RTP, a caller that speaks espeak-ng speech as G.711, and a callee that records
//! what it hears (the demo's caller and callee, `scamscreen::demo`).

mod common;

use common::screening::{callee, invites, speech, transcribe, Scamscreen, GREETING_MS};
use scamscreen::demo::header;
use std::time::Duration;

#[test]
fn tech_support_scam_is_blocked_and_the_callee_never_rings() {
    let _cpu = common::cpu_heavy();
    let callee = callee();
    let ss = Scamscreen::start(callee.addr());
    // Said within the default 8 s listening window.
    let words = speech(
        "This is Microsoft support. Your computer has a virus. Install TeamViewer now so we \
         can fix it.",
    );
    let mut caller = ss.dial("scam");
    caller.silence(GREETING_MS).unwrap();
    caller.speak(&words).unwrap();
    assert!(
        caller.wait_for_bye(Duration::from_secs(25)).unwrap(),
        "scamscreen hangs up after the block announcement"
    );
    assert!(invites(&callee).is_empty(), "the callee's phone never rang");
    let rec = ss.record(caller.call_id());
    assert_eq!(rec["action"], "divert", "{rec}");
    assert_eq!(rec["withheld_reason"], "Privacy: id");
    let text = rec["transcript"].as_str().unwrap().to_lowercase();
    assert!(
        text.contains("microsoft") || text.contains("computer"),
        "{text}"
    );
    let ttv = rec["time_to_verdict_ms"].as_u64().unwrap();
    assert!(ttv < 5_000, "time to verdict {ttv} ms");
    // Each reason carries the time in the call it was said at: "TeamViewer" comes seconds
    // after "Microsoft".
    let at = |rule: &str| {
        rec["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["rule"] == rule)
            .and_then(|r| r["at_ms"].as_u64())
    };
    let (claim, tool) = (at("claims-tech-company"), at("remote-tool"));
    assert!(
        matches!((claim, tool), (Some(c), Some(t)) if t >= c + 1000),
        "{rec}"
    );
    // Times in the call: after the greeting, within the caller's few seconds of speech.
    let tool = tool.unwrap_or(0);
    assert!((GREETING_MS..GREETING_MS + 12_000).contains(&tool), "{rec}");
    // Every port is back: the RTP range can be bound again.
    ss.assert_ports_free();
}

#[test]
fn legitimate_caller_is_bridged_and_the_callee_hears_them() {
    let _cpu = common::cpu_heavy();
    let callee = callee();
    let ss = Scamscreen::start(callee.addr());
    let first = speech(
        "Hello, this is Doctor Miller's dental office calling to confirm your appointment \
         tomorrow at ten in the morning.",
    );
    let second =
        speech("Please remember to bring your insurance card and arrive ten minutes early.");
    let mut caller = ss.dial("legit");
    caller.silence(GREETING_MS).unwrap();
    caller.speak(&first).unwrap();
    // Silence ends the listening; wait for the callee to be rung and answer.
    caller
        .wait_until(Duration::from_secs(20), || !invites(&callee).is_empty())
        .unwrap();
    let invites = invites(&callee);
    assert_eq!(invites.len(), 1, "the callee rings once");
    assert_eq!(header(&invites[0], "X-Scamscreen-Verdict"), Some("allow"));
    assert!(header(&invites[0], "X-Scamscreen-Score").is_some());
    caller.silence(1000).unwrap();
    caller.speak(&second).unwrap();
    caller.silence(500).unwrap();
    caller.hang_up().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let heard = callee.calls()[0].audio.clone();
    assert!(
        heard.len() > 8000 * 3,
        "the callee received {} samples",
        heard.len()
    );
    let text = transcribe(&heard);
    assert!(
        text.contains("insurance") || text.contains("early"),
        "the callee heard: {text}"
    );
    let bye = callee.sip_log().iter().any(|m| m.starts_with("BYE "));
    assert!(bye, "the caller's hang-up reached the callee");
}
