//! Environment-level behaviour shared by every server: dispatch, schema errors, the
//! clock, ids, and the tool vocabulary staying in step with the implementations.

use std::path::Path;

use serde_json::json;

use super::*;
use crate::scenarios::{server_tools, Scenario, Task, KNOWN_TOOL_SERVERS};

pub(crate) fn hr() -> Scenario {
    Scenario::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config/scenarios/hr"))
        .expect("hr loads")
}

/// Instance 0 of a bundled task: the task as written, placeholders filled.
pub(crate) fn task0(s: &Scenario, task_id: &str) -> Task {
    s.task(task_id)
        .expect("task")
        .instance(0)
        .expect("instance 0")
        .into_owned()
}

/// An environment with all three servers (task 104 uses them all).
pub(crate) fn full_env() -> Environment {
    let s = hr();
    let t = task0(&s, "hr__104_schedule_phone_screen");
    s.environment(&t, 0).expect("env")
}

/// A world's tasks as `rl-gym scenarios validate` checks them on seed 0 (the oracle
/// earns 1.0, doing nothing 0.0, a seed rebuilds the same instance), plus the issue's
/// floor for a world: at least 15 tasks, 4 of them needing a person's reply, each with
/// a required check.
pub(crate) fn assert_world_is_solvable(s: &Scenario) {
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

pub(crate) fn ok(env: &mut Environment, tool: &str, params: Value) -> Value {
    let obs = env.call(tool, &params);
    assert!(!obs.is_error, "{tool} {params}: {}", obs.observation);
    serde_json::from_str(&obs.observation).expect("observation is JSON")
}

pub(crate) fn err(env: &mut Environment, tool: &str, params: Value) -> String {
    let before = env.state();
    let obs = env.call(tool, &params);
    assert!(
        obs.is_error,
        "{tool} {params} should fail: {}",
        obs.observation
    );
    assert!(
        obs.observation.starts_with("Error: "),
        "{}",
        obs.observation
    );
    assert_eq!((obs.reward, obs.done), (0.0, false));
    assert_eq!(env.state(), before, "a failed call must not change state");
    obs.observation
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
fn every_tool_has_an_object_schema_and_a_description() {
    for t in full_env().all_tools() {
        assert_eq!(t.input_schema["type"], "object", "{}", t.name);
        assert!(t.input_schema["properties"].is_object(), "{}", t.name);
        assert!(t.description.len() > 10, "{}", t.name);
    }
}

#[test]
fn an_unknown_server_is_none_and_an_unknown_tool_is_an_in_band_error() {
    let mut env = full_env();
    assert!(env.step("crm", "list_leads", &json!({})).is_none());
    let obs = env
        .step("email", "teleport", &json!({}))
        .expect("server exists");
    assert!(
        obs.is_error && obs.observation.contains("Available tools"),
        "{obs:?}"
    );
    let obs = env
        .step("email", "list_events", &json!({}))
        .expect("server exists");
    assert!(
        obs.is_error && obs.observation.contains("`calendar`"),
        "{obs:?}"
    );
}

#[test]
fn parameters_must_be_an_object_with_the_right_types() {
    let mut env = full_env();
    for bad in [json!([1, 2]), json!("x"), json!(3)] {
        let obs = env.step("email", "list_inbox", &bad).expect("server");
        assert!(
            obs.is_error && obs.observation.contains("JSON object"),
            "{obs:?}"
        );
    }
    // null means no parameters
    assert!(
        !env.step("email", "list_inbox", &Value::Null)
            .expect("server")
            .is_error
    );
    assert!(err(&mut env, "read_email", json!({})).contains("`email_id`"));
    assert!(err(&mut env, "read_email", json!({"email_id": 7})).contains("must be a string"));
    assert!(err(&mut env, "list_inbox", json!({"limit": "ten"})).contains("integer"));
    assert!(err(&mut env, "list_inbox", json!({"limit": 0})).contains("at least"));
    assert!(err(&mut env, "list_inbox", json!({"colour": "red"}))
        .contains("unknown parameter `colour`"));
    assert!(err(&mut env, "search_emails", json!({"folder": "spam"})).contains("one of"));
    assert!(err(
        &mut env,
        "send_email",
        json!({"to": "a@b.io", "subject": "s", "body": "b"})
    )
    .contains("array"));
    assert!(err(
        &mut env,
        "send_email",
        json!({"to": ["nobody"], "subject": "s", "body": "b"})
    )
    .contains("email address"));
    assert!(err(
        &mut env,
        "send_email",
        json!({"to": [], "subject": "s", "body": "b"})
    )
    .contains("at least 1"));
    assert!(err(
        &mut env,
        "send_email",
        json!({"to": ["a@b.io"], "subject": "  ", "body": "b"})
    )
    .contains("empty"));
    assert!(err(&mut env, "list_events", json!({"start_date": "March 4"})).contains("2026-03-04"));
    assert!(err(&mut env, "create_event", json!({"title": "x", "start": "tomorrow", "end": "2026-03-04T11:00:00Z", "attendees": ["a@b.io"]})).contains("date-time"));
}

#[test]
fn hostile_json_never_panics() {
    let mut env = full_env();
    let values = [
        json!(null),
        json!({"email_id": null}),
        json!({"to": [null], "subject": {}, "body": []}),
        json!({"attendees": [[[]]], "date": "9999-99-99", "duration_minutes": -5}),
        json!({"items": [{"title": 1}], "employee_id": "E025", "start_date": "2026-02-30"}),
        json!({"stage": "offer", "candidate_id": "\u{0000}"}),
        json!({"start": "2026-03-04T10:00:00+14:00", "end": "2026-03-04T10:00:00-12:00", "attendees": ["x@y.io"], "title": "t"}),
    ];
    for tool in env.all_tools().into_iter().map(|t| t.name) {
        for v in &values {
            let obs = env.call(&tool, v);
            assert!(!obs.observation.is_empty());
        }
    }
}

#[test]
fn the_clock_starts_at_the_task_time_and_advances_only_on_successful_mutations() {
    let mut env = full_env();
    assert_eq!(fmt_datetime(env.now()), "2026-03-02T09:00:00Z");
    ok(&mut env, "list_inbox", json!({}));
    assert_eq!(fmt_datetime(env.now()), "2026-03-02T09:00:00Z");
    err(&mut env, "mark_read", json!({"email_id": "msg_9999"}));
    assert_eq!(fmt_datetime(env.now()), "2026-03-02T09:00:00Z");
    let sent = ok(
        &mut env,
        "send_email",
        json!({"to": ["a@b.io"], "subject": "s", "body": "b"}),
    );
    assert_eq!(sent["timestamp"], "2026-03-02T09:00:00Z");
    assert_eq!(sent["email_id"], "msg_0010");
    let sent = ok(
        &mut env,
        "send_email",
        json!({"to": ["a@b.io"], "subject": "s", "body": "b"}),
    );
    assert_eq!(sent["timestamp"], "2026-03-02T09:01:00Z");
    assert_eq!(sent["email_id"], "msg_0011");
}

#[test]
fn a_clone_is_independent() {
    let mut a = full_env();
    let b = a.clone();
    ok(
        &mut a,
        "send_email",
        json!({"to": ["a@b.io"], "subject": "s", "body": "b"}),
    );
    assert_ne!(a.state(), b.state());
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
fn helpers_parse_times_and_ids() {
    assert_eq!(
        parse_datetime("2026-03-04T10:30:00+01:00")
            .map(fmt_datetime)
            .as_deref(),
        Some("2026-03-04T09:30:00Z")
    );
    assert_eq!(
        parse_datetime("2026-03-04T10:30")
            .map(fmt_datetime)
            .as_deref(),
        Some("2026-03-04T10:30:00Z")
    );
    assert!(parse_datetime("2026-13-04T10:30").is_none());
    assert_eq!(
        next_id("evt_", 4, ["evt_0009", "evt_0012", "x"].into_iter()),
        "evt_0013"
    );
    assert_eq!(next_id("OB-", 3, std::iter::empty()), "OB-001");
    assert!(
        is_email("a.b@c.io") && !is_email("a@b") && !is_email("a b@c.io") && !is_email("@c.io")
    );
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
