//! The bundled worlds played through their scenarios: the tool vocabulary against the
//! implementations, environments built from a scenario's seed and a task's additions,
//! and each world's tools and tasks (`finance`, `commerce`, `ticketing`).

use std::path::Path;

use serde_json::json;

use crate::scenarios::{server_tools, Scenario, Task, KNOWN_TOOL_SERVERS};
use crate::tools::email;
use crate::tools::tests::{full_env, ok};

mod commerce;
mod finance;
mod ticketing;

fn hr() -> Scenario {
    Scenario::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config/scenarios/hr"))
        .expect("hr loads")
}

/// Instance 0 of a bundled task: the task as written, placeholders filled.
fn task0(s: &Scenario, task_id: &str) -> Task {
    s.task(task_id)
        .expect("task")
        .instance(0)
        .expect("instance 0")
        .into_owned()
}

/// `server`'s tools in `env` are the vocabulary's list for it, in order, each with an
/// object schema and a description.
fn assert_tools_match_the_vocabulary(env: &crate::tools::Environment, server: &str) {
    let tools = env.tools(server).expect(server);
    let implemented: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        implemented,
        server_tools(server).expect("known"),
        "{server}"
    );
    for t in &tools {
        assert_eq!(t.input_schema["type"], "object", "{}", t.name);
        assert!(t.description.len() > 10, "{}", t.name);
    }
}

/// A world's tasks as `rl-gym scenarios validate` checks them on seed 0 (the oracle
/// earns 1.0, doing nothing 0.0, a seed rebuilds the same instance), plus the issue's
/// floor for a world: at least 15 tasks, 4 of them needing a person's reply, each with
/// a required check.
fn assert_world_is_solvable(s: &Scenario) {
    assert!(s.tasks.len() >= 15, "{} tasks", s.tasks.len());
    for task in &s.tasks {
        let report = crate::scenarios::validate::check_task(s, task, 1);
        assert_eq!(report.failure, None, "{}", task.task_id);
        assert!(task.checks.iter().any(|c| c.required), "{}", task.task_id);
    }
    let with_npc = s
        .tasks
        .iter()
        .filter(|t| !t.reference_npc_replies.is_empty())
        .count();
    assert!(with_npc >= 4, "{with_npc} tasks rely on a person's reply");
}

#[test]
fn the_vocabulary_matches_the_implemented_tools() {
    let env = full_env();
    for (server, names) in KNOWN_TOOL_SERVERS {
        // Servers outside the hr world (commerce, ...) are checked by their own
        // world's tests, which build an environment that has them.
        let Some(tools) = env.tools(server) else {
            continue;
        };
        let implemented: Vec<String> = tools.into_iter().map(|t| t.name).collect();
        assert_eq!(
            implemented,
            names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            "{server}"
        );
        assert!(implemented.len() >= 6, "{server} has fewer than 6 tools");
    }
    assert!(server_tools("crm").is_none());
}

#[test]
fn checks_read_the_seed_json_until_a_call_changes_a_server() {
    use crate::verify::StateRoot;
    let s = hr();
    let t = &task0(&s, "hr__104_schedule_phone_screen");
    let mut a = s.environment(t, 0).expect("env");
    let b = s.environment(t, 1).expect("env");
    let (va, vb) = (a.state_view(), b.state_view());
    // Two environments of one seed are scored against the same tree, built once.
    for server in ["email", "calendar", "hrms"] {
        let (x, y) = (
            va.server(server).expect(server),
            vb.server(server).expect(server),
        );
        assert!(std::ptr::eq(x, y), "{server} is not shared");
        assert_eq!(Some(x), a.state().get(server));
    }
    let read = va.server("email").expect("email").clone();
    ok(
        &mut a,
        "send_email",
        json!({"to": ["a@b.io"], "subject": "s", "body": "b"}),
    );
    // The changed server is seen as changed; the untouched ones are still shared.
    let after = a.state_view();
    assert_ne!(after.server("email"), Some(&read));
    assert_eq!(after.server("email"), a.state().get("email"));
    assert_eq!(b.state_view().server("email"), Some(&read));
    assert!(std::ptr::eq(
        after.server("hrms").expect("hrms"),
        vb.server("hrms").expect("hrms")
    ));
    // A delivered email changes the server as well.
    let before = a.state_view().server("email").cloned();
    a.deliver_email(&email::IncomingEmail {
        from: "dana@example.com".into(),
        to: vec![a.mailbox_owner().expect("a mailbox")],
        cc: vec![],
        subject: "hi".into(),
        body: "hello".into(),
        in_reply_to: None,
    })
    .expect("delivered");
    assert_ne!(a.state_view().server("email").cloned(), before);
    assert_eq!(a.state_view().server("email"), a.state().get("email"));
}

#[test]
fn a_task_adds_to_the_scenarios_seed_state_and_keeps_its_world_to_itself() {
    let s = hr();
    let mut t = task0(&s, "hr__104_schedule_phone_screen");
    t.environment.insert(
        "hrms".into(),
        json!({
            "company": "Northwind Robotics",
            "employees": [{
                "employee_id": "E900", "first_name": "Ada", "last_name": "Quill",
                "email": "ada.quill@northwindlabs.io", "title": "Analyst",
                "department": "Finance", "manager_id": "E001", "location": "Austin",
                "start_date": "2026-01-05", "status": "active",
                "leave_balance": {"vacation": 10, "sick": 5, "personal": 2}
            }]
        }),
    );
    let mut env = s.environment(&t, 0).expect("env");
    let state = env.state();
    let employees = state["hrms"]["employees"].as_array().expect("employees");
    // Lists are extended, scalars replaced, the scenario's records kept.
    assert!(employees.iter().any(|e| e["employee_id"] == "E001"));
    assert!(employees.iter().any(|e| e["employee_id"] == "E900"));
    assert_eq!(state["hrms"]["company"], "Northwind Robotics");
    let found = ok(&mut env, "search_employees", json!({"query": "Quill"}));
    assert!(found.to_string().contains("E900"), "{found}");

    // The scenario's own seed (and every other task's environment) is untouched.
    let plain = s
        .environment(&task0(&s, "hr__104_schedule_phone_screen"), 0)
        .expect("env")
        .state();
    assert!(!plain.to_string().contains("E900"));

    // A list met with anything but a list is refused, naming the path.
    t.environment
        .insert("hrms".into(), json!({"employees": {"E900": {}}}));
    let err = s
        .environment(&t, 0)
        .expect_err("a list is extended by a list");
    assert!(err.to_string().contains("environment.employees"), "{err}");
}
