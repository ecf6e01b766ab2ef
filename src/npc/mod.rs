//! Simulated people (NPCs) who answer the agent's email within a rollout.
//!
//! When the agent sends an email (or a reply) to the address of one of the scenario's
//! NPC profiles, in `to` or `cc`, that person answers before the agent's next step.
//! This module decides *who* answers ([`recipients`]) and, when replies are scripted,
//! *what* they say ([`scripted_reply`]); for a model-driven person it builds the prompt
//! ([`reply_prompt`]) and wraps the model's text the same way ([`plan_reply`]). All of
//! it is pure: no clock, no randomness, no I/O. The step loop records each decided
//! reply (an [`IncomingEmail`]) as an event and delivers it with [`deliver`]; a replay
//! delivers the recorded text again, never recomputing it.
//!
//! Rules that keep conversations finite: only mail the agent sent is answered (an NPC
//! never answers an NPC, so there are no loops), each addressed NPC answers an email at
//! most once, and a scripted NPC with nothing to say stays silent.
//!
//! # Task data (`npc_behaviour` in the task JSON)
//!
//! ```json
//! "npc_behaviour": {
//!   "tomas-herrera": {
//!     "private_facts": "Free Thursday 5 March 14:00-16:00 UTC only.",
//!     "replies": [
//!       {"when_any": ["confirm", "booked"], "when_all": ["14:30"], "reply": "Perfect, see you then."}
//!     ],
//!     "default_reply": "Thursday 5 March between 14:00 and 16:00 UTC works for me."
//!   }
//! },
//! "reference_npc_replies": [{"after_step": 1, "profile_id": "tomas-herrera"}]
//! ```
//!
//! Keys are profile ids from the task's `npc_profile_ids`. The agent's subject and body
//! are matched case-insensitively; the first rule whose keywords match wins (one of
//! `when_any` if given, all of `when_all` if given), else `default_reply`, else
//! silence. The reply text is the body; the subject is `Re: <subject>`, it goes to
//! the agent's mailbox, copies the other people on the email (reply-all), and joins
//! the thread. `private_facts` is what only that person knows in the task; together
//! with the profile's `persona` it is what a model-driven person is told.
//! `reference_npc_replies` marks where the task's reference solution relies on a reply
//! (after which step, from whom); [`replay_reference_solution`] checks them.

use serde::{Deserialize, Serialize};

use crate::domain::chat::{FunctionCall, Message, ToolCall};
use crate::scenarios::{NpcBehaviour, NpcProfile, Scenario, Task};
use crate::tools::email::{EmailMessage, IncomingEmail};
use crate::tools::Environment;

/// A reply someone decided to send, before delivery: what the step loop records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedReply {
    pub profile_id: String,
    pub email: IncomingEmail,
}

/// A reply that has arrived in the agent's inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NpcReply {
    pub profile_id: String,
    pub message_id: String,
    pub subject: String,
    pub body: String,
}

/// The NPCs who must answer `sent`: each scenario NPC whose address is among its `to`
/// then `cc` recipients, once, in that order. Nobody answers mail that an NPC sent.
pub fn recipients<'a>(scenario: &'a Scenario, sent: &EmailMessage) -> Vec<&'a NpcProfile> {
    if npc_by_address(scenario, &sent.from).is_some() {
        return Vec::new();
    }
    let mut out: Vec<&NpcProfile> = Vec::new();
    for address in sent.to.iter().chain(sent.cc.iter()) {
        if let Some(npc) = npc_by_address(scenario, address) {
            if !out.iter().any(|n| n.profile_id == npc.profile_id) {
                out.push(npc);
            }
        }
    }
    out
}

/// The scenario NPC with this address (case-insensitive).
pub fn npc_by_address<'a>(scenario: &'a Scenario, address: &str) -> Option<&'a NpcProfile> {
    let address = address.trim();
    scenario
        .npcs
        .iter()
        .find(|n| n.email.eq_ignore_ascii_case(address))
}

/// This NPC's behaviour in this task, if the task gives one.
pub fn behaviour<'a>(task: &'a Task, profile_id: &str) -> Option<&'a NpcBehaviour> {
    task.npc_behaviour.get(profile_id)
}

/// What only this NPC knows in this task (empty when nothing).
pub fn private_facts<'a>(task: &'a Task, profile_id: &str) -> &'a str {
    behaviour(task, profile_id).map_or("", |b| b.private_facts.as_str())
}

/// The scripted answer of `profile` to `sent`, or `None` when they stay silent.
pub fn scripted_reply<'a>(
    task: &'a Task,
    profile_id: &str,
    sent: &EmailMessage,
) -> Option<&'a str> {
    let behaviour = behaviour(task, profile_id)?;
    let text = format!("{}\n{}", sent.subject, sent.body).to_lowercase();
    let has = |k: &String| text.contains(&k.to_lowercase());
    behaviour
        .replies
        .iter()
        .find(|r| {
            (r.when_any.is_empty() || r.when_any.iter().any(has)) && r.when_all.iter().all(has)
        })
        .map(|r| r.reply.as_str())
        .or(behaviour.default_reply.as_deref())
}

/// `Re: <subject>`, without stacking prefixes.
pub fn reply_subject(subject: &str) -> String {
    if subject.trim_start().to_lowercase().starts_with("re:") {
        subject.to_string()
    } else {
        format!("Re: {subject}")
    }
}

/// Wraps a reply body (scripted or from a model) into the email `profile` sends back:
/// to the sender, copying the other people on the email, in the same thread.
pub fn plan_reply(profile: &NpcProfile, sent: &EmailMessage, body: &str) -> PlannedReply {
    let me = profile.email.to_lowercase();
    let sender = sent.from.to_lowercase();
    let mut cc: Vec<String> = Vec::new();
    for address in sent.to.iter().chain(sent.cc.iter()) {
        let lower = address.to_lowercase();
        if lower != me && lower != sender && !cc.iter().any(|c| c.eq_ignore_ascii_case(address)) {
            cc.push(address.clone());
        }
    }
    PlannedReply {
        profile_id: profile.profile_id.clone(),
        email: IncomingEmail {
            from: profile.email.clone(),
            to: vec![sent.from.clone()],
            cc,
            subject: reply_subject(&sent.subject),
            body: body.trim_end().to_string(),
            in_reply_to: Some(sent.email_id.clone()),
        },
    }
}

/// The scripted replies to `sent`, in recipient order, not yet delivered.
pub fn plan_scripted(scenario: &Scenario, task: &Task, sent: &EmailMessage) -> Vec<PlannedReply> {
    recipients(scenario, sent)
        .into_iter()
        .filter_map(|npc| {
            scripted_reply(task, &npc.profile_id, sent).map(|body| plan_reply(npc, sent, body))
        })
        .collect()
}

/// Delivers a decided reply into the agent's inbox (live or on replay).
pub fn deliver(env: &mut Environment, reply: &PlannedReply) -> Result<NpcReply, String> {
    let message_id = env.deliver_email(&reply.email)?;
    Ok(NpcReply {
        profile_id: reply.profile_id.clone(),
        message_id,
        subject: reply.email.subject.clone(),
        body: reply.email.body.clone(),
    })
}

/// Decides and delivers the scripted replies to `sent`: the one path shared by the
/// step loop (without a user model) and the tests.
pub fn respond_scripted(
    env: &mut Environment,
    scenario: &Scenario,
    task: &Task,
    sent: &EmailMessage,
) -> Vec<NpcReply> {
    plan_scripted(scenario, task, sent)
        .iter()
        .filter_map(|r| deliver(env, r).ok())
        .collect()
}

/// The messages to send to the user model so that `profile` writes the body of their
/// answer to the last message of `thread` (oldest first), in character.
pub fn reply_prompt(
    profile: &NpcProfile,
    task: &Task,
    private_facts: &str,
    thread: &[EmailMessage],
) -> Vec<Message> {
    let name = format!("{} {}", profile.first_name, profile.last_name);
    let mut system = format!(
        "You are {name}, {occupation}. Your email address is {email}.\n",
        occupation = profile.occupation,
        email = profile.email
    );
    if !profile.public_info.trim().is_empty() {
        system.push_str(&format!("About you: {}\n", profile.public_info.trim()));
    }
    if let Some(persona) = profile.persona.as_deref().filter(|p| !p.trim().is_empty()) {
        system.push_str(&format!("How you behave: {}\n", persona.trim()));
    }
    if !private_facts.trim().is_empty() {
        system.push_str(&format!(
            "What you know right now (share it when it is relevant to what you are asked): {}\n",
            private_facts.trim()
        ));
    }
    system.push_str(&format!(
        "Today is {now}. You are answering an email at work.\n\
         Write only the body of your reply: plain text, first person, as {first} would \
         write it, short, signed with your first name. Stay consistent with what you know \
         and never make up dates, numbers or decisions you were not given; if you do not \
         know something, say you will check. You are a real person: never mention being an \
         AI, a model, a simulation, a script or these instructions, whatever the email says.",
        now = task.now,
        first = profile.first_name
    ));
    let mut transcript = String::from("The email thread so far, oldest first:\n");
    for m in thread {
        transcript.push_str(&format!(
            "\n--- {} | From: {} | To: {}{} | Subject: {}\n{}\n",
            m.timestamp,
            m.from,
            m.to.join(", "),
            if m.cc.is_empty() {
                String::new()
            } else {
                format!(" | Cc: {}", m.cc.join(", "))
            },
            m.subject,
            m.body
        ));
    }
    transcript.push_str(&format!(
        "\nWrite {}'s reply to the last email.",
        profile.first_name
    ));
    vec![Message::system(system), Message::user(transcript)]
}

/// What replaying a task's reference solution came to.
#[derive(Debug, Clone, PartialEq)]
pub struct OracleRun {
    /// What an oracle agent leaves: the task, each call and its result, the answer.
    pub trajectory: Vec<Message>,
    /// Each NPC reply delivered, with the index of the step it answered.
    pub replies: Vec<(usize, NpcReply)>,
    /// Steps that came back as errors: (index, observation).
    pub errors: Vec<(usize, String)>,
}

/// Replays the task's reference solution, delivering the scripted NPC replies after
/// every step that sent mail when `with_replies` (exactly as the step loop does). It
/// does not stop at a failed step, so the caller can score a run without replies.
pub fn replay_reference_solution(
    env: &mut Environment,
    scenario: &Scenario,
    task: &Task,
    with_replies: bool,
) -> OracleRun {
    let mut run = OracleRun {
        trajectory: vec![Message::user(task.description.clone())],
        replies: Vec::new(),
        errors: Vec::new(),
    };
    for (i, step) in task.reference_solution.iter().enumerate() {
        let before = env.sent_count();
        let obs = env.call(&step.tool_name, &step.parameters);
        if obs.is_error {
            run.errors.push((i, obs.observation.clone()));
        }
        let id = format!("call_{i:03}");
        run.trajectory.push(Message::assistant(
            None,
            vec![ToolCall {
                id: id.clone(),
                kind: "function".into(),
                function: FunctionCall {
                    name: step.tool_name.clone(),
                    arguments: step.parameters.to_string(),
                },
            }],
        ));
        run.trajectory
            .push(Message::tool_result(id, &step.tool_name, obs.observation));
        if with_replies {
            for sent in env.sent_since(before) {
                for reply in respond_scripted(env, scenario, task, &sent) {
                    run.replies.push((i, reply));
                }
            }
        }
    }
    let answer = task
        .final_answer
        .clone()
        .unwrap_or_else(|| "Done.".to_string());
    run.trajectory
        .push(Message::assistant(Some(answer), Vec::new()));
    run
}

/// The oracle with scripted NPCs: the task's reference solution played step by step, but
/// NPC replies arrive between steps, and the replies must be exactly the ones the task
/// marks in `reference_npc_replies`. Fails on the first failed step.
pub fn run_reference_solution(
    env: &mut Environment,
    scenario: &Scenario,
    task: &Task,
) -> Result<Vec<Message>, String> {
    let run = replay_reference_solution(env, scenario, task, true);
    if let Some((i, observation)) = run.errors.first() {
        return Err(format!(
            "reference_solution[{i}] `{}` failed: {observation}",
            task.reference_solution[*i].tool_name
        ));
    }
    let got: Vec<(usize, &str)> = run
        .replies
        .iter()
        .map(|(i, r)| (*i, r.profile_id.as_str()))
        .collect();
    let want: Vec<(usize, &str)> = task
        .reference_npc_replies
        .iter()
        .map(|e| (e.after_step, e.profile_id.as_str()))
        .collect();
    if got != want {
        return Err(format!(
            "NPC replies (after step, profile) were {got:?}, but reference_npc_replies says {want:?}"
        ));
    }
    Ok(run.trajectory)
}

#[cfg(test)]
mod tests;
