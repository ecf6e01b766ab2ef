//! The step loop of one rollout: model → tool calls → tool results → … until the
//! model answers without tools or `max_steps` turns are used, then verification.
//!
//! Every decision comes from [`RolloutState::next_action`] over the rollout's own
//! events, and every result is appended before the next action, so the loop can be
//! stopped at any point (crash, cancel) and resumed from the log without redoing a
//! recorded step. The environment is rebuilt the same way: the seed plus the recorded
//! tool calls, replayed through the same function that made them.
//!
//! Here: [`drive`] and the dispatcher, which sets up what a rollout's steps share and
//! takes one step per action (`steps`). Beside it: the driver recording to the log
//! (`driver`), the environment and simulated people (`tools`), summaries (`summary`),
//! the rubric judge (`judge`), redaction (`redact`) and the agents (`agents`).
//!
//! [`RolloutState::next_action`]: crate::domain::rollout::RolloutState::next_action

mod agents;
mod driver;
mod judge;
mod redact;
mod steps;
mod summary;
mod tools;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::breakpoints::Breakpoint;
use super::run::{RunBudget, RunPolicy};
use super::Deps;
use crate::config::secrets::RunKeys;
use crate::domain::chat::ToolSet;
use crate::domain::events::{
    Event, ModelSettings, OnStale, RolloutCancelled, RolloutFailed, RunLaunched, ScheduledRollout,
    TokenSettings,
};
use crate::domain::faults::ToolFaults;
use crate::domain::rollout::{NextAction, RolloutStatus};
use crate::journal;
use crate::llm::ModelClient;
use crate::projections::RolloutContent;
use crate::scenarios::{Scenario, Task};
use crate::store::StoreError;
use crate::tools::remote::RemoteEnvironment;
use agents::policy_settings;
use driver::{Driver, Failure, StepError};
use tools::{rebuild_local, Tools};

pub use agents::{AgentFactory, DefaultAgents, Judge};
pub(super) use judge::grade_rubric;

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
    driver
        .deps
        .breakpoints
        .reach(|| Breakpoint::RolloutStarted {
            run_id: driver.job.run.run_id.clone(),
            rollout_id: rollout_id.clone(),
        });
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

/// What every step of a rollout reads, set up once before the first: borrowed from
/// [`run_steps`] (the run, the task) where it can be, and the model client, rebuilt
/// when the policy in force changes. Its steps are in `steps`.
struct Context<'a> {
    deps: &'a Deps,
    run: &'a RunLaunched,
    rollout: &'a ScheduledRollout,
    scenario: &'a Scenario,
    task: &'a Task,
    tools: Tools,
    tool_definitions: Arc<ToolSet>,
    keys: RunKeys,
    /// The policy the client answers as, and its settings.
    policy_ordinal: u32,
    settings: Cow<'a, ModelSettings>,
    model: Box<dyn ModelClient>,
    /// `max_staleness` when a stale rollout restarts (`on_stale: restart`).
    stale_restart: Option<u32>,
    token_settings: Option<&'a TokenSettings>,
    /// Whether the client holds the token sequence its rollout recorded.
    tokens_restored: bool,
    token_in: bool,
    npc_model: Option<Box<dyn ModelClient>>,
    /// Whether steps may run ahead of the log.
    free: bool,
    max_steps: u32,
    provider: &'a str,
    has_rubric: bool,
    /// The run's tool faults and the rollout's place in its run.
    faults: Option<(ToolFaults, usize)>,
}

/// Sets up the rollout's [`Context`], then takes the step each [`NextAction`] asks for
/// until the rollout is finished. Every step but the start and the completion is
/// observed in the step metrics, with the part of it spent waiting for a model.
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
    let tools = match &run.model.tool_server_url {
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
    let (policy_ordinal, settings) = policy_settings(&run.model, &driver.job.policy);
    let model = deps
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
    let tokens_restored = !token_settings.is_some_and(|t| t.records_tokens());
    let token_in = token_settings.is_some_and(|t| t.token_in);
    let npc_model = deps
        .agents
        .npc_agent(&run, keys.user_model.clone())
        .map_err(Failure)?;
    // Steps may run ahead of the log only if asking again is free for every model a
    // step calls: a simulated person on a provider's model is not.
    let free =
        model.free_to_ask_again() && npc_model.as_ref().is_none_or(|npc| npc.free_to_ask_again());
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
    let mut context = Context {
        deps: &deps,
        run: &run,
        rollout: &rollout,
        scenario,
        task,
        tools,
        tool_definitions,
        keys,
        policy_ordinal,
        settings,
        model,
        stale_restart,
        token_settings,
        tokens_restored,
        token_in,
        npc_model,
        free,
        max_steps: run.model.max_steps,
        provider: &run.model.provider,
        has_rubric: task.judge_rubric().is_some(),
        faults,
    };

    loop {
        if driver.job.cancel.is_cancelled() {
            return Err(StepError::Cancelled);
        }
        let action = driver
            .state
            .next_action(context.max_steps, context.has_rubric);
        let started = Instant::now();
        // The kind of step, and the part of it spent waiting for a model (or the judge).
        let (kind, model_wait) = match action {
            NextAction::Finished => return Ok(()),
            NextAction::Start => {
                context.start(driver).await?;
                continue;
            }
            NextAction::CallModel { step } => match context.call_model(driver, step).await? {
                Some(latency) => ("model", latency),
                // A summary was recorded instead of the call.
                None => continue,
            },
            NextAction::CallTool { step, call } => {
                context.call_tool(driver, step, &call).await?;
                ("tool", Duration::ZERO)
            }
            NextAction::Verify { .. } => {
                context.verify(driver).await?;
                ("verify", Duration::ZERO)
            }
            NextAction::GradeRubric => ("rubric", context.grade_rubric(driver).await?),
            NextAction::Complete { reason } => {
                context.complete(driver, reason).await?;
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
        deps.breakpoints.reach(|| Breakpoint::StepTaken {
            rollout_id: rollout.rollout_id.clone(),
            kind,
        });
    }
}
