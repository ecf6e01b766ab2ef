//! Event store benchmarks: durable appends per second on the file backend with 1, 8
//! and 64 concurrent writers (group commit is what makes the many-writer case fast),
//! and replay speed: `read_all` of a 200k-event log, and opening (recovering) it.
//!
//! Run: `cargo bench --bench store`. Kept short (10 samples, a few seconds each) for
//! small machines; see `benches/README.md` for figures.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
#[path = "support/writers.rs"]
mod writers;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rl_gym::store::file::{FileStore, FileStoreOptions};
use rl_gym::store::{EventData, EventStore, ExpectedState};
use uuid::Uuid;
use writers::{append_concurrently, runtime};

/// Appends per measured iteration, shared among the writers.
const APPENDS_PER_ITER: u64 = 512;
const REPLAY_EVENTS: u64 = 200_000;

fn event() -> EventData {
    EventData {
        id: Uuid::new_v4(),
        event_type: "ToolCalled".into(),
        schema_version: 1,
        time: Utc::now(),
        // About 200 bytes, like a small domain event.
        data: br#"{"rollout_id":"0192f2a4-7c1e-7b3a-9d2e-4f5a6b7c8d9e","step":17,"tool":"email.send","arguments":{"to":"dana@example.com","subject":"Quarterly numbers"},"status":"ok","ms":42}"#.to_vec(),
    }
}

/// Default options, but `BENCH_GATHER_US` overrides the writer's gather time.
fn options() -> FileStoreOptions {
    let mut options = FileStoreOptions::default();
    if let Some(us) = std::env::var("BENCH_GATHER_US")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        options.gather_time = Duration::from_micros(us);
    }
    options
}

fn appends(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("store_append_durable");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(4));
    group.warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(APPENDS_PER_ITER));
    for writers in [1u64, 8, 64] {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, _) = FileStore::open_with(dir.path(), options()).expect("open");
        let store = Arc::new(store);
        let dyn_store: Arc<dyn EventStore> = store.clone();
        let counter = Arc::new(AtomicU64::new(0));
        group.bench_with_input(BenchmarkId::new("writers", writers), &writers, |b, &w| {
            append_concurrently(b, &rt, &dyn_store, &counter, (w, APPENDS_PER_ITER), event);
        });
        let stats = store.stats();
        if stats.appends == 0 {
            // Filtered out on the command line.
            continue;
        }
        // Criterion prints to the terminal too; this line is the batching evidence.
        eprintln!(
            "  writers={writers}: {} appends in {} fsyncs ({:.1} appends per fsync)",
            stats.appends,
            stats.fsyncs,
            stats.appends as f64 / stats.fsyncs.max(1) as f64
        );
    }
    group.finish();
}

fn replay(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    rt.block_on(async {
        let (store, _) = FileStore::open(dir.path()).expect("open");
        let store = Arc::new(store);
        let tasks: Vec<_> = (0..8)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in 0..REPLAY_EVENTS / 8 / 100 {
                        let batch = (0..100).map(|_| event()).collect();
                        store
                            .append(&format!("rollout-{w}-{i}"), ExpectedState::Any, batch)
                            .await
                            .expect("fill");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("filler");
        }
        store.close().await;
    });

    let (store, report) = FileStore::open(dir.path()).expect("open");
    assert_eq!(report.events, REPLAY_EVENTS);
    let mut group = c.benchmark_group("store_replay");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(4));
    group.warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(REPLAY_EVENTS));
    group.bench_function("read_all_200k", |b| {
        b.to_async(&rt).iter(|| async {
            let events = store.read_all(0, usize::MAX).await.expect("read_all");
            assert_eq!(events.len() as u64, REPLAY_EVENTS);
            events
        });
    });
    drop(store);
    group.bench_function("open_200k", |b| {
        b.iter(|| {
            let (store, report) = FileStore::open(dir.path()).expect("open");
            assert_eq!(report.events, REPLAY_EVENTS);
            store
        });
    });
    group.finish();
}

criterion_group!(benches, appends, replay);
criterion_main!(benches);
