//! `rl-gym load environments`: outside agents stepping hosted environments over HTTP.
//! Each environment gets one client that sends its steps one after another (an agent
//! waits for each observation); all environments step at once.

use std::time::Instant;

use bytes::Bytes;
use clap::Args;
use futures::StreamExt;
use hyper::{Method, Uri};
use serde_json::{json, Value};

use super::client::Client;
use super::{on_client_thread, quantile, Service, Target};

#[derive(Debug, Clone, Args)]
pub struct EnvironmentsArgs {
    #[command(flatten)]
    pub target: Target,
    /// Environments stepping at once, one client each.
    #[arg(long, default_value_t = 1)]
    pub environments: usize,
    /// Steps per environment (after 10 unmeasured warm-up steps each).
    #[arg(long, default_value_t = 10_000)]
    pub steps: usize,
    #[arg(long, default_value = "hr")]
    pub scenario: String,
    #[arg(long, default_value = "hr__101_approve_leave_request")]
    pub task: String,
    /// The tool server each step goes to.
    #[arg(long, default_value = "email")]
    pub tool_server: String,
    /// The tool every step calls (read-only by default, so every step does the same work).
    #[arg(long, default_value = "read_email")]
    pub tool: String,
    #[arg(long, default_value = r#"{"email_id":"msg_0001"}"#)]
    pub parameters: String,
}

#[derive(serde::Deserialize)]
struct StepAnswer {
    #[allow(dead_code)]
    observation: serde::de::IgnoredAny,
}

pub async fn run(args: EnvironmentsArgs) -> Result<(), String> {
    let service = Service::start(&args.target).await?;
    let client = Client::new(&service.base, service.token.clone())?;
    let report = on_client_thread(move || drive(client, args)).await;
    service.stop().await;
    println!("{}", report?);
    Ok(())
}

async fn drive(client: Client, args: EnvironmentsArgs) -> Result<String, String> {
    let parameters: Value =
        serde_json::from_str(&args.parameters).map_err(|e| format!("--parameters: {e}"))?;
    let create = json!({"scenario_id": args.scenario, "task_id": args.task});
    let created: Vec<Result<String, String>> = futures::stream::iter(0..args.environments)
        .map(|_| {
            let client = client.clone();
            let create = create.clone();
            async move {
                let env = client.post("/environments", &create).await?;
                env["environment_url"]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| "no environment_url".to_string())
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let urls: Vec<String> = created.into_iter().collect::<Result<_, _>>()?;
    let body = Bytes::from(
        json!({"action": {"tool_name": args.tool, "parameters": parameters}}).to_string(),
    );

    let step = |url: String, steps: usize, timed: bool| {
        let client = client.clone();
        let body = body.clone();
        let path = format!(
            "{}/{}/step",
            url.strip_prefix(&client.base).unwrap_or(&url),
            args.tool_server
        );
        async move {
            let uri: Uri = path.parse().map_err(|e| format!("{path}: {e}"))?;
            let mut connection = client.connection().await?;
            let mut latencies = Vec::with_capacity(if timed { steps } else { 0 });
            for _ in 0..steps {
                let t = Instant::now();
                let answer = connection.send(Method::POST, &uri, body.clone()).await?;
                if timed {
                    latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                // Checked, not kept: an answer without an observation is an error.
                serde_json::from_slice::<StepAnswer>(&answer)
                    .map_err(|e| format!("{path}: {e} in {}", String::from_utf8_lossy(&answer)))?;
            }
            Ok::<_, String>(latencies)
        }
    };
    futures::future::try_join_all(urls.iter().map(|u| step(u.clone(), 10, false))).await?;
    let started = Instant::now();
    let measured =
        futures::future::try_join_all(urls.iter().map(|u| step(u.clone(), args.steps, true)))
            .await?;
    let secs = started.elapsed().as_secs_f64();
    let mut ms: Vec<f64> = measured.into_iter().flatten().collect();
    ms.sort_by(f64::total_cmp);
    for url in &urls {
        client.delete(url).await?;
    }
    Ok([
        format!("environments: {}", urls.len()),
        format!("steps: {}", ms.len()),
        format!("elapsed_secs: {secs:.3}"),
        format!("steps_per_sec: {:.0}", ms.len() as f64 / secs),
        format!(
            "step_ms: p50 {:.3} p99 {:.3} p999 {:.3} max {:.3}",
            quantile(&ms, 0.5),
            quantile(&ms, 0.99),
            quantile(&ms, 0.999),
            ms.last().copied().unwrap_or(f64::NAN)
        ),
    ]
    .join("\n"))
}
