//! `POST /runs/{run_id}/reverify`: score every finished rollout of a run again from
//! its recorded events with today's checks, optionally against new task overrides
//! (see [`crate::actors::reverify`]).

use actix_web::{web, HttpResponse};
use deserr::Deserr;
use serde_json::json;

use super::body::{read, BodyErrors};
use super::task_overrides::{TaskOverrideBody, TaskOverrides};
use super::validate::optional_json;
use super::AppState;
use crate::actors::reverify::{Rescored, ReverifyRefusal};
use crate::error::{ApiError, ErrorBody, ErrorCode};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/runs/{run_id}/reverify").route(web::post().to(reverify_run)));
}

/// The body of a re-verification (may be empty).
#[derive(Deserr, utoipa::ToSchema)]
#[deserr(error = BodyErrors, deny_unknown_fields)]
pub struct ReverifyBody {
    /// Per task id of the run, fields laid over the run's own override for this
    /// scoring only, e.g. another `rubric_markdown` or `task_json` checks.
    #[deserr(default)]
    #[schema(value_type = Option<BTreeMap<String, TaskOverrideBody>>)]
    pub task_overrides: Option<TaskOverrides>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Reverified {
    pub run_id: String,
    /// Every rollout that had finished with a verdict, in the run's order.
    pub rollouts: Vec<Rescored>,
}

#[utoipa::path(post, path = "/runs/{run_id}/reverify", tag = "runs", summary = "Score a run's finished rollouts again from the log", params(("run_id" = String, Path, description = "The run")), request_body(content = ReverifyBody, description = "Optional"), responses((status = 200, body = Reverified), (status = 404, description = "No such run", body = ErrorBody), (status = 422, description = "Invalid input, each bad field named", body = ErrorBody)))]
async fn reverify_run(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let run_id = path.into_inner();
    let body = optional_json(&body)?.unwrap_or_else(|| json!({}));
    let (body, mut c) = read::<ReverifyBody>(&body)?;
    let task_ids = state
        .projections
        .read(|views| views.run(&run_id).map(|r| r.task_ids.clone()));
    let overrides = body
        .task_overrides
        .map(|o| o.check(&mut c, task_ids.as_deref()))
        .unwrap_or_default();
    c.finish()?;
    let rollouts =
        state
            .gym
            .reverify(&run_id, overrides)
            .await
            .map_err(|refusal| match refusal {
                ReverifyRefusal::Gym(error) => error.into(),
                ReverifyRefusal::ScenarioGone(_) => {
                    ApiError::new(ErrorCode::ScenarioNotFound, refusal.to_string())
                }
                ReverifyRefusal::RemoteEnvironment => {
                    ApiError::invalid_field(&["path", "run_id"], refusal.to_string())
                }
                ReverifyRefusal::BadOverride(ref task_id, _) => ApiError::invalid_field(
                    &["body", "task_overrides", task_id, "task_json"],
                    refusal.to_string(),
                ),
            })?;
    state.sync().await;
    Ok(HttpResponse::Ok().json(Reverified { run_id, rollouts }))
}
