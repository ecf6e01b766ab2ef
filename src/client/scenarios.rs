//! `rl-gym scenarios …`: what can be run, and (`validate`, offline) whether a
//! scenario folder an author wrote will load and score as promised.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Subcommand};
use serde_json::Value;

use crate::scenarios::validate::{self as check, DEFAULT_SEEDS};

use super::http::Client;
use super::render::{self, cell, items, print_json};
use super::ClientError;

#[derive(Debug, Subcommand)]
pub enum ScenariosCommand {
    /// The scenarios the server offers.
    List,
    /// A scenario's tasks.
    Tasks { scenario_id: String },
    /// Check a scenarios folder (or one scenario folder) on this machine, without a
    /// server: every schema error with its file and JSON path, then per task and seed
    /// that the reference solution earns 1.0, noop earns 0.0 and a seed replays alike
    /// (docs/scenarios.md). Exit 0 only if everything passed.
    Validate(ValidateArgs),
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// A folder of `<scenario_id>/` folders (like config/scenarios), or one of them.
    pub dir: PathBuf,
    /// Environment seeds to play each task on.
    #[arg(long, default_value_t = DEFAULT_SEEDS)]
    pub seeds: u64,
}

/// `rl-gym scenarios validate`: prints the report; exit 0 only when all passed, 1
/// otherwise (a missing folder is a problem of the report, not a usage error).
pub fn validate(args: &ValidateArgs) -> ExitCode {
    let started = Instant::now();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let report = check::validate(&args.dir, args.seeds, threads);
    print!("{}", report.render());
    eprintln!(
        "validated {} in {:.1}s",
        args.dir.display(),
        started.elapsed().as_secs_f64()
    );
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

pub async fn run(
    client: &Client,
    json: bool,
    command: ScenariosCommand,
) -> Result<(), ClientError> {
    match command {
        ScenariosCommand::List => {
            let scenarios = client.get("/scenarios").await?;
            if json {
                print_json(&scenarios);
                return Ok(());
            }
            let rows = items(&scenarios).iter().map(|s| {
                vec![
                    cell(&s["scenario_id"]),
                    cell(&s["name"]),
                    cell(&s["num_tasks"]),
                    cell(&s["num_npcs"]),
                    names(&s["tool_servers"]),
                ]
            });
            println!(
                "{}",
                render::table(&["SCENARIO", "NAME", "TASKS", "NPCS", "TOOL SERVERS"], rows)
            );
        }
        ScenariosCommand::Tasks { scenario_id } => {
            let answer = client
                .get(&format!("/scenarios/{scenario_id}/tasks"))
                .await?;
            if json {
                print_json(&answer);
                return Ok(());
            }
            let rows = items(&answer["tasks"]).iter().map(|t| {
                vec![
                    cell(&t["task_id"]),
                    cell(&t["name"]),
                    cell(&t["category"]),
                    cell(&t["difficulty"]),
                    names(&t["tool_servers"]),
                ]
            });
            println!(
                "{}",
                render::table(
                    &["TASK", "NAME", "CATEGORY", "DIFFICULTY", "TOOL SERVERS"],
                    rows
                )
            );
        }
        // Dispatched before a client is made (it needs no server): see `super::scenarios`.
        ScenariosCommand::Validate(_) => {
            return Err(ClientError::Usage(
                "`scenarios validate` runs locally".into(),
            ))
        }
    }
    Ok(())
}

/// The `name`s of a list of tool servers, comma-separated.
fn names(servers: &Value) -> String {
    items(servers)
        .iter()
        .map(|s| cell(&s["name"]))
        .collect::<Vec<_>>()
        .join(",")
}
