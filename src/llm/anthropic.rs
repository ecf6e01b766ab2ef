//! Anthropic's Messages API: `POST {base}/v1/messages` with `x-api-key` and
//! `anthropic-version`. The system prompt goes in the top-level `system`, never in
//! `messages`; assistant tool calls are `tool_use` blocks and their results are
//! `tool_result` blocks of the next user turn (all results of one turn in one
//! message); `max_tokens` is required.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};

use super::convert::{
    arguments_object, is_error_result, nonblank, push_turn, system_texts, text_of,
};
use super::retry::{self, RetryPolicy};
use super::{ModelClient, ModelError, ModelReply, ModelRequest};
use crate::domain::chat::{FunctionCall, Message, Role, ToolCall};
use crate::domain::events::TokenUsage;
use crate::domain::secret::ApiKey;

pub const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
/// `max_tokens` is required by the API; our settings have no such field yet.
pub const MAX_TOKENS: u32 = 4096;

pub struct AnthropicClient {
    http: reqwest::Client,
    base_url: String,
    api_key: ApiKey,
    retry: RetryPolicy,
}

impl AnthropicClient {
    pub fn new(http: reqwest::Client, base_url: Option<String>, api_key: ApiKey) -> Self {
        let base = base_url.unwrap_or_else(|| ANTHROPIC_BASE_URL.to_string());
        AnthropicClient {
            http,
            base_url: base.trim_end_matches('/').to_string(),
            api_key,
            retry: RetryPolicy::default(),
        }
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }
}

/// The request body.
pub fn encode(request: &ModelRequest<'_>) -> Value {
    let mut turns = Vec::new();
    for message in request.messages {
        match message.role {
            Role::System => {}
            Role::User => push_turn(
                &mut turns,
                "user",
                vec![json!({"type": "text", "text": nonblank(message.content.as_deref())})],
            ),
            Role::Assistant => {
                let mut blocks = Vec::new();
                if let Some(text) = text_of(message) {
                    blocks.push(json!({"type": "text", "text": text}));
                }
                for call in &message.tool_calls {
                    blocks.push(json!({
                        "type": "tool_use",
                        "id": call.id,
                        "name": call.function.name,
                        "input": arguments_object(&call.function.arguments),
                    }));
                }
                if blocks.is_empty() {
                    blocks.push(json!({"type": "text", "text": nonblank(None)}));
                }
                push_turn(&mut turns, "assistant", blocks);
            }
            Role::Tool => push_turn(
                &mut turns,
                "user",
                vec![json!({
                    "type": "tool_result",
                    "tool_use_id": message.tool_call_id.as_deref().unwrap_or_default(),
                    "content": nonblank(message.content.as_deref()),
                    "is_error": is_error_result(message),
                })],
            ),
        }
    }
    let messages: Vec<Value> = turns
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    let mut body = json!({
        "model": request.settings.model,
        "max_tokens": MAX_TOKENS,
        "messages": messages,
        "temperature": request.settings.temperature,
    });
    let system = system_texts(request.messages);
    if !system.is_empty() {
        body["system"] = json!(system.join("\n\n"));
    }
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}))
            .collect();
    }
    body
}

#[derive(Deserialize)]
struct Response {
    content: Vec<Block>,
    #[allow(dead_code)]
    stop_reason: Option<String>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    /// `thinking`, `redacted_thinking` and blocks added later: not part of the reply.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

/// Reads a Messages API answer into our reply.
pub fn decode(body: &[u8]) -> Result<ModelReply, ModelError> {
    let response: Response = retry::parse(body)?;
    let mut texts = Vec::new();
    let mut tool_calls = Vec::new();
    for block in response.content {
        match block {
            Block::Text { text } => texts.push(text),
            Block::ToolUse { id, name, input } => tool_calls.push(ToolCall {
                id,
                kind: "function".to_string(),
                function: FunctionCall {
                    name,
                    arguments: input.to_string(),
                },
            }),
            Block::Other => {}
        }
    }
    let content = (!texts.is_empty()).then(|| texts.join("\n"));
    Ok(ModelReply {
        message: Message::assistant(content, tool_calls),
        usage: response.usage.map(|u| {
            let prompt = u.input_tokens
                + u.cache_creation_input_tokens.unwrap_or(0)
                + u.cache_read_input_tokens.unwrap_or(0);
            TokenUsage {
                prompt_tokens: prompt,
                completion_tokens: u.output_tokens,
                total_tokens: prompt + u.output_tokens,
            }
        }),
        logprobs: None,
        tokens: None,
    })
}

#[async_trait]
impl ModelClient for AnthropicClient {
    async fn complete(&self, request: ModelRequest<'_>) -> Result<ModelReply, ModelError> {
        let body = encode(&request);
        let url = format!("{}/v1/messages", self.base_url);
        let bytes = retry::send(&self.retry, || {
            Ok(self
                .http
                .post(&url)
                .header("x-api-key", self.api_key.expose())
                .header("anthropic-version", ANTHROPIC_VERSION)
                .json(&body))
        })
        .await?;
        decode(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::convert::tests_support::{conversation, settings, tools};

    #[test]
    fn the_system_prompt_is_top_level_and_tool_results_are_user_blocks() {
        let s = settings("anthropic", "claude-sonnet-4-5");
        let messages = conversation();
        let tools = tools();
        let body = encode(&ModelRequest {
            messages: &messages,
            tools: &tools,
            settings: &s,
        });
        assert_eq!(body["system"], "You are an assistant.");
        assert_eq!(body["max_tokens"], 4096);
        assert_eq!(
            body["messages"],
            json!([
                {"role": "user", "content": [{"type": "text", "text": "Email Bob."}]},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Sending."},
                    {"type": "tool_use", "id": "call_1", "name": "send_email", "input": {"to": "bob@example.com"}},
                    {"type": "tool_use", "id": "call_2", "name": "list_emails", "input": {}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "sent", "is_error": false},
                    {"type": "tool_result", "tool_use_id": "call_2", "content": "Error: no inbox", "is_error": true}
                ]},
                {"role": "assistant", "content": [{"type": "text", "text": "Done."}]}
            ])
        );
        assert_eq!(
            body["tools"][0],
            json!({"name": "send_email", "description": "Send an email", "input_schema": tools[0].parameters})
        );
    }

    #[test]
    fn text_and_tool_use_blocks_decode_with_usage() {
        let reply = decode(
            br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude",
            "content":[{"type":"thinking","thinking":"hm","signature":"x"},
              {"type":"text","text":"Let me check."},
              {"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris"}}],
            "stop_reason":"tool_use","stop_sequence":null,
            "usage":{"input_tokens":10,"output_tokens":5,"cache_read_input_tokens":2}}"#,
        )
        .unwrap();
        assert_eq!(reply.message.content.as_deref(), Some("Let me check."));
        let call = &reply.message.tool_calls[0];
        assert_eq!(
            (call.id.as_str(), call.function.name.as_str()),
            ("toolu_1", "get_weather")
        );
        assert_eq!(call.function.arguments, r#"{"city":"Paris"}"#);
        let usage = reply.usage.unwrap();
        assert_eq!(
            (
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.total_tokens
            ),
            (12, 5, 17)
        );
    }

    #[test]
    fn an_answer_without_content_blocks_is_malformed() {
        assert!(matches!(
            decode(br#"{"type":"message"}"#),
            Err(ModelError::Malformed(_))
        ));
        assert!(matches!(decode(b"not json"), Err(ModelError::Malformed(_))));
    }
}
