//! What the Asterisk and FreeSWITCH harnesses share: stopping the server, its voicemail
//! files, and waiting for the phone behind it to answer.

use scamscreen::demo::{CalleeCall, DemoCallee, DemoCaller};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

/// After the server was asked to stop: wait up to `grace` for it to exit, then kill it.
pub fn stop(child: &mut Child, grace: Duration) {
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The `.wav` files in `dir`, sorted by name (none when it does not exist yet).
pub fn wav_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .map(|r| {
            r.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "wav"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The phone's call number `n` (counting from 0), once answered, the caller sending silence
/// meanwhile (the PBX makes its own Call-ID: the phone's calls are told apart by order).
pub fn phone_call(phone: &DemoCallee, caller: &mut DemoCaller, secs: u64, n: usize) -> CalleeCall {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(c) = phone.calls().into_iter().nth(n).filter(|c| c.answered) {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "the phone's call {n} was not answered within {secs} s (it has {}); the caller \
             saw: {:?}",
            phone.calls().len(),
            caller
                .sip_log()
                .iter()
                .map(|m| m.lines().next())
                .collect::<Vec<_>>()
        );
        caller.silence(100).unwrap();
    }
}

/// Wait for the INVITE's final response, which must be 200 (scamscreen answers a withheld
/// caller at once).
pub fn answered(caller: &mut DemoCaller, secs: u64) {
    assert_eq!(
        caller.wait_final(Duration::from_secs(secs)).unwrap(),
        Some(200),
        "the call was not answered: {:?}",
        caller.sip_log()
    );
}
