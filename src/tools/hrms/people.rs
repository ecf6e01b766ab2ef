//! People: the employee directory and the org chart (searching employees, one
//! employee's record, their reports and their chain of managers).

use serde_json::{json, Value};

use super::{employee_param, object_schema, unknown_tool, Employee, HrmsServer};
use crate::tools::{spec, Params, ToolSpec};

impl Employee {
    fn summary(&self) -> Value {
        json!({
            "employee_id": self.employee_id, "name": self.name(), "title": self.title,
            "department": self.department, "email": self.email, "manager_id": self.manager_id,
            "status": self.status,
        })
    }
}

/// The directory tools as the agent is offered them.
pub(super) fn tools() -> Vec<ToolSpec> {
    let emp = employee_param();
    vec![
        spec("search_employees", "Search the employee directory by name, email or id (`query`, substring), department, title or manager. No filters lists everyone.", false, object_schema(&[], json!({
            "query": {"type": "string"}, "department": {"type": "string", "description": "e.g. Engineering, Sales, People, Finance"},
            "title": {"type": "string", "description": "Part of the job title"}, "manager_id": {"type": "string"},
            "status": {"type": "string", "enum": ["active", "pre_start", "terminated"]},
        }))),
        spec("get_employee", "Get an employee's full record, including their manager and number of direct reports.", false, object_schema(&["employee_id"], json!({"employee_id": emp}))),
        spec("get_direct_reports", "List the people who report to an employee; with recursive=true, their whole organisation (all levels).", false, object_schema(&["employee_id"], json!({
            "employee_id": emp, "recursive": {"type": "boolean", "description": "Include indirect reports (default false)"},
        }))),
        spec("get_manager_chain", "The chain of managers above an employee, nearest first, up to the CEO.", false, object_schema(&["employee_id"], json!({"employee_id": emp}))),
    ]
}

impl HrmsServer {
    /// Runs one of the directory tools (none changes the state).
    pub(super) fn step_people(&self, tool: &str, p: &Params<'_>) -> Result<Value, String> {
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
                            && status.is_none_or(|s| e.status.as_str() == s)
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
            other => Err(unknown_tool(other)),
        }
    }

    fn reports_of(&self, id: &str) -> Vec<&Employee> {
        self.employees
            .iter()
            .filter(|e| e.manager_id.as_deref() == Some(id))
            .collect()
    }
}
