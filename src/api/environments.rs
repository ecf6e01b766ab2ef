//! `/environments`: isolated, seeded tool servers for outside agents, speaking the
//! original service's tool-server protocol at `{environment_url}/{server}`:
//! `GET …/tools`, `POST …/step`, `GET …/health`, `GET …/snapshot`. A bad tool call is
//! answered in band (`is_error: true`), and so are parameters beyond
//! `max_tool_argument_bytes` and changes beyond `max_environment_state_bytes`; only a
//! malformed or too large (413) body is a 4xx, an unknown or expired environment or
//! server a 404; nothing here is ever a 5xx. URLs are built on the configured
//! `public_url` (or the bound address), never on the request's Host or Forwarded.

use actix_web::{web, HttpResponse};
use deserr::Deserr;
use serde_json::Value;

use super::body::{read, BodyErrors, Required};
use super::views::{
    EnvironmentCreated, EnvironmentDeleted, ServerHealth, StepAnswer, ToolList, ToolServerLink,
};
use super::AppState;
use crate::error::ErrorBody;
use crate::error::{ApiError, ErrorCode};
use crate::tools::registry::{Hosted, RegistryError};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/environments").route(web::post().to(create)))
        .service(web::resource("/environments/{environment_id}").route(web::delete().to(delete)))
        .service(
            web::resource("/environments/{environment_id}/{server}/tools")
                .route(web::get().to(tools)),
        )
        .service(
            web::resource("/environments/{environment_id}/{server}/step")
                .route(web::post().to(step)),
        )
        .service(
            web::resource("/environments/{environment_id}/{server}/health")
                .route(web::get().to(health)),
        )
        .service(
            web::resource("/environments/{environment_id}/{server}/snapshot")
                .route(web::get().to(snapshot)),
        );
}

/// `POST /environments`.
#[derive(Deserr, utoipa::ToSchema)]
#[deserr(error = BodyErrors)]
pub(crate) struct CreateEnvironment {
    #[deserr(default)]
    #[schema(value_type = String)]
    scenario_id: Required<String>,
    #[deserr(default)]
    #[schema(value_type = String)]
    task_id: Required<String>,
    /// Seeds the simulated ids and clock (default 0).
    #[deserr(default)]
    #[schema(value_type = Option<u64>)]
    seed: Option<i64>,
    /// Which instance of a task family (default 0, the task as written).
    #[deserr(default)]
    instance_seed: Option<u64>,
}

/// `POST /environments/{environment_id}/{server}/step`: the original tool-server
/// protocol's shape.
#[derive(Deserr, utoipa::ToSchema)]
#[deserr(error = BodyErrors)]
pub(crate) struct StepRequest {
    #[deserr(default)]
    #[schema(value_type = StepAction)]
    action: Required<StepAction>,
}

#[derive(Deserr, utoipa::ToSchema)]
#[deserr(error = BodyErrors)]
pub(crate) struct StepAction {
    #[deserr(default)]
    #[schema(value_type = String)]
    tool_name: Required<String>,
    /// The tool's arguments, as its `input_schema` describes them; the tool answers
    /// in band when they are wrong, whatever their shape.
    #[deserr(default = Value::Object(Default::default()))]
    #[schema(value_type = Object, required = false)]
    parameters: Value,
}

fn not_found() -> ApiError {
    ApiError::new(ErrorCode::EnvironmentNotFound, "Environment not found")
}

fn unknown_server(server: &str) -> ApiError {
    ApiError::new(
        ErrorCode::EnvironmentNotFound,
        format!("Tool server '{server}' is not part of this environment"),
    )
}

/// `{public_url}/environments`: where this server's environments are, as configured
/// (a client's Host or Forwarded header must not choose where agents are sent).
pub(super) fn environments_url(state: &AppState) -> String {
    let base = state.public_url.get().map_or("", String::as_str);
    format!("{base}/environments")
}

fn hosted(state: &AppState, id: &str) -> Result<std::sync::Arc<Hosted>, ApiError> {
    state.environments.get(id).ok_or_else(not_found)
}

fn check_server(hosted: &Hosted, server: &str) -> Result<(), ApiError> {
    if hosted.env.lock().server_names().iter().any(|s| s == server) {
        Ok(())
    } else {
        Err(unknown_server(server))
    }
}

#[utoipa::path(post, path = "/environments", tag = "environments", summary = "Host an isolated, seeded environment for an outside agent", request_body = CreateEnvironment, responses((status = 201, body = EnvironmentCreated), (status = 404, description = "No such scenario (or task)", body = ErrorBody), (status = 429, description = "Too many environments open", body = ErrorBody), (status = 422, description = "Invalid input, each bad field named", body = ErrorBody)))]
async fn create(
    state: web::Data<AppState>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let (body, mut c) = read::<CreateEnvironment>(&body)?;
    let root: &[&str] = &["body"];
    let scenario_id = c.required(root, "scenario_id", body.scenario_id.0);
    let task_id = c.required(root, "task_id", body.task_id.0);
    let seed = body
        .seed
        .and_then(|n| c.in_range(root, "seed", n, 0, i64::MAX))
        .unwrap_or(0) as u64;
    let instance_seed = body.instance_seed.unwrap_or(0);
    c.finish()?;
    let (Some(scenario_id), Some(task_id)) = (scenario_id, task_id) else {
        return Err(ApiError::validation(vec![]));
    };
    let scenario = state.catalog.get(&scenario_id).ok_or_else(|| {
        ApiError::new(
            ErrorCode::ScenarioNotFound,
            format!("Scenario '{scenario_id}' not found"),
        )
    })?;
    let task = scenario.task(&task_id).ok_or_else(|| {
        ApiError::new(
            ErrorCode::TaskNotFound,
            format!("Task '{task_id}' not found in scenario '{scenario_id}'"),
        )
    })?;
    // A template that cannot render or a world that cannot be built is the catalog's
    // fault, never the request's.
    let internal = |e: String| ApiError::new(ErrorCode::Internal, e);
    let task = task
        .instance(instance_seed)
        .map_err(|e| internal(format!("instance_seed: {e}")))?;
    let env = scenario
        .environment(&task, seed)
        .map_err(|e| internal(format!("the environment could not be built: {e}")))?;
    let (id, servers) = state
        .environments
        .create(&scenario_id, &task_id, env)
        .map_err(|e| match e {
            RegistryError::Full(_) => ApiError::new(ErrorCode::TooManyEnvironments, e.to_string()),
        })?;
    let description = task.description.clone();
    let base = format!("{}/{id}", environments_url(&state));
    Ok(HttpResponse::Created().json(EnvironmentCreated {
        tool_servers: servers
            .iter()
            .map(|name| ToolServerLink {
                name: name.to_string(),
                tool_server_url: format!("{base}/{name}"),
            })
            .collect(),
        environment_id: id,
        environment_url: base,
        scenario_id,
        task_id,
        seed,
        instance_seed,
        description,
    }))
}

#[utoipa::path(delete, path = "/environments/{environment_id}", tag = "environments", summary = "Close an environment", params(("environment_id" = String, Path, description = "The environment")), responses((status = 200, body = EnvironmentDeleted), (status = 404, description = "No such environment or tool server", body = ErrorBody)))]
async fn delete(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    if state.environments.delete(&id) {
        Ok(HttpResponse::Ok().json(EnvironmentDeleted {
            environment_id: id,
            deleted: true,
        }))
    } else {
        Err(not_found())
    }
}

#[utoipa::path(get, path = "/environments/{environment_id}/{server}/tools", tag = "environments", summary = "A tool server's tools", params(("environment_id" = String, Path, description = "The environment"),("server" = String, Path, description = "The tool server")), responses((status = 200, body = ToolList), (status = 404, description = "No such environment or tool server", body = ErrorBody)))]
async fn tools(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, server) = path.into_inner();
    let hosted = hosted(&state, &id)?;
    let tools = hosted
        .env
        .lock()
        .tools(&server)
        .ok_or_else(|| unknown_server(&server))?;
    Ok(HttpResponse::Ok().json(ToolList { tools }))
}

#[utoipa::path(post, path = "/environments/{environment_id}/{server}/step", tag = "environments", summary = "Call a tool", params(("environment_id" = String, Path, description = "The environment"),("server" = String, Path, description = "The tool server")), request_body = StepRequest, responses((status = 200, body = StepAnswer), (status = 404, description = "No such environment or tool server", body = ErrorBody), (status = 422, description = "Invalid input, each bad field named", body = ErrorBody)))]
async fn step(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let (id, server) = path.into_inner();
    let hosted = hosted(&state, &id)?;
    let (body, mut c) = read::<StepRequest>(&body)?;
    if body.action.0.is_none() && !c.names(&["body", "action"]) {
        c.push(
            &["body"],
            "action",
            "Field required: {\"action\": {\"tool_name\", \"parameters\"}}",
            "missing",
        );
    }
    let action = body.action.0;
    let tool_name = action
        .as_ref()
        .and_then(|a| c.required(&["body", "action"], "tool_name", a.tool_name.0.clone()));
    c.finish()?;
    let (Some(action), Some(tool_name)) = (action, tool_name) else {
        return Err(ApiError::validation(vec![]));
    };
    let parameters = action.parameters;
    let observation = hosted
        .step(&server, &tool_name, &parameters)
        .ok_or_else(|| unknown_server(&server))?;
    Ok(HttpResponse::Ok().json(StepAnswer {
        observation: observation.observation,
        reward: observation.reward,
        done: observation.done,
        is_error: observation.is_error,
    }))
}

#[utoipa::path(get, path = "/environments/{environment_id}/{server}/health", tag = "environments", summary = "A tool server's health", params(("environment_id" = String, Path, description = "The environment"),("server" = String, Path, description = "The tool server")), responses((status = 200, body = ServerHealth), (status = 404, description = "No such environment or tool server", body = ErrorBody)))]
async fn health(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, server) = path.into_inner();
    let hosted = hosted(&state, &id)?;
    check_server(&hosted, &server)?;
    Ok(HttpResponse::Ok().json(ServerHealth { status: "healthy" }))
}

#[utoipa::path(get, path = "/environments/{environment_id}/{server}/snapshot", tag = "environments", summary = "A tool server's whole state", params(("environment_id" = String, Path, description = "The environment"),("server" = String, Path, description = "The tool server")), responses((status = 200, body = Object), (status = 404, description = "No such environment or tool server", body = ErrorBody)))]
async fn snapshot(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, server) = path.into_inner();
    let hosted = hosted(&state, &id)?;
    let snapshot = hosted
        .env
        .lock()
        .snapshot(&server)
        .ok_or_else(|| unknown_server(&server))?;
    Ok(HttpResponse::Ok().json(snapshot))
}
