//! The seed calls spoken (espeak-ng), carried over 8 kHz G.711 µ-law and transcribed by the
//! real whisper model, then scored: what the product will actually hear.

mod common;

use std::process::Command;

use scamscreen::asr::audio::read_wav_16k;
use scamscreen::asr::whisper::{WhisperConfig, WhisperPool};
use scamscreen::asr::Transcriber;
use scamscreen::detect::{Action, Category, Detector, Thresholds};

#[test]
fn spoken_seed_calls_are_flagged_through_the_phone_band_and_the_model() {
    let _cpu = common::cpu_heavy();
    let pool = WhisperPool::start(&WhisperConfig::new(common::model("ggml-tiny.en-q8_0.bin")))
        .expect("model");
    let det = Detector::load_dir(&common::root().join("models/rules"), Thresholds::default())
        .expect("rules");
    let dir = tempfile::tempdir().expect("tmp");
    for name in ["windows-hq.txt", "microsoft-support.txt"] {
        let text = std::fs::read_to_string(common::root().join("tests/data/seeds").join(name))
            .expect("seed");
        let raw = dir.path().join("raw.wav");
        let wav = dir.path().join("call.wav");
        let ok = Command::new("espeak-ng")
            .args(["-g", "4", "-v", "en-us+f2", "-s", "140", "-w"])
            .arg(&raw)
            .arg(&text)
            .status()
            .expect("espeak-ng installed (make deps)");
        assert!(ok.success());
        let ok = Command::new("sox")
            .arg(&raw)
            .args(["-r", "8000", "-c", "1", "-e", "u-law"])
            .arg(&wav)
            .args(["sinc", "300-3400", "norm", "-3"])
            .status()
            .expect("sox installed");
        assert!(ok.success());
        let t = pool
            .transcribe(read_wav_16k(&wav).expect("wav"))
            .expect("transcribes");
        let v = det.score_segments(&t.segments, Some("en")).expect("scores");
        println!(
            "{name}: heard {:?}\n  → {:?} {:.2} {}",
            t.text, v.action, v.score, v.warning
        );
        assert_ne!(v.action, Action::Allow, "{name}");
        assert!(
            v.reasons
                .iter()
                .any(|r| r.category == Category::Impersonation),
            "{v:?}"
        );
    }
}
