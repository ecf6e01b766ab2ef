//! The actors driven with planned failures: a model that panics, one that fails, one
//! that stalls until cancelled, and a log cut off mid-rollout that must resume
//! without redoing a recorded step.
//!
//! Over 600 lines: the planned-failure tests share their failing models and their log.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use tokio::sync::Semaphore;

use super::step_loop::{AgentFactory, DefaultAgents};
use super::*;
use crate::config::secrets::RunKeys;
use crate::domain::events::{Event, ModelSettings, RunLaunched, ScheduledRollout};
use crate::domain::ids::rollout_stream;
use crate::domain::rollout::RolloutStatus;
use crate::domain::secret::ApiKey;
use crate::llm::{ModelClient, ModelError, ModelReply, ModelRequest};
use crate::scenarios::Task;
use crate::store::memory::MemoryStore;
use crate::store::{EventData, ExpectedState};

#[derive(Clone, Copy)]
enum Plan {
    Panic,
    Fail,
    Stall,
}

struct Planned(Plan);

#[async_trait]
impl ModelClient for Planned {
    async fn complete(&self, _request: ModelRequest<'_>) -> Result<ModelReply, ModelError> {
        match self.0 {
            Plan::Panic => panic!("planned panic"),
            Plan::Fail => Err(ModelError::Provider {
                status: 400,
                message: "planned refusal".into(),
            }),
            Plan::Stall => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Err(ModelError::Unavailable("unreachable".into()))
            }
        }
    }
}

impl AgentFactory for Planned {
    fn agent(
        &self,
        _: &ModelSettings,
        _: &Task,
        _: Option<ApiKey>,
    ) -> Result<Box<dyn ModelClient>, String> {
        Ok(Box::new(Planned(self.0)))
    }
}

/// The real agents, counting the model calls they answer.
struct Counting {
    inner: DefaultAgents,
    calls: Arc<AtomicUsize>,
}

struct CountingClient {
    inner: Box<dyn ModelClient>,
    calls: Arc<AtomicUsize>,
}

#[async_trait]
impl ModelClient for CountingClient {
    async fn complete(&self, request: ModelRequest<'_>) -> Result<ModelReply, ModelError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.complete(request).await
    }
}

impl AgentFactory for Counting {
    fn agent(
        &self,
        model: &ModelSettings,
        task: &Task,
        key: Option<ApiKey>,
    ) -> Result<Box<dyn ModelClient>, String> {
        Ok(Box::new(CountingClient {
            inner: self.inner.agent(model, task, key)?,
            calls: self.calls.clone(),
        }))
    }
}

fn catalog() -> Arc<Catalog> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/scenarios");
    Arc::new(Catalog::load(&dir).expect("bundled scenarios load"))
}

fn oracle() -> Arc<dyn AgentFactory> {
    Arc::new(DefaultAgents {
        http: reqwest::Client::new(),
        limits: crate::llm::ProviderLimits::unlimited(),
        judge: None,
    })
}

fn deps(store: Arc<dyn EventStore>, agents: Arc<dyn AgentFactory>) -> Deps {
    Deps {
        store,
        catalog: catalog(),
        metrics: Metrics::new(),
        secrets: SecretStore::in_memory(),
        global: Arc::new(Semaphore::new(16)),
        pending: super::run::PendingRollouts::new(
            usize::MAX,
            prometheus::IntGauge::new("p", "p").unwrap(),
        ),
        agents,
        http: reqwest::Client::new(),
        tool_timeout_secs: 30,
        self_urls: Default::default(),
        self_token: None,
        redactor: Default::default(),
        model_timeout_secs: 30,
        prices: Default::default(),
        leases: None,
        contents: Default::default(),
        breakpoints: Default::default(),
    }
}

fn gym(store: Arc<dyn EventStore>, agents: Arc<dyn AgentFactory>) -> Gym {
    Gym::start(deps(store, agents))
}

/// The oracle behind a wrapper that does not say it is free to ask again: its steps
/// wait for the log as a provider's do. `calls` counts its answers.
fn paid_oracle(calls: Arc<AtomicUsize>) -> Arc<dyn AgentFactory> {
    Arc::new(Counting {
        inner: DefaultAgents {
            http: reqwest::Client::new(),
            limits: crate::llm::ProviderLimits::unlimited(),
            judge: None,
        },
        calls,
    })
}

/// A memory store that keeps the event types of every append to a rollout's stream,
/// refuses those from the `fail_from`-th on (counting from 0), and takes `delay` over
/// each (a disk's sync).
struct Appends {
    inner: MemoryStore,
    seen: parking_lot::Mutex<Vec<Vec<String>>>,
    fail_from: usize,
    delay: Duration,
}

impl Appends {
    fn new(fail_from: usize) -> Arc<Appends> {
        Self::slow(fail_from, Duration::ZERO)
    }

    fn slow(fail_from: usize, delay: Duration) -> Arc<Appends> {
        Arc::new(Appends {
            inner: MemoryStore::new(),
            seen: Default::default(),
            fail_from,
            delay,
        })
    }
}

#[async_trait]
impl EventStore for Appends {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedState,
        events: Vec<EventData>,
    ) -> Result<crate::store::AppendResult, crate::store::StoreError> {
        if stream.starts_with("rollout-") {
            tokio::time::sleep(self.delay).await;
            let mut seen = self.seen.lock();
            if seen.len() >= self.fail_from {
                return Err(crate::store::StoreError::Io(std::io::Error::other(
                    "planned: the disk is full",
                )));
            }
            seen.push(events.iter().map(|e| e.event_type.clone()).collect());
        }
        self.inner.append(stream, expected, events).await
    }

    async fn read_stream(
        &self,
        stream: &str,
        from_revision: u64,
    ) -> Result<Vec<crate::store::RecordedEvent>, crate::store::StoreError> {
        self.inner.read_stream(stream, from_revision).await
    }

    async fn read_all(
        &self,
        from: u64,
        max: usize,
    ) -> Result<Vec<crate::store::RecordedEvent>, crate::store::StoreError> {
        self.inner.read_all(from, max).await
    }

    fn next_position(&self) -> u64 {
        self.inner.next_position()
    }

    fn live(&self) -> tokio::sync::broadcast::Receiver<Arc<crate::store::RecordedEvent>> {
        self.inner.live()
    }
}

fn job(run: RunLaunched) -> step_loop::RolloutJob {
    step_loop::RolloutJob {
        rollout: run.rollouts[0].clone(),
        policy: run::RunPolicy::new(&run, &Default::default()),
        run: Arc::new(run),
        cancel: Default::default(),
        budget: RunBudget::unlimited(),
    }
}

/// Drives run `run_id`'s one oracle rollout to completion on `store` and checks that
/// every event went to the log once, the start alone and first; the appends' event
/// types and the number of model replies.
async fn appends_of_a_completed_rollout(
    store: Arc<Appends>,
    agents: Arc<dyn AgentFactory>,
    run_id: &str,
) -> (Vec<Vec<String>>, usize) {
    let status = step_loop::drive(
        Arc::new(deps(store.clone(), agents)),
        job(run(run_id, "oracle", 1)),
    )
    .await
    .unwrap()
    .status;
    assert_eq!(status, RolloutStatus::Completed);
    // Everything is in the log when the loop says it is done.
    let events = events_of(store.as_ref(), &format!("rol_{run_id}_0")).await;
    assert!(matches!(events.last(), Some(Event::RolloutCompleted(_))));
    let appends = store.seen.lock().clone();
    let flat: Vec<&String> = appends.iter().flatten().collect();
    assert_eq!(flat.len(), events.len(), "every event once");
    assert_eq!(appends[0], ["RolloutStarted"], "the start is durable first");
    let model_calls = flat.iter().filter(|t| t.as_str() == "ModelCalled").count();
    assert!(model_calls >= 3, "the task must take several steps");
    (appends, model_calls)
}

#[actix_rt::test]
async fn a_model_reply_and_what_it_leads_to_are_one_append_made_durable_by_the_rollouts_end() {
    let (appends, model_calls) = appends_of_a_completed_rollout(
        Appends::new(usize::MAX),
        paid_oracle(Default::default()),
        "r6",
    )
    .await;
    assert_eq!(appends.len(), 1 + model_calls, "one append per model reply");
    for append in &appends[1..] {
        assert_eq!(append[0], "ModelCalled", "{append:?}");
        assert!(append[1..].iter().all(|t| t != "ModelCalled"), "{append:?}");
    }
    assert!(appends[1].iter().any(|t| t == "ToolCalled"));
    assert_eq!(
        appends.last().unwrap()[1..],
        ["RolloutVerified", "RolloutCompleted"]
    );
}

/// Drives run `run_id`'s one oracle rollout on a log that refuses appends (planned
/// by `store`), checks the loop ends with the log's error and does not hang, and
/// returns what reached the log.
async fn events_before_the_log_failed(
    store: Arc<Appends>,
    agents: Arc<dyn AgentFactory>,
    run_id: &str,
) -> Vec<Event> {
    let driven = tokio::time::timeout(
        Duration::from_secs(30),
        step_loop::drive(
            Arc::new(deps(store.clone(), agents)),
            job(run(run_id, "oracle", 1)),
        ),
    )
    .await
    .expect("the loop does not hang on a failing log");
    let error = driven.expect_err("the loop reports the log's failure");
    assert!(error.to_string().contains("the disk is full"), "{error}");
    events_of(store.as_ref(), &format!("rol_{run_id}_0")).await
}

#[actix_rt::test]
async fn a_log_that_fails_mid_rollout_stops_the_loop_with_its_error() {
    // The start and the first reply's append land; the second reply's is refused.
    let store = Appends::new(2);
    let events =
        events_before_the_log_failed(store.clone(), paid_oracle(Default::default()), "r7").await;
    // What reached the log is a clean prefix to resume from: the start and one reply.
    assert!(matches!(events[0], Event::RolloutStarted(_)));
    assert!(matches!(events[1], Event::ModelCalled(_)));
    assert_eq!(store.seen.lock().len(), 2);
}

#[actix_rt::test]
async fn a_model_free_to_ask_again_does_not_wait_for_the_log_between_steps() {
    // Each append takes 100 ms: the builtin oracle's steps run on while one is in
    // flight, and what they record goes with the next.
    let (appends, model_calls) = appends_of_a_completed_rollout(
        Appends::slow(usize::MAX, Duration::from_millis(100)),
        oracle(),
        "r8",
    )
    .await;
    assert!(
        appends.len() < 1 + model_calls,
        "steps gathered into fewer appends than replies: {appends:?}"
    );
}

/// The oracle, with the simulated people on a model that is not free to ask again
/// (it refuses, so they stay silent).
struct OracleWithPaidColleagues;

impl AgentFactory for OracleWithPaidColleagues {
    fn agent(
        &self,
        model: &ModelSettings,
        task: &Task,
        key: Option<ApiKey>,
    ) -> Result<Box<dyn ModelClient>, String> {
        oracle().agent(model, task, key)
    }

    fn npc_agent(
        &self,
        _: &RunLaunched,
        _: Option<ApiKey>,
    ) -> Result<Option<Box<dyn ModelClient>>, String> {
        Ok(Some(Box::new(Planned(Plan::Fail))))
    }
}

#[actix_rt::test]
async fn a_free_model_beside_paid_colleagues_waits_for_the_log_as_a_paid_one_does() {
    let (appends, model_calls) = appends_of_a_completed_rollout(
        Appends::slow(usize::MAX, Duration::from_millis(100)),
        Arc::new(OracleWithPaidColleagues),
        "r10",
    )
    .await;
    assert_eq!(
        appends.len(),
        1 + model_calls,
        "one append per model reply: {appends:?}"
    );
}

#[actix_rt::test]
async fn a_log_that_fails_behind_a_free_model_still_stops_the_rollout_with_its_error() {
    let events = events_before_the_log_failed(Appends::new(1), oracle(), "r9").await;
    assert_eq!(
        events.len(),
        1,
        "only the start reached the log: {events:?}"
    );
}

/// The hr task with the longest reference solution (so a cut mid-way is mid-loop).
fn longest_task() -> String {
    let catalog = catalog();
    let hr = catalog.get("hr").unwrap();
    hr.tasks
        .iter()
        .max_by_key(|t| t.reference_solution.len())
        .unwrap()
        .task_id
        .clone()
}

fn run(run_id: &str, model: &str, rollouts: usize) -> RunLaunched {
    let task_id = longest_task();
    RunLaunched {
        run_id: run_id.into(),
        scenario_id: "hr".into(),
        source: "rl-gym".into(),
        task_ids: vec![task_id.clone()],
        rollout_count: rollouts as u32,
        max_parallel: None,
        model: ModelSettings::builtin(model),
        user_model: None,
        judge_model: None,
        task_overrides: Default::default(),
        parent: None,
        tool_faults: None,
        rollouts: (0..rollouts)
            .map(|i| ScheduledRollout {
                rollout_id: format!("rol_{run_id}_{i}"),
                task_id: task_id.clone(),
                seed: 7 + i as u64,
                instance_seed: 0,
            })
            .collect(),
        launched_at: Utc::now(),
        budget: None,
        prices: None,
        continuous: None,
    }
}

async fn events_of(store: &dyn EventStore, rollout_id: &str) -> Vec<Event> {
    store
        .read_stream(&rollout_stream(rollout_id), 0)
        .await
        .unwrap()
        .iter()
        .map(|r| crate::journal::decode_record(r).unwrap())
        .collect()
}

async fn wait_for_status(
    store: &dyn EventStore,
    rollout_id: &str,
    status: RolloutStatus,
) -> Vec<Event> {
    for _ in 0..1000 {
        let state = journal::load_rollout(store, rollout_id).await.unwrap();
        if state.status() == status {
            return events_of(store, rollout_id).await;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{rollout_id} never reached {status:?}");
}

#[actix_rt::test]
async fn a_panicking_step_loop_ends_in_rollout_failed_with_the_message() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
    let gym = gym(store.clone(), Arc::new(Planned(Plan::Panic)));
    gym.launch(run("r1", "noop", 1), RunKeys::default())
        .await
        .unwrap();
    let events = wait_for_status(store.as_ref(), "rol_r1_0", RolloutStatus::Failed).await;
    match events.last() {
        Some(Event::RolloutFailed(e)) => {
            assert!(e.error.contains("panicked: planned panic"), "{}", e.error)
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[actix_rt::test]
async fn a_failing_model_ends_in_rollout_failed_with_the_providers_message() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
    let gym = gym(store.clone(), Arc::new(Planned(Plan::Fail)));
    gym.launch(run("r2", "noop", 2), RunKeys::default())
        .await
        .unwrap();
    for i in 0..2 {
        let events = wait_for_status(
            store.as_ref(),
            &format!("rol_r2_{i}"),
            RolloutStatus::Failed,
        )
        .await;
        match events.last() {
            Some(Event::RolloutFailed(e)) => {
                assert_eq!(
                    e.error,
                    "model call failed at step 1: provider answered 400: planned refusal"
                )
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[actix_rt::test]
async fn cancelling_stops_a_rollout_waiting_on_its_model() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
    let gym = gym(store.clone(), Arc::new(Planned(Plan::Stall)));
    gym.launch(run("r3", "noop", 1), RunKeys::default())
        .await
        .unwrap();
    wait_for_status(store.as_ref(), "rol_r3_0", RolloutStatus::Running).await;
    assert_eq!(gym.cancel("r3").await.unwrap(), 1);
    let events = wait_for_status(store.as_ref(), "rol_r3_0", RolloutStatus::Cancelled).await;
    assert!(matches!(events.last(), Some(Event::RolloutCancelled(_))));
    assert!(!events.iter().any(|e| matches!(e, Event::ModelCalled(_))));
}

#[actix_rt::test]
async fn a_rollout_cut_off_mid_loop_resumes_without_redoing_a_recorded_step() {
    // A full oracle rollout, recorded.
    let full: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
    let first = gym(full.clone(), oracle());
    let launched = run("r4", "oracle", 1);
    first
        .launch(launched.clone(), RunKeys::default())
        .await
        .unwrap();
    let complete = wait_for_status(full.as_ref(), "rol_r4_0", RolloutStatus::Completed).await;
    let model_calls = complete
        .iter()
        .filter(|e| matches!(e, Event::ModelCalled(_)))
        .count();
    assert!(model_calls >= 3, "the task must take several steps");

    // The same log cut after the second model call, as a crash would leave it.
    let cut = complete
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, Event::ModelCalled(_)))
        .nth(1)
        .map(|(i, _)| i + 1)
        .unwrap();
    let crashed: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
    journal::append(
        crashed.as_ref(),
        "run-r4",
        None,
        &[Event::RunLaunched(Box::new(launched))],
    )
    .await
    .unwrap();
    for (revision, event) in complete[..cut].iter().enumerate() {
        let last = revision.checked_sub(1).map(|r| r as u64);
        journal::append(
            crashed.as_ref(),
            &rollout_stream("rol_r4_0"),
            last,
            std::slice::from_ref(event),
        )
        .await
        .unwrap();
    }

    let calls = Arc::new(AtomicUsize::new(0));
    let resumed = gym(crashed.clone(), paid_oracle(calls.clone()));
    let views = crate::projections::rebuild(crashed.as_ref()).await.unwrap();
    assert_eq!(resumed.recover(views.unfinished_runs()).await.unwrap(), 1);
    let after = wait_for_status(crashed.as_ref(), "rol_r4_0", RolloutStatus::Completed).await;

    assert_eq!(
        calls.load(Ordering::SeqCst),
        model_calls - 2,
        "recorded model calls are not redone"
    );
    let strip = |events: &[Event]| -> Vec<(String, String)> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::ToolCalled(t) => Some((t.call_id.clone(), t.observation.clone())),
                Event::ModelCalled(m) => Some((
                    format!("step {}", m.step),
                    serde_json::to_string(&m.message).unwrap(),
                )),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        strip(&after),
        strip(&complete),
        "same steps, same tool results, none twice"
    );
    let verdict = |events: &[Event]| {
        events.iter().find_map(|e| match e {
            Event::RolloutVerified(v) => Some(v.verdict.clone()),
            _ => None,
        })
    };
    assert_eq!(verdict(&after), verdict(&complete));
    assert_eq!(verdict(&after).unwrap().score, 1.0);
}

#[actix_rt::test]
async fn a_retried_append_with_the_same_event_is_not_written_twice() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
    let event = Event::RunLaunched(Box::new(run("r5", "noop", 1)));
    let a = journal::append(store.as_ref(), "run-r5", None, std::slice::from_ref(&event))
        .await
        .unwrap();
    let b = journal::append(store.as_ref(), "run-r5", None, std::slice::from_ref(&event))
        .await
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(store.next_position(), 1);
    // A different event at the same place is a conflict, not a silent overwrite.
    let other = EventData {
        id: uuid::Uuid::now_v7(),
        event_type: "RunDeleted".into(),
        schema_version: 1,
        time: Utc::now(),
        data: b"{}".to_vec(),
    };
    assert!(store
        .append("run-r5", ExpectedState::NoStream, vec![other])
        .await
        .is_err());
}
