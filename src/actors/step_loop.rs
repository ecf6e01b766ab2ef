//! The step loop of one rollout: model → tool calls → tool results → … until the
//! model answers without tools or `max_steps` turns are used, then verification.
//!
//! Every decision comes from [`RolloutState::next_action`] over the rollout's own
//! events, and every result is appended before the next action, so the loop can be
//! stopped at any point (crash, cancel) and resumed from the log without redoing a
//! recorded step. The environment is rebuilt the same way: the seed plus the recorded
//! tool calls, replayed through the same function that made them.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::journal;
use super::run::{RunBudget, RunPolicy};
use super::Deps;
use crate::config::secrets::Redactor;
use crate::domain::chat::{Message, ToolCall, ToolSet};
use crate::domain::events::{
    ContextSummarized, Event, ModelCalled, ModelSettings, NpcEmail, NpcReplied, OnStale,
    RolloutCancelled, RolloutCompleted, RolloutFailed, RolloutStarted, RolloutVerified,
    RubricGraded, RunLaunched, ScheduledRollout, TokenUsage, ToolCalled,
};
use crate::domain::faults::FaultKind;
use crate::domain::feed::{is_stale, Policy};
use crate::domain::ids::rollout_stream;
use crate::domain::rollout::{NextAction, RolloutState, RolloutStatus};
use crate::domain::secret::ApiKey;
use crate::domain::verdict::{RubricStatus, RubricVerdict};
use crate::llm::builtin::{BuiltinAgent, PlannedCall};
use crate::llm::{self, ModelClient, ModelRequest};
use crate::npc;
use crate::projections::RolloutContent;
use crate::scenarios::{Scenario, Task};
use crate::store::StoreError;
use crate::tools::remote::RemoteEnvironment;
use crate::tools::replay::{self, CallOutcome};
use crate::tools::Environment;
use crate::verify::{rubric, StateRoot};

/// The system prompt used when a run gives none (documented in the README).
pub fn default_system_prompt(scenario: &Scenario) -> String {
    format!(
        "You are an operations assistant at a company, working in the \"{}\" environment. \
         Complete the user's task by calling the tools you are given; they act on the \
         company's real systems, so check facts with them instead of guessing. When the \
         task is done, or if it cannot be done, answer with a short final message and no \
         tool call.",
        scenario.name
    )
}

/// One rollout to drive.
pub struct RolloutJob {
    pub run: Arc<RunLaunched>,
    pub rollout: ScheduledRollout,
    pub cancel: CancellationToken,
    /// The run's budget, checked before each model call and charged after it.
    pub budget: Arc<RunBudget>,
    /// The policy in force, read before each model call.
    pub policy: Arc<RunPolicy>,
}

/// How a step loop ended: the rollout's status, and whether it went stale and is to
/// be restarted (with why).
#[derive(Debug)]
pub struct Ended {
    pub status: RolloutStatus,
    pub restart: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    /// The log could not record a step: the rollout stays where it is and resumes on
    /// the next start.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a rollout cannot go on; recorded as `RolloutFailed`.
struct Failure(String);

struct Driver {
    deps: Arc<Deps>,
    job: RolloutJob,
    stream: String,
    state: RolloutState,
    /// Events already folded into `state` whose append has not been started. Against
    /// a local environment everything a model reply leads to (its tool calls, the
    /// replies they caused, the verdict) is deterministic given the events before it,
    /// so it is recorded in one append with that reply, started when the next model
    /// call is and made durable while that call is in flight. A crash before it is
    /// durable loses the reply and what followed from it: resuming calls the model
    /// again, as after a crash during the call.
    unrecorded: Vec<Event>,
    /// The last revision handed to the log (durable or in flight).
    submitted: Option<u64>,
    in_flight: Option<JoinHandle<Result<(), StoreError>>>,
    /// A remote environment acts outside this process: every step is durable before
    /// the next one is taken.
    write_ahead: bool,
    /// The server's secrets, and the run's keys once they are read.
    redactor: Redactor,
    /// A continuous run's rollout folds what it records into its content, left for
    /// the feed once the rollout is over (the feed reads it instead of the log).
    content: Option<RolloutContent>,
}

impl Driver {
    fn new(deps: Arc<Deps>, job: RolloutJob, state: RolloutState) -> Driver {
        Driver {
            stream: rollout_stream(&job.rollout.rollout_id),
            write_ahead: job.run.model.tool_server_url.is_some(),
            submitted: state.revision,
            redactor: deps.redactor.clone(),
            deps,
            job,
            state,
            unrecorded: Vec::new(),
            in_flight: None,
            content: None,
        }
    }

    /// Folds `events` (several of them are one atomic append: a tool call and the
    /// replies it caused) into the state and records them: at once against a remote
    /// environment, else with the next append ([`Driver::start_append`]).
    async fn record_all(&mut self, events: Vec<Event>) -> Result<(), StoreError> {
        for mut event in events {
            redact_event(&self.redactor, &mut event);
            let revision = self.state.revision.map_or(0, |r| r + 1);
            self.state.evolve(&event, revision);
            self.job.budget.add(&event);
            if let Some(content) = self
                .content
                .as_mut()
                .filter(|_| RolloutContent::folds(&event))
            {
                content.apply(event.clone());
            }
            self.unrecorded.push(event);
        }
        if self.write_ahead {
            self.sync().await?;
        }
        Ok(())
    }

    async fn record(&mut self, event: Event) -> Result<(), StoreError> {
        self.record_all(vec![event]).await
    }

    /// Starts appending what is unrecorded, once the append before it has finished
    /// (one in flight at a time keeps a stream's appends in order).
    async fn start_append(&mut self) -> Result<(), StoreError> {
        self.settle().await?;
        if self.unrecorded.is_empty() {
            return Ok(());
        }
        let events = std::mem::take(&mut self.unrecorded);
        let after = self.submitted;
        self.submitted = self.state.revision;
        let store = self.deps.store.clone();
        let stream = self.stream.clone();
        self.in_flight = Some(tokio::spawn(async move {
            journal::append(store.as_ref(), &stream, after, &events)
                .await
                .map(drop)
        }));
        Ok(())
    }

    /// Before a call of a model that is free to ask again: starts the next append only
    /// if the log is idle, so steps never wait for a sync and what they record goes
    /// with the append after the one in flight. A crash loses at most the steps taken
    /// since the last durable append, and asking again repeats them exactly.
    async fn start_append_if_idle(&mut self) -> Result<(), StoreError> {
        if self.in_flight.as_ref().is_some_and(|a| !a.is_finished()) {
            return Ok(());
        }
        self.start_append().await
    }

    /// Waits for the append in flight, if any.
    async fn settle(&mut self) -> Result<(), StoreError> {
        match self.in_flight.take() {
            Some(append) => append.await.map_err(|e| {
                StoreError::Io(std::io::Error::other(format!("the append task died: {e}")))
            })?,
            None => Ok(()),
        }
    }

    /// Makes everything recorded so far durable.
    async fn sync(&mut self) -> Result<(), StoreError> {
        self.start_append().await?;
        self.settle().await
    }
}

/// Drives a rollout to a terminal state (or until the log fails).
///
/// Thousands of these wait at once, so the steps taken rarely or only sometimes
/// (a fork's start, a remote environment, tool calls, replies, summaries, the judge)
/// are boxed: their state would otherwise be part of every rollout's future.
pub async fn drive(deps: Arc<Deps>, job: RolloutJob) -> Result<Ended, LoopError> {
    let rollout_id = job.rollout.rollout_id.clone();
    let state = journal::load_rollout(deps.store.as_ref(), &rollout_id).await?;
    let mut driver = Driver::new(deps, job, state);
    let ended = |status| Ended {
        status,
        restart: None,
    };
    if driver.state.status().is_terminal() {
        return Ok(ended(driver.state.status()));
    }
    // Waiting for a slot under the server-wide cap is still "pending".
    let semaphore = driver.deps.global.clone();
    let _permit = tokio::select! {
        permit = semaphore.acquire_owned() => permit.ok(),
        _ = driver.job.cancel.cancelled() => None,
    };
    if driver.job.cancel.is_cancelled() {
        cancel(&mut driver, "run cancelled").await?;
        driver.sync().await?;
        return Ok(ended(driver.state.status()));
    }
    if driver.job.run.continuous.is_some() {
        // What the stream already holds (a resumed rollout's steps), read only once the
        // rollout has its slot: a queued one holds nothing, and a new one's stream is
        // empty.
        let content = match driver.state.revision {
            None => RolloutContent::default(),
            Some(_) => RolloutContent::load(driver.deps.store.as_ref(), &rollout_id)
                .await
                .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?,
        };
        driver.content = Some(content);
    }
    driver.deps.metrics.rollouts_active.inc();
    let outcome = run_steps(&mut driver).await;
    driver.deps.metrics.rollouts_active.dec();
    let mut restart = None;
    match outcome {
        Ok(()) => {}
        Err(StepError::Failed(Failure(message))) if driver.job.budget.is_halted() => {
            tracing::info!(
                rollout_id,
                message = driver.redactor.redact(&message),
                "rollout stopped: this node lost the run's lease"
            );
        }
        Err(StepError::Failed(Failure(message))) => {
            let event = Event::RolloutFailed(RolloutFailed {
                rollout_id,
                error: message,
                failed_at: Utc::now(),
            });
            driver.record(event).await?;
        }
        Err(StepError::Cancelled) => cancel(&mut driver, "run cancelled").await?,
        // Nothing recorded here: the run records the replacement first, then cancels
        // this rollout, so its group is never seen complete without it.
        Err(StepError::Stale(reason)) => restart = Some(reason),
        // Nothing recorded: the rollout resumes from here when the run does.
        Err(StepError::Paused(reason)) => {
            tracing::info!(
                rollout_id,
                reason,
                "rollout stopped: the run's budget is spent"
            );
        }
        Err(StepError::Store(error)) => return Err(error.into()),
    }
    // Left before the end is durable: the feed takes a rollout's content once its
    // group is complete in the views, which can be as soon as the end is written, and
    // an end that fails to be written leaves the group incomplete (a resumed rollout
    // puts its content again).
    if let (true, Some(content)) = (driver.state.status().is_terminal(), driver.content.take()) {
        let id = driver.job.rollout.rollout_id.clone();
        driver.deps.contents.put(id, content);
    }
    // The rollout's end is reported only once it is durable.
    driver.sync().await?;
    let status = driver.state.status();
    if status.is_terminal() {
        driver
            .deps
            .metrics
            .rollouts_finished
            .with_label_values(&[status.as_str()])
            .inc();
    }
    Ok(Ended { status, restart })
}

async fn cancel(driver: &mut Driver, reason: &str) -> Result<(), StoreError> {
    // Halted (the lease went to another node): stopped, not cancelled.
    if driver.state.status().is_terminal() || driver.job.budget.is_halted() {
        return Ok(());
    }
    let event = Event::RolloutCancelled(RolloutCancelled {
        rollout_id: driver.job.rollout.rollout_id.clone(),
        reason: reason.to_string(),
        cancelled_at: Utc::now(),
    });
    driver.record(event).await
}

enum StepError {
    Failed(Failure),
    Cancelled,
    /// More than `max_staleness` policy versions behind (`on_stale: restart`), why.
    Stale(String),
    /// The run's budget is spent, with the reason.
    Paused(String),
    Store(StoreError),
}

impl From<StoreError> for StepError {
    fn from(e: StoreError) -> Self {
        StepError::Store(e)
    }
}

impl From<Failure> for StepError {
    fn from(f: Failure) -> Self {
        StepError::Failed(f)
    }
}

async fn run_steps(driver: &mut Driver) -> Result<(), StepError> {
    let deps = driver.deps.clone();
    let run = driver.job.run.clone();
    let rollout = driver.job.rollout.clone();
    let scenario = deps.catalog.get(&run.scenario_id).ok_or_else(|| {
        Failure(format!(
            "scenario {} is no longer available",
            run.scenario_id
        ))
    })?;
    let task = &crate::scenarios::overrides::apply(
        scenario,
        &rollout.task_id,
        run.task_overrides.get(&rollout.task_id),
        rollout.instance_seed,
    )
    .map_err(Failure)?;
    let mut tools = match &run.model.tool_server_url {
        None => Tools::Local(rebuild_local(scenario, task, rollout.seed, &driver.state)?),
        // A remote environment keeps its own state: recorded calls are already in it.
        Some(url) => {
            // Checked at launch; a run launched before that check fails here.
            let url = crate::net::parse_http_url(url)
                .map_err(|e| Failure(format!("tool_server_url: {e}")))?;
            let own = deps.self_urls.get().is_some_and(|urls| {
                urls.iter()
                    .any(|own| crate::net::is_own_environment(&url, own))
            });
            Tools::Remote(
                Box::pin(RemoteEnvironment::connect(
                    deps.http.clone(),
                    url.as_str(),
                    &task.tool_servers,
                    own.then(|| deps.self_token.clone()).flatten(),
                    Duration::from_secs(deps.tool_timeout_secs),
                ))
                .await
                .map_err(Failure)?,
            )
        }
    };
    let tool_definitions = tools.definitions();
    let keys = deps
        .secrets
        .get(&run.run_id)
        .map_err(|e| Failure(e.to_string()))?
        .unwrap_or_default();
    driver.redactor = deps.redactor.with_keys(&keys);
    // The policy in force answers each turn: a switch rebuilds the client with its
    // endpoint and version before the next model call.
    let (mut policy_ordinal, mut settings) = policy_settings(&run.model, &driver.job.policy);
    let mut model = deps
        .agents
        .agent(&settings, task, keys.model.clone())
        .map_err(Failure)?;
    let stale_restart = run
        .continuous
        .filter(|c| c.on_stale == OnStale::Restart)
        .and_then(|c| c.max_staleness);
    let token_settings = run.model.tokens.as_ref();
    // Token-exact turns continue the token sequence their rollout recorded: checked once,
    // before the first model call (a resumed rollout, or a fork's copied turns).
    let mut tokens_restored = !token_settings.is_some_and(|t| t.records_tokens());
    let token_in = token_settings.is_some_and(|t| t.token_in);
    let npc_model = deps
        .agents
        .npc_agent(&run, keys.user_model.clone())
        .map_err(Failure)?;
    // Steps may run ahead of the log only if asking again is free for every model a
    // step calls: a simulated person on a provider's model is not.
    let free =
        model.free_to_ask_again() && npc_model.as_ref().is_none_or(|npc| npc.free_to_ask_again());
    let max_steps = run.model.max_steps;
    let provider = run.model.provider.clone();
    let has_rubric = task.judge_rubric().is_some();
    // Faults are keyed by the rollout's place in its run, the same in every run of
    // the same tasks (its id is not).
    let faults = run.tool_faults.map(|faults| {
        let index = run
            .rollouts
            .iter()
            .position(|r| r.rollout_id == rollout.rollout_id)
            .unwrap_or_default();
        (faults, index)
    });

    loop {
        if driver.job.cancel.is_cancelled() {
            return Err(StepError::Cancelled);
        }
        let action = driver.state.next_action(max_steps, has_rubric);
        let started = Instant::now();
        // The part of the step spent waiting for a model (or the judge).
        let mut model_wait = Duration::ZERO;
        let kind = match action {
            NextAction::Finished => return Ok(()),
            NextAction::Start => {
                let events = match &run.parent {
                    // A fork starts where its source was after `at_step`; its
                    // environment is rebuilt from the copied calls.
                    Some(parent) => {
                        let source = Box::pin(journal::rollout_events(
                            deps.store.as_ref(),
                            &parent.rollout_id,
                        ))
                        .await?
                        .into_iter()
                        .map(|(_, event)| event)
                        .collect::<Vec<_>>();
                        let prefix = crate::domain::rollout::fork_prefix(
                            &source,
                            parent.at_step,
                            &run.run_id,
                            &rollout.rollout_id,
                            Utc::now(),
                        );
                        if prefix.is_empty() {
                            return Err(Failure(format!(
                                "the forked rollout {} has no recorded start",
                                parent.rollout_id
                            ))
                            .into());
                        }
                        prefix
                    }
                    None => {
                        let system = run
                            .model
                            .system_prompt
                            .clone()
                            .unwrap_or_else(|| default_system_prompt(scenario));
                        vec![Event::RolloutStarted(RolloutStarted {
                            rollout_id: rollout.rollout_id.clone(),
                            run_id: run.run_id.clone(),
                            task_id: rollout.task_id.clone(),
                            messages: vec![
                                Message::system(system),
                                Message::user(&task.description),
                            ],
                            started_at: Utc::now(),
                        })]
                    }
                };
                // The start is durable before the first model call. Measured: when
                // ten thousand rollouts launched at once also sent their first model
                // calls while the launches were still being handled, those calls took
                // 3.7 instead of 2 s (p50) and the rollouts 3.3 instead of 2.6 s
                // (benches/README.md); waiting for the start's append spaces them out.
                driver.record_all(events).await?;
                driver.sync().await?;
                match &mut tools {
                    // A fork's environment was built before the copied calls existed:
                    // build it again from them.
                    Tools::Local(env) if run.parent.is_some() => {
                        *env = rebuild_local(scenario, task, rollout.seed, &driver.state)?;
                    }
                    _ => {}
                }
                continue;
            }
            NextAction::CallModel { step } => {
                if let Some(reason) = driver.job.budget.exhausted() {
                    return Err(StepError::Paused(reason));
                }
                // What the last reply led to becomes durable while the model thinks.
                if free {
                    driver.start_append_if_idle().await?;
                } else {
                    driver.start_append().await?;
                }
                let every = run.model.summarize_every_n_turns;
                if let Some(replaced) =
                    driver
                        .state
                        .summary_due(step, every, run.model.context_stride)
                {
                    let event = Box::pin(summarize(
                        model.as_ref(),
                        &run,
                        &rollout.rollout_id,
                        step,
                        replaced,
                        driver.state.to_summarize(replaced),
                    ))
                    .await?;
                    driver.record(event).await?;
                    continue;
                }
                let ordinal = driver.job.policy.ordinal();
                if let Some(first) = driver.state.first_policy_ordinal {
                    if is_stale(first, ordinal, stale_restart) {
                        return Err(StepError::Stale(format!(
                            "stale: its first turn was answered by policy {first} and policy \
                             {ordinal} is in force now, more than max_staleness {} behind; \
                             restarted from scratch",
                            stale_restart.unwrap_or_default()
                        )));
                    }
                }
                if ordinal != policy_ordinal {
                    (policy_ordinal, settings) = policy_settings(&run.model, &driver.job.policy);
                    model = deps
                        .agents
                        .agent(&settings, task, keys.model.clone())
                        .map_err(Failure)?;
                    // A token-in client holds the sequence: the new one rebuilds it.
                    tokens_restored = !token_settings.is_some_and(|t| t.records_tokens());
                }
                if !tokens_restored {
                    Box::pin(restore_tokens(driver, model.as_ref())).await?;
                    tokens_restored = true;
                }
                let request = ModelRequest {
                    messages: &driver.state.messages,
                    tools: &tool_definitions,
                    settings: &settings,
                };
                let called = Instant::now();
                let timeout = Duration::from_secs(deps.model_timeout_secs);
                let reply = tokio::select! {
                    reply = tokio::time::timeout(timeout, model.complete(request)) => reply,
                    _ = driver.job.cancel.cancelled() => return Err(StepError::Cancelled),
                };
                let latency = called.elapsed();
                model_wait = latency;
                if !free {
                    driver.settle().await?;
                }
                deps.metrics
                    .model_call_duration
                    .with_label_values(&[&provider])
                    .observe(latency.as_secs_f64());
                let reply = match reply {
                    Ok(Ok(reply)) => reply,
                    Ok(Err(error)) => {
                        deps.metrics
                            .model_errors
                            .with_label_values(&[&provider, error.error_type()])
                            .inc();
                        return Err(
                            Failure(format!("model call failed at step {step}: {error}")).into(),
                        );
                    }
                    Err(_) => {
                        deps.metrics
                            .model_errors
                            .with_label_values(&[&provider, "timeout"])
                            .inc();
                        return Err(Failure(format!(
                            "model call at step {step} timed out after {}s",
                            timeout.as_secs()
                        ))
                        .into());
                    }
                };
                let event = Event::ModelCalled(ModelCalled {
                    rollout_id: rollout.rollout_id.clone(),
                    step,
                    model: run.model.model.clone(),
                    message: reply.message,
                    usage: reply.usage,
                    logprobs: reply.logprobs,
                    latency_ms: latency.as_secs_f64() * 1000.0,
                    called_at: Utc::now(),
                    tokens: reply.tokens,
                    policy_ordinal,
                });
                driver.record(event).await?;
                "model"
            }
            NextAction::CallTool { step, call } => {
                let sent_before = tools.sent_count();
                let fault = faults.and_then(|(faults, index)| {
                    faults.fault_for(index, driver.state.tool_calls.len())
                });
                let called = Instant::now();
                if let Some(latency) = faults.map(|(f, _)| f.latency_ms).filter(|&ms| ms > 0) {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(latency)) => {}
                        _ = driver.job.cancel.cancelled() => return Err(StepError::Cancelled),
                    }
                }
                let event = Box::pin(call_tool(
                    &mut tools,
                    token_in,
                    &rollout.rollout_id,
                    step,
                    &call,
                    fault,
                    called,
                ))
                .await;
                if let Event::ToolCalled(called) = &event {
                    let outcome = match (&called.fault, called.is_error) {
                        (Some(_), _) => "fault",
                        (None, true) => "error",
                        (None, false) => "ok",
                    };
                    let server = called.server.as_deref().unwrap_or("unknown");
                    deps.metrics
                        .tool_calls
                        .with_label_values(&[server, outcome])
                        .inc();
                }
                let after_tool_calls = driver.state.tool_calls.len() as u32 + 1;
                let mut events = vec![event];
                if let Tools::Local(env) = &mut tools {
                    let replies = Box::pin(npc_replies(
                        env,
                        scenario,
                        task,
                        npc_model.as_deref(),
                        &run,
                        sent_before,
                        &driver.redactor,
                    ))
                    .await;
                    for reply in replies {
                        events.push(Event::NpcReplied(NpcReplied {
                            rollout_id: rollout.rollout_id.clone(),
                            step,
                            profile_id: reply.profile_id,
                            after_tool_calls,
                            email: NpcEmail {
                                from: reply.email.from,
                                to: reply.email.to,
                                cc: reply.email.cc,
                                subject: reply.email.subject,
                                body: reply.email.body,
                                in_reply_to: reply.email.in_reply_to,
                            },
                            replied_at: Utc::now(),
                        }));
                    }
                }
                driver.record_all(events).await?;
                "tool"
            }
            NextAction::Verify { .. } => {
                // The state is big: dropped before the append waits, not held across it.
                let verdict = {
                    let state = tools.checked_state().await.map_err(Failure)?;
                    task.verify(state.as_ref(), &driver.state.messages)
                };
                let event = Event::RolloutVerified(RolloutVerified {
                    rollout_id: rollout.rollout_id.clone(),
                    verdict,
                    verified_at: Utc::now(),
                });
                driver.record(event).await?;
                "verify"
            }
            NextAction::GradeRubric => {
                if let Some(reason) = driver.job.budget.exhausted() {
                    return Err(StepError::Paused(reason));
                }
                driver.start_append().await?;
                let state = tools.state().await.map_err(Failure)?;
                let graded_from = Instant::now();
                let grading = Box::pin(grade_rubric(
                    deps.as_ref(),
                    &run,
                    task,
                    keys.judge_model.clone(),
                    &driver.state.messages,
                    &state,
                ));
                let (rubric, usage) = tokio::select! {
                    graded = grading => graded,
                    _ = driver.job.cancel.cancelled() => return Err(StepError::Cancelled),
                };
                model_wait = graded_from.elapsed();
                driver.settle().await?;
                deps.metrics
                    .rubric_grades
                    .with_label_values(&[rubric_status(&rubric)])
                    .inc();
                let event = Event::RubricGraded(RubricGraded {
                    rollout_id: rollout.rollout_id.clone(),
                    rubric,
                    usage,
                    graded_at: Utc::now(),
                });
                driver.record(event).await?;
                "rubric"
            }
            NextAction::Complete { reason } => {
                let event = Event::RolloutCompleted(RolloutCompleted {
                    rollout_id: rollout.rollout_id.clone(),
                    reason,
                    steps: driver.state.steps,
                    completed_at: Utc::now(),
                });
                driver.record(event).await?;
                continue;
            }
        };
        let elapsed = started.elapsed();
        deps.metrics
            .step_duration
            .with_label_values(&[kind])
            .observe(elapsed.as_secs_f64());
        deps.metrics
            .step_overhead
            .with_label_values(&[kind])
            .observe(elapsed.saturating_sub(model_wait).as_secs_f64());
    }
}

/// Gives a token-exact client the turns its rollout recorded (none on a fresh start).
async fn restore_tokens(driver: &Driver, model: &dyn ModelClient) -> Result<(), StepError> {
    if driver.state.steps == 0 {
        return Ok(());
    }
    let turns: Vec<_> =
        journal::rollout_events(driver.deps.store.as_ref(), &driver.job.rollout.rollout_id)
            .await?
            .into_iter()
            .filter_map(|(_, event)| match event {
                Event::ModelCalled(called) => called.tokens.map(|t| *t),
                _ => None,
            })
            .collect();
    model
        .restore_turns(&turns)
        .map_err(|e| Failure(format!("the recorded tokens could not be restored: {e}")).into())
}

/// A rollout's own environment: the seed plus its recorded calls and replies.
fn rebuild_local(
    scenario: &Scenario,
    task: &Task,
    seed: u64,
    state: &RolloutState,
) -> Result<Environment, Failure> {
    let recorded = state
        .tool_calls
        .iter()
        .map(|c| replay::recorded(&c.tool_name, &c.arguments, c.fault.as_deref()));
    scenario
        .rebuild(task, seed, recorded, &state.npc_replies)
        .map_err(|e| Failure(format!("environment could not be built: {e}")))
}

/// The universal verifier's grade of a finished rollout: by the run's judge, else the
/// server's, else skipped with that reason. The judge failing is a grade with status
/// `error`, not a failed rollout: the checks' verdict stands. Its words are redacted
/// (a judge may quote the key it was called with).
pub(super) async fn grade_rubric(
    deps: &Deps,
    run: &RunLaunched,
    task: &Task,
    key: Option<ApiKey>,
    trajectory: &[Message],
    state: &serde_json::Value,
) -> (RubricVerdict, Option<TokenUsage>) {
    let redactor = deps.redactor.with(key.as_ref().map(ApiKey::expose));
    let (mut verdict, usage) = ask_judge(deps, run, task, key, trajectory, state).await;
    rubric::redact(&mut verdict, &redactor);
    (verdict, usage)
}

async fn ask_judge(
    deps: &Deps,
    run: &RunLaunched,
    task: &Task,
    key: Option<ApiKey>,
    trajectory: &[Message],
    state: &serde_json::Value,
) -> (RubricVerdict, Option<TokenUsage>) {
    let judge = match deps.agents.judge_agent(run, key) {
        Ok(Some(judge)) => judge,
        Ok(None) => {
            let reason = "no judge model is configured: set `judge_model_config` on the run \
                          or `judge` in the server config";
            return (
                rubric::ungraded(RubricStatus::Skipped, None, reason.into()),
                None,
            );
        }
        Err(e) => {
            return (
                rubric::ungraded(RubricStatus::Error, None, format!("judge: {e}")),
                None,
            )
        }
    };
    let (client, settings) = judge;
    let submission = rubric::Submission {
        task_name: &task.name,
        task_description: &task.description,
        rubric_markdown: task.judge_rubric().unwrap_or_default(),
        trajectory,
        state,
    };
    let timeout = Duration::from_secs(deps.model_timeout_secs);
    tokio::time::timeout(
        timeout,
        rubric::grade(client.as_ref(), &settings, &submission),
    )
    .await
    .unwrap_or_else(|_| {
        (
            rubric::ungraded(
                RubricStatus::Error,
                Some(rubric::judge_name(&settings)),
                format!("the judge did not answer within {}s", timeout.as_secs()),
            ),
            None,
        )
    })
}

fn rubric_status(rubric: &RubricVerdict) -> &'static str {
    match rubric.status {
        RubricStatus::Graded => "graded",
        RubricStatus::Skipped => "skipped",
        RubricStatus::Error => "error",
    }
}

/// Where a rollout's tool calls go: its own environment, rebuilt from its events, or
/// a remote one at `tool_server_url`.
enum Tools {
    Local(Environment),
    Remote(RemoteEnvironment),
}

impl Tools {
    /// Emails the agent has sent (simulated people answer new ones).
    fn sent_count(&self) -> usize {
        match self {
            Tools::Local(env) => env.sent_count(),
            Tools::Remote(_) => 0,
        }
    }

    fn server_of(&self, tool_name: &str) -> Option<String> {
        match self {
            Tools::Local(env) => env.server_of(tool_name),
            Tools::Remote(env) => env.server_of(tool_name),
        }
        .map(str::to_string)
    }

    /// The tools as the model is shown them; a local environment shares one copy
    /// with every rollout of the task.
    fn definitions(&self) -> Arc<ToolSet> {
        match self {
            Tools::Local(env) => env.tool_definitions(),
            Tools::Remote(env) => Arc::new(
                env.all_tools()
                    .into_iter()
                    .map(crate::tools::ToolSpec::definition)
                    .collect(),
            ),
        }
    }

    async fn execute(&mut self, tool_name: &str, arguments: &str) -> CallOutcome {
        let remote = match self {
            Tools::Local(env) => return replay::execute(env, tool_name, arguments),
            Tools::Remote(remote) => remote,
        };
        let Some(server) = remote.server_of(tool_name).map(str::to_string) else {
            return CallOutcome {
                server: None,
                observation: format!("Error: unknown tool `{tool_name}`"),
                is_error: true,
            };
        };
        match replay::parse_arguments(arguments) {
            Ok(parameters) => {
                let result = remote.step(&server, tool_name, &parameters).await;
                CallOutcome {
                    server: Some(server),
                    observation: result.observation,
                    is_error: result.is_error,
                }
            }
            Err(observation) => CallOutcome {
                server: Some(server),
                observation,
                is_error: true,
            },
        }
    }

    async fn state(&self) -> Result<Value, String> {
        match self {
            Tools::Local(env) => Ok(env.state()),
            Tools::Remote(env) => env.state().await,
        }
    }

    /// The state the checks read: a local server left as seeded is shared with the
    /// seed's JSON, not built again.
    async fn checked_state(&self) -> Result<Box<dyn StateRoot + Send>, String> {
        match self {
            Tools::Local(env) => Ok(Box::new(env.state_view())),
            Tools::Remote(env) => Ok(Box::new(env.state().await?)),
        }
    }
}

const SUMMARY_PROMPT: &str = "You compress the working memory of an agent. Summarise the \
    conversation below (the agent's tool calls and what they returned) in a few short \
    paragraphs: keep every id, name, date, number and decision the agent will need to \
    finish its task, and what is still to do. Answer with the summary only.";

/// Asks the model to summarise `older` messages (ContextSummarized).
async fn summarize(
    model: &dyn ModelClient,
    run: &RunLaunched,
    rollout_id: &str,
    step: u32,
    replaced: u32,
    older: &[Message],
) -> Result<Event, StepError> {
    let transcript = older
        .iter()
        .map(|m| {
            let calls = m
                .tool_calls
                .iter()
                .map(|c| format!(" [calls {}({})]", c.function.name, c.function.arguments))
                .collect::<String>();
            format!(
                "{:?}: {}{calls}",
                m.role,
                m.content.as_deref().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let messages = [Message::system(SUMMARY_PROMPT), Message::user(transcript)];
    let request = ModelRequest {
        messages: &messages,
        tools: ToolSet::none(),
        settings: &run.model,
    };
    let reply = model
        .complete(request)
        .await
        .map_err(|e| Failure(format!("summarising before step {step} failed: {e}")))?;
    Ok(Event::ContextSummarized(ContextSummarized {
        rollout_id: rollout_id.to_string(),
        step,
        summary: reply.message.content.unwrap_or_default(),
        replaced_messages: replaced,
        usage: reply.usage,
        summarized_at: Utc::now(),
    }))
}

/// The replies of simulated people to the emails the agent sent since `sent_before`,
/// delivered to the environment: written by the run's user model when it has one,
/// otherwise scripted by the task. A model that fails leaves that person silent (the
/// agent sees no answer, as with a real colleague), logged, never a hang.
async fn npc_replies(
    env: &mut Environment,
    scenario: &Scenario,
    task: &Task,
    npc_model: Option<&dyn ModelClient>,
    run: &RunLaunched,
    sent_before: usize,
    redactor: &Redactor,
) -> Vec<npc::PlannedReply> {
    let mut delivered = Vec::new();
    let cast = task.cast(scenario);
    for sent in env.sent_since(sent_before) {
        let planned = match (npc_model, &run.user_model) {
            (Some(model), Some(settings)) => {
                let mut planned = Vec::new();
                for profile in npc::recipients(cast.people, &sent) {
                    let thread = env.email_thread(&sent.email_id);
                    let prompt = npc::reply_prompt(profile, &cast, &thread);
                    let request = ModelRequest {
                        messages: &prompt,
                        tools: ToolSet::none(),
                        settings,
                    };
                    match model.complete(request).await {
                        Ok(reply) => {
                            let text = redactor.redact(&reply.message.content.unwrap_or_default());
                            if !text.trim().is_empty() {
                                planned.push(npc::plan_reply(profile, &sent, &text));
                            }
                        }
                        Err(error) => {
                            let error = redactor.redact(&error.to_string());
                            tracing::warn!(profile = profile.profile_id, %error, "the user model did not answer; the person stays silent")
                        }
                    }
                }
                planned
            }
            _ => npc::plan_scripted(&cast, &sent),
        };
        for reply in planned {
            if npc::deliver(env, &reply).is_ok() {
                delivered.push(reply);
            }
        }
    }
    delivered
}

/// Runs a call, or answers it with an injected failure without running it. Its
/// latency counts from `started` (before any injected delay).
async fn call_tool(
    tools: &mut Tools,
    token_in: bool,
    rollout_id: &str,
    step: u32,
    call: &ToolCall,
    fault: Option<FaultKind>,
    started: Instant,
) -> Event {
    let name = &call.function.name;
    let outcome = match fault {
        Some(kind) => {
            let server = tools.server_of(name);
            CallOutcome {
                observation: kind.observation(server.as_deref(), name),
                server,
                is_error: true,
            }
        }
        // A call the token-in parser could not read: answered in band with why.
        None if token_in && name == llm::completions::MALFORMED_TOOL_CALL => CallOutcome {
            server: None,
            observation: format!("Error: {}", call.function.arguments),
            is_error: true,
        },
        None => tools.execute(name, &call.function.arguments).await,
    };
    Event::ToolCalled(ToolCalled {
        rollout_id: rollout_id.to_string(),
        step,
        call_id: call.id.clone(),
        server: outcome.server,
        tool_name: call.function.name.clone(),
        arguments: call.function.arguments.clone(),
        observation: outcome.observation,
        is_error: outcome.is_error,
        fault: fault.map(|kind| kind.name().to_string()),
        latency_ms: started.elapsed().as_secs_f64() * 1000.0,
        called_at: Utc::now(),
    })
}

/// Hides the run's and the server's secrets in what came from outside (a model's
/// or person's words and tool calls, a tool server's answer, a judge's grade, an
/// error quoting a provider) before the event is folded and recorded: a provider
/// that echoes the headers it got puts the key there. The calls the model asked for
/// are executed as recorded, so a rebuilt environment sees what the live one did.
fn redact_event(redactor: &Redactor, event: &mut Event) {
    let redact = |text: &mut String| redactor.redact_in_place(text);
    match event {
        Event::ModelCalled(e) => redact_message(redactor, &mut e.message),
        Event::ContextSummarized(e) => redact(&mut e.summary),
        Event::ToolCalled(e) => {
            redact(&mut e.arguments);
            redact(&mut e.observation);
        }
        Event::NpcReplied(e) => {
            redact(&mut e.email.subject);
            redact(&mut e.email.body);
        }
        Event::RubricGraded(e) => rubric::redact(&mut e.rubric, redactor),
        Event::RolloutFailed(e) => redact(&mut e.error),
        _ => {}
    }
}

fn redact_message(redactor: &Redactor, message: &mut Message) {
    if let Some(content) = &mut message.content {
        redactor.redact_in_place(content);
    }
    for call in &mut message.tool_calls {
        redactor.redact_in_place(&mut call.function.arguments);
    }
}

/// The run's ModelConfig as the policy in force answers it, with that policy's
/// ordinal: the launch's as it is (ordinal 0), an update's with its endpoint (when it
/// names one) and its version.
fn policy_settings<'a>(
    model: &'a ModelSettings,
    policy: &RunPolicy,
) -> (u32, Cow<'a, ModelSettings>) {
    let (ordinal, policy) = policy.current();
    if ordinal == 0 {
        return (0, Cow::Borrowed(model));
    }
    (ordinal, Cow::Owned(with_policy(model, &policy)))
}

fn with_policy(model: &ModelSettings, policy: &Policy) -> ModelSettings {
    let mut settings = model.clone();
    if policy.base_url.is_some() {
        settings.base_url = policy.base_url.clone();
    }
    if policy.version.is_some() || settings.tokens.is_some() {
        settings
            .tokens
            .get_or_insert_with(Default::default)
            .policy_version = policy.version.clone();
    }
    settings
}

/// A rubric judge and the settings it is called with.
pub type Judge = (Box<dyn ModelClient>, ModelSettings);

/// Builds the agent of a rollout. The default serves the builtin agents and the
/// providers; tests substitute agents that fail or panic on purpose.
pub trait AgentFactory: Send + Sync {
    /// The agent answering as `model` (the run's ModelConfig, with the policy in force
    /// applied: its endpoint and version).
    fn agent(
        &self,
        model: &ModelSettings,
        task: &Task,
        key: Option<ApiKey>,
    ) -> Result<Box<dyn ModelClient>, String>;

    /// The model that plays the simulated people (`user_model_config`), if any.
    fn npc_agent(
        &self,
        _run: &RunLaunched,
        _key: Option<ApiKey>,
    ) -> Result<Option<Box<dyn ModelClient>>, String> {
        Ok(None)
    }

    /// The rubric judge and its settings: the run's `judge_model_config`, else the
    /// server's, if any.
    fn judge_agent(
        &self,
        _run: &RunLaunched,
        _key: Option<ApiKey>,
    ) -> Result<Option<Judge>, String> {
        Ok(None)
    }
}

pub struct DefaultAgents {
    pub http: reqwest::Client,
    pub limits: llm::ProviderLimits,
    /// The server's judge (`judge` in the config) with its key.
    pub judge: Option<(ModelSettings, Option<ApiKey>)>,
}

impl AgentFactory for DefaultAgents {
    fn judge_agent(&self, run: &RunLaunched, key: Option<ApiKey>) -> Result<Option<Judge>, String> {
        let (settings, key) = match (&run.judge_model, &self.judge) {
            (Some(own), _) => (own, key),
            (None, Some((server, server_key))) => (server, server_key.clone()),
            (None, None) => return Ok(None),
        };
        llm::client_for(&self.http, settings, key, &self.limits)
            .map(|client| Some((client, settings.clone())))
            .map_err(|e| e.to_string())
    }

    fn npc_agent(
        &self,
        run: &RunLaunched,
        key: Option<ApiKey>,
    ) -> Result<Option<Box<dyn ModelClient>>, String> {
        match &run.user_model {
            // The builtin agents cannot speak for a person: scripted replies stand in.
            Some(settings) if settings.provider != "builtin" => {
                llm::client_for(&self.http, settings, key, &self.limits)
                    .map(Some)
                    .map_err(|e| format!("user model: {e}"))
            }
            _ => Ok(None),
        }
    }

    fn agent(
        &self,
        settings: &ModelSettings,
        task: &Task,
        key: Option<ApiKey>,
    ) -> Result<Box<dyn ModelClient>, String> {
        if settings.provider == "builtin" {
            return match settings.model.as_str() {
                "noop" => Ok(Box::new(BuiltinAgent::Noop)),
                "oracle" => Ok(Box::new(BuiltinAgent::Oracle {
                    plan: task
                        .reference_solution
                        .iter()
                        .map(|s| PlannedCall {
                            tool_name: s.tool_name.clone(),
                            parameters: s.parameters.clone(),
                        })
                        .collect(),
                    final_answer: task.final_answer.clone(),
                })),
                other => Err(format!("builtin model `{other}` does not exist")),
            };
        }
        if settings.has_api_key && key.is_none() {
            return Err("the run's API key is no longer available".to_string());
        }
        llm::client_for(&self.http, settings, key, &self.limits).map_err(|e| e.to_string())
    }
}
