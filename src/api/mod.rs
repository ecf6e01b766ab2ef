//! The HTTP edge, the only part that knows HTTP: one file per resource, each handler
//! parsing the request into a typed command or query, handing it to the command side
//! ([`crate::actors::Gym`]) or a projection, and turning the answer into a view type.
//! Every path is served at the root and under `/v1`.

mod auth;
mod body;
mod budget;
mod dashboard;
mod environments;
mod events;
mod export;
mod feed;
mod fork;
mod health;
mod launch;
mod limits;
mod model_config;
mod models;
pub mod openapi;
mod reverify;
mod rollouts;
mod runs;
mod scenarios;
mod stats;
mod task_overrides;
mod token_export;
mod validate;
mod verifiers;
mod views;

use std::sync::Arc;
use std::time::Duration;

use actix_web::error::{JsonPayloadError, QueryPayloadError};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

pub use auth::AccessControl;
pub use limits::{limit_requests, RequestLimits};

use crate::actors::step_loop::DefaultAgents;
use crate::actors::Gym;
use crate::domain::events::NpcReplied;
use crate::error::{ApiError, ErrorCode, FieldError};
use crate::metrics::Metrics;
use crate::projections::{Projections, ToolCallView};
use crate::scenarios::Catalog;
use crate::store::EventStore;
use crate::tools::registry::EnvironmentRegistry;

/// What every handler can reach.
pub struct AppState {
    pub gym: Gym,
    pub projections: Projections,
    pub catalog: Arc<Catalog>,
    pub metrics: Metrics,
    pub store: Arc<dyn EventStore>,
    pub environments: Arc<EnvironmentRegistry>,
    /// The step loops' own HTTP client and provider limits, for testing a model config.
    pub agents: Arc<DefaultAgents>,
    pub model_timeout: Duration,
    /// Where the log lives (its disk is watched in the metrics).
    pub data_dir: std::path::PathBuf,
    /// Cancelled when the service begins to stop (event streams end).
    pub shutdown: tokio_util::sync::CancellationToken,
    /// The base URL environment URLs are built on: `public_url`, else the bound
    /// address (set once bound, before the first request).
    pub public_url: Arc<std::sync::OnceLock<String>>,
    /// `format=preference` export: pairs per task by default.
    pub max_pairs_per_task: usize,
    /// Version, hash and tools of the task instances runs ran (exports, the feed).
    pub task_facts: export::FactsCache,
    /// Continuous runs' finished rollouts, left by their step loops for the feed.
    pub contents: crate::projections::ContentCache,
    /// Bounds how many event streams read and frame the log's history at once.
    pub catch_up: events::CatchUpLane,
}

impl AppState {
    /// What a rollout did call by call, read from its stream (the views keep only its
    /// summary).
    pub async fn rollout_content(
        &self,
        rollout_id: &str,
    ) -> Result<crate::projections::RolloutContent, ApiError> {
        crate::projections::RolloutContent::load(self.store.as_ref(), rollout_id)
            .await
            .map_err(|error| {
                tracing::error!(%error, rollout_id, "a rollout's events could not be read");
                ApiError::new(
                    crate::error::ErrorCode::StoreUnavailable,
                    format!("The event log is unavailable: {error}"),
                )
            })
    }

    /// A rollout's environment state, rebuilt by replaying its recorded tool calls and
    /// NPC replies over the scenario's seed (`None` for `recorded`: the state before
    /// the first step). `None` when the scenario or task is gone.
    pub fn environment_state(
        &self,
        scenario_id: &str,
        task_id: &str,
        task_override: Option<&serde_json::Value>,
        (seed, instance_seed): (u64, u64),
        recorded: Option<(&[ToolCallView], &[NpcReplied])>,
    ) -> Option<serde_json::Value> {
        let scenario = self.catalog.get(scenario_id)?;
        let task =
            &crate::scenarios::overrides::apply(scenario, task_id, task_override, instance_seed)
                .ok()?;
        let (calls, replies) = recorded.unwrap_or((&[], &[]));
        let calls = calls.iter().map(|c| {
            crate::tools::replay::recorded(&c.tool_name, &c.arguments, c.fault.as_deref())
        });
        scenario
            .rebuild(task, seed, calls, replies)
            .ok()
            .map(|env| env.state())
    }

    /// Waits until the views have applied everything in the log now: a handler that
    /// just wrote sees its own write.
    pub async fn sync(&self) {
        let next = self.store.next_position();
        if next > 0 {
            self.projections.wait_for(next - 1).await;
        }
    }
}

/// `/runs/compare` is registered before `/runs/{run_id}`, which would take it for a run id.
fn routes(cfg: &mut web::ServiceConfig) {
    stats::routes(cfg);
    models::routes(cfg);
    events::routes(cfg);
    export::routes(cfg);
    feed::routes(cfg);
    fork::routes(cfg);
    reverify::routes(cfg);
    runs::routes(cfg);
    rollouts::routes(cfg);
    environments::routes(cfg);
    scenarios::routes(cfg);
    verifiers::routes(cfg);
    openapi::routes(cfg);
    health::routes(cfg);
}

/// Registers every route, at the root and under `/v1`, and the JSON error handlers.
pub fn configure(max_body_bytes: usize) -> impl Fn(&mut web::ServiceConfig) + Clone {
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(
            web::JsonConfig::default()
                .limit(max_body_bytes)
                .error_handler(json_error),
        )
        .app_data(web::QueryConfig::default().error_handler(query_error))
        .app_data(web::PathConfig::default().error_handler(|err, _| {
            ApiError::new(ErrorCode::RouteNotFound, err.to_string()).into()
        }))
        .service(web::scope("/v1").configure(routes))
        .configure(routes)
        .configure(dashboard::routes);
    }
}

fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let error = match &err {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            ApiError::new(ErrorCode::PayloadTooLarge, "Request body is too large")
        }
        JsonPayloadError::ContentType => ApiError::new(
            ErrorCode::MalformedBody,
            "Content-Type must be application/json",
        ),
        JsonPayloadError::Deserialize(e) => validate::json_invalid(e),
        other => ApiError::new(ErrorCode::MalformedBody, other.to_string()),
    };
    error.into()
}

fn query_error(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::validation(vec![FieldError {
        loc: vec![json!("query")],
        msg: err.to_string(),
        kind: "query_invalid".to_string(),
    }])
    .into()
}

/// The access-control middleware (a no-op without configured tokens).
pub use auth::require_token;

/// A body sent without a `Content-Type` is read as JSON, as the original service
/// (FastAPI) does; an explicit other type is still refused by the JSON extractor.
pub async fn json_by_default(
    mut req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    use actix_web::http::header::{HeaderValue, CONTENT_TYPE};
    if !req.headers().contains_key(CONTENT_TYPE) {
        req.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    next.call(req).await
}

/// Unknown paths and methods answer in the API's error shape.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    use actix_web::ResponseError;
    ApiError::new(
        ErrorCode::RouteNotFound,
        format!("No route for {} {}", req.method(), req.path()),
    )
    .error_response()
}
