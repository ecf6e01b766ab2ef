//! The bundled scenarios end to end: every task is solvable by its reference solution
//! (Full Credit), doing nothing earns No Credit, and environments are deterministic.

use std::path::Path;

use rl_gym::domain::chat::Message;
use rl_gym::scenarios::{Catalog, Scenario, Task};
use rl_gym::tools::Environment;

fn catalog() -> Catalog {
    Catalog::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config/scenarios"))
        .expect("bundled scenarios load")
}

/// Every bundled task as it is played: a task of one instance as written, a family as
/// its first few instances.
fn every_task(catalog: &Catalog) -> Vec<(&Scenario, Task)> {
    catalog
        .scenarios()
        .flat_map(|s| {
            s.tasks.iter().flat_map(move |t| {
                let instances = if t.is_family() { 0..5 } else { 0..1 };
                instances.map(move |seed| (s, t.instance(seed).expect("instance").into_owned()))
            })
        })
        .collect()
}

#[test]
fn the_hr_scenario_has_at_least_ten_tasks() {
    let c = catalog();
    assert!(c.get("hr").expect("hr").tasks.len() >= 10);
}

#[test]
fn every_reference_solution_succeeds_step_by_step_and_earns_full_credit() {
    let c = catalog();
    for (scenario, task) in &every_task(&c) {
        let mut env = scenario.environment(task, 7).expect("environment");
        let trajectory =
            rl_gym::scenarios::oracle::run_reference_solution(&mut env, scenario, task)
                .unwrap_or_else(|e| panic!("{}: {e}", task.task_id));
        let verdict = task.verify(&env.state(), &trajectory);
        let failed: Vec<_> = verdict.checks.iter().filter(|c| !c.passed).collect();
        assert_eq!(
            verdict.score, 1.0,
            "{}: failed checks {failed:#?}",
            task.task_id
        );
        assert_eq!(verdict.label, "Full Credit", "{}", task.task_id);
        assert_eq!(verdict.checks.len(), task.checks.len());
    }
}

#[test]
fn doing_nothing_earns_no_credit_on_every_task() {
    let c = catalog();
    for (scenario, task) in &every_task(&c) {
        let env = scenario.environment(task, 7).expect("environment");
        let trajectory = vec![
            Message::user(task.description.clone()),
            Message::assistant(Some("I will not act.".into()), Vec::new()),
        ];
        let verdict = task.verify(&env.state(), &trajectory);
        let passed: Vec<_> = verdict
            .checks
            .iter()
            .filter(|c| c.passed)
            .map(|c| &c.id)
            .collect();
        assert_eq!(
            verdict.score, 0.0,
            "{}: noop passes {passed:?}",
            task.task_id
        );
        assert_eq!(verdict.label, "No Credit", "{}", task.task_id);
        // And so does an empty trajectory.
        assert_eq!(
            task.verify(&env.state(), &[]).score,
            0.0,
            "{}",
            task.task_id
        );
    }
}

#[test]
fn the_same_calls_on_the_same_task_and_seed_give_byte_identical_state() {
    let c = catalog();
    for (scenario, task) in &every_task(&c) {
        let run = || {
            let mut env = scenario.environment(task, 42).expect("environment");
            // The reference solution plus a few calls that fail, to show errors change nothing.
            rl_gym::scenarios::oracle::run_reference_solution(&mut env, scenario, task)
                .expect("solution");
            for server in env.server_names() {
                let _ = env.step(&server, "no_such_tool", &serde_json::json!({}));
            }
            serde_json::to_string(&env.state()).expect("serialise")
        };
        assert_eq!(run(), run(), "{}", task.task_id);
    }
}

#[test]
fn a_failed_call_leaves_the_state_untouched() {
    let c = catalog();
    let hr = c.get("hr").expect("hr");
    let task = &hr
        .task("hr__103_process_leave_queue")
        .expect("task")
        .instance(0)
        .expect("instance 0")
        .into_owned();
    let mut env = hr.environment(task, 1).expect("environment");
    let before = env.state();
    let obs = env
        .step(
            "hrms",
            "approve_leave_request",
            &serde_json::json!({"request_id": "LR-0005"}),
        )
        .expect("server exists");
    assert!(obs.is_error, "{obs:?}");
    assert!(obs.observation.starts_with("Error: "));
    assert_eq!(env.state(), before);
}

#[test]
fn the_environment_offers_only_the_task_servers_and_is_send_and_clone() {
    fn assert_send<T: Send + Clone>() {}
    assert_send::<Environment>();
    let c = catalog();
    let hr = c.get("hr").expect("hr");
    let task = &hr
        .task("hr__105_reporting_line_question")
        .expect("task")
        .instance(0)
        .expect("instance 0")
        .into_owned();
    let env = hr.environment(task, 0).expect("environment");
    assert_eq!(env.server_names(), ["hrms"]);
    assert!(env.tools("email").is_none());
    assert!(env.snapshot("email").is_none());
    assert!(env
        .all_tools()
        .iter()
        .all(|t| env.server_of(&t.name) == Some("hrms")));
    let snap = env.snapshot("hrms").expect("snapshot");
    assert_eq!(snap["status"], "ok");
    assert_eq!(snap["tool_server"], "hrms");
    assert!(snap["data"]["employees"].is_array());
    assert!(snap["human_readable"]
        .as_str()
        .is_some_and(|s| s.contains("employees")));
}
