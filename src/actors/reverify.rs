//! Re-verifying a run: every finished rollout is scored again from its recorded
//! events with today's checks (and rubric, if its task has one), optionally against
//! new task overrides. The new verdict is a `RolloutReverified` event; the old ones
//! stay in the log and in the rollout's verdict history.

use std::collections::BTreeMap;

use chrono::Utc;
use futures::StreamExt;
use serde_json::Value;

use super::{step_loop, Gym, GymError};
use crate::domain::events::{Event, RolloutReverified, RunLaunched, ScheduledRollout};
use crate::domain::ids::rollout_stream;
use crate::domain::rollout::RolloutStatus;
use crate::domain::run::RunRefusal;
use crate::domain::secret::ApiKey;
use crate::journal;
use crate::scenarios::{Scenario, Task};
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
    #[error("scenario {0} is no longer available")]
    ScenarioGone(String),
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
        let mut run = match state.launched {
            Some(run) if !state.deleted => run,
            _ => return Err(GymError::Refused(RunRefusal::NotFound).into()),
        };
        // A continuous run's rollouts were drawn after its launch.
        run.rollouts.extend(state.drawn);
        if run.model.tool_server_url.is_some() {
            return Err(ReverifyRefusal::RemoteEnvironment);
        }
        let scenario = self
            .deps
            .catalog
            .get(&run.scenario_id)
            .ok_or_else(|| ReverifyRefusal::ScenarioGone(run.scenario_id.clone()))?;
        // Each task instance the run's rollouts played, with the overrides.
        let mut tasks = BTreeMap::new();
        for scheduled in &run.rollouts {
            let key = (scheduled.task_id.clone(), scheduled.instance_seed);
            if tasks.contains_key(&key) {
                continue;
            }
            let task_id = &scheduled.task_id;
            let task_override = merged(run.task_overrides.get(task_id), overrides.get(task_id));
            let task = crate::scenarios::overrides::apply(
                scenario,
                task_id,
                task_override.as_ref(),
                scheduled.instance_seed,
            )
            .map_err(|e| ReverifyRefusal::BadOverride(task_id.clone(), e))?;
            tasks.insert(key, task);
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
                let task = &tasks[&(scheduled.task_id.clone(), scheduled.instance_seed)];
                let judge_key = keys.judge_model.clone();
                self.reverify_one(
                    run,
                    scenario,
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
    /// same rollout may win the append; this one then scores again on top of it.
    async fn reverify_one(
        &self,
        run: &RunLaunched,
        scenario: &Scenario,
        scheduled: &ScheduledRollout,
        task: &Task,
        task_override: Option<&Value>,
        judge_key: Option<ApiKey>,
    ) -> Result<Option<Rescored>, StoreError> {
        let store = self.deps.store.as_ref();
        let mut conflicts = 0;
        loop {
            let state = journal::load_rollout(store, &scheduled.rollout_id).await?;
            let Some(old) = state.verdict.as_ref() else {
                return Ok(None);
            };
            if state.status() != RolloutStatus::Completed {
                return Ok(None);
            }
            let old_score = crate::domain::verdict::combine(old, state.rubric.as_ref()).0;
            let calls = state
                .tool_calls
                .iter()
                .map(|c| replay::recorded(&c.tool_name, &c.arguments, c.fault.as_deref()));
            let Ok(env) = scenario.rebuild(task, scheduled.seed, calls, &state.npc_replies) else {
                return Ok(None);
            };
            let environment = env.state();
            let verdict = task.verify(&environment, &state.messages);
            let (rubric, usage) = match task.judge_rubric() {
                Some(_) => {
                    let graded = step_loop::grade_rubric(
                        &self.deps,
                        run,
                        task,
                        judge_key.clone(),
                        &state.messages,
                        &environment,
                    )
                    .await;
                    (Some(graded.0), graded.1)
                }
                None => (None, None),
            };
            let new_score = crate::domain::verdict::combine(&verdict, rubric.as_ref()).0;
            let event = Event::RolloutReverified(RolloutReverified {
                rollout_id: scheduled.rollout_id.clone(),
                verdict,
                rubric,
                usage,
                task_override: task_override.cloned(),
                reverified_at: Utc::now(),
            });
            let stream = rollout_stream(&scheduled.rollout_id);
            match journal::append(store, &stream, state.revision, &[event]).await {
                Err(StoreError::WrongExpectedVersion { .. }) if conflicts < 3 => conflicts += 1,
                Err(error) => return Err(error),
                Ok(_) => {
                    return Ok(Some(Rescored {
                        rollout_id: scheduled.rollout_id.clone(),
                        old_score,
                        new_score,
                    }))
                }
            }
        }
    }
}
