//! Catch-up-then-live subscriptions over the whole log, for any backend.
//!
//! Projections and actors must see every event exactly once and in position order,
//! whether it was written before they started or while they run. The subscription
//! listens to the live broadcast *before* it reads history, so nothing can fall in the
//! gap between the two; it drops live events it already read from the log; and when the
//! broadcast says it fell behind (`Lagged`), it goes back to reading the log from the
//! last position it delivered. The log is the truth, the broadcast only a shortcut.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

use super::{EventStore, RecordedEvent, StoreError};

/// Events read from the log per `read_all` call while catching up.
const PAGE: usize = 1024;

/// Every event from a position on, history first, then live. See the module docs.
pub struct Subscription {
    store: Arc<dyn EventStore>,
    live: broadcast::Receiver<Arc<RecordedEvent>>,
    /// The position of the next event to deliver.
    next: u64,
    /// Events read from the log, not yet delivered.
    page: VecDeque<RecordedEvent>,
    /// True while the log has nothing past `next` and we follow the broadcast.
    following: bool,
}

impl Subscription {
    pub(crate) fn new(store: Arc<dyn EventStore>, from: u64) -> Self {
        // First the receiver, then history: an event appended in between is in both,
        // and the position check below drops the copy.
        let live = store.live();
        Self {
            store,
            live,
            next: from,
            page: VecDeque::new(),
            following: false,
        }
    }

    /// While catching up with nothing read at hand: reads the next page of the log, or,
    /// when the log has nothing more, turns to following the broadcast. Never waits
    /// for a live event, so a caller may hold a shared turn across it.
    pub async fn fill_page(&mut self) -> Result<(), StoreError> {
        if self.following || !self.page.is_empty() {
            return Ok(());
        }
        let page = self.store.read_all(self.next, PAGE).await?;
        if page.is_empty() {
            self.following = true;
        } else {
            self.page.extend(page);
        }
        Ok(())
    }

    /// Whether it is still reading the log (history, or after falling behind) rather
    /// than following the broadcast.
    pub fn catching_up(&self) -> bool {
        !self.following || !self.page.is_empty()
    }

    /// The position of the next event this subscription will deliver.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// The next event in position order, waiting for it if need be. Fails only when
    /// the log cannot be read or the store is closed.
    pub async fn next(&mut self) -> Result<Arc<RecordedEvent>, StoreError> {
        loop {
            if let Some(event) = self.page.pop_front() {
                self.next = event.position + 1;
                return Ok(Arc::new(event));
            }
            if !self.following {
                self.fill_page().await?;
                continue;
            }
            match self.live.recv().await {
                Ok(event) if event.position < self.next => continue,
                Ok(event) if event.position == self.next => {
                    self.next += 1;
                    return Ok(event);
                }
                // A hole means we missed something: the log has it.
                Ok(_) | Err(RecvError::Lagged(_)) => {
                    tracing::debug!(
                        position = self.next,
                        "subscription fell behind; reading the log"
                    );
                    self.following = false;
                }
                Err(RecvError::Closed) => return Err(StoreError::Closed),
            }
        }
    }

    /// The next event if it is at hand (read already, or waiting in the broadcast),
    /// without waiting or reading the log: lets a follower take a run of events at
    /// once. `None` says nothing is at hand now, never that the log has ended.
    pub fn try_next(&mut self) -> Option<Arc<RecordedEvent>> {
        if let Some(event) = self.page.pop_front() {
            self.next = event.position + 1;
            return Some(Arc::new(event));
        }
        if !self.following {
            return None;
        }
        loop {
            match self.live.try_recv() {
                Ok(event) if event.position < self.next => continue,
                Ok(event) if event.position == self.next => {
                    self.next += 1;
                    return Some(event);
                }
                // A hole or a lag: `next` reads the log from here.
                Ok(_) | Err(TryRecvError::Lagged(_)) => {
                    self.following = false;
                    return None;
                }
                Err(TryRecvError::Empty) | Err(TryRecvError::Closed) => return None,
            }
        }
    }

    /// The subscription as a `futures::Stream`, ending after the first error.
    pub fn into_stream(self) -> impl Stream<Item = Result<Arc<RecordedEvent>, StoreError>> {
        futures::stream::unfold(Some(self), |sub| async move {
            let mut sub = sub?;
            match sub.next().await {
                Ok(event) => Some((Ok(event), Some(sub))),
                Err(e) => Some((Err(e), None)),
            }
        })
    }
}
