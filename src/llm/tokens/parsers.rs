//! Tool calls read back from sampled text, the way vLLM's tool parsers read them, for
//! when rl-gym sends token ids to a plain completions endpoint and so gets text, not
//! the chat API's parsed `tool_calls`. The parser is a model property, named by the
//! run's `tool_call_parser` like vLLM's `--tool-call-parser`:
//!
//! - `hermes` (Qwen2.5/3, Hermes, SmolLM): `<tool_call>{"name": …, "arguments": {…}}</tool_call>`
//!   blocks, found as vLLM's regex `<tool_call>(.*?)</tool_call>|<tool_call>(.*)`
//!   (DOTALL) finds them, so a last block cut off by the token limit or a stop string
//!   is still read. The content is the text before the first block.
//! - `llama3_json` (Llama 3.x/4 with vLLM's JSON template): an optional `<|python_tag|>`,
//!   then `{"name": …, "arguments"|"parameters": {…}}` objects, several separated by
//!   `;`. As in vLLM, every `{` not inside an object already read starts a JSON value;
//!   when a call is found there is no content.
//!
//! Arguments are written back as Python's `json.dumps(…, ensure_ascii=False)`, as vLLM
//! does, key order kept. Where vLLM, on any malformed call, gives up and returns the
//! whole text as content, this keeps the calls that did parse and lists the others as
//! [`MalformedToolCall`]s, with [`ParsedCompletion::feedback`] to tell the agent, so that
//! a typo costs the agent a turn rather than silently ending its tool use.

use minijinja::value::{Value, ValueKind};

use super::template::{python_json, JsonOptions};
use crate::domain::chat::{FunctionCall, Message, ToolCall};

const HERMES_START: &str = "<tool_call>";
const HERMES_END: &str = "</tool_call>";
const PYTHON_TAG: &str = "<|python_tag|>";

/// A `tool_call_parser` name that is not known.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown tool_call_parser `{0}` (known: hermes, llama3_json)")]
pub struct UnknownParser(pub String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolCallParser {
    Hermes,
    Llama3Json,
}

/// A tool call the model wrote that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedToolCall {
    /// The text of the call as the model wrote it.
    pub raw: String,
    /// Why it could not be read (the JSON error, or the missing key).
    pub reason: String,
}

/// A completion's text split into content and tool calls.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedCompletion {
    pub content: Option<String>,
    pub tool_calls: Vec<ToolCall>,
    pub malformed: Vec<MalformedToolCall>,
}

impl ParsedCompletion {
    /// The assistant message of this completion.
    pub fn message(&self) -> Message {
        Message::assistant(self.content.clone(), self.tool_calls.clone())
    }

    /// What to tell the agent when some of its calls could not be read (the step loop
    /// sends it as the next message), or `None` when all were.
    pub fn feedback(&self, parser: ToolCallParser) -> Option<String> {
        if self.malformed.is_empty() {
            return None;
        }
        let expected = match parser {
            ToolCallParser::Hermes => {
                "<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>"
            }
            ToolCallParser::Llama3Json => {
                "{\"name\": <function-name>, \"parameters\": <args-json-object>}"
            }
        };
        let mut text = format!(
            "{} of your tool calls could not be read and {} not run. Write each call as {expected}.",
            self.malformed.len(),
            if self.malformed.len() == 1 { "was" } else { "were" },
        );
        for m in &self.malformed {
            text.push_str(&format!("\n- {}: {}", m.reason, m.raw));
        }
        Some(text)
    }
}

impl std::str::FromStr for ToolCallParser {
    type Err = UnknownParser;

    fn from_str(name: &str) -> Result<Self, UnknownParser> {
        match name {
            "hermes" => Ok(ToolCallParser::Hermes),
            "llama3_json" => Ok(ToolCallParser::Llama3Json),
            other => Err(UnknownParser(other.to_string())),
        }
    }
}

impl ToolCallParser {
    pub fn name(self) -> &'static str {
        match self {
            ToolCallParser::Hermes => "hermes",
            ToolCallParser::Llama3Json => "llama3_json",
        }
    }

    /// Parses a completion's text (special tokens such as the end-of-turn left out).
    /// The calls get ids `call_{first_call}`, `call_{first_call + 1}`, …: the caller
    /// counts calls over the rollout, so ids never repeat in one conversation.
    pub fn parse(self, text: &str, first_call: usize) -> ParsedCompletion {
        let mut calls = Calls {
            next: first_call,
            tool_calls: Vec::new(),
            malformed: Vec::new(),
        };
        match self {
            ToolCallParser::Hermes => {
                let Some(first) = text.find(HERMES_START) else {
                    return ParsedCompletion::text_only(text);
                };
                for body in hermes_bodies(&text[first..]) {
                    match serde_json::from_str::<Value>(body) {
                        Ok(value) => calls.add(body, &value, &["arguments"]),
                        Err(e) => calls.malformed(body, format!("not JSON ({e})")),
                    }
                }
                let content = if calls.tool_calls.is_empty() {
                    non_empty(text)
                } else {
                    non_empty(&text[..first])
                };
                calls.finish(content)
            }
            ToolCallParser::Llama3Json => {
                if !text.contains(PYTHON_TAG) && !text.contains('{') {
                    return ParsedCompletion::text_only(text);
                }
                // A text that starts with the tag or an object is a call through and
                // through, so an unreadable object there is a malformed call; elsewhere a
                // brace is prose.
                let trimmed = text.trim_start();
                let intends_call = trimmed.starts_with(PYTHON_TAG) || trimmed.starts_with('{');
                let mut end = 0;
                for (start, _) in text.match_indices('{') {
                    if start < end {
                        continue;
                    }
                    let mut stream =
                        serde_json::Deserializer::from_str(&text[start..]).into_iter::<Value>();
                    match stream.next() {
                        Some(Ok(value)) => {
                            end = start + stream.byte_offset();
                            let raw = &text[start..end];
                            if intends_call || is_call_shape(&value) {
                                calls.add(raw, &value, &["arguments", "parameters"]);
                            }
                        }
                        Some(Err(e)) if intends_call => {
                            calls.malformed(text[start..].trim_end(), format!("not JSON ({e})"));
                            break;
                        }
                        _ => {}
                    }
                }
                let content = if calls.tool_calls.is_empty() {
                    non_empty(text)
                } else {
                    None
                };
                calls.finish(content)
            }
        }
    }
}

impl ParsedCompletion {
    fn text_only(text: &str) -> Self {
        ParsedCompletion {
            content: non_empty(text),
            tool_calls: Vec::new(),
            malformed: Vec::new(),
        }
    }
}

struct Calls {
    next: usize,
    tool_calls: Vec<ToolCall>,
    malformed: Vec<MalformedToolCall>,
}

impl Calls {
    fn add(&mut self, raw: &str, value: &Value, argument_keys: &[&str]) {
        if value.kind() != ValueKind::Map {
            return self.malformed(raw, "not a JSON object".to_string());
        }
        let name = value.get_attr("name").ok().filter(|v| !v.is_undefined());
        let Some(name) = name.as_ref().and_then(Value::as_str) else {
            return self.malformed(raw, "no string `name`".to_string());
        };
        let arguments = argument_keys
            .iter()
            .find_map(|key| value.get_attr(key).ok().filter(|v| !v.is_undefined()));
        let Some(arguments) = arguments else {
            return self.malformed(raw, format!("no `{}`", argument_keys.join("` or `")));
        };
        match python_json(&arguments, &JsonOptions::default()) {
            Ok(arguments) => {
                self.tool_calls.push(ToolCall {
                    id: format!("call_{}", self.next),
                    kind: "function".to_string(),
                    function: FunctionCall {
                        name: name.to_string(),
                        arguments,
                    },
                });
                self.next += 1;
            }
            Err(e) => self.malformed(raw, e.to_string()),
        }
    }

    fn malformed(&mut self, raw: &str, reason: String) {
        self.malformed.push(MalformedToolCall {
            raw: raw.to_string(),
            reason,
        });
    }

    fn finish(self, content: Option<String>) -> ParsedCompletion {
        ParsedCompletion {
            content,
            tool_calls: self.tool_calls,
            malformed: self.malformed,
        }
    }
}

fn is_call_shape(value: &Value) -> bool {
    value.kind() == ValueKind::Map
        && value.get_attr("name").is_ok_and(|v| v.as_str().is_some())
        && ["arguments", "parameters"]
            .iter()
            .any(|k| value.get_attr(k).is_ok_and(|v| !v.is_undefined()))
}

/// The bodies of `<tool_call>(.*?)</tool_call>|<tool_call>(.*)` matches, in order.
fn hermes_bodies(mut text: &str) -> Vec<&str> {
    let mut bodies = Vec::new();
    while let Some(start) = text.find(HERMES_START) {
        let rest = &text[start + HERMES_START.len()..];
        match rest.find(HERMES_END) {
            Some(end) => {
                bodies.push(&rest[..end]);
                text = &rest[end + HERMES_END.len()..];
            }
            None => {
                bodies.push(rest);
                break;
            }
        }
    }
    bodies
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: &str, name: &str, arguments: &str) -> ToolCall {
        ToolCall {
            id: id.into(),
            kind: "function".into(),
            function: FunctionCall {
                name: name.into(),
                arguments: arguments.into(),
            },
        }
    }

    #[test]
    fn parsers_are_chosen_by_name() {
        assert_eq!("hermes".parse(), Ok(ToolCallParser::Hermes));
        assert_eq!("llama3_json".parse(), Ok(ToolCallParser::Llama3Json));
        assert_eq!(
            "mistral".parse::<ToolCallParser>(),
            Err(UnknownParser("mistral".into()))
        );
        assert_eq!(
            UnknownParser("x".into()).to_string(),
            "unknown tool_call_parser `x` (known: hermes, llama3_json)"
        );
        assert_eq!(ToolCallParser::Llama3Json.name(), "llama3_json");
    }

    #[test]
    fn hermes_reads_blocks_and_keeps_the_text_before_them() {
        let text = "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Zürich\", \"days\": 2}}\n</tool_call>\n<tool_call>\n{\"name\": \"send\", \"arguments\": {}}\n</tool_call>";
        let parsed = ToolCallParser::Hermes.parse(text, 3);
        assert_eq!(parsed.content.as_deref(), Some("Let me check.\n"));
        assert_eq!(
            parsed.tool_calls,
            vec![
                call("call_3", "get_weather", r#"{"city": "Zürich", "days": 2}"#),
                call("call_4", "send", "{}"),
            ]
        );
        assert!(parsed.malformed.is_empty());
        assert_eq!(parsed.feedback(ToolCallParser::Hermes), None);
        assert_eq!(parsed.message().tool_calls.len(), 2);
    }

    #[test]
    fn hermes_reads_an_unterminated_last_block() {
        let text = "<tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": 1}}\n</tool_call><tool_call>{\"name\": \"b\", \"arguments\": {\"y\": [1.5, null]}}\n";
        let parsed = ToolCallParser::Hermes.parse(text, 0);
        assert_eq!(parsed.content, None);
        assert_eq!(
            parsed.tool_calls,
            vec![
                call("call_0", "a", r#"{"x": 1}"#),
                call("call_1", "b", r#"{"y": [1.5, null]}"#)
            ]
        );
    }

    #[test]
    fn hermes_without_a_block_is_all_content() {
        let parsed = ToolCallParser::Hermes.parse("Just text, {\"name\": 1}", 0);
        assert_eq!(parsed.content.as_deref(), Some("Just text, {\"name\": 1}"));
        assert!(parsed.tool_calls.is_empty() && parsed.malformed.is_empty());
        assert_eq!(ToolCallParser::Hermes.parse("", 0).content, None);
    }

    #[test]
    fn hermes_keeps_good_calls_and_reports_malformed_ones_in_band() {
        let text = "ok <tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call><tool_call>{\"name\": \"b\", \"arguments\": {\"x\": }</tool_call><tool_call>{\"arguments\": {}}</tool_call>";
        let parsed = ToolCallParser::Hermes.parse(text, 0);
        assert_eq!(parsed.content.as_deref(), Some("ok "));
        assert_eq!(parsed.tool_calls, vec![call("call_0", "a", "{}")]);
        assert_eq!(parsed.malformed.len(), 2);
        assert!(parsed.malformed[0].reason.starts_with("not JSON"));
        assert_eq!(
            parsed.malformed[0].raw,
            "{\"name\": \"b\", \"arguments\": {\"x\": }"
        );
        assert_eq!(parsed.malformed[1].reason, "no string `name`");
        let feedback = parsed.feedback(ToolCallParser::Hermes).unwrap();
        assert!(
            feedback.starts_with("2 of your tool calls could not be read and were not run."),
            "{feedback}"
        );
        assert!(feedback.contains("- no string `name`: {\"arguments\": {}}"));
    }

    #[test]
    fn hermes_with_only_malformed_calls_keeps_the_whole_text_as_content() {
        let text = "<tool_call>{\"name\": \"a\", \"arguments\"</tool_call>";
        let parsed = ToolCallParser::Hermes.parse(text, 0);
        assert_eq!(parsed.content.as_deref(), Some(text));
        assert!(parsed.tool_calls.is_empty());
        assert_eq!(parsed.malformed.len(), 1);
        assert!(parsed
            .feedback(ToolCallParser::Hermes)
            .unwrap()
            .starts_with("1 of your tool calls could not be read and was not run."));
    }

    #[test]
    fn llama3_json_reads_tagged_and_semicolon_separated_calls() {
        let text = "<|python_tag|>{\"name\": \"a\", \"parameters\": {\"q\": \"x\"}}; {\"name\": \"b\", \"arguments\": {\"n\": {\"deep\": [1]}}}";
        let parsed = ToolCallParser::Llama3Json.parse(text, 0);
        assert_eq!(parsed.content, None);
        assert_eq!(
            parsed.tool_calls,
            vec![
                call("call_0", "a", r#"{"q": "x"}"#),
                call("call_1", "b", r#"{"n": {"deep": [1]}}"#)
            ]
        );
        let bare = ToolCallParser::Llama3Json.parse("{\"name\": \"a\", \"parameters\": {}}", 5);
        assert_eq!(bare.tool_calls, vec![call("call_5", "a", "{}")]);
    }

    #[test]
    fn llama3_json_leaves_prose_alone_and_reports_broken_calls() {
        let prose = "Sets are written {1, 2}; that is all.";
        let parsed = ToolCallParser::Llama3Json.parse(prose, 0);
        assert_eq!(parsed.content.as_deref(), Some(prose));
        assert!(parsed.tool_calls.is_empty() && parsed.malformed.is_empty());

        let plain = ToolCallParser::Llama3Json.parse("No call here.", 0);
        assert_eq!(plain.content.as_deref(), Some("No call here."));

        let broken = "{\"name\": \"a\", \"parameters\": {\"q\": }";
        let parsed = ToolCallParser::Llama3Json.parse(broken, 0);
        assert_eq!(parsed.content.as_deref(), Some(broken));
        assert_eq!(parsed.malformed.len(), 1);
        assert!(parsed.feedback(ToolCallParser::Llama3Json).is_some());

        let no_args = ToolCallParser::Llama3Json.parse("{\"name\": \"a\"}", 0);
        assert_eq!(
            no_args.malformed[0].reason,
            "no `arguments` or `parameters`"
        );
    }
}
