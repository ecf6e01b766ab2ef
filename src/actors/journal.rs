//! Writing domain events to the log: deterministic event ids (so a retried append is
//! a no-op) and optimistic concurrency on every stream (so two writers can never both
//! extend one).

use crate::domain::events::{Event, CURRENT_SCHEMA_VERSION};
use crate::domain::ids::{event_id, rollout_stream};
use crate::domain::rollout::RolloutState;
use crate::store::{AppendResult, EventData, EventStore, ExpectedState, StoreError};

/// Appends `events` to `stream`, whose last revision must be `last_revision`
/// (`None`: the stream must not exist yet).
pub async fn append(
    store: &dyn EventStore,
    stream: &str,
    last_revision: Option<u64>,
    events: &[Event],
) -> Result<AppendResult, StoreError> {
    let first = last_revision.map_or(0, |r| r + 1);
    let data = events
        .iter()
        .enumerate()
        .map(|(i, event)| EventData {
            id: event_id(event.time(), stream, first + i as u64),
            event_type: event.event_type().to_string(),
            schema_version: CURRENT_SCHEMA_VERSION,
            time: event.time(),
            data: event.to_data(),
        })
        .collect();
    let expected = match last_revision {
        Some(revision) => ExpectedState::Exact(revision),
        None => ExpectedState::NoStream,
    };
    store.append(stream, expected, data).await
}

/// A rollout's events in order, each with its stream revision.
pub async fn rollout_events(
    store: &dyn EventStore,
    rollout_id: &str,
) -> Result<Vec<(u64, Event)>, StoreError> {
    store
        .read_stream(&rollout_stream(rollout_id), 0)
        .await?
        .into_iter()
        .map(|recorded| {
            Event::decode(
                &recorded.event_type,
                recorded.schema_version,
                &recorded.data,
            )
            .map(|event| (recorded.revision, event))
            .map_err(|e| StoreError::Corrupt(e.to_string()))
        })
        .collect()
}

/// Reads a rollout's stream and folds it.
pub async fn load_rollout(
    store: &dyn EventStore,
    rollout_id: &str,
) -> Result<RolloutState, StoreError> {
    let mut state = RolloutState::default();
    for (revision, event) in rollout_events(store, rollout_id).await? {
        state.evolve(&event, revision);
    }
    Ok(state)
}

/// Ends a rollout with `event` (failed or cancelled) unless it has already ended.
/// Returns whether the event was written.
pub async fn finish_rollout(
    store: &dyn EventStore,
    rollout_id: &str,
    event: Event,
) -> Result<bool, StoreError> {
    // A concurrent writer can only be the rollout's own loop finishing: retry once on
    // a conflict, then the fold tells whether it already ended.
    for _ in 0..3 {
        let state = load_rollout(store, rollout_id).await?;
        if state.status().is_terminal() {
            return Ok(false);
        }
        match append(
            store,
            &rollout_stream(rollout_id),
            state.revision,
            std::slice::from_ref(&event),
        )
        .await
        {
            Ok(_) => return Ok(true),
            Err(StoreError::WrongExpectedVersion { .. }) => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(false)
}
