//! The wire shapes of runs and rollouts: the seed's RunStatus fields first, then our
//! extensions. Built from projection views; nothing here is stored.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::domain::chat::Message;
use crate::domain::events::{CompletionReason, ModelSettings, NpcReplied, TokenUsage};
use crate::domain::rollout::RolloutStatus;
use crate::domain::verdict::{RubricVerdict, Verdict};
use crate::projections::{RolloutView, RunView, StatusChange, ToolCallView, Views};

#[derive(Serialize)]
pub struct RolloutSummary {
    pub rollout_id: String,
    pub scenario_id: String,
    pub task_id: String,
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
            run_id: r.run_id.clone(),
            status: r.status,
            steps: r.steps,
            score: r.score(),
            error: r.error.clone(),
        }
    }
}

#[derive(Serialize)]
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollouts: Option<Vec<RolloutSummary>>,
}

/// A ModelConfig as shown back: the key is never echoed, only redacted.
#[derive(Serialize)]
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
            rollouts: breakdown.then(|| {
                run.rollout_ids
                    .iter()
                    .filter_map(|id| views.rollout(id))
                    .map(RolloutSummary::of)
                    .collect()
            }),
        }
    }
}

#[derive(Serialize)]
pub struct RolloutDetail {
    pub rollout_id: String,
    pub run_id: String,
    pub scenario_id: String,
    pub task_id: String,
    pub status: RolloutStatus,
    pub seed: u64,
    pub steps: u32,
    pub max_steps: u32,
    pub score: Option<f64>,
    pub label: Option<String>,
    /// The programmatic checks' verdict.
    pub verdict: Option<Verdict>,
    /// The universal verifier's grade against the task's `rubric_markdown`.
    pub rubric: Option<RubricVerdict>,
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

#[derive(Serialize)]
pub struct Timings {
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    pub model_latency_ms: f64,
}

impl RolloutDetail {
    pub fn started(&self) -> bool {
        self.timings.started_at.is_some()
    }

    pub fn of(r: &RolloutView) -> Self {
        RolloutDetail {
            rollout_id: r.rollout_id.clone(),
            run_id: r.run_id.clone(),
            scenario_id: r.scenario_id.clone(),
            task_id: r.task_id.clone(),
            status: r.status,
            seed: r.seed,
            steps: r.steps,
            max_steps: r.max_steps,
            score: r.score(),
            label: r.label().map(str::to_string),
            verdict: r.verdict.clone(),
            rubric: r.rubric.clone(),
            completion_reason: r.completion_reason,
            error: r.error.clone(),
            trajectory: r.trajectory.clone(),
            tool_calls: r.tool_calls.clone(),
            logprobs: r.logprobs.clone(),
            npc_replies: r.npc_replies.clone(),
            usage: r.usage.clone(),
            timings: Timings {
                created_at: r.created_at,
                started_at: r.started_at,
                finished_at: r.finished_at,
                duration_ms: match (r.started_at, r.finished_at) {
                    (Some(s), Some(f)) => Some((f - s).num_milliseconds()),
                    _ => None,
                },
                model_latency_ms: r.model_latency_ms,
            },
            status_events: r.status_events.clone(),
            environment_state: None,
            client_context: None,
            task_override: None,
        }
    }
}
