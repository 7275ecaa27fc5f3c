//! `scamscreen calls`: the latest screened calls from the call database.
//!
//! Text mode prints one line per call, newest first; `--json` prints one JSON object per call
//! and line (the fields of [`CallRecord`] plus `started_at` in RFC 3339, UTC; `message_ms` is
//! the length of the message the caller left, or null). `--message CALL_ID --out FILE.wav`
//! writes that message as a WAV file (16-bit PCM, 8 kHz, mono) instead of listing.
//! `--feedback` prints, as JSON lines, every call the user marked "scam" / "not a scam" on the
//! call log page (the record plus `feedback` and `feedback_at_ms`), for review. The output
//! holds transcripts and voice messages, which are personal data: it stays out of the
//! authored corpus in `tests/corpus/`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use scamscreen::store::{parse_age, CallRecord, CallStore, VoiceMessage};

/// Words of the transcript shown in text mode.
const TRANSCRIPT_WORDS: usize = 10;
/// Characters of the withheld reason shown in text mode.
const WITHHELD_CHARS: usize = 22;
/// Width of the message column in text mode ("msg 60.0s").
const MESSAGE_CHARS: usize = 9;

#[derive(clap::Args, Debug)]
pub struct CallsArgs {
    /// Call database (SQLite) that `scamscreen run` writes [default: the config's store.db,
    /// else scamscreen-calls.db].
    #[arg(long, env = "SCAMSCREEN_DB")]
    pub db: Option<PathBuf>,
    /// The configuration file of `scamscreen run`, for its store.db.
    #[arg(long, short = 'c', env = "SCAMSCREEN_CONFIG")]
    pub config: Option<PathBuf>,
    /// How many calls to list, newest first.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Only calls younger than this: 90s, 30m, 2h, 7d, 2w.
    #[arg(long, value_parser = parse_age, value_name = "AGE")]
    pub since: Option<Duration>,
    /// One JSON object per call and line.
    #[arg(long)]
    pub json: bool,
    /// First delete calls (and their transcripts and messages) older than this many days.
    #[arg(long, value_name = "DAYS")]
    pub purge_days: Option<u32>,
    /// Write the message the caller of this call left to --out instead of listing calls.
    #[arg(long, value_name = "CALL_ID", requires = "out")]
    pub message: Option<String>,
    /// The WAV file (16-bit PCM, 8 kHz, mono) that --message writes; replaced if it exists.
    #[arg(long, value_name = "FILE.wav", requires = "message")]
    pub out: Option<PathBuf>,
    /// Print the calls with feedback from the call log page as JSON lines instead.
    #[arg(long, conflicts_with_all = ["message", "json"])]
    pub feedback: bool,
}

/// The database to read: `--db`, else the configuration's `store.db` (relative to the file's
/// folder when written there), else the default.
fn database(args: &CallsArgs) -> anyhow::Result<PathBuf> {
    if let Some(db) = &args.db {
        return Ok(db.clone());
    }
    match &args.config {
        Some(path) => Ok(scamscreen::config::Config::load(path)?.store.db),
        None => Ok(PathBuf::from(scamscreen::config::DEFAULT_DB)),
    }
}

pub fn run(args: CallsArgs) -> anyhow::Result<()> {
    let db = database(&args)?;
    let store = CallStore::open_existing(&db)?;
    let now = SystemTime::now();
    if let Some(days) = args.purge_days {
        let max_age = Duration::from_secs(u64::from(days) * 24 * 3600);
        let deleted = store.purge_older_than(max_age, now)?;
        eprintln!(
            "deleted {deleted} call(s) older than {days} day(s) from {}",
            db.display()
        );
    }
    if args.feedback {
        for (record, feedback, at_ms) in store.all_feedback()? {
            let mut v = serde_json::to_value(&record)?;
            v["feedback"] = serde_json::json!(feedback.as_str());
            v["feedback_at_ms"] = serde_json::json!(at_ms);
            println!("{v}");
        }
        return Ok(());
    }
    if let (Some(call_id), Some(out)) = (&args.message, &args.out) {
        let message = export_message(&store, call_id, out)?;
        println!(
            "wrote the message of call {} ({}) to {}",
            printable(call_id, usize::MAX),
            seconds(message.duration_ms()),
            out.display()
        );
        return Ok(());
    }
    let since = args.since.and_then(|age| now.checked_sub(age));
    let calls = store.recent(args.limit, since)?;
    if args.json {
        for call in &calls {
            println!("{}", json_line(call)?);
        }
        return Ok(());
    }
    if calls.is_empty() {
        let when = match args.since {
            Some(_) => " in that time",
            None => "",
        };
        eprintln!("no screened calls{when} in {}", db.display());
        return Ok(());
    }
    println!(
        "{:<19}  {:<14} {:>5}  {:>8}  {:<WITHHELD_CHARS$}  {:<28}  {:<MESSAGE_CHARS$}  transcript",
        "time", "action", "score", "verdict", "withheld because", "rules", "message"
    );
    for call in &calls {
        println!("{}", text_line(call));
    }
    Ok(())
}

/// Writes the message of `call_id` to `out` as a WAV file and returns it.
fn export_message(store: &CallStore, call_id: &str, out: &Path) -> anyhow::Result<VoiceMessage> {
    let call = store.get(call_id)?.with_context(|| {
        format!(
            "no call with Call-ID {:?} in {} (`scamscreen calls` lists them)",
            printable(call_id, usize::MAX),
            store.path().display()
        )
    })?;
    let Some(message) = call.message else {
        bail!(
            "call {:?} in {} has no message: the caller left none, or it was not recorded",
            printable(call_id, usize::MAX),
            store.path().display()
        );
    };
    write_wav(out, &message).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(message)
}

/// 16-bit PCM, 8 kHz, mono.
fn write_wav(out: &Path, message: &VoiceMessage) -> anyhow::Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: VoiceMessage::SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut wav = hound::WavWriter::create(out, spec)?;
    let mut samples = wav.get_i16_writer(message.pcm_8k.len() as u32);
    for &s in &message.pcm_8k {
        samples.write_sample(s);
    }
    samples.flush()?;
    wav.finalize()?;
    Ok(())
}

/// "12.3 s".
fn seconds(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

/// Unix milliseconds as RFC 3339 in UTC (`2026-12-07T15:15:23.894Z`).
pub fn rfc3339_utc(unix_ms: i64) -> Option<String> {
    let t = calendar(unix_ms, false)?;
    Some(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second, t.millis
    ))
}

/// The record as JSON, with `started_at` added as a readable UTC time.
fn json_line(call: &CallRecord) -> anyhow::Result<serde_json::Value> {
    let mut value = serde_json::to_value(call).context("cannot encode a call as JSON")?;
    if let (Some(obj), Some(t)) = (value.as_object_mut(), rfc3339_utc(call.started_at_ms)) {
        obj.insert("started_at".into(), t.into());
    }
    Ok(value)
}

fn text_line(call: &CallRecord) -> String {
    let time = match calendar(call.started_at_ms, true) {
        Some(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            t.year, t.month, t.day, t.hour, t.minute, t.second
        ),
        None => format!("@{}", call.started_at_ms),
    };
    let verdict = match call.time_to_verdict_ms {
        Some(ms) if ms < 10_000 => format!("{ms} ms"),
        Some(ms) => format!("{:.1} s", ms as f64 / 1000.0),
        None => "-".into(),
    };
    let rules = match call.reasons.split_first() {
        None => "-".to_string(),
        Some((first, [])) => first.rule.clone(),
        Some((first, rest)) => format!("{} +{}", first.rule, rest.len()),
    };
    let words: Vec<&str> = call.transcript.split_whitespace().collect();
    let mut transcript = words
        .iter()
        .take(TRANSCRIPT_WORDS)
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    if words.len() > TRANSCRIPT_WORDS {
        transcript.push('…');
    }
    let transcript = match (words.is_empty(), call.action.as_str()) {
        // An unscreened call was not heard as silence: the model did not answer in time.
        (true, "unscreened") => "(not transcribed: no transcript in time, even afterwards)".into(),
        (true, "bypass") => "(put through by the bypass code)".into(),
        (true, "caller_hung_up") => "(hung up before a verdict)".into(),
        (true, _) => "(no speech)".to_string(),
        (false, "unscreened") => format!(
            "transcribed afterwards: \"{}\"",
            printable(&transcript, usize::MAX)
        ),
        (false, _) => format!("\"{}\"", printable(&transcript, usize::MAX)),
    };
    let message = match call.message_ms {
        Some(ms) => format!("msg {:.1}s", ms as f64 / 1000.0),
        None => "-".into(),
    };
    format!(
        "{time:<19}  {:<14} {:>5.2}  {verdict:>8}  {:<WITHHELD_CHARS$}  {:<28}  \
         {message:<MESSAGE_CHARS$}  {transcript}",
        printable(&call.action, 14),
        call.score,
        printable(&call.withheld_reason, WITHHELD_CHARS),
        printable(&rules, 28),
    )
}

/// At most `max` characters, with control characters (from SIP headers or the transcript)
/// shown as `?` so that they cannot drive the terminal.
fn printable(text: &str, max: usize) -> String {
    let count = text.chars().count();
    let mut out: String = text
        .chars()
        .take(if count > max { max - 1 } else { max })
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if count > max {
        out.push('…');
    }
    out
}

struct Calendar {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    millis: u32,
}

/// Unix milliseconds as a calendar time, in the local time zone or in UTC.
fn calendar(unix_ms: i64, local: bool) -> Option<Calendar> {
    let secs = libc::time_t::try_from(unix_ms.div_euclid(1000)).ok()?;
    // SAFETY: `tm` is plain data; localtime_r / gmtime_r write it and return null on failure.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        let ok = if local {
            libc::localtime_r(&secs, &mut tm)
        } else {
            libc::gmtime_r(&secs, &mut tm)
        };
        if ok.is_null() {
            return None;
        }
        tm
    };
    let field = |v: libc::c_int| u32::try_from(v).ok();
    Some(Calendar {
        year: i64::from(tm.tm_year) + 1900,
        month: field(tm.tm_mon)? + 1,
        day: field(tm.tm_mday)?,
        hour: field(tm.tm_hour)?,
        minute: field(tm.tm_min)?,
        second: field(tm.tm_sec)?,
        millis: u32::try_from(unix_ms.rem_euclid(1000)).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use scamscreen::store::RuleHit;

    fn call() -> CallRecord {
        CallRecord {
            call_id: "abc@10.0.0.1".into(),
            started_at_ms: 1_700_000_000_123,
            withheld_reason: "From user anonymous\x1b[2J".into(),
            transcript: "hello this is microsoft windows support your computer has a virus please"
                .into(),
            language: "en".into(),
            score: 0.934,
            action: "divert".into(),
            reasons: vec![
                RuleHit {
                    rule: "impersonation.microsoft".into(),
                    category: "impersonation".into(),
                    weight: 2.0,
                    explanation: "claims to be Microsoft support".into(),
                    matched: "microsoft windows support".into(),
                    at_ms: 1840,
                };
                2
            ],
            warning: None,
            time_to_verdict_ms: Some(412),
            listen_ms: 6000,
            screening_ms: 7000,
            total_ms: None,
            outcome: "diverted".into(),
            message: None,
            message_ms: None,
        }
    }

    #[test]
    fn json_lines_have_the_promised_fields_and_a_utc_time() {
        let v = json_line(&call()).unwrap();
        for key in [
            "call_id",
            "withheld_reason",
            "transcript",
            "score",
            "action",
            "reasons",
            "time_to_verdict_ms",
        ] {
            assert!(v.get(key).is_some(), "{key} missing in {v}");
        }
        assert_eq!(v["started_at"], "2023-11-14T22:13:20.123Z");
        assert_eq!(v["reasons"][0]["matched"], "microsoft windows support");
    }

    #[test]
    fn text_lines_are_short_and_safe_for_a_terminal() {
        let line = text_line(&call());
        assert!(line.contains("divert"), "{line}");
        assert!(line.contains("0.93"), "{line}");
        assert!(line.contains("412 ms"), "{line}");
        assert!(line.contains("impersonation.microsoft +1"), "{line}");
        assert!(line.contains("\"hello this is microsoft windows support your computer has a…\""));
        assert!(!line.contains('\x1b'), "{line:?}");
        assert!(!line.contains("please"), "{line}");
        let silent = text_line(&CallRecord {
            transcript: " ".into(),
            reasons: vec![],
            time_to_verdict_ms: None,
            ..call()
        });
        assert!(
            silent.ends_with("-                             -          (no speech)"),
            "{silent}"
        );
        // A timeout is not silence.
        let late = text_line(&CallRecord {
            action: "unscreened".into(),
            transcript: String::new(),
            ..call()
        });
        assert!(late.ends_with("(not transcribed: no transcript in time, even afterwards)"));
        let later = text_line(&CallRecord {
            action: "unscreened".into(),
            ..call()
        });
        assert!(later.contains("transcribed afterwards: \"hello"), "{later}");
    }

    #[test]
    fn a_message_shows_in_the_table_and_as_message_ms_in_json() {
        let with = CallRecord {
            action: "silent".into(),
            outcome: "refused".into(),
            message_ms: Some(12_345),
            ..call()
        };
        let line = text_line(&with);
        assert!(line.contains("  msg 12.3s  \"hello"), "{line}");
        assert!(line.contains("silent"), "{line}");
        assert!(text_line(&CallRecord {
            action: "bypass".into(),
            ..call()
        })
        .contains(" bypass "));
        assert_eq!(json_line(&with).unwrap()["message_ms"], 12_345);
        let v = json_line(&call()).unwrap();
        assert!(v["message_ms"].is_null(), "{v}");
        assert!(v.get("message").is_none(), "{v}");
    }

    #[test]
    fn a_message_is_exported_as_an_8_khz_mono_wav() {
        let dir = tempfile::tempdir().unwrap();
        let store = CallStore::open(dir.path().join("calls.db")).unwrap();
        let pcm_8k: Vec<i16> = (0..8000 * 3)
            .map(|i| ((i as f64 * 0.3).sin() * 12_000.0) as i16)
            .collect();
        store
            .insert(&CallRecord {
                message: Some(VoiceMessage { pcm_8k }),
                ..call()
            })
            .unwrap();
        store
            .insert(&CallRecord {
                call_id: "quiet".into(),
                ..call()
            })
            .unwrap();

        let out = dir.path().join("message.wav");
        let message = export_message(&store, "abc@10.0.0.1", &out).unwrap();
        assert_eq!(message.duration_ms(), 3000);
        let mut wav = hound::WavReader::open(&out).unwrap();
        let spec = wav.spec();
        assert_eq!(
            (spec.channels, spec.sample_rate, spec.bits_per_sample),
            (1, 8000, 16)
        );
        assert_eq!(spec.sample_format, hound::SampleFormat::Int);
        let samples: Vec<i16> = wav.samples::<i16>().map(Result::unwrap).collect();
        assert_eq!(samples, message.pcm_8k);
        // A canonical 44-byte header and two bytes per sample.
        assert_eq!(std::fs::metadata(&out).unwrap().len(), 44 + 2 * 8000 * 3);

        let e = export_message(&store, "quiet", &out)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"quiet\"") && e.contains("has no message"),
            "{e}"
        );
        let e = export_message(&store, "nobody", &out)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no call with Call-ID \"nobody\""), "{e}");
        assert!(e.contains("calls.db"), "{e}");
        let e = export_message(&store, "abc@10.0.0.1", &dir.path().join("no/such/dir.wav"))
            .unwrap_err();
        assert!(format!("{e:#}").contains("cannot write"), "{e:#}");
    }
}
