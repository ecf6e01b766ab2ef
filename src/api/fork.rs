//! `POST /runs/{run_id}/rollouts/{rollout_id}/fork`: branch a rollout after step k
//! into a new run of n rollouts (see [`crate::actors::fork`]).

use actix_web::{web, HttpResponse};
use serde_json::Value;

use super::launch;
use super::validate::Checker;
use super::views::LaunchAnswer;
use super::AppState;
use crate::actors::fork::{ForkRefusal, ForkRequest};
use crate::error::{ApiError, ErrorBody, ErrorCode};

/// Forks per request: each is a rollout of the new run.
const MAX_COUNT: i64 = 1_000;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/runs/{run_id}/rollouts/{rollout_id}/fork")
            .route(web::post().to(fork_rollout)),
    );
}

/// The body of a fork.
#[allow(dead_code)]
#[derive(utoipa::ToSchema)]
pub struct ForkBody {
    /// The source's model turns to keep, 0 (only its start) up to those recorded.
    pub at_step: u32,
    /// Rollouts of the new run, 1–1,000 (default 1).
    pub count: Option<u32>,
    /// The model that goes on (default: the source run's, with its key).
    #[schema(value_type = Option<Object>)]
    pub model_config: Option<Value>,
}

/// The body into a fork of `rollout_id` of `run_id`.
fn parse(body: &Value, run_id: String, rollout_id: String) -> Result<ForkRequest, ApiError> {
    let obj = launch::object(body)?;
    let mut c = Checker::default();
    let root: &[&str] = &["body"];
    c.only_fields(obj, root, &["at_step", "count", "model_config"]);
    if obj.get("at_step").is_none_or(Value::is_null) {
        c.push(root, "at_step", "Field required", "missing");
    }
    let at_step = c.opt_int(obj, root, "at_step", 0, u32::MAX as i64);
    let count = c.opt_int(obj, root, "count", 1, MAX_COUNT).unwrap_or(1);
    let model = c
        .opt_object(obj, root, "model_config")
        .and_then(|m| launch::model_config(&mut c, m, &["body", "model_config"]));
    c.finish()?;
    Ok(ForkRequest {
        run_id,
        rollout_id,
        at_step: at_step.unwrap_or_default() as u32,
        count: count as u32,
        model,
    })
}

#[utoipa::path(post, path = "/runs/{run_id}/rollouts/{rollout_id}/fork", tag = "runs", summary = "Fork a rollout after step k into a new run", params(("run_id" = String, Path, description = "The source run"), ("rollout_id" = String, Path, description = "The source rollout")), request_body = ForkBody, responses((status = 200, description = "The new run, which names its parent", body = LaunchAnswer), (status = 404, description = "No such run or rollout", body = ErrorBody), (status = 422, description = "Invalid input, each bad field named", body = ErrorBody), (status = 429, description = "More rollouts would wait to start than max_pending_rollouts; see Retry-After", body = ErrorBody)))]
async fn fork_rollout(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let (run_id, rollout_id) = path.into_inner();
    let request = parse(&body, run_id, rollout_id)?;
    let fork = state
        .gym
        .fork(request)
        .await
        .map_err(|refusal| match refusal {
            ForkRefusal::Gym(error) => error.into(),
            ForkRefusal::RolloutNotFound => {
                ApiError::new(ErrorCode::RolloutNotFound, "Rollout not found in this run")
            }
            ForkRefusal::BeyondRecorded { .. } | ForkRefusal::InProgress(_) => {
                ApiError::invalid_field(&["body", "at_step"], refusal.to_string())
            }
            ForkRefusal::RemoteModelConfig => ApiError::invalid_field(
                &["body", "model_config", "tool_server_url"],
                refusal.to_string(),
            ),
            ForkRefusal::RemoteEnvironment => {
                ApiError::invalid_field(&["path", "rollout_id"], refusal.to_string())
            }
        })?;
    super::runs::launch_answer(&state, fork.run_id).await
}
