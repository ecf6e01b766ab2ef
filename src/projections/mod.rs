//! The read side. Views are built only from events: at start-up by replaying the whole
//! log, then by following it live. Handlers read them through [`Projections`], and a
//! handler that has just appended waits for its own event to be applied before it
//! answers (read-your-writes).

mod content;
mod views;

use std::sync::Arc;

use parking_lot::RwLock;
use tokio::sync::watch;

use crate::domain::events::{DecodeError, Event};
use crate::store::{subscribe_all, EventStore, RecordedEvent, StoreError};

pub use content::RolloutContent;
pub use views::{
    RolloutView, RunOwner, RunPage, RunView, StatusChange, StatusCounts, ToolCallView,
    VerdictRecord, Views,
};

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
///
/// Decoding is most of the work, so it runs on the blocking pool, each page in two
/// halves at once, while the page before it is applied here: reading, decoding and
/// applying overlap. Applying stays in position order, so the views are the same.
pub async fn rebuild(store: &dyn EventStore) -> Result<Views, ProjectionError> {
    const PAGE: usize = 4096;
    let mut views = Views::default();
    let mut page = fetch(store, 0, PAGE).await?;
    while !page.is_empty() {
        let from = page.last().map_or(0, |(position, _)| position + 1);
        let (next, ()) = futures::join!(fetch(store, from, PAGE), async {
            for (position, event) in &page {
                views.apply(*position, event);
            }
        });
        page = next?;
    }
    Ok(views)
}

/// Up to `max` events from `from` on, decoded.
async fn fetch(
    store: &dyn EventStore,
    from: u64,
    max: usize,
) -> Result<Vec<(u64, Event)>, ProjectionError> {
    let mut first = store.read_all(from, max).await?;
    let second = first.split_off(first.len() / 2);
    let decode_all = |page: Vec<RecordedEvent>| {
        tokio::task::spawn_blocking(move || {
            page.iter()
                .map(|r| decode(r).map(|event| (r.position, event)))
                .collect::<Result<Vec<_>, _>>()
        })
    };
    let (a, b) = futures::join!(decode_all(first), decode_all(second));
    let died = |e: tokio::task::JoinError| {
        ProjectionError::Store(StoreError::Io(std::io::Error::other(format!(
            "a decoding task died: {e}"
        ))))
    };
    let mut decoded = a.map_err(died)??;
    decoded.extend(b.map_err(died)??);
    Ok(decoded)
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
                    match decode(&recorded) {
                        Ok(event) => decoded.push((recorded.position, event)),
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
                    for (position, event) in decoded.drain(..) {
                        views.apply(position, &event);
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
