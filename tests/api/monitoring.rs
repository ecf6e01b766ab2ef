//! The monitoring that ships: the Grafana dashboard and the Prometheus alerts use only
//! metrics the service exports, and the dashboard shows every one of them.
//! (`promtool check rules` / `promtool test rules` run in `.ci/run`.)

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use crate::helpers::*;

fn file(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// `rl_gym_…` names in `text`, with a histogram's series suffixes taken off.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("rl_gym_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let name = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        if name.len() > "rl_gym_".len() {
            names.insert(name.to_string());
        }
        rest = &tail[end..];
    }
    names
}

#[actix_web::test]
async fn the_dashboard_and_alerts_use_exactly_the_exported_metrics() {
    let defined = metric_names(&file("src/metrics/mod.rs"));
    assert!(defined.len() >= 15, "{defined:?}");
    let dashboard: Value = serde_json::from_str(&file("config/grafana/rl-gym.json")).unwrap();
    let on_dashboard = metric_names(&dashboard.to_string());
    assert_eq!(
        on_dashboard, defined,
        "the dashboard shows every metric, and only those"
    );
    let alerts = metric_names(&file("config/prometheus/alerts.yml"));
    assert!(
        alerts.is_subset(&defined),
        "unknown metrics in the alerts: {:?}",
        alerts.difference(&defined).collect::<Vec<_>>()
    );
    for panel in dashboard["panels"].as_array().unwrap() {
        assert!(!panel["targets"].as_array().unwrap().is_empty());
    }

    // The service really exports them: after a run, each one that has a series.
    let app = spawn_app().await;
    let task = first_hr_task(&app).await;
    let launched = app.launch(&builtin_run("oracle", &[&task], 1)).await;
    app.wait_until_finished(launched["run_id"].as_str().unwrap())
        .await;
    let exported = metric_names(&app.get("/metrics").await.text().await.unwrap());
    for name in [
        "rl_gym_runs_launched_total",
        "rl_gym_rollouts_finished_total",
        "rl_gym_step_duration_seconds",
        "rl_gym_tool_calls_total",
        "rl_gym_event_append_duration_seconds",
        "rl_gym_data_dir_available_bytes",
        "rl_gym_data_dir_size_bytes",
    ] {
        assert!(exported.contains(name), "{name} is not exported");
    }
    assert!(exported.is_subset(&defined));
    app.stop().await;
}
