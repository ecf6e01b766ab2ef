//! A slow OpenAI-compatible model: every chat completion is answered after a fixed
//! delay. By default the answer is final (no tool call), so a rollout is exactly one
//! model turn and its time is the delay plus what rl-gym adds; with `--tool-turns N`
//! the first N answers of a conversation call the first tool it was offered, so a
//! rollout takes N tool steps between its model turns.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use clap::Args;
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

/// Serves until killed; prints `fake model listening on http://ADDR` once bound.
pub async fn serve(args: FakeModelArgs) -> Result<(), String> {
    let delay = Duration::from_millis(args.latency_ms);
    let tool_turns = args.tool_turns;
    let server = HttpServer::new(move || {
        App::new().default_service(web::to(move |body: web::Bytes| async move {
            tokio::time::sleep(delay).await;
            // Ten thousand requests of tens of KiB each: read only when they matter.
            let choice = if tool_turns > 0 {
                answer(
                    &serde_json::from_slice(&body).unwrap_or_default(),
                    tool_turns,
                )
            } else {
                answer(&Value::Null, 0)
            };
            HttpResponse::Ok().json(json!({
                "id": "chatcmpl-load",
                "object": "chat.completion",
                "model": "load",
                "choices": [choice],
                "usage": {"prompt_tokens": 100, "completion_tokens": 2, "total_tokens": 102}
            }))
        }))
    })
    // Ten thousand rollouts connect at once: a deep accept queue, no connection cap.
    .backlog(65_535)
    .max_connections(1_000_000)
    .workers(1)
    .bind(args.bind)
    .map_err(|e| format!("fake model cannot listen on {}: {e}", args.bind))?;
    let address = server.addrs()[0];
    println!("fake model listening on http://{address}");
    server.run().await.map_err(|e| e.to_string())
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
