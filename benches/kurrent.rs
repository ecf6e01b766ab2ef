//! The KurrentDB backend (`--features eventstore`) through the real `kurrentdb` client:
//! appends with 1, 8 and 64 concurrent writers, one lease renewal (an append with an
//! expected revision, as the lease keeper makes every third of `lease_secs` per run),
//! and replay (`read_all`, and connecting, which numbers every event of `$all`).
//!
//! Against the in-process fake node of `tests/kurrent` by default, which keeps events
//! in memory and shares this process's two cores with the client: the figures measure
//! the client and our backend over gRPC on loopback, not a real node's disk. With
//! `KURRENTDB_URL` set they are taken against that node instead.
//!
//! Run: `cargo bench --features eventstore --bench kurrent`.

#[path = "../tests/kurrent/fake_server.rs"]
mod fake_server;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
#[path = "support/writers.rs"]
mod writers;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rl_gym::store::kurrent::{KurrentOptions, KurrentStore};
use rl_gym::store::{EventData, EventStore, ExpectedState};
use uuid::Uuid;
use writers::{append_concurrently, runtime};

const APPENDS_PER_ITER: u64 = 256;
const REPLAY_EVENTS: u64 = 20_000;

/// A lease renewal's size of payload (~150 bytes).
fn renewal() -> EventData {
    EventData {
        id: Uuid::new_v4(),
        event_type: "RunLeaseRenewed".into(),
        schema_version: 1,
        time: Utc::now(),
        data: br#"{"run_id":"run_0192f2a47c1e7b3a9d2e4f5a6b7c8d9e","node_id":"node-a-4242","term":3,"expires_at":"2026-11-23T17:00:10Z","renewed_at":"2026-11-23T17:00:00Z"}"#.to_vec(),
    }
}

/// The node to measure against: `KURRENTDB_URL`, else a fake one kept alive with the
/// returned guard.
fn node(rt: &tokio::runtime::Runtime) -> (String, Option<fake_server::FakeKurrent>) {
    match std::env::var("KURRENTDB_URL") {
        Ok(url) if !url.is_empty() => (url, None),
        _ => {
            let fake = rt.block_on(fake_server::start_fake_kurrent());
            (fake.url.clone(), Some(fake))
        }
    }
}

/// A store in a namespace of its own, so runs never see each other's streams.
async fn connect(url: &str, namespace: &str) -> KurrentStore {
    let options = KurrentOptions {
        namespace: namespace.to_string(),
        ..KurrentOptions::default()
    };
    KurrentStore::connect_with(url, options)
        .await
        .expect("connect to KurrentDB")
}

fn appends(c: &mut Criterion) {
    let rt = runtime();
    let (url, _fake) = node(&rt);
    let namespace = format!("bench-{}-", Uuid::new_v4().simple());
    let store: Arc<dyn EventStore> = Arc::new(rt.block_on(connect(&url, &namespace)));
    let counter = Arc::new(AtomicU64::new(0));
    let mut group = c.benchmark_group("kurrent_append");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(4));
    group.warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(APPENDS_PER_ITER));
    for writers in [1u64, 8, 64] {
        group.bench_with_input(BenchmarkId::new("writers", writers), &writers, |b, &w| {
            append_concurrently(b, &rt, &store, &counter, (w, APPENDS_PER_ITER), renewal);
        });
    }
    group.finish();

    // A renewal: one event appended to the lease stream at its expected revision.
    let mut group = c.benchmark_group("kurrent_lease");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    let revision = AtomicU64::new(0);
    rt.block_on(store.append("lease-bench", ExpectedState::NoStream, vec![renewal()]))
        .expect("first lease event");
    group.bench_function("renewal", |b| {
        b.to_async(&rt).iter(|| async {
            let expected = revision.fetch_add(1, Ordering::Relaxed);
            store
                .append(
                    "lease-bench",
                    ExpectedState::Exact(expected),
                    vec![renewal()],
                )
                .await
                .expect("renewal")
        });
    });
    group.finish();
}

fn replay(c: &mut Criterion) {
    let rt = runtime();
    let (url, _fake) = node(&rt);
    let namespace = format!("bench-{}-", Uuid::new_v4().simple());
    let store = Arc::new(rt.block_on(connect(&url, &namespace)));
    rt.block_on(async {
        for i in 0..REPLAY_EVENTS / 100 {
            let batch = (0..100).map(|_| renewal()).collect();
            store
                .append(&format!("rollout-{i}"), ExpectedState::NoStream, batch)
                .await
                .expect("fill");
        }
    });
    let mut group = c.benchmark_group("kurrent_replay");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(REPLAY_EVENTS));
    group.bench_function("read_all_20k", |b| {
        b.to_async(&rt).iter(|| async {
            let events = store.read_all(0, usize::MAX).await.expect("read_all");
            assert_eq!(events.len() as u64, REPLAY_EVENTS);
            events
        });
    });
    group.bench_function("connect_20k", |b| {
        b.to_async(&rt).iter(|| async {
            let store = connect(&url, &namespace).await;
            assert_eq!(store.next_position(), REPLAY_EVENTS);
            store
        });
    });
    group.finish();
}

criterion_group!(benches, appends, replay);
criterion_main!(benches);
