//! `scamscreen demo`, as `make demo` runs it: a real `scamscreen run` between the built-in
//! caller and callee, with the real model and espeak-ng speech.

mod common;

use std::process::Command;
use std::time::Instant;

/// The lines of one call's section of the report ("── Call N: …" up to the next blank line).
fn section<'a>(out: &'a str, title: &str) -> Vec<&'a str> {
    out.lines()
        .skip_while(|l| !(l.starts_with("── ") && l.contains(title)))
        .take_while(|l| !l.trim().is_empty())
        .collect()
}

/// The text after a report label ("verdict", "callee's phone", …), first line only.
fn field<'a>(lines: &[&'a str], label: &str) -> &'a str {
    lines
        .iter()
        .find_map(|l| {
            let rest = l.strip_prefix(label)?;
            rest.starts_with(' ').then(|| rest.trim())
        })
        .unwrap_or_else(|| panic!("no {label:?} line in {lines:#?}"))
}

#[test]
fn demo_blocks_the_scam_and_puts_the_legitimate_caller_through() {
    let _cpu = common::cpu_heavy();
    common::model("ggml-tiny.en-q8_0.bin");
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_scamscreen"))
        .args(["demo", "--models-dir", "models"])
        .current_dir(common::root())
        .env_remove("SCAMSCREEN_CONFIG")
        .output()
        .expect("run scamscreen demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "{stdout}{stderr}(demo took {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    assert!(out.status.success(), "demo failed: {stderr}");

    let scam = section(&stdout, "Call 1");
    let verdict = field(&scam, "verdict");
    assert!(verdict.starts_with("divert"), "{verdict}");
    let heard = field(&scam, "scamscreen heard").to_lowercase();
    assert!(
        heard.contains("microsoft") || heard.contains("teamviewer"),
        "{heard}"
    );
    assert!(field(&scam, "action").starts_with("blocked"), "{scam:#?}");
    assert_eq!(field(&scam, "callee's phone"), "did not ring");
    assert_eq!(field(&scam, "callee heard"), "nothing");

    let legit = section(&stdout, "Call 2");
    // "allow" on an idle machine; a busy one may run past the ASR timeout, and then fail_open
    // puts the call through unscreened: bridged all the same.
    assert!(
        field(&legit, "action").starts_with("put through"),
        "{legit:#?}"
    );
    assert!(
        field(&legit, "callee's phone").starts_with("rang and was answered"),
        "{legit:#?}"
    );
    assert!(
        legit
            .iter()
            .any(|l| l.trim().starts_with("X-Scamscreen-Verdict: ")),
        "{legit:#?}"
    );
    // The sentence said after the bridge: "Please remember to bring your insurance card and
    // arrive ten minutes early."
    let callee_heard = field(&legit, "callee heard").to_lowercase();
    assert!(
        callee_heard.contains("insurance") || callee_heard.contains("early"),
        "the callee heard: {callee_heard}"
    );
    assert!(stdout.contains("Result: the scam was blocked"), "{stdout}");
}
