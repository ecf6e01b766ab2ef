//! The email server: one mailbox (the agent's, e.g. `hr-ops@…`) with inbox, sent and
//! archive folders. Sending never leaves the simulation; a sent message is what the
//! `email_sent` check looks for.
//!
//! Mail from the simulated people arrives through [`Environment::deliver_email`],
//! which is not an agent tool: the step loop calls it with a reply it has already
//! decided (scripted, or written by the user model) and recorded, so replaying the
//! recorded reply rebuilds the same mailbox.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use chrono::Duration;

use super::{
    is_email, next_id, spec, Ctx, Environment, Kind, Params, ToolServer, ToolSpec,
    CLOCK_STEP_SECONDS,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailMessage {
    pub email_id: String,
    /// `inbox`, `sent` or `archive`.
    pub folder: String,
    pub from: String,
    pub to: Vec<String>,
    #[serde(default)]
    pub cc: Vec<String>,
    pub subject: String,
    pub body: String,
    pub timestamp: String,
    #[serde(default)]
    pub read: bool,
    #[serde(default)]
    pub in_reply_to: Option<String>,
    pub thread_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailServer {
    /// The mailbox's address: the sender of everything the agent sends.
    pub owner: String,
    #[serde(default)]
    pub messages: Vec<EmailMessage>,
}

/// A message arriving from outside the agent's tools, e.g. a simulated person's
/// reply. This is what the step loop records, so it is plain serialisable data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncomingEmail {
    pub from: String,
    pub to: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cc: Vec<String>,
    pub subject: String,
    pub body: String,
    /// The message answered (joins its thread).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_reply_to: Option<String>,
}

const FOLDERS: &[&str] = &["inbox", "sent", "archive"];

impl EmailServer {
    pub fn from_seed(seed: &Value) -> Result<Self, String> {
        let mut server: EmailServer = if seed.as_object().is_some_and(Map::is_empty) {
            EmailServer {
                owner: "agent@example.com".into(),
                messages: Vec::new(),
            }
        } else {
            serde_json::from_value(seed.clone()).map_err(|e| e.to_string())?
        };
        for m in &server.messages {
            if !FOLDERS.contains(&m.folder.as_str()) {
                return Err(format!(
                    "message {} has unknown folder `{}`",
                    m.email_id, m.folder
                ));
            }
        }
        let mut ids: Vec<&str> = server
            .messages
            .iter()
            .map(|m| m.email_id.as_str())
            .collect();
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return Err("duplicate email_id".into());
        }
        server.messages.sort_by(|a, b| a.email_id.cmp(&b.email_id));
        Ok(server)
    }

    fn find(&self, id: &str) -> Result<usize, String> {
        self.messages.iter().position(|m| m.email_id == id).ok_or_else(|| {
            format!("no email with email_id `{id}`. Use list_inbox, list_sent or search_emails to find ids")
        })
    }

    fn summary(m: &EmailMessage) -> Value {
        json!({
            "email_id": m.email_id, "folder": m.folder, "from": m.from, "to": m.to,
            "subject": m.subject, "timestamp": m.timestamp, "read": m.read,
        })
    }

    /// Newest first.
    fn listing<'a>(&'a self, keep: impl Fn(&EmailMessage) -> bool, limit: u64) -> Value {
        let mut hits: Vec<&'a EmailMessage> = self.messages.iter().filter(|m| keep(m)).collect();
        hits.sort_by(|a, b| {
            b.timestamp
                .cmp(&a.timestamp)
                .then(b.email_id.cmp(&a.email_id))
        });
        let total = hits.len();
        let shown: Vec<Value> = hits
            .into_iter()
            .take(limit as usize)
            .map(Self::summary)
            .collect();
        json!({"total": total, "emails": shown})
    }

    fn send(
        &mut self,
        ctx: &Ctx,
        to: Vec<String>,
        cc: Vec<String>,
        subject: String,
        body: String,
        // (in_reply_to, thread_id) of the message answered
        reply: Option<(String, String)>,
    ) -> Result<Value, String> {
        let (in_reply_to, thread_id) = reply.map_or((None, None), |(m, t)| (Some(m), Some(t)));
        for addr in to.iter().chain(cc.iter()) {
            if !is_email(addr) {
                return Err(format!(
                    "`{addr}` is not a valid email address (expected name@domain)"
                ));
            }
        }
        let id = next_id("msg_", 4, self.messages.iter().map(|m| m.email_id.as_str()));
        let thread = thread_id.unwrap_or_else(|| id.replace("msg_", "thr_"));
        self.messages.push(EmailMessage {
            email_id: id.clone(),
            folder: "sent".into(),
            from: self.owner.clone(),
            to: to.clone(),
            cc,
            subject: subject.clone(),
            body,
            timestamp: ctx.now_text(),
            read: true,
            in_reply_to,
            thread_id: thread.clone(),
        });
        Ok(
            json!({"status": "sent", "email_id": id, "thread_id": thread, "to": to, "subject": subject, "timestamp": ctx.now_text()}),
        )
    }
}

impl EmailServer {
    /// Puts an incoming message into the inbox (unread). With `in_reply_to` it joins
    /// that message's thread. Returns the new message id.
    pub fn deliver(&mut self, ctx: &Ctx, mail: &IncomingEmail) -> Result<String, String> {
        if !is_email(&mail.from) {
            return Err(format!(
                "sender `{}` is not a valid email address",
                mail.from
            ));
        }
        if mail.to.is_empty() {
            return Err("an incoming email needs at least one recipient".into());
        }
        if let Some(bad) = mail.to.iter().chain(mail.cc.iter()).find(|a| !is_email(a)) {
            return Err(format!("recipient `{bad}` is not a valid email address"));
        }
        let thread = match &mail.in_reply_to {
            Some(id) => Some(self.messages[self.find(id)?].thread_id.clone()),
            None => None,
        };
        let id = next_id("msg_", 4, self.messages.iter().map(|m| m.email_id.as_str()));
        let thread_id = thread.unwrap_or_else(|| id.replace("msg_", "thr_"));
        self.messages.push(EmailMessage {
            email_id: id.clone(),
            folder: "inbox".into(),
            from: mail.from.clone(),
            to: mail.to.clone(),
            cc: mail.cc.clone(),
            subject: mail.subject.clone(),
            body: mail.body.clone(),
            timestamp: ctx.now_text(),
            read: false,
            in_reply_to: mail.in_reply_to.clone(),
            thread_id,
        });
        Ok(id)
    }

    /// Messages in the sent folder, oldest first.
    pub fn sent(&self) -> impl Iterator<Item = &EmailMessage> {
        self.messages.iter().filter(|m| m.folder == "sent")
    }

    /// Every message of a thread, oldest first.
    pub fn thread(&self, thread_id: &str) -> Vec<EmailMessage> {
        let mut out: Vec<EmailMessage> = self
            .messages
            .iter()
            .filter(|m| m.thread_id == thread_id)
            .cloned()
            .collect();
        out.sort_by(|a, b| {
            a.timestamp
                .cmp(&b.timestamp)
                .then(a.email_id.cmp(&b.email_id))
        });
        out
    }
}

/// Mail the environment receives from outside the agent's tools (simulated people).
impl Environment {
    fn email_server(&self) -> Option<&EmailServer> {
        self.servers.iter().find_map(|(_, s)| match &s.kind {
            Kind::Email(e) => Some(e),
            _ => None,
        })
    }

    /// The agent's mailbox address, when the environment has an email server.
    pub fn mailbox_owner(&self) -> Option<String> {
        self.email_server().map(|e| e.owner.clone())
    }

    /// Delivers an incoming email into the agent's inbox at the simulated time, then
    /// advances the clock as a state-changing call does (the person took a moment to
    /// answer). The text is an input: the caller decides it and records it, so a replay
    /// delivers the same bytes. Returns the new message id (`msg_NNNN`).
    pub fn deliver_email(&mut self, mail: &IncomingEmail) -> Result<String, String> {
        let ctx = Ctx { now: self.now };
        let position = self
            .servers
            .iter()
            .position(|(_, s)| matches!(s.kind, Kind::Email(_)))
            .ok_or("this environment has no email server")?;
        let Kind::Email(server) = Arc::make_mut(&mut self.servers[position].1).kind_mut() else {
            return Err("this environment has no email server".into());
        };
        let id = server.deliver(&ctx, mail)?;
        self.now += Duration::seconds(CLOCK_STEP_SECONDS);
        self.steps += 1;
        Ok(id)
    }

    /// How many emails the agent has sent so far (a cursor for [`Self::sent_since`]).
    pub fn sent_count(&self) -> usize {
        self.email_server().map_or(0, |e| e.sent().count())
    }

    /// The emails the agent sent after the first `n`, oldest first: what a step
    /// just sent when `n` is [`Self::sent_count`] taken before it.
    pub fn sent_since(&self, n: usize) -> Vec<EmailMessage> {
        self.email_server()
            .map(|e| e.sent().skip(n).cloned().collect())
            .unwrap_or_default()
    }

    /// The thread a message belongs to, oldest first (empty when unknown).
    pub fn email_thread(&self, email_id: &str) -> Vec<EmailMessage> {
        let Some(server) = self.email_server() else {
            return Vec::new();
        };
        match server.messages.iter().find(|m| m.email_id == email_id) {
            Some(m) => server.thread(&m.thread_id),
            None => Vec::new(),
        }
    }
}

impl ToolServer for EmailServer {
    fn name(&self) -> &'static str {
        "email"
    }

    fn tools(&self) -> Vec<ToolSpec> {
        let id =
            json!({"type": "string", "description": "Email id, e.g. msg_0001", "minLength": 1});
        let limit = json!({"type": "integer", "minimum": 1, "maximum": 100, "description": "Maximum number of emails to return (default 20)"});
        let addrs = |d: &str| json!({"type": "array", "items": {"type": "string", "format": "email"}, "description": d});
        vec![
            spec("list_inbox", "List emails in the inbox, newest first (id, sender, subject, time, read flag).", false, json!({
                "type": "object", "additionalProperties": false,
                "properties": {"unread_only": {"type": "boolean", "description": "Only unread emails"}, "limit": limit},
            })),
            spec("search_emails", "Search emails by sender, recipient, subject or body text (case-insensitive substring matches; all given filters must match).", false, json!({
                "type": "object", "additionalProperties": false,
                "properties": {
                    "from": {"type": "string", "description": "Part of the sender address"},
                    "to": {"type": "string", "description": "Part of a recipient address (to or cc)"},
                    "subject_contains": {"type": "string"},
                    "body_contains": {"type": "string"},
                    "unread_only": {"type": "boolean"},
                    "folder": {"type": "string", "enum": ["inbox", "sent", "archive", "any"], "description": "Folder to search (default any)"},
                    "limit": limit,
                },
            })),
            spec("read_email", "Read one email in full (headers and body).", false, json!({
                "type": "object", "additionalProperties": false, "required": ["email_id"],
                "properties": {"email_id": id},
            })),
            spec("send_email", "Send a new email from this mailbox.", true, json!({
                "type": "object", "additionalProperties": false, "required": ["to", "subject", "body"],
                "properties": {
                    "to": {"type": "array", "items": {"type": "string", "format": "email"}, "minItems": 1, "description": "Recipient addresses"},
                    "cc": addrs("Carbon-copy addresses"),
                    "subject": {"type": "string", "minLength": 1},
                    "body": {"type": "string", "minLength": 1, "description": "Plain-text body"},
                },
            })),
            spec("reply_to_email", "Reply to an email: goes to its sender (and, with reply_all, to its other recipients), subject prefixed with Re:, same thread.", true, json!({
                "type": "object", "additionalProperties": false, "required": ["email_id", "body"],
                "properties": {
                    "email_id": id,
                    "body": {"type": "string", "minLength": 1},
                    "reply_all": {"type": "boolean", "description": "Also reply to the other to/cc recipients (default false)"},
                },
            })),
            spec("mark_read", "Mark an email as read (or unread with read=false).", true, json!({
                "type": "object", "additionalProperties": false, "required": ["email_id"],
                "properties": {"email_id": id, "read": {"type": "boolean", "description": "Default true"}},
            })),
            spec("list_sent", "List emails sent from this mailbox, newest first.", false, json!({
                "type": "object", "additionalProperties": false,
                "properties": {"limit": limit},
            })),
            spec("archive_email", "Move an inbox email to the archive folder.", true, json!({
                "type": "object", "additionalProperties": false, "required": ["email_id"],
                "properties": {"email_id": id},
            })),
        ]
    }

    fn step(
        &mut self,
        ctx: &Ctx,
        tool: &str,
        params: &Map<String, Value>,
    ) -> Result<Value, String> {
        let p = Params(params);
        let limit = p.u64_or("limit", 20);
        match tool {
            "list_inbox" => {
                let unread = p.bool_or("unread_only", false);
                Ok(self.listing(|m| m.folder == "inbox" && (!unread || !m.read), limit))
            }
            "search_emails" => {
                let lower = |k: &str| p.opt_str(k).map(str::to_lowercase);
                let (from, to, subject, body) = (
                    lower("from"),
                    lower("to"),
                    lower("subject_contains"),
                    lower("body_contains"),
                );
                let folder = p.opt_str("folder").unwrap_or("any");
                let unread = p.bool_or("unread_only", false);
                Ok(self.listing(
                    |m| {
                        (folder == "any" || m.folder == folder)
                            && (!unread || !m.read)
                            && from
                                .as_ref()
                                .is_none_or(|f| m.from.to_lowercase().contains(f))
                            && to.as_ref().is_none_or(|t| {
                                m.to.iter()
                                    .chain(m.cc.iter())
                                    .any(|a| a.to_lowercase().contains(t))
                            })
                            && subject
                                .as_ref()
                                .is_none_or(|s| m.subject.to_lowercase().contains(s))
                            && body
                                .as_ref()
                                .is_none_or(|s| m.body.to_lowercase().contains(s))
                    },
                    limit,
                ))
            }
            "read_email" => {
                let i = self.find(p.str("email_id")?)?;
                serde_json::to_value(&self.messages[i]).map_err(|e| e.to_string())
            }
            "send_email" => self.send(
                ctx,
                p.strings("to").unwrap_or_default(),
                p.strings("cc").unwrap_or_default(),
                p.str("subject")?.to_string(),
                p.str("body")?.to_string(),
                None,
            ),
            "reply_to_email" => {
                let original = self.messages[self.find(p.str("email_id")?)?].clone();
                let me = self.owner.to_lowercase();
                let mut to = if original.from.to_lowercase() == me {
                    original.to.clone()
                } else {
                    vec![original.from.clone()]
                };
                let mut cc = Vec::new();
                if p.bool_or("reply_all", false) {
                    for a in original.to.iter().chain(original.cc.iter()) {
                        if a.to_lowercase() != me && !to.iter().any(|t| t.eq_ignore_ascii_case(a)) {
                            cc.push(a.clone());
                        }
                    }
                }
                to.dedup();
                let subject = if original.subject.to_lowercase().starts_with("re:") {
                    original.subject.clone()
                } else {
                    format!("Re: {}", original.subject)
                };
                self.send(
                    ctx,
                    to,
                    cc,
                    subject,
                    p.str("body")?.to_string(),
                    Some((original.email_id, original.thread_id)),
                )
            }
            "mark_read" => {
                let i = self.find(p.str("email_id")?)?;
                let read = p.bool_or("read", true);
                self.messages[i].read = read;
                Ok(json!({"status": "ok", "email_id": self.messages[i].email_id, "read": read}))
            }
            "list_sent" => Ok(self.listing(|m| m.folder == "sent", limit)),
            "archive_email" => {
                let i = self.find(p.str("email_id")?)?;
                let m = &mut self.messages[i];
                if m.folder != "inbox" {
                    return Err(format!(
                        "email {} is in `{}`; only inbox emails can be archived",
                        m.email_id, m.folder
                    ));
                }
                m.folder = "archive".into();
                Ok(json!({"status": "archived", "email_id": m.email_id}))
            }
            other => Err(format!("unknown tool `{other}` on the email server")),
        }
    }

    fn data(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    fn human_readable(&self) -> String {
        let count = |f: &str| self.messages.iter().filter(|m| m.folder == f).count();
        let unread = self
            .messages
            .iter()
            .filter(|m| m.folder == "inbox" && !m.read)
            .count();
        let mut out = format!(
            "Mailbox {}: {} in inbox ({unread} unread), {} sent, {} archived\n",
            self.owner,
            count("inbox"),
            count("sent"),
            count("archive")
        );
        for m in &self.messages {
            let flag = if m.read { ' ' } else { '*' };
            let who = if m.folder == "sent" {
                format!("to {}", m.to.join(", "))
            } else {
                format!("from {}", m.from)
            };
            out.push_str(&format!(
                "{flag} [{}] {} {} {who}: {}\n",
                m.folder, m.email_id, m.timestamp, m.subject
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests;
