//! Live events as server-sent events: `GET /runs/{run_id}/events` (one run's events,
//! ending after its last rollout ends) and `GET /events` (the whole service, with
//! `?types=` filtering, never ending).
//!
//! Each event is sent with its global log position as `id:` and its type as `event:`;
//! a client resumes after `Last-Event-ID` (or `?after=`) and so misses nothing and
//! sees nothing twice. Every stream is its own catch-up-then-live subscription over the
//! log: a slow reader falls back to reading the log, it never holds the writers up.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;
use tokio::sync::Semaphore;

use super::validate::Checker;
use super::AppState;
use crate::domain::events::{Event, EVENT_TYPES};
use crate::domain::ids::{rollout_stream, run_stream};
use crate::error::ErrorBody;
use crate::error::{ApiError, ErrorCode};
use crate::projections::Projections;
use crate::store::{subscribe_all, RecordedEvent, Subscription};

/// A comment line sent when nothing happened for this long, so proxies keep the
/// connection open and a gone client is noticed.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/events").route(web::get().to(all_events)))
        .service(web::resource("/runs/{run_id}/events").route(web::get().to(run_events)));
}

/// Which events a stream carries.
enum Scope {
    /// The run's own stream and its rollouts' streams; ends with the run.
    Run {
        run_id: String,
        streams: HashSet<String>,
    },
    /// Every event, or only these types.
    All { types: Option<HashSet<String>> },
}

impl Scope {
    fn wants(&self, event: &RecordedEvent) -> bool {
        match self {
            Scope::Run { streams, .. } => streams.contains(&event.stream),
            Scope::All { types } => types.as_ref().is_none_or(|t| t.contains(&event.event_type)),
        }
    }
}

/// The position to start from: after `Last-Event-ID` when a client reconnects,
/// otherwise after `?after=`, otherwise the beginning.
fn start(req: &HttpRequest, c: &mut Checker, after: Option<&str>) -> u64 {
    let header = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty());
    let (field, text) = match (header, after) {
        (Some(id), _) => ("Last-Event-ID", id.trim()),
        (None, Some(after)) => ("after", after),
        (None, None) => return 0,
    };
    c.query_int(field, text, 0, i64::MAX)
        .map_or(0, |n| n as u64 + 1)
}

#[utoipa::path(get, path = "/events", tag = "events", summary = "Every event live (server-sent events)", params(("after" = Option<u64>, Query, description = "Start after this position (or send Last-Event-ID)"), ("types" = Option<String>, Query, description = "Comma-separated event types")), responses((status = 200, description = "`id:` position, `event:` type, `data:` the envelope", content_type = "text/event-stream", body = String), (status = 422, description = "Invalid input, each bad field named", body = ErrorBody)))]
async fn all_events(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let mut c = Checker::default();
    let mut after = None;
    let mut types: Option<HashSet<String>> = None;
    for (key, value) in query.iter() {
        match key.as_str() {
            "after" => after = Some(value.as_str()),
            "types" => {
                let wanted = types.get_or_insert_with(HashSet::new);
                for t in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                    if EVENT_TYPES.contains(&t) {
                        wanted.insert(t.to_string());
                    } else {
                        c.push(
                            &["query"],
                            "types",
                            format!(
                                "Unknown event type '{t}'; known: {}",
                                EVENT_TYPES.join(", ")
                            ),
                            "enum",
                        );
                    }
                }
            }
            _ => {}
        }
    }
    let from = start(&req, &mut c, after);
    c.finish()?;
    Ok(respond(&state, Scope::All { types }, from, None))
}

#[utoipa::path(get, path = "/runs/{run_id}/events", tag = "events", summary = "A run's events live (server-sent events), ending with the run", params(("run_id" = String, Path, description = "The run"), ("after" = Option<u64>, Query, description = "Start after this position (or send Last-Event-ID)")), responses((status = 200, description = "`id:` position, `event:` type, `data:` the envelope", content_type = "text/event-stream", body = String), (status = 404, description = "No such run", body = ErrorBody), (status = 422, description = "Invalid input, each bad field named", body = ErrorBody)))]
async fn run_events(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let run_id = path.into_inner();
    let mut c = Checker::default();
    let after = query
        .iter()
        .find(|(k, _)| k == "after")
        .map(|(_, v)| v.as_str());
    let from = start(&req, &mut c, after);
    c.finish()?;
    state.sync().await;
    let (streams, launched_at, end) = state.projections.read(|views| {
        let run = views
            .run(&run_id)
            .ok_or_else(|| ApiError::new(ErrorCode::RunNotFound, "Run not found"))?;
        let mut streams: HashSet<String> = run
            .rollout_ids
            .iter()
            .map(|id| rollout_stream(id))
            .collect();
        streams.insert(run_stream(&run_id));
        // A finished run's events all lie before what the views have applied.
        let end = run.over().then(|| views.next_position());
        Ok::<_, ApiError>((streams, run.position, end))
    })?;
    let scope = Scope::Run { run_id, streams };
    Ok(respond(&state, scope, from.max(launched_at), end))
}

fn respond(state: &AppState, scope: Scope, from: u64, end: Option<u64>) -> HttpResponse {
    let feed = Feed {
        subscription: subscribe_all(state.store.clone(), from),
        scope: Some(scope),
        held: VecDeque::new(),
        end,
        last_sent: tokio::time::Instant::now(),
        projections: state.projections.clone(),
        shutdown: state.shutdown.clone(),
        lane: state.catch_up.clone(),
    };
    let stream = futures::stream::unfold(feed, |mut feed| async move {
        let chunk = feed.next_chunk().await?;
        Some((Ok::<_, actix_web::Error>(chunk), feed))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // Tells nginx-like proxies not to buffer the stream.
        .insert_header(("x-accel-buffering", "no"))
        .streaming(stream)
}

/// Streams reading the log's history take turns here. Catching up is the costly part
/// of a stream (reading, decoding and framing every event since its start), and done
/// on the HTTP workers by every stream at once it left them no time for requests: 200
/// streams catching up on a 1M-event log held `/healthz` above a second. Holders of a
/// permit read and frame a batch off the workers; at most half the cores do at once.
#[derive(Clone)]
pub struct CatchUpLane(Arc<Semaphore>);

impl Default for CatchUpLane {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        CatchUpLane(Arc::new(Semaphore::new((cores / 2).max(1))))
    }
}

/// Events framed at most per chunk sent.
const BATCH: usize = 256;

struct Feed {
    subscription: Subscription,
    /// Lent to the framing of a batch off the workers, back after it.
    scope: Option<Scope>,
    /// Events read and not framed yet (a batch stops at a rollout's end of a run
    /// stream, to see whether the run is over before going on).
    held: VecDeque<Arc<RecordedEvent>>,
    /// A run stream ends before this position (known once the run has finished).
    end: Option<u64>,
    last_sent: tokio::time::Instant,
    projections: Projections,
    shutdown: tokio_util::sync::CancellationToken,
    lane: CatchUpLane,
}

/// What framing a batch gave.
#[derive(Default)]
struct Framed {
    bytes: Vec<u8>,
    /// A run's rollout ended (or the run was deleted) here: whether the run is over is
    /// asked before the next event.
    ends_something: Option<u64>,
    /// The stream is over: its end reached, or an event that cannot be decoded.
    finished: bool,
}

impl Feed {
    /// The next bytes to send: events, a keep-alive comment, or `None` at the end.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            let next = self
                .held
                .front()
                .map_or(self.subscription.position(), |e| e.position);
            if self.end.is_some_and(|end| next >= end) {
                return None;
            }
            // A turn of the lane while history is read and framed; none to wait for
            // live events, which come a few at a time.
            let mut permit = None;
            if !self.held.is_empty() || self.subscription.catching_up() {
                permit = tokio::select! {
                    _ = self.shutdown.cancelled() => return None,
                    permit = self.lane.0.clone().acquire_owned() => permit.ok(),
                };
                if self.held.is_empty() {
                    if let Err(error) = self.subscription.fill_page().await {
                        tracing::warn!(%error, "event stream ends: the log cannot be read");
                        return None;
                    }
                    self.take_at_hand();
                }
            }
            if self.held.is_empty() {
                // Caught up: the turn goes back before waiting for the next event.
                permit = None;
                tokio::select! {
                    _ = self.shutdown.cancelled() => return None,
                    _ = tokio::time::sleep_until(self.last_sent + KEEP_ALIVE) => {
                        self.last_sent = tokio::time::Instant::now();
                        return Some(Bytes::from_static(b": keep-alive\n\n"));
                    }
                    next = self.subscription.next() => match next {
                        Ok(recorded) => self.held.push_back(recorded),
                        Err(error) => {
                            tracing::warn!(%error, "event stream ends: the log cannot be read");
                            return None;
                        }
                    },
                }
                self.take_at_hand();
            }
            let framed = match permit {
                Some(permit) => {
                    let mut scope = self.scope.take()?;
                    let mut held = std::mem::take(&mut self.held);
                    let end = self.end;
                    let work = tokio::task::spawn_blocking(move || {
                        let framed = frame_batch(&mut scope, end, &mut held);
                        drop(permit);
                        (scope, held, framed)
                    });
                    let (scope, held, framed) = work.await.ok()?;
                    self.scope = Some(scope);
                    self.held = held;
                    framed
                }
                None => frame_batch(self.scope.as_mut()?, self.end, &mut self.held),
            };
            if let Some(position) = framed.ends_something {
                self.check_end(position).await;
            }
            if !framed.bytes.is_empty() {
                self.last_sent = tokio::time::Instant::now();
                return Some(Bytes::from(framed.bytes));
            }
            if framed.finished {
                return None;
            }
        }
    }

    /// Holds what the subscription has at hand, up to a batch.
    fn take_at_hand(&mut self) {
        while self.held.len() < BATCH {
            match self.subscription.try_next() {
                Some(recorded) => self.held.push_back(recorded),
                None => break,
            }
        }
    }

    /// After one of the run's rollouts ends (or the run is deleted): when the views say
    /// the whole run is over, every event of it lies before what they have applied,
    /// and the stream ends there. (The views may be ahead of this stream, so "over"
    /// fixes the end position rather than ending at this event.)
    async fn check_end(&mut self, position: u64) {
        let Some(Scope::Run { run_id, .. }) = &self.scope else {
            return;
        };
        if self.end.is_some() {
            return;
        }
        self.projections.wait_for(position).await;
        self.end = self.projections.read(|views| {
            let over = views
                .run(run_id)
                .is_none_or(crate::projections::RunView::over);
            over.then(|| views.next_position())
        });
    }
}

/// Frames the events `held` starts with, as far as the stream's end, an event that
/// cannot be decoded, or (for a run stream whose end is not known yet) the first event
/// that ends one of its rollouts; what is left stays held.
fn frame_batch(
    scope: &mut Scope,
    end: Option<u64>,
    held: &mut VecDeque<Arc<RecordedEvent>>,
) -> Framed {
    let mut framed = Framed::default();
    while let Some(recorded) = held.pop_front() {
        if end.is_some_and(|end| recorded.position >= end) {
            framed.finished = true;
            break;
        }
        if !scope.wants(&recorded) {
            continue;
        }
        let event = match crate::journal::decode_record(&recorded) {
            Ok(event) => event,
            Err(error) => {
                tracing::error!(%error, "event stream ends at an undecodable event");
                framed.finished = true;
                break;
            }
        };
        if let Scope::Run { streams, .. } = scope {
            // A continuous run's rollouts are drawn as it goes: follow them too.
            match &event {
                Event::GroupScheduled(e) => {
                    streams.extend(e.rollouts.iter().map(|r| rollout_stream(&r.rollout_id)))
                }
                Event::RolloutRestarted(e) => {
                    streams.insert(rollout_stream(&e.rollout.rollout_id));
                }
                _ => {}
            }
        }
        framed.bytes.extend_from_slice(&frame(&recorded, &event));
        let ends_something = matches!(
            event,
            Event::RolloutCompleted(_)
                | Event::RolloutFailed(_)
                | Event::RolloutCancelled(_)
                | Event::RunDeleted(_)
        );
        if ends_something && end.is_none() && matches!(scope, Scope::Run { .. }) {
            framed.ends_something = Some(recorded.position);
            break;
        }
    }
    framed
}

/// One event as an SSE frame; `data` is the envelope with the payload at the
/// current schema version.
fn frame(recorded: &RecordedEvent, event: &Event) -> Bytes {
    let payload: serde_json::Value =
        serde_json::from_slice(&event.to_data()).unwrap_or(serde_json::Value::Null);
    let envelope = json!({
        "position": recorded.position,
        "stream": recorded.stream,
        "revision": recorded.revision,
        "event_id": recorded.id,
        "event_type": recorded.event_type,
        "schema_version": crate::domain::events::CURRENT_SCHEMA_VERSION,
        "time": recorded.time,
        "data": payload,
    });
    Bytes::from(format!(
        "id: {}\nevent: {}\ndata: {}\n\n",
        recorded.position, recorded.event_type, envelope
    ))
}
