//! `RolloutActor`: supervises one rollout's step loop. The loop runs as its own task,
//! so a panic in it surfaces here as a `JoinError` and becomes `RolloutFailed` instead
//! of a silent stall; either way the run actor is told the rollout ended.

use std::sync::Arc;

use actix::prelude::*;
use chrono::Utc;

use super::breakpoints::Breakpoint;
use super::run::{RolloutEnded, RunActor};
use super::step_loop::{self, RolloutJob};
use super::Deps;
use crate::domain::events::{Event, RolloutFailed};
use crate::journal;

pub struct RolloutActor {
    deps: Arc<Deps>,
    job: Option<RolloutJob>,
    run: Addr<RunActor>,
}

impl RolloutActor {
    pub fn new(deps: Arc<Deps>, job: RolloutJob, run: Addr<RunActor>) -> Self {
        RolloutActor {
            deps,
            job: Some(job),
            run,
        }
    }
}

impl Actor for RolloutActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let Some(job) = self.job.take() else {
            ctx.stop();
            return;
        };
        let deps = self.deps.clone();
        let rollout_id = job.rollout.rollout_id.clone();
        let run_id = job.run.run_id.clone();
        let handle = tokio::spawn(step_loop::drive(deps.clone(), job));
        let supervise = async move {
            let mut finished = true;
            let mut restart = None;
            let failure = match handle.await {
                // Not terminal: stopped by the run's budget, resumable.
                Ok(Ok(ended)) => {
                    finished = ended.status.is_terminal();
                    restart = ended.restart;
                    None
                }
                Ok(Err(error)) => {
                    // The log refused a step: nothing more can be recorded now; the
                    // rollout resumes from its last recorded step on the next start.
                    tracing::error!(rollout_id, %error, "rollout stopped: the event log failed");
                    finished = false;
                    None
                }
                Err(join) if join.is_panic() => {
                    let payload = join.into_panic();
                    let message = payload
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| payload.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".to_string());
                    Some(format!("the step loop panicked: {message}"))
                }
                Err(_) => Some("the step loop was aborted".to_string()),
            };
            if let Some(error) = failure {
                tracing::error!(rollout_id, %error, "rollout failed");
                let event = Event::RolloutFailed(RolloutFailed {
                    rollout_id: rollout_id.clone(),
                    error,
                    failed_at: Utc::now(),
                });
                match journal::finish_rollout(deps.store.as_ref(), &rollout_id, event).await {
                    Ok(true) => deps
                        .metrics
                        .rollouts_finished
                        .with_label_values(&["failed"])
                        .inc(),
                    Ok(false) => {}
                    Err(error) => {
                        tracing::error!(rollout_id, %error, "could not record the failure")
                    }
                }
            }
            (rollout_id, finished, restart)
        };
        ctx.wait(supervise.into_actor(self).map(
            move |(rollout_id, finished, restart), act, ctx| {
                act.deps.breakpoints.reach(|| Breakpoint::RolloutEnded {
                    run_id,
                    rollout_id: rollout_id.clone(),
                    finished,
                });
                act.run.do_send(RolloutEnded {
                    rollout_id,
                    finished,
                    restart,
                });
                ctx.stop();
            },
        ));
    }
}
