//! Where a check looks: dotted paths into the state (`hrms.leave_requests[status=x]`)
//! and filters over the records they reach.

use serde_json::Value;

use super::{Filter, Matcher, Op};

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

pub(super) fn validate_path(path: &str, servers: &[String]) -> Result<(), String> {
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
pub(super) fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.to_lowercase() == y.to_lowercase(),
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}
