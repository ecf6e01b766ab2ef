//! The bundled customer_support world played through its scenario: the commerce
//! server's tools and business rules on its seed state (now = Monday 9 March 2026), and
//! its tasks: the oracle earns full credit on every one and doing nothing earns none.

use std::path::Path;

use serde_json::{json, Value};

use crate::scenarios::{Scenario, Task};
use crate::tools::commerce::CommerceServer;
use crate::tools::tests::{err, ok};
use crate::tools::Environment;

fn world() -> Scenario {
    Scenario::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config/scenarios/customer_support"))
        .expect("customer_support loads")
}

fn task(s: &Scenario, prefix: &str) -> Task {
    s.tasks
        .iter()
        .find(|t| t.task_id.starts_with(prefix))
        .expect("task")
        .instance(0)
        .expect("instance 0")
        .into_owned()
}

/// A fresh environment of the world (every task shares the seed and the clock).
fn env() -> Environment {
    let s = world();
    let t = task(&s, "customer_support__401");
    s.environment(&t, 0).expect("env")
}

fn refunds_of(env: &Environment, order: &str) -> Vec<Value> {
    env.state()["commerce"]["refunds"]
        .as_array()
        .expect("refunds")
        .iter()
        .filter(|r| r["order_id"] == order)
        .cloned()
        .collect()
}

#[test]
fn the_vocabulary_matches_the_implemented_tools() {
    super::assert_tools_match_the_vocabulary(&env(), "commerce");
}

#[test]
fn lookups_find_customers_orders_and_only_past_tracking_scans() {
    let mut env = env();
    let r = ok(&mut env, "search_customers", json!({"query": "maya"}));
    assert_eq!(r["total"], 2, "two similar names");
    let c = ok(
        &mut env,
        "get_customer",
        json!({"customer_id": "daniel.reyes@example.com"}),
    );
    assert_eq!(c["tier"], "vip");
    assert_eq!(c["return_window_days"], 60);
    assert_eq!(c["orders"][0]["order_id"], "ORD-50027", "newest first");
    let o = ok(&mut env, "get_order", json!({"order_id": "#50026"}));
    assert_eq!(o["order_id"], "ORD-50026");
    assert_eq!(o["refundable_cents"], 11155);
    // The 10 March scans have not happened on 9 March.
    let t = ok(&mut env, "track_shipment", json!({"order_id": "ORD-50034"}));
    assert_eq!(t["events"].as_array().expect("events").len(), 3);
    assert_eq!(t["latest_status"], "in_transit");
    let o = ok(&mut env, "get_order", json!({"order_id": "ORD-50034"}));
    assert_eq!(o["shipment"]["events"].as_array().expect("events").len(), 3);
    let t = ok(
        &mut env,
        "track_shipment",
        json!({"tracking_number": "7741 2290 5531"}),
    );
    assert_eq!(t["order_id"], "ORD-50037");
    assert!(
        err(&mut env, "track_shipment", json!({"order_id": "ORD-50041"})).contains("not shipped")
    );
    assert!(err(&mut env, "get_order", json!({"order_id": "ORD-1"})).contains("list_orders"));
    assert!(err(&mut env, "get_customer", json!({"customer_id": "x"})).contains("search_customers"));
    let kb = ok(&mut env, "search_kb", json!({"query": "return window"}));
    assert_eq!(kb["articles"][0]["article_id"], "returns_policy.md");
    let a = ok(
        &mut env,
        "read_kb_article",
        json!({"article_id": "refund_policy"}),
    );
    assert!(a["content"].as_str().expect("text").contains("$200.00"));
    assert!(err(
        &mut env,
        "read_kb_article",
        json!({"article_id": "nope.md"})
    )
    .contains("Available"));
}

#[test]
fn only_unshipped_orders_can_be_cancelled_or_readdressed_and_cancelling_refunds() {
    let mut env = env();
    let e = err(
        &mut env,
        "cancel_order",
        json!({"order_id": "ORD-50037", "reason": "customer request"}),
    );
    assert!(
        e.contains("already shipped") && e.contains("create_return"),
        "{e}"
    );
    let e = err(
        &mut env,
        "update_shipping_address",
        json!({"order_id": "ORD-50037", "line1": "1 A St", "city": "X", "postal_code": "1", "country": "US"}),
    );
    assert!(e.contains("before it ships") && e.contains("FedEx"), "{e}");
    let e = err(
        &mut env,
        "update_shipping_address",
        json!({"order_id": "ORD-50043", "line1": "1 A St", "city": "X", "postal_code": "1", "country": "USA"}),
    );
    assert!(e.contains("two-letter"), "{e}");
    let r = ok(
        &mut env,
        "cancel_order",
        json!({"order_id": "ORD-50041", "reason": "customer request"}),
    );
    assert_eq!(r["refunded_cents"], 11795);
    assert_eq!(r["refund"]["refund_id"], "RF-0003");
    assert!(err(
        &mut env,
        "cancel_order",
        json!({"order_id": "ORD-50041", "reason": "again"})
    )
    .contains("already cancelled"));
    assert!(err(
        &mut env,
        "issue_refund",
        json!({"order_id": "ORD-50041", "amount_cents": 1, "reason": "other"})
    )
    .contains("at most $0.00"));
}

#[test]
fn refunds_are_capped_by_what_is_left_and_large_ones_need_a_matching_unused_approval() {
    let mut env = env();
    let refund = |amount: i64, approval: Option<&str>| {
        let mut p = json!({"order_id": "ORD-50028", "amount_cents": amount, "reason": "defective"});
        if let Some(a) = approval {
            p["approval_id"] = json!(a);
        }
        p
    };
    let e = err(&mut env, "issue_refund", refund(34_901, None));
    assert!(e.contains("at most $349.00"), "{e}");
    let e = err(&mut env, "issue_refund", refund(34_900, None));
    assert!(
        e.contains("above the $200.00 limit") && e.contains("approval_id"),
        "{e}"
    );
    let e = err(&mut env, "issue_refund", refund(34_900, Some("APR-9999")));
    assert!(e.contains("does not exist"), "{e}");
    let e = err(&mut env, "issue_refund", refund(34_900, Some("APR-2038")));
    assert!(e.contains("ORD-50016"), "{e}");
    assert!(
        err(&mut env, "issue_refund", refund(34_900, Some("APR-2050"))).contains("not for this")
    );
    let r = ok(&mut env, "issue_refund", refund(30_000, Some("apr-2041")));
    assert_eq!(r["refund"]["approval_id"], "APR-2041");
    assert_eq!(r["refundable_cents_left"], 4_900);
    // Under the threshold no approval is needed, but the cap still holds.
    ok(&mut env, "issue_refund", refund(4_900, None));
    assert!(err(&mut env, "issue_refund", refund(1, None)).contains("at most $0.00"));
    assert_eq!(refunds_of(&env, "ORD-50028").len(), 2);
    let e = err(
        &mut env,
        "issue_refund",
        json!({"order_id": "ORD-50028", "amount_cents": 5, "reason": "other", "line_id": "L9"}),
    );
    assert!(e.contains("no line"), "{e}");
}

#[test]
fn store_credit_above_the_limit_needs_an_approval_for_that_customer() {
    let mut env = env();
    let credit = |who: &str, amount: i64, approval: Option<&str>| {
        let mut p = json!({"customer_id": who, "amount_cents": amount, "reason": "goodwill"});
        if let Some(a) = approval {
            p["approval_id"] = json!(a);
        }
        p
    };
    let r = ok(
        &mut env,
        "issue_store_credit",
        credit("CUS-1012", 2500, None),
    );
    assert_eq!(r["balance_cents"], 2500);
    assert!(err(
        &mut env,
        "issue_store_credit",
        credit("CUS-1003", 4000, None)
    )
    .contains("$25.00"));
    assert!(err(
        &mut env,
        "issue_store_credit",
        credit("CUS-1004", 4000, Some("APR-2050"))
    )
    .contains("CUS-1003"));
    assert!(err(
        &mut env,
        "issue_store_credit",
        credit("CUS-1003", 4001, Some("APR-2050"))
    )
    .contains("at most $40.00"));
    let r = ok(
        &mut env,
        "issue_store_credit",
        credit("daniel.reyes@example.com", 4000, Some("APR-2050")),
    );
    assert_eq!(r["balance_cents"], 5500);
    assert_eq!(r["credit"]["credit_id"], "SC-0003");
    assert!(err(
        &mut env,
        "issue_store_credit",
        credit("CUS-1003", 3000, Some("APR-2050"))
    )
    .contains("single use"));
}

#[test]
fn returns_respect_the_tier_window_final_sale_and_units_left() {
    let mut env = env();
    let ret = |order: &str, line: &str, q: i64| json!({"order_id": order, "line_id": line, "quantity": q, "reason": "changed_mind"});
    // Standard, delivered 28 January: closed 27 February.
    let e = err(&mut env, "create_return", ret("ORD-50019", "L1", 1));
    assert!(
        e.contains("closed on 2026-02-27") && e.contains("standard"),
        "{e}"
    );
    // Plus, delivered 5 February: 45 days, open until 22 March.
    let r = ok(&mut env, "create_return", ret("ORD-50031", "L1", 1));
    assert_eq!(r["return"]["rma_id"], "RMA-0003");
    assert_eq!(r["return_deadline"], "2026-03-22");
    // VIP, final-sale hammock.
    let e = err(&mut env, "create_return", ret("ORD-50015", "L2", 1));
    assert!(e.contains("final-sale"), "{e}");
    // Units left on a line.
    let e = err(&mut env, "create_return", ret("ORD-50023", "L1", 1));
    assert!(e.contains("0 unit(s) left"), "{e}");
    let e = err(&mut env, "create_return", ret("ORD-50034", "L1", 1));
    assert!(e.contains("only for delivered"), "{e}");
    let e = err(&mut env, "create_return", ret("ORD-50031", "L7", 1));
    assert!(e.contains("L1 Granite"), "{e}");
    // Returning every unit marks the order returned.
    ok(&mut env, "create_return", ret("ORD-50031", "L2", 2));
    let o = ok(&mut env, "get_order", json!({"order_id": "ORD-50031"}));
    assert_eq!(o["status"], "returned");
}

#[test]
fn replacements_need_stock_and_coupons_must_be_valid_once_per_order() {
    let mut env = env();
    let e = err(
        &mut env,
        "create_replacement_order",
        json!({"order_id": "ORD-50030", "line_id": "L1", "quantity": 1}),
    );
    assert!(e.contains("only 0 unit(s)") && e.contains("refund"), "{e}");
    let r = ok(
        &mut env,
        "create_replacement_order",
        json!({"order_id": "ORD-50029", "line_id": "L2", "quantity": 1}),
    );
    assert_eq!(r["order"]["order_id"], "ORD-50044");
    assert_eq!(r["order"]["total_cents"], 0);
    assert_eq!(r["stock_left"], 19);
    let coupon = |code: &str| json!({"order_id": "ORD-50039", "code": code});
    assert!(err(&mut env, "apply_coupon", coupon("WINTER15")).contains("expired"));
    assert!(err(&mut env, "apply_coupon", coupon("VIPSHIP")).contains("only for vip"));
    assert!(err(&mut env, "apply_coupon", coupon("FREE")).contains("no coupon"));
    let r = ok(&mut env, "apply_coupon", coupon("spring20"));
    assert_eq!(r["discount_cents"], 2260);
    assert_eq!(r["refund"]["amount_cents"], 2260);
    assert!(err(&mut env, "apply_coupon", coupon("SPRING20")).contains("one coupon"));
    let e = err(
        &mut env,
        "apply_coupon",
        json!({"order_id": "ORD-50037", "code": "SPRING20"}),
    );
    assert!(e.contains("before an order ships"), "{e}");
}

#[test]
fn mutations_advance_the_clock_and_notes_are_kept() {
    let mut env = env();
    let n = ok(
        &mut env,
        "add_order_note",
        json!({"order_id": "ORD-50030", "note": "Customer called"}),
    );
    assert_eq!(n["note"]["created_at"], "2026-03-09T09:00:00Z");
    let n = ok(
        &mut env,
        "add_order_note",
        json!({"order_id": "ORD-50030", "note": "Again"}),
    );
    assert_eq!(n["note"]["created_at"], "2026-03-09T09:01:00Z");
    let o = ok(&mut env, "get_order", json!({"order_id": "ORD-50030"}));
    assert_eq!(o["notes"].as_array().expect("notes").len(), 2);
}

#[test]
fn hostile_parameters_never_panic() {
    let mut env = env();
    let values = [
        json!(null),
        json!({"order_id": "\u{0000}", "amount_cents": i64::MAX, "reason": "other"}),
        json!({"order_id": "ORD-50028", "amount_cents": -5, "reason": "other"}),
        json!({"order_id": "ORD-50031", "line_id": "L1", "quantity": 9_999_999_999i64, "reason": "defective"}),
        json!({"customer_id": "CUS-1003", "amount_cents": 1.5, "reason": "x"}),
        json!({"query": "", "article_id": "../../etc/passwd"}),
        json!({"tracking_number": "", "order_id": null}),
        json!({"order_id": "ORD-50043", "line1": " ", "city": "", "postal_code": "", "country": "ÜS"}),
    ];
    for tool in env
        .tools("commerce")
        .expect("commerce")
        .into_iter()
        .map(|t| t.name)
    {
        for v in &values {
            assert!(!env.call(&tool, v).observation.is_empty());
        }
    }
}

#[test]
fn every_task_gives_the_oracle_full_credit_and_noop_none() {
    let s = world();
    assert!(s
        .tasks
        .iter()
        .all(|t| t.task_id.starts_with("customer_support__")));
    super::assert_world_is_solvable(&s);
}

#[test]
fn approval_ids_are_not_readable_from_the_state_until_used() {
    let mut env = env();
    let before = env.state()["commerce"].to_string();
    assert!(
        !before.contains("APR-2041"),
        "approvals must come from Dana"
    );
    assert!(env.snapshot("commerce").is_some());
    ok(
        &mut env,
        "issue_refund",
        json!({"order_id": "ORD-50028", "amount_cents": 34_900, "reason": "defective", "approval_id": "APR-2041"}),
    );
    assert_eq!(refunds_of(&env, "ORD-50028")[0]["approval_id"], "APR-2041");
}

#[test]
fn a_coupon_below_its_minimum_is_refused_and_a_bad_seed_is_named() {
    let mut s = world();
    let seed = s.environment.get_mut("commerce").expect("seed");
    seed["coupons"][0]["min_subtotal_cents"] = json!(20_000);
    let t = task(&s, "customer_support__417");
    let mut env = s.environment(&t, 0).expect("env");
    let e = err(
        &mut env,
        "apply_coupon",
        json!({"order_id": "ORD-50039", "code": "SPRING20"}),
    );
    assert!(
        e.contains("at least $200.00") && e.contains("$113.00"),
        "{e}"
    );

    let mut bad = s.environment["commerce"].clone();
    bad["orders"][0]["customer_id"] = json!("CUS-9999");
    let e = CommerceServer::from_seed(&bad, &Default::default()).expect_err("bad");
    assert!(e.contains("unknown customer CUS-9999"), "{e}");
    let mut bad = s.environment["commerce"].clone();
    bad["customers"][0]["tier"] = json!("gold");
    let e = CommerceServer::from_seed(&bad, &Default::default()).expect_err("bad");
    assert!(e.contains("gold"), "{e}");
    assert!(CommerceServer::from_seed(&json!({}), &Default::default()).is_ok());
}
