//! Projection benchmarks: folding realistic events into the views (decode + apply),
//! and rebuilding every view from a log (what start-up and `rl-gym replay` do), from
//! memory and from the embedded file log (open + rebuild). The events are oracle
//! rollouts of the bundled `hr` tasks (`rl_gym::load::synth`): real prompts, real
//! tool observations, real verdicts.
//!
//! Run: `cargo bench --bench projections`. See `benches/README.md` for figures.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rl_gym::config::Settings;
use rl_gym::load::synth::Synth;
use rl_gym::projections::{decode_fact, rebuild, Views};
use rl_gym::scenarios::Catalog;
use rl_gym::store::file::FileStore;
use rl_gym::store::memory::MemoryStore;
use rl_gym::store::{EventStore, ExpectedState, RecordedEvent};

const RUNS: usize = 100;
const ROLLOUTS_PER_RUN: usize = 100;

fn synth() -> Synth {
    let catalog = Catalog::load(&Settings::defaults().resolved_scenarios_dir()).expect("catalog");
    Synth::new(catalog.get("hr").expect("hr scenario")).expect("synth")
}

/// Fills `store` with RUNS runs of oracle rollouts.
async fn fill(store: &dyn EventStore) {
    let synth = synth();
    for r in 0..RUNS {
        let run = synth.run(
            ROLLOUTS_PER_RUN,
            Utc::now() + chrono::Duration::seconds(r as i64),
        );
        let appends = run.appends();
        let mut rest = appends.into_iter();
        let (stream, launch) = rest.next().expect("launch");
        store
            .append(&stream, ExpectedState::NoStream, launch)
            .await
            .expect("launch");
        let pending: Vec<_> = rest
            .map(|(stream, events)| async move {
                store
                    .append(&stream, ExpectedState::NoStream, events)
                    .await
                    .expect("rollout")
            })
            .collect();
        futures::future::join_all(pending).await;
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn projections(c: &mut Criterion) {
    let rt = runtime();
    let memory = Arc::new(MemoryStore::new());
    rt.block_on(fill(memory.as_ref()));
    let events: Vec<RecordedEvent> = rt.block_on(memory.read_all(0, usize::MAX)).expect("read");
    let n = events.len() as u64;
    let bytes: usize = events.iter().map(|e| e.data.len()).sum();
    eprintln!(
        "  {n} events of {RUNS} runs x {ROLLOUTS_PER_RUN} oracle rollouts, {:.0} bytes of data per event",
        bytes as f64 / n as f64
    );

    let mut group = c.benchmark_group("projections");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    group.warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(n));
    group.bench_function("decode_apply", |b| {
        b.iter(|| {
            let mut views = Views::default();
            for e in &events {
                views.apply(e.position, &decode_fact(e).expect("decode"));
            }
            views
        })
    });
    group.bench_function("rebuild_from_memory", |b| {
        b.to_async(&rt)
            .iter(|| async { rebuild(memory.as_ref()).await.expect("rebuild") })
    });

    let dir = tempfile::tempdir().expect("dir");
    rt.block_on(async {
        let (store, _) = FileStore::open(dir.path()).expect("open");
        fill(&store).await;
        store.close().await;
    });
    group.bench_function("replay_file_open_and_rebuild", |b| {
        b.to_async(&rt).iter(|| async {
            let (store, report) = FileStore::open(dir.path()).expect("open");
            assert_eq!(report.events, n);
            let views = rebuild(&store).await.expect("rebuild");
            store.close().await;
            views
        })
    });
    group.finish();
}

criterion_group!(benches, projections);
criterion_main!(benches);
