//! The command-line client (`rl-gym runs …`, `rl-gym scenarios …`): the HTTP API from
//! a shell, with tables for people, `--json` for scripts and exit codes a script can
//! trust. It speaks only HTTP, so it drives a local or a remote server alike.
//!
//! Exit codes: 0 done; 1 the server refused (its `detail` on stderr) or a watched run
//! ended with a failed or cancelled rollout; 2 a usage error (clap's own, an unreadable
//! `--file`, a delete without confirmation); 3 the server cannot be reached.

mod http;
mod render;
mod runs;
mod scenarios;
mod watch;

use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

pub use runs::RunsCommand;
pub use scenarios::ScenariosCommand;

use http::Client;

/// Where the server is and how to talk to it; accepted after any subcommand.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The rl-gym server's URL.
    #[arg(
        long,
        env = "RL_GYM_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub server: String,
    /// API token, sent as `Authorization: Bearer`; prefer the variable, which stays
    /// out of shell history. Of a comma-separated list (as the server reads it) the
    /// first is sent.
    #[arg(long, env = "RL_GYM_API_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Print the server's JSON instead of tables (for scripts).
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(subcommand)]
    pub command: RunsCommand,
}

#[derive(Debug, Args)]
pub struct ScenariosArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(subcommand)]
    pub command: ScenariosCommand,
}

/// Why a command did not succeed; each kind has its own exit code.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the rl-gym server at {url}: {reason}; start it with `rl-gym serve` \
         or set --server / RL_GYM_URL"
    )]
    Unreachable { url: String, reason: String },
    #[error("{}", render::refusal(*status, code.as_deref(), detail))]
    Refused {
        status: u16,
        code: Option<String>,
        detail: Value,
    },
    #[error("unexpected answer from {url}: {reason}")]
    BadAnswer { url: String, reason: String },
    /// A watched run that ended with a failed or cancelled rollout.
    #[error("{0}")]
    RunUnsuccessful(String),
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Usage(String),
}

impl ClientError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Unreachable { .. } => 3,
            ClientError::Usage(_) => 2,
            ClientError::Refused { .. }
            | ClientError::BadAnswer { .. }
            | ClientError::RunUnsuccessful(_)
            | ClientError::Io(_) => 1,
        }
    }
}

/// `rl-gym runs …`
pub async fn runs(args: RunsArgs) -> ExitCode {
    die_quietly_on_closed_stdout();
    let result = match Client::new(&args.server) {
        Ok(client) => runs::run(&client, args.server.json, args.command).await,
        Err(error) => Err(error),
    };
    exit(result)
}

/// `rl-gym scenarios …`
pub async fn scenarios(args: ScenariosArgs) -> ExitCode {
    die_quietly_on_closed_stdout();
    if let ScenariosCommand::Validate(validate) = &args.command {
        return scenarios::validate(validate);
    }
    let result = match Client::new(&args.server) {
        Ok(client) => scenarios::run(&client, args.server.json, args.command).await,
        Err(error) => Err(error),
    };
    exit(result)
}

/// `rl-gym runs list | head` must end like any Unix tool when `head` is done, not
/// panic in `println!`: Rust ignores SIGPIPE, so its default is restored. Sockets
/// are unaffected (Rust sends with `MSG_NOSIGNAL`).
fn die_quietly_on_closed_stdout() {
    // SAFETY: setting a signal's disposition to its default has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn exit(result: Result<(), ClientError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("rl-gym: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
