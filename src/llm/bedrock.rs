//! Amazon Bedrock's Converse API: `POST {base}/model/{modelId}/converse`, with the
//! system prompt as `system` blocks, tool calls as `toolUse` blocks, their results as
//! `toolResult` blocks of the next user turn, and the tools in `toolConfig`.
//!
//! - `base_url` defaults to `https://bedrock-runtime.{region}.amazonaws.com`.
//! - The region is the one in `base_url` when it is a `bedrock-runtime[-fips].{region}.amazonaws.com`
//!   host, else `AWS_REGION`, else `AWS_DEFAULT_REGION`, else `us-east-1`.
//! - `model` is a model id (`anthropic.claude-3-5-sonnet-20240620-v1:0`), an inference
//!   profile id (`us.anthropic…`) or an ARN; it is percent-encoded into the path.
//! - The key is either an access-key pair, `ACCESS_KEY_ID:SECRET_ACCESS_KEY` or
//!   `ACCESS_KEY_ID:SECRET_ACCESS_KEY:SESSION_TOKEN` (see [`Credentials::parse`]),
//!   and the request is signed with SigV4 for service `bedrock`; or anything else, a
//!   Bedrock API key, sent as `Authorization: Bearer <key>`.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};

use super::convert::{
    arguments_object, is_error_result, nonblank, push_turn, system_texts, text_of,
};
use super::retry::{self, RetryPolicy};
use super::sigv4::{self, Credentials};
use super::{ModelClient, ModelError, ModelReply, ModelRequest};
use crate::domain::chat::{FunctionCall, Message, Role, ToolCall};
use crate::domain::events::TokenUsage;
use crate::domain::secret::ApiKey;

pub const DEFAULT_REGION: &str = "us-east-1";
pub const SERVICE: &str = "bedrock";
/// `inferenceConfig.maxTokens`; our settings have no such field yet.
pub const MAX_TOKENS: u32 = 4096;

enum Auth {
    SigV4(Credentials),
    Bearer(ApiKey),
}

pub struct BedrockClient {
    http: reqwest::Client,
    base_url: String,
    region: String,
    auth: Auth,
    retry: RetryPolicy,
}

/// The region named by `AWS_REGION` or `AWS_DEFAULT_REGION`.
pub fn region_from_env() -> Option<String> {
    ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|r| !r.trim().is_empty())
}

/// The region of a `bedrock-runtime.{region}.amazonaws.com` (or `-fips`) URL.
pub fn region_of_url(base_url: &str) -> Option<String> {
    let url = reqwest::Url::parse(base_url).ok()?;
    let host = url.host_str()?;
    let rest = host
        .strip_prefix("bedrock-runtime.")
        .or_else(|| host.strip_prefix("bedrock-runtime-fips."))?;
    let region = rest.split('.').next()?;
    (!region.is_empty() && rest[region.len()..].starts_with(".amazonaws.com"))
        .then(|| region.to_string())
}

impl BedrockClient {
    pub fn new(
        http: reqwest::Client,
        base_url: Option<String>,
        api_key: ApiKey,
        env_region: Option<String>,
    ) -> Result<Self, ModelError> {
        let region = base_url
            .as_deref()
            .and_then(region_of_url)
            .or(env_region)
            .unwrap_or_else(|| DEFAULT_REGION.to_string());
        let base =
            base_url.unwrap_or_else(|| format!("https://bedrock-runtime.{region}.amazonaws.com"));
        reqwest::Url::parse(&base).map_err(|e| {
            ModelError::Unavailable(format!(
                "provider `aws-bedrock`: base_url is not a URL: {e}"
            ))
        })?;
        let auth = match Credentials::parse(api_key.expose()) {
            Some(credentials) => Auth::SigV4(credentials),
            None => Auth::Bearer(api_key),
        };
        Ok(BedrockClient {
            http,
            base_url: base.trim_end_matches('/').to_string(),
            region,
            auth,
            retry: RetryPolicy::default(),
        })
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    fn request(
        &self,
        url: &reqwest::Url,
        body: &[u8],
    ) -> Result<reqwest::RequestBuilder, ModelError> {
        let call = self
            .http
            .post(url.clone())
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .body(body.to_vec());
        match &self.auth {
            Auth::Bearer(key) => Ok(call.bearer_auth(key.expose())),
            Auth::SigV4(credentials) => {
                let host = match (url.host_str(), url.port()) {
                    (Some(h), Some(p)) => format!("{h}:{p}"),
                    (Some(h), None) => h.to_string(),
                    (None, _) => {
                        return Err(ModelError::Unavailable("base_url has no host".into()))
                    }
                };
                let amz_date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
                let mut headers = vec![
                    ("content-type".to_string(), "application/json".to_string()),
                    ("host".to_string(), host),
                    ("x-amz-date".to_string(), amz_date.clone()),
                ];
                if let Some(token) = &credentials.session_token {
                    headers.push(("x-amz-security-token".to_string(), token.clone()));
                }
                let authorization = sigv4::authorization(
                    credentials,
                    &sigv4::Request {
                        method: "POST",
                        path: url.path(),
                        query: url.query().unwrap_or(""),
                        headers: &headers,
                        body,
                    },
                    &sigv4::Scope {
                        amz_date: &amz_date,
                        region: &self.region,
                        service: SERVICE,
                    },
                );
                let mut call = call
                    .header("x-amz-date", amz_date)
                    .header("authorization", authorization);
                if let Some(token) = &credentials.session_token {
                    call = call.header("x-amz-security-token", token);
                }
                Ok(call)
            }
        }
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
                vec![json!({"text": nonblank(message.content.as_deref())})],
            ),
            Role::Assistant => {
                let mut blocks = Vec::new();
                if let Some(text) = text_of(message) {
                    blocks.push(json!({"text": text}));
                }
                for call in &message.tool_calls {
                    blocks.push(json!({"toolUse": {
                        "toolUseId": call.id,
                        "name": call.function.name,
                        "input": arguments_object(&call.function.arguments),
                    }}));
                }
                if blocks.is_empty() {
                    blocks.push(json!({"text": nonblank(None)}));
                }
                push_turn(&mut turns, "assistant", blocks);
            }
            Role::Tool => push_turn(
                &mut turns,
                "user",
                vec![json!({"toolResult": {
                    "toolUseId": message.tool_call_id.as_deref().unwrap_or_default(),
                    "content": [{"text": nonblank(message.content.as_deref())}],
                    "status": if is_error_result(message) { "error" } else { "success" },
                }})],
            ),
        }
    }
    let messages: Vec<Value> = turns
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    let mut body = json!({
        "messages": messages,
        "inferenceConfig": {"temperature": request.settings.temperature, "maxTokens": MAX_TOKENS},
    });
    let system = system_texts(request.messages);
    if !system.is_empty() {
        body["system"] = system.iter().map(|t| json!({"text": t})).collect();
    }
    if !request.tools.is_empty() {
        let tools: Vec<Value> = request
            .tools
            .iter()
            .map(|t| {
                json!({"toolSpec": {
                    "name": t.name,
                    "description": t.description,
                    "inputSchema": {"json": t.parameters},
                }})
            })
            .collect();
        body["toolConfig"] = json!({ "tools": tools });
    }
    body
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    output: Output,
    #[allow(dead_code)]
    stop_reason: Option<String>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Output {
    message: OutputMessage,
}

#[derive(Deserialize)]
struct OutputMessage {
    content: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Usage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    total_tokens: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolUse {
    tool_use_id: String,
    name: String,
    #[serde(default)]
    input: Value,
}

/// Reads a Converse answer into our reply. Content blocks are a union keyed by their
/// one member: `text` and `toolUse` are read, others (`reasoningContent`, …) skipped.
pub fn decode(body: &[u8]) -> Result<ModelReply, ModelError> {
    let response: Response = retry::parse(body)?;
    let mut texts = Vec::new();
    let mut tool_calls = Vec::new();
    for block in response.output.message.content {
        if let Some(text) = block.get("text").and_then(Value::as_str) {
            texts.push(text.to_string());
        } else if let Some(tool_use) = block.get("toolUse") {
            let tool_use: ToolUse = serde_json::from_value(tool_use.clone())
                .map_err(|e| ModelError::Malformed(format!("toolUse block: {e}")))?;
            let input = if tool_use.input.is_null() {
                json!({})
            } else {
                tool_use.input
            };
            tool_calls.push(ToolCall {
                id: tool_use.tool_use_id,
                kind: "function".to_string(),
                function: FunctionCall {
                    name: tool_use.name,
                    arguments: input.to_string(),
                },
            });
        }
    }
    let content = (!texts.is_empty()).then(|| texts.join("\n"));
    Ok(ModelReply {
        message: Message::assistant(content, tool_calls),
        usage: response.usage.map(|u| TokenUsage {
            prompt_tokens: u.input_tokens,
            completion_tokens: u.output_tokens,
            total_tokens: u.total_tokens.max(u.input_tokens + u.output_tokens),
        }),
        logprobs: None,
        tokens: None,
    })
}

#[async_trait]
impl ModelClient for BedrockClient {
    async fn complete(&self, request: ModelRequest<'_>) -> Result<ModelReply, ModelError> {
        let body = serde_json::to_vec(&encode(&request))
            .map_err(|e| ModelError::Unavailable(format!("request could not be encoded: {e}")))?;
        let url = format!(
            "{}/model/{}/converse",
            self.base_url,
            sigv4::uri_encode(&request.settings.model)
        );
        let url = reqwest::Url::parse(&url)
            .map_err(|e| ModelError::Unavailable(format!("bad Bedrock URL: {e}")))?;
        let bytes = retry::send(&self.retry, || self.request(&url, &body)).await?;
        decode(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::convert::tests_support::{conversation, settings, tools};

    #[test]
    fn the_conversation_becomes_converse_blocks() {
        let s = settings("aws-bedrock", "anthropic.claude-3-haiku-20240307-v1:0");
        let messages = conversation();
        let tools = tools();
        let body = encode(&ModelRequest {
            messages: &messages,
            tools: &tools,
            settings: &s,
        });
        assert_eq!(body["system"], json!([{"text": "You are an assistant."}]));
        assert_eq!(
            body["inferenceConfig"],
            json!({"temperature": 0.2, "maxTokens": 4096})
        );
        assert_eq!(
            body["messages"],
            json!([
                {"role": "user", "content": [{"text": "Email Bob."}]},
                {"role": "assistant", "content": [
                    {"text": "Sending."},
                    {"toolUse": {"toolUseId": "call_1", "name": "send_email", "input": {"to": "bob@example.com"}}},
                    {"toolUse": {"toolUseId": "call_2", "name": "list_emails", "input": {}}}
                ]},
                {"role": "user", "content": [
                    {"toolResult": {"toolUseId": "call_1", "content": [{"text": "sent"}], "status": "success"}},
                    {"toolResult": {"toolUseId": "call_2", "content": [{"text": "Error: no inbox"}], "status": "error"}}
                ]},
                {"role": "assistant", "content": [{"text": "Done."}]}
            ])
        );
        assert_eq!(
            body["toolConfig"],
            json!({"tools": [{"toolSpec": {"name": "send_email", "description": "Send an email",
                "inputSchema": {"json": tools[0].parameters}}}]})
        );
        assert!(body.get("model").is_none(), "the model is in the path");
    }

    #[test]
    fn a_tool_use_answer_decodes_with_usage() {
        let reply = decode(
            br#"{"output":{"message":{"role":"assistant","content":[
                {"text":"Checking."},
                {"toolUse":{"toolUseId":"tooluse_abc","name":"get_weather","input":{"city":"Paris"}}}]}},
              "stopReason":"tool_use",
              "usage":{"inputTokens":30,"outputTokens":8,"totalTokens":38},
              "metrics":{"latencyMs":120}}"#,
        )
        .unwrap();
        assert_eq!(reply.message.content.as_deref(), Some("Checking."));
        assert_eq!(reply.message.tool_calls[0].id, "tooluse_abc");
        assert_eq!(
            reply.message.tool_calls[0].function.arguments,
            r#"{"city":"Paris"}"#
        );
        assert_eq!(reply.usage.unwrap().total_tokens, 38);
    }

    #[test]
    fn an_answer_without_output_is_malformed() {
        assert!(matches!(
            decode(br#"{"usage":{}}"#),
            Err(ModelError::Malformed(_))
        ));
        assert!(matches!(
            decode(br#"{"output":{"message":{"content":[{"toolUse":{"name":1}}]}}}"#),
            Err(ModelError::Malformed(_))
        ));
    }

    #[test]
    fn the_region_comes_from_a_bedrock_runtime_url_then_the_environment() {
        assert_eq!(
            region_of_url("https://bedrock-runtime.eu-west-3.amazonaws.com").as_deref(),
            Some("eu-west-3")
        );
        assert_eq!(
            region_of_url("https://bedrock-runtime-fips.us-gov-west-1.amazonaws.com/").as_deref(),
            Some("us-gov-west-1")
        );
        assert_eq!(region_of_url("http://127.0.0.1:9000"), None);
        let key = || ApiKey::new("ABSK-key".into());
        let http = reqwest::Client::new();
        let from_url = BedrockClient::new(
            http.clone(),
            Some("https://bedrock-runtime.ap-south-1.amazonaws.com".into()),
            key(),
            Some("eu-central-1".into()),
        )
        .unwrap();
        assert_eq!(from_url.region(), "ap-south-1");
        let from_env =
            BedrockClient::new(http.clone(), None, key(), Some("eu-central-1".into())).unwrap();
        assert_eq!(from_env.region(), "eu-central-1");
        assert_eq!(
            from_env.base_url,
            "https://bedrock-runtime.eu-central-1.amazonaws.com"
        );
        let default = BedrockClient::new(http, None, key(), None).unwrap();
        assert_eq!(default.region(), "us-east-1");
    }
}
