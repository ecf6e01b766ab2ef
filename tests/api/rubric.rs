//! The universal verifier: a task's `rubric_markdown` is graded by an LLM judge (the
//! run's `judge_model_config`, else the server's), recorded as an event and combined
//! with the checks; with no judge it is skipped with the reason, never invented.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

pub const RUBRIC: &str = "- The employee is told the outcome in a friendly tone (50%)\n\
                      - Nothing is approved that policy forbids (50%)";

pub const HALF_GRADE: &str = "Grading the rollout:\n```json\n{\"criteria\": [\
    {\"criterion\": \"Friendly tone\", \"label\": \"No Credit\", \"score\": 0, \"reason\": \"No email to the employee.\"},\
    {\"criterion\": \"Policy\", \"label\": \"Full Credit\", \"score\": 1, \"reason\": \"Only the valid request was approved.\"}],\
    \"label\": \"Partial Credit\", \"score\": 0.5, \"reason\": \"Correct but silent.\"}\n```";

fn rubric_run(task: &str, judge: Option<&FakeModel>) -> Value {
    let mut body = builtin_run("oracle", &[task], 1);
    body["task_overrides"] = json!({task: {"rubric_markdown": RUBRIC}});
    if let Some(judge) = judge {
        body["judge_model_config"] = json!({
            "provider": "custom", "model": "judge-1", "base_url": judge.address,
            "api_key": "sk-judge-secret", "temperature": 0.0
        });
    }
    body
}

#[actix_web::test]
async fn the_runs_judge_grades_the_rubric_and_the_score_combines_both() {
    let judge = start_fake_model(Behaviour::Answers(&[HALF_GRADE])).await;
    let app = spawn_app().await;
    let task = first_hr_task(&app).await;
    let rollout = app
        .only_rollout(&app.launch(&rubric_run(&task, Some(&judge))).await)
        .await;

    assert_eq!(rollout["status"], "completed");
    assert_eq!(rollout["verdict"]["score"], 1.0, "the checks alone pass");
    let rubric = &rollout["rubric"];
    assert_eq!(rubric["status"], "graded", "{rubric}");
    assert_eq!(rubric["judge"], "custom/judge-1");
    assert_eq!(rubric["score"], 0.5);
    assert_eq!(rubric["label"], "Partial Credit");
    assert_eq!(rubric["criteria"].as_array().unwrap().len(), 2);
    assert_eq!(rubric["criteria"][0]["reason"], "No email to the employee.");
    assert_eq!(rollout["score"], 0.75, "the mean of checks and rubric");
    assert_eq!(rollout["label"], "Partial Credit");
    assert!(!rollout.to_string().contains("sk-judge-secret"));

    let requests = judge.requests.lock().clone();
    assert_eq!(requests.len(), 1, "one judge call per rollout");
    let (auth, request) = &requests[0];
    assert_eq!(auth.as_deref(), Some("Bearer sk-judge-secret"));
    assert_eq!(request["model"], "judge-1");
    let shown = request["messages"][1]["content"].as_str().unwrap();
    assert!(shown.contains(RUBRIC), "the judge sees the rubric");
    assert!(shown.contains(rollout["trajectory"][1]["content"].as_str().unwrap()));
    let first_call = &rollout["tool_calls"][0];
    assert!(
        shown.contains(first_call["tool_name"].as_str().unwrap()),
        "the judge sees the trajectory's tool calls"
    );
    assert!(
        shown.contains("Final state of the environment"),
        "and the final state"
    );

    let events = app.get_json("/runs").await;
    assert!(!events.to_string().contains("sk-judge-secret"));
    app.stop().await;
}

#[actix_web::test]
async fn without_a_judge_the_rubric_is_skipped_with_the_reason_and_the_checks_stand() {
    let app = spawn_app().await;
    let task = first_hr_task(&app).await;
    let rollout = app
        .only_rollout(&app.launch(&rubric_run(&task, None)).await)
        .await;
    assert_eq!(rollout["status"], "completed");
    assert_eq!(rollout["rubric"]["status"], "skipped");
    assert!(rollout["rubric"]["score"].is_null(), "no score is invented");
    assert!(rollout["rubric"]["reason"]
        .as_str()
        .unwrap()
        .contains("judge_model_config"));
    assert_eq!(rollout["score"], rollout["verdict"]["score"]);

    let plain = app
        .only_rollout(&app.launch(&builtin_run("oracle", &[&task], 1)).await)
        .await;
    assert!(plain["rubric"].is_null(), "no rubric, no grade");
    app.stop().await;
}

#[actix_web::test]
async fn a_judge_answer_out_of_shape_is_an_error_grade_not_a_failed_rollout() {
    let judge = start_fake_model(Behaviour::Answers(&["Looks great to me!"])).await;
    let app = spawn_app().await;
    let task = first_hr_task(&app).await;
    let rollout = app
        .only_rollout(&app.launch(&rubric_run(&task, Some(&judge))).await)
        .await;
    assert_eq!(rollout["status"], "completed");
    assert_eq!(rollout["rubric"]["status"], "error");
    assert_eq!(rollout["rubric"]["judge"], "custom/judge-1");
    assert!(rollout["rubric"]["reason"]
        .as_str()
        .unwrap()
        .contains("no JSON object"));
    assert_eq!(rollout["score"], rollout["verdict"]["score"]);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("rl_gym_rubric_grades_total{status=\"error\"} 1"));
    app.stop().await;
}

#[actix_web::test]
async fn the_servers_judge_grades_runs_without_their_own() {
    let judge = start_fake_model(Behaviour::Answers(&[HALF_GRADE])).await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings_for(dir.path());
    settings.judge = rl_gym::config::JudgeSettings {
        provider: Some("custom".into()),
        model: Some("server-judge".into()),
        base_url: Some(judge.address.clone()),
        ..Default::default()
    };
    let app = spawn_app_with(settings).await;
    let task = first_hr_task(&app).await;
    // The rubric comes with the task definition itself this time.
    let mut definition = hr_task_file(&task);
    definition["rubric_markdown"] = json!(RUBRIC);
    let mut body = builtin_run("oracle", &[&task], 1);
    body["task_overrides"] = json!({task.clone(): {"task_json": definition}});
    let launched = app.launch(&body).await;
    let rollout = app.only_rollout(&launched).await;
    assert_eq!(
        rollout["rubric"]["status"], "graded",
        "{}",
        rollout["rubric"]
    );
    assert_eq!(rollout["rubric"]["judge"], "custom/server-judge");
    assert_eq!(rollout["score"], 0.75);
    app.stop().await;
    drop(dir);
}

#[actix_web::test]
async fn a_builtin_judge_is_refused_naming_the_field() {
    let app = spawn_app().await;
    let task = first_hr_task(&app).await;
    let mut body = rubric_run(&task, None);
    body["judge_model_config"] = json!({"provider": "builtin", "model": "oracle"});
    let response = app.post_run(&body).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let error: Value = response.json().await.unwrap();
    assert_eq!(
        error["detail"][0]["loc"],
        json!(["body", "judge_model_config", "provider"])
    );
    app.stop().await;
}
