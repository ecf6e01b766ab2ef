//! `rl-gym load write-log`: a large log of oracle rollouts written straight into the
//! embedded store (many appends in flight, so group commit fills each fsync), for
//! timing `rl-gym replay` on it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use chrono::{Duration, Utc};
use clap::Args;
use futures::StreamExt;

use super::synth::Synth;
use crate::config::Settings;
use crate::scenarios::Catalog;
use crate::store::file::FileStore;
use crate::store::{EventStore, ExpectedState};

#[derive(Debug, Clone, Args)]
pub struct WriteLogArgs {
    /// Data dir of the log (created; it must not hold a log already).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Events to write, at least (whole rollouts are written).
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    #[arg(long, default_value = "hr")]
    pub scenario: String,
    #[arg(long, default_value_t = 100)]
    pub rollouts_per_run: usize,
}

pub async fn run(args: WriteLogArgs) -> Result<(), String> {
    if args.data_dir.join("log").exists() {
        return Err(format!("{} already holds a log", args.data_dir.display()));
    }
    let catalog =
        Catalog::load(&Settings::defaults().resolved_scenarios_dir()).map_err(|e| e.to_string())?;
    let scenario = catalog
        .get(&args.scenario)
        .ok_or_else(|| format!("no scenario {}", args.scenario))?;
    let synth = Arc::new(Synth::new(scenario)?);
    let per_run = 1.0 + synth.events_per_rollout() * args.rollouts_per_run as f64;
    let runs = (args.events as f64 / per_run).ceil() as usize;
    let (store, _) = FileStore::open(&args.data_dir).map_err(|e| e.to_string())?;
    let store = Arc::new(store);
    let started = Instant::now();
    let at = Utc::now();
    let per_run_rollouts = args.rollouts_per_run;
    futures::stream::iter(0..runs)
        .map(|r| {
            let synth = synth.clone();
            let store = store.clone();
            async move {
                // Generated off the runtime's threads: it is all CPU.
                let run = tokio::task::spawn_blocking(move || {
                    synth.run(per_run_rollouts, at + Duration::seconds(r as i64))
                })
                .await
                .map_err(|e| e.to_string())?;
                let mut appends = run.appends().into_iter();
                let (stream, launch) = appends.next().ok_or("empty run")?;
                store
                    .append(&stream, ExpectedState::NoStream, launch)
                    .await
                    .map_err(|e| e.to_string())?;
                let results: Vec<_> = futures::stream::iter(appends)
                    .map(|(stream, events)| {
                        let store = store.clone();
                        async move { store.append(&stream, ExpectedState::NoStream, events).await }
                    })
                    .buffer_unordered(64)
                    .collect()
                    .await;
                for r in results {
                    r.map_err(|e| e.to_string())?;
                }
                Ok::<_, String>(())
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let events = store.next_position();
    store.close().await;
    let secs = started.elapsed().as_secs_f64();
    let bytes: u64 = std::fs::read_dir(args.data_dir.join("log"))
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!("events: {events}");
    println!("runs: {runs}");
    println!("bytes: {bytes}");
    println!("secs: {secs:.1}");
    println!("events_per_sec: {:.0}", events as f64 / secs);
    Ok(())
}
