//! Call records: one row per screened call in a SQLite file.
//!
//! A [`CallRecord`] says when a call came in, why the caller counted as withheld, what they
//! said, how it scored, which rules fired, what was done, how fast, and how the call ended.
//! [`CallStore`] owns the database connection; [`StoreWriter`] owns one on a background thread
//! so that the SIP and RTP paths only ever hand a record to a bounded queue
//! ([`CallRecorder::try_record`]) and never wait for the disk. `scamscreen calls` reads the file.
//!
//! # Personal data
//!
//! The database holds **transcripts of what callers said**, **the voice messages they left**,
//! the sentence the callee heard and the words each rule matched. That is personal data. It is kept only as long as the retention
//! setting allows: [`DEFAULT_RETENTION_DAYS`] unless configured otherwise. The writer deletes
//! older rows when it starts and then every [`PURGE_INTERVAL`]; `scamscreen calls --purge-days N`
//! does it by hand. Deleted rows are gone from the tables at once; SQLite may keep their bytes in
//! free pages until they are reused (the store runs with `secure_delete` on, which overwrites
//! them). Transcripts are never written to logs above debug level.
//!
//! # Voice messages
//!
//! A blocked caller may leave a message (up to a minute of 8 kHz mono audio). It is stored
//! with its call in the `messages` table, G.711 µ-law encoded (one byte per sample, half the
//! size of linear PCM), and is personal data like the transcript: the retention deletes it
//! together with its call, and recording a call again replaces it. Listing calls
//! ([`CallStore::recent`]) reads only its duration ([`CallRecord::message_ms`]); the audio is
//! read by [`CallStore::get`] and [`CallStore::message`].
//!
//! # Schema (version 2, `PRAGMA user_version = 2`)
//!
//! ```sql
//! CREATE TABLE calls (
//!     id                 INTEGER PRIMARY KEY,
//!     call_id            TEXT    NOT NULL UNIQUE,  -- SIP Call-ID of the caller's leg
//!     started_at_ms      INTEGER NOT NULL,         -- unix time, ms
//!     withheld_reason    TEXT    NOT NULL,
//!     transcript         TEXT    NOT NULL,
//!     language           TEXT    NOT NULL,
//!     score              REAL    NOT NULL,
//!     action             TEXT    NOT NULL,         -- allow, warn, divert, silent, bypass, ...
//!     reasons_json       TEXT    NOT NULL,         -- JSON array of RuleHit
//!     warning            TEXT,                     -- what the callee heard, if warned
//!     time_to_verdict_ms INTEGER,
//!     listen_ms          INTEGER NOT NULL,
//!     screening_ms       INTEGER NOT NULL,
//!     total_ms           INTEGER,
//!     outcome            TEXT    NOT NULL
//! );
//! CREATE INDEX calls_by_start ON calls (started_at_ms);
//! -- version 2: messages left by callers, at most one per call
//! CREATE TABLE messages (
//!     call_id     TEXT    PRIMARY KEY REFERENCES calls (call_id) ON DELETE CASCADE,
//!     codec       TEXT    NOT NULL,                -- "pcmu": G.711 µ-law, 8 kHz mono
//!     duration_ms INTEGER NOT NULL,
//!     audio       BLOB    NOT NULL
//! );
//! ```

mod age;
mod db;
mod schema;
mod writer;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use age::{parse_age, AgeError};
pub use db::CallStore;
pub use schema::SCHEMA_VERSION;
pub use writer::{CallRecorder, RecordDropped, StoreWriter, WriterOptions, WriterStats};

/// Most voice-message audio (bytes of 16-bit PCM) that may wait for the writer thread by
/// default (about 70 one-minute messages); a record whose message would exceed it is dropped.
pub const DEFAULT_QUEUED_AUDIO_BYTES: usize = 64 << 20;

/// How long call records (and their transcripts) are kept unless configured otherwise.
pub const DEFAULT_RETENTION_DAYS: u32 = 30;
/// How often a running [`StoreWriter`] deletes records older than the retention.
pub const PURGE_INTERVAL: Duration = Duration::from_secs(3600);
/// How many records may wait for the writer thread before new ones are dropped.
pub const DEFAULT_QUEUE_LEN: usize = 256;
/// How long a write waits for another process holding the database lock.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// One screened call.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct CallRecord {
    /// SIP Call-ID of the caller's leg. Unique: recording it again replaces the row.
    pub call_id: String,
    /// When the INVITE arrived, unix time in milliseconds.
    pub started_at_ms: i64,
    /// Why the caller counted as withheld ("From user anonymous", "Privacy: id").
    pub withheld_reason: String,
    /// What the caller said while screened. Personal data.
    pub transcript: String,
    /// Language of the rule pack that decided ("en").
    pub language: String,
    pub score: f64,
    /// `allow`, `warn`, `divert`, `silent`, `bypass`, `unscreened`, `caller_hung_up`, ...
    pub action: String,
    /// The rules that fired, strongest evidence first.
    pub reasons: Vec<RuleHit>,
    /// The sentence the callee heard before a warned call was bridged.
    pub warning: Option<String>,
    /// From the end of the caller's speech to the decision.
    pub time_to_verdict_ms: Option<u64>,
    /// How long the caller was listened to.
    pub listen_ms: u64,
    /// From answering the caller to the decision (greeting, listening, transcription).
    pub screening_ms: u64,
    /// From the INVITE to the end of the call, once known.
    pub total_ms: Option<u64>,
    /// How the call ended up: `answered`, `busy`, `no-answer`, `diverted`, `screening`,
    /// `refused` (the callee refused the call with a key), ...
    pub outcome: String,
    /// The message the caller left, if any. Personal data. Recording a call stores it (and
    /// `None` deletes a stored one); [`CallStore::get`] reads it back, µ-law decoded, but
    /// [`CallStore::recent`] leaves it `None` and fills only [`CallRecord::message_ms`].
    /// Not part of the JSON form (`message_ms` says whether there is one).
    #[serde(skip)]
    pub message: Option<VoiceMessage>,
    /// How long the stored message is, in ms; `None` when the caller left none. Filled by
    /// [`CallStore::recent`] and [`CallStore::get`]; ignored when recording (the duration
    /// is that of [`CallRecord::message`]).
    #[serde(default)]
    pub message_ms: Option<u64>,
}

impl CallRecord {
    /// [`CallRecord::started_at_ms`] as a time.
    pub fn started_at(&self) -> SystemTime {
        from_unix_ms(self.started_at_ms)
    }
}

/// A message the caller left (8 kHz mono linear PCM). Personal data, like the transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoiceMessage {
    pub pcm_8k: Vec<i16>,
}

impl VoiceMessage {
    /// Samples per second of [`VoiceMessage::pcm_8k`].
    pub const SAMPLE_RATE: u32 = 8000;

    /// Length of the audio in milliseconds (rounded down).
    pub fn duration_ms(&self) -> u64 {
        self.pcm_8k.len() as u64 * 1000 / u64::from(Self::SAMPLE_RATE)
    }
}

/// A rule that fired during screening.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RuleHit {
    pub rule: String,
    pub category: String,
    pub weight: f64,
    /// "claims to be Microsoft support".
    pub explanation: String,
    /// The words of the transcript that matched. Personal data.
    pub matched: String,
    /// When in the call the match ended (ms from the start of listening).
    pub at_ms: u64,
}

impl From<&crate::detect::Reason> for RuleHit {
    fn from(r: &crate::detect::Reason) -> Self {
        RuleHit {
            rule: r.rule.clone(),
            category: r.category.name().to_string(),
            weight: r.weight,
            explanation: r.explanation.clone(),
            matched: r.matched.clone(),
            at_ms: r.at_ms,
        }
    }
}

/// Errors of the call database. Every message names the file.
/// What the user said about a screened call on the call log page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Feedback {
    Scam,
    NotScam,
}

impl Feedback {
    pub fn as_str(self) -> &'static str {
        match self {
            Feedback::Scam => "scam",
            Feedback::NotScam => "not_scam",
        }
    }

    pub fn parse(s: &str) -> Option<Feedback> {
        match s {
            "scam" => Some(Feedback::Scam),
            "not_scam" => Some(Feedback::NotScam),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create folder {} for call database {}: {source}", dir.display(), path.display())]
    CreateDir {
        dir: PathBuf,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "no call database at {}: no screened calls were recorded there yet (check --db)",
        path.display()
    )]
    Missing { path: PathBuf },
    #[error("cannot open call database {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("{} is not a SQLite database, so not a scamscreen call database (check --db)", path.display())]
    NotADatabase { path: PathBuf },
    #[error(
        "{} is a SQLite database of something else (it has tables but no scamscreen schema); \
         refusing to add call records to it (check --db)",
        path.display()
    )]
    Foreign { path: PathBuf },
    #[error(
        "call database {} has schema version {found}, newer than this scamscreen understands \
         ({supported}); upgrade scamscreen or use another --db",
        path.display()
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("call database {}: {source}", path.display())]
    Sql {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("cannot start the writer thread of call database {}: {source}", path.display())]
    WriterThread {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "call database {}: the message of call {call_id} is in codec {codec:?}, which this \
         scamscreen cannot decode",
        path.display()
    )]
    UnknownCodec {
        path: PathBuf,
        call_id: String,
        codec: String,
    },
    #[error("call database {}: reasons of call {call_id} are not valid JSON: {source}", path.display())]
    BadReasons {
        path: PathBuf,
        call_id: String,
        source: serde_json::Error,
    },
}

/// Milliseconds since the unix epoch (negative before it).
pub fn unix_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

/// The inverse of [`unix_ms`].
pub fn from_unix_ms(ms: i64) -> SystemTime {
    let magnitude = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}
