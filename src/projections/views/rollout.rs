//! A rollout's view: its status and when each change came, its verdicts, its usage.
//! What it did call by call is read from its stream on demand.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::events::{CompletionReason, ScheduledRollout, TokenUsage};
use crate::domain::rollout::RolloutStatus;
use crate::domain::verdict::{RubricVerdict, Verdict};
use crate::projections::rfc3339;

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ToolCallView {
    pub step: u32,
    pub call_id: String,
    pub server: Option<String>,
    pub tool_name: String,
    pub arguments: String,
    pub observation: String,
    pub is_error: bool,
    /// The injected failure (`tool_faults`), when the call failed by design.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    pub latency_ms: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct StatusChange {
    pub status: RolloutStatus,
    #[serde(serialize_with = "rfc3339::serialize")]
    pub at: DateTime<Utc>,
}

/// A verdict a rollout was given: when it finished, or by a re-verification.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct VerdictRecord {
    /// `rollout` (scored when it finished) or `reverify`.
    pub source: String,
    pub score: f64,
    pub label: String,
    pub verdict: Verdict,
    pub rubric: Option<RubricVerdict>,
    pub at: DateTime<Utc>,
}

/// A rollout's summary. What it did call by call is read from its stream on demand
/// ([`crate::projections::RolloutContent`]).
#[derive(Debug, Clone, Serialize)]
pub struct RolloutView {
    pub rollout_id: String,
    pub run_id: String,
    pub scenario_id: String,
    pub task_id: String,
    pub seed: u64,
    /// Which instance of a task family (0: the task as written); not serialised when
    /// 0, so the views of logs from before families keep their checksum.
    #[serde(skip_serializing_if = "crate::domain::events::is_zero")]
    pub instance_seed: u64,
    pub status: RolloutStatus,
    pub max_steps: u32,
    pub steps: u32,
    pub verdict: Option<Verdict>,
    /// The universal verifier's grade, for tasks with a `rubric_markdown`.
    pub rubric: Option<RubricVerdict>,
    /// Where the current verdict came from and when (see [`VerdictRecord`]).
    pub verdict_source: Option<(&'static str, DateTime<Utc>)>,
    /// Verdicts replaced by re-verifications, oldest first (empty until one).
    pub earlier_verdicts: Vec<VerdictRecord>,
    pub completion_reason: Option<CompletionReason>,
    pub error: Option<String>,
    pub usage: TokenUsage,
    pub model_latency_ms: f64,
    #[serde(serialize_with = "rfc3339::serialize")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339::serialize_opt")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "rfc3339::serialize_opt")]
    pub finished_at: Option<DateTime<Utc>>,
    pub status_events: Vec<StatusChange>,
    /// Its group in the run's feed; derived, so not serialised.
    #[serde(skip)]
    pub group: Option<u32>,
}

impl RolloutView {
    /// A rollout scheduled at `at`, not started.
    pub(super) fn pending(
        run_id: &str,
        scenario_id: &str,
        scheduled: &ScheduledRollout,
        max_steps: u32,
        at: DateTime<Utc>,
    ) -> RolloutView {
        RolloutView {
            rollout_id: scheduled.rollout_id.clone(),
            run_id: run_id.to_string(),
            scenario_id: scenario_id.to_string(),
            task_id: scheduled.task_id.clone(),
            seed: scheduled.seed,
            instance_seed: scheduled.instance_seed,
            status: RolloutStatus::Pending,
            max_steps,
            steps: 0,
            verdict: None,
            rubric: None,
            verdict_source: None,
            earlier_verdicts: vec![],
            completion_reason: None,
            error: None,
            usage: TokenUsage::default(),
            model_latency_ms: 0.0,
            created_at: at,
            started_at: None,
            finished_at: None,
            status_events: vec![StatusChange {
                status: RolloutStatus::Pending,
                at,
            }],
            group: None,
        }
    }

    /// The rollout's score: the checks' verdict combined with a graded rubric
    /// ([`crate::domain::verdict::combine`]).
    pub fn score(&self) -> Option<f64> {
        self.result().map(|(score, _)| score)
    }

    pub fn label(&self) -> Option<&'static str> {
        self.result().map(|(_, label)| label)
    }

    fn result(&self) -> Option<(f64, &'static str)> {
        let verdict = self.verdict.as_ref()?;
        Some(crate::domain::verdict::combine(
            verdict,
            self.rubric.as_ref(),
        ))
    }

    /// The current verdict as a record, if there is one.
    pub fn current_verdict(&self) -> Option<VerdictRecord> {
        let (score, label) = self.result()?;
        let (source, at) = self.verdict_source?;
        Some(VerdictRecord {
            source: source.to_string(),
            score,
            label: label.to_string(),
            verdict: self.verdict.clone()?,
            rubric: self.rubric.clone(),
            at,
        })
    }

    /// Every verdict, oldest first, the current one last.
    pub fn verdict_history(&self) -> Vec<VerdictRecord> {
        let mut history = self.earlier_verdicts.clone();
        history.extend(self.current_verdict());
        history
    }
}
