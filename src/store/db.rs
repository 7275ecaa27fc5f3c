//! [`CallStore`]: the connection to one call database and the queries on it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension, Row};

use super::schema::{classify, migrate};
use super::{unix_ms, CallRecord, StoreError, BUSY_TIMEOUT};

/// The columns of `calls` in the order [`read_row`] expects them.
const COLUMNS: &str = "call_id, started_at_ms, withheld_reason, transcript, language, score, \
    action, reasons_json, warning, time_to_verdict_ms, listen_ms, screening_ms, total_ms, outcome";

/// One connection to a call database. Blocking: on the call path use [`super::StoreWriter`].
pub struct CallStore {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for CallStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallStore")
            .field("path", &self.path)
            .finish()
    }
}

impl CallStore {
    /// Opens the database at `path`, creating the file and its folder if needed, and brings
    /// the schema up to date. Journal in WAL mode, so readers (`scamscreen calls`) and the
    /// running proxy do not block each other.
    pub fn open(path: impl AsRef<Path>) -> Result<CallStore, StoreError> {
        let path = path.as_ref();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                dir: dir.to_path_buf(),
                path: path.to_path_buf(),
                source,
            })?;
        }
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        CallStore::set_up(conn, path)
    }

    /// Opens an existing database; a missing file is [`StoreError::Missing`], not a new file.
    pub fn open_existing(path: impl AsRef<Path>) -> Result<CallStore, StoreError> {
        let path = path.as_ref();
        if !path.is_file() {
            return Err(StoreError::Missing {
                path: path.to_path_buf(),
            });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        CallStore::set_up(conn, path)
    }

    /// A private database that lives as long as the store (tests, `--db :memory:`).
    pub fn open_in_memory() -> Result<CallStore, StoreError> {
        let path = Path::new(":memory:");
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        CallStore::set_up(conn, path)
    }

    fn set_up(mut conn: Connection, path: &Path) -> Result<CallStore, StoreError> {
        let sql = |source| classify(source, path);
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
        // The first statement that reads the file: a file that is not SQLite fails here.
        enable_wal(&conn).map_err(sql)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql)?;
        // Deleted transcripts are overwritten, not left in free pages.
        conn.pragma_update(None, "secure_delete", "ON")
            .map_err(sql)?;
        migrate(&mut conn, path)?;
        Ok(CallStore {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// The file this store reads and writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records a call. A record with the same `call_id` replaces the earlier one.
    pub fn insert(&self, record: &CallRecord) -> Result<(), StoreError> {
        insert_into(&self.conn, record, &self.path)
    }

    /// Records several calls in one transaction (one disk sync).
    pub fn insert_all(&mut self, records: &[CallRecord]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(|e| classify(e, &path))?;
        for record in records {
            insert_into(&tx, record, &path)?;
        }
        tx.commit().map_err(|e| classify(e, &path))
    }

    /// Sets how a recorded call ended. Returns false if no call has that id.
    pub fn update_outcome(
        &self,
        call_id: &str,
        outcome: &str,
        total_ms: Option<u64>,
    ) -> Result<bool, StoreError> {
        let changed = self
            .conn
            .execute(
                "UPDATE calls SET outcome = ?2, total_ms = coalesce(?3, total_ms) \
                 WHERE call_id = ?1",
                params![call_id, outcome, total_ms.map(ms_to_sql)],
            )
            .map_err(|e| self.err(e))?;
        Ok(changed > 0)
    }

    /// The latest `limit` calls, newest first, optionally only those started at or after `since`.
    pub fn recent(
        &self,
        limit: usize,
        since: Option<SystemTime>,
    ) -> Result<Vec<CallRecord>, StoreError> {
        let since_ms = since.map_or(i64::MIN, unix_ms);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM calls WHERE started_at_ms >= ?1 \
                 ORDER BY started_at_ms DESC, id DESC LIMIT ?2"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![since_ms, limit], read_row)
            .map_err(|e| self.err(e))?;
        let mut calls = Vec::new();
        for row in rows {
            let (record, reasons) = row.map_err(|e| self.err(e))?;
            calls.push(self.with_reasons(record, &reasons)?);
        }
        Ok(calls)
    }

    /// The call with this SIP Call-ID, if recorded.
    pub fn get(&self, call_id: &str) -> Result<Option<CallRecord>, StoreError> {
        let found = self
            .conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM calls WHERE call_id = ?1"),
                [call_id],
                read_row,
            )
            .optional()
            .map_err(|e| self.err(e))?;
        found
            .map(|(record, reasons)| self.with_reasons(record, &reasons))
            .transpose()
    }

    /// Deletes calls that started more than `max_age` before `now` (the retention).
    /// Returns how many were deleted.
    pub fn purge_older_than(
        &self,
        max_age: Duration,
        now: SystemTime,
    ) -> Result<usize, StoreError> {
        let cutoff = now.checked_sub(max_age).map_or(i64::MIN, unix_ms);
        self.conn
            .execute("DELETE FROM calls WHERE started_at_ms < ?1", [cutoff])
            .map_err(|e| self.err(e))
    }

    /// How many calls are recorded.
    pub fn count(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM calls", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        classify(source, &self.path)
    }

    fn with_reasons(&self, mut record: CallRecord, json: &str) -> Result<CallRecord, StoreError> {
        record.reasons = serde_json::from_str(json).map_err(|source| StoreError::BadReasons {
            path: self.path.clone(),
            call_id: record.call_id.clone(),
            source,
        })?;
        Ok(record)
    }
}

/// Switches the file to WAL mode. Switching needs a moment of exclusive access, and SQLite
/// answers "busy" at once instead of calling the busy handler when another connection is
/// reading (several processes opening a new file together), so this retries for a while.
fn enable_wal(conn: &Connection) -> rusqlite::Result<()> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0)) {
            Ok(_) => return Ok(()),
            Err(e)
                if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy)
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    }
}

fn insert_into(conn: &Connection, r: &CallRecord, path: &Path) -> Result<(), StoreError> {
    let reasons = serde_json::to_string(&r.reasons).map_err(|source| StoreError::BadReasons {
        path: path.to_path_buf(),
        call_id: r.call_id.clone(),
        source,
    })?;
    let mut stmt = conn
        .prepare_cached(&format!(
            "INSERT OR REPLACE INTO calls ({COLUMNS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
        ))
        .map_err(|e| classify(e, path))?;
    stmt.execute(params![
        r.call_id,
        r.started_at_ms,
        r.withheld_reason,
        r.transcript,
        r.language,
        r.score,
        r.action,
        reasons,
        r.warning,
        r.time_to_verdict_ms.map(ms_to_sql),
        ms_to_sql(r.listen_ms),
        ms_to_sql(r.screening_ms),
        r.total_ms.map(ms_to_sql),
        r.outcome,
    ])
    .map_err(|e| classify(e, path))?;
    Ok(())
}

/// A row without its reasons, and the reasons' JSON text.
fn read_row(row: &Row<'_>) -> rusqlite::Result<(CallRecord, String)> {
    let record = CallRecord {
        call_id: row.get(0)?,
        started_at_ms: row.get(1)?,
        withheld_reason: row.get(2)?,
        transcript: row.get(3)?,
        language: row.get(4)?,
        score: row.get(5)?,
        action: row.get(6)?,
        reasons: Vec::new(),
        warning: row.get(8)?,
        time_to_verdict_ms: row.get::<_, Option<i64>>(9)?.map(ms_from_sql),
        listen_ms: ms_from_sql(row.get(10)?),
        screening_ms: ms_from_sql(row.get(11)?),
        total_ms: row.get::<_, Option<i64>>(12)?.map(ms_from_sql),
        outcome: row.get(13)?,
    };
    Ok((record, row.get(7)?))
}

fn ms_to_sql(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn ms_from_sql(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0)
}
