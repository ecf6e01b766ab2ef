//! `rl-gym runs …`: launch, list, show, watch, cancel, delete, resume, fork, re-verify
//! and export runs.
//!
//! Over 600 lines: each `runs` subcommand is a short function over one request and its
//! rendering.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{json, Map, Value};

use super::http::Client;
use super::render::{self, cell, items, print_json};
use super::watch;
use super::ClientError;

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Launch a run (POST /runs) from flags, a JSON file, or both (flags win).
    Launch(Box<LaunchArgs>),
    /// List runs, newest first.
    List {
        /// Only this scenario's runs.
        #[arg(long)]
        scenario: Option<String>,
        /// rl-gym (the server's default), task-editor, datadog-synthetics or all.
        #[arg(long)]
        source: Option<String>,
        /// At most this many runs (1–200, the server's default 50).
        #[arg(long)]
        limit: Option<u32>,
        /// Skip this many runs.
        #[arg(long)]
        offset: Option<u32>,
    },
    /// A run's status and its per-rollout breakdown.
    Show { run_id: String },
    /// Follow a run until it ends: exit 0 if no rollout failed or was cancelled.
    Watch { run_id: String },
    /// Cancel a run: pending rollouts at once, running ones after their current step.
    Cancel { run_id: String },
    /// Delete a run and its rollouts from every view.
    Delete {
        run_id: String,
        /// Do not ask for confirmation (required when stdin is not a terminal).
        #[arg(long, short)]
        yes: bool,
    },
    /// Go on with a run paused by its budget, under a new one (none: unlimited).
    Resume {
        run_id: String,
        #[command(flatten)]
        budget: BudgetArgs,
    },
    /// Branch a rollout after step k into a new run of n rollouts.
    Fork {
        run_id: String,
        rollout_id: String,
        /// The source's model turns to keep (0: only its start).
        #[arg(long)]
        at_step: u32,
        /// Rollouts of the new run (the server's default 1).
        #[arg(long)]
        count: Option<u32>,
        /// Then watch the new run as `runs watch` does (and exit as it does).
        #[arg(long)]
        wait: bool,
    },
    /// Score a run's finished rollouts again from the log with today's checks.
    Reverify {
        run_id: String,
        /// A JSON object of task overrides (per task id) for this scoring only.
        #[arg(long)]
        overrides: Option<PathBuf>,
    },
    /// Stream a run's training data as JSON Lines (already machine-readable:
    /// `--json` changes nothing).
    Export {
        run_id: String,
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// The lowest score exported (`sft` only; the server's default 1.0).
        #[arg(long)]
        min_score: Option<f64>,
        /// Write to this file instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Sft,
    Rl,
    Preference,
}

/// A run's budget (`budget`): either cap, or both.
#[derive(Debug, Args)]
pub struct BudgetArgs {
    /// Stop the run once its model calls have used this many tokens.
    #[arg(long)]
    max_total_tokens: Option<u64>,
    /// Stop the run once it has cost this many US dollars (the server's price table).
    #[arg(long)]
    max_cost_usd: Option<f64>,
}

impl BudgetArgs {
    fn fields(&self) -> [(&'static str, Option<Value>); 2] {
        [
            ("max_total_tokens", self.max_total_tokens.map(Value::from)),
            ("max_cost_usd", self.max_cost_usd.map(Value::from)),
        ]
    }
}

/// Every field of a launch request; bounds and defaults are the server's to check.
#[derive(Debug, Args)]
pub struct LaunchArgs {
    /// A launch request body (JSON); the flags below override its fields.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Scenario id (`scenario_id`).
    #[arg(long)]
    scenario: Option<String>,
    /// Comma-separated task ids (`task_ids`).
    #[arg(long, value_delimiter = ',')]
    tasks: Vec<String>,
    /// Rollouts per task (`rollout_count`).
    #[arg(long)]
    rollouts: Option<u32>,
    /// Rollouts of this run in flight at once (`max_parallel`).
    #[arg(long)]
    max_parallel: Option<u32>,
    /// The run's id (`run_name`).
    #[arg(long)]
    run_name: Option<String>,
    /// rl-gym, task-editor or datadog-synthetics (`source`).
    #[arg(long)]
    source: Option<String>,
    /// Model provider: openai, custom, azure-openai, anthropic, aws-bedrock, gcp, builtin.
    #[arg(long)]
    provider: Option<String>,
    /// Model name (`oracle` or `noop` for the builtin provider).
    #[arg(long)]
    model: Option<String>,
    /// The provider's endpoint.
    #[arg(long)]
    base_url: Option<String>,
    /// The provider's key; prefer the variable, which stays out of shell history.
    #[arg(long, env = "RL_GYM_MODEL_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Sampling temperature (0–2).
    #[arg(long)]
    temperature: Option<f64>,
    /// Model turns per rollout.
    #[arg(long)]
    max_steps: Option<u32>,
    /// Replaces the agent's default system prompt.
    #[arg(long)]
    system_prompt: Option<String>,
    /// An environment URL to act on instead of the rollout's own environment.
    #[arg(long)]
    tool_server_url: Option<String>,
    /// Ask for token log-probabilities.
    #[arg(long)]
    log_prob: bool,
    /// Summarize older tool history every N model turns (`summarize_every_n_turns`).
    #[arg(long)]
    summarize_every: Option<u32>,
    /// Exchanges kept verbatim when summarizing.
    #[arg(long)]
    context_stride: Option<u32>,
    /// Provider of the model playing the simulated people (`user_model_config`).
    #[arg(long)]
    user_provider: Option<String>,
    /// Model playing the simulated people.
    #[arg(long)]
    user_model: Option<String>,
    /// Endpoint of the simulated people's model.
    #[arg(long)]
    user_base_url: Option<String>,
    /// Key of the simulated people's model.
    #[arg(long, env = "RL_GYM_USER_MODEL_API_KEY", hide_env_values = true)]
    user_api_key: Option<String>,
    /// Provider of the rubric judge (`judge_model_config`).
    #[arg(long)]
    judge_provider: Option<String>,
    /// Model of the rubric judge.
    #[arg(long)]
    judge_model: Option<String>,
    /// Endpoint of the rubric judge.
    #[arg(long)]
    judge_base_url: Option<String>,
    /// Key of the rubric judge.
    #[arg(long, env = "RL_GYM_JUDGE_MODEL_API_KEY", hide_env_values = true)]
    judge_api_key: Option<String>,
    #[command(flatten)]
    budget: BudgetArgs,
    /// Share of tool calls that fail in band (`tool_faults.error_rate`, 0–1).
    #[arg(long)]
    fault_rate: Option<f64>,
    /// Milliseconds added to every tool call (`tool_faults.latency_ms`).
    #[arg(long)]
    fault_latency_ms: Option<u64>,
    /// The seed that decides which calls fail (`tool_faults.seed`).
    #[arg(long)]
    fault_seed: Option<u64>,
    /// Launch nothing: print the server's estimate of the run's tokens and cost.
    #[arg(long, conflicts_with = "wait")]
    dry_run: bool,
    /// Then watch the run as `runs watch` does (and exit as it does).
    #[arg(long)]
    wait: bool,
}

pub async fn run(client: &Client, json: bool, command: RunsCommand) -> Result<(), ClientError> {
    match command {
        RunsCommand::Launch(args) => launch(client, json, &args).await,
        RunsCommand::List {
            scenario,
            source,
            limit,
            offset,
        } => {
            let mut query: Vec<(&str, String)> = Vec::new();
            query.extend(scenario.map(|s| ("scenario_id", s)));
            query.extend(source.map(|s| ("source", s)));
            query.extend(limit.map(|n| ("limit", n.to_string())));
            query.extend(offset.map(|n| ("offset", n.to_string())));
            let page = client
                .json(client.request(Method::GET, "/runs").query(&query))
                .await?;
            if json {
                print_json(&page);
            } else {
                print_run_list(&page);
            }
            Ok(())
        }
        RunsCommand::Show { run_id } => {
            let status = client.get(&run_path(&run_id)).await?;
            if json {
                print_json(&status);
            } else {
                print_run(&status);
            }
            Ok(())
        }
        RunsCommand::Watch { run_id } => follow(client, json, &run_id).await,
        RunsCommand::Resume { run_id, budget } => {
            let mut body = Map::new();
            set_fields(&mut body, "budget", budget.fields())?;
            let status = client
                .json(
                    client
                        .request(Method::POST, &format!("{}/resume", run_path(&run_id)))
                        .json(&body),
                )
                .await?;
            if json {
                print_json(&status);
            } else {
                println!("run {run_id} resumed");
                print_run(&status);
            }
            Ok(())
        }
        RunsCommand::Fork {
            run_id,
            rollout_id,
            at_step,
            count,
            wait,
        } => {
            let mut body = Map::new();
            set(&mut body, "at_step", Some(Value::from(at_step)));
            set(&mut body, "count", count.map(Value::from));
            let path = format!("{}/rollouts/{rollout_id}/fork", run_path(&run_id));
            let launched = client
                .json(client.request(Method::POST, &path).json(&body))
                .await?;
            let fork_id = launched["run_id"].as_str().unwrap_or_default().to_string();
            if json && !wait {
                print_json(&launched);
            } else if !json {
                println!(
                    "forked {rollout_id} after step {at_step} into run {fork_id}: {} rollout(s)",
                    cell(&launched["run_status"]["total"])
                );
            }
            if wait {
                follow(client, json, &fork_id).await
            } else {
                Ok(())
            }
        }
        RunsCommand::Reverify { run_id, overrides } => {
            let mut body = Map::new();
            if let Some(path) = overrides {
                body.insert(
                    "task_overrides".into(),
                    Value::Object(read_json_object(&path)?),
                );
            }
            let answer = client
                .json(
                    client
                        .request(Method::POST, &format!("{}/reverify", run_path(&run_id)))
                        .json(&body),
                )
                .await?;
            if json {
                print_json(&answer);
            } else {
                println!("{:<40} {:>9} {:>9}", "ROLLOUT", "OLD", "NEW");
                for r in items(&answer["rollouts"]) {
                    println!(
                        "{:<40} {:>9} {:>9}",
                        cell(&r["rollout_id"]),
                        cell(&r["old_score"]),
                        cell(&r["new_score"])
                    );
                }
            }
            Ok(())
        }
        RunsCommand::Cancel { run_id } => {
            let answer = client
                .json(client.request(Method::POST, &format!("{}/cancel", run_path(&run_id))))
                .await?;
            if json {
                print_json(&answer);
            } else {
                println!(
                    "cancel requested for run {run_id}: {} pending rollout(s) cancelled; \
                     running ones stop after their current step",
                    cell(&answer["cancelled_rollouts"])
                );
            }
            Ok(())
        }
        RunsCommand::Delete { run_id, yes } => {
            if !yes && !confirm(&run_id)? {
                return Err(ClientError::Usage(format!("run {run_id} not deleted")));
            }
            let answer = client
                .json(client.request(Method::DELETE, &run_path(&run_id)))
                .await?;
            if json {
                print_json(&answer);
            } else {
                println!(
                    "deleted run {run_id} and its {} rollout(s)",
                    cell(&answer["deleted_rollouts"])
                );
            }
            Ok(())
        }
        RunsCommand::Export {
            run_id,
            format,
            min_score,
            output,
        } => export(client, &run_id, format, min_score, output.as_deref()).await,
    }
}

fn run_path(run_id: &str) -> String {
    format!("/runs/{run_id}")
}

async fn launch(client: &Client, json: bool, args: &LaunchArgs) -> Result<(), ClientError> {
    let body = launch_body(args)?;
    if args.dry_run {
        let answer = client
            .json(
                client
                    .request(Method::POST, "/runs")
                    .query(&[("dry_run", "true")])
                    .json(&body),
            )
            .await?;
        if json {
            print_json(&answer);
        } else {
            let estimate = &answer["estimate"];
            println!(
                "dry run: {} rollout(s), about {} tokens, {} USD (from {} past rollouts)",
                cell(&answer["rollouts"]),
                cell(&estimate["total_tokens"]),
                cell(&estimate["cost_usd"]),
                cell(&estimate["based_on_rollouts"])
            );
            if let Some(note) = estimate["note"].as_str() {
                println!("{note}");
            }
        }
        return Ok(());
    }
    let launched = client
        .json(client.request(Method::POST, "/runs").json(&body))
        .await?;
    let run_id = launched["run_id"].as_str().unwrap_or_default().to_string();
    if json && !args.wait {
        print_json(&launched);
    } else if !json {
        let status = &launched["run_status"];
        println!(
            "launched run {run_id}: {} rollout(s) of {} on {}",
            cell(&status["total"]),
            render::model(&status["model_config"]),
            cell(&status["scenario_id"]),
        );
    }
    if args.wait {
        follow(client, json, &run_id).await
    } else {
        Ok(())
    }
}

/// The launch body: the file's object (or an empty one) with every given flag set.
fn launch_body(args: &LaunchArgs) -> Result<Value, ClientError> {
    let mut body = match &args.file {
        Some(path) => read_json_object(path)?,
        None => Map::new(),
    };
    let some = |v: &Option<String>| v.clone().map(Value::from);
    set(&mut body, "scenario_id", some(&args.scenario));
    if !args.tasks.is_empty() {
        set(&mut body, "task_ids", Some(json!(args.tasks)));
    }
    set(&mut body, "rollout_count", args.rollouts.map(Value::from));
    set(
        &mut body,
        "max_parallel",
        args.max_parallel.map(Value::from),
    );
    set(&mut body, "run_name", some(&args.run_name));
    set(&mut body, "source", some(&args.source));
    let model = [
        ("provider", some(&args.provider)),
        ("model", some(&args.model)),
        ("base_url", some(&args.base_url)),
        ("api_key", some(&args.api_key)),
        ("temperature", args.temperature.map(Value::from)),
        ("max_steps", args.max_steps.map(Value::from)),
        ("system_prompt", some(&args.system_prompt)),
        ("tool_server_url", some(&args.tool_server_url)),
        ("log_prob", args.log_prob.then_some(Value::Bool(true))),
        (
            "summarize_every_n_turns",
            args.summarize_every.map(Value::from),
        ),
        ("context_stride", args.context_stride.map(Value::from)),
    ];
    set_fields(&mut body, "model_config", model)?;
    let user = [
        ("provider", some(&args.user_provider)),
        ("model", some(&args.user_model)),
        ("base_url", some(&args.user_base_url)),
        ("api_key", some(&args.user_api_key)),
    ];
    set_fields(&mut body, "user_model_config", user)?;
    let judge = [
        ("provider", some(&args.judge_provider)),
        ("model", some(&args.judge_model)),
        ("base_url", some(&args.judge_base_url)),
        ("api_key", some(&args.judge_api_key)),
    ];
    set_fields(&mut body, "judge_model_config", judge)?;
    set_fields(&mut body, "budget", args.budget.fields())?;
    let faults = [
        ("error_rate", args.fault_rate.map(Value::from)),
        ("latency_ms", args.fault_latency_ms.map(Value::from)),
        ("seed", args.fault_seed.map(Value::from)),
    ];
    set_fields(&mut body, "tool_faults", faults)?;
    Ok(Value::Object(body))
}

fn read_json_object(path: &Path) -> Result<Map<String, Value>, ClientError> {
    let usage = |why: String| ClientError::Usage(format!("--file {}: {why}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| usage(e.to_string()))?;
    match serde_json::from_str(&text) {
        Ok(Value::Object(body)) => Ok(body),
        Ok(_) => Err(usage("not a JSON object".to_string())),
        Err(e) => Err(usage(format!("not JSON ({e})"))),
    }
}

fn set(body: &mut Map<String, Value>, field: &str, value: Option<Value>) {
    if let Some(value) = value {
        body.insert(field.to_string(), value);
    }
}

/// Sets the given fields of the object `field` (a ModelConfig, the budget, the
/// faults), keeping the file's others.
fn set_fields<const N: usize>(
    body: &mut Map<String, Value>,
    field: &str,
    values: [(&str, Option<Value>); N],
) -> Result<(), ClientError> {
    if values.iter().all(|(_, v)| v.is_none()) {
        return Ok(());
    }
    let config = body
        .entry(field)
        .or_insert_with(|| Value::Object(Map::new()));
    if config.is_null() {
        *config = Value::Object(Map::new());
    }
    let Some(config) = config.as_object_mut() else {
        return Err(ClientError::Usage(format!(
            "--file: {field} is not a JSON object, so flags cannot set its fields"
        )));
    };
    for (name, value) in values {
        set(config, name, value);
    }
    Ok(())
}

/// `runs watch` and `runs launch --wait`: the final status as JSON, or a summary
/// line; the exit code from the outcome.
async fn follow(client: &Client, json: bool, run_id: &str) -> Result<(), ClientError> {
    let status = watch::watch(client, run_id, json).await?;
    if json {
        print_json(&status);
    }
    let outcome = watch::outcome(&status);
    if let (false, Ok(summary)) = (json, &outcome) {
        println!("{summary}");
    }
    outcome.map(|_| ())
}

/// Asks on the terminal; without one, there is nobody to ask.
fn confirm(run_id: &str) -> Result<bool, ClientError> {
    if !std::io::stdin().is_terminal() {
        return Err(ClientError::Usage(format!(
            "refusing to delete run {run_id} without confirmation: pass --yes"
        )));
    }
    eprint!("Delete run {run_id} and all its rollouts? [y/N] ");
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| ClientError::Io(format!("cannot read the answer: {e}")))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// Copies the export to stdout or a file chunk by chunk, never holding it whole.
async fn export(
    client: &Client,
    run_id: &str,
    format: ExportFormat,
    min_score: Option<f64>,
    output: Option<&Path>,
) -> Result<(), ClientError> {
    let format = format
        .to_possible_value()
        .expect("every format has a name")
        .get_name()
        .to_string();
    let mut query = vec![("format", format)];
    query.extend(min_score.map(|s| ("min_score", s.to_string())));
    let request = client
        .request(Method::GET, &format!("{}/export", run_path(run_id)))
        .query(&query);
    let mut response = client.send(request).await?;
    let io = |what: &str, e: std::io::Error| ClientError::Io(format!("{what}: {e}"));
    let mut sink: Box<dyn Write> = match output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|e| io(&path.display().to_string(), e))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut lines = 0usize;
    while let Some(chunk) = response.chunk().await.map_err(|e| client.unreachable(&e))? {
        lines += chunk.iter().filter(|&&b| b == b'\n').count();
        sink.write_all(&chunk).map_err(|e| io("write", e))?;
    }
    sink.flush().map_err(|e| io("write", e))?;
    if let Some(path) = output {
        eprintln!("wrote {lines} line(s) to {}", path.display());
    }
    Ok(())
}

fn print_run_list(page: &Value) {
    let runs = items(&page["runs"]);
    let rows = runs.iter().map(|run| {
        vec![
            cell(&run["run_id"]),
            cell(&run["scenario_id"]),
            render::model(&run["model_config"]),
            cell(&run["status"]),
            cell(&run["total"]),
            cell(&run["completed"]),
            cell(&run["failed"]),
            cell(&run["cancelled"]),
            cell(&run["created_at"]),
        ]
    });
    println!(
        "{}",
        render::table(
            &[
                "RUN",
                "SCENARIO",
                "MODEL",
                "STATUS",
                "TOTAL",
                "COMPLETED",
                "FAILED",
                "CANCELLED",
                "CREATED",
            ],
            rows,
        )
    );
    println!("{} of {} run(s)", runs.len(), cell(&page["total"]));
}

fn print_run(status: &Value) {
    let fields = [
        ("run", cell(&status["run_id"])),
        ("status", cell(&status["status"])),
        ("scenario", cell(&status["scenario_id"])),
        ("model", render::model(&status["model_config"])),
        (
            "rollouts",
            format!(
                "{} total: {} pending, {} in progress, {} completed, {} failed, {} cancelled",
                cell(&status["total"]),
                cell(&status["pending"]),
                cell(&status["in_progress"]),
                cell(&status["completed"]),
                cell(&status["failed"]),
                cell(&status["cancelled"]),
            ),
        ),
        ("tokens", cell(&status["usage"]["total_tokens"])),
        ("created", cell(&status["created_at"])),
        ("finished", cell(&status["finished_at"])),
    ];
    for (name, value) in fields {
        println!("{name:<9} {value}");
    }
    let rollouts = items(&status["rollouts"]);
    let rows = rollouts.iter().map(|r| {
        vec![
            cell(&r["rollout_id"]),
            cell(&r["task_id"]),
            cell(&r["status"]),
            cell(&r["steps"]),
            render::score(&r["score"]),
            cell(&r["error"]),
        ]
    });
    println!();
    println!(
        "{}",
        render::table(
            &["ROLLOUT", "TASK", "STATUS", "STEPS", "SCORE", "ERROR"],
            rows
        )
    );
}
