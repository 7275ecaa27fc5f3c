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
    }
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
    assert_eq!(SCHEMA_VERSION, 1);
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
                supported: 1,
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
