//! `rl-gym replay`: opens the log (which verifies every record's checksum), decodes
//! every event, rebuilds every view and summarises them. Two replays of the same log
//! print the same summary. `--execute RUN_ID` re-executes a run instead ([`execute`]).
//!
//! Replay is read-only ([`FileStore::open_read_only`]): it reports a torn tail but
//! never cuts it (it may be a write the server has not finished), and it is refused
//! while a server holds the data directory.

pub mod execute;

use std::path::Path;

use serde::Serialize;

use crate::projections::{self, Fact, ProjectionError, Views};
use crate::store::file::{CheckedRecords, FileStore, RecordView};
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

/// A batch on its way to the fold: as checked, or already decoded by the thread that
/// checked it.
enum Batch {
    Checked(CheckedRecords),
    Decoded(Vec<(u64, Fact)>),
}

fn decode_record(record: Result<RecordView<'_>, String>) -> Result<(u64, Fact), ProjectionError> {
    let record = record.map_err(StoreError::Corrupt)?;
    let fact = projections::decode_fact_at(
        record.position,
        record.event_type,
        record.schema_version,
        record.data,
    )?;
    Ok((record.position, fact))
}

fn decode_batch(batch: &CheckedRecords) -> Result<Vec<(u64, Fact)>, ProjectionError> {
    let mut facts = Vec::with_capacity(batch.len());
    for record in batch.iter() {
        facts.push(decode_record(record)?);
    }
    Ok(facts)
}

/// One pass over the embedded log: recovery hands each batch of records it has
/// checked, still in the segment it read, to a thread that folds them into the views,
/// so the log is read once and nothing is copied. Decoding is most of folding: when
/// the fold falls behind (its queue is full), the checking thread decodes the batch
/// itself, so that the two cores share the work whichever side is slower.
pub async fn replay(data_dir: &Path) -> Result<ReplaySummary, ReplayError> {
    if !data_dir.join("log").is_dir() {
        return Err(ReplayError::Missing(data_dir.display().to_string()));
    }
    let (batches, to_fold) = std::sync::mpsc::sync_channel::<Batch>(4);
    let fold = std::thread::spawn(move || {
        let mut views = Views::default();
        for batch in to_fold {
            match batch {
                Batch::Checked(records) => {
                    for record in records.iter() {
                        let (position, fact) = decode_record(record)?;
                        views.apply(position, &fact);
                    }
                }
                Batch::Decoded(facts) => {
                    for (position, fact) in &facts {
                        views.apply(*position, fact);
                    }
                }
            }
        }
        Ok::<_, ProjectionError>(views)
    });
    // A fold that stopped (an event that does not decode) drops its receiver, and a
    // batch this thread could not decode stops the sending: the batches after either
    // are not folded, and the error is reported below.
    let mut undecodable = None;
    let opened = FileStore::open_read_only(
        data_dir,
        Some(&mut |records| {
            if undecodable.is_some() {
                return;
            }
            let full = match batches.try_send(Batch::Checked(records)) {
                Err(std::sync::mpsc::TrySendError::Full(Batch::Checked(records))) => records,
                _ => return,
            };
            match decode_batch(&full) {
                Ok(facts) => {
                    let _ = batches.send(Batch::Decoded(facts));
                }
                Err(error) => undecodable = Some(error),
            }
        }),
    );
    drop(batches);
    let folded = fold
        .join()
        .map_err(|_| StoreError::Io(std::io::Error::other("the thread folding the views died")));
    let (store, report) = opened?;
    store.close().await;
    if let Some(error) = undecodable {
        return Err(error.into());
    }
    let views = folded??;
    let summary = summary_of(&views, report.truncated_bytes);
    // Freeing every view is a twentieth of a replay and nobody waits for it.
    std::thread::spawn(move || drop(views));
    Ok(summary)
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
    use crate::store::file::FileStoreOptions;
    use crate::store::memory::MemoryStore;
    use crate::store::{EventData, ExpectedState};

    async fn append_one(
        store: &FileStore,
        stream: String,
        data: EventData,
    ) -> Result<(), StoreError> {
        store
            .append(&stream, ExpectedState::Any, vec![data])
            .await
            .map(drop)
    }

    /// The golden log `copies` times over (each copy in streams of its own) in a file
    /// log cut into segments of `segment_size` bytes, and the same events in memory.
    async fn golden_copies(copies: usize, segment_size: u64) -> (tempfile::TempDir, MemoryStore) {
        let golden = crate::projections::tests::golden_store().await;
        let events = golden.read_all(0, usize::MAX).await.expect("read");
        let dir = tempfile::tempdir().expect("dir");
        let options = FileStoreOptions {
            segment_size,
            ..FileStoreOptions::default()
        };
        let (store, _) = FileStore::open_with(dir.path(), options).expect("open");
        // Twenty copies' appends at a time share a write and a sync; they reach the
        // writer in the order they are polled, so each stream stays in order.
        for first in (0..copies).step_by(20) {
            let mut appends = Vec::new();
            for copy in first..(first + 20).min(copies) {
                for e in &events {
                    let data = EventData {
                        id: e.id,
                        event_type: e.event_type.clone(),
                        schema_version: e.schema_version,
                        time: e.time,
                        data: e.data.clone(),
                    };
                    appends.push(append_one(&store, format!("{}-{copy}", e.stream), data));
                }
            }
            for appended in futures::future::join_all(appends).await {
                appended.expect("append");
            }
        }
        let memory = MemoryStore::new();
        for e in store.read_all(0, usize::MAX).await.expect("read back") {
            let data = EventData {
                id: e.id,
                event_type: e.event_type,
                schema_version: e.schema_version,
                time: e.time,
                data: e.data,
            };
            memory
                .append(&e.stream, ExpectedState::Any, vec![data])
                .await
                .expect("append");
        }
        store.close().await;
        (dir, memory)
    }

    #[tokio::test]
    async fn one_pass_over_the_log_gives_the_views_a_rebuild_gives() {
        let (dir, memory) = golden_copies(1, FileStoreOptions::default().segment_size).await;
        let replayed = replay(dir.path()).await.expect("replay");
        let rebuilt = projections::rebuild(&memory).await.expect("rebuild");
        assert_eq!(replayed, summary_of(&rebuilt, 0));
        assert_eq!(replayed.events, memory.next_position());
        assert!(replayed.rollouts > 0);
    }

    #[tokio::test]
    async fn batches_decoded_by_either_thread_are_folded_in_order() {
        // Many batches, so that the fold falls behind and the checking thread decodes
        // some of them; whichever thread decodes a batch, the views are the same. Small
        // segments end batches early too.
        let (dir, memory) = golden_copies(1_000, 1 << 20).await;
        assert!(memory.next_position() > 8 * 4096);
        assert!(std::fs::read_dir(dir.path().join("log")).unwrap().count() > 3);
        let replayed = replay(dir.path()).await.expect("replay");
        let rebuilt = projections::rebuild(&memory).await.expect("rebuild");
        assert_eq!(replayed, summary_of(&rebuilt, 0));
    }
}
