//! `/healthz` and `/metrics`.

use super::views::Health;
use super::AppState;
use actix_web::{web, HttpResponse};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/healthz").route(web::get().to(healthz)))
        .service(web::resource("/metrics").route(web::get().to(metrics)));
}

#[utoipa::path(get, path = "/healthz", tag = "operations", summary = "Health", responses((status = 200, body = Health), (status = 503, description = "The event store is unreachable", body = Health)))]
async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    let events = state.store.next_position();
    let applied = state.projections.applied();
    let connected = state.store.connection().connected;
    // Unreachable store: nothing can be written, so a load balancer should look away.
    let mut response = if connected {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    response.json(Health {
        status: if connected { "ok" } else { "store_unavailable" },
        store_connected: connected,
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
    m.observe_store(state.store.connection());
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(m.render())
}
