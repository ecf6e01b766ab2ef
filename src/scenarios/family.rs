//! Task families (issue 25): a task that declares `parameters` is a family, and an
//! instance seed picks one value of each parameter. Every string of the task may name a
//! parameter as `{{name}}` or a field of one as `{{name.field}}` (the description, the
//! reference solution's arguments, the checks, the final answer, the rubric); a string
//! that is exactly one placeholder takes the value itself, of any JSON type. Instance 0
//! takes each parameter's first value, so a task written before families is its own
//! instance 0 and old runs replay unchanged.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use quick_cache::sync::Cache;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::Task;

/// How many times placeholders are substituted: a value may itself hold placeholders
/// (a phrasing of the description naming the person it is about).
const PASSES: usize = 3;

impl Task {
    /// Whether the task is a family of instances.
    pub fn is_family(&self) -> bool {
        !self.parameters.is_empty()
    }

    /// Instance `instance_seed` of the task: itself when it declares no parameters.
    pub fn instance(&self, instance_seed: u64) -> Result<Cow<'_, Task>, String> {
        if !self.is_family() {
            return Ok(Cow::Borrowed(self));
        }
        let values = self.values(instance_seed)?;
        // The task without its parameters (a pointer copy), so that only the values
        // drawn are copied in, not every value of every parameter.
        let shell = Task {
            parameters: Default::default(),
            ..self.clone()
        };
        let mut json = serde_json::to_value(&shell).map_err(|e| e.to_string())?;
        for _ in 0..PASSES {
            if !substitute(&mut json, &values)? {
                break;
            }
        }
        if let Some(left) = first_placeholder(&json) {
            return Err(format!(
                "instance {instance_seed}: `{left}` is still unresolved after {PASSES} passes"
            ));
        }
        let instance: Task = serde_json::from_value(json)
            .map_err(|e| format!("instance {instance_seed} is not a valid task: {e}"))?;
        Ok(Cow::Owned(instance))
    }

    /// The value of each parameter for an instance seed.
    fn values(&self, instance_seed: u64) -> Result<BTreeMap<&str, &Value>, String> {
        self.parameters
            .iter()
            .map(|(name, choices)| {
                if choices.is_empty() {
                    return Err(format!("parameters.{name} has no values"));
                }
                let index = match instance_seed {
                    0 => 0,
                    seed => (draw(seed, name) % choices.len() as u64) as usize,
                };
                Ok((name.as_str(), &choices[index]))
            })
            .collect()
    }
}

/// How many of a scenario's family instances are kept: a group's rollouts play one
/// instance, and a run has a few groups in flight at a time.
const INSTANCES_KEPT: usize = 1024;

/// A scenario's family instances by (task id, instance seed), built on first use:
/// substituting the placeholders costs more than a rollout of the oracle, and every
/// rollout of a group asks for the same instance.
#[derive(Clone)]
pub(super) struct Instances(Arc<Cache<(String, u64), Arc<Task>>>);

impl Default for Instances {
    fn default() -> Instances {
        Instances(Arc::new(Cache::new(INSTANCES_KEPT)))
    }
}

impl std::fmt::Debug for Instances {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Instances({} kept)", self.0.len())
    }
}

impl super::Scenario {
    /// Instance `instance_seed` of the bundled task `task_id`: the one built before,
    /// shared, if it is still kept.
    pub fn task_instance(&self, task_id: &str, instance_seed: u64) -> Result<Arc<Task>, String> {
        let task = self
            .task(task_id)
            .ok_or_else(|| format!("task {task_id} is not in scenario {}", self.scenario_id))?;
        if !task.is_family() {
            return Ok(Arc::new(task.clone()));
        }
        let key = (task_id.to_string(), instance_seed);
        self.instances.0.get_or_insert_with(&key, || {
            task.instance(instance_seed)
                .map(|t| Arc::new(t.into_owned()))
        })
    }
}

/// Whether a task declares no parameters (it is not serialised then).
pub(super) fn no_parameters(parameters: &Arc<BTreeMap<String, Vec<Value>>>) -> bool {
    parameters.is_empty()
}

/// 64 bits from an instance seed and a parameter's name: parameters vary
/// independently of one another.
fn draw(instance_seed: u64, name: &str) -> u64 {
    let digest = Sha256::new()
        .chain_update(b"rl-gym task instance")
        .chain_update(instance_seed.to_be_bytes())
        .chain_update(name.as_bytes())
        .finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(bytes)
}

/// Replaces the placeholders of every string in `json`; answers whether any was.
fn substitute(json: &mut Value, values: &BTreeMap<&str, &Value>) -> Result<bool, String> {
    match json {
        Value::String(text) => {
            if !text.contains("{{") {
                return Ok(false);
            }
            let trimmed = text.trim();
            if let Some(path) = whole_placeholder(trimmed) {
                *json = lookup(values, path)?.clone();
                return Ok(true);
            }
            let mut out = String::with_capacity(text.len());
            let mut rest = text.as_str();
            let mut changed = false;
            while let Some(start) = rest.find("{{") {
                let Some(len) = rest[start + 2..].find("}}") else {
                    break;
                };
                out.push_str(&rest[..start]);
                let path = rest[start + 2..start + 2 + len].trim();
                match lookup(values, path)? {
                    Value::String(s) => out.push_str(s),
                    other => out.push_str(&other.to_string()),
                }
                rest = &rest[start + 2 + len + 2..];
                changed = true;
            }
            out.push_str(rest);
            *text = out;
            Ok(changed)
        }
        Value::Array(items) => {
            let mut changed = false;
            for item in items {
                changed |= substitute(item, values)?;
            }
            Ok(changed)
        }
        Value::Object(fields) => {
            let mut changed = false;
            for value in fields.values_mut() {
                changed |= substitute(value, values)?;
            }
            Ok(changed)
        }
        _ => Ok(false),
    }
}

/// `{{path}}` alone, its path.
fn whole_placeholder(text: &str) -> Option<&str> {
    let inner = text.strip_prefix("{{")?.strip_suffix("}}")?;
    (!inner.contains("{{") && !inner.contains("}}")).then(|| inner.trim())
}

/// `name` or `name.field.field…` among the instance's values.
fn lookup<'a>(values: &BTreeMap<&str, &'a Value>, path: &str) -> Result<&'a Value, String> {
    let mut parts = path.split('.');
    let name = parts.next().unwrap_or_default();
    let mut value: &Value = values
        .get(name)
        .ok_or_else(|| format!("`{{{{{path}}}}}` names no parameter `{name}`"))?;
    for part in parts {
        value = match value {
            Value::Object(fields) => fields.get(part),
            Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        }
        .ok_or_else(|| format!("`{{{{{path}}}}}`: `{part}` is not in the value"))?;
    }
    Ok(value)
}

fn first_placeholder(json: &Value) -> Option<String> {
    match json {
        Value::String(text) => {
            let start = text.find("{{")?;
            let end = text[start..]
                .find("}}")
                .map_or(text.len(), |e| start + e + 2);
            Some(text[start..end].to_string())
        }
        Value::Array(items) => items.iter().find_map(first_placeholder),
        Value::Object(fields) => fields.values().find_map(first_placeholder),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn family() -> Task {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/scenarios/hr/tasks/hr__105_reporting_line_question.json"
        );
        let task = Task::from_json(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert!(task.is_family(), "hr__105 is a family");
        task
    }

    #[test]
    fn instance_zero_takes_every_first_value_and_others_vary_deterministically() {
        let task = family();
        let zero = task.instance(0).unwrap();
        assert!(!zero.is_family());
        assert!(!zero.description.contains("{{"));
        assert!(
            zero.description.contains("Ravi Patel"),
            "{}",
            zero.description
        );
        let mut descriptions = std::collections::BTreeSet::new();
        for seed in 1..200 {
            let a = task.instance(seed).unwrap();
            let b = task.instance(seed).unwrap();
            assert_eq!(a.as_ref(), b.as_ref(), "instance {seed} is the same twice");
            descriptions.insert(a.description.clone());
        }
        assert!(descriptions.len() > 10, "{}", descriptions.len());
    }

    #[test]
    fn a_whole_placeholder_keeps_its_type_and_a_missing_one_is_named() {
        let values: BTreeMap<&str, &Value> = BTreeMap::new();
        let n = json!({"id": "E008", "n": 3});
        let mut values = values;
        values.insert("who", &n);
        let mut doc = json!({"a": "{{who.n}}", "b": "id {{ who.id }}!", "c": ["{{who}}"]});
        assert!(substitute(&mut doc, &values).unwrap());
        assert_eq!(
            doc,
            json!({"a": 3, "b": "id E008!", "c": [{"id": "E008", "n": 3}]})
        );
        let mut bad = json!("{{nobody.x}}");
        let error = substitute(&mut bad, &values).unwrap_err();
        assert!(error.contains("nobody"), "{error}");
        let mut bad = json!("{{who.age}}");
        assert!(substitute(&mut bad, &values).unwrap_err().contains("age"));
    }
}
