//! Run statistics and run comparison through HTTP, against figures computed by hand.
//! hr__105 is scored on the final answer alone, so a fake model that gives a chosen
//! answer per call sets exactly how many of a task's rollouts succeed.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

pub const TASK: &str = "hr__105_reporting_line_question";
pub const FULL: &str = "Ravi Patel reports to Tom Becker. Tom Becker reports to David Okafor. \
                    Tom's direct reports are Ravi Patel, Emily Novak and Jonas Weber.";
/// One of the task's three checks: partial credit, not a success.
pub const THIRD: &str = "Ravi Patel reports to Tom Becker.";
pub const NONE: &str = "I could not find out.";

fn close(actual: &Value, expected: f64) {
    let a = actual
        .as_f64()
        .unwrap_or_else(|| panic!("{actual} is not a number"));
    assert!((a - expected).abs() < 1e-9, "{a} != {expected}");
}

fn close_by_k(actual: &Value, expected: &[f64]) {
    let map = actual.as_object().unwrap();
    assert_eq!(map.len(), expected.len(), "{actual}");
    for (k, e) in expected.iter().enumerate() {
        close(&actual[(k + 1).to_string()], *e);
    }
}

fn custom_run(model: &FakeModel, task_ids: &[&str], rollout_count: u32) -> Value {
    json!({
        "scenario_id": "hr",
        "task_ids": task_ids,
        "rollout_count": rollout_count,
        "model_config": {"model": "m", "provider": "custom", "base_url": model.address}
    })
}

async fn finished_run(app: &TestApp, body: &Value) -> String {
    let launched = app.launch(body).await;
    let run_id = launched["run_id"].as_str().unwrap().to_string();
    app.wait_until_finished(&run_id).await;
    run_id
}

#[actix_web::test]
async fn two_successes_in_five_rollouts_give_the_hand_computed_figures() {
    let model = start_fake_model(Behaviour::Answers(&[FULL, THIRD, FULL, NONE, NONE])).await;
    let app = spawn_app().await;
    let run_id = finished_run(&app, &custom_run(&model, &[TASK], 5)).await;
    let response = app.get(&format!("/runs/{run_id}/stats")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    let stats: Value = serde_json::from_str(&text).unwrap();

    let task = &stats["tasks"][0];
    assert_eq!(task["task_id"], TASK);
    for (field, n) in [
        ("rollouts", 5),
        ("scored", 5),
        ("failed", 0),
        ("cancelled", 0),
        ("unfinished", 0),
        ("attempts", 5),
        ("successes", 2),
    ] {
        assert_eq!(task[field], n, "{field}: {task}");
    }
    // (1 + ⅓ + 1 + 0 + 0) / 5
    close(&task["mean_score"], 7.0 / 15.0);
    let ci = &task["mean_score_ci"];
    assert!(ci["low"].as_f64().unwrap() < 7.0 / 15.0 && ci["high"].as_f64().unwrap() > 7.0 / 15.0);
    // pass@k = 1 − C(3,k)/C(5,k); pass^k = C(2,k)/C(5,k)
    close_by_k(&task["pass_at_k"], &[0.4, 0.7, 0.9, 1.0, 1.0]);
    close_by_k(&task["pass_hat_k"], &[0.4, 0.1, 0.0, 0.0, 0.0]);
    assert_eq!(
        task["usage"],
        json!({"prompt_tokens": 500, "completion_tokens": 50, "total_tokens": 550})
    );
    assert_eq!(task["time"]["model_calls"], 5);
    assert!(task["time"]["mean_model_latency_ms"].as_f64().unwrap() > 0.0);
    assert!(task["time"]["wall_seconds"].as_f64().unwrap() >= 0.0);

    // One task: the overall figures are the task's, and the bootstrap over one task
    // is that task's value.
    let overall = &stats["overall"];
    assert_eq!(
        (
            overall["task_count"].as_u64(),
            overall["tasks_attempted"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(
        (overall["attempts"].as_u64(), overall["successes"].as_u64()),
        (Some(5), Some(2))
    );
    close(&overall["mean_score"], 7.0 / 15.0);
    close(&overall["mean_score_ci"]["low"], 7.0 / 15.0);
    close_by_k(&overall["pass_at_k"], &[0.4, 0.7, 0.9, 1.0, 1.0]);
    close_by_k(&overall["pass_hat_k"], &[0.4, 0.1, 0.0, 0.0, 0.0]);
    close(&overall["pass_at_k_ci"]["2"]["high"], 0.7);
    assert_eq!(
        overall["tasks_per_k"],
        json!({"1": 1, "2": 1, "3": 1, "4": 1, "5": 1})
    );
    assert_eq!(overall["usage"]["total_tokens"], 550);
    assert!(overall["time"]["wall_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(overall["time"]["model_calls"], 5);
    assert_eq!(
        (
            stats["success_threshold"].as_f64(),
            stats["confidence"].as_f64()
        ),
        (Some(1.0), Some(0.95))
    );

    // k in order, and the same answer every time (the bootstrap has a fixed seed).
    let keys = text
        .split("\"pass_at_k\":{")
        .nth(1)
        .unwrap()
        .split('}')
        .next()
        .unwrap();
    let keys: Vec<&str> = keys
        .split(',')
        .map(|kv| kv.split(':').next().unwrap())
        .collect();
    assert_eq!(keys, ["\"1\"", "\"2\"", "\"3\"", "\"4\"", "\"5\""]);
    let again = app
        .get(&format!("/v1/runs/{run_id}/stats"))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(again, text);
    app.stop().await;
}

#[actix_web::test]
async fn failed_rollouts_are_attempts_scoring_zero_and_cancelled_ones_are_left_out() {
    let failing = start_fake_model(Behaviour::AlwaysFailing).await;
    let slow = start_fake_model(Behaviour::answer_after(30_000)).await;
    let app = spawn_app().await;

    let failed = finished_run(&app, &custom_run(&failing, &[TASK], 2)).await;
    let stats = app.get_json(&format!("/runs/{failed}/stats")).await;
    let task = &stats["tasks"][0];
    assert_eq!(
        (task["failed"].as_u64(), task["scored"].as_u64()),
        (Some(2), Some(0)),
        "{task}"
    );
    assert_eq!(
        (task["attempts"].as_u64(), task["successes"].as_u64()),
        (Some(2), Some(0))
    );
    close(&task["mean_score"], 0.0);
    close_by_k(&task["pass_at_k"], &[0.0, 0.0]);

    let launched = app.launch(&custom_run(&slow, &[TASK], 2)).await;
    let run_id = launched["run_id"].as_str().unwrap();
    let running = app.get_json(&format!("/runs/{run_id}/stats")).await;
    assert_eq!(running["overall"]["unfinished"], 2, "{running}");
    assert_eq!(running["overall"]["time"]["wall_seconds"], Value::Null);
    let cancel = app.cancel(run_id).await;
    assert_eq!(cancel.status(), StatusCode::OK);
    app.wait_until_finished(run_id).await;
    let stats = app.get_json(&format!("/runs/{run_id}/stats")).await;
    let overall = &stats["overall"];
    assert_eq!(
        (overall["cancelled"].as_u64(), overall["attempts"].as_u64()),
        (Some(2), Some(0)),
        "{overall}"
    );
    assert_eq!(overall["tasks_attempted"], 0);
    assert_eq!(overall["mean_score"], Value::Null);
    assert_eq!(overall["mean_score_ci"], Value::Null);
    assert_eq!(overall["pass_at_k"], json!({}));
    app.stop().await;
}

async fn compare(app: &TestApp, a: &str, b: &str) -> Value {
    app.get_json(&format!("/runs/compare?a={a}&b={b}")).await
}

#[actix_web::test]
async fn oracle_is_distinguishable_from_noop_and_a_model_from_itself_is_not() {
    let app = spawn_app().await;
    let t1 = "hr__101_approve_leave_request";
    let t3 = "hr__102_file_leave_on_behalf";
    let noop = finished_run(&app, &builtin_run("noop", &[t1, TASK], 2)).await;
    let noop_again = finished_run(&app, &builtin_run("noop", &[t1, TASK], 2)).await;
    let oracle = finished_run(&app, &builtin_run("oracle", &[t1, TASK], 2)).await;
    let oracle_other = finished_run(&app, &builtin_run("oracle", &[t1, t3], 1)).await;

    let stats = app.get_json(&format!("/runs/{oracle}/stats")).await;
    let overall = &stats["overall"];
    assert_eq!(overall["mean_score"], 1.0);
    assert_eq!(overall["mean_score_ci"], json!({"low": 1.0, "high": 1.0}));
    assert_eq!(overall["pass_at_k"], json!({"1": 1.0, "2": 1.0}));
    assert_eq!(overall["pass_hat_k"], json!({"1": 1.0, "2": 1.0}));
    assert_eq!(overall["tasks_per_k"], json!({"1": 2, "2": 2}));
    let stats = app.get_json(&format!("/runs/{noop}/stats")).await;
    assert_eq!(stats["overall"]["mean_score"], 0.0);
    assert_eq!(stats["overall"]["pass_at_k"], json!({"1": 0.0, "2": 0.0}));

    let better = compare(&app, &noop, &oracle).await;
    assert_eq!(better["tasks_compared"], 2, "{better}");
    assert_eq!(better["mean_difference"], 1.0);
    assert_eq!(better["ci"], json!({"low": 1.0, "high": 1.0}));
    assert_eq!(better["distinguishable"], true);
    assert_eq!(
        (
            better["a_mean_score"].as_f64(),
            better["b_mean_score"].as_f64()
        ),
        (Some(0.0), Some(1.0))
    );
    assert_eq!(
        better["tasks"][0],
        json!({"task_id": t1, "a_mean_score": 0.0, "b_mean_score": 1.0,
        "a_attempts": 2, "b_attempts": 2, "difference": 1.0})
    );
    assert_eq!(compare(&app, &oracle, &noop).await["mean_difference"], -1.0);

    let same = compare(&app, &noop, &noop_again).await;
    assert_eq!(same["mean_difference"], 0.0);
    assert_eq!(same["distinguishable"], false);

    let partial = compare(&app, &noop, &oracle_other).await;
    assert_eq!(partial["tasks_compared"], 1);
    assert_eq!(partial["only_in_a"], json!([TASK]));
    assert_eq!(partial["only_in_b"], json!([t3]));
    app.stop().await;
}

#[actix_web::test]
async fn unknown_runs_are_404_missing_query_fields_422_and_compare_is_no_run_name() {
    let app = spawn_app().await;
    let run_id = finished_run(&app, &builtin_run("noop", &[TASK], 1)).await;

    let response = app.get("/runs/run_nope/stats").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "run_not_found");

    for path in [
        format!("/runs/compare?a={run_id}&b=run_nope"),
        format!("/v1/runs/compare?a=run_nope&b={run_id}"),
    ] {
        let response = app.get(&path).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }

    let response = app.get(&format!("/runs/compare?a={run_id}")).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["detail"],
        json!([{"loc": ["query", "b"], "msg": "Field required", "type": "missing"}])
    );
    let body: Value = app.get("/runs/compare").await.json().await.unwrap();
    assert_eq!(body["detail"].as_array().unwrap().len(), 2, "{body}");

    // A run named "compare" could never be read back.
    let mut named = builtin_run("noop", &[TASK], 1);
    named["run_name"] = json!("compare");
    let response = app.post_run(&named).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["detail"][0]["loc"], json!(["body", "run_name"]));
    app.stop().await;
}
