//! `MemoryStore`: the whole log in a `Vec`, for tests and tools that need a store
//! without a disk.
//!
//! It follows exactly the rules of the file backend because both decide through
//! [`Index::check`]; one mutex makes check, record and broadcast a single step, so live
//! events go out in position order.

use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::broadcast;

use super::index::{Decision, Index};
use super::{
    normalize_time, AppendResult, EventData, EventStore, ExpectedState, RecordedEvent, StoreError,
};

/// How many live events a slow subscriber may fall behind before it is told it lagged
/// (it then catches up from the log).
const LIVE_CAPACITY: usize = 4096;

struct Inner {
    index: Index,
    events: Vec<Arc<RecordedEvent>>,
}

/// An in-memory [`EventStore`].
pub struct MemoryStore {
    inner: Mutex<Inner>,
    live: broadcast::Sender<Arc<RecordedEvent>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        Self {
            inner: Mutex::new(Inner {
                index: Index::new(),
                events: Vec::new(),
            }),
            live,
        }
    }
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedState,
        events: Vec<EventData>,
    ) -> Result<AppendResult, StoreError> {
        let ids: Vec<_> = events.iter().map(|e| e.id).collect();
        let mut inner = self.inner.lock();
        match inner.index.check(stream, expected, &ids) {
            Decision::Refused(e) => Err(e),
            Decision::AlreadyWritten(result) => Ok(result),
            Decision::Write {
                first_revision,
                first_position,
            } => {
                inner.index.record(stream, &ids);
                let n = events.len() as u64;
                for (i, e) in events.into_iter().enumerate() {
                    let event = Arc::new(RecordedEvent {
                        id: e.id,
                        stream: stream.to_owned(),
                        revision: first_revision + i as u64,
                        position: first_position + i as u64,
                        event_type: e.event_type,
                        schema_version: e.schema_version,
                        time: normalize_time(e.time),
                        data: e.data,
                    });
                    inner.events.push(event.clone());
                    // No receiver is not an error: nobody is listening right now.
                    let _ = self.live.send(event);
                }
                Ok(AppendResult {
                    next_expected_revision: first_revision + n - 1,
                    position: first_position + n - 1,
                })
            }
        }
    }

    async fn read_stream(
        &self,
        stream: &str,
        from_revision: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let inner = self.inner.lock();
        Ok(inner
            .index
            .stream_positions(stream, from_revision)
            .iter()
            .map(|&p| RecordedEvent::clone(&inner.events[p as usize]))
            .collect())
    }

    async fn read_all(&self, from: u64, max: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let inner = self.inner.lock();
        let from = usize::try_from(from)
            .unwrap_or(usize::MAX)
            .min(inner.events.len());
        Ok(inner.events[from..]
            .iter()
            .take(max)
            .map(|e| RecordedEvent::clone(e))
            .collect())
    }

    fn next_position(&self) -> u64 {
        self.inner.lock().index.next_position()
    }

    fn live(&self) -> broadcast::Receiver<Arc<RecordedEvent>> {
        self.live.subscribe()
    }
}
