//! Shared helpers for integration tests.
#![allow(dead_code)]

pub mod asterisk;
pub mod freeswitch;
pub mod pbx;
pub mod screening;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// whisper.cpp's threads spin while they wait; two models running at once on a 2-core box
/// slow each other down more than tenfold. Tests that run the model hold this lock.
pub fn cpu_heavy() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The converted model the tests use. `make test` builds it first; a missing model is a test
/// failure with the command that makes it, never a silent skip.
pub fn model(name: &str) -> PathBuf {
    let p = root().join("models").join(name);
    assert!(
        p.is_file(),
        "{} is missing: run `make model` (scamscreen model fetch && scamscreen model convert)",
        p.display()
    );
    p
}

/// (wav path, reference text) from a clips.tsv.
pub fn clips(tsv: &Path) -> Vec<(PathBuf, String)> {
    let dir = tsv.parent().unwrap_or(Path::new("."));
    std::fs::read_to_string(tsv)
        .unwrap_or_else(|e| panic!("{}: {e}", tsv.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (f, t) = l
                .split_once('\t')
                .unwrap_or_else(|| panic!("bad line {l:?}"));
            (dir.join(f), t.to_string())
        })
        .collect()
}
