//! [`CallStore`]: the connection to one call database and the queries on it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension, Row};

use crate::media::g711::Codec;

use super::schema::{classify, migrate};
use super::{unix_ms, CallRecord, Feedback, StoreError, VoiceMessage, BUSY_TIMEOUT};

/// The columns of `calls` in the order [`read_row`] expects them.
const COLUMNS: &str = "call_id, started_at_ms, withheld_reason, transcript, language, score, \
    action, reasons_json, warning, time_to_verdict_ms, listen_ms, screening_ms, total_ms, outcome";

/// Joins each call to its message, if any. `USING` keeps `call_id` unambiguous, so the query
/// selects [`COLUMNS`] and then `m.duration_ms` (column 14 of the row, read by [`read_row`]).
const CALLS_AND_MESSAGES: &str = "calls LEFT JOIN messages AS m USING (call_id)";

/// How voice messages are stored: G.711 µ-law, one byte per sample.
const MESSAGE_CODEC: Codec = Codec::Pcmu;
/// The name of [`MESSAGE_CODEC`] in `messages.codec`.
const MESSAGE_CODEC_NAME: &str = "pcmu";

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
        // Deleting or replacing a call deletes its message (ON DELETE CASCADE). The store
        // deletes messages explicitly as well; this backs that up for statements run here.
        conn.pragma_update(None, "foreign_keys", "ON")
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

    /// Records a call, and its message if it has one, in one transaction. A record with the
    /// same `call_id` replaces the earlier one, message included: a record without a message
    /// deletes a stored one (so do not record again a call read by [`CallStore::recent`],
    /// which carries no audio, unless the message is meant to go).
    pub fn insert(&self, record: &CallRecord) -> Result<(), StoreError> {
        let tx = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        insert_into(&tx, record, &self.path)?;
        tx.commit().map_err(|e| self.err(e))
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
    /// Cheap also when calls have messages: each record carries the length of its message in
    /// [`CallRecord::message_ms`] but not the audio ([`CallRecord::message`] is `None`); read
    /// that with [`CallStore::message`] or [`CallStore::get`].
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
                "SELECT {COLUMNS}, m.duration_ms FROM {CALLS_AND_MESSAGES} \
                 WHERE started_at_ms >= ?1 ORDER BY started_at_ms DESC, id DESC LIMIT ?2"
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

    /// The call with this SIP Call-ID, if recorded, with its message (audio included).
    pub fn get(&self, call_id: &str) -> Result<Option<CallRecord>, StoreError> {
        let found = self
            .conn
            .query_row(
                &format!(
                    "SELECT {COLUMNS}, m.duration_ms, m.codec, m.audio \
                     FROM {CALLS_AND_MESSAGES} WHERE call_id = ?1"
                ),
                [call_id],
                |row| {
                    let (record, reasons) = read_row(row)?;
                    let codec: Option<String> = row.get(15)?;
                    let stored = match codec {
                        Some(codec) => Some((codec, row.get::<_, Vec<u8>>(16)?)),
                        None => None,
                    };
                    Ok((record, reasons, stored))
                },
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let Some((record, reasons, stored)) = found else {
            return Ok(None);
        };
        let mut record = self.with_reasons(record, &reasons)?;
        if let Some((codec, audio)) = stored {
            record.message = Some(self.decode_message(call_id, &codec, &audio)?);
        }
        Ok(Some(record))
    }

    /// Store what the user said about a call (replacing an earlier answer). `false` when no
    /// such call is recorded.
    pub fn set_feedback(&self, call_id: &str, feedback: Feedback) -> Result<bool, StoreError> {
        let known = self.get(call_id)?.is_some();
        if !known {
            return Ok(false);
        }
        self.conn
            .execute(
                "INSERT INTO feedback (call_id, verdict, at_ms) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (call_id) DO UPDATE SET verdict = ?2, at_ms = ?3",
                params![call_id, feedback.as_str(), unix_ms(SystemTime::now())],
            )
            .map_err(|e| self.err(e))?;
        Ok(true)
    }

    /// What the user said about a call, if anything.
    pub fn feedback(&self, call_id: &str) -> Result<Option<Feedback>, StoreError> {
        let v: Option<String> = self
            .conn
            .query_row(
                "SELECT verdict FROM feedback WHERE call_id = ?1",
                [call_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(v.as_deref().and_then(Feedback::parse))
    }

    /// Every call with feedback, oldest answer first: (record, feedback, when, unix ms).
    pub fn all_feedback(&self) -> Result<Vec<(CallRecord, Feedback, i64)>, StoreError> {
        let ids: Vec<(String, String, i64)> = {
            let mut stmt = self
                .conn
                .prepare("SELECT call_id, verdict, at_ms FROM feedback ORDER BY at_ms, call_id")
                .map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(|e| self.err(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.err(e))?
        };
        let mut out = Vec::new();
        for (id, verdict, at) in ids {
            if let (Some(mut rec), Some(f)) = (self.get(&id)?, Feedback::parse(&verdict)) {
                rec.message = None;
                out.push((rec, f, at));
            }
        }
        Ok(out)
    }

    /// The message the caller of this call left, if the call is recorded and has one.
    pub fn message(&self, call_id: &str) -> Result<Option<VoiceMessage>, StoreError> {
        let found = self
            .conn
            .query_row(
                "SELECT codec, audio FROM messages WHERE call_id = ?1",
                [call_id],
                |row| Ok((row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        found
            .map(|(codec, audio)| self.decode_message(call_id, &codec, &audio))
            .transpose()
    }

    /// Deletes calls that started more than `max_age` before `now` (the retention), with
    /// their messages, and any message whose call is gone. Returns how many calls were deleted.
    pub fn purge_older_than(
        &self,
        max_age: Duration,
        now: SystemTime,
    ) -> Result<usize, StoreError> {
        let cutoff = now.checked_sub(max_age).map_or(i64::MIN, unix_ms);
        let sql = |e| self.err(e);
        let tx = self.conn.unchecked_transaction().map_err(sql)?;
        tx.execute(
            "DELETE FROM messages WHERE call_id NOT IN \
             (SELECT call_id FROM calls WHERE started_at_ms >= ?1)",
            [cutoff],
        )
        .map_err(sql)?;
        let deleted = tx
            .execute("DELETE FROM calls WHERE started_at_ms < ?1", [cutoff])
            .map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(deleted)
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

    fn decode_message(
        &self,
        call_id: &str,
        codec: &str,
        audio: &[u8],
    ) -> Result<VoiceMessage, StoreError> {
        let law = Codec::from_name(codec).ok_or_else(|| StoreError::UnknownCodec {
            path: self.path.clone(),
            call_id: call_id.to_string(),
            codec: codec.to_string(),
        })?;
        Ok(VoiceMessage {
            pcm_8k: law.decode(audio),
        })
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
    // INSERT OR REPLACE deleted the old row and with it (foreign key) its message; delete it
    // explicitly too, in case foreign keys are off.
    match &r.message {
        Some(m) => conn
            .prepare_cached(
                "INSERT OR REPLACE INTO messages (call_id, codec, duration_ms, audio) \
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    r.call_id,
                    MESSAGE_CODEC_NAME,
                    ms_to_sql(m.duration_ms()),
                    MESSAGE_CODEC.encode(&m.pcm_8k),
                ])
            }),
        None => conn
            .prepare_cached("DELETE FROM messages WHERE call_id = ?1")
            .and_then(|mut stmt| stmt.execute([&r.call_id])),
    }
    .map_err(|e| classify(e, path))?;
    Ok(())
}

/// A row without its reasons and message audio (but with `message_ms`), and the reasons'
/// JSON text.
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
        message: None,
        message_ms: row.get::<_, Option<i64>>(14)?.map(ms_from_sql),
    };
    Ok((record, row.get(7)?))
}

fn ms_to_sql(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn ms_from_sql(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0)
}
