//! The command line: `serve`, `replay` and `load`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "rl-gym",
    version,
    about = "Runs LLM agents against simulated enterprise environments and scores them"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (the embedded event log under --data-dir).
    Serve {
        /// Address to listen on.
        #[arg(long, env = "RL_GYM_BIND")]
        bind: Option<SocketAddr>,
        /// Directory of the event log.
        #[arg(long, env = "RL_GYM_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Keep the events on a KurrentDB node instead of the embedded log, e.g.
        /// kurrentdb://127.0.0.1:2113?tls=false (a build with --features eventstore).
        #[arg(long, env = "RL_GYM_STORE")]
        store: Option<String>,
        /// This node's name in run leases when several nodes share one store
        /// (default: hostname and a random suffix, new at each start).
        #[arg(long, env = "RL_GYM_NODE_ID")]
        node_id: Option<String>,
        /// A TOML file overriding config/default.toml.
        #[arg(long, env = "RL_GYM_CONFIG")]
        config: Option<PathBuf>,
        /// Folder of scenario templates.
        #[arg(long, env = "RL_GYM_SCENARIOS_DIR")]
        scenarios_dir: Option<PathBuf>,
        /// Start even though the event log lost acknowledged events (a segment cut
        /// short or deleted); without it such a log stops the start. The loss is
        /// logged and the log goes on from what is left.
        #[arg(long)]
        accept_data_loss: bool,
    },
    /// Re-read the whole log, verify every record, rebuild every view and print a
    /// summary with a checksum of the views. Read-only: a torn tail is reported, not
    /// cut; refused while a server holds the data directory.
    Replay {
        #[arg(long, env = "RL_GYM_DATA_DIR", required_unless_present = "store")]
        data_dir: Option<PathBuf>,
        /// Replay the events on this KurrentDB node instead of an embedded log.
        #[arg(long, env = "RL_GYM_STORE", conflicts_with = "execute")]
        store: Option<String>,
        /// Instead: run this run's rollouts again with every model and NPC answer
        /// served from the log, and check each tool result and verdict comes out the
        /// same (exit 0), or print where the first rollout diverges (exit 1).
        #[arg(long, value_name = "RUN_ID", requires = "data_dir")]
        execute: Option<String>,
        /// Folder of scenario templates (for --execute).
        #[arg(long, env = "RL_GYM_SCENARIOS_DIR")]
        scenarios_dir: Option<PathBuf>,
    },
    /// Launch, list, show, watch, cancel, delete and export runs on a server.
    Runs(crate::client::RunsArgs),
    /// The scenarios and tasks a server offers.
    Scenarios(crate::client::ScenariosArgs),
    /// Measure the service under load (see benches/README.md).
    Load {
        #[command(subcommand)]
        command: crate::load::LoadCommand,
    },
}
