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
pub mod rubric;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::chat::{Message, Role};
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

impl Check {
    /// Static sanity of a check against the task's tool servers; `known_tool` says
    /// whether a tool name exists on those servers.
    pub fn validate(
        &self,
        servers: &[String],
        known_tool: &dyn Fn(&str) -> bool,
    ) -> Result<(), String> {
        let ctx = |m: String| format!("check `{}`: {m}", self.id);
        if self.id.trim().is_empty() {
            return Err("a check has an empty id".to_string());
        }
        if !(self.weight.is_finite() && self.weight > 0.0) {
            return Err(ctx(format!(
                "weight must be a positive number, got {}",
                self.weight
            )));
        }
        let need_server = |s: &str| {
            if servers.iter().any(|x| x == s) {
                Ok(())
            } else {
                Err(ctx(format!(
                    "needs the `{s}` tool server, which the task does not use"
                )))
            }
        };
        match &self.kind {
            CheckKind::StateCount {
                path,
                equals,
                at_least,
                at_most,
                ..
            } => {
                validate_path(path, servers).map_err(ctx)?;
                if equals.is_none() && at_least.is_none() && at_most.is_none() {
                    return Err(ctx(
                        "state_count needs one of `equals`, `at_least`, `at_most`".into(),
                    ));
                }
            }
            CheckKind::StateFieldEquals { path, field, .. } => {
                validate_path(path, servers).map_err(ctx)?;
                if field.is_empty() {
                    return Err(ctx("`field` is empty".into()));
                }
            }
            CheckKind::NoDoubleBooking { .. } => need_server("calendar")?,
            CheckKind::EmailSent {
                to,
                subject_contains,
                body_contains,
                body_contains_any,
                ..
            } => {
                need_server("email")?;
                if to.is_empty()
                    && subject_contains.is_empty()
                    && body_contains.is_empty()
                    && body_contains_any.is_empty()
                {
                    return Err(ctx("email_sent needs at least one of `to`, `subject_contains`, `body_contains`, `body_contains_any`".into()));
                }
            }
            CheckKind::TrajectoryMentions {
                contains, any_of, ..
            } => {
                if contains.is_empty() && any_of.is_empty() {
                    return Err(ctx(
                        "trajectory_mentions needs `contains` or `any_of`".into()
                    ));
                }
            }
            CheckKind::ToolCalled { tool, .. } | CheckKind::ToolNotCalled { tool, .. } => {
                if !known_tool(tool) {
                    return Err(ctx(format!(
                        "unknown tool `{tool}` on the task's tool servers"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Evaluates this check: `(passed, reason)`.
    pub fn evaluate(&self, state: &dyn StateRoot, trajectory: &[Message]) -> (bool, String) {
        match &self.kind {
            CheckKind::StateCount {
                path,
                filter,
                equals,
                at_least,
                at_most,
            } => {
                let records = match resolve(state, path) {
                    Ok(r) => r,
                    Err(e) => return (false, e),
                };
                let n = records.iter().filter(|r| filter_matches(r, filter)).count() as u64;
                let ok = equals.is_none_or(|e| n == e)
                    && at_least.is_none_or(|a| n >= a)
                    && at_most.is_none_or(|a| n <= a);
                let mut want = Vec::new();
                if let Some(e) = equals {
                    want.push(format!("= {e}"));
                }
                if let Some(a) = at_least {
                    want.push(format!(">= {a}"));
                }
                if let Some(a) = at_most {
                    want.push(format!("<= {a}"));
                }
                (
                    ok,
                    format!(
                        "{n} matching record(s) at `{path}`, wanted {}",
                        want.join(" and ")
                    ),
                )
            }
            CheckKind::StateFieldEquals {
                path,
                filter,
                field,
                equals,
            } => {
                let records = match resolve(state, path) {
                    Ok(r) => r,
                    Err(e) => return (false, e),
                };
                let hits: Vec<&Value> = records
                    .into_iter()
                    .filter(|r| filter_matches(r, filter))
                    .collect();
                match hits.as_slice() {
                    [one] => {
                        let actual = get_field(one, field);
                        let ok = actual.is_some_and(|a| loose_eq(a, equals));
                        let shown = actual.map_or_else(|| "missing".to_string(), Value::to_string);
                        (ok, format!("`{field}` is {shown}, wanted {equals}"))
                    }
                    [] => (false, format!("no record at `{path}` matches the filter")),
                    many => (
                        false,
                        format!(
                            "{} records at `{path}` match the filter, wanted exactly one",
                            many.len()
                        ),
                    ),
                }
            }
            CheckKind::NoDoubleBooking { attendees } => no_double_booking(state, attendees),
            CheckKind::EmailSent {
                to,
                subject_contains,
                body_contains,
                body_contains_any,
                body_excludes,
            } => {
                let sent = resolve(state, "email.messages[folder=sent]").unwrap_or_default();
                let hit = sent.iter().find(|m| {
                    let recipients: Vec<String> = ["to", "cc"]
                        .iter()
                        .flat_map(|k| {
                            m.get(*k)
                                .and_then(Value::as_array)
                                .cloned()
                                .unwrap_or_default()
                        })
                        .filter_map(|v| v.as_str().map(str::to_lowercase))
                        .collect();
                    let subject = m
                        .get("subject")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_lowercase();
                    let body = m
                        .get("body")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_lowercase();
                    to.iter().all(|t| recipients.contains(&t.to_lowercase()))
                        && subject_contains
                            .iter()
                            .all(|s| subject.contains(&s.to_lowercase()))
                        && body_contains
                            .iter()
                            .all(|s| body.contains(&s.to_lowercase()))
                        && (body_contains_any.is_empty()
                            || body_contains_any
                                .iter()
                                .any(|s| body.contains(&s.to_lowercase())))
                        && !body_excludes
                            .iter()
                            .any(|s| body.contains(&s.to_lowercase()))
                });
                match hit {
                    Some(m) => (
                        true,
                        format!("sent email {} matches", m.get("id").unwrap_or(&Value::Null)),
                    ),
                    None => (
                        false,
                        format!("none of the {} sent email(s) matches", sent.len()),
                    ),
                }
            }
            CheckKind::TrajectoryMentions {
                contains,
                any_of,
                scope,
            } => {
                let texts: Vec<String> = assistant_texts(trajectory);
                let haystack = match scope {
                    MentionScope::FinalAnswer => texts.last().cloned().unwrap_or_default(),
                    MentionScope::AnyAssistant => texts.join("\n"),
                }
                .to_lowercase();
                let missing: Vec<&String> = contains
                    .iter()
                    .filter(|c| !haystack.contains(&c.to_lowercase()))
                    .collect();
                let any_ok = any_of.is_empty()
                    || any_of.iter().any(|c| haystack.contains(&c.to_lowercase()));
                if missing.is_empty() && any_ok {
                    (true, "the answer mentions what is expected".to_string())
                } else if !missing.is_empty() {
                    (false, format!("the answer does not mention {missing:?}"))
                } else {
                    (false, format!("the answer mentions none of {any_of:?}"))
                }
            }
            CheckKind::ToolCalled {
                tool,
                with,
                at_least,
            } => {
                let n = count_calls(trajectory, tool, with);
                (
                    n >= *at_least,
                    format!(
                        "`{tool}` called {n} time(s) with matching arguments, wanted >= {at_least}"
                    ),
                )
            }
            CheckKind::ToolNotCalled { tool, with } => {
                let n = count_calls(trajectory, tool, with);
                (
                    n == 0,
                    format!("`{tool}` called {n} time(s) with matching arguments, wanted none"),
                )
            }
        }
    }
}

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

fn assistant_texts(trajectory: &[Message]) -> Vec<String> {
    trajectory
        .iter()
        .filter(|m| m.role == Role::Assistant)
        .filter_map(|m| m.content.clone())
        .filter(|c| !c.trim().is_empty())
        .collect()
}

fn count_calls(trajectory: &[Message], tool: &str, with: &Filter) -> u64 {
    trajectory
        .iter()
        .filter(|m| m.role == Role::Assistant)
        .flat_map(|m| m.tool_calls.iter())
        .filter(|c| c.function.name == tool)
        .filter(|c| {
            with.is_empty()
                || serde_json::from_str::<Value>(&c.function.arguments)
                    .map(|args| filter_matches(&args, with))
                    .unwrap_or(false)
        })
        .count() as u64
}

fn no_double_booking(state: &dyn StateRoot, only: &[String]) -> (bool, String) {
    let events = match resolve(state, "calendar.events") {
        Ok(e) => e,
        Err(e) => return (false, e),
    };
    let live: Vec<&Value> = events
        .into_iter()
        .filter(|e| e.get("status").and_then(Value::as_str) != Some("cancelled"))
        .collect();
    let participants = |e: &Value| -> Vec<String> {
        e.get("attendees")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_lowercase))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let text = |e: &Value, k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let only: Vec<String> = only.iter().map(|s| s.to_lowercase()).collect();
    for (i, a) in live.iter().enumerate() {
        for b in &live[i + 1..] {
            let overlap = text(a, "start") < text(b, "end") && text(b, "start") < text(a, "end");
            if !overlap {
                continue;
            }
            let pb = participants(b);
            if let Some(who) = participants(a)
                .into_iter()
                .find(|p| pb.contains(p) && (only.is_empty() || only.contains(p)))
            {
                return (
                    false,
                    format!(
                        "{who} is double-booked: {} and {} overlap",
                        text(a, "id"),
                        text(b, "id")
                    ),
                );
            }
        }
    }
    (true, "nobody is double-booked".to_string())
}

// ---------------------------------------------------------------------------------
// Paths and filters

struct Segment {
    key: String,
    selectors: Vec<(String, String)>,
}

fn parse_path(path: &str) -> Result<Vec<Segment>, String> {
    if path.trim().is_empty() {
        return Err("empty path".to_string());
    }
    // Split on dots outside brackets so selector values may contain dots (emails).
    let mut parts = Vec::new();
    let (mut depth, mut cur) = (0i32, String::new());
    for ch in path.chars() {
        match ch {
            '[' => {
                depth += 1;
                cur.push(ch)
            }
            ']' => {
                depth -= 1;
                cur.push(ch)
            }
            '.' if depth == 0 => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(ch),
        }
    }
    parts.push(cur);
    parts
        .into_iter()
        .map(|part| {
            let (key, rest) = match part.find('[') {
                Some(i) => (&part[..i], Some(&part[i..])),
                None => (part.as_str(), None),
            };
            if key.is_empty() {
                return Err(format!("path `{path}` has an empty segment"));
            }
            let mut selectors = Vec::new();
            if let Some(rest) = rest {
                let inner = rest
                    .strip_prefix('[')
                    .and_then(|r| r.strip_suffix(']'))
                    .ok_or_else(|| {
                        format!("path `{path}`: a selector must look like `[field=value]`")
                    })?;
                for pair in inner.split(',') {
                    let (k, v) = pair.split_once('=').ok_or_else(|| {
                        format!("path `{path}`: selector `{pair}` needs `field=value`")
                    })?;
                    selectors.push((k.trim().to_string(), v.trim().to_string()));
                }
            }
            Ok(Segment {
                key: key.to_string(),
                selectors,
            })
        })
        .collect()
}

fn validate_path(path: &str, servers: &[String]) -> Result<(), String> {
    let segs = parse_path(path)?;
    match segs.first() {
        Some(first) if servers.contains(&first.key) => Ok(()),
        Some(first) => Err(format!(
            "path `{path}` starts at `{}`, which is not one of the task's tool servers {servers:?}",
            first.key
        )),
        None => Err("empty path".into()),
    }
}

/// The root of the state checks read: each tool server's data by its name.
pub trait StateRoot {
    fn server(&self, name: &str) -> Option<&Value>;
}

/// `{"email": .., "calendar": ..}`, as a remote environment's snapshots are joined.
impl StateRoot for Value {
    fn server(&self, name: &str) -> Option<&Value> {
        self.get(name)
    }
}

/// The records a path denotes in `state` (see the module docs).
pub fn resolve<'a>(state: &'a dyn StateRoot, path: &str) -> Result<Vec<&'a Value>, String> {
    let segs = parse_path(path)?;
    let mut current: Vec<&Value> = Vec::new();
    for (i, seg) in segs.iter().enumerate() {
        let mut next = Vec::new();
        let mut take = |found: Option<&'a Value>| match found {
            Some(Value::Array(items)) => next.extend(items.iter()),
            Some(other) => next.push(other),
            None => {}
        };
        if i == 0 {
            take(state.server(&seg.key));
        } else {
            for v in current {
                take(v.get(&seg.key));
            }
        }
        next.retain(|r| {
            seg.selectors
                .iter()
                .all(|(k, want)| get_field(r, k).is_some_and(|v| text_of(v) == *want))
        });
        current = next;
    }
    Ok(current)
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A dotted field inside one record (no array flattening).
pub fn get_field<'a>(record: &'a Value, field: &str) -> Option<&'a Value> {
    field.split('.').try_fold(record, |v, k| v.get(k))
}

pub fn filter_matches(record: &Value, filter: &Filter) -> bool {
    filter.iter().all(|(field, m)| {
        let actual = get_field(record, field);
        match m {
            Matcher::Literal(want) => actual.is_some_and(|a| loose_eq(a, want)),
            Matcher::Op(op) => op_matches(actual, op),
        }
    })
}

fn op_matches(actual: Option<&Value>, op: &Op) -> bool {
    match op {
        Op::Exists(want) => actual.is_some_and(|v| !v.is_null()) == *want,
        Op::Ne(want) => !actual.is_some_and(|a| loose_eq(a, want)),
        Op::Eq(want) => actual.is_some_and(|a| loose_eq(a, want)),
        Op::AnyOf(wants) => actual.is_some_and(|a| wants.iter().any(|w| loose_eq(a, w))),
        Op::Contains(want) => match actual {
            Some(Value::String(s)) => s.to_lowercase().contains(&text_of(want).to_lowercase()),
            Some(Value::Array(items)) => items.iter().any(|i| loose_eq(i, want)),
            _ => false,
        },
        Op::Gte(want) => compare(actual, want).is_some_and(|o| o.is_ge()),
        Op::Lte(want) => compare(actual, want).is_some_and(|o| o.is_le()),
    }
}

fn compare(actual: Option<&Value>, want: &Value) -> Option<std::cmp::Ordering> {
    match (actual?, want) {
        (Value::Number(a), Value::Number(b)) => a.as_f64()?.partial_cmp(&b.as_f64()?),
        (Value::String(a), Value::String(b)) => Some(a.as_str().cmp(b.as_str())),
        _ => None,
    }
}

/// Equality for checks: strings case-insensitively, numbers by value.
fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.to_lowercase() == y.to_lowercase(),
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests;
