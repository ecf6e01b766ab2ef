//! Shared by the store benches: their runtime, and concurrent writers, each appending
//! one event at a time to a new stream and waiting for every acknowledgement.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use criterion::Bencher;
use rl_gym::store::{EventData, EventStore, ExpectedState};

/// Measures `appends` one-event appends per iteration, shared among `writers` tasks.
/// `counter` numbers the streams across cases, so a store can serve several.
pub fn append_concurrently(
    b: &mut Bencher<'_>,
    rt: &tokio::runtime::Runtime,
    store: &Arc<dyn EventStore>,
    counter: &Arc<AtomicU64>,
    (writers, appends): (u64, u64),
    event: fn() -> EventData,
) {
    b.to_async(rt).iter_custom(|iters| {
        let store = store.clone();
        let counter = counter.clone();
        async move {
            let start = Instant::now();
            for _ in 0..iters {
                let tasks: Vec<_> = (0..writers)
                    .map(|_| {
                        let store = store.clone();
                        let counter = counter.clone();
                        tokio::spawn(async move {
                            for _ in 0..appends / writers {
                                let n = counter.fetch_add(1, Ordering::Relaxed);
                                store
                                    .append(
                                        &format!("rollout-{n}"),
                                        ExpectedState::NoStream,
                                        vec![event()],
                                    )
                                    .await
                                    .expect("append");
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.expect("writer");
                }
            }
            start.elapsed()
        }
    });
}

/// The benches' runtime: two workers, or `BENCH_WORKERS`.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(
            std::env::var("BENCH_WORKERS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(2),
        )
        .enable_all()
        .build()
        .expect("tokio runtime")
}
