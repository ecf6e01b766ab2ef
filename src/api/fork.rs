//! `POST /runs/{run_id}/rollouts/{rollout_id}/fork`: branch a rollout after step k
//! into a new run of n rollouts (see [`crate::actors::fork`]).

use actix_web::{web, HttpResponse};
use deserr::Deserr;
use serde_json::Value;

use super::body::{read, BodyErrors, Required};
use super::model_config::ModelConfigBody;
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
#[derive(Deserr, utoipa::ToSchema)]
#[deserr(error = BodyErrors, deny_unknown_fields)]
pub struct ForkBody {
    /// The source's model turns to keep, 0 (only its start) up to those recorded.
    #[deserr(default)]
    #[schema(value_type = u32)]
    pub at_step: Required<i64>,
    /// Rollouts of the new run, 1–1,000 (default 1).
    #[deserr(default)]
    #[schema(value_type = Option<u32>)]
    pub count: Option<i64>,
    /// The model that goes on (default: the source run's, with its key).
    #[deserr(default)]
    pub model_config: Option<ModelConfigBody>,
}

/// The body into a fork of `rollout_id` of `run_id`.
fn parse(body: &Value, run_id: String, rollout_id: String) -> Result<ForkRequest, ApiError> {
    let (body, mut c) = read::<ForkBody>(body)?;
    let root: &[&str] = &["body"];
    let at_step = c
        .required(root, "at_step", body.at_step.0)
        .and_then(|n| c.in_range(root, "at_step", n, 0, u32::MAX as i64));
    let count = body
        .count
        .and_then(|n| c.in_range(root, "count", n, 1, MAX_COUNT))
        .unwrap_or(1);
    let model = body
        .model_config
        .and_then(|m| m.check(&mut c, &["body", "model_config"]));
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
