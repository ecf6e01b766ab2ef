//! The read side. Views are built only from events: at start-up by replaying the whole
//! log, then by following it live. Handlers read them through [`Projections`], and a
//! handler that has just appended waits for its own event to be applied before it
//! answers (read-your-writes).

mod content;
mod rfc3339;
mod views;

use std::sync::Arc;

use parking_lot::RwLock;
use tokio::sync::watch;

use crate::domain::events::{DecodeError, Event, CURRENT_SCHEMA_VERSION};
use crate::store::{subscribe_all, EventStore, RecordedEvent, StoreError};

pub use content::{ContentCache, RolloutContent};
pub use views::{
    Fact, RolloutView, RunOwner, RunPage, RunView, StatusChange, StatusCounts, ToolCallView,
    VerdictRecord, Views,
};
use views::{FactKind, StepKind};

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("event at position {position} does not decode: {source}")]
    Decode { position: u64, source: DecodeError },
}

/// A recorded event decoded (by the journal), its position named if it does not.
pub fn decode(recorded: &RecordedEvent) -> Result<Event, ProjectionError> {
    decode_at(
        recorded.position,
        &recorded.event_type,
        recorded.schema_version,
        &recorded.data,
    )
}

fn decode_at(
    position: u64,
    event_type: &str,
    schema_version: u16,
    data: &[u8],
) -> Result<Event, ProjectionError> {
    crate::journal::decode(event_type, schema_version, data)
        .map_err(|source| ProjectionError::Decode { position, source })
}

/// Decodes a recorded event as the views fold it: a rollout's step of today's schema
/// without the fields only its content needs (skipped, not decoded), anything else
/// whole.
pub fn decode_fact(recorded: &RecordedEvent) -> Result<Fact, ProjectionError> {
    decode_fact_at(
        recorded.position,
        &recorded.event_type,
        recorded.schema_version,
        &recorded.data,
    )
}

/// [`decode_fact`] of an event's parts, for a reader that holds them borrowed (the
/// one pass of `rl-gym replay` over the segments).
pub fn decode_fact_at(
    position: u64,
    event_type: &str,
    schema_version: u16,
    data: &[u8],
) -> Result<Fact, ProjectionError> {
    match StepKind::of(event_type) {
        Some(kind) if schema_version == CURRENT_SCHEMA_VERSION => {
            serde_json::from_slice::<views::RolloutStep>(data)
                .and_then(|step| step.checked(kind))
                .map(|step| Fact(FactKind::Step(kind, step)))
                .map_err(|source| ProjectionError::Decode {
                    position,
                    source: DecodeError::Invalid {
                        event_type: event_type.to_owned(),
                        version: schema_version,
                        source,
                    },
                })
        }
        _ => decode_at(position, event_type, schema_version, data).map(Fact::from),
    }
}

/// Replays the whole log into fresh views: what start-up and `rl-gym replay` do.
///
/// The next page is read (and its records checked) on the blocking pool while this
/// one is decoded and applied here. Since the views skip what steps carry, decoding
/// is light, and decoding here measured faster than in two halves on the pool, whose
/// threads shared the two cores with this one and handed over what they decoded to
/// be freed here (benches/README.md).
pub async fn rebuild(store: &dyn EventStore) -> Result<Views, ProjectionError> {
    const PAGE: usize = 4096;
    let mut views = Views::default();
    let mut page = store.read_all(0, PAGE).await?;
    while !page.is_empty() {
        let from = page.last().map_or(0, |r| r.position + 1);
        let (next, applied) = futures::join!(store.read_all(from, PAGE), async {
            for recorded in &page {
                views.apply(recorded.position, &decode_fact(recorded)?);
            }
            Ok::<_, ProjectionError>(())
        });
        applied?;
        page = next?;
    }
    Ok(views)
}

/// Events the follower applies under one write lock at most.
const FOLLOW_BATCH: usize = 256;

/// Shared, live views and how far they have got.
#[derive(Clone)]
pub struct Projections {
    views: Arc<RwLock<Views>>,
    applied: watch::Receiver<u64>,
}

impl Projections {
    /// Starts following the log from where `views` stopped.
    pub fn follow(store: Arc<dyn EventStore>, views: Views) -> Projections {
        let from = views.next_position();
        let views = Arc::new(RwLock::new(views));
        let (tx, applied) = watch::channel(from);
        let shared = views.clone();
        tokio::spawn(async move {
            let mut subscription = subscribe_all(store, from);
            let mut decoded = Vec::new();
            loop {
                let first = match subscription.next().await {
                    Ok(recorded) => recorded,
                    Err(StoreError::Closed) => return,
                    Err(error) => {
                        tracing::error!(%error, "projection subscription failed; views stop here");
                        return;
                    }
                };
                // Every event at hand is decoded outside the lock, then applied under one
                // write lock: readers wait once per run of events, not once per event.
                let mut next = Some(first);
                let mut failed = None;
                while let Some(recorded) = next {
                    match decode_fact(&recorded) {
                        Ok(fact) => decoded.push((recorded.position, fact)),
                        Err(error) => {
                            failed = Some(error);
                            break;
                        }
                    }
                    next = if decoded.len() < FOLLOW_BATCH {
                        subscription.try_next()
                    } else {
                        None
                    };
                }
                if let Some(&(last, _)) = decoded.last() {
                    let mut views = shared.write();
                    for (position, fact) in decoded.drain(..) {
                        views.apply(position, &fact);
                    }
                    drop(views);
                    let _ = tx.send(last + 1);
                }
                if let Some(error) = failed {
                    tracing::error!(%error, "undecodable event; views stop here");
                    return;
                }
            }
        });
        Projections { views, applied }
    }

    pub fn read<R>(&self, f: impl FnOnce(&Views) -> R) -> R {
        f(&self.views.read())
    }

    /// Position of the next event to apply.
    pub fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Waits until the event at `position` has been applied.
    pub async fn wait_for(&self, position: u64) {
        let mut applied = self.applied.clone();
        let _ = applied.wait_for(|next| *next > position).await;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::Value;

    use super::*;
    use crate::store::memory::MemoryStore;
    use crate::store::{EventData, ExpectedState};

    /// The golden log appended as it was recorded.
    pub(crate) async fn golden_store() -> MemoryStore {
        let store = MemoryStore::new();
        let golden = concat!(env!("CARGO_MANIFEST_DIR"), "/events/golden/v1.jsonl");
        let text = std::fs::read_to_string(golden).expect("golden log");
        for (i, line) in text.lines().enumerate() {
            let line: Value = serde_json::from_str(line).expect("a JSON line");
            let event = EventData {
                id: uuid::Uuid::from_u128(i as u128 + 1),
                event_type: line["event_type"].as_str().expect("type").to_string(),
                schema_version: 1,
                time: serde_json::from_value(line["time"].clone()).expect("time"),
                data: serde_json::to_vec(&line["data"]).expect("data"),
            };
            let stream = line["stream"].as_str().expect("stream");
            store
                .append(stream, ExpectedState::Any, vec![event])
                .await
                .expect("append");
        }
        store
    }

    #[test]
    fn a_start_without_its_time_does_not_decode_and_other_steps_need_none() {
        let decode = |event_type: &str, data: &str| {
            decode_fact_at(7, event_type, CURRENT_SCHEMA_VERSION, data.as_bytes())
        };
        let started = r#"{"rollout_id":"rol_1","run_id":"run_1","task_id":"t","messages":[]}"#;
        assert!(matches!(
            decode("RolloutStarted", started),
            Err(ProjectionError::Decode { position: 7, .. })
        ));
        let tool = r#"{"rollout_id":"rol_1","step":1,"call_id":"c","tool_name":"x",
            "arguments":"{}","observation":"ok","is_error":false,"latency_ms":1.0,
            "called_at":"not read"}"#;
        assert!(decode("ToolCalled", tool).is_ok());
    }

    #[tokio::test]
    async fn steps_decoded_without_their_content_fold_to_the_same_views() {
        let store = golden_store().await;
        let light = rebuild(&store).await.expect("rebuild");
        let mut whole = Views::default();
        for recorded in store.read_all(0, usize::MAX).await.expect("read") {
            let fact = Fact::from(decode(&recorded).expect("decode"));
            whole.apply(recorded.position, &fact);
        }
        assert_eq!(light.checksum(), whole.checksum());
        let rollout = light.rollout("rol_a1").expect("rol_a1");
        assert_eq!(
            (
                rollout.steps,
                rollout.model_latency_ms,
                rollout.usage.total_tokens
            ),
            (2, 430.5, 480)
        );
        assert!(rollout.started_at.is_some());
    }
}
