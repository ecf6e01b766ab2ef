use serde_json::json;

use crate::tools::tests::{err, full_env, ok};

const FATIMA: &str = "fatima.zahra@northwindlabs.io";
const LISA: &str = "lisa.anderson@northwindlabs.io";
const DANIEL: &str = "daniel.kim@northwindlabs.io";
const ROBERT: &str = "robert.hughes@northwindlabs.io";

#[test]
fn free_slots_skip_busy_time_earliest_first() {
    let mut env = full_env();
    let r = ok(
        &mut env,
        "find_free_slots",
        json!({"attendees": [FATIMA], "date": "2026-03-04", "duration_minutes": 30}),
    );
    assert_eq!(
        r["slots"][0],
        json!({"start": "2026-03-04T10:30:00Z", "end": "2026-03-04T11:00:00Z"})
    );
    let r = ok(
        &mut env,
        "find_free_slots",
        json!({"attendees": [LISA, DANIEL, ROBERT], "date": "2026-03-05", "duration_minutes": 60}),
    );
    assert_eq!(
        r["slots"],
        json!([{"start": "2026-03-05T16:00:00Z", "end": "2026-03-05T17:00:00Z"}])
    );
    let r = ok(
        &mut env,
        "find_free_slots",
        json!({"attendees": [FATIMA], "date": "2026-03-04", "duration_minutes": 60, "day_start": "09:00", "day_end": "11:00"}),
    );
    assert_eq!(r["slots"], json!([]));
    assert!(err(&mut env, "find_free_slots", json!({"attendees": [FATIMA], "date": "2026-03-04", "duration_minutes": 60, "day_start": "17:00", "day_end": "09:00"})).contains("day_end"));
}

#[test]
fn a_double_booking_is_a_conflict_unless_allowed() {
    let mut env = full_env();
    let e = err(
        &mut env,
        "create_event",
        json!({"title": "Clash", "start": "2026-03-04T10:00:00Z", "end": "2026-03-04T10:45:00Z", "attendees": [FATIMA]}),
    );
    assert!(
        e.contains("conflict") && e.contains("evt_0003") && e.contains("allow_conflict"),
        "{e}"
    );
    let r = ok(
        &mut env,
        "create_event",
        json!({"title": "Clash", "start": "2026-03-04T10:00:00Z", "end": "2026-03-04T10:45:00Z", "attendees": [FATIMA], "allow_conflict": true}),
    );
    assert_eq!(r["event"]["event_id"], "evt_0016");
    assert_eq!(r["event"]["organizer"], "hr-ops@northwindlabs.io");
    // back-to-back is not a conflict
    ok(
        &mut env,
        "create_event",
        json!({"title": "Next", "start": "2026-03-04T10:45:00Z", "end": "2026-03-04T11:00:00Z", "attendees": [FATIMA]}),
    );
}

#[test]
fn moving_an_event_checks_conflicts_but_not_against_itself() {
    let mut env = full_env();
    let e = err(
        &mut env,
        "update_event",
        json!({"event_id": "evt_0005", "start": "2026-03-05T15:00:00Z", "end": "2026-03-05T16:00:00Z"}),
    );
    assert!(e.contains(ROBERT), "{e}");
    let r = ok(
        &mut env,
        "update_event",
        json!({"event_id": "evt_0005", "start": "2026-03-05T16:00:00Z"}),
    );
    assert_eq!(
        r["event"]["end"], "2026-03-05T17:00:00Z",
        "moving the start keeps the duration"
    );
    ok(
        &mut env,
        "update_event",
        json!({"event_id": "evt_0005", "title": "Quarterly HR Review (moved)"}),
    );
    let avail = ok(
        &mut env,
        "check_availability",
        json!({"attendees": [LISA, "noah.fischer@northwindlabs.io"], "start": "2026-03-05T14:00:00Z", "end": "2026-03-05T15:00:00Z"}),
    );
    assert_eq!(avail["all_free"], false);
    assert_eq!(avail["attendees"][1]["free"], true);
}

#[test]
fn bad_times_unknown_ids_and_cancelled_events_are_errors() {
    let mut env = full_env();
    assert!(err(&mut env, "create_event", json!({"title": "x", "start": "2026-03-04T11:00:00Z", "end": "2026-03-04T10:00:00Z", "attendees": [FATIMA]})).contains("after"));
    assert!(err(&mut env, "create_event", json!({"title": "x", "start": "2026-03-04T00:00:00Z", "end": "2026-03-05T10:00:00Z", "attendees": [FATIMA]})).contains("12 hours"));
    assert!(err(&mut env, "get_event", json!({"event_id": "evt_9999"})).contains("list_events"));
    ok(
        &mut env,
        "cancel_event",
        json!({"event_id": "evt_0014", "reason": "moved"}),
    );
    assert!(
        err(&mut env, "cancel_event", json!({"event_id": "evt_0014"}))
            .contains("already cancelled")
    );
    assert!(err(
        &mut env,
        "update_event",
        json!({"event_id": "evt_0014", "title": "x"})
    )
    .contains("cancelled"));
    let listed = ok(
        &mut env,
        "list_events",
        json!({"start_date": "2026-03-03", "end_date": "2026-03-03"}),
    );
    assert_eq!(listed["total"], 0);
    let listed = ok(
        &mut env,
        "list_events",
        json!({"start_date": "2026-03-03", "end_date": "2026-03-03", "include_cancelled": true}),
    );
    assert_eq!(listed["total"], 1);
    assert!(err(
        &mut env,
        "list_events",
        json!({"start_date": "2026-03-05", "end_date": "2026-03-03"})
    )
    .contains("before"));
}

#[test]
fn list_events_filters_by_attendee_and_range() {
    let mut env = full_env();
    let r = ok(
        &mut env,
        "list_events",
        json!({"attendee": LISA, "start_date": "2026-03-05", "end_date": "2026-03-05"}),
    );
    let ids: Vec<&str> = r["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["event_id"].as_str())
        .collect();
    assert_eq!(ids, ["evt_0007", "evt_0005", "evt_0006"]);
}
