//! The seed documents' own examples, sent as written: every JSON example of the runs
//! and scenarios documents (the launch body with its key replaced) gets the documented
//! status and a response with every documented field, of the documented JSON type. The
//! examples' ids and counts are illustrations; their shape is the contract.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

/// The runs document's launch body, verbatim but for the key.
const LAUNCH: &str = r#"{
"scenario_id": "hr",
"task_ids": ["hr__100_weaver_schedule_phone_screen"],
"rollout_count": 3,
"max_parallel": 2,
"model_config": {
"model": "gpt-4o",
"provider": "openai",
"api_key": "sk-test-seed-example",
"temperature": 0.7,
"max_steps": 30
}
}"#;

const LAUNCHED: &str = r#"{
"run_id": "run_abc123",
"run_status": {
"run_id": "run_abc123",
"scenario_id": "hr",
"source": "rl-gym",
"total": 3,
"completed": 0,
"failed": 0,
"in_progress": 0,
"pending": 3,
"running": 0,
"rollout_ids": ["rol_001", "rol_002", "rol_003"]
},
"rollouts": [
{
"rollout_id": "rol_001",
"scenario_id": "hr",
"task_id": "hr__100_weaver_schedule_phone_screen",
"run_id": "run_abc123",
"status": "pending"
}
]
}"#;

const RUN_LIST: &str = r#"{
"total": 1,
"runs": [
{
"run_id": "run_abc123",
"scenario_id": "hr",
"source": "rl-gym",
"total": 3,
"completed": 2,
"failed": 0,
"in_progress": 1,
"pending": 0,
"running": 1,
"rollout_ids": []
}
]
}"#;

const CANCELLED: &str = r#"{"run_id": "run_abc123", "cancelled_rollouts": 2}"#;
const DELETED: &str = r#"{"run_id": "run_abc123", "deleted_rollouts": 3}"#;

const SCENARIOS: &str = r#"[
  {
    "scenario_id": "hr_recruiting",
    "name": "HR Recruiting Tasks",
    "description": "End-to-end recruiting workflow tasks",
    "num_tasks": 12,
    "num_npcs": 10,
    "tool_servers": [
      { "name": "hrms", "server_type": "http" },
      { "name": "email", "server_type": "http" }
    ]
  }
]"#;

const TASKS: &str = r#"{
  "scenario_id": "hr_recruiting",
  "tasks": [
    {
      "task_id": "hr-102",
      "name": "Schedule Initial Candidate Screening",
      "version": "1.0",
      "category": "recruiting",
      "difficulty": "medium",
      "visibility": "public",
      "description": "Schedule an initial screening call with the candidate...",
      "tool_servers": [
        { "name": "email", "tool_server_url": "https://<environment-url>/email" },
        { "name": "calendar", "tool_server_url": "https://<environment-url>/calendar" }
      ],
      "rubric": {
        "task_id": "hr-102",
        "title": "Schedule Initial Candidate Screening",
        "overview": "Verify the agent correctly schedules...",
        "success_criteria": ["Calendar event created with correct time"],
        "scoring": [
          { "label": "Full Credit", "description": "All requirements met" },
          { "label": "Partial Credit", "description": "Calendar created but no notification" },
          { "label": "No Credit", "description": "Task not completed" }
        ]
      },
      "npc_profiles": [
        {
          "profile_id": "lisa-anderson",
          "first_name": "Lisa",
          "last_name": "Anderson",
          "email": "lisa.anderson@techcorp.com",
          "occupation": "VP of HR / CHRO"
        }
      ]
    }
  ]
}"#;

const RUBRIC: &str = r#"{
  "task_id": "hr-102",
  "title": "Schedule Initial Candidate Screening",
  "overview": "Verify the agent correctly schedules a screening call...",
  "success_criteria": ["Calendar event exists with correct attendees and time"],
  "testing_requirements": ["Verify calendar event was created", "Verify email was sent"],
  "quality_criteria": ["Professional tone in email"],
  "notes": ["Agent should not double-book the time slot"],
  "scoring": [
    { "label": "Full Credit", "description": "All requirements met" },
    { "label": "Partial Credit", "description": "Partial completion" },
    { "label": "No Credit", "description": "Task not completed" }
  ]
}"#;

const NPCS: &str = r#"{
  "scenario_id": "hr_recruiting",
  "npc_profiles": [
    {
      "profile_id": "lisa-anderson",
      "first_name": "Lisa",
      "last_name": "Anderson",
      "email": "lisa.anderson@techcorp.com",
      "occupation": "VP of HR / CHRO",
      "public_info": "15 years in HR leadership..."
    }
  ]
}"#;

const SEED_FILES: &str = r#"{
  "scenario_id": "hr",
  "files": ["leave_policy.md", "org_chart.md", "onboarding_policy.md"]
}"#;

const SEED_FILE: &str = r##"{
  "scenario_id": "hr",
  "filename": "leave_policy.md",
  "content": "# Leave Policy\n\nEmployees are entitled to..."
}"##;

fn parse(text: &str) -> Value {
    serde_json::from_str(text).expect("the seed example is JSON")
}

/// Every field of `documented` is in `actual` with the same JSON type, recursively; a
/// documented array's first element is the shape of every actual element.
fn assert_shape(documented: &Value, actual: &Value, at: &str) {
    match (documented, actual) {
        (Value::Object(doc), Value::Object(got)) => {
            for (key, value) in doc {
                let got = got
                    .get(key)
                    .unwrap_or_else(|| panic!("{at}.{key} is missing from {actual}"));
                assert_shape(value, got, &format!("{at}.{key}"));
            }
        }
        (Value::Array(doc), Value::Array(got)) => {
            if let Some(first) = doc.first() {
                assert!(!got.is_empty(), "{at} is empty, the seed shows items");
                for (i, item) in got.iter().enumerate() {
                    assert_shape(first, item, &format!("{at}[{i}]"));
                }
            }
        }
        (Value::Number(_), Value::Number(_))
        | (Value::String(_), Value::String(_))
        | (Value::Bool(_), Value::Bool(_))
        | (Value::Null, _) => {}
        _ => panic!("{at}: the seed shows {documented}, the server answered {actual}"),
    }
}

async fn json_of(response: reqwest::Response, expected: StatusCode) -> Value {
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, expected, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[actix_rt::test]
async fn the_runs_documents_examples_work_as_written() {
    let app = spawn_app().await;
    // The launch body exactly as written (key replaced), sent without changing a byte.
    let response = app
        .client
        .post(app.url("/runs"))
        .header("content-type", "application/json")
        .body(LAUNCH)
        .send()
        .await
        .unwrap();
    let launched = json_of(response, StatusCode::OK).await;
    assert_shape(&parse(LAUNCHED), &launched, "launch");
    let run_id = launched["run_id"].as_str().unwrap();
    assert!(run_id.starts_with("run_"), "{run_id}");
    assert_eq!(launched["run_status"]["total"], 3);
    assert_eq!(launched["run_status"]["scenario_id"], "hr");
    assert_eq!(launched["run_status"]["source"], "rl-gym");
    assert_eq!(launched["rollouts"].as_array().unwrap().len(), 3);
    for rollout in launched["rollouts"].as_array().unwrap() {
        assert_eq!(rollout["task_id"], "hr__100_weaver_schedule_phone_screen");
        assert_eq!(rollout["run_id"], run_id);
        assert!(rollout["rollout_id"].as_str().unwrap().starts_with("rol_"));
    }
    let counts = &launched["run_status"];
    let sum: u64 = ["completed", "failed", "in_progress", "pending"]
        .iter()
        .map(|k| counts[k].as_u64().unwrap())
        .sum::<u64>()
        + counts["cancelled"].as_u64().unwrap_or(0);
    assert_eq!(sum, 3, "{counts}");

    // Get run status: "same schema as items in the list runs response".
    let listed_item = &parse(RUN_LIST)["runs"][0];
    let status = app.run(run_id).await;
    assert_shape(listed_item, &status, "run status");

    let listed = app.get_json("/runs?source=rl-gym&limit=50&offset=0").await;
    assert_shape(&parse(RUN_LIST), &listed, "list runs");
    let expanded = app.get_json("/runs?expand=rollouts").await;
    assert_eq!(
        expanded["runs"][0]["rollout_ids"].as_array().unwrap().len(),
        3
    );

    let cancelled = json_of(app.cancel(run_id).await, StatusCode::OK).await;
    assert_shape(&parse(CANCELLED), &cancelled, "cancel");
    assert_eq!(cancelled["run_id"], run_id);
    app.wait_until_finished(run_id).await;

    let deleted = json_of(app.delete(&format!("/runs/{run_id}")).await, StatusCode::OK).await;
    assert_shape(&parse(DELETED), &deleted, "delete");
    assert_eq!(deleted["deleted_rollouts"], 3);
    assert_eq!(
        app.get(&format!("/runs/{run_id}")).await.status(),
        StatusCode::NOT_FOUND
    );
    app.stop().await;
}

#[actix_rt::test]
async fn the_scenarios_documents_examples_work_as_written() {
    let app = spawn_app().await;
    let scenarios = app.get_json("/scenarios").await;
    assert_shape(&parse(SCENARIOS), &scenarios, "scenarios");
    let recruiting = scenarios
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["scenario_id"] == "hr_recruiting")
        .expect("hr_recruiting is listed");
    assert_eq!(recruiting["name"], "HR Recruiting Tasks");

    let tasks = app.get_json("/scenarios/hr_recruiting/tasks").await;
    assert_shape(&parse(TASKS), &tasks, "tasks");
    let task = tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task_id"] == "hr-102")
        .expect("hr-102 is a task of hr_recruiting");
    let documented = &parse(TASKS)["tasks"][0];
    for field in ["name", "version", "category", "difficulty", "visibility"] {
        assert_eq!(task[field], documented[field], "{field}");
    }
    let servers: Vec<&str> = task["tool_servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(servers, ["email", "calendar"]);
    assert!(task["tool_servers"][0]["tool_server_url"]
        .as_str()
        .unwrap()
        .ends_with("/environments/<environment-id>/email"));
    assert_eq!(task["rubric"]["title"], documented["rubric"]["title"]);
    assert_eq!(task["rubric"]["scoring"], documented["rubric"]["scoring"]);
    assert_eq!(task["npc_profiles"][0]["profile_id"], "lisa-anderson");
    assert_eq!(
        task["npc_profiles"][0]["email"],
        "lisa.anderson@techcorp.com"
    );
    assert_eq!(task["npc_profiles"][0]["occupation"], "VP of HR / CHRO");

    let rubric = app
        .get_json("/scenarios/hr_recruiting/tasks/hr-102/rubric")
        .await;
    assert_shape(&parse(RUBRIC), &rubric, "rubric");
    assert_eq!(rubric["task_id"], "hr-102");

    let npcs = app.get_json("/scenarios/hr_recruiting/npcs").await;
    assert_shape(&parse(NPCS), &npcs, "npcs");
    assert!(npcs["npc_profiles"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["profile_id"] == "lisa-anderson"));

    let files = app.get_json("/scenarios/hr/seed_data").await;
    assert_shape(&parse(SEED_FILES), &files, "seed files");
    for name in parse(SEED_FILES)["files"].as_array().unwrap() {
        assert!(
            files["files"].as_array().unwrap().contains(name),
            "{name} in {files}"
        );
    }
    let file = app
        .get_json("/scenarios/hr/seed_data/leave_policy.md")
        .await;
    assert_shape(&parse(SEED_FILE), &file, "seed file");
    assert!(file["content"]
        .as_str()
        .unwrap()
        .starts_with("# Leave Policy\n\n"));
    assert_eq!(
        app.get("/scenarios/hr/seed_data/..%2Fscenario.toml")
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.get("/scenarios/hr/seed_data/no_such_file.md")
            .await
            .status(),
        StatusCode::NOT_FOUND
    );

    let bundle = app.get("/scenarios/hr_recruiting/verifiers/bundle").await;
    assert_eq!(bundle.status(), StatusCode::OK);
    assert_eq!(bundle.headers()["content-type"], "application/zip");
    assert!(bundle.bytes().await.unwrap().starts_with(b"PK"));
    app.stop().await;
}

/// The two tasks the seeds name are real: the oracle earns full credit, noop none.
#[actix_rt::test]
async fn the_seeds_tasks_are_solvable_by_the_oracle_and_not_by_noop() {
    let app = spawn_app().await;
    for (scenario, task) in [
        ("hr", "hr__100_weaver_schedule_phone_screen"),
        ("hr_recruiting", "hr-102"),
    ] {
        for (model, score) in [("oracle", 1.0), ("noop", 0.0)] {
            let mut body = builtin_run(model, &[task], 1);
            body["scenario_id"] = json!(scenario);
            let launched = app.launch(&body).await;
            let rollout = app.only_rollout(&launched).await;
            assert_eq!(rollout["status"], "completed", "{task} {model}: {rollout}");
            assert_eq!(rollout["score"], score, "{task} {model}: {rollout}");
        }
    }
    app.stop().await;
}

/// The task listing names the seed data an agent of the task can read (the HRMS serves
/// the scenario's documents; a task without the HRMS has none).
#[actix_rt::test]
async fn each_listed_task_names_its_seed_data_files() {
    let app = spawn_app().await;
    let files = app.get_json("/scenarios/hr/seed_data").await["files"].clone();
    let tasks = app.get_json("/scenarios/hr/tasks").await;
    let mut with_hrms = 0;
    for task in tasks["tasks"].as_array().unwrap() {
        let hrms = task["tool_servers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "hrms");
        let expected = if hrms { files.clone() } else { json!([]) };
        assert_eq!(task["seed_data"], expected, "{}", task["task_id"]);
        with_hrms += usize::from(hrms);
    }
    assert!(with_hrms > 0);
    let tasks = app.get_json("/scenarios/hr_recruiting/tasks").await;
    let screening = tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task_id"] == "hr-102")
        .unwrap();
    assert_eq!(screening["seed_data"], json!([]));
    // A knowledge base serves them too.
    let files = app.get_json("/scenarios/it_helpdesk/seed_data").await["files"].clone();
    assert!(!files.as_array().unwrap().is_empty());
    let tasks = app.get_json("/scenarios/it_helpdesk/tasks").await;
    for task in tasks["tasks"].as_array().unwrap() {
        assert_eq!(task["seed_data"], files, "{}", task["task_id"]);
    }
    app.stop().await;
}

/// `client_context` is "opaque caller metadata persisted in artifacts": it comes back
/// from the artifacts and in every export line's provenance.
#[actix_rt::test]
async fn client_context_is_in_the_artifacts_and_every_export_line() {
    let app = spawn_app().await;
    let context = json!({"experiment": "seed-check", "shard": 3, "tags": ["a", "b"]});
    let mut body = builtin_run("oracle", &["hr__101_approve_leave_request"], 2);
    body["task_overrides"] = json!({
        "hr__101_approve_leave_request": {"client_context": context}
    });
    let launched = app.launch(&body).await;
    let run_id = launched["run_id"].as_str().unwrap();
    let status = app.wait_until_finished(run_id).await;
    let rollout_id = status["rollout_ids"][0].as_str().unwrap();
    let artifacts = app
        .get_json(&format!("/rollouts/{rollout_id}/artifacts"))
        .await;
    assert_eq!(artifacts["client_context"], context);
    for format in ["sft", "rl"] {
        let text = app
            .get(&format!("/runs/{run_id}/export?format={format}"))
            .await
            .text()
            .await
            .unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{format}: {text}");
        for line in lines {
            assert_eq!(line["provenance"]["client_context"], context, "{format}");
        }
    }
    app.stop().await;
}

/// A JSON body sent without a `Content-Type` is read as JSON, as the original service
/// does; an explicit other type is still refused.
#[actix_rt::test]
async fn a_json_body_without_a_content_type_is_read_as_json() {
    let app = spawn_app().await;
    let body = builtin_run("oracle", &["hr__101_approve_leave_request"], 1).to_string();
    let response = app
        .client
        .post(app.url("/runs"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert!(response.headers().get("content-type").is_some());
    let launched = json_of(response, StatusCode::OK).await;
    assert!(launched["run_id"].as_str().unwrap().starts_with("run_"));
    let refused = app
        .client
        .post(app.url("/v1/runs"))
        .header("content-type", "text/html")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    app.wait_until_finished(launched["run_id"].as_str().unwrap())
        .await;
    app.stop().await;
}

/// Summaries fold the oracle's earlier turns away; it still follows its reference
/// solution once, call by call, and earns full credit.
#[actix_rt::test]
async fn the_oracle_follows_its_plan_across_context_summaries() {
    let app = spawn_app().await;
    let task = "hr__104_schedule_phone_screen";
    let mut body = builtin_run("oracle", &[task], 1);
    body["model_config"]["summarize_every_n_turns"] = json!(2);
    body["model_config"]["context_stride"] = json!(1);
    let launched = app.launch(&body).await;
    let rollout = app.only_rollout(&launched).await;
    assert_eq!(rollout["status"], "completed", "{rollout}");
    assert_eq!(rollout["score"], 1.0, "{rollout}");
    let planned: Vec<String> = hr_task_file(task)["reference_solution"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["tool_name"].as_str().unwrap().to_string())
        .collect();
    let made: Vec<String> = rollout["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["tool_name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(made, planned, "each planned call once, in order");
    let summaries = rollout["trajectory"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["name"] == "summary")
        .count();
    assert!(summaries >= 1, "the context was summarised: {rollout}");
    app.stop().await;
}
