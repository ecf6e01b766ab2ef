//! `rl-gym replay --execute RUN_ID`: runs a run's rollouts again against today's
//! environments and verifiers, with every model answer and every model-written NPC
//! reply served from the log, and checks that each tool result, each scripted reply
//! and each verdict comes out as recorded. The regression test for a change to an
//! environment or a verifier: an untouched build matches, and a changed behaviour is
//! reported at the first step where a rollout diverges.

use std::fmt;
use std::path::Path;

use crate::domain::events::{Event, NpcReplied, RunLaunched};
use crate::domain::rollout::RolloutState;
use crate::journal;
use crate::npc;
use crate::scenarios::{Catalog, Scenario, Task};
use crate::store::file::FileStore;
use crate::store::EventStore;
use crate::tools::{replay, Environment};

use super::ReplayError;

/// Where a rollout first came out differently.
#[derive(Debug, Clone, PartialEq)]
pub struct Divergence {
    pub rollout_id: String,
    /// The model turn whose tool call or verification differs.
    pub step: u32,
    pub what: String,
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rollout {} diverges at step {}: {}",
            self.rollout_id, self.step, self.what
        )
    }
}

/// What a re-execution checked.
#[derive(Debug, Default, PartialEq)]
pub struct Executed {
    pub rollouts: usize,
    pub tool_calls: usize,
    pub npc_replies: usize,
    pub verdicts: usize,
    /// Rollouts that never started: nothing to compare.
    pub not_started: usize,
    /// The first divergence of each rollout that diverged, in the run's order.
    pub divergences: Vec<Divergence>,
}

/// Re-executes every rollout of `run_id` from the log in `data_dir`.
pub async fn execute(
    data_dir: &Path,
    scenarios_dir: &Path,
    run_id: &str,
) -> Result<Executed, ReplayError> {
    if !data_dir.join("log").is_dir() {
        return Err(ReplayError::Missing(data_dir.display().to_string()));
    }
    let catalog = Catalog::load(scenarios_dir).map_err(|e| ReplayError::Execute(e.to_string()))?;
    // Read-only, like `rl-gym replay`: the log is only read.
    let (store, _) = FileStore::open_read_only(data_dir, None)?;
    let outcome = execute_in(&store, &catalog, run_id).await;
    store.close().await;
    outcome
}

async fn execute_in(
    store: &dyn EventStore,
    catalog: &Catalog,
    run_id: &str,
) -> Result<Executed, ReplayError> {
    let state = journal::load_run(store, run_id).await?;
    let mut run = state
        .launched
        .ok_or_else(|| ReplayError::Execute(format!("no run {run_id} in the log")))?;
    // A continuous run's rollouts were drawn after its launch.
    run.rollouts.extend(state.drawn);
    if run.model.tool_server_url.is_some() {
        return Err(ReplayError::Execute(
            "the run's tools were a remote environment (tool_server_url): its behaviour \
             is not ours to re-execute"
                .into(),
        ));
    }
    let scenario = catalog.get(&run.scenario_id).ok_or_else(|| {
        ReplayError::Execute(format!(
            "scenario {} is not in the catalog",
            run.scenario_id
        ))
    })?;
    let mut executed = Executed::default();
    for (index, scheduled) in run.rollouts.iter().enumerate() {
        let task = crate::scenarios::overrides::apply(
            scenario,
            &scheduled.task_id,
            run.task_overrides.get(&scheduled.task_id),
            scheduled.instance_seed,
        )
        .map_err(|e| ReplayError::Execute(format!("task {}: {e}", scheduled.task_id)))?;
        let events: Vec<Event> = journal::rollout_events(store, &scheduled.rollout_id)
            .await?
            .into_iter()
            .map(|(_, event)| event)
            .collect();
        if events.is_empty() {
            executed.not_started += 1;
            continue;
        }
        executed.rollouts += 1;
        let env = scenario
            .environment(&task, scheduled.seed)
            .map_err(|e| ReplayError::Execute(e.to_string()))?;
        let mut rollout = Rollout {
            run: &run,
            index,
            scenario,
            task: &task,
            env,
            state: RolloutState::default(),
            calls: 0,
            executed: &mut executed,
        };
        if let Err(what) = rollout.check(&events) {
            let step = rollout.state.steps;
            executed.divergences.push(Divergence {
                rollout_id: scheduled.rollout_id.clone(),
                step,
                what,
            });
        }
    }
    Ok(executed)
}

/// One rollout being re-executed: its environment as today's code builds it.
struct Rollout<'a> {
    run: &'a RunLaunched,
    index: usize,
    scenario: &'a Scenario,
    task: &'a Task,
    env: Environment,
    state: RolloutState,
    calls: usize,
    executed: &'a mut Executed,
}

impl Rollout<'_> {
    /// Walks the recorded events; the first difference is the error.
    fn check(&mut self, events: &[Event]) -> Result<(), String> {
        for (i, event) in events.iter().enumerate() {
            match event {
                Event::ToolCalled(recorded) => {
                    let replies: Vec<&NpcReplied> = events[i + 1..]
                        .iter()
                        .map_while(|e| match e {
                            Event::NpcReplied(r) => Some(r),
                            _ => None,
                        })
                        .collect();
                    self.tool_call(recorded, &replies)?;
                }
                Event::RolloutVerified(recorded) => {
                    let verdict = self
                        .task
                        .verify(&self.env.state_view(), &self.state.messages);
                    self.executed.verdicts += 1;
                    if verdict != recorded.verdict {
                        return Err(verdict_difference(&recorded.verdict, &verdict));
                    }
                }
                _ => {}
            }
            self.state.evolve(event, i as u64);
        }
        Ok(())
    }

    fn tool_call(
        &mut self,
        recorded: &crate::domain::events::ToolCalled,
        replies: &[&NpcReplied],
    ) -> Result<(), String> {
        let call = format!("tool call {} `{}`", recorded.call_id, recorded.tool_name);
        // A fork's first steps are copies: their faults were decided in the source.
        let copied = self
            .run
            .parent
            .as_ref()
            .is_some_and(|p| recorded.step <= p.at_step);
        let fault = match copied {
            true => recorded.fault.clone(),
            false => self
                .run
                .tool_faults
                .and_then(|f| f.fault_for(self.index, self.calls))
                .map(|kind| kind.name().to_string()),
        };
        self.calls += 1;
        self.executed.tool_calls += 1;
        if fault != recorded.fault {
            return Err(format!(
                "{call}: the injected fault is {fault:?}, the log has {:?}",
                recorded.fault
            ));
        }
        if fault.is_some() {
            return Ok(());
        }
        let sent_before = self.env.sent_count();
        let outcome = replay::execute(&mut self.env, &recorded.tool_name, &recorded.arguments);
        if outcome.observation != recorded.observation || outcome.is_error != recorded.is_error {
            return Err(format!(
                "{call} answered {}{}, the log has {}{}",
                clip(&outcome.observation),
                if outcome.is_error { " (an error)" } else { "" },
                clip(&recorded.observation),
                if recorded.is_error { " (an error)" } else { "" },
            ));
        }
        // Model-written replies are served from the log; scripted ones must come out
        // the same from today's scenario.
        let scripted = self
            .run
            .user_model
            .as_ref()
            .is_none_or(|m| m.provider == "builtin");
        if scripted {
            let planned: Vec<(String, String)> = self
                .env
                .sent_since(sent_before)
                .iter()
                .flat_map(|sent| npc::plan_scripted(&self.task.cast(self.scenario), sent))
                .map(|p| (p.profile_id, p.email.body))
                .collect();
            let logged: Vec<(String, String)> = replies
                .iter()
                .map(|r| (r.profile_id.clone(), r.email.body.clone()))
                .collect();
            if planned != logged {
                return Err(format!(
                    "after {call} the simulated people reply {planned:?}, the log has {logged:?}"
                ));
            }
        }
        for reply in replies {
            self.executed.npc_replies += 1;
            self.env
                .deliver_email(&replay::incoming(&reply.email))
                .map_err(|e| format!("a recorded reply after {call} cannot be delivered: {e}"))?;
        }
        Ok(())
    }
}

fn verdict_difference(
    recorded: &crate::domain::verdict::Verdict,
    now: &crate::domain::verdict::Verdict,
) -> String {
    let changed: Vec<String> = now
        .checks
        .iter()
        .filter(|c| {
            recorded
                .checks
                .iter()
                .find(|r| r.id == c.id)
                .is_none_or(|r| r.passed != c.passed)
        })
        .map(|c| {
            format!(
                "check {} now {} ({})",
                c.id,
                if c.passed { "passes" } else { "fails" },
                c.reason
            )
        })
        .collect();
    format!(
        "the verdict is {} ({}), the log has {} ({}){}{}",
        now.score,
        now.label,
        recorded.score,
        recorded.label,
        if changed.is_empty() { "" } else { ": " },
        changed.join("; ")
    )
}

/// A long observation, shortened for a one-line report.
fn clip(text: &str) -> String {
    const MAX: usize = 160;
    if text.chars().count() <= MAX {
        return format!("{text:?}");
    }
    let head: String = text.chars().take(MAX).collect();
    format!("{head:?}…")
}
