//! What people read: borderless tables, cells from JSON values, and the server's
//! refusals (a 422's `detail` list as one `field: message` line each).

use comfy_table::{presets, Table};
use serde_json::Value;

/// A borderless table with a header row, aligned for reading and easy to `grep`.
pub fn table(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    table.set_header(header.to_vec());
    for row in rows {
        table.add_row(row);
    }
    table.trim_fmt()
}

/// A JSON value as a cell: strings without quotes, `-` for null or missing.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The elements of a JSON list; none when it is missing.
pub fn items(list: &Value) -> &[Value] {
    list.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// A score with two decimals, `-` when there is none.
pub fn score(value: &Value) -> String {
    value
        .as_f64()
        .map_or_else(|| "-".to_string(), |s| format!("{s:.2}"))
}

/// `provider/model` of a ModelConfig.
pub fn model(config: &Value) -> String {
    format!("{}/{}", cell(&config["provider"]), cell(&config["model"]))
}

pub fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("a JSON value serializes")
    );
}

/// The message of a refused request: a validation `detail` list as one
/// `field: message` line per bad field (the `body.` / `query.` prefix dropped), any
/// other `detail` as is, with the status and code.
pub fn refusal(status: u16, code: Option<&str>, detail: &Value) -> String {
    let what = match code {
        Some(code) => format!("{status} {code}"),
        None => format!("HTTP {status}"),
    };
    let mut message = match detail {
        Value::Array(errors) => {
            let mut lines = format!("the server refused the request ({what}):");
            for error in errors {
                let loc: Vec<String> = error["loc"]
                    .as_array()
                    .map(|parts| parts.iter().map(cell).collect())
                    .unwrap_or_default();
                let field = match loc.split_first() {
                    Some((first, rest)) if (first == "body" || first == "query") => rest.join("."),
                    _ => loc.join("."),
                };
                let field = if field.is_empty() { "request" } else { &field };
                lines.push_str(&format!("\n  {field}: {}", cell(&error["msg"])));
            }
            lines
        }
        Value::String(text) if !text.is_empty() => format!("{text} ({what})"),
        Value::String(_) => format!("the server answered {what}"),
        other => format!("{other} ({what})"),
    };
    if status == 401 {
        message.push_str("; set RL_GYM_API_TOKEN (or --token) to a token the server accepts");
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_validation_detail_is_one_line_per_field() {
        let detail = json!([
            {"loc": ["body", "model_config", "provider"], "msg": "Input should be one of openai, builtin", "type": "enum"},
            {"loc": ["body", "rollout_count"], "msg": "Input should be greater than or equal to 1", "type": "greater_than_equal"},
            {"loc": ["body"], "msg": "Input should be a valid dictionary", "type": "dict_type"}
        ]);
        assert_eq!(
            refusal(422, Some("validation_error"), &detail),
            "the server refused the request (422 validation_error):\n  \
             model_config.provider: Input should be one of openai, builtin\n  \
             rollout_count: Input should be greater than or equal to 1\n  \
             request: Input should be a valid dictionary"
        );
    }

    #[test]
    fn other_details_keep_their_text_and_name_the_status() {
        assert_eq!(
            refusal(404, Some("run_not_found"), &json!("Run not found")),
            "Run not found (404 run_not_found)"
        );
        assert!(refusal(401, None, &json!("")).contains("RL_GYM_API_TOKEN"));
    }
}
