use serde_json::json;

use super::*;
use crate::domain::chat::{FunctionCall, ToolCall};
use crate::domain::verdict::{FULL_CREDIT, NO_CREDIT, PARTIAL_CREDIT};

fn state() -> Value {
    json!({
        "email": {"messages": [
            {"email_id": "msg_1", "folder": "inbox", "from": "a@x.io", "to": ["me@x.io"], "cc": [], "subject": "Hi", "body": "hello"},
            {"email_id": "msg_2", "folder": "sent", "from": "me@x.io", "to": ["Bob@x.io"], "cc": ["carol@x.io"], "subject": "Leave LR-0004", "body": "It is APPROVED. Balance: 7"}
        ]},
        "calendar": {"events": [
            {"event_id": "e1", "start": "2026-03-05T14:00:00Z", "end": "2026-03-05T15:00:00Z", "attendees": ["lisa@x.io", "dan@x.io"], "status": "confirmed", "title": "QHR"},
            {"event_id": "e2", "start": "2026-03-05T14:30:00Z", "end": "2026-03-05T15:30:00Z", "attendees": ["lisa@x.io"], "status": "confirmed", "title": "Board"},
            {"event_id": "e3", "start": "2026-03-05T14:00:00Z", "end": "2026-03-05T16:00:00Z", "attendees": ["dan@x.io"], "status": "cancelled", "title": "Old"}
        ]},
        "hrms": {
            "employees": [{"employee_id": "E7", "leave_balance": {"vacation": 7}}, {"employee_id": "E9", "leave_balance": {"vacation": 6}}],
            "onboarding_checklists": [
                {"checklist_id": "OB-001", "items": [{"item_id": "OB-001-01", "status": "done"}, {"item_id": "OB-001-02", "status": "pending"}]},
                {"checklist_id": "OB-002", "items": [{"item_id": "OB-002-01", "status": "pending"}]}
            ]
        }
    })
}

fn check(kind: Value) -> Check {
    let mut v = json!({"id": "c", "description": "d"});
    if let (Some(o), Some(k)) = (v.as_object_mut(), kind.as_object()) {
        o.extend(k.clone());
    }
    serde_json::from_value(v).expect("check parses")
}

fn passes(kind: Value, trajectory: &[Message]) -> bool {
    check(kind).evaluate(&state(), trajectory).0
}

fn call(name: &str, args: Value) -> Message {
    Message::assistant(
        None,
        vec![ToolCall {
            id: "1".into(),
            kind: "function".into(),
            function: FunctionCall {
                name: name.into(),
                arguments: args.to_string(),
            },
        }],
    )
}

#[test]
fn paths_flatten_arrays_and_select_by_field() {
    let s = state();
    assert_eq!(resolve(&s, "hrms.employees").map(|r| r.len()), Ok(2));
    assert_eq!(
        resolve(&s, "hrms.onboarding_checklists.items").map(|r| r.len()),
        Ok(3)
    );
    assert_eq!(
        resolve(&s, "hrms.onboarding_checklists[checklist_id=OB-001].items").map(|r| r.len()),
        Ok(2)
    );
    assert_eq!(
        resolve(&s, "email.messages[folder=sent,email_id=msg_2]").map(|r| r.len()),
        Ok(1)
    );
    assert_eq!(resolve(&s, "hrms.nothing").map(|r| r.len()), Ok(0));
    assert!(resolve(&s, "hrms..x").is_err());
    assert!(resolve(&s, "hrms.x[broken").is_err());
}

#[test]
fn state_count_with_literal_and_operator_filters() {
    let t = &[];
    assert!(passes(
        json!({"kind": "state_count", "path": "calendar.events", "where": {"status": "CONFIRMED"}, "equals": 2}),
        t
    ));
    assert!(passes(
        json!({"kind": "state_count", "path": "calendar.events", "where": {"attendees": {"contains": "DAN@x.io"}}, "equals": 2}),
        t
    ));
    assert!(passes(
        json!({"kind": "state_count", "path": "calendar.events", "where": {"title": {"contains": "boa"}}, "equals": 1}),
        t
    ));
    assert!(passes(
        json!({"kind": "state_count", "path": "calendar.events", "where": {"event_id": {"any_of": ["e1", "e3"]}}, "equals": 2}),
        t
    ));
    assert!(passes(
        json!({"kind": "state_count", "path": "calendar.events", "where": {"start": {"gte": "2026-03-05T14:30:00Z"}}, "equals": 1}),
        t
    ));
    assert!(passes(
        json!({"kind": "state_count", "path": "calendar.events", "where": {"status": {"ne": "cancelled"}}, "at_least": 2, "at_most": 2}),
        t
    ));
    assert!(passes(
        json!({"kind": "state_count", "path": "hrms.employees", "where": {"leave_balance.vacation": {"lte": 6}}, "equals": 1}),
        t
    ));
    assert!(passes(
        json!({"kind": "state_count", "path": "hrms.employees", "where": {"manager_id": {"exists": false}}, "equals": 2}),
        t
    ));
    assert!(!passes(
        json!({"kind": "state_count", "path": "hrms.employees", "equals": 3}),
        t
    ));
}

#[test]
fn state_field_equals_needs_exactly_one_record() {
    let t = &[];
    assert!(passes(
        json!({"kind": "state_field_equals", "path": "hrms.employees", "where": {"employee_id": "E7"}, "field": "leave_balance.vacation", "equals": 7.0}),
        t
    ));
    assert!(!passes(
        json!({"kind": "state_field_equals", "path": "hrms.employees", "where": {"employee_id": "E7"}, "field": "leave_balance.vacation", "equals": 8}),
        t
    ));
    let (ok, reason) = check(json!({"kind": "state_field_equals", "path": "hrms.employees", "field": "employee_id", "equals": "E7"})).evaluate(&state(), &[]);
    assert!(!ok && reason.contains("exactly one"), "{reason}");
    assert!(!passes(
        json!({"kind": "state_field_equals", "path": "hrms.employees", "where": {"employee_id": "E1"}, "field": "x", "equals": 1}),
        t
    ));
}

#[test]
fn double_booking_ignores_cancelled_events_and_can_be_limited_to_people() {
    let (ok, reason) = check(json!({"kind": "no_double_booking"})).evaluate(&state(), &[]);
    assert!(!ok && reason.contains("lisa@x.io"), "{reason}");
    assert!(passes(
        json!({"kind": "no_double_booking", "attendees": ["dan@x.io"]}),
        &[]
    ));
}

#[test]
fn email_sent_matches_recipients_subject_and_body_case_insensitively() {
    let t = &[];
    assert!(passes(
        json!({"kind": "email_sent", "to": ["bob@x.io", "CAROL@x.io"], "subject_contains": ["lr-0004"], "body_contains": ["approved", "7"]}),
        t
    ));
    assert!(passes(
        json!({"kind": "email_sent", "to": ["bob@x.io"], "body_contains_any": ["rejected", "approved"]}),
        t
    ));
    assert!(!passes(
        json!({"kind": "email_sent", "to": ["bob@x.io"], "body_excludes": ["balance"]}),
        t
    ));
    assert!(
        !passes(json!({"kind": "email_sent", "to": ["a@x.io"]}), t),
        "received mail is not sent mail"
    );
    assert!(!passes(
        json!({"kind": "email_sent", "to": ["bob@x.io"], "body_contains": ["rejected"]}),
        t
    ));
}

#[test]
fn trajectory_mentions_read_the_final_answer_by_default() {
    let trajectory = vec![
        Message::user("Who is Ravi's manager?"),
        Message::assistant(Some("Let me check Tom Becker.".into()), Vec::new()),
        Message::assistant(Some("It is David.".into()), Vec::new()),
        Message::assistant(Some("   ".into()), Vec::new()),
    ];
    assert!(passes(
        json!({"kind": "trajectory_mentions", "contains": ["david"]}),
        &trajectory
    ));
    assert!(!passes(
        json!({"kind": "trajectory_mentions", "contains": ["Tom Becker"]}),
        &trajectory
    ));
    assert!(passes(
        json!({"kind": "trajectory_mentions", "contains": ["Tom Becker"], "scope": "any_assistant"}),
        &trajectory
    ));
    assert!(passes(
        json!({"kind": "trajectory_mentions", "any_of": ["nobody", "DAVID"]}),
        &trajectory
    ));
    assert!(!passes(
        json!({"kind": "trajectory_mentions", "contains": ["david"]}),
        &[Message::user("david")]
    ));
}

#[test]
fn tool_called_matches_names_and_argument_filters() {
    let trajectory = vec![
        call("approve_leave_request", json!({"request_id": "LR-0004"})),
        call("send_email", json!("not an object")),
    ];
    assert!(passes(
        json!({"kind": "tool_called", "tool": "approve_leave_request", "with": {"request_id": "lr-0004"}}),
        &trajectory
    ));
    assert!(!passes(
        json!({"kind": "tool_called", "tool": "approve_leave_request", "with": {"request_id": "LR-0005"}}),
        &trajectory
    ));
    assert!(!passes(
        json!({"kind": "tool_called", "tool": "approve_leave_request", "at_least": 2}),
        &trajectory
    ));
    assert!(passes(
        json!({"kind": "tool_not_called", "tool": "reject_leave_request"}),
        &trajectory
    ));
    assert!(!passes(
        json!({"kind": "tool_not_called", "tool": "send_email"}),
        &trajectory
    ));
}

/// `checks` scored against `state`, with or without partial credit.
fn scored(checks: Vec<Check>, partial_credit: bool, state: &Value) -> Verdict {
    verify(&checks, partial_credit, state, &[])
}

fn named(id: &str, pass: bool, required: bool, weight: f64) -> Check {
    let mut c = check(
        json!({"kind": "state_count", "path": "hrms.employees", "equals": if pass { 2 } else { 9 }}),
    );
    c.id = id.into();
    c.required = required;
    c.weight = weight;
    c
}

#[test]
fn scoring_is_all_none_or_the_weighted_fraction() {
    let s = state();
    let v = scored(
        vec![named("a", true, false, 1.0), named("b", true, false, 1.0)],
        true,
        &s,
    );
    assert_eq!((v.score, v.label.as_str()), (1.0, FULL_CREDIT));
    let v = scored(
        vec![named("a", false, false, 1.0), named("b", false, false, 1.0)],
        true,
        &s,
    );
    assert_eq!((v.score, v.label.as_str()), (0.0, NO_CREDIT));
    let v = scored(
        vec![named("a", true, false, 3.0), named("b", false, false, 1.0)],
        true,
        &s,
    );
    assert_eq!((v.score, v.label.as_str()), (0.75, PARTIAL_CREDIT));
    assert_eq!(v.checks.len(), 2);
    assert!(
        v.checks[1].reason.contains("wanted = 9"),
        "{}",
        v.checks[1].reason
    );
}

#[test]
fn a_failed_required_check_or_no_partial_credit_scores_zero() {
    let s = state();
    let v = scored(
        vec![
            named("gate", false, true, 1.0),
            named("b", true, false, 5.0),
        ],
        true,
        &s,
    );
    assert_eq!((v.score, v.label.as_str()), (0.0, NO_CREDIT));
    let v = scored(
        vec![named("a", true, false, 1.0), named("b", false, false, 1.0)],
        false,
        &s,
    );
    assert_eq!(v.score, 0.0);
    let v = scored(Vec::new(), true, &s);
    assert_eq!(v.score, 0.0, "a task without checks is never full credit");
}

#[test]
fn validation_rejects_malformed_checks() {
    let servers = vec!["hrms".to_string()];
    let known = |t: &str| t == "get_employee";
    let bad = [
        json!({"kind": "state_count", "path": "hrms.employees"}),
        json!({"kind": "state_count", "path": "email.messages", "equals": 1}),
        json!({"kind": "email_sent", "to": ["a@b.io"]}),
        json!({"kind": "no_double_booking"}),
        json!({"kind": "trajectory_mentions"}),
        json!({"kind": "tool_called", "tool": "fly"}),
        json!({"kind": "state_field_equals", "path": "hrms.x[", "field": "f", "equals": 1}),
    ];
    for b in bad {
        assert!(check(b.clone()).validate(&servers, &known).is_err(), "{b}");
    }
    let mut c = check(json!({"kind": "tool_called", "tool": "get_employee"}));
    assert!(c.validate(&servers, &known).is_ok());
    c.weight = 0.0;
    assert!(c.validate(&servers, &known).is_err());
    assert!(serde_json::from_value::<Check>(
        json!({"id": "x", "description": "d", "kind": "telepathy"})
    )
    .is_err());
}
