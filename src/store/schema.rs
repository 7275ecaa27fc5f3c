//! Schema migrations, numbered by `PRAGMA user_version`.
//!
//! `MIGRATIONS[i]` takes a database from version `i` to `i + 1`. A file at version 0 is new
//! only if it has no tables: a version-0 file with tables belongs to some other program and is
//! refused rather than written into. A file newer than [`SCHEMA_VERSION`] is refused too.

use std::path::Path;

use rusqlite::{Connection, ErrorCode, TransactionBehavior};

use super::StoreError;

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub(super) const MIGRATIONS: &[&str] = &[
    // 0 → 1: the calls table.
    "CREATE TABLE calls (
        id                 INTEGER PRIMARY KEY,
        call_id            TEXT    NOT NULL UNIQUE,
        started_at_ms      INTEGER NOT NULL,
        withheld_reason    TEXT    NOT NULL,
        transcript         TEXT    NOT NULL,
        language           TEXT    NOT NULL,
        score              REAL    NOT NULL,
        action             TEXT    NOT NULL,
        reasons_json       TEXT    NOT NULL,
        warning            TEXT,
        time_to_verdict_ms INTEGER,
        listen_ms          INTEGER NOT NULL,
        screening_ms       INTEGER NOT NULL,
        total_ms           INTEGER,
        outcome            TEXT    NOT NULL
    );
    CREATE INDEX calls_by_start ON calls (started_at_ms);",
    // 1 → 2: voice messages left by callers, one per call, G.711 encoded. The audio is the
    // last column so that reading the duration does not read the blob.
    "CREATE TABLE messages (
        call_id     TEXT    PRIMARY KEY REFERENCES calls (call_id) ON DELETE CASCADE,
        codec       TEXT    NOT NULL,
        duration_ms INTEGER NOT NULL,
        audio       BLOB    NOT NULL
    );",
    // 2 → 3: what the user said about a call on the call log page ("scam" / "not a scam"),
    // for review (`scamscreen calls --feedback`). User data: never part of the corpus.
    "CREATE TABLE feedback (
        call_id  TEXT    PRIMARY KEY REFERENCES calls (call_id) ON DELETE CASCADE,
        verdict  TEXT    NOT NULL,
        at_ms    INTEGER NOT NULL
    );",
];

/// Brings the database up to [`SCHEMA_VERSION`]. Safe when two processes open a new file at
/// once: the check and the migration run under one write lock.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let sql = |source: rusqlite::Error| classify(source, path);
    // Cheap check first, without taking the write lock (readers of a current file never wait).
    if user_version(conn).map_err(sql)? == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql)?;
    let found = user_version(&tx).map_err(sql)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found == 0 {
        let tables: i64 = tx
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
                [],
                |r| r.get(0),
            )
            .map_err(sql)?;
        if tables > 0 {
            return Err(StoreError::Foreign {
                path: path.to_path_buf(),
            });
        }
    }
    let from = usize::try_from(found).unwrap_or(0);
    for (step, migration) in MIGRATIONS.iter().enumerate().skip(from) {
        tracing::info!(db = %path.display(), to = step + 1, "migrating call database");
        tx.execute_batch(migration).map_err(sql)?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(sql)?;
    tx.commit().map_err(sql)
}

fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}

/// Turns "file is not a database" into its own error; everything else names the file.
pub(super) fn classify(source: rusqlite::Error, path: &Path) -> StoreError {
    if source.sqlite_error_code() == Some(ErrorCode::NotADatabase) {
        return StoreError::NotADatabase {
            path: path.to_path_buf(),
        };
    }
    StoreError::Sql {
        path: path.to_path_buf(),
        source,
    }
}
