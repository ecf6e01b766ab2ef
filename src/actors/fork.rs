//! Forking a rollout: a new run whose rollouts each start from a source rollout's
//! conversation and environment after step k (copied from its events when they
//! start, see [`crate::domain::rollout::fork_prefix`]) and go on from there.

use chrono::Utc;
use uuid::Uuid;

use super::{Gym, GymError};
use crate::config::secrets::RunKeys;
use crate::domain::budget::RunPrices;
use crate::domain::events::{ForkParent, ModelSettings, RunLaunched, ScheduledRollout};
use crate::domain::ids::{new_rollout_id, new_run_id};
use crate::domain::run::RunRefusal;
use crate::domain::secret::ApiKey;

/// What to fork and how.
pub struct ForkRequest {
    pub run_id: String,
    pub rollout_id: String,
    pub at_step: u32,
    pub count: u32,
    /// Another model to go on with (default: the source's, with its key).
    pub model: Option<(ModelSettings, Option<ApiKey>)>,
}

/// Why a fork cannot be made as asked.
#[derive(Debug, thiserror::Error)]
pub enum ForkRefusal {
    #[error(transparent)]
    Gym(#[from] GymError),
    #[error("rollout not found in this run")]
    RolloutNotFound,
    #[error("the rollout has recorded {recorded} steps; at_step must be at most that")]
    BeyondRecorded { recorded: u32 },
    #[error("step {0} of the rollout is still in progress; fork at an earlier step or wait")]
    InProgress(u32),
    #[error(
        "the rollout's tools were a remote environment (tool_server_url), whose state at a \
         step cannot be rebuilt from the log"
    )]
    RemoteEnvironment,
    #[error(
        "a fork goes on in the source's environment, rebuilt from the log: it cannot use \
         a tool_server_url"
    )]
    RemoteModelConfig,
}

impl Gym {
    /// Launches the fork and answers the new run.
    pub async fn fork(&self, request: ForkRequest) -> Result<RunLaunched, ForkRefusal> {
        let source = self
            .load_run(&request.run_id)
            .await
            .map_err(GymError::from)?;
        let run = match (&source.launched, source.deleted) {
            (Some(run), false) => run,
            _ => return Err(GymError::Refused(RunRefusal::NotFound).into()),
        };
        // A continuous run's rollouts were drawn after its launch.
        let scheduled = run
            .rollouts
            .iter()
            .chain(&source.drawn)
            .find(|r| r.rollout_id == request.rollout_id)
            .ok_or(ForkRefusal::RolloutNotFound)?;
        if run.model.tool_server_url.is_some() {
            return Err(ForkRefusal::RemoteEnvironment);
        }
        if request
            .model
            .as_ref()
            .is_some_and(|(m, _)| m.tool_server_url.is_some())
        {
            return Err(ForkRefusal::RemoteModelConfig);
        }
        let source = super::journal::load_rollout(self.deps.store.as_ref(), &request.rollout_id)
            .await
            .map_err(GymError::from)?;
        let recorded = source.steps;
        if request.at_step > recorded {
            return Err(ForkRefusal::BeyondRecorded { recorded });
        }
        // The last step of a running rollout may still be getting its tool results:
        // copied later, forks of it would not all share the same step.
        if request.at_step == recorded && recorded > 0 && !source.status().is_terminal() {
            return Err(ForkRefusal::InProgress(recorded));
        }
        let source_keys = self
            .deps
            .secrets
            .get(&run.run_id)
            .map_err(GymError::from)?
            .unwrap_or_default();
        let (model, model_key) = match request.model {
            Some((settings, key)) => (settings, key),
            None => (run.model.clone(), source_keys.model.clone()),
        };
        let keys = RunKeys {
            model: model_key,
            ..source_keys
        };
        let (model_provider, model_name) = (model.provider.clone(), model.model.clone());
        let run_id = new_run_id(Uuid::now_v7());
        let rollouts = (0..request.count)
            .map(|_| ScheduledRollout {
                rollout_id: new_rollout_id(Uuid::now_v7()),
                task_id: scheduled.task_id.clone(),
                // The source's seed: the copied calls rebuild the source's environment.
                seed: scheduled.seed,
                instance_seed: scheduled.instance_seed,
            })
            .collect();
        let fork = RunLaunched {
            run_id,
            scenario_id: run.scenario_id.clone(),
            source: run.source.clone(),
            task_ids: vec![scheduled.task_id.clone()],
            rollout_count: request.count,
            max_parallel: run.max_parallel,
            model,
            user_model: run.user_model.clone(),
            judge_model: run.judge_model.clone(),
            task_overrides: run
                .task_overrides
                .get(&scheduled.task_id)
                .map(|o| [(scheduled.task_id.clone(), o.clone())].into())
                .unwrap_or_default(),
            parent: Some(ForkParent {
                run_id: request.run_id,
                rollout_id: request.rollout_id,
                at_step: request.at_step,
            }),
            tool_faults: run.tool_faults,
            rollouts,
            launched_at: Utc::now(),
            // A fork spends without a cap unless resumed with one; its own model is
            // priced from today's table, the judge as the source was.
            budget: None,
            prices: RunPrices {
                model: self.deps.prices.get(&model_provider, &model_name),
                judge: run.prices.and_then(|p| p.judge),
            }
            .known(),
            continuous: None,
        };
        self.launch(fork.clone(), keys).await?;
        Ok(fork)
    }
}
