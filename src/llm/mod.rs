//! Model clients: one trait the step loop talks to, one implementation per provider,
//! and the `builtin` agents that need no network (`noop`, `oracle`).

pub mod builtin;
pub mod openai;

use async_trait::async_trait;
use serde_json::Value;

use crate::domain::chat::{Message, ToolDefinition};
use crate::domain::events::{ModelSettings, TokenUsage};

/// Providers a run may name. `builtin` is rl-gym's own (no key, no network).
pub const PROVIDERS: &[&str] = &[
    "custom",
    "openai",
    "anthropic",
    "aws-bedrock",
    "azure-openai",
    "gcp",
    "builtin",
];

/// Whether this build can call the provider (checked at launch, so a run is refused
/// rather than failing every rollout).
pub fn provider_available(provider: &str) -> bool {
    matches!(provider, "builtin" | "openai" | "custom" | "azure-openai")
}

/// Whether launching with this provider needs an `api_key`.
pub fn provider_needs_key(provider: &str) -> bool {
    !matches!(provider, "builtin" | "custom")
}

/// One model turn to take.
pub struct ModelRequest<'a> {
    pub messages: &'a [Message],
    pub tools: &'a [ToolDefinition],
    pub settings: &'a ModelSettings,
}

/// What the model answered.
#[derive(Debug, Clone)]
pub struct ModelReply {
    pub message: Message,
    pub usage: Option<TokenUsage>,
    pub logprobs: Option<Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{0}")]
    Unavailable(String),
    #[error("provider answered {status}: {message}")]
    Provider { status: u16, message: String },
    #[error("could not reach the provider: {0}")]
    Connection(String),
    #[error("the provider's answer could not be read: {0}")]
    Malformed(String),
}

#[async_trait]
pub trait ModelClient: Send + Sync {
    async fn complete(&self, request: ModelRequest<'_>) -> Result<ModelReply, ModelError>;
}

/// The client for a run's (non-builtin) provider.
pub fn client_for(
    http: &reqwest::Client,
    settings: &ModelSettings,
    api_key: Option<crate::config::secrets::ApiKey>,
) -> Result<Box<dyn ModelClient>, ModelError> {
    use openai::{Flavor, OpenAiClient};
    let base_url = settings.base_url.clone();
    match settings.provider.as_str() {
        "openai" => Ok(Box::new(OpenAiClient::new(
            http.clone(),
            Flavor::OpenAi,
            base_url.unwrap_or_else(|| openai::OPENAI_BASE_URL.to_string()),
            api_key,
        ))),
        "custom" => match base_url {
            Some(url) => Ok(Box::new(OpenAiClient::new(
                http.clone(),
                Flavor::OpenAi,
                url,
                api_key,
            ))),
            None => Err(ModelError::Unavailable(
                "provider `custom` needs a base_url (an OpenAI-compatible server)".to_string(),
            )),
        },
        "azure-openai" => match base_url {
            Some(url) => Ok(Box::new(OpenAiClient::new(
                http.clone(),
                Flavor::Azure,
                url,
                api_key,
            ))),
            None => Err(ModelError::Unavailable(
                "provider `azure-openai` needs a base_url (https://<resource>.openai.azure.com)"
                    .to_string(),
            )),
        },
        other => Err(ModelError::Unavailable(format!(
            "provider `{other}` is not available in this build yet"
        ))),
    }
}
