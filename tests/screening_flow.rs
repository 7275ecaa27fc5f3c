//! What a screened caller hears around the verdict, end to end with the real model: the
//! early verdict that diverts a scam before the caller has finished, and the ringback
//! (or silence, as configured) while the callee's phone rings.

mod common;

use common::screening::{invites, speech, Scamscreen, GREETING_MS, LOOPBACK};
use scamscreen::demo::DemoCallee;
use std::time::Duration;

/// Power of `freq` Hz in 8 kHz `x` (Goertzel), per sample.
fn power(x: &[i16], freq: f64) -> f64 {
    let k = 2.0 * (std::f64::consts::TAU * freq / 8000.0).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s = f64::from(v) + k * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    (s1 * s1 + s2 * s2 - k * s1 * s2) / (x.len() as f64).powi(2)
}

fn rms(x: &[i16]) -> f64 {
    (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

#[test]
fn early_verdict_diverts_a_scam_before_the_caller_has_finished() {
    let _cpu = common::cpu_heavy();
    let callee = common::screening::callee();
    // A long listening window: without the early verdict the caller would be heard out
    // (to the end of the monologue) before anything happened.
    let ss = Scamscreen::start_with(
        callee.addr(),
        8,
        // No message offer: the blocked caller is hung up on after the announcement.
        Some("[screening]\nlisten_secs = 30\nscreening_timeout_ms = 20000\nmessage_secs = 0\n"),
    );
    let words = speech(
        "Hello, this is Microsoft technical support. Your computer has a virus. Please \
         install TeamViewer now so our technician can fix it. Do not turn off the machine \
         and stay on the line while we connect and clean everything for you. This will \
         only take a few minutes of your time, and there is no charge for this service \
         today. Thank you for your patience, we are almost ready to begin the repair.",
    );
    let secs = words.len() as f64 / 8000.0;
    assert!(secs > 20.0, "the monologue lasts {secs:.1} s");
    let mut caller = ss.dial("early");
    caller.silence(GREETING_MS).unwrap();
    caller.speak(&words).unwrap();
    assert!(
        caller.got_bye(),
        "blocked and hung up on before the end of a {secs:.0} s monologue: {:?}",
        caller.sip_log()
    );
    assert!(invites(&callee).is_empty(), "the callee's phone never rang");
    let rec = ss.record(caller.call_id());
    assert_eq!(rec["action"], "divert", "{rec}");
    let text = rec["transcript"].as_str().unwrap().to_lowercase();
    assert!(
        text.contains("microsoft") || text.contains("virus"),
        "{text}"
    );
    assert!(
        !text.contains("patience") && !text.contains("repair"),
        "the verdict waited for the end: {text}"
    );
    assert!(rec["listen_ms"].as_u64().unwrap() < 15_000, "{rec}");
    ss.assert_ports_free();
}

/// A legitimate call to a callee who lets it ring 4 s; what the caller hears meanwhile.
fn heard_while_ringing(config: Option<&str>) -> (Vec<i16>, Vec<i16>) {
    let callee = DemoCallee::start(LOOPBACK, Duration::from_secs(4)).unwrap();
    let ss = Scamscreen::start_with(callee.addr(), 8, config);
    let words = speech("Hi, this is Anna from the library. Your book is ready to pick up.");
    let mut caller = ss.dial("ring");
    caller.silence(GREETING_MS).unwrap();
    caller.speak(&words).unwrap();
    assert!(caller
        .wait_until(Duration::from_secs(20), || !invites(&callee).is_empty())
        .unwrap());
    caller.take_heard();
    // The callee answers 4 s after its INVITE: 3 s of ringing, then past the answer.
    caller.silence(3000).unwrap();
    let ringing = caller.take_heard();
    caller.silence(2500).unwrap();
    let after = caller.take_heard();
    assert!(
        callee.calls().iter().any(|c| !c.audio.is_empty()),
        "the call was bridged"
    );
    caller.hang_up().unwrap();
    (ringing, after)
}

#[test]
fn caller_hears_ringback_while_the_callee_rings() {
    let _cpu = common::cpu_heavy();
    let (ringing, after) = heard_while_ringing(None);
    // Default "us": 440 + 480 Hz, 2 s on, 4 s off: 3 s of it hold a burst.
    let (p440, p480, p1000) = (
        power(&ringing, 440.0),
        power(&ringing, 480.0),
        power(&ringing, 1000.0),
    );
    assert!(
        p440 > 100.0 * p1000.max(1e-3) && p480 > 100.0 * p1000.max(1e-3),
        "440 Hz {p440:.1}, 480 Hz {p480:.1}, 1 kHz {p1000:.3}"
    );
    assert!(rms(&ringing) > 300.0, "rms {}", rms(&ringing));
    // Once answered the tone stops: the last second is the callee's (silent) line.
    let tail = &after[after.len().saturating_sub(8000)..];
    assert!(
        rms(tail) < 100.0,
        "tone after the answer: rms {}",
        rms(tail)
    );
}

#[test]
fn ringback_silence_is_silence() {
    let _cpu = common::cpu_heavy();
    let (ringing, _) = heard_while_ringing(Some("[media]\nringback = \"silence\"\n"));
    assert!(rms(&ringing) < 50.0, "rms {}", rms(&ringing));
}
