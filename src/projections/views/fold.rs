//! Folding one event into the views: a launch makes a run and its rollouts, a step or
//! an ending changes a rollout and its run's counts, usage and spend.

use chrono::{DateTime, Utc};

use super::fact::{FactKind, RolloutStep, StepKind};
use super::{
    Fact, RolloutStatus, RolloutView, RunOwner, RunView, StatusChange, StatusCounts, Views,
};
use crate::domain::budget::Spend;
use crate::domain::events::{Event, ScheduledRollout, TokenUsage};
use crate::domain::feed::{launch_groups, Feed, GroupProgress};

/// What an event does to a rollout besides its own fields: a new status (and when), and tokens
/// spent (with whether they are charged to the run's spend, and as the judge's).
#[derive(Default)]
struct Change {
    status: Option<(RolloutStatus, DateTime<Utc>)>,
    usage: Option<(TokenUsage, Option<bool>)>,
}

impl Views {
    /// Folds one event in. `position` must be the next one: the views are a function
    /// of the log prefix they have seen.
    pub fn apply(&mut self, position: u64, fact: &Fact) {
        self.next_position = position + 1;
        let event = match &fact.0 {
            FactKind::Step(kind, step) => return self.apply_step(*kind, step),
            FactKind::Event(event) => event,
        };
        match event {
            Event::RunLaunched(e) => {
                let rollout_ids = e.rollouts.iter().map(|r| r.rollout_id.clone()).collect();
                // A continuous run's groups are drawn later; an ordinary run's are its
                // task instances.
                let groups = e.continuous.is_none().then(|| {
                    launch_groups(
                        e.rollouts
                            .iter()
                            .map(|r| (r.task_id.as_str(), r.instance_seed)),
                    )
                });
                let mut progress = GroupProgress::default();
                for (i, scheduled) in e.rollouts.iter().enumerate() {
                    let mut view = RolloutView::pending(
                        &e.run_id,
                        &e.scenario_id,
                        scheduled,
                        e.model.max_steps,
                        e.launched_at,
                    );
                    if let Some(group) = groups.as_ref().map(|g| g[i]) {
                        view.group = Some(group);
                        progress.join(group);
                    }
                    self.rollouts.insert(scheduled.rollout_id.clone(), view);
                }
                let counts = StatusCounts {
                    total: e.rollouts.len() as u32,
                    pending: e.rollouts.len() as u32,
                    ..Default::default()
                };
                self.order.insert(position, e.run_id.clone());
                self.runs.insert(
                    e.run_id.clone(),
                    RunView {
                        run_id: e.run_id.clone(),
                        scenario_id: e.scenario_id.clone(),
                        source: e.source.clone(),
                        task_ids: e.task_ids.clone(),
                        rollout_count: e.rollout_count,
                        max_parallel: e.max_parallel,
                        model: e.model.clone(),
                        task_overrides: e.task_overrides.clone(),
                        parent: e.parent.clone(),
                        owner: None,
                        tool_faults: e.tool_faults,
                        counts,
                        rollout_ids,
                        cancel_requested: false,
                        usage: TokenUsage::default(),
                        created_at: e.launched_at,
                        finished_at: None,
                        position,
                        budget: e.budget,
                        prices: e.prices,
                        spent: Spend::default(),
                        paused: false,
                        pause_reason: None,
                        feed: Feed::default(),
                        groups: progress,
                    },
                );
                if let Some(run) = self.runs.get_mut(&e.run_id) {
                    run.feed.evolve(event);
                }
            }
            Event::GroupScheduled(e) => {
                self.add_drawn(&e.run_id, e.group, &e.rollouts, e.scheduled_at, event)
            }
            Event::RolloutRestarted(e) => {
                self.add_drawn(
                    &e.run_id,
                    e.group,
                    std::slice::from_ref(&e.rollout),
                    e.restarted_at,
                    event,
                );
                // The replaced rollout leaves its group (its place already taken).
                if let Some(replaced) = self.rollouts.get_mut(&e.replaced) {
                    let left = replaced.group.take();
                    if let (Some(group), false) = (left, replaced.status.is_terminal()) {
                        if let Some(run) = self.runs.get_mut(&e.run_id) {
                            run.groups.leave(group);
                        }
                    }
                }
            }
            Event::GroupConsumed(e) => {
                if let Some(run) = self.runs.get_mut(&e.run_id) {
                    run.feed.evolve(event);
                }
            }
            Event::PolicyUpdated(e) => {
                if let Some(run) = self.runs.get_mut(&e.run_id) {
                    run.feed.evolve(event);
                }
            }
            Event::RunCancelRequested(e) => {
                if let Some(run) = self.runs.get_mut(&e.run_id) {
                    run.cancel_requested = true;
                    run.paused = false;
                }
            }
            Event::RunPaused(e) => {
                if let Some(run) = self.runs.get_mut(&e.run_id) {
                    run.paused = true;
                    run.pause_reason = Some(e.reason.clone());
                }
            }
            Event::RunResumed(e) => {
                if let Some(run) = self.runs.get_mut(&e.run_id) {
                    run.paused = false;
                    run.pause_reason = None;
                    run.budget = e.budget;
                }
            }
            Event::RunLeaseAcquired(e) => {
                if let Some(run) = self.runs.get_mut(&e.run_id) {
                    run.owner = Some(RunOwner {
                        node_id: e.node_id.clone(),
                        term: e.term,
                        expires_at: e.expires_at,
                    });
                }
            }
            Event::RunLeaseRenewed(e) => {
                if let Some(owner) = self
                    .runs
                    .get_mut(&e.run_id)
                    .and_then(|run| run.owner.as_mut())
                    .filter(|owner| owner.term == e.term)
                {
                    owner.expires_at = e.expires_at;
                }
            }
            Event::RunLeaseReleased(e) => {
                if let Some(run) = self.runs.get_mut(&e.run_id) {
                    if run.owner.as_ref().is_some_and(|o| o.term == e.term) {
                        run.owner = None;
                    }
                }
            }
            Event::RunDeleted(e) => {
                if let Some(run) = self.runs.remove(&e.run_id) {
                    self.order.remove(&run.position);
                    for id in &run.rollout_ids {
                        self.rollouts.remove(id);
                    }
                }
            }
            // Never an `Event` fact: these are always made a `FactKind::Step`.
            Event::RolloutStarted(_)
            | Event::ModelCalled(_)
            | Event::ToolCalled(_)
            | Event::NpcReplied(_)
            | Event::ContextSummarized(_) => {}
            Event::RolloutVerified(_)
            | Event::RubricGraded(_)
            | Event::RolloutReverified(_)
            | Event::RolloutCompleted(_)
            | Event::RolloutFailed(_)
            | Event::RolloutCancelled(_) => self.apply_rollout_event(event),
        }
    }

    /// A continuous run's rollouts drawn after its launch: pending, counted in the run.
    fn add_drawn(
        &mut self,
        run_id: &str,
        group: u32,
        rollouts: &[ScheduledRollout],
        at: DateTime<Utc>,
        event: &Event,
    ) {
        let Some(run) = self.runs.get_mut(run_id) else {
            return;
        };
        run.feed.evolve(event);
        for scheduled in rollouts {
            if self.rollouts.contains_key(&scheduled.rollout_id) {
                continue;
            }
            run.rollout_ids.push(scheduled.rollout_id.clone());
            run.counts.total += 1;
            run.counts.pending += 1;
            run.finished_at = None;
            run.groups.join(group);
            let mut view = RolloutView::pending(
                &run.run_id,
                &run.scenario_id,
                scheduled,
                run.model.max_steps,
                at,
            );
            view.group = Some(group);
            self.rollouts.insert(scheduled.rollout_id.clone(), view);
        }
    }

    fn apply_step(&mut self, kind: StepKind, step: &RolloutStep) {
        let mut change = Change::default();
        match kind {
            StepKind::Started => change.status = step.at.map(|at| (RolloutStatus::Running, at)),
            StepKind::ModelCalled | StepKind::ContextSummarized => {
                change.usage = step.usage.clone().map(|u| (u, Some(false)));
            }
            StepKind::ToolCalled | StepKind::NpcReplied => {}
        }
        self.change_rollout(&step.rollout_id, change, |view| match kind {
            StepKind::Started => view.started_at = step.at,
            StepKind::ModelCalled => {
                view.steps = view.steps.max(step.step);
                view.model_latency_ms += step.latency_ms;
            }
            _ => {}
        });
    }

    fn apply_rollout_event(&mut self, event: &Event) {
        let Some(rollout_id) = rollout_id_of(event) else {
            return;
        };
        let at = event.time();
        let mut change = Change::default();
        match event {
            Event::RolloutVerified(_) => change.status = Some((RolloutStatus::Verifying, at)),
            // A re-verification's judge tokens count in the usage, not in the spend.
            Event::RolloutReverified(e) => change.usage = e.usage.clone().map(|u| (u, None)),
            // The judge's tokens are spent on the rollout too.
            Event::RubricGraded(e) => change.usage = e.usage.clone().map(|u| (u, Some(true))),
            Event::RolloutCompleted(_) => change.status = Some((RolloutStatus::Completed, at)),
            Event::RolloutFailed(_) => change.status = Some((RolloutStatus::Failed, at)),
            Event::RolloutCancelled(_) => change.status = Some((RolloutStatus::Cancelled, at)),
            _ => {}
        }
        self.change_rollout(rollout_id, change, |view| match event {
            Event::RolloutVerified(e) => {
                view.verdict = Some(e.verdict.clone());
                view.verdict_source = Some(("rollout", at));
            }
            Event::RolloutReverified(e) => {
                if let Some(earlier) = view.current_verdict() {
                    view.earlier_verdicts.push(earlier);
                }
                view.verdict = Some(e.verdict.clone());
                view.rubric = e.rubric.clone();
                view.verdict_source = Some(("reverify", at));
            }
            Event::RubricGraded(e) => view.rubric = Some(e.rubric.clone()),
            Event::RolloutCompleted(e) => {
                view.completion_reason = Some(e.reason);
                view.finished_at = Some(at);
            }
            Event::RolloutFailed(e) => {
                view.error = Some(e.error.clone());
                view.finished_at = Some(at);
            }
            Event::RolloutCancelled(e) => {
                view.error = Some(e.reason.clone());
                view.finished_at = Some(at);
            }
            _ => {}
        });
    }

    /// Applies `update` and `change` to a rollout's view and its run's counts and
    /// usage. Events of a deleted run's rollouts (still in flight at deletion) are
    /// ignored.
    fn change_rollout(
        &mut self,
        rollout_id: &str,
        change: Change,
        update: impl FnOnce(&mut RolloutView),
    ) {
        let Some(view) = self.rollouts.get_mut(rollout_id) else {
            return;
        };
        let before = view.status;
        update(view);
        if let Some((u, _)) = &change.usage {
            add_usage(&mut view.usage, u);
        }
        // A terminal state is final: a late event never revives a rollout.
        let moved = change
            .status
            .filter(|&(status, _)| !before.is_terminal() && status != before);
        if let Some((after, at)) = moved {
            view.status = after;
            view.status_events.push(StatusChange { status: after, at });
        } else if change.usage.is_none() {
            return;
        }
        if let Some(run) = self.runs.get_mut(view.run_id.as_str()) {
            if let Some((after, at)) = moved {
                *run.counts.slot(before) -= 1;
                *run.counts.slot(after) += 1;
                if let Some(group) = view.group.filter(|_| after.is_terminal()) {
                    run.groups.leave(group);
                }
                if run.over() {
                    run.finished_at = Some(at);
                }
            }
            if let Some((u, charged)) = change.usage {
                add_usage(&mut run.usage, &u);
                if let Some(judge) = charged {
                    run.spent.add_usage(&u, judge, run.prices.as_ref());
                }
            }
        }
    }
}

pub(super) fn add_usage(total: &mut TokenUsage, delta: &TokenUsage) {
    total.prompt_tokens += delta.prompt_tokens;
    total.completion_tokens += delta.completion_tokens;
    total.total_tokens += delta.total_tokens;
}

fn rollout_id_of(event: &Event) -> Option<&str> {
    Some(match event {
        Event::RolloutVerified(e) => &e.rollout_id,
        Event::RubricGraded(e) => &e.rollout_id,
        Event::RolloutReverified(e) => &e.rollout_id,
        Event::RolloutCompleted(e) => &e.rollout_id,
        Event::RolloutFailed(e) => &e.rollout_id,
        Event::RolloutCancelled(e) => &e.rollout_id,
        _ => return None,
    })
}
