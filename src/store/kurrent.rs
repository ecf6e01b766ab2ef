//! `KurrentStore`: the event store on a KurrentDB (or EventStoreDB ≥ 20.6.1) node,
//! through the official `kurrentdb` client. Built with the cargo feature `eventstore`.
//!
//! The mapping is one to one: our stream is a KurrentDB stream (behind an optional
//! namespace prefix), our event id is the event's id, our event type its type, our
//! schema version and recorded time its JSON metadata, our revision its stream
//! revision, and the expected state of an append is KurrentDB's.
//!
//! Two things KurrentDB does not give as our trait states them:
//! - Global positions: ours are dense (0, 1, 2, … without gaps; subscriptions rely on
//!   it), `$all` commit positions are byte offsets with system events between them. So
//!   the store keeps a translation: one follower task reads `$all` from the start on
//!   connect, then subscribes to it, and numbers our events in `$all` order in the
//!   shared [`Index`] (about 70 bytes per event). Every read answers in those numbers,
//!   an append returns once the follower has numbered its events, and the live
//!   broadcast comes from the follower, so it is in position order.
//! - Idempotency: KurrentDB answers a retry as the original only while the expected
//!   state still matches it. Our rule (a retry is answered as the original whatever
//!   the stream did since; reused ids mixed with new ones are a conflict) is decided
//!   by the same [`Index::check`] as the other backends, before the append goes out
//!   and again after a refusal, once the index has caught up with the server.
//!
//! Lost connections are retried with exponential backoff; the store reports whether
//! it is connected and how often it had to reconnect ([`EventStore::connection`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use chrono::{DateTime, Utc};
use kurrentdb::{
    AppendToStreamOptions, Client, ClientSettings, Position, ReadAllOptions, ReadEvent,
    ReadStreamOptions, StreamPosition, StreamState, SubscribeToAllOptions, SubscriptionEvent,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use super::index::{Decision, Index};
use super::{
    normalize_time, AppendResult, Connection, CurrentRevision, EventData, EventStore,
    ExpectedState, RecordedEvent, StoreError,
};

/// Live events a slow subscriber may fall behind before it reads the log instead.
const LIVE_CAPACITY: usize = 4096;
/// Events asked of the server per read.
const PAGE: usize = 1024;

/// How the store reaches its node.
#[derive(Debug, Clone)]
pub struct KurrentOptions {
    /// Prefix of every stream this store writes and reads, so that several services
    /// (or test runs) can share a node; events of other streams are not ours.
    pub namespace: String,
    /// Attempts of one call before the store reports itself unavailable.
    pub attempts: usize,
    /// The first backoff; each retry doubles it.
    pub first_backoff: Duration,
    /// How long an append waits for its events to be numbered (see the module docs).
    pub index_timeout: Duration,
}

impl Default for KurrentOptions {
    fn default() -> Self {
        KurrentOptions {
            namespace: String::new(),
            attempts: 6,
            first_backoff: Duration::from_millis(100),
            index_timeout: Duration::from_secs(30),
        }
    }
}

/// Our envelope fields KurrentDB has no place for, kept in the event's metadata.
#[derive(Serialize, Deserialize)]
struct Metadata {
    schema_version: u16,
    time: DateTime<Utc>,
}

struct State {
    index: Index,
    /// `$all` position of each of our positions, to start reads there.
    positions: Vec<Position>,
    /// The last `$all` event the follower saw, ours or not: where it resumes.
    seen: Option<Position>,
}

struct Shared {
    client: Client,
    options: KurrentOptions,
    state: Mutex<State>,
    /// Our next position, bumped after each numbered event; appends wait on it.
    numbered: watch::Sender<u64>,
    live: broadcast::Sender<Arc<RecordedEvent>>,
    connected: AtomicBool,
    reconnects: AtomicU64,
}

/// An [`EventStore`] on KurrentDB. See the module docs.
pub struct KurrentStore {
    shared: Arc<Shared>,
    follower: tokio::task::JoinHandle<()>,
}

impl Drop for KurrentStore {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

/// Installs the rustls crypto provider the client is built for, once per process:
/// with two providers compiled in (reqwest brings ring), rustls cannot pick one and
/// whoever builds a TLS config first would otherwise decide.
fn install_crypto_provider() {
    // An error only says a provider is installed already, which is all we need.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

impl KurrentStore {
    /// Connects to the node at `url` (`kurrentdb://host:2113?tls=false`, or `esdb://…`)
    /// and numbers every event already there. Must run inside the Tokio runtime the
    /// store will live on: the client spawns its connection task there.
    pub async fn connect(url: &str) -> Result<KurrentStore, StoreError> {
        Self::connect_with(url, KurrentOptions::default()).await
    }

    pub async fn connect_with(
        url: &str,
        options: KurrentOptions,
    ) -> Result<KurrentStore, StoreError> {
        let settings: ClientSettings = url
            .parse()
            .map_err(|e| StoreError::Unavailable(format!("invalid KurrentDB URL {url}: {e}")))?;
        install_crypto_provider();
        let client = Client::new(settings)
            .map_err(|e| StoreError::Unavailable(format!("KurrentDB client: {e}")))?;
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        let shared = Arc::new(Shared {
            client,
            options,
            state: Mutex::new(State {
                index: Index::new(),
                positions: Vec::new(),
                seen: None,
            }),
            numbered: watch::Sender::new(0),
            live,
            connected: AtomicBool::new(true),
            reconnects: AtomicU64::new(0),
        });
        shared.catch_up().await?;
        let follower = tokio::spawn(shared.clone().follow());
        Ok(KurrentStore { shared, follower })
    }
}

/// Failures worth another attempt: the node is unreachable, changing leader or slow.
fn transient(error: &kurrentdb::Error) -> bool {
    use kurrentdb::Error as E;
    match error {
        E::ConnectionClosed
        | E::GrpcConnectionError(_)
        | E::DeadlineExceeded
        | E::NotLeaderException(_) => true,
        // gRPC UNAVAILABLE, ABORTED, DEADLINE_EXCEEDED (by number: tonic is the
        // client's dependency, not ours).
        E::Grpc { code, .. } => matches!(*code as i32, 14 | 10 | 4),
        _ => false,
    }
}

fn unavailable(error: kurrentdb::Error) -> StoreError {
    StoreError::Unavailable(format!("KurrentDB: {error}"))
}

impl Shared {
    /// Runs `call` until it succeeds, fails for good, or the attempts run out; keeps
    /// the connection flag and the reconnect count up to date.
    async fn retrying<T, F, Fut>(&self, what: &str, call: F) -> Result<T, kurrentdb::Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, kurrentdb::Error>>,
    {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.options.first_backoff)
            .with_max_times(self.options.attempts.saturating_sub(1))
            .with_jitter();
        let result = call
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(transient)
            .notify(|error, wait| {
                self.disconnected();
                tracing::warn!(%error, ?wait, what, "KurrentDB unreachable; retrying");
            })
            .await;
        match &result {
            Err(error) if transient(error) => self.disconnected(),
            _ => self.reconnected(),
        }
        result
    }

    fn disconnected(&self) {
        self.connected.store(false, Ordering::Relaxed);
    }

    fn reconnected(&self) {
        if !self.connected.swap(true, Ordering::Relaxed) {
            self.reconnects.fetch_add(1, Ordering::Relaxed);
            tracing::info!("KurrentDB reachable again");
        }
    }

    fn ours<'a>(&self, stream: &'a str) -> Option<&'a str> {
        let name = stream.strip_prefix(self.options.namespace.as_str())?;
        (!name.is_empty() && !stream.starts_with('$')).then_some(name)
    }

    /// Our event from a KurrentDB one, with the position the caller numbered it.
    fn decode(
        &self,
        event: &kurrentdb::RecordedEvent,
        stream: &str,
        position: u64,
    ) -> RecordedEvent {
        let meta: Option<Metadata> = serde_json::from_slice(&event.custom_metadata).ok();
        RecordedEvent {
            id: event.id,
            stream: stream.to_owned(),
            revision: event.revision,
            position,
            event_type: event.event_type.clone(),
            // Written by someone else into our namespace: the node's own time.
            schema_version: meta.as_ref().map_or(1, |m| m.schema_version),
            time: normalize_time(meta.map_or(event.created, |m| m.time)),
            data: event.data.to_vec(),
        }
    }

    /// Numbers one `$all` event if it is ours and new, and broadcasts it.
    fn number(&self, event: &kurrentdb::RecordedEvent) {
        let mut state = self.state.lock();
        let at = (event.position.commit, event.position.prepare);
        if state.seen.is_some_and(|p| (p.commit, p.prepare) >= at) {
            return; // a resumed read or subscription handing back what we have
        }
        state.seen = Some(event.position);
        let Some(stream) = self.ours(event.stream_id()) else {
            return;
        };
        if event.event_type.starts_with('$') {
            return;
        }
        let (_, position) = state.index.record(stream, &[event.id]);
        state.positions.push(event.position);
        let recorded = Arc::new(self.decode(event, stream, position));
        // Under the lock, so live events go out in position order. No receiver is not
        // an error: nobody is listening right now.
        let _ = self.live.send(recorded);
        // After it: waiters take the state lock while they look at `numbered`.
        drop(state);
        self.numbered.send_replace(position + 1);
    }

    /// Reads `$all` from where the follower is to its end.
    async fn catch_up(&self) -> Result<(), StoreError> {
        loop {
            let from = self.state.lock().seen;
            let page = self
                .retrying("catch up", || self.read_all_page(from, PAGE))
                .await
                .map_err(unavailable)?;
            let full = page.len() == PAGE;
            for event in &page {
                self.number(event);
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// Up to `count` `$all` events from `from` on, or from the start. Whether `from`
    /// itself comes back differs between servers: callers skip what they have seen.
    async fn read_all_page(
        &self,
        from: Option<Position>,
        count: usize,
    ) -> Result<Vec<kurrentdb::RecordedEvent>, kurrentdb::Error> {
        let position = from.map_or(StreamPosition::Start, StreamPosition::Position);
        let options = ReadAllOptions::default()
            .forwards()
            .position(position)
            .max_count(count);
        let mut read = self.client.read_all(&options).await?;
        let mut events = Vec::new();
        while let Some(item) = read.next_read_event().await? {
            if let ReadEvent::Event(resolved) = item {
                if let Some(event) = resolved.event {
                    events.push(event);
                }
            }
        }
        Ok(events)
    }

    /// Follows `$all` live for as long as the store lives, resubscribing after where
    /// it was whenever the subscription breaks.
    async fn follow(self: Arc<Self>) {
        let mut wait = self.options.first_backoff;
        loop {
            let position = self
                .state
                .lock()
                .seen
                .map_or(StreamPosition::Start, StreamPosition::Position);
            let options = SubscribeToAllOptions::default().position(position);
            let mut subscription = self.client.subscribe_to_all(&options).await;
            loop {
                match subscription.next_subscription_event().await {
                    Ok(SubscriptionEvent::EventAppeared(resolved)) => {
                        self.reconnected();
                        wait = self.options.first_backoff;
                        if let Some(event) = resolved.event {
                            self.number(&event);
                        }
                    }
                    Ok(_) => self.reconnected(),
                    Err(error) => {
                        self.disconnected();
                        tracing::warn!(%error, ?wait, "KurrentDB subscription broke; resubscribing");
                        break;
                    }
                }
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(10));
        }
    }

    /// Waits until the follower has numbered `stream` up to `revision`.
    async fn numbered_up_to(&self, stream: &str, revision: u64) -> Result<(), StoreError> {
        let mut numbered = self.numbered.subscribe();
        let reached = || self.state.lock().index.next_revision(stream) > revision;
        tokio::time::timeout(
            self.options.index_timeout,
            numbered.wait_for(|_| reached()),
        )
        .await
        .map_err(|_| {
            StoreError::Unavailable(format!(
                "KurrentDB accepted an append to {stream} but its subscription did not deliver it within {:?}",
                self.options.index_timeout
            ))
        })?
        .map_err(|_| StoreError::Closed)?;
        Ok(())
    }

    fn result_of(&self, stream: &str, last: u64) -> AppendResult {
        let state = self.state.lock();
        AppendResult {
            next_expected_revision: last,
            position: state.index.stream_positions(stream, last)[0],
        }
    }
}

fn stream_state(expected: ExpectedState) -> StreamState {
    match expected {
        ExpectedState::Any => StreamState::Any,
        ExpectedState::NoStream => StreamState::NoStream,
        ExpectedState::StreamExists => StreamState::StreamExists,
        ExpectedState::Exact(revision) => StreamState::StreamRevision(revision),
    }
}

fn event_data(event: &EventData) -> Result<kurrentdb::EventData, StoreError> {
    let metadata = Metadata {
        schema_version: event.schema_version,
        time: normalize_time(event.time),
    };
    kurrentdb::EventData::binary(event.event_type.as_str(), event.data.clone().into())
        .id(event.id)
        .metadata_as_json(&metadata)
        .map_err(|e| StoreError::InvalidAppend(e.to_string()))
}

#[async_trait]
impl EventStore for KurrentStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedState,
        events: Vec<EventData>,
    ) -> Result<AppendResult, StoreError> {
        let s = &self.shared;
        let ids: Vec<_> = events.iter().map(|e| e.id).collect();
        // Our rules first: a retry, reused ids and empty appends never reach the node.
        // A refused expectation may be stale here; the node decides that.
        match s.state.lock().index.check(stream, expected, &ids) {
            Decision::AlreadyWritten(result) => return Ok(result),
            Decision::Refused(StoreError::WrongExpectedVersion { .. }) | Decision::Write { .. } => {
            }
            Decision::Refused(refusal) => return Err(refusal),
        }
        let name = format!("{}{stream}", s.options.namespace);
        let batch = events
            .iter()
            .map(event_data)
            .collect::<Result<Vec<_>, _>>()?;
        let options = AppendToStreamOptions::default().stream_state(stream_state(expected));
        let written = s
            .retrying("append", || {
                s.client
                    .append_to_stream(name.as_str(), &options, batch.clone())
            })
            .await;
        match written {
            Ok(write) => {
                s.numbered_up_to(stream, write.next_expected_version)
                    .await?;
                Ok(s.result_of(stream, write.next_expected_version))
            }
            Err(kurrentdb::Error::WrongExpectedVersion { current, .. }) => {
                let current = match current {
                    kurrentdb::CurrentRevision::Current(r) => CurrentRevision::Current(r),
                    kurrentdb::CurrentRevision::NoStream => CurrentRevision::NoStream,
                };
                // The events may be there already (an earlier attempt whose answer was
                // lost): once the index has what the node has, it can tell.
                if let CurrentRevision::Current(r) = current {
                    s.numbered_up_to(stream, r).await?;
                }
                match s.state.lock().index.check(stream, expected, &ids) {
                    Decision::AlreadyWritten(result) => Ok(result),
                    Decision::Refused(StoreError::IdempotencyConflict { stream }) => {
                        Err(StoreError::IdempotencyConflict { stream })
                    }
                    _ => Err(StoreError::WrongExpectedVersion {
                        stream: stream.to_owned(),
                        expected,
                        current,
                    }),
                }
            }
            Err(error) => Err(unavailable(error)),
        }
    }

    async fn read_stream(
        &self,
        stream: &str,
        from_revision: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let s = &self.shared;
        let name = format!("{}{stream}", s.options.namespace);
        let mut out = Vec::new();
        let mut from = from_revision;
        loop {
            let options = ReadStreamOptions::default()
                .forwards()
                .position(StreamPosition::Position(from))
                .max_count(PAGE);
            let page = s
                .retrying("read stream", || async {
                    let mut read = s.client.read_stream(name.as_str(), &options).await?;
                    let mut events = Vec::new();
                    loop {
                        match read.next_read_event().await {
                            Ok(Some(ReadEvent::Event(resolved))) => {
                                events.extend(resolved.event);
                            }
                            Ok(Some(_)) => {}
                            Ok(None) | Err(kurrentdb::Error::ResourceNotFound) => {
                                return Ok(events)
                            }
                            Err(error) => return Err(error),
                        }
                    }
                })
                .await
                .map_err(unavailable)?;
            let full = page.len() == PAGE;
            let state = s.state.lock();
            for event in &page {
                // Only what the follower numbered: the rest has no position yet.
                match state.index.stream_positions(stream, event.revision).first() {
                    Some(&position) => out.push(s.decode(event, stream, position)),
                    None => return Ok(out),
                }
                from = event.revision + 1;
            }
            if !full {
                return Ok(out);
            }
        }
    }

    async fn read_all(&self, from: u64, max: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let s = &self.shared;
        // Read from the event before `from` (whose `$all` position we know) and skip
        // up to it, so that it does not matter whether a read includes its start.
        let (mut cursor, mut seen) = {
            let state = s.state.lock();
            if from >= state.index.next_position() || max == 0 {
                return Ok(Vec::new());
            }
            match from.checked_sub(1) {
                Some(before) => {
                    let p = state.positions[before as usize];
                    (Some(p), Some((p.commit, p.prepare)))
                }
                None => (None, None),
            }
        };
        let count = max.saturating_add(1).min(PAGE);
        let mut out = Vec::new();
        'pages: loop {
            let page = s
                .retrying("read $all", || s.read_all_page(cursor, count))
                .await
                .map_err(unavailable)?;
            let full = page.len() == count;
            for event in page {
                let at = (event.position.commit, event.position.prepare);
                if seen.is_some_and(|seen| seen >= at) {
                    continue;
                }
                seen = Some(at);
                cursor = Some(event.position);
                let Some(stream) = s.ours(event.stream_id()) else {
                    continue;
                };
                if event.event_type.starts_with('$') {
                    continue;
                }
                let want = from + out.len() as u64;
                let numbered = s
                    .state
                    .lock()
                    .index
                    .stream_positions(stream, event.revision)
                    .first()
                    .copied();
                // Not numbered yet: for us the log ends here for now.
                if numbered != Some(want) {
                    break 'pages;
                }
                out.push(s.decode(&event, stream, want));
                if out.len() >= max {
                    break 'pages;
                }
            }
            if !full {
                break;
            }
        }
        Ok(out)
    }

    fn next_position(&self) -> u64 {
        self.shared.state.lock().index.next_position()
    }

    fn live(&self) -> broadcast::Receiver<Arc<RecordedEvent>> {
        self.shared.live.subscribe()
    }

    fn connection(&self) -> Connection {
        Connection {
            connected: self.shared.connected.load(Ordering::Relaxed),
            reconnects: self.shared.reconnects.load(Ordering::Relaxed),
        }
    }
}
