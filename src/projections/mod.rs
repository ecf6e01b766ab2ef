//! The read side. Views are built only from events: at start-up by replaying the whole
//! log, then by following it live. Handlers read them through [`Projections`], and a
//! handler that has just appended waits for its own event to be applied before it
//! answers (read-your-writes).

mod views;

use std::sync::Arc;

use parking_lot::RwLock;
use tokio::sync::watch;

use crate::domain::events::{DecodeError, Event};
use crate::store::{subscribe_all, EventStore, RecordedEvent, StoreError};

pub use views::{RolloutView, RunPage, RunView, StatusChange, StatusCounts, ToolCallView, Views};

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("event at position {position} does not decode: {source}")]
    Decode { position: u64, source: DecodeError },
}

/// Decodes a recorded event into the domain's type.
pub fn decode(recorded: &RecordedEvent) -> Result<Event, ProjectionError> {
    Event::decode(
        &recorded.event_type,
        recorded.schema_version,
        &recorded.data,
    )
    .map_err(|source| ProjectionError::Decode {
        position: recorded.position,
        source,
    })
}

/// Replays the whole log into fresh views: what start-up and `rl-gym replay` do.
pub async fn rebuild(store: &dyn EventStore) -> Result<Views, ProjectionError> {
    const PAGE: usize = 4096;
    let mut views = Views::default();
    loop {
        let page = store.read_all(views.next_position(), PAGE).await?;
        if page.is_empty() {
            return Ok(views);
        }
        for recorded in &page {
            views.apply(recorded.position, &decode(recorded)?);
        }
    }
}

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
            loop {
                let recorded = match subscription.next().await {
                    Ok(recorded) => recorded,
                    Err(StoreError::Closed) => return,
                    Err(error) => {
                        tracing::error!(%error, "projection subscription failed; views stop here");
                        return;
                    }
                };
                match decode(&recorded) {
                    Ok(event) => shared.write().apply(recorded.position, &event),
                    Err(error) => {
                        tracing::error!(%error, "undecodable event; views stop here");
                        return;
                    }
                }
                let _ = tx.send(recorded.position + 1);
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
