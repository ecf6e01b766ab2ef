//! Authoring a world: `rl-gym scenarios validate DIR [--seeds N]` on the bundled
//! scenarios (all pass) and on a broken copy of one (every problem reported with its
//! file and JSON path or reason, and a non-zero exit).

use std::fs;
use std::path::Path;

use serde_json::{json, Value};

use crate::helpers::*;

fn bundled() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/scenarios")
}

/// The `N passed, M failed` line, alone on its line.
fn summary(stdout: &str) -> (usize, usize) {
    let line = stdout
        .lines()
        .find(|l| l.ends_with(" failed") && l.contains(" passed, "))
        .unwrap_or_else(|| panic!("no summary line in:\n{stdout}"));
    let (passed, failed) = line
        .strip_suffix(" failed")
        .and_then(|l| l.split_once(" passed, "))
        .unwrap_or_else(|| panic!("bad summary line {line:?}"));
    (passed.parse().unwrap(), failed.parse().unwrap())
}

#[test]
fn the_bundled_scenarios_validate() {
    let dir = bundled();
    let (code, stdout, stderr) = run_cli(&[
        "scenarios",
        "validate",
        dir.to_str().unwrap(),
        "--seeds",
        "3",
    ]);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let (passed, failed) = summary(&stdout);
    assert!(passed >= 40, "{stdout}");
    assert_eq!(failed, 0, "{stdout}");
    assert!(
        stdout.contains("ok     hr/hr__105_reporting_line_question  easy, oracle 3 steps, 3 seeds"),
        "{stdout}"
    );
}

#[test]
fn one_scenario_folder_validates_too() {
    let dir = bundled().join("hr");
    let (code, stdout, stderr) = run_cli(&[
        "scenarios",
        "validate",
        dir.to_str().unwrap(),
        "--seeds",
        "1",
    ]);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.lines().all(|l| !l.contains("it_helpdesk/")),
        "{stdout}"
    );
    let (passed, failed) = summary(&stdout);
    assert!(passed >= 10 && failed == 0, "{stdout}");
}

/// A copy of the bundled `hr` scenario with only one good task, in a temp folder.
fn hr_copy(root: &Path) -> std::path::PathBuf {
    let from = bundled().join("hr");
    let to = root.join("hr");
    copy_dir(&from, &to, &|p: &Path| {
        p.parent().is_some_and(|d| d.ends_with("tasks"))
    });
    fs::create_dir_all(to.join("tasks")).unwrap();
    to
}

fn copy_dir(from: &Path, to: &Path, skip: &dyn Fn(&Path) -> bool) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target, skip);
        } else if !skip(&path) {
            fs::copy(&path, &target).unwrap();
        }
    }
}

/// The bundled read-only task `hr__105_reporting_line_question` as `task_id`.
fn task_as(task_id: &str) -> Value {
    let mut task = hr_task_file("hr__105_reporting_line_question");
    task["task_id"] = json!(task_id);
    task["rubric"]["task_id"] = json!(task_id);
    task
}

fn write_task(scenario: &Path, task: &Value) {
    let id = task["task_id"].as_str().unwrap();
    fs::write(
        scenario.join(format!("tasks/{id}.json")),
        serde_json::to_string_pretty(task).unwrap(),
    )
    .unwrap();
}

#[test]
fn a_broken_scenario_reports_every_problem_and_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let hr = hr_copy(tmp.path());
    write_task(&hr, &task_as("good"));

    // (a) Schema errors: a check kind nobody knows (a parse error, with its JSON path),
    // and a task with two problems, both reported.
    let mut bad_kind = task_as("bad_kind");
    bad_kind["checks"][1]["kind"] = json!("trajectory_mentionz");
    write_task(&hr, &bad_kind);
    let mut two_problems = task_as("two_problems");
    two_problems["tool_servers"] = json!(["hrms", "crm"]);
    two_problems["checks"][2] = json!({
        "id": "state", "description": "a path on a server the task lacks",
        "kind": "state_count", "path": "foo.records", "at_least": 1
    });
    write_task(&hr, &two_problems);

    // (b) A reference solution short of full credit.
    let mut weak = task_as("weak_oracle");
    weak["checks"][2]["contains"] = json!(["Nobody Else"]);
    write_task(&hr, &weak);

    // (c) A task noop passes (partly): nothing is ever wrong with doing nothing.
    let mut lazy = task_as("noop_passes");
    lazy["checks"].as_array_mut().unwrap().push(json!({
        "id": "no_leave_filed", "description": "files no leave",
        "kind": "tool_not_called", "tool": "submit_leave_request"
    }));
    write_task(&hr, &lazy);

    for dir in [tmp.path(), hr.as_path()] {
        let (code, stdout, stderr) = run_cli(&[
            "scenarios",
            "validate",
            dir.to_str().unwrap(),
            "--seeds",
            "2",
        ]);
        assert_eq!(code, 1, "stdout:\n{stdout}\nstderr:\n{stderr}");
        let tasks = hr.join("tasks");
        let file = |name: &str| tasks.join(name).display().to_string();
        let expect = [
            format!(
                "error: {}: invalid JSON: checks[1]: unknown variant `trajectory_mentionz`",
                file("bad_kind.json")
            ),
            format!(
                "error: {}: `tool_servers`: unknown tool server `crm`",
                file("two_problems.json")
            ),
            format!(
                "error: {}: `checks[2]`: check `state`: path `foo.records` starts at `foo`",
                file("two_problems.json")
            ),
            "ok     hr/good  easy, oracle 3 steps, 2 seeds".to_string(),
            "FAILED hr/weak_oracle  easy, oracle 3 steps, 1 seeds".to_string(),
            "first failing seed 0: the reference solution scores 0.6666666666666666 \
             (Partial Credit), expected 1.0: failed check `peers`"
                .to_string(),
            "FAILED hr/noop_passes  easy, oracle 3 steps, 1 seeds".to_string(),
            "first failing seed 0: noop (no calls, a final answer only) scores 0.25 \
             (Partial Credit), expected 0.0: passed check `no_leave_filed`"
                .to_string(),
        ];
        for line in &expect {
            assert!(
                stdout.contains(line.as_str()),
                "missing {line:?} in:\n{stdout}"
            );
        }
        // good passes; weak_oracle, noop_passes and the two bad files fail.
        assert_eq!(summary(&stdout), (1, 4), "{stdout}");
    }
}

#[test]
fn a_missing_folder_is_reported_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nowhere");
    let (code, stdout, stderr) = run_cli(&["scenarios", "validate", missing.to_str().unwrap()]);
    assert_eq!(code, 1, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("nowhere: cannot read"), "{stdout}");
    assert_eq!(summary(&stdout), (0, 1), "{stdout}");
}
