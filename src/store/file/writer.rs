//! The log's one writer: a plain thread, because `write` and `fdatasync` block and
//! must never run on the async runtime, and because one owner of the file needs no
//! lock on it.
//!
//! Group commit, pipelined: the writer takes one request, then every other one already
//! waiting, checks them in order against the index, encodes the accepted ones into one
//! buffer and writes them with one `write`. It hands the `fdatasync` to a second thread
//! and, while that sync runs, goes on taking, checking and writing the appends that
//! arrive meanwhile; when the sync returns, every batch it covered is published
//! (readable), broadcast and answered in order, and one sync is started for everything
//! written since. So the disk is never idle while appends wait, and an append is still
//! acknowledged only after a sync that began after its write.
//!
//! Answers keep the log's order: a batch that wrote nothing (a retry, a refusal) is
//! answered only after every batch before it is durable, since its answer may rest on
//! them. If a write or a sync fails, every batch not yet durable gets the I/O error,
//! the file is cut back to its last durable length and the index forgets those
//! batches, so the store keeps working when the disk recovers. If even the cut fails,
//! the writer refuses every later append: what is on disk past the durable length is
//! unknown until the log is reopened and recovered.
//!
//! Checkpoints: each sync also carries, in the segment's header, the durable length
//! as the sync *before* it left it (never more: if the machine dies mid-sync, the
//! header may reach the disk without the records). So under load every acknowledged
//! event is covered by a durable checkpoint once the next sync returns, at no extra
//! sync. When the log goes idle, one sync of the header alone follows after
//! `checkpoint_delay`; closing syncs the last one; starting a new segment seals the
//! one before it (its checkpoint says a successor exists).
//!
//! Over 600 lines: batching, `fdatasync` and rolling segments are one thread's loop.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::format::{self, Checkpoint, HEADER_LEN};
use super::recovery::{create_segment, write_checkpoint, Tail};
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
    /// Bytes of the tail segment that are durable; `tail.len` is what is written.
    durable_len: u64,
    /// The tail segment's file length: `tail.len` plus the zeros written ahead.
    allocated: u64,
    /// The tail segment for the sync thread (the same open file).
    sync_file: Arc<File>,
    syncer: std::sync::mpsc::Sender<SyncJob>,
    options: FileStoreOptions,
    buf: Vec<u8>,
    /// Batches taken and not answered yet, oldest first: written and waiting for a
    /// sync, or with nothing to write but behind one that is.
    pending: VecDeque<Pending>,
    /// Set when a failed batch could not be cut off the file.
    poisoned: Option<String>,
    /// The checkpoint last written into the tail's header (durable once a sync that
    /// began after it returns).
    checkpoint: Checkpoint,
}

/// The checkpoint of a segment that has none yet: the first one written gets
/// sequence 1.
const NO_CHECKPOINT: Checkpoint = Checkpoint {
    seq: 0,
    sealed: false,
    end: 0,
    events: 0,
};

/// A request's place in the batch after its check.
struct Checked {
    reply: oneshot::Sender<Result<AppendResult, StoreError>>,
    answer: Result<AppendResult, StoreError>,
}

/// A batch written to the file (or with nothing to write), not yet answered.
struct Pending {
    checked: Vec<Checked>,
    /// Streams and ids it added to the index, to take back if it never gets durable.
    recorded: Vec<(String, Vec<Uuid>)>,
    written: Vec<Arc<RecordedEvent>>,
    /// Offset in the tail segment of each written event.
    offsets: Vec<u64>,
    /// Length of the tail segment with this batch on it.
    end: u64,
}

/// A sync for the sync thread: the file and where to say how it went.
type SyncJob = (Arc<File>, oneshot::Sender<std::io::Result<()>>);

/// A sync in flight and how many pending batches it covers.
type InFlight = (oneshot::Receiver<std::io::Result<()>>, usize);

impl Writer {
    pub fn new(
        shared: Arc<Shared>,
        queue: mpsc::Receiver<Request>,
        log_dir: PathBuf,
        tail: Tail,
        options: FileStoreOptions,
    ) -> std::io::Result<Self> {
        let (syncer, jobs) = std::sync::mpsc::channel::<SyncJob>();
        std::thread::Builder::new()
            .name("rl-gym-log-sync".into())
            .spawn(move || {
                // Ends when the writer drops its sender, after its last sync.
                for (file, done) in jobs {
                    let _ = done.send(file.sync_data());
                }
            })?;
        Ok(Self {
            checkpoint: tail.checkpoint.unwrap_or(NO_CHECKPOINT),
            shared,
            queue,
            log_dir,
            durable_len: tail.len,
            allocated: tail.file.metadata()?.len().max(tail.len),
            sync_file: Arc::new(tail.file.try_clone()?),
            tail,
            syncer,
            options,
            buf: Vec::new(),
            pending: VecDeque::new(),
            poisoned: None,
        })
    }

    /// Serves batches until every sender is gone, the queue is empty and the last
    /// sync has returned.
    pub fn run(mut self) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread runtime needs no resources that can fail");
        runtime.block_on(self.serve());
        tracing::debug!("event log writer stopped");
    }

    async fn serve(&mut self) {
        let mut in_flight: Option<InFlight> = None;
        let mut open = true;
        // Armed while the disk is idle and the checkpoint lags the durable length.
        let mut idle: Option<Pin<Box<tokio::time::Sleep>>> = None;
        loop {
            if in_flight.is_none() && open && self.checkpoint_lags() {
                if idle.is_none() {
                    idle = Some(Box::pin(tokio::time::sleep(self.options.checkpoint_delay)));
                }
            } else {
                idle = None;
            }
            tokio::select! {
                // A finished sync first: its callers have waited longest.
                biased;
                result = sync_done(&mut in_flight), if in_flight.is_some() => {
                    let covered = in_flight.take().map_or(0, |(_, n)| n);
                    self.synced(covered, result);
                    in_flight = self.start_sync();
                }
                request = self.queue.recv(), if open => match request {
                    Some(first) => {
                        let batch = self.gather(first, in_flight.is_none());
                        self.take(batch, &mut in_flight).await;
                        if in_flight.is_none() {
                            in_flight = self.start_sync();
                        }
                    }
                    None => open = false,
                },
                () = idle_done(&mut idle), if idle.is_some() => {
                    idle = None;
                    in_flight = self.start_checkpoint_sync();
                }
                else => break,
            }
        }
        // Closed cleanly: the checkpoint covers every acknowledged event.
        if self.checkpoint_lags() && self.write_checkpoint() {
            self.shared.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = self.tail.file.sync_data() {
                tracing::warn!(error = %e, "the event log's last checkpoint could not be synced");
            }
        }
    }

    /// Whether acknowledged events of the tail are not in its checkpoint yet.
    fn checkpoint_lags(&self) -> bool {
        self.poisoned.is_none()
            && !self.options.faults.checkpoints_frozen()
            && self.checkpoint.end != self.durable_len
    }

    /// Writes the durable length into the tail's header (no sync: the next one takes
    /// it). False when there was nothing new to write or the write failed, which
    /// loses nothing: the checkpoint only lags.
    fn write_checkpoint(&mut self) -> bool {
        if !self.checkpoint_lags() {
            return false;
        }
        let durable = self.shared.durable.load(Ordering::Acquire);
        let next = Checkpoint {
            seq: self.checkpoint.seq.wrapping_add(1),
            sealed: false,
            end: self.durable_len,
            events: durable.saturating_sub(self.tail.first_position),
        };
        let (at, slot) = next.encode();
        match self.tail.file.write_all_at(&slot, at) {
            Ok(()) => {
                self.checkpoint = next;
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "the event log's checkpoint could not be written");
                false
            }
        }
    }

    /// A sync of the checkpoint alone, once the log has gone idle.
    fn start_checkpoint_sync(&mut self) -> Option<InFlight> {
        if !self.write_checkpoint() {
            return None;
        }
        self.send_sync(false)
    }

    /// `first` and every request already waiting. When the disk is idle, it also
    /// gives appends that keep arriving (callers answered by the last batch coming
    /// back) the CPU and takes them too, up to `gather_time`: one sync then serves
    /// them all. While a sync runs there is no need: it is the gathering.
    fn gather(&mut self, first: Request, idle: bool) -> Vec<Request> {
        let mut bytes = estimate(&first);
        let mut batch = vec![first];
        let deadline = std::time::Instant::now() + self.options.gather_time;
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
            if !idle
                || batch.len() == before
                || bytes >= self.options.batch_max_bytes
                || std::time::Instant::now() >= deadline
            {
                return batch;
            }
            std::thread::yield_now();
        }
    }

    /// Checks, encodes and writes a batch, and queues it for its answer.
    async fn take(&mut self, batch: Vec<Request>, in_flight: &mut Option<InFlight>) {
        let counters = &self.shared.counters;
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

        // A new segment starts on a durable boundary: everything before it is synced
        // and published first (rare: once per segment).
        let bytes: usize = batch.iter().map(estimate).sum();
        if self.tail.len > HEADER_LEN as u64
            && self.tail.len + bytes as u64 > self.options.segment_size
        {
            self.drain(in_flight).await;
            if let Err(e) = self.roll() {
                tracing::error!(error = %e, "event log segment could not be started; the batch is refused");
                for r in batch {
                    let _ = r.reply.send(Err(io_error(e.kind(), &e.to_string())));
                }
                return;
            }
        }

        // Check and record under the lock, encode into the buffer. Offsets are relative
        // to the buffer until it is written.
        self.buf.clear();
        let mut checked = Vec::with_capacity(batch.len());
        let mut recorded: Vec<(String, Vec<Uuid>)> = Vec::new();
        let mut written: Vec<Arc<RecordedEvent>> = Vec::new();
        let mut offsets = Vec::new();
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
                            offsets.push(self.buf.len() as u64);
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

        let base = self.tail.len;
        if !written.is_empty() {
            if let Err(e) = self.tail.file.write_all_at(&self.buf, base) {
                tracing::error!(error = %e, events = written.len(), "event log write failed; the batch is refused");
                // Only this batch: the ones before it are whole on disk and their sync
                // decides for them.
                self.cut_back(base);
                self.forget(&recorded);
                for c in checked {
                    let _ = c.reply.send(Err(io_error(e.kind(), &e.to_string())));
                }
                return;
            }
            self.tail.len = base + self.buf.len() as u64;
            for o in &mut offsets {
                *o += base;
            }
            self.write_ahead();
        }
        let batch = Pending {
            checked,
            recorded,
            written,
            offsets,
            end: self.tail.len,
        };
        if batch.written.is_empty() && self.pending.is_empty() && in_flight.is_none() {
            // Nothing to make durable and nothing before it that is not.
            answer(batch);
        } else {
            self.pending.push_back(batch);
        }
    }

    /// Starts a sync covering every pending batch, if there is one, and the
    /// checkpoint of what the last sync made durable.
    fn start_sync(&mut self) -> Option<InFlight> {
        if self.pending.is_empty() {
            return None;
        }
        self.write_checkpoint();
        self.send_sync(true)
    }

    /// Hands a sync of the tail to the sync thread; it covers every pending batch.
    /// Planned failures hit only syncs of batches (`data`), not of a checkpoint alone,
    /// so that a test knows which append they fail.
    fn send_sync(&mut self, data: bool) -> Option<InFlight> {
        self.shared.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        let (done, result) = oneshot::channel();
        if data && self.options.faults.take_sync_failure() {
            let _ = done.send(Err(std::io::Error::other("injected sync failure")));
        } else if let Err(std::sync::mpsc::SendError((_, done))) =
            self.syncer.send((self.sync_file.clone(), done))
        {
            let _ = done.send(Err(std::io::Error::other("the log's sync thread died")));
        }
        Some((result, self.pending.len()))
    }

    /// Waits for the sync in flight and syncs whatever is still pending, so that
    /// nothing is pending after it.
    async fn drain(&mut self, in_flight: &mut Option<InFlight>) {
        loop {
            let mut sync = in_flight.take().or_else(|| self.start_sync());
            let Some((_, covered)) = sync else { return };
            let result = sync_done(&mut sync).await;
            self.synced(covered, result);
        }
    }

    /// A sync covering the first `covered` pending batches returned.
    fn synced(&mut self, covered: usize, result: std::io::Result<()>) {
        if let Err(e) = result {
            tracing::error!(error = %e, batches = self.pending.len(), "event log sync failed; every batch not yet durable is refused");
            // What follows the durable length is unknown now: cut it all off.
            self.cut_back(self.durable_len);
            let failed: Vec<Pending> = self.pending.drain(..).collect();
            for batch in failed.iter().rev() {
                self.forget(&batch.recorded);
            }
            for batch in failed {
                for c in batch.checked {
                    let _ = c.reply.send(Err(io_error(e.kind(), &e.to_string())));
                }
            }
            return;
        }
        let done: Vec<Pending> = self.pending.drain(..covered).collect();
        let Some(last) = done.last() else { return };
        self.durable_len = last.end;
        {
            let mut state = self.shared.state.write();
            for batch in &done {
                state.offsets.extend_from_slice(&batch.offsets);
            }
            if let Some(segment) = state.segments.last_mut() {
                segment.end = self.durable_len;
            }
            let published = state.offsets.len() as u64;
            self.shared.durable.store(published, Ordering::Release);
        }
        for batch in done {
            self.shared
                .counters
                .events
                .fetch_add(batch.written.len() as u64, Ordering::Relaxed);
            answer_after_broadcast(&self.shared, batch);
        }
        // Batches that wrote nothing, now with nothing undurable before them.
        while self
            .pending
            .front()
            .is_some_and(|batch| batch.written.is_empty())
        {
            if let Some(batch) = self.pending.pop_front() {
                answer(batch);
            }
        }
    }

    /// Starts the next segment; the batch being written will be its first. Nothing
    /// may be pending.
    fn roll(&mut self) -> std::io::Result<()> {
        let first_position = self.shared.state.read().offsets.len() as u64;
        let number = self.tail.number + 1;
        let (path, file) = create_segment(&self.log_dir, number, first_position)?;
        // Sealed after its successor exists (a crash in between leaves an unsealed
        // segment and an empty one, which is consistent): recovery then knows a
        // missing successor is lost history, not a log that ends here.
        let seal = Checkpoint {
            seq: self.checkpoint.seq.wrapping_add(1),
            sealed: true,
            end: self.durable_len,
            events: first_position.saturating_sub(self.tail.first_position),
        };
        let reader = Arc::new(File::open(&path)?);
        let sync_file = Arc::new(file.try_clone()?);
        // The last step that can fail: once sealed, nothing more goes to the old tail.
        self.shared.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        write_checkpoint(&self.tail.file, seal)?;
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
            first_position,
            checkpoint: None,
        };
        self.checkpoint = NO_CHECKPOINT;
        self.durable_len = self.tail.len;
        self.allocated = self.tail.len;
        self.sync_file = sync_file;
        Ok(())
    }

    /// Keeps `preallocate_bytes` of zeros ahead of the last record (not past the
    /// segment's size), written in one go once the records reach them. They become
    /// durable with the next sync, which is the slow kind; the syncs after it only
    /// flush data. A failure here loses nothing: the records are written, and the
    /// zeros only make later syncs cheaper.
    fn write_ahead(&mut self) {
        let ahead = self.options.preallocate_bytes;
        let target = (self.tail.len + ahead).min(self.options.segment_size);
        if ahead == 0 || self.allocated >= self.tail.len + ahead / 2 || target <= self.allocated {
            return;
        }
        const CHUNK: usize = 256 << 10;
        static ZEROS: [u8; CHUNK] = [0; CHUNK];
        let mut at = self.allocated.max(self.tail.len);
        while at < target {
            let n = (target - at).min(CHUNK as u64) as usize;
            if let Err(e) = self.tail.file.write_all_at(&ZEROS[..n], at) {
                tracing::warn!(error = %e, "zeros could not be written ahead of the event log's end");
                return;
            }
            at += n as u64;
            self.allocated = at;
        }
    }

    /// After a failed write or sync: cut the file back to `len`, so that a later
    /// batch is not preceded by bytes nobody acknowledged.
    fn cut_back(&mut self, len: u64) {
        let result = self
            .tail
            .file
            .set_len(len)
            .and_then(|()| self.tail.file.sync_data());
        self.tail.len = len;
        self.allocated = len;
        if let Err(e) = result {
            let why = format!(
                "{} could not be cut back to {len} bytes after a failed write ({e}); reopen the store",
                self.tail.path.display(),
            );
            tracing::error!("{why}");
            self.poisoned = Some(why);
        }
    }

    /// Makes the index forget a batch that did not reach the disk.
    fn forget(&self, recorded: &[(String, Vec<Uuid>)]) {
        let mut state = self.shared.state.write();
        for (stream, ids) in recorded.iter().rev() {
            state.index.unrecord(stream, ids);
        }
    }
}

/// The result of the sync in flight (a dead sync thread is an I/O error).
async fn sync_done(in_flight: &mut Option<InFlight>) -> std::io::Result<()> {
    match in_flight {
        Some((result, _)) => result
            .await
            .unwrap_or_else(|_| Err(std::io::Error::other("the log's sync thread died"))),
        None => std::future::pending().await,
    }
}

/// Returns when the idle timer fires (never without one).
async fn idle_done(idle: &mut Option<Pin<Box<tokio::time::Sleep>>>) {
    match idle {
        Some(sleep) => sleep.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Broadcasts a durable batch, then answers it: once an append returns, its events
/// have gone to every live receiver, so one subscribed afterwards never sees them live.
fn answer_after_broadcast(shared: &Shared, batch: Pending) {
    for event in batch.written {
        // No receiver is not an error: nobody is listening right now.
        let _ = shared.live.send(event);
    }
    for c in batch.checked {
        let _ = c.reply.send(c.answer);
    }
}

fn answer(batch: Pending) {
    for c in batch.checked {
        let _ = c.reply.send(c.answer);
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
