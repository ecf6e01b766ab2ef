//! Recruiting: job requisitions and the candidate pipeline (the stages a candidate
//! moves through, and the notes on their record).

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{object_schema, unknown_tool, HrmsServer};
use crate::tools::{spec, Ctx, Params, ToolSpec};

/// Whether a requisition is hiring.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum RequisitionStatus {
    Open,
    OnHold,
    Closed,
}

impl RequisitionStatus {
    /// The status as the state's JSON and the `status` filter spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            RequisitionStatus::Open => "open",
            RequisitionStatus::OnHold => "on_hold",
            RequisitionStatus::Closed => "closed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requisition {
    pub requisition_id: String,
    pub title: String,
    pub department: String,
    pub hiring_manager_id: String,
    pub recruiter_id: String,
    pub status: RequisitionStatus,
    pub openings: u32,
    pub location: String,
    pub opened_at: String,
    #[serde(default)]
    pub description: String,
}

/// Where a candidate is: on the pipeline (`applied` → `screening` → `interview` →
/// `offer` → `hired`) or out of it (`rejected`, `withdrawn`).
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Applied,
    Screening,
    Interview,
    Offer,
    Hired,
    Rejected,
    Withdrawn,
}

impl Stage {
    /// Every stage: the pipeline in order, then the two ways out.
    pub const ALL: [Stage; 7] = [
        Stage::Applied,
        Stage::Screening,
        Stage::Interview,
        Stage::Offer,
        Stage::Hired,
        Stage::Rejected,
        Stage::Withdrawn,
    ];

    /// The stages a candidate advances through, one at a time.
    const PIPELINE: [Stage; 5] = [
        Stage::Applied,
        Stage::Screening,
        Stage::Interview,
        Stage::Offer,
        Stage::Hired,
    ];

    /// The stage as the state's JSON and the tools' `stage` parameters spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Applied => "applied",
            Stage::Screening => "screening",
            Stage::Interview => "interview",
            Stage::Offer => "offer",
            Stage::Hired => "hired",
            Stage::Rejected => "rejected",
            Stage::Withdrawn => "withdrawn",
        }
    }

    /// The stage spelled `text`, if any.
    pub fn parse(text: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether a candidate may move from this stage to `to`.
    pub fn can_move_to(self, to: Stage) -> bool {
        let open = Stage::PIPELINE[..4].contains(&self);
        if to == Stage::Rejected || to == Stage::Withdrawn {
            return open;
        }
        match (
            Stage::PIPELINE.iter().position(|s| *s == self),
            Stage::PIPELINE.iter().position(|s| *s == to),
        ) {
            (Some(a), Some(b)) => b == a + 1,
            _ => false,
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a candidate may move from stage `from` to stage `to` (by name; a name that
/// is no stage moves nowhere).
pub fn transition_allowed(from: &str, to: &str) -> bool {
    match (Stage::parse(from), Stage::parse(to)) {
        (Some(from), Some(to)) => from.can_move_to(to),
        _ => false,
    }
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
    pub stage: Stage,
    pub source: String,
    pub applied_at: String,
    #[serde(default)]
    pub notes: Vec<Note>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage_updated_at: Option<String>,
}

/// The seed-loading error for a seed whose parse failed on a candidate's stage, worded
/// as the loader words it (`parse_error` alone names no candidate); `None` when the
/// parse failed on something else.
pub(super) fn unknown_stage(seed: &Value, parse_error: &str) -> Option<String> {
    let (id, stage) = seed.get("candidates")?.as_array()?.iter().find_map(|c| {
        let stage = c.get("stage")?.as_str()?;
        Stage::parse(stage)
            .is_none()
            .then(|| (c.get("candidate_id").and_then(Value::as_str), stage))
    })?;
    let id = id.filter(|_| parse_error.starts_with(&format!("unknown variant `{stage}`")))?;
    Some(format!("candidate {id} has unknown stage `{stage}`"))
}

/// The recruiting tools as the agent is offered them.
pub(super) fn tools() -> Vec<ToolSpec> {
    vec![
        spec("list_requisitions", "List job requisitions.", false, object_schema(&[], json!({
            "status": {"type": "string", "enum": ["open", "on_hold", "closed"]}, "department": {"type": "string"},
        }))),
        spec("get_requisition", "Get a requisition with its hiring manager and candidate counts per stage.", false, object_schema(&["requisition_id"], json!({
            "requisition_id": {"type": "string", "minLength": 1, "description": "e.g. REQ-101"},
        }))),
        spec("list_candidates", "List candidates, filtered by requisition and stage.", false, object_schema(&[], json!({
            "requisition_id": {"type": "string"}, "stage": {"type": "string", "enum": Stage::ALL.map(Stage::as_str)},
        }))),
        spec("get_candidate", "Get a candidate's full record including notes.", false, object_schema(&["candidate_id"], json!({
            "candidate_id": {"type": "string", "minLength": 1, "description": "e.g. C-203"},
        }))),
        spec("move_candidate_stage", "Move a candidate to another pipeline stage. Candidates advance one stage at a time (applied → screening → interview → offer → hired) and can be moved to rejected or withdrawn from any open stage. An optional note is added to their record.", true, object_schema(&["candidate_id", "stage"], json!({
            "candidate_id": {"type": "string", "minLength": 1}, "stage": {"type": "string", "enum": Stage::ALL.map(Stage::as_str)}, "note": {"type": "string"},
        }))),
        spec("add_candidate_note", "Add a note to a candidate's record.", true, object_schema(&["candidate_id", "note"], json!({
            "candidate_id": {"type": "string", "minLength": 1}, "note": {"type": "string", "minLength": 1},
        }))),
    ]
}

impl HrmsServer {
    /// Runs one of the recruiting tools.
    pub(super) fn step_recruiting(
        &mut self,
        ctx: &Ctx,
        tool: &str,
        p: &Params<'_>,
    ) -> Result<Value, String> {
        match tool {
            "list_requisitions" => {
                let status = p.opt_str("status");
                let dept = p.opt_str("department").map(str::to_lowercase);
                let hits: Vec<&Requisition> = self
                    .requisitions
                    .iter()
                    .filter(|r| {
                        status.is_none_or(|s| r.status.as_str() == s)
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
                for s in Stage::ALL {
                    let n = self
                        .candidates
                        .iter()
                        .filter(|c| c.requisition_id == r.requisition_id && c.stage == s)
                        .count();
                    if n > 0 {
                        counts.insert(s.as_str().into(), n.into());
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
                    .filter(|c| req.as_ref().is_none_or(|r| &c.requisition_id == r) && stage.is_none_or(|s| c.stage.as_str() == s))
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
                if c.stage.as_str() == to {
                    return Err(format!(
                        "{} ({}) is already in `{to}`",
                        c.name, c.candidate_id
                    ));
                }
                let Some(next) = Stage::parse(to).filter(|next| c.stage.can_move_to(*next)) else {
                    return Err(format!(
                        "cannot move {} ({}) from `{}` to `{to}`: candidates advance one stage at a time (applied → screening → interview → offer → hired) and can go to rejected or withdrawn from any open stage; hired, rejected and withdrawn are final",
                        c.name, c.candidate_id, c.stage
                    ));
                };
                let req_open = self
                    .requisition(&c.requisition_id)
                    .map(|r| r.status == RequisitionStatus::Open)
                    .unwrap_or(false);
                if !req_open && Stage::PIPELINE.contains(&next) {
                    return Err(format!(
                        "requisition {} is not open; candidates on it cannot advance",
                        c.requisition_id
                    ));
                }
                self.candidates[i].stage = next;
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
            other => Err(unknown_tool(other)),
        }
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

    fn add_note(&mut self, i: usize, ctx: &Ctx, text: &str) {
        let author = self.actor.clone();
        self.candidates[i].notes.push(Note {
            author,
            text: text.to_string(),
            created_at: ctx.now_text(),
        });
    }
}
