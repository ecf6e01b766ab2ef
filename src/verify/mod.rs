//! Scoring a rollout: a task's programmatic checks, written as data in the task JSON,
//! evaluated against the final environment state and the trajectory. Pure and
//! deterministic, so a replayed rollout always gets the same verdict.
//!
//! # The check language
//!
//! Every check is `{"id", "description", "kind", ...}` plus optional `"required": true`
//! and `"weight": <number>` (default 1). Kinds:
//!
//! - `state_count` — `{"path", "where"?, "equals"? , "at_least"?, "at_most"?}`: the
//!   number of records at `path` that match `where`.
//! - `state_field_equals` — `{"path", "where"?, "field", "equals"}`: exactly one record
//!   at `path` matches `where`, and its `field` equals `equals` (strings compare
//!   case-insensitively, numbers by value).
//! - `no_double_booking` — `{"attendees"?: [email]}`: no two confirmed calendar events
//!   overlap for a shared attendee; limited to the listed people when given.
//! - `email_sent` — `{"to"?: [..], "subject_contains"?: [..], "body_contains"?: [..],
//!   "body_contains_any"?: [..], "body_excludes"?: [..]}`: some sent email has every
//!   `to` address among its recipients (to + cc), every `subject_contains` in its
//!   subject, every `body_contains`, at least one `body_contains_any` and none of
//!   `body_excludes` in its body (all case-insensitive).
//! - `trajectory_mentions` — `{"contains"?: [..], "any_of"?: [..], "scope"?:
//!   "final_answer" | "any_assistant"}`: the last assistant message with text (or any
//!   assistant message) contains every `contains` and one of `any_of`
//!   (case-insensitive).
//! - `tool_called` / `tool_not_called` — `{"tool", "with"?, "at_least"?}`: the
//!   assistant called (did not call) `tool` with arguments matching `with`.
//!
//! **Paths** are dotted keys from the state root (`{"email":..,"calendar":..}`), e.g.
//! `hrms.leave_requests`. Whenever a key yields an array, its elements become the
//! current records, so `hrms.onboarding_checklists[checklist_id=OB-001].items` is the
//! items of one checklist. A segment may end in `[field=value,field2=value2]` to keep
//! only records whose field's text equals the value.
//!
//! **Filters** (`where`, `with`) map a field (dotted, no flattening) to either a
//! literal (equality, strings case-insensitive) or one operator object:
//! `{"eq": v}`, `{"ne": v}`, `{"contains": v}` (substring of a string, or an element
//! of an array), `{"any_of": [..]}`, `{"gte": v}`, `{"lte": v}` (numbers, or strings
//! such as ISO dates compared as text), `{"exists": bool}`.
//!
//! # Scoring
//!
//! If any `required` check fails the score is 0.0 ("No Credit"). Otherwise the score is
//! the weight of the passed checks over the total weight: 1.0 is "Full Credit", 0.0 is
//! "No Credit", anything in between "Partial Credit" — unless the task's
//! `scoring.partial_credit` is false, in which case anything short of all is 0.0.

pub mod bundle;
mod evaluate;
mod path;
pub mod rubric;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::chat::Message;
use crate::domain::verdict::{label_of, CheckResult, Verdict};

/// One programmatic check of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub id: String,
    pub description: String,
    /// A failed required check makes the whole verdict "No Credit".
    #[serde(default, skip_serializing_if = "is_false")]
    pub required: bool,
    #[serde(default = "default_weight")]
    pub weight: f64,
    #[serde(flatten)]
    pub kind: CheckKind,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn default_weight() -> f64 {
    1.0
}

/// A field → matcher map; every entry must match.
pub type Filter = BTreeMap<String, Matcher>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CheckKind {
    StateCount {
        path: String,
        #[serde(default, rename = "where", skip_serializing_if = "BTreeMap::is_empty")]
        filter: Filter,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        equals: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at_least: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at_most: Option<u64>,
    },
    StateFieldEquals {
        path: String,
        #[serde(default, rename = "where", skip_serializing_if = "BTreeMap::is_empty")]
        filter: Filter,
        field: String,
        equals: Value,
    },
    NoDoubleBooking {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        attendees: Vec<String>,
    },
    EmailSent {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        to: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        subject_contains: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        body_contains: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        body_contains_any: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        body_excludes: Vec<String>,
    },
    TrajectoryMentions {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        contains: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        any_of: Vec<String>,
        #[serde(default)]
        scope: MentionScope,
    },
    ToolCalled {
        tool: String,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        with: Filter,
        #[serde(default = "one")]
        at_least: u64,
    },
    ToolNotCalled {
        tool: String,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        with: Filter,
    },
}

fn one() -> u64 {
    1
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MentionScope {
    #[default]
    FinalAnswer,
    AnyAssistant,
}

/// A literal (equality) or one operator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Matcher {
    Op(Op),
    Literal(Value),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    Eq(Value),
    Ne(Value),
    Contains(Value),
    AnyOf(Vec<Value>),
    Gte(Value),
    Lte(Value),
    Exists(bool),
}

/// How a task turns check results into a score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoringRule {
    /// When false, anything short of every check passing scores 0.0.
    #[serde(default = "yes")]
    pub partial_credit: bool,
}

impl Default for ScoringRule {
    fn default() -> Self {
        Self {
            partial_credit: true,
        }
    }
}

fn yes() -> bool {
    true
}

pub use path::{filter_matches, get_field, resolve, StateRoot};

/// Scores a rollout: every check against the final `state` and the `trajectory`,
/// combined by the scoring rule, with or without partial credit (see the module docs).
pub fn verify(
    task_checks: &[Check],
    partial_credit: bool,
    state: &dyn StateRoot,
    trajectory: &[Message],
) -> Verdict {
    let mut checks = Vec::with_capacity(task_checks.len());
    let (mut total, mut passed_weight, mut required_failed) = (0.0, 0.0, false);
    for check in task_checks {
        let (passed, reason) = check.evaluate(state, trajectory);
        total += check.weight;
        if passed {
            passed_weight += check.weight;
        } else if check.required {
            required_failed = true;
        }
        checks.push(CheckResult {
            id: check.id.clone(),
            description: check.description.clone(),
            passed,
            reason,
        });
    }
    let all = checks.iter().all(|c| c.passed) && !checks.is_empty();
    let score = if all {
        1.0
    } else if required_failed || total <= 0.0 || !partial_credit {
        0.0
    } else {
        passed_weight / total
    };
    Verdict {
        score,
        label: label_of(score).to_string(),
        checks,
    }
}

#[cfg(test)]
mod tests;
