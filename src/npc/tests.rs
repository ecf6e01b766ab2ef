use std::path::Path;

use serde_json::json;

use super::*;

/// The people of the bundled recruiting scenario, as its `npcs.json` lists them.
fn recruiting() -> Vec<NpcProfile> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/scenarios/hr_recruiting/npcs.json");
    let text = std::fs::read_to_string(path).expect("npcs.json");
    serde_json::from_str(&text).expect("profiles")
}

fn person<'a>(people: &'a [NpcProfile], id: &str) -> &'a NpcProfile {
    people.iter().find(|p| p.profile_id == id).expect(id)
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
    let people = recruiting();
    let mail = sent(
        "recruiting@techcorp.com",
        &["kenji.tanaka@techcorp.com", "someone@else.org"],
        &["Lisa.Anderson@techcorp.com", "kenji.tanaka@techcorp.com"],
        "Hello",
        "Hi",
    );
    let ids: Vec<_> = recipients(&people, &mail)
        .iter()
        .map(|n| n.profile_id.as_str())
        .collect();
    assert_eq!(ids, ["kenji-tanaka", "lisa-anderson"]);
}

#[test]
fn given_mail_sent_by_an_npc_when_asked_who_answers_then_nobody() {
    let people = recruiting();
    let mail = sent(
        "lisa.anderson@techcorp.com",
        &["kenji.tanaka@techcorp.com"],
        &[],
        "Hi",
        "Hi",
    );
    assert!(recipients(&people, &mail).is_empty());
}

#[test]
fn given_a_rule_when_keywords_match_in_any_case_then_that_reply_else_the_default() {
    let mut behaviour: BTreeMap<String, NpcBehaviour> = serde_json::from_value(json!({"p": {
        "replies": [{"when_any": ["confirm", "booked"], "when_all": ["14:30"], "reply": "See you then."}],
        "default_reply": "Thursday afternoon works."
    }}))
    .expect("behaviour");
    fn reply(behaviour: &BTreeMap<String, NpcBehaviour>, id: &str, body: &str) -> Option<String> {
        let cast = Cast {
            people: &[],
            behaviour,
            now: "2026-03-02T09:00:00Z",
        };
        let mail = sent("a@b.co", &["p@b.co"], &[], "Screen", body);
        scripted_reply(&cast, id, &mail).map(String::from)
    }
    assert_eq!(
        reply(&behaviour, "p", "BOOKED you at 14:30"),
        Some("See you then.".to_string())
    );
    assert_eq!(
        reply(&behaviour, "p", "booked at 15:00"),
        Some("Thursday afternoon works.".to_string())
    );
    assert_eq!(reply(&behaviour, "q", "booked at 14:30"), None);
    behaviour.get_mut("p").expect("p").default_reply = None;
    assert_eq!(reply(&behaviour, "p", "when are you free?"), None);
}

#[test]
fn a_reply_goes_back_to_the_sender_copies_the_others_and_keeps_the_thread() {
    let people = recruiting();
    let lisa = person(&people, "lisa-anderson");
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
    let people = recruiting();
    let npc = person(&people, "tomas-herrera");
    let facts = "Free Thursday 5 March 14:00-16:00 UTC only.";
    let behaviour: BTreeMap<String, NpcBehaviour> =
        serde_json::from_value(json!({"tomas-herrera": {"private_facts": facts}}))
            .expect("behaviour");
    let cast = Cast {
        people: &people,
        behaviour: &behaviour,
        now: "2026-03-02T09:00:00Z",
    };
    let thread = vec![sent(
        "recruiting@techcorp.com",
        &[&npc.email],
        &[],
        "Phone screen",
        "When are you free?",
    )];
    let prompt = reply_prompt(npc, &cast, &thread);
    assert_eq!(prompt.len(), 2);
    let system = prompt[0].content.clone().unwrap_or_default();
    assert!(system.contains("Tomás Herrera"), "{system}");
    assert!(system.contains(facts));
    assert!(system.contains("Today is 2026-03-02T09:00:00Z"), "{system}");
    assert!(system.contains("never mention being an AI"));
    let user = prompt[1].content.clone().unwrap_or_default();
    assert!(user.contains("When are you free?"));
}
