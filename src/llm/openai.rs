//! OpenAI Chat Completions, and every server that speaks it: `openai`, `custom`
//! (vLLM, llama.cpp, Ollama, LiteLLM, TGI at `base_url`) and `azure-openai` (a
//! deployment's chat completions with the `api-key` header and an `api-version`).
//!
//! Sending and retrying are [`super::retry`]'s.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::retry::{self, RetryPolicy};
use super::{ModelClient, ModelError, ModelReply, ModelRequest};
use crate::config::secrets::ApiKey;
use crate::domain::chat::{Message, Role, ToolCall};
use crate::domain::events::TokenUsage;

pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
pub const AZURE_API_VERSION: &str = "2024-10-21";

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
    retry: RetryPolicy,
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
            retry: RetryPolicy::default(),
        }
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
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

/// The request body, written straight to bytes (our conversation is already in the
/// chat-message shape): a JSON tree of it would first copy every message and every
/// tool schema, and the schemas alone were 9% of a one-turn rollout's CPU.
pub fn encode(request: &ModelRequest<'_>) -> serde_json::Result<Vec<u8>> {
    let settings = request.settings;
    let tools: Vec<WireTool<'_>> = request
        .tools
        .iter()
        .map(|t| WireTool {
            kind: "function",
            function: WireFunction {
                name: &t.name,
                description: &t.description,
                parameters: &t.parameters,
            },
        })
        .collect();
    serde_json::to_vec(&Body {
        model: &settings.model,
        messages: request.messages,
        temperature: settings.temperature,
        tool_choice: (!tools.is_empty()).then_some("auto"),
        tools,
        logprobs: settings.log_prob.then_some(true),
        top_logprobs: settings.log_prob.then_some(1),
    })
}

#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    messages: &'a [Message],
    temperature: f64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<WireTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_logprobs: Option<u8>,
}

/// A `tools` entry, as [`crate::domain::chat::ToolDefinition::openai_json`] has it.
#[derive(Serialize)]
struct WireTool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireFunction<'a>,
}

#[derive(Serialize)]
struct WireFunction<'a> {
    name: &'a str,
    description: &'a str,
    parameters: &'a Value,
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
    let completion: Completion = retry::parse(body)?;
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

#[async_trait]
impl ModelClient for OpenAiClient {
    async fn complete(&self, request: ModelRequest<'_>) -> Result<ModelReply, ModelError> {
        // Held as bytes while the call is in flight: a JSON tree of the tools and the
        // conversation is several times bigger, and thousands of calls wait at once.
        let body = encode(&request)
            .map_err(|e| ModelError::Malformed(format!("the request could not be encoded: {e}")))?;
        let url = self.url(&request.settings.model);
        let bytes = retry::send(&self.retry, || {
            let call = self
                .http
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            Ok(match (&self.api_key, self.flavor) {
                (Some(key), Flavor::OpenAi) => call.bearer_auth(key.expose()),
                (Some(key), Flavor::Azure) => call.header("api-key", key.expose()),
                (None, _) => call,
            })
        })
        .await?;
        decode(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::chat::ToolDefinition;
    use crate::domain::events::ModelSettings;
    use serde_json::json;

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
        })
        .unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["model"], "gpt-4o");
        assert_eq!(body["messages"][1], json!({"role": "user", "content": "u"}));
        assert_eq!(body["tools"][0]["type"], "function");
        assert_eq!(body["tools"][0], tools[0].openai_json());
        assert_eq!(body["tool_choice"], "auto");
        assert_eq!(body["logprobs"], true);
        assert_eq!(body["top_logprobs"], 1);
        assert_eq!(body["temperature"], 0.2);
    }

    #[test]
    fn a_request_without_tools_or_logprobs_leaves_their_keys_out() {
        let messages = vec![Message::user("u")];
        let s = settings(false);
        let body = encode(&ModelRequest {
            messages: &messages,
            tools: &[],
            settings: &s,
        })
        .unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body,
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "u"}], "temperature": 0.2})
        );
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
