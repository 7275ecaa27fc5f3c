//! `scamscreen bench listening`: how long screened callers are listened to, per outcome, and
//! the time to verdict, with the listening extended by the detector (`max_listen_secs` 30,
//! the default) against a fixed window (`max_listen_secs = listen_secs` = 8, what scamscreen
//! did before) in the same run. Real model, `scamscreen run` on loopback, espeak-ng speech of
//! held-out corpus openings (authors the rules were never tuned on), and silent callers.

use crate::cli::bench_screening::{chrono_date, machine, write_section};
use crate::cli::demo::Scamscreen;
use anyhow::Context;
use clap::Args;
use scamscreen::demo::{espeak, DemoCallee, DemoCaller};
use scamscreen::detect::eval::Label;
use scamscreen::store::{CallRecord, CallStore};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

const CALLER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const CALLEE_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
/// Short openings: two legitimate, two scams, one borderline.
const SHORT: [&str; 5] = [
    "Hi, this is Anna from the library. Your book is ready to pick up.",
    "Hello, this is Doctor Miller's dental office about your appointment tomorrow.",
    "This is Microsoft support. Your computer has a virus. Install TeamViewer now.",
    "Hello, this is Microsoft. Your computer has a problem.",
    "This is the bank. Please read me the code we just sent to your phone.",
];
const GROUPS: [&str; 5] = [
    "short (under 8 s)",
    "legitimate, 24–35 words",
    "scam, 20–35 words",
    "scam, 48–70 words",
    "silent",
];
const BEGIN: &str = "<!-- listen-bench:begin -->";
const END: &str = "<!-- listen-bench:end -->";

#[derive(Args, Debug)]
pub struct ListeningBenchArgs {
    #[arg(long, default_value = "models", env = "SCAMSCREEN_MODELS")]
    models_dir: PathBuf,
    /// The corpus (held-out authors are used).
    #[arg(long, default_value = "tests/corpus/openings.jsonl")]
    corpus: PathBuf,
    /// Openings per group: short legitimate, short scam, long scam (a claim first, the
    /// request later: recorded-message style).
    #[arg(long, default_value_t = 5)]
    per_group: usize,
    /// Silent callers.
    #[arg(long, default_value_t = 2)]
    silent: usize,
    /// Write the results into this markdown file between its listen-bench markers.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Clone)]
struct Opening {
    group: &'static str,
    id: String,
    text: String,
}

/// Held-out English openings by group, deterministic (corpus order).
fn openings(args: &ListeningBenchArgs) -> anyhow::Result<Vec<Opening>> {
    let items = crate::cli::detect::load_corpus(&args.corpus)?;
    let words = |t: &str| t.split_whitespace().count();
    let mut out = Vec::new();
    let mut take =
        |group: &'static str, pred: &dyn Fn(&scamscreen::detect::eval::CorpusItem) -> bool| {
            let picked: Vec<Opening> = items
                .iter()
                .filter(|i| i.split.as_deref() == Some("test") && i.lang.as_deref() == Some("en"))
                .filter(|i| !i.garbled && pred(i))
                .take(args.per_group)
                .map(|i| Opening {
                    group,
                    id: i.id.clone(),
                    text: i.text.clone(),
                })
                .collect();
            out.extend(picked);
        };
    take("legitimate, 24–35 words", &|i| {
        i.label == Label::Legit && (24..=35).contains(&words(&i.text))
    });
    take("scam, 20–35 words", &|i| {
        i.label == Label::Scam && (20..=35).contains(&words(&i.text))
    });
    take("scam, 48–70 words", &|i| {
        i.label == Label::Scam && (48..=70).contains(&words(&i.text))
    });
    // Openings said well within the window (the demo's and the screening bench's).
    for (n, text) in SHORT.iter().enumerate() {
        out.push(Opening {
            group: "short (under 8 s)",
            id: format!("short-{n}"),
            text: text.to_string(),
        });
    }
    for n in 0..args.silent {
        out.push(Opening {
            group: "silent",
            id: format!("silent-{n}"),
            text: String::new(),
        });
    }
    Ok(out)
}

/// One call: greeting, the opening (or nothing), then silence until scamscreen hangs up or
/// the phone rings; hang up.
fn one_call(
    ss: &Scamscreen,
    callee: &DemoCallee,
    name: &str,
    greeting_ms: u64,
    words: &[i16],
) -> anyhow::Result<()> {
    let mut caller = DemoCaller::call(ss.sip, CALLER_IP, name, Duration::from_secs(10))?;
    caller.silence(greeting_ms + 200)?;
    caller.speak(words)?;
    let id = caller.call_id().to_string();
    caller.wait_until(Duration::from_secs(40), || callee.call_for(&id).is_some())?;
    caller.silence(300)?;
    caller.hang_up()?;
    Ok(())
}

fn percentile(mut v: Vec<u64>, q: f64) -> String {
    if v.is_empty() {
        return "–".into();
    }
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    format!("{:.1}", v[i] as f64 / 1000.0)
}

/// Run every opening through scamscreen with `config`; records by opening id.
fn run_config(
    args: &ListeningBenchArgs,
    calls: &[(Opening, Vec<i16>)],
    config: &str,
    tag: &str,
) -> anyhow::Result<BTreeMap<String, CallRecord>> {
    let dir = tempfile::tempdir().context("cannot make a temporary folder")?;
    let file = dir.path().join("scamscreen.toml");
    std::fs::write(&file, config)?;
    let callee = DemoCallee::start(CALLEE_IP, Duration::from_millis(200))?;
    let ss = Scamscreen::start_with_config(
        &args.models_dir,
        callee.addr(),
        dir.path(),
        16,
        Some(&file),
    )?;
    let greeting_ms = crate::cli::demo::greeting_ms();
    let mut names = Vec::new();
    for (i, (o, pcm)) in calls.iter().enumerate() {
        let name = format!("{tag}-{i}");
        eprintln!("[{tag}] {} {}", o.group, o.id);
        one_call(&ss, &callee, &name, greeting_ms, pcm)?;
        names.push((name, o.id.clone()));
    }
    std::thread::sleep(Duration::from_secs(2));
    let store = CallStore::open_existing(&ss.db)?;
    let records = store.recent(10_000, None)?;
    let mut out = BTreeMap::new();
    for (name, id) in names {
        match records
            .iter()
            .find(|r| r.call_id.contains(&format!("demo-{name}-")))
        {
            Some(r) => {
                out.insert(id, r.clone());
            }
            None => eprintln!("[{tag}] no call record for {id} ({name})"),
        }
    }
    Ok(out)
}

pub fn run(args: ListeningBenchArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let list = openings(&args)?;
    let mut calls = Vec::new();
    for (i, o) in list.iter().enumerate() {
        let pcm = if o.text.is_empty() {
            Vec::new()
        } else {
            espeak(&o.text, &dir.path().join(format!("o{i}.wav")))?
        };
        calls.push((o.clone(), pcm));
    }
    let base = "[screening]\nscreening_timeout_ms = 20000\nmessage_secs = 0\n";
    let fixed = run_config(
        &args,
        &calls,
        &format!("{base}max_listen_secs = 8\n"),
        "fixed",
    )?;
    let extended = run_config(&args, &calls, base, "extended")?;

    let mut section = String::new();
    // The markers are part of the section, so the next run replaces it in place.
    section.push_str(BEGIN);
    section.push('\n');
    section.push_str("## Screening: listening time per outcome (issue 11)\n\n");
    let (cpu, cores) = machine();
    section.push_str(&format!(
        "`scamscreen bench listening --out BENCHMARKS.md` on {cpu} ({cores} cores), {}. \
         Real model (tiny.en q8_0), `scamscreen run` on loopback, espeak-ng en-us speech of \
         held-out corpus openings ({} per group, the first in corpus order; the long ones say \
         who they claim to be first and what they want later), five short openings and {} \
         silent callers, one call at a time, each configuration in its \
         own scamscreen. **fixed**: `max_listen_secs = 8` (listening ends at 8 s whatever was \
         said, as before); **extended**: the default `max_listen_secs = 30` (past 8 s only \
         while more speech could change the action). Times in seconds: listening = end of the \
         greeting → end of listening; verdict = end of listening → decision.\n\n",
        chrono_date(),
        args.per_group,
        args.silent,
    ));
    section.push_str(
        "| group | config | calls | outcomes | listening p50 / max | verdict p50 / max |\n\
         |---|---|---|---|---|---|\n",
    );
    for group in GROUPS {
        for (name, recs) in [("fixed", &fixed), ("extended", &extended)] {
            let rs: Vec<&CallRecord> = calls
                .iter()
                .filter(|(o, _)| o.group == group)
                .filter_map(|(o, _)| recs.get(&o.id))
                .collect();
            let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
            for r in &rs {
                *outcomes.entry(r.action.as_str()).or_default() += 1;
            }
            let outcomes = outcomes
                .iter()
                .map(|(a, n)| format!("{a} {n}"))
                .collect::<Vec<_>>()
                .join(", ");
            let listen: Vec<u64> = rs.iter().map(|r| r.listen_ms).collect();
            let verdict: Vec<u64> = rs.iter().filter_map(|r| r.time_to_verdict_ms).collect();
            section.push_str(&format!(
                "| {group} | {name} | {} | {outcomes} | {} / {} | {} / {} |\n",
                rs.len(),
                percentile(listen.clone(), 0.5),
                percentile(listen, 1.0),
                percentile(verdict.clone(), 0.5),
                percentile(verdict, 1.0),
            ));
        }
    }
    section.push('\n');
    section.push_str(END);
    section.push('\n');
    print!("{section}");
    if let Some(out) = &args.out {
        write_section(out, BEGIN, END, &section)?;
    }
    Ok(())
}
