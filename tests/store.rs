//! The event store's conformance suite, run against every backend, and the file
//! backend's own tests (reopen, torn tails, damage, rollover, failing disk, batching,
//! checkpoints and lost acknowledged events, read-only opening, the directory lock).
//!
//! A backend joins the suite with one line: `conformance!(name, factory)` where the
//! factory is an async fn returning a [`Harness`] (the store behind `Arc<dyn
//! EventStore>` plus whatever must live as long as it, e.g. a temp dir).

use std::any::Any;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::Utc;
use futures::StreamExt;
use rl_gym::store::file::{FileStore, FileStoreOptions, OpenReport, SEGMENT_HEADER_LEN};
use rl_gym::store::memory::MemoryStore;
use rl_gym::store::{
    subscribe_all, AppendResult, CurrentRevision, EventData, EventStore, ExpectedState,
    RecordedEvent, StoreError,
};
use uuid::Uuid;

pub struct Harness {
    pub store: Arc<dyn EventStore>,
    /// Kept alive as long as the store (a temp dir, a container handle).
    pub _guard: Box<dyn Any + Send>,
}

async fn memory() -> Harness {
    Harness {
        store: Arc::new(MemoryStore::new()),
        _guard: Box::new(()),
    }
}

async fn file() -> Harness {
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, _) = FileStore::open(dir.path()).expect("open");
    Harness {
        store: Arc::new(store),
        _guard: Box::new(dir),
    }
}

/// The file backend with tiny segments, so the suite also runs across rollovers.
async fn file_tiny_segments() -> Harness {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = FileStoreOptions {
        segment_size: 1024,
        ..FileStoreOptions::default()
    };
    let (store, _) = FileStore::open_with(dir.path(), options).expect("open");
    Harness {
        store: Arc::new(store),
        _guard: Box::new(dir),
    }
}

fn event(n: u64) -> EventData {
    EventData {
        id: Uuid::new_v4(),
        event_type: format!("Happened{n}"),
        schema_version: 1,
        time: Utc::now(),
        data: format!(r#"{{"n":{n}}}"#).into_bytes(),
    }
}

fn events(n: u64) -> Vec<EventData> {
    (0..n).map(event).collect()
}

fn result(rev: u64, pos: u64) -> AppendResult {
    AppendResult {
        next_expected_revision: rev,
        position: pos,
    }
}

fn assert_wrong(err: StoreError, want: CurrentRevision) {
    match err {
        StoreError::WrongExpectedVersion { current, .. } => assert_eq!(current, want),
        other => panic!("expected WrongExpectedVersion, got {other:?}"),
    }
}

/// The rules every backend must follow. Each test gets a fresh, empty store.
mod suite {
    use super::*;

    pub async fn revisions_are_per_stream_and_positions_global(s: Arc<dyn EventStore>) {
        assert_eq!(s.next_position(), 0);
        let a = s.append("a", ExpectedState::NoStream, events(2)).await;
        assert_eq!(a.expect("a"), result(1, 1));
        let b = s.append("b", ExpectedState::Any, events(1)).await;
        assert_eq!(b.expect("b"), result(0, 2));
        let a2 = s.append("a", ExpectedState::Exact(1), events(3)).await;
        assert_eq!(a2.expect("a2"), result(4, 5));
        assert_eq!(s.next_position(), 6);

        let a = s.read_stream("a", 0).await.expect("read a");
        let revs: Vec<_> = a.iter().map(|e| (e.revision, e.position)).collect();
        assert_eq!(revs, [(0, 0), (1, 1), (2, 3), (3, 4), (4, 5)]);
        let all = s.read_all(0, 100).await.expect("read all");
        let positions: Vec<_> = all.iter().map(|e| e.position).collect();
        assert_eq!(positions, [0, 1, 2, 3, 4, 5]);
        assert_eq!(all[2].stream, "b");
    }

    pub async fn events_read_back_as_written(s: Arc<dyn EventStore>) {
        let e = event(7);
        s.append("a", ExpectedState::Any, vec![e.clone()])
            .await
            .expect("append");
        let back = s.read_stream("a", 0).await.expect("read");
        assert_eq!(back.len(), 1);
        let r = &back[0];
        assert_eq!(r.id, e.id);
        assert_eq!(r.event_type, e.event_type);
        assert_eq!(r.schema_version, e.schema_version);
        assert_eq!(r.data, e.data);
        assert_eq!(r.stream, "a");
        // Backends keep times to the microsecond.
        assert_eq!(r.time.timestamp_micros(), e.time.timestamp_micros());
        assert_eq!(r.time, rl_gym::store::normalize_time(e.time));
    }

    pub async fn expected_states_accept_and_refuse_with_current(s: Arc<dyn EventStore>) {
        assert_wrong(
            s.append("a", ExpectedState::StreamExists, events(1))
                .await
                .expect_err("exists on no stream"),
            CurrentRevision::NoStream,
        );
        assert_wrong(
            s.append("a", ExpectedState::Exact(0), events(1))
                .await
                .expect_err("exact on no stream"),
            CurrentRevision::NoStream,
        );
        s.append("a", ExpectedState::NoStream, events(1))
            .await
            .expect("no stream");
        assert_wrong(
            s.append("a", ExpectedState::NoStream, events(1))
                .await
                .expect_err("no stream on existing"),
            CurrentRevision::Current(0),
        );
        s.append("a", ExpectedState::StreamExists, events(1))
            .await
            .expect("exists");
        assert_wrong(
            s.append("a", ExpectedState::Exact(0), events(1))
                .await
                .expect_err("stale exact"),
            CurrentRevision::Current(1),
        );
        assert_wrong(
            s.append("a", ExpectedState::Exact(5), events(1))
                .await
                .expect_err("future exact"),
            CurrentRevision::Current(1),
        );
        s.append("a", ExpectedState::Exact(1), events(1))
            .await
            .expect("exact");
        s.append("a", ExpectedState::Any, events(1))
            .await
            .expect("any");
        // Refusals wrote nothing.
        assert_eq!(s.next_position(), 4);
        assert_eq!(s.read_stream("a", 0).await.expect("read").len(), 4);
    }

    pub async fn retried_append_returns_original_result_and_writes_nothing(s: Arc<dyn EventStore>) {
        let batch = events(3);
        let first = s
            .append("a", ExpectedState::NoStream, batch.clone())
            .await
            .expect("first");
        s.append("b", ExpectedState::Any, events(1))
            .await
            .expect("b");
        s.append("a", ExpectedState::Any, events(1))
            .await
            .expect("a again");
        // The retry's expectation no longer holds, yet it is answered as the original.
        for expected in [
            ExpectedState::NoStream,
            ExpectedState::Exact(0),
            ExpectedState::Any,
            ExpectedState::StreamExists,
        ] {
            let again = s.append("a", expected, batch.clone()).await.expect("retry");
            assert_eq!(again, first);
        }
        assert_eq!(s.next_position(), 5);
        assert_eq!(s.read_stream("a", 0).await.expect("read").len(), 4);
    }

    pub async fn partly_written_ids_are_a_conflict(s: Arc<dyn EventStore>) {
        let batch = events(2);
        s.append("a", ExpectedState::Any, batch.clone())
            .await
            .expect("first");
        let mixed = vec![batch[1].clone(), event(9)];
        match s.append("a", ExpectedState::Any, mixed).await {
            Err(StoreError::IdempotencyConflict { stream }) => assert_eq!(stream, "a"),
            other => panic!("expected IdempotencyConflict, got {other:?}"),
        }
        let swapped = vec![batch[1].clone(), batch[0].clone()];
        assert!(matches!(
            s.append("a", ExpectedState::Any, swapped).await,
            Err(StoreError::IdempotencyConflict { .. })
        ));
        assert_eq!(s.next_position(), 2);
    }

    pub async fn empty_append_is_refused(s: Arc<dyn EventStore>) {
        assert!(matches!(
            s.append("a", ExpectedState::Any, vec![]).await,
            Err(StoreError::InvalidAppend(_))
        ));
        assert_eq!(s.next_position(), 0);
        assert!(s.read_stream("a", 0).await.expect("read").is_empty());
    }

    pub async fn read_stream_from_a_revision(s: Arc<dyn EventStore>) {
        for i in 0..5 {
            s.append("a", ExpectedState::Any, vec![event(i)])
                .await
                .expect("append");
            s.append("b", ExpectedState::Any, vec![event(i)])
                .await
                .expect("append");
        }
        let tail = s.read_stream("a", 3).await.expect("read");
        let revs: Vec<_> = tail.iter().map(|e| e.revision).collect();
        assert_eq!(revs, [3, 4]);
        assert!(tail.iter().all(|e| e.stream == "a"));
        assert!(s.read_stream("a", 5).await.expect("past end").is_empty());
        assert!(s.read_stream("nope", 0).await.expect("none").is_empty());
    }

    pub async fn read_all_pages(s: Arc<dyn EventStore>) {
        for i in 0..25 {
            s.append(&format!("s{}", i % 3), ExpectedState::Any, vec![event(i)])
                .await
                .expect("append");
        }
        let mut from = 0;
        let mut seen = Vec::new();
        loop {
            let page = s.read_all(from, 7).await.expect("page");
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 7);
            from = page.last().map(|e| e.position + 1).unwrap_or(from);
            seen.extend(page.into_iter().map(|e| e.position));
        }
        assert_eq!(seen, (0..25).collect::<Vec<_>>());
        assert!(s.read_all(25, 10).await.expect("end").is_empty());
        assert!(s.read_all(100, 10).await.expect("past end").is_empty());
        assert!(s.read_all(3, 0).await.expect("none").is_empty());
    }

    pub async fn subscription_catches_up_then_follows_live(s: Arc<dyn EventStore>) {
        for i in 0..50 {
            s.append(&format!("s{}", i % 4), ExpectedState::Any, vec![event(i)])
                .await
                .expect("history");
        }
        let mut sub = subscribe_all(s.clone(), 10);
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let s = s.clone();
                tokio::spawn(async move {
                    for i in 0..50 {
                        s.append(&format!("w{w}"), ExpectedState::Any, events(1 + i % 2))
                            .await
                            .expect("live append");
                    }
                })
            })
            .collect();
        let total = 50 + 4 * 75;
        let mut expected = 10;
        while expected < total {
            let e = tokio::time::timeout(std::time::Duration::from_secs(20), sub.next())
                .await
                .expect("subscription stalled")
                .expect("next");
            assert_eq!(e.position, expected, "exactly once, in order");
            expected += 1;
        }
        for w in writers {
            w.await.expect("writer");
        }
        // Nothing more arrives, and the stream form works too.
        let more = tokio::time::timeout(std::time::Duration::from_millis(100), sub.next()).await;
        assert!(more.is_err(), "no event past the end");
        let mut stream = Box::pin(subscribe_all(s.clone(), total - 2).into_stream());
        let last = stream.next().await.expect("item").expect("event");
        assert_eq!(last.position, total - 2);
    }

    pub async fn slow_subscriber_that_lags_reads_the_log(s: Arc<dyn EventStore>) {
        let mut sub = subscribe_all(s.clone(), 0);
        s.append("first", ExpectedState::Any, events(1))
            .await
            .expect("append");
        assert_eq!(sub.next().await.expect("first").position, 0);
        // Caught up: the subscription now waits on the live broadcast.
        let idle = tokio::time::timeout(std::time::Duration::from_millis(50), sub.next()).await;
        assert!(idle.is_err());
        // More live events than any broadcast buffer holds, before reading one.
        for chunk in 0..10u64 {
            s.append(&format!("big{chunk}"), ExpectedState::Any, events(1000))
                .await
                .expect("append");
        }
        for want in 1..=10_000 {
            let e = sub.next().await.expect("next");
            assert_eq!(e.position, want);
        }
    }

    pub async fn concurrent_exact_appenders_each_revision_won_once(s: Arc<dyn EventStore>) {
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move {
                    let mut wins = Vec::new();
                    for _ in 0..40 {
                        let current = s
                            .read_stream("contended", 0)
                            .await
                            .expect("read")
                            .last()
                            .map(|e| e.revision);
                        let expected = match current {
                            None => ExpectedState::NoStream,
                            Some(r) => ExpectedState::Exact(r),
                        };
                        match s.append("contended", expected, vec![event(0)]).await {
                            Ok(r) => wins.push(r.next_expected_revision),
                            Err(StoreError::WrongExpectedVersion { .. }) => {}
                            Err(e) => panic!("unexpected {e:?}"),
                        }
                    }
                    wins
                })
            })
            .collect();
        let mut wins = Vec::new();
        for t in tasks {
            wins.extend(t.await.expect("task"));
        }
        wins.sort_unstable();
        let n = wins.len() as u64;
        assert!(n > 0);
        assert_eq!(
            wins,
            (0..n).collect::<Vec<_>>(),
            "each revision won exactly once"
        );
        let stream = s.read_stream("contended", 0).await.expect("read");
        assert_eq!(stream.len() as u64, n);
    }

    pub async fn same_id_in_another_stream_is_another_event(s: Arc<dyn EventStore>) {
        // As in KurrentDB, ids are idempotency keys within their stream.
        let e = event(1);
        s.append("a", ExpectedState::Any, vec![e.clone()])
            .await
            .expect("a");
        let b = s.append("b", ExpectedState::Any, vec![e]).await.expect("b");
        assert_eq!(b, result(0, 1));
    }
}

macro_rules! conformance {
    ($backend:ident, $factory:path) => {
        mod $backend {
            conformance!(@tests $factory;
                revisions_are_per_stream_and_positions_global,
                events_read_back_as_written,
                expected_states_accept_and_refuse_with_current,
                retried_append_returns_original_result_and_writes_nothing,
                partly_written_ids_are_a_conflict,
                empty_append_is_refused,
                read_stream_from_a_revision,
                read_all_pages,
                subscription_catches_up_then_follows_live,
                slow_subscriber_that_lags_reads_the_log,
                concurrent_exact_appenders_each_revision_won_once,
                same_id_in_another_stream_is_another_event
            );
        }
    };
    (@tests $factory:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let harness = $factory().await;
                super::suite::$name(harness.store.clone()).await;
            }
        )*
    };
}

conformance!(memory_backend, super::memory);
conformance!(file_backend, super::file);
conformance!(file_backend_tiny_segments, super::file_tiny_segments);

/// The in-process KurrentDB fake (gRPC, in this test process): the suite runs against
/// the real `kurrentdb` client without a node.
#[cfg(feature = "eventstore")]
#[path = "kurrent/fake_server.rs"]
mod fake_server;

/// A KurrentDB store: on the live node `KURRENTDB_URL` names when it is set, else on
/// the fake. Each test gets its own stream namespace, so the suite's "fresh, empty
/// store" holds on a shared node and across reruns.
#[cfg(feature = "eventstore")]
async fn kurrent() -> Harness {
    use rl_gym::store::kurrent::{KurrentOptions, KurrentStore};
    let (url, guard): (String, Box<dyn Any + Send>) = match std::env::var("KURRENTDB_URL") {
        Ok(url) if !url.is_empty() => (url, Box::new(())),
        _ => {
            let fake = fake_server::start_fake_kurrent().await;
            (fake.url.clone(), Box::new(fake))
        }
    };
    let options = KurrentOptions {
        namespace: format!("test-{}-", Uuid::new_v4().simple()),
        ..KurrentOptions::default()
    };
    let store = KurrentStore::connect_with(&url, options)
        .await
        .expect("connect to KurrentDB");
    Harness {
        store: Arc::new(store),
        _guard: guard,
    }
}

#[cfg(feature = "eventstore")]
conformance!(kurrent_backend, super::kurrent);

/// Tests of what only the file backend has: a disk.
mod file_only {
    use super::*;

    /// Without zeros written ahead: these tests find records from the file's end.
    fn unpadded() -> FileStoreOptions {
        FileStoreOptions {
            preallocate_bytes: 0,
            ..FileStoreOptions::default()
        }
    }

    fn open(dir: &Path) -> (FileStore, OpenReport) {
        FileStore::open_with(dir, unpadded()).expect("open")
    }

    fn segment(dir: &Path, n: u32) -> PathBuf {
        dir.join("log").join(format!("{n:08}.seg"))
    }

    async fn fill(store: &FileStore, n: u64) -> Vec<Vec<EventData>> {
        let mut appended = Vec::new();
        for i in 0..n {
            let batch = events(1 + i % 2);
            store
                .append(&format!("s{}", i % 3), ExpectedState::Any, batch.clone())
                .await
                .expect("append");
            appended.push(batch);
        }
        appended
    }

    #[tokio::test]
    async fn reopen_keeps_positions_revisions_and_ids() {
        let dir = tempfile::tempdir().expect("dir");
        let (store, report) = open(dir.path());
        assert_eq!(report.events, 0);
        let batch = events(2);
        let first = store
            .append("a", ExpectedState::NoStream, batch.clone())
            .await
            .expect("a");
        fill(&store, 10).await;
        let before = store.read_all(0, 1000).await.expect("all");
        store.close().await;
        assert!(matches!(
            store.append("a", ExpectedState::Any, events(1)).await,
            Err(StoreError::Closed)
        ));
        drop(store);

        let (store, report) = open(dir.path());
        assert_eq!(report.events, before.len() as u64);
        assert_eq!(report.truncated_bytes, 0);
        assert_eq!(store.next_position(), before.len() as u64);
        assert_eq!(store.read_all(0, 1000).await.expect("all"), before);
        let retry = store
            .append("a", ExpectedState::NoStream, batch)
            .await
            .expect("retry after reopen");
        assert_eq!(retry, first);
        assert_eq!(store.next_position(), before.len() as u64);
        let next = store
            .append("a", ExpectedState::Exact(1), events(1))
            .await
            .expect("continues");
        assert_eq!(next, result(2, before.len() as u64));
    }

    /// Writes 10 appends, the last one past the last checkpoint (as when the machine
    /// dies during its sync), breaks the end of the log with `damage`, reopens: the
    /// tail must be cut and reported, everything before intact, and appends work again.
    async fn torn_tail_case(damage: impl FnOnce(&Path, u64)) {
        let dir = tempfile::tempdir().expect("dir");
        let options = unpadded();
        let faults = options.faults.clone();
        let (store, _) = FileStore::open_with(dir.path(), options).expect("open");
        fill(&store, 9).await;
        faults.freeze_checkpoints();
        fill(&store, 1).await;
        let before = store.read_all(0, 1000).await.expect("all");
        drop(store);
        let seg = segment(dir.path(), 0);
        let len = std::fs::metadata(&seg).expect("meta").len();
        damage(&seg, len);
        let damaged_len = std::fs::metadata(&seg).expect("meta").len();

        let (store, report) = open(dir.path());
        assert!(report.truncated_bytes > 0, "tail reported: {report:?}");
        let after = store.read_all(0, 1000).await.expect("all");
        assert_eq!(report.events, after.len() as u64);
        assert_eq!(after[..], before[..after.len()], "intact prefix");
        assert!(
            after.len() + 2 >= before.len(),
            "at most the last record lost"
        );
        assert_eq!(
            std::fs::metadata(&seg).expect("meta").len(),
            damaged_len - report.truncated_bytes
        );
        let r = store
            .append("new", ExpectedState::NoStream, events(2))
            .await
            .expect("append after cut");
        assert_eq!(r.position, after.len() as u64 + 1);
        drop(store);
        let (_, report) = open(dir.path());
        assert_eq!(report.truncated_bytes, 0);
        assert_eq!(report.events, after.len() as u64 + 2);
    }

    fn append_bytes(path: &Path, bytes: &[u8]) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .expect("open seg");
        f.write_all(bytes).expect("write");
    }

    fn flip(path: &Path, offset: u64) {
        let mut bytes = std::fs::read(path).expect("read");
        bytes[offset as usize] ^= 0x40;
        std::fs::write(path, bytes).expect("write");
    }

    #[tokio::test]
    async fn torn_tail_half_a_length_prefix_is_cut() {
        torn_tail_case(|seg, _| append_bytes(seg, &[0x50, 0x00])).await;
    }

    #[tokio::test]
    async fn torn_tail_record_cut_in_the_middle_is_cut() {
        torn_tail_case(|seg, len| {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(seg)
                .expect("open");
            f.set_len(len - 20).expect("cut");
        })
        .await;
    }

    #[tokio::test]
    async fn torn_tail_flipped_byte_in_last_record_is_cut() {
        torn_tail_case(|seg, len| flip(seg, len - 3)).await;
    }

    #[tokio::test]
    async fn torn_tail_garbage_appended_is_cut() {
        torn_tail_case(|seg, _| append_bytes(seg, b"garbage after the last record\x00\x01")).await;
    }

    /// Where the records of a padded segment end: its last byte that is not zero
    /// (a record ends with its JSON data).
    fn records_end(path: &Path) -> u64 {
        let bytes = std::fs::read(path).expect("read");
        bytes.iter().rposition(|&b| b != 0).expect("records") as u64 + 1
    }

    /// Ten appends to a log with zeros written ahead (the default), closed: what it
    /// holds and its one segment.
    async fn padded_log(dir: &Path) -> (Vec<RecordedEvent>, PathBuf) {
        let (store, _) = FileStore::open(dir).expect("open");
        fill(&store, 10).await;
        let before = store.read_all(0, 1000).await.expect("all");
        drop(store);
        (before, segment(dir, 0))
    }

    #[tokio::test]
    async fn zeros_written_ahead_are_padding_not_a_torn_tail() {
        let dir = tempfile::tempdir().expect("dir");
        let (before, seg) = padded_log(dir.path()).await;
        let len = std::fs::metadata(&seg).expect("meta").len();
        let end = records_end(&seg);
        assert!(
            len >= end + (1 << 20),
            "zeros ahead: {len} bytes, records end at {end}"
        );

        let (store, report) = FileStore::open(dir.path()).expect("reopen");
        assert_eq!(report.truncated_bytes, 0, "{report:?}");
        assert_eq!(store.read_all(0, 1000).await.expect("all"), before);
        assert_eq!(
            std::fs::metadata(&seg).expect("meta").len(),
            len,
            "padding kept"
        );
        // The next records go where the last one ended, over the zeros.
        store
            .append("new", ExpectedState::NoStream, events(2))
            .await
            .expect("append");
        drop(store);
        assert!(records_end(&seg) > end);
        let (store, report) = FileStore::open(dir.path()).expect("reopen");
        assert_eq!(report.events, before.len() as u64 + 2);
        assert_eq!(report.truncated_bytes, 0);
        assert_eq!(store.read_stream("new", 0).await.expect("read").len(), 2);
    }

    #[tokio::test]
    async fn a_record_torn_inside_the_padding_is_cut() {
        let dir = tempfile::tempdir().expect("dir");
        let (before, seg) = padded_log(dir.path()).await;
        let end = records_end(&seg);
        // The first 30 bytes of a record (the first one, copied) written over the
        // zeros, as a crash in the middle of a write leaves them.
        let bytes = std::fs::read(&seg).expect("read");
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .expect("open");
        let first = SEGMENT_HEADER_LEN;
        std::os::unix::fs::FileExt::write_all_at(&f, &bytes[first..first + 30], end)
            .expect("write");
        drop(f);

        let (store, report) = FileStore::open(dir.path()).expect("reopen");
        assert!(report.truncated_bytes >= 30, "{report:?}");
        assert_eq!(
            std::fs::metadata(&seg).expect("meta").len(),
            end,
            "cut at the tear"
        );
        assert_eq!(store.read_all(0, 1000).await.expect("all"), before);
        store
            .append("new", ExpectedState::NoStream, events(1))
            .await
            .expect("append after the cut");
    }

    #[tokio::test]
    async fn flipped_byte_in_the_middle_is_corrupt_naming_the_file() {
        let dir = tempfile::tempdir().expect("dir");
        let (store, _) = open(dir.path());
        fill(&store, 10).await;
        drop(store);
        let seg = segment(dir.path(), 0);
        // Byte 60 of the first record is inside its payload.
        flip(&seg, SEGMENT_HEADER_LEN as u64 + 60);
        match FileStore::open(dir.path()) {
            Err(StoreError::Corrupt(msg)) => {
                assert!(msg.contains("00000000.seg"), "{msg}");
                assert!(
                    msg.contains(&format!("offset {SEGMENT_HEADER_LEN}")),
                    "{msg}"
                );
            }
            Err(e) => panic!("expected Corrupt, got {e:?}"),
            Ok(_) => panic!("expected Corrupt, opened"),
        }
    }

    #[tokio::test]
    async fn record_out_of_position_order_is_corrupt_even_at_the_tail() {
        let dir = tempfile::tempdir().expect("dir");
        let (store, _) = open(dir.path());
        store
            .append("a", ExpectedState::Any, events(1))
            .await
            .expect("first");
        let first_end = std::fs::metadata(segment(dir.path(), 0))
            .expect("meta")
            .len();
        fill(&store, 3).await;
        drop(store);
        // A valid record (checksum and all) replayed at the end: position 0 again.
        let seg = segment(dir.path(), 0);
        let bytes = std::fs::read(&seg).expect("read");
        append_bytes(&seg, &bytes[SEGMENT_HEADER_LEN..first_end as usize]);
        match FileStore::open(dir.path()) {
            Err(StoreError::Corrupt(msg)) => {
                assert!(msg.contains("00000000.seg"), "{msg}");
                assert!(msg.contains("position 0"), "{msg}");
            }
            other => panic!("expected Corrupt, got {:?}", other.map(|(_, r)| r)),
        }
    }

    #[tokio::test]
    async fn damaged_earlier_segment_is_corrupt_even_at_its_end() {
        let dir = tempfile::tempdir().expect("dir");
        let options = FileStoreOptions {
            segment_size: 512,
            ..unpadded()
        };
        let (store, _) = FileStore::open_with(dir.path(), options).expect("open");
        fill(&store, 20).await;
        drop(store);
        let seg = segment(dir.path(), 0);
        let len = std::fs::metadata(&seg).expect("meta").len();
        flip(&seg, len - 2);
        match FileStore::open(dir.path()) {
            Err(StoreError::Corrupt(msg)) => assert!(msg.contains("00000000.seg"), "{msg}"),
            other => panic!("expected Corrupt, got {:?}", other.map(|(_, r)| r)),
        }
    }

    #[tokio::test]
    async fn missing_segment_is_corrupt() {
        let dir = tempfile::tempdir().expect("dir");
        let options = FileStoreOptions {
            segment_size: 512,
            ..FileStoreOptions::default()
        };
        let (store, _) = FileStore::open_with(dir.path(), options).expect("open");
        fill(&store, 20).await;
        drop(store);
        std::fs::remove_file(segment(dir.path(), 1)).expect("rm");
        assert!(matches!(
            FileStore::open(dir.path()),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[tokio::test]
    async fn tiny_segments_roll_over_and_reopen() {
        let dir = tempfile::tempdir().expect("dir");
        let options = || FileStoreOptions {
            segment_size: 600,
            ..FileStoreOptions::default()
        };
        let (store, _) = FileStore::open_with(dir.path(), options()).expect("open");
        fill(&store, 40).await;
        let before = store.read_all(0, 1000).await.expect("all");
        let stream = store.read_stream("s1", 2).await.expect("stream");
        drop(store);
        let (store, report) = FileStore::open_with(dir.path(), options()).expect("reopen");
        assert!(report.segments > 5, "{report:?}");
        assert!(segment(dir.path(), report.segments as u32 - 1).exists());
        assert_eq!(report.events, before.len() as u64);
        assert_eq!(store.read_all(0, 1000).await.expect("all"), before);
        assert_eq!(store.read_stream("s1", 2).await.expect("stream"), stream);
        // Paging across segment boundaries.
        let page = store.read_all(5, 13).await.expect("page");
        assert_eq!(page[..], before[5..18]);
        store
            .append("s1", ExpectedState::Any, events(1))
            .await
            .expect("append after reopen");
    }

    #[tokio::test]
    async fn failed_sync_refuses_the_batch_and_the_store_recovers() {
        let dir = tempfile::tempdir().expect("dir");
        let options = unpadded();
        let faults = options.faults.clone();
        let (store, _) = FileStore::open_with(dir.path(), options).expect("open");
        let store = Arc::new(store);
        let kept = store
            .append("a", ExpectedState::NoStream, events(1))
            .await
            .expect("first");
        let len_before = std::fs::metadata(segment(dir.path(), 0))
            .expect("meta")
            .len();
        let mut live = store.live();

        faults.fail_next_syncs(1);
        let lost = events(2);
        match store
            .append("a", ExpectedState::Exact(0), lost.clone())
            .await
        {
            Err(StoreError::Io(e)) => assert!(e.to_string().contains("injected"), "{e}"),
            other => panic!("expected Io, got {other:?}"),
        }
        assert_eq!(store.next_position(), 1);
        assert_eq!(store.read_stream("a", 0).await.expect("read").len(), 1);
        assert!(live.try_recv().is_err(), "nothing broadcast");
        assert_eq!(
            std::fs::metadata(segment(dir.path(), 0))
                .expect("meta")
                .len(),
            len_before,
            "cut back"
        );

        // The same append succeeds once the disk is back, at the same place.
        let r = store
            .append("a", ExpectedState::Exact(0), lost)
            .await
            .expect("after recovery");
        assert_eq!(r, result(2, 2));
        assert_eq!(live.recv().await.expect("live").position, 1);
        drop(live);
        let acknowledged = store.read_all(0, 100).await.expect("all");
        let store = Arc::try_unwrap(store).ok().expect("sole owner");
        drop(store);
        let (store, report) = open(dir.path());
        assert_eq!(report.truncated_bytes, 0);
        assert_eq!(store.read_all(0, 100).await.expect("all"), acknowledged);
        assert_eq!(acknowledged[0].position, kept.position);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_are_batched() {
        let dir = tempfile::tempdir().expect("dir");
        let (store, _) = open(dir.path());
        let store = Arc::new(store);
        let tasks: Vec<_> = (0..64)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    for _ in 0..20 {
                        store
                            .append(&format!("w{w}"), ExpectedState::Any, events(1))
                            .await
                            .expect("append");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task");
        }
        let stats = store.stats();
        assert_eq!(stats.appends, 64 * 20);
        assert_eq!(stats.events, 64 * 20);
        assert!(
            stats.fsyncs < stats.appends / 2,
            "group commit should share fsyncs: {stats:?}"
        );
        assert_eq!(store.next_position(), 64 * 20);
    }

    #[tokio::test]
    async fn appends_queued_before_close_are_written() {
        let dir = tempfile::tempdir().expect("dir");
        let (store, _) = open(dir.path());
        let store = Arc::new(store);
        let pending: Vec<_> = (0..10)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .append(&format!("c{i}"), ExpectedState::Any, events(1))
                        .await
                })
            })
            .collect();
        // Let some of them reach the queue, then close while others are on the way.
        tokio::task::yield_now().await;
        store.close().await;
        let mut ok = 0;
        for p in pending {
            match p.await.expect("task") {
                Ok(_) => ok += 1,
                Err(StoreError::Closed) => {}
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(store.next_position(), ok);
        drop(store);
        let (_, report) = open(dir.path());
        assert_eq!(report.events, ok);
    }

    /// The writer writes the next batches while a sync runs (pipelining). A failing
    /// sync must then refuse every batch not yet durable, including those written
    /// behind it, and what was acknowledged must be exactly what the log holds.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failed_sync_under_load_refuses_everything_not_durable() {
        let dir = tempfile::tempdir().expect("dir");
        let options = FileStoreOptions::default();
        let faults = options.faults.clone();
        let (store, _) = FileStore::open_with(dir.path(), options).expect("open");
        let store = Arc::new(store);
        let tasks: Vec<_> = (0..64)
            .map(|w| {
                let store = store.clone();
                let faults = faults.clone();
                tokio::spawn(async move {
                    let mut acknowledged = Vec::new();
                    for i in 0..40 {
                        if w == 0 && i % 10 == 5 {
                            faults.fail_next_syncs(1);
                        }
                        let batch = events(2);
                        let ids: Vec<Uuid> = batch.iter().map(|e| e.id).collect();
                        match store
                            .append(&format!("w{w}"), ExpectedState::Any, batch)
                            .await
                        {
                            Ok(_) => acknowledged.extend(ids),
                            Err(StoreError::Io(_)) => {}
                            Err(e) => panic!("{e:?}"),
                        }
                    }
                    acknowledged
                })
            })
            .collect();
        let mut acknowledged = std::collections::HashSet::new();
        for t in tasks {
            acknowledged.extend(t.await.expect("task"));
        }
        assert!(acknowledged.len() < 64 * 40 * 2, "some syncs failed");
        assert_eq!(store.next_position(), acknowledged.len() as u64);
        let live: Vec<Uuid> = store
            .read_all(0, usize::MAX)
            .await
            .expect("all")
            .iter()
            .map(|e| e.id)
            .collect();
        store.close().await;
        drop(store);
        let (store, report) = open(dir.path());
        assert_eq!(report.truncated_bytes, 0);
        let on_disk = store.read_all(0, usize::MAX).await.expect("all");
        let ids: Vec<Uuid> = on_disk.iter().map(|e| e.id).collect();
        assert_eq!(ids, live, "the log reopens as it was read");
        assert_eq!(
            ids.iter()
                .copied()
                .collect::<std::collections::HashSet<_>>(),
            acknowledged,
            "exactly the acknowledged events are in the log"
        );
    }

    /// A retry that arrives while the original's batch is still being synced is
    /// answered only once that batch is durable: if the sync fails, the retry is not
    /// told the events are written.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retry_of_an_append_still_syncing_waits_for_its_fate() {
        for round in 0..20 {
            let dir = tempfile::tempdir().expect("dir");
            let options = FileStoreOptions::default();
            let faults = options.faults.clone();
            let (store, _) = FileStore::open_with(dir.path(), options).expect("open");
            let store = Arc::new(store);
            let batch = events(1);
            if round % 2 == 0 {
                faults.fail_next_syncs(1);
            }
            let attempts: Vec<_> = (0..4)
                .map(|_| {
                    let store = store.clone();
                    let batch = batch.clone();
                    tokio::spawn(async move { store.append("r", ExpectedState::Any, batch).await })
                })
                .collect();
            let mut ok = 0;
            for a in attempts {
                if a.await.expect("task").is_ok() {
                    ok += 1;
                }
            }
            store.close().await;
            drop(store);
            let (store, _) = open(dir.path());
            let held = store.read_all(0, 10).await.expect("all");
            if ok > 0 {
                assert_eq!(held.len(), 1, "round {round}: acknowledged once, held once");
                assert_eq!(held[0].id, batch[0].id);
            } else {
                assert!(
                    held.is_empty(),
                    "round {round}: nothing acknowledged, nothing held"
                );
            }
        }
    }

    /// Offsets where the records of a segment start, from its header on, and where
    /// the last one ends.
    fn record_starts(path: &Path) -> (Vec<u64>, u64) {
        let bytes = std::fs::read(path).expect("read");
        let mut at = SEGMENT_HEADER_LEN;
        let mut starts = Vec::new();
        while at + 8 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
            if len == 0 || at + 8 + len > bytes.len() {
                break;
            }
            starts.push(at as u64);
            at += 8 + len;
        }
        (starts, at as u64)
    }

    fn cut(path: &Path, len: u64) {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .expect("open");
        f.set_len(len).expect("cut");
    }

    /// Every file under `dir` with its bytes.
    fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).expect("dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                out.extend(snapshot(&path));
            } else {
                let bytes = std::fs::read(&path).expect("read");
                out.push((path, bytes));
            }
        }
        out.sort();
        out
    }

    fn expect_data_loss(opened: Result<(FileStore, OpenReport), StoreError>) -> String {
        match opened {
            Err(StoreError::DataLoss(msg)) => msg,
            Err(e) => panic!("expected DataLoss, got {e:?}"),
            Ok((_, report)) => panic!("expected DataLoss, opened: {report:?}"),
        }
    }

    /// Twenty appends, closed (the checkpoint covers them all), the segment then cut
    /// at `cut_at(record starts)`: the open must refuse, naming the file, the offset
    /// and what is missing, and change nothing; accepting the loss opens what is left
    /// and the open after that is clean.
    async fn cut_before_checkpoint_case(cut_at: impl FnOnce(&[u64]) -> (u64, u64)) {
        let dir = tempfile::tempdir().expect("dir");
        let (store, _) = open(dir.path());
        fill(&store, 20).await;
        let before = store.read_all(0, 1000).await.expect("all");
        store.close().await;
        drop(store);
        let seg = segment(dir.path(), 0);
        let (starts, end) = record_starts(&seg);
        assert_eq!(starts.len(), before.len());
        let (len, kept) = cut_at(&starts);
        cut(&seg, len);
        let damaged = snapshot(dir.path());

        let msg = expect_data_loss(FileStore::open_with(dir.path(), unpadded()));
        let boundary = starts[kept as usize];
        assert!(msg.contains("00000000.seg"), "{msg}");
        assert!(msg.contains(&format!("offset {boundary}")), "{msg}");
        assert!(msg.contains(&format!("{} bytes", end - boundary)), "{msg}");
        assert!(
            msg.contains(&format!("{} events", before.len() as u64 - kept)),
            "{msg}"
        );
        assert!(msg.contains("--accept-data-loss"), "{msg}");
        assert_eq!(
            snapshot(dir.path()),
            damaged,
            "a refused open changes nothing"
        );
        let msg = expect_data_loss(FileStore::open_read_only(dir.path(), None));
        assert!(msg.contains("00000000.seg"), "{msg}");

        let options = FileStoreOptions {
            accept_data_loss: true,
            ..unpadded()
        };
        let (store, report) = FileStore::open_with(dir.path(), options).expect("accepted");
        assert!(report.data_loss, "{report:?}");
        assert_eq!(report.lost_bytes, end - boundary);
        assert_eq!(report.lost_events, before.len() as u64 - kept);
        assert_eq!(report.events, kept);
        assert_eq!(
            store.read_all(0, 1000).await.expect("all")[..],
            before[..kept as usize]
        );
        store
            .append("after", ExpectedState::NoStream, events(1))
            .await
            .expect("appends go on");
        drop(store);
        let (_, report) = open(dir.path());
        assert!(!report.data_loss, "accepted once: {report:?}");
        assert_eq!(report.events, kept + 1);
    }

    #[tokio::test]
    async fn a_segment_cut_on_a_record_boundary_before_its_checkpoint_is_lost_data() {
        // Cut at the start of the 8th record: records 8.. are gone, without a trace
        // of a torn write.
        cut_before_checkpoint_case(|starts| (starts[7], 7)).await;
    }

    #[tokio::test]
    async fn a_segment_cut_mid_record_before_its_checkpoint_is_lost_data_not_a_torn_tail() {
        cut_before_checkpoint_case(|starts| (starts[12] + 10, 12)).await;
    }

    #[tokio::test]
    async fn an_idle_log_checkpoints_its_last_append_without_a_close() {
        let dir = tempfile::tempdir().expect("dir");
        let (store, _) = open(dir.path());
        fill(&store, 5).await;
        let seg = segment(dir.path(), 0);
        // The open store is not closed: only the writer's idle checkpoint can make a
        // cut of the last record detectable. A copy is cut and opened read-only.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let copy = tempfile::tempdir().expect("copy");
            std::fs::create_dir(copy.path().join("log")).expect("log dir");
            let copied = copy.path().join("log").join("00000000.seg");
            std::fs::copy(&seg, &copied).expect("copy");
            let (starts, _) = record_starts(&copied);
            cut(&copied, starts[starts.len() - 1] + 3);
            match FileStore::open_read_only(copy.path(), None) {
                Err(StoreError::DataLoss(_)) => break,
                Err(e) => panic!("{e:?}"),
                Ok((_, report)) => assert!(report.truncated_bytes > 0, "{report:?}"),
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the checkpoint never covered the last append"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        drop(store);
    }

    #[tokio::test]
    async fn a_deleted_last_segment_is_lost_data() {
        let dir = tempfile::tempdir().expect("dir");
        let options = || FileStoreOptions {
            segment_size: 600,
            ..unpadded()
        };
        let (store, _) = FileStore::open_with(dir.path(), options()).expect("open");
        fill(&store, 40).await;
        drop(store);
        let (_, report) = FileStore::open_with(dir.path(), options()).expect("reopen");
        let last = report.segments as u32 - 1;
        assert!(last > 2, "{report:?}");
        std::fs::remove_file(segment(dir.path(), last)).expect("rm");
        let msg = expect_data_loss(FileStore::open_with(dir.path(), options()));
        assert!(msg.contains(&format!("{last:08}.seg is missing")), "{msg}");
        let (_, report) = FileStore::open_with(
            dir.path(),
            FileStoreOptions {
                accept_data_loss: true,
                ..options()
            },
        )
        .expect("accepted");
        assert!(report.data_loss, "{report:?}");
        let (_, report) = FileStore::open_with(dir.path(), options()).expect("clean");
        assert!(!report.data_loss, "{report:?}");
    }

    #[tokio::test]
    async fn a_read_only_open_reports_a_torn_tail_and_writes_nothing() {
        let dir = tempfile::tempdir().expect("dir");
        let (before, seg) = padded_log(dir.path()).await;
        let end = records_end(&seg);
        let bytes = std::fs::read(&seg).expect("read");
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .expect("open");
        let first = SEGMENT_HEADER_LEN;
        std::os::unix::fs::FileExt::write_all_at(&f, &bytes[first..first + 30], end)
            .expect("write");
        drop(f);
        std::fs::remove_file(dir.path().join("LOCK")).expect("no lock file");
        let torn = snapshot(dir.path());

        let (store, report) = FileStore::open_read_only(dir.path(), None).expect("read only");
        assert!(report.truncated_bytes >= 30, "{report:?}");
        assert_eq!(store.read_all(0, 1000).await.expect("all"), before);
        assert!(matches!(
            store.append("a", ExpectedState::Any, events(1)).await,
            Err(StoreError::Closed)
        ));
        store.close().await;
        drop(store);
        assert_eq!(
            snapshot(dir.path()),
            torn,
            "nothing written, cut or created"
        );

        // An empty directory stays empty too.
        let empty = tempfile::tempdir().expect("empty");
        std::fs::create_dir(empty.path().join("log")).expect("log dir");
        let (_, report) = FileStore::open_read_only(empty.path(), None).expect("empty");
        assert_eq!(report.events, 0);
        assert_eq!(snapshot(empty.path()), Vec::new());

        // The server's own open cuts the tail.
        let (_, report) = FileStore::open(dir.path()).expect("open");
        assert!(report.truncated_bytes >= 30, "{report:?}");
    }

    #[tokio::test]
    async fn a_second_open_of_a_directory_in_use_is_refused_naming_the_pid() {
        let dir = tempfile::tempdir().expect("dir");
        let (store, _) = open(dir.path());
        let pid = format!("pid {}", std::process::id());
        for second in [
            FileStore::open(dir.path()),
            FileStore::open_read_only(dir.path(), None),
        ] {
            match second {
                Err(StoreError::Locked(msg)) => assert!(msg.contains(&pid), "{msg}"),
                Err(e) => panic!("expected Locked, got {e:?}"),
                Ok(_) => panic!("expected Locked, opened"),
            }
        }
        store.close().await;
        let (_, report) = open(dir.path());
        assert_eq!(report.events, 0);
    }

    /// A segment of the first format (24-byte header, no checkpoint) with these
    /// records copied from a segment of today's.
    fn version_1_segment(records: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(b"RLGYMLOG");
        bytes.extend_from_slice(&1u32.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&0u64.to_le_bytes());
        bytes.extend_from_slice(records);
        bytes
    }

    #[tokio::test]
    async fn an_old_log_without_checkpoints_opens_cuts_its_torn_tail_and_goes_on_in_a_new_segment()
    {
        let dir = tempfile::tempdir().expect("dir");
        let (store, _) = open(dir.path());
        fill(&store, 10).await;
        let before = store.read_all(0, 1000).await.expect("all");
        drop(store);
        let seg = segment(dir.path(), 0);
        let (_, end) = record_starts(&seg);
        let bytes = std::fs::read(&seg).expect("read");
        let old = version_1_segment(&bytes[SEGMENT_HEADER_LEN..end as usize]);
        std::fs::write(&seg, &old).expect("write v1");

        let (store, report) = open(dir.path());
        assert_eq!(report.truncated_bytes, 0);
        assert_eq!(store.read_all(0, 1000).await.expect("all"), before);
        store
            .append("new", ExpectedState::NoStream, events(1))
            .await
            .expect("append");
        drop(store);
        assert_eq!(
            std::fs::read(&seg).expect("read"),
            old,
            "the old segment is kept"
        );
        assert!(
            segment(dir.path(), 1).exists(),
            "a new segment with checkpoints"
        );
        let (_, report) = open(dir.path());
        assert_eq!(report.events, before.len() as u64 + 1);

        // Without a checkpoint a cut end of an old log is a torn tail, as it always was.
        let dir = tempfile::tempdir().expect("dir");
        std::fs::create_dir(dir.path().join("log")).expect("log dir");
        std::fs::write(segment(dir.path(), 0), &old[..old.len() - 5]).expect("write v1");
        let (store, report) = open(dir.path());
        assert!(report.truncated_bytes > 0, "{report:?}");
        assert_eq!(report.events, before.len() as u64 - 1);
        drop(store);
    }
}
