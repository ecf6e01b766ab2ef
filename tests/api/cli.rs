//! The command-line client (`rl-gym runs …`, `rl-gym scenarios …`): the built binary
//! against a real server on a random port, its outputs and its exit codes.

use serde_json::{json, Value};

use crate::helpers::*;

/// `rl-gym runs ARGS --server ADDRESS`, returning (code, stdout, stderr).
async fn runs(app: &TestApp, args: &[&str]) -> (i32, String, String) {
    client(app, "runs", args, &[]).await
}

async fn client(
    app: &TestApp,
    group: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (i32, String, String) {
    let mut all = vec![group];
    all.extend_from_slice(args);
    all.extend(["--server", app.address.as_str()]);
    run_cli_async(&all, env).await
}

fn parse(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// A loopback URL nothing listens on.
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{address}")
}

#[actix_web::test]
async fn launch_then_watch_then_export_an_oracle_run() {
    let app = spawn_app().await;
    let task = first_hr_task(&app).await;
    let (code, out, err) = runs(
        &app,
        &[
            "launch",
            "--scenario",
            "hr",
            "--tasks",
            &task,
            "--provider",
            "builtin",
            "--model",
            "oracle",
            "--rollouts",
            "3",
            "--max-parallel",
            "2",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let launched = parse(&out);
    let run_id = launched["run_id"].as_str().unwrap().to_string();
    assert_eq!(launched["run_status"]["total"], 3);

    // Not a terminal: a plain line per change, then the summary.
    let (code, out, err) = runs(&app, &["watch", &run_id]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("completed 3, failed 0, cancelled 0 of 3"),
        "{out}"
    );
    assert!(
        out.trim_end().ends_with(&format!(
            "run {run_id} completed: 3 completed, 0 failed, 0 cancelled of 3"
        )),
        "{out}"
    );

    let (code, out, err) = runs(&app, &["export", &run_id, "--format", "sft"]).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<Value> = out.lines().map(parse).collect();
    assert_eq!(lines.len(), 3, "{out}");
    for line in &lines {
        assert_eq!(line["provenance"]["run_id"], run_id.as_str());
        assert!(line["messages"].as_array().is_some_and(|m| !m.is_empty()));
    }

    // To a file, and a threshold no rollout reaches in `rl` (which ignores it).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rl.jsonl");
    let (code, out, err) = runs(
        &app,
        &[
            "export",
            &run_id,
            "--format",
            "rl",
            "--output",
            file.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("wrote 3 line(s)"), "{err}");
    let written = std::fs::read_to_string(&file).unwrap();
    assert_eq!(written.lines().map(parse).count(), 3);

    // The table and the JSON of the same run.
    let (code, out, _) = runs(&app, &["show", &run_id]).await;
    assert_eq!(code, 0);
    assert!(out.contains("status    completed"), "{out}");
    for rollout in launched["run_status"]["rollout_ids"].as_array().unwrap() {
        assert!(out.contains(rollout.as_str().unwrap()), "{out}");
    }
    assert!(out.contains("1.00"), "{out}");
    let (code, out, _) = runs(&app, &["show", &run_id, "--json"]).await;
    assert_eq!(code, 0);
    let shown = parse(&out);
    assert_eq!(shown["completed"], 3);
    assert_eq!(shown["rollouts"].as_array().unwrap().len(), 3);

    let (code, out, _) = runs(&app, &["list", "--scenario", "hr", "--json"]).await;
    assert_eq!(code, 0);
    let page = parse(&out);
    assert_eq!(page["total"], 1);
    assert_eq!(page["runs"][0]["run_id"], run_id.as_str());
    let (code, out, _) = runs(&app, &["list", "--limit", "5"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains(&run_id) && out.contains("builtin/oracle"),
        "{out}"
    );
    app.stop().await;
}

#[actix_web::test]
async fn launch_wait_exits_0_for_a_noop_run_and_1_when_rollouts_fail() {
    let model = start_fake_model(Behaviour::Status(400)).await;
    let app = spawn_app().await;
    let task = first_hr_task(&app).await;
    let (code, out, err) = runs(
        &app,
        &[
            "launch",
            "--scenario",
            "hr",
            "--tasks",
            &task,
            "--provider",
            "builtin",
            "--model",
            "noop",
            "--rollouts",
            "2",
            "--wait",
        ],
    )
    .await;
    // noop earns no credit but completes: the run did not fail.
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("launched run run_"), "{out}");
    assert!(out.contains("completed: 2 completed, 0 failed"), "{out}");

    let (code, out, err) = runs(
        &app,
        &[
            "launch",
            "--scenario",
            "hr",
            "--tasks",
            &task,
            "--provider",
            "custom",
            "--model",
            "m",
            "--base-url",
            &model.address,
            "--rollouts",
            "2",
            "--wait",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 1, "{out}{err}");
    // --json --wait: the final status, and the reason on stderr.
    let status = parse(&out);
    assert_eq!(status["failed"], 2);
    assert!(err.contains("0 completed, 2 failed"), "{err}");
    assert!(err.contains("400"), "{err}");
    app.stop().await;
}

#[actix_web::test]
async fn a_file_gives_the_body_and_flags_override_it() {
    let app = spawn_app().await;
    let task = first_hr_task(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("run.json");
    let mut body = builtin_run("oracle", &[&task], 1);
    body["run_name"] = json!("from-file");
    std::fs::write(&file, body.to_string()).unwrap();
    let (code, out, err) = runs(
        &app,
        &[
            "launch",
            "--file",
            file.to_str().unwrap(),
            "--model",
            "noop",
            "--rollouts",
            "2",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let launched = parse(&out);
    assert_eq!(launched["run_id"], "from-file");
    assert_eq!(launched["run_status"]["total"], 2);
    assert_eq!(launched["run_status"]["model_config"]["model"], "noop");
    assert_eq!(
        launched["run_status"]["model_config"]["provider"],
        "builtin"
    );

    let missing = dir.path().join("missing.json");
    let (code, _, err) = runs(&app, &["launch", "--file", missing.to_str().unwrap()]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("missing.json"), "{err}");
    app.stop().await;
}

#[actix_web::test]
async fn the_servers_422_is_shown_field_by_field_with_exit_1() {
    let app = spawn_app().await;
    let (code, out, err) = runs(
        &app,
        &[
            "launch",
            "--scenario",
            "hr",
            "--tasks",
            "a,b",
            "--provider",
            "nonsense",
            "--model",
            "m",
            "--rollouts",
            "0",
        ],
    )
    .await;
    assert_eq!(code, 1, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("(422 validation_error)"), "{err}");
    assert!(err.contains("\n  rollout_count: "), "{err}");
    assert!(err.contains("\n  model_config.provider: "), "{err}");

    let (code, _, err) = runs(&app, &["show", "run_nope"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("Run not found (404 run_not_found)"), "{err}");
    app.stop().await;
}

#[test]
fn a_bad_flag_is_a_usage_error_with_exit_2() {
    let (code, _, err) = run_cli(&["runs", "launch", "--rollouts", "many"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--rollouts"), "{err}");
    let (code, _, err) = run_cli(&["runs", "frobnicate"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run_cli(&["runs", "export", "run_x", "--format", "csv"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run_cli(&["runs", "list", "--server", "not a url"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn a_server_that_is_down_is_named_with_exit_3() {
    let url = closed_port_url();
    for args in [
        vec!["runs", "list", "--server", &url],
        vec!["runs", "watch", "run_x", "--server", &url],
        vec!["scenarios", "list", "--server", &url],
    ] {
        let (code, out, err) = run_cli(&args);
        assert_eq!(code, 3, "{args:?}: {err}");
        assert!(out.is_empty());
        assert!(
            err.contains(&format!("cannot reach the rl-gym server at {url}")),
            "{err}"
        );
        assert!(
            err.contains("rl-gym serve") && err.contains("RL_GYM_URL"),
            "{err}"
        );
    }
    // The same through the variable.
    let (code, _, err) = run_cli_with(&["scenarios", "list"], &[("RL_GYM_URL", &url)]);
    assert_eq!(code, 3, "{err}");
}

#[actix_web::test]
async fn a_token_is_sent_from_rl_gym_api_token() {
    let temp = tempfile::tempdir().unwrap();
    let mut settings = settings_for(temp.path());
    settings.api_tokens = vec!["s3cret".into()];
    let app = spawn_app_with(settings).await;
    let (code, _, err) = client(&app, "runs", &["list"], &[]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("401"), "{err}");
    assert!(err.contains("RL_GYM_API_TOKEN"), "{err}");
    let (code, out, err) = client(
        &app,
        "scenarios",
        &["list", "--json"],
        &[("RL_GYM_API_TOKEN", "s3cret")],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(parse(&out).as_array().is_some_and(|s| !s.is_empty()));
    app.stop().await;
}

#[actix_web::test]
async fn scenarios_list_and_tasks() {
    let app = spawn_app().await;
    let (code, out, err) = client(&app, "scenarios", &["list"], &[]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(" SCENARIO") || out.starts_with("SCENARIO"),
        "{out}"
    );
    assert!(out.contains("hr_recruiting"), "{out}");
    let (code, out, _) = client(&app, "scenarios", &["tasks", "hr", "--json"], &[]).await;
    assert_eq!(code, 0);
    let tasks = parse(&out);
    let first = tasks["tasks"][0]["task_id"].as_str().unwrap().to_string();
    let (code, out, _) = client(&app, "scenarios", &["tasks", "hr"], &[]).await;
    assert_eq!(code, 0);
    assert!(out.contains(&first), "{out}");
    let (code, _, err) = client(&app, "scenarios", &["tasks", "nope"], &[]).await;
    assert_eq!(code, 1);
    assert!(err.contains("404"), "{err}");
    app.stop().await;
}

#[actix_web::test]
async fn cancel_ends_a_watch_with_exit_1_and_delete_needs_yes_without_a_terminal() {
    let model = start_fake_model(Behaviour::answer_after(2_000)).await;
    let app = spawn_app().await;
    let task = first_hr_task(&app).await;
    let launched = app
        .launch(&json!({
            "scenario_id": "hr", "task_ids": [task], "rollout_count": 4, "max_parallel": 1,
            "model_config": {"model": "m", "provider": "custom", "base_url": model.address}
        }))
        .await;
    let run_id = launched["run_id"].as_str().unwrap();

    let (code, out, err) = runs(&app, &["cancel", run_id, "--json"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(parse(&out)["run_id"], run_id);
    let (code, out, err) = runs(&app, &["watch", run_id]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("cancelled of 4"), "{err}");

    let (code, _, err) = runs(&app, &["delete", run_id]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--yes"), "{err}");
    let (code, out, err) = runs(&app, &["delete", run_id, "--yes"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("deleted run"), "{out}");
    let (code, _, _) = runs(&app, &["show", run_id]).await;
    assert_eq!(code, 1);
    app.stop().await;
}

#[actix_web::test]
async fn faults_budget_dry_run_fork_reverify_and_resume_from_the_command_line() {
    let app = spawn_app().await;
    let task = "hr__101_approve_leave_request";
    let launch = |extra: &'static [&'static str]| {
        let mut args = vec![
            "launch",
            "--scenario",
            "hr",
            "--tasks",
            task,
            "--provider",
            "builtin",
            "--model",
            "oracle",
            "--json",
        ];
        args.extend_from_slice(extra);
        args
    };
    let (code, out, err) = runs(
        &app,
        &launch(&[
            "--fault-rate",
            "0.5",
            "--fault-seed",
            "9",
            "--max-total-tokens",
            "1000000",
            "--wait",
        ]),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let status = parse(&out);
    assert_eq!(
        status["tool_faults"],
        json!({"error_rate": 0.5, "latency_ms": 0, "seed": 9})
    );
    assert_eq!(status["budget"]["max_total_tokens"], 1_000_000);
    let run_id = status["run_id"].as_str().unwrap().to_string();
    let rollout_id = status["rollout_ids"][0].as_str().unwrap().to_string();

    // A dry run estimates and launches nothing.
    let (code, out, err) = runs(&app, &launch(&["--dry-run"])).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(parse(&out)["dry_run"], true);
    assert_eq!(app.get_json("/runs").await["total"], 1);

    let (code, out, err) = runs(
        &app,
        &[
            "fork",
            &run_id,
            &rollout_id,
            "--at-step",
            "1",
            "--count",
            "2",
            "--wait",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let fork = parse(&out);
    assert_eq!(fork["parent"]["rollout_id"], rollout_id.as_str());
    assert_eq!(fork["total"], 2);

    let (code, out, err) = runs(&app, &["reverify", &run_id]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("OLD") && out.contains(&rollout_id), "{out}");

    // The run is not paused: the server's 409 detail, exit 1.
    let (code, _, err) = runs(&app, &["resume", &run_id, "--max-total-tokens", "5"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("paused"), "{err}");
    app.stop().await;
}
