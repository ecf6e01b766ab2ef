//! `rl-gym load rollouts`: launch rollouts through `POST /runs`, wait for them, and
//! report what they cost the service.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use clap::Args;
use futures::StreamExt;
use hyper::{Method, Uri};
use serde_json::{json, Value};

use super::client::{histogram_quantiles, Client, Connection, Samples};
use super::{fake_model, memory_kib, on_client_thread, quantile, Service, Target};

#[derive(Debug, Clone, Args)]
pub struct RolloutsArgs {
    #[command(flatten)]
    pub target: Target,
    /// Rollouts to launch in all.
    #[arg(long, default_value_t = 2000)]
    pub rollouts: u32,
    /// Runs to spread them over (each run gets an equal share).
    #[arg(long, default_value_t = 1)]
    pub runs: u32,
    #[arg(long, default_value = "hr")]
    pub scenario: String,
    /// Tasks to run (repeatable); default every task of the scenario.
    #[arg(long = "task")]
    pub tasks: Vec<String>,
    /// Builtin model (`oracle` or `noop`); ignored with --model-url or a fake model.
    #[arg(long, default_value = "oracle")]
    pub model: String,
    /// Base URL of an OpenAI-compatible server (provider `custom`).
    #[arg(long)]
    pub model_url: Option<String>,
    /// Start a local fake model (a child process) that answers every call after this
    /// many milliseconds with a final answer, so each rollout is one model turn.
    #[arg(long)]
    pub fake_model_latency_ms: Option<u64>,
    /// The fake model's first N answers of each rollout call a tool (the first it is
    /// offered), so a rollout takes N tool steps between N + 1 model turns.
    #[arg(long, default_value_t = 0)]
    pub fake_model_tool_turns: usize,
    /// `max_parallel` of each run (default: no per-run limit).
    #[arg(long)]
    pub max_parallel: Option<u32>,
    /// `GET /runs/{id}` per second while the rollouts run (0: none), spread over the
    /// runs, each timed.
    #[arg(long, default_value_t = 0)]
    pub get_rate: u32,
    /// How often the client checks whether a run has finished.
    #[arg(long, default_value_t = 100)]
    pub poll_ms: u64,
    /// Fetch every rollout at the end and report its launch-to-finish time (on by
    /// default with a fake model).
    #[arg(long)]
    pub rollout_durations: bool,
}

pub async fn run(args: RolloutsArgs) -> Result<(), String> {
    let fake = args
        .fake_model_latency_ms
        .map(|ms| fake_model::spawn(ms, args.fake_model_tool_turns))
        .transpose()?;
    let service = Service::start(&args.target).await?;
    let model_url = args
        .model_url
        .clone()
        .or_else(|| fake.as_ref().map(|f| f.url.clone()));
    let client = Client::new(&service.base, service.token.clone())?;
    let in_process = service.in_process();
    let (rss_before, _) = memory_kib();
    let report = on_client_thread(move || drive(client, args, model_url)).await;
    let (rss_after, peak) = memory_kib();
    service.stop().await;
    drop(fake);
    let (report, total) = report?;
    println!("{report}");
    if in_process {
        println!("rss_before_kib: {rss_before}");
        println!("rss_end_kib: {rss_after}");
        println!("peak_rss_kib: {peak}");
        println!(
            "peak_rss_per_rollout_kib: {:.1} ((peak - before) / rollouts)",
            peak.saturating_sub(rss_before) as f64 / total.max(1) as f64
        );
    } else {
        println!("peak_rss_kib: n/a (the service runs in another process)");
    }
    Ok(())
}

/// Launches, waits, measures; returns the report's lines and the rollouts launched.
async fn drive(
    client: Client,
    args: RolloutsArgs,
    model_url: Option<String>,
) -> Result<(String, usize), String> {
    let tasks = client.tasks(&args.scenario, &args.tasks).await?;
    let model_config = match &model_url {
        Some(url) => json!({"provider": "custom", "model": "load", "base_url": url}),
        None => json!({"provider": "builtin", "model": args.model}),
    };
    let runs = args.runs.max(1);
    let per_run = args.rollouts.div_ceil(runs).max(1) as usize;
    let bodies: Vec<Value> = (0..runs as usize)
        .map(|r| {
            // Fewer rollouts than tasks: one rollout each of a rotating slice of tasks.
            let (task_ids, count) = if per_run <= tasks.len() {
                let ids: Vec<&String> = tasks.iter().cycle().skip(r).take(per_run).collect();
                (json!(ids), 1)
            } else {
                (json!(tasks), per_run.div_ceil(tasks.len()))
            };
            let mut body = json!({
                "scenario_id": args.scenario,
                "task_ids": task_ids,
                "rollout_count": count,
                "model_config": model_config,
            });
            if let Some(p) = args.max_parallel {
                body["max_parallel"] = json!(p);
            }
            body
        })
        .collect();

    let before = Samples::parse(&client.text("/metrics").await?);
    let started = Instant::now();
    let wall_start = Utc::now();
    let launched: Vec<Result<(String, usize), String>> = futures::stream::iter(bodies)
        .map(|body| {
            let client = client.clone();
            async move {
                let answer = client.post("/runs", &body).await?;
                let id = answer["run_id"].as_str().ok_or("no run_id")?.to_string();
                let total = answer["run_status"]["total"].as_u64().unwrap_or(0) as usize;
                Ok((id, total))
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let launched: Vec<(String, usize)> = launched.into_iter().collect::<Result<_, _>>()?;
    let launch_time = started.elapsed();
    let total: usize = launched.iter().map(|(_, n)| n).sum();
    let run_ids: Arc<Vec<String>> = Arc::new(launched.iter().map(|(id, _)| id.clone()).collect());

    let done = Arc::new(AtomicBool::new(false));
    let reads = (args.get_rate > 0).then(|| {
        tokio::spawn(timed_reads(
            client.clone(),
            run_ids.clone(),
            args.get_rate,
            done.clone(),
        ))
    });

    // Wait for each run in turn; its `finished_at` is the service's own time.
    let mut last_finish: Option<DateTime<Utc>> = None;
    for run_id in run_ids.iter() {
        loop {
            let status = client
                .get(&format!("/runs/{run_id}?rollouts=false"))
                .await?;
            let finished = ["completed", "failed", "cancelled"]
                .iter()
                .map(|k| status[*k].as_u64().unwrap_or(0))
                .sum::<u64>();
            if finished >= status["total"].as_u64().unwrap_or(0) {
                let at = status["finished_at"]
                    .as_str()
                    .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                    .map(|t| t.with_timezone(&Utc));
                last_finish = last_finish.max(at);
                break;
            }
            tokio::time::sleep(Duration::from_millis(args.poll_ms)).await;
        }
    }
    let observed = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let reads = match reads {
        Some(task) => Some(task.await.map_err(|e| e.to_string())?),
        None => None,
    };
    let after = Samples::parse(&client.text("/metrics").await?);
    let elapsed = last_finish
        .map(|f| (f - wall_start).to_std().unwrap_or(observed))
        .unwrap_or(observed);
    let secs = elapsed.as_secs_f64();

    let mut out = Vec::new();
    let mut line = |k: &str, v: String| out.push(format!("{k}: {v}"));
    line("runs", run_ids.len().to_string());
    line("rollouts", total.to_string());
    line("launch_secs", format!("{:.3}", launch_time.as_secs_f64()));
    line("elapsed_secs", format!("{secs:.3}"));
    line("rollouts_per_sec", format!("{:.0}", total as f64 / secs));
    let outcome = |o: &str| {
        after.sum(
            "rl_gym_rollouts_finished_total",
            &format!("outcome=\"{o}\""),
        ) - before.sum(
            "rl_gym_rollouts_finished_total",
            &format!("outcome=\"{o}\""),
        )
    };
    line(
        "outcomes",
        format!(
            "completed {} failed {} cancelled {}",
            outcome("completed"),
            outcome("failed"),
            outcome("cancelled")
        ),
    );
    let events = after.sum("rl_gym_events_appended_total", "")
        - before.sum("rl_gym_events_appended_total", "");
    line("events_per_sec", format!("{:.0}", events / secs));
    let (steps, q) = histogram_quantiles(
        &before,
        &after,
        "rl_gym_step_duration_seconds",
        "",
        &[0.5, 0.99],
    );
    line("steps_per_sec", format!("{:.0}", steps / secs));
    line(
        "step_duration_us",
        format!(
            "p50 {:.0} p99 {:.0} (all kinds, from the step histogram)",
            q[0] * 1e6,
            q[1] * 1e6
        ),
    );
    for kind in ["model", "tool", "verify"] {
        let (n, q) = histogram_quantiles(
            &before,
            &after,
            "rl_gym_step_duration_seconds",
            &format!("kind=\"{kind}\""),
            &[0.5, 0.99],
        );
        let (_, outside) = histogram_quantiles(
            &before,
            &after,
            "rl_gym_step_overhead_seconds",
            &format!("kind=\"{kind}\""),
            &[0.5, 0.99],
        );
        line(
            &format!("step_duration_us.{kind}"),
            format!(
                "p50 {:.0} p99 {:.0} n {n}; outside the model call p50 {:.1} p99 {:.1}",
                q[0] * 1e6,
                q[1] * 1e6,
                outside[0] * 1e6,
                outside[1] * 1e6
            ),
        );
    }
    let (_, q) = histogram_quantiles(
        &before,
        &after,
        "rl_gym_step_overhead_seconds",
        "",
        &[0.5, 0.99],
    );
    line(
        "step_overhead_us",
        format!(
            "p50 {:.1} p99 {:.1} (all kinds, outside the model call)",
            q[0] * 1e6,
            q[1] * 1e6
        ),
    );
    let (_, q) = histogram_quantiles(
        &before,
        &after,
        "rl_gym_model_call_duration_seconds",
        "",
        &[0.5, 0.99],
    );
    line(
        "model_call_us",
        format!("p50 {:.0} p99 {:.0}", q[0] * 1e6, q[1] * 1e6),
    );
    let (_, q) = histogram_quantiles(
        &before,
        &after,
        "rl_gym_event_append_duration_seconds",
        "",
        &[0.5, 0.99],
    );
    line(
        "append_us",
        format!("p50 {:.0} p99 {:.0}", q[0] * 1e6, q[1] * 1e6),
    );
    if let Some(reads) = reads {
        line("get_run", reads);
    }
    if args.rollout_durations || args.fake_model_latency_ms.is_some() {
        line(
            "rollout_duration_ms",
            rollout_durations(&client, &run_ids).await?,
        );
    }
    Ok((out.join("\n"), total))
}

/// `GET /runs/{id}` at a fixed rate (open loop: a slow answer does not delay the next
/// request) until `done`; answers the latency summary.
async fn timed_reads(
    client: Client,
    run_ids: Arc<Vec<String>>,
    rate: u32,
    done: Arc<AtomicBool>,
) -> String {
    let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Result<f64, String>>();
    let paths: Vec<Uri> = run_ids
        .iter()
        .filter_map(|id| format!("/runs/{id}").parse().ok())
        .collect();
    if paths.is_empty() {
        return "no run to read".to_string();
    }
    // Lean connections, reused: one is opened only when every other is busy.
    let idle = Arc::new(parking_lot::Mutex::new(Vec::<Connection>::new()));
    let started = Instant::now();
    let mut sent = 0usize;
    while !done.load(Ordering::Relaxed) {
        interval.tick().await;
        let path = paths[sent % paths.len()].clone();
        sent += 1;
        let client = client.clone();
        let idle = idle.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            let result = async {
                let pooled = idle.lock().pop();
                let mut connection = match pooled {
                    Some(connection) => connection,
                    None => client.connection().await?,
                };
                connection.send(Method::GET, &path, Bytes::new()).await?;
                let secs = t.elapsed().as_secs_f64();
                idle.lock().push(connection);
                Ok(secs)
            };
            let _ = tx.send(result.await);
        });
    }
    let duration = started.elapsed().as_secs_f64();
    drop(tx);
    let mut latencies = Vec::with_capacity(sent);
    let mut errors = 0;
    while let Some(result) = rx.recv().await {
        match result {
            Ok(secs) => latencies.push(secs * 1000.0),
            Err(_) => errors += 1,
        }
    }
    latencies.sort_by(f64::total_cmp);
    format!(
        "{} requests at {:.0}/s, p50 {:.3} ms p99 {:.3} ms max {:.3} ms, {errors} errors",
        latencies.len(),
        sent as f64 / duration,
        quantile(&latencies, 0.5),
        quantile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(f64::NAN),
    )
}

/// Launch-to-start, launch-to-verifying and launch-to-finish time of every rollout
/// (the service's timestamps): where the time between launch and finish went.
async fn rollout_durations(client: &Client, run_ids: &[String]) -> Result<String, String> {
    let mut paths = Vec::new();
    for run_id in run_ids {
        let status = client.get(&format!("/runs/{run_id}")).await?;
        for id in status["rollout_ids"].as_array().into_iter().flatten() {
            if let Some(id) = id.as_str() {
                paths.push(format!("/runs/{run_id}/rollouts/{id}"));
            }
        }
    }
    let timings: Vec<Result<[f64; 3], String>> = futures::stream::iter(paths)
        .map(|path| {
            let client = client.clone();
            async move {
                let detail = client.get(&path).await?;
                let time = |k: &str| {
                    detail["timings"][k]
                        .as_str()
                        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                };
                let verifying = detail["status_events"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|e| e["status"] == "verifying")
                    .and_then(|e| DateTime::parse_from_rfc3339(e["at"].as_str()?).ok());
                let ms = |d: chrono::TimeDelta| d.num_microseconds().unwrap_or(0) as f64 / 1000.0;
                match (time("created_at"), time("started_at"), time("finished_at")) {
                    (Some(c), Some(s), Some(f)) => {
                        Ok([ms(s - c), ms(verifying.unwrap_or(f) - c), ms(f - c)])
                    }
                    _ => Err(format!("{path} has not finished")),
                }
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let timings: Vec<[f64; 3]> = timings.into_iter().collect::<Result<_, _>>()?;
    let sorted = |i: usize| {
        let mut ms: Vec<f64> = timings.iter().map(|t| t[i]).collect();
        ms.sort_by(f64::total_cmp);
        ms
    };
    let (start, verifying, finish) = (sorted(0), sorted(1), sorted(2));
    let over_3s = finish.iter().filter(|d| **d >= 3000.0).count();
    Ok(format!(
        "p50 {:.0} p99 {:.0} max {:.0}, {over_3s} of {} took 3 s or more; started after p50 {:.0} max {:.0}, verifying after p50 {:.0} max {:.0}",
        quantile(&finish, 0.5),
        quantile(&finish, 0.99),
        finish.last().copied().unwrap_or(f64::NAN),
        finish.len(),
        quantile(&start, 0.5),
        start.last().copied().unwrap_or(f64::NAN),
        quantile(&verifying, 0.5),
        verifying.last().copied().unwrap_or(f64::NAN),
    ))
}
