//! Model clients: one trait the step loop talks to, one implementation per provider,
//! and the `builtin` agents that need no network (`noop`, `oracle`).

pub mod builtin;

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
    settings: &ModelSettings,
    api_key: Option<crate::config::secrets::ApiKey>,
) -> Result<Box<dyn ModelClient>, ModelError> {
    let _ = api_key;
    Err(ModelError::Unavailable(format!(
        "provider `{}` is not available in this build",
        settings.provider
    )))
}
