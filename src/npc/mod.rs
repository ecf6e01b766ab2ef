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
//! (after which step, from whom); `scenarios::oracle` checks them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::chat::Message;
use crate::tools::email::{EmailMessage, IncomingEmail};
use crate::tools::Environment;

/// A simulated person the agent may deal with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NpcProfile {
    pub profile_id: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub occupation: String,
    #[serde(default)]
    pub public_info: String,
    /// What only the NPC knows and how it behaves (drives the simulated replies). Read
    /// from `npcs.json` but never serialised: it is not part of the public profile.
    #[serde(default, skip_serializing)]
    pub persona: Option<String>,
}

/// One NPC's behaviour in one task: private facts (for model-driven replies and the
/// people who write the scripts) and scripted replies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NpcBehaviour {
    /// What only this person knows in this task (e.g. their availability).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub private_facts: String,
    /// Tried in order; the first whose keywords match the agent's email is the reply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replies: Vec<ScriptedReply>,
    /// The reply when no rule matches; without one the person does not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_reply: Option<String>,
}

/// A scripted reply and when it is given: keywords are matched case-insensitively
/// against the subject and body of the agent's email; the rule matches when one of
/// `when_any` (if given) and every one of `when_all` (if given) occur.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedReply {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when_any: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when_all: Vec<String>,
    /// The body of the reply, plain text.
    pub reply: String,
}

/// A task's simulated people: the scenario's profiles and how each behaves in the
/// task (a scenario's task hands it out: `Task::cast`).
#[derive(Debug, Clone, Copy)]
pub struct Cast<'a> {
    pub people: &'a [NpcProfile],
    /// Profile id → behaviour; a person without one stays silent when scripted.
    pub behaviour: &'a BTreeMap<String, NpcBehaviour>,
    /// The task's clock: the day a model-driven person is told it is.
    pub now: &'a str,
}

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
pub fn recipients<'a>(people: &'a [NpcProfile], sent: &EmailMessage) -> Vec<&'a NpcProfile> {
    if npc_by_address(people, &sent.from).is_some() {
        return Vec::new();
    }
    let mut out: Vec<&NpcProfile> = Vec::new();
    for address in sent.to.iter().chain(sent.cc.iter()) {
        if let Some(npc) = npc_by_address(people, address) {
            if !out.iter().any(|n| n.profile_id == npc.profile_id) {
                out.push(npc);
            }
        }
    }
    out
}

/// The person with this address (case-insensitive).
pub fn npc_by_address<'a>(people: &'a [NpcProfile], address: &str) -> Option<&'a NpcProfile> {
    let address = address.trim();
    people
        .iter()
        .find(|n| n.email.eq_ignore_ascii_case(address))
}

/// What only this person knows in this task (empty when nothing).
pub fn private_facts<'a>(cast: &Cast<'a>, profile_id: &str) -> &'a str {
    cast.behaviour
        .get(profile_id)
        .map_or("", |b| b.private_facts.as_str())
}

/// The scripted answer of `profile` to `sent`, or `None` when they stay silent.
pub fn scripted_reply<'a>(
    cast: &Cast<'a>,
    profile_id: &str,
    sent: &EmailMessage,
) -> Option<&'a str> {
    let behaviour = cast.behaviour.get(profile_id)?;
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
pub fn plan_scripted(cast: &Cast, sent: &EmailMessage) -> Vec<PlannedReply> {
    recipients(cast.people, sent)
        .into_iter()
        .filter_map(|npc| {
            scripted_reply(cast, &npc.profile_id, sent).map(|body| plan_reply(npc, sent, body))
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
pub fn respond_scripted(env: &mut Environment, cast: &Cast, sent: &EmailMessage) -> Vec<NpcReply> {
    plan_scripted(cast, sent)
        .iter()
        .filter_map(|r| deliver(env, r).ok())
        .collect()
}

/// The messages to send to the user model so that `profile` writes the body of their
/// answer to the last message of `thread` (oldest first), in character.
pub fn reply_prompt(profile: &NpcProfile, cast: &Cast, thread: &[EmailMessage]) -> Vec<Message> {
    let private_facts = private_facts(cast, &profile.profile_id);
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
        now = cast.now,
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

#[cfg(test)]
mod tests;
