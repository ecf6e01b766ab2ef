//! The read models: run status, the run list and the rollout summaries, folded from
//! events alone. Everything is kept in ordered maps so that serialising the views gives
//! the same bytes for the same log, which is what the replay checksum relies on.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::budget::{Budget, RunPrices, Spend};
use crate::domain::events::{
    CompletionReason, Event, ForkParent, ModelSettings, ScheduledRollout, TokenUsage,
};
use crate::domain::faults::ToolFaults;
use crate::domain::feed::{groups_of_launch, Feed, Group};
use crate::domain::rollout::RolloutStatus;
use crate::domain::verdict::{RubricVerdict, Verdict};
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
    fn slot(&mut self, status: RolloutStatus) -> &mut u32 {
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
    /// Per group (numbered as [`Views::groups`] numbers them): its rollouts that have
    /// not ended. Kept as events arrive, so that a status never walks a long
    /// continuous run's groups; derived, so not serialised.
    #[serde(skip)]
    pub groups_unfinished: Vec<u32>,
    /// Groups whose rollouts have all ended.
    #[serde(skip)]
    pub groups_complete: u32,
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

    /// Whether every rollout of group `index` has ended.
    pub fn group_complete(&self, index: u32) -> bool {
        self.groups_unfinished.get(index as usize) == Some(&0)
    }

    /// A rollout joins group `group`: drawn into it, or restarted in it.
    fn join_group(&mut self, group: u32) {
        let slot = group as usize;
        if slot >= self.groups_unfinished.len() {
            self.groups_unfinished.resize(slot + 1, 0);
        } else if self.groups_unfinished[slot] == 0 {
            // A slot is made with its first member: at 0 it was complete.
            self.groups_complete = self.groups_complete.saturating_sub(1);
        }
        self.groups_unfinished[slot] += 1;
    }

    /// An unfinished rollout of group `group` ended or left it.
    fn leave_group(&mut self, group: u32) {
        if let Some(left) = self.groups_unfinished.get_mut(group as usize) {
            if *left > 0 {
                *left -= 1;
                if *left == 0 {
                    self.groups_complete += 1;
                }
            }
        }
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

/// The node that holds a run's lease, and until when.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct RunOwner {
    pub node_id: String,
    pub term: u64,
    pub expires_at: DateTime<Utc>,
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
/// ([`super::RolloutContent`]).
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
    fn pending(
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

/// An event as the views fold it. A rollout's steps (its start, model and tool calls,
/// NPC replies, summaries) are most of the log and most of its bytes, and the views
/// keep only their small facts, so those are decoded without their messages,
/// observations and replies ([`super::decode_fact`]). Made only by `decode_fact` and
/// `From<Event>`, so a step is always a [`FactKind::Step`].
#[derive(Debug, Clone)]
pub struct Fact(pub(super) FactKind);

#[derive(Debug, Clone)]
pub(super) enum FactKind {
    Step(StepKind, RolloutStep),
    Event(Event),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StepKind {
    Started,
    ModelCalled,
    ToolCalled,
    NpcReplied,
    ContextSummarized,
}

impl StepKind {
    pub(super) fn of(event_type: &str) -> Option<StepKind> {
        Some(match event_type {
            "RolloutStarted" => StepKind::Started,
            "ModelCalled" => StepKind::ModelCalled,
            "ToolCalled" => StepKind::ToolCalled,
            "NpcReplied" => StepKind::NpcReplied,
            "ContextSummarized" => StepKind::ContextSummarized,
            _ => return None,
        })
    }
}

/// The fields of a step's payload the views read; the others are skipped unread.
/// A step's time matters to the views only when it starts the rollout (the others
/// change no status), so only a start's is parsed.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct RolloutStep {
    rollout_id: String,
    #[serde(default)]
    step: u32,
    #[serde(default)]
    latency_ms: f64,
    #[serde(default)]
    usage: Option<TokenUsage>,
    /// When a start started.
    #[serde(
        default,
        alias = "started_at",
        deserialize_with = "rfc3339::deserialize_opt"
    )]
    at: Option<DateTime<Utc>>,
}

impl RolloutStep {
    /// Refuses a start without its time, as decoding the whole event would.
    pub(super) fn checked(self, kind: StepKind) -> Result<RolloutStep, serde_json::Error> {
        match (kind, self.at) {
            (StepKind::Started, None) => Err(serde::de::Error::missing_field("started_at")),
            _ => Ok(self),
        }
    }
}

impl From<Event> for Fact {
    fn from(event: Event) -> Fact {
        let step = |kind, rollout_id: &str, step, latency_ms, usage: &Option<TokenUsage>| {
            FactKind::Step(
                kind,
                RolloutStep {
                    rollout_id: rollout_id.to_string(),
                    step,
                    latency_ms,
                    usage: usage.clone(),
                    at: (kind == StepKind::Started).then(|| event.time()),
                },
            )
        };
        Fact(match &event {
            Event::RolloutStarted(e) => step(StepKind::Started, &e.rollout_id, 0, 0.0, &None),
            Event::ModelCalled(e) => step(
                StepKind::ModelCalled,
                &e.rollout_id,
                e.step,
                e.latency_ms,
                &e.usage,
            ),
            Event::ToolCalled(e) => step(
                StepKind::ToolCalled,
                &e.rollout_id,
                e.step,
                e.latency_ms,
                &None,
            ),
            Event::NpcReplied(e) => step(StepKind::NpcReplied, &e.rollout_id, e.step, 0.0, &None),
            Event::ContextSummarized(e) => step(
                StepKind::ContextSummarized,
                &e.rollout_id,
                e.step,
                0.0,
                &e.usage,
            ),
            _ => FactKind::Event(event),
        })
    }
}

/// What an event does to a rollout besides its own fields: a new status (and when), and tokens
/// spent (with whether they are charged to the run's spend, and as the judge's).
#[derive(Default)]
struct Change {
    status: Option<(RolloutStatus, DateTime<Utc>)>,
    usage: Option<(TokenUsage, Option<bool>)>,
}

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
                for scheduled in &e.rollouts {
                    self.rollouts.insert(
                        scheduled.rollout_id.clone(),
                        RolloutView::pending(
                            &e.run_id,
                            &e.scenario_id,
                            scheduled,
                            e.model.max_steps,
                            e.launched_at,
                        ),
                    );
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
                        groups_unfinished: Vec::new(),
                        groups_complete: 0,
                    },
                );
                if let Some(run) = self.runs.get_mut(&e.run_id) {
                    run.feed.evolve(event);
                    // A continuous run's groups are drawn later; an ordinary run's are
                    // its task instances.
                    if e.continuous.is_none() {
                        let launched = e
                            .rollouts
                            .iter()
                            .map(|r| (r.rollout_id.as_str(), r.task_id.as_str(), r.instance_seed));
                        for (index, group) in groups_of_launch(launched).iter().enumerate() {
                            for id in &group.rollout_ids {
                                if let Some(view) = self.rollouts.get_mut(id) {
                                    view.group = Some(index as u32);
                                    run.join_group(index as u32);
                                }
                            }
                        }
                    }
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
                            run.leave_group(group);
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
            run.join_group(group);
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
                    run.leave_group(group);
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

fn add_usage(total: &mut TokenUsage, delta: &TokenUsage) {
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(event_type: &str, data: Value) -> Fact {
        Fact::from(Event::decode(event_type, 1, data.to_string().as_bytes()).unwrap())
    }

    #[test]
    fn the_checksum_hashed_in_parallel_chunks_is_that_of_every_view_in_order() {
        let model = serde_json::to_value(ModelSettings::new("custom", "m")).unwrap();
        let mut views = Views::default();
        // Several chunks of rollouts, an odd number of them, and a run of one chunk.
        for r in 0..3 {
            let rollouts: Vec<Value> = (0..2_100)
                .map(
                    |i| json!({"rollout_id": format!("rol_{r}_{i:05}"), "task_id": "t", "seed": i}),
                )
                .collect();
            let launched = event(
                "RunLaunched",
                json!({"run_id": format!("run_{r}"), "scenario_id": "hr", "source": "rl-gym",
                    "task_ids": ["t"], "rollout_count": rollouts.len(), "max_parallel": null,
                    "model": model, "user_model": null, "rollouts": rollouts,
                    "launched_at": "2026-03-02T09:00:00Z"}),
            );
            views.apply(r, &launched);
        }
        assert!(views.rollouts.len() > 5 * 1024);

        use sha2::{Digest, Sha256};
        let mut one_by_one = Sha256::new();
        for run in views.runs.values() {
            one_by_one.update(serde_json::to_vec(run).unwrap());
        }
        for rollout in views.rollouts.values() {
            one_by_one.update(serde_json::to_vec(rollout).unwrap());
        }
        one_by_one.update(views.next_position.to_be_bytes());
        assert_eq!(views.checksum(), hex::encode(one_by_one.finalize()));
    }

    #[test]
    fn a_paused_run_says_so_counts_its_spend_and_is_not_resumed_on_restart() {
        let at = "2026-03-02T09:00:00Z";
        let model = serde_json::to_value(ModelSettings::new("custom", "m")).unwrap();
        let events = [
            event(
                "RunLaunched",
                json!({"run_id": "run_1", "scenario_id": "hr",
                "source": "rl-gym", "task_ids": ["t"], "rollout_count": 2,
                "max_parallel": 1, "model": model, "user_model": null,
                "rollouts": [{"rollout_id": "rol_1", "task_id": "t", "seed": 1},
                             {"rollout_id": "rol_2", "task_id": "t", "seed": 2}],
                "launched_at": at, "budget": {"max_total_tokens": 100},
                "prices": {"model": {"prompt_usd_per_mtok": 1.0,
                                     "completion_usd_per_mtok": 2.0}}}),
            ),
            event(
                "RolloutStarted",
                json!({"rollout_id": "rol_1", "run_id": "run_1",
                "task_id": "t", "messages": [], "started_at": at}),
            ),
            event(
                "ModelCalled",
                json!({"rollout_id": "rol_1", "step": 1, "model": "m",
                "message": {"role": "assistant", "content": "hi"},
                "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110},
                "logprobs": null, "latency_ms": 1.0, "called_at": at}),
            ),
            event(
                "RunPaused",
                json!({"run_id": "run_1", "reason": "spent",
                "tokens_used": 110, "cost_usd": 0.00012, "paused_at": at}),
            ),
        ];
        let mut views = Views::default();
        for (i, e) in events.iter().enumerate() {
            views.apply(i as u64, e);
        }
        let run = views.run("run_1").unwrap();
        assert_eq!((run.state(), run.paused), ("paused", true));
        assert_eq!(run.spent.tokens, 110);
        assert!((run.spent.cost_usd - 0.00012).abs() < 1e-12);
        assert!(views.unfinished_runs().is_empty());

        let resumed = event(
            "RunResumed",
            json!({"run_id": "run_1", "budget": null, "resumed_at": at}),
        );
        views.apply(events.len() as u64, &resumed);
        let run = views.run("run_1").unwrap();
        assert_eq!((run.state(), run.budget), ("running", None));
        assert_eq!(views.unfinished_runs().len(), 1);
    }

    #[test]
    fn a_run_is_orphaned_once_its_lease_lapses_or_is_given_up_and_always_for_its_own_node() {
        let launched_at = "2026-03-02T09:00:00Z";
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let model = serde_json::to_value(ModelSettings::new("custom", "m")).unwrap();
        let mut views = Views::default();
        views.apply(
            0,
            &event(
                "RunLaunched",
                json!({"run_id": "run_1", "scenario_id": "hr",
                "source": "rl-gym", "task_ids": ["t"], "rollout_count": 1,
                "max_parallel": null, "model": model, "user_model": null,
                "rollouts": [{"rollout_id": "rol_1", "task_id": "t", "seed": 1}],
                "launched_at": launched_at}),
            ),
        );
        let grace = chrono::Duration::seconds(10);
        let orphans = |views: &Views, now: &str, node: &str| {
            views
                .orphaned_runs(at(now), node, grace)
                .into_iter()
                .map(|(run, rollouts)| (run, rollouts.len()))
                .collect::<Vec<_>>()
        };
        let one = vec![("run_1".to_string(), 1)];
        assert!(
            orphans(&views, "2026-03-02T09:00:05Z", "b").is_empty(),
            "just launched: its node is taking it"
        );
        assert_eq!(
            orphans(&views, "2026-03-02T09:00:11Z", "b"),
            one,
            "never taken"
        );

        views.apply(
            1,
            &event(
                "RunLeaseAcquired",
                json!({"run_id": "run_1", "node_id": "a", "term": 1,
                "expires_at": "2026-03-02T09:00:20Z", "acquired_at": launched_at}),
            ),
        );
        assert!(orphans(&views, "2026-03-02T09:00:19Z", "b").is_empty());
        assert_eq!(
            orphans(&views, "2026-03-02T09:00:19Z", "a"),
            one,
            "its own node"
        );
        assert_eq!(orphans(&views, "2026-03-02T09:00:20Z", "b"), one, "lapsed");

        views.apply(
            2,
            &event(
                "RunLeaseReleased",
                json!({"run_id": "run_1", "node_id": "a", "term": 1,
                "released_at": "2026-03-02T09:00:12Z"}),
            ),
        );
        assert_eq!(
            orphans(&views, "2026-03-02T09:00:13Z", "b"),
            one,
            "given up"
        );
        assert!(views.run("run_1").unwrap().owner.is_none());
    }

    #[test]
    fn a_group_is_complete_once_its_rollouts_end_counting_a_restart_in_its_place() {
        let at = "2026-03-02T09:00:00Z";
        let model = serde_json::to_value(ModelSettings::new("builtin", "oracle")).unwrap();
        let scheduled = |group: u32, ids: &[&str]| {
            let rollouts: Vec<Value> = ids
                .iter()
                .map(|id| json!({"rollout_id": id, "task_id": "t", "seed": 1}))
                .collect();
            event(
                "GroupScheduled",
                json!({"run_id": "run_1", "group": group, "task_id": "t",
                    "rollouts": rollouts, "scheduled_at": at}),
            )
        };
        let ended = |id: &str| {
            event(
                "RolloutCompleted",
                json!({"rollout_id": id, "reason": "final_answer", "steps": 1,
                    "completed_at": at}),
            )
        };
        let mut views = Views::default();
        let apply = |views: &mut Views, fact: Fact| views.apply(views.next_position, &fact);
        apply(
            &mut views,
            event(
                "RunLaunched",
                json!({"run_id": "run_1", "scenario_id": "hr", "source": "rl-gym",
                    "task_ids": ["t"], "rollout_count": 2, "max_parallel": null,
                    "model": model, "user_model": null, "rollouts": [], "launched_at": at,
                    "continuous": {"max_groups": null, "max_unconsumed_groups": 4,
                        "max_staleness": 0, "on_stale": "restart", "seed": 1}}),
            ),
        );
        apply(&mut views, scheduled(0, &["rol_a", "rol_b"]));
        apply(&mut views, scheduled(1, &["rol_c", "rol_d"]));
        apply(&mut views, ended("rol_a"));
        apply(&mut views, ended("rol_c"));
        apply(&mut views, ended("rol_d"));
        let progress = |views: &Views| {
            let run = views.run("run_1").unwrap();
            (
                run.group_complete(0),
                run.group_complete(1),
                run.groups_complete,
            )
        };
        assert_eq!(progress(&views), (false, true, 1));

        // rol_b goes stale: rol_e takes its place, and rol_b's own end counts no more.
        apply(
            &mut views,
            event(
                "RolloutRestarted",
                json!({"run_id": "run_1", "group": 0, "replaced": "rol_b",
                    "rollout": {"rollout_id": "rol_e", "task_id": "t", "seed": 1},
                    "reason": "stale", "restarted_at": at}),
            ),
        );
        apply(&mut views, ended("rol_b"));
        assert_eq!(progress(&views), (false, true, 1));
        apply(&mut views, ended("rol_e"));
        assert_eq!(progress(&views), (true, true, 2));

        // Every group's count is what walking its rollouts says.
        let run = views.run("run_1").unwrap();
        for (index, group) in views.groups(run).iter().enumerate() {
            let walked = group
                .rollout_ids
                .iter()
                .all(|id| views.rollout(id).unwrap().status.is_terminal());
            assert_eq!(run.group_complete(index as u32), walked, "group {index}");
        }
    }
}
