//! Request bodies read from their types: each body is one struct deriving both
//! `deserr::Deserr` (its parser) and `utoipa::ToSchema` (its documentation). What its
//! types refuse comes back pydantic-style (`loc`, `msg`, `type`), every bad field at
//! once; the checks no type expresses (bounds, rules across fields) then run on the
//! typed body with the same [`Checker`], so that one 422 names every bad field.

use std::ops::ControlFlow;

use deserr::{
    DeserializeError, Deserr, ErrorKind, IntoValue, MergeWithError, ValueKind, ValuePointerRef,
};
use serde_json::Value;

use super::validate::Checker;
use crate::error::{ApiError, FieldError};

/// `body` read as a `T`, and a checker holding the errors of its types. A body with
/// bad fields is read again without them, so that the checks of its other fields
/// still run (as they would if those fields were left out).
pub fn read<T: Deserr<BodyErrors>>(body: &Value) -> Result<(T, Checker), ApiError> {
    let errors = match deserr::deserialize::<T, _, BodyErrors>(body.clone()) {
        Ok(parsed) => return Ok((parsed, Checker::default())),
        Err(BodyErrors(errors)) => errors,
    };
    let mut pruned = body.clone();
    for error in &errors {
        remove(&mut pruned, &error.loc[1..]);
    }
    match deserr::deserialize::<T, _, BodyErrors>(pruned) {
        Ok(parsed) => Ok((parsed, Checker { errors })),
        // Not an object at all (every required field is `Required`, so nothing else
        // fails twice): nothing more to check.
        Err(_) => Err(ApiError::validation(errors)),
    }
}

/// Removes the value at `path` (object keys) from `value`.
fn remove(value: &mut Value, path: &[Value]) {
    match path {
        [Value::String(key)] => {
            if let Some(map) = value.as_object_mut() {
                map.remove(key);
            }
        }
        [Value::String(key), rest @ ..] => {
            if let Some(inner) = value.get_mut(key) {
                remove(inner, rest);
            }
        }
        _ => {}
    }
}

/// The field errors of one body, in the order deserr finds them; it never stops early.
#[derive(Debug, Default)]
pub struct BodyErrors(pub Vec<FieldError>);

/// `["body", key or index, …]` of a location within the body.
fn loc(location: ValuePointerRef) -> Vec<Value> {
    match location {
        ValuePointerRef::Origin => vec![Value::from("body")],
        ValuePointerRef::Key { key, prev } => {
            let mut loc = loc(*prev);
            loc.push(Value::from(key));
            loc
        }
        ValuePointerRef::Index { index, prev } => {
            let mut loc = loc(*prev);
            loc.push(Value::from(index));
            loc
        }
    }
}

/// Pydantic's message and type for a value of the wrong kind, by the kinds accepted.
fn wrong_kind(accepted: &[ValueKind]) -> (&'static str, &'static str) {
    match accepted {
        [ValueKind::String] => ("Input should be a valid string", "string_type"),
        [ValueKind::Boolean] => ("Input should be a valid boolean", "bool_type"),
        [ValueKind::Map] => ("Input should be a valid dictionary", "dict_type"),
        [ValueKind::Sequence] => ("Input should be a valid list", "list_type"),
        // u64: instance and fault seeds.
        [ValueKind::Integer] => ("Input should be a non-negative integer", "int_type"),
        kinds if kinds.contains(&ValueKind::Float) => {
            ("Input should be a valid number", "float_type")
        }
        _ => ("Input should be a valid integer", "int_type"),
    }
}

impl DeserializeError for BodyErrors {
    fn error<V: IntoValue>(
        errors: Option<Self>,
        error: ErrorKind<V>,
        location: ValuePointerRef,
    ) -> ControlFlow<Self, Self> {
        let mut at = loc(location);
        let (msg, kind) = match error {
            // A null where a value is required is a missing value, as pydantic has it.
            ErrorKind::IncorrectValueKind { actual, .. } if actual.kind() == ValueKind::Null => {
                ("Field required".to_string(), "missing")
            }
            ErrorKind::IncorrectValueKind { accepted, .. } => {
                let (msg, kind) = wrong_kind(accepted);
                (msg.to_string(), kind)
            }
            ErrorKind::MissingField { field } => {
                at.push(Value::from(field));
                ("Field required".to_string(), "missing")
            }
            ErrorKind::UnknownKey { key, .. } => {
                at.push(Value::from(key));
                (
                    "Extra inputs are not permitted".to_string(),
                    "extra_forbidden",
                )
            }
            ErrorKind::UnknownValue { accepted, .. } => (
                format!("Input should be one of {}", accepted.join(", ")),
                "enum",
            ),
            ErrorKind::BadSequenceLen { expected, .. } => {
                (format!("List should have {expected} items"), "list_type")
            }
            // What the bodies' types say unexpectedly: an integer beyond i64.
            ErrorKind::Unexpected { .. } => {
                ("Input should be a valid integer".to_string(), "int_type")
            }
        };
        let mut errors = errors.unwrap_or_default();
        errors.0.push(FieldError {
            loc: at,
            msg,
            kind: kind.to_string(),
        });
        ControlFlow::Continue(errors)
    }
}

impl MergeWithError<BodyErrors> for BodyErrors {
    fn merge(
        errors: Option<Self>,
        other: BodyErrors,
        _: ValuePointerRef,
    ) -> ControlFlow<Self, Self> {
        let mut errors = errors.unwrap_or_default();
        errors.0.extend(other.0);
        ControlFlow::Continue(errors)
    }
}

/// A value its type reads but a field's conversion (`#[deserr(try_from(…) = …)]`)
/// refuses, named at that field.
#[derive(Debug)]
pub struct Invalid {
    pub msg: String,
    pub kind: &'static str,
}

impl Invalid {
    pub fn new(msg: impl Into<String>, kind: &'static str) -> Invalid {
        Invalid {
            msg: msg.into(),
            kind,
        }
    }
}

impl MergeWithError<Invalid> for BodyErrors {
    fn merge(
        errors: Option<Self>,
        other: Invalid,
        location: ValuePointerRef,
    ) -> ControlFlow<Self, Self> {
        let mut errors = errors.unwrap_or_default();
        errors.0.push(FieldError {
            loc: loc(location),
            msg: other.msg,
            kind: other.kind.to_string(),
        });
        ControlFlow::Continue(errors)
    }
}

/// A field the body must have (`#[deserr(default)]`, documented with
/// `#[schema(value_type = T)]`), read as optional so that a body without it still has
/// its other fields checked; [`Checker::required`] names it missing. Null is missing.
#[derive(Debug)]
pub struct Required<T>(pub Option<T>);

impl<T> Default for Required<T> {
    fn default() -> Self {
        Required(None)
    }
}

impl<T: Deserr<E>, E: DeserializeError> Deserr<E> for Required<T> {
    fn deserialize_from_value<V: IntoValue>(
        value: deserr::Value<V>,
        location: ValuePointerRef,
    ) -> Result<Self, E> {
        Option::<T>::deserialize_from_value(value, location).map(Required)
    }
}

/// A JSON object kept as written (a task override's `task_json`): checked to be an
/// object, read by whoever uses it.
#[derive(Debug, Clone)]
pub struct Object(pub Value);

impl<E: DeserializeError> Deserr<E> for Object {
    fn deserialize_from_value<V: IntoValue>(
        value: deserr::Value<V>,
        location: ValuePointerRef,
    ) -> Result<Self, E> {
        match value {
            deserr::Value::Map(_) => Value::deserialize_from_value(value, location).map(Object),
            other => Err(deserr::take_cf_content(E::error(
                None,
                ErrorKind::IncorrectValueKind {
                    actual: other,
                    accepted: &[ValueKind::Map],
                },
                location,
            ))),
        }
    }
}

/// A list of strings, one message for the list however many items are wrong.
pub fn strings(items: Option<Vec<Value>>) -> Result<Required<Vec<String>>, Invalid> {
    items
        .map(|items| {
            items
                .into_iter()
                .map(|item| match item {
                    Value::String(s) => Some(s),
                    _ => None,
                })
                .collect::<Option<Vec<String>>>()
                .ok_or_else(|| Invalid::new("Input should be a list of strings", "list_type"))
        })
        .transpose()
        .map(Required)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[derive(Debug, Deserr)]
    #[deserr(error = BodyErrors, deny_unknown_fields)]
    struct Inner {
        #[deserr(default)]
        n: Option<i64>,
        #[deserr(default)]
        seed: Option<u64>,
    }

    #[derive(Debug, Deserr)]
    #[deserr(error = BodyErrors)]
    struct Outer {
        name: String,
        #[deserr(default)]
        id: Required<String>,
        #[deserr(default, try_from(Option<Vec<Value>>) = strings -> Invalid)]
        tags: Required<Vec<String>>,
        #[deserr(default)]
        rate: Option<f64>,
        #[deserr(default)]
        on: Option<bool>,
        #[deserr(default)]
        inner: Option<Inner>,
    }

    fn errors(body: Value) -> Vec<Value> {
        match read::<Outer>(&body) {
            Ok((_, c)) => c.errors.iter().map(|e| json!(e)).collect(),
            Err(e) => e.detail.as_array().unwrap().clone(),
        }
    }

    #[test]
    fn every_bad_field_is_named_pydantic_style() {
        let got = errors(json!({
            "id": 5, "tags": ["a", 1], "rate": "x", "on": 1,
            "inner": {"n": 1.5, "seed": -1, "extra": true}
        }));
        assert_eq!(
            got,
            [
                json!({"loc": ["body", "id"], "msg": "Input should be a valid string", "type": "string_type"}),
                json!({"loc": ["body", "inner", "extra"], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"}),
                json!({"loc": ["body", "inner", "n"], "msg": "Input should be a valid integer", "type": "int_type"}),
                json!({"loc": ["body", "inner", "seed"], "msg": "Input should be a non-negative integer", "type": "int_type"}),
                json!({"loc": ["body", "on"], "msg": "Input should be a valid boolean", "type": "bool_type"}),
                json!({"loc": ["body", "rate"], "msg": "Input should be a valid number", "type": "float_type"}),
                json!({"loc": ["body", "tags"], "msg": "Input should be a list of strings", "type": "list_type"}),
                json!({"loc": ["body", "name"], "msg": "Field required", "type": "missing"}),
            ]
        );
    }

    #[test]
    fn null_is_missing_and_a_body_must_be_an_object() {
        let got = errors(json!({"name": null, "inner": 3}));
        assert_eq!(got[0]["loc"], json!(["body", "inner"]));
        assert_eq!(got[0]["type"], "dict_type");
        assert_eq!(
            got[1],
            json!({"loc": ["body", "name"], "msg": "Field required", "type": "missing"})
        );
        let got = errors(json!([1]));
        assert_eq!(
            got,
            [
                json!({"loc": ["body"], "msg": "Input should be a valid dictionary", "type": "dict_type"})
            ]
        );
    }

    #[test]
    fn the_other_fields_are_read_past_a_bad_one() {
        let body = json!({"name": "n", "id": 1, "tags": ["a"], "rate": 0.5, "on": true,
                          "inner": {"n": -3, "seed": 7}});
        let (outer, c) = read::<Outer>(&body).unwrap();
        assert_eq!(c.errors.len(), 1);
        assert_eq!(c.errors[0].loc, [json!("body"), json!("id")]);
        let Outer {
            name,
            id,
            tags,
            rate,
            on,
            inner,
        } = outer;
        assert_eq!(name, "n");
        assert!(id.0.is_none());
        assert_eq!(tags.0, Some(vec!["a".to_string()]));
        assert_eq!((rate, on), (Some(0.5), Some(true)));
        let Inner { n, seed } = inner.unwrap();
        assert_eq!((n, seed), (Some(-3), Some(7)));
    }
}
