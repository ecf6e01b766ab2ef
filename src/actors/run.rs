//! `RunActor`: one per active run. It starts the run's rollouts no more than
//! `max_parallel` at a time (the server-wide cap is a semaphore the loops share),
//! and carries out cancellation: pending rollouts are cancelled at once, running ones
//! stop after their current step.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use actix::prelude::*;
use chrono::Utc;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::registry::{Registry, RunEnded};
use super::rollout::RolloutActor;
use super::step_loop::RolloutJob;
use super::{journal, Deps};
use crate::domain::events::{Event, RolloutCancelled, RunLaunched, ScheduledRollout};

/// Cancellations of pending rollouts written at once.
const CANCEL_CONCURRENCY: usize = 256;

pub struct RunActor {
    deps: Arc<Deps>,
    run: Arc<RunLaunched>,
    pending: VecDeque<ScheduledRollout>,
    running: HashMap<String, CancellationToken>,
    max_parallel: usize,
    registry: Addr<Registry>,
}

impl RunActor {
    pub fn new(
        deps: Arc<Deps>,
        run: Arc<RunLaunched>,
        rollouts: Vec<ScheduledRollout>,
        registry: Addr<Registry>,
    ) -> Self {
        let max_parallel = run.max_parallel.map_or(usize::MAX, |n| n.max(1) as usize);
        RunActor {
            deps,
            run,
            pending: rollouts.into(),
            running: HashMap::new(),
            max_parallel,
            registry,
        }
    }

    fn schedule(&mut self, ctx: &mut Context<Self>) {
        while self.running.len() < self.max_parallel {
            let Some(rollout) = self.pending.pop_front() else {
                break;
            };
            let cancel = CancellationToken::new();
            self.running
                .insert(rollout.rollout_id.clone(), cancel.clone());
            let job = RolloutJob {
                run: self.run.clone(),
                rollout,
                cancel,
            };
            RolloutActor::new(self.deps.clone(), job, ctx.address()).start();
        }
        if self.pending.is_empty() && self.running.is_empty() {
            self.registry.do_send(RunEnded {
                run_id: self.run.run_id.clone(),
            });
            ctx.stop();
        }
    }

    /// Stops everything: pending rollouts are recorded as cancelled, running ones are
    /// told to stop after their step. Returns how many were active.
    fn cancel_all(&mut self) -> (usize, Vec<ScheduledRollout>) {
        for token in self.running.values() {
            token.cancel();
        }
        let pending: Vec<_> = self.pending.drain(..).collect();
        (pending.len() + self.running.len(), pending)
    }
}

impl Actor for RunActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.schedule(ctx);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct RolloutEnded {
    pub rollout_id: String,
}

impl Handler<RolloutEnded> for RunActor {
    type Result = ();

    fn handle(&mut self, msg: RolloutEnded, ctx: &mut Self::Context) {
        self.running.remove(&msg.rollout_id);
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
