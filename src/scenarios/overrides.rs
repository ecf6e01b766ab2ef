//! A run's `task_overrides` applied to a bundled task: `task_json` replaces the whole
//! task (validated like a bundled one), `name` and `description` change what the agent
//! is told, `rubric_markdown` replaces the rubric the universal verifier's judge grades
//! by. `client_context` is kept with the run and only returned.

use std::ops::Deref;
use std::sync::Arc;

use serde_json::Value;

use super::{Scenario, Task};

/// A task as a rollout runs it: the scenario's own, a family instance the scenario
/// keeps (shared by every rollout of it, not copied into each), or a copy an override
/// changed.
#[derive(Debug, Clone)]
pub enum TaskRef<'a> {
    Borrowed(&'a Task),
    Shared(Arc<Task>),
    Owned(Box<Task>),
}

impl Deref for TaskRef<'_> {
    type Target = Task;

    fn deref(&self) -> &Task {
        match self {
            TaskRef::Borrowed(task) => task,
            TaskRef::Shared(task) => task,
            TaskRef::Owned(task) => task,
        }
    }
}

/// The task a rollout runs: the bundled one with the run's override for it, if any.
/// Borrowed when nothing is overridden: every rollout asks, and a task is kilobytes.
pub fn apply<'a>(
    scenario: &'a Scenario,
    task_id: &str,
    overrides: Option<&Value>,
    instance_seed: u64,
) -> Result<TaskRef<'a>, String> {
    let text = |key: &str| overrides.and_then(|o| o.get(key)).and_then(Value::as_str);
    let mut task = match overrides
        .and_then(|o| o.get("task_json"))
        .filter(|v| !v.is_null())
    {
        Some(json) => {
            let mut task = Task::from_json(&json.to_string())?;
            // The override stands for the task named by its key.
            task.task_id = task_id.to_string();
            task.rubric.task_id = task_id.to_string();
            task.validate(scenario)?;
            TaskRef::Owned(Box::new(task))
        }
        None => match scenario.task(task_id) {
            Some(task) if !task.is_family() => TaskRef::Borrowed(task),
            _ => TaskRef::Shared(scenario.task_instance(task_id, instance_seed)?),
        },
    };
    // A family's instance first: a text override replaces what the instance says.
    if task.is_family() {
        task = TaskRef::Owned(Box::new(task.instance(instance_seed)?.into_owned()));
    }
    let (name, description, rubric) = (text("name"), text("description"), text("rubric_markdown"));
    if name.is_none() && description.is_none() && rubric.is_none() {
        return Ok(task);
    }
    let mut changed = match task {
        TaskRef::Owned(task) => task,
        shared => Box::new(Task::clone(&shared)),
    };
    if let Some(name) = name {
        changed.name = name.to_string();
    }
    if let Some(description) = description {
        changed.description = description.to_string();
    }
    if let Some(rubric) = rubric {
        changed.rubric_markdown = Some(rubric.to_string());
    }
    Ok(TaskRef::Owned(changed))
}
