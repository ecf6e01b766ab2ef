//! `/runs`: launch, list, status, cancel, delete, and a rollout of a run.

use actix_web::{web, HttpResponse};
use chrono::Utc;
use serde_json::{json, Value};
use uuid::Uuid;

use super::budget::{self, ResumeBody};
use super::launch::{LaunchBody, LaunchRequest};
use super::validate::{query_flag, Checker, Page};
use super::views::{
    DryRunAnswer, Estimate, LaunchAnswer, RolloutDetail, RolloutSummary, RunCancelled, RunDeleted,
    RunList, RunResumedAnswer, RunStatus, TaskEstimate,
};
use super::{launch, AppState};
use crate::actors::GymError;
use crate::domain::budget::RunPrices;
use crate::domain::events::{RunLaunched, ScheduledRollout, TokenUsage};
use crate::domain::ids::{new_rollout_id, new_run_id, rollout_seed};
use crate::domain::run::RunRefusal;
use crate::error::ErrorBody;
use crate::error::{ApiError, ErrorCode};

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
    .service(web::resource("/runs/{run_id}/resume").route(web::post().to(resume_run)))
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
            GymError::Refused(RunRefusal::NotPaused(detail)) => {
                ApiError::new(ErrorCode::RunNotPaused, detail)
            }
            GymError::Refused(error @ RunRefusal::Busy(_)) => {
                ApiError::new(ErrorCode::RunBusy, error.to_string())
            }
            GymError::Refused(RunRefusal::BudgetExhausted(reason)) => ApiError::invalid_field(
                &["body", "budget"],
                format!("The new budget is already spent: {reason}"),
            ),
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
            error @ GymError::TooManyPending { .. } => {
                ApiError::new(ErrorCode::TooManyPendingRollouts, error.to_string())
            }
        }
    }
}

#[utoipa::path(post, path = "/runs", tag = "runs", summary = "Launch a run (or estimate it with dry_run=true)", request_body = LaunchBody, params(("dry_run" = Option<bool>, Query, description = "Validate and estimate tokens and cost from past runs of the same tasks and model; launch nothing")), responses((status = 200, description = "The launched run; with dry_run=true a DryRunAnswer (see components) instead", body = LaunchAnswer), (status = 404, description = "Unknown scenario or task", body = ErrorBody), (status = 409, description = "run_name already used", body = ErrorBody), (status = 422, description = "Invalid input, each bad field named", body = ErrorBody), (status = 429, description = "More rollouts would wait to start than max_pending_rollouts; see Retry-After", body = ErrorBody)))]
async fn launch_run(
    state: web::Data<AppState>,
    query: web::Query<Vec<(String, String)>>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let dry_run = query_flag(&query, "dry_run", false)?;
    let request = validate_launch(&state, &body)?;
    if dry_run {
        return Ok(HttpResponse::Ok().json(estimate(&state, &request)));
    }
    let run_id = request
        .run_name
        .clone()
        .unwrap_or_else(|| new_run_id(Uuid::now_v7()));
    let mut rollouts = Vec::with_capacity(request.task_ids.len() * request.rollout_count as usize);
    // A continuous run draws its groups as it goes.
    let fixed: &[String] = match request.continuous {
        Some(_) => &[],
        None => &request.task_ids,
    };
    // Per task, `rollout_count` rollouts of each instance (a group each).
    for task_id in fixed {
        for &instance_seed in &request.instance_seeds {
            for _ in 0..request.rollout_count {
                let rollout_id = new_rollout_id(Uuid::now_v7());
                rollouts.push(ScheduledRollout {
                    seed: rollout_seed(&rollout_id),
                    rollout_id,
                    task_id: task_id.clone(),
                    instance_seed,
                });
            }
        }
    }
    let prices = state.gym.prices();
    // The judge that will grade: the run's own, else the server's.
    let server_judge = state.agents.judge.as_ref().map(|(settings, _)| settings);
    let judge = request.judge_model.as_ref().or(server_judge);
    let run_prices = RunPrices {
        model: prices.get(&request.model.provider, &request.model.model),
        judge: judge.and_then(|j| prices.get(&j.provider, &j.model)),
    }
    .known();
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
        parent: None,
        tool_faults: request.tool_faults,
        rollouts,
        launched_at: Utc::now(),
        budget: request.budget,
        prices: run_prices,
        continuous: request.continuous,
    };
    state.gym.launch(launched, request.keys).await?;
    launch_answer(&state, run_id).await
}

/// The answer to a launch (and a fork): the new run's status and its rollouts, once
/// the views have the launch.
pub(super) async fn launch_answer(
    state: &AppState,
    run_id: String,
) -> Result<HttpResponse, ApiError> {
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
        Ok(HttpResponse::Ok().json(LaunchAnswer {
            run_status: RunStatus::of(run, views, true, false),
            run_id,
            rollouts,
        }))
    })
}

/// Everything a launch checks before it records anything (a dry run checks the same).
fn validate_launch(state: &AppState, body: &Value) -> Result<LaunchRequest, ApiError> {
    let request = launch::parse(body)?;
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
        if let Err(message) = crate::scenarios::overrides::apply(scenario, task_id, Some(value), 0)
        {
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
    launch::check_launch_price(&request, state.gym.prices())?;
    Ok(request)
}

/// A dry run's estimate: per task, the mean tokens of the completed rollouts of the
/// same scenario, task, provider and model, times the rollouts asked for.
fn estimate(state: &AppState, request: &LaunchRequest) -> DryRunAnswer {
    let model = &request.model;
    let history = state.projections.read(|views| {
        views.usage_history(
            &request.scenario_id,
            &model.provider,
            &model.model,
            &request.task_ids,
        )
    });
    let price = state.gym.prices().get(&model.provider, &model.model);
    let per_run = f64::from(request.rollout_count);
    let (mut tokens, mut cost, mut seen) = (0.0, 0.0, 0);
    let mut per_task = Vec::new();
    let mut unseen = Vec::new();
    for task_id in &request.task_ids {
        let (count, usage) = history.get(task_id).cloned().unwrap_or_default();
        let mean = |n: u64| n as f64 / f64::from(count.max(1));
        if count == 0 {
            unseen.push(task_id.as_str());
        } else {
            tokens += mean(usage.total_tokens) * per_run;
            if let Some(price) = price {
                let rollout = TokenUsage {
                    prompt_tokens: usage.prompt_tokens / u64::from(count),
                    completion_tokens: usage.completion_tokens / u64::from(count),
                    total_tokens: 0,
                };
                cost += price.cost(&rollout) * per_run;
            }
            seen += count;
        }
        per_task.push(TaskEstimate {
            task_id: task_id.clone(),
            mean_tokens: (count > 0).then(|| mean(usage.total_tokens)),
            rollouts_seen: count,
        });
    }
    let note = (!unseen.is_empty()).then(|| {
        format!(
            "No completed rollout of {} by {}/{} yet: left out of the totals",
            unseen.join(", "),
            model.provider,
            model.model
        )
    });
    DryRunAnswer {
        dry_run: true,
        rollouts: request.rollout_count * request.task_ids.len() as u32,
        estimate: Estimate {
            total_tokens: tokens.round() as u64,
            cost_usd: price.map(|_| cost),
            based_on_rollouts: seen,
            per_task,
            note,
        },
    }
}

struct ListQuery {
    scenario_id: Option<String>,
    source: Option<String>,
    page: Page,
    expand_rollouts: bool,
}

fn parse_list_query(pairs: &[(String, String)]) -> Result<ListQuery, ApiError> {
    let mut c = Checker::default();
    let prefix: &[&str] = &["query"];
    let mut q = ListQuery {
        scenario_id: None,
        source: Some("rl-gym".to_string()),
        page: Page::default(),
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
            "limit" | "offset" => {
                c.page_param(key, value, &mut q.page);
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

#[utoipa::path(get, path = "/runs", tag = "runs", summary = "List runs, newest first", params(("scenario_id" = Option<String>, Query, description = "Only this scenario"), ("source" = Option<String>, Query, description = "rl-gym (default), task-editor, datadog-synthetics or all"), ("limit" = Option<u32>, Query, description = "1–200 (50)"), ("offset" = Option<u64>, Query, description = "Runs to skip"), ("expand" = Option<String>, Query, description = "`rollouts` adds each run's rollout ids")), responses((status = 200, body = RunList), (status = 422, description = "Invalid input, each bad field named", body = ErrorBody)))]
async fn list_runs(
    state: web::Data<AppState>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let q = parse_list_query(&query)?;
    Ok(state.projections.read(|views| {
        let page = views.list_runs(
            q.scenario_id.as_deref(),
            q.source.as_deref(),
            q.page.offset,
            q.page.limit,
        );
        let runs: Vec<RunStatus> = page
            .runs
            .iter()
            .map(|run| RunStatus::of(run, views, q.expand_rollouts, false))
            .collect();
        HttpResponse::Ok().json(RunList {
            total: page.total,
            runs,
        })
    }))
}

#[utoipa::path(get, path = "/runs/{run_id}", tag = "runs", summary = "A run's status with a per-rollout breakdown", params(("run_id" = String, Path, description = "The run"), ("rollouts" = Option<bool>, Query, description = "`false` leaves out `rollout_ids` and the breakdown: the counts alone, as cheap for a run of 10,000 rollouts as for one")), responses((status = 200, body = RunStatus), (status = 404, description = "No such run", body = ErrorBody), (status = 422, description = "Invalid input, each bad field named", body = ErrorBody)))]
async fn get_run(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let rollouts = query_flag(&query, "rollouts", true)?;
    state.projections.read(|views| {
        let run = views
            .run(&path)
            .ok_or_else(|| ApiError::new(ErrorCode::RunNotFound, "Run not found"))?;
        Ok(HttpResponse::Ok().json(RunStatus::of(run, views, rollouts, rollouts)))
    })
}

#[utoipa::path(post, path = "/runs/{run_id}/cancel", tag = "runs", summary = "Cancel a run", params(("run_id" = String, Path, description = "The run")), responses((status = 200, body = RunCancelled), (status = 404, description = "No such run", body = ErrorBody)))]
async fn cancel_run(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let run_id = path.into_inner();
    let unfinished = state
        .projections
        .read(|views| views.unfinished_rollouts(&run_id).len());
    let active_here = state.gym.cancel(&run_id).await?;
    state.sync().await;
    // With several nodes the run may be driven elsewhere: its owner cancels what the
    // views show unfinished.
    let cancelled = if active_here == 0 {
        unfinished
    } else {
        active_here
    };
    Ok(HttpResponse::Ok().json(RunCancelled {
        run_id,
        cancelled_rollouts: cancelled,
    }))
}

#[utoipa::path(post, path = "/runs/{run_id}/resume", tag = "runs", summary = "Resume a run paused by its budget, under a new budget", request_body(content = ResumeBody, description = "Optional; without a budget the run goes on unlimited"), params(("run_id" = String, Path, description = "The run")), responses((status = 200, body = RunResumedAnswer), (status = 404, description = "No such run", body = ErrorBody), (status = 409, description = "The run is not paused", body = ErrorBody), (status = 422, description = "Invalid budget, or one already spent", body = ErrorBody)))]
async fn resume_run(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let run_id = path.into_inner();
    let body = super::validate::optional_json(&body)?.unwrap_or(Value::Null);
    let budget = budget::parse_resume(&body)?;
    let run = state.projections.read(|views| {
        views
            .run(&run_id)
            .map(|r| (r.model.clone(), r.prices.is_some_and(|p| p.model.is_some())))
    });
    let (model, priced) =
        run.ok_or_else(|| ApiError::new(ErrorCode::RunNotFound, "Run not found"))?;
    budget::check_budget_price(budget.as_ref(), priced, &model)?;
    let resumed = state.gym.resume(&run_id, budget).await?;
    state.sync().await;
    Ok(HttpResponse::Ok().json(RunResumedAnswer {
        run_id,
        resumed_rollouts: resumed,
        budget,
    }))
}

#[utoipa::path(delete, path = "/runs/{run_id}", tag = "runs", summary = "Delete a run (the log keeps it)", params(("run_id" = String, Path, description = "The run")), responses((status = 200, body = RunDeleted), (status = 404, description = "No such run", body = ErrorBody)))]
async fn delete_run(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let run_id = path.into_inner();
    let deleted = state.gym.delete(&run_id).await?;
    state.sync().await;
    Ok(HttpResponse::Ok().json(RunDeleted {
        run_id,
        deleted_rollouts: deleted,
    }))
}

#[utoipa::path(get, path = "/runs/{run_id}/rollouts/{rollout_id}", operation_id = "get_run_rollout", tag = "runs", summary = "A rollout of a run: trajectory, tool calls, verdict, final state", params(("run_id" = String, Path, description = "The run"), ("rollout_id" = String, Path, description = "The rollout")), responses((status = 200, body = RolloutDetail), (status = 404, description = "No such run", body = ErrorBody), (status = 404, description = "No such rollout", body = ErrorBody)))]
async fn get_rollout(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (run_id, rollout_id) = path.into_inner();
    let (detail, remote) = state.projections.read(|views| {
        let run = views
            .run(&run_id)
            .ok_or_else(|| ApiError::new(ErrorCode::RunNotFound, "Run not found"))?;
        let rollout = views
            .rollout(&rollout_id)
            .filter(|r| r.run_id == run_id)
            .ok_or_else(|| ApiError::new(ErrorCode::RolloutNotFound, "Rollout not found"))?;
        let mut detail = RolloutDetail::of(rollout);
        detail.task_override = run.task_overrides.get(&rollout.task_id).cloned();
        detail.client_context = run.client_context(&rollout.task_id).cloned();
        Ok::<_, ApiError>((detail, run.model.tool_server_url.is_some()))
    })?;
    let mut detail = detail.with_content(state.rollout_content(&rollout_id).await?);
    // The final state is not stored: the recorded tool calls replayed over the seed
    // rebuild it exactly. A remote environment's state lives with its owner.
    if !remote && detail.started() {
        detail.environment_state = state.environment_state(
            &detail.scenario_id,
            &detail.task_id,
            detail.task_override.as_ref(),
            (detail.seed, detail.instance_seed),
            Some((&detail.tool_calls, &detail.npc_replies)),
        );
    }
    Ok(HttpResponse::Ok().json(detail))
}
