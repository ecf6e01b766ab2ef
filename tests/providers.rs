//! Every provider against a local HTTP server that checks the request the provider
//! documents (path, headers, auth, body, tool-result encoding) and answers with the
//! provider's documented shapes: a tool call, a 429 with `Retry-After: 0`, a 500 every
//! time, a malformed body, a refused key. Plus the per-provider concurrency limit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};

use rl_gym::domain::chat::{FunctionCall, Message, ToolCall, ToolDefinition, ToolSet};
use rl_gym::domain::events::ModelSettings;
use rl_gym::domain::secret::ApiKey;
use rl_gym::llm::retry::RetryPolicy;
use rl_gym::llm::{
    anthropic, bedrock, client_for, openai, sigv4, vertex, ModelClient, ModelError, ModelReply,
    ModelRequest, ProviderLimits,
};

// ---------------------------------------------------------------------------------
// A scripted fake provider.

#[derive(Clone)]
struct Reply {
    status: u16,
    body: String,
    headers: Vec<(&'static str, &'static str)>,
    delay_ms: u64,
}

fn reply(status: u16, body: Value) -> Reply {
    Reply {
        status,
        body: body.to_string(),
        headers: vec![],
        delay_ms: 0,
    }
}

impl Reply {
    fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }
}

struct Seen {
    method: String,
    /// The path as sent (still percent-encoded).
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the request body is JSON")
    }
}

struct Fake {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    max_in_flight: Arc<AtomicUsize>,
}

impl Fake {
    fn requests(&self) -> std::sync::MutexGuard<'_, Vec<Seen>> {
        self.seen.lock().unwrap()
    }
}

/// Answers the n-th request with `script[n]`, and every later one with the last entry.
async fn start(script: Vec<Reply>) -> Fake {
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let max_in_flight = Arc::new(AtomicUsize::new(0));
    let (s, i, m) = (seen.clone(), in_flight.clone(), max_in_flight.clone());
    let server = HttpServer::new(move || {
        let (seen, in_flight, max, script) = (s.clone(), i.clone(), m.clone(), script.clone());
        App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
            let (seen, in_flight, max, script) =
                (seen.clone(), in_flight.clone(), max.clone(), script.clone());
            async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(now, Ordering::SeqCst);
                let n = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(Seen {
                        method: req.method().to_string(),
                        path: req.uri().path().to_string(),
                        headers: req
                            .headers()
                            .iter()
                            .map(|(k, v)| {
                                (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())
                            })
                            .collect(),
                        body: body.to_vec(),
                    });
                    seen.len() - 1
                };
                let r = script[n.min(script.len() - 1)].clone();
                if r.delay_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(r.delay_ms)).await;
                }
                in_flight.fetch_sub(1, Ordering::SeqCst);
                let mut response =
                    HttpResponse::build(actix_web::http::StatusCode::from_u16(r.status).unwrap());
                response.content_type("application/json");
                for (k, v) in r.headers {
                    response.insert_header((k, v));
                }
                response.body(r.body)
            }
        }))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let url = format!("http://{}", server.addrs()[0]);
    actix_rt::spawn(server.run());
    Fake {
        url,
        seen,
        max_in_flight,
    }
}

// ---------------------------------------------------------------------------------
// The conversation every provider is asked to encode.

fn settings(provider: &str, model: &str, base_url: String) -> ModelSettings {
    ModelSettings {
        base_url: Some(base_url),
        temperature: 0.3,
        max_steps: 10,
        has_api_key: true,
        ..ModelSettings::new(provider, model)
    }
}

fn call(id: &str, name: &str, arguments: &str) -> ToolCall {
    ToolCall {
        id: id.into(),
        kind: "function".into(),
        function: FunctionCall {
            name: name.into(),
            arguments: arguments.into(),
        },
    }
}

/// A task, a tool call, its result, a second call that failed in band, and its result.
fn conversation() -> Vec<Message> {
    vec![
        Message::system("You are a careful assistant."),
        Message::user("How many unread emails do I have?"),
        Message::assistant(
            None,
            vec![call("call_1", "list_emails", r#"{"unread":true}"#)],
        ),
        Message::tool_result("call_1", "list_emails", r#"[{"id":"e1"}]"#),
        Message::assistant(
            Some("Let me check the other folder.".into()),
            vec![call("call_2", "list_emails", r#"{"folder":"spam"}"#)],
        ),
        Message::tool_result("call_2", "list_emails", "Error: no such folder"),
    ]
}

fn tools() -> ToolSet {
    ToolSet::new(vec![ToolDefinition {
        name: "list_emails".into(),
        description: "List the mailbox's emails".into(),
        parameters: json!({
            "type": "object",
            "properties": {"unread": {"type": "boolean"}, "folder": {"type": "string"}},
            "required": []
        }),
    }])
}

async fn ask(client: &dyn ModelClient, settings: &ModelSettings) -> Result<ModelReply, ModelError> {
    let messages = conversation();
    let tools = tools();
    client
        .complete(ModelRequest {
            messages: &messages,
            tools: &tools,
            settings,
        })
        .await
}

fn key(k: &str) -> Option<ApiKey> {
    Some(ApiKey::new(k.to_string()))
}

fn through_client_for(settings: &ModelSettings, api_key: &str) -> Box<dyn ModelClient> {
    client_for(
        &reqwest::Client::new(),
        settings,
        key(api_key),
        &ProviderLimits::unlimited(),
    )
    .unwrap()
}

/// Backoff short enough not to slow the tests, and nothing waits on the clock.
fn quick() -> RetryPolicy {
    RetryPolicy {
        base_backoff: Duration::from_millis(1),
        ..RetryPolicy::default()
    }
}

// ---------------------------------------------------------------------------------
// The providers' documented shapes, and how each is reached.

struct Case {
    provider: &'static str,
    model: &'static str,
    key: &'static str,
    /// From the fake's root to what `base_url` should be.
    base_suffix: &'static str,
    /// A documented success body with a text and a tool call.
    ok: Value,
    /// The provider's documented error body for a 500, and the message we must show.
    server_error: Value,
    server_message: &'static str,
    rate_limited: Value,
}

fn anthropic_case() -> Case {
    Case {
        provider: "anthropic",
        model: "claude-sonnet-4-5",
        key: "sk-ant-test",
        base_suffix: "",
        ok: json!({
            "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [
                {"type": "text", "text": "I'll send it."},
                {"type": "tool_use", "id": "toolu_01A", "name": "send_email",
                 "input": {"to": "bob@example.com", "subject": "Hi"}}
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 120, "output_tokens": 30}
        }),
        server_error: json!({"type": "error", "error": {"type": "api_error", "message": "Internal server error"}}),
        server_message: "provider answered 500: api_error: Internal server error",
        rate_limited: json!({"type": "error", "error": {"type": "rate_limit_error", "message": "Number of request tokens has exceeded your rate limit"}}),
    }
}

fn bedrock_case(key: &'static str) -> Case {
    Case {
        provider: "aws-bedrock",
        model: "anthropic.claude-3-5-sonnet-20240620-v1:0",
        key,
        base_suffix: "",
        ok: json!({
            "output": {"message": {"role": "assistant", "content": [
                {"text": "I'll send it."},
                {"toolUse": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "name": "send_email",
                             "input": {"to": "bob@example.com", "subject": "Hi"}}}
            ]}},
            "stopReason": "tool_use",
            "usage": {"inputTokens": 120, "outputTokens": 30, "totalTokens": 150},
            "metrics": {"latencyMs": 812}
        }),
        server_error: json!({"message": "The system encountered an unexpected error during processing. Try your request again."}),
        server_message: "provider answered 500: The system encountered an unexpected error during processing. Try your request again.",
        rate_limited: json!({"message": "Too many requests, please wait before trying again."}),
    }
}

const SIGV4_KEY: &str =
    "AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY:IQoJb3JpZ2luX2VjEXAMPLETOKEN";

fn gcp_case() -> Case {
    Case {
        provider: "gcp",
        model: "gemini-2.0-flash",
        key: "ya29.a0-access-token",
        base_suffix: "/v1/projects/my-project/locations/us-central1",
        ok: json!({
            "candidates": [{
                "content": {"role": "model", "parts": [
                    {"text": "I'll send it."},
                    {"functionCall": {"name": "send_email", "args": {"to": "bob@example.com", "subject": "Hi"}}}
                ]},
                "finishReason": "STOP"
            }],
            "usageMetadata": {"promptTokenCount": 120, "candidatesTokenCount": 30, "totalTokenCount": 150},
            "modelVersion": "gemini-2.0-flash"
        }),
        server_error: json!({"error": {"code": 500, "message": "Internal error encountered.", "status": "INTERNAL"}}),
        server_message: "provider answered 500: INTERNAL: Internal error encountered.",
        rate_limited: json!({"error": {"code": 429, "message": "Resource exhausted. Please try again later.", "status": "RESOURCE_EXHAUSTED"}}),
    }
}

fn openai_case() -> Case {
    Case {
        provider: "openai",
        model: "gpt-4o",
        key: "sk-test",
        base_suffix: "/v1",
        ok: json!({
            "id": "chatcmpl-1", "object": "chat.completion",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "I'll send it.",
                "tool_calls": [{"id": "call_abc", "type": "function", "function":
                    {"name": "send_email", "arguments": "{\"to\":\"bob@example.com\",\"subject\":\"Hi\"}"}}]}}],
            "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150}
        }),
        server_error: json!({"error": {"message": "The server had an error while processing your request.", "type": "server_error"}}),
        server_message: "provider answered 500: server_error: The server had an error while processing your request.",
        rate_limited: json!({"error": {"message": "Rate limit reached", "type": "requests"}}),
    }
}

fn all_cases() -> Vec<Case> {
    vec![
        anthropic_case(),
        bedrock_case(SIGV4_KEY),
        bedrock_case("ABSKQmVkcm9ja0FQSUtleS1leGFtcGxl"),
        gcp_case(),
        openai_case(),
    ]
}

/// The concrete client with a quick retry policy (client_for keeps the default).
fn quick_client(case: &Case, base_url: String) -> Box<dyn ModelClient> {
    let http = reqwest::Client::new();
    let api_key = ApiKey::new(case.key.to_string());
    match case.provider {
        "anthropic" => Box::new(
            anthropic::AnthropicClient::new(http, Some(base_url), api_key).with_retry(quick()),
        ),
        "aws-bedrock" => Box::new(
            bedrock::BedrockClient::new(http, Some(base_url), api_key, None)
                .unwrap()
                .with_retry(quick()),
        ),
        "gcp" => Box::new(
            vertex::VertexClient::new(http, Some(base_url), api_key, case.model)
                .unwrap()
                .with_retry(quick()),
        ),
        _ => Box::new(
            openai::OpenAiClient::new(http, openai::Flavor::OpenAi, base_url, Some(api_key))
                .with_retry(quick()),
        ),
    }
}

fn assert_the_tool_call_answer(provider: &str, reply: &ModelReply) {
    assert_eq!(
        reply.message.content.as_deref(),
        Some("I'll send it."),
        "{provider}"
    );
    assert_eq!(reply.message.tool_calls.len(), 1, "{provider}");
    let call = &reply.message.tool_calls[0];
    assert_eq!(call.function.name, "send_email", "{provider}");
    let arguments: Value = serde_json::from_str(&call.function.arguments).unwrap();
    assert_eq!(
        arguments,
        json!({"to": "bob@example.com", "subject": "Hi"}),
        "{provider}"
    );
    let usage = reply.usage.clone().unwrap();
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens
        ),
        (120, 30, 150),
        "{provider}"
    );
}

// ---------------------------------------------------------------------------------
// Exact requests, per provider.

#[actix_web::test]
async fn anthropic_sends_the_documented_messages_request_and_reads_tool_use() {
    let case = anthropic_case();
    let fake = start(vec![reply(200, case.ok.clone())]).await;
    let s = settings("anthropic", case.model, fake.url.clone());
    let answer = ask(&*through_client_for(&s, case.key), &s).await.unwrap();
    assert_the_tool_call_answer("anthropic", &answer);
    assert_eq!(answer.message.tool_calls[0].id, "toolu_01A");

    let requests = fake.requests();
    let r = &requests[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/v1/messages")
    );
    assert_eq!(r.header("x-api-key"), Some("sk-ant-test"));
    assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("authorization"), None);
    assert_eq!(
        r.json(),
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 4096,
            "temperature": 0.3,
            "system": "You are a careful assistant.",
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "How many unread emails do I have?"}]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "call_1", "name": "list_emails", "input": {"unread": true}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "[{\"id\":\"e1\"}]", "is_error": false}]},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Let me check the other folder."},
                    {"type": "tool_use", "id": "call_2", "name": "list_emails", "input": {"folder": "spam"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_2", "content": "Error: no such folder", "is_error": true}]}
            ],
            "tools": [{"name": "list_emails", "description": "List the mailbox's emails",
                       "input_schema": tools()[0].parameters}]
        })
    );
}

#[actix_web::test]
async fn bedrock_signs_the_converse_request_with_sigv4_for_an_access_key_pair() {
    let case = bedrock_case(SIGV4_KEY);
    let fake = start(vec![reply(200, case.ok.clone())]).await;
    let s = settings("aws-bedrock", case.model, fake.url.clone());
    let answer = ask(&*through_client_for(&s, case.key), &s).await.unwrap();
    assert_the_tool_call_answer("aws-bedrock", &answer);
    assert_eq!(
        answer.message.tool_calls[0].id,
        "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q"
    );

    let requests = fake.requests();
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(
        r.path,
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.header("x-amz-security-token"),
        Some("IQoJb3JpZ2luX2VjEXAMPLETOKEN")
    );

    // x-amz-date is YYYYMMDDTHHMMSSZ and scopes the credential.
    let amz_date = r.header("x-amz-date").expect("x-amz-date").to_string();
    assert_eq!(amz_date.len(), 16);
    assert!(amz_date[..8].bytes().all(|b| b.is_ascii_digit()) && &amz_date[8..9] == "T");
    assert!(amz_date.ends_with('Z'));
    let region = bedrock::region_from_env().unwrap_or_else(|| "us-east-1".into());
    let authorization = r
        .header("authorization")
        .expect("authorization")
        .to_string();
    let prefix = format!(
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/{}/{region}/bedrock/aws4_request, \
         SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature=",
        &amz_date[..8]
    );
    assert!(authorization.starts_with(&prefix), "{authorization}");
    let signature = &authorization[prefix.len()..];
    assert!(signature.len() == 64 && signature.bytes().all(|b| b.is_ascii_hexdigit()));

    // The signature covers what was actually sent: recompute it from the received
    // host, date, token, path and body.
    let signed: Vec<(String, String)> =
        ["content-type", "host", "x-amz-date", "x-amz-security-token"]
            .iter()
            .map(|h| (h.to_string(), r.header(h).unwrap().to_string()))
            .collect();
    let credentials = sigv4::Credentials::parse(SIGV4_KEY).unwrap();
    let expected = sigv4::authorization(
        &credentials,
        &sigv4::Request {
            method: "POST",
            path: &r.path,
            query: "",
            headers: &signed,
            body: &r.body,
        },
        &sigv4::Scope {
            amz_date: &amz_date,
            region: &region,
            service: "bedrock",
        },
    );
    assert_eq!(authorization, expected);

    assert_eq!(
        r.json(),
        json!({
            "system": [{"text": "You are a careful assistant."}],
            "messages": [
                {"role": "user", "content": [{"text": "How many unread emails do I have?"}]},
                {"role": "assistant", "content": [
                    {"toolUse": {"toolUseId": "call_1", "name": "list_emails", "input": {"unread": true}}}]},
                {"role": "user", "content": [
                    {"toolResult": {"toolUseId": "call_1", "content": [{"text": "[{\"id\":\"e1\"}]"}], "status": "success"}}]},
                {"role": "assistant", "content": [
                    {"text": "Let me check the other folder."},
                    {"toolUse": {"toolUseId": "call_2", "name": "list_emails", "input": {"folder": "spam"}}}]},
                {"role": "user", "content": [
                    {"toolResult": {"toolUseId": "call_2", "content": [{"text": "Error: no such folder"}], "status": "error"}}]}
            ],
            "toolConfig": {"tools": [{"toolSpec": {"name": "list_emails", "description": "List the mailbox's emails",
                                                   "inputSchema": {"json": tools()[0].parameters}}}]},
            "inferenceConfig": {"temperature": 0.3, "maxTokens": 4096}
        })
    );
}

#[actix_web::test]
async fn bedrock_sends_a_bedrock_api_key_as_a_bearer_token() {
    let case = bedrock_case("ABSKQmVkcm9ja0FQSUtleS1leGFtcGxl");
    let fake = start(vec![reply(200, case.ok.clone())]).await;
    let s = settings("aws-bedrock", case.model, fake.url.clone());
    ask(&*through_client_for(&s, case.key), &s).await.unwrap();
    let requests = fake.requests();
    assert_eq!(
        requests[0].header("authorization"),
        Some("Bearer ABSKQmVkcm9ja0FQSUtleS1leGFtcGxl")
    );
    assert_eq!(requests[0].header("x-amz-date"), None);
    assert_eq!(
        requests[0].path,
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    );
}

#[actix_web::test]
async fn gcp_sends_the_documented_generate_content_request_and_names_the_call() {
    let case = gcp_case();
    let fake = start(vec![reply(200, case.ok.clone())]).await;
    let s = settings(
        "gcp",
        case.model,
        format!("{}{}", fake.url, case.base_suffix),
    );
    let answer = ask(&*through_client_for(&s, case.key), &s).await.unwrap();
    assert_the_tool_call_answer("gcp", &answer);
    // Two calls are already in the conversation: this one is the third.
    assert_eq!(answer.message.tool_calls[0].id, "call_3");

    let requests = fake.requests();
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(
        r.path,
        "/v1/projects/my-project/locations/us-central1/publishers/google/models/gemini-2.0-flash:generateContent"
    );
    assert_eq!(
        r.header("authorization"),
        Some("Bearer ya29.a0-access-token")
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        json!({
            "systemInstruction": {"parts": [{"text": "You are a careful assistant."}]},
            "contents": [
                {"role": "user", "parts": [{"text": "How many unread emails do I have?"}]},
                {"role": "model", "parts": [{"functionCall": {"name": "list_emails", "args": {"unread": true}}}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "list_emails",
                    "response": {"output": "[{\"id\":\"e1\"}]"}}}]},
                {"role": "model", "parts": [
                    {"text": "Let me check the other folder."},
                    {"functionCall": {"name": "list_emails", "args": {"folder": "spam"}}}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "list_emails",
                    "response": {"error": "Error: no such folder"}}}]}
            ],
            "tools": [{"functionDeclarations": [{"name": "list_emails", "description": "List the mailbox's emails",
                                                  "parameters": tools()[0].parameters}]}],
            "generationConfig": {"temperature": 0.3}
        })
    );
}

// ---------------------------------------------------------------------------------
// Failures, the same for every provider.

#[actix_web::test]
async fn a_429_with_retry_after_zero_is_retried_once_then_succeeds() {
    for case in all_cases() {
        let fake = start(vec![
            reply(429, case.rate_limited.clone()).header("retry-after", "0"),
            reply(200, case.ok.clone()),
        ])
        .await;
        let s = settings(
            case.provider,
            case.model,
            format!("{}{}", fake.url, case.base_suffix),
        );
        // The default policy: only Retry-After: 0 keeps this quick.
        let answer = ask(&*through_client_for(&s, case.key), &s).await;
        assert_the_tool_call_answer(case.provider, &answer.unwrap());
        assert_eq!(fake.requests().len(), 2, "{}", case.provider);
    }
}

#[actix_web::test]
async fn a_500_every_time_fails_after_three_retries_with_the_providers_message() {
    for case in all_cases() {
        let fake = start(vec![reply(500, case.server_error.clone())]).await;
        let client = quick_client(&case, format!("{}{}", fake.url, case.base_suffix));
        let s = settings(case.provider, case.model, String::new());
        let error = ask(&*client, &s).await.unwrap_err();
        assert_eq!(error.to_string(), case.server_message, "{}", case.provider);
        assert!(
            matches!(error, ModelError::Provider { status: 500, .. }),
            "{}",
            case.provider
        );
        assert_eq!(error.error_type(), "unknown");
        assert_eq!(
            fake.requests().len(),
            4,
            "{}: one call and three retries",
            case.provider
        );
    }
}

#[actix_web::test]
async fn a_429_every_time_fails_as_rate_limited() {
    for case in all_cases() {
        let fake = start(vec![reply(429, case.rate_limited.clone())]).await;
        let client = quick_client(&case, format!("{}{}", fake.url, case.base_suffix));
        let s = settings(case.provider, case.model, String::new());
        let error = ask(&*client, &s).await.unwrap_err();
        assert_eq!(
            error.error_type(),
            "rate_limit",
            "{}: {error}",
            case.provider
        );
        assert_eq!(fake.requests().len(), 4, "{}", case.provider);
    }
}

#[actix_web::test]
async fn a_refused_key_is_an_authentication_error_and_is_not_retried() {
    for case in all_cases() {
        let body = json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}});
        let fake = start(vec![reply(401, body)]).await;
        let client = quick_client(&case, format!("{}{}", fake.url, case.base_suffix));
        let s = settings(case.provider, case.model, String::new());
        let error = ask(&*client, &s).await.unwrap_err();
        assert_eq!(
            error.error_type(),
            "authentication_error",
            "{}",
            case.provider
        );
        assert!(error.to_string().contains("invalid x-api-key"), "{error}");
        assert_eq!(fake.requests().len(), 1, "{}", case.provider);
    }
}

#[actix_web::test]
async fn a_malformed_body_is_malformed_not_a_panic() {
    for case in all_cases() {
        for body in ["<html>gateway</html>", "{\"unexpected\": true}", ""] {
            let fake = start(vec![Reply {
                status: 200,
                body: body.to_string(),
                headers: vec![],
                delay_ms: 0,
            }])
            .await;
            let s = settings(
                case.provider,
                case.model,
                format!("{}{}", fake.url, case.base_suffix),
            );
            let error = ask(&*through_client_for(&s, case.key), &s)
                .await
                .unwrap_err();
            assert!(
                matches!(error, ModelError::Malformed(_)),
                "{}: {body:?} gave {error}",
                case.provider
            );
            assert_eq!(
                fake.requests().len(),
                1,
                "a malformed answer is not retried"
            );
        }
    }
}

#[actix_web::test]
async fn an_unreachable_provider_is_a_connection_error_after_the_retries() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let case = anthropic_case();
    let client = quick_client(&case, format!("http://127.0.0.1:{port}"));
    let s = settings("anthropic", case.model, String::new());
    let error = ask(&*client, &s).await.unwrap_err();
    assert_eq!(error.error_type(), "connection_error", "{error}");
}

#[actix_web::test]
async fn a_provider_that_does_not_answer_in_time_is_a_timeout() {
    let case = anthropic_case();
    let mut slow = reply(200, case.ok.clone());
    slow.delay_ms = 2_000;
    let fake = start(vec![slow]).await;
    let client = anthropic::AnthropicClient::new(
        reqwest::Client::new(),
        Some(fake.url.clone()),
        ApiKey::new("k".into()),
    )
    .with_retry(RetryPolicy {
        max_retries: 0,
        base_backoff: Duration::from_millis(1),
        timeout: Duration::from_millis(100),
    });
    let s = settings("anthropic", case.model, String::new());
    let error = ask(&client, &s).await.unwrap_err();
    assert_eq!(error.error_type(), "timeout", "{error}");
}

#[actix_web::test]
async fn client_for_explains_what_a_provider_is_missing() {
    let s = settings("gcp", "gemini-2.0-flash", "http://127.0.0.1:9".into());
    let error = client_for(
        &reqwest::Client::new(),
        &s,
        key("t"),
        &ProviderLimits::unlimited(),
    )
    .err()
    .unwrap();
    assert!(
        error
            .to_string()
            .contains("projects/{project}/locations/{location}"),
        "{error}"
    );
    let s = settings("anthropic", "claude", "http://127.0.0.1:9".into());
    let error = client_for(
        &reqwest::Client::new(),
        &s,
        None,
        &ProviderLimits::unlimited(),
    )
    .err()
    .unwrap();
    assert!(error.to_string().contains("api_key"), "{error}");
}

// ---------------------------------------------------------------------------------
// The per-provider concurrency limit.

#[actix_web::test]
async fn the_concurrency_limit_holds_calls_to_one_provider_across_clients() {
    let case = anthropic_case();
    let mut slow = reply(200, case.ok.clone());
    slow.delay_ms = 50;
    let fake = start(vec![slow]).await;
    let limits = ProviderLimits::new(HashMap::from([("anthropic".to_string(), 1)]));
    let s = settings("anthropic", case.model, fake.url.clone());
    let clients: Vec<_> = (0..3)
        .map(|_| client_for(&reqwest::Client::new(), &s, key(case.key), &limits).unwrap())
        .collect();
    let answers = futures::future::join_all(clients.iter().map(|c| ask(&**c, &s))).await;
    assert!(answers.iter().all(Result::is_ok));
    assert_eq!(fake.requests().len(), 3);
    assert_eq!(fake.max_in_flight.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------------
// OpenAI-compatible servers: each one's documented differences (README, "OpenAI-
// compatible servers"), emulated by a fake that refuses what the real server refuses
// and answers in its shapes, over two turns: a tool call, then an answer after the
// tool's result.

#[derive(Clone, Copy, Debug, PartialEq)]
enum Compatible {
    /// llama-cpp-python 0.3.x, `chatml-function-calling`: an assistant `content` of
    /// null is a 500 (pydantic), a missing one a 500 (its template); ids
    /// `call__0_<name>_<completion id>`; no log-probabilities on a tool-call turn.
    LlamaCppPython,
    /// llama.cpp's `llama-server --jinja`: chat-shaped log-probabilities with `id` and
    /// `bytes`; an assistant message needs `content` or `tool_calls`.
    LlamaCpp,
    /// vLLM serving a Mistral model (`--tokenizer-mode mistral`): a tool-call id sent
    /// back must be 9 characters of a-z, A-Z, 0-9; `-9999.0` stands for -inf.
    VllmMistral,
    /// vLLM before chat log-probabilities had their own shape (v0.3): the completions
    /// API's `{tokens, token_logprobs, top_logprobs: [{token: logprob}]}`.
    VllmLegacyLogprobs,
    /// SGLang: OpenAI's shapes (the reference).
    SgLang,
    /// Ollama's `/v1`: `content: ""` beside tool calls, a tool call's `index`, no
    /// `usage` details beyond the three counts.
    Ollama,
    /// A proxy or server that gives a tool call no id at all (Ollama's native API
    /// before v0.12.10; LiteLLM stream chunks after the first), and no usage.
    NoIds,
    /// TGI's Messages API: every tool call's id is `"0"` and its `arguments` a JSON
    /// object, not text.
    Tgi,
    /// LiteLLM in front of Anthropic: an empty text block is refused upstream, so it
    /// must see `""` (which it drops) rather than a blank placeholder; it answers in
    /// OpenAI's shapes.
    LiteLlm,
}

const ALL_COMPATIBLE: [Compatible; 9] = [
    Compatible::LlamaCppPython,
    Compatible::LlamaCpp,
    Compatible::VllmMistral,
    Compatible::VllmLegacyLogprobs,
    Compatible::SgLang,
    Compatible::Ollama,
    Compatible::NoIds,
    Compatible::Tgi,
    Compatible::LiteLlm,
];

fn is_mistral_id(id: &str) -> bool {
    id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl Compatible {
    /// The server's refusal of a request, as it words it.
    fn refusal(self, body: &Value) -> Option<(u16, Value)> {
        for (i, m) in body["messages"].as_array()?.iter().enumerate() {
            let assistant = m["role"] == "assistant";
            match self {
                Compatible::LlamaCppPython if assistant && m.get("content").is_none() => {
                    return Some((
                        500,
                        json!({"error": {"message": "'dict object' has no attribute 'content'",
                        "type": "internal_server_error"}}),
                    ));
                }
                Compatible::LlamaCppPython if assistant && m["content"].is_null() => {
                    return Some((
                        500,
                        json!({"error": {"message": format!(
                        "7 validation errors:\n  {{'type': 'string_type', 'loc': ('body', 'messages', {i}, \
                         'ChatCompletionRequestAssistantMessage', 'content'), 'msg': 'Input should be a valid string'}}"),
                        "type": "internal_server_error"}}),
                    ));
                }
                Compatible::LlamaCpp
                    if m.get("content").is_none() && m.get("tool_calls").is_none() =>
                {
                    return Some((
                        500,
                        json!({"error": {"code": 500,
                        "message": "Expected 'content' or 'tool_calls'", "type": "server_error"}}),
                    ));
                }
                Compatible::VllmMistral => {
                    let ids = m["tool_calls"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|c| c["id"].as_str().unwrap_or_default())
                        .chain(m["tool_call_id"].as_str());
                    for id in ids {
                        if !is_mistral_id(id) {
                            return Some((
                                400,
                                json!({"object": "error", "message": format!(
                                "Tool call id was {id} but must be a-z, A-Z, 0-9, with a length of 9."),
                                "type": "BadRequestError", "code": 400}),
                            ));
                        }
                    }
                }
                Compatible::LiteLlm
                    if assistant && m["content"].as_str().is_some_and(|c| c == "(empty)") =>
                {
                    return Some((
                        400,
                        json!({"error": {"message":
                        "a placeholder reached the model as text", "type": "invalid_request_error"}}),
                    ));
                }
                _ => {}
            }
            // Every server here takes text content; none takes a number or an object.
            if !(m["content"].is_string() || m["content"].is_null() || m.get("content").is_none()) {
                return Some((400, json!({"error": {"message": "content must be text"}})));
            }
        }
        None
    }

    /// The first turn: one call of `list_emails`, as this server writes it.
    fn tool_call(self) -> Value {
        let call = |id: Option<&str>, arguments: Value| {
            let mut c = json!({"type": "function", "function": {"name": "list_emails", "arguments": arguments}});
            if let Some(id) = id {
                c["id"] = json!(id);
            }
            c
        };
        let text = json!("{\"unread\": true}");
        let (content, calls, logprobs) = match self {
            Compatible::LlamaCppPython => (
                Value::Null,
                vec![call(
                    Some("call__0_list_emails_cmpl-4f1a6f0e-93d7-4bc6-9a51-7f3c5e2f8d10"),
                    text,
                )],
                Value::Null,
            ),
            Compatible::VllmMistral => (
                Value::Null,
                vec![call(Some("Xq3Vb9LmT"), text)],
                json!({"content": [{"token": "[TOOL_CALLS]", "logprob": -9999.0, "top_logprobs": []}]}),
            ),
            Compatible::Ollama => {
                let mut c = call(Some("call_k2x9q7vd"), text);
                c["function"]["index"] = json!(0);
                (json!(""), vec![c], Value::Null)
            }
            Compatible::NoIds => (Value::Null, vec![call(None, text)], Value::Null),
            Compatible::Tgi => (
                Value::Null,
                vec![call(Some("0"), json!({"unread": true}))],
                Value::Null,
            ),
            _ => (
                Value::Null,
                vec![call(Some("call_8Fz1"), text)],
                Value::Null,
            ),
        };
        let mut answer = completion(
            json!({"role": "assistant", "content": content, "tool_calls": calls}),
            logprobs,
        );
        if self == Compatible::NoIds {
            // Nor any usage (a proxy that only counts tokens when streaming).
            answer.as_object_mut().unwrap().remove("usage");
        }
        answer
    }

    /// The second turn: a text answer with log-probabilities in this server's shape.
    fn answer(self) -> Value {
        let logprobs = match self {
            Compatible::VllmLegacyLogprobs => json!({
                "content": null, "text_offset": [0, 3], "tokens": ["Two", "."],
                "token_logprobs": [-0.25, -0.5],
                "top_logprobs": [{"Two": -0.25, "One": -2.0}, {".": -0.5}]}),
            Compatible::LlamaCpp => json!({"content": [
                {"id": 7910, "token": "Two", "bytes": [84, 119, 111], "logprob": -0.25,
                 "top_logprobs": [{"id": 7910, "token": "Two", "bytes": [84, 119, 111], "logprob": -0.25}]},
                {"id": 13, "token": ".", "bytes": [46], "logprob": -0.5, "top_logprobs": []}]}),
            _ => json!({"content": [
                {"token": "Two", "logprob": -0.25, "bytes": null, "top_logprobs": [{"token": "Two", "logprob": -0.25, "bytes": null}]},
                {"token": ".", "logprob": -0.5, "bytes": null, "top_logprobs": []}]}),
        };
        completion(json!({"role": "assistant", "content": "Two."}), logprobs)
    }
}

fn completion(message: Value, logprobs: Value) -> Value {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": message, "logprobs": logprobs,
                     "finish_reason": if message.get("tool_calls").is_some() { "tool_calls" } else { "stop" }}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}
    })
}

/// A fake of `server` at `{url}/v1/chat/completions`, recording each request body.
async fn start_compatible(server: Compatible) -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let recorded = seen.clone();
    let http = HttpServer::new(move || {
        let recorded = recorded.clone();
        App::new().route(
            "/v1/chat/completions",
            web::post().to(move |body: web::Json<Value>| {
                let recorded = recorded.clone();
                async move {
                    let body = body.into_inner();
                    recorded.lock().unwrap().push(body.clone());
                    if let Some((status, error)) = server.refusal(&body) {
                        let status = actix_web::http::StatusCode::from_u16(status).unwrap();
                        return HttpResponse::build(status).json(error);
                    }
                    let last = body["messages"].as_array().unwrap().last().unwrap();
                    HttpResponse::Ok().json(if last["role"] == "tool" {
                        server.answer()
                    } else {
                        server.tool_call()
                    })
                }
            }),
        )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let url = format!("http://{}/v1", http.addrs()[0]);
    actix_rt::spawn(http.run());
    (url, seen)
}

/// A task, the server's tool call, its result, and the server's answer: what the
/// step loop does, through the `custom` provider's client.
async fn two_turns(server: Compatible) -> (ModelReply, ModelReply, Vec<Value>) {
    let (url, seen) = start_compatible(server).await;
    let mut s = settings("custom", "m", url);
    s.log_prob = true;
    let client = client_for(
        &reqwest::Client::new(),
        &s,
        None,
        &ProviderLimits::unlimited(),
    )
    .unwrap();
    let tools = tools();
    let mut messages = vec![
        Message::system("You are a careful assistant."),
        Message::user("How many unread emails do I have?"),
    ];
    let ask = |messages: Vec<Message>| {
        let (client, s, tools) = (&client, &s, &tools);
        async move {
            client
                .complete(ModelRequest {
                    messages: &messages,
                    tools,
                    settings: s,
                })
                .await
        }
    };
    let first = ask(messages.clone())
        .await
        .unwrap_or_else(|e| panic!("{server:?}: first turn: {e}"));
    messages.push(first.message.clone());
    for call in &first.message.tool_calls {
        messages.push(Message::tool_result(&call.id, &call.function.name, "2"));
    }
    let second = ask(messages)
        .await
        .unwrap_or_else(|e| panic!("{server:?}: second turn: {e}"));
    let requests = seen.lock().unwrap().clone();
    (first, second, requests)
}

#[actix_web::test]
async fn every_compatible_server_takes_our_tool_call_turns_back() {
    for server in ALL_COMPATIBLE {
        let (first, second, requests) = two_turns(server).await;
        assert_eq!(requests.len(), 2, "{server:?}: nothing refused or retried");
        let call = &first.message.tool_calls[0];
        assert_eq!(call.function.name, "list_emails", "{server:?}");
        let arguments: Value = serde_json::from_str(&call.function.arguments).unwrap();
        assert_eq!(arguments, json!({"unread": true}), "{server:?}");
        assert!(!call.id.is_empty(), "{server:?}");
        assert_eq!(
            second.message.content.as_deref(),
            Some("Two."),
            "{server:?}"
        );
        let usage = first.usage.map(|u| u.total_tokens);
        let expected = (server != Compatible::NoIds).then_some(25);
        assert_eq!(usage, expected, "{server:?}: no usage counts none");

        // The tool-call turn went back with text content and the call's id, and its
        // result with the same id and the tool's name.
        let sent = requests[1]["messages"].as_array().unwrap();
        assert_eq!(sent[2]["role"], "assistant");
        assert_eq!(sent[2]["content"], "", "{server:?}: {}", sent[2]);
        assert_eq!(sent[2]["tool_calls"][0]["id"], json!(call.id));
        assert_eq!(
            sent[3],
            json!({"role": "tool", "content": "2", "tool_call_id": call.id, "name": "list_emails"})
        );
        assert_eq!(requests[1]["tool_choice"], "auto");
    }
}

#[actix_web::test]
async fn the_llama_cpp_python_fake_refuses_what_the_real_server_refuses() {
    // The fake is faithful: null and a missing content are 500s with the real
    // server's words; `""` is what it takes (see the test above).
    let (url, _) = start_compatible(Compatible::LlamaCppPython).await;
    let client = reqwest::Client::new();
    for (assistant, words) in [
        (
            json!({"role": "assistant", "content": null, "tool_calls": []}),
            "Input should be a valid string",
        ),
        (
            json!({"role": "assistant", "tool_calls": []}),
            "has no attribute 'content'",
        ),
    ] {
        let response = client
            .post(format!("{url}/chat/completions"))
            .json(
                &json!({"model": "m", "messages": [{"role": "user", "content": "hi"}, assistant]}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 500);
        assert!(response.text().await.unwrap().contains(words));
    }
}

#[actix_web::test]
async fn ids_are_kept_made_up_or_made_unique_as_each_server_needs() {
    let (first, _, _) = two_turns(Compatible::LlamaCppPython).await;
    assert_eq!(
        first.message.tool_calls[0].id,
        "call__0_list_emails_cmpl-4f1a6f0e-93d7-4bc6-9a51-7f3c5e2f8d10",
        "an id the server gave is kept"
    );
    let (first, _, requests) = two_turns(Compatible::VllmMistral).await;
    assert_eq!(first.message.tool_calls[0].id, "Xq3Vb9LmT");
    assert_eq!(requests.len(), 2, "vLLM's Mistral check passed");
    for server in [Compatible::NoIds, Compatible::Tgi] {
        let (first, _, _) = two_turns(server).await;
        let id = &first.message.tool_calls[0].id;
        if server == Compatible::Tgi {
            // "0" is unique in this conversation, so it stands.
            assert_eq!(id, "0");
        } else {
            assert!(is_mistral_id(id), "a made-up id is Mistral-safe: {id}");
        }
    }
    // TGI's "0" on a second call in the same conversation would repeat the first.
    let earlier = vec![Message::assistant(
        None,
        vec![call("0", "list_emails", "{}")],
    )];
    let reply = openai::decode_after(
        &serde_json::to_vec(&Compatible::Tgi.tool_call()).unwrap(),
        &earlier,
    )
    .unwrap();
    let id = &reply.message.tool_calls[0].id;
    assert!(id != "0" && is_mistral_id(id), "{id}");
    assert_eq!(
        reply.message.tool_calls[0].function.arguments,
        r#"{"unread":true}"#
    );
}

#[actix_web::test]
async fn log_probabilities_come_back_in_the_chat_shape_from_every_server() {
    for server in ALL_COMPATIBLE {
        let (first, second, _) = two_turns(server).await;
        let logprobs = second.logprobs.unwrap_or_else(|| panic!("{server:?}"));
        let tokens = logprobs["content"].as_array().unwrap();
        let read: Vec<(&str, f64)> = tokens
            .iter()
            .map(|t| (t["token"].as_str().unwrap(), t["logprob"].as_f64().unwrap()))
            .collect();
        assert_eq!(read, [("Two", -0.25), (".", -0.5)], "{server:?}");
        assert_eq!(tokens[0]["top_logprobs"][0]["token"], "Two", "{server:?}");
        match server {
            // llama-cpp-python gives none on its function-calling path.
            Compatible::LlamaCppPython => assert!(first.logprobs.is_none()),
            Compatible::VllmMistral => {
                assert_eq!(first.logprobs.unwrap()["content"][0]["logprob"], -9999.0)
            }
            _ => {}
        }
    }
}

#[actix_web::test]
async fn a_vllm_without_auto_tool_choice_fails_with_its_own_words() {
    let fake = start(vec![reply(
        400,
        json!({"object": "error", "type": "BadRequestError", "code": 400, "message":
            "\"auto\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set"}),
    )])
    .await;
    let s = settings("custom", "m", format!("{}/v1", fake.url));
    let error = ask(&*through_client_for(&s, "k"), &s).await.unwrap_err();
    assert_eq!(error.error_type(), "bad_request");
    assert!(
        error.to_string().contains("--enable-auto-tool-choice"),
        "{error}"
    );
}
