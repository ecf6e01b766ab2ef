//! The verifier bundle (seed 001, "Download Verifier Bundle"): the downloaded Python
//! package, run with `python3`, must give every rollout the server's own verdict —
//! score, label and every check's id, description, outcome and reason.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::StatusCode;
use serde_json::{json, Value};

use rl_gym::domain::chat::Message;
use rl_gym::scenarios::{Scenario, Task};
use rl_gym::verify::{Check, ScoringRule};

use crate::helpers::*;

// ---------------------------------------------------------------------------------
// Harness

/// A bundle unpacked into its own temporary directory.
struct Unpacked {
    dir: tempfile::TempDir,
    package: String,
    zip_path: PathBuf,
}

/// Downloads a scenario's bundle and checks the response's headers.
async fn download(app: &TestApp, scenario_id: &str) -> Vec<u8> {
    let response = app
        .get(&format!("/scenarios/{scenario_id}/verifiers/bundle"))
        .await;
    assert_eq!(response.status(), StatusCode::OK, "bundle of {scenario_id}");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(header("content-type"), "application/zip");
    assert_eq!(
        header("content-disposition"),
        format!("attachment; filename=\"{scenario_id}_verifiers.zip\"")
    );
    response.bytes().await.unwrap().to_vec()
}

/// Unzips `bytes` into a fresh directory (and keeps the archive next to it).
fn unpack(bytes: &[u8]) -> Unpacked {
    let dir = tempfile::tempdir().unwrap();
    let zip_path = dir.path().join("bundle.zip");
    std::fs::write(&zip_path, bytes).unwrap();
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
    let root = dir.path().join("pkg");
    archive.extract(&root).unwrap();
    let packages: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        packages.len(),
        1,
        "one package in the archive: {packages:?}"
    );
    let package = packages[0].clone();
    for file in [
        "__init__.py",
        "__main__.py",
        "checks.py",
        "tasks.json",
        "README.md",
    ] {
        assert!(root.join(&package).join(file).is_file(), "{package}/{file}");
    }
    Unpacked {
        dir,
        package,
        zip_path,
    }
}

impl Unpacked {
    fn root(&self) -> PathBuf {
        self.dir.path().join("pkg")
    }

    /// A file for the test's own inputs.
    fn scratch(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs the package on every case in one `python3` process and returns the
    /// verdicts in order. A case is `{"task_id", "file"}` (a saved rollout view, through
    /// `verify`), `{"task", "state", "trajectory"}` (a task given inline, through
    /// `verify_task`) or `{"verdict", "rubric"}` (through `combine`).
    fn run(&self, cases: &[Value]) -> Vec<Value> {
        let cases_path = self.scratch("cases.json");
        std::fs::write(&cases_path, serde_json::to_vec(cases).unwrap()).unwrap();
        let script = "\
import importlib, json, sys
sys.path.insert(0, sys.argv[1])
pkg = importlib.import_module(sys.argv[2])
out = []
for case in json.load(open(sys.argv[3])):
    if 'file' in case:
        out.append(pkg.verify(case['task_id'], json.load(open(case['file']))))
    elif 'verdict' in case:
        out.append(pkg.combine(case['verdict'], case['rubric']))
    else:
        out.append(pkg.verify_task(case['task'], case['state'], case['trajectory']))
print(json.dumps(out))
";
        let output = python()
            .arg("-c")
            .arg(script)
            .arg(self.root())
            .arg(&self.package)
            .arg(&cases_path)
            .output()
            .expect("python3 runs (install it to run these tests)");
        assert!(
            output.status.success(),
            "python3 failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let verdicts: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(verdicts.len(), cases.len());
        verdicts
    }
}

fn python() -> Command {
    Command::new("python3")
}

/// The bundle's verdict equals the server's: score within 1e-9, the rest exactly.
fn assert_same_verdict(context: &str, bundle: &Value, server: &Value) {
    let (b, s) = (bundle["score"].as_f64(), server["score"].as_f64());
    assert!(
        matches!((b, s), (Some(b), Some(s)) if (b - s).abs() <= 1e-9),
        "{context}: score {bundle} vs the server's {server}"
    );
    assert_eq!(bundle["label"], server["label"], "{context}: label");
    let (bc, sc) = (
        bundle["checks"].as_array().unwrap(),
        server["checks"].as_array().unwrap(),
    );
    assert_eq!(bc.len(), sc.len(), "{context}: number of checks");
    for (b, s) in bc.iter().zip(sc) {
        for field in ["id", "description", "passed", "reason"] {
            assert_eq!(b[field], s[field], "{context}: check {} {field}", s["id"]);
        }
    }
}

async fn scenario_ids(app: &TestApp) -> Vec<String> {
    let list = app.get_json("/scenarios").await;
    let ids: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["scenario_id"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.iter().any(|id| id == "hr"), "{ids:?}");
    ids
}

/// Instances of each task family the bundle is checked on.
const FAMILY_INSTANCES: usize = 6;

/// One builtin run over every task of the scenario, then one over several instances
/// of each of its task families; the finished rollout views.
async fn rollouts(app: &TestApp, scenario: &Scenario, model: &str) -> Vec<Value> {
    let task_ids: Vec<&str> = scenario.tasks.iter().map(|t| t.task_id.as_str()).collect();
    let mut views = run_views(app, scenario, model, &task_ids, 1).await;
    assert_eq!(views.len(), scenario.tasks.len());
    let families: Vec<&str> = scenario
        .tasks
        .iter()
        .filter(|t| t.is_family())
        .map(|t| t.task_id.as_str())
        .collect();
    if !families.is_empty() {
        let instances = run_views(app, scenario, model, &families, FAMILY_INSTANCES).await;
        assert_eq!(instances.len(), families.len() * FAMILY_INSTANCES);
        views.extend(instances);
    }
    views
}

async fn run_views(
    app: &TestApp,
    scenario: &Scenario,
    model: &str,
    task_ids: &[&str],
    instances: usize,
) -> Vec<Value> {
    let launched = app
        .launch(&json!({
            "scenario_id": scenario.scenario_id,
            "task_ids": task_ids,
            "rollout_count": 1,
            "instances_per_task": instances,
            "model_config": { "model": model, "provider": "builtin" }
        }))
        .await;
    let run_id = launched["run_id"].as_str().unwrap().to_string();
    let done = app.wait_until_finished(&run_id).await;
    let mut views = Vec::new();
    for rollout_id in done["rollout_ids"].as_array().unwrap() {
        let view = app
            .get_json(&format!(
                "/runs/{run_id}/rollouts/{}",
                rollout_id.as_str().unwrap()
            ))
            .await;
        assert_eq!(view["status"], "completed", "{model} rollout: {view}");
        assert!(view["verdict"].is_object(), "{model} rollout has a verdict");
        views.push(view);
    }
    views
}

/// The server's `verify` on synthetic inputs, as JSON.
fn server_verdict(task: &Task, state: &Value, trajectory: &Value) -> Value {
    let trajectory: Vec<Message> = serde_json::from_value(trajectory.clone()).unwrap();
    serde_json::to_value(task.verify(state, &trajectory)).unwrap()
}

/// A task as the bundle's `tasks.json` holds it.
fn task_json(task: &Task) -> Value {
    json!({ "task_id": task.task_id, "name": task.name, "checks": task.checks, "scoring": task.scoring })
}

// ---------------------------------------------------------------------------------
// Tests

#[actix_web::test]
async fn for_every_scenario_the_bundle_scores_oracle_and_noop_rollouts_as_the_server_does() {
    let app = spawn_app().await;
    let catalog = bundled_catalog();
    for scenario_id in scenario_ids(&app).await {
        let scenario = catalog.get(&scenario_id).unwrap();
        let unpacked = unpack(&download(&app, &scenario_id).await);
        assert_eq!(unpacked.package, format!("{scenario_id}_verifiers"));

        let mut cases = Vec::new();
        let mut server = Vec::new();
        let mut labels = Vec::new();
        for model in ["oracle", "noop"] {
            for (i, view) in rollouts(&app, scenario, model)
                .await
                .into_iter()
                .enumerate()
            {
                let file = unpacked.scratch(&format!("{model}-{i}.json"));
                std::fs::write(&file, serde_json::to_vec_pretty(&view).unwrap()).unwrap();
                let task_id = view["task_id"].as_str().unwrap().to_string();
                cases.push(json!({ "task_id": task_id, "file": file }));
                labels.push((model, view["verdict"]["label"].clone()));
                server.push((
                    format!("{scenario_id} {model} {task_id}"),
                    view["verdict"].clone(),
                ));
            }
        }
        let verdicts = unpacked.run(&cases);
        for ((context, expected), actual) in server.iter().zip(&verdicts) {
            assert_same_verdict(context, actual, expected);
        }
        // Not vacuous: the oracle earns credit somewhere and the noop agent misses some.
        assert!(labels
            .iter()
            .any(|(m, l)| *m == "oracle" && l == "Full Credit"));
        assert!(labels
            .iter()
            .any(|(m, l)| *m == "noop" && l != "Full Credit"));

        // The command line, run straight from the archive (zipimport), prints the same.
        let output = python()
            .args(["-m", &unpacked.package])
            .arg(cases[0]["file"].as_str().unwrap())
            .env("PYTHONPATH", &unpacked.zip_path)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_same_verdict(&format!("{scenario_id} CLI"), &printed, &server[0].1);
    }
    app.stop().await;
}

#[actix_web::test]
async fn the_bundle_scores_damaged_oracle_rollouts_as_the_server_does() {
    let app = spawn_app().await;
    let catalog = bundled_catalog();
    for scenario_id in scenario_ids(&app).await {
        let scenario = catalog.get(&scenario_id).unwrap();
        let unpacked = unpack(&download(&app, &scenario_id).await);
        let mut cases = Vec::new();
        let mut expected = Vec::new();
        for view in rollouts(&app, scenario, "oracle").await {
            // The instance the rollout played, as the server scored it.
            let task = scenario
                .task(view["task_id"].as_str().unwrap())
                .unwrap()
                .instance(view["instance_seed"].as_u64().unwrap())
                .unwrap();
            let task = task.as_ref();
            for (what, state, trajectory) in damaged(task, &view) {
                expected.push((
                    format!("{scenario_id} {} {what}", task.task_id),
                    server_verdict(task, &state, &trajectory),
                ));
                let file = unpacked.scratch(&format!("damaged-{}.json", cases.len()));
                let mut rollout = view.clone();
                rollout["environment_state"] = state;
                rollout["trajectory"] = trajectory;
                std::fs::write(&file, serde_json::to_vec(&rollout).unwrap()).unwrap();
                cases.push(json!({ "task_id": task.task_id, "file": file }));
            }
        }
        let verdicts = unpacked.run(&cases);
        for ((context, server), bundle) in expected.iter().zip(&verdicts) {
            assert_same_verdict(context, bundle, server);
        }
        // The damage shows: some variants lose credit, some keep part of it.
        let labels: Vec<&Value> = expected.iter().map(|(_, v)| &v["label"]).collect();
        assert!(labels.iter().any(|l| *l == "No Credit"), "{scenario_id}");
    }
    app.stop().await;
}

#[actix_web::test]
async fn the_bundle_combines_checks_and_rubric_as_the_server_does() {
    use rl_gym::domain::verdict::{CheckResult, RubricStatus, RubricVerdict, Verdict};
    let app = spawn_app().await;
    let unpacked = unpack(&download(&app, "hr").await);
    app.stop().await;
    let check = CheckResult {
        id: "c".into(),
        description: "d".into(),
        passed: true,
        reason: "r".into(),
    };
    let mut cases = Vec::new();
    let mut expected = Vec::new();
    for (verdict_score, checks) in [(1.0, 1), (0.5, 1), (0.0, 1), (0.0, 0)] {
        for (status, rubric_score) in [
            (RubricStatus::Graded, Some(0.25)),
            (RubricStatus::Graded, Some(1.0)),
            (RubricStatus::Skipped, None),
            (RubricStatus::Error, None),
        ] {
            let verdict = Verdict {
                score: verdict_score,
                label: rl_gym::domain::verdict::label_of(verdict_score).into(),
                checks: vec![check.clone(); checks],
            };
            let rubric = RubricVerdict {
                status,
                judge: Some("custom/j".into()),
                score: rubric_score,
                label: rubric_score.map(|s| rl_gym::domain::verdict::label_of(s).into()),
                reason: "why".into(),
                criteria: vec![],
            };
            for rubric in [Some(rubric), None] {
                let (score, label) = rl_gym::domain::verdict::combine(&verdict, rubric.as_ref());
                expected.push(json!({"score": score, "label": label}));
                cases.push(json!({"verdict": verdict, "rubric": rubric}));
            }
        }
    }
    assert_eq!(unpacked.run(&cases), expected);
}

/// Variants of an oracle rollout, each missing something a check looks for:
/// `(what, environment_state, trajectory)`.
fn damaged(task: &Task, view: &Value) -> Vec<(String, Value, Value)> {
    let state = view["environment_state"].clone();
    let trajectory = view["trajectory"].clone();
    let mut out = vec![("as it is".to_string(), state.clone(), trajectory.clone())];

    // No final answer: the last assistant text is gone.
    let mut no_answer = trajectory.clone();
    if let Some(last) = no_answer
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .rev()
        .find(|m| m["role"] == "assistant" && m["content"].as_str().is_some_and(|c| !c.is_empty()))
    {
        last["content"] = Value::Null;
    }
    out.push(("no final answer".into(), state.clone(), no_answer));

    // No tool calls at all in the trajectory (the state keeps their effects).
    let no_calls: Vec<Value> = trajectory
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] != "tool")
        .map(|m| {
            let mut m = m.clone();
            if let Some(o) = m.as_object_mut() {
                o.remove("tool_calls");
            }
            m
        })
        .collect();
    out.push((
        "no tool calls".into(),
        state.clone(),
        Value::Array(no_calls),
    ));

    // Each state check's collection emptied, then with only its last record removed.
    for check in &task.checks {
        let check = serde_json::to_value(check).unwrap();
        let Some(path) = check["path"].as_str() else {
            continue;
        };
        let keys: Vec<&str> = path
            .split('.')
            .take(2)
            .map(|k| k.split('[').next().unwrap_or(k))
            .collect();
        let [server, collection] = keys[..] else {
            continue;
        };
        if let Some(Value::Array(items)) = state.get(server).and_then(|s| s.get(collection)) {
            let mut emptied = state.clone();
            emptied[server][collection] = json!([]);
            out.push((format!("{path} emptied"), emptied, trajectory.clone()));
            let mut shorter = state.clone();
            let mut kept = items.clone();
            kept.pop();
            shorter[server][collection] = Value::Array(kept);
            out.push((
                format!("{path} last record gone"),
                shorter,
                trajectory.clone(),
            ));
        }
    }

    // Nothing was sent; a calendar event booked twice; no environment at all.
    if state.pointer("/email/messages").is_some() {
        let mut unsent = state.clone();
        unsent["email"]["messages"] = json!([]);
        out.push(("no email".into(), unsent, trajectory.clone()));
    }
    if let Some(first) = state.pointer("/calendar/events/0").cloned() {
        let mut twice = state.clone();
        let mut copy = first;
        copy["id"] = json!(format!("{}-again", copy["id"].as_str().unwrap_or("event")));
        twice["calendar"]["events"]
            .as_array_mut()
            .unwrap()
            .push(copy);
        out.push(("an event booked twice".into(), twice, trajectory.clone()));
    }
    out.push(("no environment".into(), Value::Null, trajectory));
    out
}

#[actix_web::test]
async fn the_bundle_matches_the_server_on_every_corner_of_the_check_language() {
    let hr = bundled_catalog().get("hr").unwrap().clone();
    let unpacked = unpack(&hr.verifier_bundle().unwrap().bytes);
    let template = hr.tasks[0].clone();
    let task = |checks: Value, partial_credit: bool| {
        let mut task = template.clone();
        task.checks = serde_json::from_value::<Vec<Check>>(checks).unwrap();
        task.scoring = ScoringRule { partial_credit };
        task
    };
    let all = corner_checks();
    let passing: Vec<Value> = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["id"].as_str().unwrap().starts_with("ok_"))
        .cloned()
        .collect();
    let mut required = all.clone();
    required[0]["required"] = json!(true);
    required[0]["path"] = json!("hrms.nothing_here");
    let tasks = [
        ("every check, weighted", task(all.clone(), true)),
        ("every check, all or nothing", task(all, false)),
        ("a required check fails", task(required, true)),
        ("the passing checks", task(Value::Array(passing), true)),
    ];
    let states = [
        ("the corner state", corner_state()),
        ("no state", Value::Null),
    ];
    let trajectories = [("a trajectory", corner_trajectory()), ("none", json!([]))];

    let mut cases = Vec::new();
    let mut expected = Vec::new();
    for (t, task) in &tasks {
        for (s, state) in &states {
            for (j, trajectory) in &trajectories {
                cases.push(
                    json!({ "task": task_json(task), "state": state, "trajectory": trajectory }),
                );
                expected.push((
                    format!("{t}; {s}; {j}"),
                    server_verdict(task, state, trajectory),
                ));
            }
        }
    }
    let verdicts = unpacked.run(&cases);
    for ((context, server), bundle) in expected.iter().zip(&verdicts) {
        assert_same_verdict(context, bundle, server);
    }
    let labels: Vec<&str> = expected
        .iter()
        .map(|(_, v)| v["label"].as_str().unwrap())
        .collect();
    for label in ["Full Credit", "Partial Credit", "No Credit"] {
        assert!(labels.contains(&label), "no {label} among {labels:?}");
    }
}

/// Checks over every kind, operator, path form and reason, with awkward values
/// (floats in every layout, non-ASCII, quotes, tabs). Ids starting `ok_` pass on the
/// corner state and trajectory.
fn corner_checks() -> Value {
    let count = |id: &str, path: &str, filter: Value, equals: u64| {
        json!({ "id": id, "description": format!("count {path}"), "kind": "state_count",
                "path": path, "where": filter, "equals": equals })
    };
    let field = |id: &str, filter: Value, field: &str, equals: Value| {
        json!({ "id": id, "description": format!("field {field}"), "kind": "state_field_equals",
                "path": "hrms.employees", "where": filter, "field": field, "equals": equals })
    };
    let mut checks = vec![
        count("ok_all", "hrms.employees", json!({}), 3),
        json!({ "id": "bounds", "description": "between", "kind": "state_count", "weight": 0.1,
                "path": "hrms.employees", "at_least": 1, "at_most": 2 }),
        count("ok_level_literal", "hrms.employees", json!({"level": 3}), 2),
        count(
            "ok_gte_number",
            "hrms.employees",
            json!({"salary": {"gte": 100000}}),
            2,
        ),
        count(
            "ok_lte_text",
            "hrms.employees",
            json!({"start": {"lte": "2024-01-15"}}),
            2,
        ),
        count(
            "ok_contains_array",
            "hrms.employees",
            json!({"tags": {"contains": "remote"}}),
            1,
        ),
        count(
            "ok_contains_text",
            "hrms.employees",
            json!({"name": {"contains": "ÅNG"}}),
            1,
        ),
        count(
            "ok_exists_false",
            "hrms.employees",
            json!({"nullish": {"exists": false}}),
            3,
        ),
        count(
            "ok_exists_true",
            "hrms.employees",
            json!({"tags": {"exists": true}}),
            2,
        ),
        count("ok_ne", "hrms.employees", json!({"flag": {"ne": true}}), 2),
        count(
            "ok_bool_literal",
            "hrms.employees",
            json!({"flag": true}),
            1,
        ),
        count(
            "ok_any_of",
            "hrms.employees",
            json!({"level": {"any_of": [1, "3"]}}),
            1,
        ),
        count("ok_eq", "hrms.employees", json!({"id": {"eq": "e2"}}), 1),
        count(
            "ok_dotted",
            "hrms.employees",
            json!({"manager.email": "A.B@X.COM"}),
            1,
        ),
        count(
            "ok_object_literal",
            "hrms.employees",
            json!({"obj": {"a": [1, 2.0, "x"], "b": 1}}),
            1,
        ),
        count(
            "int_vs_float_nested",
            "hrms.employees",
            json!({"obj": {"a": [1, 2, "x"], "b": 1}}),
            1,
        ),
        count(
            "ok_selector_email",
            "hrms.teams.members[email=a.b@x.com]",
            json!({}),
            1,
        ),
        count(
            "ok_selector_number",
            "hrms.employees[level=3]",
            json!({}),
            1,
        ),
        count(
            "ok_selector_bool",
            "hrms.employees[flag=true, id=E1]",
            json!({}),
            1,
        ),
        count(
            "ok_selector_null",
            "hrms.employees[nullish=null]",
            json!({}),
            1,
        ),
        count("wrong_count", "hrms.employees", json!({"level": 3}), 5),
        count("empty_segment", "hrms..employees", json!({}), 1),
        count("blank_path", " ", json!({}), 1),
        count("no_equals", "hrms.employees[level]", json!({}), 1),
        count("unclosed", "hrms.employees[level=3", json!({}), 1),
        count("empty_selector", "hrms.employees[]", json!({}), 1),
        field("ok_huge", json!({"id": "E1"}), "salary", json!(1e21)),
        field("ok_small", json!({"id": "E1"}), "ratio", json!(0.00001)),
        field("tiny", json!({"id": "E1"}), "tiny", json!(1e-6)),
        field("big", json!({"id": "E2"}), "big", json!(1e17)),
        field("ok_mid", json!({"id": "E2"}), "mid", json!(1e15)),
        field("ok_level_float", json!({"id": "E2"}), "level", json!(3)),
        field("negative", json!({"id": "E3"}), "salary", json!(-2.5e-9)),
        field(
            "subnormal",
            json!({"id": "E3"}),
            "sub",
            json!(2.2250738585072014e-308),
        ),
        field("fraction", json!({"id": "E3"}), "frac", json!(0.5)),
        field("max", json!({"id": "E3"}), "max", json!(-1e300)),
        field("ok_neg", json!({"id": "E3"}), "neg", json!(-0.000123)),
        field("quoted_name", json!({"id": "E2"}), "name", json!("Bob")),
        field(
            "tabbed_name",
            json!({"id": "E3"}),
            "name",
            json!("Ünïcode Tab"),
        ),
        field(
            "ok_unicode_name",
            json!({"id": "E1"}),
            "name",
            json!("ZOË ÅNGSTRÖM"),
        ),
        field(
            "object_field",
            json!({"id": "E3"}),
            "obj",
            json!({"b": 1, "a": [1.5]}),
        ),
        field("missing_field", json!({"id": "E3"}), "nope", json!(null)),
        field("null_field", json!({"id": "E1"}), "nullish", json!("x")),
        field("no_record", json!({"id": "E9"}), "name", json!("x")),
        field("many_records", json!({}), "name", json!("x")),
        json!({ "id": "bad_path_field", "description": "bad", "kind": "state_field_equals",
                "path": "hrms.employees[x", "field": "a", "equals": 1 }),
        json!({ "id": "ok_email", "description": "offer sent", "kind": "email_sent", "weight": 2.5,
                "to": ["hr@x.com", "BOSS@x.com"], "subject_contains": ["offer"],
                "body_contains_any": ["hello", "WELCOME"], "body_excludes": ["reject"] }),
        json!({ "id": "ok_email_numeric_id", "description": "greek", "kind": "email_sent",
                "to": ["c@x.com"], "body_contains": ["ΟΔΟΣ"] }),
        json!({ "id": "no_email", "description": "none", "kind": "email_sent",
                "to": ["hr@x.com"], "body_excludes": ["welcome"] }),
        json!({ "id": "inbox_only", "description": "inbox is not sent", "kind": "email_sent",
                "to": ["me@x.com"] }),
        json!({ "id": "double", "description": "nobody double-booked", "kind": "no_double_booking" }),
        json!({ "id": "ok_double_b", "description": "b is fine", "kind": "no_double_booking",
                "attendees": ["B@x.com"] }),
        json!({ "id": "ok_final", "description": "answer", "kind": "trajectory_mentions",
                "contains": ["zoë", "DONE"], "any_of": ["nope", "ångström"] }),
        json!({ "id": "missing_mentions", "description": "answer", "kind": "trajectory_mentions",
                "contains": ["Zoë", "quote \"x\"", "tab\there", "back\\slash", "zero\u{0}width\u{200b}"] }),
        json!({ "id": "none_of", "description": "answer", "kind": "trajectory_mentions",
                "any_of": ["absent", "é\u{301}", "nbsp\u{a0}"] }),
        json!({ "id": "ok_anywhere", "description": "any", "kind": "trajectory_mentions",
                "contains": ["looking"], "scope": "any_assistant" }),
        json!({ "id": "not_final", "description": "final only", "kind": "trajectory_mentions",
                "contains": ["looking"] }),
        json!({ "id": "ok_called", "description": "called", "kind": "tool_called",
                "tool": "hrms_get_employee", "with": {"employee_id": "e1"}, "at_least": 2 }),
        json!({ "id": "called_gte", "description": "days", "kind": "tool_called", "weight": 0.3,
                "tool": "hrms_file_leave", "with": {"days": {"gte": 2}} }),
        json!({ "id": "ok_called_any", "description": "any args", "kind": "tool_called",
                "tool": "hrms_file_leave", "at_least": 3 }),
        json!({ "id": "ok_not_called", "description": "not called", "kind": "tool_not_called",
                "tool": "email_send_email" }),
        json!({ "id": "not_called_with", "description": "not with", "kind": "tool_not_called",
                "tool": "hrms_get_employee", "with": {"employee_id": {"any_of": ["E1", "E2"]}} }),
    ];
    for (i, check) in checks.iter_mut().enumerate() {
        if check.get("weight").is_none() {
            check["weight"] = json!([1.0, 0.2, 0.7, 3.0][i % 4]);
        }
    }
    Value::Array(checks)
}

fn corner_state() -> Value {
    json!({
        "hrms": {
            "employees": [
                { "id": "E1", "name": "Zoë Ångström", "salary": 1e21, "ratio": 0.00001,
                  "tiny": 1e-7, "level": 3, "start": "2024-01-15", "tags": ["Remote", "lead"],
                  "manager": { "email": "a.b@x.com" }, "nullish": null, "flag": true },
                { "id": "E2", "name": "Bob \"B\" Smith", "salary": 100000, "ratio": 0.1,
                  "level": 3.0, "start": "2023-06-01", "tags": [], "flag": false,
                  "big": 1e16, "mid": 1e15 },
                { "id": "E3", "name": "Ünïcode\tTab", "salary": -2.5e-10, "level": 1,
                  "start": "2025-12-31", "obj": { "b": 1, "a": [1, 2.0, "x"] },
                  "sub": 5e-324, "frac": 123456789.125, "max": 1.7976931348623157e308,
                  "neg": -0.000123 }
            ],
            "teams": { "name": "core", "members": [ { "email": "a.b@x.com", "role": "Lead" } ] }
        },
        "email": { "messages": [
            { "id": "M1", "folder": "sent", "to": ["HR@x.com"], "cc": ["boss@x.com"],
              "subject": "Offer for Zoë", "body": "Dear Zoë, welcome aboard. Salary: 100k." },
            { "id": 7, "folder": "sent", "to": ["c@x.com"], "subject": "Re: ΣΟΦΙΑ", "body": "ΟΔΟΣ" },
            { "id": "M3", "folder": "inbox", "to": ["me@x.com"], "subject": "hi", "body": "x" }
        ] },
        "calendar": { "events": [
            { "id": "C1", "start": "2024-05-01T10:00", "end": "2024-05-01T11:00",
              "attendees": ["A@x.com", "b@x.com"] },
            { "id": "C2", "start": "2024-05-01T10:30", "end": "2024-05-01T11:30",
              "attendees": ["a@x.com"] },
            { "id": "C3", "start": "2024-05-01T10:30", "end": "2024-05-01T11:30",
              "attendees": ["b@x.com"], "status": "cancelled" }
        ] }
    })
}

fn corner_trajectory() -> Value {
    let call = |id: &str, name: &str, arguments: &str| json!({ "id": id, "type": "function", "function": { "name": name, "arguments": arguments } });
    json!([
        { "role": "system", "content": "You are an HR agent." },
        { "role": "user", "content": "Do the thing." },
        { "role": "assistant", "content": "Looking things up.", "tool_calls": [
            call("c1", "hrms_get_employee", r#"{"employee_id": "E1"}"#),
            call("c2", "hrms_get_employee", r#"{"employee_id": "e1", "extra": [1, 2]}"#),
            call("c3", "hrms_file_leave", r#"{"days": 2.5}"#),
            call("c4", "hrms_file_leave", r#"{"days": NaN}"#),
            call("c5", "hrms_file_leave", "not json")
        ] },
        { "role": "tool", "tool_call_id": "c1", "name": "hrms_get_employee", "content": "{}" },
        { "role": "assistant", "content": "   \n" },
        { "role": "assistant", "content": "Done: Zoë Ångström is set up." },
        { "role": "assistant", "content": null }
    ])
}

#[actix_web::test]
async fn two_downloads_of_a_bundle_are_byte_identical() {
    let app = spawn_app().await;
    let first = download(&app, "hr").await;
    let second = download(&app, "hr").await;
    assert_eq!(first, second);
    let v1 = app.get("/v1/scenarios/hr/verifiers/bundle").await;
    assert_eq!(v1.status(), StatusCode::OK);
    assert_eq!(v1.bytes().await.unwrap().to_vec(), first);
    // Every entry carries the fixed 1980-01-01 timestamp.
    let mut archive = zip::ZipArchive::new(Cursor::new(first)).unwrap();
    for i in 0..archive.len() {
        let entry = archive.by_index(i).unwrap();
        let modified = entry.last_modified().unwrap();
        assert_eq!(
            (modified.year(), modified.month(), modified.day()),
            (1980, 1, 1),
            "{:?}",
            entry.name()
        );
    }
    app.stop().await;
}

#[actix_web::test]
async fn an_unknown_scenario_has_no_bundle() {
    let app = spawn_app().await;
    let response = app.get("/scenarios/nope/verifiers/bundle").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({ "detail": "Scenario 'nope' not found", "code": "scenario_not_found" })
    );
    app.stop().await;
}

#[actix_web::test]
async fn a_scenario_without_checks_has_no_bundle() {
    let data = tempfile::tempdir().unwrap();
    let scenarios = tempfile::tempdir().unwrap();
    write_scenario_without_tasks(scenarios.path());
    let mut settings = settings_for(data.path());
    settings.scenarios_dir = scenarios.path().to_path_buf();
    let app = spawn_app_with(settings).await;
    let response = app.get("/scenarios/empty/verifiers/bundle").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({
            "detail": "Scenario 'empty' has no programmatic checks to bundle",
            "code": "verifiers_not_found"
        })
    );
    app.stop().await;
}

fn write_scenario_without_tasks(dir: &Path) {
    let folder = dir.join("empty");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(
        folder.join("scenario.toml"),
        "scenario_id = \"empty\"\nname = \"Empty\"\ndescription = \"No tasks yet.\"\ntool_servers = [\"email\"]\n",
    )
    .unwrap();
}

#[actix_web::test]
async fn the_bundle_cli_reads_standard_input_and_refuses_an_unknown_task() {
    let hr = bundled_catalog().get("hr").unwrap().clone();
    let unpacked = unpack(&hr.verifier_bundle().unwrap().bytes);
    // A rollout without an instance seed is instance 0.
    let task = &*hr.tasks[0].instance(0).unwrap();
    let rollout = json!({ "task_id": task.task_id, "trajectory": [], "environment_state": null });
    let run = |args: &[&str]| {
        use std::io::Write;
        let mut child = python()
            .args(["-m", &unpacked.package])
            .args(args)
            .current_dir(unpacked.root())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(rollout.to_string().as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };

    let output = run(&["-"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_same_verdict(
        "stdin",
        &printed,
        &server_verdict(task, &Value::Null, &json!([])),
    );

    let output = run(&["-", "--task", "no_such_task"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("error: task 'no_such_task' is not in scenario 'hr'"),
        "{stderr}"
    );
}
