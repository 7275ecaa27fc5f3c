//! `scamscreen bench screening --two-pass`: what the second pass (whisper base on an open
//! verdict) costs in time to verdict in a real call, measured against the same calls with the
//! second pass off, in one run.

use crate::cli::bench_screening::{
    chrono_date, machine, one_call, percentile, write_section, BusyLoops, CALLEE_IP,
};
use crate::cli::demo::Scamscreen;
use anyhow::Context;
use scamscreen::demo::{espeak, DemoCallee};
use scamscreen::store::CallStore;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// A caller whose words leave the verdict open: the rules warn and more speech could change
/// it (a parcel and a fee, no request for card details yet; tiny.en hears it well).
const OPEN_SENTENCE: &str =
    "Your parcel could not be delivered. You need to pay a small fee to release it.";

/// One round's results.
struct Round {
    calls: usize,
    failed: usize,
    ttv: Vec<u64>,
    actions: BTreeMap<String, usize>,
}

pub fn run(
    models_dir: &Path,
    rounds: usize,
    background_load: usize,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    let base = models_dir.join("ggml-base-q8_0.bin");
    anyhow::ensure!(
        base.exists(),
        "the second pass needs the multilingual model {}: run `scamscreen model fetch --model base` \
         and `scamscreen model convert --model base` (or `make model`)",
        base.display()
    );
    let dir = tempfile::tempdir().context("cannot make a temporary folder")?;
    let words = espeak(OPEN_SENTENCE, &dir.path().join("s.wav"))?;
    let greeting_ms = crate::cli::demo::greeting_ms();
    let mut results = Vec::new();
    for second in [false, true] {
        let sub = dir.path().join(if second { "on" } else { "off" });
        std::fs::create_dir_all(&sub).context("cannot make a temporary folder")?;
        let config = sub.join("scamscreen.toml");
        std::fs::write(
            &config,
            format!("[screening]\nfollow_up = false\nsecond_pass = {second}\n"),
        )
        .context("cannot write the bench configuration")?;
        let callee = DemoCallee::start(CALLEE_IP, Duration::from_millis(200))?;
        let ss = Scamscreen::start_with_config(models_dir, callee.addr(), &sub, 16, Some(&config))?;
        let loops = BusyLoops::start(background_load)?;
        std::thread::sleep(Duration::from_secs(2));
        let mut failed = 0;
        for i in 0..rounds {
            if let Err(e) = one_call(ss.sip, &format!("bench-2p-{i}"), greeting_ms, &words) {
                eprintln!("call {i}: {e:#}");
                failed += 1;
            }
        }
        drop(loops);
        std::thread::sleep(Duration::from_secs(1));
        let records = CallStore::open_existing(&ss.db)?.recent(10_000, None)?;
        let mine: Vec<_> = records
            .iter()
            .filter(|r| r.call_id.contains("bench-2p-"))
            .collect();
        let mut actions = BTreeMap::new();
        for r in &mine {
            *actions.entry(r.action.clone()).or_insert(0) += 1;
        }
        let round = Round {
            calls: mine.len(),
            failed,
            ttv: mine.iter().filter_map(|r| r.time_to_verdict_ms).collect(),
            actions,
        };
        println!(
            "second pass {}: {} calls, p50 {:?} ms, p95 {:?} ms, {:?}",
            if second { "on" } else { "off" },
            round.calls,
            percentile(round.ttv.clone(), 0.5),
            percentile(round.ttv.clone(), 0.95),
            round.actions
        );
        results.push((second, round));
    }
    let section = report(rounds, background_load, &results);
    print!("{section}");
    if let Some(out) = out {
        let (begin, end) = markers(background_load);
        write_section(out, &begin, &end, &section)?;
    }
    Ok(())
}

fn markers(background_load: usize) -> (String, String) {
    let tag = if background_load > 0 { "-busy" } else { "" };
    (
        format!("<!-- two-pass{tag}:begin -->"),
        format!("<!-- two-pass{tag}:end -->"),
    )
}

fn report(rounds: usize, background_load: usize, results: &[(bool, Round)]) -> String {
    let (begin, end) = markers(background_load);
    let (cpu, cores) = machine();
    let fmt = |v: Option<u64>| v.map_or("-".to_string(), |x| x.to_string());
    let mut rows = String::new();
    for (second, r) in results {
        let actions = r
            .actions
            .iter()
            .map(|(a, n)| format!("{a} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        rows.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            if *second { "on (base q8_0)" } else { "off" },
            r.calls,
            r.failed,
            fmt(percentile(r.ttv.clone(), 0.5)),
            fmt(percentile(r.ttv.clone(), 0.95)),
            fmt(r.ttv.iter().max().copied()),
            actions,
        ));
    }
    let load = if background_load > 0 {
        format!(
            "{background_load} × `sh -c 'while :; do :; done'` at nice 0 beside scamscreen through both rounds"
        )
    } else {
        "idle".to_string()
    };
    format!(
        "{begin}\n## Second pass: time to verdict in a call{} (issue 12)\n\n\
         - Command: `make bench` (`scamscreen bench screening --two-pass --rounds {rounds}{}`), {}\n\
         - Machine: {cores} cores ({cpu}); {load}\n\
         - Each call: withheld INVITE, the greeting, \"{OPEN_SENTENCE}\" (espeak-ng; the rules \
         warn on it and more speech could change the verdict, so the verdict is open), 4 s of \
         silence, hang-up; one call at a time. Default configuration (tiny.en q8_0 first, \
         `asr_threads = \"auto\"`, screening_timeout_ms 3000) with `follow_up = false`, once with \
         `second_pass = false` and once with `true` (whisper base q8_0 hears the caller's speech \
         again in the call's language, when at least 1 s of the deadline is left).\n\n\
         | second pass | calls | failed | p50 ms | p95 ms | max ms | verdicts |\n\
         |---|---|---|---|---|---|---|\n{rows}\n\
         Time to verdict = end of the caller's speech → decision, as recorded. A second pass \
         that cannot finish before the deadline is stopped and the first verdict stands, so \
         p95 stays below screening_timeout_ms plus the recogniser's stop latency.\n{end}\n",
        if background_load > 0 {
            " on a busy box"
        } else {
            ""
        },
        if background_load > 0 {
            format!(" --background-load {background_load}")
        } else {
            String::new()
        },
        chrono_date(),
    )
}
