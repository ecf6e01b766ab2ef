//! The behaviour of rl-gym, never its truth: a [`registry::Registry`] supervises a
//! [`run::RunActor`] per active run, which throttles its rollouts and supervises a
//! [`rollout::RolloutActor`] per rollout, which supervises the [`step_loop`]. All of
//! them restart from the log. [`Gym`] is the command side the HTTP layer calls: it
//! reads a run's stream, lets the domain decide, appends, then tells the actors.

pub mod breakpoints;
pub mod fork;
pub mod lease;
pub mod registry;
pub mod reverify;
pub mod rollout;
pub mod run;
pub mod step_loop;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use actix::prelude::*;
use chrono::Utc;
use tokio::sync::Semaphore;

use crate::config::secrets::{Redactor, RunKeys, SecretError, SecretStore};
use crate::domain::budget::{Budget, PriceTable, Spend};
use crate::domain::events::{Event, GroupConsumed, PolicyUpdated, RunLaunched};
use crate::domain::ids::run_stream;
use crate::domain::run::{decide, RunCommand, RunRefusal, RunState};
use crate::journal;
use crate::metrics::Metrics;
use crate::scenarios::Catalog;
use crate::store::{EventStore, StoreError};
use registry::{CancelRun, FeedRecorded, Registry, StartRun};
use run::{FeedChange, RunBudget};

/// What the step loops need, shared by all of them.
pub struct Deps {
    pub store: Arc<dyn EventStore>,
    pub catalog: Arc<Catalog>,
    pub metrics: Metrics,
    pub secrets: SecretStore,
    /// The server-wide cap on rollouts in their step loop.
    pub global: Arc<Semaphore>,
    /// The server-wide count of rollouts waiting to start, and its cap.
    pub pending: Arc<run::PendingRollouts>,
    pub agents: Arc<dyn step_loop::AgentFactory>,
    /// For remote tool servers.
    pub http: reqwest::Client,
    pub tool_timeout_secs: u64,
    /// This server's own base URLs (the bound address and the configured
    /// `public_url`, set once bound) and token: a rollout whose `tool_server_url`
    /// points back here authenticates with it, nowhere else.
    pub self_urls: Arc<std::sync::OnceLock<Vec<reqwest::Url>>>,
    pub self_token: Option<String>,
    /// The server's own secrets (API tokens, the judge's key): hidden, with each run's
    /// keys, in every text from outside before it is recorded.
    pub redactor: Redactor,
    pub model_timeout_secs: u64,
    /// The config's price table (budgets in US dollars).
    pub prices: Arc<PriceTable>,
    /// Run leases, when several nodes share the log; `None`: this node owns every run.
    pub leases: Option<Arc<lease::Leases>>,
    /// Where a continuous run's finished rollouts leave their content for the feed.
    pub contents: crate::projections::ContentCache,
    /// Where the actors report the points tests wait for.
    pub breakpoints: breakpoints::Breakpoints,
}

#[derive(Debug, thiserror::Error)]
pub enum GymError {
    #[error(transparent)]
    Refused(#[from] RunRefusal),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the run supervisor is not available")]
    Unavailable,
    #[error(transparent)]
    Secrets(#[from] SecretError),
    #[error(
        "{pending} rollouts are waiting to start across all runs; {requested} more would pass \
         the server's cap of {cap} (max_pending_rollouts): try again later, or launch fewer"
    )]
    TooManyPending {
        pending: usize,
        requested: usize,
        cap: usize,
    },
}

#[derive(Clone)]
pub struct Gym {
    deps: Arc<Deps>,
    registry: Addr<Registry>,
}

impl Gym {
    /// Starts the registry; must run inside an actix `System`.
    pub fn start(deps: Deps) -> Gym {
        let deps = Arc::new(deps);
        let registry = Registry::new(deps.clone()).start();
        Gym { deps, registry }
    }

    async fn load_run(&self, run_id: &str) -> Result<RunState, StoreError> {
        journal::load_run(self.deps.store.as_ref(), run_id).await
    }

    /// The server's secrets, for answers that quote a provider (`/test-model-config`).
    pub fn redactor(&self) -> &Redactor {
        &self.deps.redactor
    }

    pub fn prices(&self) -> &PriceTable {
        &self.deps.prices
    }

    /// Where the actors report the points tests wait for.
    pub fn breakpoints(&self) -> &breakpoints::Breakpoints {
        &self.deps.breakpoints
    }

    /// When nodes share the log: renews this node's leases, takes over the runs no
    /// node holds (at once: those unfinished before a restart) and carries out other
    /// nodes' commands. Without leases nothing to do.
    pub fn keep_leases(&self, projections: crate::projections::Projections) {
        if let Some(leases) = self.deps.leases.clone() {
            actix::spawn(lease::keep(leases, self.clone(), projections));
        }
    }

    /// On shutdown: halts the runs this node drives and gives their leases up.
    pub async fn give_up_leases(&self) {
        if let Some(leases) = &self.deps.leases {
            leases.give_up_all(&self.registry).await;
        }
    }

    /// Starts a run's rollouts here; with leases, only once this node holds the run's
    /// (otherwise its holder drives it, or any node takes it when that lease lapses).
    /// Answers whether it started.
    async fn start_run(&self, start: StartRun) -> Result<bool, GymError> {
        let Some(leases) = &self.deps.leases else {
            self.registry
                .send(start)
                .await
                .map_err(|_| GymError::Unavailable)?;
            return Ok(true);
        };
        let run_id = start.run.run_id.clone();
        match leases.start(&self.registry, start).await {
            Ok(started) => Ok(started),
            // Recorded but not started: the lease loop of some node takes it.
            Err(error) => {
                tracing::warn!(run_id, %error, "could not take the run's lease; a node will take it later");
                Ok(false)
            }
        }
    }

    /// The budget in force for a run that starts (again) now, with what its rollouts
    /// have spent so far, read from the log (only when it has a budget).
    async fn budget_of(
        &self,
        state: &RunState,
        run: &RunLaunched,
    ) -> Result<Arc<RunBudget>, StoreError> {
        if state.budget.is_none() {
            return Ok(RunBudget::unlimited());
        }
        let (_, spent) = journal::run_progress(self.deps.store.as_ref(), run).await?;
        Ok(RunBudget::new(state.budget, run.prices, spent))
    }

    /// Reads the run's stream, lets the domain decide, records the outcome.
    /// A continuous run's own records (its groups) may land between the read and the
    /// append: the command is then decided again on the newer stream.
    async fn execute(&self, run_id: &str, command: RunCommand) -> Result<RunState, GymError> {
        let mut attempts = 0;
        loop {
            let state = self.load_run(run_id).await?;
            let events = decide(&state, command.clone())?;
            if events.is_empty() {
                return Ok(state);
            }
            match journal::append(
                self.deps.store.as_ref(),
                &run_stream(run_id),
                state.revision,
                &events,
            )
            .await
            {
                Ok(_) => return Ok(state),
                Err(StoreError::WrongExpectedVersion { .. }) if attempts < 5 => attempts += 1,
                Err(StoreError::WrongExpectedVersion { .. }) => {
                    return Err(GymError::Refused(RunRefusal::Busy(run_id.to_string())))
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Records that `consumer` took `groups` of a run's feed (the caller checked they
    /// are complete and new to it), and tells the run's actor: backpressure may lift.
    pub async fn consume_groups(
        &self,
        run_id: &str,
        consumer: &str,
        groups: Vec<u32>,
    ) -> Result<(), GymError> {
        let count = groups.len() as u64;
        let event = Event::GroupConsumed(GroupConsumed {
            run_id: run_id.to_string(),
            consumer: consumer.to_string(),
            groups,
            consumed_at: Utc::now(),
        });
        journal::append_any(
            self.deps.store.as_ref(),
            &run_stream(run_id),
            std::slice::from_ref(&event),
        )
        .await?;
        self.deps.metrics.groups_consumed.inc_by(count);
        self.registry.do_send(FeedRecorded {
            run_id: run_id.to_string(),
            change: FeedChange(event),
        });
        Ok(())
    }

    /// Records that every later turn of the run is answered by `version` at
    /// `base_url` (`None`: the endpoint in force); answers the update's ordinal.
    pub async fn update_policy(
        &self,
        run_id: &str,
        version: String,
        base_url: Option<String>,
    ) -> Result<u32, GymError> {
        for _ in 0..5 {
            let state = self.load_run(run_id).await?;
            if state.launched.is_none() || state.deleted {
                return Err(RunRefusal::NotFound.into());
            }
            let ordinal = state.feed.policy_ordinal() + 1;
            let event = Event::PolicyUpdated(PolicyUpdated {
                run_id: run_id.to_string(),
                version: version.clone(),
                base_url: base_url.clone(),
                ordinal,
                updated_at: Utc::now(),
            });
            match journal::append(
                self.deps.store.as_ref(),
                &run_stream(run_id),
                state.revision,
                std::slice::from_ref(&event),
            )
            .await
            {
                Ok(_) => {
                    self.registry.do_send(FeedRecorded {
                        run_id: run_id.to_string(),
                        change: FeedChange(event),
                    });
                    return Ok(ordinal);
                }
                Err(StoreError::WrongExpectedVersion { .. }) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(RunRefusal::Busy(run_id.to_string()).into())
    }

    /// Appends a decision's events to the run's stream, expecting it unchanged since
    /// `state` was read.
    async fn record(
        &self,
        run_id: &str,
        state: &RunState,
        events: &[Event],
    ) -> Result<(), GymError> {
        if events.is_empty() {
            return Ok(());
        }
        journal::append(
            self.deps.store.as_ref(),
            &run_stream(run_id),
            state.revision,
            events,
        )
        .await
        .map_err(|error| match error {
            // Someone else launched this run id between our read and our append.
            StoreError::WrongExpectedVersion { .. } => {
                GymError::Refused(RunRefusal::AlreadyExists(run_id.to_string()))
            }
            other => GymError::Store(other),
        })?;
        Ok(())
    }

    /// Seals the run's keys, records the launch, then starts its rollouts; refused when
    /// its rollouts would queue more than the server's cap of pending ones.
    pub async fn launch(&self, run: RunLaunched, keys: RunKeys) -> Result<(), GymError> {
        let pending = &self.deps.pending;
        let requested = run.rollouts.len();
        if !pending.try_reserve(requested) {
            return Err(GymError::TooManyPending {
                pending: pending.count(),
                requested,
                cap: pending.cap(),
            });
        }
        // The run's actor counts its own queue once started: the reservation only
        // covers the launch until then.
        let launched = self.launch_reserved(run, keys).await;
        pending.release(requested);
        launched
    }

    async fn launch_reserved(&self, run: RunLaunched, keys: RunKeys) -> Result<(), GymError> {
        let run_id = run.run_id.clone();
        let rollouts = run.rollouts.clone();
        let run = Arc::new(run);
        let state = self.load_run(&run_id).await?;
        let events = decide(&state, RunCommand::Launch(Box::new((*run).clone())))?;
        if !keys.is_empty() {
            // Durable before the launch is: a resumed run always finds its keys. The
            // file is created exclusively, so a racing launch of the same name loses.
            self.deps.secrets.put(&run_id, keys).map_err(|e| match e {
                SecretError::Exists(id) => GymError::Refused(RunRefusal::AlreadyExists(id)),
                other => other.into(),
            })?;
        }
        if let Err(error) = self.record(&run_id, &state, &events).await {
            if !matches!(error, GymError::Refused(_)) {
                let _ = self.deps.secrets.forget(&run_id);
            }
            return Err(error);
        }
        self.deps.metrics.runs_launched.inc();
        let budget = RunBudget::new(run.budget, run.prices, Spend::default());
        self.start_run(StartRun::new(run, rollouts, budget)).await?;
        Ok(())
    }

    /// Records the cancel request and stops the run's active rollouts; answers how
    /// many were active. A paused run has no actor: one is started to cancel its
    /// unfinished rollouts.
    pub async fn cancel(&self, run_id: &str) -> Result<usize, GymError> {
        let state = self
            .execute(run_id, RunCommand::Cancel { now: Utc::now() })
            .await?;
        if let (true, Some(run)) = (state.paused, state.launched) {
            let (rollouts, _) = journal::run_progress(self.deps.store.as_ref(), &run).await?;
            let count = rollouts.len();
            self.start_run(StartRun {
                cancelled: true,
                ..StartRun::new(Arc::new(run), rollouts, RunBudget::unlimited())
            })
            .await?;
            return Ok(count);
        }
        let cancelled = self
            .registry
            .send(CancelRun {
                run_id: run_id.to_string(),
            })
            .await
            .map_err(|_| GymError::Unavailable)?;
        Ok(cancelled)
    }

    /// Records the deletion, stops what still runs and forgets the run's key.
    pub async fn delete(&self, run_id: &str) -> Result<usize, GymError> {
        let state = self
            .execute(run_id, RunCommand::Delete { now: Utc::now() })
            .await?;
        self.deps.secrets.forget(run_id)?;
        let _ = self
            .registry
            .send(CancelRun {
                run_id: run_id.to_string(),
            })
            .await;
        Ok(state.launched.map_or(0, |r| r.rollouts.len()) + state.drawn.len())
    }

    /// Resumes a paused run under `budget` (`None`: unlimited): records it, then
    /// restarts its unfinished rollouts from their last recorded step. Answers how
    /// many there are.
    pub async fn resume(&self, run_id: &str, budget: Option<Budget>) -> Result<usize, GymError> {
        let state = self.load_run(run_id).await?;
        let run = match &state.launched {
            Some(run) if !state.deleted => run.clone(),
            _ => return Err(RunRefusal::NotFound.into()),
        };
        let (rollouts, spent) = journal::run_progress(self.deps.store.as_ref(), &run).await?;
        let command = RunCommand::Resume {
            budget,
            spend: spent,
            now: Utc::now(),
        };
        let events = decide(&state, command)?;
        journal::append(
            self.deps.store.as_ref(),
            &run_stream(run_id),
            state.revision,
            &events,
        )
        .await
        .map_err(|error| match error {
            StoreError::WrongExpectedVersion { .. } => GymError::Refused(RunRefusal::NotPaused(
                format!("Run '{run_id}' changed while resuming it; try again"),
            )),
            other => GymError::Store(other),
        })?;
        let count = rollouts.len();
        tracing::info!(run_id, rollouts = count, "resuming a paused run");
        let budget = RunBudget::new(budget, run.prices, spent);
        self.start_run(StartRun::new(Arc::new(run), rollouts, budget))
            .await?;
        Ok(count)
    }

    /// After a restart: resumes every unfinished run (ids from the views; paused
    /// runs stay paused).
    pub async fn recover(&self, unfinished: Vec<(String, Vec<String>)>) -> Result<usize, GymError> {
        let count = unfinished.len();
        for (run_id, ids) in unfinished {
            if let Some(start) = self.prepare_resume(&run_id, ids).await? {
                self.start_run(start).await?;
            }
        }
        Ok(count)
    }

    /// What resumes the rollouts `ids` of a run that has no actor (after a restart,
    /// or taken over from another node), read from the log now: nothing if it is
    /// paused or deleted.
    async fn prepare_resume(
        &self,
        run_id: &str,
        ids: Vec<String>,
    ) -> Result<Option<StartRun>, GymError> {
        let ids: std::collections::HashSet<String> = ids.into_iter().collect();
        let state = self.load_run(run_id).await?;
        if state.deleted || state.paused {
            return Ok(None);
        }
        let Some(run) = state.launched.clone() else {
            return Ok(None);
        };
        let rollouts = run
            .rollouts
            .iter()
            .chain(&state.drawn)
            .filter(|r| ids.contains(&r.rollout_id))
            .cloned()
            .collect();
        tracing::info!(run_id, rollouts = ids.len(), "resuming run");
        let budget = self.budget_of(&state, &run).await?;
        Ok(Some(StartRun {
            run: Arc::new(run),
            rollouts,
            cancelled: state.cancel_requested,
            budget,
            feed: state.feed,
            drawn: state.drawn,
        }))
    }
}
