//! `rl-gym scenarios …`: what can be run.

use clap::Subcommand;
use serde_json::Value;

use super::http::Client;
use super::render::{self, cell, items, print_json};
use super::ClientError;

#[derive(Debug, Subcommand)]
pub enum ScenariosCommand {
    /// The scenarios the server offers.
    List,
    /// A scenario's tasks.
    Tasks { scenario_id: String },
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
