//! The ticketing server: an IT service desk modelled on Jira Service Management,
//! ServiceNow and Zendesk. It owns tickets (queue, priority P1–P4, status, SLA due
//! time, public and internal comments, links, merges), the people and support groups
//! with their shifts and on-call engineers, the asset inventory (CMDB), software
//! licenses with a fixed number of seats, account resets, and a knowledge base that
//! serves the scenario's seed documents (read-only, like the HRMS documents).
//!
//! Business rules the agent meets as in-band errors: a status change outside the
//! workflow (the error names the allowed next statuses), resolving without a
//! resolution note, changing or commenting on a closed ticket, assigning outside the
//! ticket's group or to someone on leave, a P1 for someone neither on shift nor on
//! call, assigning an asset that is not in stock, a license with no free seat or
//! without the manager's approval it needs, and resetting a privileged or disabled
//! account. Every check happens before anything changes, so a refused call leaves the
//! state as it was.
//!
//! Over 600 lines: every tool reads and changes the same private tickets and their SLA
//! clock, so they stay together.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, Timelike, Utc, Weekday};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{
    documents, fmt_datetime, next_id, parse_datetime, spec, Ctx, Params, ToolServer, ToolSpec,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub user_id: String,
    pub name: String,
    pub email: String,
    pub department: String,
    pub title: String,
    #[serde(default)]
    pub manager_id: Option<String>,
    #[serde(default)]
    pub location: String,
    /// `employee` or `technician` (only technicians take tickets).
    pub role: String,
    /// Working hours in UTC, Monday to Friday, like `08:00-16:00` (technicians).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift: Option<String>,
    #[serde(default)]
    pub on_leave: bool,
    #[serde(default)]
    pub vip: bool,
    /// Admin accounts: only the Identity & Access group may reset them.
    #[serde(default)]
    pub privileged: bool,
    /// `active`, `locked` or `disabled`.
    pub account_status: String,
    #[serde(default)]
    pub password_reset_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub group_id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub members: Vec<String>,
    /// Who answers P1s when nobody in the group is on shift.
    #[serde(default)]
    pub on_call: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Comment {
    pub author: String,
    pub text: String,
    /// Public comments are visible to the requester; internal ones (work notes) are not.
    pub public: bool,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    pub ticket_id: String,
    /// `related`, `parent`, `child`, `duplicate_of` or `duplicate`.
    pub relation: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ticket {
    pub ticket_id: String,
    /// `incident` or `request`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub description: String,
    pub requester: String,
    #[serde(default)]
    pub assignee: Option<String>,
    pub group: String,
    /// `P1` (critical) to `P4` (low).
    pub priority: String,
    /// `new`, `open`, `pending`, `resolved` or `closed`.
    pub status: String,
    pub category: String,
    #[serde(default)]
    pub tags: Vec<String>,
    pub created_at: String,
    #[serde(default)]
    pub updated_at: String,
    /// Resolution due: `created_at` plus the priority's SLA (always recomputed).
    #[serde(default)]
    pub sla_due: String,
    #[serde(default)]
    pub comments: Vec<Comment>,
    #[serde(default)]
    pub links: Vec<Link>,
    #[serde(default)]
    pub resolution: Option<String>,
    #[serde(default)]
    pub resolved_at: Option<String>,
    #[serde(default)]
    pub merged_into: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Asset {
    pub asset_id: String,
    /// `laptop`, `monitor`, `phone`, `printer`, ...
    pub asset_type: String,
    pub model: String,
    pub serial: String,
    /// `in_stock`, `in_use`, `in_repair` or `retired`.
    pub status: String,
    #[serde(default)]
    pub assigned_to: Option<String>,
    pub location: String,
    #[serde(default)]
    pub notes: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct License {
    pub license_id: String,
    pub product: String,
    pub seats: u32,
    /// User ids holding a seat.
    pub assigned: Vec<String>,
    /// When true, a grant names the user's manager as `approved_by`.
    #[serde(default)]
    pub requires_manager_approval: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<Approval>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    pub user_id: String,
    pub approved_by: String,
    pub granted_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketingServer {
    pub company: String,
    /// Who the agent acts as (author of comments).
    pub actor: String,
    #[serde(default)]
    pub users: Vec<User>,
    #[serde(default)]
    pub groups: Vec<Group>,
    #[serde(default)]
    pub tickets: Vec<Ticket>,
    #[serde(default)]
    pub assets: Vec<Asset>,
    #[serde(default)]
    pub licenses: Vec<License>,
    /// The scenario's documents as knowledge-base articles; static, so not state.
    #[serde(skip)]
    documents: BTreeMap<String, String>,
}

pub const PRIORITIES: &[&str] = &["P1", "P2", "P3", "P4"];
pub const STATUSES: &[&str] = &["new", "open", "pending", "resolved", "closed"];
const ASSET_STATUSES: &[&str] = &["in_stock", "in_use", "in_repair", "retired"];
const RELATIONS: &[&str] = &["related", "parent", "child"];

/// Hours from creation to the resolution deadline, by priority (the SLA policy).
pub fn sla_hours(priority: &str) -> Option<i64> {
    match priority {
        "P1" => Some(4),
        "P2" => Some(8),
        "P3" => Some(24),
        "P4" => Some(72),
        _ => None,
    }
}

/// The statuses a ticket may move to from `from` (the service-desk workflow).
pub fn allowed_transitions(from: &str) -> &'static [&'static str] {
    match from {
        "new" => &["open", "pending", "resolved"],
        "open" => &["pending", "resolved"],
        "pending" => &["open", "resolved"],
        "resolved" => &["open", "closed"],
        _ => &[],
    }
}

/// Minutes after midnight of `HH:MM` (24:00 allowed as the end of a day).
fn minutes(s: &str) -> Option<u32> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
}

/// Whether a `HH:MM-HH:MM` shift (UTC, Monday to Friday) covers `now`. A shift whose
/// end is before its start runs past midnight.
pub fn on_shift(shift: &str, now: DateTime<Utc>) -> bool {
    let Some((a, b)) = shift.split_once('-') else {
        return false;
    };
    let (Some(start), Some(end)) = (minutes(a), minutes(b)) else {
        return false;
    };
    if matches!(now.weekday(), Weekday::Sat | Weekday::Sun) {
        return false;
    }
    let t = now.hour() * 60 + now.minute();
    if start <= end {
        t >= start && t < end
    } else {
        t >= start || t < end
    }
}

fn sla_due(created_at: &str, priority: &str) -> String {
    match (parse_datetime(created_at), sla_hours(priority)) {
        (Some(t), Some(h)) => fmt_datetime(t + Duration::hours(h)),
        _ => String::new(),
    }
}

fn is_active(status: &str) -> bool {
    !matches!(status, "resolved" | "closed")
}

impl TicketingServer {
    pub fn from_seed(seed: &Value, documents: &BTreeMap<String, String>) -> Result<Self, String> {
        let mut s: TicketingServer = if seed.as_object().is_some_and(Map::is_empty) {
            TicketingServer {
                company: "Company".into(),
                actor: "service-desk".into(),
                users: Vec::new(),
                groups: Vec::new(),
                tickets: Vec::new(),
                assets: Vec::new(),
                licenses: Vec::new(),
                documents: BTreeMap::new(),
            }
        } else {
            serde_json::from_value(seed.clone()).map_err(|e| e.to_string())?
        };
        s.documents = documents.clone();
        let known = |id: &str| s.users.iter().any(|u| u.user_id == id);
        for g in &s.groups {
            if let Some(bad) = g.members.iter().chain(g.on_call.iter()).find(|m| !known(m)) {
                return Err(format!("group {} names unknown user {bad}", g.group_id));
            }
        }
        for u in &s.users {
            if u.shift.as_deref().is_some_and(|sh| {
                sh.split_once('-')
                    .is_none_or(|(a, b)| minutes(a).is_none() || minutes(b).is_none())
            }) {
                return Err(format!(
                    "user {} has a bad shift (want HH:MM-HH:MM)",
                    u.user_id
                ));
            }
        }
        for t in &mut s.tickets {
            let ok = known(&t.requester)
                && t.assignee.as_deref().is_none_or(known)
                && s.groups.iter().any(|g| g.group_id == t.group)
                && PRIORITIES.contains(&t.priority.as_str())
                && STATUSES.contains(&t.status.as_str())
                && parse_datetime(&t.created_at).is_some();
            if !ok {
                return Err(format!(
                    "ticket {} has an unknown user, group, priority, status or a bad created_at",
                    t.ticket_id
                ));
            }
            t.sla_due = sla_due(&t.created_at, &t.priority);
            if t.updated_at.is_empty() {
                t.updated_at = t.created_at.clone();
            }
        }
        for a in &s.assets {
            if !ASSET_STATUSES.contains(&a.status.as_str())
                || a.assigned_to.as_deref().is_some_and(|u| !known(u))
            {
                return Err(format!(
                    "asset {} has an unknown status or user",
                    a.asset_id
                ));
            }
        }
        for l in &s.licenses {
            if l.assigned.iter().any(|u| !known(u)) || l.assigned.len() > l.seats as usize {
                return Err(format!(
                    "license {} has an unknown user or more holders than seats",
                    l.license_id
                ));
            }
        }
        Ok(s)
    }

    fn user(&self, id: &str) -> Result<&User, String> {
        let id = id.trim();
        self.users
            .iter()
            .find(|u| u.user_id.eq_ignore_ascii_case(id) || u.email.eq_ignore_ascii_case(id))
            .ok_or_else(|| format!("no user `{id}`. Use search_users to find user ids (like U004)"))
    }

    fn user_index(&self, id: &str) -> Result<usize, String> {
        let key = self.user(id)?.user_id.clone();
        self.users
            .iter()
            .position(|u| u.user_id == key)
            .ok_or_else(|| format!("no user `{id}`"))
    }

    fn name_of(&self, id: &str) -> String {
        self.users
            .iter()
            .find(|u| u.user_id == id)
            .map(|u| u.name.clone())
            .unwrap_or_else(|| id.to_string())
    }

    fn group(&self, id: &str) -> Result<&Group, String> {
        let id = id.trim();
        self.groups
            .iter()
            .find(|g| g.group_id.eq_ignore_ascii_case(id) || g.name.eq_ignore_ascii_case(id))
            .ok_or_else(|| {
                format!(
                    "no group `{id}`. Groups: {}",
                    self.groups
                        .iter()
                        .map(|g| g.group_id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }

    fn ticket_index(&self, id: &str) -> Result<usize, String> {
        let id = id.trim();
        self.tickets
            .iter()
            .position(|t| t.ticket_id.eq_ignore_ascii_case(id))
            .ok_or_else(|| {
                format!("no ticket `{id}`. Use list_tickets to find ticket ids (like TKT-1003)")
            })
    }

    fn asset_index(&self, id: &str) -> Result<usize, String> {
        let id = id.trim();
        self.assets
            .iter()
            .position(|a| a.asset_id.eq_ignore_ascii_case(id) || a.serial.eq_ignore_ascii_case(id))
            .ok_or_else(|| {
                format!("no asset `{id}`. Use list_assets to find asset ids (like LT-0101)")
            })
    }

    fn license_index(&self, id: &str) -> Result<usize, String> {
        let id = id.trim();
        self.licenses
            .iter()
            .position(|l| {
                l.license_id.eq_ignore_ascii_case(id) || l.product.eq_ignore_ascii_case(id)
            })
            .ok_or_else(|| {
                format!(
                    "no license `{id}`. Licenses: {}",
                    self.licenses
                        .iter()
                        .map(|l| l.license_id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }

    /// Whether `user` can take a P1 now: on shift, or on call for `group`.
    fn available_for_p1(&self, user: &User, group: &Group, now: DateTime<Utc>) -> bool {
        group.on_call.as_deref() == Some(user.user_id.as_str())
            || user.shift.as_deref().is_some_and(|s| on_shift(s, now))
    }

    /// Why `assignee` cannot take `ticket` (as it will be after the update), if not.
    fn assignment_problem(
        &self,
        ticket: &Ticket,
        assignee: &str,
        now: DateTime<Utc>,
    ) -> Option<String> {
        let user = match self.user(assignee) {
            Ok(u) => u,
            Err(e) => return Some(e),
        };
        let group = match self.group(&ticket.group) {
            Ok(g) => g,
            Err(e) => return Some(e),
        };
        let members = || {
            group
                .members
                .iter()
                .map(|m| format!("{m} {}", self.name_of(m)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !group.members.contains(&user.user_id) {
            return Some(format!(
                "{} ({}) is not in the {} group that owns {}; assign a member ({}) or move the ticket to another group first",
                user.name, user.user_id, group.group_id, ticket.ticket_id, members()
            ));
        }
        if user.on_leave {
            return Some(format!(
                "{} ({}) is on leave; assign another member of {} ({})",
                user.name,
                user.user_id,
                group.group_id,
                members()
            ));
        }
        if ticket.priority == "P1" && !self.available_for_p1(user, group, now) {
            return Some(format!(
                "{} ({}) is off shift (shift {} UTC, Mon-Fri) and not on call for {}; a P1 must go to someone on shift now or to the group's on-call engineer (see list_groups)",
                user.name,
                user.user_id,
                user.shift.as_deref().unwrap_or("none"),
                group.group_id
            ));
        }
        None
    }

    fn ticket_view(&self, t: &Ticket, now: DateTime<Utc>, full: bool) -> Value {
        let breached =
            is_active(&t.status) && parse_datetime(&t.sla_due).is_some_and(|due| now > due);
        let minutes_left = parse_datetime(&t.sla_due)
            .filter(|_| is_active(&t.status))
            .map(|due| (due - now).num_minutes());
        let mut v = json!({
            "ticket_id": t.ticket_id, "type": t.kind, "title": t.title,
            "requester": t.requester, "requester_name": self.name_of(&t.requester),
            "assignee": t.assignee, "group": t.group, "priority": t.priority,
            "status": t.status, "category": t.category, "tags": t.tags,
            "created_at": t.created_at, "sla_due": t.sla_due, "sla_breached": breached,
            "sla_minutes_left": minutes_left,
        });
        if let Some(a) = &t.assignee {
            v["assignee_name"] = self.name_of(a).into();
        }
        if full {
            v["description"] = t.description.clone().into();
            v["updated_at"] = t.updated_at.clone().into();
            v["comments"] = serde_json::to_value(&t.comments).unwrap_or(Value::Null);
            v["links"] = serde_json::to_value(&t.links).unwrap_or(Value::Null);
            v["resolution"] = t.resolution.clone().into();
            v["resolved_at"] = t.resolved_at.clone().into();
            v["merged_into"] = t.merged_into.clone().into();
            v["allowed_transitions"] = allowed_transitions(&t.status).into();
        } else {
            v["comments"] = t.comments.len().into();
        }
        v
    }

    fn comment(&self, ctx: &Ctx, text: &str, public: bool) -> Comment {
        Comment {
            author: self.actor.clone(),
            text: text.to_string(),
            public,
            created_at: ctx.now_text(),
        }
    }

    fn update_ticket(&mut self, ctx: &Ctx, p: &Params) -> Result<Value, String> {
        let i = self.ticket_index(p.str("ticket_id")?)?;
        let old = self.tickets[i].clone();
        if old.status == "closed" {
            return Err(format!(
                "{} is closed and cannot change; create a new ticket and link it",
                old.ticket_id
            ));
        }
        let mut t = old.clone();
        let mut changed = Vec::new();
        if let Some(g) = p.opt_str("group") {
            let g = self.group(g)?;
            if g.group_id != t.group {
                t.group = g.group_id.clone();
                changed.push("group");
                // The old assignee belongs to the old queue unless re-given below.
                if t.assignee.as_ref().is_some_and(|a| !g.members.contains(a)) {
                    t.assignee = None;
                }
            }
        }
        if let Some(pr) = p.opt_str("priority") {
            let pr = pr.trim().to_uppercase();
            if !PRIORITIES.contains(&pr.as_str()) {
                return Err(format!(
                    "priority must be one of {PRIORITIES:?}, got {pr:?}"
                ));
            }
            if pr != t.priority {
                t.sla_due = sla_due(&t.created_at, &pr);
                t.priority = pr;
                changed.push("priority");
            }
        }
        let assignee_given = p.opt_str("assignee");
        if let Some(a) = assignee_given {
            if a.trim().is_empty() || a.eq_ignore_ascii_case("none") {
                t.assignee = None;
            } else {
                t.assignee = Some(self.user(a)?.user_id.clone());
            }
            if t.assignee != old.assignee {
                changed.push("assignee");
            }
        }
        if let Some(a) = &t.assignee {
            if t.assignee != old.assignee || t.priority != old.priority || t.group != old.group {
                if let Some(problem) = self.assignment_problem(&t, a, ctx.now) {
                    return Err(problem);
                }
            }
        }
        if let Some(c) = p.opt_str("category").filter(|c| !c.trim().is_empty()) {
            if c != t.category {
                t.category = c.trim().to_string();
                changed.push("category");
            }
        }
        for tag in p.strings("add_tags").unwrap_or_default() {
            let tag = tag.trim().to_lowercase();
            if !tag.is_empty() && !t.tags.contains(&tag) {
                t.tags.push(tag);
                changed.push("tags");
            }
        }
        for tag in p.strings("remove_tags").unwrap_or_default() {
            let before = t.tags.len();
            t.tags.retain(|x| !x.eq_ignore_ascii_case(tag.trim()));
            if t.tags.len() != before {
                changed.push("tags");
            }
        }
        let resolution = p
            .opt_str("resolution")
            .map(str::trim)
            .filter(|r| !r.is_empty());
        match p.opt_str("status") {
            Some(to) if to != t.status => {
                if !STATUSES.contains(&to) {
                    return Err(format!("status must be one of {STATUSES:?}, got {to:?}"));
                }
                let allowed = allowed_transitions(&t.status);
                if !allowed.contains(&to) {
                    return Err(format!(
                        "{} cannot go from `{}` to `{to}`; allowed from `{}`: {}",
                        t.ticket_id,
                        t.status,
                        t.status,
                        allowed.join(", ")
                    ));
                }
                if to == "resolved" {
                    let Some(r) = resolution else {
                        return Err(format!(
                            "resolving {} needs a `resolution` note saying what fixed it",
                            t.ticket_id
                        ));
                    };
                    t.resolution = Some(r.to_string());
                    t.resolved_at = Some(ctx.now_text());
                }
                if to == "open" && t.status == "resolved" {
                    // A reopened ticket is unresolved again; the old note would mislead.
                    t.resolution = None;
                    t.resolved_at = None;
                }
                t.status = to.to_string();
                changed.push("status");
            }
            Some(_) => {}
            None if t.status == "new" && t.assignee.is_some() && old.assignee.is_none() => {
                // Picking up a new ticket starts work on it, as service desks do.
                t.status = "open".into();
                changed.push("status");
            }
            None => {}
        }
        if resolution.is_some() && t.status != "resolved" {
            return Err("`resolution` is only for setting status `resolved`".into());
        }
        if let Some(note) = p.opt_str("comment").filter(|c| !c.trim().is_empty()) {
            let public = p.bool_or("comment_public", false);
            t.comments.push(self.comment(ctx, note, public));
            changed.push("comment");
        }
        if changed.is_empty() {
            return Err(format!(
                "nothing to change on {}: give status, priority, assignee, group, category, add_tags, remove_tags or comment with a new value",
                t.ticket_id
            ));
        }
        changed.dedup();
        t.updated_at = ctx.now_text();
        let view = self.ticket_view(&t, ctx.now, false);
        self.tickets[i] = t;
        Ok(json!({"status": "updated", "changed": changed, "ticket": view}))
    }
}

impl ToolServer for TicketingServer {
    fn name(&self) -> &'static str {
        "ticketing"
    }

    fn tools(&self) -> Vec<ToolSpec> {
        let tkt =
            json!({"type": "string", "minLength": 1, "description": "Ticket id like TKT-1003"});
        let user = json!({"type": "string", "minLength": 1, "description": "User id like U004 (an email also works)"});
        let asset = json!({"type": "string", "minLength": 1, "description": "Asset id like LT-0101 (a serial also works)"});
        let lic = json!({"type": "string", "minLength": 1, "description": "License id like LIC-ADOBE (the product name also works)"});
        let text = |d: &str| json!({"type": "string", "minLength": 1, "description": d});
        let tags = json!({"type": "array", "items": {"type": "string"}});
        let obj = |required: Vec<&str>, props: Value| json!({"type": "object", "additionalProperties": false, "required": required, "properties": props});
        vec![
            spec("list_tickets", "List tickets (newest first) with their SLA state. Filters combine; without `status`, closed tickets are left out.", false, obj(vec![], json!({
                "status": {"type": "string", "enum": STATUSES}, "priority": {"type": "string", "enum": PRIORITIES},
                "group": {"type": "string", "description": "Group id like network"}, "assignee": {"type": "string", "description": "User id, or `none` for unassigned"},
                "requester": {"type": "string", "description": "User id or email"}, "category": {"type": "string"}, "tag": {"type": "string"},
                "query": {"type": "string", "description": "Substring of the title or description"},
                "sla_breached": {"type": "boolean", "description": "Only tickets past (true) or within (false) their SLA"},
            }))),
            spec("get_ticket", "Get one ticket in full: description, comments, links, resolution, SLA due time and the statuses it may move to.", false, obj(vec!["ticket_id"], json!({"ticket_id": tkt}))),
            spec("create_ticket", "Open a ticket for a requester. The SLA due time follows from the priority (P1 4h, P2 8h, P3 24h, P4 72h).", true, obj(vec!["requester", "title", "description", "category", "priority", "group"], json!({
                "requester": user, "title": text("Short summary"), "description": text("What is wrong or needed"),
                "type": {"type": "string", "enum": ["incident", "request"], "description": "Default incident"},
                "category": text("e.g. access, hardware, software, network, email, printer"),
                "priority": {"type": "string", "enum": PRIORITIES}, "group": text("Group id that will work it"),
                "assignee": {"type": "string", "description": "Optional user id in that group"}, "tags": tags,
            }))),
            spec("update_ticket", "Change a ticket: status (new→open/pending/resolved, open→pending/resolved, pending→open/resolved, resolved→open/closed; resolving needs `resolution`), priority (recomputes the SLA), group, assignee (a member of the group; `none` unassigns; a P1 needs someone on shift or on call), category, tags, plus an optional comment (internal unless comment_public).", true, obj(vec!["ticket_id"], json!({
                "ticket_id": tkt, "status": {"type": "string", "enum": STATUSES}, "priority": {"type": "string", "enum": PRIORITIES},
                "group": {"type": "string"}, "assignee": {"type": "string"}, "category": {"type": "string"},
                "add_tags": tags, "remove_tags": tags,
                "resolution": {"type": "string", "description": "What fixed it (required to resolve)"},
                "comment": {"type": "string"}, "comment_public": {"type": "boolean", "description": "Default false (internal work note)"},
            }))),
            spec("add_comment", "Add a comment to a ticket: public (the requester sees it, default) or internal (a work note for IT only).", true, obj(vec!["ticket_id", "text"], json!({
                "ticket_id": tkt, "text": text("The comment"), "public": {"type": "boolean", "description": "Default true"},
            }))),
            spec("link_tickets", "Link two tickets: `related`, or `parent`/`child` (ticket_id is the parent/child of other_ticket_id). The link shows on both.", true, obj(vec!["ticket_id", "other_ticket_id"], json!({
                "ticket_id": tkt, "other_ticket_id": tkt, "relation": {"type": "string", "enum": RELATIONS, "description": "Default related"},
            }))),
            spec("merge_tickets", "Merge a duplicate into the ticket that stays: the duplicate is closed as `merged_into` the target, its tags and a summary move to the target, and both are linked.", true, obj(vec!["duplicate_ticket_id", "target_ticket_id"], json!({
                "duplicate_ticket_id": tkt, "target_ticket_id": tkt,
            }))),
            spec("search_users", "Search people by name, email or id (`query`, substring), department or group. No filters lists everyone.", false, obj(vec![], json!({
                "query": {"type": "string"}, "department": {"type": "string"}, "group": {"type": "string", "description": "Group id: only its members"},
            }))),
            spec("get_user", "Get a person: manager, location, account status, groups, shift and whether they are on shift now, their assets and licenses.", false, obj(vec!["user_id"], json!({"user_id": user}))),
            spec("list_groups", "List the support groups (queues) with members, who is on shift now, who is on leave, and the on-call engineer.", false, obj(vec![], json!({}))),
            spec("list_assets", "List assets in the inventory, filtered by type, status, location, holder or model text.", false, obj(vec![], json!({
                "asset_type": {"type": "string", "description": "e.g. laptop, monitor, phone, printer"},
                "status": {"type": "string", "enum": ASSET_STATUSES}, "location": {"type": "string"},
                "assigned_to": {"type": "string", "description": "User id"}, "query": {"type": "string", "description": "Substring of the model or notes"},
            }))),
            spec("get_asset", "Get one asset: model, serial, status, holder, location, notes.", false, obj(vec!["asset_id"], json!({"asset_id": asset}))),
            spec("assign_asset", "Give an in-stock asset to a person (it becomes in_use).", true, obj(vec!["asset_id", "user_id"], json!({"asset_id": asset, "user_id": user}))),
            spec("return_asset", "Take an asset back from its holder: condition `good` puts it in stock, `damaged` sends it to repair.", true, obj(vec!["asset_id"], json!({
                "asset_id": asset, "condition": {"type": "string", "enum": ["good", "damaged"], "description": "Default good"},
            }))),
            spec("list_licenses", "List software licenses: seats, seats used, holders, and whether a grant needs the manager's approval.", false, obj(vec![], json!({}))),
            spec("grant_license", "Give a person a seat of a license, if one is free. Licenses that need approval take `approved_by`: the user id of the person's manager, once they have approved.", true, obj(vec!["license_id", "user_id"], json!({
                "license_id": lic, "user_id": user, "approved_by": {"type": "string", "description": "User id of the approving manager"},
            }))),
            spec("revoke_license", "Take a license seat back from a person, freeing it.", true, obj(vec!["license_id", "user_id"], json!({"license_id": lic, "user_id": user}))),
            spec("reset_password", "Reset a person's password and unlock the account (a one-time link goes to their registered phone). Not for privileged (admin) accounts, which the iam group resets, nor for disabled accounts.", true, obj(vec!["user_id"], json!({"user_id": user}))),
            spec("search_kb", "Search the IT knowledge base (policies and how-to articles) by words; no query lists every article.", false, obj(vec![], json!({"query": {"type": "string"}}))),
            spec("read_kb_article", "Read one knowledge-base article in full by its id (the file name, like sla_policy.md).", false, obj(vec!["article_id"], json!({"article_id": text("Article id from search_kb")}))),
        ]
    }

    fn step(
        &mut self,
        ctx: &Ctx,
        tool: &str,
        params: &Map<String, Value>,
    ) -> Result<Value, String> {
        let p = Params(params);
        match tool {
            "list_tickets" => {
                let status = p.opt_str("status");
                let priority = p.opt_str("priority");
                let group = p
                    .opt_str("group")
                    .map(|g| self.group(g).map(|g| g.group_id.clone()))
                    .transpose()?;
                let assignee = p.opt_str("assignee").map(str::trim);
                let assignee = match assignee {
                    Some(a) if a.eq_ignore_ascii_case("none") || a.is_empty() => Some(None),
                    Some(a) => Some(Some(self.user(a)?.user_id.clone())),
                    None => None,
                };
                let requester = p
                    .opt_str("requester")
                    .map(|r| self.user(r).map(|u| u.user_id.clone()))
                    .transpose()?;
                let category = p.opt_str("category").map(str::to_lowercase);
                let tag = p.opt_str("tag").map(str::to_lowercase);
                let query = p.opt_str("query").map(str::to_lowercase);
                let breached = params.get("sla_breached").and_then(Value::as_bool);
                let mut hits: Vec<Value> = self
                    .tickets
                    .iter()
                    .filter(|t| match status {
                        Some(s) => t.status == s,
                        None => t.status != "closed",
                    })
                    .filter(|t| priority.is_none_or(|x| t.priority == x))
                    .filter(|t| group.as_ref().is_none_or(|g| &t.group == g))
                    .filter(|t| assignee.as_ref().is_none_or(|a| &t.assignee == a))
                    .filter(|t| requester.as_ref().is_none_or(|r| &t.requester == r))
                    .filter(|t| {
                        category
                            .as_ref()
                            .is_none_or(|c| t.category.to_lowercase() == *c)
                    })
                    .filter(|t| {
                        tag.as_ref()
                            .is_none_or(|g| t.tags.iter().any(|x| x.to_lowercase() == *g))
                    })
                    .filter(|t| {
                        query.as_ref().is_none_or(|q| {
                            t.title.to_lowercase().contains(q)
                                || t.description.to_lowercase().contains(q)
                        })
                    })
                    .map(|t| self.ticket_view(t, ctx.now, false))
                    .filter(|v| breached.is_none_or(|b| v["sla_breached"] == b))
                    .collect();
                hits.sort_by(|a, b| {
                    b["created_at"]
                        .as_str()
                        .cmp(&a["created_at"].as_str())
                        .then(a["ticket_id"].as_str().cmp(&b["ticket_id"].as_str()))
                });
                Ok(json!({"now": ctx.now_text(), "total": hits.len(), "tickets": hits}))
            }
            "get_ticket" => {
                let t = &self.tickets[self.ticket_index(p.str("ticket_id")?)?];
                let mut v = self.ticket_view(t, ctx.now, true);
                v["now"] = ctx.now_text().into();
                Ok(v)
            }
            "create_ticket" => {
                let requester = self.user(p.str("requester")?)?.user_id.clone();
                let group = self.group(p.str("group")?)?.group_id.clone();
                let priority = p.str("priority")?.trim().to_uppercase();
                if !PRIORITIES.contains(&priority.as_str()) {
                    return Err(format!("priority must be one of {PRIORITIES:?}"));
                }
                let kind = p.opt_str("type").unwrap_or("incident");
                if !["incident", "request"].contains(&kind) {
                    return Err("type must be `incident` or `request`".into());
                }
                let (title, description, category) = (
                    p.str("title")?.trim(),
                    p.str("description")?.trim(),
                    p.str("category")?.trim(),
                );
                if title.is_empty() || description.is_empty() || category.is_empty() {
                    return Err("title, description and category must not be blank".into());
                }
                let id = next_id("TKT-", 4, self.tickets.iter().map(|t| t.ticket_id.as_str()));
                let now = ctx.now_text();
                let mut t = Ticket {
                    ticket_id: id,
                    kind: kind.to_string(),
                    title: title.to_string(),
                    description: description.to_string(),
                    requester,
                    assignee: None,
                    group,
                    sla_due: sla_due(&now, &priority),
                    priority,
                    status: "new".into(),
                    category: category.to_string(),
                    tags: p
                        .strings("tags")
                        .unwrap_or_default()
                        .iter()
                        .map(|s| s.trim().to_lowercase())
                        .filter(|s| !s.is_empty())
                        .collect(),
                    created_at: now.clone(),
                    updated_at: now,
                    comments: Vec::new(),
                    links: Vec::new(),
                    resolution: None,
                    resolved_at: None,
                    merged_into: None,
                };
                t.tags.dedup();
                if let Some(a) = p.opt_str("assignee").filter(|a| !a.trim().is_empty()) {
                    let a = self.user(a)?.user_id.clone();
                    if let Some(problem) = self.assignment_problem(&t, &a, ctx.now) {
                        return Err(problem);
                    }
                    t.assignee = Some(a);
                    t.status = "open".into();
                }
                let view = self.ticket_view(&t, ctx.now, false);
                self.tickets.push(t);
                Ok(json!({"status": "created", "ticket": view}))
            }
            "update_ticket" => self.update_ticket(ctx, &p),
            "add_comment" => {
                let i = self.ticket_index(p.str("ticket_id")?)?;
                let text = p.str("text")?;
                if text.trim().is_empty() {
                    return Err("the comment text is empty".into());
                }
                if self.tickets[i].status == "closed" {
                    return Err(format!(
                        "{} is closed; comment on the ticket it was merged into or open a new one",
                        self.tickets[i].ticket_id
                    ));
                }
                let public = p.bool_or("public", true);
                let c = self.comment(ctx, text, public);
                let t = &mut self.tickets[i];
                t.comments.push(c);
                t.updated_at = ctx.now_text();
                Ok(
                    json!({"status": "commented", "ticket_id": t.ticket_id, "public": public, "comments": t.comments.len()}),
                )
            }
            "link_tickets" => {
                let a = self.ticket_index(p.str("ticket_id")?)?;
                let b = self.ticket_index(p.str("other_ticket_id")?)?;
                if a == b {
                    return Err("a ticket cannot be linked to itself".into());
                }
                let relation = p.opt_str("relation").unwrap_or("related");
                let inverse = match relation {
                    "related" => "related",
                    "parent" => "child",
                    "child" => "parent",
                    other => {
                        return Err(format!(
                            "relation must be one of {RELATIONS:?}, got {other:?}"
                        ))
                    }
                };
                let (ida, idb) = (
                    self.tickets[a].ticket_id.clone(),
                    self.tickets[b].ticket_id.clone(),
                );
                if let Some(l) = self.tickets[a].links.iter().find(|l| l.ticket_id == idb) {
                    return Err(format!("{ida} is already linked to {idb} ({})", l.relation));
                }
                // The relation is stored from each side: on A, B is A's `relation`'s inverse.
                self.tickets[a].links.push(Link {
                    ticket_id: idb.clone(),
                    relation: inverse.into(),
                });
                self.tickets[b].links.push(Link {
                    ticket_id: ida.clone(),
                    relation: relation.into(),
                });
                self.tickets[a].updated_at = ctx.now_text();
                self.tickets[b].updated_at = ctx.now_text();
                Ok(
                    json!({"status": "linked", "ticket_id": ida, "other_ticket_id": idb, "relation": relation}),
                )
            }
            "merge_tickets" => {
                let d = self.ticket_index(p.str("duplicate_ticket_id")?)?;
                let k = self.ticket_index(p.str("target_ticket_id")?)?;
                if d == k {
                    return Err("a ticket cannot be merged into itself".into());
                }
                let (dup, target) = (self.tickets[d].clone(), self.tickets[k].clone());
                if dup.status == "closed" {
                    return Err(format!(
                        "{} is already closed{}",
                        dup.ticket_id,
                        dup.merged_into
                            .map(|m| format!(" (merged into {m})"))
                            .unwrap_or_default()
                    ));
                }
                if target.status == "closed" {
                    return Err(format!(
                        "{} is closed; merge into an active ticket",
                        target.ticket_id
                    ));
                }
                let now = ctx.now_text();
                let note = format!(
                    "Merged duplicate {} from {}: {}\n{}",
                    dup.ticket_id,
                    self.name_of(&dup.requester),
                    dup.title,
                    dup.description
                );
                let c = self.comment(ctx, &note, false);
                let t = &mut self.tickets[k];
                t.comments.push(c);
                for tag in &dup.tags {
                    if !t.tags.contains(tag) {
                        t.tags.push(tag.clone());
                    }
                }
                if !t.links.iter().any(|l| l.ticket_id == dup.ticket_id) {
                    t.links.push(Link {
                        ticket_id: dup.ticket_id.clone(),
                        relation: "duplicate".into(),
                    });
                }
                t.updated_at = now.clone();
                let s = &mut self.tickets[d];
                s.links.retain(|l| l.ticket_id != target.ticket_id);
                s.links.push(Link {
                    ticket_id: target.ticket_id.clone(),
                    relation: "duplicate_of".into(),
                });
                s.status = "closed".into();
                s.merged_into = Some(target.ticket_id.clone());
                s.resolution = Some(format!("Duplicate of {}", target.ticket_id));
                s.resolved_at = Some(now.clone());
                s.updated_at = now;
                Ok(
                    json!({"status": "merged", "duplicate_ticket_id": dup.ticket_id, "target_ticket_id": target.ticket_id}),
                )
            }
            "search_users" => {
                let q = p.opt_str("query").map(str::to_lowercase);
                let dept = p.opt_str("department").map(str::to_lowercase);
                let group = p
                    .opt_str("group")
                    .map(|g| self.group(g).cloned())
                    .transpose()?;
                let hits: Vec<Value> = self
                    .users
                    .iter()
                    .filter(|u| q.as_ref().is_none_or(|q| u.name.to_lowercase().contains(q) || u.email.to_lowercase().contains(q) || u.user_id.to_lowercase() == *q))
                    .filter(|u| dept.as_ref().is_none_or(|d| u.department.to_lowercase() == *d))
                    .filter(|u| group.as_ref().is_none_or(|g| g.members.contains(&u.user_id)))
                    .map(|u| json!({"user_id": u.user_id, "name": u.name, "email": u.email, "department": u.department, "title": u.title, "location": u.location, "role": u.role, "account_status": u.account_status}))
                    .collect();
                Ok(json!({"total": hits.len(), "users": hits}))
            }
            "get_user" => {
                let u = self.user(p.str("user_id")?)?;
                let mut v = serde_json::to_value(u).map_err(|e| e.to_string())?;
                if let Some(m) = &u.manager_id {
                    v["manager"] = json!({"user_id": m, "name": self.name_of(m)});
                }
                v["groups"] = self
                    .groups
                    .iter()
                    .filter(|g| g.members.contains(&u.user_id))
                    .map(|g| g.group_id.clone())
                    .collect::<Vec<_>>()
                    .into();
                v["on_call_for"] = self
                    .groups
                    .iter()
                    .filter(|g| g.on_call.as_deref() == Some(u.user_id.as_str()))
                    .map(|g| g.group_id.clone())
                    .collect::<Vec<_>>()
                    .into();
                v["on_shift_now"] = u
                    .shift
                    .as_deref()
                    .is_some_and(|s| on_shift(s, ctx.now))
                    .into();
                v["assets"] = self.assets.iter().filter(|a| a.assigned_to.as_deref() == Some(u.user_id.as_str())).map(|a| json!({"asset_id": a.asset_id, "asset_type": a.asset_type, "model": a.model})).collect::<Vec<_>>().into();
                v["licenses"] = self
                    .licenses
                    .iter()
                    .filter(|l| l.assigned.contains(&u.user_id))
                    .map(|l| l.license_id.clone())
                    .collect::<Vec<_>>()
                    .into();
                v["now"] = ctx.now_text().into();
                Ok(v)
            }
            "list_groups" => {
                let groups: Vec<Value> = self
                    .groups
                    .iter()
                    .map(|g| {
                        let members: Vec<Value> = g.members.iter().filter_map(|m| self.users.iter().find(|u| &u.user_id == m)).map(|u| json!({
                            "user_id": u.user_id, "name": u.name, "shift": u.shift,
                            "on_shift_now": u.shift.as_deref().is_some_and(|s| on_shift(s, ctx.now)), "on_leave": u.on_leave,
                        })).collect();
                        json!({"group_id": g.group_id, "name": g.name, "description": g.description, "on_call": g.on_call, "members": members})
                    })
                    .collect();
                Ok(json!({"now": ctx.now_text(), "groups": groups}))
            }
            "list_assets" => {
                let kind = p.opt_str("asset_type").map(str::to_lowercase);
                let status = p.opt_str("status");
                let loc = p.opt_str("location").map(str::to_lowercase);
                let holder = p
                    .opt_str("assigned_to")
                    .map(|u| self.user(u).map(|u| u.user_id.clone()))
                    .transpose()?;
                let q = p.opt_str("query").map(str::to_lowercase);
                let hits: Vec<&Asset> = self
                    .assets
                    .iter()
                    .filter(|a| {
                        kind.as_ref()
                            .is_none_or(|k| a.asset_type.to_lowercase() == *k)
                    })
                    .filter(|a| status.is_none_or(|s| a.status == s))
                    .filter(|a| {
                        loc.as_ref()
                            .is_none_or(|l| a.location.to_lowercase().contains(l))
                    })
                    .filter(|a| {
                        holder
                            .as_ref()
                            .is_none_or(|h| a.assigned_to.as_ref() == Some(h))
                    })
                    .filter(|a| {
                        q.as_ref().is_none_or(|q| {
                            a.model.to_lowercase().contains(q) || a.notes.to_lowercase().contains(q)
                        })
                    })
                    .collect();
                Ok(json!({"total": hits.len(), "assets": hits}))
            }
            "get_asset" => {
                let a = &self.assets[self.asset_index(p.str("asset_id")?)?];
                let mut v = serde_json::to_value(a).map_err(|e| e.to_string())?;
                if let Some(u) = &a.assigned_to {
                    v["assigned_to_name"] = self.name_of(u).into();
                }
                Ok(v)
            }
            "assign_asset" => {
                let i = self.asset_index(p.str("asset_id")?)?;
                let u = self.user(p.str("user_id")?)?.clone();
                let a = &self.assets[i];
                if u.account_status == "disabled" {
                    return Err(format!(
                        "{} ({}) has a disabled account; assets go to active people only",
                        u.name, u.user_id
                    ));
                }
                match a.status.as_str() {
                    "in_stock" => {}
                    "in_use" => {
                        let holder = a.assigned_to.as_deref().map(|h| format!("{} ({h})", self.name_of(h))).unwrap_or_default();
                        return Err(format!("{} is in use by {holder}; return_asset it first or pick an in_stock asset", a.asset_id));
                    }
                    other => return Err(format!("{} is {other} and cannot be assigned; pick an asset with status in_stock (list_assets status=in_stock)", a.asset_id)),
                }
                let a = &mut self.assets[i];
                a.status = "in_use".into();
                a.assigned_to = Some(u.user_id.clone());
                a.assigned_at = Some(ctx.now_text());
                Ok(
                    json!({"status": "assigned", "asset_id": a.asset_id, "model": a.model, "assigned_to": u.user_id, "name": u.name}),
                )
            }
            "return_asset" => {
                let i = self.asset_index(p.str("asset_id")?)?;
                let condition = p.opt_str("condition").unwrap_or("good");
                let to = match condition {
                    "good" => "in_stock",
                    "damaged" => "in_repair",
                    other => {
                        return Err(format!(
                            "condition must be `good` or `damaged`, got {other:?}"
                        ))
                    }
                };
                let a = &mut self.assets[i];
                if a.status != "in_use" {
                    return Err(format!(
                        "{} is {}, not in use; only an asset someone holds can be returned",
                        a.asset_id, a.status
                    ));
                }
                let from = a.assigned_to.take();
                a.status = to.into();
                a.assigned_at = None;
                Ok(
                    json!({"status": "returned", "asset_id": a.asset_id, "from": from, "new_status": to}),
                )
            }
            "list_licenses" => {
                let list: Vec<Value> = self
                    .licenses
                    .iter()
                    .map(|l| json!({
                        "license_id": l.license_id, "product": l.product, "seats": l.seats, "seats_used": l.assigned.len(),
                        "requires_manager_approval": l.requires_manager_approval,
                        "holders": l.assigned.iter().map(|u| json!({"user_id": u, "name": self.name_of(u)})).collect::<Vec<_>>(),
                    }))
                    .collect();
                Ok(json!({"licenses": list}))
            }
            "grant_license" => {
                let i = self.license_index(p.str("license_id")?)?;
                let u = self.user(p.str("user_id")?)?.clone();
                let l = &self.licenses[i];
                if u.account_status == "disabled" {
                    return Err(format!("{} ({}) has a disabled account", u.name, u.user_id));
                }
                if l.assigned.contains(&u.user_id) {
                    return Err(format!("{} already holds a {} seat", u.name, l.product));
                }
                if l.assigned.len() >= l.seats as usize {
                    return Err(format!("all {} seats of {} are in use; free one with revoke_license (the asset policy says whose seats to reclaim) before granting", l.seats, l.product));
                }
                let approver = if l.requires_manager_approval {
                    let Some(manager) = u.manager_id.clone() else {
                        return Err(format!("{} needs manager approval but {} has no manager on record; escalate to it-management", l.product, u.name));
                    };
                    let given = match p.opt_str("approved_by") {
                        Some(a) => self.user(a)?.user_id.clone(),
                        None => return Err(format!("{} needs the approval of the person's manager: get it, then pass `approved_by` with the manager's user id", l.product)),
                    };
                    if given != manager {
                        return Err(format!(
                            "{} ({given}) is not {}'s manager; only the manager can approve {}",
                            self.name_of(&given),
                            u.name,
                            l.product
                        ));
                    }
                    Some(given)
                } else {
                    None
                };
                let now = ctx.now_text();
                let l = &mut self.licenses[i];
                l.assigned.push(u.user_id.clone());
                if let Some(a) = approver {
                    l.approvals.push(Approval {
                        user_id: u.user_id.clone(),
                        approved_by: a,
                        granted_at: now,
                    });
                }
                Ok(
                    json!({"status": "granted", "license_id": l.license_id, "user_id": u.user_id, "seats_used": l.assigned.len(), "seats": l.seats}),
                )
            }
            "revoke_license" => {
                let i = self.license_index(p.str("license_id")?)?;
                let u = self.user(p.str("user_id")?)?.clone();
                let l = &mut self.licenses[i];
                let Some(k) = l.assigned.iter().position(|x| *x == u.user_id) else {
                    return Err(format!(
                        "{} ({}) holds no {} seat",
                        u.name, u.user_id, l.product
                    ));
                };
                l.assigned.remove(k);
                Ok(
                    json!({"status": "revoked", "license_id": l.license_id, "user_id": u.user_id, "seats_used": l.assigned.len(), "seats": l.seats}),
                )
            }
            "reset_password" => {
                let i = self.user_index(p.str("user_id")?)?;
                let u = &self.users[i];
                if u.account_status == "disabled" {
                    return Err(format!("{} ({}) has a disabled account (a leaver); disabled accounts are not reset", u.name, u.user_id));
                }
                if u.privileged {
                    return Err(format!("{} ({}) has a privileged (admin) account; only the iam group may reset it, so assign the ticket to iam", u.name, u.user_id));
                }
                let was = u.account_status.clone();
                let u = &mut self.users[i];
                u.account_status = "active".into();
                u.password_reset_at = Some(ctx.now_text());
                Ok(
                    json!({"status": "reset", "user_id": u.user_id, "was": was, "account_status": "active", "note": "A one-time reset link was sent to the user's registered phone."}),
                )
            }
            "search_kb" => Ok(documents::search(&self.documents, p.opt_str("query"))),
            "read_kb_article" => documents::read_article(&self.documents, p.str("article_id")?),
            other => Err(format!("unknown tool `{other}` on the ticketing server")),
        }
    }

    fn data(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    fn human_readable(&self) -> String {
        let active = self.tickets.iter().filter(|t| is_active(&t.status)).count();
        let mut out = format!(
            "{} service desk: {} tickets ({active} active), {} users, {} groups, {} assets, {} licenses\n",
            self.company,
            self.tickets.len(),
            self.users.len(),
            self.groups.len(),
            self.assets.len(),
            self.licenses.len()
        );
        for t in &self.tickets {
            out.push_str(&format!(
                "ticket {} {} {} {} group={} assignee={} due={} {}\n",
                t.ticket_id,
                t.priority,
                t.status,
                t.title,
                t.group,
                t.assignee.as_deref().unwrap_or("-"),
                t.sla_due,
                t.merged_into
                    .as_deref()
                    .map(|m| format!("merged into {m}"))
                    .unwrap_or_default()
            ));
        }
        for a in &self.assets {
            out.push_str(&format!(
                "asset {} {} {} {}\n",
                a.asset_id,
                a.model,
                a.status,
                a.assigned_to.as_deref().unwrap_or("-")
            ));
        }
        for l in &self.licenses {
            out.push_str(&format!(
                "license {} {}/{} seats\n",
                l.license_id,
                l.assigned.len(),
                l.seats
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests;
