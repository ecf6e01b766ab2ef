//! A run against an OpenAI-compatible model server over real HTTP (a local fake that
//! records what it was sent): the request shape, a tool call and its in-band error,
//! token usage and log-probabilities, and a provider that keeps failing.

use serde_json::json;

use crate::helpers::*;

#[actix_web::test]
async fn a_custom_provider_run_records_tool_calls_usage_and_logprobs() {
    let model = start_fake_model(Behaviour::ToolThenAnswer { delay_ms: 0 }).await;
    let app = spawn_app().await;
    let task = first_hr_task(&app).await;
    let launched = app
        .launch(&json!({
            "scenario_id": "hr",
            "task_ids": [task],
            "model_config": {
                "model": "smol", "provider": "custom", "base_url": model.address,
                "api_key": "sk-test-123", "temperature": 0.1, "log_prob": true
            }
        }))
        .await;
    let run_id = launched["run_id"].as_str().unwrap();
    let status = app.wait_until_finished(run_id).await;
    assert_eq!(status["completed"], 1, "{status}");
    assert_eq!(status["usage"]["total_tokens"], 220);
    assert_eq!(status["model_config"]["api_key"], "***");

    let rollout_id = status["rollout_ids"][0].as_str().unwrap();
    let rollout = app
        .get_json(&format!("/runs/{run_id}/rollouts/{rollout_id}"))
        .await;
    assert_eq!(rollout["steps"], 2);
    let call = &rollout["tool_calls"][0];
    assert_eq!(call["arguments"], "{\"bogus\": 1}");
    assert_eq!(
        call["is_error"], true,
        "bad arguments are answered in band: {call}"
    );
    assert!(
        call["observation"].as_str().unwrap().starts_with("Error"),
        "{call}"
    );
    assert_eq!(rollout["logprobs"].as_array().unwrap().len(), 2);
    assert_eq!(rollout["logprobs"][0]["content"][0]["logprob"], -0.25);

    let requests = model.requests.lock().clone();
    assert_eq!(requests.len(), 2);
    let (auth, first) = &requests[0];
    assert_eq!(auth.as_deref(), Some("Bearer sk-test-123"));
    assert_eq!(first["model"], "smol");
    assert_eq!(first["temperature"], 0.1);
    assert_eq!(first["logprobs"], true);
    assert_eq!(first["messages"][0]["role"], "system");
    assert_eq!(first["messages"][1]["role"], "user");
    assert!(first["tools"].as_array().unwrap().len() >= 6);
    let second = &requests[1].1["messages"];
    let tool_result = second.as_array().unwrap().last().unwrap();
    assert_eq!(tool_result["role"], "tool");
    assert_eq!(tool_result["tool_call_id"], "call_a");
    app.stop().await;
}

#[actix_web::test]
async fn a_provider_that_keeps_failing_fails_the_rollout_with_its_message() {
    let model = start_fake_model(Behaviour::AlwaysFailing).await;
    let app = spawn_app().await;
    let task = first_hr_task(&app).await;
    let launched = app
        .launch(&json!({
            "scenario_id": "hr",
            "task_ids": [task],
            "model_config": {"model": "smol", "provider": "custom", "base_url": model.address}
        }))
        .await;
    let run_id = launched["run_id"].as_str().unwrap();
    let status = app.wait_until_finished(run_id).await;
    assert_eq!(status["failed"], 1, "{status}");
    assert_eq!(status["status"], "failed");
    let rollout_id = status["rollout_ids"][0].as_str().unwrap();
    let rollout = app
        .get_json(&format!("/runs/{run_id}/rollouts/{rollout_id}"))
        .await;
    assert_eq!(
        rollout["error"],
        "model call failed at step 1: provider answered 500: the model is overloaded"
    );
    assert_eq!(model.requests.lock().len(), 4, "one call and three retries");
    app.stop().await;
}
