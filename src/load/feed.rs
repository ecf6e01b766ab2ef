//! `rl-gym load feed`: a continuous run of the builtin oracle drained by one consumer
//! through `GET /runs/{id}/groups` and `POST …/groups/ack`, as a trainer would; prints
//! groups per second to the consumer and the run's rollouts per second (by the
//! service's clock, launch to last finish) and, for an in-process service, its CPU per
//! rollout and the consumer's apart. With `--baseline`, `--rounds` feed runs alternate
//! with ordinary runs of the same rollouts (same tasks, instances drawn alike, same
//! `max_parallel`), and the medians of each pair's ratios are printed: on a shared
//! machine CPU per rollout is the steadier of the two.

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
    /// Tasks to draw from (repeatable); default every task of the scenario. With one
    /// task both runs of a `--baseline` pair run the same instances.
    #[arg(long = "task")]
    pub tasks: Vec<String>,
    /// Also time the same rollouts as ordinary runs, alternating with the feed's.
    #[arg(long)]
    pub baseline: bool,
    /// With `--baseline`: feed runs, each beside an ordinary run.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
}

pub async fn run(args: FeedArgs) -> Result<(), String> {
    let service = Service::start(&args.target).await?;
    let client = Client::new(&service.base, service.token.clone())?;
    let in_process = service.in_process();
    let report = on_client_thread(move || drive(client, args, in_process)).await;
    service.stop().await;
    println!("{}", report?);
    Ok(())
}

async fn drive(client: Client, args: FeedArgs, in_process: bool) -> Result<String, String> {
    let tasks = client.tasks(&args.scenario, &args.tasks).await?;
    let rollouts = u64::from(args.groups) * u64::from(args.group_size);
    let rounds = if args.baseline { args.rounds.max(1) } else { 1 };
    let mut fed = Vec::new();
    let mut plain = Vec::new();
    for round in 0..rounds {
        // The order alternates, so a growing log and a warming machine favour neither.
        if args.baseline && round % 2 == 0 {
            plain.push(ordinary(&client, &args, &tasks, round).await?);
        }
        fed.push(feed_once(&client, &args, &tasks, round).await?);
        if args.baseline && round % 2 == 1 {
            plain.push(ordinary(&client, &args, &tasks, round).await?);
        }
    }
    let mut out = Vec::new();
    let mut line = |k: &str, v: String| out.push(format!("{k}: {v}"));
    let last = fed.last().ok_or("no feed run")?;
    line("groups", last.groups.to_string());
    line("rollouts", rollouts.to_string());
    line("completed", last.completed.to_string());
    line("polls", last.polls.to_string());
    let per_sec: Vec<f64> = fed.iter().map(|f| f.groups as f64 / f.secs).collect();
    let rates: Vec<f64> = fed.iter().map(|f| f.timing.rate).collect();
    let cpu: Vec<f64> = fed.iter().map(|f| f.timing.cpu_us).collect();
    let consumer: Vec<f64> = fed.iter().map(|f| f.timing.client_us).collect();
    line(
        "groups_per_sec",
        spread(&per_sec, "", "to the consumer, launch to its last ack"),
    );
    line(
        "rollouts_per_sec",
        spread(&rates, "", "the run's created_at to finished_at"),
    );
    if in_process {
        line(
            "cpu_us_per_rollout",
            spread(&cpu, "", "the service, the consumer's thread not counted"),
        );
    }
    line(
        "consumer_cpu_us_per_rollout",
        spread(&consumer, "", "the consumer's thread: polls, reads, acks"),
    );
    if args.baseline {
        let base_rates: Vec<f64> = plain.iter().map(|t| t.rate).collect();
        let base_cpu: Vec<f64> = plain.iter().map(|t| t.cpu_us).collect();
        line(
            "baseline_rollouts_per_sec",
            spread(
                &base_rates,
                "",
                "ordinary runs, alternating with the feed's",
            ),
        );
        if in_process {
            line(
                "baseline_cpu_us_per_rollout",
                spread(&base_cpu, "", "the service, ordinary runs"),
            );
        }
        // Each feed run against the ordinary run beside it: positive is a cost.
        let slower: Vec<f64> = rates
            .iter()
            .zip(&base_rates)
            .map(|(f, b)| (1.0 - f / b) * 100.0)
            .collect();
        let dearer: Vec<f64> = cpu
            .iter()
            .zip(&base_cpu)
            .map(|(f, b)| (f / b - 1.0) * 100.0)
            .collect();
        line(
            "feed_overhead_throughput",
            spread(&slower, "%", "1 - feed / ordinary rollouts per second"),
        );
        if in_process {
            line(
                "feed_overhead_cpu",
                spread(
                    &dearer,
                    "%",
                    "the service's CPU per rollout: feed / ordinary - 1",
                ),
            );
        }
    }
    Ok(out.join("\n"))
}

/// `median (each run's figure) (what it is)`: whole numbers, or signed percentages
/// with one decimal when `unit` is `%`.
fn spread(values: &[f64], unit: &str, what: &str) -> String {
    let show = |x: f64| match unit {
        "%" => format!("{x:+.1}%"),
        _ => format!("{x:.0}"),
    };
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let each: Vec<String> = values.iter().map(|&x| show(x)).collect();
    format!(
        "{} median of {} ({}) ({what})",
        show(super::quantile(&sorted, 0.5)),
        values.len(),
        each.join(", ")
    )
}

/// One run's rollouts per second (by the service's clock), and CPU microseconds per
/// rollout of an in-process service and of the client.
struct Timing {
    rate: f64,
    cpu_us: f64,
    client_us: f64,
}

impl Timing {
    fn of(rollouts: u64, secs: f64, (service, client): (f64, f64)) -> Timing {
        let per = |s: f64| s * 1e6 / rollouts.max(1) as f64;
        Timing {
            rate: rollouts as f64 / secs,
            cpu_us: per(service),
            client_us: per(client),
        }
    }
}

struct FeedRun {
    groups: u64,
    completed: Value,
    polls: u64,
    /// Launch to the consumer's last ack.
    secs: f64,
    timing: Timing,
}

/// A continuous run drained by one consumer.
async fn feed_once(
    client: &Client,
    args: &FeedArgs,
    tasks: &[String],
    round: u32,
) -> Result<FeedRun, String> {
    let rollouts = u64::from(args.groups) * u64::from(args.group_size);
    let body = json!({
        "scenario_id": args.scenario,
        "task_ids": tasks,
        "rollout_count": args.group_size,
        "max_parallel": args.max_parallel,
        "model_config": {"provider": "builtin", "model": "oracle"},
        "continuous": {"max_groups": args.groups,
                       "max_unconsumed_groups": args.max_unconsumed_groups, "seed": round + 1},
    });
    let started = Instant::now();
    let cpu = super::CpuSplit::start();
    let answer = client.post("/runs", &body).await?;
    let run_id = answer["run_id"].as_str().ok_or("no run_id")?.to_string();
    let mut groups = 0u64;
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
            groups += ids.len() as u64;
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
    let cpu = cpu.split();
    let secs = started.elapsed().as_secs_f64();
    let status: Value = client
        .get(&format!("/runs/{run_id}?rollouts=false"))
        .await?;
    let run_secs = server_secs(&status).unwrap_or(secs);
    Ok(FeedRun {
        groups,
        completed: status["completed"].clone(),
        polls,
        secs,
        timing: Timing::of(rollouts, run_secs, cpu),
    })
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

/// The same work as an ordinary run.
async fn ordinary(
    client: &Client,
    args: &FeedArgs,
    tasks: &[String],
    round: u32,
) -> Result<Timing, String> {
    // As many groups of as many rollouts, spread over the tasks as evenly as a launch
    // allows, each instance drawn as a continuous run draws them: the same work.
    let per_task = args.groups.div_ceil(tasks.len() as u32);
    let instances: Vec<u64> = (0..per_task)
        .map(|i| crate::domain::feed::draw(u64::from(round) + 1, i, u32::MAX - 1))
        .collect();
    let body = json!({
        "scenario_id": args.scenario,
        "task_ids": tasks,
        "rollout_count": args.group_size,
        "instance_seeds": instances,
        "max_parallel": args.max_parallel,
        "model_config": {"provider": "builtin", "model": "oracle"},
    });
    let cpu = super::CpuSplit::start();
    let answer = client.post("/runs", &body).await?;
    let run_id = answer["run_id"].as_str().ok_or("no run_id")?.to_string();
    let total = answer["run_status"]["total"].as_u64().unwrap_or(0);
    loop {
        let status = client
            .get(&format!("/runs/{run_id}?rollouts=false"))
            .await?;
        if let Some(secs) = server_secs(&status) {
            return Ok(Timing::of(total, secs, cpu.split()));
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
