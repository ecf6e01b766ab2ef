//! The one codec between the domain's events and the log's records, and the streams
//! read and written through it. Writing: deterministic event ids (so a retried append
//! is a no-op), today's schema version, and optimistic concurrency on every stream (so
//! two writers can never both extend one). Reading: [`decode`] is where every record
//! becomes an event (the actors' folds, the views, replay and the API's event stream),
//! so an upcaster for an older schema version has one place to go.

use crate::domain::budget::Spend;
use crate::domain::events::{
    DecodeError, Event, RunLaunched, ScheduledRollout, CURRENT_SCHEMA_VERSION,
};
use crate::domain::ids::{event_id, lease_stream, rollout_stream, run_stream};
use crate::domain::lease::LeaseState;
use crate::domain::rollout::RolloutState;
use crate::domain::run::RunState;
use crate::store::{AppendResult, EventData, EventStore, ExpectedState, RecordedEvent, StoreError};

/// Appends `events` to `stream`, whose last revision must be `last_revision`
/// (`None`: the stream must not exist yet).
pub async fn append(
    store: &dyn EventStore,
    stream: &str,
    last_revision: Option<u64>,
    events: &[Event],
) -> Result<AppendResult, StoreError> {
    let data = encode(stream, last_revision.map_or(0, |r| r + 1), events);
    let expected = match last_revision {
        Some(revision) => ExpectedState::Exact(revision),
        None => ExpectedState::NoStream,
    };
    store.append(stream, expected, data).await
}

/// Appends `events` to `stream` whatever its revision: for records no decision rests
/// on but their own (a continuous run's drawn group, a restart, an acknowledgement).
/// Their ids come from their payloads, which name fresh rollouts or a time, so a
/// retried append is still written once.
pub async fn append_any(
    store: &dyn EventStore,
    stream: &str,
    events: &[Event],
) -> Result<AppendResult, StoreError> {
    store
        .append(stream, ExpectedState::Any, encode(stream, 0, events))
        .await
}

/// `events` as an append to `stream` from revision `first` carries them, with their
/// deterministic ids.
pub fn encode(stream: &str, first: u64, events: &[Event]) -> Vec<EventData> {
    events
        .iter()
        .enumerate()
        .map(|(i, event)| {
            let data = event.to_data();
            EventData {
                id: event_id(event.time(), stream, first + i as u64, &data),
                event_type: event.event_type().to_string(),
                schema_version: CURRENT_SCHEMA_VERSION,
                time: event.time(),
                data,
            }
        })
        .collect()
}

/// The event a record holds, from its type, schema version and payload.
pub fn decode(event_type: &str, schema_version: u16, data: &[u8]) -> Result<Event, DecodeError> {
    Event::decode(event_type, schema_version, data)
}

/// The event a recorded event holds.
pub fn decode_record(recorded: &RecordedEvent) -> Result<Event, DecodeError> {
    decode(
        &recorded.event_type,
        recorded.schema_version,
        &recorded.data,
    )
}

/// Reads a stream from `from_revision` on and hands each event with its revision to
/// `fold`.
async fn fold_stream(
    store: &dyn EventStore,
    stream: &str,
    from_revision: u64,
    mut fold: impl FnMut(&Event, u64),
) -> Result<(), StoreError> {
    for recorded in store.read_stream(stream, from_revision).await? {
        let event = decode_record(&recorded).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        fold(&event, recorded.revision);
    }
    Ok(())
}

/// A rollout's events in order, each with its stream revision.
pub async fn rollout_events(
    store: &dyn EventStore,
    rollout_id: &str,
) -> Result<Vec<(u64, Event)>, StoreError> {
    let mut events = Vec::new();
    fold_stream(store, &rollout_stream(rollout_id), 0, |e, r| {
        events.push((r, e.clone()))
    })
    .await?;
    Ok(events)
}

/// Reads a rollout's stream and folds it.
pub async fn load_rollout(
    store: &dyn EventStore,
    rollout_id: &str,
) -> Result<RolloutState, StoreError> {
    let mut state = RolloutState::default();
    fold_stream(store, &rollout_stream(rollout_id), 0, |e, r| {
        state.evolve(e, r)
    })
    .await?;
    Ok(state)
}

/// Reads a run's stream and folds it.
pub async fn load_run(store: &dyn EventStore, run_id: &str) -> Result<RunState, StoreError> {
    let mut state = RunState::default();
    fold_stream(store, &run_stream(run_id), 0, |e, r| state.evolve(e, r)).await?;
    Ok(state)
}

/// Brings `state` up to date with the run's lease stream (reads only what it has
/// not seen).
pub async fn refresh_lease(
    store: &dyn EventStore,
    run_id: &str,
    state: &mut LeaseState,
) -> Result<(), StoreError> {
    let from = state.revision.map_or(0, |r| r + 1);
    fold_stream(store, &lease_stream(run_id), from, |e, r| {
        state.evolve(e, r)
    })
    .await
}

/// A run's rollouts that have not finished, and what all of them have spent, from
/// their streams (to pause, resume or cancel a run that has no actor).
pub async fn run_progress(
    store: &dyn EventStore,
    run: &RunLaunched,
) -> Result<(Vec<ScheduledRollout>, Spend), StoreError> {
    let mut unfinished = Vec::new();
    let mut spend = Spend::default();
    for rollout in &run.rollouts {
        let mut state = RolloutState::default();
        fold_stream(store, &rollout_stream(&rollout.rollout_id), 0, |e, r| {
            state.evolve(e, r);
            spend.add(e, run.prices.as_ref());
        })
        .await?;
        if !state.status().is_terminal() {
            unfinished.push(rollout.clone());
        }
    }
    Ok((unfinished, spend))
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
