//! The subset of JSON Schema our tool specs use, checked before a call reaches a
//! server: `type` (object, string, integer, number, boolean, array), `properties`,
//! `required`, `additionalProperties: false`, `enum`, `format` (`date`, `date-time`,
//! `time`, `email`), `minLength`, `minimum`/`maximum`, `items`, `minItems`. Errors
//! name the parameter and say what a valid value looks like.

use serde_json::{Map, Value};

pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Validates a call's parameters against a tool's `input_schema`.
pub fn validate(schema: &Value, params: &Map<String, Value>) -> Result<(), String> {
    let props = schema.get("properties").and_then(Value::as_object);
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|k| params.get(*k).is_none_or(Value::is_null))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "missing required parameter(s): {}. Required: {}",
            missing
                .iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", "),
            required.join(", ")
        ));
    }
    let closed = schema.get("additionalProperties") == Some(&Value::Bool(false));
    for (key, value) in params {
        match props.and_then(|p| p.get(key)) {
            Some(sub) => {
                // An optional parameter given as null means "not given".
                if value.is_null() && !required.contains(&key.as_str()) {
                    continue;
                }
                check(sub, value, key)?
            }
            None if closed => {
                let known: Vec<&String> = props.map(|p| p.keys().collect()).unwrap_or_default();
                return Err(format!(
                    "unknown parameter `{key}`. Known parameters: {}",
                    known
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            None => {}
        }
    }
    Ok(())
}

fn check(schema: &Value, value: &Value, path: &str) -> Result<(), String> {
    let ty = schema.get("type").and_then(Value::as_str).unwrap_or("");
    let type_ok = match ty {
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => true,
    };
    if !type_ok {
        let article = if ty.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        return Err(format!(
            "parameter `{path}` must be {article} {ty}, got {}",
            kind_of(value)
        ));
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        if !options.contains(value) {
            let shown: Vec<String> = options.iter().map(Value::to_string).collect();
            return Err(format!(
                "parameter `{path}` must be one of {}, got {value}",
                shown.join(", ")
            ));
        }
    }
    match value {
        Value::String(s) => {
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
                if (s.trim().chars().count() as u64) < min {
                    return Err(format!("parameter `{path}` must not be empty"));
                }
            }
            match schema.get("format").and_then(Value::as_str) {
                Some("date") if super::parse_date(s).is_none() => {
                    return Err(format!("parameter `{path}` must be a date like 2026-03-04, got {s:?}"))
                }
                Some("date-time") if super::parse_datetime(s).is_none() => {
                    return Err(format!(
                        "parameter `{path}` must be a date-time like 2026-03-04T10:30:00Z (UTC), got {s:?}"
                    ))
                }
                Some("time") if chrono::NaiveTime::parse_from_str(s, "%H:%M").is_err() => {
                    return Err(format!("parameter `{path}` must be a time like 09:00, got {s:?}"))
                }
                Some("email") if !super::is_email(s) => {
                    return Err(format!("parameter `{path}` must be an email address like name@example.com, got {s:?}"))
                }
                _ => {}
            }
        }
        Value::Number(n) => {
            if let (Some(min), Some(x)) =
                (schema.get("minimum").and_then(Value::as_f64), n.as_f64())
            {
                if x < min {
                    return Err(format!(
                        "parameter `{path}` must be at least {min}, got {n}"
                    ));
                }
            }
            if let (Some(max), Some(x)) =
                (schema.get("maximum").and_then(Value::as_f64), n.as_f64())
            {
                if x > max {
                    return Err(format!("parameter `{path}` must be at most {max}, got {n}"));
                }
            }
        }
        Value::Array(items) => {
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
                if (items.len() as u64) < min {
                    return Err(format!("parameter `{path}` needs at least {min} item(s)"));
                }
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(item_schema, item, &format!("{path}[{i}]"))?;
                }
            }
        }
        Value::Object(map) if schema.get("properties").is_some() => {
            validate(schema, map).map_err(|e| format!("in `{path}`: {e}"))?;
        }
        _ => {}
    }
    Ok(())
}
