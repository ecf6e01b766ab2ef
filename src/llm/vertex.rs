//! Vertex AI's Gemini `generateContent`: `POST {location URL}/publishers/google/models/{model}:generateContent`
//! with `Authorization: Bearer <OAuth access token>` (the run's `api_key`, e.g. from
//! `gcloud auth print-access-token`).
//!
//! Where the project and location come from, in order:
//! 1. `base_url` naming them: `https://{location}-aiplatform.googleapis.com/v1/projects/{project}/locations/{location}`;
//!    `model` is then a model name (`gemini-2.0-flash`) or `publishers/{publisher}/models/{model}`.
//! 2. `model` as a full resource path, `projects/{project}/locations/{location}/publishers/google/models/{model}`;
//!    the host is `https://{location}-aiplatform.googleapis.com` (`https://aiplatform.googleapis.com`
//!    for `global`), or `base_url` when given (a proxy's root, without `/v1`).
//!
//! Gemini function calls carry no ids: ours are `call_{n}`, numbered after the tool
//! calls already in the conversation, so they are unique in a rollout and the same on
//! replay; a result is sent back as a `functionResponse` under its call's name, in the
//! calls' order.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::convert::{
    arguments_object, is_error_result, nonblank, push_turn, system_texts, text_of,
};
use super::retry::{self, RetryPolicy};
use super::{ModelClient, ModelError, ModelReply, ModelRequest};
use crate::domain::chat::{FunctionCall, Message, Role, ToolCall};
use crate::domain::events::TokenUsage;
use crate::domain::secret::ApiKey;

pub struct VertexClient {
    http: reqwest::Client,
    url: String,
    token: ApiKey,
    retry: RetryPolicy,
}

/// The `generateContent` URL for a `base_url` and `model` (see the module docs).
pub fn endpoint(base_url: Option<&str>, model: &str) -> Result<String, ModelError> {
    let model = model.trim_matches('/');
    if let Some(base) = base_url.map(|b| b.trim_end_matches('/')) {
        if base.contains("/projects/") {
            let path = if model.starts_with("publishers/") {
                model.to_string()
            } else {
                format!("publishers/google/models/{model}")
            };
            return Ok(format!("{base}/{path}:generateContent"));
        }
    }
    if let Some(rest) = model.strip_prefix("projects/") {
        let location = rest
            .split('/')
            .skip_while(|s| *s != "locations")
            .nth(1)
            .filter(|l| !l.is_empty())
            .ok_or_else(|| usage_error("the model path names no location"))?;
        let root = match base_url {
            Some(base) => base.trim_end_matches('/').to_string(),
            None if location == "global" => "https://aiplatform.googleapis.com".to_string(),
            None => format!("https://{location}-aiplatform.googleapis.com"),
        };
        return Ok(format!("{root}/v1/{model}:generateContent"));
    }
    Err(usage_error("the project and location are not given"))
}

fn usage_error(why: &str) -> ModelError {
    ModelError::Unavailable(format!(
        "provider `gcp`: {why}; give base_url = https://{{location}}-aiplatform.googleapis.com/v1/projects/{{project}}/locations/{{location}}, \
         or model = projects/{{project}}/locations/{{location}}/publishers/google/models/{{model}}"
    ))
}

impl VertexClient {
    pub fn new(
        http: reqwest::Client,
        base_url: Option<String>,
        token: ApiKey,
        model: &str,
    ) -> Result<Self, ModelError> {
        Ok(VertexClient {
            http,
            url: endpoint(base_url.as_deref(), model)?,
            token,
            retry: RetryPolicy::default(),
        })
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

/// Vertex's `Schema` is a subset of OpenAPI 3.0: keys it does not know
/// (`additionalProperties`, `$schema`, …) make the request fail, so they are dropped,
/// and a JSON-Schema `"type": [T, "null"]` becomes `"type": T, "nullable": true`.
pub fn vertex_schema(schema: &Value) -> Value {
    const KEPT: &[&str] = &[
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "default",
        "enum",
        "required",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "example",
        "minimum",
        "maximum",
        "propertyOrdering",
    ];
    let Some(object) = schema.as_object() else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (key, value) in object {
        match key.as_str() {
            "properties" => {
                if let Some(props) = value.as_object() {
                    let props = props
                        .iter()
                        .map(|(k, v)| (k.clone(), vertex_schema(v)))
                        .collect();
                    out.insert(key.clone(), Value::Object(props));
                }
            }
            "items" => {
                out.insert(key.clone(), vertex_schema(value));
            }
            "anyOf" => {
                if let Some(options) = value.as_array() {
                    out.insert(key.clone(), options.iter().map(vertex_schema).collect());
                }
            }
            "type" if value.is_array() => {
                let types: Vec<&str> = value
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                if let Some(t) = types.iter().find(|t| **t != "null") {
                    out.insert("type".into(), json!(t));
                }
                if types.contains(&"null") {
                    out.insert("nullable".into(), json!(true));
                }
            }
            k if KEPT.contains(&k) => {
                out.insert(key.clone(), value.clone());
            }
            _ => {}
        }
    }
    Value::Object(out)
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
                let mut parts = Vec::new();
                if let Some(text) = text_of(message) {
                    parts.push(json!({"text": text}));
                }
                for call in &message.tool_calls {
                    parts.push(json!({"functionCall": {
                        "name": call.function.name,
                        "args": arguments_object(&call.function.arguments),
                    }}));
                }
                if parts.is_empty() {
                    parts.push(json!({"text": nonblank(None)}));
                }
                push_turn(&mut turns, "model", parts);
            }
            Role::Tool => {
                let name = message
                    .name
                    .clone()
                    .or_else(|| name_of_call(request.messages, message.tool_call_id.as_deref()))
                    .unwrap_or_default();
                let text = nonblank(message.content.as_deref());
                let response = if is_error_result(message) {
                    json!({"error": text})
                } else {
                    json!({"output": text})
                };
                push_turn(
                    &mut turns,
                    "user",
                    vec![json!({"functionResponse": {"name": name, "response": response}})],
                );
            }
        }
    }
    let contents: Vec<Value> = turns
        .into_iter()
        .map(|(role, parts)| json!({"role": role, "parts": parts}))
        .collect();
    let mut body = json!({
        "contents": contents,
        "generationConfig": {"temperature": request.settings.temperature},
    });
    let system = system_texts(request.messages);
    if !system.is_empty() {
        let parts: Vec<Value> = system.iter().map(|t| json!({"text": t})).collect();
        body["systemInstruction"] = json!({ "parts": parts });
    }
    if !request.tools.is_empty() {
        let declarations: Vec<Value> = request
            .tools
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "description": t.description,
                    "parameters": vertex_schema(&t.parameters),
                })
            })
            .collect();
        body["tools"] = json!([{ "functionDeclarations": declarations }]);
    }
    body
}

fn name_of_call(messages: &[Message], id: Option<&str>) -> Option<String> {
    let id = id?;
    messages
        .iter()
        .flat_map(|m| &m.tool_calls)
        .find(|c| c.id == id)
        .map(|c| c.function.name.clone())
}

/// How many tool calls the conversation already holds: the next call is `call_{n+1}`.
pub fn calls_so_far(messages: &[Message]) -> usize {
    messages.iter().map(|m| m.tool_calls.len()).sum()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    candidates: Option<Vec<Candidate>>,
    usage_metadata: Option<UsageMetadata>,
    prompt_feedback: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    content: Option<Content>,
    #[allow(dead_code)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Content {
    #[serde(default)]
    parts: Vec<Part>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Part {
    text: Option<String>,
    function_call: Option<GeminiCall>,
    /// A thought summary, not part of the answer.
    #[serde(default)]
    thought: bool,
}

#[derive(Deserialize)]
struct GeminiCall {
    name: String,
    #[serde(default)]
    args: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    #[serde(default)]
    total_token_count: u64,
}

/// Reads a `generateContent` answer; function calls get ids `call_{calls_so_far + i}`.
pub fn decode(body: &[u8], calls_so_far: usize) -> Result<ModelReply, ModelError> {
    let response: Response = retry::parse(body)?;
    let candidate = response
        .candidates
        .and_then(|c| c.into_iter().next())
        .ok_or_else(|| {
            let why = response
                .prompt_feedback
                .as_ref()
                .and_then(|f| f.get("blockReason"))
                .map(|r| format!(" (prompt blocked: {r})"))
                .unwrap_or_default();
            ModelError::Malformed(format!("the answer has no candidates{why}"))
        })?;
    let mut texts = Vec::new();
    let mut tool_calls = Vec::new();
    for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
        if let Some(call) = part.function_call {
            let args = if call.args.is_null() {
                json!({})
            } else {
                call.args
            };
            tool_calls.push(ToolCall {
                id: format!("call_{}", calls_so_far + tool_calls.len() + 1),
                kind: "function".to_string(),
                function: FunctionCall {
                    name: call.name,
                    arguments: args.to_string(),
                },
            });
        } else if let Some(text) = part.text.filter(|_| !part.thought) {
            texts.push(text);
        }
    }
    let content = (!texts.is_empty()).then(|| texts.concat());
    Ok(ModelReply {
        message: Message::assistant(content, tool_calls),
        usage: response.usage_metadata.map(|u| TokenUsage {
            prompt_tokens: u.prompt_token_count,
            completion_tokens: u.candidates_token_count,
            total_tokens: u
                .total_token_count
                .max(u.prompt_token_count + u.candidates_token_count),
        }),
        logprobs: None,
        tokens: None,
    })
}

#[async_trait]
impl ModelClient for VertexClient {
    async fn complete(&self, request: ModelRequest<'_>) -> Result<ModelReply, ModelError> {
        let body = encode(&request);
        let bytes = retry::send(&self.retry, || {
            Ok(self
                .http
                .post(&self.url)
                .bearer_auth(self.token.expose())
                .json(&body))
        })
        .await?;
        decode(&bytes, calls_so_far(request.messages))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::convert::tests_support::{conversation, settings, tools};

    #[test]
    fn the_conversation_becomes_contents_with_function_parts() {
        let s = settings("gcp", "gemini-2.0-flash");
        let mut messages = conversation();
        // A result without its name is matched to its call by id.
        messages[3].name = None;
        let tools = tools();
        let body = encode(&ModelRequest {
            messages: &messages,
            tools: &tools,
            settings: &s,
        });
        assert_eq!(
            body["systemInstruction"],
            json!({"parts": [{"text": "You are an assistant."}]})
        );
        assert_eq!(body["generationConfig"], json!({"temperature": 0.2}));
        assert_eq!(
            body["contents"],
            json!([
                {"role": "user", "parts": [{"text": "Email Bob."}]},
                {"role": "model", "parts": [
                    {"text": "Sending."},
                    {"functionCall": {"name": "send_email", "args": {"to": "bob@example.com"}}},
                    {"functionCall": {"name": "list_emails", "args": {}}}
                ]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "send_email", "response": {"output": "sent"}}},
                    {"functionResponse": {"name": "list_emails", "response": {"error": "Error: no inbox"}}}
                ]},
                {"role": "model", "parts": [{"text": "Done."}]}
            ])
        );
        assert_eq!(
            body["tools"],
            json!([{"functionDeclarations": [{"name": "send_email", "description": "Send an email",
                "parameters": {"type": "object",
                    "properties": {"to": {"type": "string", "description": "Recipient"}},
                    "required": ["to"]}}]}])
        );
    }

    #[test]
    fn function_calls_get_ids_numbered_after_the_conversations_calls() {
        let reply = decode(
            br#"{"candidates":[{"content":{"role":"model","parts":[
                {"text":"Let me look."},
                {"functionCall":{"name":"list_emails","args":{}}},
                {"functionCall":{"name":"send_email","args":{"to":"a@b.c"}}}]},
              "finishReason":"STOP"}],
              "usageMetadata":{"promptTokenCount":20,"candidatesTokenCount":7,"totalTokenCount":27}}"#,
            2,
        )
        .unwrap();
        let ids: Vec<_> = reply
            .message
            .tool_calls
            .iter()
            .map(|c| c.id.as_str())
            .collect();
        assert_eq!(ids, ["call_3", "call_4"]);
        assert_eq!(
            reply.message.tool_calls[1].function.arguments,
            r#"{"to":"a@b.c"}"#
        );
        assert_eq!(reply.message.content.as_deref(), Some("Let me look."));
        assert_eq!(reply.usage.unwrap().total_tokens, 27);
    }

    #[test]
    fn no_candidates_is_malformed_and_says_why() {
        let e = decode(br#"{"promptFeedback":{"blockReason":"SAFETY"}}"#, 0).unwrap_err();
        assert!(
            matches!(&e, ModelError::Malformed(m) if m.contains("SAFETY")),
            "{e}"
        );
        assert!(matches!(decode(b"[]", 0), Err(ModelError::Malformed(_))));
    }

    #[test]
    fn the_endpoint_comes_from_the_location_url_or_the_model_path() {
        let base =
            "https://us-central1-aiplatform.googleapis.com/v1/projects/p1/locations/us-central1";
        assert_eq!(
            endpoint(Some(base), "gemini-2.0-flash").unwrap(),
            format!("{base}/publishers/google/models/gemini-2.0-flash:generateContent")
        );
        assert_eq!(
            endpoint(None, "projects/p1/locations/europe-west4/publishers/google/models/gemini-2.0-flash").unwrap(),
            "https://europe-west4-aiplatform.googleapis.com/v1/projects/p1/locations/europe-west4/publishers/google/models/gemini-2.0-flash:generateContent"
        );
        assert!(endpoint(
            None,
            "projects/p1/locations/global/publishers/google/models/g"
        )
        .unwrap()
        .starts_with("https://aiplatform.googleapis.com/v1/projects/p1/"));
        assert!(matches!(
            endpoint(None, "gemini-2.0-flash"),
            Err(ModelError::Unavailable(_))
        ));
    }

    #[test]
    fn nullable_types_and_unknown_schema_keys_are_translated() {
        let schema = json!({"$schema": "x", "type": "object", "additionalProperties": false,
            "properties": {"n": {"type": ["integer", "null"], "minimum": 0},
                           "l": {"type": "array", "items": {"type": "string", "const": "a"}}}});
        assert_eq!(
            vertex_schema(&schema),
            json!({"type": "object", "properties": {
                "n": {"type": "integer", "nullable": true, "minimum": 0},
                "l": {"type": "array", "items": {"type": "string"}}}})
        );
    }
}
