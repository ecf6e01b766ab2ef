//! The runs API (seed 000) through HTTP.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;
use rl_gym::actors::breakpoints::Breakpoint;

#[actix_web::test]
async fn a_noop_run_completes_with_no_credit_and_a_trajectory() {
    let app = spawn_app().await;
    let task = first_hr_task(&app).await;
    let launched = app.launch(&builtin_run("noop", &[&task], 2)).await;
    let run_id = launched["run_id"].as_str().unwrap();
    assert!(run_id.starts_with("run_"));
    let status = &launched["run_status"];
    assert_eq!(status["total"], 2);
    assert_eq!(status["source"], "rl-gym");
    assert_eq!(status["scenario_id"], "hr");
    assert_eq!(status["rollout_ids"].as_array().unwrap().len(), 2);
    assert_eq!(launched["rollouts"].as_array().unwrap().len(), 2);
    for rollout in launched["rollouts"].as_array().unwrap() {
        assert!(rollout["rollout_id"].as_str().unwrap().starts_with("rol_"));
        assert_eq!(rollout["task_id"], task.as_str());
        assert_eq!(rollout["run_id"], run_id);
    }

    let done = app.wait_until_finished(run_id).await;
    assert_eq!(done["completed"], 2);
    assert_eq!(done["failed"], 0);
    assert_eq!(done["in_progress"], 0);
    assert_eq!(done["pending"], 0);
    assert_eq!(done["status"], "completed");
    assert_eq!(done["rollouts"].as_array().unwrap().len(), 2);

    // The counts alone, for pollers of big runs.
    let counts = app.run_summary(run_id).await;
    assert_eq!(counts["completed"], 2);
    assert_eq!(counts["status"], "completed");
    assert_eq!(counts["rollout_ids"], json!([]));
    assert!(counts.get("rollouts").is_none(), "{counts}");
    let bad = app.get(&format!("/runs/{run_id}?rollouts=some")).await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["detail"][0]["loc"], json!(["query", "rollouts"]));

    let rollout_id = done["rollout_ids"][0].as_str().unwrap();
    let rollout = app.rollout(run_id, rollout_id).await;
    assert_eq!(rollout["status"], "completed");
    assert_eq!(rollout["steps"], 1);
    assert_eq!(rollout["score"], 0.0);
    assert_eq!(rollout["label"], "No Credit");
    assert_eq!(rollout["completion_reason"], "final_answer");
    let trajectory = rollout["trajectory"].as_array().unwrap();
    let roles: Vec<&str> = trajectory
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant"]);
    assert!(rollout["timings"]["finished_at"].is_string());
    let states: Vec<&str> = rollout["status_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["pending", "running", "verifying", "completed"]);
    app.stop().await;
}

#[actix_web::test]
async fn every_path_is_also_served_under_v1() {
    let app = spawn_app().await;
    let task = first_hr_task(&app).await;
    let response = app
        .post("/v1/runs", &builtin_run("noop", &[&task], 1))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let run_id = body["run_id"].as_str().unwrap();
    app.wait_until_finished(run_id).await;
    for path in [
        format!("/v1/runs/{run_id}"),
        "/v1/runs".to_string(),
        "/v1/scenarios".to_string(),
        "/v1/scenarios/hr/tasks".to_string(),
        "/v1/healthz".to_string(),
    ] {
        assert_eq!(app.get(&path).await.status(), StatusCode::OK, "{path}");
    }
    app.stop().await;
}

#[actix_web::test]
async fn launch_validation_names_every_bad_field() {
    let app = spawn_app().await;
    let task = first_hr_task(&app).await;
    let response = app
        .post_run(&json!({
            "scenario_id": "hr",
            "task_ids": [],
            "model_config": {
                "model": "gpt-4o",
                "provider": "nope",
                "temperature": 2.5,
                "max_steps": 0,
                "context_stride": 0
            },
            "task_overrides": { task.clone(): { "name": "x" } }
        }))
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "validation_error");
    let mut locs: Vec<String> = body["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert!(e["msg"].is_string() && e["type"].is_string(), "{e}");
            e["loc"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap().to_string())
                .collect::<Vec<_>>()
                .join(".")
        })
        .collect();
    locs.sort();
    assert_eq!(
        locs,
        [
            "body.model_config.context_stride",
            "body.model_config.max_steps",
            "body.model_config.provider",
            "body.model_config.temperature",
            "body.task_ids",
        ]
    );
    app.stop().await;
}

#[actix_web::test]
async fn launch_validation_covers_keys_overrides_and_missing_fields() {
    let app = spawn_app().await;
    let task = first_hr_task(&app).await;
    let cases = [
        (
            json!({"scenario_id": "hr", "task_ids": [task], "model_config": {"model": "gpt-4o", "provider": "openai"}}),
            "body.model_config.api_key",
            "missing",
        ),
        (
            json!({"scenario_id": "hr", "task_ids": [task], "model_config": {"model": "noop", "provider": "builtin"},
                   "task_overrides": {"not_a_task": {"name": "x"}}}),
            "body.task_overrides.not_a_task",
            "value_error",
        ),
        (
            json!({"task_ids": [task], "model_config": {"model": "noop", "provider": "builtin"}}),
            "body.scenario_id",
            "missing",
        ),
        (
            json!({"scenario_id": "hr", "task_ids": [task]}),
            "body.model_config",
            "missing",
        ),
        (
            json!({"scenario_id": "hr", "task_ids": [task], "model_config": {"model": "noop", "provider": "builtin", "temperature": "hot"}}),
            "body.model_config.temperature",
            "float_type",
        ),
        (
            json!({"scenario_id": "hr", "task_ids": [task], "rollout_count": 0, "model_config": {"model": "noop", "provider": "builtin"}}),
            "body.rollout_count",
            "greater_than_equal",
        ),
        (
            json!({"scenario_id": "hr", "task_ids": [task], "run_name": "a/b", "model_config": {"model": "noop", "provider": "builtin"}}),
            "body.run_name",
            "string_pattern_mismatch",
        ),
    ];
    for (body, loc, kind) in cases {
        let response = app.post_run(&body).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}"
        );
        let answer: Value = response.json().await.unwrap();
        let detail = answer["detail"].as_array().unwrap();
        assert_eq!(detail.len(), 1, "{answer}");
        let got: Vec<&str> = detail[0]["loc"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        assert_eq!(got.join("."), loc);
        assert_eq!(detail[0]["type"], kind);
    }

    let response = app
        .client
        .post(app.url("/runs"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["detail"][0]["type"], "json_invalid");
    app.stop().await;
}

#[actix_web::test]
async fn unknown_scenario_or_task_is_404_and_a_used_run_name_is_409() {
    let app = spawn_app().await;
    let task = first_hr_task(&app).await;
    let mut body = builtin_run("noop", &[&task], 1);
    body["scenario_id"] = json!("nope");
    let response = app.post_run(&body).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        answer,
        json!({"detail": "Scenario 'nope' not found", "code": "scenario_not_found"})
    );

    let response = app
        .post("/runs", &builtin_run("noop", &["hr__missing"], 1))
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["code"], "task_not_found");

    let mut named = builtin_run("noop", &[&task], 1);
    named["run_name"] = json!("my-eval-1");
    let first = app.launch(&named).await;
    assert_eq!(first["run_id"], "my-eval-1");
    let response = app.post_run(&named).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        answer,
        json!({"detail": "Run name 'my-eval-1' is already in use", "code": "run_name_taken"})
    );
    assert_eq!(
        app.get("/runs/run_unknown").await.status(),
        StatusCode::NOT_FOUND
    );
    let answer: Value = app.get("/runs/run_unknown").await.json().await.unwrap();
    assert_eq!(
        answer,
        json!({"detail": "Run not found", "code": "run_not_found"})
    );
    app.stop().await;
}

#[actix_web::test]
async fn the_run_list_filters_pages_and_expands_newest_first() {
    let app = spawn_app().await;
    let task = first_hr_task(&app).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let mut body = builtin_run("noop", &[&task], 1);
        body["run_name"] = json!(format!("run-{i}"));
        ids.push(
            app.launch(&body).await["run_id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let mut other = builtin_run("noop", &[&task], 1);
    other["source"] = json!("task-editor");
    app.launch(&other).await;

    let list = app.get_json("/runs").await;
    assert_eq!(list["total"], 3, "the default source is rl-gym");
    let listed: Vec<&str> = list["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["run-2", "run-1", "run-0"]);
    assert!(list["runs"][0]["rollout_ids"]
        .as_array()
        .unwrap()
        .is_empty());

    let all = app.get_json("/runs?source=all").await;
    assert_eq!(all["total"], 4);
    let editor = app.get_json("/runs?source=task-editor").await;
    assert_eq!(editor["total"], 1);

    let page = app.get_json("/runs?limit=1&offset=1&expand=rollouts").await;
    assert_eq!(page["total"], 3);
    assert_eq!(page["runs"].as_array().unwrap().len(), 1);
    assert_eq!(page["runs"][0]["run_id"], "run-1");
    assert_eq!(page["runs"][0]["rollout_ids"].as_array().unwrap().len(), 1);

    assert_eq!(app.get_json("/runs?scenario_id=other").await["total"], 0);
    for bad in [
        "/runs?limit=0",
        "/runs?limit=201",
        "/runs?offset=-1",
        "/runs?limit=x",
        "/runs?source=web",
        "/runs?expand=tasks",
    ] {
        assert_eq!(
            app.get(bad).await.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}"
        );
    }
    app.stop().await;
}

#[actix_web::test]
async fn cancelling_stops_pending_rollouts_at_once_and_running_ones_after_their_step() {
    let model = start_fake_model(Behaviour::answer_after(300)).await;
    let app = spawn_app().await;
    let task = first_hr_task(&app).await;
    let launched = app
        .launch(&json!({
            "scenario_id": "hr",
            "task_ids": [task],
            "rollout_count": 20,
            "max_parallel": 2,
            "model_config": {"model": "slow", "provider": "custom", "base_url": model.address}
        }))
        .await;
    let run_id = launched["run_id"].as_str().unwrap();
    let response = app.cancel(run_id).await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer, json!({"run_id": run_id, "cancelled_rollouts": 20}));

    // Pending rollouts are cancelled before the answer.
    let now = app.run(run_id).await;
    assert_eq!(now["pending"], 0, "{now}");
    assert_eq!(
        now["cancelled"].as_u64().unwrap() + now["in_progress"].as_u64().unwrap(),
        20
    );

    let status = app.wait_until_finished(run_id).await;
    assert_eq!(status["status"], "cancelled");
    assert_eq!(status["cancelled"], 20, "{status}");
    assert_eq!(status["completed"], 0);
    assert!(
        model.requests.lock().len() <= 2,
        "no pending rollout called the model"
    );

    // Cancelling again is harmless; an unknown run is 404.
    let again: Value = app.cancel(run_id).await.json().await.unwrap();
    assert_eq!(again["cancelled_rollouts"], 0);
    assert_eq!(app.cancel("run_nope").await.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}

#[actix_web::test]
async fn deleting_a_run_removes_it_and_its_rollouts() {
    let app = spawn_app().await;
    let task = first_hr_task(&app).await;
    let launched = app.launch(&builtin_run("noop", &[&task], 3)).await;
    let run_id = launched["run_id"].as_str().unwrap();
    let rollout_id = launched["rollouts"][0]["rollout_id"].as_str().unwrap();
    app.wait_until_finished(run_id).await;
    let response = app.delete(&format!("/runs/{run_id}")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer, json!({"run_id": run_id, "deleted_rollouts": 3}));
    assert_eq!(
        app.get(&format!("/runs/{run_id}")).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&format!("/runs/{run_id}/rollouts/{rollout_id}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.get_json("/runs").await["total"], 0);
    assert_eq!(
        app.delete(&format!("/runs/{run_id}")).await.status(),
        StatusCode::NOT_FOUND
    );
    app.stop().await;
}

#[actix_web::test]
async fn max_parallel_bounds_the_rollouts_in_flight() {
    let app = spawn_app().await;
    let task = first_hr_task(&app).await;
    let mut body = builtin_run("noop", &[&task], 20);
    body["max_parallel"] = json!(2);
    let mut points = app.breakpoints.subscribe();
    let launched = app.launch(&body).await;
    let run_id = launched["run_id"].as_str().unwrap();
    let ended = Breakpoint::RunEnded {
        run_id: run_id.to_string(),
    };
    let passed = points.advance_till(|p| *p == ended).await;
    // Each step loop from its start to its end, as the run's actor saw them.
    let mut in_flight = 0;
    for point in &passed {
        match point {
            Breakpoint::RolloutStarted { .. } => in_flight += 1,
            Breakpoint::RolloutEnded { .. } => in_flight -= 1,
            _ => {}
        }
        assert!(in_flight <= 2, "{passed:#?}");
    }
    assert_eq!(app.wait_until_finished(run_id).await["completed"], 20);
    app.stop().await;
}
