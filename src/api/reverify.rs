//! `POST /runs/{run_id}/reverify`: score every finished rollout of a run again from
//! its recorded events with today's checks, optionally against new task overrides
//! (see [`crate::actors::reverify`]).

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use super::launch;
use super::validate::Checker;
use super::AppState;
use crate::actors::reverify::{Rescored, ReverifyRefusal};
use crate::error::{ApiError, ErrorBody, FieldError};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/runs/{run_id}/reverify").route(web::post().to(reverify_run)));
}

/// The body of a re-verification (may be empty).
#[allow(dead_code)]
#[derive(utoipa::ToSchema)]
pub struct ReverifyBody {
    /// Per task id of the run, fields laid over the run's own override for this
    /// scoring only, e.g. another `rubric_markdown` or `task_json` checks.
    #[schema(value_type = Option<Object>)]
    pub task_overrides: Option<Value>,
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
    let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                crate::error::ErrorCode::MalformedBody,
                format!("The body is not JSON: {e}"),
            )
        })?
    };
    let obj = launch::object(&body)?;
    let mut c = Checker::default();
    for field in obj.keys().filter(|k| *k != "task_overrides") {
        c.push(
            &["body"],
            field,
            "Extra inputs are not permitted",
            "extra_forbidden",
        );
    }
    let task_ids = state
        .projections
        .read(|views| views.run(&run_id).map(|r| r.task_ids.clone()));
    let overrides = launch::parse_task_overrides(&mut c, obj, task_ids.as_deref());
    c.finish()?;
    let rollouts =
        state
            .gym
            .reverify(&run_id, overrides)
            .await
            .map_err(|refusal| match refusal {
                ReverifyRefusal::Gym(error) => error.into(),
                ReverifyRefusal::RemoteEnvironment => ApiError::validation(vec![FieldError {
                    loc: vec![json!("path"), json!("run_id")],
                    msg: refusal.to_string(),
                    kind: "value_error".to_string(),
                }]),
                ReverifyRefusal::BadOverride(ref task_id, _) => {
                    ApiError::validation(vec![FieldError {
                        loc: vec![
                            json!("body"),
                            json!("task_overrides"),
                            json!(task_id),
                            json!("task_json"),
                        ],
                        msg: refusal.to_string(),
                        kind: "value_error".to_string(),
                    }])
                }
            })?;
    state.sync().await;
    Ok(HttpResponse::Ok().json(Reverified { run_id, rollouts }))
}
