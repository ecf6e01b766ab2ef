//! `rl-gym replay --execute RUN_ID`: a run re-executed from its log against today's
//! environments matches on an untouched scenario, and after an environment's
//! behaviour changes it fails, naming the first step where a rollout diverges.

use std::path::Path;

use serde_json::{json, Value};

use crate::helpers::*;

const TASK: &str = "hr__101_approve_leave_request";

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn re_execute(data: &Path, scenarios: &Path, run_id: &str) -> (i32, String, String) {
    run_cli(&[
        "replay",
        "--data-dir",
        data.to_str().unwrap(),
        "--scenarios-dir",
        scenarios.to_str().unwrap(),
        "--execute",
        run_id,
    ])
}

fn line_value(stdout: &str, key: &str) -> u64 {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no {key} in {stdout}"))
        .parse()
        .unwrap()
}

#[actix_web::test]
async fn a_run_re_executes_the_same_until_an_environment_changes() {
    let scenarios = tempfile::tempdir().unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/scenarios");
    copy_dir(&source, scenarios.path());
    let data = tempfile::tempdir().unwrap();
    let mut settings = settings_for(data.path());
    settings.scenarios_dir = scenarios.path().to_path_buf();
    let app = spawn_app_with(settings).await;
    let mut body = builtin_run("oracle", &[TASK, "hr__103_process_leave_queue"], 2);
    // Injected faults must come out the same too.
    body["tool_faults"] = json!({"error_rate": 0.2, "seed": 5});
    let launched = app.launch(&body).await;
    let run_id = launched["run_id"].as_str().unwrap().to_string();
    let status = app.wait_until_finished(&run_id).await;
    assert_eq!(status["completed"], 4);
    // A fork keeps the run's faults; its copied first step keeps the source's.
    let first = launched["rollouts"][0]["rollout_id"].as_str().unwrap();
    let fork: Value = app
        .fork(&run_id, first, &json!({"at_step": 2, "count": 2}))
        .await
        .json()
        .await
        .unwrap();
    let fork_id = fork["run_id"].as_str().unwrap().to_string();
    assert_eq!(app.wait_until_finished(&fork_id).await["completed"], 2);
    app.stop().await;

    let (code, stdout, stderr) = re_execute(data.path(), scenarios.path(), &fork_id);
    assert_eq!(code, 0, "the fork re-executes the same: {stdout}{stderr}");
    assert_eq!(line_value(&stdout, "rollouts"), 2);

    let (code, stdout, stderr) = re_execute(data.path(), scenarios.path(), &run_id);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(line_value(&stdout, "rollouts"), 4);
    assert_eq!(line_value(&stdout, "verdicts"), 4);
    assert!(line_value(&stdout, "tool_calls") >= 20, "{stdout}");
    assert_eq!(line_value(&stdout, "diverged"), 0);

    // Hannah Park (E007) now has 14 vacation days: the balance lookup at step 2 of
    // the approval task answers differently.
    let hrms_path = scenarios.path().join("hr/environment/hrms.json");
    let mut hrms: Value =
        serde_json::from_str(&std::fs::read_to_string(&hrms_path).unwrap()).unwrap();
    let employee = hrms["employees"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["employee_id"] == "E007")
        .unwrap();
    employee["leave_balance"]["vacation"] = json!(14);
    std::fs::write(&hrms_path, serde_json::to_string_pretty(&hrms).unwrap()).unwrap();

    let (code, stdout, stderr) = re_execute(data.path(), scenarios.path(), &run_id);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(line_value(&stdout, "diverged") >= 1, "{stdout}");
    let first = launched["rollouts"][0]["rollout_id"].as_str().unwrap();
    assert!(
        stderr.contains(&format!("rollout {first} diverges at step 2")),
        "{stderr}"
    );
    assert!(stderr.contains("get_leave_balance"), "{stderr}");
    assert!(
        stderr.contains("\\\"vacation\\\":12"),
        "the logged answer is shown: {stderr}"
    );
    let (code, _, stderr) = re_execute(data.path(), scenarios.path(), "run_nope");
    assert_eq!(code, 2);
    assert!(stderr.contains("no run run_nope"), "{stderr}");
}

#[test]
fn an_unknown_run_or_a_missing_log_is_a_clear_error() {
    let data = tempfile::tempdir().unwrap();
    let scenarios = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/scenarios");
    let (code, _, stderr) = re_execute(data.path(), &scenarios, "run_nope");
    assert_eq!(code, 2);
    assert!(stderr.contains("no event log"), "{stderr}");
}
