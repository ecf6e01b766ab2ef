//! Onboarding: a new hire's checklist (made from the company's standard template or
//! from custom items) and completing its items.

use chrono::Duration;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{date_param, employee_param, object_schema, unknown_tool, HrmsServer};
use crate::tools::{next_id, spec, Ctx, Params, ToolSpec};

/// Whether a checklist item is still to do.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    Pending,
    Done,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChecklistItem {
    pub item_id: String,
    pub title: String,
    pub owner: String,
    pub due_date: String,
    pub status: ItemStatus,
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

/// The onboarding tools as the agent is offered them.
pub(super) fn tools() -> Vec<ToolSpec> {
    let emp = employee_param();
    vec![
        spec("get_onboarding_checklist", "Get an onboarding checklist by checklist_id or by the new hire's employee_id (give one).", false, object_schema(&[], json!({
            "checklist_id": {"type": "string", "description": "e.g. OB-001"}, "employee_id": emp,
        }))),
        spec("create_onboarding_checklist", "Create a new hire's onboarding checklist. Without `items`, the company's standard template is used, with due dates relative to the start date.", true, object_schema(&["employee_id", "start_date"], json!({
            "employee_id": emp, "start_date": date_param("The new hire's first day"),
            "items": {"type": "array", "minItems": 1, "description": "Custom items instead of the template", "items": {
                "type": "object", "additionalProperties": false, "required": ["title", "owner", "due_date"],
                "properties": {"title": {"type": "string", "minLength": 1}, "owner": {"type": "string", "enum": ["HR", "IT", "Manager", "Employee"]}, "due_date": date_param("Due date")},
            }},
        }))),
        spec("complete_onboarding_item", "Mark one checklist item done.", true, object_schema(&["checklist_id", "item_id"], json!({
            "checklist_id": {"type": "string", "minLength": 1}, "item_id": {"type": "string", "minLength": 1, "description": "e.g. OB-001-02"},
            "note": {"type": "string"},
        }))),
    ]
}

impl HrmsServer {
    /// Runs one of the onboarding tools.
    pub(super) fn step_onboarding(
        &mut self,
        ctx: &Ctx,
        tool: &str,
        p: &Params<'_>,
    ) -> Result<Value, String> {
        match tool {
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
                    .filter(|i| i.status != ItemStatus::Done)
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
                    p.0.get("items").and_then(Value::as_array).map(|items| {
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
                        status: ItemStatus::Pending,
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
                if item.status == ItemStatus::Done {
                    return Err(format!("item {} is already done", item.item_id));
                }
                item.status = ItemStatus::Done;
                item.completed_at = Some(ctx.now_text());
                item.note = p.opt_str("note").map(str::to_string);
                let item = item.clone();
                let open = list
                    .items
                    .iter()
                    .filter(|i| i.status != ItemStatus::Done)
                    .count();
                Ok(json!({"status": "completed", "item": item, "open_items": open}))
            }
            other => Err(unknown_tool(other)),
        }
    }

    fn checklist_index(&self, id: &str) -> Result<usize, String> {
        self.onboarding_checklists
            .iter()
            .position(|c| c.checklist_id.eq_ignore_ascii_case(id))
            .ok_or_else(|| format!("no onboarding checklist `{id}`. Use get_onboarding_checklist with an employee_id to find it"))
    }
}
