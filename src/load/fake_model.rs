//! A slow OpenAI-compatible model: every chat completion is answered after a fixed
//! delay with a final answer (no tool call), so a rollout is exactly one model turn
//! and its time is the delay plus what rl-gym adds.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use clap::Args;
use serde_json::json;

#[derive(Debug, Clone, Args)]
pub struct FakeModelArgs {
    #[arg(long, default_value = "127.0.0.1:0")]
    pub bind: SocketAddr,
    #[arg(long, default_value_t = 2000)]
    pub latency_ms: u64,
}

/// Serves until killed; prints `fake model listening on http://ADDR` once bound.
pub async fn serve(args: FakeModelArgs) -> Result<(), String> {
    let delay = Duration::from_millis(args.latency_ms);
    let server = HttpServer::new(move || {
        App::new().default_service(web::to(move || async move {
            tokio::time::sleep(delay).await;
            HttpResponse::Ok().json(json!({
                "id": "chatcmpl-load",
                "object": "chat.completion",
                "model": "load",
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": "Done."},
                    "finish_reason": "stop"
                }],
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
pub(crate) fn spawn(latency_ms: u64) -> Result<FakeModel, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .args([
            "load",
            "fake-model",
            "--latency-ms",
            &latency_ms.to_string(),
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
