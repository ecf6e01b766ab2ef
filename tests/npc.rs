//! Simulated people in the `hr_recruiting` scenario, end to end over the environment:
//! the oracle earns Full Credit only when the scripted NPC replies arrive between its
//! steps, replies land in the inbox where the email tools read them, and nobody loops.

use std::path::Path;

use serde_json::{json, Value};

use rl_gym::domain::chat::Message;
use rl_gym::npc;
use rl_gym::scenarios::{oracle, Catalog, Scenario, Task};
use rl_gym::tools::Environment;

fn catalog() -> Catalog {
    Catalog::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config/scenarios"))
        .expect("bundled scenarios load")
}

fn recruiting(c: &Catalog) -> &Scenario {
    c.get("hr_recruiting").expect("hr_recruiting")
}

/// The tasks that cannot be solved without an NPC's answer: the availability, the
/// approval, the acceptance or the decision is only in the reply.
const NPC_DEPENDENT: &[&str] = &[
    "hr_recruiting__202_schedule_screen_with_candidate",
    "hr_recruiting__203_book_panel_with_travelling_interviewer",
    "hr_recruiting__204_offer_above_midpoint_needs_chro",
    "hr_recruiting__205_offer_acceptance_handover",
    "hr_recruiting__206_hiring_manager_decision",
];

fn npc_dependent(s: &Scenario) -> Vec<Task> {
    NPC_DEPENDENT
        .iter()
        .map(|id| instance0(s, id))
        .inspect(|t| assert!(!t.reference_npc_replies.is_empty(), "{}", t.task_id))
        .collect()
}

/// A task as written: instance 0 of its family.
fn instance0(s: &Scenario, task_id: &str) -> Task {
    s.task(task_id)
        .expect("task")
        .instance(0)
        .expect("instance 0")
        .into_owned()
}

/// Every task of a scenario as it is played: a family's first few instances.
fn played(s: &Scenario) -> Vec<Task> {
    s.tasks
        .iter()
        .flat_map(|t| (0..3).map(move |seed| t.instance(seed).expect("instance").into_owned()))
        .collect()
}

#[test]
fn the_scenario_has_twelve_tasks_ten_npcs_and_three_seed_documents() {
    let c = catalog();
    let s = recruiting(&c);
    assert!(s.tasks.len() >= 12, "{}", s.tasks.len());
    assert!(s.npcs.len() >= 10, "{}", s.npcs.len());
    assert!(s.seed_files().len() >= 3);
    assert!(npc_dependent(s).len() >= 4);
    let difficulties: std::collections::BTreeSet<_> =
        s.tasks.iter().map(|t| t.difficulty.as_str()).collect();
    assert_eq!(difficulties.len(), 3, "mixed difficulty: {difficulties:?}");
    assert!(s
        .npc("lisa-anderson")
        .is_some_and(|n| n.occupation == "VP of HR / CHRO"));
}

#[test]
fn every_reference_solution_with_scripted_replies_earns_full_credit() {
    let c = catalog();
    let s = recruiting(&c);
    for task in &played(s) {
        let mut env = s.environment(task, 7).expect("environment");
        let trajectory = oracle::run_reference_solution(&mut env, s, task)
            .unwrap_or_else(|e| panic!("{}: {e}", task.task_id));
        let verdict = task.verify(&env.state(), &trajectory);
        let failed: Vec<_> = verdict.checks.iter().filter(|c| !c.passed).collect();
        assert_eq!(verdict.score, 1.0, "{}: {failed:#?}", task.task_id);
        assert_eq!(verdict.label, "Full Credit", "{}", task.task_id);
    }
}

#[test]
fn doing_nothing_earns_no_credit_on_every_task() {
    let c = catalog();
    let s = recruiting(&c);
    for task in &played(s) {
        let env = s.environment(task, 7).expect("environment");
        let trajectory = vec![
            Message::user(task.description.clone()),
            Message::assistant(Some("I will not act.".into()), Vec::new()),
        ];
        let verdict = task.verify(&env.state(), &trajectory);
        assert_eq!(verdict.score, 0.0, "{}", task.task_id);
        assert_eq!(verdict.label, "No Credit", "{}", task.task_id);
    }
}

#[test]
fn without_the_npc_replies_the_npc_dependent_reference_solutions_fall_short() {
    let c = catalog();
    let s = recruiting(&c);
    for task in &npc_dependent(s) {
        let mut env = s.environment(task, 7).expect("environment");
        let run = oracle::replay_reference_solution(&mut env, s, task, false);
        assert!(run.replies.is_empty());
        assert!(
            !run.errors.is_empty(),
            "{}: steps need the reply",
            task.task_id
        );
        let verdict = task.verify(&env.state(), &run.trajectory);
        assert!(verdict.score < 1.0, "{}: {verdict:?}", task.task_id);
    }
}

#[test]
fn the_same_calls_and_replies_give_byte_identical_state() {
    let c = catalog();
    let s = recruiting(&c);
    for task in &played(s) {
        let run = || {
            let mut env = s.environment(task, 42).expect("environment");
            let r = oracle::replay_reference_solution(&mut env, s, task, true);
            (
                serde_json::to_string(&env.state()).expect("json"),
                r.replies,
            )
        };
        assert_eq!(run(), run(), "{}", task.task_id);
    }
}

fn observe(env: &mut Environment, tool: &str, params: Value) -> Value {
    let obs = env.call(tool, &params);
    assert!(!obs.is_error, "{tool}: {}", obs.observation);
    serde_json::from_str(&obs.observation).expect("json observation")
}

#[test]
fn an_npc_answers_an_email_in_the_same_rollout_and_the_agent_reads_it() {
    let c = catalog();
    let s = recruiting(&c);
    let task = &instance0(s, "hr_recruiting__202_schedule_screen_with_candidate");
    let mut env = s.environment(task, 1).expect("environment");
    let before = env.sent_count();
    observe(
        &mut env,
        "send_email",
        json!({"to": ["Tomas.Herrera@example.com"], "subject": "Screen", "body": "When are you free this week?"}),
    );
    let sent = env.sent_since(before);
    assert_eq!(sent.len(), 1);
    let replies = npc::respond_scripted(&mut env, &task.cast(s), &sent[0]);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].profile_id, "tomas-herrera");
    assert!(replies[0].body.contains("14:00 and 16:00 UTC"));

    let inbox = observe(
        &mut env,
        "list_inbox",
        json!({"unread_only": true, "limit": 1}),
    );
    assert_eq!(inbox["emails"][0]["email_id"], json!(replies[0].message_id));
    assert_eq!(
        inbox["emails"][0]["from"],
        json!("tomas.herrera@example.com")
    );
    let mail = observe(
        &mut env,
        "read_email",
        json!({"email_id": replies[0].message_id}),
    );
    assert_eq!(mail["subject"], json!("Re: Screen"));
    assert_eq!(mail["in_reply_to"], json!(sent[0].email_id));
    assert_eq!(mail["thread_id"], json!(sent[0].thread_id));
    assert_eq!(mail["timestamp"], json!("2026-03-02T09:01:00Z"));
    // The agent can answer in the thread, and the person answers that too.
    let before = env.sent_count();
    observe(
        &mut env,
        "reply_to_email",
        json!({"email_id": replies[0].message_id, "body": "Booked: Thursday at 14:30 UTC."}),
    );
    let second = env.sent_since(before).remove(0);
    let again = npc::respond_scripted(&mut env, &task.cast(s), &second);
    assert_eq!(again.len(), 1);
    assert!(again[0].body.contains("14:30 UTC works"));
    assert_eq!(env.email_thread(&again[0].message_id).len(), 4);
}

#[test]
fn mail_to_people_who_are_not_npcs_gets_no_reply() {
    let c = catalog();
    let s = recruiting(&c);
    let task = &instance0(s, "hr_recruiting__205_offer_acceptance_handover");
    let mut env = s.environment(task, 1).expect("environment");
    observe(
        &mut env,
        "send_email",
        json!({"to": ["it-support@techcorp.com", "someone@example.org"], "subject": "Laptop", "body": "Ana Sousa starts soon."}),
    );
    let before_state = env.state();
    let sent = env.sent_since(0);
    assert!(npc::recipients(&s.npcs, &sent[0]).is_empty());
    assert!(npc::respond_scripted(&mut env, &task.cast(s), &sent[0]).is_empty());
    assert_eq!(env.state(), before_state);
}

#[test]
fn npc_replies_never_trigger_more_replies() {
    let c = catalog();
    let s = recruiting(&c);
    let task = &instance0(
        s,
        "hr_recruiting__203_book_panel_with_travelling_interviewer",
    );
    let mut env = s.environment(task, 1).expect("environment");
    observe(
        &mut env,
        "send_email",
        json!({"to": ["kenji.tanaka@techcorp.com"], "cc": ["nadia.petrova@example.com"], "subject": "Panel", "body": "When can you do the panel?"}),
    );
    let first = env.sent_since(0).remove(0);
    let replies = npc::respond_scripted(&mut env, &task.cast(s), &first);
    let who: Vec<_> = replies.iter().map(|r| r.profile_id.as_str()).collect();
    assert_eq!(who, ["kenji-tanaka", "nadia-petrova"]);
    // Kenji's reply copies Nadia (reply-all); it is incoming mail, not the agent's, so
    // nobody answers it.
    let thread = env.email_thread(&replies[0].message_id);
    let kenji = thread
        .iter()
        .find(|m| m.email_id == replies[0].message_id)
        .expect("in thread");
    assert_eq!(kenji.cc, ["nadia.petrova@example.com"]);
    assert!(npc::recipients(&s.npcs, kenji).is_empty());
    assert!(npc::respond_scripted(&mut env, &task.cast(s), kenji).is_empty());
    assert_eq!(env.sent_count(), 1);
}

#[test]
fn a_delivered_reply_replays_from_its_recorded_text() {
    let c = catalog();
    let s = recruiting(&c);
    let task = &instance0(s, "hr_recruiting__204_offer_above_midpoint_needs_chro");
    let mut live = s.environment(task, 3).expect("environment");
    observe(
        &mut live,
        "send_email",
        json!({"to": ["lisa.anderson@techcorp.com"], "subject": "Approval", "body": "Approve $182,000?"}),
    );
    let planned = npc::plan_scripted(&task.cast(s), &live.sent_since(0)[0]);
    let recorded = serde_json::to_string(&planned).expect("record");
    for p in &planned {
        npc::deliver(&mut live, p).expect("deliver");
    }
    // Rebuild: the same call, then the recorded reply (not recomputed).
    let mut rebuilt = s.environment(task, 3).expect("environment");
    observe(
        &mut rebuilt,
        "send_email",
        json!({"to": ["lisa.anderson@techcorp.com"], "subject": "Approval", "body": "Approve $182,000?"}),
    );
    let replayed: Vec<npc::PlannedReply> = serde_json::from_str(&recorded).expect("read back");
    for p in &replayed {
        npc::deliver(&mut rebuilt, p).expect("deliver");
    }
    assert_eq!(
        serde_json::to_string(&live.state()).expect("json"),
        serde_json::to_string(&rebuilt.state()).expect("json")
    );
}

#[test]
fn the_hr_scenario_still_loads_and_its_npcs_stay_silent_when_scripted() {
    let c = catalog();
    let hr = c.get("hr").expect("hr");
    assert!(hr.tasks.iter().all(|t| t.npc_behaviour.is_empty()));
}
