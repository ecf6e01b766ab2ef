//! Small translations every non-OpenAI provider needs: tool-call arguments as a JSON
//! object, whether a tool result was an error, texts that must not be blank.

use serde_json::{Map, Value};

use crate::domain::chat::{Message, Role};

/// A tool call's `arguments` (JSON text, kept verbatim by us) as the JSON object the
/// Anthropic, Bedrock and Vertex APIs require. Blank text is `{}`; text that is not a
/// JSON object (the model wrote bad JSON) is kept under `"arguments"` so the history
/// still says what was asked.
pub fn arguments_object(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return Value::Object(Map::new());
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(object)) => Value::Object(object),
        Ok(other) => serde_json::json!({ "arguments": other }),
        Err(_) => serde_json::json!({ "arguments": arguments }),
    }
}

/// Whether a tool message reports a failed call. Our messages carry no flag: the step
/// loop writes in-band tool errors as `Error: …` (the tool-server protocol's form).
pub fn is_error_result(message: &Message) -> bool {
    message
        .content
        .as_deref()
        .is_some_and(|c| c.trim_start().starts_with("Error:"))
}

/// Providers reject blank text blocks; an empty message still has to say something.
pub fn nonblank(text: Option<&str>) -> String {
    match text {
        Some(t) if !t.trim().is_empty() => t.to_string(),
        _ => "(empty)".to_string(),
    }
}

/// The text of a message, when it has any worth sending.
pub fn text_of(message: &Message) -> Option<&str> {
    message.content.as_deref().filter(|t| !t.trim().is_empty())
}

/// The system prompt: every system message's text, in order.
pub fn system_texts(messages: &[Message]) -> Vec<&str> {
    messages
        .iter()
        .filter(|m| m.role == Role::System)
        .filter_map(text_of)
        .collect()
}

/// Appends a turn's blocks, merging them into the previous turn when it has the same
/// role: the providers want user and assistant turns to alternate, and all the results
/// of one assistant turn's tool calls in one user turn.
pub fn push_turn(
    turns: &mut Vec<(&'static str, Vec<Value>)>,
    role: &'static str,
    blocks: Vec<Value>,
) {
    match turns.last_mut() {
        Some((last, existing)) if *last == role => existing.extend(blocks),
        _ => turns.push((role, blocks)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn arguments_become_an_object_whatever_the_model_wrote() {
        assert_eq!(arguments_object(r#"{"a":1}"#), json!({"a": 1}));
        assert_eq!(arguments_object(""), json!({}));
        assert_eq!(arguments_object("[1]"), json!({"arguments": [1]}));
        assert_eq!(arguments_object("{bad"), json!({"arguments": "{bad"}));
    }

    #[test]
    fn consecutive_turns_of_one_role_merge() {
        let mut turns = Vec::new();
        push_turn(&mut turns, "user", vec![json!(1)]);
        push_turn(&mut turns, "user", vec![json!(2)]);
        push_turn(&mut turns, "assistant", vec![json!(3)]);
        assert_eq!(turns.len(), 2);
        assert_eq!(turns[0].1, vec![json!(1), json!(2)]);
    }

    #[test]
    fn an_error_result_is_recognised_by_its_in_band_form() {
        assert!(is_error_result(&Message::tool_result(
            "c",
            "t",
            "Error: nope"
        )));
        assert!(!is_error_result(&Message::tool_result("c", "t", "ok")));
    }
}

/// A conversation with a tool call and its result, shared by the providers' unit tests.
#[cfg(test)]
pub mod tests_support {
    use serde_json::json;

    use crate::domain::chat::{FunctionCall, Message, ToolCall, ToolDefinition, ToolSet};
    use crate::domain::events::ModelSettings;

    pub fn settings(provider: &str, model: &str) -> ModelSettings {
        ModelSettings {
            temperature: 0.2,
            max_steps: 5,
            has_api_key: true,
            ..ModelSettings::new(provider, model)
        }
    }

    pub fn call(id: &str, name: &str, arguments: &str) -> ToolCall {
        ToolCall {
            id: id.into(),
            kind: "function".into(),
            function: FunctionCall {
                name: name.into(),
                arguments: arguments.into(),
            },
        }
    }

    /// System, user, an assistant turn with two tool calls, their two results (one an
    /// error), and a final answer.
    pub fn conversation() -> Vec<Message> {
        vec![
            Message::system("You are an assistant."),
            Message::user("Email Bob."),
            Message::assistant(
                Some("Sending.".into()),
                vec![
                    call("call_1", "send_email", r#"{"to":"bob@example.com"}"#),
                    call("call_2", "list_emails", ""),
                ],
            ),
            Message::tool_result("call_1", "send_email", "sent"),
            Message::tool_result("call_2", "list_emails", "Error: no inbox"),
            Message::assistant(Some("Done.".into()), vec![]),
        ]
    }

    pub fn tools() -> ToolSet {
        ToolSet::new(vec![ToolDefinition {
            name: "send_email".into(),
            description: "Send an email".into(),
            parameters: json!({
                "type": "object",
                "properties": {"to": {"type": "string", "description": "Recipient"}},
                "required": ["to"],
                "additionalProperties": false
            }),
        }])
    }
}
