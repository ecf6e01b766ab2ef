//! OpenAI Chat Completions, and every server that speaks it: `openai`, `custom`
//! (vLLM, llama.cpp, Ollama, LiteLLM, TGI at `base_url`) and `azure-openai` (a
//! deployment's chat completions with the `api-key` header and an `api-version`).
//!
//! Retries: 429, 5xx and connection errors are retried with exponential backoff and
//! jitter, honouring `Retry-After`, at most [`MAX_RETRIES`] times; then the call fails
//! with the provider's message.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{ModelClient, ModelError, ModelReply, ModelRequest};
use crate::config::secrets::ApiKey;
use crate::domain::chat::{Message, Role, ToolCall};
use crate::domain::events::TokenUsage;

pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
pub const AZURE_API_VERSION: &str = "2024-10-21";
pub const MAX_RETRIES: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    OpenAi,
    Azure,
}

pub struct OpenAiClient {
    http: reqwest::Client,
    flavor: Flavor,
    base_url: String,
    api_key: Option<ApiKey>,
    /// Base delay of the backoff (tests shorten it).
    backoff: Duration,
}

impl OpenAiClient {
    pub fn new(
        http: reqwest::Client,
        flavor: Flavor,
        base_url: String,
        api_key: Option<ApiKey>,
    ) -> Self {
        OpenAiClient {
            http,
            flavor,
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key,
            backoff: Duration::from_millis(500),
        }
    }

    pub fn with_backoff(mut self, backoff: Duration) -> Self {
        self.backoff = backoff;
        self
    }

    fn url(&self, model: &str) -> String {
        match self.flavor {
            Flavor::OpenAi => format!("{}/chat/completions", self.base_url),
            Flavor::Azure => format!(
                "{}/openai/deployments/{model}/chat/completions?api-version={AZURE_API_VERSION}",
                self.base_url
            ),
        }
    }
}

/// The request body: our conversation is already in the chat-message shape.
pub fn encode(request: &ModelRequest<'_>) -> Value {
    let settings = request.settings;
    let mut body = json!({
        "model": settings.model,
        "messages": request.messages,
        "temperature": settings.temperature,
    });
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|t| {
                json!({
                    "type": "function",
                    "function": { "name": t.name, "description": t.description, "parameters": t.parameters }
                })
            })
            .collect();
        body["tool_choice"] = json!("auto");
    }
    if settings.log_prob {
        body["logprobs"] = json!(true);
        body["top_logprobs"] = json!(1);
    }
    body
}

#[derive(Deserialize)]
struct Completion {
    choices: Vec<Choice>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    message: WireMessage,
    logprobs: Option<Value>,
}

#[derive(Deserialize)]
struct WireMessage {
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCall>>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    total_tokens: u64,
}

/// Reads a chat completion into our reply.
pub fn decode(body: &[u8]) -> Result<ModelReply, ModelError> {
    let completion: Completion =
        serde_json::from_slice(body).map_err(|e| ModelError::Malformed(format!("{e}")))?;
    let choice = completion
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| ModelError::Malformed("the completion has no choices".to_string()))?;
    let message = Message {
        role: Role::Assistant,
        content: choice.message.content,
        tool_calls: choice.message.tool_calls.unwrap_or_default(),
        tool_call_id: None,
        name: None,
    };
    Ok(ModelReply {
        message,
        usage: completion.usage.map(|u| TokenUsage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.total_tokens.max(u.prompt_tokens + u.completion_tokens),
        }),
        logprobs: choice.logprobs.filter(|v| !v.is_null()),
    })
}

/// The provider's own error message, if the body is the usual `{"error":{"message"}}`.
fn provider_message(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(500)]).to_string())
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value
        .trim()
        .parse::<f64>()
        .ok()
        .map(|s| Duration::from_secs_f64(s.clamp(0.0, 60.0)))
}

fn jitter(base: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1 << attempt.min(6));
    // Up to +50% jitter, from the clock's nanoseconds: no need for an RNG here.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    exp + exp.mul_f64((nanos % 1000) as f64 / 2000.0)
}

#[async_trait]
impl ModelClient for OpenAiClient {
    async fn complete(&self, request: ModelRequest<'_>) -> Result<ModelReply, ModelError> {
        let body = encode(&request);
        let url = self.url(&request.settings.model);
        let mut attempt = 0;
        loop {
            let mut call = self.http.post(&url).json(&body);
            if let Some(key) = &self.api_key {
                call = match self.flavor {
                    Flavor::OpenAi => call.bearer_auth(key.expose()),
                    Flavor::Azure => call.header("api-key", key.expose()),
                };
            }
            let (error, wait) = match call.send().await {
                Ok(response) => {
                    let status = response.status();
                    let wait = retry_after(response.headers());
                    let bytes = response
                        .bytes()
                        .await
                        .map_err(|e| ModelError::Connection(e.to_string()))?;
                    if status.is_success() {
                        return decode(&bytes);
                    }
                    let error = ModelError::Provider {
                        status: status.as_u16(),
                        message: provider_message(&bytes),
                    };
                    if status.as_u16() != 429 && !status.is_server_error() {
                        return Err(error);
                    }
                    (error, wait)
                }
                Err(e) => (ModelError::Connection(e.without_url().to_string()), None),
            };
            if attempt >= MAX_RETRIES {
                return Err(error);
            }
            tokio::time::sleep(wait.unwrap_or_else(|| jitter(self.backoff, attempt))).await;
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::chat::ToolDefinition;
    use crate::domain::events::ModelSettings;

    fn settings(log_prob: bool) -> ModelSettings {
        ModelSettings {
            model: "gpt-4o".into(),
            provider: "openai".into(),
            base_url: None,
            temperature: 0.2,
            max_steps: 5,
            system_prompt: None,
            tool_server_url: None,
            log_prob,
            summarize_every_n_turns: 0,
            context_stride: 3,
            has_api_key: true,
        }
    }

    #[test]
    fn the_request_carries_messages_tools_and_logprobs() {
        let messages = vec![Message::system("s"), Message::user("u")];
        let tools = vec![ToolDefinition {
            name: "send_email".into(),
            description: "Send".into(),
            parameters: json!({"type": "object"}),
        }];
        let s = settings(true);
        let body = encode(&ModelRequest {
            messages: &messages,
            tools: &tools,
            settings: &s,
        });
        assert_eq!(body["model"], "gpt-4o");
        assert_eq!(body["messages"][1], json!({"role": "user", "content": "u"}));
        assert_eq!(body["tools"][0]["type"], "function");
        assert_eq!(body["tools"][0]["function"]["name"], "send_email");
        assert_eq!(body["logprobs"], true);
        assert_eq!(body["temperature"], 0.2);
    }

    #[test]
    fn a_tool_call_answer_decodes() {
        let reply = decode(
            br#"{"choices":[{"message":{"role":"assistant","content":null,
            "tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},
            "logprobs":{"content":[{"token":"x","logprob":-0.5}]}}],
            "usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}"#,
        )
        .unwrap();
        assert_eq!(reply.message.tool_calls[0].function.name, "f");
        assert_eq!(reply.usage.unwrap().total_tokens, 15);
        assert!(reply.logprobs.is_some());
    }

    #[test]
    fn a_malformed_answer_is_an_error_not_a_panic() {
        assert!(matches!(decode(b"<html>"), Err(ModelError::Malformed(_))));
        assert!(matches!(
            decode(br#"{"choices":[]}"#),
            Err(ModelError::Malformed(_))
        ));
    }
}
