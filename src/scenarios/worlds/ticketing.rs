//! The bundled it_helpdesk world played through its scenario: the ticketing server's
//! tools and business rules on its seed state, and its tasks: every reference solution
//! earns full credit (with its scripted NPC replies) and doing nothing earns none.

use std::path::Path;

use serde_json::{json, Value};

use crate::scenarios::{server_tools, Scenario};
use crate::tools::tests::{err, ok};
use crate::tools::Environment;

fn helpdesk() -> Scenario {
    Scenario::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config/scenarios/it_helpdesk"))
        .expect("it_helpdesk loads")
}

/// An environment with email and ticketing at Tuesday 10 March 2026, 10:00 UTC.
fn env() -> Environment {
    let s = helpdesk();
    let t = s.tasks[0].instance(0).expect("instance 0").into_owned();
    s.environment(&t, 0).expect("env")
}

fn ticket(env: &mut Environment, id: &str) -> Value {
    ok(env, "get_ticket", json!({ "ticket_id": id }))
}

#[test]
fn the_vocabulary_matches_the_implemented_tools() {
    super::assert_tools_match_the_vocabulary(&env(), "ticketing");
}

#[test]
fn sla_due_follows_the_priority_and_breaches_show() {
    let mut env = env();
    let t = ticket(&mut env, "TKT-1002");
    assert_eq!(t["sla_due"], "2026-03-09T22:00:00Z");
    assert_eq!(t["sla_breached"], true);
    let t = ticket(&mut env, "TKT-1022");
    assert_eq!(
        (t["sla_breached"].clone(), t["sla_minutes_left"].clone()),
        (json!(false), json!(60))
    );
    let r = ok(&mut env, "list_tickets", json!({"sla_breached": true}));
    let ids: Vec<&str> = r["tickets"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|t| t["ticket_id"].as_str())
        .collect();
    assert_eq!(ids, ["TKT-1002", "TKT-1005"]);
    let r = ok(
        &mut env,
        "update_ticket",
        json!({"ticket_id": "TKT-1012", "priority": "P1", "group": "network", "assignee": "U024"}),
    );
    assert_eq!(r["ticket"]["sla_due"], "2026-03-10T13:50:00Z");
    assert_eq!(
        r["ticket"]["status"], "open",
        "picking up a new ticket opens it"
    );
}

#[test]
fn transitions_follow_the_workflow_and_resolving_needs_a_note() {
    let mut env = env();
    let e = err(
        &mut env,
        "update_ticket",
        json!({"ticket_id": "TKT-1001", "status": "pending"}),
    );
    assert!(e.contains("allowed from `resolved`: open, closed"), "{e}");
    let e = err(
        &mut env,
        "update_ticket",
        json!({"ticket_id": "TKT-1003", "status": "resolved"}),
    );
    assert!(e.contains("resolution"), "{e}");
    assert!(err(
        &mut env,
        "update_ticket",
        json!({"ticket_id": "TKT-1003", "status": "closed"})
    )
    .contains("allowed from `new`"));
    assert!(
        err(&mut env, "update_ticket", json!({"ticket_id": "TKT-1003"}))
            .contains("nothing to change")
    );
    assert!(err(
        &mut env,
        "update_ticket",
        json!({"ticket_id": "TKT-1003", "resolution": "x"})
    )
    .contains("only for"));
    ok(
        &mut env,
        "update_ticket",
        json!({"ticket_id": "TKT-1003", "status": "resolved", "resolution": "Reset"}),
    );
    ok(
        &mut env,
        "update_ticket",
        json!({"ticket_id": "TKT-1003", "status": "closed"}),
    );
    assert!(err(
        &mut env,
        "update_ticket",
        json!({"ticket_id": "TKT-1003", "status": "open"})
    )
    .contains("closed"));
    assert!(err(
        &mut env,
        "add_comment",
        json!({"ticket_id": "TKT-1003", "text": "hi"})
    )
    .contains("closed"));
    let t = ok(
        &mut env,
        "update_ticket",
        json!({"ticket_id": "TKT-1001", "status": "open"}),
    );
    assert_eq!(t["ticket"]["status"], "open");
    let t = ticket(&mut env, "TKT-1001");
    assert_eq!(
        t["resolution"],
        Value::Null,
        "reopening clears the resolution"
    );
    assert!(err(&mut env, "get_ticket", json!({"ticket_id": "TKT-9"})).contains("list_tickets"));
}

#[test]
fn assignment_respects_groups_leave_and_the_p1_shift_rule() {
    let mut env = env();
    let e = err(
        &mut env,
        "update_ticket",
        json!({"ticket_id": "TKT-1023", "assignee": "U023"}),
    );
    assert!(e.contains("off shift") && e.contains("on call"), "{e}");
    let e = err(
        &mut env,
        "update_ticket",
        json!({"ticket_id": "TKT-1022", "assignee": "U022"}),
    );
    assert!(e.contains("nothing to change"), "{e}");
    let e = err(
        &mut env,
        "update_ticket",
        json!({"ticket_id": "TKT-1003", "assignee": "U024"}),
    );
    assert!(e.contains("not in the service-desk group"), "{e}");
    let e = err(
        &mut env,
        "update_ticket",
        json!({"ticket_id": "TKT-1012", "group": "network", "assignee": "U022"}),
    );
    assert!(e.contains("on leave"), "{e}");
    // Off shift but on call for desktop-support: fine for a P1.
    ok(
        &mut env,
        "update_ticket",
        json!({"ticket_id": "TKT-1005", "priority": "P1", "assignee": "U027"}),
    );
    ok(
        &mut env,
        "update_ticket",
        json!({"ticket_id": "TKT-1023", "assignee": "U024"}),
    );
    // Raising the priority re-checks the current assignee.
    ok(
        &mut env,
        "update_ticket",
        json!({"ticket_id": "TKT-1022", "assignee": "U023"}),
    );
    let e = err(
        &mut env,
        "update_ticket",
        json!({"ticket_id": "TKT-1022", "priority": "P1"}),
    );
    assert!(e.contains("off shift"), "{e}");
    // Moving group drops an assignee who is not a member.
    let r = ok(
        &mut env,
        "update_ticket",
        json!({"ticket_id": "TKT-1022", "group": "desktop-support"}),
    );
    assert_eq!(r["ticket"]["assignee"], Value::Null);
    assert!(err(
        &mut env,
        "update_ticket",
        json!({"ticket_id": "TKT-1022", "group": "facilities"})
    )
    .contains("Groups:"));
}

#[test]
fn links_and_merges_keep_both_sides_in_step() {
    let mut env = env();
    ok(
        &mut env,
        "link_tickets",
        json!({"ticket_id": "TKT-1012", "other_ticket_id": "TKT-1014", "relation": "parent"}),
    );
    let parent = ticket(&mut env, "TKT-1012");
    assert_eq!(
        parent["links"],
        json!([{"ticket_id": "TKT-1014", "relation": "child"}])
    );
    let child = ticket(&mut env, "TKT-1014");
    assert_eq!(
        child["links"],
        json!([{"ticket_id": "TKT-1012", "relation": "parent"}])
    );
    assert!(err(
        &mut env,
        "link_tickets",
        json!({"ticket_id": "TKT-1014", "other_ticket_id": "TKT-1012"})
    )
    .contains("already linked"));
    assert!(err(
        &mut env,
        "link_tickets",
        json!({"ticket_id": "TKT-1014", "other_ticket_id": "tkt-1014"})
    )
    .contains("itself"));
    ok(
        &mut env,
        "merge_tickets",
        json!({"duplicate_ticket_id": "TKT-1007", "target_ticket_id": "TKT-1006"}),
    );
    let dup = ticket(&mut env, "TKT-1007");
    assert_eq!(
        (dup["status"].clone(), dup["merged_into"].clone()),
        (json!("closed"), json!("TKT-1006"))
    );
    let target = ticket(&mut env, "TKT-1006");
    assert!(target["tags"]
        .as_array()
        .expect("tags")
        .contains(&json!("attachments")));
    assert_eq!(target["comments"][0]["public"], false);
    assert!(err(
        &mut env,
        "merge_tickets",
        json!({"duplicate_ticket_id": "TKT-1007", "target_ticket_id": "TKT-1006"})
    )
    .contains("merged into TKT-1006"));
    assert!(err(
        &mut env,
        "merge_tickets",
        json!({"duplicate_ticket_id": "TKT-1008", "target_ticket_id": "TKT-1007"})
    )
    .contains("closed"));
}

#[test]
fn created_tickets_get_the_next_id_and_their_sla() {
    let mut env = env();
    let r = ok(
        &mut env,
        "create_ticket",
        json!({"requester": "aisha.bello@brightwave.io", "title": "Monitor", "description": "Second monitor",
               "category": "hardware", "priority": "P4", "group": "desktop-support", "type": "request"}),
    );
    assert_eq!(r["ticket"]["ticket_id"], "TKT-1025");
    assert_eq!(r["ticket"]["sla_due"], "2026-03-13T10:00:00Z");
    assert_eq!(r["ticket"]["status"], "new");
    let e = err(
        &mut env,
        "create_ticket",
        json!({"requester": "U005", "title": "x", "description": "y", "category": "network",
               "priority": "P1", "group": "network", "assignee": "U023"}),
    );
    assert!(e.contains("off shift"), "{e}");
    assert!(err(
        &mut env,
        "create_ticket",
        json!({"requester": "U999", "title": "x", "description": "y", "category": "c", "priority": "P4", "group": "network"})
    )
    .contains("search_users"));
}

#[test]
fn assets_move_between_stock_people_and_repair() {
    let mut env = env();
    let e = err(
        &mut env,
        "assign_asset",
        json!({"asset_id": "LT-0101", "user_id": "U008"}),
    );
    assert!(e.contains("in use by Omar Haddad"), "{e}");
    assert!(err(
        &mut env,
        "assign_asset",
        json!({"asset_id": "LT-0106", "user_id": "U008"})
    )
    .contains("in_repair"));
    assert!(err(
        &mut env,
        "assign_asset",
        json!({"asset_id": "LT-0104", "user_id": "U014"})
    )
    .contains("disabled"));
    ok(
        &mut env,
        "assign_asset",
        json!({"asset_id": "LT-0109", "user_id": "U008"}),
    );
    let u = ok(&mut env, "get_user", json!({"user_id": "U008"}));
    assert_eq!(u["assets"][0]["asset_id"], "LT-0109");
    let r = ok(
        &mut env,
        "return_asset",
        json!({"asset_id": "LT-0107", "condition": "damaged"}),
    );
    assert_eq!(r["new_status"], "in_repair");
    assert!(err(&mut env, "return_asset", json!({"asset_id": "LT-0107"})).contains("not in use"));
    let r = ok(
        &mut env,
        "list_assets",
        json!({"asset_type": "laptop", "status": "in_stock", "location": "lisbon"}),
    );
    assert_eq!(r["total"], 2);
}

#[test]
fn licenses_respect_seats_and_manager_approval() {
    let mut env = env();
    let e = err(
        &mut env,
        "grant_license",
        json!({"license_id": "LIC-ADOBE", "user_id": "U006"}),
    );
    assert!(e.contains("all 5 seats"), "{e}");
    assert!(err(
        &mut env,
        "revoke_license",
        json!({"license_id": "LIC-ADOBE", "user_id": "U006"})
    )
    .contains("holds no"));
    ok(
        &mut env,
        "revoke_license",
        json!({"license_id": "Adobe Creative Cloud", "user_id": "U014"}),
    );
    ok(
        &mut env,
        "grant_license",
        json!({"license_id": "LIC-ADOBE", "user_id": "U006"}),
    );
    assert!(err(
        &mut env,
        "grant_license",
        json!({"license_id": "LIC-FIGMA", "user_id": "U006"})
    )
    .contains("already holds"));
    let e = err(
        &mut env,
        "grant_license",
        json!({"license_id": "LIC-TABLEAU", "user_id": "U002"}),
    );
    assert!(e.contains("approved_by"), "{e}");
    let e = err(
        &mut env,
        "grant_license",
        json!({"license_id": "LIC-TABLEAU", "user_id": "U002", "approved_by": "U003"}),
    );
    assert!(e.contains("not Daniel Kim's manager"), "{e}");
    let r = ok(
        &mut env,
        "grant_license",
        json!({"license_id": "LIC-TABLEAU", "user_id": "U002", "approved_by": "priya.shah@brightwave.io"}),
    );
    assert_eq!(r["seats_used"], 3);
    assert!(err(
        &mut env,
        "grant_license",
        json!({"license_id": "LIC-NOPE", "user_id": "U002"})
    )
    .contains("LIC-ADOBE"));
}

#[test]
fn resets_refuse_privileged_and_disabled_accounts() {
    let mut env = env();
    assert!(err(&mut env, "reset_password", json!({"user_id": "U010"})).contains("iam"));
    assert!(err(&mut env, "reset_password", json!({"user_id": "U012"})).contains("disabled"));
    let r = ok(&mut env, "reset_password", json!({"user_id": "U004"}));
    assert_eq!(
        (r["was"].clone(), r["account_status"].clone()),
        (json!("locked"), json!("active"))
    );
}

#[test]
fn the_knowledge_base_serves_the_scenario_documents() {
    let mut env = env();
    let r = ok(&mut env, "search_kb", json!({"query": "MFA new phone"}));
    assert_eq!(r["articles"][0]["article_id"], "kb_mfa_new_phone.md");
    let all = ok(&mut env, "search_kb", json!({}));
    assert_eq!(all["total"], 7);
    let a = ok(
        &mut env,
        "read_kb_article",
        json!({"article_id": "sla_policy"}),
    );
    assert_eq!(a["title"], "SLA and Priority Policy");
    assert!(err(
        &mut env,
        "read_kb_article",
        json!({"article_id": "../secrets"})
    )
    .contains("Available"));
}

#[test]
fn groups_show_who_is_on_shift_now() {
    let mut env = env();
    let r = ok(&mut env, "list_groups", json!({}));
    let network = &r["groups"][2];
    assert_eq!(network["group_id"], "network");
    let on: Vec<&str> = network["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter(|m| m["on_shift_now"] == true)
        .filter_map(|m| m["user_id"].as_str())
        .collect();
    assert_eq!(
        on,
        ["U022", "U024"],
        "Alex is on shift by the clock but on leave"
    );
}

#[test]
fn fuzzed_inputs_are_in_band_errors_never_panics() {
    let mut env = env();
    for tool in server_tools("ticketing").expect("tools") {
        for params in [
            json!({}),
            json!({"ticket_id": "", "user_id": "", "asset_id": "", "license_id": "", "article_id": ""}),
            json!({"ticket_id": "TKT-1003", "other_ticket_id": "TKT-1003", "duplicate_ticket_id": "TKT-1003", "target_ticket_id": "TKT-1003"}),
            json!({"ticket_id": "TKT-1003", "status": "bogus", "priority": "P0", "assignee": "💥", "group": "\u{0}"}),
        ] {
            let _ = env.call(tool, &params);
        }
    }
}

/// The final state and trajectory of the oracle (with scripted replies) and of an
/// agent that does nothing, for every task of the scenario.
#[test]
fn every_task_gives_the_oracle_full_credit_and_a_noop_agent_none() {
    let s = helpdesk();
    super::assert_world_is_solvable(&s);
    for task in &s.tasks {
        // A task that relies on a reply cannot be replayed without it: the reference
        // solution reads the answer, which never arrives.
        if !task.reference_npc_replies.is_empty() {
            let task = &*task.instance(0).expect("instance 0");
            let mut env = s.environment(task, 0).expect("env");
            let run =
                crate::scenarios::oracle::replay_reference_solution(&mut env, &s, task, false);
            assert!(!run.errors.is_empty(), "{}: needs the reply", task.task_id);
        }
    }
}
