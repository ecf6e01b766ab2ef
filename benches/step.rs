//! One step of the loop without the model: what rl-gym adds around a model call.
//!
//! - `step/tool_step`: the oracle's reply recorded (`ModelCalled`), its tool call run
//!   against the rollout's environment and recorded (`ToolCalled`): events encoded,
//!   appended (in-memory store, so no fsync), folded into the rollout's state and
//!   decoded and applied to the views, as the step loop and the projection do.
//! - `step/environment_only`: just the tool call against the environment.
//! - `environment_step/hosted`: an outside agent's `POST …/step` minus HTTP: the
//!   hosted environment's lock, the call, the JSON answer.
//!
//! Run: `cargo bench --bench step`. See `benches/README.md` for figures.

use std::time::Duration;

use chrono::Utc;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use parking_lot::Mutex;
use rl_gym::config::Settings;
use rl_gym::domain::events::Event;
use rl_gym::domain::ids::{rollout_stream, run_stream};
use rl_gym::domain::rollout::RolloutState;
use rl_gym::journal;
use rl_gym::load::synth::Synth;
use rl_gym::projections::{decode_fact, Views};
use rl_gym::scenarios::Catalog;
use rl_gym::store::memory::MemoryStore;
use rl_gym::store::EventStore;
use rl_gym::tools::{replay, Environment};
use serde_json::json;

const TASK: &str = "hr__101_approve_leave_request";

struct Rollout {
    store: MemoryStore,
    state: RolloutState,
    views: Views,
    env: Environment,
}

fn step(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let catalog = Catalog::load(&Settings::defaults().resolved_scenarios_dir()).expect("catalog");
    let scenario = catalog.get("hr").expect("hr");
    let task = scenario.task(TASK).expect("task");
    let synth = Synth::new(scenario).expect("synth");
    // The first rollout of a run is of the first task (hr__101).
    let run = synth.run(1, Utc::now());
    let (rollout_id, events) = run.rollouts[0].clone();
    let (started, model_called, tool_called) = (&events[0], &events[1], &events[2]);
    let Event::ToolCalled(call) = tool_called else {
        panic!("the oracle's second event is a tool call")
    };
    let stream = rollout_stream(&rollout_id);

    let fresh = || {
        rt.block_on(async {
            let store = MemoryStore::new();
            let mut views = Views::default();
            let launch = Event::RunLaunched(Box::new(run.launch.clone()));
            journal::append(&store, &run_stream(&run.launch.run_id), None, &[launch])
                .await
                .expect("launch");
            let mut state = RolloutState::default();
            let r = journal::append(&store, &stream, None, std::slice::from_ref(started))
                .await
                .expect("start");
            state.evolve(started, r.next_expected_revision);
            for e in store.read_all(0, 10).await.expect("read") {
                views.apply(e.position, &decode_fact(&e).expect("decode"));
            }
            Rollout {
                store,
                state,
                views,
                env: scenario.environment(task, 0).expect("env"),
            }
        })
    };

    let mut group = c.benchmark_group("step");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(4));
    group.warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(1));
    group.bench_function("tool_step", |b| {
        b.iter_batched(
            fresh,
            |mut r| {
                rt.block_on(async {
                    for event in [model_called.clone(), tool_called.clone()] {
                        let event = match event {
                            Event::ToolCalled(mut called) => {
                                let outcome = replay::execute(
                                    &mut r.env,
                                    &called.tool_name,
                                    &called.arguments,
                                );
                                called.observation = outcome.observation;
                                called.is_error = outcome.is_error;
                                Event::ToolCalled(called)
                            }
                            other => other,
                        };
                        let result = journal::append(
                            &r.store,
                            &stream,
                            r.state.revision,
                            std::slice::from_ref(&event),
                        )
                        .await
                        .expect("append");
                        r.state.evolve(&event, result.next_expected_revision);
                        let recorded = r.store.read_all(result.position, 1).await.expect("read");
                        r.views
                            .apply(result.position, &decode_fact(&recorded[0]).expect("decode"));
                    }
                    r
                })
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("environment_only", |b| {
        b.iter_batched(
            || scenario.environment(task, 0).expect("env"),
            |mut env| replay::execute(&mut env, &call.tool_name, &call.arguments),
            BatchSize::SmallInput,
        )
    });
    group.finish();

    let mut group = c.benchmark_group("environment_step");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(4));
    group.warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(1));
    let hosted = Mutex::new(scenario.environment(task, 0).expect("env"));
    let parameters: serde_json::Value = serde_json::from_str(&call.arguments).expect("arguments");
    let server = call.server.clone().expect("server");
    group.bench_function("hosted", |b| {
        b.iter(|| {
            let observation = hosted
                .lock()
                .step(&server, &call.tool_name, &parameters)
                .expect("server");
            serde_json::to_vec(&json!({
                "observation": observation.observation,
                "reward": observation.reward,
                "done": observation.done,
            }))
            .expect("json")
        })
    });
    group.finish();
}

criterion_group!(benches, step);
criterion_main!(benches);
