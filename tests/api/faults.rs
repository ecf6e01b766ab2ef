//! Fault injection: with `tool_faults` a run's tool calls fail in band at the asked
//! rate, the same calls for the same seed, recorded as injected and never reaching
//! the environment.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

const TASKS: &[&str] = &[
    "hr__101_approve_leave_request",
    "hr__103_process_leave_queue",
];

/// Per rollout of the run, in order: each tool call's fault (or null).
async fn fault_pattern(app: &TestApp, faults: Value) -> Vec<Vec<Value>> {
    let mut body = builtin_run("oracle", TASKS, 3);
    body["tool_faults"] = faults;
    let launched = app.launch(&body).await;
    let run_id = launched["run_id"].as_str().unwrap();
    let status = app.wait_until_finished(run_id).await;
    let mut pattern = Vec::new();
    for id in status["rollout_ids"].as_array().unwrap() {
        let rollout = app
            .get_json(&format!("/runs/{run_id}/rollouts/{}", id.as_str().unwrap()))
            .await;
        assert_eq!(rollout["status"], "completed");
        let calls = rollout["tool_calls"].as_array().unwrap();
        for call in calls {
            if call.get("fault").is_some() {
                assert_eq!(call["is_error"], true);
                let observation = call["observation"].as_str().unwrap();
                assert!(observation.starts_with("Error: "), "{observation}");
            }
        }
        pattern.push(
            calls
                .iter()
                .map(|c| c.get("fault").cloned().unwrap_or(Value::Null))
                .collect(),
        );
    }
    pattern
}

#[actix_web::test]
async fn the_same_seed_gives_the_same_failures_twice() {
    let app = spawn_app().await;
    let faults = json!({"error_rate": 0.4, "seed": 42});
    let first = fault_pattern(&app, faults.clone()).await;
    let second = fault_pattern(&app, faults).await;
    assert_eq!(first, second, "the same seed, the same failures");
    let injected = first.iter().flatten().filter(|f| !f.is_null()).count();
    let calls = first.iter().flatten().count();
    assert!(calls >= 20, "{calls}");
    assert!(
        injected > 0 && injected < calls,
        "about 40% fail: {injected} of {calls}"
    );
    let other = fault_pattern(&app, json!({"error_rate": 0.4, "seed": 43})).await;
    assert_ne!(first, other, "another seed, other failures");
    app.stop().await;
}

#[actix_web::test]
async fn an_injected_failure_never_reaches_the_environment() {
    let app = spawn_app().await;
    let mut body = builtin_run("oracle", &[TASKS[0]], 1);
    body["tool_faults"] = json!({"error_rate": 1.0, "latency_ms": 5, "seed": 1});
    let launched = app.launch(&body).await;
    assert_eq!(launched["run_status"]["tool_faults"]["error_rate"], 1.0);
    let rollout = app.only_rollout(&launched).await;
    let calls = rollout["tool_calls"].as_array().unwrap();
    assert!(!calls.is_empty());
    for call in calls {
        assert!(call["fault"].is_string(), "{call}");
        assert!(call["latency_ms"].as_f64().unwrap() >= 5.0);
    }
    let artifacts = app
        .get_json(&format!(
            "/rollouts/{}/artifacts",
            rollout["rollout_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        artifacts["environment"]["before"], artifacts["environment"]["after"],
        "every call failed: nothing changed"
    );
    assert_eq!(rollout["score"], 0.0, "{}", rollout["verdict"]);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("rl_gym_tool_calls_total") && l.contains("outcome=\"fault\"")),
        "injected failures are counted apart"
    );
    app.stop().await;
}

#[actix_web::test]
async fn bad_tool_faults_are_refused_with_the_field() {
    let app = spawn_app().await;
    for (faults, field) in [
        (json!({"error_rate": 1.5}), "error_rate"),
        (json!({"seed": 3}), "error_rate"),
        (json!({"error_rate": 0.1, "latency_ms": -1}), "latency_ms"),
        (json!({"error_rate": 0.1, "seed": "x"}), "seed"),
        (json!({"error_rate": 0.1, "jitter": 3}), "jitter"),
    ] {
        let mut body = builtin_run("oracle", &[TASKS[0]], 1);
        body["tool_faults"] = faults.clone();
        let response = app.post_run(&body).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{faults}"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body["detail"][0]["loc"],
            json!(["body", "tool_faults", field]),
            "{faults}"
        );
    }
    app.stop().await;
}
