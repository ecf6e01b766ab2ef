//! Forking a rollout: the new run's rollouts start from the source's conversation and
//! environment after step k, share its first k steps exactly, and go on from there.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

const TASK: &str = "hr__101_approve_leave_request";

/// The trajectory up to (not including) the assistant turn of model step `step + 1`.
fn first_steps(trajectory: &Value, steps: usize) -> Vec<Value> {
    let messages = trajectory.as_array().unwrap();
    let mut assistant_turns = 0;
    let mut out = Vec::new();
    for m in messages {
        if m["role"] == "assistant" {
            assistant_turns += 1;
            if assistant_turns > steps {
                break;
            }
        }
        out.push(m.clone());
    }
    out
}

#[actix_web::test]
async fn a_fork_shares_its_parents_first_k_steps_and_goes_on_to_the_end() {
    let app = spawn_app().await;
    let parent = app
        .only_rollout(&app.launch(&builtin_run("oracle", &[TASK], 1)).await)
        .await;
    assert_eq!(parent["score"], 1.0);
    let (run_id, rollout_id) = (
        parent["run_id"].as_str().unwrap(),
        parent["rollout_id"].as_str().unwrap(),
    );
    let parent_steps = parent["steps"].as_u64().unwrap();
    assert!(
        parent_steps >= 3,
        "the oracle takes several steps: {parent_steps}"
    );

    let response = app
        .fork(run_id, rollout_id, &json!({"at_step": 2, "count": 2}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let fork: Value = response.json().await.unwrap();
    let fork_id = fork["run_id"].as_str().unwrap();
    assert_ne!(fork_id, run_id);
    assert_eq!(
        fork["run_status"]["parent"],
        json!({"run_id": run_id, "rollout_id": rollout_id, "at_step": 2})
    );
    let status = app.wait_until_finished(fork_id).await;
    assert_eq!(status["total"], 2);
    assert_eq!(status["completed"], 2, "{status}");
    assert_eq!(status["parent"]["rollout_id"], rollout_id);

    let shared = first_steps(&parent["trajectory"], 2);
    let parent_calls: Vec<&Value> = parent["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["step"].as_u64() <= Some(2))
        .collect();
    assert!(!parent_calls.is_empty());
    for id in status["rollout_ids"].as_array().unwrap() {
        let child = app
            .get_json(&format!(
                "/runs/{fork_id}/rollouts/{}",
                id.as_str().unwrap()
            ))
            .await;
        assert_eq!(child["task_id"], TASK);
        assert_eq!(child["seed"], parent["seed"], "the same environment");
        let trajectory = child["trajectory"].as_array().unwrap();
        assert_eq!(
            trajectory[..shared.len()],
            shared[..],
            "the first two steps are the parent's, message for message"
        );
        for (mine, theirs) in child["tool_calls"]
            .as_array()
            .unwrap()
            .iter()
            .zip(&parent_calls)
        {
            assert_eq!(mine, *theirs, "the same calls with the same observations");
        }
        // It went on from step 3, in the environment the first two steps left: the
        // oracle finishes the plan and earns full credit, with no call made twice.
        assert_eq!(child["steps"], parent["steps"]);
        let without_timing = |calls: &Value| {
            let mut calls = calls.clone();
            for call in calls.as_array_mut().unwrap() {
                call.as_object_mut().unwrap().remove("latency_ms");
            }
            calls
        };
        assert_eq!(
            without_timing(&child["tool_calls"]),
            without_timing(&parent["tool_calls"])
        );
        assert_eq!(child["score"], 1.0, "{}", child["verdict"]);
        assert_eq!(child["environment_state"], parent["environment_state"]);
    }
    app.stop().await;
}

#[actix_web::test]
async fn a_fork_can_go_on_with_another_model() {
    let app = spawn_app().await;
    let parent = app
        .only_rollout(&app.launch(&builtin_run("oracle", &[TASK], 1)).await)
        .await;
    let (run_id, rollout_id) = (
        parent["run_id"].as_str().unwrap(),
        parent["rollout_id"].as_str().unwrap(),
    );
    let body = json!({"at_step": 1, "model_config": {"provider": "builtin", "model": "noop"}});
    let fork = app.fork(run_id, rollout_id, &body).await;
    let fork = fork.json::<Value>().await.unwrap();
    let child = app.only_rollout(&fork).await;
    assert_eq!(fork["run_status"]["model_config"]["model"], "noop");
    // One copied step, then the noop agent answers at once: two model turns in all.
    assert_eq!(child["steps"], 2);
    assert_eq!(child["tool_calls"].as_array().unwrap().len(), 1);
    assert_eq!(child["tool_calls"][0], parent["tool_calls"][0]);
    assert!(
        child["score"].as_f64().unwrap() < 1.0,
        "the plan was not finished"
    );
    app.stop().await;
}

#[actix_web::test]
async fn a_fork_past_the_recorded_steps_or_of_an_unknown_rollout_is_refused() {
    let app = spawn_app().await;
    let parent = app
        .only_rollout(&app.launch(&builtin_run("oracle", &[TASK], 1)).await)
        .await;
    let run_id = parent["run_id"].as_str().unwrap();
    let rollout_id = parent["rollout_id"].as_str().unwrap();

    let response = app.fork(run_id, rollout_id, &json!({"at_step": 99})).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["detail"][0]["loc"], json!(["body", "at_step"]));
    assert!(body["detail"][0]["msg"]
        .as_str()
        .unwrap()
        .contains("recorded"));

    let response = app.fork(run_id, rollout_id, &json!({"count": 2})).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["detail"][0]["loc"], json!(["body", "at_step"]));

    let response = app
        .fork(run_id, rollout_id, &json!({"at_step": 1, "count": 0}))
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // The fork goes on in the environment rebuilt from the log, never a remote one.
    let remote = json!({"at_step": 1, "model_config": {"provider": "builtin", "model": "oracle",
        "tool_server_url": "http://127.0.0.1:9/environments/env_x"}});
    let response = app.fork(run_id, rollout_id, &remote).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["detail"][0]["loc"],
        json!(["body", "model_config", "tool_server_url"])
    );

    let response = app.fork(run_id, "rol_nope", &json!({"at_step": 1})).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = app
        .fork("run_nope", "rol_nope", &json!({"at_step": 1}))
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let runs = app.get_json("/runs").await;
    assert_eq!(runs["total"], 1, "nothing was launched");
    app.stop().await;
}
