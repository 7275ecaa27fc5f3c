use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use rusqlite::Connection;

use super::*;

const T0: i64 = 1_700_000_000_000;

fn record(call_id: &str, started_at_ms: i64) -> CallRecord {
    CallRecord {
        call_id: call_id.to_string(),
        started_at_ms,
        withheld_reason: "From user anonymous".into(),
        transcript: "hello this is microsoft windows support your computer has a virus".into(),
        language: "en".into(),
        score: 0.93,
        action: "divert".into(),
        reasons: vec![
            RuleHit {
                rule: "impersonation.microsoft".into(),
                category: "impersonation".into(),
                weight: 2.0,
                explanation: "claims to be Microsoft support".into(),
                matched: "microsoft windows support".into(),
                at_ms: 1840,
            },
            RuleHit {
                rule: "computer.virus".into(),
                category: "computer_problem".into(),
                weight: 1.5,
                explanation: "says the computer has a virus \"now\"".into(),
                matched: "your computer has a virus".into(),
                at_ms: 3920,
            },
        ],
        warning: Some("This caller claims to be Microsoft support.".into()),
        time_to_verdict_ms: Some(412),
        listen_ms: 6000,
        screening_ms: 7210,
        total_ms: None,
        outcome: "diverted".into(),
        message: None,
        message_ms: None,
    }
}

/// `ms` of a tone at `hz` whose loudness sweeps from silence to full scale, so that every
/// µ-law segment is used.
fn voice(ms: u64, hz: f64) -> VoiceMessage {
    let n = (ms * 8) as usize;
    let pcm_8k = (0..n)
        .map(|i| {
            let t = i as f64 / 8000.0;
            let loudness = i as f64 / n.max(1) as f64;
            (loudness * 32767.0 * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16
        })
        .collect();
    VoiceMessage { pcm_8k }
}

fn with_message(call_id: &str, started_at_ms: i64, message: VoiceMessage) -> CallRecord {
    CallRecord {
        action: "silent".into(),
        outcome: "refused".into(),
        message: Some(message),
        ..record(call_id, started_at_ms)
    }
}

/// µ-law keeps about 13 bits of a sample: the error is at most half a step, and a step is
/// 1/16 of the magnitude or less (8 near zero).
fn assert_close(got: &VoiceMessage, sent: &VoiceMessage) {
    assert_eq!(got.pcm_8k.len(), sent.pcm_8k.len());
    for (i, (&g, &s)) in got.pcm_8k.iter().zip(&sent.pcm_8k).enumerate() {
        let error = (i32::from(g) - i32::from(s)).abs();
        let tolerance = i32::from(s).abs() / 16 + 8;
        assert!(error <= tolerance, "sample {i}: sent {s}, got {g}");
    }
}

/// Whether the database file (or its WAL, after a checkpoint) holds these bytes.
fn file_holds(path: &Path, probe: &[u8]) -> bool {
    Connection::open(path)
        .unwrap()
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    let mut bytes = std::fs::read(path).unwrap();
    if let Ok(wal) = std::fs::read(path.with_extension("db-wal")) {
        bytes.extend(wal);
    }
    bytes.windows(probe.len()).any(|w| w == probe)
}

fn stored_messages(store: &CallStore) -> i64 {
    Connection::open(store.path())
        .unwrap()
        .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
        .unwrap()
}

fn user_version(path: &Path) -> i64 {
    Connection::open(path)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}

#[test]
fn an_empty_file_is_migrated_to_the_current_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calls.db");
    std::fs::write(&path, b"").unwrap();
    let store = CallStore::open(&path).unwrap();
    assert_eq!(store.count().unwrap(), 0);
    drop(store);
    assert_eq!(user_version(&path), SCHEMA_VERSION);
    assert_eq!(SCHEMA_VERSION, 3);
    // Opening again is a no-op and keeps the rows.
    let store = CallStore::open(&path).unwrap();
    store.insert(&record("a", T0)).unwrap();
    drop(store);
    assert_eq!(CallStore::open(&path).unwrap().count().unwrap(), 1);
}

#[test]
fn open_creates_the_folder_and_the_file_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("var/lib/scamscreen/calls.db");
    let store = CallStore::open(&path).unwrap();
    assert!(path.is_file());
    assert_eq!(store.path(), path);
    let mode: String = Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn a_file_that_is_not_sqlite_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.db");
    std::fs::write(&path, "these are my notes, not a database\n".repeat(100)).unwrap();
    for e in [
        CallStore::open(&path).unwrap_err(),
        CallStore::open_existing(&path).unwrap_err(),
    ] {
        assert!(matches!(e, StoreError::NotADatabase { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("not a SQLite database"), "{msg}");
    }
    // And the file is left alone.
    assert!(std::fs::read_to_string(&path)
        .unwrap()
        .starts_with("these are my notes"));
}

#[test]
fn a_database_from_a_newer_scamscreen_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calls.db");
    drop(CallStore::open(&path).unwrap());
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 7)
        .unwrap();
    let e = CallStore::open(&path).unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::NewerSchema {
                found: 7,
                supported: 3,
                ..
            }
        ),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("schema version 7") && msg.contains("calls.db"),
        "{msg}"
    );
}

#[test]
fn another_programs_database_is_not_written_into() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE contacts (name TEXT, number TEXT);")
        .unwrap();
    let e = CallStore::open(&path).unwrap_err();
    assert!(matches!(e, StoreError::Foreign { .. }), "{e:?}");
    assert!(e.to_string().contains("other.db"), "{e}");
    let tables: i64 = Connection::open(&path)
        .unwrap()
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .unwrap();
    assert_eq!(tables, 1);
}

#[test]
fn open_existing_does_not_create_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.db");
    let e = CallStore::open_existing(&path).unwrap_err();
    assert!(matches!(e, StoreError::Missing { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("nope.db") && msg.contains("no screened calls") && msg.contains("--db"));
    assert!(!path.exists());
}

#[test]
fn records_round_trip_with_their_reasons() {
    let store = CallStore::open_in_memory().unwrap();
    let full = record("full@10.0.0.1", T0);
    let mut bare = record("bare", T0 + 1000);
    bare.reasons.clear();
    bare.warning = None;
    bare.time_to_verdict_ms = None;
    bare.transcript = "grüß gott, ich bin's — \"quoted\"".into();
    bare.action = "caller_hung_up".into();
    bare.total_ms = Some(u64::MAX); // out of SQLite's range: saturates, does not fail
    store.insert(&full).unwrap();
    store.insert(&bare).unwrap();

    assert_eq!(store.get("full@10.0.0.1").unwrap().unwrap(), full);
    let got = store.get("bare").unwrap().unwrap();
    assert_eq!(got.total_ms, Some(i64::MAX as u64));
    assert_eq!(
        CallRecord {
            total_ms: bare.total_ms,
            ..got
        },
        bare
    );
    assert_eq!(store.get("unknown").unwrap(), None);
    assert_eq!(store.count().unwrap(), 2);
}

#[test]
fn recent_is_newest_first_limited_and_filtered_by_time() {
    let store = CallStore::open_in_memory().unwrap();
    for i in 0..10 {
        store
            .insert(&record(&format!("c{i}"), T0 + i * 60_000))
            .unwrap();
    }
    let ids = |calls: Vec<CallRecord>| calls.into_iter().map(|c| c.call_id).collect::<Vec<_>>();
    assert_eq!(ids(store.recent(3, None).unwrap()), ["c9", "c8", "c7"]);
    let since = from_unix_ms(T0 + 7 * 60_000);
    assert_eq!(
        ids(store.recent(20, Some(since)).unwrap()),
        ["c9", "c8", "c7"]
    );
    assert_eq!(store.recent(0, None).unwrap(), vec![]);
    assert_eq!(store.recent(100, None).unwrap().len(), 10);
}

#[test]
fn recording_a_call_again_replaces_it() {
    let store = CallStore::open_in_memory().unwrap();
    store.insert(&record("x", T0)).unwrap();
    let mut later = record("x", T0);
    later.action = "warn".into();
    store.insert(&later).unwrap();
    assert_eq!(store.count().unwrap(), 1);
    assert_eq!(store.get("x").unwrap().unwrap().action, "warn");
}

#[test]
fn the_outcome_is_updated_when_the_call_ends() {
    let store = CallStore::open_in_memory().unwrap();
    let mut r = record("x", T0);
    r.outcome = "screening".into();
    store.insert(&r).unwrap();
    assert!(store.update_outcome("x", "answered", Some(95_000)).unwrap());
    let got = store.get("x").unwrap().unwrap();
    assert_eq!(
        (got.outcome.as_str(), got.total_ms),
        ("answered", Some(95_000))
    );
    // No total given: the known one stays.
    assert!(store.update_outcome("x", "hung-up", None).unwrap());
    assert_eq!(store.get("x").unwrap().unwrap().total_ms, Some(95_000));
    assert!(!store.update_outcome("nobody", "answered", None).unwrap());
}

#[test]
fn retention_deletes_old_calls_and_their_transcripts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calls.db");
    let store = CallStore::open(&path).unwrap();
    let day = 24 * 3600 * 1000;
    for (i, age_days) in [40, 31, 29, 1, 0].into_iter().enumerate() {
        let id = format!("c{i}-is-{age_days}-days-old");
        store.insert(&record(&id, T0 - age_days * day)).unwrap();
    }
    let now = from_unix_ms(T0);
    let retention = Duration::from_secs(u64::from(DEFAULT_RETENTION_DAYS) * 24 * 3600);
    assert_eq!(store.purge_older_than(retention, now).unwrap(), 2);
    assert_eq!(store.count().unwrap(), 3);
    assert_eq!(store.get("c0-is-40-days-old").unwrap(), None);
    assert!(store.get("c2-is-29-days-old").unwrap().is_some());
    assert_eq!(store.purge_older_than(retention, now).unwrap(), 0);
    // A retention longer than the epoch deletes nothing rather than failing.
    assert_eq!(store.purge_older_than(Duration::MAX, now).unwrap(), 0);
    drop(store);
    // secure_delete: the transcript of a purged call is not left in the file's free pages.
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    drop(conn);
    let mut bytes = std::fs::read(&path).unwrap();
    if let Ok(wal) = std::fs::read(dir.path().join("calls.db-wal")) {
        bytes.extend(wal);
    }
    for purged in ["c0-is-40-days-old", "c1-is-31-days-old"] {
        let present = bytes.windows(purged.len()).any(|w| w == purged.as_bytes());
        assert!(!present, "{purged} still in the file");
    }
}

#[test]
fn the_writer_writes_in_the_background() {
    let store = CallStore::open_in_memory().unwrap();
    let writer = StoreWriter::start(store, WriterOptions::default()).unwrap();
    let recorder = writer.recorder();
    for i in 0..100 {
        // Never full here: the writer keeps up with a queue of 256.
        recorder
            .try_record(record(&format!("c{i}"), T0 + i))
            .unwrap();
    }
    recorder
        .try_update_outcome("c5", "answered", Some(1234))
        .unwrap();
    writer.flush();
    let stats = writer.shutdown();
    assert_eq!(
        stats,
        WriterStats {
            written: 100,
            ..WriterStats::default()
        }
    );
    // The recorder outlives the writer: records are dropped and counted, not blocked on.
    assert_eq!(
        recorder.try_record(record("late", T0)),
        Err(RecordDropped::WriterStopped)
    );
    assert_eq!(recorder.stats().dropped, 1);
}

#[test]
fn the_writer_purges_old_calls_when_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calls.db");
    let store = CallStore::open(&path).unwrap();
    store.insert(&record("ancient", T0)).unwrap();
    let writer = StoreWriter::start(store, WriterOptions::default()).unwrap();
    writer
        .recorder()
        .try_record(record("now", unix_ms(SystemTime::now())))
        .unwrap();
    writer.flush();
    assert_eq!(writer.shutdown().purged, 1);
    let store = CallStore::open(&path).unwrap();
    assert_eq!(store.get("ancient").unwrap(), None);
    assert!(store.get("now").unwrap().is_some());
}

#[test]
fn a_full_queue_drops_and_counts_records_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calls.db");
    let store = CallStore::open(&path).unwrap();
    let options = WriterOptions {
        queue_len: 4,
        retention: None,
        ..WriterOptions::default()
    };
    let writer = StoreWriter::start(store, options).unwrap();
    let recorder = writer.recorder();

    // Another process holds the write lock: the writer thread waits on it (busy timeout).
    let mut other = Connection::open(&path).unwrap();
    let lock = other
        .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)
        .unwrap();
    let mut accepted = 0u64;
    let mut slowest = Duration::ZERO;
    for i in 0..200 {
        let t = Instant::now();
        if recorder
            .try_record(record(&format!("c{i}"), T0 + i))
            .is_ok()
        {
            accepted += 1;
        }
        slowest = slowest.max(t.elapsed());
    }
    assert!(
        slowest < Duration::from_millis(50),
        "try_record took {slowest:?}"
    );
    // At most the queue and one batch in the writer's hands (it drains the queue into a batch
    // while it is being filled).
    let bound = 4 + writer::MAX_BATCH as u64;
    assert!(
        accepted <= bound,
        "accepted {accepted} {:?}",
        recorder.stats()
    );
    assert_eq!(recorder.stats().dropped, 200 - accepted);
    assert_eq!(
        recorder.try_record(record("more", T0)),
        Err(RecordDropped::QueueFull)
    );

    lock.commit().unwrap();
    writer.flush();
    let stats = writer.shutdown();
    assert_eq!(stats.written, accepted);
    assert_eq!(stats.dropped, 200 - accepted + 1);
    assert_eq!(stats.failed, 0);
    assert_eq!(CallStore::open(&path).unwrap().count().unwrap(), accepted);
}

#[test]
fn two_stores_share_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calls.db");
    // Several processes opening a new file at once: one migrates, none fails.
    let opened: Vec<_> = (0..4)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || CallStore::open(path).map(|_| ()))
        })
        .collect();
    for t in opened {
        t.join().unwrap().unwrap();
    }
    let proxy = CallStore::open(&path).unwrap();
    let cli = CallStore::open_existing(&path).unwrap();
    proxy.insert(&record("a", T0)).unwrap();
    assert_eq!(cli.get("a").unwrap().unwrap().call_id, "a");
    cli.update_outcome("a", "answered", Some(10)).unwrap();
    assert_eq!(proxy.get("a").unwrap().unwrap().outcome, "answered");

    // WAL: a reader is not blocked by a writer in the middle of a transaction.
    let mut writer = Connection::open(&path).unwrap();
    let tx = writer
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    tx.execute("DELETE FROM calls", []).unwrap();
    let t = Instant::now();
    assert_eq!(cli.count().unwrap(), 1);
    assert!(t.elapsed() < Duration::from_secs(1));
    tx.commit().unwrap();
    assert_eq!(cli.count().unwrap(), 0);
}

#[test]
fn json_has_the_fields_the_cli_promises() {
    let v = serde_json::to_value(record("a", T0)).unwrap();
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
    assert_eq!(v["reasons"][0]["rule"], "impersonation.microsoft");
    let back: CallRecord = serde_json::from_value(v).unwrap();
    assert_eq!(back, record("a", T0));
}

#[test]
fn a_detector_reason_becomes_a_rule_hit() {
    let reason = crate::detect::Reason {
        rule: "r1".into(),
        category: crate::detect::Category::RemoteAccess,
        weight: 1.0,
        explanation: "asks to install AnyDesk".into(),
        matched: "install anydesk".into(),
        at_ms: 2500,
    };
    let hit = RuleHit::from(&reason);
    assert_eq!(hit.category, "remote_access");
    assert_eq!((hit.rule.as_str(), hit.at_ms), ("r1", 2500));
}

#[test]
fn ages_parse_with_units() {
    assert_eq!(parse_age("90").unwrap(), Duration::from_secs(90));
    assert_eq!(parse_age("30m").unwrap(), Duration::from_secs(1800));
    assert_eq!(parse_age("2h").unwrap(), Duration::from_secs(7200));
    assert_eq!(parse_age(" 7d ").unwrap(), Duration::from_secs(7 * 86400));
    assert_eq!(parse_age("1w").unwrap(), Duration::from_secs(7 * 86400));
    for bad in ["", "h", "2x", "-1d", "1.5h"] {
        assert!(
            matches!(parse_age(bad), Err(AgeError::Malformed(_))),
            "{bad}"
        );
    }
    assert!(matches!(
        parse_age("99999999999999999999d"),
        Err(AgeError::TooLong(_))
    ));
    assert!(matches!(
        parse_age("999999999999999999w"),
        Err(AgeError::TooLong(_))
    ));
}

#[test]
fn unix_ms_round_trips_before_and_after_the_epoch() {
    for ms in [0, 1, T0, -1, -86_400_000] {
        assert_eq!(unix_ms(from_unix_ms(ms)), ms);
    }
    assert_eq!(record("a", T0).started_at(), from_unix_ms(T0));
}

#[test]
fn a_version_1_file_gets_the_messages_table_and_keeps_its_calls() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calls.db");
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(schema::MIGRATIONS[0]).unwrap();
    conn.execute_batch(
        "INSERT INTO calls (call_id, started_at_ms, withheld_reason, transcript, language, \
         score, action, reasons_json, listen_ms, screening_ms, outcome) \
         VALUES ('old', 1700000000000, 'anonymous', 'hello', 'en', 0.5, 'warn', '[]', 10, 20, \
         'answered'); PRAGMA user_version = 1;",
    )
    .unwrap();
    drop(conn);
    let store = CallStore::open(&path).unwrap();
    assert_eq!(user_version(&path), SCHEMA_VERSION);
    let old = store.get("old").unwrap().unwrap();
    assert_eq!((old.message, old.message_ms), (None, None));
    assert_eq!(old.transcript, "hello");
    store
        .insert(&with_message("new", T0, voice(500, 300.0)))
        .unwrap();
    assert_eq!(store.get("new").unwrap().unwrap().message_ms, Some(500));
}

#[test]
fn a_message_round_trips_through_mu_law() {
    let dir = tempfile::tempdir().unwrap();
    let store = CallStore::open(dir.path().join("calls.db")).unwrap();
    let sent = with_message("m@10.0.0.1", T0, voice(12_345, 440.0));
    assert_eq!(sent.message.as_ref().unwrap().duration_ms(), 12_345);
    store.insert(&sent).unwrap();

    let got = store.get("m@10.0.0.1").unwrap().unwrap();
    assert_eq!(got.message_ms, Some(12_345));
    assert_close(
        got.message.as_ref().unwrap(),
        sent.message.as_ref().unwrap(),
    );
    // Everything else comes back as it was.
    assert_eq!(
        CallRecord {
            message: None,
            message_ms: None,
            ..got.clone()
        },
        CallRecord {
            message: None,
            ..sent.clone()
        }
    );
    assert_eq!(store.message("m@10.0.0.1").unwrap(), got.message);
    assert_eq!(store.message("unknown").unwrap(), None);
    assert_eq!(store.message("").unwrap(), None);

    // Stored as one byte per sample, named as µ-law.
    let (codec, duration, bytes): (String, i64, i64) = Connection::open(store.path())
        .unwrap()
        .query_row(
            "SELECT codec, duration_ms, length(audio) FROM messages WHERE call_id = ?1",
            ["m@10.0.0.1"],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((codec.as_str(), duration), ("pcmu", 12_345));
    assert_eq!(bytes, 12_345 * 8);
}

#[test]
fn an_empty_or_extreme_message_is_stored_too() {
    let store = CallStore::open_in_memory().unwrap();
    store
        .insert(&with_message("empty", T0, VoiceMessage { pcm_8k: vec![] }))
        .unwrap();
    let got = store.get("empty").unwrap().unwrap();
    assert_eq!(got.message, Some(VoiceMessage { pcm_8k: vec![] }));
    assert_eq!(got.message_ms, Some(0));
    let extremes = VoiceMessage {
        pcm_8k: vec![i16::MIN, i16::MAX, 0, -1, 1, 7],
    };
    store
        .insert(&with_message("loud", T0, extremes.clone()))
        .unwrap();
    assert_close(&store.message("loud").unwrap().unwrap(), &extremes);
    assert_eq!(VoiceMessage { pcm_8k: vec![0; 7] }.duration_ms(), 0);
    assert_eq!(VoiceMessage { pcm_8k: vec![0; 8] }.duration_ms(), 1);
    assert_eq!(voice(60_000, 440.0).duration_ms(), 60_000);
}

#[test]
fn an_unknown_codec_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = CallStore::open(dir.path().join("calls.db")).unwrap();
    store
        .insert(&with_message("x", T0, voice(100, 440.0)))
        .unwrap();
    Connection::open(store.path())
        .unwrap()
        .execute("UPDATE messages SET codec = 'opus'", [])
        .unwrap();
    let e = store.message("x").unwrap_err();
    assert!(matches!(e, StoreError::UnknownCodec { .. }), "{e:?}");
    assert!(
        e.to_string().contains("\"opus\"") && e.to_string().contains("call x"),
        "{e}"
    );
    assert!(store.get("x").is_err());
    // Listing does not read the audio, so it still works.
    assert_eq!(store.recent(10, None).unwrap()[0].message_ms, Some(100));
}

#[test]
fn recording_a_call_again_replaces_its_message() {
    let dir = tempfile::tempdir().unwrap();
    let store = CallStore::open(dir.path().join("calls.db")).unwrap();
    store
        .insert(&with_message("x", T0, voice(1000, 440.0)))
        .unwrap();
    let second = voice(2000, 880.0);
    store
        .insert(&with_message("x", T0, second.clone()))
        .unwrap();
    assert_eq!(stored_messages(&store), 1);
    let got = store.get("x").unwrap().unwrap();
    assert_eq!(got.message_ms, Some(2000));
    assert_close(got.message.as_ref().unwrap(), &second);

    // Recorded again without a message: the stored one goes.
    store.insert(&record("x", T0)).unwrap();
    assert_eq!(stored_messages(&store), 0);
    let got = store.get("x").unwrap().unwrap();
    assert_eq!((got.message, got.message_ms), (None, None));
    assert_eq!(store.message("x").unwrap(), None);

    // insert_all: both rows of every record in the one transaction.
    let mut store = store;
    store
        .insert_all(&[
            with_message("a", T0, voice(300, 440.0)),
            record("b", T0),
            with_message("c", T0, voice(400, 440.0)),
        ])
        .unwrap();
    assert_eq!(stored_messages(&store), 2);
    assert_eq!(store.get("c").unwrap().unwrap().message_ms, Some(400));
}

#[test]
fn a_failed_record_leaves_no_message_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calls.db");
    let store = CallStore::open(&path).unwrap();
    // A trigger makes the message insert fail after the call row was written.
    Connection::open(&path)
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER no_messages BEFORE INSERT ON messages \
             BEGIN SELECT RAISE(ABORT, 'refused'); END;",
        )
        .unwrap();
    assert!(store
        .insert(&with_message("x", T0, voice(100, 440.0)))
        .is_err());
    assert_eq!(store.count().unwrap(), 0, "the call row was rolled back");
}

#[test]
fn listing_carries_the_message_length_but_not_the_audio() {
    let store = CallStore::open_in_memory().unwrap();
    store
        .insert(&with_message("m1", T0, voice(12_300, 440.0)))
        .unwrap();
    store.insert(&record("plain", T0 + 1)).unwrap();
    store
        .insert(&with_message("m2", T0 + 2, voice(60_000, 440.0)))
        .unwrap();
    let calls = store.recent(10, None).unwrap();
    let listed: Vec<_> = calls
        .iter()
        .map(|c| (c.call_id.as_str(), c.message_ms, c.message.is_some()))
        .collect();
    assert_eq!(
        listed,
        [
            ("m2", Some(60_000), false),
            ("plain", None, false),
            ("m1", Some(12_300), false)
        ]
    );
    // The time filter and the limit still apply to the joined query.
    let since = from_unix_ms(T0 + 1);
    assert_eq!(store.recent(1, Some(since)).unwrap()[0].call_id, "m2");
    assert_eq!(store.recent(10, Some(since)).unwrap().len(), 2);
}

#[test]
fn retention_deletes_messages_with_their_calls() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calls.db");
    let store = CallStore::open(&path).unwrap();
    let day = 24 * 3600 * 1000;
    let old = voice(3000, 1234.0);
    store
        .insert(&with_message("old", T0 - 40 * day, old.clone()))
        .unwrap();
    store
        .insert(&with_message("young", T0 - day, voice(3000, 440.0)))
        .unwrap();
    store.insert(&record("plain-old", T0 - 35 * day)).unwrap();
    let encoded = crate::media::g711::Codec::Pcmu.encode(&old.pcm_8k);
    let probe = encoded[encoded.len() - 64..].to_vec();
    assert!(file_holds(&path, &probe), "the probe finds stored audio");
    let retention = Duration::from_secs(u64::from(DEFAULT_RETENTION_DAYS) * 24 * 3600);
    assert_eq!(
        store.purge_older_than(retention, from_unix_ms(T0)).unwrap(),
        2
    );
    assert_eq!(store.message("old").unwrap(), None);
    assert!(store.message("young").unwrap().is_some());
    assert_eq!(stored_messages(&store), 1);

    // A message whose call another program deleted (without foreign keys) goes too.
    let other = Connection::open(&path).unwrap();
    other.pragma_update(None, "foreign_keys", "OFF").unwrap();
    other
        .execute("DELETE FROM calls WHERE call_id = 'young'", [])
        .unwrap();
    assert_eq!(stored_messages(&store), 1);
    assert_eq!(
        store
            .purge_older_than(Duration::MAX, from_unix_ms(T0))
            .unwrap(),
        0
    );
    assert_eq!(stored_messages(&store), 0);
    drop(store);

    // secure_delete: the purged audio is not left in the file's free pages.
    drop(other);
    assert!(!file_holds(&path, &probe), "purged audio still in the file");
}

#[test]
fn json_has_message_ms_but_never_the_audio() {
    let mut r = with_message("a", T0, voice(1500, 440.0));
    r.message_ms = Some(1500);
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["message_ms"], 1500);
    assert!(v.get("message").is_none(), "{v}");
    assert_eq!(
        serde_json::to_value(record("b", T0)).unwrap()["message_ms"],
        serde_json::Value::Null
    );
    // JSON written before messages existed still reads.
    let mut old = serde_json::to_value(record("c", T0)).unwrap();
    old.as_object_mut().unwrap().remove("message_ms");
    let back: CallRecord = serde_json::from_value(old).unwrap();
    assert_eq!(back, record("c", T0));
}

#[test]
fn the_writer_writes_records_with_messages() {
    let store = CallStore::open_in_memory().unwrap();
    let writer = StoreWriter::start(store, WriterOptions::default()).unwrap();
    let recorder = writer.recorder();
    for i in 0..20 {
        // 20 one-minute messages: 19 MB of PCM, within the default bound of queued audio.
        recorder
            .try_record(with_message(&format!("c{i}"), T0 + i, voice(60_000, 440.0)))
            .unwrap();
    }
    writer.flush();
    let stats = writer.shutdown();
    assert_eq!(stats.written, 20);
    assert_eq!(stats.dropped, 0);
}

#[test]
fn queued_message_audio_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calls.db");
    let store = CallStore::open(&path).unwrap();
    let minute_bytes = 60_000 * 8 * 2;
    let options = WriterOptions {
        queue_len: 1000,
        queued_audio_bytes: 3 * minute_bytes,
        retention: None,
        ..WriterOptions::default()
    };
    let writer = StoreWriter::start(store, options).unwrap();
    let recorder = writer.recorder();
    let minute = voice(60_000, 440.0);

    // A message larger than the whole bound never fits.
    assert_eq!(
        recorder.try_record(with_message("huge", T0, voice(4 * 60_000, 440.0))),
        Err(RecordDropped::AudioBacklog)
    );

    // The disk is stuck: three minutes of audio wait, the fourth is dropped, records without
    // a message still queue.
    let mut other = Connection::open(&path).unwrap();
    let lock = other
        .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)
        .unwrap();
    for i in 0..3 {
        recorder
            .try_record(with_message(&format!("m{i}"), T0 + i, minute.clone()))
            .unwrap();
    }
    let t = Instant::now();
    assert_eq!(
        recorder.try_record(with_message("m3", T0 + 3, minute.clone())),
        Err(RecordDropped::AudioBacklog)
    );
    assert!(t.elapsed() < Duration::from_millis(50));
    recorder.try_record(record("plain", T0 + 4)).unwrap();
    assert_eq!(recorder.stats().dropped, 2);

    lock.commit().unwrap();
    writer.flush();
    // Written audio no longer counts: there is room again.
    recorder
        .try_record(with_message("m4", T0 + 5, minute.clone()))
        .unwrap();
    writer.flush();
    let stats = writer.shutdown();
    assert_eq!((stats.written, stats.dropped, stats.failed), (5, 2, 0));
    let store = CallStore::open(&path).unwrap();
    assert_eq!(store.count().unwrap(), 5);
    assert_eq!(stored_messages(&store), 4);
    assert_eq!(store.message("m3").unwrap(), None);
}

#[test]
fn feedback_is_stored_replaced_and_exported() {
    let store = CallStore::open_in_memory().unwrap();
    let mut r = record("fb-1", 1_700_000_000_000);
    r.action = "divert".into();
    store.insert(&r).unwrap();
    assert_eq!(store.feedback("fb-1").unwrap(), None);
    assert!(!store.set_feedback("unknown", Feedback::Scam).unwrap());
    assert!(store.set_feedback("fb-1", Feedback::Scam).unwrap());
    assert!(store.set_feedback("fb-1", Feedback::NotScam).unwrap());
    assert_eq!(store.feedback("fb-1").unwrap(), Some(Feedback::NotScam));
    let all = store.all_feedback().unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].0.call_id, "fb-1");
    assert_eq!(all[0].1, Feedback::NotScam);
}
