//! Budgets: a run pauses when its budget is spent and a resume finishes it; bad
//! budgets are 422s; a dry run estimates from past runs and writes nothing; a paused
//! run stays paused across a restart.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;
use rl_gym::actors::breakpoints::{Breakpoint, Subscriber};
use rl_gym::config::PriceEntry;

/// Every call of the fake model uses 110 tokens; a rollout makes two (a tool call,
/// then the answer).
fn budgeted_run(model: &FakeModel, task: &str, rollouts: u32, max_total_tokens: u64) -> Value {
    json!({
        "scenario_id": "hr",
        "task_ids": [task],
        "rollout_count": rollouts,
        "max_parallel": 1,
        "model_config": {"model": "smol", "provider": "custom", "base_url": model.address},
        "budget": {"max_total_tokens": max_total_tokens}
    })
}

/// Waits until the run's actor recorded the pause and ended: no model call follows.
/// Answers the run's status once the views show the pause.
async fn paused(app: &TestApp, points: &mut Subscriber, run_id: &str) -> Value {
    let ended = Breakpoint::RunEnded {
        run_id: run_id.to_string(),
    };
    let passed = points.advance_till(|p| *p == ended).await;
    let pause = Breakpoint::RunPaused {
        run_id: run_id.to_string(),
    };
    assert!(passed.contains(&pause), "{passed:#?}");
    app.run_until(run_id, |s| s["status"] == "paused").await
}

/// Launches 3 rollouts under a 300-token budget: the first finishes (220 tokens), the
/// second makes one call (330) and stops before its next, the third never starts.
async fn paused_run(app: &TestApp, model: &FakeModel) -> String {
    let task = first_hr_task(app).await;
    let mut points = app.breakpoints.subscribe();
    let launched = app.launch(&budgeted_run(model, &task, 3, 300)).await;
    let run_id = launched["run_id"].as_str().unwrap().to_string();
    let status = paused(app, &mut points, &run_id).await;
    assert_eq!(status["paused"], true, "{status}");
    assert!(
        status["pause_reason"]
            .as_str()
            .unwrap()
            .contains("max_total_tokens 300"),
        "{status}"
    );
    assert_eq!(status["budget"], json!({"max_total_tokens": 300}));
    assert_eq!(status["spent"]["tokens"], 330, "{status}");
    assert_eq!(status["completed"], 1, "{status}");
    // The third rollout never started.
    assert_eq!(status["pending"], 1, "{status}");
    run_id
}

#[actix_web::test]
async fn a_spent_budget_pauses_the_run_and_a_resume_finishes_it() {
    let app = spawn_app().await;
    let model = start_fake_model(Behaviour::ToolThenAnswer { delay_ms: 0 }).await;
    let run_id = paused_run(&app, &model).await;
    assert_eq!(model.requests.lock().len(), 3);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("rl_gym_runs_paused_total 1"), "{metrics}");
    let listed = app.get_json("/runs").await;
    assert_eq!(listed["runs"][0]["status"], "paused");

    // A budget already spent is refused; nothing restarts.
    let response = app
        .resume(&run_id, &json!({"budget": {"max_total_tokens": 330}}))
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["detail"][0]["loc"],
        json!(["body", "budget"]),
        "{body}"
    );

    let response = app
        .resume(&run_id, &json!({"budget": {"max_total_tokens": 100_000}}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["resumed_rollouts"], 2, "{body}");
    let status = app.wait_until_finished(&run_id).await;
    assert_eq!(status["completed"], 3, "{status}");
    assert_eq!(status["status"], "completed");
    assert_eq!(status["paused"], false);
    assert_eq!(status["budget"], json!({"max_total_tokens": 100_000}));
    // The stopped rollout went on from its recorded step: no call was made twice.
    assert_eq!(model.requests.lock().len(), 6);
    assert_eq!(status["spent"]["tokens"], 660);

    // Only a paused run resumes.
    let response = app.resume(&run_id, &json!({})).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("not paused"),
        "{body}"
    );
    let response = app.resume("run_nope", &json!({})).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}

#[actix_web::test]
async fn bad_budgets_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let task = first_hr_task(&app).await;
    let model = start_fake_model(Behaviour::Answers(&["Done."])).await;
    for (budget, field) in [
        (json!({"max_total_tokens": 0}), "max_total_tokens"),
        (json!({"max_total_tokens": "many"}), "max_total_tokens"),
        (json!({"max_cost_usd": 0}), "max_cost_usd"),
        (json!({"max_cost_usd": -2.5}), "max_cost_usd"),
        // No price for custom/smol: a cost cap could never trip.
        (json!({"max_cost_usd": 1.0}), "max_cost_usd"),
    ] {
        let mut body = budgeted_run(&model, &task, 1, 1);
        body["budget"] = budget.clone();
        for path in ["/runs", "/runs?dry_run=true"] {
            let response = app.post(path, &body).await;
            assert_eq!(
                response.status(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "{path} {budget}"
            );
            let error: Value = response.json().await.unwrap();
            assert!(
                error["detail"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["loc"] == json!(["body", "budget", field])),
                "{budget}: {error}"
            );
        }
    }
    let mut body = budgeted_run(&model, &task, 1, 1);
    body["budget"] = json!({});
    let response = app.post_run(&body).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.get_json("/runs").await["total"], 0);
    app.stop().await;
}

#[actix_web::test]
async fn a_dry_run_estimates_from_past_runs_and_launches_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let mut settings = settings_for(temp.path());
    settings.prices = vec![PriceEntry {
        provider: "custom".into(),
        model: "smol".into(),
        prompt_usd_per_mtok: 1.0,
        completion_usd_per_mtok: 10.0,
    }];
    let app = spawn_app_with(settings).await;
    let tasks = app.get_json("/scenarios/hr/tasks").await;
    let task = tasks["tasks"][0]["task_id"].as_str().unwrap().to_string();
    let other = tasks["tasks"][1]["task_id"].as_str().unwrap().to_string();
    // One model call of 100 + 10 tokens per rollout.
    let model = start_fake_model(Behaviour::Answers(&["Done."])).await;
    let body = |task_ids: Vec<&str>, rollouts: u32| {
        json!({
            "scenario_id": "hr",
            "task_ids": task_ids,
            "rollout_count": rollouts,
            "model_config": {"model": "smol", "provider": "custom", "base_url": model.address},
            "budget": {"max_cost_usd": 5.0}
        })
    };
    let launched = app.launch(&body(vec![&task], 2)).await;
    let status = app
        .wait_until_finished(launched["run_id"].as_str().unwrap())
        .await;
    assert_eq!(status["completed"], 2, "{status}");
    // 2 × (100 × $1 + 10 × $10) / 1M tokens.
    let cost = status["spent"]["cost_usd"].as_f64().unwrap();
    assert!((cost - 0.0004).abs() < 1e-12, "{status}");

    let runs_before = app.get_json("/runs").await;
    let events_before = app.get_json("/healthz").await["events"].clone();
    let response = app
        .post("/runs?dry_run=true", &body(vec![&task, &other], 3))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["dry_run"], true);
    assert_eq!(answer["rollouts"], 6);
    let estimate = &answer["estimate"];
    assert_eq!(estimate["total_tokens"], 330, "{answer}");
    assert_eq!(estimate["based_on_rollouts"], 2);
    let cost = estimate["cost_usd"].as_f64().unwrap();
    assert!((cost - 0.0006).abs() < 1e-12, "{answer}");
    assert_eq!(
        estimate["per_task"],
        json!([
            {"task_id": task, "mean_tokens": 110.0, "rollouts_seen": 2},
            {"task_id": other, "mean_tokens": null, "rollouts_seen": 0},
        ])
    );
    assert!(
        estimate["note"].as_str().unwrap().contains(&other),
        "{answer}"
    );
    // Nothing launched, nothing written.
    assert_eq!(app.get_json("/runs").await, runs_before);
    assert_eq!(app.get_json("/healthz").await["events"], events_before);
    let response = app.post("/runs?dry_run=maybe", &body(vec![&task], 1)).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    app.stop().await;
}

#[actix_web::test]
async fn a_paused_run_stays_paused_across_a_restart_and_keeps_its_spend() {
    let app = spawn_app().await;
    let model = start_fake_model(Behaviour::ToolThenAnswer { delay_ms: 0 }).await;
    let run_id = paused_run(&app, &model).await;
    let before = app.run(&run_id).await;
    let data_dir = app.data_dir.clone();
    let temp = app.stop_keep_data().await;

    let app = spawn_app_with(settings_for(&data_dir)).await;
    let after = app.run(&run_id).await;
    assert_eq!(after, before);
    // The service resumed its unfinished runs before it answered: not the paused one.
    assert_eq!(model.requests.lock().len(), 3);

    // The spend is rebuilt from the log: 330 already spent, so one more call (440)
    // spends a 400-token budget and the run pauses again.
    let mut points = app.breakpoints.subscribe();
    let response = app
        .resume(&run_id, &json!({"budget": {"max_total_tokens": 400}}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let status = paused(&app, &mut points, &run_id).await;
    assert_eq!(status["spent"]["tokens"], 440, "{status}");
    assert!(status["pause_reason"]
        .as_str()
        .unwrap()
        .contains("440 of max_total_tokens 400"));
    assert_eq!(model.requests.lock().len(), 4);

    // Cancelling a paused run cancels what it had left.
    let response = app.cancel(&run_id).await;
    assert_eq!(response.status(), StatusCode::OK);
    let status = app.wait_until_finished(&run_id).await;
    assert_eq!(status["status"], "cancelled", "{status}");
    assert!(status["cancelled"].as_u64().unwrap() >= 1, "{status}");
    assert_eq!(status["paused"], false);
    let response = app.resume(&run_id, &json!({})).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    app.stop().await;
    drop(temp);
}
