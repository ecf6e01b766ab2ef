//! `task_overrides` of a launch or a re-verification: per task id, fields laid over
//! that task, checked by their type and kept as written.

use std::collections::BTreeMap;

use deserr::{Deserr, IntoValue, ValuePointerRef};
use serde_json::Value;

use super::body::{BodyErrors, Object};
use super::validate::Checker;

/// A task override: fields laid over the task as written (an extension).
// Read only to check it: the log keeps each override as written, where a null field
// means something to a re-verification's merge.
#[allow(dead_code)]
#[derive(Deserr, utoipa::ToSchema)]
#[deserr(error = BodyErrors, deny_unknown_fields)]
pub struct TaskOverrideBody {
    /// A whole task file in place of the task.
    #[deserr(default)]
    #[schema(value_type = Option<Object>)]
    pub task_json: Option<Object>,
    #[deserr(default)]
    pub name: Option<String>,
    #[deserr(default)]
    pub description: Option<String>,
    #[deserr(default)]
    pub rubric_markdown: Option<String>,
    #[deserr(default)]
    #[schema(value_type = Option<Object>)]
    pub client_context: Option<Object>,
}

/// `task_overrides`: per task id a [`TaskOverrideBody`], kept as written (the log
/// records it so). Shared by launch and re-verify.
pub struct TaskOverrides(pub BTreeMap<String, Value>);

impl deserr::Deserr<BodyErrors> for TaskOverrides {
    fn deserialize_from_value<V: IntoValue>(
        value: deserr::Value<V>,
        location: ValuePointerRef,
    ) -> Result<Self, BodyErrors> {
        let Object(Value::Object(map)) = Object::deserialize_from_value(value, location)? else {
            return Ok(TaskOverrides(BTreeMap::new()));
        };
        let mut errors = BodyErrors::default();
        for (task_id, fields) in &map {
            let at = location.push_key(task_id);
            if let Err(e) =
                TaskOverrideBody::deserialize_from_value(fields.clone().into_value(), at)
            {
                errors.0.extend(e.0);
            }
        }
        if errors.0.is_empty() {
            Ok(TaskOverrides(map.into_iter().collect()))
        } else {
            Err(errors)
        }
    }
}

impl TaskOverrides {
    /// The overrides, each key one of `task_ids` when they are known.
    pub fn check(self, c: &mut Checker, task_ids: Option<&[String]>) -> BTreeMap<String, Value> {
        for task_id in self.0.keys() {
            if task_ids.is_some_and(|ids| !ids.contains(task_id)) {
                c.push(
                    &["body", "task_overrides"],
                    task_id,
                    "Override key is not one of task_ids",
                    "value_error",
                );
            }
        }
        self.0
    }
}
