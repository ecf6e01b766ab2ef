//! The dashboard: a hand-written single-page app (HTML, vanilla JS, CSS) embedded in
//! the binary and served at `/`, so a researcher needs nothing but this service and a
//! browser, even offline. It reads the public HTTP API like any other client; the
//! assets themselves hold no data, so they are served without a token and the page
//! asks for one when the API answers 401.

use std::sync::OnceLock;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::AppState;
use crate::error::{ApiError, ErrorCode};
use crate::tools::replay;

/// One embedded file: its path, content type and bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("assets/index.html"),
    },
    Asset {
        path: "/dashboard/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/app.js"),
    },
    Asset {
        path: "/dashboard/app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("assets/app.css"),
    },
    Asset {
        path: "/dashboard/favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("assets/favicon.svg"),
    },
];

/// Whether `path` is one of the dashboard's static files (served without a token).
pub fn is_asset(path: &str) -> bool {
    ASSETS.iter().any(|a| a.path == path)
}

/// Registers the assets at the server root (not under `/v1`: that prefix is the API's).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/dashboard/rollouts/{rollout_id}/states").route(web::get().to(step_states)),
    );
    for (index, asset) in ASSETS.iter().enumerate() {
        let handler = move |req: HttpRequest| serve(req, index);
        cfg.service(
            web::resource(asset.path)
                .route(web::get().to(handler))
                .route(web::head().to(handler)),
        );
    }
}

/// Strong ETags from the bytes, computed once: the assets change only with the binary.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| format!("\"{:08x}\"", crc32c::crc32c(a.body)))
            .collect()
    })
}

async fn serve(req: HttpRequest, index: usize) -> HttpResponse {
    let asset = &ASSETS[index];
    let etag = &etags()[index];
    let matches = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    // `no-cache` means "revalidate": a browser never runs an old dashboard against a
    // newer server, and the revalidation is a cheap 304.
    let mut response = if matches {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::ETAG, etag.as_str()))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("x-content-type-options", "nosniff"));
    if matches {
        return response.finish();
    }
    response
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
        ))
        .content_type(asset.content_type)
        .body(asset.body)
}

/// `GET /dashboard/rollouts/{id}/states`: the environment before the first tool call
/// and after each call that changed it (keyed by the call's index in `tool_calls`), rebuilt by replaying the rollout's recorded
/// calls (and the NPC replies delivered by then) over its seed, so that the story can
/// show the change each step made. Rollout data: it needs the token like the API.
async fn step_states(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let not_found = || ApiError::new(ErrorCode::RolloutNotFound, "Rollout not found");
    let (rollout, task_override, remote) = state
        .projections
        .read(|views| {
            let r = views.rollout(&path)?;
            let run = views.run(&r.run_id)?;
            Some((
                r.clone(),
                run.task_overrides.get(&r.task_id).cloned(),
                run.model.tool_server_url.is_some(),
            ))
        })
        .ok_or_else(not_found)?;
    let none = || HttpResponse::Ok().json(json!({"initial": null, "after_call": {}}));
    // A remote environment's state lives with its owner.
    if remote {
        return Ok(none());
    }
    let content = state.rollout_content(&rollout.rollout_id).await?;
    if content.tool_calls.is_empty() {
        return Ok(none());
    }
    // One rebuild watched after every call (not a rebuild per call), off the
    // HTTP worker: a long rollout is a lot of state to serialise.
    let catalog = state.catalog.clone();
    let states = web::block(move || {
        let scenario = catalog.get(&rollout.scenario_id)?;
        let task = crate::scenarios::overrides::apply(
            scenario,
            &rollout.task_id,
            task_override.as_ref(),
            rollout.instance_seed,
        )
        .ok()?;
        let calls = content
            .tool_calls
            .iter()
            .map(|c| replay::recorded(&c.tool_name, &c.arguments, c.fault.as_deref()));
        let mut initial = None;
        let mut previous = serde_json::Value::Null;
        let mut changed = serde_json::Map::new();
        let watch = |done: u32, env: &crate::tools::Environment| {
            let now = env.state();
            match done.checked_sub(1) {
                None => initial = Some(now.clone()),
                Some(call) if now != previous => {
                    changed.insert(call.to_string(), now.clone());
                }
                Some(_) => {}
            }
            previous = now;
        };
        scenario
            .rebuild_watching(&task, rollout.seed, calls, &content.npc_replies, watch)
            .ok()?;
        let initial = initial?;
        Some((initial, changed))
    })
    .await
    .map_err(|e| {
        ApiError::new(
            ErrorCode::Internal,
            format!("rebuilding the states failed: {e}"),
        )
    })?;
    let Some((initial, changed)) = states else {
        return Ok(none());
    };
    Ok(HttpResponse::Ok().json(json!({"initial": initial, "after_call": changed})))
}
