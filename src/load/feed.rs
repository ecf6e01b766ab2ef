//! `rl-gym load feed`: a continuous run of the builtin oracle drained by one consumer
//! through `GET /runs/{id}/groups` and `POST …/groups/ack`, as a trainer would; prints
//! groups per second to the consumer and the run's rollouts per second (by the
//! service's clock, launch to last finish). With `--baseline`, the same rollouts as an
//! ordinary run (same tasks and `max_parallel`) before and after, and the ratio.

use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{json, Value};

use super::client::Client;
use super::{on_client_thread, Service, Target};

#[derive(Debug, Clone, Args)]
pub struct FeedArgs {
    #[command(flatten)]
    pub target: Target,
    /// Groups the continuous run draws (`max_groups`).
    #[arg(long, default_value_t = 500)]
    pub groups: u32,
    /// Rollouts per group (`rollout_count`).
    #[arg(long, default_value_t = 8)]
    pub group_size: u32,
    #[arg(long, default_value_t = 64)]
    pub max_parallel: u32,
    /// Complete groups the run may hold for the consumer.
    #[arg(long, default_value_t = 16)]
    pub max_unconsumed_groups: u32,
    /// Groups the consumer takes per poll at most.
    #[arg(long, default_value_t = 16)]
    pub batch: u32,
    #[arg(long, default_value = "hr")]
    pub scenario: String,
    /// Also time the same rollouts as an ordinary run, before and after.
    #[arg(long)]
    pub baseline: bool,
}

pub async fn run(args: FeedArgs) -> Result<(), String> {
    let service = Service::start(&args.target).await?;
    let client = Client::new(&service.base, service.token.clone())?;
    let report = on_client_thread(move || drive(client, args)).await;
    service.stop().await;
    println!("{}", report?);
    Ok(())
}

async fn drive(client: Client, args: FeedArgs) -> Result<String, String> {
    let tasks = client.task_ids(&args.scenario).await?;
    if tasks.is_empty() {
        return Err(format!("scenario {} has no tasks", args.scenario));
    }
    let rollouts = u64::from(args.groups) * u64::from(args.group_size);
    let mut out = Vec::new();
    let before = match args.baseline {
        true => Some(ordinary(&client, &args, &tasks).await?),
        false => None,
    };
    let body = json!({
        "scenario_id": args.scenario,
        "task_ids": tasks,
        "rollout_count": args.group_size,
        "max_parallel": args.max_parallel,
        "model_config": {"provider": "builtin", "model": "oracle"},
        "continuous": {"max_groups": args.groups,
                       "max_unconsumed_groups": args.max_unconsumed_groups, "seed": 1},
    });
    let started = Instant::now();
    let answer = client.post("/runs", &body).await?;
    let run_id = answer["run_id"].as_str().ok_or("no run_id")?.to_string();
    let mut taken = 0u64;
    let mut polls = 0u64;
    loop {
        let text = client
            .text(&format!(
                "/runs/{run_id}/groups?consumer=load&wait=30&limit={}",
                args.batch
            ))
            .await?;
        polls += 1;
        // Only the ids are read: a JSON tree of every message would cost this process,
        // which shares the machine with the service, more than the service's feed.
        let page: Page = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
        let ids: Vec<u64> = page.groups.iter().map(|g| g.group_id).collect();
        if !ids.is_empty() {
            taken += ids.len() as u64;
            client
                .post(
                    &format!("/runs/{run_id}/groups/ack"),
                    &json!({"consumer": "load", "group_ids": ids}),
                )
                .await?;
        }
        if page.done {
            break;
        }
        if started.elapsed() > Duration::from_secs(3600) {
            return Err("the feed did not finish in an hour".to_string());
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let status: Value = client
        .get(&format!("/runs/{run_id}?rollouts=false"))
        .await?;
    let run_secs = server_secs(&status).unwrap_or(secs);
    // The ordinary run again after: the mean of the two cancels the drift of a
    // growing log and a warming machine.
    let baseline = match before {
        Some(before) => Some((before + ordinary(&client, &args, &tasks).await?) / 2.0),
        None => None,
    };
    let mut line = |k: &str, v: String| out.push(format!("{k}: {v}"));
    line("groups", taken.to_string());
    line("rollouts", rollouts.to_string());
    line("completed", status["completed"].to_string());
    line("polls", polls.to_string());
    line(
        "elapsed_secs",
        format!("{secs:.3} (launch to the consumer's last ack)"),
    );
    line(
        "groups_per_sec",
        format!("{:.0} (to the consumer)", taken as f64 / secs),
    );
    let rate = rollouts as f64 / run_secs;
    line(
        "rollouts_per_sec",
        format!("{rate:.0} (the run's created_at to finished_at)"),
    );
    if let Some(base) = baseline {
        line(
            "baseline_rollouts_per_sec",
            format!("{base:.0} (an ordinary run before and one after, mean)"),
        );
        line(
            "feed_overhead",
            format!("{:+.1}% (1 - feed / baseline)", (1.0 - rate / base) * 100.0),
        );
    }
    Ok(out.join("\n"))
}

#[derive(serde::Deserialize)]
struct Page {
    groups: Vec<GroupId>,
    done: bool,
}

#[derive(serde::Deserialize)]
struct GroupId {
    group_id: u64,
}

/// Rollouts per second of the same work as an ordinary run.
async fn ordinary(client: &Client, args: &FeedArgs, tasks: &[String]) -> Result<f64, String> {
    // As many rollouts, spread over the tasks as evenly as a launch allows.
    let per_task = (args.groups * args.group_size).div_ceil(tasks.len() as u32);
    let body = json!({
        "scenario_id": args.scenario,
        "task_ids": tasks,
        "rollout_count": per_task,
        "max_parallel": args.max_parallel,
        "model_config": {"provider": "builtin", "model": "oracle"},
    });
    let answer = client.post("/runs", &body).await?;
    let run_id = answer["run_id"].as_str().ok_or("no run_id")?.to_string();
    let total = answer["run_status"]["total"].as_u64().unwrap_or(0);
    loop {
        let status = client
            .get(&format!("/runs/{run_id}?rollouts=false"))
            .await?;
        if let Some(secs) = server_secs(&status) {
            return Ok(total as f64 / secs);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A finished run's time from launch to its last rollout's end, by the service's clock.
fn server_secs(status: &Value) -> Option<f64> {
    let at = |k: &str| chrono::DateTime::parse_from_rfc3339(status[k].as_str()?).ok();
    let secs = (at("finished_at")? - at("created_at")?).num_microseconds()? as f64 / 1e6;
    (secs > 0.0).then_some(secs)
}
