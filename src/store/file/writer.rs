//! The log's one writer: a plain thread, because `fdatasync` blocks and must never
//! run on the async runtime, and because one owner of the file needs no lock on it.
//!
//! Group commit: it takes one request, then every other one already waiting, checks
//! them in order against the index, encodes the accepted ones into one buffer, and
//! does one `write` and one `fdatasync` for all of them. Only after that sync returns
//! are the events published (readable), broadcast and answered. If the write or the
//! sync fails, every request of the batch gets the I/O error, the file is cut back to
//! its last durable length and the index forgets the batch, so the store keeps working
//! when the disk recovers. If even the cut fails, the writer refuses every later
//! append: what is on disk past the durable length is unknown until the log is
//! reopened and recovered.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::format::{self, HEADER_LEN};
use super::recovery::{create_segment, Tail};
use super::{FileStoreOptions, Segment, Shared};
use crate::store::index::Decision;
use crate::store::{
    normalize_time, AppendResult, EventData, ExpectedState, RecordedEvent, StoreError,
};

/// One append waiting for the writer.
pub(super) struct Request {
    pub stream: String,
    pub expected: ExpectedState,
    pub events: Vec<EventData>,
    pub reply: oneshot::Sender<Result<AppendResult, StoreError>>,
}

pub(super) struct Writer {
    shared: Arc<Shared>,
    queue: mpsc::Receiver<Request>,
    log_dir: PathBuf,
    tail: Tail,
    options: FileStoreOptions,
    buf: Vec<u8>,
    /// Set when a failed batch could not be cut off the file.
    poisoned: Option<String>,
}

/// A request's place in the batch after its check.
struct Checked {
    reply: oneshot::Sender<Result<AppendResult, StoreError>>,
    answer: Result<AppendResult, StoreError>,
}

impl Writer {
    pub fn new(
        shared: Arc<Shared>,
        queue: mpsc::Receiver<Request>,
        log_dir: PathBuf,
        tail: Tail,
        options: FileStoreOptions,
    ) -> Self {
        Self {
            shared,
            queue,
            log_dir,
            tail,
            options,
            buf: Vec::new(),
            poisoned: None,
        }
    }

    /// Serves batches until every sender is gone and the queue is empty.
    pub fn run(mut self) {
        while let Some(first) = self.queue.blocking_recv() {
            let mut batch = vec![first];
            let mut bytes = estimate(&batch[0]);
            let deadline = std::time::Instant::now() + self.options.gather_time;
            // Take what is waiting; while appends keep arriving (callers answered by the
            // last batch coming back), give them the CPU and take them too, up to a
            // short deadline. One fsync then serves them all.
            loop {
                let before = batch.len();
                while bytes < self.options.batch_max_bytes {
                    match self.queue.try_recv() {
                        Ok(next) => {
                            bytes += estimate(&next);
                            batch.push(next);
                        }
                        Err(_) => break,
                    }
                }
                if batch.len() == before
                    || bytes >= self.options.batch_max_bytes
                    || std::time::Instant::now() >= deadline
                {
                    break;
                }
                std::thread::yield_now();
            }
            self.serve(batch);
        }
        tracing::debug!("event log writer stopped");
    }

    fn serve(&mut self, batch: Vec<Request>) {
        let shared = self.shared.clone();
        let counters = &shared.counters;
        counters
            .appends
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        counters.batches.fetch_add(1, Ordering::Relaxed);
        if let Some(why) = &self.poisoned {
            for r in batch {
                let _ = r.reply.send(Err(io_error(std::io::ErrorKind::Other, why)));
            }
            return;
        }

        // Check and record under the lock, encode into the buffer. Offsets are relative
        // to the buffer until we know which segment the batch goes to.
        self.buf.clear();
        let mut checked = Vec::with_capacity(batch.len());
        let mut recorded: Vec<(String, Vec<Uuid>)> = Vec::new();
        let mut written: Vec<Arc<RecordedEvent>> = Vec::new();
        let mut relative = Vec::new();
        {
            let mut state = self.shared.state.write();
            for r in batch {
                let ids: Vec<Uuid> = r.events.iter().map(|e| e.id).collect();
                let answer = match state.index.check(&r.stream, r.expected, &ids) {
                    Decision::Refused(e) => Err(e),
                    Decision::AlreadyWritten(result) => Ok(result),
                    Decision::Write {
                        first_revision,
                        first_position,
                    } => {
                        state.index.record(&r.stream, &ids);
                        let n = r.events.len() as u64;
                        for (i, e) in r.events.into_iter().enumerate() {
                            let event = RecordedEvent {
                                id: e.id,
                                stream: r.stream.clone(),
                                revision: first_revision + i as u64,
                                position: first_position + i as u64,
                                event_type: e.event_type,
                                schema_version: e.schema_version,
                                time: normalize_time(e.time),
                                data: e.data,
                            };
                            relative.push(self.buf.len() as u64);
                            format::encode_record(&mut self.buf, &event);
                            written.push(Arc::new(event));
                        }
                        recorded.push((r.stream, ids));
                        Ok(AppendResult {
                            next_expected_revision: first_revision + n - 1,
                            position: first_position + n - 1,
                        })
                    }
                };
                checked.push(Checked {
                    reply: r.reply,
                    answer,
                });
            }
        }

        if !written.is_empty() {
            if let Err(e) = self.write_batch(&relative) {
                tracing::error!(error = %e, events = written.len(), "event log write failed; the batch is refused");
                self.roll_back(&recorded);
                for c in checked {
                    let _ = c.reply.send(Err(io_error(e.kind(), &e.to_string())));
                }
                return;
            }
            counters
                .events
                .fetch_add(written.len() as u64, Ordering::Relaxed);
        }

        // Broadcast before answering: once an append returns, its events have gone
        // to every live receiver, so one subscribed afterwards never sees them live.
        for event in written {
            // No receiver is not an error: nobody is listening right now.
            let _ = self.shared.live.send(event);
        }
        for c in checked {
            let _ = c.reply.send(c.answer);
        }
    }

    /// Writes the encoded batch with one write and one sync, then publishes it.
    fn write_batch(&mut self, relative: &[u64]) -> std::io::Result<()> {
        let batch_len = self.buf.len() as u64;
        if self.tail.len > HEADER_LEN as u64
            && self.tail.len + batch_len > self.options.segment_size
        {
            self.roll()?;
        }
        let base = self.tail.len;
        let result = self
            .tail
            .file
            .write_all_at(&self.buf, base)
            .and_then(|()| self.sync());
        if let Err(e) = result {
            self.cut_back();
            return Err(e);
        }
        self.tail.len = base + batch_len;

        let mut state = self.shared.state.write();
        state.offsets.extend(relative.iter().map(|r| base + r));
        if let Some(segment) = state.segments.last_mut() {
            segment.end = self.tail.len;
        }
        let published = state.offsets.len() as u64;
        self.shared.durable.store(published, Ordering::Release);
        Ok(())
    }

    fn sync(&self) -> std::io::Result<()> {
        self.shared.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        if self.options.faults.take_sync_failure() {
            return Err(std::io::Error::other("injected sync failure"));
        }
        self.tail.file.sync_data()
    }

    /// Starts the next segment; the batch being written will be its first.
    fn roll(&mut self) -> std::io::Result<()> {
        let first_position = self.shared.state.read().offsets.len() as u64;
        let number = self.tail.number + 1;
        let (path, file) = create_segment(&self.log_dir, number, first_position)?;
        let reader = Arc::new(File::open(&path)?);
        tracing::debug!(segment = %path.display(), first_position, "event log segment started");
        self.shared.state.write().segments.push(Segment {
            path: path.clone(),
            first_position,
            end: HEADER_LEN as u64,
            file: reader,
        });
        self.tail = Tail {
            path,
            file,
            len: HEADER_LEN as u64,
            number,
        };
        Ok(())
    }

    /// After a failed write or sync: cut the file back to its durable length, so that
    /// a later batch is not preceded by bytes nobody acknowledged.
    fn cut_back(&mut self) {
        let result = self
            .tail
            .file
            .set_len(self.tail.len)
            .and_then(|()| self.tail.file.sync_data());
        if let Err(e) = result {
            let why = format!(
                "{} could not be cut back to {} bytes after a failed write ({e}); reopen the store",
                self.tail.path.display(),
                self.tail.len
            );
            tracing::error!("{why}");
            self.poisoned = Some(why);
        }
    }

    /// Makes the index forget a batch that did not reach the disk.
    fn roll_back(&self, recorded: &[(String, Vec<Uuid>)]) {
        let mut state = self.shared.state.write();
        for (stream, ids) in recorded.iter().rev() {
            state.index.unrecord(stream, ids);
        }
    }
}

/// About how many bytes a request adds to a batch.
fn estimate(r: &Request) -> usize {
    r.events
        .iter()
        .map(|e| format::record_len(r.stream.len(), e.event_type.len(), e.data.len()))
        .sum()
}

fn io_error(kind: std::io::ErrorKind, why: &str) -> StoreError {
    StoreError::Io(std::io::Error::new(kind, why.to_owned()))
}
