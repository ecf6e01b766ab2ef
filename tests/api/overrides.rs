//! Task overrides: each changes exactly what it should, as seen in the rollout view.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

#[actix_web::test]
async fn description_and_client_context_overrides() {
    let app = spawn_app().await;
    let task = first_hr_task(&app).await;
    let plain = app
        .only_rollout(&app.launch(&builtin_run("oracle", &[&task], 1)).await)
        .await;
    let mut body = builtin_run("oracle", &[&task], 1);
    body["task_overrides"] = json!({task.clone(): {
        "name": "Renamed", "description": "Please do the leave approval now.",
        "client_context": {"experiment": "ablation-7", "seed": 3}
    }});
    let rollout = app.only_rollout(&app.launch(&body).await).await;
    assert_eq!(
        rollout["trajectory"][1]["content"],
        "Please do the leave approval now."
    );
    assert_eq!(
        rollout["client_context"],
        json!({"experiment": "ablation-7", "seed": 3})
    );
    assert!(plain["client_context"].is_null());
    assert_eq!(rollout["score"], plain["score"], "the checks are unchanged");
    assert_eq!(rollout["environment_state"], plain["environment_state"]);
    app.stop().await;
}

#[actix_web::test]
async fn task_json_replaces_the_whole_task_and_is_validated() {
    let app = spawn_app().await;
    let tasks = app.get_json("/scenarios/hr/tasks").await;
    let ids: Vec<String> = tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["task_id"].as_str().unwrap().to_string())
        .collect();
    let (a, b) = (&ids[0], &ids[1]);
    let replacement = hr_task_file(b);
    let mut body = builtin_run("oracle", &[a], 1);
    body["task_overrides"] = json!({a.clone(): {"task_json": replacement}});
    let rollout = app.only_rollout(&app.launch(&body).await).await;
    assert_eq!(rollout["task_id"], a.as_str());
    // The replacement is a family too: its instance 0 is what the agent was told.
    let family: rl_gym::scenarios::Task = serde_json::from_value(replacement.clone()).unwrap();
    assert_eq!(
        rollout["trajectory"][1]["content"],
        family.instance(0).unwrap().description
    );
    assert_eq!(
        rollout["score"], 1.0,
        "the oracle follows the replacement's solution: {}",
        rollout["verdict"]
    );
    let check_ids: Vec<&str> = rollout["verdict"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = replacement["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(check_ids, expected, "scored by the replacement's checks");

    let mut broken = hr_task_file(b);
    broken["tool_servers"] = json!(["payroll"]);
    let mut body = builtin_run("oracle", &[a], 1);
    body["task_overrides"] = json!({a.clone(): {"task_json": broken}});
    let response = app.post_run(&body).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        answer["detail"][0]["loc"],
        json!(["body", "task_overrides", a, "task_json"])
    );
    assert!(
        answer["detail"][0]["msg"]
            .as_str()
            .unwrap()
            .contains("payroll"),
        "{answer}"
    );

    let mut body = builtin_run("oracle", &[a], 1);
    body["task_overrides"] = json!({a.clone(): {"task_json": {"name": "no fields"}}});
    assert_eq!(
        app.post_run(&body).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        app.get_json("/runs").await["total"],
        1,
        "refused launches left nothing behind"
    );
    app.stop().await;
}
