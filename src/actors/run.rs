//! `RunActor`: one per active run. It starts the run's rollouts no more than
//! `max_parallel` at a time (the server-wide cap is a semaphore the loops share),
//! and carries out cancellation: pending rollouts are cancelled at once, running ones
//! stop after their current step. Its [`RunBudget`] is shared with the step loops:
//! once spent, no rollout starts, the running ones stop before their next model call,
//! and when none runs any more the run is recorded as paused and the actor ends.
//!
//! Over 600 lines: scheduling, budget, cancellation and a continuous run's groups share
//! the actor's mutable state.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use actix::prelude::*;
use chrono::Utc;
use futures::StreamExt;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::breakpoints::Breakpoint;
use super::registry::{Registry, RunEnded, StartRun};
use super::rollout::RolloutActor;
use super::step_loop::RolloutJob;
use super::Deps;
use crate::domain::budget::{exhausted, Budget, RunPrices, Spend};
use crate::domain::events::{
    ContinuousSettings, Event, RolloutCancelled, RolloutRestarted, RunLaunched, ScheduledRollout,
};
use crate::domain::feed::{draw_group, Feed, GroupProgress, Policy};
use crate::domain::ids::new_rollout_id;
use crate::domain::ids::run_stream;
use crate::domain::run::{decide, RunCommand};
use crate::journal;
use crate::store::StoreError;
use uuid::Uuid;

/// What a run may spend and has spent, shared by its actor and its step loops.
#[derive(Debug)]
pub struct RunBudget {
    limit: Option<Budget>,
    prices: Option<RunPrices>,
    spent: Mutex<Spend>,
    /// This node lost the run's lease: its loops stop where they are (a model call in
    /// flight is dropped) and record nothing; the new holder resumes them.
    halted: CancellationToken,
}

impl RunBudget {
    pub fn new(limit: Option<Budget>, prices: Option<RunPrices>, spent: Spend) -> Arc<RunBudget> {
        Arc::new(RunBudget {
            limit,
            prices,
            spent: Mutex::new(spent),
            halted: CancellationToken::new(),
        })
    }

    pub fn unlimited() -> Arc<RunBudget> {
        Self::new(None, None, Spend::default())
    }

    /// Counts what a recorded event spent.
    pub fn add(&self, event: &Event) {
        if self.limit.is_some() {
            self.spent.lock().add(event, self.prices.as_ref());
        }
    }

    /// Why no more model calls may be made, if so.
    pub fn exhausted(&self) -> Option<String> {
        if self.is_halted() {
            return Some("this node no longer holds the run's lease".to_string());
        }
        exhausted(self.limit.as_ref(), &self.spent.lock())
    }

    pub fn halt(&self) {
        self.halted.cancel();
    }

    pub fn is_halted(&self) -> bool {
        self.halted.is_cancelled()
    }

    pub fn spent(&self) -> Spend {
        *self.spent.lock()
    }
}

/// The policy a run's turns are answered by now, shared by its actor and its step
/// loops: the launch's (ordinal 0), then each `PolicyUpdated`'s. An update that names
/// no `base_url` keeps the endpoint in force.
#[derive(Debug)]
pub struct RunPolicy {
    current: parking_lot::RwLock<(u32, Policy)>,
}

impl RunPolicy {
    /// The policy in force after the run's recorded updates.
    pub fn new(run: &RunLaunched, feed: &Feed) -> Arc<RunPolicy> {
        let launch = Policy {
            version: run
                .model
                .tokens
                .as_ref()
                .and_then(|t| t.policy_version.clone()),
            base_url: run.model.base_url.clone(),
        };
        let policy = RunPolicy {
            current: parking_lot::RwLock::new((0, launch)),
        };
        for (i, update) in feed.policies.iter().enumerate() {
            policy.update(i as u32 + 1, update.clone());
        }
        Arc::new(policy)
    }

    pub fn current(&self) -> (u32, Policy) {
        self.current.read().clone()
    }

    /// The ordinal in force, without copying the policy: what each model call checks.
    pub fn ordinal(&self) -> u32 {
        self.current.read().0
    }

    /// Takes update `ordinal` unless a later one is already in force.
    pub fn update(&self, ordinal: u32, update: Policy) {
        let mut current = self.current.write();
        if ordinal > current.0 {
            let base_url = update.base_url.or_else(|| current.1.base_url.clone());
            *current = (
                ordinal,
                Policy {
                    version: update.version,
                    base_url,
                },
            );
        }
    }
}

/// Rollouts waiting to start across every run, against `max_pending_rollouts`: a
/// launch reserves its rollouts before it is recorded (and is refused beyond the cap),
/// a run actor counts the rollouts it queues and uncounts each as it starts or as the
/// actor ends with some still queued.
#[derive(Debug)]
pub struct PendingRollouts {
    count: std::sync::atomic::AtomicUsize,
    cap: usize,
    gauge: prometheus::IntGauge,
}

impl PendingRollouts {
    pub fn new(cap: usize, gauge: prometheus::IntGauge) -> Arc<PendingRollouts> {
        Arc::new(PendingRollouts {
            count: Default::default(),
            cap,
            gauge,
        })
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    pub fn count(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Counts `n` more unless that would pass the cap; answers whether it did.
    pub fn try_reserve(&self, n: usize) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let reserved = self.count.fetch_update(Relaxed, Relaxed, |now| {
            now.checked_add(n).filter(|&after| after <= self.cap)
        });
        self.gauge.set(self.count() as i64);
        reserved.is_ok()
    }

    /// Counts `n` more whatever the cap (rollouts already recorded, resumed).
    pub fn add(&self, n: usize) {
        let before = self
            .count
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        self.gauge.set((before + n) as i64);
    }

    pub fn release(&self, n: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        let _ = self
            .count
            .fetch_update(Relaxed, Relaxed, |now| Some(now.saturating_sub(n)));
        self.gauge.set(self.count() as i64);
    }
}

/// The most groups a continuous run draws in one append.
const MAX_GROUPS_PER_DRAW: usize = 64;

/// Cancellations of pending rollouts written at once.
const CANCEL_CONCURRENCY: usize = 256;

pub struct RunActor {
    deps: Arc<Deps>,
    run: Arc<RunLaunched>,
    /// Rollouts not started yet, as indexes into the run's list: a queued rollout
    /// costs 4 bytes here, not a copy of its ids.
    pending: VecDeque<u32>,
    running: HashMap<String, CancellationToken>,
    max_parallel: usize,
    registry: Addr<Registry>,
    budget: Arc<RunBudget>,
    /// Rollouts that stopped before finishing (their budget was spent, or the log
    /// failed): they resume with the run.
    stopped_unfinished: Vec<ScheduledRollout>,
    /// A cancel was carried out: the budget no longer matters.
    cancelled: bool,
    /// The pause is being recorded: nothing more is scheduled.
    pausing: bool,
    /// Rollouts drawn after the launch (a continuous run's groups and restarts):
    /// queue indexes past the launch's rollouts point here.
    drawn: Vec<ScheduledRollout>,
    /// The policy in force, shared with the step loops.
    policy: Arc<RunPolicy>,
    /// A continuous run's groups as this actor drives them.
    groups: Option<GroupDriver>,
}

/// A continuous run's groups: which members are unfinished, how many complete groups
/// wait for a consumer (the backpressure), and whether a draw is being recorded.
struct GroupDriver {
    settings: ContinuousSettings,
    feed: Feed,
    /// Unfinished rollout → its group.
    member_of: HashMap<String, u32>,
    progress: GroupProgress,
    /// Complete groups no consumer acknowledged.
    unconsumed: u32,
    drawing: bool,
}

impl GroupDriver {
    fn new(settings: ContinuousSettings, feed: Feed, unfinished_ids: &HashSet<&str>) -> Self {
        let mut driver = GroupDriver {
            settings,
            member_of: HashMap::new(),
            progress: GroupProgress::default(),
            unconsumed: 0,
            drawing: false,
            feed: Feed::default(),
        };
        for (index, group) in feed.groups.iter().enumerate() {
            let ids = group
                .rollout_ids
                .iter()
                .filter(|id| unfinished_ids.contains(id.as_str()));
            driver.add(index as u32, ids);
            if driver.progress.is_complete(index as u32) && !feed.consumed_by_any(index as u32) {
                driver.unconsumed += 1;
            }
        }
        driver.feed = feed;
        driver
    }

    fn add<'a>(&mut self, group: u32, unfinished: impl IntoIterator<Item = &'a String>) {
        self.progress.open(group);
        for id in unfinished {
            self.member_of.insert(id.clone(), group);
            self.progress.join(group);
        }
    }

    /// A member ended (`replaced_by`: restarted as that rollout).
    fn ended(&mut self, rollout_id: &str, replaced_by: Option<&str>) {
        let Some(group) = self.member_of.remove(rollout_id) else {
            return;
        };
        if let Some(new) = replaced_by {
            self.member_of.insert(new.to_string(), group);
            return;
        }
        if self.progress.leave(group) && !self.feed.consumed_by_any(group) {
            self.unconsumed += 1;
        }
    }

    fn consumed(&mut self, event: &Event) {
        if let Event::GroupConsumed(e) = event {
            for &group in &e.groups {
                if self.progress.is_complete(group) && !self.feed.consumed_by_any(group) {
                    self.unconsumed = self.unconsumed.saturating_sub(1);
                }
            }
        }
        self.feed.evolve(event);
    }

    /// Too many complete groups wait for a consumer: no rollout starts.
    fn backpressured(&self) -> bool {
        self.unconsumed >= self.settings.max_unconsumed_groups
    }

    fn group_of(&self, rollout_id: &str) -> Option<u32> {
        self.member_of.get(rollout_id).copied()
    }
}

impl RunActor {
    pub fn new(deps: Arc<Deps>, start: StartRun, registry: Addr<Registry>) -> Self {
        let StartRun {
            run,
            rollouts,
            budget,
            feed,
            drawn,
            ..
        } = start;
        // A continuous run without a cap on parallelism runs one group at a time.
        let max_parallel = run
            .max_parallel
            .or(run.continuous.map(|_| run.rollout_count))
            .map_or(usize::MAX, |n| n.max(1) as usize);
        let policy = RunPolicy::new(&run, &feed);
        let groups = run.continuous.map(|settings| {
            let unfinished: HashSet<&str> =
                rollouts.iter().map(|r| r.rollout_id.as_str()).collect();
            GroupDriver::new(settings, feed, &unfinished)
        });
        let pending = queue_of(&run.rollouts, &drawn, rollouts);
        deps.pending.add(pending.len());
        RunActor {
            policy,
            deps,
            run,
            pending,
            running: HashMap::new(),
            max_parallel,
            registry,
            budget,
            stopped_unfinished: Vec::new(),
            cancelled: false,
            pausing: false,
            drawn,
            groups,
        }
    }

    /// The rollout at queue index `index`: the launch's, then the drawn ones.
    fn scheduled(&self, index: u32) -> &ScheduledRollout {
        let index = index as usize;
        match self.run.rollouts.get(index) {
            Some(rollout) => rollout,
            None => &self.drawn[index - self.run.rollouts.len()],
        }
    }

    /// Whether this continuous run may draw more groups (or is drawing one).
    fn may_draw(&self) -> bool {
        self.groups
            .as_ref()
            .is_some_and(|g| g.drawing || g.feed.open(self.cancelled))
    }

    fn schedule(&mut self, ctx: &mut Context<Self>) {
        if self.pausing {
            return;
        }
        if self.budget.is_halted() {
            // Another node drives the run now: start nothing, record nothing.
            self.deps.pending.release(self.pending.len());
            self.pending.clear();
            if self.running.is_empty() {
                self.end(ctx);
            }
            return;
        }
        let spent = (!self.cancelled).then(|| self.budget.exhausted()).flatten();
        if let Some(reason) = spent {
            self.reach(|run_id, running| Breakpoint::HeldBackByBudget { run_id, running });
            if self.running.is_empty() {
                if self.pending.is_empty() && self.stopped_unfinished.is_empty() {
                    self.end(ctx);
                } else {
                    self.pause(reason, ctx);
                }
            }
            return;
        }
        // Too many complete groups wait for a consumer: nothing starts until one
        // acknowledges (`FeedChange`).
        let backpressured = self.groups.as_ref().is_some_and(GroupDriver::backpressured);
        if backpressured {
            self.reach(|run_id, running| Breakpoint::HeldBackByConsumers { run_id, running });
        }
        while self.running.len() < self.max_parallel && !backpressured {
            let Some(index) = self.pending.pop_front() else {
                break;
            };
            let rollout = self.scheduled(index).clone();
            self.deps.pending.release(1);
            let cancel = CancellationToken::new();
            self.running
                .insert(rollout.rollout_id.clone(), cancel.clone());
            let job = RolloutJob {
                run: self.run.clone(),
                rollout,
                cancel,
                budget: self.budget.clone(),
                policy: self.policy.clone(),
            };
            RolloutActor::new(self.deps.clone(), job, ctx.address()).start();
        }
        // A continuous run keeps `max_parallel` to twice that many rollouts queued
        // ahead, so a slot never waits for a group to be recorded, and records them
        // in few appends: drawing as soon as one slot was free cost an append and its
        // fsync for every group, and 10% of an oracle rollout's CPU.
        if self.pending.len() <= self.max_parallel && !backpressured {
            self.draw(ctx);
        }
        if self.pending.is_empty() && self.running.is_empty() && !self.may_draw() {
            self.end(ctx);
        }
    }

    /// Records a continuous run's next groups, enough to queue twice `max_parallel`
    /// rollouts ahead (one append for them all), then queues their rollouts. The
    /// actor goes on meanwhile (rollouts end and start); groups whose run was
    /// cancelled while they were recorded are cancelled at once.
    fn draw(&mut self, ctx: &mut Context<Self>) {
        let cancelled = self.cancelled;
        let free = self
            .max_parallel
            .saturating_mul(2)
            .saturating_sub(self.pending.len());
        let Some(groups) = self
            .groups
            .as_mut()
            .filter(|g| !g.drawing && g.feed.open(cancelled))
        else {
            return;
        };
        let drawn = groups.feed.groups.len() as u32;
        let left = groups
            .settings
            .max_groups
            .map_or(u32::MAX, |max| max - drawn);
        let wanted = free.div_ceil(self.run.rollout_count.max(1) as usize);
        let count = (wanted.clamp(1, MAX_GROUPS_PER_DRAW) as u32).min(left);
        groups.drawing = true;
        let now = Utc::now();
        let events: Vec<Event> = (drawn..drawn + count)
            .map(|index| {
                Event::GroupScheduled(draw_group(
                    &self.run,
                    &groups.settings,
                    index,
                    || new_rollout_id(Uuid::now_v7()),
                    now,
                ))
            })
            .collect();
        let deps = self.deps.clone();
        let run_id = self.run.run_id.clone();
        let work = async move {
            let recorded =
                journal::append_any(deps.store.as_ref(), &run_stream(&run_id), &events).await;
            (events, recorded)
        };
        ctx.spawn(work.into_actor(self).map(|(events, recorded), act, ctx| {
            let Some(groups) = act.groups.as_mut() else {
                return;
            };
            groups.drawing = false;
            if let Err(error) = recorded {
                // Nothing drawn: try again shortly (a full disk may clear).
                tracing::error!(run_id = act.run.run_id, %error, "could not record a group");
                ctx.run_later(std::time::Duration::from_secs(1), |act, ctx| {
                    act.schedule(ctx)
                });
                return;
            }
            for event in &events {
                let Event::GroupScheduled(e) = event else {
                    continue;
                };
                act.deps.metrics.groups_scheduled.inc();
                groups.add(e.group, e.rollouts.iter().map(|r| &r.rollout_id));
                groups.feed.evolve(event);
                let first = (act.run.rollouts.len() + act.drawn.len()) as u32;
                act.drawn.extend(e.rollouts.iter().cloned());
                act.pending.extend(first..first + e.rollouts.len() as u32);
                act.deps.pending.add(e.rollouts.len());
            }
            if act.cancelled {
                let (_, unstarted) = act.cancel_all();
                let work = cancel_unstarted(act.deps.clone(), unstarted);
                ctx.wait(work.into_actor(act).map(|(), act, ctx| act.schedule(ctx)));
                return;
            }
            act.schedule(ctx);
        }));
    }

    /// A stale rollout stopped before its next model call: records its replacement
    /// in its group (a fresh rollout of the same task and seed, queued first), then
    /// cancels it with `reason`. Recorded in that order, the group is never complete
    /// without a member; after a crash between the two the stale rollout, no longer a
    /// member, is only cancelled.
    fn restart(&mut self, rollout_id: String, reason: String, ctx: &mut Context<Self>) {
        // A cancelled run replaces nothing: the rollout is only cancelled.
        let group = (!self.cancelled)
            .then(|| self.groups.as_ref().and_then(|g| g.group_of(&rollout_id)))
            .flatten();
        let old = self
            .run
            .rollouts
            .iter()
            .chain(&self.drawn)
            .find(|r| r.rollout_id == rollout_id)
            .cloned();
        let replacement = group.zip(old).map(|(group, old)| {
            Event::RolloutRestarted(RolloutRestarted {
                run_id: self.run.run_id.clone(),
                group,
                replaced: rollout_id.clone(),
                rollout: ScheduledRollout {
                    rollout_id: new_rollout_id(Uuid::now_v7()),
                    ..old
                },
                reason: reason.clone(),
                restarted_at: Utc::now(),
            })
        });
        let deps = self.deps.clone();
        let run_id = self.run.run_id.clone();
        let work = async move {
            if let Some(event) = &replacement {
                journal::append_any(
                    deps.store.as_ref(),
                    &run_stream(&run_id),
                    std::slice::from_ref(event),
                )
                .await?;
            }
            let cancelled = Event::RolloutCancelled(RolloutCancelled {
                rollout_id: rollout_id.clone(),
                reason,
                cancelled_at: Utc::now(),
            });
            if journal::finish_rollout(deps.store.as_ref(), &rollout_id, cancelled).await? {
                deps.metrics
                    .rollouts_finished
                    .with_label_values(&["cancelled"])
                    .inc();
            }
            Ok::<_, StoreError>(replacement)
        };
        ctx.wait(work.into_actor(self).map(move |recorded, act, ctx| {
            match recorded {
                Ok(Some(Event::RolloutRestarted(e))) => {
                    act.deps.metrics.rollouts_restarted_stale.inc();
                    if let Some(groups) = act.groups.as_mut() {
                        groups.ended(&e.replaced, Some(&e.rollout.rollout_id));
                        groups
                            .feed
                            .evolve(&Event::RolloutRestarted(RolloutRestarted::clone(&e)));
                    }
                    let index = (act.run.rollouts.len() + act.drawn.len()) as u32;
                    act.drawn.push(e.rollout);
                    act.pending.push_front(index);
                    act.deps.pending.add(1);
                }
                Ok(_) => {}
                Err(error) => {
                    // Left as it was: it resumes with the run, and goes stale again.
                    tracing::error!(run_id = act.run.run_id, %error, "could not record a restart");
                }
            }
            act.schedule(ctx);
        }));
    }

    /// Reports a point of this run, built from its id and how many rollouts run.
    fn reach(&self, point: impl FnOnce(String, usize) -> Breakpoint) {
        let running = self.running.len();
        self.deps
            .breakpoints
            .reach(|| point(self.run.run_id.clone(), running));
    }

    fn end(&mut self, ctx: &mut Context<Self>) {
        self.reach(|run_id, _| Breakpoint::RunEnded { run_id });
        self.registry.do_send(RunEnded {
            run_id: self.run.run_id.clone(),
        });
        ctx.stop();
    }

    /// Records the pause once nothing runs, then ends. Messages wait meanwhile, so a
    /// cancel arriving now is carried out after (the domain then records no pause).
    fn pause(&mut self, reason: String, ctx: &mut Context<Self>) {
        self.pausing = true;
        let deps = self.deps.clone();
        let run_id = self.run.run_id.clone();
        let spend = self.budget.spent();
        let work = async move { record_pause(&deps, &run_id, reason, spend).await };
        ctx.wait(work.into_actor(self).map(|recorded, act, ctx| match recorded {
            Ok(true) => {
                act.deps.metrics.runs_paused.inc();
                act.reach(|run_id, _| Breakpoint::RunPaused { run_id });
                act.end(ctx);
            }
            // Cancelled meanwhile: the cancel that is on its way finishes the run.
            Ok(false) => act.pausing = false,
            Err(error) => {
                // The rollouts resume on the next start, which records the pause then.
                tracing::error!(run_id = act.run.run_id, %error, "could not record the pause");
                act.end(ctx);
            }
        }));
    }

    /// Stops everything: pending rollouts are recorded as cancelled, running ones are
    /// told to stop after their step. Returns how many were active.
    fn cancel_all(&mut self) -> (usize, Vec<ScheduledRollout>) {
        self.cancelled = true;
        for token in self.running.values() {
            token.cancel();
        }
        // Rollouts stopped unfinished are cancelled with the pending ones: nothing
        // else would ever end them.
        let queued: Vec<u32> = self.pending.drain(..).collect();
        let mut pending: Vec<_> = queued
            .into_iter()
            .map(|index| self.scheduled(index).clone())
            .collect();
        self.deps.pending.release(pending.len());
        pending.append(&mut self.stopped_unfinished);
        (pending.len() + self.running.len(), pending)
    }
}

/// `rollouts` (the run's, or some of them in its order) as indexes into the launch's
/// rollouts followed by the drawn ones.
fn queue_of(
    all: &[ScheduledRollout],
    drawn: &[ScheduledRollout],
    rollouts: Vec<ScheduledRollout>,
) -> VecDeque<u32> {
    if drawn.is_empty()
        && rollouts.len() == all.len()
        && rollouts.iter().zip(all).all(|(a, b)| a == b)
    {
        return (0..all.len() as u32).collect();
    }
    let index: HashMap<&str, u32> = all
        .iter()
        .chain(drawn)
        .enumerate()
        .map(|(i, r)| (r.rollout_id.as_str(), i as u32))
        .collect();
    rollouts
        .iter()
        .filter_map(|r| index.get(r.rollout_id.as_str()).copied())
        .collect()
}

impl Actor for RunActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.schedule(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        // Paused with rollouts still queued: they are counted again when it resumes.
        self.deps.pending.release(self.pending.len());
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct RolloutEnded {
    pub rollout_id: String,
    /// Whether it reached a terminal state (not stopped by the budget or the log).
    pub finished: bool,
    /// It was cancelled because it went stale and is to be restarted, with why.
    pub restart: Option<String>,
}

impl Handler<RolloutEnded> for RunActor {
    type Result = ();

    fn handle(&mut self, msg: RolloutEnded, ctx: &mut Self::Context) {
        self.running.remove(&msg.rollout_id);
        if let Some(reason) = msg.restart {
            self.restart(msg.rollout_id, reason, ctx);
            return;
        }
        if msg.finished {
            if let Some(groups) = self.groups.as_mut() {
                groups.ended(&msg.rollout_id, None);
            }
        } else {
            // Rare (a spent budget, a failing log): the run's list is searched only then.
            if let Some(rollout) = self
                .run
                .rollouts
                .iter()
                .chain(&self.drawn)
                .find(|r| r.rollout_id == msg.rollout_id)
            {
                self.stopped_unfinished.push(rollout.clone());
            }
        }
        self.schedule(ctx);
    }
}

/// What a run's feed recorded, for its actor: an acknowledgement (backpressure may
/// lift) or a policy update (every later turn uses it).
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct FeedChange(pub Event);

impl Handler<FeedChange> for RunActor {
    type Result = ();

    fn handle(&mut self, msg: FeedChange, ctx: &mut Self::Context) {
        match &msg.0 {
            Event::PolicyUpdated(e) => self.policy.update(e.ordinal, Policy::from(e)),
            Event::GroupConsumed(_) => {
                if let Some(groups) = self.groups.as_mut() {
                    groups.consumed(&msg.0);
                }
            }
            _ => {}
        }
        self.reach(|run_id, _| Breakpoint::FeedChanged { run_id });
        self.schedule(ctx);
    }
}

/// The node lost the run's lease: stop its rollouts before their next model call
/// without recording anything, then end.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Halt;

impl Handler<Halt> for RunActor {
    type Result = ();

    fn handle(&mut self, _msg: Halt, ctx: &mut Self::Context) {
        tracing::warn!(
            run_id = self.run.run_id,
            "lease lost: this node stops driving the run"
        );
        self.budget.halt();
        self.schedule(ctx);
    }
}

/// Cancel the run's active rollouts; answers how many were active.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CancelRollouts;

impl Handler<CancelRollouts> for RunActor {
    // Atomic: no `RolloutEnded` may stop the actor before the pending rollouts'
    // cancellations are recorded and the caller has its answer.
    type Result = AtomicResponse<Self, usize>;

    fn handle(&mut self, _msg: CancelRollouts, _ctx: &mut Self::Context) -> Self::Result {
        if self.budget.is_halted() {
            // Not this node's run any more: its holder carries the cancel out.
            return AtomicResponse::new(Box::pin(actix::fut::ready(0)));
        }
        let (active, pending) = self.cancel_all();
        let deps = self.deps.clone();
        let work = async move {
            cancel_unstarted(deps, pending).await;
            active
        };
        AtomicResponse::new(Box::pin(work.into_actor(self).map(|active, act, ctx| {
            act.schedule(ctx);
            active
        })))
    }
}

/// Records rollouts that never started as cancelled with their run.
async fn cancel_unstarted(deps: Arc<Deps>, rollouts: Vec<ScheduledRollout>) {
    // Concurrent appends share the log's fsyncs (group commit); one by one,
    // cancelling a large run would cost one fsync per pending rollout.
    futures::stream::iter(rollouts)
        .for_each_concurrent(CANCEL_CONCURRENCY, |rollout| {
            let deps = deps.clone();
            async move {
                let event = Event::RolloutCancelled(RolloutCancelled {
                    rollout_id: rollout.rollout_id.clone(),
                    reason: "run cancelled before the rollout started".to_string(),
                    cancelled_at: Utc::now(),
                });
                match journal::finish_rollout(deps.store.as_ref(), &rollout.rollout_id, event)
                    .await
                {
                    Ok(true) => deps
                        .metrics
                        .rollouts_finished
                        .with_label_values(&["cancelled"])
                        .inc(),
                    Ok(false) => {}
                    Err(error) => {
                        tracing::error!(rollout_id = rollout.rollout_id, %error, "could not record a cancellation")
                    }
                }
            }
        })
        .await;
}

/// Records that the run paused, unless it was cancelled (or paused) meanwhile.
/// Answers whether the pause was recorded.
async fn record_pause(
    deps: &Deps,
    run_id: &str,
    reason: String,
    spend: Spend,
) -> Result<bool, StoreError> {
    // Another writer of the run's stream (a cancel) makes the append conflict: read
    // again and let the domain decide again.
    for _ in 0..3 {
        let state = journal::load_run(deps.store.as_ref(), run_id).await?;
        let command = RunCommand::Pause {
            reason: reason.clone(),
            spend,
            now: Utc::now(),
        };
        let Ok(events) = decide(&state, command) else {
            return Ok(false);
        };
        if events.is_empty() {
            return Ok(state.paused);
        }
        match journal::append(
            deps.store.as_ref(),
            &run_stream(run_id),
            state.revision,
            &events,
        )
        .await
        {
            Ok(_) => {
                tracing::info!(run_id, reason, "run paused: its budget is spent");
                return Ok(true);
            }
            Err(StoreError::WrongExpectedVersion { .. }) => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(false)
}
