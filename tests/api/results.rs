//! Results a researcher reads: `/rollouts` (filters, pages), a rollout's artifacts
//! (with and without redaction) and the training exports of a finished run.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::stats::{FULL, NONE, TASK, THIRD};

async fn finished(app: &TestApp, body: &Value) -> Value {
    let launched = app.launch(body).await;
    app.wait_until_finished(launched["run_id"].as_str().unwrap())
        .await
}

#[actix_web::test]
async fn rollouts_are_listed_with_filters_and_pages() {
    let app = spawn_app().await;
    let tasks = app.get_json("/scenarios/hr/tasks").await;
    let ids: Vec<String> = tasks["tasks"].as_array().unwrap()[..2]
        .iter()
        .map(|t| t["task_id"].as_str().unwrap().to_string())
        .collect();
    let oracle = finished(&app, &builtin_run("oracle", &[&ids[0], &ids[1]], 2)).await;
    let noop = finished(&app, &builtin_run("noop", &[&ids[0]], 1)).await;
    let oracle_id = oracle["run_id"].as_str().unwrap();

    let all = app.get_json("/rollouts").await;
    assert_eq!(all["total"], 5);
    let listed: Vec<&Value> = all["rollouts"].as_array().unwrap().iter().collect();
    assert_eq!(
        listed[0]["run_id"], noop["run_id"],
        "newest run first: {all}"
    );
    for r in &listed {
        assert_eq!(r["phase"], "finished");
        assert_eq!(r["termination_reason"], "final_answer");
        assert_eq!(r["max_steps"], 30);
        let changes: Vec<&str> = r["status_events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["status"].as_str().unwrap())
            .collect();
        assert_eq!(changes, ["pending", "running", "verifying", "completed"]);
        assert!(r["timings"]["finished_at"].is_string());
    }
    let solved = |r: &&&Value| r["result"]["success"] == true;
    assert_eq!(
        listed.iter().filter(solved).count(),
        4,
        "oracle solves, noop not"
    );
    let noop_result = &listed[0]["result"];
    assert_eq!(noop_result["label"], "No Credit");
    assert!(noop_result["message"]
        .as_str()
        .unwrap()
        .contains("checks passed"));

    let count = |query: String| {
        let app = &app;
        async move { app.get_json(&format!("/rollouts?{query}")).await["total"].clone() }
    };
    assert_eq!(count(format!("run_id={oracle_id}")).await, 4);
    assert_eq!(
        count(format!("run_id={oracle_id}&task_id={}", ids[1])).await,
        2
    );
    assert_eq!(count(format!("task_id={}", ids[0])).await, 3);
    assert_eq!(count("scenario_id=hr&status=completed".into()).await, 5);
    assert_eq!(count("status=failed".into()).await, 0);
    assert_eq!(count("scenario_id=hr_recruiting".into()).await, 0);

    let page = app.get_json("/rollouts?limit=2&offset=1").await;
    assert_eq!(page["total"], 5);
    assert_eq!(
        page["rollouts"].as_array().unwrap()[..],
        all["rollouts"].as_array().unwrap()[1..3]
    );

    let one = &listed[2];
    let fetched = app
        .get_json(&format!(
            "/rollouts/{}",
            one["rollout_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(&fetched, *one);
    assert_eq!(
        app.get("/rollouts/rol_nope").await.status(),
        StatusCode::NOT_FOUND
    );
    for bad in [
        "/rollouts?status=done",
        "/rollouts?limit=0",
        "/rollouts?offset=x",
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
async fn artifacts_show_the_environment_before_and_after_and_can_hide_tool_calls() {
    let app = spawn_app().await;
    let task = first_hr_task(&app).await;
    let run = finished(&app, &builtin_run("oracle", &[&task], 1)).await;
    let rollout_id = run["rollout_ids"][0].as_str().unwrap();

    let full = app
        .get_json(&format!("/rollouts/{rollout_id}/artifacts"))
        .await;
    assert_eq!(full["redacted"], false);
    assert_eq!(full["score"], 1.0);
    assert!(full["verdict"]["checks"].as_array().unwrap().len() > 1);
    let before = &full["environment"]["before"];
    let after = &full["environment"]["after"];
    assert!(before.is_object() && after.is_object());
    assert_ne!(before, after, "the oracle changed the environment");
    let untouched = finished(&app, &builtin_run("noop", &[&task], 1)).await;
    let noop = app
        .get_json(&format!(
            "/rollouts/{}/artifacts",
            untouched["rollout_ids"][0].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        &noop["environment"]["after"], before,
        "before is the seeded state, which noop leaves alone"
    );
    let calls = full["tool_calls"].as_array().unwrap();
    assert!(!calls.is_empty());
    let view = app
        .get_json(&format!(
            "/runs/{}/rollouts/{rollout_id}",
            run["run_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        after, &view["environment_state"],
        "after is the final state"
    );

    let hidden = app
        .get_json(&format!(
            "/rollouts/{rollout_id}/artifacts?redact_tool_calls=true"
        ))
        .await;
    assert_eq!(hidden["redacted"], true);
    for call in hidden["tool_calls"].as_array().unwrap() {
        assert_eq!(call["arguments"], "[redacted]");
        assert_eq!(call["observation"], "[redacted]");
        assert!(call["tool_name"].is_string(), "which tool stays visible");
    }
    let text = hidden["trajectory"].to_string() + &hidden["tool_calls"].to_string();
    let mut checked = 0;
    for call in calls {
        for secret in [&call["arguments"], &call["observation"]] {
            // Short texts ("{}", "ok") could appear anywhere by chance.
            let secret = secret.as_str().unwrap();
            if secret.len() > 12 {
                assert!(!text.contains(secret), "{secret} leaks");
                checked += 1;
            }
        }
    }
    assert!(
        checked > 0,
        "some argument or result was long enough to look for"
    );
    assert_eq!(hidden["score"], full["score"]);
    assert_eq!(
        app.get(&format!(
            "/rollouts/{rollout_id}/artifacts?redact_tool_calls=maybe"
        ))
        .await
        .status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    app.stop().await;
}

/// The JSON lines of an export.
async fn export(app: &TestApp, run_id: &str, query: &str) -> Vec<Value> {
    let response = app.export(run_id, query).await;
    assert_eq!(response.status(), StatusCode::OK, "{query}");
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/x-ndjson"
    );
    let text = response.text().await.unwrap();
    assert!(text.is_empty() || text.ends_with('\n'));
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[actix_web::test]
async fn each_export_format_on_a_finished_run_with_provenance() {
    let model = start_fake_model(Behaviour::Answers(&[FULL, THIRD, NONE])).await;
    let app = spawn_app().await;
    let run = finished(
        &app,
        &json!({
            "scenario_id": "hr", "task_ids": [TASK], "rollout_count": 3,
            "model_config": {"model": "m", "provider": "custom", "base_url": model.address,
                             "api_key": "sk-export-secret"}
        }),
    )
    .await;
    let run_id = run["run_id"].as_str().unwrap();

    let sft = export(&app, run_id, "format=sft").await;
    assert_eq!(sft.len(), 1, "only Full Credit by default");
    let line = &sft[0];
    assert_eq!(line["score"], 1.0);
    assert_eq!(line["messages"][0]["role"], "system");
    assert_eq!(
        line["messages"].as_array().unwrap().last().unwrap()["content"],
        FULL
    );
    let offered = model.requests.lock()[0].1["tools"].clone();
    assert!(offered.as_array().unwrap().len() > 3);
    assert_eq!(line["tools"], offered, "the tools the model was offered");
    let p = &line["provenance"];
    assert_eq!(p["run_id"], run_id);
    assert_eq!(p["task_id"], TASK);
    assert!(p["task_version"].is_string());
    assert!(p["task_sha256"].as_str().unwrap().starts_with("sha256:"));
    assert!(p["seed"].is_u64());
    assert_eq!(p["model_config"]["model"], "m");
    assert_eq!(p["model_config"]["api_key"], "***");
    assert_eq!(p["rl_gym_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        export(&app, run_id, "format=sft&min_score=0.3").await.len(),
        2
    );

    let rl = export(&app, run_id, "format=rl").await;
    let mut rewards: Vec<f64> = rl.iter().map(|l| l["reward"].as_f64().unwrap()).collect();
    rewards.sort_by(f64::total_cmp);
    assert_eq!(rewards.len(), 3);
    assert_eq!((rewards[0], rewards[2]), (0.0, 1.0));
    assert!((rewards[1] - 1.0 / 3.0).abs() < 1e-9);
    assert!(
        rl.iter().all(|l| l.get("logprobs").is_none()),
        "not asked for"
    );
    let hashes: BTreeSet<&str> = rl
        .iter()
        .map(|l| l["provenance"]["task_sha256"].as_str().unwrap())
        .collect();
    assert_eq!(hashes.len(), 1, "one task definition");

    let pairs = export(&app, run_id, "format=preference").await;
    assert_eq!(
        pairs.len(),
        3,
        "three rollouts with three scores: three pairs"
    );
    for pair in &pairs {
        assert!(pair["chosen_score"].as_f64() > pair["rejected_score"].as_f64());
        assert_eq!(pair["prompt"].as_array().unwrap().len(), 2);
        assert_eq!(pair["chosen"][0]["role"], "assistant");
        assert_eq!(pair["rejected"][0]["role"], "assistant");
        assert_ne!(
            pair["provenance"]["chosen_rollout_id"],
            pair["provenance"]["rejected_rollout_id"]
        );
    }

    for query in ["format=sft", "format=rl", "format=preference"] {
        let text = app.export(run_id, query).await.text().await.unwrap();
        assert!(!text.contains("sk-export-secret"));
    }
    for bad in ["", "format=xml", "format=sft&min_score=2"] {
        assert_eq!(
            app.export(run_id, bad).await.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}"
        );
    }
    assert_eq!(
        app.get("/runs/run_nope/export?format=rl").await.status(),
        StatusCode::NOT_FOUND
    );
    app.stop().await;
}

#[actix_web::test]
async fn the_rl_export_carries_log_probabilities_when_the_run_asked_for_them() {
    let model = start_fake_model(Behaviour::ToolThenAnswer { delay_ms: 0 }).await;
    let app = spawn_app().await;
    let task = first_hr_task(&app).await;
    let run = finished(
        &app,
        &json!({
            "scenario_id": "hr", "task_ids": [task], "rollout_count": 2,
            "model_config": {"model": "m", "provider": "custom", "base_url": model.address,
                             "log_prob": true}
        }),
    )
    .await;
    let rl = export(&app, run["run_id"].as_str().unwrap(), "format=rl").await;
    assert_eq!(rl.len(), 2);
    for line in &rl {
        let turns = line["logprobs"].as_array().unwrap();
        let assistant_turns = line["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] == "assistant")
            .count();
        assert_eq!(turns.len(), assistant_turns, "one entry per assistant turn");
        assert_eq!(turns[0]["content"][0]["logprob"], -0.25);
    }
    app.stop().await;
}
