use std::path::Path;

use serde_json::json;

use super::*;
use crate::scenarios::Catalog;

fn recruiting() -> Scenario {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/scenarios/hr_recruiting");
    Scenario::load(&dir).expect("hr_recruiting loads")
}

fn sent(from: &str, to: &[&str], cc: &[&str], subject: &str, body: &str) -> EmailMessage {
    EmailMessage {
        email_id: "msg_0100".into(),
        folder: "sent".into(),
        from: from.into(),
        to: to.iter().map(|s| s.to_string()).collect(),
        cc: cc.iter().map(|s| s.to_string()).collect(),
        subject: subject.into(),
        body: body.into(),
        timestamp: "2026-03-02T09:00:00Z".into(),
        read: true,
        in_reply_to: None,
        thread_id: "thr_0100".into(),
    }
}

#[test]
fn given_mail_to_two_npcs_and_a_stranger_when_asked_who_answers_then_the_npcs_in_address_order() {
    let s = recruiting();
    let mail = sent(
        "recruiting@techcorp.com",
        &["kenji.tanaka@techcorp.com", "someone@else.org"],
        &["Lisa.Anderson@techcorp.com", "kenji.tanaka@techcorp.com"],
        "Hello",
        "Hi",
    );
    let ids: Vec<_> = recipients(&s, &mail)
        .iter()
        .map(|n| n.profile_id.as_str())
        .collect();
    assert_eq!(ids, ["kenji-tanaka", "lisa-anderson"]);
}

#[test]
fn given_mail_sent_by_an_npc_when_asked_who_answers_then_nobody() {
    let s = recruiting();
    let mail = sent(
        "lisa.anderson@techcorp.com",
        &["kenji.tanaka@techcorp.com"],
        &[],
        "Hi",
        "Hi",
    );
    assert!(recipients(&s, &mail).is_empty());
}

#[test]
fn given_a_rule_when_keywords_match_in_any_case_then_that_reply_else_the_default() {
    let mut task = Task::from_json(&json!({
        "task_id": "t", "name": "n", "version": "1", "category": "c", "difficulty": "easy",
        "visibility": "public", "description": "d", "tool_servers": ["email"],
        "now": "2026-03-02T09:00:00Z", "npc_profile_ids": ["p"],
        "rubric": {"task_id": "t", "title": "t", "overview": "o", "scoring": []}, "checks": [],
        "npc_behaviour": {"p": {
            "replies": [{"when_any": ["confirm", "booked"], "when_all": ["14:30"], "reply": "See you then."}],
            "default_reply": "Thursday afternoon works."
        }}
    }).to_string()).expect("task");
    let mail = |body: &str| sent("a@b.co", &["p@b.co"], &[], "Screen", body);
    assert_eq!(
        scripted_reply(&task, "p", &mail("BOOKED you at 14:30")),
        Some("See you then.")
    );
    assert_eq!(
        scripted_reply(&task, "p", &mail("booked at 15:00")),
        Some("Thursday afternoon works.")
    );
    assert_eq!(scripted_reply(&task, "q", &mail("booked at 14:30")), None);
    task.npc_behaviour.get_mut("p").expect("p").default_reply = None;
    assert_eq!(
        scripted_reply(&task, "p", &mail("when are you free?")),
        None
    );
}

#[test]
fn a_reply_goes_back_to_the_sender_copies_the_others_and_keeps_the_thread() {
    let s = recruiting();
    let lisa = s.npc("lisa-anderson").expect("lisa");
    let mail = sent(
        "recruiting@techcorp.com",
        &["lisa.anderson@techcorp.com"],
        &["marcus.chen@techcorp.com"],
        "Re: Offer approval",
        "Please approve",
    );
    let planned = plan_reply(lisa, &mail, "Approved.\n\n");
    assert_eq!(planned.email.to, ["recruiting@techcorp.com"]);
    assert_eq!(planned.email.cc, ["marcus.chen@techcorp.com"]);
    assert_eq!(planned.email.subject, "Re: Offer approval");
    assert_eq!(planned.email.body, "Approved.");
    assert_eq!(planned.email.in_reply_to.as_deref(), Some("msg_0100"));
}

#[test]
fn the_reply_prompt_keeps_the_person_in_character_and_carries_the_thread() {
    let s = recruiting();
    let task = &*s
        .task("hr_recruiting__202_schedule_screen_with_candidate")
        .expect("task")
        .instance(0)
        .expect("instance 0");
    let npc = s.npc("tomas-herrera").expect("npc");
    let facts = private_facts(task, "tomas-herrera");
    assert!(!facts.is_empty());
    let thread = vec![sent(
        "recruiting@techcorp.com",
        &[&npc.email],
        &[],
        "Phone screen",
        "When are you free?",
    )];
    let prompt = reply_prompt(npc, task, facts, &thread);
    assert_eq!(prompt.len(), 2);
    let system = prompt[0].content.clone().unwrap_or_default();
    assert!(system.contains("Tomás Herrera"), "{system}");
    assert!(system.contains(facts));
    assert!(system.contains("never mention being an AI"));
    let user = prompt[1].content.clone().unwrap_or_default();
    assert!(user.contains("When are you free?"));
}

#[test]
fn every_catalog_task_with_npc_behaviour_names_npcs_of_its_scenario() {
    let c = Catalog::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config/scenarios"))
        .expect("catalog");
    for s in c.scenarios() {
        for t in &s.tasks {
            for id in t.npc_behaviour.keys() {
                assert!(s.npc(id).is_some(), "{}: {id}", t.task_id);
            }
        }
    }
}
