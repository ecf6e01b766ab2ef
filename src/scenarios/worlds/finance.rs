//! The bundled finance_ops world played through its scenario: the finance server's
//! tools and business rules on its seed state (now = Tuesday 10 March 2026), and its
//! tasks: the oracle earns full credit on every one and doing nothing earns none.

use std::path::Path;

use serde_json::{json, Value};

use crate::scenarios::Scenario;
use crate::tools::finance::FinanceServer;
use crate::tools::tests::{err, ok};
use crate::tools::Environment;

fn world() -> Scenario {
    Scenario::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config/scenarios/finance_ops"))
        .expect("finance_ops loads")
}

/// A fresh environment of the world (every task shares the seed and the clock).
fn env() -> Environment {
    let s = world();
    let t = s.tasks[0].instance(0).expect("instance 0").into_owned();
    s.environment(&t, 0).expect("env")
}

fn invoice(env: &Environment, id: &str) -> Value {
    env.state()["finance"]["invoices"]
        .as_array()
        .expect("invoices")
        .iter()
        .find(|i| i["invoice_id"] == id)
        .cloned()
        .expect("invoice")
}

#[test]
fn the_vocabulary_matches_the_implemented_tools() {
    super::assert_tools_match_the_vocabulary(&env(), "finance");
}

#[test]
fn approvals_follow_the_matrix_fx_and_segregation_of_duties() {
    let mut env = env();
    // EUR 2,400 is USD 2,604: above the AP desk's tier.
    let e = err(
        &mut env,
        "approve_invoice",
        json!({"invoice_id": "INV-0010", "approver": "P-100"}),
    );
    assert!(
        e.contains("USD 2,604.00") && e.contains("ap_manager"),
        "{e}"
    );
    let e = err(
        &mut env,
        "approve_invoice",
        json!({"invoice_id": "INV-0010", "approver": "P-101"}),
    );
    assert!(e.contains("approval_id"), "{e}");
    let e = err(
        &mut env,
        "approve_invoice",
        json!({"invoice_id": "INV-0010", "approver": "P-101", "approval_id": "APV-3101"}),
    );
    assert!(e.contains("not by P-101 for INV-0010"), "{e}");
    // The requester may not approve, even inside her tier.
    let e = err(
        &mut env,
        "approve_invoice",
        json!({"invoice_id": "INV-0016", "approver": "priya.natarajan@tessaline.io", "approval_id": "APV-3103"}),
    );
    assert!(e.contains("segregation of duties"), "{e}");
    ok(
        &mut env,
        "approve_invoice",
        json!({"invoice_id": "INV-0010", "approver": "P-101", "approval_id": "APV-3102"}),
    );
    assert_eq!(invoice(&env, "INV-0010")["approved_by"], "P-101");
    let e = err(
        &mut env,
        "approve_invoice",
        json!({"invoice_id": "INV-0010", "approver": "P-101", "approval_id": "APV-3102"}),
    );
    assert!(e.contains("only received or on-hold"), "{e}");
    assert!(
        !env.state()["finance"].to_string().contains("APV-3101"),
        "unused approval ids are not readable"
    );
    assert!(!env.state()["finance"].to_string().contains("CB-5521"));
}

#[test]
fn three_way_match_tolerance_duplicates_and_payments() {
    let mut env = env();
    let e = err(
        &mut env,
        "approve_invoice",
        json!({"invoice_id": "INV-0001", "approver": "P-100"}),
    );
    assert!(e.contains("match_invoice"), "{e}");
    let m = ok(&mut env, "match_invoice", json!({"invoice_id": "INV-0007"}));
    assert_eq!(m["match_status"], "matched", "1.75% is inside 2%");
    let m = ok(&mut env, "match_invoice", json!({"invoice_id": "INV-0008"}));
    assert_eq!(m["match_status"], "exception");
    assert!(m["problems"][0]
        .as_str()
        .expect("text")
        .contains("tolerance"));
    let m = ok(&mut env, "match_invoice", json!({"invoice_id": "INV-0006"}));
    assert!(m["problems"][0]
        .as_str()
        .expect("text")
        .contains("only 30 received"));
    let e = err(
        &mut env,
        "approve_invoice",
        json!({"invoice_id": "INV-0004", "approver": "P-101", "approval_id": "x"}),
    );
    assert!(e.contains("duplicate of INV-0003"), "{e}");
    let i = ok(&mut env, "get_invoice", json!({"invoice_id": "INV-0004"}));
    assert_eq!(i["possible_duplicate_of"], "INV-0003");
    let e = err(
        &mut env,
        "schedule_payment",
        json!({"invoice_id": "INV-0001", "run_id": "RUN-0319"}),
    );
    assert!(e.contains("only approved"), "{e}");
    let e = err(
        &mut env,
        "schedule_payment",
        json!({"invoice_id": "INV-0014", "run_id": "RUN-0305"}),
    );
    assert!(e.contains("closed"), "{e}");
    let e = err(
        &mut env,
        "schedule_payment",
        json!({"invoice_id": "INV-0015", "run_id": "RUN-0319"}),
    );
    assert!(e.contains("unverified bank"), "{e}");
    let p = ok(
        &mut env,
        "schedule_payment",
        json!({"invoice_id": "INV-0014", "run_id": "RUN-0312"}),
    );
    assert_eq!(p["payment"]["payment_id"], "PAY-0002");
    assert_eq!(p["payment"]["scheduled_at"], "2026-03-10T09:03:00Z");
    assert_eq!(invoice(&env, "INV-0014")["status"], "scheduled");
}

#[test]
fn bank_changes_need_a_matching_call_back() {
    let mut env = env();
    let base = json!({"vendor_id": "V-1008", "account_number": "7755001234", "routing_number": "026009593"});
    let with = |cb: &str| {
        let mut p = base.clone();
        p["callback_id"] = json!(cb);
        p
    };
    let e = err(&mut env, "update_vendor_bank", base.clone());
    assert!(e.contains("call-back"), "{e}");
    assert!(err(&mut env, "update_vendor_bank", with("CB-0000")).contains("does not exist"));
    let mut other = with("CB-5521");
    other["account_number"] = json!("9912004471");
    assert!(err(&mut env, "update_vendor_bank", other).contains("different account"));
    let mut wrong_vendor = with("CB-5521");
    wrong_vendor["vendor_id"] = json!("V-1010");
    assert!(err(&mut env, "update_vendor_bank", wrong_vendor).contains("not V-1010"));
    let v = ok(&mut env, "update_vendor_bank", with("cb-5521"));
    assert_eq!(v["vendor"]["pending_bank_change"], Value::Null);
    ok(
        &mut env,
        "schedule_payment",
        json!({"invoice_id": "INV-0011", "run_id": "RUN-0326"}),
    );
}

#[test]
fn expenses_need_receipts_meet_per_diems_and_are_not_self_approved() {
    let mut env = env();
    let e = err(
        &mut env,
        "approve_expense",
        json!({"report_id": "EXP-0002"}),
    );
    assert!(e.contains("USD 90.40") && e.contains("USD 15.40"), "{e}");
    let e = err(
        &mut env,
        "reduce_expense_line",
        json!({"report_id": "EXP-0002", "line_id": "L2", "amount_cents": 6190, "reason": "cap"}),
    );
    assert!(e.contains("only lowers"), "{e}");
    ok(
        &mut env,
        "reduce_expense_line",
        json!({"report_id": "EXP-0002", "line_id": "l2", "amount_cents": 4650, "reason": "per-diem"}),
    );
    let r = ok(
        &mut env,
        "approve_expense",
        json!({"report_id": "EXP-0002"}),
    );
    assert_eq!(r["reimbursable_usd_cents"], 31200);
    assert!(err(
        &mut env,
        "approve_expense",
        json!({"report_id": "EXP-0002"})
    )
    .contains("already"));
    let e = err(
        &mut env,
        "approve_expense",
        json!({"report_id": "EXP-0003"}),
    );
    assert!(e.contains("L2") && e.contains("receipt"), "{e}");
    let e = err(
        &mut env,
        "approve_expense",
        json!({"report_id": "EXP-0004"}),
    );
    assert!(e.contains("your own report"), "{e}");
    assert!(err(
        &mut env,
        "reject_expense_line",
        json!({"report_id": "EXP-0003", "line_id": "L9", "reason": "nope"})
    )
    .contains("L1, L2, L3"));
}

#[test]
fn journal_entries_balance_and_respect_closed_periods() {
    let mut env = env();
    let lines = json!([{"account_id": "6200", "debit_cents": 100}, {"account_id": "2100", "credit_cents": 100}]);
    let e = err(
        &mut env,
        "post_journal_entry",
        json!({"date": "2026-02-28", "memo": "accrual", "lines": lines}),
    );
    assert!(e.contains("closed") && e.contains("2026-03"), "{e}");
    let e = err(
        &mut env,
        "post_journal_entry",
        json!({"date": "2026-03-31", "memo": "accrual", "lines": [{"account_id": "6200", "debit_cents": 100}, {"account_id": "2100", "credit_cents": 99}]}),
    );
    assert!(e.contains("does not balance"), "{e}");
    let e = err(
        &mut env,
        "post_journal_entry",
        json!({"date": "2026-03-31", "memo": "accrual", "lines": [{"account_id": "9999", "debit_cents": 1}, {"account_id": "2100", "credit_cents": 1}]}),
    );
    assert!(e.contains("unknown account"), "{e}");
    let e = err(
        &mut env,
        "post_journal_entry",
        json!({"date": "2026-03-31", "memo": "accrual", "lines": [{"account_id": "6200", "debit_cents": 1, "credit_cents": 1}, {"account_id": "2100", "credit_cents": 0}]}),
    );
    assert!(e.contains("exactly one"), "{e}");
    ok(
        &mut env,
        "post_journal_entry",
        json!({"date": "2026-03-31", "memo": "accrual", "lines": lines}),
    );
    let b = ok(
        &mut env,
        "get_account_balance",
        json!({"account_id": "2100"}),
    );
    assert_eq!(b["balance_cents"], -3_120_100);
    let b = ok(
        &mut env,
        "get_account_balance",
        json!({"account_id": "2000"}),
    );
    assert_eq!(b["balance_cents"], -49_090_075);
    let kb = ok(&mut env, "search_kb", json!({"query": "per-diem Chicago"}));
    assert_eq!(kb["articles"][0]["article_id"], "expense_policy.md");
    assert!(err(&mut env, "read_kb_article", json!({"article_id": "../x"})).contains("Available"));
}

#[test]
fn hostile_parameters_never_panic() {
    let mut env = env();
    let values = [
        json!(null),
        json!({"invoice_id": "\u{0000}", "approver": "", "run_id": "RUN-0312"}),
        json!({"report_id": "EXP-0002", "line_id": "L2", "amount_cents": i64::MAX, "reason": "x"}),
        json!({"date": "9999-99-99", "memo": "m", "lines": [{"account_id": "6200", "debit_cents": i64::MAX}, {"account_id": "6200", "debit_cents": i64::MAX}, {"account_id": "2100", "credit_cents": 1}]}),
        json!({"date": "2026-03-02", "memo": "mmm", "lines": [{}, {"account_id": 5}]}),
        json!({"vendor_id": "V-1008", "account_number": "", "routing_number": "", "callback_id": "CB-5521"}),
        json!({"query": "", "article_id": "../../etc/passwd", "account_id": "2000"}),
        json!({"invoice_id": "INV-0010", "approver": "P-103", "approval_id": "ÄPV"}),
    ];
    for tool in env
        .tools("finance")
        .expect("finance")
        .into_iter()
        .map(|t| t.name)
    {
        for v in &values {
            assert!(!env.call(&tool, v).observation.is_empty());
        }
    }
    assert!(env.snapshot("finance").is_some());
}

#[test]
fn a_bad_seed_is_named() {
    let s = world();
    let mut bad = s.environment["finance"].clone();
    bad["invoices"][0]["vendor_id"] = json!("V-9999");
    let e = FinanceServer::from_seed(&bad, &Default::default()).expect_err("bad");
    assert!(e.contains("unknown vendor V-9999"), "{e}");
    let mut bad = s.environment["finance"].clone();
    bad["invoices"][0]["currency"] = json!("JPY");
    let e = FinanceServer::from_seed(&bad, &Default::default()).expect_err("bad");
    assert!(e.contains("JPY"), "{e}");
    assert!(FinanceServer::from_seed(&json!({}), &Default::default()).is_ok());
}

#[test]
fn extreme_seed_numbers_are_errors_or_results_never_panics() {
    let mut s = world();
    let seed = s.environment.get_mut("finance").expect("seed");
    seed["meal_per_diem_usd_cents"]["Chicago"] = json!(i64::MIN);
    seed["price_tolerance_bp"] = json!(i64::MAX);
    seed["expense_reports"][1]["lines"][0]["amount_cents"] = json!(i64::MAX);
    seed["accounts"][2]["opening_balance_cents"] = json!(i64::MIN);
    let t = s.tasks[0].instance(0).expect("instance 0").into_owned();
    let mut env = s.environment(&t, 0).expect("env");
    assert!(
        env.call("approve_expense", &json!({"report_id": "EXP-0002"}))
            .is_error
    );
    assert!(
        !env.call("match_invoice", &json!({"invoice_id": "INV-0008"}))
            .is_error
    );
    let b = ok(
        &mut env,
        "get_account_balance",
        json!({"account_id": "2000"}),
    );
    assert_eq!(b["balance_cents"], i64::MIN);
}

#[test]
fn every_task_gives_the_oracle_full_credit_and_noop_none() {
    let s = world();
    assert!(s
        .tasks
        .iter()
        .all(|t| t.task_id.starts_with("finance_ops__")));
    super::assert_world_is_solvable(&s);
}
