//! `rl-gym replay`: opens the log (which verifies every record's checksum), decodes
//! every event, rebuilds every view and summarises them. Two replays of the same log
//! print the same summary. `--execute RUN_ID` re-executes a run instead ([`execute`]).

pub mod execute;

use std::path::Path;

use serde::Serialize;

use crate::projections::{self, ProjectionError, Views};
use crate::store::file::{CheckedRecords, FileStore, FileStoreOptions};
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

/// One pass over the embedded log: recovery hands each batch of records it has
/// checked, still in the segment it read, to a thread that folds them into the views,
/// so the log is read once, nothing is copied, and checking and folding share the two
/// cores.
pub async fn replay(data_dir: &Path) -> Result<ReplaySummary, ReplayError> {
    if !data_dir.join("log").is_dir() {
        return Err(ReplayError::Missing(data_dir.display().to_string()));
    }
    let (batches, to_fold) = std::sync::mpsc::sync_channel::<CheckedRecords>(4);
    let fold = std::thread::spawn(move || {
        let mut views = Views::default();
        for batch in to_fold {
            for record in batch.iter() {
                let record = record.map_err(StoreError::Corrupt)?;
                let fact = projections::decode_fact_at(
                    record.position,
                    record.event_type,
                    record.schema_version,
                    record.data,
                )?;
                views.apply(record.position, &fact);
            }
        }
        Ok::<_, ProjectionError>(views)
    });
    // A fold that stopped (an event that does not decode) drops its receiver: the
    // batches after it are not sent, and its error is reported below.
    let opened = FileStore::open_visiting(
        data_dir,
        FileStoreOptions::default(),
        Some(&mut |batch| {
            let _ = batches.send(batch);
        }),
    );
    drop(batches);
    let folded = fold
        .join()
        .map_err(|_| StoreError::Io(std::io::Error::other("the thread folding the views died")));
    let (store, report) = opened?;
    store.close().await;
    Ok(summary_of(&folded??, report.truncated_bytes))
}

async fn summarize(
    store: &dyn EventStore,
    truncated_bytes: u64,
) -> Result<ReplaySummary, ReplayError> {
    let views = projections::rebuild(store).await?;
    Ok(summary_of(&views, truncated_bytes))
}

fn summary_of(views: &Views, truncated_bytes: u64) -> ReplaySummary {
    ReplaySummary {
        events: views.next_position(),
        runs: views.run_count(),
        rollouts: views.rollout_count(),
        truncated_bytes,
        checksum: views.checksum(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{EventData, ExpectedState};

    #[tokio::test]
    async fn one_pass_over_the_log_gives_the_views_a_rebuild_gives() {
        let golden = crate::projections::tests::golden_store().await;
        let dir = tempfile::tempdir().expect("dir");
        let (store, _) = FileStore::open(dir.path()).expect("open");
        let events = golden.read_all(0, usize::MAX).await.expect("read");
        for e in &events {
            let data = EventData {
                id: e.id,
                event_type: e.event_type.clone(),
                schema_version: e.schema_version,
                time: e.time,
                data: e.data.clone(),
            };
            store
                .append(&e.stream, ExpectedState::Any, vec![data])
                .await
                .expect("append");
        }
        store.close().await;
        drop(store);
        let replayed = replay(dir.path()).await.expect("replay");
        let rebuilt = projections::rebuild(&golden).await.expect("rebuild");
        assert_eq!(replayed, summary_of(&rebuilt, 0));
        assert_eq!(replayed.events, events.len() as u64);
        assert!(replayed.rollouts > 0);
    }
}
