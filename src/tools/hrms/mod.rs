//! The HRMS server: employees and the org chart, leave balances and requests,
//! job requisitions and the candidate pipeline, onboarding checklists, and the
//! company's HR documents (the scenario's seed documents, read-only).
//!
//! Business rules the agent meets as in-band errors: leave beyond the available
//! balance, overlapping leave, deciding a request twice, illegal pipeline
//! transitions, a second onboarding checklist for one person, completing an item twice.

use std::collections::BTreeMap;

use chrono::{Datelike, Duration, NaiveDate, Weekday};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{documents, next_id, parse_date, spec, Ctx, Params, ToolServer, ToolSpec};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Employee {
    pub employee_id: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub title: String,
    pub department: String,
    pub manager_id: Option<String>,
    pub location: String,
    pub start_date: String,
    /// `active`, `pre_start` (hired, not started) or `terminated`.
    pub status: String,
    pub leave_balance: LeaveBalance,
}

impl Employee {
    fn name(&self) -> String {
        format!("{} {}", self.first_name, self.last_name)
    }

    fn summary(&self) -> Value {
        json!({
            "employee_id": self.employee_id, "name": self.name(), "title": self.title,
            "department": self.department, "email": self.email, "manager_id": self.manager_id,
            "status": self.status,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaveBalance {
    pub vacation: i64,
    pub sick: i64,
    pub personal: i64,
}

impl LeaveBalance {
    fn get_mut(&mut self, leave_type: &str) -> Option<&mut i64> {
        match leave_type {
            "vacation" => Some(&mut self.vacation),
            "sick" => Some(&mut self.sick),
            "personal" => Some(&mut self.personal),
            _ => None,
        }
    }

    fn get(&self, leave_type: &str) -> i64 {
        match leave_type {
            "vacation" => self.vacation,
            "sick" => self.sick,
            "personal" => self.personal,
            _ => 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaveRequest {
    pub request_id: String,
    pub employee_id: String,
    pub leave_type: String,
    pub start_date: String,
    pub end_date: String,
    /// Working days (Mon-Fri), inclusive.
    pub days: i64,
    /// `pending`, `approved` or `rejected`.
    pub status: String,
    #[serde(default)]
    pub reason: String,
    pub submitted_at: String,
    #[serde(default)]
    pub decided_at: Option<String>,
    #[serde(default)]
    pub decision_note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requisition {
    pub requisition_id: String,
    pub title: String,
    pub department: String,
    pub hiring_manager_id: String,
    pub recruiter_id: String,
    /// `open`, `on_hold` or `closed`.
    pub status: String,
    pub openings: u32,
    pub location: String,
    pub opened_at: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Note {
    pub author: String,
    pub text: String,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Candidate {
    pub candidate_id: String,
    pub name: String,
    pub email: String,
    pub requisition_id: String,
    pub stage: String,
    pub source: String,
    pub applied_at: String,
    #[serde(default)]
    pub notes: Vec<Note>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage_updated_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChecklistItem {
    pub item_id: String,
    pub title: String,
    pub owner: String,
    pub due_date: String,
    /// `pending` or `done`.
    pub status: String,
    #[serde(default)]
    pub completed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checklist {
    pub checklist_id: String,
    pub employee_id: String,
    pub start_date: String,
    pub created_at: String,
    pub items: Vec<ChecklistItem>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateItem {
    pub title: String,
    pub owner: String,
    /// Days relative to the start date (negative: before).
    pub due_offset_days: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HrmsServer {
    pub company: String,
    /// Who the agent acts as (author of notes and decisions).
    pub actor: String,
    #[serde(default)]
    pub employees: Vec<Employee>,
    #[serde(default)]
    pub leave_requests: Vec<LeaveRequest>,
    #[serde(default)]
    pub requisitions: Vec<Requisition>,
    #[serde(default)]
    pub candidates: Vec<Candidate>,
    #[serde(default)]
    pub onboarding_checklists: Vec<Checklist>,
    #[serde(default)]
    pub onboarding_template: Vec<TemplateItem>,
    /// The scenario's documents; static, so not part of the state.
    #[serde(skip)]
    documents: BTreeMap<String, String>,
}

pub const LEAVE_TYPES: &[&str] = &["vacation", "sick", "personal"];
pub const STAGES: &[&str] = &[
    "applied",
    "screening",
    "interview",
    "offer",
    "hired",
    "rejected",
    "withdrawn",
];
const PIPELINE: &[&str] = &["applied", "screening", "interview", "offer", "hired"];

/// Working days (Mon-Fri) from `a` to `b` inclusive.
pub fn working_days(a: NaiveDate, b: NaiveDate) -> i64 {
    let mut n = 0;
    let mut d = a;
    while d <= b {
        if !matches!(d.weekday(), Weekday::Sat | Weekday::Sun) {
            n += 1;
        }
        d += Duration::days(1);
    }
    n
}

/// Whether a candidate may move from `from` to `to`.
pub fn transition_allowed(from: &str, to: &str) -> bool {
    let open = PIPELINE[..4].contains(&from);
    if to == "rejected" || to == "withdrawn" {
        return open;
    }
    match (
        PIPELINE.iter().position(|s| *s == from),
        PIPELINE.iter().position(|s| *s == to),
    ) {
        (Some(a), Some(b)) => b == a + 1,
        _ => false,
    }
}

impl HrmsServer {
    pub fn from_seed(seed: &Value, documents: &BTreeMap<String, String>) -> Result<Self, String> {
        let mut s: HrmsServer = if seed.as_object().is_some_and(Map::is_empty) {
            HrmsServer {
                company: "Company".into(),
                actor: "hr-ops".into(),
                employees: Vec::new(),
                leave_requests: Vec::new(),
                requisitions: Vec::new(),
                candidates: Vec::new(),
                onboarding_checklists: Vec::new(),
                onboarding_template: Vec::new(),
                documents: BTreeMap::new(),
            }
        } else {
            serde_json::from_value(seed.clone()).map_err(|e| e.to_string())?
        };
        s.documents = documents.clone();
        for e in &s.employees {
            if let Some(m) = &e.manager_id {
                if !s.employees.iter().any(|x| &x.employee_id == m) {
                    return Err(format!(
                        "employee {} has unknown manager {m}",
                        e.employee_id
                    ));
                }
            }
        }
        for c in &s.candidates {
            if !STAGES.contains(&c.stage.as_str()) {
                return Err(format!(
                    "candidate {} has unknown stage `{}`",
                    c.candidate_id, c.stage
                ));
            }
            if !s
                .requisitions
                .iter()
                .any(|r| r.requisition_id == c.requisition_id)
            {
                return Err(format!(
                    "candidate {} has unknown requisition {}",
                    c.candidate_id, c.requisition_id
                ));
            }
        }
        for r in &s.leave_requests {
            if !s.employees.iter().any(|e| e.employee_id == r.employee_id)
                || !LEAVE_TYPES.contains(&r.leave_type.as_str())
            {
                return Err(format!(
                    "leave request {} has an unknown employee or leave type",
                    r.request_id
                ));
            }
        }
        Ok(s)
    }

    fn employee(&self, id: &str) -> Result<&Employee, String> {
        self.employees
            .iter()
            .find(|e| e.employee_id.eq_ignore_ascii_case(id) || e.email.eq_ignore_ascii_case(id))
            .ok_or_else(|| format!("no employee with id `{id}`. Use search_employees to find employee ids (like E007)"))
    }

    fn employee_index(&self, id: &str) -> Result<usize, String> {
        let key = self.employee(id)?.employee_id.clone();
        self.employees
            .iter()
            .position(|e| e.employee_id == key)
            .ok_or_else(|| format!("no employee with id `{id}`"))
    }

    fn name_of(&self, id: &str) -> String {
        self.employees
            .iter()
            .find(|e| e.employee_id == id)
            .map(Employee::name)
            .unwrap_or_else(|| id.to_string())
    }

    fn request_index(&self, id: &str) -> Result<usize, String> {
        self.leave_requests
            .iter()
            .position(|r| r.request_id.eq_ignore_ascii_case(id))
            .ok_or_else(|| format!("no leave request `{id}`. Use list_leave_requests to find request ids (like LR-0004)"))
    }

    fn candidate_index(&self, id: &str) -> Result<usize, String> {
        self.candidates
            .iter()
            .position(|c| c.candidate_id.eq_ignore_ascii_case(id))
            .ok_or_else(|| {
                format!(
                    "no candidate `{id}`. Use list_candidates to find candidate ids (like C-203)"
                )
            })
    }

    fn requisition(&self, id: &str) -> Result<&Requisition, String> {
        self.requisitions
            .iter()
            .find(|r| r.requisition_id.eq_ignore_ascii_case(id))
            .ok_or_else(|| {
                format!("no requisition `{id}`. Use list_requisitions to find ids (like REQ-101)")
            })
    }

    fn pending_days(&self, employee_id: &str, leave_type: &str, except: Option<&str>) -> i64 {
        self.leave_requests
            .iter()
            .filter(|r| {
                r.employee_id == employee_id && r.leave_type == leave_type && r.status == "pending"
            })
            .filter(|r| except != Some(r.request_id.as_str()))
            .map(|r| r.days)
            .sum()
    }

    fn balance_view(&self, e: &Employee) -> Value {
        let mut pending = Map::new();
        let mut available = Map::new();
        for t in LEAVE_TYPES {
            let p = self.pending_days(&e.employee_id, t, None);
            pending.insert((*t).into(), p.into());
            available.insert((*t).into(), (e.leave_balance.get(t) - p).into());
        }
        json!({
            "employee_id": e.employee_id, "name": e.name(), "balance": e.leave_balance,
            "pending_days": pending, "available_after_pending": available,
        })
    }

    fn reports_of(&self, id: &str) -> Vec<&Employee> {
        self.employees
            .iter()
            .filter(|e| e.manager_id.as_deref() == Some(id))
            .collect()
    }

    fn checklist_index(&self, id: &str) -> Result<usize, String> {
        self.onboarding_checklists
            .iter()
            .position(|c| c.checklist_id.eq_ignore_ascii_case(id))
            .ok_or_else(|| format!("no onboarding checklist `{id}`. Use get_onboarding_checklist with an employee_id to find it"))
    }

    fn add_note(&mut self, i: usize, ctx: &Ctx, text: &str) {
        let author = self.actor.clone();
        self.candidates[i].notes.push(Note {
            author,
            text: text.to_string(),
            created_at: ctx.now_text(),
        });
    }
}

impl ToolServer for HrmsServer {
    fn name(&self) -> &'static str {
        "hrms"
    }

    fn tools(&self) -> Vec<ToolSpec> {
        let emp = json!({"type": "string", "minLength": 1, "description": "Employee id like E007 (an employee email also works)"});
        let date = |d: &str| json!({"type": "string", "format": "date", "description": d});
        let obj = |required: Vec<&str>, props: Value| json!({"type": "object", "additionalProperties": false, "required": required, "properties": props});
        vec![
            spec("search_employees", "Search the employee directory by name, email or id (`query`, substring), department, title or manager. No filters lists everyone.", false, obj(vec![], json!({
                "query": {"type": "string"}, "department": {"type": "string", "description": "e.g. Engineering, Sales, People, Finance"},
                "title": {"type": "string", "description": "Part of the job title"}, "manager_id": {"type": "string"},
                "status": {"type": "string", "enum": ["active", "pre_start", "terminated"]},
            }))),
            spec("get_employee", "Get an employee's full record, including their manager and number of direct reports.", false, obj(vec!["employee_id"], json!({"employee_id": emp}))),
            spec("get_direct_reports", "List the people who report to an employee; with recursive=true, their whole organisation (all levels).", false, obj(vec!["employee_id"], json!({
                "employee_id": emp, "recursive": {"type": "boolean", "description": "Include indirect reports (default false)"},
            }))),
            spec("get_manager_chain", "The chain of managers above an employee, nearest first, up to the CEO.", false, obj(vec!["employee_id"], json!({"employee_id": emp}))),
            spec("get_leave_balance", "An employee's leave balances (vacation, sick, personal days), days in pending requests, and what remains after them.", false, obj(vec!["employee_id"], json!({"employee_id": emp}))),
            spec("list_leave_requests", "List leave requests, filtered by employee, status and type.", false, obj(vec![], json!({
                "employee_id": emp, "status": {"type": "string", "enum": ["pending", "approved", "rejected"]},
                "leave_type": {"type": "string", "enum": LEAVE_TYPES},
            }))),
            spec("submit_leave_request", "File a leave request for an employee (status pending). Days are counted Mon-Fri inclusive; the request may not exceed the balance left after the employee's other pending requests, nor overlap their existing leave.", true, obj(vec!["employee_id", "leave_type", "start_date", "end_date"], json!({
                "employee_id": emp, "leave_type": {"type": "string", "enum": LEAVE_TYPES},
                "start_date": date("First day of leave, e.g. 2026-04-06"), "end_date": date("Last day of leave (inclusive)"),
                "reason": {"type": "string"},
            }))),
            spec("approve_leave_request", "Approve a pending leave request; the days are deducted from the employee's balance.", true, obj(vec!["request_id"], json!({
                "request_id": {"type": "string", "minLength": 1, "description": "e.g. LR-0004"}, "note": {"type": "string"},
            }))),
            spec("reject_leave_request", "Reject a pending leave request with a reason the employee will see.", true, obj(vec!["request_id", "reason"], json!({
                "request_id": {"type": "string", "minLength": 1}, "reason": {"type": "string", "minLength": 3},
            }))),
            spec("list_requisitions", "List job requisitions.", false, obj(vec![], json!({
                "status": {"type": "string", "enum": ["open", "on_hold", "closed"]}, "department": {"type": "string"},
            }))),
            spec("get_requisition", "Get a requisition with its hiring manager and candidate counts per stage.", false, obj(vec!["requisition_id"], json!({
                "requisition_id": {"type": "string", "minLength": 1, "description": "e.g. REQ-101"},
            }))),
            spec("list_candidates", "List candidates, filtered by requisition and stage.", false, obj(vec![], json!({
                "requisition_id": {"type": "string"}, "stage": {"type": "string", "enum": STAGES},
            }))),
            spec("get_candidate", "Get a candidate's full record including notes.", false, obj(vec!["candidate_id"], json!({
                "candidate_id": {"type": "string", "minLength": 1, "description": "e.g. C-203"},
            }))),
            spec("move_candidate_stage", "Move a candidate to another pipeline stage. Candidates advance one stage at a time (applied → screening → interview → offer → hired) and can be moved to rejected or withdrawn from any open stage. An optional note is added to their record.", true, obj(vec!["candidate_id", "stage"], json!({
                "candidate_id": {"type": "string", "minLength": 1}, "stage": {"type": "string", "enum": STAGES}, "note": {"type": "string"},
            }))),
            spec("add_candidate_note", "Add a note to a candidate's record.", true, obj(vec!["candidate_id", "note"], json!({
                "candidate_id": {"type": "string", "minLength": 1}, "note": {"type": "string", "minLength": 1},
            }))),
            spec("get_onboarding_checklist", "Get an onboarding checklist by checklist_id or by the new hire's employee_id (give one).", false, obj(vec![], json!({
                "checklist_id": {"type": "string", "description": "e.g. OB-001"}, "employee_id": emp,
            }))),
            spec("create_onboarding_checklist", "Create a new hire's onboarding checklist. Without `items`, the company's standard template is used, with due dates relative to the start date.", true, obj(vec!["employee_id", "start_date"], json!({
                "employee_id": emp, "start_date": date("The new hire's first day"),
                "items": {"type": "array", "minItems": 1, "description": "Custom items instead of the template", "items": {
                    "type": "object", "additionalProperties": false, "required": ["title", "owner", "due_date"],
                    "properties": {"title": {"type": "string", "minLength": 1}, "owner": {"type": "string", "enum": ["HR", "IT", "Manager", "Employee"]}, "due_date": date("Due date")},
                }},
            }))),
            spec("complete_onboarding_item", "Mark one checklist item done.", true, obj(vec!["checklist_id", "item_id"], json!({
                "checklist_id": {"type": "string", "minLength": 1}, "item_id": {"type": "string", "minLength": 1, "description": "e.g. OB-001-02"},
                "note": {"type": "string"},
            }))),
            spec("list_documents", "List the company's HR documents (policies, org chart).", false, obj(vec![], json!({}))),
            spec("read_document", "Read one HR document by filename.", false, obj(vec!["filename"], json!({
                "filename": {"type": "string", "minLength": 1, "description": "e.g. leave_policy.md"},
            }))),
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
            "search_employees" => {
                let lower = |k: &str| p.opt_str(k).map(str::to_lowercase);
                let (q, dept, title, mgr, status) = (
                    lower("query"),
                    lower("department"),
                    lower("title"),
                    lower("manager_id"),
                    p.opt_str("status"),
                );
                let hits: Vec<Value> = self
                    .employees
                    .iter()
                    .filter(|e| {
                        q.as_ref().is_none_or(|q| {
                            [e.name(), e.email.clone(), e.employee_id.clone()]
                                .iter()
                                .any(|f| f.to_lowercase().contains(q.as_str()))
                        }) && dept
                            .as_ref()
                            .is_none_or(|d| e.department.to_lowercase() == *d)
                            && title
                                .as_ref()
                                .is_none_or(|t| e.title.to_lowercase().contains(t.as_str()))
                            && mgr.as_ref().is_none_or(|m| {
                                e.manager_id
                                    .as_deref()
                                    .is_some_and(|x| x.to_lowercase() == *m)
                            })
                            && status.is_none_or(|s| e.status == s)
                    })
                    .map(Employee::summary)
                    .collect();
                Ok(json!({"total": hits.len(), "employees": hits}))
            }
            "get_employee" => {
                let e = self.employee(p.str("employee_id")?)?;
                let manager = e
                    .manager_id
                    .as_deref()
                    .and_then(|m| self.employees.iter().find(|x| x.employee_id == m));
                let mut v = serde_json::to_value(e).map_err(|x| x.to_string())?;
                v["name"] = e.name().into();
                v["manager"] = manager.map_or(
                    Value::Null,
                    |m| json!({"employee_id": m.employee_id, "name": m.name(), "title": m.title}),
                );
                v["direct_report_count"] = self.reports_of(&e.employee_id).len().into();
                Ok(v)
            }
            "get_direct_reports" => {
                let root = self.employee(p.str("employee_id")?)?;
                let recursive = p.bool_or("recursive", false);
                let mut out = Vec::new();
                let mut frontier = vec![(root.employee_id.clone(), 1)];
                while let Some((id, depth)) = frontier.pop() {
                    for r in self.reports_of(&id) {
                        let mut v = r.summary();
                        v["level"] = depth.into();
                        out.push(v);
                        if recursive {
                            frontier.push((r.employee_id.clone(), depth + 1));
                        }
                    }
                }
                out.sort_by(|a, b| a["employee_id"].as_str().cmp(&b["employee_id"].as_str()));
                Ok(
                    json!({"employee_id": root.employee_id, "name": root.name(), "recursive": recursive, "total": out.len(), "reports": out}),
                )
            }
            "get_manager_chain" => {
                let e = self.employee(p.str("employee_id")?)?;
                let mut chain = Vec::new();
                let mut cur = e.manager_id.clone();
                while let Some(m) = cur {
                    let Some(mgr) = self.employees.iter().find(|x| x.employee_id == m) else {
                        break;
                    };
                    if chain.len() > self.employees.len() {
                        break; // a cycle in the data; never loop forever
                    }
                    chain.push(json!({"employee_id": mgr.employee_id, "name": mgr.name(), "title": mgr.title}));
                    cur = mgr.manager_id.clone();
                }
                Ok(json!({"employee_id": e.employee_id, "name": e.name(), "managers": chain}))
            }
            "get_leave_balance" => {
                let e = self.employee(p.str("employee_id")?)?;
                Ok(self.balance_view(e))
            }
            "list_leave_requests" => {
                let emp = p
                    .opt_str("employee_id")
                    .map(|id| self.employee(id).map(|e| e.employee_id.clone()))
                    .transpose()?;
                let status = p.opt_str("status");
                let ty = p.opt_str("leave_type");
                let hits: Vec<Value> = self
                    .leave_requests
                    .iter()
                    .filter(|r| {
                        emp.as_ref().is_none_or(|e| &r.employee_id == e)
                            && status.is_none_or(|s| r.status == s)
                            && ty.is_none_or(|t| r.leave_type == t)
                    })
                    .map(|r| {
                        let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
                        v["employee_name"] = self.name_of(&r.employee_id).into();
                        v
                    })
                    .collect();
                Ok(json!({"total": hits.len(), "requests": hits}))
            }
            "submit_leave_request" => {
                let i = self.employee_index(p.str("employee_id")?)?;
                let e = self.employees[i].clone();
                if e.status == "terminated" {
                    return Err(format!(
                        "{} ({}) is no longer employed",
                        e.name(),
                        e.employee_id
                    ));
                }
                let ty = p.str("leave_type")?;
                let (start, end) = (p.date("start_date")?, p.date("end_date")?);
                if end < start {
                    return Err("`end_date` is before `start_date`".into());
                }
                if ty != "sick" && start < ctx.now.date_naive() {
                    return Err(format!(
                        "{ty} leave cannot start in the past (today is {})",
                        ctx.now.date_naive()
                    ));
                }
                let days = working_days(start, end);
                if days == 0 {
                    return Err("the requested period contains no working days (Mon-Fri)".into());
                }
                if let Some(r) = self.leave_requests.iter().find(|r| {
                    r.employee_id == e.employee_id
                        && r.status != "rejected"
                        && parse_date(&r.start_date).is_some_and(|s| s <= end)
                        && parse_date(&r.end_date).is_some_and(|t| start <= t)
                }) {
                    return Err(format!(
                        "overlaps {}'s existing {} request {} ({} to {}, {})",
                        e.name(),
                        r.leave_type,
                        r.request_id,
                        r.start_date,
                        r.end_date,
                        r.status
                    ));
                }
                let available =
                    e.leave_balance.get(ty) - self.pending_days(&e.employee_id, ty, None);
                if days > available {
                    return Err(format!(
                        "{} requests {days} {ty} day(s) but only {available} are available ({} balance minus pending requests). Shorten the request or use another leave type",
                        e.name(), e.leave_balance.get(ty)
                    ));
                }
                let id = next_id(
                    "LR-",
                    4,
                    self.leave_requests.iter().map(|r| r.request_id.as_str()),
                );
                let req = LeaveRequest {
                    request_id: id,
                    employee_id: e.employee_id.clone(),
                    leave_type: ty.to_string(),
                    start_date: start.to_string(),
                    end_date: end.to_string(),
                    days,
                    status: "pending".into(),
                    reason: p.opt_str("reason").unwrap_or_default().to_string(),
                    submitted_at: ctx.now_text(),
                    decided_at: None,
                    decision_note: None,
                };
                let out = json!({"status": "submitted", "request": &req});
                self.leave_requests.push(req);
                Ok(out)
            }
            "approve_leave_request" => {
                let i = self.request_index(p.str("request_id")?)?;
                let r = self.leave_requests[i].clone();
                if r.status != "pending" {
                    return Err(format!(
                        "request {} is already {}; only pending requests can be decided",
                        r.request_id, r.status
                    ));
                }
                let ei = self.employee_index(&r.employee_id)?;
                let balance = self.employees[ei].leave_balance.get(&r.leave_type);
                if r.days > balance {
                    return Err(format!(
                        "request {} needs {} {} day(s) but {} has only {balance}; it cannot be approved (reject it with a reason instead)",
                        r.request_id, r.days, r.leave_type, self.employees[ei].name()
                    ));
                }
                if let Some(b) = self.employees[ei].leave_balance.get_mut(&r.leave_type) {
                    *b -= r.days;
                }
                let remaining = self.employees[ei].leave_balance.get(&r.leave_type);
                let req = &mut self.leave_requests[i];
                req.status = "approved".into();
                req.decided_at = Some(ctx.now_text());
                req.decision_note = p.opt_str("note").map(str::to_string);
                Ok(json!({"status": "approved", "request": req, "remaining_balance": remaining}))
            }
            "reject_leave_request" => {
                let i = self.request_index(p.str("request_id")?)?;
                let req = &mut self.leave_requests[i];
                if req.status != "pending" {
                    return Err(format!(
                        "request {} is already {}; only pending requests can be decided",
                        req.request_id, req.status
                    ));
                }
                req.status = "rejected".into();
                req.decided_at = Some(ctx.now_text());
                req.decision_note = Some(p.str("reason")?.to_string());
                Ok(json!({"status": "rejected", "request": req}))
            }
            "list_requisitions" => {
                let status = p.opt_str("status");
                let dept = p.opt_str("department").map(str::to_lowercase);
                let hits: Vec<&Requisition> = self
                    .requisitions
                    .iter()
                    .filter(|r| {
                        status.is_none_or(|s| r.status == s)
                            && dept
                                .as_ref()
                                .is_none_or(|d| r.department.to_lowercase() == *d)
                    })
                    .collect();
                Ok(json!({"total": hits.len(), "requisitions": hits}))
            }
            "get_requisition" => {
                let r = self.requisition(p.str("requisition_id")?)?;
                let mut counts = Map::new();
                for s in STAGES {
                    let n = self
                        .candidates
                        .iter()
                        .filter(|c| c.requisition_id == r.requisition_id && c.stage == *s)
                        .count();
                    if n > 0 {
                        counts.insert((*s).into(), n.into());
                    }
                }
                let mut v = serde_json::to_value(r).map_err(|e| e.to_string())?;
                v["hiring_manager"] = self.name_of(&r.hiring_manager_id).into();
                v["recruiter"] = self.name_of(&r.recruiter_id).into();
                v["candidates_by_stage"] = Value::Object(counts);
                Ok(v)
            }
            "list_candidates" => {
                let req = p
                    .opt_str("requisition_id")
                    .map(|id| self.requisition(id).map(|r| r.requisition_id.clone()))
                    .transpose()?;
                let stage = p.opt_str("stage");
                let hits: Vec<Value> = self
                    .candidates
                    .iter()
                    .filter(|c| req.as_ref().is_none_or(|r| &c.requisition_id == r) && stage.is_none_or(|s| c.stage == s))
                    .map(|c| json!({"candidate_id": c.candidate_id, "name": c.name, "email": c.email, "requisition_id": c.requisition_id, "stage": c.stage, "applied_at": c.applied_at, "notes": c.notes.len()}))
                    .collect();
                Ok(json!({"total": hits.len(), "candidates": hits}))
            }
            "get_candidate" => {
                let c = &self.candidates[self.candidate_index(p.str("candidate_id")?)?];
                let mut v = serde_json::to_value(c).map_err(|e| e.to_string())?;
                if let Ok(r) = self.requisition(&c.requisition_id) {
                    v["requisition_title"] = r.title.clone().into();
                }
                Ok(v)
            }
            "move_candidate_stage" => {
                let i = self.candidate_index(p.str("candidate_id")?)?;
                let to = p.str("stage")?;
                let c = self.candidates[i].clone();
                if c.stage == to {
                    return Err(format!(
                        "{} ({}) is already in `{to}`",
                        c.name, c.candidate_id
                    ));
                }
                if !transition_allowed(&c.stage, to) {
                    return Err(format!(
                        "cannot move {} ({}) from `{}` to `{to}`: candidates advance one stage at a time (applied → screening → interview → offer → hired) and can go to rejected or withdrawn from any open stage; hired, rejected and withdrawn are final",
                        c.name, c.candidate_id, c.stage
                    ));
                }
                let req_open = self
                    .requisition(&c.requisition_id)
                    .map(|r| r.status == "open")
                    .unwrap_or(false);
                if !req_open && PIPELINE.contains(&to) {
                    return Err(format!(
                        "requisition {} is not open; candidates on it cannot advance",
                        c.requisition_id
                    ));
                }
                self.candidates[i].stage = to.to_string();
                self.candidates[i].stage_updated_at = Some(ctx.now_text());
                if let Some(note) = p.opt_str("note").filter(|n| !n.trim().is_empty()) {
                    self.add_note(i, ctx, note);
                }
                Ok(
                    json!({"status": "moved", "candidate_id": c.candidate_id, "from": c.stage, "to": to}),
                )
            }
            "add_candidate_note" => {
                let i = self.candidate_index(p.str("candidate_id")?)?;
                self.add_note(i, ctx, p.str("note")?);
                Ok(
                    json!({"status": "noted", "candidate_id": self.candidates[i].candidate_id, "notes": self.candidates[i].notes.len()}),
                )
            }
            "get_onboarding_checklist" => {
                let found = match (p.opt_str("checklist_id"), p.opt_str("employee_id")) {
                    (Some(id), _) => &self.onboarding_checklists[self.checklist_index(id)?],
                    (None, Some(emp)) => {
                        let e = self.employee(emp)?;
                        self.onboarding_checklists
                            .iter()
                            .find(|c| c.employee_id == e.employee_id)
                            .ok_or_else(|| format!("{} ({}) has no onboarding checklist; create_onboarding_checklist makes one", e.name(), e.employee_id))?
                    }
                    (None, None) => return Err("give `checklist_id` or `employee_id`".into()),
                };
                let mut v = serde_json::to_value(found).map_err(|e| e.to_string())?;
                v["employee_name"] = self.name_of(&found.employee_id).into();
                v["open_items"] = found
                    .items
                    .iter()
                    .filter(|i| i.status != "done")
                    .count()
                    .into();
                Ok(v)
            }
            "create_onboarding_checklist" => {
                let e = self.employee(p.str("employee_id")?)?.clone();
                if let Some(c) = self
                    .onboarding_checklists
                    .iter()
                    .find(|c| c.employee_id == e.employee_id)
                {
                    return Err(format!(
                        "{} already has onboarding checklist {}; update that one",
                        e.name(),
                        c.checklist_id
                    ));
                }
                let start = p.date("start_date")?;
                let id = next_id(
                    "OB-",
                    3,
                    self.onboarding_checklists
                        .iter()
                        .map(|c| c.checklist_id.as_str()),
                );
                let custom: Option<Vec<(String, String, String)>> =
                    params.get("items").and_then(Value::as_array).map(|items| {
                        items
                            .iter()
                            .map(|it| {
                                let f = |k: &str| {
                                    it.get(k)
                                        .and_then(Value::as_str)
                                        .unwrap_or_default()
                                        .to_string()
                                };
                                (f("title"), f("owner"), f("due_date"))
                            })
                            .collect()
                    });
                let rows = match custom {
                    Some(rows) => rows,
                    None if self.onboarding_template.is_empty() => {
                        return Err("there is no standard template; pass `items`".into());
                    }
                    None => self
                        .onboarding_template
                        .iter()
                        .map(|t| {
                            (
                                t.title.clone(),
                                t.owner.clone(),
                                (start + Duration::days(t.due_offset_days)).to_string(),
                            )
                        })
                        .collect(),
                };
                let items = rows
                    .into_iter()
                    .enumerate()
                    .map(|(k, (title, owner, due_date))| ChecklistItem {
                        item_id: format!("{id}-{:02}", k + 1),
                        title,
                        owner,
                        due_date,
                        status: "pending".into(),
                        completed_at: None,
                        note: None,
                    })
                    .collect();
                let checklist = Checklist {
                    checklist_id: id,
                    employee_id: e.employee_id.clone(),
                    start_date: start.to_string(),
                    created_at: ctx.now_text(),
                    items,
                };
                let out = json!({"status": "created", "checklist": &checklist});
                self.onboarding_checklists.push(checklist);
                Ok(out)
            }
            "complete_onboarding_item" => {
                let ci = self.checklist_index(p.str("checklist_id")?)?;
                let item_id = p.str("item_id")?;
                let list = &mut self.onboarding_checklists[ci];
                let known: Vec<String> = list.items.iter().map(|i| i.item_id.clone()).collect();
                let Some(item) = list
                    .items
                    .iter_mut()
                    .find(|i| i.item_id.eq_ignore_ascii_case(item_id))
                else {
                    return Err(format!(
                        "checklist {} has no item `{item_id}` (items: {})",
                        list.checklist_id,
                        known.join(", ")
                    ));
                };
                if item.status == "done" {
                    return Err(format!("item {} is already done", item.item_id));
                }
                item.status = "done".into();
                item.completed_at = Some(ctx.now_text());
                item.note = p.opt_str("note").map(str::to_string);
                let item = item.clone();
                let open = list.items.iter().filter(|i| i.status != "done").count();
                Ok(json!({"status": "completed", "item": item, "open_items": open}))
            }
            "list_documents" => {
                let docs: Vec<Value> = self
                    .documents
                    .iter()
                    .map(|(name, text)| json!({"filename": name, "title": documents::title(name, text)}))
                    .collect();
                Ok(json!({"documents": docs}))
            }
            "read_document" => {
                let name = p.str("filename")?;
                match self.documents.get(name) {
                    Some(text) => Ok(json!({"filename": name, "content": text})),
                    // Exact names only, as recorded runs were answered.
                    None => Err(documents::missing(&self.documents, name, "document")),
                }
            }
            other => Err(format!("unknown tool `{other}` on the hrms server")),
        }
    }

    fn data(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    fn human_readable(&self) -> String {
        let pending = self
            .leave_requests
            .iter()
            .filter(|r| r.status == "pending")
            .count();
        let open_reqs = self
            .requisitions
            .iter()
            .filter(|r| r.status == "open")
            .count();
        let mut out = format!(
            "{} HRMS: {} employees, {} leave requests ({pending} pending), {} requisitions ({open_reqs} open), {} candidates, {} onboarding checklists\n",
            self.company,
            self.employees.len(),
            self.leave_requests.len(),
            self.requisitions.len(),
            self.candidates.len(),
            self.onboarding_checklists.len()
        );
        for r in &self.leave_requests {
            out.push_str(&format!(
                "leave {} {} {} {}..{} ({} d) {}\n",
                r.request_id,
                self.name_of(&r.employee_id),
                r.leave_type,
                r.start_date,
                r.end_date,
                r.days,
                r.status
            ));
        }
        for c in &self.candidates {
            out.push_str(&format!(
                "candidate {} {} {} {}\n",
                c.candidate_id, c.name, c.requisition_id, c.stage
            ));
        }
        for c in &self.onboarding_checklists {
            let done = c.items.iter().filter(|i| i.status == "done").count();
            out.push_str(&format!(
                "onboarding {} {} {done}/{} done\n",
                c.checklist_id,
                self.name_of(&c.employee_id),
                c.items.len()
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests;
