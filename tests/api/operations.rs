//! Health, metrics and the error shape of unknown routes.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

#[actix_web::test]
async fn metrics_are_exported_in_prometheus_text_format() {
    let app = spawn_app().await;
    let task = first_hr_task(&app).await;
    let launched = app.launch(&builtin_run("oracle", &[&task], 2)).await;
    app.wait_until_finished(launched["run_id"].as_str().unwrap())
        .await;
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = response.text().await.unwrap();
    for needle in [
        "rl_gym_runs_launched_total 1",
        "rl_gym_rollouts_finished_total{outcome=\"completed\"} 2",
        "rl_gym_step_duration_seconds_bucket",
        "rl_gym_model_call_duration_seconds_bucket{provider=\"builtin\"",
        "rl_gym_events_appended_total",
        "rl_gym_event_append_duration_seconds_bucket",
        "rl_gym_projection_lag_events",
        "rl_gym_tool_calls_total",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    assert!(!text.contains("rol_"), "metrics never carry ids");
    app.stop().await;
}

#[actix_web::test]
async fn healthz_and_unknown_routes() {
    let app = spawn_app().await;
    let health = app.get_json("/healthz").await;
    assert_eq!(health["status"], "ok");
    let response = app.get("/nope").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "not_found");
    app.stop().await;
}
