//! `/healthz` and `/metrics`.

use super::views::Health;
use super::AppState;
use actix_web::{web, HttpResponse};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/healthz").route(web::get().to(healthz)))
        .service(web::resource("/metrics").route(web::get().to(metrics)));
}

#[utoipa::path(get, path = "/healthz", tag = "operations", summary = "Health", responses((status = 200, body = Health)))]
async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    let events = state.store.next_position();
    let applied = state.projections.applied();
    HttpResponse::Ok().json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        events,
        projection_lag: events.saturating_sub(applied),
    })
}

#[utoipa::path(get, path = "/metrics", tag = "operations", summary = "Prometheus metrics", responses((status = 200, description = "The text exposition format", content_type = "text/plain", body = String)))]
async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let events = state.store.next_position();
    let m = &state.metrics;
    m.log_position.set(events as i64);
    m.projection_lag
        .set(events.saturating_sub(state.projections.applied()) as i64);
    m.observe_disk(&state.data_dir);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(m.render())
}
