//! `/rollouts`: every rollout as a resource of its own, the shape the original
//! service's clients read, with filters and pagination, and a rollout's artifacts
//! (trajectory, tool calls, environment before and after, verdict).

use actix_web::{web, HttpResponse};
use serde::Serialize;
use serde_json::Value;

use super::validate::{query_flag, Checker, Page};
use super::views::{RolloutPage, RolloutRecord};
use super::AppState;
use crate::domain::chat::{Message, Role};
use crate::domain::events::NpcReplied;
use crate::domain::rollout::RolloutStatus;
use crate::domain::verdict::{RubricVerdict, Verdict};
use crate::error::ErrorBody;
use crate::error::{ApiError, ErrorCode};
use crate::projections::{RolloutView, ToolCallView};

const REDACTED: &str = "[redacted]";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/rollouts").route(web::get().to(list_rollouts)))
        .service(web::resource("/rollouts/{rollout_id}").route(web::get().to(get_rollout)))
        .service(web::resource("/rollouts/{rollout_id}/artifacts").route(web::get().to(artifacts)));
}

#[derive(Default)]
struct Filter {
    run_id: Option<String>,
    scenario_id: Option<String>,
    task_id: Option<String>,
    status: Option<RolloutStatus>,
    page: Page,
}

impl Filter {
    fn parse(pairs: &[(String, String)]) -> Result<Filter, ApiError> {
        let mut c = Checker::default();
        let mut f = Filter::default();
        for (key, value) in pairs {
            match key.as_str() {
                "run_id" => f.run_id = Some(value.clone()),
                "scenario_id" => f.scenario_id = Some(value.clone()),
                "task_id" => f.task_id = Some(value.clone()),
                "status" => match serde_json::from_value(Value::String(value.clone())) {
                    Ok(status) => f.status = Some(status),
                    Err(_) => c.push(
                        &["query"],
                        "status",
                        "Input should be 'pending', 'running', 'verifying', 'completed', \
                         'failed' or 'cancelled'",
                        "enum",
                    ),
                },
                "limit" | "offset" => {
                    c.page_param(key, value, &mut f.page);
                }
                _ => {}
            }
        }
        c.finish()?;
        Ok(f)
    }

    fn keeps(&self, r: &RolloutView) -> bool {
        self.scenario_id
            .as_deref()
            .is_none_or(|s| r.scenario_id == s)
            && self.task_id.as_deref().is_none_or(|t| r.task_id == t)
            && self.status.is_none_or(|s| r.status == s)
    }
}

/// Newest run first, each run's rollouts in launch order.
#[utoipa::path(get, path = "/rollouts", tag = "rollouts", summary = "Every rollout, filtered and paginated", params(("run_id" = Option<String>, Query, description = "Only this run"), ("scenario_id" = Option<String>, Query, description = "Only this scenario"), ("task_id" = Option<String>, Query, description = "Only this task"), ("status" = Option<RolloutStatus>, Query, description = "Only this status"), ("limit" = Option<u32>, Query, description = "1–200 (50)"), ("offset" = Option<u64>, Query, description = "Rollouts to skip")), responses((status = 200, body = RolloutPage), (status = 422, description = "Invalid input, each bad field named", body = ErrorBody)))]
async fn list_rollouts(
    state: web::Data<AppState>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let filter = Filter::parse(&query)?;
    Ok(state.projections.read(|views| {
        let runs = match &filter.run_id {
            Some(id) => views.run(id).into_iter().collect(),
            None => views.list_runs(None, None, 0, usize::MAX).runs,
        };
        let matching = runs
            .into_iter()
            .flat_map(|run| run.rollout_ids.iter())
            .filter_map(|id| views.rollout(id))
            .filter(|r| filter.keeps(r));
        let mut total = 0;
        let mut page = Vec::new();
        for rollout in matching {
            if total >= filter.page.offset && page.len() < filter.page.limit {
                page.push(RolloutRecord::of(rollout));
            }
            total += 1;
        }
        HttpResponse::Ok().json(RolloutPage {
            total,
            rollouts: page,
        })
    }))
}

fn not_found() -> ApiError {
    ApiError::new(ErrorCode::RolloutNotFound, "Rollout not found")
}

#[utoipa::path(get, path = "/rollouts/{rollout_id}", tag = "rollouts", summary = "One rollout", params(("rollout_id" = String, Path, description = "The rollout")), responses((status = 200, body = RolloutRecord), (status = 404, description = "No such rollout", body = ErrorBody)))]
async fn get_rollout(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.projections.read(|views| {
        let rollout = views.rollout(&path).ok_or_else(not_found)?;
        Ok(HttpResponse::Ok().json(RolloutRecord::of(rollout)))
    })
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Artifacts {
    rollout_id: String,
    run_id: String,
    task_id: String,
    status: RolloutStatus,
    /// True when tool arguments and results are hidden (`?redact_tool_calls=true`).
    redacted: bool,
    trajectory: Vec<Message>,
    tool_calls: Vec<ToolCallView>,
    npc_replies: Vec<NpcReplied>,
    /// The tool servers' state before the first step and now (after the last);
    /// `null` for a remote environment, whose state lives with its owner.
    environment: EnvironmentStates,
    score: Option<f64>,
    label: Option<&'static str>,
    verdict: Option<Verdict>,
    rubric: Option<RubricVerdict>,
    /// The caller's opaque `client_context` from the task's override, returned as is.
    client_context: Option<Value>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct EnvironmentStates {
    before: Option<Value>,
    after: Option<Value>,
}

#[utoipa::path(get, path = "/rollouts/{rollout_id}/artifacts", tag = "rollouts", summary = "A rollout's trajectory, tool calls, environment before and after, verdict", params(("rollout_id" = String, Path, description = "The rollout"), ("redact_tool_calls" = Option<bool>, Query, description = "Hide every tool argument and result")), responses((status = 200, body = Artifacts), (status = 404, description = "No such rollout", body = ErrorBody), (status = 422, description = "Invalid input, each bad field named", body = ErrorBody)))]
async fn artifacts(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let redact = query_flag(&query, "redact_tool_calls", false)?;
    let (mut artifacts, scenario_id, task_override, seed, remote) =
        state.projections.read(|views| {
            let r = views.rollout(&path).ok_or_else(not_found)?;
            let run = views.run(&r.run_id).ok_or_else(not_found)?;
            let artifacts = Artifacts {
                rollout_id: r.rollout_id.clone(),
                run_id: r.run_id.clone(),
                task_id: r.task_id.clone(),
                status: r.status,
                redacted: redact,
                trajectory: vec![],
                tool_calls: vec![],
                npc_replies: vec![],
                environment: EnvironmentStates {
                    before: None,
                    after: None,
                },
                score: r.score(),
                label: r.label(),
                verdict: r.verdict.clone(),
                rubric: r.rubric.clone(),
                client_context: run.client_context(&r.task_id).cloned(),
            };
            let task_override = run.task_overrides.get(&r.task_id).cloned();
            let remote = run.model.tool_server_url.is_some();
            Ok::<_, ApiError>((
                artifacts,
                r.scenario_id.clone(),
                task_override,
                (r.seed, r.instance_seed),
                remote,
            ))
        })?;
    let content = state.rollout_content(&artifacts.rollout_id).await?;
    artifacts.trajectory = content.trajectory;
    artifacts.tool_calls = content.tool_calls;
    artifacts.npc_replies = content.npc_replies;
    if !remote {
        let a = &artifacts;
        let rebuild = |recorded| {
            state.environment_state(
                &scenario_id,
                &a.task_id,
                task_override.as_ref(),
                seed,
                recorded,
            )
        };
        let environment = EnvironmentStates {
            before: rebuild(None),
            after: rebuild(Some((&a.tool_calls, &a.npc_replies))),
        };
        artifacts.environment = environment;
    }
    if redact {
        redact_tool_calls(&mut artifacts);
    }
    Ok(HttpResponse::Ok().json(artifacts))
}

/// Hides every tool argument and result, wherever it appears.
fn redact_tool_calls(artifacts: &mut Artifacts) {
    for call in &mut artifacts.tool_calls {
        call.arguments = REDACTED.into();
        call.observation = REDACTED.into();
    }
    for message in &mut artifacts.trajectory {
        for call in &mut message.tool_calls {
            call.function.arguments = REDACTED.into();
        }
        if message.role == Role::Tool {
            message.content = Some(REDACTED.into());
        }
    }
}
