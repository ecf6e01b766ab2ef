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
    let rollout = app.rollout(run_id, rollout_id).await;
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
    let sent = second.as_array().unwrap();
    let tool_result = sent.last().unwrap();
    assert_eq!(tool_result["role"], "tool");
    assert_eq!(tool_result["tool_call_id"], "call_a");
    // The turn that only called a tool goes back with "" (llama-cpp-python's server
    // answers 500 to null and to a missing content).
    let assistant = &sent[sent.len() - 2];
    assert_eq!(assistant["role"], "assistant");
    assert_eq!(assistant["content"], "", "{assistant}");
    assert_eq!(assistant["tool_calls"][0]["id"], "call_a");
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
    let rollout = app.rollout(run_id, rollout_id).await;
    assert_eq!(
        rollout["error"],
        "model call failed at step 1: provider answered 500: the model is overloaded"
    );
    assert_eq!(model.requests.lock().len(), 4, "one call and three retries");
    app.stop().await;
}

#[actix_web::test]
async fn summarization_keeps_exactly_context_stride_recent_exchanges() {
    let model = start_fake_model(Behaviour::AlwaysTool).await;
    let app = spawn_app().await;
    let task = first_hr_task(&app).await;
    let launched = app
        .launch(&json!({
            "scenario_id": "hr",
            "task_ids": [task],
            "model_config": {"model": "m", "provider": "custom", "base_url": model.address,
                             "max_steps": 7, "summarize_every_n_turns": 3, "context_stride": 2}
        }))
        .await;
    let run_id = launched["run_id"].as_str().unwrap();
    let status = app.wait_until_finished(run_id).await;
    assert_eq!(status["completed"], 1, "{status}");

    let requests = model.requests.lock().clone();
    let summaries: Vec<usize> = (0..requests.len())
        .filter(|&i| requests[i].1.get("tools").is_none())
        .collect();
    assert_eq!(summaries.len(), 2, "summaries before turns 4 and 7");
    for &i in &summaries {
        let next = &requests[i + 1].1["messages"];
        let messages = next.as_array().unwrap();
        assert_eq!(messages[2]["name"], "summary", "{next}");
        assert!(messages[2]["content"]
            .as_str()
            .unwrap()
            .contains("SUMMARY: tried the tools."));
        let exchanges = messages[3..]
            .iter()
            .filter(|m| m["role"] == "assistant")
            .count();
        assert_eq!(
            exchanges, 2,
            "exactly context_stride exchanges kept verbatim: {next}"
        );
        assert_eq!(messages.len(), 3 + 2 * 2);
    }
    let rollout_id = status["rollout_ids"][0].as_str().unwrap();
    let rollout = app.rollout(run_id, rollout_id).await;
    assert_eq!(rollout["steps"], 7);
    assert_eq!(rollout["completion_reason"], "max_steps");
    let shown = rollout["trajectory"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["name"] == "summary")
        .count();
    assert_eq!(shown, 2, "the summaries show in the trajectory");
    app.stop().await;
}

#[actix_web::test]
async fn an_azure_openai_run_calls_the_deployment_with_the_api_key_header() {
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    let seen: rl_gym::load::fake_model::Recorded = Default::default();
    let recorded = seen.clone();
    let server = HttpServer::new(move || {
        let recorded = recorded.clone();
        App::new().route(
            "/openai/deployments/{deployment}/chat/completions",
            web::post().to(move |req: HttpRequest, body: web::Json<serde_json::Value>| {
                let recorded = recorded.clone();
                async move {
                    let described = format!(
                        "{}?{} api-key={} auth={}",
                        req.path(),
                        req.query_string(),
                        req.headers().get("api-key").map(|v| v.to_str().unwrap()).unwrap_or("-"),
                        req.headers().get("authorization").is_some()
                    );
                    recorded.lock().push((Some(described), body.into_inner()));
                    HttpResponse::Ok().json(json!({
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Nothing to do."}}],
                        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
                    }))
                }
            }),
        )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let base = format!("http://{}", server.addrs()[0]);
    actix_rt::spawn(server.run());

    let app = spawn_app().await;
    let task = first_hr_task(&app).await;
    let launched = app
        .launch(&json!({"scenario_id": "hr", "task_ids": [task], "model_config": {
            "model": "gpt4o-prod", "provider": "azure-openai", "base_url": base, "api_key": "az-key-1"}}))
        .await;
    let status = app
        .wait_until_finished(launched["run_id"].as_str().unwrap())
        .await;
    assert_eq!(status["completed"], 1, "{status}");
    assert_eq!(status["usage"]["total_tokens"], 10);
    let requests = seen.lock().clone();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].0.as_deref(),
        Some("/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21 api-key=az-key-1 auth=false")
    );
    assert!(requests[0].1["tools"].as_array().unwrap().len() >= 6);
    app.stop().await;
}
