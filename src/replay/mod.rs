//! `rl-gym replay`: opens the log (which verifies every record's checksum), decodes
//! every event, rebuilds every view and summarises them. Two replays of the same log
//! print the same summary. `--execute RUN_ID` re-executes a run instead ([`execute`]).

pub mod execute;

use std::path::Path;

use serde::Serialize;

use crate::projections::{self, ProjectionError};
use crate::store::file::FileStore;
use crate::store::{EventStore, StoreError};

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ReplaySummary {
    pub events: u64,
    pub runs: usize,
    pub rollouts: usize,
    pub truncated_bytes: u64,
    pub checksum: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no event log in {0}")]
    Missing(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    #[error("{0}")]
    Execute(String),
}

/// Replays the KurrentDB node at `store` when given (`--store`), else the embedded log
/// in `data_dir`.
pub async fn replay_from(
    data_dir: Option<&Path>,
    store: Option<&str>,
) -> Result<ReplaySummary, ReplayError> {
    match (store.filter(|s| !s.is_empty()), data_dir) {
        (Some(url), _) => {
            let store = crate::store::connect_kurrent(url).await?;
            summarize(store.as_ref(), 0).await
        }
        (None, Some(dir)) => replay(dir).await,
        (None, None) => Err(ReplayError::Missing("(no --data-dir or --store)".into())),
    }
}

pub async fn replay(data_dir: &Path) -> Result<ReplaySummary, ReplayError> {
    if !data_dir.join("log").is_dir() {
        return Err(ReplayError::Missing(data_dir.display().to_string()));
    }
    let (store, report) = FileStore::open(data_dir)?;
    let summary = summarize(&store, report.truncated_bytes).await;
    store.close().await;
    summary
}

async fn summarize(
    store: &dyn EventStore,
    truncated_bytes: u64,
) -> Result<ReplaySummary, ReplayError> {
    let views = projections::rebuild(store).await?;
    Ok(ReplaySummary {
        events: views.next_position(),
        runs: views.run_count(),
        rollouts: views.rollout_count(),
        truncated_bytes,
        checksum: views.checksum(),
    })
}
