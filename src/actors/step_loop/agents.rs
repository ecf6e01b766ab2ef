//! The models a rollout talks to: the [`AgentFactory`] that builds its agent, its
//! simulated people's model and its judge, and the settings the policy in force gives.

use std::borrow::Cow;

use crate::actors::run::RunPolicy;
use crate::domain::events::{ModelSettings, RunLaunched};
use crate::domain::feed::Policy;
use crate::domain::secret::ApiKey;
use crate::llm::builtin::{BuiltinAgent, PlannedCall};
use crate::llm::{self, ModelClient};
use crate::scenarios::Task;

/// The run's ModelConfig as the policy in force answers it, with that policy's
/// ordinal: the launch's as it is (ordinal 0), an update's with its endpoint (when it
/// names one) and its version.
pub(super) fn policy_settings<'a>(
    model: &'a ModelSettings,
    policy: &RunPolicy,
) -> (u32, Cow<'a, ModelSettings>) {
    let (ordinal, policy) = policy.current();
    if ordinal == 0 {
        return (0, Cow::Borrowed(model));
    }
    (ordinal, Cow::Owned(with_policy(model, &policy)))
}

fn with_policy(model: &ModelSettings, policy: &Policy) -> ModelSettings {
    let mut settings = model.clone();
    if policy.base_url.is_some() {
        settings.base_url = policy.base_url.clone();
    }
    if policy.version.is_some() || settings.tokens.is_some() {
        settings
            .tokens
            .get_or_insert_with(Default::default)
            .policy_version = policy.version.clone();
    }
    settings
}

/// A rubric judge and the settings it is called with.
pub type Judge = (Box<dyn ModelClient>, ModelSettings);

/// Builds the agent of a rollout. The default serves the builtin agents and the
/// providers; tests substitute agents that fail or panic on purpose.
pub trait AgentFactory: Send + Sync {
    /// The agent answering as `model` (the run's ModelConfig, with the policy in force
    /// applied: its endpoint and version).
    fn agent(
        &self,
        model: &ModelSettings,
        task: &Task,
        key: Option<ApiKey>,
    ) -> Result<Box<dyn ModelClient>, String>;

    /// The model that plays the simulated people (`user_model_config`), if any.
    fn npc_agent(
        &self,
        _run: &RunLaunched,
        _key: Option<ApiKey>,
    ) -> Result<Option<Box<dyn ModelClient>>, String> {
        Ok(None)
    }

    /// The rubric judge and its settings: the run's `judge_model_config`, else the
    /// server's, if any.
    fn judge_agent(
        &self,
        _run: &RunLaunched,
        _key: Option<ApiKey>,
    ) -> Result<Option<Judge>, String> {
        Ok(None)
    }
}

pub struct DefaultAgents {
    pub http: reqwest::Client,
    pub limits: llm::ProviderLimits,
    /// The server's judge (`judge` in the config) with its key.
    pub judge: Option<(ModelSettings, Option<ApiKey>)>,
}

impl AgentFactory for DefaultAgents {
    fn judge_agent(&self, run: &RunLaunched, key: Option<ApiKey>) -> Result<Option<Judge>, String> {
        let (settings, key) = match (&run.judge_model, &self.judge) {
            (Some(own), _) => (own, key),
            (None, Some((server, server_key))) => (server, server_key.clone()),
            (None, None) => return Ok(None),
        };
        llm::client_for(&self.http, settings, key, &self.limits)
            .map(|client| Some((client, settings.clone())))
            .map_err(|e| e.to_string())
    }

    fn npc_agent(
        &self,
        run: &RunLaunched,
        key: Option<ApiKey>,
    ) -> Result<Option<Box<dyn ModelClient>>, String> {
        match &run.user_model {
            // The builtin agents cannot speak for a person: scripted replies stand in.
            Some(settings) if settings.provider != "builtin" => {
                llm::client_for(&self.http, settings, key, &self.limits)
                    .map(Some)
                    .map_err(|e| format!("user model: {e}"))
            }
            _ => Ok(None),
        }
    }

    fn agent(
        &self,
        settings: &ModelSettings,
        task: &Task,
        key: Option<ApiKey>,
    ) -> Result<Box<dyn ModelClient>, String> {
        if settings.provider == "builtin" {
            return match settings.model.as_str() {
                "noop" => Ok(Box::new(BuiltinAgent::Noop)),
                "oracle" => Ok(Box::new(BuiltinAgent::Oracle {
                    plan: task
                        .reference_solution
                        .iter()
                        .map(|s| PlannedCall {
                            tool_name: s.tool_name.clone(),
                            parameters: s.parameters.clone(),
                        })
                        .collect(),
                    final_answer: task.final_answer.clone(),
                })),
                other => Err(format!("builtin model `{other}` does not exist")),
            };
        }
        if settings.has_api_key && key.is_none() {
            return Err("the run's API key is no longer available".to_string());
        }
        llm::client_for(&self.http, settings, key, &self.limits).map_err(|e| e.to_string())
    }
}
