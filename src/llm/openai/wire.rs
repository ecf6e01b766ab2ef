//! The chat-completions wire as every common OpenAI-compatible server accepts and
//! answers it, not only as OpenAI documents it (the differences are in the README's
//! "OpenAI-compatible servers" table):
//!
//! - Out: every message's `content` is a string. A turn that only called tools goes
//!   as `""`: llama-cpp-python's server refuses `null` and a missing `content` with a
//!   500, and vLLM, SGLang, llama.cpp, Ollama, LiteLLM and TGI all take `""`.
//! - In: a tool call without an id (older Ollama, some proxies), or with one that
//!   repeats an earlier call's (TGI answers `"0"` every time), gets `call` and five
//!   digits: unique in the conversation, and 9 alphanumerics, the only form Mistral
//!   templates (vLLM, llama.cpp) take back. `arguments` given as a JSON object (TGI,
//!   Ollama's native shape) is kept as JSON text; `content` given as text parts is
//!   joined.
//! - Log-probabilities come back in OpenAI's `{"content":[{token, logprob,
//!   top_logprobs}]}` shape whatever the server used: the completions API's
//!   `{tokens, token_logprobs, top_logprobs: [{token: logprob}]}` (older vLLM and
//!   llama-cpp-python chat answers) is converted.

use std::collections::HashSet;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::{json, Map, Value};

use crate::domain::chat::{FunctionCall, Message, Role, ToolCall};

/// Our conversation as request messages.
pub struct Messages<'a>(pub &'a [Message]);

impl Serialize for Messages<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|m| Out {
            role: m.role,
            content: m.content.as_deref().unwrap_or(""),
            tool_calls: &m.tool_calls,
            tool_call_id: m.tool_call_id.as_deref(),
            name: m.name.as_deref(),
        }))
    }
}

#[derive(Serialize)]
struct Out<'a> {
    role: Role,
    content: &'a str,
    #[serde(skip_serializing_if = "<[ToolCall]>::is_empty")]
    tool_calls: &'a [ToolCall],
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

/// An answer's `message`, as loosely as servers write it.
#[derive(Deserialize)]
pub struct Reply {
    #[serde(default)]
    content: Option<Value>,
    #[serde(default)]
    tool_calls: Option<Vec<ReplyCall>>,
}

#[derive(Deserialize)]
struct ReplyCall {
    #[serde(default)]
    id: Option<String>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    function: ReplyFunction,
}

#[derive(Deserialize)]
struct ReplyFunction {
    name: String,
    #[serde(default)]
    arguments: Option<Value>,
}

impl Reply {
    /// The text and the tool calls, each call with an id no earlier call has.
    pub fn into_parts(self, earlier: &[Message]) -> (Option<String>, Vec<ToolCall>) {
        (text(self.content), tool_calls(self.tool_calls, earlier))
    }
}

fn text(content: Option<Value>) -> Option<String> {
    match content? {
        Value::Null => None,
        Value::String(s) => Some(s),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect(),
        ),
        other => Some(other.to_string()),
    }
}

fn tool_calls(calls: Option<Vec<ReplyCall>>, earlier: &[Message]) -> Vec<ToolCall> {
    let calls = calls.unwrap_or_default();
    if calls.is_empty() {
        return Vec::new();
    }
    let mut used: HashSet<String> = earlier
        .iter()
        .flat_map(|m| m.tool_calls.iter().map(|c| c.id.clone()))
        .collect();
    let mut number = used.len();
    calls
        .into_iter()
        .map(|call| {
            number += 1;
            let id = match call.id {
                Some(id) if !id.is_empty() && !used.contains(&id) => id,
                _ => loop {
                    let id = format!("call{number:05}");
                    if !used.contains(&id) {
                        break id;
                    }
                    number += 1;
                },
            };
            used.insert(id.clone());
            let arguments = match call.function.arguments {
                None | Some(Value::Null) => "{}".to_string(),
                Some(Value::String(s)) => s,
                Some(other) => other.to_string(),
            };
            ToolCall {
                id,
                kind: call.kind.unwrap_or_else(|| "function".to_string()),
                function: FunctionCall {
                    name: call.function.name,
                    arguments,
                },
            }
        })
        .collect()
}

/// A choice's `logprobs` in OpenAI's chat shape; `None` when it holds no tokens.
pub fn logprobs(value: Value) -> Option<Value> {
    let Value::Object(mut map) = value else {
        return (!value.is_null()).then_some(value);
    };
    if map.get("content").is_some_and(Value::is_array) {
        return Some(Value::Object(map));
    }
    if let Some(Value::Array(tokens)) = map.remove("tokens") {
        let logprobs = map.remove("token_logprobs");
        let tops = map.remove("top_logprobs");
        let content: Vec<Value> = tokens
            .into_iter()
            .enumerate()
            .map(|(i, token)| {
                let logprob = logprobs
                    .as_ref()
                    .and_then(|l| l.get(i))
                    .cloned()
                    .unwrap_or(Value::Null);
                let top = tops
                    .as_ref()
                    .and_then(|t| t.get(i))
                    .and_then(Value::as_object)
                    .map(top_entries)
                    .unwrap_or_default();
                json!({"token": token, "logprob": logprob, "top_logprobs": top})
            })
            .collect();
        return Some(json!({ "content": content }));
    }
    let empty = map.values().all(Value::is_null);
    (!empty).then_some(Value::Object(map))
}

/// `{token: logprob}` as `[{token, logprob}]`, most likely first.
fn top_entries(map: &Map<String, Value>) -> Vec<Value> {
    let mut entries: Vec<(&String, f64)> = map
        .iter()
        .map(|(t, l)| (t, l.as_f64().unwrap_or(f64::NEG_INFINITY)))
        .collect();
    entries.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    entries
        .into_iter()
        .map(|(token, _)| json!({"token": token, "logprob": map[token]}))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: &str) -> ToolCall {
        ToolCall {
            id: id.into(),
            kind: "function".into(),
            function: FunctionCall {
                name: "f".into(),
                arguments: "{}".into(),
            },
        }
    }

    #[test]
    fn a_turn_that_only_called_tools_goes_with_empty_text_not_null() {
        let messages = vec![
            Message::assistant(None, vec![call("c1")]),
            Message::tool_result("c1", "f", "ok"),
        ];
        let body = serde_json::to_value(Messages(&messages)).unwrap();
        assert_eq!(body[0]["content"], "");
        assert_eq!(body[0]["tool_calls"][0]["id"], "c1");
        assert_eq!(
            body[1],
            json!({"role": "tool", "content": "ok", "tool_call_id": "c1", "name": "f"})
        );
    }

    fn reply(message: Value) -> Reply {
        serde_json::from_value(message).unwrap()
    }

    #[test]
    fn missing_and_repeated_ids_become_unique_mistral_safe_ids() {
        let earlier = vec![Message::assistant(None, vec![call("0")])];
        let (_, calls) = reply(json!({"tool_calls": [
            {"id": "0", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"function": {"name": "g", "arguments": {"a": 1}}},
            {"id": "", "function": {"name": "h"}}
        ]}))
        .into_parts(&earlier);
        let ids: Vec<&str> = calls.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["call00002", "call00003", "call00004"]);
        for id in ids {
            assert!(id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric()));
        }
        assert_eq!(calls[1].kind, "function");
        assert_eq!(calls[1].function.arguments, r#"{"a":1}"#);
        assert_eq!(calls[2].function.arguments, "{}");
    }

    #[test]
    fn ids_the_server_gave_are_kept() {
        let (_, calls) = reply(json!({"content": null, "tool_calls": [
            {"id": "call__0_f_cmpl-1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ]}))
        .into_parts(&[]);
        assert_eq!(calls[0].id, "call__0_f_cmpl-1");
    }

    #[test]
    fn text_parts_are_joined() {
        let (text, _) = reply(
            json!({"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}),
        )
        .into_parts(&[]);
        assert_eq!(text.as_deref(), Some("ab"));
    }

    #[test]
    fn completions_shaped_logprobs_become_the_chat_shape() {
        let converted = logprobs(json!({
            "content": null, "text_offset": [0, 2], "tokens": ["Hi", "!"],
            "token_logprobs": [-0.5, -1.5],
            "top_logprobs": [{"Hi": -0.5, "Hello": -1.0}, {"!": -1.5}]
        }))
        .unwrap();
        assert_eq!(
            converted,
            json!({"content": [
                {"token": "Hi", "logprob": -0.5, "top_logprobs": [
                    {"token": "Hi", "logprob": -0.5}, {"token": "Hello", "logprob": -1.0}]},
                {"token": "!", "logprob": -1.5, "top_logprobs": [{"token": "!", "logprob": -1.5}]}
            ]})
        );
        let chat = json!({"content": [{"token": "a", "logprob": -0.1, "bytes": [97], "top_logprobs": []}]});
        assert_eq!(logprobs(chat.clone()), Some(chat));
        assert_eq!(logprobs(json!({"content": null, "refusal": null})), None);
        assert_eq!(logprobs(Value::Null), None);
    }
}
