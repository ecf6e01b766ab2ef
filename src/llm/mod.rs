//! Model clients: one trait the step loop talks to, one implementation per provider,
//! and the `builtin` agents that need no network (`noop`, `oracle`).
//!
//! Each provider file translates our conversation (the OpenAI chat shape of
//! [`crate::domain::chat`]) to and from the provider's documented wire format, and
//! nothing else: sending, timeouts and retries are [`retry`]'s, and the per-provider
//! concurrency limit is [`limit`]'s, so every provider fails and backs off the same way.
//!
//! How a run's `api_key`, `base_url` and `model` are read, per provider:
//!
//! | provider | key | `base_url` (default) | `model` |
//! |---|---|---|---|
//! | `openai` | Bearer token | `https://api.openai.com/v1` | model name |
//! | `custom` | Bearer token, optional | required, OpenAI-compatible | model name |
//! | `azure-openai` | `api-key` header | required, `https://<resource>.openai.azure.com` | deployment |
//! | `anthropic` | `x-api-key` header | `https://api.anthropic.com` | model name |
//! | `aws-bedrock` | see [`bedrock`] (SigV4 key pair or Bedrock API key) | `https://bedrock-runtime.<region>.amazonaws.com` | model id or inference-profile id/ARN |
//! | `gcp` | OAuth access token (Bearer) | see [`vertex`] | model name or full resource path |

pub mod anthropic;
pub mod bedrock;
pub mod builtin;
pub mod completions;
pub mod convert;
pub mod limit;
pub mod openai;
pub mod retry;
pub mod sigv4;
pub mod tokens;
pub mod vertex;

use async_trait::async_trait;
use serde_json::Value;

use crate::domain::chat::{Message, ToolSet};
use crate::domain::events::{ModelSettings, TokenUsage, TurnTokens};

pub use limit::{Limited, ProviderLimits};
pub use retry::RetryPolicy;

use crate::domain::events::PROVIDERS;

/// Whether this build can call the provider (checked at launch, so a run is refused
/// rather than failing every rollout).
pub fn provider_available(provider: &str) -> bool {
    PROVIDERS.contains(&provider)
}

/// Whether launching with this provider needs an `api_key`.
pub fn provider_needs_key(provider: &str) -> bool {
    !matches!(provider, "builtin" | "custom")
}

/// Whether the provider can return token log-probabilities (`log_prob: true`). The
/// Anthropic Messages API, the Bedrock Converse API and Vertex `generateContent` (for
/// the tool-calling models we drive) give none, so such a run is refused at launch.
pub fn supports_logprobs(provider: &str) -> bool {
    matches!(provider, "openai" | "custom" | "azure-openai")
}

/// One model turn to take.
pub struct ModelRequest<'a> {
    pub messages: &'a [Message],
    pub tools: &'a ToolSet,
    pub settings: &'a ModelSettings,
}

/// What the model answered.
#[derive(Debug, Clone)]
pub struct ModelReply {
    pub message: Message,
    pub usage: Option<TokenUsage>,
    pub logprobs: Option<Value>,
    /// The turn's token ids, from a token-exact client ([`completions`]).
    pub tokens: Option<Box<TurnTokens>>,
}

/// Why a model call failed. HTTP answers carry the provider's own message, as the
/// provider's error body gives it.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The provider cannot be used as configured (unknown provider, missing base_url).
    #[error("{0}")]
    Unavailable(String),
    /// 401 or 403: the key was refused.
    #[error("provider answered {status}: {message}")]
    Authentication { status: u16, message: String },
    /// 404: no such model or deployment.
    #[error("provider answered {status}: {message}")]
    InvalidModel { status: u16, message: String },
    /// 429 still answered after every retry.
    #[error("provider answered {status}: {message}")]
    RateLimited { status: u16, message: String },
    /// Any other error status (400, 5xx after every retry, …).
    #[error("provider answered {status}: {message}")]
    Provider { status: u16, message: String },
    #[error("could not reach the provider: {0}")]
    Connection(String),
    #[error("the provider did not answer in time: {0}")]
    Timeout(String),
    #[error("the provider's answer could not be read: {0}")]
    Malformed(String),
}

impl ModelError {
    /// Classifies an HTTP error status with the provider's message.
    pub fn from_status(status: u16, message: String) -> ModelError {
        match status {
            401 | 403 => ModelError::Authentication { status, message },
            404 => ModelError::InvalidModel { status, message },
            429 => ModelError::RateLimited { status, message },
            _ => ModelError::Provider { status, message },
        }
    }

    /// The `error_type` the service reports for this failure.
    pub fn error_type(&self) -> &'static str {
        match self {
            ModelError::Authentication { .. } => "authentication_error",
            ModelError::InvalidModel { .. } => "invalid_model",
            ModelError::RateLimited { .. } => "rate_limit",
            ModelError::Provider { status, .. } if (400..500).contains(status) => "bad_request",
            ModelError::Unavailable(_) => "bad_request",
            ModelError::Connection(_) => "connection_error",
            ModelError::Timeout(_) => "timeout",
            ModelError::Provider { .. } | ModelError::Malformed(_) => "unknown",
        }
    }
}

#[async_trait]
pub trait ModelClient: Send + Sync {
    async fn complete(&self, request: ModelRequest<'_>) -> Result<ModelReply, ModelError>;

    /// Whether asking again costs nothing and gives the same answer (an agent that
    /// answers in process): the step loop then lets its steps run ahead of the log.
    fn free_to_ask_again(&self) -> bool {
        false
    }

    /// A resumed rollout's recorded turns, oldest first, given before its next call:
    /// a token-exact client continues the same token sequence from them. Others keep
    /// no state between turns and ignore them.
    fn restore_turns(&self, _turns: &[TurnTokens]) -> Result<(), ModelError> {
        Ok(())
    }
}

/// The client for a run's (non-builtin) provider, behind the provider's concurrency
/// limit. `settings.base_url`, when given, overrides every provider's endpoint.
pub fn client_for(
    http: &reqwest::Client,
    settings: &ModelSettings,
    api_key: Option<crate::domain::secret::ApiKey>,
    limits: &ProviderLimits,
) -> Result<Box<dyn ModelClient>, ModelError> {
    client_with_retry(http, settings, api_key, limits, RetryPolicy::default())
}

/// The same with its own retry policy (`POST /test-model-config` tries once).
pub fn client_with_retry(
    http: &reqwest::Client,
    settings: &ModelSettings,
    api_key: Option<crate::domain::secret::ApiKey>,
    limits: &ProviderLimits,
    retry: RetryPolicy,
) -> Result<Box<dyn ModelClient>, ModelError> {
    use openai::{Flavor, OpenAiClient};
    if let Some(tokens) = settings.tokens.as_ref().filter(|t| t.records_tokens()) {
        let client = completions::TokenClient::new(http.clone(), settings, tokens, api_key, retry)?;
        return Ok(limits.wrap(&settings.provider, Box::new(client)));
    }
    let http = http.clone();
    let base_url = settings.base_url.clone();
    let missing_key =
        || ModelError::Unavailable(format!("provider `{}` needs an api_key", settings.provider));
    let client: Box<dyn ModelClient> = match settings.provider.as_str() {
        "openai" => Box::new(
            OpenAiClient::new(
                http,
                Flavor::OpenAi,
                base_url.unwrap_or_else(|| openai::OPENAI_BASE_URL.to_string()),
                api_key,
            )
            .with_retry(retry),
        ),
        "custom" => match base_url {
            Some(url) => {
                Box::new(OpenAiClient::new(http, Flavor::OpenAi, url, api_key).with_retry(retry))
            }
            None => {
                return Err(ModelError::Unavailable(
                    "provider `custom` needs a base_url (an OpenAI-compatible server)".to_string(),
                ))
            }
        },
        "azure-openai" => match base_url {
            Some(url) => {
                Box::new(OpenAiClient::new(http, Flavor::Azure, url, api_key).with_retry(retry))
            }
            None => return Err(ModelError::Unavailable(
                "provider `azure-openai` needs a base_url (https://<resource>.openai.azure.com)"
                    .to_string(),
            )),
        },
        "anthropic" => Box::new(
            anthropic::AnthropicClient::new(http, base_url, api_key.ok_or_else(missing_key)?)
                .with_retry(retry),
        ),
        "aws-bedrock" => Box::new(
            bedrock::BedrockClient::new(
                http,
                base_url,
                api_key.ok_or_else(missing_key)?,
                bedrock::region_from_env(),
            )?
            .with_retry(retry),
        ),
        "gcp" => Box::new(
            vertex::VertexClient::new(
                http,
                base_url,
                api_key.ok_or_else(missing_key)?,
                &settings.model,
            )?
            .with_retry(retry),
        ),
        other => {
            return Err(ModelError::Unavailable(format!(
                "provider `{other}` is not available in this build"
            )))
        }
    };
    Ok(limits.wrap(&settings.provider, client))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_provider_is_available_and_only_openai_shapes_give_logprobs() {
        for p in PROVIDERS {
            assert!(provider_available(p), "{p}");
        }
        assert!(!provider_available("cohere"));
        assert!(supports_logprobs("openai") && supports_logprobs("custom"));
        assert!(supports_logprobs("azure-openai"));
        for p in ["anthropic", "aws-bedrock", "gcp", "builtin"] {
            assert!(!supports_logprobs(p), "{p}");
        }
    }

    #[test]
    fn http_statuses_map_to_error_types() {
        let t = |s| ModelError::from_status(s, "m".into()).error_type();
        assert_eq!(t(401), "authentication_error");
        assert_eq!(t(403), "authentication_error");
        assert_eq!(t(404), "invalid_model");
        assert_eq!(t(429), "rate_limit");
        assert_eq!(t(400), "bad_request");
        assert_eq!(t(500), "unknown");
        assert_eq!(ModelError::Timeout("t".into()).error_type(), "timeout");
        assert_eq!(
            ModelError::Connection("c".into()).error_type(),
            "connection_error"
        );
    }
}
