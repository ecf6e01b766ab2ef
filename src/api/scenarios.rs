//! `/scenarios`: the catalog of scenario templates, their tasks, rubrics, NPCs and
//! seed data, in the seed's exact shapes.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::views::{
    NpcList, ScenarioSummary, SeedFile, SeedFiles, TaskList, TaskSummary, ToolServerKind,
    ToolServerLink,
};
use super::AppState;
use crate::error::ErrorBody;
use crate::error::{ApiError, ErrorCode};
use crate::scenarios::{Scenario, SeedFileError, Task};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/scenarios").route(web::get().to(list_scenarios)))
        .service(web::resource("/scenarios/{scenario_id}/tasks").route(web::get().to(list_tasks)))
        .service(
            web::resource("/scenarios/{scenario_id}/tasks/{task_id}/rubric")
                .route(web::get().to(get_rubric)),
        )
        .service(web::resource("/scenarios/{scenario_id}/npcs").route(web::get().to(list_npcs)))
        .service(
            web::resource("/scenarios/{scenario_id}/seed_data")
                .route(web::get().to(list_seed_files)),
        )
        .service(
            web::resource("/scenarios/{scenario_id}/seed_data/{filename:.*}")
                .route(web::get().to(get_seed_file)),
        );
}

fn scenario<'a>(state: &'a AppState, scenario_id: &str) -> Result<&'a Scenario, ApiError> {
    state.catalog.get(scenario_id).ok_or_else(|| {
        ApiError::new(
            ErrorCode::ScenarioNotFound,
            format!("Scenario '{scenario_id}' not found"),
        )
    })
}

fn task<'a>(scenario: &'a Scenario, task_id: &str) -> Result<&'a Task, ApiError> {
    scenario.task(task_id).ok_or_else(|| {
        ApiError::new(
            ErrorCode::TaskNotFound,
            format!(
                "Task '{task_id}' not found in scenario '{}'",
                scenario.scenario_id
            ),
        )
    })
}

/// The environment URL template of this server, on its configured public URL.
fn environment_template(state: &AppState) -> String {
    format!(
        "{}/<environment-id>",
        super::environments::environments_url(state)
    )
}

#[utoipa::path(get, path = "/scenarios", tag = "scenarios", summary = "The scenario templates", responses((status = 200, body = Vec<ScenarioSummary>)))]
async fn list_scenarios(state: web::Data<AppState>) -> HttpResponse {
    let list: Vec<ScenarioSummary> = state
        .catalog
        .scenarios()
        .map(|s| ScenarioSummary {
            scenario_id: s.scenario_id.clone(),
            name: s.name.clone(),
            description: s.description.clone(),
            num_tasks: s.tasks.len(),
            num_npcs: s.npcs.len(),
            tool_servers: s
                .tool_servers
                .iter()
                .map(|name| ToolServerKind {
                    name: name.clone(),
                    server_type: "http",
                })
                .collect(),
        })
        .collect();
    HttpResponse::Ok().json(list)
}

#[utoipa::path(get, path = "/scenarios/{scenario_id}/tasks", tag = "scenarios", summary = "A scenario's tasks", params(("scenario_id" = String, Path, description = "The scenario")), responses((status = 200, body = TaskList), (status = 404, description = "No such scenario (or task)", body = ErrorBody)))]
async fn list_tasks(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let scenario = scenario(&state, &path)?;
    let base = environment_template(&state);
    let tasks: Vec<TaskSummary> = scenario
        .tasks
        .iter()
        .map(|family| {
            // A family is shown as it was written: its instance 0.
            let t = &*family
                .instance(0)
                .unwrap_or(std::borrow::Cow::Borrowed(family));
            summary(scenario, t, &base, family)
        })
        .collect();
    Ok(HttpResponse::Ok().json(TaskList {
        scenario_id: scenario.scenario_id.clone(),
        tasks,
    }))
}

/// One task as listed: `t` (a family's instance 0) with the family's parameters.
fn summary(scenario: &Scenario, t: &Task, base: &str, family: &Task) -> TaskSummary {
    TaskSummary {
        task_id: t.task_id.clone(),
        name: t.name.clone(),
        version: t.version.clone(),
        category: t.category.clone(),
        difficulty: t.difficulty.clone(),
        visibility: t.visibility.clone(),
        description: t.description.clone(),
        tool_servers: t
            .tool_servers
            .iter()
            .map(|name| ToolServerLink {
                name: name.clone(),
                tool_server_url: format!("{base}/{name}"),
            })
            .collect(),
        rubric: json!(t.rubric),
        npc_profiles: scenario
            .npcs
            .iter()
            .filter(|n| t.npc_profile_ids.contains(&n.profile_id))
            .map(|n| json!(n))
            .collect(),
        seed_data: scenario.task_seed_files(t),
        parameters: family
            .parameters
            .iter()
            .map(|(name, values)| (name.clone(), values.len()))
            .collect(),
    }
}

#[utoipa::path(get, path = "/scenarios/{scenario_id}/tasks/{task_id}/rubric", tag = "scenarios", summary = "A task's rubric", params(("scenario_id" = String, Path, description = "The scenario"),("task_id" = String, Path, description = "The task"),("instance_seed" = Option<u64>, Query, description = "Which instance of a task family (0: the task as written)")), responses((status = 200, body = Object), (status = 404, description = "No such scenario (or task)", body = ErrorBody), (status = 422, description = "Invalid input, each bad field named", body = ErrorBody)))]
async fn get_rubric(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let (scenario_id, task_id) = path.into_inner();
    let mut c = super::validate::Checker::default();
    let mut instance_seed = 0;
    for (key, value) in query.iter() {
        if key == "instance_seed" {
            instance_seed = c.query_seed("instance_seed", value).unwrap_or(0);
        }
    }
    c.finish()?;
    let scenario = scenario(&state, &scenario_id)?;
    let instance = task(scenario, &task_id)?
        .instance(instance_seed)
        .map_err(|e| ApiError::new(ErrorCode::Internal, e))?;
    Ok(HttpResponse::Ok().json(&instance.rubric))
}

#[utoipa::path(get, path = "/scenarios/{scenario_id}/npcs", tag = "scenarios", summary = "A scenario's simulated people", params(("scenario_id" = String, Path, description = "The scenario")), responses((status = 200, body = NpcList), (status = 404, description = "No such scenario (or task)", body = ErrorBody)))]
async fn list_npcs(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let scenario = scenario(&state, &path)?;
    Ok(HttpResponse::Ok().json(NpcList {
        scenario_id: scenario.scenario_id.clone(),
        npc_profiles: scenario.npcs.iter().map(|n| json!(n)).collect(),
    }))
}

#[utoipa::path(get, path = "/scenarios/{scenario_id}/seed_data", tag = "scenarios", summary = "A scenario's seed data files", params(("scenario_id" = String, Path, description = "The scenario")), responses((status = 200, body = SeedFiles), (status = 404, description = "No such scenario (or task)", body = ErrorBody)))]
async fn list_seed_files(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let scenario = scenario(&state, &path)?;
    Ok(HttpResponse::Ok().json(SeedFiles {
        scenario_id: scenario.scenario_id.clone(),
        files: scenario.seed_files(),
    }))
}

#[utoipa::path(get, path = "/scenarios/{scenario_id}/seed_data/{filename}", tag = "scenarios", summary = "One seed data file", params(("scenario_id" = String, Path, description = "The scenario"),("filename" = String, Path, description = "The file, possibly in a sub-folder")), responses((status = 200, body = SeedFile), (status = 400, description = "The filename escapes its folder", body = ErrorBody), (status = 404, description = "No such scenario (or task)", body = ErrorBody)))]
async fn get_seed_file(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (scenario_id, filename) = path.into_inner();
    let scenario = scenario(&state, &scenario_id)?;
    match scenario.read_seed_file(&filename) {
        Ok(content) => Ok(HttpResponse::Ok().json(SeedFile {
            scenario_id: scenario.scenario_id.clone(),
            filename,
            content,
        })),
        Err(SeedFileError::Traversal) => Err(ApiError::new(
            ErrorCode::PathTraversal,
            "Invalid filename: path traversal is not allowed",
        )),
        Err(_) => Err(ApiError::new(
            ErrorCode::SeedFileNotFound,
            format!("Seed data file '{filename}' not found"),
        )),
    }
}
