//! Where a rollout's tool calls go ([`Tools`]: its own environment or a remote one),
//! a call run or answered by an injected fault, and the simulated people's replies.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use serde_json::Value;

use super::driver::Failure;
use crate::config::secrets::Redactor;
use crate::domain::chat::{ToolCall, ToolSet};
use crate::domain::events::{Event, RunLaunched, ToolCalled};
use crate::domain::faults::FaultKind;
use crate::domain::rollout::RolloutState;
use crate::llm::{self, ModelClient, ModelRequest};
use crate::npc;
use crate::scenarios::{Scenario, Task};
use crate::tools::remote::RemoteEnvironment;
use crate::tools::replay::{self, CallOutcome};
use crate::tools::Environment;
use crate::verify::StateRoot;

/// Where a rollout's tool calls go: its own environment, rebuilt from its events, or
/// a remote one at `tool_server_url`.
pub(super) enum Tools {
    Local(Environment),
    Remote(RemoteEnvironment),
}

impl Tools {
    /// Emails the agent has sent (simulated people answer new ones).
    pub(super) fn sent_count(&self) -> usize {
        match self {
            Tools::Local(env) => env.sent_count(),
            Tools::Remote(_) => 0,
        }
    }

    fn server_of(&self, tool_name: &str) -> Option<String> {
        match self {
            Tools::Local(env) => env.server_of(tool_name),
            Tools::Remote(env) => env.server_of(tool_name),
        }
        .map(str::to_string)
    }

    /// The tools as the model is shown them; a local environment shares one copy
    /// with every rollout of the task.
    pub(super) fn definitions(&self) -> Arc<ToolSet> {
        match self {
            Tools::Local(env) => env.tool_definitions(),
            Tools::Remote(env) => Arc::new(
                env.all_tools()
                    .into_iter()
                    .map(crate::tools::ToolSpec::definition)
                    .collect(),
            ),
        }
    }

    async fn execute(&mut self, tool_name: &str, arguments: &str) -> CallOutcome {
        let remote = match self {
            Tools::Local(env) => return replay::execute(env, tool_name, arguments),
            Tools::Remote(remote) => remote,
        };
        let Some(server) = remote.server_of(tool_name).map(str::to_string) else {
            return CallOutcome {
                server: None,
                observation: format!("Error: unknown tool `{tool_name}`"),
                is_error: true,
            };
        };
        match replay::parse_arguments(arguments) {
            Ok(parameters) => {
                let result = remote.step(&server, tool_name, &parameters).await;
                CallOutcome {
                    server: Some(server),
                    observation: result.observation,
                    is_error: result.is_error,
                }
            }
            Err(observation) => CallOutcome {
                server: Some(server),
                observation,
                is_error: true,
            },
        }
    }

    pub(super) async fn state(&self) -> Result<Value, String> {
        match self {
            Tools::Local(env) => Ok(env.state()),
            Tools::Remote(env) => env.state().await,
        }
    }

    /// The state the checks read: a local server left as seeded is shared with the
    /// seed's JSON, not built again.
    pub(super) async fn checked_state(&self) -> Result<Box<dyn StateRoot + Send>, String> {
        match self {
            Tools::Local(env) => Ok(Box::new(env.state_view())),
            Tools::Remote(env) => Ok(Box::new(env.state().await?)),
        }
    }
}

/// A rollout's own environment: the seed plus its recorded calls and replies.
pub(super) fn rebuild_local(
    scenario: &Scenario,
    task: &Task,
    seed: u64,
    state: &RolloutState,
) -> Result<Environment, Failure> {
    let recorded = state
        .tool_calls
        .iter()
        .map(|c| replay::recorded(&c.tool_name, &c.arguments, c.fault.as_deref()));
    scenario
        .rebuild(task, seed, recorded, &state.npc_replies)
        .map_err(|e| Failure(format!("environment could not be built: {e}")))
}

/// The replies of simulated people to the emails the agent sent since `sent_before`,
/// delivered to the environment: written by the run's user model when it has one,
/// otherwise scripted by the task. A model that fails leaves that person silent (the
/// agent sees no answer, as with a real colleague), logged, never a hang.
pub(super) async fn npc_replies(
    env: &mut Environment,
    scenario: &Scenario,
    task: &Task,
    npc_model: Option<&dyn ModelClient>,
    run: &RunLaunched,
    sent_before: usize,
    redactor: &Redactor,
) -> Vec<npc::PlannedReply> {
    let mut delivered = Vec::new();
    let cast = task.cast(scenario);
    for sent in env.sent_since(sent_before) {
        let planned = match (npc_model, &run.user_model) {
            (Some(model), Some(settings)) => {
                let mut planned = Vec::new();
                for profile in npc::recipients(cast.people, &sent) {
                    let thread = env.email_thread(&sent.email_id);
                    let prompt = npc::reply_prompt(profile, &cast, &thread);
                    let request = ModelRequest {
                        messages: &prompt,
                        tools: ToolSet::none(),
                        settings,
                    };
                    match model.complete(request).await {
                        Ok(reply) => {
                            let text = redactor.redact(&reply.message.content.unwrap_or_default());
                            if !text.trim().is_empty() {
                                planned.push(npc::plan_reply(profile, &sent, &text));
                            }
                        }
                        Err(error) => {
                            let error = redactor.redact(&error.to_string());
                            tracing::warn!(profile = profile.profile_id, %error, "the user model did not answer; the person stays silent")
                        }
                    }
                }
                planned
            }
            _ => npc::plan_scripted(&cast, &sent),
        };
        for reply in planned {
            if npc::deliver(env, &reply).is_ok() {
                delivered.push(reply);
            }
        }
    }
    delivered
}

/// Runs a call, or answers it with an injected failure without running it. Its
/// latency counts from `started` (before any injected delay).
pub(super) async fn call_tool(
    tools: &mut Tools,
    token_in: bool,
    rollout_id: &str,
    step: u32,
    call: &ToolCall,
    fault: Option<FaultKind>,
    started: Instant,
) -> Event {
    let name = &call.function.name;
    let outcome = match fault {
        Some(kind) => {
            let server = tools.server_of(name);
            CallOutcome {
                observation: kind.observation(server.as_deref(), name),
                server,
                is_error: true,
            }
        }
        // A call the token-in parser could not read: answered in band with why.
        None if token_in && name == llm::completions::MALFORMED_TOOL_CALL => CallOutcome {
            server: None,
            observation: format!("Error: {}", call.function.arguments),
            is_error: true,
        },
        None => tools.execute(name, &call.function.arguments).await,
    };
    Event::ToolCalled(ToolCalled {
        rollout_id: rollout_id.to_string(),
        step,
        call_id: call.id.clone(),
        server: outcome.server,
        tool_name: call.function.name.clone(),
        arguments: call.function.arguments.clone(),
        observation: outcome.observation,
        is_error: outcome.is_error,
        fault: fault.map(|kind| kind.name().to_string()),
        latency_ms: started.elapsed().as_secs_f64() * 1000.0,
        called_at: Utc::now(),
    })
}
