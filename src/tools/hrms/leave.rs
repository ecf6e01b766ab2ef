//! Leave: balances per leave type, leave requests and their decisions, and the
//! working-day count a request is measured in.

use std::fmt;

use chrono::{Datelike, Duration, NaiveDate, Weekday};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{
    date_param, employee_param, object_schema, unknown_tool, Employee, EmployeeStatus, HrmsServer,
};
use crate::tools::{next_id, parse_date, spec, Ctx, Params, ToolSpec};

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

/// Where a leave request stands.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum LeaveStatus {
    Pending,
    Approved,
    Rejected,
}

impl LeaveStatus {
    /// The status as the state's JSON and the tools' `status` filter spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaveStatus::Pending => "pending",
            LeaveStatus::Approved => "approved",
            LeaveStatus::Rejected => "rejected",
        }
    }
}

impl fmt::Display for LeaveStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
    pub status: LeaveStatus,
    #[serde(default)]
    pub reason: String,
    pub submitted_at: String,
    #[serde(default)]
    pub decided_at: Option<String>,
    #[serde(default)]
    pub decision_note: Option<String>,
}

pub const LEAVE_TYPES: &[&str] = &["vacation", "sick", "personal"];

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

/// The leave tools as the agent is offered them.
pub(super) fn tools() -> Vec<ToolSpec> {
    let emp = employee_param();
    vec![
        spec("get_leave_balance", "An employee's leave balances (vacation, sick, personal days), days in pending requests, and what remains after them.", false, object_schema(&["employee_id"], json!({"employee_id": emp}))),
        spec("list_leave_requests", "List leave requests, filtered by employee, status and type.", false, object_schema(&[], json!({
            "employee_id": emp, "status": {"type": "string", "enum": ["pending", "approved", "rejected"]},
            "leave_type": {"type": "string", "enum": LEAVE_TYPES},
        }))),
        spec("submit_leave_request", "File a leave request for an employee (status pending). Days are counted Mon-Fri inclusive; the request may not exceed the balance left after the employee's other pending requests, nor overlap their existing leave.", true, object_schema(&["employee_id", "leave_type", "start_date", "end_date"], json!({
            "employee_id": emp, "leave_type": {"type": "string", "enum": LEAVE_TYPES},
            "start_date": date_param("First day of leave, e.g. 2026-04-06"), "end_date": date_param("Last day of leave (inclusive)"),
            "reason": {"type": "string"},
        }))),
        spec("approve_leave_request", "Approve a pending leave request; the days are deducted from the employee's balance.", true, object_schema(&["request_id"], json!({
            "request_id": {"type": "string", "minLength": 1, "description": "e.g. LR-0004"}, "note": {"type": "string"},
        }))),
        spec("reject_leave_request", "Reject a pending leave request with a reason the employee will see.", true, object_schema(&["request_id", "reason"], json!({
            "request_id": {"type": "string", "minLength": 1}, "reason": {"type": "string", "minLength": 3},
        }))),
    ]
}

impl HrmsServer {
    /// Runs one of the leave tools.
    pub(super) fn step_leave(
        &mut self,
        ctx: &Ctx,
        tool: &str,
        p: &Params<'_>,
    ) -> Result<Value, String> {
        match tool {
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
                            && status.is_none_or(|s| r.status.as_str() == s)
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
                if e.status == EmployeeStatus::Terminated {
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
                        && r.status != LeaveStatus::Rejected
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
                    status: LeaveStatus::Pending,
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
                if r.status != LeaveStatus::Pending {
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
                req.status = LeaveStatus::Approved;
                req.decided_at = Some(ctx.now_text());
                req.decision_note = p.opt_str("note").map(str::to_string);
                Ok(json!({"status": "approved", "request": req, "remaining_balance": remaining}))
            }
            "reject_leave_request" => {
                let i = self.request_index(p.str("request_id")?)?;
                let req = &mut self.leave_requests[i];
                if req.status != LeaveStatus::Pending {
                    return Err(format!(
                        "request {} is already {}; only pending requests can be decided",
                        req.request_id, req.status
                    ));
                }
                req.status = LeaveStatus::Rejected;
                req.decided_at = Some(ctx.now_text());
                req.decision_note = Some(p.str("reason")?.to_string());
                Ok(json!({"status": "rejected", "request": req}))
            }
            other => Err(unknown_tool(other)),
        }
    }

    fn request_index(&self, id: &str) -> Result<usize, String> {
        self.leave_requests
            .iter()
            .position(|r| r.request_id.eq_ignore_ascii_case(id))
            .ok_or_else(|| format!("no leave request `{id}`. Use list_leave_requests to find request ids (like LR-0004)"))
    }

    fn pending_days(&self, employee_id: &str, leave_type: &str, except: Option<&str>) -> i64 {
        self.leave_requests
            .iter()
            .filter(|r| {
                r.employee_id == employee_id
                    && r.leave_type == leave_type
                    && r.status == LeaveStatus::Pending
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
}
