//! `GET /openapi.json` (OpenAPI 3.1) and `GET /docs`: the API described from the very
//! types and handlers that serve it (`utoipa`), and a page that renders it for a
//! person, made here so that it works offline (no CDN script).

use std::fmt::Write;

use actix_web::{web, HttpResponse};
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::{OpenApi as Document, RefOr, Required};
use utoipa::OpenApi;

use super::{
    environments, events, export, feed, fork, health, models, reverify, rollouts, runs, scenarios,
    stats, verifiers,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "rl-gym",
        description = "Runs LLM agents against simulated enterprise environments and scores \
                       them. Every path is also served under `/v1`. With API tokens configured, \
                       send `Authorization: Bearer <token>` or `API-Key: <token>`."
    ),
    paths(
        runs::launch_run,
        runs::list_runs,
        runs::get_run,
        runs::cancel_run,
        runs::resume_run,
        runs::delete_run,
        runs::get_rollout,
        fork::fork_rollout,
        reverify::reverify_run,
        stats::run_stats,
        stats::compare_runs,
        export::export,
        feed::groups,
        feed::ack,
        feed::policy,
        events::run_events,
        events::all_events,
        rollouts::list_rollouts,
        rollouts::get_rollout,
        rollouts::artifacts,
        models::test_model_config,
        environments::create,
        environments::delete,
        environments::tools,
        environments::step,
        environments::health,
        environments::snapshot,
        scenarios::list_scenarios,
        scenarios::list_tasks,
        scenarios::get_rubric,
        scenarios::list_npcs,
        scenarios::list_seed_files,
        scenarios::get_seed_file,
        verifiers::download_bundle,
        health::healthz,
        health::metrics,
        openapi_json,
        docs,
    ),
    // Answered by `POST /runs?dry_run=true` beside the launch's own answer.
    components(schemas(super::views::DryRunAnswer))
)]
struct ApiDoc;

/// The document, with this build's version.
pub fn document() -> Document {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/openapi.json").route(web::get().to(openapi_json)))
        .service(web::resource("/docs").route(web::get().to(docs)));
}

#[utoipa::path(get, path = "/openapi.json", tag = "operations", summary = "This document",
    responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json", body = Object)))]
async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(document())
}

#[utoipa::path(get, path = "/docs", tag = "operations", summary = "This document as a page",
    responses((status = 200, description = "HTML", content_type = "text/html", body = String)))]
async fn docs() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(render(&document()))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `#/components/schemas/X` as a link to its section.
fn schema_link(schema: &RefOr<utoipa::openapi::schema::Schema>) -> String {
    match schema {
        RefOr::Ref(r) => {
            let name = r.ref_location.rsplit('/').next().unwrap_or_default();
            format!("<a href=\"#schema-{0}\">{0}</a>", escape(name))
        }
        RefOr::T(inline) => format!(
            "<code>{}</code>",
            escape(&serde_json::to_string(inline).unwrap_or_default())
        ),
    }
}

fn render_operation(out: &mut String, method: &str, path: &str, op: &Operation) {
    let _ = write!(
        out,
        "<section class=\"op\"><h3><span class=\"m {m}\">{M}</span> <code>{p}</code></h3>",
        m = method,
        M = method.to_uppercase(),
        p = escape(path)
    );
    if let Some(summary) = &op.summary {
        let _ = write!(out, "<p>{}</p>", escape(summary));
    }
    if let Some(params) = op.parameters.as_ref().filter(|p| !p.is_empty()) {
        out.push_str(
            "<table><tr><th>parameter</th><th>in</th><th>required</th><th>meaning</th></tr>",
        );
        for p in params {
            let place = match p.parameter_in {
                ParameterIn::Path => "path",
                ParameterIn::Query => "query",
                ParameterIn::Header => "header",
                ParameterIn::Cookie => "cookie",
            };
            let _ = write!(
                out,
                "<tr><td><code>{}</code></td><td>{place}</td><td>{}</td><td>{}</td></tr>",
                escape(&p.name),
                if p.required == Required::True {
                    "yes"
                } else {
                    "no"
                },
                escape(p.description.as_deref().unwrap_or_default())
            );
        }
        out.push_str("</table>");
    }
    if let Some(body) = &op.request_body {
        for (content_type, content) in &body.content {
            let _ = write!(
                out,
                "<p>Body (<code>{}</code>): {}</p>",
                escape(content_type),
                content.schema.as_ref().map(schema_link).unwrap_or_default()
            );
        }
    }
    out.push_str("<ul>");
    for (status, response) in &op.responses.responses {
        let (description, schemas) = match response {
            RefOr::T(r) => (
                r.description.clone(),
                r.content
                    .iter()
                    .filter_map(|(ct, c)| {
                        c.schema
                            .as_ref()
                            .map(|s| format!("{} <code>{}</code>", schema_link(s), escape(ct)))
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            RefOr::Ref(r) => (r.ref_location.clone(), String::new()),
        };
        let _ = write!(
            out,
            "<li><b>{}</b> {} {}</li>",
            escape(status),
            escape(&description),
            schemas
        );
    }
    out.push_str("</ul></section>");
}

/// The whole document as one page: every operation, then every schema as JSON.
fn render(doc: &Document) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} {version} API</title><style>\
         body{{font-family:system-ui,sans-serif;max-width:70rem;margin:auto;padding:1rem;line-height:1.4}}\
         code,pre{{font-family:ui-monospace,monospace}} pre{{background:#f4f4f4;padding:.5rem;overflow:auto}}\
         .op{{border-top:1px solid #ddd;padding:.25rem 0}} .m{{display:inline-block;min-width:4.5rem;\
         text-align:center;border-radius:4px;color:#fff;font-size:.8rem;padding:.1rem .3rem}}\
         .get{{background:#2563eb}} .post{{background:#16a34a}} .delete{{background:#dc2626}}\
         table{{border-collapse:collapse}} td,th{{border:1px solid #ddd;padding:.2rem .5rem;text-align:left}}\
         </style></head><body><h1>{title} {version}</h1><p>{description}</p>\
         <p>The machine-readable document: <a href=\"openapi.json\">openapi.json</a>.</p><h2>Endpoints</h2>",
        title = escape(&doc.info.title),
        version = escape(&doc.info.version),
        description = escape(doc.info.description.as_deref().unwrap_or_default()),
    );
    for (path, item) in &doc.paths.paths {
        for (method, op) in [
            ("get", &item.get),
            ("post", &item.post),
            ("put", &item.put),
            ("patch", &item.patch),
            ("delete", &item.delete),
        ] {
            if let Some(op) = op {
                render_operation(&mut out, method, path, op);
            }
        }
    }
    if let Some(components) = &doc.components {
        out.push_str("<h2>Schemas</h2>");
        for (name, schema) in &components.schemas {
            let _ = write!(
                out,
                "<section id=\"schema-{0}\"><h3>{0}</h3><pre>{1}</pre></section>",
                escape(name),
                escape(&serde_json::to_string_pretty(schema).unwrap_or_default())
            );
        }
    }
    out.push_str("</body></html>");
    out
}
