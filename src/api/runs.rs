//! `/runs`: launch, list, status, cancel, delete, and a rollout of a run.

use actix_web::{web, HttpResponse};
use chrono::Utc;
use serde_json::{json, Value};
use uuid::Uuid;

use super::validate::Checker;
use super::views::{RolloutDetail, RolloutSummary, RunStatus};
use super::{launch, AppState};
use crate::actors::GymError;
use crate::domain::events::{RunLaunched, ScheduledRollout};
use crate::domain::ids::{new_rollout_id, new_run_id, rollout_seed};
use crate::domain::run::RunRefusal;
use crate::error::{ApiError, ErrorCode};
use crate::tools::replay;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/runs")
            .route(web::post().to(launch_run))
            .route(web::get().to(list_runs)),
    )
    .service(
        web::resource("/runs/{run_id}")
            .route(web::get().to(get_run))
            .route(web::delete().to(delete_run)),
    )
    .service(web::resource("/runs/{run_id}/cancel").route(web::post().to(cancel_run)))
    .service(
        web::resource("/runs/{run_id}/rollouts/{rollout_id}").route(web::get().to(get_rollout)),
    );
}

impl From<GymError> for ApiError {
    fn from(error: GymError) -> Self {
        match error {
            GymError::Refused(RunRefusal::AlreadyExists(id)) => ApiError::new(
                ErrorCode::RunNameTaken,
                format!("Run name '{id}' is already in use"),
            ),
            GymError::Refused(RunRefusal::NotFound) => {
                ApiError::new(ErrorCode::RunNotFound, "Run not found")
            }
            GymError::Store(error) => {
                tracing::error!(%error, "event log refused a command");
                ApiError::new(
                    ErrorCode::StoreUnavailable,
                    format!("The event log is unavailable: {error}"),
                )
            }
            GymError::Unavailable => ApiError::new(
                ErrorCode::StoreUnavailable,
                "The run supervisor is unavailable",
            ),
            GymError::Secrets(error) => {
                tracing::error!(%error, "the secret store refused a command");
                ApiError::new(
                    ErrorCode::StoreUnavailable,
                    "The secret store is unavailable",
                )
            }
        }
    }
}

async fn launch_run(
    state: web::Data<AppState>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let request = launch::parse(&body)?;
    let scenario = state.catalog.get(&request.scenario_id).ok_or_else(|| {
        ApiError::new(
            ErrorCode::ScenarioNotFound,
            format!("Scenario '{}' not found", request.scenario_id),
        )
    })?;
    if let Some(missing) = request
        .task_ids
        .iter()
        .find(|id| scenario.task(id).is_none())
    {
        return Err(ApiError::new(
            ErrorCode::TaskNotFound,
            format!(
                "Task '{missing}' not found in scenario '{}'",
                request.scenario_id
            ),
        ));
    }
    let mut problems = Vec::new();
    for (task_id, value) in &request.task_overrides {
        if let Err(message) = crate::scenarios::overrides::apply(scenario, task_id, Some(value)) {
            problems.push(crate::error::FieldError {
                loc: vec![
                    json!("body"),
                    json!("task_overrides"),
                    json!(task_id),
                    json!("task_json"),
                ],
                msg: message,
                kind: "value_error".to_string(),
            });
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::validation(problems));
    }
    let run_id = request
        .run_name
        .clone()
        .unwrap_or_else(|| new_run_id(Uuid::now_v7()));
    let mut rollouts = Vec::with_capacity(request.task_ids.len() * request.rollout_count as usize);
    for task_id in &request.task_ids {
        for _ in 0..request.rollout_count {
            let rollout_id = new_rollout_id(Uuid::now_v7());
            rollouts.push(ScheduledRollout {
                seed: rollout_seed(&rollout_id),
                rollout_id,
                task_id: task_id.clone(),
            });
        }
    }
    let launched = RunLaunched {
        run_id: run_id.clone(),
        scenario_id: request.scenario_id,
        source: request.source,
        task_ids: request.task_ids,
        rollout_count: request.rollout_count,
        max_parallel: request.max_parallel,
        model: request.model,
        user_model: request.user_model,
        judge_model: request.judge_model,
        task_overrides: request.task_overrides,
        rollouts,
        launched_at: Utc::now(),
    };
    state.gym.launch(launched, request.keys).await?;
    state.sync().await;
    state.projections.read(|views| {
        let run = views
            .run(&run_id)
            .ok_or_else(|| ApiError::new(ErrorCode::RunNotFound, "Run not found"))?;
        let rollouts: Vec<RolloutSummary> = run
            .rollout_ids
            .iter()
            .filter_map(|id| views.rollout(id))
            .map(RolloutSummary::of)
            .collect();
        Ok(HttpResponse::Ok().json(json!({
            "run_id": run_id,
            "run_status": RunStatus::of(run, views, true, false),
            "rollouts": rollouts,
        })))
    })
}

struct ListQuery {
    scenario_id: Option<String>,
    source: Option<String>,
    limit: usize,
    offset: usize,
    expand_rollouts: bool,
}

fn parse_list_query(pairs: &[(String, String)]) -> Result<ListQuery, ApiError> {
    let mut c = Checker::default();
    let prefix: &[&str] = &["query"];
    let mut q = ListQuery {
        scenario_id: None,
        source: Some("rl-gym".to_string()),
        limit: 50,
        offset: 0,
        expand_rollouts: false,
    };
    for (key, value) in pairs {
        match key.as_str() {
            "scenario_id" => q.scenario_id = Some(value.clone()),
            "source" => match value.as_str() {
                "all" => q.source = None,
                s if launch::SOURCES.contains(&s) => q.source = Some(s.to_string()),
                _ => c.push(
                    prefix,
                    "source",
                    "Input should be 'rl-gym', 'task-editor', 'datadog-synthetics' or 'all'",
                    "enum",
                ),
            },
            "limit" => {
                if let Some(n) = c.query_int(key, value, 1, 200) {
                    q.limit = n as usize;
                }
            }
            "offset" => {
                if let Some(n) = c.query_int(key, value, 0, i64::MAX) {
                    q.offset = n as usize;
                }
            }
            "expand" => {
                for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    if item == "rollouts" {
                        q.expand_rollouts = true;
                    } else {
                        c.push(
                            prefix,
                            "expand",
                            format!("Unknown expansion '{item}'; allowed: rollouts"),
                            "enum",
                        );
                    }
                }
            }
            _ => {}
        }
    }
    c.finish()?;
    Ok(q)
}

async fn list_runs(
    state: web::Data<AppState>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let q = parse_list_query(&query)?;
    Ok(state.projections.read(|views| {
        let page = views.list_runs(
            q.scenario_id.as_deref(),
            q.source.as_deref(),
            q.offset,
            q.limit,
        );
        let runs: Vec<RunStatus> = page
            .runs
            .iter()
            .map(|run| RunStatus::of(run, views, q.expand_rollouts, false))
            .collect();
        HttpResponse::Ok().json(json!({ "total": page.total, "runs": runs }))
    }))
}

async fn get_run(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.projections.read(|views| {
        let run = views
            .run(&path)
            .ok_or_else(|| ApiError::new(ErrorCode::RunNotFound, "Run not found"))?;
        Ok(HttpResponse::Ok().json(RunStatus::of(run, views, true, true)))
    })
}

async fn cancel_run(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let run_id = path.into_inner();
    let cancelled = state.gym.cancel(&run_id).await?;
    state.sync().await;
    Ok(HttpResponse::Ok().json(json!({ "run_id": run_id, "cancelled_rollouts": cancelled })))
}

async fn delete_run(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let run_id = path.into_inner();
    let deleted = state.gym.delete(&run_id).await?;
    state.sync().await;
    Ok(HttpResponse::Ok().json(json!({ "run_id": run_id, "deleted_rollouts": deleted })))
}

async fn get_rollout(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (run_id, rollout_id) = path.into_inner();
    let (mut detail, remote) = state.projections.read(|views| {
        let run = views
            .run(&run_id)
            .ok_or_else(|| ApiError::new(ErrorCode::RunNotFound, "Run not found"))?;
        let rollout = views
            .rollout(&rollout_id)
            .filter(|r| r.run_id == run_id)
            .ok_or_else(|| ApiError::new(ErrorCode::RolloutNotFound, "Rollout not found"))?;
        let mut detail = RolloutDetail::of(rollout);
        detail.task_override = run.task_overrides.get(&rollout.task_id).cloned();
        detail.client_context = detail
            .task_override
            .as_ref()
            .and_then(|o| o.get("client_context"))
            .cloned();
        Ok::<_, ApiError>((detail, run.model.tool_server_url.is_some()))
    })?;
    // The final state is not stored: the recorded tool calls replayed over the seed
    // rebuild it exactly. A remote environment's state lives with its owner.
    if !remote && detail.started() {
        detail.environment_state = environment_state(&state, &detail);
    }
    Ok(HttpResponse::Ok().json(detail))
}

fn environment_state(state: &AppState, detail: &RolloutDetail) -> Option<Value> {
    let scenario = state.catalog.get(&detail.scenario_id)?;
    let task = &crate::scenarios::overrides::apply(
        scenario,
        &detail.task_id,
        detail.task_override.as_ref(),
    )
    .ok()?;
    let calls = detail
        .tool_calls
        .iter()
        .map(|c| (c.tool_name.as_str(), c.arguments.as_str()));
    replay::rebuild(scenario, task, detail.seed, calls, &detail.npc_replies)
        .ok()
        .map(|env| env.state())
}
