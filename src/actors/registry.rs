//! `Registry`: the supervisor of run actors. It starts one per active run (at launch
//! and, after a restart, for every run the log shows unfinished) and routes commands
//! to it. Created once in the app factory; its address is shared by every worker.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use actix::prelude::*;

use super::run::{CancelRollouts, FeedChange, Halt, RunActor, RunBudget};
use super::Deps;
use crate::domain::events::{RunLaunched, ScheduledRollout};
use crate::domain::feed::Feed;

pub struct Registry {
    deps: Arc<Deps>,
    runs: HashMap<String, Addr<RunActor>>,
    /// Starts of runs whose previous actor is still ending (a run resumed or
    /// cancelled just as it paused): started when it has ended.
    deferred: HashMap<String, StartRun>,
    /// Runs cancelled while they had no actor here: a start that was on its way (a
    /// takeover that read the run just before the cancel) starts them cancelled.
    cancelled: HashSet<String>,
}

/// Cancelled runs remembered without an actor; beyond it the set starts again (the
/// race it covers lasts one read of the log).
const REMEMBERED_CANCELS: usize = 10_000;

impl Registry {
    pub fn new(deps: Arc<Deps>) -> Self {
        Registry {
            deps,
            runs: HashMap::new(),
            deferred: HashMap::new(),
            cancelled: HashSet::new(),
        }
    }

    fn start_run(&mut self, msg: StartRun, ctx: &mut Context<Self>) {
        let run_id = msg.run.run_id.clone();
        let cancelled = self.cancelled.remove(&run_id) || msg.cancelled;
        let actor = RunActor::new(self.deps.clone(), msg, ctx.address());
        let addr = actor.start();
        if cancelled {
            addr.do_send(CancelRollouts);
        }
        self.runs.insert(run_id, addr);
    }
}

impl Actor for Registry {
    type Context = Context<Self>;
}

/// Start (or resume) a run's rollouts.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StartRun {
    pub run: Arc<RunLaunched>,
    pub rollouts: Vec<ScheduledRollout>,
    /// The run was cancelled before a restart (or while paused): record its
    /// rollouts as cancelled.
    pub cancelled: bool,
    /// What it may spend and has spent.
    pub budget: Arc<RunBudget>,
    /// Its groups, consumers and policies as recorded so far.
    pub feed: Feed,
    /// A continuous run's rollouts drawn so far (groups and restarts).
    pub drawn: Vec<ScheduledRollout>,
}

impl StartRun {
    /// A launch or a resume of `rollouts` with nothing drawn or consumed yet.
    pub fn new(
        run: Arc<RunLaunched>,
        rollouts: Vec<ScheduledRollout>,
        budget: Arc<RunBudget>,
    ) -> StartRun {
        let feed = Feed {
            continuous: run.continuous,
            ..Feed::default()
        };
        StartRun {
            run,
            rollouts,
            cancelled: false,
            budget,
            feed,
            drawn: vec![],
        }
    }
}

impl Handler<StartRun> for Registry {
    type Result = ();

    fn handle(&mut self, msg: StartRun, ctx: &mut Self::Context) {
        if msg.rollouts.is_empty() && !msg.feed.open(msg.cancelled) {
            return;
        }
        let run_id = msg.run.run_id.clone();
        if self.runs.contains_key(&run_id) {
            // The later start is the newer decision; a cancel is never dropped.
            let cancelled = self.deferred.get(&run_id).is_some_and(|d| d.cancelled);
            self.deferred.insert(
                run_id,
                StartRun {
                    cancelled: msg.cancelled || cancelled,
                    ..msg
                },
            );
            return;
        }
        self.start_run(msg, ctx);
    }
}

/// Cancel a run's active rollouts; answers how many were active.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CancelRun {
    pub run_id: String,
}

impl Handler<CancelRun> for Registry {
    type Result = ResponseFuture<usize>;

    fn handle(&mut self, msg: CancelRun, _ctx: &mut Self::Context) -> Self::Result {
        let addr = self.runs.get(&msg.run_id).cloned();
        if let Some(deferred) = self.deferred.get_mut(&msg.run_id) {
            deferred.cancelled = true;
        } else if addr.is_none() {
            if self.cancelled.len() >= REMEMBERED_CANCELS {
                self.cancelled.clear();
            }
            self.cancelled.insert(msg.run_id.clone());
        }
        Box::pin(async move {
            match addr {
                Some(addr) => addr.send(CancelRollouts).await.unwrap_or(0),
                None => 0,
            }
        })
    }
}

/// Tell a run's actor, if it has one here, what its feed recorded.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FeedRecorded {
    pub run_id: String,
    pub change: FeedChange,
}

impl Handler<FeedRecorded> for Registry {
    type Result = ();

    fn handle(&mut self, msg: FeedRecorded, _ctx: &mut Self::Context) {
        if let Some(addr) = self.runs.get(&msg.run_id) {
            addr.do_send(msg.change);
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct RunEnded {
    pub run_id: String,
}

impl Handler<RunEnded> for Registry {
    type Result = ();

    fn handle(&mut self, msg: RunEnded, ctx: &mut Self::Context) {
        self.runs.remove(&msg.run_id);
        if let Some(start) = self.deferred.remove(&msg.run_id) {
            // Resumed as it ended: the lease is kept for the next actor.
            self.start_run(start, ctx);
        } else if let Some(leases) = self.deps.leases.clone() {
            let registry = ctx.address();
            actix::spawn(async move { leases.release_if_idle(&msg.run_id, &registry).await });
        }
    }
}

/// The node lost a run's lease: its actor stops without recording anything.
#[derive(Message)]
#[rtype(result = "()")]
pub struct HaltRun {
    pub run_id: String,
}

impl Handler<HaltRun> for Registry {
    type Result = ();

    fn handle(&mut self, msg: HaltRun, _ctx: &mut Self::Context) {
        // A start waiting for the halted actor would drive the run without the lease.
        self.deferred.remove(&msg.run_id);
        if let Some(addr) = self.runs.get(&msg.run_id) {
            addr.do_send(Halt);
        }
    }
}

/// Whether a run has an actor here, or one waiting to start.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct IsActive {
    pub run_id: String,
}

impl Handler<IsActive> for Registry {
    type Result = bool;

    fn handle(&mut self, msg: IsActive, _ctx: &mut Self::Context) -> bool {
        self.runs.contains_key(&msg.run_id) || self.deferred.contains_key(&msg.run_id)
    }
}

/// How many runs have an actor (for tests and metrics).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct ActiveRuns;

impl Handler<ActiveRuns> for Registry {
    type Result = usize;

    fn handle(&mut self, _msg: ActiveRuns, _ctx: &mut Self::Context) -> usize {
        self.runs.len()
    }
}
