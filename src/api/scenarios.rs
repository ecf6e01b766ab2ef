//! `/scenarios`: the catalog of scenario templates, their tasks, rubrics, NPCs and
//! seed data, in the seed's exact shapes.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::AppState;
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

/// The environment URL template of this server, as clients reach it.
fn environment_template(req: &HttpRequest) -> String {
    let info = req.connection_info();
    format!(
        "{}://{}/environments/<environment-id>",
        info.scheme(),
        info.host()
    )
}

async fn list_scenarios(state: web::Data<AppState>) -> HttpResponse {
    let list: Vec<_> = state
        .catalog
        .scenarios()
        .map(|s| {
            json!({
                "scenario_id": s.scenario_id,
                "name": s.name,
                "description": s.description,
                "num_tasks": s.tasks.len(),
                "num_npcs": s.npcs.len(),
                "tool_servers": s.tool_servers.iter()
                    .map(|name| json!({ "name": name, "server_type": "http" }))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    HttpResponse::Ok().json(list)
}

async fn list_tasks(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let scenario = scenario(&state, &path)?;
    let base = environment_template(&req);
    let tasks: Vec<_> = scenario
        .tasks
        .iter()
        .map(|t| {
            let npcs: Vec<_> = scenario
                .npcs
                .iter()
                .filter(|n| t.npc_profile_ids.contains(&n.profile_id))
                .collect();
            json!({
                "task_id": t.task_id,
                "name": t.name,
                "version": t.version,
                "category": t.category,
                "difficulty": t.difficulty,
                "visibility": t.visibility,
                "description": t.description,
                "tool_servers": t.tool_servers.iter()
                    .map(|name| json!({ "name": name, "tool_server_url": format!("{base}/{name}") }))
                    .collect::<Vec<_>>(),
                "rubric": t.rubric,
                "npc_profiles": npcs,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "scenario_id": scenario.scenario_id, "tasks": tasks })))
}

async fn get_rubric(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (scenario_id, task_id) = path.into_inner();
    let scenario = scenario(&state, &scenario_id)?;
    Ok(HttpResponse::Ok().json(&task(scenario, &task_id)?.rubric))
}

async fn list_npcs(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let scenario = scenario(&state, &path)?;
    Ok(HttpResponse::Ok()
        .json(json!({ "scenario_id": scenario.scenario_id, "npc_profiles": scenario.npcs })))
}

async fn list_seed_files(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let scenario = scenario(&state, &path)?;
    Ok(HttpResponse::Ok()
        .json(json!({ "scenario_id": scenario.scenario_id, "files": scenario.seed_files() })))
}

async fn get_seed_file(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (scenario_id, filename) = path.into_inner();
    let scenario = scenario(&state, &scenario_id)?;
    match scenario.read_seed_file(&filename) {
        Ok(content) => Ok(HttpResponse::Ok().json(json!({
            "scenario_id": scenario.scenario_id,
            "filename": filename,
            "content": content,
        }))),
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
