//! The log on disk: restarts keep every view, a SIGKILL loses no acknowledged event,
//! `rl-gym replay` rebuilds the same views twice, SIGTERM shuts down cleanly.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

async fn snapshot(client: &reqwest::Client, address: &str, run_ids: &[String]) -> Value {
    let mut runs = Vec::new();
    for run_id in run_ids {
        let run = get_json_at(client, address, &format!("/runs/{run_id}")).await;
        let mut rollouts = Vec::new();
        for id in run["rollout_ids"].as_array().unwrap() {
            let id = id.as_str().unwrap();
            let r = get_json_at(client, address, &format!("/runs/{run_id}/rollouts/{id}")).await;
            rollouts.push(r);
        }
        runs.push(json!({ "run": run, "rollouts": rollouts }));
    }
    let list = get_json_at(client, address, "/runs?source=all&expand=rollouts").await;
    json!({ "runs": runs, "list": list })
}

#[actix_web::test]
async fn a_restart_on_the_same_data_directory_keeps_every_view() {
    let app = spawn_app().await;
    let task = first_hr_task(&app).await;
    let mut run_ids = Vec::new();
    for model in ["noop", "oracle"] {
        let launched = app.launch(&builtin_run(model, &[&task], 2)).await;
        let run_id = launched["run_id"].as_str().unwrap().to_string();
        app.wait_until_finished(&run_id).await;
        run_ids.push(run_id);
    }
    let cancelled = app.launch(&builtin_run("noop", &[&task], 1)).await;
    let cancelled_id = cancelled["run_id"].as_str().unwrap().to_string();
    app.wait_until_finished(&cancelled_id).await;
    app.cancel(&cancelled_id).await;
    run_ids.push(cancelled_id);
    let deleted = app.launch(&builtin_run("noop", &[&task], 1)).await;
    let deleted_id = deleted["run_id"].as_str().unwrap().to_string();
    app.wait_until_finished(&deleted_id).await;
    app.delete(&format!("/runs/{deleted_id}")).await;

    let before = snapshot(&app.client, &app.address, &run_ids).await;
    let data_dir = app.data_dir.clone();
    let temp = app.stop_keep_data().await;

    let app = spawn_app_with(settings_for(&data_dir)).await;
    let after = snapshot(&app.client, &app.address, &run_ids).await;
    assert_eq!(before, after);
    assert_eq!(
        app.get(&format!("/runs/{deleted_id}")).await.status(),
        StatusCode::NOT_FOUND
    );
    app.stop().await;
    drop(temp);
}

#[test]
fn a_sigkill_mid_run_loses_no_acknowledged_event_and_the_run_finishes_after_restart() {
    let temp = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = crate::helpers::http_client();
    let mut server = ServerProcess::start(temp.path());
    let address = server.address.clone();

    let (run_ids, acknowledged) = runtime.block_on(async {
        let tasks = get_json_at(&client, &address, "/scenarios/hr/tasks").await;
        let task = tasks["tasks"][0]["task_id"].as_str().unwrap().to_string();
        let mut run_ids = Vec::new();
        for _ in 0..4 {
            let mut body = builtin_run("oracle", &[&task], 100);
            body["max_parallel"] = json!(4);
            let launched = launch_at(&client, &address, &body).await;
            run_ids.push(launched["run_id"].as_str().unwrap().to_string());
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        // Everything acknowledged so far: the state of each rollout as last read.
        let mut acknowledged = Vec::new();
        for run_id in &run_ids {
            let run = get_json_at(&client, &address, &format!("/runs/{run_id}")).await;
            acknowledged.push(run);
        }
        (run_ids, acknowledged)
    });
    server.kill();

    let restarted = ServerProcess::start(temp.path());
    let address = restarted.address.clone();
    runtime.block_on(async {
        for (run_id, before) in run_ids.iter().zip(&acknowledged) {
            let after = get_json_at(&client, &address, &format!("/runs/{run_id}")).await;
            assert_eq!(after["total"], before["total"]);
            // Every rollout that had finished before the kill is still finished with
            // the same state; nothing acknowledged went back.
            for (b, a) in before["rollouts"]
                .as_array()
                .unwrap()
                .iter()
                .zip(after["rollouts"].as_array().unwrap())
            {
                assert_eq!(a["rollout_id"], b["rollout_id"]);
                if b["status"] == "completed" {
                    assert_eq!(a, b);
                }
                if b["status"] == "running" || b["status"] == "verifying" {
                    assert_ne!(a["status"], "pending");
                }
            }
            let done = wait_until_finished(&client, &address, run_id).await;
            assert_eq!(done["completed"], 100, "{done}");
            for rollout in done["rollouts"].as_array().unwrap() {
                let detail: Value = client
                    .get(format!(
                        "{address}/runs/{run_id}/rollouts/{}",
                        rollout["rollout_id"].as_str().unwrap()
                    ))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                // A resumed rollout has no step twice.
                let assistant_turns = detail["trajectory"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|m| m["role"] == "assistant")
                    .count() as u64;
                assert_eq!(
                    assistant_turns,
                    detail["steps"].as_u64().unwrap(),
                    "{detail}"
                );
                let calls = detail["tool_calls"].as_array().unwrap();
                let distinct: std::collections::BTreeSet<&str> = calls
                    .iter()
                    .map(|c| c["call_id"].as_str().unwrap())
                    .collect();
                assert_eq!(
                    distinct.len(),
                    calls.len(),
                    "a tool call was applied twice: {detail}"
                );
                assert_eq!(detail["score"], 1.0, "{detail}");
            }
        }
    });
    drop(restarted);
}

#[actix_web::test]
async fn replay_verifies_the_log_and_prints_the_same_summary_twice() {
    let app = spawn_app().await;
    let task = first_hr_task(&app).await;
    let launched = app.launch(&builtin_run("oracle", &[&task], 3)).await;
    app.wait_until_finished(launched["run_id"].as_str().unwrap())
        .await;
    let data_dir = app.data_dir.clone();
    let temp = app.stop_keep_data().await;

    let dir = data_dir.to_str().unwrap();
    let (code, first, stderr) = run_cli(&["replay", "--data-dir", dir]);
    assert_eq!(code, 0, "{stderr}");
    let (_, second, _) = run_cli(&["replay", "--data-dir", dir]);
    assert_eq!(first, second);
    assert!(first.contains("runs: 1\n"), "{first}");
    assert!(first.contains("rollouts: 3\n"), "{first}");
    let checksum = first.lines().find(|l| l.starts_with("checksum: ")).unwrap();
    assert_eq!(checksum.len(), "checksum: ".len() + 64);

    // A flipped byte inside the log is found and named.
    let segment = std::fs::read_dir(data_dir.join("log"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&segment).unwrap();
    // In the middle of the records, not of the zeros the writer keeps ahead of them.
    let records_end = bytes.iter().rposition(|&b| b != 0).unwrap();
    let middle = records_end / 2;
    bytes[middle] ^= 0xFF;
    std::fs::write(&segment, bytes).unwrap();
    let (code, _, stderr) = run_cli(&["replay", "--data-dir", dir]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("damaged") || stderr.contains("corrupt"),
        "{stderr}"
    );

    let (code, _, stderr) = run_cli(&["replay", "--data-dir", "/nonexistent/rl-gym"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("no event log"), "{stderr}");
    drop(temp);
}

#[test]
fn sigterm_shuts_down_gracefully_and_the_log_reopens_clean() {
    let temp = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(temp.path());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let address = server.address.clone();
    runtime.block_on(async {
        let client = crate::helpers::http_client();
        let health = get_json_at(&client, &address, "/healthz").await;
        assert_eq!(health["status"], "ok");
    });
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    let (code, out, stderr) = run_cli(&["replay", "--data-dir", temp.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(out.contains("truncated_bytes: 0"), "{out}");
}

/// Every file under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[actix_web::test]
async fn a_sigkill_mid_step_resumes_every_rollout_with_no_repeat_and_the_key_never_leaks() {
    const KEY: &str = "sk-canary-7f3a9d41c2";
    const ROLLOUTS: usize = 30;
    let model = start_fake_model(Behaviour::ToolThenAnswer { delay_ms: 400 }).await;
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let log = temp.path().join("server.log");
    let client = crate::helpers::http_client();

    let mut server = ServerProcess::start_logged(&data_dir, &log);
    let tasks: Value = client
        .get(format!("{}/scenarios/hr/tasks", server.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let task = tasks["tasks"][0]["task_id"].as_str().unwrap().to_string();
    let launched = launch_at(&client, &server.address, &json!({
            "scenario_id": "hr",
            "task_ids": [task],
            "rollout_count": ROLLOUTS,
            "model_config": {"model": "slow", "provider": "custom", "base_url": model.address, "api_key": KEY}
        })).await;
    let run_id = launched["run_id"].as_str().unwrap().to_string();
    // Kill once half the rollouts are in their second model call: every rollout is
    // then mid-step, with some results recorded and some calls in flight.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while model.requests.lock().len() < ROLLOUTS + ROLLOUTS / 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the model was never called enough"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill();
    let before_restart = model.requests.lock().len();

    let server = ServerProcess::start_logged(&data_dir, &log);
    let done = wait_until_finished(&client, &server.address, &run_id).await;
    assert_eq!(done["completed"], ROLLOUTS as u64, "{done}");
    assert_eq!(done["model_config"]["api_key"], "***");

    for rollout in done["rollouts"].as_array().unwrap() {
        let detail: Value = client
            .get(format!(
                "{}/runs/{run_id}/rollouts/{}",
                server.address,
                rollout["rollout_id"].as_str().unwrap()
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_tool_then_answer_once(&detail);
    }
    let requests = model.requests.lock().clone();
    let needed = 2 * ROLLOUTS;
    assert!(requests.len() >= needed);
    // A rollout killed mid-run asks again for the call in flight and, if the reply
    // before it was still on its way to the disk (it is made durable while the next
    // call runs), for that one too: at most two repeated requests each.
    assert!(
        requests.len() <= needed + 2 * ROLLOUTS,
        "at most two repeated model requests per in-flight rollout: {} requests",
        requests.len()
    );
    // The key came back from its sealed file after the restart.
    assert!(requests[before_restart..]
        .iter()
        .all(|(auth, _)| auth.as_deref() == Some(&format!("Bearer {KEY}")[..])));
    drop(server);

    for file in files_under(&data_dir) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()),
            "the key is in plain text in {}",
            file.display()
        );
    }
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.len() > 100, "debug logs were captured");
    assert!(!logs.contains(KEY), "the key is in the logs");
}
