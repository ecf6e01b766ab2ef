//! The scenarios API (seed 001) through HTTP.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

#[actix_web::test]
async fn the_catalog_lists_hr_with_the_seed_shape() {
    let app = spawn_app().await;
    let list = app.get_json("/scenarios").await;
    let hr = list
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["scenario_id"] == "hr")
        .expect("hr is bundled");
    for field in ["name", "description"] {
        assert!(hr[field].is_string(), "{field}");
    }
    assert!(hr["num_tasks"].as_u64().unwrap() >= 8);
    assert!(hr["num_npcs"].as_u64().unwrap() >= 1);
    for server in hr["tool_servers"].as_array().unwrap() {
        assert_eq!(server["server_type"], "http");
        assert!(server["name"].is_string());
    }
    app.stop().await;
}

#[actix_web::test]
async fn tasks_rubrics_and_npcs_have_every_seed_field() {
    let app = spawn_app().await;
    let tasks = app.get_json("/scenarios/hr/tasks").await;
    assert_eq!(tasks["scenario_id"], "hr");
    let tasks = tasks["tasks"].as_array().unwrap();
    assert!(tasks.len() >= 8);
    for task in tasks {
        for field in [
            "task_id",
            "name",
            "version",
            "category",
            "difficulty",
            "visibility",
            "description",
        ] {
            assert!(task[field].is_string(), "{field} of {task}");
        }
        for server in task["tool_servers"].as_array().unwrap() {
            let name = server["name"].as_str().unwrap();
            let url = server["tool_server_url"].as_str().unwrap();
            assert!(
                url.ends_with(&format!("/environments/<environment-id>/{name}")),
                "{url}"
            );
        }
        assert!(task["npc_profiles"].is_array());
        let task_id = task["task_id"].as_str().unwrap();
        let rubric = app
            .get_json(&format!("/scenarios/hr/tasks/{task_id}/rubric"))
            .await;
        assert_eq!(rubric, task["rubric"]);
        assert_eq!(rubric["task_id"], task_id);
        for field in [
            "success_criteria",
            "testing_requirements",
            "quality_criteria",
            "notes",
            "scoring",
        ] {
            assert!(rubric[field].is_array(), "{field}");
        }
        let labels: Vec<&str> = rubric["scoring"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["label"].as_str().unwrap())
            .collect();
        assert_eq!(labels, ["Full Credit", "Partial Credit", "No Credit"]);
    }
    let npcs = app.get_json("/scenarios/hr/npcs").await;
    assert_eq!(npcs["scenario_id"], "hr");
    for npc in npcs["npc_profiles"].as_array().unwrap() {
        for field in [
            "profile_id",
            "first_name",
            "last_name",
            "email",
            "occupation",
            "public_info",
        ] {
            assert!(npc[field].is_string(), "{field} of {npc}");
        }
    }
    app.stop().await;
}

#[actix_web::test]
async fn seed_data_is_listed_and_served_and_traversal_is_refused() {
    let app = spawn_app().await;
    let files = app.get_json("/scenarios/hr/seed_data").await;
    assert_eq!(files["scenario_id"], "hr");
    let files: Vec<String> = files["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    assert!(files.len() >= 3, "{files:?}");
    for file in &files {
        let body = app
            .get_json(&format!("/scenarios/hr/seed_data/{file}"))
            .await;
        assert_eq!(body["scenario_id"], "hr");
        assert_eq!(body["filename"], file.as_str());
        assert!(!body["content"].as_str().unwrap().is_empty());
    }
    for bad in [
        "..%2F..%2FCargo.toml",
        "a%2F..%2F..%2Fscenario.toml",
        "%2Fetc%2Fpasswd",
    ] {
        let response = app.get(&format!("/scenarios/hr/seed_data/{bad}")).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "invalid_path");
    }
    let response = app.get("/scenarios/hr/seed_data/nope.md").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = app.get("/scenarios/nope/tasks").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"detail": "Scenario 'nope' not found", "code": "scenario_not_found"})
    );
    assert_eq!(
        app.get("/scenarios/hr/tasks/nope/rubric").await.status(),
        StatusCode::NOT_FOUND
    );
    app.stop().await;
}
