//! The event catalog: every state change of rl-gym, past tense and specific.
//!
//! Run-level events live in the stream `run-{run_id}`, everything a rollout does in
//! `rollout-{rollout_id}`. The persisted shape is `(event_type, schema_version, data)`;
//! an old schema version is upgraded on read by a chain of small upcasters (v1 → v2 →
//! …), never by editing history. `events/schema/` documents each version and
//! `events/golden/` holds logs that every future version must still replay.
//!
//! Over 600 lines: the catalog reads as one list, each event beside its payload.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::budget::{Budget, RunPrices};
use super::chat::Message;
use super::faults::ToolFaults;
use super::packed::PackedTokens;
use super::verdict::{RubricVerdict, Verdict};

/// Providers a run may name (`ModelSettings::provider`). `builtin` is rl-gym's own (no key, no network).
pub const PROVIDERS: &[&str] = &[
    "custom",
    "openai",
    "anthropic",
    "aws-bedrock",
    "azure-openai",
    "gcp",
    "builtin",
];

/// The model configuration as recorded: everything but the API key, which never
/// enters the log in plain text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSettings {
    pub model: String,
    pub provider: String,
    pub base_url: Option<String>,
    pub temperature: f64,
    pub max_steps: u32,
    pub system_prompt: Option<String>,
    pub tool_server_url: Option<String>,
    pub log_prob: bool,
    pub summarize_every_n_turns: u32,
    pub context_stride: u32,
    /// Whether a key was given (the key itself is held by the secret store).
    pub has_api_key: bool,
    /// Token-exact turns (issue 23): `return_tokens`, `token_in` and their settings.
    /// Absent (and not written) when none is set, so such a run's events are
    /// byte-identical to those of a build without them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<TokenSettings>,
}

/// A ModelConfig's defaults, for the fields a launch leaves out.
pub const DEFAULT_TEMPERATURE: f64 = 0.7;
pub const DEFAULT_MAX_STEPS: u32 = 30;
pub const DEFAULT_CONTEXT_STRIDE: u32 = 3;

impl ModelSettings {
    /// `provider`'s `model` with a ModelConfig's defaults (no key): what a launch that
    /// gives only those two fields records.
    pub fn new(provider: &str, model: &str) -> ModelSettings {
        ModelSettings {
            model: model.to_string(),
            provider: provider.to_string(),
            base_url: None,
            temperature: DEFAULT_TEMPERATURE,
            max_steps: DEFAULT_MAX_STEPS,
            system_prompt: None,
            tool_server_url: None,
            log_prob: false,
            summarize_every_n_turns: 0,
            context_stride: DEFAULT_CONTEXT_STRIDE,
            has_api_key: false,
            tokens: None,
        }
    }

    /// The builtin agent `model` (`oracle`, `noop`, …) with a ModelConfig's defaults.
    pub fn builtin(model: &str) -> ModelSettings {
        ModelSettings::new("builtin", model)
    }
}

/// The token-exact part of a ModelConfig. `return_tokens` records each turn's ids as
/// the server sampled them (OpenAI-compatible chat with vLLM's `return_token_ids`);
/// `token_in` makes rl-gym own the token sequence (rendered with `tokenizer`'s chat
/// template, sent as ids to `/v1/completions`, tool calls read by `tool_call_parser`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenSettings {
    #[serde(default, skip_serializing_if = "is_false")]
    pub return_tokens: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub token_in: bool,
    /// A local directory with `tokenizer.json`, `tokenizer_config.json` and the template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<String>,
    /// `hermes` or `llama3_json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_parser: Option<String>,
    /// The trainer's weights version (free text), recorded with every turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<String>,
}

impl TokenSettings {
    /// Whether turns record their token ids.
    pub fn records_tokens(&self) -> bool {
        self.return_tokens || self.token_in
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One model turn's tokens, packed (see [`PackedTokens`]). The prompt is stored as
/// what it adds: its first `prompt_reused` ids are the previous turn's prompt and
/// completion (all of them when the sequence only grows, as with `token_in`), and
/// `prompt` holds the ids after those. So the whole sequence of a rollout is rebuilt
/// from its turns alone, and a long conversation is not stored once per turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnTokens {
    #[serde(default)]
    pub prompt_reused: u32,
    /// The prompt's ids after the reused ones (no log-probabilities).
    pub prompt: PackedTokens,
    /// The sampled ids, with their log-probabilities when the server gave them.
    pub completion: PackedTokens,
    /// `stop`, `length`, `tool_calls`, … as the server said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduledRollout {
    pub rollout_id: String,
    pub task_id: String,
    /// Seeds the rollout's environment (simulated ids and clock).
    pub seed: u64,
    /// Which instance of a task family it plays (0: the task as written). Optional
    /// within v1.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub instance_seed: u64,
}

/// A field left out of the payload while it has its default: a number that is 0.
pub(crate) fn is_zero<T: Default + PartialEq>(n: &T) -> bool {
    *n == T::default()
}

/// Where a forked run branches off: the source rollout and the step after which its
/// conversation and environment are taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ForkParent {
    pub run_id: String,
    pub rollout_id: String,
    pub at_step: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunLaunched {
    pub run_id: String,
    pub scenario_id: String,
    pub source: String,
    pub task_ids: Vec<String>,
    pub rollout_count: u32,
    pub max_parallel: Option<u32>,
    pub model: ModelSettings,
    pub user_model: Option<ModelSettings>,
    /// The judge of tasks with a `rubric_markdown` (`judge_model_config`); without
    /// it the server's configured judge, if any, grades. Optional within v1: older
    /// payloads have no such field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge_model: Option<ModelSettings>,
    #[serde(default)]
    pub task_overrides: BTreeMap<String, Value>,
    /// Set on a fork: each rollout starts from this rollout's first `at_step` steps.
    /// Optional within v1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ForkParent>,
    /// Injected tool failures (`tool_faults`). Optional within v1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_faults: Option<ToolFaults>,
    pub rollouts: Vec<ScheduledRollout>,
    pub launched_at: DateTime<Utc>,
    /// The spending cap (`budget`); optional within v1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
    /// The prices of the run's models at launch, when the price table has them;
    /// optional within v1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prices: Option<RunPrices>,
    /// A continuous run: its groups are drawn as it goes (`GroupScheduled`) and
    /// `rollouts` is empty. Optional within v1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuous: Option<ContinuousSettings>,
}

/// How a continuous run keeps producing (issue 24): a group of `rollout_count`
/// rollouts of one task drawn by `seed`, at most `max_parallel` rollouts in flight,
/// until cancelled or `max_groups` groups; no new group while `max_unconsumed_groups`
/// complete groups wait for a consumer's acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContinuousSettings {
    pub max_groups: Option<u32>,
    pub max_unconsumed_groups: u32,
    /// A rollout whose first turn is more than this many policy versions behind the
    /// current one is stale.
    pub max_staleness: Option<u32>,
    pub on_stale: OnStale,
    pub seed: u64,
}

/// What happens to a stale rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnStale {
    /// Cancelled before its next model call and replaced in its group by a fresh
    /// rollout of the same task and seed (`RolloutRestarted`).
    Restart,
    /// Runs to its end and is delivered marked `stale` (counted in its group).
    Finish,
}

/// A continuous run drew its next group: `rollouts` of `task_id`, all pending.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupScheduled {
    pub run_id: String,
    pub group: u32,
    pub task_id: String,
    pub rollouts: Vec<ScheduledRollout>,
    pub scheduled_at: DateTime<Utc>,
}

/// A consumer of the run's feed acknowledged these complete groups: they are never
/// handed to it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupConsumed {
    pub run_id: String,
    pub consumer: String,
    pub groups: Vec<u32>,
    pub consumed_at: DateTime<Utc>,
}

/// Every model turn from now on is answered by this policy: `version` (free text) at
/// `base_url` (`None`: the launch's endpoint). `ordinal` counts the updates from 1;
/// the launch's policy is 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyUpdated {
    pub run_id: String,
    pub version: String,
    pub base_url: Option<String>,
    pub ordinal: u32,
    pub updated_at: DateTime<Utc>,
}

/// A stale rollout (`on_stale: restart`) was cancelled and `rollout` takes its place
/// in `group`: the same task and seed, from scratch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutRestarted {
    pub run_id: String,
    pub group: u32,
    pub replaced: String,
    pub rollout: ScheduledRollout,
    pub reason: String,
    pub restarted_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunCancelRequested {
    pub run_id: String,
    pub requested_at: DateTime<Utc>,
}

/// The run's budget was spent: no rollout starts, the running ones stopped after
/// their step (unfinished, resumable).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunPaused {
    pub run_id: String,
    pub reason: String,
    pub tokens_used: u64,
    pub cost_usd: f64,
    pub paused_at: DateTime<Utc>,
}

/// A paused run goes on under a new budget (`None`: unlimited).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResumed {
    pub run_id: String,
    pub budget: Option<Budget>,
    pub resumed_at: DateTime<Utc>,
}

/// A node took a run's lease (`lease-{run_id}`, see [`crate::domain::lease`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunLeaseAcquired {
    pub run_id: String,
    pub node_id: String,
    /// One more than the previous holder's.
    pub term: u64,
    pub expires_at: DateTime<Utc>,
    pub acquired_at: DateTime<Utc>,
}

/// The holder extended its lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunLeaseRenewed {
    pub run_id: String,
    pub node_id: String,
    pub term: u64,
    pub expires_at: DateTime<Utc>,
    pub renewed_at: DateTime<Utc>,
}

/// The holder gave the run up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunLeaseReleased {
    pub run_id: String,
    pub node_id: String,
    pub term: u64,
    pub released_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunDeleted {
    pub run_id: String,
    pub deleted_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutStarted {
    pub rollout_id: String,
    pub run_id: String,
    pub task_id: String,
    /// The conversation the agent starts from (system prompt and task).
    pub messages: Vec<Message>,
    pub started_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCalled {
    pub rollout_id: String,
    pub step: u32,
    pub model: String,
    pub message: Message,
    pub usage: Option<TokenUsage>,
    /// Token log-probabilities as the provider returned them, when asked for.
    pub logprobs: Option<Value>,
    pub latency_ms: f64,
    pub called_at: DateTime<Utc>,
    /// The turn's token ids (`return_tokens` / `token_in`); optional within v1. Boxed:
    /// every event is as big as its biggest variant, and most turns carry none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Box<TurnTokens>>,
    /// Which policy answered: 0 the launch's (`policy_version`), n the n-th
    /// `PolicyUpdated` of the run, whose `version` it names; staleness is measured in
    /// it. A number, not the version's text, so that the most common event stays as
    /// small as it was. Optional within v1.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub policy_ordinal: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCalled {
    pub rollout_id: String,
    pub step: u32,
    pub call_id: String,
    pub server: Option<String>,
    pub tool_name: String,
    /// The arguments as the model wrote them (JSON text, possibly invalid).
    pub arguments: String,
    pub observation: String,
    pub is_error: bool,
    /// An injected failure (`tool_faults`): the call never reached the environment.
    /// Optional within v1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    pub latency_ms: f64,
    pub called_at: DateTime<Utc>,
}

/// An email a simulated person sent back, as delivered to the agent's inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NpcEmail {
    pub from: String,
    pub to: Vec<String>,
    #[serde(default)]
    pub cc: Vec<String>,
    pub subject: String,
    pub body: String,
    pub in_reply_to: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NpcReplied {
    pub rollout_id: String,
    pub step: u32,
    pub profile_id: String,
    /// Delivered after this many tool calls of the rollout: where it goes on replay.
    pub after_tool_calls: u32,
    pub email: NpcEmail,
    pub replied_at: DateTime<Utc>,
}

/// The older part of the conversation replaced by a model-written summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextSummarized {
    pub rollout_id: String,
    /// Taken before model turn `step`.
    pub step: u32,
    pub summary: String,
    /// Messages after the task (and any earlier summary) that the summary replaces.
    pub replaced_messages: u32,
    pub usage: Option<TokenUsage>,
    pub summarized_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutVerified {
    pub rollout_id: String,
    pub verdict: Verdict,
    pub verified_at: DateTime<Utc>,
}

/// The universal verifier's grade against the task's `rubric_markdown`, recorded
/// after the programmatic verdict (graded, or skipped/error with the reason).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RubricGraded {
    pub rollout_id: String,
    pub rubric: RubricVerdict,
    pub usage: Option<TokenUsage>,
    pub graded_at: DateTime<Utc>,
}

/// A finished rollout scored again from its recorded events with today's checks
/// (`POST /runs/{run_id}/reverify`). The earlier verdicts stay in the log; this one
/// is the rollout's verdict from now on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutReverified {
    pub rollout_id: String,
    pub verdict: Verdict,
    /// The rubric grade, when the task (as re-verified) has a rubric.
    pub rubric: Option<RubricVerdict>,
    pub usage: Option<TokenUsage>,
    /// The task override the re-verification used instead of the run's, if any.
    pub task_override: Option<Value>,
    pub reverified_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CompletionReason {
    /// The model answered without calling a tool.
    FinalAnswer,
    /// `max_steps` model turns were used.
    MaxSteps,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutCompleted {
    pub rollout_id: String,
    pub reason: CompletionReason,
    pub steps: u32,
    pub completed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutFailed {
    pub rollout_id: String,
    pub error: String,
    pub failed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutCancelled {
    pub rollout_id: String,
    pub reason: String,
    pub cancelled_at: DateTime<Utc>,
}

/// Every event of rl-gym. The variant name is the persisted `event_type`.
// The launch is boxed: it is five times the size of any other event, and every
// waiting rollout's step loop holds an event or two in its future.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum Event {
    RunLaunched(Box<RunLaunched>),
    RunCancelRequested(RunCancelRequested),
    RunDeleted(RunDeleted),
    RolloutStarted(RolloutStarted),
    ModelCalled(ModelCalled),
    ToolCalled(ToolCalled),
    NpcReplied(NpcReplied),
    ContextSummarized(ContextSummarized),
    RolloutVerified(RolloutVerified),
    RubricGraded(RubricGraded),
    RolloutReverified(RolloutReverified),
    RolloutCompleted(RolloutCompleted),
    RolloutFailed(RolloutFailed),
    RolloutCancelled(RolloutCancelled),
    RunPaused(RunPaused),
    RunResumed(RunResumed),
    RunLeaseAcquired(RunLeaseAcquired),
    RunLeaseRenewed(RunLeaseRenewed),
    RunLeaseReleased(RunLeaseReleased),
    GroupScheduled(GroupScheduled),
    GroupConsumed(GroupConsumed),
    PolicyUpdated(PolicyUpdated),
    RolloutRestarted(RolloutRestarted),
}

/// The schema version every event is written with today.
pub const CURRENT_SCHEMA_VERSION: u16 = 1;

/// Every event type, for the catalog test that keeps `events/schema/` in step.
pub const EVENT_TYPES: &[&str] = &[
    "RunLaunched",
    "RunCancelRequested",
    "RunDeleted",
    "RolloutStarted",
    "ModelCalled",
    "ToolCalled",
    "NpcReplied",
    "ContextSummarized",
    "RolloutVerified",
    "RubricGraded",
    "RolloutReverified",
    "RolloutCompleted",
    "RolloutFailed",
    "RolloutCancelled",
    "RunPaused",
    "RunResumed",
    "RunLeaseAcquired",
    "RunLeaseRenewed",
    "RunLeaseReleased",
    "GroupScheduled",
    "GroupConsumed",
    "PolicyUpdated",
    "RolloutRestarted",
];

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type {0}")]
    UnknownType(String),
    #[error("{event_type} v{version} is newer than this build understands (v{current})", current = CURRENT_SCHEMA_VERSION)]
    FutureVersion { event_type: String, version: u16 },
    #[error("{event_type} v{version} does not decode: {source}")]
    Invalid {
        event_type: String,
        version: u16,
        source: serde_json::Error,
    },
}

impl Event {
    pub fn event_type(&self) -> &'static str {
        match self {
            Event::RunLaunched(_) => "RunLaunched",
            Event::RunCancelRequested(_) => "RunCancelRequested",
            Event::RunDeleted(_) => "RunDeleted",
            Event::RolloutStarted(_) => "RolloutStarted",
            Event::ModelCalled(_) => "ModelCalled",
            Event::ToolCalled(_) => "ToolCalled",
            Event::NpcReplied(_) => "NpcReplied",
            Event::ContextSummarized(_) => "ContextSummarized",
            Event::RolloutVerified(_) => "RolloutVerified",
            Event::RubricGraded(_) => "RubricGraded",
            Event::RolloutReverified(_) => "RolloutReverified",
            Event::RolloutCompleted(_) => "RolloutCompleted",
            Event::RolloutFailed(_) => "RolloutFailed",
            Event::RolloutCancelled(_) => "RolloutCancelled",
            Event::RunPaused(_) => "RunPaused",
            Event::RunResumed(_) => "RunResumed",
            Event::RunLeaseAcquired(_) => "RunLeaseAcquired",
            Event::RunLeaseRenewed(_) => "RunLeaseRenewed",
            Event::RunLeaseReleased(_) => "RunLeaseReleased",
            Event::GroupScheduled(_) => "GroupScheduled",
            Event::GroupConsumed(_) => "GroupConsumed",
            Event::PolicyUpdated(_) => "PolicyUpdated",
            Event::RolloutRestarted(_) => "RolloutRestarted",
        }
    }

    /// The time the event states it happened (recorded, never read from a clock).
    pub fn time(&self) -> DateTime<Utc> {
        match self {
            Event::RunLaunched(e) => e.launched_at,
            Event::RunCancelRequested(e) => e.requested_at,
            Event::RunDeleted(e) => e.deleted_at,
            Event::RolloutStarted(e) => e.started_at,
            Event::ModelCalled(e) => e.called_at,
            Event::ToolCalled(e) => e.called_at,
            Event::NpcReplied(e) => e.replied_at,
            Event::ContextSummarized(e) => e.summarized_at,
            Event::RolloutVerified(e) => e.verified_at,
            Event::RubricGraded(e) => e.graded_at,
            Event::RolloutReverified(e) => e.reverified_at,
            Event::RolloutCompleted(e) => e.completed_at,
            Event::RolloutFailed(e) => e.failed_at,
            Event::RolloutCancelled(e) => e.cancelled_at,
            Event::RunPaused(e) => e.paused_at,
            Event::RunResumed(e) => e.resumed_at,
            Event::RunLeaseAcquired(e) => e.acquired_at,
            Event::RunLeaseRenewed(e) => e.renewed_at,
            Event::RunLeaseReleased(e) => e.released_at,
            Event::GroupScheduled(e) => e.scheduled_at,
            Event::GroupConsumed(e) => e.consumed_at,
            Event::PolicyUpdated(e) => e.updated_at,
            Event::RolloutRestarted(e) => e.restarted_at,
        }
    }

    /// The payload as persisted (without the type tag): the variant's own JSON,
    /// written straight to bytes (every step writes one; no JSON tree on the way).
    pub fn to_data(&self) -> Vec<u8> {
        match self {
            Event::RunLaunched(e) => serde_json::to_vec(e),
            Event::RunCancelRequested(e) => serde_json::to_vec(e),
            Event::RunDeleted(e) => serde_json::to_vec(e),
            Event::RolloutStarted(e) => serde_json::to_vec(e),
            Event::ModelCalled(e) => serde_json::to_vec(e),
            Event::ToolCalled(e) => serde_json::to_vec(e),
            Event::NpcReplied(e) => serde_json::to_vec(e),
            Event::ContextSummarized(e) => serde_json::to_vec(e),
            Event::RolloutVerified(e) => serde_json::to_vec(e),
            Event::RubricGraded(e) => serde_json::to_vec(e),
            Event::RolloutReverified(e) => serde_json::to_vec(e),
            Event::RolloutCompleted(e) => serde_json::to_vec(e),
            Event::RolloutFailed(e) => serde_json::to_vec(e),
            Event::RolloutCancelled(e) => serde_json::to_vec(e),
            Event::RunPaused(e) => serde_json::to_vec(e),
            Event::RunResumed(e) => serde_json::to_vec(e),
            Event::RunLeaseAcquired(e) => serde_json::to_vec(e),
            Event::RunLeaseRenewed(e) => serde_json::to_vec(e),
            Event::RunLeaseReleased(e) => serde_json::to_vec(e),
            Event::GroupScheduled(e) => serde_json::to_vec(e),
            Event::GroupConsumed(e) => serde_json::to_vec(e),
            Event::PolicyUpdated(e) => serde_json::to_vec(e),
            Event::RolloutRestarted(e) => serde_json::to_vec(e),
        }
        .unwrap_or_default()
    }

    /// Decodes a persisted event, upgrading an old schema version first.
    pub fn decode(event_type: &str, version: u16, data: &[u8]) -> Result<Event, DecodeError> {
        if !EVENT_TYPES.contains(&event_type) {
            return Err(DecodeError::UnknownType(event_type.to_string()));
        }
        if version > CURRENT_SCHEMA_VERSION {
            return Err(DecodeError::FutureVersion {
                event_type: event_type.to_string(),
                version,
            });
        }
        let invalid = |source| DecodeError::Invalid {
            event_type: event_type.to_string(),
            version,
            source,
        };
        // Today's version needs no upcast: straight from bytes to the type, without a
        // JSON tree in between (replay decodes every event of the log).
        if version == CURRENT_SCHEMA_VERSION {
            return decode_current(event_type, data).map_err(invalid);
        }
        let data: Value = serde_json::from_slice(data).map_err(invalid)?;
        let data = upcast(event_type, version, data);
        let tagged = serde_json::json!({ "type": event_type, "data": data });
        serde_json::from_value(tagged).map_err(invalid)
    }
}

/// A payload of the current schema version.
fn decode_current(event_type: &str, data: &[u8]) -> Result<Event, serde_json::Error> {
    use serde_json::from_slice as de;
    Ok(match event_type {
        "RunLaunched" => Event::RunLaunched(Box::new(de(data)?)),
        "RunCancelRequested" => Event::RunCancelRequested(de(data)?),
        "RunDeleted" => Event::RunDeleted(de(data)?),
        "RolloutStarted" => Event::RolloutStarted(de(data)?),
        "ModelCalled" => Event::ModelCalled(de(data)?),
        "ToolCalled" => Event::ToolCalled(de(data)?),
        "NpcReplied" => Event::NpcReplied(de(data)?),
        "ContextSummarized" => Event::ContextSummarized(de(data)?),
        "RolloutVerified" => Event::RolloutVerified(de(data)?),
        "RubricGraded" => Event::RubricGraded(de(data)?),
        "RolloutReverified" => Event::RolloutReverified(de(data)?),
        "RolloutCompleted" => Event::RolloutCompleted(de(data)?),
        "RolloutFailed" => Event::RolloutFailed(de(data)?),
        "RolloutCancelled" => Event::RolloutCancelled(de(data)?),
        "RunPaused" => Event::RunPaused(de(data)?),
        "RunResumed" => Event::RunResumed(de(data)?),
        "RunLeaseAcquired" => Event::RunLeaseAcquired(de(data)?),
        "RunLeaseRenewed" => Event::RunLeaseRenewed(de(data)?),
        "RunLeaseReleased" => Event::RunLeaseReleased(de(data)?),
        "GroupScheduled" => Event::GroupScheduled(de(data)?),
        "GroupConsumed" => Event::GroupConsumed(de(data)?),
        "PolicyUpdated" => Event::PolicyUpdated(de(data)?),
        "RolloutRestarted" => Event::RolloutRestarted(de(data)?),
        other => {
            return Err(serde::de::Error::custom(format!(
                "unknown event type {other}"
            )))
        }
    })
}

/// Upgrades a payload one version at a time until it is current. No schema has changed
/// yet (v1 is current); each change adds one small step here, e.g.
/// `if version < 2 && event_type == "ToolCalled" { data = tool_called_v1_to_v2(data) }`.
fn upcast(_event_type: &str, version: u16, data: Value) -> Value {
    debug_assert!(version <= CURRENT_SCHEMA_VERSION);
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_round_trips_through_its_persisted_shape() {
        let event = Event::RunCancelRequested(RunCancelRequested {
            run_id: "run_1".into(),
            requested_at: DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
        });
        let data = event.to_data();
        let back = Event::decode(event.event_type(), CURRENT_SCHEMA_VERSION, &data).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn unknown_types_and_future_versions_are_refused() {
        assert!(matches!(
            Event::decode("Nope", 1, b"{}"),
            Err(DecodeError::UnknownType(_))
        ));
        assert!(matches!(
            Event::decode("RunDeleted", 99, b"{}"),
            Err(DecodeError::FutureVersion { .. })
        ));
    }
}
