use chrono::NaiveDate;
use serde_json::json;

use super::{transition_allowed, working_days};
use crate::tools::tests::{err, full_env, ok};

#[test]
fn working_days_skip_weekends() {
    let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
    assert_eq!(working_days(d("2026-03-23"), d("2026-04-03")), 10);
    assert_eq!(working_days(d("2026-03-07"), d("2026-03-08")), 0);
    assert_eq!(working_days(d("2026-03-06"), d("2026-03-09")), 2);
}

#[test]
fn the_org_chart_walks_down_and_up() {
    let mut env = full_env();
    let r = ok(
        &mut env,
        "get_direct_reports",
        json!({"employee_id": "E004"}),
    );
    assert_eq!(r["total"], 3);
    let r = ok(
        &mut env,
        "get_direct_reports",
        json!({"employee_id": "E002", "recursive": true}),
    );
    assert_eq!(r["total"], 9);
    let r = ok(
        &mut env,
        "get_manager_chain",
        json!({"employee_id": "E008"}),
    );
    let names: Vec<&str> = r["managers"]
        .as_array()
        .expect("chain")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert_eq!(names, ["Tom Becker", "David Okafor", "Margaret Chen"]);
    let e = ok(
        &mut env,
        "get_employee",
        json!({"employee_id": "ravi.patel@northwindlabs.io"}),
    );
    assert_eq!(e["manager"]["name"], "Tom Becker");
    let r = ok(
        &mut env,
        "search_employees",
        json!({"department": "people"}),
    );
    assert_eq!(r["total"], 4);
    assert!(
        err(&mut env, "get_employee", json!({"employee_id": "E999"})).contains("search_employees")
    );
}

#[test]
fn leave_beyond_the_balance_is_refused_and_approval_deducts() {
    let mut env = full_env();
    // Emily has 6 days and 10 pending.
    let e = err(
        &mut env,
        "submit_leave_request",
        json!({"employee_id": "E009", "leave_type": "vacation", "start_date": "2026-05-04", "end_date": "2026-05-04"}),
    );
    assert!(e.contains("only -4 are available"), "{e}");
    let e = err(
        &mut env,
        "approve_leave_request",
        json!({"request_id": "LR-0005"}),
    );
    assert!(e.contains("reject it"), "{e}");
    let e = err(
        &mut env,
        "submit_leave_request",
        json!({"employee_id": "E010", "leave_type": "vacation", "start_date": "2026-04-06", "end_date": "2026-05-29"}),
    );
    assert!(e.contains("only 14"), "{e}");
    let r = ok(
        &mut env,
        "approve_leave_request",
        json!({"request_id": "LR-0004"}),
    );
    assert_eq!(r["remaining_balance"], 7);
    assert!(err(
        &mut env,
        "approve_leave_request",
        json!({"request_id": "LR-0004"})
    )
    .contains("already approved"));
    assert!(err(
        &mut env,
        "reject_leave_request",
        json!({"request_id": "LR-0004", "reason": "changed my mind"})
    )
    .contains("already approved"));
    let b = ok(
        &mut env,
        "get_leave_balance",
        json!({"employee_id": "E007"}),
    );
    assert_eq!(b["balance"]["vacation"], 7);
}

#[test]
fn leave_requests_must_be_sensible() {
    let mut env = full_env();
    let base = |start: &str, end: &str| json!({"employee_id": "E010", "leave_type": "vacation", "start_date": start, "end_date": end});
    assert!(err(
        &mut env,
        "submit_leave_request",
        base("2026-04-08", "2026-04-06")
    )
    .contains("before"));
    assert!(err(
        &mut env,
        "submit_leave_request",
        base("2026-03-07", "2026-03-08")
    )
    .contains("no working days"));
    assert!(err(
        &mut env,
        "submit_leave_request",
        base("2026-02-02", "2026-02-03")
    )
    .contains("past"));
    assert!(err(&mut env, "submit_leave_request", json!({"employee_id": "E010", "leave_type": "holiday", "start_date": "2026-04-06", "end_date": "2026-04-06"})).contains("one of"));
    let r = ok(
        &mut env,
        "submit_leave_request",
        base("2026-04-06", "2026-04-08"),
    );
    assert_eq!(r["request"]["request_id"], "LR-0008");
    assert_eq!(r["request"]["days"], 3);
    assert!(err(
        &mut env,
        "submit_leave_request",
        base("2026-04-08", "2026-04-09")
    )
    .contains("overlaps"));
    assert!(err(
        &mut env,
        "reject_leave_request",
        json!({"request_id": "LR-0008", "reason": ""})
    )
    .contains("empty"));
    assert!(err(
        &mut env,
        "approve_leave_request",
        json!({"request_id": "LR-9"})
    )
    .contains("list_leave_requests"));
    let pending = ok(
        &mut env,
        "list_leave_requests",
        json!({"status": "pending"}),
    );
    assert_eq!(pending["total"], 5);
}

#[test]
fn pipeline_transitions_follow_the_process() {
    assert!(transition_allowed("applied", "screening"));
    assert!(transition_allowed("interview", "rejected"));
    assert!(!transition_allowed("applied", "interview"));
    assert!(!transition_allowed("rejected", "screening"));
    assert!(!transition_allowed("hired", "withdrawn"));
    let mut env = full_env();
    let e = err(
        &mut env,
        "move_candidate_stage",
        json!({"candidate_id": "C-203", "stage": "offer"}),
    );
    assert!(e.contains("one stage at a time"), "{e}");
    assert!(err(
        &mut env,
        "move_candidate_stage",
        json!({"candidate_id": "C-202", "stage": "screening"})
    )
    .contains("final"));
    assert!(err(
        &mut env,
        "move_candidate_stage",
        json!({"candidate_id": "C-201", "stage": "interview"})
    )
    .contains("already"));
    assert!(err(
        &mut env,
        "move_candidate_stage",
        json!({"candidate_id": "C-999", "stage": "screening"})
    )
    .contains("list_candidates"));
    ok(
        &mut env,
        "move_candidate_stage",
        json!({"candidate_id": "C-203", "stage": "screening", "note": "booked"}),
    );
    let c = ok(&mut env, "get_candidate", json!({"candidate_id": "C-203"}));
    assert_eq!(c["stage"], "screening");
    assert_eq!(c["notes"][0]["author"], "hr-ops@northwindlabs.io");
    let r = ok(
        &mut env,
        "get_requisition",
        json!({"requisition_id": "REQ-101"}),
    );
    assert_eq!(r["candidates_by_stage"]["screening"], 2);
    assert_eq!(
        ok(
            &mut env,
            "list_candidates",
            json!({"requisition_id": "REQ-102", "stage": "interview"})
        )["total"],
        2
    );
    assert!(err(
        &mut env,
        "list_candidates",
        json!({"requisition_id": "REQ-999"})
    )
    .contains("list_requisitions"));
}

#[test]
fn onboarding_checklists_come_from_the_template_once() {
    let mut env = full_env();
    let r = ok(
        &mut env,
        "create_onboarding_checklist",
        json!({"employee_id": "E025", "start_date": "2026-03-09"}),
    );
    assert_eq!(r["checklist"]["checklist_id"], "OB-002");
    assert_eq!(r["checklist"]["items"].as_array().map(Vec::len), Some(7));
    assert_eq!(r["checklist"]["items"][0]["due_date"], "2026-03-04");
    assert_eq!(r["checklist"]["items"][6]["item_id"], "OB-002-07");
    assert!(err(
        &mut env,
        "create_onboarding_checklist",
        json!({"employee_id": "E025", "start_date": "2026-03-09"})
    )
    .contains("already has"));
    let custom = ok(
        &mut env,
        "create_onboarding_checklist",
        json!({"employee_id": "E019", "start_date": "2026-03-09", "items": [{"title": "Badge", "owner": "IT", "due_date": "2026-03-09"}]}),
    );
    assert_eq!(custom["checklist"]["items"][0]["title"], "Badge");
    ok(
        &mut env,
        "complete_onboarding_item",
        json!({"checklist_id": "OB-001", "item_id": "OB-001-02"}),
    );
    assert!(err(
        &mut env,
        "complete_onboarding_item",
        json!({"checklist_id": "OB-001", "item_id": "OB-001-02"})
    )
    .contains("already done"));
    assert!(err(
        &mut env,
        "complete_onboarding_item",
        json!({"checklist_id": "OB-001", "item_id": "OB-001-99"})
    )
    .contains("OB-001-06"));
    assert!(err(&mut env, "get_onboarding_checklist", json!({})).contains("checklist_id"));
    assert_eq!(
        ok(
            &mut env,
            "get_onboarding_checklist",
            json!({"employee_id": "E024"})
        )["open_items"],
        4
    );
}

#[test]
fn documents_are_the_scenario_seed_files() {
    let mut env = full_env();
    let docs = ok(&mut env, "list_documents", json!({}));
    assert!(docs["documents"]
        .as_array()
        .is_some_and(|d| d.iter().any(|x| x["title"] == "Leave Policy")));
    let doc = ok(
        &mut env,
        "read_document",
        json!({"filename": "leave_policy.md"}),
    );
    assert!(doc["content"]
        .as_str()
        .is_some_and(|c| c.contains("16 March to 31 March 2026")));
    assert!(err(
        &mut env,
        "read_document",
        json!({"filename": "../scenario.toml"})
    )
    .contains("Available"));
}

#[test]
fn statuses_are_spelled_as_in_the_state_json() {
    use super::{EmployeeStatus, LeaveStatus, RequisitionStatus, Stage};
    for s in Stage::ALL {
        assert_eq!(json!(s), json!(s.as_str()));
        assert_eq!(Stage::parse(s.as_str()), Some(s));
    }
    for s in [
        LeaveStatus::Pending,
        LeaveStatus::Approved,
        LeaveStatus::Rejected,
    ] {
        assert_eq!(json!(s), json!(s.as_str()));
    }
    for s in [
        RequisitionStatus::Open,
        RequisitionStatus::OnHold,
        RequisitionStatus::Closed,
    ] {
        assert_eq!(json!(s), json!(s.as_str()));
    }
    for s in [
        EmployeeStatus::Active,
        EmployeeStatus::PreStart,
        EmployeeStatus::Terminated,
    ] {
        assert_eq!(json!(s), json!(s.as_str()));
    }
}
