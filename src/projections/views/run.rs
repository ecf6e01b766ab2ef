//! A run's view: its settings, its rollouts' counts by status, what it spent, its
//! lease and its feed (groups, consumers, policies).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::domain::budget::{Budget, RunPrices, Spend};
use crate::domain::events::{ForkParent, ModelSettings, TokenUsage};
use crate::domain::faults::ToolFaults;
use crate::domain::feed::{Feed, GroupProgress};
use crate::domain::rollout::RolloutStatus;
use crate::projections::rfc3339;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct StatusCounts {
    pub total: u32,
    pub pending: u32,
    pub running: u32,
    pub verifying: u32,
    pub completed: u32,
    pub failed: u32,
    pub cancelled: u32,
}

impl StatusCounts {
    pub(super) fn slot(&mut self, status: RolloutStatus) -> &mut u32 {
        match status {
            RolloutStatus::Pending => &mut self.pending,
            RolloutStatus::Running => &mut self.running,
            RolloutStatus::Verifying => &mut self.verifying,
            RolloutStatus::Completed => &mut self.completed,
            RolloutStatus::Failed => &mut self.failed,
            RolloutStatus::Cancelled => &mut self.cancelled,
        }
    }

    /// Started and not finished: in the step loop or being verified.
    pub fn in_progress(&self) -> u32 {
        self.running + self.verifying
    }

    pub fn finished(&self) -> u32 {
        self.completed + self.failed + self.cancelled
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunView {
    pub run_id: String,
    pub scenario_id: String,
    pub source: String,
    pub task_ids: Vec<String>,
    pub rollout_count: u32,
    pub max_parallel: Option<u32>,
    pub model: ModelSettings,
    pub task_overrides: BTreeMap<String, Value>,
    /// The rollout this run was forked from.
    pub parent: Option<ForkParent>,
    /// The node driving the run when several share the log (its lease).
    pub owner: Option<RunOwner>,
    pub tool_faults: Option<ToolFaults>,
    pub counts: StatusCounts,
    pub rollout_ids: Vec<String>,
    pub cancel_requested: bool,
    pub usage: TokenUsage,
    #[serde(serialize_with = "rfc3339::serialize")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339::serialize_opt")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Global position of the launch: newest-first order of the run list.
    pub position: u64,
    /// The budget in force (the launch's, then the latest resume's).
    pub budget: Option<Budget>,
    pub prices: Option<RunPrices>,
    /// Tokens and cost (at the launch's prices) spent by the run's rollouts.
    pub spent: Spend,
    /// Stopped by its budget until resumed, and why.
    pub paused: bool,
    pub pause_reason: Option<String>,
    /// Groups, consumers and policies (issue 24); absent from the serialised view
    /// of a run that has none of them.
    #[serde(skip_serializing_if = "Feed::is_empty")]
    pub feed: Feed,
    /// Its groups' progress (numbered as [`super::Views::groups`] numbers them);
    /// derived from the events, so not serialised.
    #[serde(skip)]
    pub groups: GroupProgress,
}

impl RunView {
    /// The version of policy `ordinal`: 0 the launch's `policy_version`, n the n-th
    /// update's.
    pub fn policy_version(&self, ordinal: u32) -> Option<&str> {
        match ordinal {
            0 => self.model.tokens.as_ref()?.policy_version.as_deref(),
            n => self.feed.policies.get(n as usize - 1)?.version.as_deref(),
        }
    }

    /// A continuous run that may still draw groups.
    pub fn open(&self) -> bool {
        self.feed.open(self.cancel_requested)
    }

    /// Every rollout has ended and none will be drawn any more.
    pub fn over(&self) -> bool {
        self.counts.finished() == self.counts.total && !self.open()
    }

    /// The caller's opaque `client_context` from a task's override, if it gave one.
    pub fn client_context(&self, task_id: &str) -> Option<&Value> {
        self.task_overrides.get(task_id)?.get("client_context")
    }

    /// One word for the whole run.
    pub fn state(&self) -> &'static str {
        let c = &self.counts;
        if self.over() {
            if self.cancel_requested {
                "cancelled"
            } else if c.failed > 0 && c.completed == 0 {
                "failed"
            } else {
                "completed"
            }
        } else if self.paused {
            "paused"
        } else if c.pending == c.total {
            "pending"
        } else {
            "running"
        }
    }
}

/// The node that holds a run's lease, and until when.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct RunOwner {
    pub node_id: String,
    pub term: u64,
    pub expires_at: DateTime<Utc>,
}
