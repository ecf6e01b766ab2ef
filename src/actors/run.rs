//! `RunActor`: one per active run. It starts the run's rollouts no more than
//! `max_parallel` at a time (the server-wide cap is a semaphore the loops share),
//! and carries out cancellation: pending rollouts are cancelled at once, running ones
//! stop after their current step. Its [`RunBudget`] is shared with the step loops:
//! once spent, no rollout starts, the running ones stop before their next model call,
//! and when none runs any more the run is recorded as paused and the actor ends.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use actix::prelude::*;
use chrono::Utc;
use futures::StreamExt;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::registry::{Registry, RunEnded};
use super::rollout::RolloutActor;
use super::step_loop::RolloutJob;
use super::{journal, Deps};
use crate::domain::budget::{exhausted, Budget, RunPrices, Spend};
use crate::domain::events::{Event, RolloutCancelled, RunLaunched, ScheduledRollout};
use crate::domain::ids::run_stream;
use crate::domain::run::{decide, RunCommand};
use crate::store::StoreError;

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
}

impl RunActor {
    pub fn new(
        deps: Arc<Deps>,
        run: Arc<RunLaunched>,
        rollouts: Vec<ScheduledRollout>,
        registry: Addr<Registry>,
        budget: Arc<RunBudget>,
    ) -> Self {
        let max_parallel = run.max_parallel.map_or(usize::MAX, |n| n.max(1) as usize);
        let pending = queue_of(&run.rollouts, rollouts);
        deps.pending.add(pending.len());
        RunActor {
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
        }
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
            if self.running.is_empty() {
                if self.pending.is_empty() && self.stopped_unfinished.is_empty() {
                    self.end(ctx);
                } else {
                    self.pause(reason, ctx);
                }
            }
            return;
        }
        while self.running.len() < self.max_parallel {
            let Some(index) = self.pending.pop_front() else {
                break;
            };
            let rollout = self.run.rollouts[index as usize].clone();
            self.deps.pending.release(1);
            let cancel = CancellationToken::new();
            self.running
                .insert(rollout.rollout_id.clone(), cancel.clone());
            let job = RolloutJob {
                run: self.run.clone(),
                rollout,
                cancel,
                budget: self.budget.clone(),
            };
            RolloutActor::new(self.deps.clone(), job, ctx.address()).start();
        }
        if self.pending.is_empty() && self.running.is_empty() {
            self.end(ctx);
        }
    }

    fn end(&mut self, ctx: &mut Context<Self>) {
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
        let mut pending: Vec<_> = self
            .pending
            .drain(..)
            .map(|index| self.run.rollouts[index as usize].clone())
            .collect();
        self.deps.pending.release(pending.len());
        pending.append(&mut self.stopped_unfinished);
        (pending.len() + self.running.len(), pending)
    }
}

/// `rollouts` (the run's, or some of them in its order) as indexes into `all`.
fn queue_of(all: &[ScheduledRollout], rollouts: Vec<ScheduledRollout>) -> VecDeque<u32> {
    if rollouts.len() == all.len() && rollouts.iter().zip(all).all(|(a, b)| a == b) {
        return (0..all.len() as u32).collect();
    }
    let index: HashMap<&str, u32> = all
        .iter()
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
}

impl Handler<RolloutEnded> for RunActor {
    type Result = ();

    fn handle(&mut self, msg: RolloutEnded, ctx: &mut Self::Context) {
        self.running.remove(&msg.rollout_id);
        if !msg.finished {
            // Rare (a spent budget, a failing log): the run's list is searched only then.
            if let Some(rollout) = self
                .run
                .rollouts
                .iter()
                .find(|r| r.rollout_id == msg.rollout_id)
            {
                self.stopped_unfinished.push(rollout.clone());
            }
        }
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
            // Concurrent appends share the log's fsyncs (group commit); one by one,
            // cancelling a large run would cost one fsync per pending rollout.
            futures::stream::iter(pending)
                .for_each_concurrent(CANCEL_CONCURRENCY, |rollout| {
                    let deps = deps.clone();
                    async move {
                        let event = Event::RolloutCancelled(RolloutCancelled {
                            rollout_id: rollout.rollout_id.clone(),
                            reason: "run cancelled before the rollout started".to_string(),
                            cancelled_at: Utc::now(),
                        });
                        match journal::finish_rollout(deps.store.as_ref(), &rollout.rollout_id, event).await {
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
            active
        };
        AtomicResponse::new(Box::pin(work.into_actor(self).map(|active, act, ctx| {
            act.schedule(ctx);
            active
        })))
    }
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
