//! A run's `task_overrides` applied to a bundled task: `task_json` replaces the whole
//! task (validated like a bundled one), `name` and `description` change what the agent
//! is told, `rubric_markdown` replaces the rubric the universal verifier's judge grades
//! by. `client_context` is kept with the run and only returned.

use serde_json::Value;

use super::{Scenario, Task};

/// The task a rollout runs: the bundled one with the run's override for it, if any.
pub fn apply(
    scenario: &Scenario,
    task_id: &str,
    overrides: Option<&Value>,
) -> Result<Task, String> {
    let base = match overrides
        .and_then(|o| o.get("task_json"))
        .filter(|v| !v.is_null())
    {
        Some(json) => {
            let mut task = Task::from_json(&json.to_string())?;
            // The override stands for the task named by its key.
            task.task_id = task_id.to_string();
            task.rubric.task_id = task_id.to_string();
            task.validate(scenario)?;
            task
        }
        None => scenario
            .task(task_id)
            .cloned()
            .ok_or_else(|| format!("task {task_id} is not in scenario {}", scenario.scenario_id))?,
    };
    let mut task = base;
    if let Some(name) = overrides
        .and_then(|o| o.get("name"))
        .and_then(Value::as_str)
    {
        task.name = name.to_string();
    }
    if let Some(description) = overrides
        .and_then(|o| o.get("description"))
        .and_then(Value::as_str)
    {
        task.description = description.to_string();
    }
    if let Some(rubric) = overrides
        .and_then(|o| o.get("rubric_markdown"))
        .and_then(Value::as_str)
    {
        task.rubric_markdown = Some(rubric.to_string());
    }
    Ok(task)
}
