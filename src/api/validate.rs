//! Request validation at the edge: field errors collected (`loc`, `msg`, `type`) so
//! that one 422 names every bad field, and the query strings read with them. Bodies
//! are read by their types ([`super::body`]), then checked here.

use serde_json::Value;

use crate::error::{ApiError, FieldError};

/// A page of a list: at most `limit` items after skipping `offset`.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub limit: usize,
    pub offset: usize,
}

impl Default for Page {
    fn default() -> Self {
        Page {
            limit: 50,
            offset: 0,
        }
    }
}

/// Collects field errors under a location prefix such as `["body"]`.
#[derive(Default)]
pub struct Checker {
    pub errors: Vec<FieldError>,
}

fn loc(prefix: &[&str], field: &str) -> Vec<Value> {
    prefix
        .iter()
        .map(|p| Value::String(p.to_string()))
        .chain(std::iter::once(Value::String(field.to_string())))
        .collect()
}

impl Checker {
    pub fn push(&mut self, prefix: &[&str], field: &str, msg: impl Into<String>, kind: &str) {
        self.errors.push(FieldError {
            loc: loc(prefix, field),
            msg: msg.into(),
            kind: kind.to_string(),
        });
    }

    /// A required field's value; `None` names it missing, unless its value was
    /// already named wrong.
    pub fn required<T>(&mut self, prefix: &[&str], field: &str, value: Option<T>) -> Option<T> {
        let at = loc(prefix, field);
        if value.is_none() && !self.errors.iter().any(|e| e.loc == at) {
            self.push(prefix, field, "Field required", "missing");
        }
        value
    }

    /// Whether a field at or under `prefix` (e.g. `["body", "budget"]`) is named.
    pub fn names(&self, prefix: &[&str]) -> bool {
        self.errors
            .iter()
            .any(|e| e.loc.len() >= prefix.len() && e.loc.iter().zip(prefix).all(|(l, p)| l == p))
    }

    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(self.errors))
        }
    }

    /// `n` if it lies within `[min, max]`; otherwise the bound it breaks is reported.
    pub fn in_range<T: PartialOrd + std::fmt::Display>(
        &mut self,
        prefix: &[&str],
        field: &str,
        n: T,
        min: T,
        max: T,
    ) -> Option<T> {
        if n < min {
            let msg = format!("Input should be greater than or equal to {min}");
            self.push(prefix, field, msg, "greater_than_equal");
            None
        } else if n > max {
            let msg = format!("Input should be less than or equal to {max}");
            self.push(prefix, field, msg, "less_than_equal");
            None
        } else {
            Some(n)
        }
    }

    /// The list endpoints' `limit` (1–200) and `offset` query parameters, read into
    /// `page`; false for any other key.
    pub fn page_param(&mut self, key: &str, value: &str, page: &mut Page) -> bool {
        match key {
            "limit" => {
                if let Some(n) = self.query_int(key, value, 1, 200) {
                    page.limit = n as usize;
                }
            }
            "offset" => {
                if let Some(n) = self.query_int(key, value, 0, i64::MAX) {
                    page.offset = n as usize;
                }
            }
            _ => return false,
        }
        true
    }

    /// A query parameter's text as an integer within `[min, max]`.
    pub fn query_int(&mut self, field: &str, text: &str, min: i64, max: i64) -> Option<i64> {
        match text.parse::<i64>() {
            Ok(n) => self.in_range(&["query"], field, n, min, max),
            Err(_) => {
                self.push(
                    &["query"],
                    field,
                    "Input should be a valid integer",
                    "int_parsing",
                );
                None
            }
        }
    }

    /// An instance seed in a query string: any non-negative 64-bit integer (a
    /// continuous run draws them from the whole range).
    pub fn query_seed(&mut self, field: &str, text: &str) -> Option<u64> {
        let seed = text.parse::<u64>().ok();
        if seed.is_none() {
            self.push(
                &["query"],
                field,
                "Input should be a non-negative integer",
                "int_parsing",
            );
        }
        seed
    }
}

/// The boolean query parameter `name` (`true`/`false`, `1`/`0`; the last one given),
/// else `default`; any other value is a 422 naming it.
pub fn query_flag(pairs: &[(String, String)], name: &str, default: bool) -> Result<bool, ApiError> {
    let mut c = Checker::default();
    let mut flag = default;
    for (key, value) in pairs.iter().filter(|(k, _)| k == name) {
        match value.as_str() {
            "true" | "1" => flag = true,
            "false" | "0" => flag = false,
            _ => c.push(
                &["query"],
                key,
                "Input should be a valid boolean",
                "bool_parsing",
            ),
        }
    }
    c.finish()?;
    Ok(flag)
}

/// The 422 of a body that is not JSON, as the JSON extractor answers it.
pub fn json_invalid(error: &serde_json::Error) -> ApiError {
    ApiError::validation(vec![FieldError {
        loc: vec![Value::from("body"), Value::from(error.column())],
        msg: format!("JSON decode error: {error}"),
        kind: "json_invalid".to_string(),
    }])
}

/// A body that may be left out (`None` when empty), else JSON.
pub fn optional_json(body: &[u8]) -> Result<Option<Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(body)
        .map(Some)
        .map_err(|e| json_invalid(&e))
}
