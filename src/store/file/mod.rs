//! `FileStore`: the embedded, crash-safe event log, the default backend.
//!
//! The log is a directory of segment files (`log/00000000.seg`, …) of CRC32C-checked
//! records ([`format`]). One writer thread ([`writer`]) owns the files: it takes every
//! append waiting for it, checks them against the index, writes them with one `write`
//! and one `fdatasync` (group commit), run on a second thread so that the next batch is
//! written meanwhile, and only after that sync makes them visible, broadcasts them and
//! answers the callers. On open, [`recovery`] reads every record back, cuts a
//! torn tail and refuses any damage before it.
//!
//! Each segment's header holds a checkpoint the writer keeps moving: how far the
//! segment was durable and acknowledged, written into the header in the same
//! `fdatasync` as the next batch (so it costs no sync of its own under load), or,
//! once appends stop, by a sync of its own after [`FileStoreOptions::checkpoint_delay`].
//! A file found shorter than its checkpoint lost acknowledged events and is not
//! opened unless [`FileStoreOptions::accept_data_loss`]; only what lies past the
//! checkpoint (at most the last group commit) can be a torn tail.
//!
//! One process writes a data directory at a time ([`lock`]); `rl-gym replay` opens
//! the log with [`FileStore::open_read_only`], which writes nothing.
//!
//! In memory the store keeps the [`Index`] plus one byte offset per event, never the
//! events themselves: reads go to the files with `pread` on the blocking pool. Visibility
//! is one number, the count of offsets: an event is readable exactly when its offset has
//! been published, which happens after its fsync. The index may briefly hold records of
//! a batch that is still being written; readers never look past the published offsets.

mod format;
mod lock;
mod recovery;
mod writer;

pub use format::{RecordView, HEADER_LEN as SEGMENT_HEADER_LEN};
pub use recovery::CheckedRecords;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::index::Index;
use super::{AppendResult, EventData, EventStore, ExpectedState, RecordedEvent, StoreError};
use format::{Frame, MAX_PAYLOAD};

/// Tuning of a [`FileStore`]; the defaults suit production.
#[derive(Debug, Clone)]
pub struct FileStoreOptions {
    /// A segment is closed and a new one started once it reaches this many bytes. A
    /// batch is never split, so a segment can exceed it by one batch.
    pub segment_size: u64,
    /// The writer stops gathering a batch past this many bytes.
    pub batch_max_bytes: usize,
    /// How long the writer keeps gathering a batch while appends keep arriving. It
    /// stops as soon as a look at the queue finds nothing new, so a lone append does
    /// not wait; zero takes only what is already queued.
    pub gather_time: std::time::Duration,
    /// Zeros written ahead of the last record, so that most syncs only flush data:
    /// a sync after an append that grows the file also commits the new size to the
    /// file system's journal, about twice as slow (benches/README.md). 0 writes none.
    /// Recovery reads zeros after the last record as this padding.
    pub preallocate_bytes: u64,
    /// Appends waiting for the writer before `append` itself waits (backpressure).
    pub queue_capacity: usize,
    /// Live events a slow subscriber may fall behind before it lags.
    pub live_capacity: usize,
    /// Once appends stop, how long the writer waits before it syncs a checkpoint that
    /// covers the last of them. Under load every sync carries the checkpoint of the
    /// one before, so this extra sync happens only when the log goes idle.
    pub checkpoint_delay: std::time::Duration,
    /// Open even though the log lost acknowledged events (a segment cut short or
    /// missing): the loss is logged, reported in [`OpenReport`], and the checkpoint
    /// moved back so the next open is clean. Off: opening fails with
    /// [`StoreError::DataLoss`].
    pub accept_data_loss: bool,
    /// Planned failures, for tests of the failure paths.
    pub faults: Faults,
}

impl Default for FileStoreOptions {
    fn default() -> Self {
        Self {
            segment_size: 64 << 20,
            batch_max_bytes: 8 << 20,
            gather_time: std::time::Duration::from_micros(200),
            preallocate_bytes: 4 << 20,
            queue_capacity: 4096,
            live_capacity: 4096,
            checkpoint_delay: std::time::Duration::from_millis(10),
            accept_data_loss: false,
            faults: Faults::default(),
        }
    }
}

/// A handle to plan failures of the writer (a full disk, a dying device) without
/// breaking a real disk. Clones share the plan.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    failing_syncs: Arc<AtomicU32>,
    frozen_checkpoints: Arc<AtomicBool>,
}

impl Faults {
    /// Checkpoints stop moving from now on, as if the machine had died right after
    /// the last one: what is appended later is a tail recovery may cut.
    pub fn freeze_checkpoints(&self) {
        self.frozen_checkpoints.store(true, Ordering::SeqCst);
    }

    fn checkpoints_frozen(&self) -> bool {
        self.frozen_checkpoints.load(Ordering::SeqCst)
    }

    /// The next `n` data syncs of the log fail with an I/O error (after their write).
    pub fn fail_next_syncs(&self, n: u32) {
        self.failing_syncs.store(n, Ordering::SeqCst);
    }

    fn take_sync_failure(&self) -> bool {
        self.failing_syncs
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// What opening the log found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenReport {
    /// Events in the log.
    pub events: u64,
    /// Bytes of a torn last record cut off the end of the log (0 after a clean stop);
    /// opened read-only, the bytes that the server's next start will cut.
    pub truncated_bytes: u64,
    /// Segment files in the log.
    pub segments: usize,
    /// Acknowledged events were missing and the loss was accepted.
    pub data_loss: bool,
    /// Of those, the bytes and events the checkpoint says are missing (0 when a whole
    /// segment is gone: how much is unknown).
    pub lost_bytes: u64,
    pub lost_events: u64,
}

/// Counters of the writer, for metrics and for tests of batching.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Append requests answered by the writer (written, retried or refused).
    pub appends: u64,
    /// Batches the writer took from its queue.
    pub batches: u64,
    /// `fdatasync` calls on the log.
    pub fsyncs: u64,
    /// Events written.
    pub events: u64,
}

#[derive(Default)]
struct Counters {
    appends: AtomicU64,
    batches: AtomicU64,
    fsyncs: AtomicU64,
    events: AtomicU64,
}

/// One segment file as readers see it.
struct Segment {
    path: PathBuf,
    first_position: u64,
    /// Durable length in bytes: the end of its last published record.
    end: u64,
    file: Arc<File>,
}

/// What readers and the writer share, under one lock.
struct State {
    index: Index,
    /// Byte offset in its segment of every published (durable) event, by position.
    offsets: Vec<u64>,
    segments: Vec<Segment>,
}

impl State {
    /// The segment holding `position`.
    fn segment_of(&self, position: u64) -> usize {
        self.segments
            .partition_point(|s| s.first_position <= position)
            .saturating_sub(1)
    }

    /// The published position right after the segment `i`.
    fn segment_limit(&self, i: usize) -> u64 {
        self.segments
            .get(i + 1)
            .map_or(self.offsets.len() as u64, |s| s.first_position)
    }

    /// Byte range `[start, end)` of the published positions `[from, to)` of segment
    /// `i`, which must all lie in it.
    fn byte_range(&self, i: usize, from: u64, to: u64) -> (u64, u64) {
        let start = self.offsets[from as usize];
        let end = if to < self.segment_limit(i) {
            self.offsets[to as usize]
        } else {
            self.segments[i].end
        };
        (start, end)
    }
}

struct Shared {
    state: RwLock<State>,
    /// Published positions, readable without the lock.
    durable: AtomicU64,
    live: broadcast::Sender<Arc<RecordedEvent>>,
    counters: Counters,
}

/// A run of records to read from one file.
struct Chunk {
    path: PathBuf,
    file: Arc<File>,
    start: u64,
    end: u64,
}

/// Reads are cut into chunks of about this many bytes, so a big `read_all` streams.
const READ_CHUNK: u64 = 4 << 20;

/// The embedded event log. See the module docs.
pub struct FileStore {
    shared: Arc<Shared>,
    sender: Mutex<Option<mpsc::Sender<writer::Request>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The data directory's lock, held until the store closes.
    lock: Mutex<Option<File>>,
    dir: PathBuf,
}

impl FileStore {
    /// Opens (or creates) the log under `dir/log/` with the default options. This
    /// reads the whole log: call it at start-up, off the async workers if they serve.
    pub fn open(dir: &Path) -> Result<(FileStore, OpenReport), StoreError> {
        Self::open_with(dir, FileStoreOptions::default())
    }

    pub fn open_with(
        dir: &Path,
        options: FileStoreOptions,
    ) -> Result<(FileStore, OpenReport), StoreError> {
        Self::open_visiting(dir, options, None)
    }

    /// Opens the log as [`FileStore::open_with`] does, handing `visit` every record as
    /// recovery checks it, in position order and in batches that borrow the segment
    /// read into memory: one pass over the log, without a copy, for a caller that reads
    /// all of it anyway (`rl-gym replay`).
    pub fn open_visiting(
        dir: &Path,
        options: FileStoreOptions,
        visit: Option<&mut dyn FnMut(CheckedRecords)>,
    ) -> Result<(FileStore, OpenReport), StoreError> {
        let log_dir = dir.join("log");
        std::fs::create_dir_all(&log_dir)?;
        let lock = lock::exclusive(dir)?;
        let mode = recovery::Mode {
            write: true,
            accept_data_loss: options.accept_data_loss,
        };
        let recovered = recovery::recover(&log_dir, visit, mode)?;
        let report = recovered.report;
        let tail = recovered.tail.ok_or_else(|| {
            StoreError::Io(std::io::Error::other("the log was opened without a tail"))
        })?;
        let (live, _) = broadcast::channel(options.live_capacity.max(1));
        let shared = Arc::new(Shared {
            durable: AtomicU64::new(recovered.state.offsets.len() as u64),
            state: RwLock::new(recovered.state),
            live,
            counters: Counters::default(),
        });
        let (sender, receiver) = mpsc::channel(options.queue_capacity.max(1));
        let w = writer::Writer::new(shared.clone(), receiver, log_dir, tail, options)?;
        let thread = std::thread::Builder::new()
            .name("rl-gym-log-writer".into())
            .spawn(move || w.run())?;
        tracing::info!(
            events = report.events,
            segments = report.segments,
            truncated_bytes = report.truncated_bytes,
            dir = %dir.display(),
            "event log opened"
        );
        Ok((
            FileStore {
                shared,
                sender: Mutex::new(Some(sender)),
                thread: Mutex::new(Some(thread)),
                lock: Mutex::new(Some(lock)),
                dir: dir.to_owned(),
            },
            report,
        ))
    }

    /// Opens the log under `dir/log/` to read it, as `rl-gym replay` does: every
    /// record is checked as [`FileStore::open_visiting`] checks it, and a torn tail or
    /// missing events are reported the same way, but nothing in `dir` is written, cut
    /// or created. Takes a shared lock on the directory (refused while a server holds
    /// it). Appends fail with [`StoreError::Closed`].
    pub fn open_read_only(
        dir: &Path,
        visit: Option<&mut dyn FnMut(CheckedRecords)>,
    ) -> Result<(FileStore, OpenReport), StoreError> {
        let lock = lock::shared(dir)?;
        let mode = recovery::Mode {
            write: false,
            accept_data_loss: false,
        };
        let recovered = recovery::recover(&dir.join("log"), visit, mode)?;
        let (live, _) = broadcast::channel(1);
        let shared = Arc::new(Shared {
            durable: AtomicU64::new(recovered.state.offsets.len() as u64),
            state: RwLock::new(recovered.state),
            live,
            counters: Counters::default(),
        });
        Ok((
            FileStore {
                shared,
                sender: Mutex::new(None),
                thread: Mutex::new(None),
                lock: Mutex::new(lock),
                dir: dir.to_owned(),
            },
            recovered.report,
        ))
    }

    /// The data directory this store was opened on.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn stats(&self) -> StoreStats {
        let c = &self.shared.counters;
        StoreStats {
            appends: c.appends.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            fsyncs: c.fsyncs.load(Ordering::Relaxed),
            events: c.events.load(Ordering::Relaxed),
        }
    }

    /// Stops taking appends, lets the writer finish every append already queued, and
    /// waits for its thread; then lets the data directory go. Later appends fail with
    /// [`StoreError::Closed`]; reads go on.
    pub async fn close(&self) {
        let thread = self.stop();
        if let Some(thread) = thread {
            // Joining blocks until the last batch's fsync returns: not on a worker.
            let _ = tokio::task::spawn_blocking(move || join(thread)).await;
        }
        // Nothing of this store writes any more: another process may open the log.
        self.lock.lock().take();
    }

    /// Drops the queue's sender (the writer drains what is queued and exits) and hands
    /// back the thread to join.
    fn stop(&self) -> Option<JoinHandle<()>> {
        self.sender.lock().take();
        self.thread.lock().take()
    }

    async fn read_chunks(chunks: Vec<Chunk>) -> Result<Vec<RecordedEvent>, StoreError> {
        if chunks.is_empty() {
            return Ok(Vec::new());
        }
        tokio::task::spawn_blocking(move || {
            let mut events = Vec::new();
            let mut buf = Vec::new();
            for c in &chunks {
                read_chunk(c, &mut buf, &mut events)?;
            }
            Ok(events)
        })
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(format!("log reader died: {e}"))))?
    }
}

fn join(thread: JoinHandle<()>) {
    if thread.join().is_err() {
        tracing::error!("the event log writer thread panicked");
    }
}

impl Drop for FileStore {
    fn drop(&mut self) {
        if let Some(thread) = self.stop() {
            join(thread);
        }
        self.lock.lock().take();
    }
}

/// Reads and decodes the records of one chunk into `out`, checking every checksum.
fn read_chunk(
    c: &Chunk,
    buf: &mut Vec<u8>,
    out: &mut Vec<RecordedEvent>,
) -> Result<(), StoreError> {
    let len = usize::try_from(c.end - c.start)
        .map_err(|_| StoreError::Corrupt(format!("{}: chunk too large", c.path.display())))?;
    buf.clear();
    buf.resize(len, 0);
    c.file.read_exact_at(buf, c.start)?;
    let mut at = 0;
    while at < buf.len() {
        let damaged = |why: String| {
            StoreError::Corrupt(format!(
                "{} at offset {}: {why}",
                c.path.display(),
                c.start + at as u64
            ))
        };
        match format::read_frame(&buf[at..]) {
            Frame::Record { payload, len } => {
                let event = format::decode_payload(payload)
                    .and_then(|v| v.to_event())
                    .map_err(damaged)?;
                out.push(event);
                at += len;
            }
            Frame::Incomplete => return Err(damaged("record ends early".into())),
            Frame::Bad(why) => return Err(damaged(why)),
        }
    }
    Ok(())
}

#[async_trait]
impl EventStore for FileStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedState,
        events: Vec<EventData>,
    ) -> Result<AppendResult, StoreError> {
        // Limits of the format; refused here so the writer never sees them.
        if stream.len() > u16::MAX as usize {
            return Err(StoreError::InvalidAppend(format!(
                "stream name is {} bytes, at most {} allowed",
                stream.len(),
                u16::MAX
            )));
        }
        for e in &events {
            let size = format::record_len(stream.len(), e.event_type.len(), e.data.len());
            if e.event_type.len() > u16::MAX as usize || size > MAX_PAYLOAD {
                return Err(StoreError::InvalidAppend(format!(
                    "event {} is too large for the log ({size} bytes, type {} bytes)",
                    e.id,
                    e.event_type.len()
                )));
            }
        }
        let sender = self.sender.lock().clone().ok_or(StoreError::Closed)?;
        let (reply, answer) = oneshot::channel();
        sender
            .send(writer::Request {
                stream: stream.to_owned(),
                expected,
                events,
                reply,
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn read_stream(
        &self,
        stream: &str,
        from_revision: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let chunks = {
            let st = self.shared.state.read();
            let published = st.offsets.len() as u64;
            let mut chunks: Vec<Chunk> = Vec::new();
            for &p in st.index.stream_positions(stream, from_revision) {
                if p >= published {
                    break;
                }
                let i = st.segment_of(p);
                let (start, end) = st.byte_range(i, p, p + 1);
                let seg = &st.segments[i];
                // Neighbouring events of the stream are read in one go.
                match chunks.last_mut() {
                    Some(c) if c.end == start && Arc::ptr_eq(&c.file, &seg.file) => c.end = end,
                    _ => chunks.push(Chunk {
                        path: seg.path.clone(),
                        file: seg.file.clone(),
                        start,
                        end,
                    }),
                }
            }
            chunks
        };
        Self::read_chunks(chunks).await
    }

    async fn read_all(&self, from: u64, max: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let chunks = {
            let st = self.shared.state.read();
            let published = st.offsets.len() as u64;
            let to = from.saturating_add(max as u64).min(published);
            let mut chunks = Vec::new();
            let mut p = from;
            while p < to {
                let i = st.segment_of(p);
                let seg_to = st.segment_limit(i).min(to);
                // Cut the segment's range into chunks at record boundaries.
                let mut q = p;
                while q < seg_to {
                    let base = st.offsets[q as usize];
                    let within = st.offsets[q as usize..seg_to as usize]
                        .partition_point(|&o| o - base < READ_CHUNK)
                        as u64;
                    let next = (q + within).max(q + 1).min(seg_to);
                    let (start, end) = st.byte_range(i, q, next);
                    chunks.push(Chunk {
                        path: st.segments[i].path.clone(),
                        file: st.segments[i].file.clone(),
                        start,
                        end,
                    });
                    q = next;
                }
                p = seg_to;
            }
            chunks
        };
        Self::read_chunks(chunks).await
    }

    fn next_position(&self) -> u64 {
        self.shared.durable.load(Ordering::Acquire)
    }

    fn live(&self) -> broadcast::Receiver<Arc<RecordedEvent>> {
        self.shared.live.subscribe()
    }
}
