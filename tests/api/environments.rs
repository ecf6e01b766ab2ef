//! The tool-server protocol through HTTP: environments for outside agents, every
//! error case, isolation, and a run whose `tool_server_url` points at one.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

fn server_url(env: &Value, name: &str) -> String {
    env["tool_servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no {name} server in {env}"))["tool_server_url"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A task that uses the email server (and its first email tool that needs input).
async fn email_task(app: &TestApp) -> String {
    let tasks = app.get_json("/scenarios/hr/tasks").await;
    tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| {
            t["tool_servers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["name"] == "email")
        })
        .unwrap()["task_id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[actix_web::test]
async fn an_environment_speaks_the_tool_server_protocol() {
    let app = spawn_app().await;
    let task = email_task(&app).await;
    let env = app.create_environment(&task).await;
    let id = env["environment_id"].as_str().unwrap();
    assert!(id.starts_with("env_") && id.len() >= 36, "{id}");
    let email = server_url(&env, "email");
    assert_eq!(email, format!("{}/environments/{id}/email", app.address));

    let client = &app.client;
    let health: Value = client
        .get(format!("{email}/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health, json!({"status": "healthy"}));

    for server in env["tool_servers"].as_array().unwrap() {
        let url = server["tool_server_url"].as_str().unwrap();
        let tools: Value = client
            .get(format!("{url}/tools"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let tools = tools["tools"].as_array().unwrap();
        assert!(tools.len() >= 6, "{url}: {} tools", tools.len());
        for tool in tools {
            assert!(
                tool["name"].is_string() && tool["description"].is_string(),
                "{tool}"
            );
            assert_eq!(tool["input_schema"]["type"], "object", "{tool}");
            assert!(tool["mutates_state"].is_boolean(), "{tool}");
        }
    }

    let sent: Value = app
        .step(
            &email,
            &json!({"action": {"tool_name": "send_email", "parameters": {
                "to": ["someone@example.com"], "subject": "Hello", "body": "Testing the protocol."
            }}}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(sent["observation"].is_string(), "{sent}");
    assert_eq!(sent["reward"], 0.0);
    assert_eq!(sent["done"], false);
    assert!(sent.get("is_error").is_none(), "{sent}");

    let snapshot: Value = app.snapshot(&email).await;
    assert_eq!(snapshot["tool_server"], "email");
    assert!(snapshot["status"].is_string());
    assert!(snapshot["human_readable"].is_string());
    assert!(snapshot["data"]
        .to_string()
        .contains("Testing the protocol."));
    app.stop().await;
}

#[actix_web::test]
async fn bad_calls_are_answered_in_band_and_bad_requests_are_4xx_never_5xx() {
    let app = spawn_app().await;
    let task = email_task(&app).await;
    let env = app.create_environment(&task).await;
    let id = env["environment_id"].as_str().unwrap().to_string();
    let email = server_url(&env, "email");
    let client = &app.client;
    let step = |body: Value| {
        let url = format!("{email}/step");
        async move { client.post(url).json(&body).send().await.unwrap() }
    };

    for (body, needle) in [
        (
            json!({"action": {"tool_name": "launch_rockets", "parameters": {}}}),
            "unknown tool",
        ),
        (
            json!({"action": {"tool_name": "send_email", "parameters": {"subject": "x"}}}),
            "to",
        ),
        (
            json!({"action": {"tool_name": "send_email", "parameters": {"to": 5, "subject": "x", "body": "y"}}}),
            "to",
        ),
        (
            json!({"action": {"tool_name": "send_email", "parameters": "nope"}}),
            "object",
        ),
        (
            json!({"action": {"tool_name": "read_email", "parameters": {"email_id": "msg_9999"}}}),
            "msg_9999",
        ),
    ] {
        let response = step(body.clone()).await;
        assert_eq!(response.status(), StatusCode::OK, "{body}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["is_error"], true, "{body} → {answer}");
        let text = answer["observation"].as_str().unwrap();
        assert!(text.starts_with("Error"), "{text}");
        assert!(text.to_lowercase().contains(needle), "{body} → {text}");
    }

    // Malformed bodies are the caller's error, with the field named.
    let response = step(json!({"tool_name": "send_email"})).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["detail"][0]["loc"], json!(["body", "action"]));
    let response = step(json!({"action": {"parameters": {}}})).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let response = client
        .post(format!("{email}/step"))
        .header("content-type", "application/json")
        .body("{{{")
        .send()
        .await
        .unwrap();
    assert!(response.status().is_client_error());

    // Unknown environments and servers are 404s on every route.
    let guessed = format!("{}/environments/env_{}", app.address, "0".repeat(32));
    for url in [
        format!("{guessed}/email/tools"),
        format!("{guessed}/email/health"),
        format!("{guessed}/email/snapshot"),
        format!("{}/environments/{id}/payroll/tools", app.address),
        format!("{}/environments/{id}/payroll/health", app.address),
    ] {
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{url}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "environment_not_found");
    }
    let response = client
        .post(format!("{guessed}/email/step"))
        .json(&json!({"action": {"tool_name": "send_email", "parameters": {}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // Creating with bad input.
    let response = app.post_environment(&json!({"scenario_id": "hr"})).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let response = app
        .post_environment(&json!({"scenario_id": "hr", "task_id": "nope"}))
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = app
        .post_environment(&json!({"scenario_id": "nope", "task_id": "x"}))
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // Deleting ends it.
    let response = app.delete(&format!("/environments/{id}")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        client
            .get(format!("{email}/health"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.delete(&format!("/environments/{id}")).await.status(),
        StatusCode::NOT_FOUND
    );
    app.stop().await;
}

#[actix_web::test]
async fn two_environments_of_one_task_are_isolated() {
    let app = spawn_app().await;
    let task = email_task(&app).await;
    let a = app.create_environment(&task).await;
    let b = app.create_environment(&task).await;
    assert_ne!(a["environment_id"], b["environment_id"]);
    let (email_a, email_b) = (server_url(&a, "email"), server_url(&b, "email"));
    let before: Value = app.snapshot(&email_b).await;
    let answer: Value = app
        .step(
            &email_a,
            &json!({"action": {"tool_name": "send_email", "parameters": {
                "to": ["x@example.com"], "subject": "Only in A", "body": "private"
            }}}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(answer.get("is_error").is_none(), "{answer}");
    let after: Value = app.snapshot(&email_b).await;
    assert_eq!(before, after, "B did not see A's call");
    let a_state: Value = app.snapshot(&email_a).await;
    assert!(a_state["data"].to_string().contains("Only in A"));
    app.stop().await;
}

#[actix_web::test]
async fn a_run_pointed_at_a_hosted_environment_acts_on_it_and_is_scored_on_it() {
    let app = spawn_app().await;
    let task = email_task(&app).await;
    let env = app.create_environment(&task).await;
    let environment_url = env["environment_url"].as_str().unwrap();
    let launched = app
        .launch(&json!({
            "scenario_id": "hr",
            "task_ids": [task],
            "model_config": {"model": "oracle", "provider": "builtin", "tool_server_url": environment_url}
        }))
        .await;
    let run_id = launched["run_id"].as_str().unwrap();
    let status = app.wait_until_finished(run_id).await;
    assert_eq!(status["completed"], 1, "{status}");
    let rollout_id = status["rollout_ids"][0].as_str().unwrap();
    let rollout = app.rollout(run_id, rollout_id).await;
    assert_eq!(rollout["score"], 1.0, "{rollout}");
    assert!(!rollout["tool_calls"].as_array().unwrap().is_empty());

    // The hosted environment holds the changes; a fresh one of the same task does not.
    let fresh = app.create_environment(&task).await;
    for server in env["tool_servers"].as_array().unwrap() {
        let name = server["name"].as_str().unwrap();
        let used: Value = app.snapshot(&server_url(&env, name)).await;
        let untouched: Value = app.snapshot(&server_url(&fresh, name)).await;
        if rollout["tool_calls"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["server"] == name)
        {
            assert_ne!(
                used["data"], untouched["data"],
                "{name} was changed by the run"
            );
        }
    }

    // A run pointed at nothing fails with a clear message instead of hanging.
    let launched = app
        .launch(&json!({
            "scenario_id": "hr",
            "task_ids": [task],
            "model_config": {"model": "oracle", "provider": "builtin",
                             "tool_server_url": format!("{}/environments/env_missing", app.address)}
        }))
        .await;
    let run_id = launched["run_id"].as_str().unwrap();
    let status = app.wait_until_finished(run_id).await;
    assert_eq!(status["failed"], 1, "{status}");
    let rollout = app
        .get_json(&format!(
            "/runs/{run_id}/rollouts/{}",
            status["rollout_ids"][0].as_str().unwrap()
        ))
        .await;
    assert!(
        rollout["error"].as_str().unwrap().contains("404"),
        "{rollout}"
    );
    app.stop().await;
}
