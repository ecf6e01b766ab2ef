//! The wire shapes of runs and rollouts: the seed's RunStatus fields first, then our
//! extensions. Built from projection views; nothing here is stored.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::domain::budget::Budget;
use crate::domain::chat::Message;
use crate::domain::events::{CompletionReason, ForkParent, ModelSettings, NpcReplied, TokenUsage};
use crate::domain::faults::ToolFaults;
use crate::domain::rollout::RolloutStatus;
use crate::domain::verdict::{RubricVerdict, Verdict};
use crate::projections::{
    RolloutView, RunOwner, RunView, StatusChange, ToolCallView, VerdictRecord, Views,
};

#[derive(Serialize, utoipa::ToSchema)]
pub struct RolloutSummary {
    pub rollout_id: String,
    pub scenario_id: String,
    pub task_id: String,
    /// The task family's instance (0: the task as written).
    pub instance_seed: u64,
    pub run_id: String,
    pub status: RolloutStatus,
    pub steps: u32,
    pub score: Option<f64>,
    pub error: Option<String>,
}

impl RolloutSummary {
    pub fn of(r: &RolloutView) -> Self {
        RolloutSummary {
            rollout_id: r.rollout_id.clone(),
            scenario_id: r.scenario_id.clone(),
            task_id: r.task_id.clone(),
            instance_seed: r.instance_seed,
            run_id: r.run_id.clone(),
            status: r.status,
            steps: r.steps,
            score: r.score(),
            error: r.error.clone(),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RunStatus {
    pub run_id: String,
    pub scenario_id: String,
    pub source: String,
    pub total: u32,
    pub completed: u32,
    pub failed: u32,
    pub in_progress: u32,
    pub pending: u32,
    pub running: u32,
    pub rollout_ids: Vec<String>,
    pub cancelled: u32,
    pub status: &'static str,
    pub task_ids: Vec<String>,
    pub model_config: ModelConfigView,
    pub usage: TokenUsage,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Set on a fork: the rollout and step it branched from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<ForkParent>,
    /// The run's injected tool failures, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_faults: Option<ToolFaults>,
    /// The node driving the run, when nodes share the log and hold leases.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<RunOwner>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollouts: Option<Vec<RolloutSummary>>,
    /// Stopped because its budget is spent (`status` is `paused`) until resumed.
    pub paused: bool,
    pub pause_reason: Option<String>,
    /// The budget in force, if any.
    pub budget: Option<Budget>,
    pub spent: Spent,
    /// Groups, consumers and the policy in force (`GET /runs/{run_id}/groups`); shown
    /// with the breakdown, and always for a continuous run or one with a consumer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feed: Option<super::feed::FeedStatus>,
}

/// What a run's rollouts have spent.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Spent {
    pub tokens: u64,
    /// At the prices of the run's models when it was launched; `null` when the price
    /// table had none.
    pub cost_usd: Option<f64>,
}

/// A ModelConfig as shown back: the key is never echoed, only redacted.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ModelConfigView {
    pub model: String,
    pub provider: String,
    pub api_key: Option<&'static str>,
    pub base_url: Option<String>,
    pub temperature: f64,
    pub max_steps: u32,
    pub system_prompt: Option<String>,
    pub tool_server_url: Option<String>,
    pub log_prob: bool,
    pub summarize_every_n_turns: u32,
    pub context_stride: u32,
    /// The token-exact settings, shown only when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub return_tokens: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_in: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_parser: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<String>,
}

impl ModelConfigView {
    pub fn of(m: &ModelSettings) -> Self {
        ModelConfigView {
            model: m.model.clone(),
            provider: m.provider.clone(),
            api_key: m.has_api_key.then_some("***"),
            base_url: m.base_url.clone(),
            temperature: m.temperature,
            max_steps: m.max_steps,
            system_prompt: m.system_prompt.clone(),
            tool_server_url: m.tool_server_url.clone(),
            log_prob: m.log_prob,
            summarize_every_n_turns: m.summarize_every_n_turns,
            context_stride: m.context_stride,
            return_tokens: m.tokens.as_ref().map(|t| t.return_tokens),
            token_in: m.tokens.as_ref().map(|t| t.token_in),
            tokenizer: m.tokens.as_ref().and_then(|t| t.tokenizer.clone()),
            tool_call_parser: m.tokens.as_ref().and_then(|t| t.tool_call_parser.clone()),
            policy_version: m.tokens.as_ref().and_then(|t| t.policy_version.clone()),
        }
    }
}

impl RunStatus {
    /// `with_ids`: fill `rollout_ids`; `breakdown`: add one summary per rollout.
    pub fn of(run: &RunView, views: &Views, with_ids: bool, breakdown: bool) -> Self {
        let c = &run.counts;
        RunStatus {
            run_id: run.run_id.clone(),
            scenario_id: run.scenario_id.clone(),
            source: run.source.clone(),
            total: c.total,
            completed: c.completed,
            failed: c.failed,
            in_progress: c.in_progress(),
            pending: c.pending,
            running: c.running,
            rollout_ids: if with_ids {
                run.rollout_ids.clone()
            } else {
                vec![]
            },
            cancelled: c.cancelled,
            status: run.state(),
            task_ids: run.task_ids.clone(),
            model_config: ModelConfigView::of(&run.model),
            usage: run.usage.clone(),
            created_at: run.created_at,
            finished_at: run.finished_at,
            parent: run.parent.clone(),
            tool_faults: run.tool_faults,
            owner: run.owner.clone(),
            rollouts: breakdown.then(|| {
                run.rollout_ids
                    .iter()
                    .filter_map(|id| views.rollout(id))
                    .map(RolloutSummary::of)
                    .collect()
            }),
            paused: run.paused,
            pause_reason: run.pause_reason.clone(),
            budget: run.budget,
            spent: Spent {
                tokens: run.spent.tokens,
                cost_usd: run.prices.map(|_| run.spent.cost_usd),
            },
            feed: (breakdown || !run.feed.is_empty()).then(|| super::feed::FeedStatus::of(run)),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RolloutDetail {
    pub rollout_id: String,
    pub run_id: String,
    pub scenario_id: String,
    pub task_id: String,
    pub status: RolloutStatus,
    pub seed: u64,
    /// Which instance of the task family it played (0: the task as written).
    pub instance_seed: u64,
    pub steps: u32,
    pub max_steps: u32,
    pub score: Option<f64>,
    pub label: Option<String>,
    /// The programmatic checks' verdict.
    pub verdict: Option<Verdict>,
    /// The universal verifier's grade against the task's `rubric_markdown`.
    pub rubric: Option<RubricVerdict>,
    /// Every verdict the rollout was given, oldest first, the current one last:
    /// its own, then one per re-verification (`POST /runs/{run_id}/reverify`).
    pub verdict_history: Vec<VerdictRecord>,
    pub completion_reason: Option<CompletionReason>,
    pub error: Option<String>,
    pub trajectory: Vec<Message>,
    pub tool_calls: Vec<ToolCallView>,
    pub logprobs: Vec<Value>,
    /// Emails simulated people sent the agent, with where they arrived.
    pub npc_replies: Vec<NpcReplied>,
    pub usage: TokenUsage,
    pub timings: Timings,
    pub status_events: Vec<StatusChange>,
    /// The final state of every tool server of the rollout (`null` for a remote
    /// environment or a rollout that has not started).
    pub environment_state: Option<Value>,
    /// The caller's opaque `client_context` from the task's override, returned as is.
    pub client_context: Option<Value>,
    #[serde(skip)]
    pub task_override: Option<Value>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Timings {
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    pub model_latency_ms: f64,
}

impl Timings {
    pub fn of(r: &RolloutView) -> Self {
        Timings {
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            duration_ms: match (r.started_at, r.finished_at) {
                (Some(s), Some(f)) => Some((f - s).num_milliseconds()),
                _ => None,
            },
            model_latency_ms: r.model_latency_ms,
        }
    }
}

/// A rollout as the original service's `/rollouts` resource shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RolloutRecord {
    pub rollout_id: String,
    pub run_id: String,
    pub scenario_id: String,
    pub task_id: String,
    /// The task family's instance (0: the task as written).
    pub instance_seed: u64,
    pub status: RolloutStatus,
    /// Finer than `status`: `queued`, `agent_running`, `verifying` or `finished`.
    pub phase: &'static str,
    pub current_step: u32,
    pub max_steps: u32,
    pub timings: Timings,
    /// Once finished: whether the task was solved (Full Credit) and why not.
    pub result: Option<RolloutResult>,
    /// `final_answer`, `max_steps`, `error` or `cancelled`, once finished.
    pub termination_reason: Option<&'static str>,
    pub usage: TokenUsage,
    pub status_events: Vec<StatusChange>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RolloutResult {
    pub success: bool,
    pub score: Option<f64>,
    pub label: Option<&'static str>,
    pub message: String,
}

impl RolloutRecord {
    pub fn of(r: &RolloutView) -> Self {
        let phase = match r.status {
            RolloutStatus::Pending => "queued",
            RolloutStatus::Running => "agent_running",
            RolloutStatus::Verifying => "verifying",
            _ => "finished",
        };
        let termination_reason = match r.status {
            RolloutStatus::Completed => r.completion_reason.map(|c| match c {
                CompletionReason::FinalAnswer => "final_answer",
                CompletionReason::MaxSteps => "max_steps",
            }),
            RolloutStatus::Failed => Some("error"),
            RolloutStatus::Cancelled => Some("cancelled"),
            _ => None,
        };
        let result = r.status.is_terminal().then(|| {
            let score = r.score();
            let message = match (&r.verdict, &r.error) {
                (_, Some(error)) => error.clone(),
                (Some(verdict), None) => {
                    let passed = verdict.checks.iter().filter(|c| c.passed).count();
                    let mut message = format!(
                        "{}: {passed}/{} checks passed",
                        r.label().unwrap_or_default(),
                        verdict.checks.len()
                    );
                    if let Some(rubric) = &r.rubric {
                        message.push_str(&format!("; rubric {}", rubric_summary(rubric)));
                    }
                    message
                }
                (None, None) => "finished without a verdict".to_string(),
            };
            RolloutResult {
                success: r.status == RolloutStatus::Completed && score.is_some_and(|s| s >= 1.0),
                score,
                label: r.label(),
                message,
            }
        });
        RolloutRecord {
            rollout_id: r.rollout_id.clone(),
            run_id: r.run_id.clone(),
            scenario_id: r.scenario_id.clone(),
            task_id: r.task_id.clone(),
            instance_seed: r.instance_seed,
            status: r.status,
            phase,
            current_step: r.steps,
            max_steps: r.max_steps,
            timings: Timings::of(r),
            result,
            termination_reason,
            usage: r.usage.clone(),
            status_events: r.status_events.clone(),
        }
    }
}

fn rubric_summary(rubric: &RubricVerdict) -> String {
    use crate::domain::verdict::RubricStatus;
    match (rubric.status, &rubric.label) {
        (RubricStatus::Graded, Some(label)) => label.clone(),
        (RubricStatus::Skipped, _) => format!("skipped ({})", rubric.reason),
        (_, _) => format!("not graded ({})", rubric.reason),
    }
}

impl RolloutDetail {
    pub fn started(&self) -> bool {
        self.timings.started_at.is_some()
    }

    /// What `r` did call by call, read from its stream.
    pub fn with_content(mut self, content: crate::projections::RolloutContent) -> Self {
        self.trajectory = content.trajectory;
        self.tool_calls = content.tool_calls;
        self.logprobs = content.logprobs;
        self.npc_replies = content.npc_replies;
        self
    }

    /// The summary of `r`; its content comes from [`Self::with_content`].
    pub fn of(r: &RolloutView) -> Self {
        RolloutDetail {
            rollout_id: r.rollout_id.clone(),
            run_id: r.run_id.clone(),
            scenario_id: r.scenario_id.clone(),
            task_id: r.task_id.clone(),
            status: r.status,
            seed: r.seed,
            instance_seed: r.instance_seed,
            steps: r.steps,
            max_steps: r.max_steps,
            score: r.score(),
            label: r.label().map(str::to_string),
            verdict: r.verdict.clone(),
            rubric: r.rubric.clone(),
            verdict_history: r.verdict_history(),
            completion_reason: r.completion_reason,
            error: r.error.clone(),
            trajectory: vec![],
            tool_calls: vec![],
            logprobs: vec![],
            npc_replies: vec![],
            usage: r.usage.clone(),
            timings: Timings::of(r),
            status_events: r.status_events.clone(),
            environment_state: None,
            client_context: None,
            task_override: None,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct LaunchAnswer {
    pub run_id: String,
    pub run_status: RunStatus,
    pub rollouts: Vec<RolloutSummary>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RunList {
    pub total: usize,
    pub runs: Vec<RunStatus>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RunCancelled {
    pub run_id: String,
    pub cancelled_rollouts: usize,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RunResumedAnswer {
    pub run_id: String,
    /// Unfinished rollouts that go on (from their last recorded step).
    pub resumed_rollouts: usize,
    /// The budget now in force (`null`: unlimited).
    pub budget: Option<Budget>,
}

/// `POST /runs?dry_run=true`: what the run would cost, from past runs.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DryRunAnswer {
    pub dry_run: bool,
    /// Rollouts the run would have (task_ids × rollout_count).
    pub rollouts: u32,
    pub estimate: Estimate,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Estimate {
    /// Mean tokens per rollout × rollouts, over the tasks with history.
    pub total_tokens: u64,
    /// At today's price table; `null` without a price for the model.
    pub cost_usd: Option<f64>,
    /// Completed past rollouts the estimate is based on.
    pub based_on_rollouts: u32,
    pub per_task: Vec<TaskEstimate>,
    /// Says which tasks had no history (left out of the totals), if any.
    pub note: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TaskEstimate {
    pub task_id: String,
    /// `null` when no completed rollout of the task by this model was seen.
    pub mean_tokens: Option<f64>,
    pub rollouts_seen: u32,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RunDeleted {
    pub run_id: String,
    pub deleted_rollouts: usize,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RolloutPage {
    pub total: usize,
    pub rollouts: Vec<RolloutRecord>,
}

/// A tool server of an environment and where it answers.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ToolServerLink {
    pub name: String,
    pub tool_server_url: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ToolServerKind {
    pub name: String,
    pub server_type: &'static str,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EnvironmentCreated {
    pub environment_id: String,
    pub environment_url: String,
    pub scenario_id: String,
    pub task_id: String,
    pub seed: u64,
    /// The instance of a task family (0: the task as written).
    pub instance_seed: u64,
    /// The instance's instructions, as an agent of a run is told them.
    pub description: String,
    pub tool_servers: Vec<ToolServerLink>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EnvironmentDeleted {
    pub environment_id: String,
    pub deleted: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ToolList {
    pub tools: Vec<crate::tools::ToolSpec>,
}

/// What a tool call answers an outside agent.
#[derive(Serialize, utoipa::ToSchema)]
pub struct StepAnswer {
    pub observation: String,
    pub reward: f64,
    pub done: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub is_error: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ServerHealth {
    pub status: &'static str,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ScenarioSummary {
    pub scenario_id: String,
    pub name: String,
    pub description: String,
    pub num_tasks: usize,
    pub num_npcs: usize,
    pub tool_servers: Vec<ToolServerKind>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TaskSummary {
    pub task_id: String,
    pub name: String,
    pub version: String,
    pub category: String,
    pub difficulty: String,
    pub visibility: String,
    pub description: String,
    pub tool_servers: Vec<ToolServerLink>,
    /// `{"task_id", "title", "overview", "scoring": [...]}`.
    pub rubric: Value,
    /// The profiles of the simulated people of the task.
    pub npc_profiles: Vec<Value>,
    /// The seed data files the task's agent can read (`/scenarios/{id}/seed_data/{file}`).
    pub seed_data: Vec<String>,
    /// A task family's parameters and how many values each has (the task is shown as
    /// its instance 0); empty for a task of one instance.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub parameters: std::collections::BTreeMap<String, usize>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TaskList {
    pub scenario_id: String,
    pub tasks: Vec<TaskSummary>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct NpcList {
    pub scenario_id: String,
    pub npc_profiles: Vec<Value>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SeedFiles {
    pub scenario_id: String,
    pub files: Vec<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SeedFile {
    pub scenario_id: String,
    pub filename: String,
    pub content: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    pub status: &'static str,
    pub version: &'static str,
    /// False while the event store cannot be reached (KurrentDB backend).
    pub store_connected: bool,
    /// Events in the log.
    pub events: u64,
    /// Events not yet applied to the views.
    pub projection_lag: u64,
}
