//! Realistic logs without running the service: the events an oracle rollout of each
//! task records (real prompts, real tool observations from the real environment, the
//! real verdict), stamped with fresh ids. The replay figures and the projection
//! benches are measured on these.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crate::actors::step_loop::default_system_prompt;
use crate::domain::chat::{FunctionCall, Message, ToolCall};
use crate::domain::events::{
    CompletionReason, Event, ModelCalled, ModelSettings, RolloutCompleted, RolloutStarted,
    RolloutVerified, RunLaunched, ScheduledRollout, TokenUsage, ToolCalled,
};
use crate::domain::ids::{new_rollout_id, new_run_id, rollout_seed, rollout_stream, run_stream};
use crate::scenarios::Scenario;
use crate::store::EventData;
use crate::tools::replay;

/// One task's oracle rollout, ids left blank.
struct Template {
    task_id: String,
    events: Vec<Event>,
}

/// Builds runs of oracle rollouts of a scenario's tasks.
pub struct Synth {
    scenario_id: String,
    templates: Vec<Template>,
}

/// One generated run: its launch and each rollout's events.
pub struct SynthRun {
    pub launch: RunLaunched,
    pub rollouts: Vec<(String, Vec<Event>)>,
}

impl SynthRun {
    /// The run as appends: `(stream, events)` in an order the views accept (the
    /// launch first).
    pub fn appends(&self) -> Vec<(String, Vec<EventData>)> {
        let mut out = vec![(
            run_stream(&self.launch.run_id),
            encode(
                &run_stream(&self.launch.run_id),
                &[Event::RunLaunched(Box::new(self.launch.clone()))],
            ),
        )];
        for (rollout_id, events) in &self.rollouts {
            let stream = rollout_stream(rollout_id);
            out.push((stream.clone(), encode(&stream, events)));
        }
        out
    }

    pub fn event_count(&self) -> usize {
        1 + self.rollouts.iter().map(|(_, e)| e.len()).sum::<usize>()
    }
}

/// Events as a new stream's appends carry them (deterministic ids, as the journal's).
pub fn encode(stream: &str, events: &[Event]) -> Vec<EventData> {
    crate::journal::encode(stream, 0, events)
}

impl Synth {
    pub fn new(scenario: &Scenario) -> Result<Synth, String> {
        let t0 = DateTime::UNIX_EPOCH;
        let mut templates = Vec::new();
        for family in &scenario.tasks {
            let task = &*family.instance(0)?;
            let mut env = scenario.environment(task, 0).map_err(|e| e.to_string())?;
            let mut messages = vec![
                Message::system(default_system_prompt(scenario)),
                Message::user(&task.description),
            ];
            let mut events = vec![Event::RolloutStarted(RolloutStarted {
                rollout_id: String::new(),
                run_id: String::new(),
                task_id: task.task_id.clone(),
                messages: messages.clone(),
                started_at: t0,
            })];
            let usage = || {
                Some(TokenUsage {
                    prompt_tokens: 1200,
                    completion_tokens: 40,
                    total_tokens: 1240,
                })
            };
            for (i, planned) in task.reference_solution.iter().enumerate() {
                let step = i as u32 + 1;
                let call = ToolCall {
                    id: format!("call_{step}"),
                    kind: "function".into(),
                    function: FunctionCall {
                        name: planned.tool_name.clone(),
                        arguments: planned.parameters.to_string(),
                    },
                };
                let message = Message::assistant(None, vec![call.clone()]);
                messages.push(message.clone());
                events.push(Event::ModelCalled(ModelCalled {
                    rollout_id: String::new(),
                    step,
                    model: "oracle".into(),
                    message,
                    usage: usage(),
                    logprobs: None,
                    latency_ms: 850.0,
                    called_at: t0,
                    tokens: None,
                    policy_ordinal: 0,
                }));
                let outcome =
                    replay::execute(&mut env, &call.function.name, &call.function.arguments);
                messages.push(Message::tool_result(
                    call.id.clone(),
                    &call.function.name,
                    outcome.observation.clone(),
                ));
                events.push(Event::ToolCalled(ToolCalled {
                    rollout_id: String::new(),
                    step,
                    call_id: call.id,
                    server: outcome.server,
                    tool_name: call.function.name,
                    arguments: call.function.arguments,
                    observation: outcome.observation,
                    is_error: outcome.is_error,
                    fault: None,
                    latency_ms: 0.05,
                    called_at: t0,
                }));
            }
            let steps = task.reference_solution.len() as u32 + 1;
            let answer = Message::assistant(
                Some(
                    task.final_answer
                        .clone()
                        .unwrap_or_else(|| "The task is complete.".into()),
                ),
                vec![],
            );
            messages.push(answer.clone());
            events.push(Event::ModelCalled(ModelCalled {
                rollout_id: String::new(),
                step: steps,
                model: "oracle".into(),
                message: answer,
                usage: usage(),
                logprobs: None,
                latency_ms: 850.0,
                called_at: t0,
                tokens: None,
                policy_ordinal: 0,
            }));
            events.push(Event::RolloutVerified(RolloutVerified {
                rollout_id: String::new(),
                verdict: task.verify(&env.state_view(), &messages),
                verified_at: t0,
            }));
            events.push(Event::RolloutCompleted(RolloutCompleted {
                rollout_id: String::new(),
                reason: CompletionReason::FinalAnswer,
                steps,
                completed_at: t0,
            }));
            templates.push(Template {
                task_id: task.task_id.clone(),
                events,
            });
        }
        if templates.is_empty() {
            return Err(format!("scenario {} has no tasks", scenario.scenario_id));
        }
        Ok(Synth {
            scenario_id: scenario.scenario_id.clone(),
            templates,
        })
    }

    /// Mean events per rollout (launch events aside).
    pub fn events_per_rollout(&self) -> f64 {
        self.templates.iter().map(|t| t.events.len()).sum::<usize>() as f64
            / self.templates.len() as f64
    }

    /// A run of `rollouts` rollouts cycling over the tasks, launched at `at`, each
    /// event a millisecond after the one before.
    pub fn run(&self, rollouts: usize, at: DateTime<Utc>) -> SynthRun {
        let run_id = new_run_id(Uuid::now_v7());
        let mut scheduled = Vec::with_capacity(rollouts);
        let mut out = Vec::with_capacity(rollouts);
        for i in 0..rollouts {
            let template = &self.templates[i % self.templates.len()];
            let rollout_id = new_rollout_id(Uuid::now_v7());
            scheduled.push(ScheduledRollout {
                seed: rollout_seed(&rollout_id),
                rollout_id: rollout_id.clone(),
                task_id: template.task_id.clone(),
                instance_seed: 0,
            });
            let events = template
                .events
                .iter()
                .enumerate()
                .map(|(k, e)| {
                    stamp(
                        e,
                        &rollout_id,
                        &run_id,
                        at + Duration::milliseconds(k as i64 + 1),
                    )
                })
                .collect();
            out.push((rollout_id, events));
        }
        let mut task_ids: Vec<String> = scheduled.iter().map(|s| s.task_id.clone()).collect();
        task_ids.sort();
        task_ids.dedup();
        SynthRun {
            launch: RunLaunched {
                run_id,
                scenario_id: self.scenario_id.clone(),
                source: "rl-gym".into(),
                task_ids,
                rollout_count: rollouts.div_ceil(self.templates.len()) as u32,
                max_parallel: None,
                model: ModelSettings {
                    temperature: 0.0,
                    context_stride: 2,
                    ..ModelSettings::builtin("oracle")
                },
                user_model: None,
                judge_model: None,
                task_overrides: Default::default(),
                parent: None,
                tool_faults: None,
                rollouts: scheduled,
                launched_at: at,
                budget: None,
                prices: None,
                continuous: None,
            },
            rollouts: out,
        }
    }
}

/// A template event with the rollout's ids and a time.
fn stamp(event: &Event, rollout_id: &str, run_id: &str, at: DateTime<Utc>) -> Event {
    let mut e = event.clone();
    match &mut e {
        Event::RolloutStarted(x) => {
            x.rollout_id = rollout_id.into();
            x.run_id = run_id.into();
            x.started_at = at;
        }
        Event::ModelCalled(x) => {
            x.rollout_id = rollout_id.into();
            x.called_at = at;
        }
        Event::ToolCalled(x) => {
            x.rollout_id = rollout_id.into();
            x.called_at = at;
        }
        Event::RolloutVerified(x) => {
            x.rollout_id = rollout_id.into();
            x.verified_at = at;
        }
        Event::RolloutCompleted(x) => {
            x.rollout_id = rollout_id.into();
            x.completed_at = at;
        }
        _ => {}
    }
    e
}
