//! The HRMS server: employees and the org chart, leave balances and requests,
//! job requisitions and the candidate pipeline, onboarding checklists, and the
//! company's HR documents (the scenario's seed documents, read-only).
//!
//! Business rules the agent meets as in-band errors: leave beyond the available
//! balance, overlapping leave, deciding a request twice, illegal pipeline
//! transitions, a second onboarding checklist for one person, completing an item twice.
//!
//! This file holds the state, the seed loader and the routing of each tool to its
//! subdomain's file: `people`, `leave`, `recruiting`, `onboarding` and `documents`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{Ctx, Params, ToolServer, ToolSpec};

mod documents;
mod leave;
mod onboarding;
mod people;
mod recruiting;

pub use leave::{working_days, LeaveBalance, LeaveRequest, LeaveStatus, LEAVE_TYPES};
pub use onboarding::{Checklist, ChecklistItem, ItemStatus, TemplateItem};
pub use recruiting::{transition_allowed, Candidate, Note, Requisition, RequisitionStatus, Stage};

/// Whether someone works here.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum EmployeeStatus {
    Active,
    /// Hired, not started.
    PreStart,
    Terminated,
}

impl EmployeeStatus {
    /// The status as the state's JSON and the `status` filter spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            EmployeeStatus::Active => "active",
            EmployeeStatus::PreStart => "pre_start",
            EmployeeStatus::Terminated => "terminated",
        }
    }
}

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
    pub status: EmployeeStatus,
    pub leave_balance: LeaveBalance,
}

impl Employee {
    fn name(&self) -> String {
        format!("{} {}", self.first_name, self.last_name)
    }
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
            serde_json::from_value(seed.clone()).map_err(|e| {
                let e = e.to_string();
                recruiting::unknown_stage(seed, &e).unwrap_or(e)
            })?
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
}

/// The error for a tool this server does not have.
fn unknown_tool(tool: &str) -> String {
    format!("unknown tool `{tool}` on the hrms server")
}

/// The schema of an employee parameter.
fn employee_param() -> Value {
    json!({"type": "string", "minLength": 1, "description": "Employee id like E007 (an employee email also works)"})
}

/// The schema of a date parameter.
fn date_param(description: &str) -> Value {
    json!({"type": "string", "format": "date", "description": description})
}

/// The schema of a tool's parameters: an object with exactly these properties.
fn object_schema(required: &[&str], properties: Value) -> Value {
    json!({"type": "object", "additionalProperties": false, "required": required, "properties": properties})
}

impl ToolServer for HrmsServer {
    fn name(&self) -> &'static str {
        "hrms"
    }

    fn tools(&self) -> Vec<ToolSpec> {
        [
            people::tools(),
            leave::tools(),
            recruiting::tools(),
            onboarding::tools(),
            documents::tools(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    fn step(
        &mut self,
        ctx: &Ctx,
        tool: &str,
        params: &Map<String, Value>,
    ) -> Result<Value, String> {
        let p = Params(params);
        match tool {
            "search_employees" | "get_employee" | "get_direct_reports" | "get_manager_chain" => {
                self.step_people(tool, &p)
            }
            "get_leave_balance"
            | "list_leave_requests"
            | "submit_leave_request"
            | "approve_leave_request"
            | "reject_leave_request" => self.step_leave(ctx, tool, &p),
            "list_requisitions"
            | "get_requisition"
            | "list_candidates"
            | "get_candidate"
            | "move_candidate_stage"
            | "add_candidate_note" => self.step_recruiting(ctx, tool, &p),
            "get_onboarding_checklist"
            | "create_onboarding_checklist"
            | "complete_onboarding_item" => self.step_onboarding(ctx, tool, &p),
            "list_documents" | "read_document" => self.step_documents(tool, &p),
            other => Err(unknown_tool(other)),
        }
    }

    fn data(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    fn human_readable(&self) -> String {
        let pending = self
            .leave_requests
            .iter()
            .filter(|r| r.status == LeaveStatus::Pending)
            .count();
        let open_reqs = self
            .requisitions
            .iter()
            .filter(|r| r.status == RequisitionStatus::Open)
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
            let done = c
                .items
                .iter()
                .filter(|i| i.status == ItemStatus::Done)
                .count();
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
