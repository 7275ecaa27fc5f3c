//! [`StoreWriter`]: a thread that owns a [`CallStore`] and writes what the call path hands it.
//!
//! The call path holds a [`CallRecorder`] (cheap to clone) and calls
//! [`CallRecorder::try_record`], which never waits: when the bounded queue is full (the disk is
//! slow, another process holds the lock) the record is dropped and counted, like a PCM frame
//! the ASR could not take. Records with a voice message are large (up to about 1 MB for a
//! minute), so the audio waiting for the thread has its own bound,
//! [`WriterOptions::queued_audio_bytes`]. The thread writes records in batches, one
//! transaction each, and deletes records older than the retention when it starts and every
//! [`WriterOptions::purge_interval`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};

use super::{
    CallRecord, CallStore, StoreError, DEFAULT_QUEUED_AUDIO_BYTES, DEFAULT_QUEUE_LEN,
    DEFAULT_RETENTION_DAYS, PURGE_INTERVAL,
};

/// Most records written in one transaction.
pub(super) const MAX_BATCH: usize = 64;

/// How the writer thread runs.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Records that may wait for the thread; more are dropped.
    pub queue_len: usize,
    /// Bytes of voice-message audio (16-bit PCM, as queued) that may wait for the thread; a
    /// record whose message would go over is dropped. A record with a message larger than
    /// this on its own is always dropped.
    pub queued_audio_bytes: usize,
    /// Delete calls older than this. `None` keeps them for ever.
    pub retention: Option<Duration>,
    /// How often to delete old calls.
    pub purge_interval: Duration,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            queue_len: DEFAULT_QUEUE_LEN,
            queued_audio_bytes: DEFAULT_QUEUED_AUDIO_BYTES,
            retention: Some(Duration::from_secs(
                u64::from(DEFAULT_RETENTION_DAYS) * 24 * 3600,
            )),
            purge_interval: PURGE_INTERVAL,
        }
    }
}

/// Counters of a writer, for logs and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Records written to the database.
    pub written: u64,
    /// Records dropped because the queue was full or the writer had stopped.
    pub dropped: u64,
    /// Records and outcome updates the database refused (logged at warn).
    pub failed: u64,
    /// Records deleted by the retention.
    pub purged: u64,
}

/// Why a record was not queued. It is counted in [`WriterStats::dropped`] either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordDropped {
    #[error("call record queue is full; record dropped")]
    QueueFull,
    #[error("too much voice-message audio waits for the call record writer; record dropped")]
    AudioBacklog,
    #[error("call record writer has stopped; record dropped")]
    WriterStopped,
}

enum Job {
    Record(Box<CallRecord>),
    Outcome {
        call_id: String,
        outcome: String,
        total_ms: Option<u64>,
    },
    Flush(Sender<()>),
    Stop,
}

#[derive(Default)]
struct Counters {
    written: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    purged: AtomicU64,
    /// Bytes of message audio queued or in the writer's batch, not yet written.
    queued_audio: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> WriterStats {
        WriterStats {
            written: self.written.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            purged: self.purged.load(Ordering::Relaxed),
        }
    }
}

/// The call path's end of the queue. Never blocks.
#[derive(Clone)]
pub struct CallRecorder {
    tx: Sender<Job>,
    counters: Arc<Counters>,
    /// [`WriterOptions::queued_audio_bytes`].
    audio_limit: u64,
}

impl std::fmt::Debug for CallRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallRecorder")
            .field("stats", &self.counters.snapshot())
            .finish()
    }
}

impl CallRecorder {
    /// Queues a record for writing, or drops and counts it if the queue is full (or its
    /// message would take the queued audio over [`WriterOptions::queued_audio_bytes`]).
    pub fn try_record(&self, record: CallRecord) -> Result<(), RecordDropped> {
        let audio = audio_bytes(&record);
        if audio > 0 {
            let before = self
                .counters
                .queued_audio
                .fetch_add(audio, Ordering::Relaxed);
            if before.saturating_add(audio) > self.audio_limit {
                self.counters
                    .queued_audio
                    .fetch_sub(audio, Ordering::Relaxed);
                return Err(self.dropped(RecordDropped::AudioBacklog));
            }
        }
        let sent = self.try_send(Job::Record(Box::new(record)));
        if sent.is_err() && audio > 0 {
            self.counters
                .queued_audio
                .fetch_sub(audio, Ordering::Relaxed);
        }
        sent
    }

    /// Queues an update of how a recorded call ended (see [`CallStore::update_outcome`]).
    pub fn try_update_outcome(
        &self,
        call_id: &str,
        outcome: &str,
        total_ms: Option<u64>,
    ) -> Result<(), RecordDropped> {
        self.try_send(Job::Outcome {
            call_id: call_id.to_string(),
            outcome: outcome.to_string(),
            total_ms,
        })
    }

    /// The writer's counters so far.
    pub fn stats(&self) -> WriterStats {
        self.counters.snapshot()
    }

    fn try_send(&self, job: Job) -> Result<(), RecordDropped> {
        let why = match self.tx.try_send(job) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Full(_)) => RecordDropped::QueueFull,
            Err(TrySendError::Disconnected(_)) => RecordDropped::WriterStopped,
        };
        Err(self.dropped(why))
    }

    /// Counts and logs a dropped record.
    fn dropped(&self, why: RecordDropped) -> RecordDropped {
        let dropped = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(dropped, "{why}");
        why
    }
}

/// The thread that writes call records. Dropping it (or [`StoreWriter::shutdown`]) writes
/// what is queued and joins the thread.
pub struct StoreWriter {
    recorder: CallRecorder,
    thread: Option<JoinHandle<()>>,
}

impl StoreWriter {
    /// Starts the thread, which owns `store` from now on.
    pub fn start(store: CallStore, options: WriterOptions) -> Result<StoreWriter, StoreError> {
        let (tx, rx) = bounded(options.queue_len.max(1));
        let audio_limit = u64::try_from(options.queued_audio_bytes).unwrap_or(u64::MAX);
        let counters = Arc::new(Counters::default());
        let path = store.path().to_path_buf();
        let thread_counters = Arc::clone(&counters);
        let thread = std::thread::Builder::new()
            .name("call-store".into())
            .spawn(move || write_loop(store, rx, &thread_counters, &options))
            .map_err(|source| StoreError::WriterThread { path, source })?;
        Ok(StoreWriter {
            recorder: CallRecorder {
                tx,
                counters,
                audio_limit,
            },
            thread: Some(thread),
        })
    }

    /// A handle for the call path.
    pub fn recorder(&self) -> CallRecorder {
        self.recorder.clone()
    }

    /// Waits until everything queued so far is written. Blocks: tests and shutdown only.
    pub fn flush(&self) {
        let (ack_tx, ack_rx) = bounded(1);
        if self.recorder.tx.send(Job::Flush(ack_tx)).is_ok() {
            let _ = ack_rx.recv();
        }
    }

    /// The writer's counters so far.
    pub fn stats(&self) -> WriterStats {
        self.recorder.stats()
    }

    /// Writes what is queued, stops the thread and returns the final counters.
    pub fn shutdown(mut self) -> WriterStats {
        self.stop();
        self.stats()
    }

    fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = self.recorder.tx.send(Job::Stop);
            if thread.join().is_err() {
                tracing::error!("call record writer panicked");
            }
        }
    }
}

impl Drop for StoreWriter {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for StoreWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreWriter")
            .field("stats", &self.stats())
            .finish()
    }
}

fn write_loop(
    mut store: CallStore,
    rx: Receiver<Job>,
    counters: &Counters,
    options: &WriterOptions,
) {
    let mut next_purge = Instant::now();
    let mut pending: Vec<CallRecord> = Vec::new();
    loop {
        if let Some(max_age) = options.retention {
            if Instant::now() >= next_purge {
                purge(&store, max_age, counters);
                next_purge = Instant::now() + options.purge_interval;
            }
        }
        let first = match options.retention {
            Some(_) => rx.recv_deadline(next_purge),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        let first = match first {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut stop = false;
        for job in std::iter::once(first).chain(rx.try_iter().take(MAX_BATCH - 1)) {
            match job {
                Job::Record(record) => pending.push(*record),
                Job::Outcome {
                    call_id,
                    outcome,
                    total_ms,
                } => {
                    write_pending(&mut store, &mut pending, counters);
                    match store.update_outcome(&call_id, &outcome, total_ms) {
                        Ok(true) => {}
                        Ok(false) => tracing::debug!(call_id, "outcome of an unrecorded call"),
                        Err(e) => {
                            counters.failed.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(error = %e, "cannot record the outcome of a call");
                        }
                    }
                }
                Job::Flush(ack) => {
                    write_pending(&mut store, &mut pending, counters);
                    let _ = ack.send(());
                }
                Job::Stop => stop = true,
            }
        }
        write_pending(&mut store, &mut pending, counters);
        if stop {
            return;
        }
    }
}

/// Writes the batch in one transaction; if that fails, record by record, so that one bad
/// record does not lose the others.
fn write_pending(store: &mut CallStore, pending: &mut Vec<CallRecord>, counters: &Counters) {
    if pending.is_empty() {
        return;
    }
    let n = pending.len() as u64;
    let audio: u64 = pending.iter().map(audio_bytes).sum();
    if store.insert_all(pending).is_ok() {
        counters.written.fetch_add(n, Ordering::Relaxed);
    } else {
        for record in pending.iter() {
            match store.insert(record) {
                Ok(()) => counters.written.fetch_add(1, Ordering::Relaxed),
                Err(e) => {
                    tracing::warn!(error = %e, call_id = %record.call_id, "call record lost");
                    counters.failed.fetch_add(1, Ordering::Relaxed)
                }
            };
        }
    }
    pending.clear();
    counters.queued_audio.fetch_sub(audio, Ordering::Relaxed);
}

/// Memory the record's message takes while queued.
fn audio_bytes(record: &CallRecord) -> u64 {
    record
        .message
        .as_ref()
        .map_or(0, |m| (m.pcm_8k.len() * std::mem::size_of::<i16>()) as u64)
}

fn purge(store: &CallStore, max_age: Duration, counters: &Counters) {
    match store.purge_older_than(max_age, SystemTime::now()) {
        Ok(0) => {}
        Ok(n) => {
            counters.purged.fetch_add(n as u64, Ordering::Relaxed);
            tracing::info!(deleted = n, "deleted call records past the retention");
        }
        Err(e) => tracing::warn!(error = %e, "cannot delete old call records"),
    }
}
