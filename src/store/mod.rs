//! The event store: the single source of truth of rl-gym.
//!
//! Everything the service knows is an event appended here before it is acknowledged
//! or acted on. The semantics are KurrentDB's, so that every backend agrees:
//! per-stream revisions from 0 without gaps, an expected stream state on append,
//! caller-chosen event ids that make a retried append a no-op, one global position
//! across all streams, and catch-up-then-live subscriptions.
//!
//! Backends: [`file::FileStore`] (the embedded, crash-safe default),
//! [`memory::MemoryStore`] (tests) and, with the cargo feature `eventstore`,
//! `kurrent::KurrentStore` (a KurrentDB node). [`open`] picks one from a URL. The store knows envelopes and bytes only: it never
//! looks inside `data`.

pub mod file;
pub mod index;
#[cfg(feature = "eventstore")]
pub mod kurrent;
pub mod memory;
pub mod subscription;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use subscription::Subscription;

/// An event as the caller proposes it. The id is the caller's: appending the same
/// ids again (a retry) does not write them twice.
#[derive(Debug, Clone, PartialEq)]
pub struct EventData {
    pub id: Uuid,
    pub event_type: String,
    pub schema_version: u16,
    /// Kept to the microsecond: every backend stores it so (see [`normalize_time`]).
    pub time: DateTime<Utc>,
    /// The event's payload, JSON in practice; the store treats it as bytes.
    pub data: Vec<u8>,
}

/// An event as the log holds it: the caller's envelope plus where it landed.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    pub id: Uuid,
    pub stream: String,
    /// Revision within its stream, from 0 without gaps.
    pub revision: u64,
    /// Global position across every stream, from 0 without gaps.
    pub position: u64,
    pub event_type: String,
    pub schema_version: u16,
    pub time: DateTime<Utc>,
    pub data: Vec<u8>,
}

/// What the caller expects of a stream when appending to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedState {
    Any,
    NoStream,
    StreamExists,
    /// The stream's last revision must be exactly this.
    Exact(u64),
}

/// Where an append (or the original of a retried one) landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    /// Revision of the last event written in the stream.
    pub next_expected_revision: u64,
    /// Global position of the last event written.
    pub position: u64,
}

/// The current revision of a stream, as reported in a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CurrentRevision {
    NoStream,
    Current(u64),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stream is not in the expected state: a refusal, not a failure.
    #[error(
        "wrong expected version on stream {stream}: expected {expected:?}, current {current:?}"
    )]
    WrongExpectedVersion {
        stream: String,
        expected: ExpectedState,
        current: CurrentRevision,
    },
    /// Some, but not all, of the ids of an append were already written: the caller
    /// reused ids for different events.
    #[error("event ids of this append were partly written before on stream {stream}")]
    IdempotencyConflict { stream: String },
    #[error("invalid append: {0}")]
    InvalidAppend(String),
    /// The log could not be written or read: the append was not acknowledged.
    #[error("event log I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// A record before the tail failed its checksum or could not be decoded.
    #[error("event log is damaged: {0}")]
    Corrupt(String),
    /// Events the log had acknowledged are gone (a segment cut short or deleted): the
    /// log is not opened unless the caller accepts the loss.
    #[error("acknowledged events are missing from the event log: {0}")]
    DataLoss(String),
    /// Another process holds the data directory's lock.
    #[error("{0}")]
    Locked(String),
    #[error("event store is closed")]
    Closed,
    /// A store reached over the network could not be reached, retries included.
    #[error("event store unavailable: {0}")]
    Unavailable(String),
}

/// Whether the store can reach where its events live; an embedded store always can.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection {
    pub connected: bool,
    /// Times the connection was lost and found again since the store opened.
    pub reconnects: u64,
}

/// The event store contract shared by every backend.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends `events` to `stream` atomically if the stream is in the `expected`
    /// state; durable (on disk for the file backend) before it returns. Appending ids
    /// that were already written to the stream in the same order returns the original
    /// result without writing anything.
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedState,
        events: Vec<EventData>,
    ) -> Result<AppendResult, StoreError>;

    /// Events of `stream` from `from_revision` on, in revision order; empty when the
    /// stream does not exist.
    async fn read_stream(
        &self,
        stream: &str,
        from_revision: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Up to `max` events from global position `from` on, in position order.
    async fn read_all(&self, from: u64, max: usize) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The position the next appended event will get (= number of events in the log).
    fn next_position(&self) -> u64;

    /// A receiver of every event appended from now on, in position order.
    fn live(&self) -> tokio::sync::broadcast::Receiver<Arc<RecordedEvent>>;

    /// The state of the connection, for `/healthz` and the metrics.
    fn connection(&self) -> Connection {
        Connection {
            connected: true,
            reconnects: 0,
        }
    }
}

/// The time as every backend keeps it: truncated to whole microseconds, so that an
/// event reads back the same from memory, from the file log and after a reopen.
pub fn normalize_time(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(time.timestamp_micros()).unwrap_or(time)
}

/// Whether `store` (the `store` setting, `--store`, `RL_GYM_STORE`) names a KurrentDB
/// node rather than the embedded log.
pub fn is_kurrent_url(store: &str) -> bool {
    ["kurrentdb", "kurrent", "esdb"].iter().any(|scheme| {
        store.starts_with(&format!("{scheme}://"))
            || store.starts_with(&format!("{scheme}+discover://"))
    })
}

/// Connects to the KurrentDB node at `url`; inside the Tokio runtime the store will
/// live on. A build without the `eventstore` feature says how to get one.
pub async fn connect_kurrent(url: &str) -> Result<Arc<dyn EventStore>, StoreError> {
    #[cfg(feature = "eventstore")]
    {
        Ok(Arc::new(kurrent::KurrentStore::connect(url).await?))
    }
    #[cfg(not(feature = "eventstore"))]
    {
        Err(StoreError::Unavailable(format!(
            "{url}: this build has no KurrentDB backend; build it with `cargo build --release --features eventstore`"
        )))
    }
}

/// Catch up from `from`, then follow live appends, with nothing missed or repeated.
pub fn subscribe_all(store: Arc<dyn EventStore>, from: u64) -> Subscription {
    Subscription::new(store, from)
}
