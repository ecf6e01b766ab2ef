//! A run's feed for online training (issue 24), with no I/O: its groups (the
//! rollouts of one task that a trainer takes together, as GRPO does), which consumer
//! acknowledged which group, the policy versions that answered, and the draw of a
//! continuous run's next group. The run's stream holds it all, so it survives a
//! restart of the server and of every consumer.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::events::{
    ContinuousSettings, Event, GroupScheduled, PolicyUpdated, RunLaunched, ScheduledRollout,
};

/// One group: its task and its rollouts, in order. A rollout restarted because it
/// went stale leaves the group and its replacement takes its place.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    pub task_id: String,
    /// The task family's instance all its rollouts play (0: the task as written).
    pub instance_seed: u64,
    pub rollout_ids: Vec<String>,
    /// Rollouts replaced because they went stale (`on_stale: restart`).
    pub restarted: Vec<String>,
}

/// A policy the run's turns are answered by: the launch's is ordinal 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    pub version: Option<String>,
    pub base_url: Option<String>,
}

impl From<&PolicyUpdated> for Policy {
    fn from(e: &PolicyUpdated) -> Policy {
        Policy {
            version: Some(e.version.clone()),
            base_url: e.base_url.clone(),
        }
    }
}

/// What the run's stream says of its feed. Empty (and not serialised into the
/// views) for a run that is not continuous and never met a consumer or a policy
/// update, so such a run's views are what they were before feeds existed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Feed {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub continuous: Option<ContinuousSettings>,
    /// A continuous run's groups, by index. An ordinary run's groups are its tasks'
    /// rollouts and are not stored (see [`groups_of_launch`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<Group>,
    /// Consumer name → the groups it acknowledged.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub consumed: BTreeMap<String, BTreeSet<u32>>,
    /// The groups some consumer acknowledged (derived from `consumed`).
    #[serde(skip)]
    pub acknowledged: BTreeSet<u32>,
    /// The policy updates, ordinal 1 first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<Policy>,
}

impl Feed {
    pub fn is_empty(&self) -> bool {
        self.continuous.is_none()
            && self.groups.is_empty()
            && self.consumed.is_empty()
            && self.policies.is_empty()
    }

    /// Folds a run-stream event in; others are ignored.
    pub fn evolve(&mut self, event: &Event) {
        match event {
            Event::RunLaunched(e) => self.continuous = e.continuous,
            // A group index recorded twice (never written so) is taken once.
            Event::GroupScheduled(e) if e.group as usize == self.groups.len() => {
                self.groups.push(Group {
                    task_id: e.task_id.clone(),
                    instance_seed: e.rollouts.first().map_or(0, |r| r.instance_seed),
                    rollout_ids: e.rollouts.iter().map(|r| r.rollout_id.clone()).collect(),
                    restarted: vec![],
                });
            }
            Event::RolloutRestarted(e) => {
                if let Some(group) = self.groups.get_mut(e.group as usize) {
                    if let Some(slot) = group.rollout_ids.iter_mut().find(|id| **id == e.replaced) {
                        *slot = e.rollout.rollout_id.clone();
                        group.restarted.push(e.replaced.clone());
                    }
                }
            }
            Event::GroupConsumed(e) => {
                self.consumed
                    .entry(e.consumer.clone())
                    .or_default()
                    .extend(e.groups.iter().copied());
                self.acknowledged.extend(e.groups.iter().copied());
            }
            Event::PolicyUpdated(e) => self.policies.push(Policy::from(e)),
            _ => {}
        }
    }

    /// Whether a continuous run may still draw groups: not cancelled and short of
    /// `max_groups`.
    pub fn open(&self, cancel_requested: bool) -> bool {
        self.continuous.is_some_and(|c| {
            !cancel_requested
                && c.max_groups
                    .is_none_or(|max| (self.groups.len() as u32) < max)
        })
    }

    /// Whether any consumer acknowledged `group`: what backpressure counts.
    pub fn consumed_by_any(&self, group: u32) -> bool {
        self.acknowledged.contains(&group)
    }

    /// The ordinal of the policy in force now (0: the launch's).
    pub fn policy_ordinal(&self) -> u32 {
        self.policies.len() as u32
    }
}

/// How many of each group's rollouts have not ended, and how many groups have none
/// left (complete), kept as rollouts join and end: the run's actor (its backpressure)
/// and the views (a run's status) count with it, and neither walks a long run's groups.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupProgress {
    unfinished: Vec<u32>,
    complete: u32,
}

impl GroupProgress {
    /// Makes groups up to `group` known; one with no unfinished rollout is complete.
    pub fn open(&mut self, group: u32) {
        let len = group as usize + 1;
        if len > self.unfinished.len() {
            self.complete += (len - self.unfinished.len()) as u32;
            self.unfinished.resize(len, 0);
        }
    }

    /// An unfinished rollout joins `group`: drawn into it, or restarted in it.
    pub fn join(&mut self, group: u32) {
        self.open(group);
        let left = &mut self.unfinished[group as usize];
        if *left == 0 {
            self.complete -= 1;
        }
        *left += 1;
    }

    /// One of `group`'s unfinished rollouts ended or left it; answers whether that
    /// made the group complete.
    pub fn leave(&mut self, group: u32) -> bool {
        match self.unfinished.get_mut(group as usize) {
            Some(left) if *left > 0 => {
                *left -= 1;
                let done = *left == 0;
                self.complete += u32::from(done);
                done
            }
            _ => false,
        }
    }

    /// Whether every rollout of `group` has ended.
    pub fn is_complete(&self, group: u32) -> bool {
        self.unfinished.get(group as usize) == Some(&0)
    }

    /// Groups whose rollouts have all ended.
    pub fn complete(&self) -> u32 {
        self.complete
    }

    /// Groups known.
    pub fn len(&self) -> usize {
        self.unfinished.len()
    }

    pub fn is_empty(&self) -> bool {
        self.unfinished.is_empty()
    }
}

/// The group of each rollout of an ordinary run, given as (task id, instance seed) in
/// launch order: the rollouts of one task instance share one, numbered in the order
/// the instances first appear.
pub fn launch_groups<'a>(rollouts: impl IntoIterator<Item = (&'a str, u64)>) -> Vec<u32> {
    let mut index: BTreeMap<(&str, u64), u32> = BTreeMap::new();
    rollouts
        .into_iter()
        .map(|instance| {
            let next = index.len() as u32;
            *index.entry(instance).or_insert(next)
        })
        .collect()
}

/// The groups of an ordinary run (see [`launch_groups`]).
pub fn groups_of_launch<'a>(
    rollouts: impl IntoIterator<Item = (&'a str, &'a str, u64)>,
) -> Vec<Group> {
    let rollouts: Vec<(&str, &str, u64)> = rollouts.into_iter().collect();
    let of = launch_groups(rollouts.iter().map(|&(_, task_id, seed)| (task_id, seed)));
    let mut groups: Vec<Group> = Vec::new();
    for (&(rollout_id, task_id, instance_seed), group) in rollouts.iter().zip(of) {
        if group as usize == groups.len() {
            groups.push(Group {
                task_id: task_id.to_string(),
                instance_seed,
                rollout_ids: vec![],
                restarted: vec![],
            });
        }
        groups[group as usize]
            .rollout_ids
            .push(rollout_id.to_string());
    }
    groups
}

/// A continuous run's group `group`: its task drawn from the run's tasks by the run's
/// seed, `rollout_count` rollouts with ids from `new_id` and seeds drawn the same way.
/// The same seed draws the same tasks and seeds in every run.
pub fn draw_group(
    run: &RunLaunched,
    settings: &ContinuousSettings,
    group: u32,
    mut new_id: impl FnMut() -> String,
    now: DateTime<Utc>,
) -> GroupScheduled {
    let pick = draw(settings.seed, group, u32::MAX);
    let task_id = run.task_ids[(pick % run.task_ids.len().max(1) as u64) as usize].clone();
    // A family's instance, drawn too (a task without parameters has only one).
    let instance_seed = draw(settings.seed, group, u32::MAX - 1);
    let rollouts = (0..run.rollout_count)
        .map(|i| ScheduledRollout {
            rollout_id: new_id(),
            task_id: task_id.clone(),
            seed: draw(settings.seed, group, i),
            instance_seed,
        })
        .collect();
    GroupScheduled {
        run_id: run.run_id.clone(),
        group,
        task_id,
        rollouts,
        scheduled_at: now,
    }
}

/// 64 bits from (seed, group, slot); `slot` `u32::MAX` picks the task.
pub fn draw(seed: u64, group: u32, slot: u32) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(b"rl-gym group draw");
    hasher.update(seed.to_be_bytes());
    hasher.update(group.to_be_bytes());
    hasher.update(slot.to_be_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(bytes)
}

/// Whether a rollout whose first turn was answered by policy `first` is stale under
/// policy `now`: more than `max_staleness` versions behind.
pub fn is_stale(first: u32, now: u32, max_staleness: Option<u32>) -> bool {
    max_staleness.is_some_and(|k| now.saturating_sub(first) > k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_groups_draw_depends_on_the_seed_and_the_index_only() {
        let mut run: RunLaunched = serde_json::from_value(serde_json::json!({
            "run_id": "run_1", "scenario_id": "hr", "source": "rl-gym",
            "task_ids": ["a", "b", "c"], "rollout_count": 4, "max_parallel": 8,
            "model": super::super::events::ModelSettings::builtin("oracle"),
            "user_model": null, "rollouts": [], "launched_at": "2026-01-01T00:00:00Z"
        }))
        .unwrap();
        let settings = ContinuousSettings {
            max_groups: None,
            max_unconsumed_groups: 2,
            max_staleness: None,
            on_stale: super::super::events::OnStale::Finish,
            seed: 7,
        };
        let now = run.launched_at;
        let mut n = 0;
        let mut ids = || {
            n += 1;
            format!("rol_{n}")
        };
        let first: Vec<_> = (0..30)
            .map(|g| draw_group(&run, &settings, g, &mut ids, now))
            .collect();
        let again: Vec<_> = (0..30)
            .map(|g| draw_group(&run, &settings, g, || "x".into(), now))
            .collect();
        for (a, b) in first.iter().zip(&again) {
            assert_eq!(a.task_id, b.task_id);
            let seeds = |g: &GroupScheduled| g.rollouts.iter().map(|r| r.seed).collect::<Vec<_>>();
            assert_eq!(seeds(a), seeds(b));
            assert_eq!(a.rollouts.len(), 4);
        }
        // Every task is drawn, and the rollouts of a group differ in seed.
        let tasks: BTreeSet<_> = first.iter().map(|g| g.task_id.as_str()).collect();
        assert_eq!(tasks.len(), 3);
        let seeds: BTreeSet<_> = first[0].rollouts.iter().map(|r| r.seed).collect();
        assert_eq!(seeds.len(), 4);
        run.task_ids = vec!["only".into()];
        assert_eq!(
            draw_group(&run, &settings, 5, || "x".into(), now).task_id,
            "only"
        );
    }

    #[test]
    fn a_restart_takes_the_stale_rollouts_place_and_acks_are_per_consumer() {
        let now = Utc::now();
        let mut feed = Feed::default();
        let scheduled = |group: u32, ids: &[&str]| {
            Event::GroupScheduled(GroupScheduled {
                run_id: "run_1".into(),
                group,
                task_id: "t".into(),
                rollouts: ids
                    .iter()
                    .map(|id| ScheduledRollout {
                        rollout_id: id.to_string(),
                        task_id: "t".into(),
                        seed: 1,
                        instance_seed: 0,
                    })
                    .collect(),
                scheduled_at: now,
            })
        };
        feed.evolve(&scheduled(0, &["a", "b"]));
        // A group index recorded twice (never written so) is taken once.
        feed.evolve(&scheduled(0, &["x", "y"]));
        feed.evolve(&scheduled(1, &["c", "d"]));
        feed.evolve(&Event::RolloutRestarted(
            super::super::events::RolloutRestarted {
                run_id: "run_1".into(),
                group: 0,
                replaced: "b".into(),
                rollout: ScheduledRollout {
                    rollout_id: "b2".into(),
                    task_id: "t".into(),
                    seed: 1,
                    instance_seed: 0,
                },
                reason: "stale".into(),
                restarted_at: now,
            },
        ));
        assert_eq!(feed.groups[0].rollout_ids, ["a", "b2"]);
        assert_eq!(feed.groups[0].restarted, ["b"]);
        feed.evolve(&Event::GroupConsumed(super::super::events::GroupConsumed {
            run_id: "run_1".into(),
            consumer: "trainer".into(),
            groups: vec![1],
            consumed_at: now,
        }));
        assert!(feed.consumed_by_any(1) && !feed.consumed_by_any(0));
        assert!(is_stale(0, 3, Some(2)) && !is_stale(1, 3, Some(2)) && !is_stale(0, 9, None));
    }

    #[test]
    fn a_group_is_complete_when_its_last_unfinished_rollout_leaves_and_again_after_a_rejoin() {
        let mut progress = GroupProgress::default();
        progress.join(0);
        progress.join(0);
        progress.open(2);
        assert_eq!(
            (progress.len(), progress.complete()),
            (3, 2),
            "groups 1 and 2 have none"
        );
        assert!(!progress.leave(0) && !progress.is_complete(0));
        assert!(progress.leave(0) && progress.is_complete(0));
        assert_eq!(progress.complete(), 3);
        // A restart into a complete group reopens it; leaving an empty one does nothing.
        progress.join(2);
        assert_eq!(progress.complete(), 2);
        assert!(!progress.leave(1) && !progress.leave(7));
        assert!(progress.leave(2));
        assert_eq!(progress.complete(), 3);
    }
}
