//! A fake OpenAI-compatible model server, in process or as a child process: the load
//! command's slow model (every chat completion answered after a fixed delay; by
//! default a final answer, so a rollout is exactly one model turn and its time is the
//! delay plus what rl-gym adds; with `--tool-turns N` the first N answers of a
//! conversation call the first tool it was offered), and the tests' scripted models
//! (failing, refusing, answering from a list, calling tools forever), which may record
//! every request they get.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use clap::Args;
use parking_lot::Mutex;
use serde_json::{json, Value};

#[derive(Debug, Clone, Args)]
pub struct FakeModelArgs {
    #[arg(long, default_value = "127.0.0.1:0")]
    pub bind: SocketAddr,
    #[arg(long, default_value_t = 2000)]
    pub latency_ms: u64,
    /// Answers of a conversation that call a tool before the final one.
    #[arg(long, default_value_t = 0)]
    pub tool_turns: usize,
}

/// How a fake model answers each chat completion.
#[derive(Debug, Clone, Copy)]
pub enum Behaviour {
    /// After `latency_ms`: a call of the request's first tool while the conversation
    /// has had fewer than `tool_turns` tool results, else the final answer `Done.`.
    Scripted { latency_ms: u64, tool_turns: usize },
    /// One tool call with bogus arguments, then a final answer, each after a delay.
    ToolThenAnswer { delay_ms: u64 },
    /// Always 500 with `Retry-After: 0`.
    AlwaysFailing,
    /// A tool call every turn; a request without tools (a summary) gets a summary.
    AlwaysTool,
    /// The i-th request (from 0) gets the final answer `answers[i % len]`, with usage
    /// 100 prompt + 10 completion tokens.
    Answers(&'static [&'static str]),
    /// Always this error status with `Retry-After: 0`, in a body that quotes the
    /// Authorization header it got, as some providers quote the key they refuse.
    Status(u16),
}

impl Behaviour {
    /// The final answer `Done.` after `ms` milliseconds.
    pub fn answer_after(ms: u64) -> Behaviour {
        Behaviour::Scripted {
            latency_ms: ms,
            tool_turns: 0,
        }
    }
}

/// Requests a fake model received: the Authorization header and the JSON body.
pub type Recorded = Arc<Mutex<Vec<(Option<String>, Value)>>>;

/// A fake model bound and ready: its base URL (ending in `/v1`) and, if it records,
/// the requests it got.
pub struct FakeServer {
    pub address: String,
    pub requests: Recorded,
}

/// Binds a fake model on `bind`; the returned server answers once polled (spawned on
/// an actix system, or awaited). Recording reads every body: the load command's ten
/// thousand requests of tens of KiB each are read only when their answer needs it.
pub fn start(
    behaviour: Behaviour,
    bind: SocketAddr,
    record: bool,
) -> Result<(actix_web::dev::Server, FakeServer), String> {
    let requests: Recorded = Arc::default();
    let seen = requests.clone();
    let count = Arc::new(AtomicUsize::new(0));
    let server = HttpServer::new(move || {
        let (seen, count) = (seen.clone(), count.clone());
        App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
            let (seen, count) = (seen.clone(), count.clone());
            async move {
                let reads_body =
                    record || !matches!(behaviour, Behaviour::Scripted { tool_turns: 0, .. });
                let body: Value = if reads_body {
                    serde_json::from_slice(&body).unwrap_or_default()
                } else {
                    Value::Null
                };
                let auth = req
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(String::from);
                let index = count.fetch_add(1, Ordering::Relaxed);
                if record {
                    seen.lock().push((auth.clone(), body.clone()));
                }
                respond(behaviour, &body, auth, index).await
            }
        }))
    })
    // Ten thousand rollouts connect at once: a deep accept queue, no connection cap.
    .backlog(65_535)
    .max_connections(1_000_000)
    .workers(1)
    .bind(bind)
    .map_err(|e| format!("fake model cannot listen on {bind}: {e}"))?;
    let address = format!("http://{}/v1", server.addrs()[0]);
    Ok((server.run(), FakeServer { address, requests }))
}

/// Serves until killed; prints `fake model listening on http://ADDR` once bound.
pub async fn serve(args: FakeModelArgs) -> Result<(), String> {
    let behaviour = Behaviour::Scripted {
        latency_ms: args.latency_ms,
        tool_turns: args.tool_turns,
    };
    let (server, fake) = start(behaviour, args.bind, false)?;
    let address = fake.address.trim_end_matches("/v1");
    println!("fake model listening on {address}");
    server.await.map_err(|e| e.to_string())
}

/// The answer to request number `index` (from 0).
async fn respond(
    behaviour: Behaviour,
    body: &Value,
    auth: Option<String>,
    index: usize,
) -> HttpResponse {
    let after = |ms| tokio::time::sleep(Duration::from_millis(ms));
    match behaviour {
        Behaviour::Scripted { latency_ms, tool_turns } => {
            after(latency_ms).await;
            HttpResponse::Ok().json(json!({
                "id": "chatcmpl-load",
                "object": "chat.completion",
                "model": "load",
                "choices": [answer(body, tool_turns)],
                "usage": {"prompt_tokens": 100, "completion_tokens": 2, "total_tokens": 102}
            }))
        }
        Behaviour::Answers(answers) => HttpResponse::Ok().json(json!({
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answers[index % answers.len()]}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
        })),
        Behaviour::Status(code) => {
            let status = actix_web::http::StatusCode::from_u16(code)
                .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
            HttpResponse::build(status)
                .insert_header(("retry-after", "0"))
                .json(json!({"error": {"message": format!("refused {}", auth.unwrap_or_default())}}))
        }
        Behaviour::AlwaysTool => {
            let message = match body["tools"][0]["function"]["name"].as_str() {
                None => json!({"role": "assistant", "content": "SUMMARY: tried the tools."}),
                Some(tool) => json!({"role": "assistant", "content": null, "tool_calls": [
                    {"id": format!("call_{}", index + 1), "type": "function",
                     "function": {"name": tool, "arguments": "{}"}}]}),
            };
            HttpResponse::Ok().json(json!({"choices": [{"index": 0, "message": message}]}))
        }
        Behaviour::AlwaysFailing => HttpResponse::InternalServerError()
            .insert_header(("retry-after", "0"))
            .json(json!({"error": {"message": "the model is overloaded"}})),
        Behaviour::ToolThenAnswer { delay_ms } => {
            after(delay_ms).await;
            let last_role = body["messages"]
                .as_array()
                .and_then(|m| m.last())
                .map(|m| m["role"].clone())
                .unwrap_or_default();
            let message = if last_role == "tool" {
                json!({"role": "assistant", "content": "All done."})
            } else {
                let tool = body["tools"][0]["function"]["name"].clone();
                json!({"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_a", "type": "function", "function": {"name": tool, "arguments": "{\"bogus\": 1}"}}
                ]})
            };
            HttpResponse::Ok().json(json!({
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "choices": [{"index": 0, "message": message, "finish_reason": "stop",
                             "logprobs": {"content": [{"token": "All", "logprob": -0.25, "top_logprobs": []}]}}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
            }))
        }
    }
}

/// A call of the request's first tool (with no arguments) while the conversation has
/// had fewer than `tool_turns` tool results, else the final answer.
fn answer(request: &Value, tool_turns: usize) -> Value {
    let results = request["messages"]
        .as_array()
        .map_or(0, |m| m.iter().filter(|m| m["role"] == "tool").count());
    match request["tools"][0]["function"]["name"].as_str() {
        Some(tool) if results < tool_turns => json!({
            "index": 0,
            "message": {
                "role": "assistant",
                "content": null,
                "tool_calls": [{
                    "id": format!("call_{results}"),
                    "type": "function",
                    "function": {"name": tool, "arguments": "{}"}
                }]
            },
            "finish_reason": "tool_calls"
        }),
        _ => json!({
            "index": 0,
            "message": {"role": "assistant", "content": "Done."},
            "finish_reason": "stop"
        }),
    }
}

/// The fake model running as a child process of this one.
pub(crate) struct FakeModel {
    pub url: String,
    child: Child,
}

impl Drop for FakeModel {
    /// The child is ours alone: it goes when the measurement does, however it ends.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `rl-gym load fake-model` as a child and reads its address.
pub(crate) fn spawn(latency_ms: u64, tool_turns: usize) -> Result<FakeModel, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .args([
            "load",
            "fake-model",
            "--latency-ms",
            &latency_ms.to_string(),
            "--tool-turns",
            &tool_turns.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("the fake model did not start: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout from the fake model")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let url = line
        .trim()
        .strip_prefix("fake model listening on ")
        .ok_or_else(|| format!("unexpected first line from the fake model: {line:?}"))?
        .to_string();
    Ok(FakeModel { url, child })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_tool_is_called_until_the_conversation_has_had_its_tool_turns() {
        let request = |results: usize| {
            let mut messages = vec![json!({"role": "user", "content": "go"})];
            messages.extend((0..results).map(|_| json!({"role": "tool", "content": "ok"})));
            json!({
                "messages": messages,
                "tools": [{"type": "function", "function": {"name": "list_emails"}}]
            })
        };
        let first = answer(&request(0), 2);
        assert_eq!(
            first["message"]["tool_calls"][0]["function"]["name"],
            "list_emails"
        );
        assert_eq!(first["finish_reason"], "tool_calls");
        assert_eq!(answer(&request(1), 2)["finish_reason"], "tool_calls");
        assert_eq!(answer(&request(2), 2)["message"]["content"], "Done.");
        assert_eq!(answer(&request(0), 0)["finish_reason"], "stop");
    }
}
