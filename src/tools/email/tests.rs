use serde_json::json;

use crate::tools::tests::{err, full_env, ok};

#[test]
fn the_inbox_lists_newest_first_and_filters_unread() {
    let mut env = full_env();
    let inbox = ok(&mut env, "list_inbox", json!({}));
    assert_eq!(inbox["total"], 9);
    assert_eq!(inbox["emails"][0]["email_id"], "msg_0009");
    let unread = ok(&mut env, "list_inbox", json!({"unread_only": true}));
    assert_eq!(unread["total"], 8);
    let limited = ok(&mut env, "list_inbox", json!({"limit": 2}));
    assert_eq!(limited["emails"].as_array().map(Vec::len), Some(2));
}

#[test]
fn search_matches_sender_subject_and_body_case_insensitively() {
    let mut env = full_env();
    let hits = ok(&mut env, "search_emails", json!({"from": "JONAS"}));
    assert_eq!(hits["emails"][0]["email_id"], "msg_0002");
    let hits = ok(
        &mut env,
        "search_emails",
        json!({"subject_contains": "req-102", "body_contains": "role play"}),
    );
    assert_eq!(hits["total"], 1);
    let none = ok(&mut env, "search_emails", json!({"folder": "sent"}));
    assert_eq!(none["total"], 0);
}

#[test]
fn a_reply_goes_to_the_sender_in_the_same_thread() {
    let mut env = full_env();
    let sent = ok(
        &mut env,
        "reply_to_email",
        json!({"email_id": "msg_0001", "body": "Done."}),
    );
    let id = sent["email_id"].as_str().expect("id").to_string();
    let msg = ok(&mut env, "read_email", json!({"email_id": id}));
    assert_eq!(msg["to"], json!(["priya.raman@northwindlabs.io"]));
    assert_eq!(
        msg["subject"],
        "Re: Leave approval: Hannah Park, 16-20 March"
    );
    assert_eq!(msg["in_reply_to"], "msg_0001");
    assert_eq!(msg["thread_id"], "thr_0001");
    assert_eq!(msg["from"], "hr-ops@northwindlabs.io");
    assert_eq!(ok(&mut env, "list_sent", json!({}))["total"], 1);
}

#[test]
fn mark_read_and_archive_change_flags_and_folders() {
    let mut env = full_env();
    ok(&mut env, "mark_read", json!({"email_id": "msg_0003"}));
    assert_eq!(
        ok(&mut env, "read_email", json!({"email_id": "msg_0003"}))["read"],
        true
    );
    ok(&mut env, "archive_email", json!({"email_id": "msg_0007"}));
    assert!(err(&mut env, "archive_email", json!({"email_id": "msg_0007"})).contains("only inbox"));
    assert_eq!(ok(&mut env, "list_inbox", json!({}))["total"], 8);
}

#[test]
fn unknown_ids_are_in_band_errors_with_a_hint() {
    let mut env = full_env();
    for tool in ["read_email", "reply_to_email", "mark_read", "archive_email"] {
        let params = if tool == "reply_to_email" {
            json!({"email_id": "msg_9999", "body": "x"})
        } else {
            json!({"email_id": "msg_9999"})
        };
        let e = err(&mut env, tool, params);
        assert!(e.contains("msg_9999") && e.contains("list_inbox"), "{e}");
    }
}
