//! OpenAI Chat Completions, and every server that speaks it: `openai`, `custom`
//! (vLLM, llama.cpp, Ollama, LiteLLM, TGI at `base_url`) and `azure-openai` (a
//! deployment's chat completions with the `api-key` header and an `api-version`).
//!
//! Sending and retrying are [`super::retry`]'s.

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::retry::{self, RetryPolicy};
use super::{ModelClient, ModelError, ModelReply, ModelRequest};
use crate::domain::chat::{Message, Role};
use crate::domain::events::TokenUsage;
use crate::domain::secret::ApiKey;

mod wire;

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
/// chat-message shape), in parts: the task's `tools` array is the same shared bytes
/// in every request ([`ToolSet::openai_json`]), sent without being copied.
pub fn encode(request: &ModelRequest<'_>) -> serde_json::Result<RequestBody> {
    let settings = request.settings;
    let mut head = serde_json::to_vec(&Body {
        model: &settings.model,
        messages: wire::Messages(request.messages),
        temperature: settings.temperature,
        logprobs: settings.log_prob.then_some(true),
        top_logprobs: settings.log_prob.then_some(1),
    })?;
    if request.tools.is_empty() {
        return Ok(RequestBody::new(vec![head.into()]));
    }
    // The object is reopened before its closing brace to add the tools.
    head.pop();
    head.extend_from_slice(br#","tools":"#);
    Ok(RequestBody::new(vec![
        head.into(),
        request.tools.openai_json(),
        Bytes::from_static(br#","tool_choice":"auto"}"#),
    ]))
}

/// A JSON request body as the parts it was written in.
#[derive(Debug, Clone)]
pub struct RequestBody {
    parts: Vec<Bytes>,
    len: usize,
}

impl RequestBody {
    fn new(parts: Vec<Bytes>) -> Self {
        let len = parts.iter().map(Bytes::len).sum();
        RequestBody { parts, len }
    }

    /// The whole body in one buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        self.parts.concat()
    }

    /// The body for a request, with its length declared up front (a streamed body
    /// would otherwise go out chunked).
    fn attach(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let parts = self.parts.clone().into_iter().map(Ok::<_, std::io::Error>);
        request
            .header(reqwest::header::CONTENT_LENGTH, self.len)
            .body(reqwest::Body::wrap_stream(futures::stream::iter(parts)))
    }
}

#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    messages: wire::Messages<'a>,
    temperature: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_logprobs: Option<u8>,
}

#[derive(Deserialize)]
struct Completion {
    choices: Vec<Choice>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    message: wire::Reply,
    logprobs: Option<Value>,
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
    decode_after(body, &[])
}

/// Reads a chat completion that answers `earlier`, whose tool-call ids a new call's
/// synthesized id must not repeat (see [`wire`]).
pub fn decode_after(body: &[u8], earlier: &[Message]) -> Result<ModelReply, ModelError> {
    let completion: Completion = retry::parse(body)?;
    let choice = completion
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| ModelError::Malformed("the completion has no choices".to_string()))?;
    let (content, tool_calls) = choice.message.into_parts(earlier);
    let message = Message {
        role: Role::Assistant,
        content,
        tool_calls,
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
        logprobs: choice.logprobs.and_then(wire::logprobs),
        tokens: None,
    })
}

#[async_trait]
impl ModelClient for OpenAiClient {
    async fn complete(&self, request: ModelRequest<'_>) -> Result<ModelReply, ModelError> {
        // Held as bytes while the call is in flight, the tools shared with every other
        // call: thousands of calls wait at once.
        let body = encode(&request)
            .map_err(|e| ModelError::Malformed(format!("the request could not be encoded: {e}")))?;
        let url = self.url(&request.settings.model);
        let bytes = retry::send(&self.retry, || {
            let call = body.attach(
                self.http
                    .post(&url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json"),
            );
            Ok(match (&self.api_key, self.flavor) {
                (Some(key), Flavor::OpenAi) => call.bearer_auth(key.expose()),
                (Some(key), Flavor::Azure) => call.header("api-key", key.expose()),
                (None, _) => call,
            })
        })
        .await?;
        decode_after(&bytes, request.messages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::chat::{ToolDefinition, ToolSet};
    use crate::domain::events::ModelSettings;
    use serde_json::json;

    fn settings(log_prob: bool) -> ModelSettings {
        ModelSettings {
            temperature: 0.2,
            max_steps: 5,
            log_prob,
            has_api_key: true,
            ..ModelSettings::new("openai", "gpt-4o")
        }
    }

    #[test]
    fn the_request_carries_messages_tools_and_logprobs() {
        let messages = vec![Message::system("s"), Message::user("u")];
        let tools = ToolSet::new(vec![ToolDefinition {
            name: "send_email".into(),
            description: "Send".into(),
            parameters: json!({"type": "object"}),
        }]);
        let s = settings(true);
        let body = encode(&ModelRequest {
            messages: &messages,
            tools: &tools,
            settings: &s,
        })
        .unwrap();
        let body: Value = serde_json::from_slice(&body.to_vec()).unwrap();
        assert_eq!(body["model"], "gpt-4o");
        assert_eq!(body["messages"][1], json!({"role": "user", "content": "u"}));
        assert_eq!(body["tools"][0]["type"], "function");
        assert_eq!(body["tools"][0], tools[0].openai_json());
        assert_eq!(body["tool_choice"], "auto");
        assert_eq!(body["logprobs"], true);
        assert_eq!(body["top_logprobs"], 1);
        assert_eq!(body["temperature"], 0.2);
        // Written once: every request shares the same bytes.
        assert_eq!(tools.openai_json().as_ptr(), tools.openai_json().as_ptr());
    }

    #[test]
    fn a_request_without_tools_or_logprobs_leaves_their_keys_out() {
        let messages = vec![Message::user("u")];
        let s = settings(false);
        let body = encode(&ModelRequest {
            messages: &messages,
            tools: ToolSet::none(),
            settings: &s,
        })
        .unwrap();
        let body: Value = serde_json::from_slice(&body.to_vec()).unwrap();
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
