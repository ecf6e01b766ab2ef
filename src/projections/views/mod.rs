//! The read models: run status, the run list and the rollout summaries, folded from
//! events alone. Everything is kept in ordered maps so that serialising the views gives
//! the same bytes for the same log, which is what the replay checksum relies on.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::events::TokenUsage;
use crate::domain::feed::{groups_of_launch, Group};
use crate::domain::rollout::RolloutStatus;

mod fact;
mod fold;
mod rollout;
mod run;

pub use fact::Fact;
pub(super) use fact::{FactKind, RolloutStep, StepKind};
use fold::add_usage;
pub use rollout::{RolloutView, StatusChange, ToolCallView, VerdictRecord};
pub use run::{RunOwner, RunView, StatusCounts};

/// Every read model, and how far into the log they are.
#[derive(Debug, Default)]
pub struct Views {
    runs: BTreeMap<String, RunView>,
    rollouts: BTreeMap<String, RolloutView>,
    /// Launch position → run id, for newest-first listing.
    order: BTreeMap<u64, String>,
    /// Position of the next event to apply (= events applied so far).
    next_position: u64,
}

/// A filtered, paginated slice of the run list.
pub struct RunPage<'a> {
    pub total: usize,
    pub runs: Vec<&'a RunView>,
}

impl Views {
    pub fn next_position(&self) -> u64 {
        self.next_position
    }

    pub fn run(&self, run_id: &str) -> Option<&RunView> {
        self.runs.get(run_id)
    }

    pub fn rollout(&self, rollout_id: &str) -> Option<&RolloutView> {
        self.rollouts.get(rollout_id)
    }

    pub fn run_count(&self) -> usize {
        self.runs.len()
    }

    pub fn rollout_count(&self) -> usize {
        self.rollouts.len()
    }

    /// Runs newest first, filtered by scenario and source (`None` = any).
    pub fn list_runs(
        &self,
        scenario_id: Option<&str>,
        source: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> RunPage<'_> {
        let matching = self
            .order
            .values()
            .rev()
            .filter_map(|id| self.runs.get(id))
            .filter(|r| scenario_id.is_none_or(|s| r.scenario_id == s))
            .filter(|r| source.is_none_or(|s| r.source == s));
        let mut total = 0;
        let mut runs = Vec::new();
        for run in matching {
            if total >= offset && runs.len() < limit {
                runs.push(run);
            }
            total += 1;
        }
        RunPage { total, runs }
    }

    /// Every run with unfinished rollouts that is not paused, oldest first, with
    /// those rollouts' ids: what a restart resumes.
    pub fn unfinished_runs(&self) -> Vec<(String, Vec<String>)> {
        self.order
            .values()
            .filter(|run_id| self.runs.get(*run_id).is_some_and(|r| !r.paused))
            .filter_map(|run_id| self.with_unfinished_ids(run_id))
            .collect()
    }

    /// Unfinished runs that no node drives at `now`, oldest first, with those
    /// rollouts' ids: their lease expired or was given up, or it names `node_id`
    /// (this node, before a restart), or the run was never taken though launched
    /// `grace` ago. A paused run is left alone.
    pub fn orphaned_runs(
        &self,
        now: DateTime<Utc>,
        node_id: &str,
        grace: chrono::Duration,
    ) -> Vec<(String, Vec<String>)> {
        self.order
            .values()
            .filter_map(|run_id| self.runs.get(run_id))
            .filter(|run| !run.paused)
            .filter(|run| match &run.owner {
                Some(owner) => owner.node_id == node_id || owner.expires_at <= now,
                None => run.created_at + grace <= now,
            })
            .filter_map(|run| self.with_unfinished_ids(&run.run_id))
            .collect()
    }

    /// The run with the ids of its unfinished rollouts, if it has any or is a
    /// continuous run that still draws groups.
    fn with_unfinished_ids(&self, run_id: &str) -> Option<(String, Vec<String>)> {
        let ids: Vec<String> = self
            .unfinished_rollouts(run_id)
            .into_iter()
            .map(|r| r.rollout_id.clone())
            .collect();
        let open = self.runs.get(run_id).is_some_and(RunView::open);
        (!ids.is_empty() || open).then(|| (run_id.to_string(), ids))
    }

    /// A run's groups: a continuous run's as drawn, an ordinary run's per task.
    pub fn groups<'a>(&self, run: &'a RunView) -> std::borrow::Cow<'a, [Group]> {
        if run.feed.continuous.is_some() {
            return std::borrow::Cow::Borrowed(&run.feed.groups);
        }
        std::borrow::Cow::Owned(groups_of_launch(run.rollout_ids.iter().filter_map(|id| {
            self.rollouts
                .get(id)
                .map(|r| (r.rollout_id.as_str(), r.task_id.as_str(), r.instance_seed))
        })))
    }

    /// Rollouts of a run that have not finished, in launch order.
    pub fn unfinished_rollouts(&self, run_id: &str) -> Vec<&RolloutView> {
        self.runs
            .get(run_id)
            .map(|run| {
                run.rollout_ids
                    .iter()
                    .filter_map(|id| self.rollouts.get(id))
                    .filter(|r| !r.status.is_terminal())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Completed rollouts of `scenario_id` by `provider`/`model`, per task id of
    /// `task_ids`: (rollouts, summed usage). What a dry run estimates from.
    pub fn usage_history(
        &self,
        scenario_id: &str,
        provider: &str,
        model: &str,
        task_ids: &[String],
    ) -> BTreeMap<String, (u32, TokenUsage)> {
        let mut history: BTreeMap<String, (u32, TokenUsage)> = task_ids
            .iter()
            .map(|t| (t.clone(), (0, TokenUsage::default())))
            .collect();
        let runs = self.runs.values().filter(|r| {
            r.scenario_id == scenario_id && r.model.provider == provider && r.model.model == model
        });
        for run in runs {
            for rollout in run
                .rollout_ids
                .iter()
                .filter_map(|id| self.rollouts.get(id))
            {
                if rollout.status != RolloutStatus::Completed {
                    continue;
                }
                if let Some((count, usage)) = history.get_mut(&rollout.task_id) {
                    *count += 1;
                    add_usage(usage, &rollout.usage);
                }
            }
        }
        history
    }

    /// SHA-256 of every view serialised in a fixed order: equal logs give equal sums.
    pub fn checksum(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        hash_in_order(&mut hasher, &self.runs.values().collect::<Vec<_>>());
        hash_in_order(&mut hasher, &self.rollouts.values().collect::<Vec<_>>());
        hasher.update(self.next_position.to_be_bytes());
        hex::encode(hasher.finalize())
    }
}

/// Feeds `views`, serialised one after the other, to `hasher`. Serialising is most of
/// the work, so two threads serialise alternate chunks of them while this one hashes
/// the chunks in order, which gives the sum of serialising them all on one.
fn hash_in_order<T: Serialize + Sync>(hasher: &mut sha2::Sha256, views: &[&T]) {
    use sha2::Digest;
    const CHUNK: usize = 1024;
    let serialize = |chunk: &[&T]| {
        let mut buf = Vec::new();
        for view in chunk {
            // Serialising these views cannot fail: no map has a non-string key.
            let _ = serde_json::to_writer(&mut buf, view);
        }
        buf
    };
    if views.len() <= CHUNK {
        hasher.update(serialize(views));
        return;
    }
    let chunks: Vec<&[&T]> = views.chunks(CHUNK).collect();
    std::thread::scope(|scope| {
        let serialized: Vec<_> = (0..2)
            .map(|first| {
                let (send, receive) = std::sync::mpsc::sync_channel(2);
                let (chunks, serialize) = (&chunks, &serialize);
                scope.spawn(move || {
                    for chunk in chunks.iter().skip(first).step_by(2) {
                        if send.send(serialize(chunk)).is_err() {
                            return;
                        }
                    }
                });
                receive
            })
            .collect();
        for i in 0..chunks.len() {
            if let Ok(buf) = serialized[i % 2].recv() {
                hasher.update(buf);
            }
        }
    });
}

#[cfg(test)]
mod tests;
