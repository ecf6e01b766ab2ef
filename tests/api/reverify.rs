//! Re-verification: finished rollouts are scored again from their recorded events
//! with today's checks and, here, a changed rubric; the old verdict stays in the
//! history and in the log.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::rubric::{HALF_GRADE, RUBRIC};

const TASK: &str = "hr__101_approve_leave_request";

#[actix_web::test]
async fn reverify_with_a_changed_rubric_changes_the_score_and_keeps_the_old_verdict() {
    let judge = start_fake_model(Behaviour::Answers(&[HALF_GRADE])).await;
    let app = spawn_app().await;
    let mut body = builtin_run("oracle", &[TASK], 2);
    body["judge_model_config"] = json!({
        "provider": "custom", "model": "judge-1", "base_url": judge.address,
        "api_key": "sk-judge", "temperature": 0.0
    });
    let launched = app.launch(&body).await;
    let run_id = launched["run_id"].as_str().unwrap();
    let status = app.wait_until_finished(run_id).await;
    assert_eq!(status["completed"], 2);
    assert!(
        judge.requests.lock().is_empty(),
        "no rubric yet, no judge call"
    );

    let response = app
        .reverify(
            run_id,
            &json!({"task_overrides": {TASK: {"rubric_markdown": RUBRIC}}}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    let rescored = answer["rollouts"].as_array().unwrap();
    assert_eq!(rescored.len(), 2);
    for r in rescored {
        assert_eq!(r["old_score"], 1.0);
        assert_eq!(r["new_score"], 0.75, "checks 1.0 and rubric 0.5: {r}");
    }
    assert_eq!(judge.requests.lock().len(), 2, "one judge call per rollout");

    let rollout_id = rescored[0]["rollout_id"].as_str().unwrap();
    let rollout = app.rollout(run_id, rollout_id).await;
    assert_eq!(rollout["score"], 0.75, "the view shows the latest verdict");
    assert_eq!(rollout["rubric"]["score"], 0.5);
    let history = rollout["verdict_history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[0]["source"], "rollout");
    assert_eq!(history[0]["score"], 1.0);
    assert_eq!(history[1]["source"], "reverify");
    assert_eq!(history[1]["score"], 0.75);

    // Without overrides the run's own task (no rubric) scores it again: back to 1.0,
    // and every verdict so far is kept.
    let again: Value = app.reverify(run_id, &json!({})).await.json().await.unwrap();
    assert_eq!(again["rollouts"][0]["old_score"], 0.75);
    assert_eq!(again["rollouts"][0]["new_score"], 1.0);
    let rollout = app.rollout(run_id, rollout_id).await;
    assert_eq!(rollout["verdict_history"].as_array().unwrap().len(), 3);
    assert_eq!(rollout["score"], 1.0);

    let artifacts = app
        .get_json(&format!("/rollouts/{rollout_id}/artifacts"))
        .await;
    assert_eq!(
        artifacts["verdict"]["score"], 1.0,
        "artifacts show the latest too"
    );

    // Two re-verifications at once both land: each scores on top of the other.
    let path = format!("/runs/{run_id}/reverify");
    let empty = json!({});
    let (a, b) = futures::join!(app.post(&path, &empty), app.post(&path, &empty));
    assert_eq!((a.status(), b.status()), (StatusCode::OK, StatusCode::OK));
    let rollout = app.rollout(run_id, rollout_id).await;
    assert_eq!(rollout["verdict_history"].as_array().unwrap().len(), 5);

    // A restart rebuilds the same history from the log.
    let temp = app.stop_keep_data().await.unwrap();
    let app = spawn_app_with(settings_for(temp.path())).await;
    let rollout = app.rollout(run_id, rollout_id).await;
    let history = rollout["verdict_history"].as_array().unwrap();
    assert_eq!(
        history
            .iter()
            .map(|h| h["score"].as_f64().unwrap())
            .collect::<Vec<_>>(),
        vec![1.0, 0.75, 1.0, 1.0, 1.0]
    );
    app.stop().await;
}

#[actix_web::test]
async fn reverify_refuses_unknown_runs_and_overrides_of_other_tasks() {
    let app = spawn_app().await;
    let launched = app.launch(&builtin_run("noop", &[TASK], 1)).await;
    let run_id = launched["run_id"].as_str().unwrap();
    app.wait_until_finished(run_id).await;

    let response = app.reverify("run_nope", &json!({})).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    let response = app
        .reverify(
            run_id,
            &json!({"task_overrides": {"hr__999_nope": {"rubric_markdown": "x"}}}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["detail"][0]["loc"],
        json!(["body", "task_overrides", "hr__999_nope"])
    );

    // An empty body is fine: the noop rollout scores 0 again.
    let response = app
        .client
        .post(app.url(&format!("/runs/{run_id}/reverify")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["rollouts"][0]["new_score"], 0.0);
    app.stop().await;
}
