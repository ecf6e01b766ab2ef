//! Evaluating one check against the final state and the trajectory, and checking a
//! check's paths and tools when a task is loaded.

use serde_json::Value;

use super::path::{filter_matches, get_field, loose_eq, resolve, validate_path};
use super::{Check, CheckKind, Filter, MentionScope, StateRoot};
use crate::domain::chat::{Message, Role};

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
