use std::process::ExitCode;

use clap::Parser;

use rl_gym::cli::{Cli, Command};
use rl_gym::config::{Overrides, Settings};
use rl_gym::startup::Application;
use rl_gym::store::file::FileStoreOptions;
use rl_gym::{client, replay, telemetry};

#[actix_web::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            bind,
            data_dir,
            store,
            node_id,
            config,
            scenarios_dir,
            accept_data_loss,
        } => {
            let overrides = Overrides {
                bind,
                data_dir,
                store,
                node_id,
                scenarios_dir,
                api_tokens: Overrides::tokens_from_env(),
            };
            let settings = match Settings::load(config.as_deref(), overrides) {
                Ok(settings) => settings,
                Err(error) => {
                    eprintln!("rl-gym: {error}");
                    return ExitCode::from(2);
                }
            };
            telemetry::init(settings.log_format, &settings.log_level);
            let store_options = FileStoreOptions {
                accept_data_loss,
                ..FileStoreOptions::default()
            };
            let app = match Application::build_with(settings, store_options).await {
                Ok(app) => app,
                Err(error) => {
                    tracing::error!(%error, "rl-gym could not start");
                    eprintln!("rl-gym: {error}");
                    return ExitCode::FAILURE;
                }
            };
            // Tests and scripts read the bound address from this line.
            println!("rl-gym listening on http://{}", app.address());
            app.stop_on_signals();
            match app.run_until_stopped().await {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("rl-gym: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Replay {
            data_dir: Some(data_dir),
            execute: Some(run_id),
            scenarios_dir,
            ..
        } => {
            let scenarios_dir = match scenarios_dir {
                Some(dir) => dir,
                None => Settings::defaults().resolved_scenarios_dir(),
            };
            match replay::execute::execute(&data_dir, &scenarios_dir, &run_id).await {
                Ok(executed) => {
                    println!("rollouts: {}", executed.rollouts);
                    println!("not_started: {}", executed.not_started);
                    println!("tool_calls: {}", executed.tool_calls);
                    println!("npc_replies: {}", executed.npc_replies);
                    println!("verdicts: {}", executed.verdicts);
                    println!("diverged: {}", executed.divergences.len());
                    match executed.divergences.first() {
                        None => ExitCode::SUCCESS,
                        Some(first) => {
                            eprintln!("rl-gym replay: {first}");
                            ExitCode::FAILURE
                        }
                    }
                }
                Err(error) => {
                    eprintln!("rl-gym replay: {error}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Replay {
            data_dir, store, ..
        } => match replay::replay_from(data_dir.as_deref(), store.as_deref()).await {
            Ok(summary) => {
                println!("events: {}", summary.events);
                println!("runs: {}", summary.runs);
                println!("rollouts: {}", summary.rollouts);
                println!("truncated_bytes: {}", summary.truncated_bytes);
                println!("checksum: {}", summary.checksum);
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("rl-gym replay: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Runs(args) => client::runs(args).await,
        Command::Scenarios(args) => client::scenarios(args).await,
        Command::Load { command } => rl_gym::load::run(command).await,
    }
}
