//! What one client can hold of the HTTP server. actix times only a request's headers
//! (`client_request_timeout`) and, at its own `max_connections`, stops accepting, so
//! new connections wait unanswered in the accept backlog (and /healthz with them).
//! Here a request's body must be in within `request_timeout_secs` of its headers or
//! it is answered 408 and its connection closed, and connections beyond
//! `max_connections` (counted across workers) are answered 503 at once and closed,
//! except for /healthz, so that a load balancer still sees the server alive.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Extensions, Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use actix_web::http::ConnectionType;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpResponse, ResponseError};
use futures::Stream;

use crate::error::{ApiError, ErrorCode};
use crate::metrics::Metrics;

/// The limits, shared by every worker.
pub struct RequestLimits {
    body_deadline: Duration,
    max_connections: usize,
    open: Arc<AtomicUsize>,
    metrics: Metrics,
}

/// One client connection, counted while it is open (kept in its connection data).
struct Connection {
    /// Whether it was within the cap when it was accepted.
    admitted: bool,
    open: Arc<AtomicUsize>,
    metrics: Metrics,
}

impl Drop for Connection {
    fn drop(&mut self) {
        let now = self.open.fetch_sub(1, Ordering::Relaxed) - 1;
        self.metrics.http_connections.set(now as i64);
    }
}

impl RequestLimits {
    pub fn new(body_deadline: Duration, max_connections: usize, metrics: Metrics) -> Self {
        RequestLimits {
            body_deadline,
            max_connections,
            open: Arc::default(),
            metrics,
        }
    }

    /// Counts a new connection (`HttpServer::on_connect`); it is uncounted when closed.
    pub fn on_connect(&self, data: &mut Extensions) {
        let before = self.open.fetch_add(1, Ordering::Relaxed);
        self.metrics.http_connections.set(before as i64 + 1);
        data.insert(Connection {
            admitted: before < self.max_connections,
            open: self.open.clone(),
            metrics: self.metrics.clone(),
        });
    }

    fn refuse(&self, reason: &str, error: ApiError) -> HttpResponse {
        self.metrics.http_refused.with_label_values(&[reason]).inc();
        let mut response = error.error_response();
        // The client is the one holding resources: it gets no second request here.
        response
            .head_mut()
            .set_connection_type(ConnectionType::Close);
        response
    }
}

/// The middleware: the connection cap, then the body deadline.
pub async fn limit_requests(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(limits) = req.app_data::<web::Data<RequestLimits>>().cloned() else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let over_cap = req.conn_data::<Connection>().is_some_and(|c| !c.admitted);
    if over_cap && !matches!(req.path(), "/healthz" | "/v1/healthz") {
        let error = ApiError::new(
            ErrorCode::TooManyConnections,
            format!(
                "The server has {} client connections open, at most {} are served; try again later",
                limits.open.load(Ordering::Relaxed),
                limits.max_connections
            ),
        );
        let response = limits.refuse("too_many_connections", error);
        return Ok(req.into_response(response).map_into_right_body());
    }
    let has_body =
        req.headers().contains_key(CONTENT_LENGTH) || req.headers().contains_key(TRANSFER_ENCODING);
    if !has_body {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let timed_out = Rc::new(Cell::new(false));
    let payload = deadline(req.take_payload(), limits.body_deadline, timed_out.clone());
    req.set_payload(payload);
    let response = next.call(req).await?;
    if !timed_out.get() {
        return Ok(response.map_into_left_body());
    }
    let error = ApiError::new(
        ErrorCode::RequestTimeout,
        format!(
            "The request body was not received within {} s",
            limits.body_deadline.as_secs_f64()
        ),
    );
    let (request, _) = response.into_parts();
    let response = limits.refuse("request_timeout", error);
    Ok(ServiceResponse::new(request, response).map_into_right_body())
}

/// `payload`, which fails once `within` has passed before its end (and says so in
/// `timed_out`): whoever reads the body gets an error instead of waiting on.
fn deadline(mut payload: Payload, within: Duration, timed_out: Rc<Cell<bool>>) -> Payload {
    let mut timer = Box::pin(tokio::time::sleep(within));
    let mut ended = false;
    let stream = futures::stream::poll_fn(move |cx| {
        if ended {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = Pin::new(&mut payload).poll_next(cx) {
            ended = item.is_none();
            return Poll::Ready(item);
        }
        if timer.as_mut().poll(cx).is_ready() {
            ended = true;
            timed_out.set(true);
            return Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the request body was not received in time",
            )))));
        }
        Poll::Pending
    });
    let stream: Pin<Box<dyn Stream<Item = Result<web::Bytes, PayloadError>>>> = Box::pin(stream);
    Payload::from(stream)
}
