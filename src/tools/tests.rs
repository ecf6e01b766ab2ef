//! Environment-level behaviour shared by every server: dispatch, schema errors, the
//! clock and ids, on the hr world's seed state.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;

use super::*;

/// An environment with the hr world's three servers at hr__104's clock (its instance 0
/// adds nothing to the seed), built from the bundled seed files without the scenario
/// layer, which depends on the tools.
pub(crate) fn full_env() -> Environment {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/scenarios/hr");
    let servers = ["email", "calendar", "hrms"].map(String::from);
    let seed_state: BTreeMap<String, Value> = servers
        .iter()
        .map(|server| {
            let path = dir.join("environment").join(format!("{server}.json"));
            let text = std::fs::read_to_string(&path).expect("seed state");
            (
                server.clone(),
                serde_json::from_str(&text).expect("seed JSON"),
            )
        })
        .collect();
    let documents: BTreeMap<String, String> = std::fs::read_dir(dir.join("seed_data"))
        .expect("seed_data")
        .map(|entry| {
            let path = entry.expect("entry").path();
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read_to_string(&path).expect("document"))
        })
        .collect();
    let world = World {
        seed_state: &seed_state,
        documents: &documents,
        cache: &SeedCache::default(),
        now: "2026-03-02T09:00:00Z",
        servers: &servers,
        additions: &BTreeMap::new(),
    };
    Environment::new(&world, 0).expect("env")
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
