//! Re-verifying a run: every finished rollout is scored again from its recorded
//! events with today's checks (and rubric, if its task has one), optionally against
//! new task overrides. The new verdict is a `RolloutReverified` event; the old ones
//! stay in the log and in the rollout's verdict history.

use std::collections::BTreeMap;

use chrono::Utc;
use futures::StreamExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{journal, step_loop, Gym, GymError};
use crate::domain::events::{Event, RolloutReverified, RunLaunched, ScheduledRollout};
use crate::domain::ids::rollout_stream;
use crate::domain::rollout::RolloutStatus;
use crate::domain::run::RunRefusal;
use crate::store::StoreError;
use crate::tools::replay;

/// Rollouts scored at once: the checks are cheap, a judge call is not.
const CONCURRENCY: usize = 8;

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Rescored {
    pub rollout_id: String,
    pub old_score: f64,
    pub new_score: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum ReverifyRefusal {
    #[error(transparent)]
    Gym(#[from] GymError),
    #[error(
        "the run's tools were a remote environment (tool_server_url), whose state cannot be \
         rebuilt from the log"
    )]
    RemoteEnvironment,
    #[error("task {0}: {1}")]
    BadOverride(String, String),
}

/// The run's override of a task with `new`'s fields laid over it.
fn merged(base: Option<&Value>, new: Option<&Value>) -> Option<Value> {
    match (base, new) {
        (Some(Value::Object(base)), Some(Value::Object(new))) => {
            let mut out = base.clone();
            out.extend(new.iter().map(|(k, v)| (k.clone(), v.clone())));
            Some(Value::Object(out))
        }
        (_, Some(new)) => Some(new.clone()),
        (base, None) => base.cloned(),
    }
}

impl Gym {
    /// Scores every finished rollout of the run again; answers old and new scores in
    /// the run's order.
    pub async fn reverify(
        &self,
        run_id: &str,
        overrides: BTreeMap<String, Value>,
    ) -> Result<Vec<Rescored>, ReverifyRefusal> {
        let state = self.load_run(run_id).await.map_err(GymError::from)?;
        let run = match state.launched {
            Some(run) if !state.deleted => run,
            _ => return Err(GymError::Refused(RunRefusal::NotFound).into()),
        };
        if run.model.tool_server_url.is_some() {
            return Err(ReverifyRefusal::RemoteEnvironment);
        }
        let scenario = self.deps.catalog.get(&run.scenario_id).ok_or_else(|| {
            ReverifyRefusal::BadOverride(
                String::new(),
                "the scenario is no longer available".into(),
            )
        })?;
        let mut tasks = BTreeMap::new();
        for task_id in &run.task_ids {
            let task_override = merged(run.task_overrides.get(task_id), overrides.get(task_id));
            let task =
                crate::scenarios::overrides::apply(scenario, task_id, task_override.as_ref())
                    .map_err(|e| ReverifyRefusal::BadOverride(task_id.clone(), e))?;
            tasks.insert(task_id.clone(), task);
        }
        let keys = self
            .deps
            .secrets
            .get(run_id)
            .map_err(GymError::from)?
            .unwrap_or_default();
        let run = &run;
        let (tasks, overrides, keys) = (&tasks, &overrides, &keys);
        let rescored: Vec<Option<Rescored>> = futures::stream::iter(&run.rollouts)
            .map(|scheduled| async move {
                let task = &tasks[&scheduled.task_id];
                let judge_key = keys.judge_model.clone();
                self.reverify_one(
                    run,
                    scheduled,
                    task,
                    overrides.get(&scheduled.task_id),
                    judge_key,
                )
                .await
            })
            .buffered(CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, StoreError>>()
            .map_err(GymError::from)?;
        Ok(rescored.into_iter().flatten().collect())
    }

    /// One rollout, if it finished with a verdict. A concurrent re-verification of the
    /// same rollout wins the append race; this one then scores again on top of it.
    async fn reverify_one(
        &self,
        run: &RunLaunched,
        scheduled: &ScheduledRollout,
        task: &crate::scenarios::Task,
        task_override: Option<&Value>,
        judge_key: Option<crate::config::secrets::ApiKey>,
    ) -> Result<Option<Rescored>, StoreError> {
        let mut attempts = 0;
        loop {
            match self
                .reverify_once(run, scheduled, task, task_override, judge_key.clone())
                .await
            {
                Err(StoreError::WrongExpectedVersion { .. }) if attempts < 3 => attempts += 1,
                outcome => return outcome,
            }
        }
    }

    async fn reverify_once(
        &self,
        run: &RunLaunched,
        scheduled: &ScheduledRollout,
        task: &crate::scenarios::Task,
        task_override: Option<&Value>,
        judge_key: Option<crate::config::secrets::ApiKey>,
    ) -> Result<Option<Rescored>, StoreError> {
        let store = self.deps.store.as_ref();
        let state = journal::load_rollout(store, &scheduled.rollout_id).await?;
        let Some(old) = state.verdict.as_ref() else {
            return Ok(None);
        };
        if state.status() != RolloutStatus::Completed {
            return Ok(None);
        }
        let old_score = crate::verify::combine(old, state.rubric.as_ref()).0;
        let Some(scenario) = self.deps.catalog.get(&run.scenario_id) else {
            return Ok(None);
        };
        let calls = state
            .tool_calls
            .iter()
            .map(|c| replay::recorded(&c.tool_name, &c.arguments, c.fault.as_deref()));
        let Ok(env) = replay::rebuild(scenario, task, scheduled.seed, calls, &state.npc_replies)
        else {
            return Ok(None);
        };
        let environment = env.state();
        let verdict = crate::verify::verify(task, &environment, &state.messages);
        let (rubric, usage) = match task.judge_rubric() {
            Some(_) => {
                let graded = step_loop::grade_rubric(
                    &self.deps,
                    run,
                    task,
                    judge_key,
                    &state.messages,
                    &environment,
                    &CancellationToken::new(),
                )
                .await;
                (Some(graded.0), graded.1)
            }
            None => (None, None),
        };
        let new_score = crate::verify::combine(&verdict, rubric.as_ref()).0;
        let event = Event::RolloutReverified(RolloutReverified {
            rollout_id: scheduled.rollout_id.clone(),
            verdict,
            rubric,
            usage,
            task_override: task_override.cloned(),
            reverified_at: Utc::now(),
        });
        journal::append(
            store,
            &rollout_stream(&scheduled.rollout_id),
            state.revision,
            &[event],
        )
        .await?;
        Ok(Some(Rescored {
            rollout_id: scheduled.rollout_id.clone(),
            old_score,
            new_score,
        }))
    }
}
