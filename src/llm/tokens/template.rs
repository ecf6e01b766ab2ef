//! Hugging Face chat templates, rendered the way transformers' `apply_chat_template`
//! renders them, so that the prompt rl-gym tokenizes is byte for byte the prompt the
//! model was trained on.
//!
//! transformers renders with Jinja2 (`ImmutableSandboxedEnvironment(trim_blocks=True,
//! lstrip_blocks=True)` with loop controls) and gives the template: `messages`, `tools`
//! (None when there are none), `documents` (None), `add_generation_prompt`, the special
//! tokens by name (`bos_token`, `eos_token`, …), the functions `raise_exception(msg)`
//! and `strftime_now(fmt)`, and its own `tojson` filter, which is Python's
//! `json.dumps(x, ensure_ascii=False)`: insertion order, `", "` and `": "` separators, no
//! HTML escaping (Jinja's own `tojson` escapes `<`, `>`, `&`, `'`, and minijinja's also
//! sorts keys and drops the spaces). minijinja with `minijinja-contrib`'s Python string
//! and dict methods does the rest.
//!
//! minijinja 3 prints none and booleans as Python does (`None`, `True`).
//!
//! Our [`Message`] becomes the dict a Python caller would pass: `content`, `tool_calls`,
//! `tool_call_id` and `name` are left out when absent (an undefined behaves as in Jinja2:
//! false, printed as nothing, iterated as empty; a none would print `None`), and a tool
//! call's `arguments` JSON text becomes an object, key order kept, as vLLM does before
//! rendering (templates write `arguments | tojson`); text that is not JSON stays a string.
//!
//! Over 600 lines: transformers' template environment and the Python-compatible filters
//! it installs are one unit.

use std::fmt::Write as _;

use minijinja::value::{Kwargs, Serde, Value};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, State};
use serde::Serialize;

use super::tokenizer::SpecialTokens;
use crate::domain::chat::{Message, Role, ToolDefinition};

/// Marks the message of `raise_exception` so that it comes back as
/// [`TemplateError::Raised`] rather than as an engine failure.
const RAISED: &str = "\u{1}raise_exception\u{1}";
/// The context variable `strftime_now` reads its clock from (see [`RenderOptions::now`]).
const NOW: &str = "__rl_gym_now";
const TEMPLATE: &str = "chat";

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("the chat template does not compile: {0}")]
    Syntax(String),
    /// The template's own `raise_exception` (e.g. "Conversation roles must alternate").
    #[error("the chat template refused the conversation: {0}")]
    Raised(String),
    #[error("the chat template failed: {0}")]
    Render(String),
}

/// What varies per render besides the conversation.
#[derive(Debug, Clone, Copy, Default)]
pub struct RenderOptions {
    /// Append the header of an assistant turn (`<|im_start|>assistant\n`).
    pub add_generation_prompt: bool,
    /// What `strftime_now` reads (Llama 3's "Today Date"). `None` reads the local clock
    /// as transformers does; a rollout pins one, so that a turn rendered after midnight
    /// does not change its earlier prompt.
    pub now: Option<chrono::NaiveDateTime>,
}

/// A compiled chat template with the special tokens it is given.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    special: Vec<(&'static str, String)>,
}

impl ChatTemplate {
    pub fn new(source: impl Into<String>, special: &SpecialTokens) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| TemplateError::Syntax(e.to_string()))?;
        env.set_syntax(syntax);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> Result<Value, Error> {
                Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("{RAISED}{message}"),
                ))
            },
        );
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson_filter);
        // transformers' `{% generation %}` only marks assistant spans for a mask; it
        // renders its body unchanged, and minijinja has no such tag.
        let source = neutralize_generation_blocks(&source.into());
        env.add_template_owned(TEMPLATE, source)
            .map_err(|e| TemplateError::Syntax(format!("{e:#}")))?;

        let mut named = Vec::new();
        for (name, token) in [
            ("bos_token", &special.bos),
            ("eos_token", &special.eos),
            ("unk_token", &special.unk),
            ("pad_token", &special.pad),
        ] {
            if let Some(token) = token {
                named.push((name, token.text.clone()));
            }
        }
        Ok(ChatTemplate {
            env,
            special: named,
        })
    }

    /// Renders a conversation. `tools` empty is `tools=None` (templates test `if tools`).
    pub fn render(
        &self,
        messages: &[Message],
        tools: &[ToolDefinition],
        options: RenderOptions,
    ) -> Result<String, TemplateError> {
        let template = self
            .env
            .get_template(TEMPLATE)
            .map_err(|e| TemplateError::Render(e.to_string()))?;
        let tools = if tools.is_empty() {
            Value::from(())
        } else {
            tools.iter().map(tool_value).collect()
        };
        let now = options
            .now
            .unwrap_or_else(|| chrono::Local::now().naive_local());
        let mut context: Vec<(&str, Value)> = vec![
            ("messages", messages.iter().map(message_value).collect()),
            ("tools", tools),
            ("documents", Value::from(())),
            (
                "add_generation_prompt",
                Value::from(options.add_generation_prompt),
            ),
            (NOW, Value::from(now.and_utc().timestamp_micros())),
        ];
        for (name, text) in &self.special {
            context.push((name, Value::from(text.as_str())));
        }
        template
            .render(Value::from_pairs(context))
            .map_err(render_error)
    }
}

fn render_error(err: Error) -> TemplateError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = source {
        if let Some(e) = e.downcast_ref::<Error>() {
            if let Some(message) = e.detail().and_then(|d| d.strip_prefix(RAISED)) {
                return TemplateError::Raised(message.to_string());
            }
        }
        source = e.source();
    }
    TemplateError::Render(format!("{err:#}"))
}

/// A message as the dict a template reads.
pub fn message_value(message: &Message) -> Value {
    let role = match message.role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    };
    let mut pairs: Vec<(&str, Value)> = vec![("role", Value::from(role))];
    if let Some(content) = &message.content {
        pairs.push(("content", Value::from(content.as_str())));
    }
    if !message.tool_calls.is_empty() {
        let calls: Value = message
            .tool_calls
            .iter()
            .map(|call| {
                let arguments = serde_json::from_str::<Value>(&call.function.arguments)
                    .unwrap_or_else(|_| Value::from(call.function.arguments.as_str()));
                Value::from_pairs([
                    ("id", Value::from(call.id.as_str())),
                    ("type", Value::from(call.kind.as_str())),
                    (
                        "function",
                        Value::from_pairs([
                            ("name", Value::from(call.function.name.as_str())),
                            ("arguments", arguments),
                        ]),
                    ),
                ])
            })
            .collect();
        pairs.push(("tool_calls", calls));
    }
    if let Some(id) = &message.tool_call_id {
        pairs.push(("tool_call_id", Value::from(id.as_str())));
    }
    if let Some(name) = &message.name {
        pairs.push(("name", Value::from(name.as_str())));
    }
    Value::from_pairs(pairs)
}

/// A tool as the OpenAI `tools` entry templates are written for. The `parameters` keep
/// the order serde_json gives them (sorted: the crate is built without
/// `preserve_order`).
pub fn tool_value(tool: &ToolDefinition) -> Value {
    Value::from_pairs([
        ("type", Value::from("function")),
        (
            "function",
            Value::from_pairs([
                ("name", Value::from(tool.name.as_str())),
                ("description", Value::from(tool.description.as_str())),
                ("parameters", Value::from(Serde(&tool.parameters))),
            ]),
        ),
    ])
}

fn strftime_now(state: &State, format: String) -> Result<Value, Error> {
    let micros = state
        .lookup(NOW)
        .and_then(|v| i64::try_from(v).ok())
        .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "strftime_now has no clock"))?;
    let now = chrono::DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "strftime_now: bad clock"))?
        .naive_utc();
    // chrono reports an unknown `%` directive as a formatting error (it would panic
    // through `to_string`).
    let mut out = String::new();
    write!(out, "{}", now.format(&format)).map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("strftime_now: unsupported format {format:?}"),
        )
    })?;
    Ok(Value::from(out))
}

/// transformers' `tojson(x, ensure_ascii=False, indent=None, separators=None,
/// sort_keys=False)`, i.e. Python's `json.dumps` with those arguments.
fn tojson_filter(value: Value, kwargs: Kwargs) -> Result<String, Error> {
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let indent: Option<Value> = kwargs.get("indent")?;
    let separators: Option<Value> = kwargs.get("separators")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => match (v.as_str(), i64::try_from(v.clone())) {
            (Some(s), _) => Some(s.to_string()),
            (None, Ok(n)) => Some(" ".repeat(usize::try_from(n).unwrap_or(0))),
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson: indent must be an integer or a string",
                ))
            }
        },
    };
    let separators = match separators {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => {
            let items: Vec<Value> = v.try_iter()?.collect();
            match items.as_slice() {
                [item, key] if item.as_str().is_some() && key.as_str().is_some() => Some((
                    item.as_str().unwrap_or_default().to_string(),
                    key.as_str().unwrap_or_default().to_string(),
                )),
                _ => {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson: separators must be two strings",
                    ))
                }
            }
        }
    };
    let value = if sort_keys.unwrap_or(false) {
        sorted(&value)?
    } else {
        value
    };
    python_json(
        &value,
        &JsonOptions {
            ensure_ascii: ensure_ascii.unwrap_or(false),
            indent,
            separators,
        },
    )
}

fn sorted(value: &Value) -> Result<Value, Error> {
    match value.kind() {
        minijinja::value::ValueKind::Map => {
            let mut pairs = Vec::new();
            for key in value.try_iter()? {
                let item = value.get_item(&key)?;
                pairs.push((key, sorted(&item)?));
            }
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(Value::from_pairs(pairs))
        }
        minijinja::value::ValueKind::Seq => value.try_iter()?.map(|v| sorted(&v)).collect(),
        _ => Ok(value.clone()),
    }
}

/// Options of Python's `json.dumps` that templates use.
#[derive(Debug, Clone, Default)]
pub struct JsonOptions {
    pub ensure_ascii: bool,
    /// `None`: one line. `Some(unit)`: one item per line, indented by `unit` per level.
    pub indent: Option<String>,
    /// `(item, key)` separators; Python's default is `(", ", ": ")` on one line and
    /// `(",", ": ")` with an indent.
    pub separators: Option<(String, String)>,
}

/// `json.dumps(value, …)` as Python writes it: keys in insertion order, floats as
/// Python's `repr`, `NaN`/`Infinity` allowed.
pub fn python_json(value: &Value, options: &JsonOptions) -> Result<String, Error> {
    let (item, key) = options.separators.clone().unwrap_or_else(|| {
        if options.indent.is_some() {
            (",".to_string(), ": ".to_string())
        } else {
            (", ".to_string(), ": ".to_string())
        }
    });
    let mut out = Vec::with_capacity(128);
    let formatter = PythonFormatter {
        item,
        key,
        indent: options.indent.clone(),
        ensure_ascii: options.ensure_ascii,
        level: 0,
        has_value: false,
    };
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    value
        .serialize(&mut serializer)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    String::from_utf8(out)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))
}

struct PythonFormatter {
    item: String,
    key: String,
    indent: Option<String>,
    ensure_ascii: bool,
    level: usize,
    has_value: bool,
}

impl PythonFormatter {
    fn newline<W: ?Sized + std::io::Write>(&self, w: &mut W) -> std::io::Result<()> {
        if let Some(unit) = &self.indent {
            w.write_all(b"\n")?;
            for _ in 0..self.level {
                w.write_all(unit.as_bytes())?;
            }
        }
        Ok(())
    }

    fn begin<W: ?Sized + std::io::Write>(&mut self, w: &mut W, open: &[u8]) -> std::io::Result<()> {
        self.level += 1;
        self.has_value = false;
        w.write_all(open)
    }

    fn end<W: ?Sized + std::io::Write>(&mut self, w: &mut W, close: &[u8]) -> std::io::Result<()> {
        self.level -= 1;
        if self.has_value {
            self.newline(w)?;
        }
        self.has_value = true;
        w.write_all(close)
    }

    fn element<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if !first {
            w.write_all(self.item.as_bytes())?;
        }
        self.newline(w)
    }
}

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.begin(w, b"[")
    }

    fn end_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.end(w, b"]")
    }

    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.element(w, first)
    }

    fn end_array_value<W: ?Sized + std::io::Write>(&mut self, _w: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }

    fn begin_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.begin(w, b"{")
    }

    fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.end(w, b"}")
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.element(w, first)
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(self.key.as_bytes())
    }

    fn end_object_value<W: ?Sized + std::io::Write>(&mut self, _w: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }

    fn write_f64<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        value: f64,
    ) -> std::io::Result<()> {
        w.write_all(python_float(value).as_bytes())
    }

    fn write_f32<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        value: f32,
    ) -> std::io::Result<()> {
        w.write_all(python_float(f64::from(value)).as_bytes())
    }

    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        if !self.ensure_ascii {
            return w.write_all(fragment.as_bytes());
        }
        // Python's ensure_ascii escapes everything outside printable ASCII, DEL too,
        // and characters past the BMP as a surrogate pair.
        for c in fragment.chars() {
            if (' '..='~').contains(&c) {
                w.write_all(&[c as u8])?;
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(w, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

/// Python's `repr(float)`, which `json.dumps` writes: the shortest digits that read
/// back, positional for exponents in [-4, 16), else `1e+16` / `1e-05`.
fn python_float(value: f64) -> String {
    if value.is_nan() {
        return "NaN".to_string();
    }
    if value.is_infinite() {
        return if value > 0.0 { "Infinity" } else { "-Infinity" }.to_string();
    }
    let scientific = format!("{value:e}");
    let (mantissa, exponent) = scientific
        .split_once('e')
        .unwrap_or((scientific.as_str(), "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if (-4..16).contains(&exponent) {
        let positional = format!("{value}");
        if positional.contains('.') {
            positional
        } else {
            format!("{positional}.0")
        }
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.abs())
    }
}

/// Rewrites `{% generation %}`…`{% endgeneration %}` (with any `-` whitespace markers)
/// as `{% if true %}`…`{% endif %}`.
fn neutralize_generation_blocks(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(open) = rest.find("{%") {
        let Some(len) = rest[open..].find("%}") else {
            break;
        };
        let tag = &rest[open..open + len + 2];
        let inner = &tag[2..tag.len() - 2];
        let lead = if inner.starts_with('-') { "-" } else { "" };
        let trail = if inner.ends_with('-') { "-" } else { "" };
        let keyword = inner.trim_matches('-').trim();
        out.push_str(&rest[..open]);
        match keyword {
            "generation" => out.push_str(&format!("{{%{lead} if true {trail}%}}")),
            "endgeneration" => out.push_str(&format!("{{%{lead} endif {trail}%}}")),
            _ => out.push_str(tag),
        }
        rest = &rest[open + len + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::tokens::tokenizer::{smollm2, smollm2_dir};

    #[derive(serde::Deserialize)]
    struct Golden {
        cases: Vec<GoldenCase>,
    }

    #[derive(serde::Deserialize)]
    struct GoldenCase {
        name: String,
        template: String,
        add_generation_prompt: bool,
        messages: Vec<Message>,
        tools: Option<Vec<ToolDefinition>>,
        text: String,
        ids: Vec<u32>,
    }

    fn golden() -> Vec<GoldenCase> {
        let text = std::fs::read_to_string(smollm2_dir().join("golden.json")).expect("golden");
        serde_json::from_str::<Golden>(&text)
            .expect("golden parses")
            .cases
    }

    fn hermes_test_template() -> ChatTemplate {
        let source = std::fs::read_to_string(smollm2_dir().join("hermes_test.jinja")).unwrap();
        ChatTemplate::new(source, smollm2().special_tokens()).unwrap()
    }

    fn smollm2_template() -> ChatTemplate {
        let tok = smollm2();
        ChatTemplate::new(tok.chat_template(false).unwrap(), tok.special_tokens()).unwrap()
    }

    #[test]
    fn renders_and_tokenizes_every_golden_case_as_transformers_does() {
        let smollm2_template = smollm2_template();
        let hermes = hermes_test_template();
        let cases = golden();
        assert_eq!(cases.len(), 16);
        for case in cases {
            let template = match case.template.as_str() {
                "smollm2" => &smollm2_template,
                "hermes_test" => &hermes,
                other => panic!("unknown template {other}"),
            };
            let options = RenderOptions {
                add_generation_prompt: case.add_generation_prompt,
                now: None,
            };
            let text = template
                .render(
                    &case.messages,
                    case.tools.as_deref().unwrap_or(&[]),
                    options,
                )
                .unwrap();
            let label = format!(
                "{}/{} gen={}",
                case.template, case.name, case.add_generation_prompt
            );
            assert_eq!(text, case.text, "{label}");
            assert_eq!(smollm2().encode(&text).unwrap(), case.ids, "{label}");
        }
    }

    #[test]
    fn smollm2_injects_its_default_system_prompt() {
        let text = smollm2_template()
            .render(&[Message::user("hi")], &[], RenderOptions::default())
            .unwrap();
        assert_eq!(
            text,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
        );
    }

    #[test]
    fn raise_exception_is_a_refusal_with_the_templates_message() {
        let err = hermes_test_template()
            .render(
                &[Message::user("a"), Message::system("late")],
                &[],
                RenderOptions::default(),
            )
            .unwrap_err();
        match err {
            TemplateError::Raised(message) => {
                assert_eq!(message, "a system message must come first")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_template_that_does_not_compile_is_a_syntax_error() {
        let err = ChatTemplate::new("{% for x in %}", &SpecialTokens::default()).unwrap_err();
        assert!(matches!(err, TemplateError::Syntax(_)), "{err}");
    }

    #[test]
    fn special_tokens_strftime_and_loop_controls_are_available() {
        let tok = smollm2();
        let template = ChatTemplate::new(
            "{{ bos_token }}|{{ eos_token }}|{{ strftime_now('%d %b %Y') }}|\
             {% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}{{ m.content.upper() }}{% endfor %}|\
             {{ tools is none }}|{{ messages[0].get('name', 'anon') }}",
            tok.special_tokens(),
        )
        .unwrap();
        let now = chrono::NaiveDate::from_ymd_opt(2024, 7, 26)
            .unwrap()
            .and_hms_opt(10, 0, 0)
            .unwrap();
        let text = template
            .render(
                &[Message::user("first"), Message::user("second")],
                &[],
                RenderOptions {
                    add_generation_prompt: false,
                    now: Some(now),
                },
            )
            .unwrap();
        assert_eq!(text, "<|im_start|>|<|im_end|>|26 Jul 2024|FIRST|True|anon");

        let bad = ChatTemplate::new("{{ strftime_now('%Q') }}", tok.special_tokens()).unwrap();
        let err = bad.render(&[], &[], RenderOptions::default()).unwrap_err();
        assert!(err.to_string().contains("unsupported format"), "{err}");
    }

    #[test]
    fn generation_blocks_render_their_body() {
        let template = ChatTemplate::new(
            "{% for m in messages %}{%- generation -%} <{{ m.content }}> {%- endgeneration -%}{% endfor %}",
            &SpecialTokens::default(),
        )
        .unwrap();
        let text = template
            .render(&[Message::user("x")], &[], RenderOptions::default())
            .unwrap();
        assert_eq!(text, "<x>");
    }

    fn dumps(json: &str, options: &JsonOptions) -> String {
        let value: Value = serde_json::from_str(json).unwrap();
        python_json(&value, options).unwrap()
    }

    #[test]
    fn tojson_writes_what_python_json_dumps_writes() {
        let default = JsonOptions::default();
        // Expected strings are Python 3.11's json.dumps output for the same values.
        assert_eq!(
            dumps(r#"{"b": 1, "a": [true, null, "<&'>"]}"#, &default),
            r#"{"b": 1, "a": [true, null, "<&'>"]}"#
        );
        assert_eq!(
            dumps(r#"["Zürich 🌟", "tab\there", "\u0001"]"#, &default),
            "[\"Zürich 🌟\", \"tab\\there\", \"\\u0001\"]"
        );
        let ascii = JsonOptions {
            ensure_ascii: true,
            ..JsonOptions::default()
        };
        assert_eq!(
            dumps(r#"["Zürich 🌟\u007f"]"#, &ascii),
            r#"["Z\u00fcrich \ud83c\udf1f\u007f"]"#
        );
        assert_eq!(
            dumps(
                "[1.0, 0.1, 1e16, 1e-5, 123456789012345678, -0.0, 2.5e-4, 1e15]",
                &default
            ),
            "[1.0, 0.1, 1e+16, 1e-05, 123456789012345678, -0.0, 0.00025, 1000000000000000.0]"
        );
        let indented = JsonOptions {
            indent: Some("  ".into()),
            ..JsonOptions::default()
        };
        assert_eq!(
            dumps(r#"{"a": [1, {}], "b": [], "c": {"d": null}}"#, &indented),
            "{\n  \"a\": [\n    1,\n    {}\n  ],\n  \"b\": [],\n  \"c\": {\n    \"d\": null\n  }\n}"
        );
        let compact = JsonOptions {
            separators: Some((",".into(), ":".into())),
            ..JsonOptions::default()
        };
        assert_eq!(dumps(r#"{"a": [1, 2]}"#, &compact), r#"{"a":[1,2]}"#);
    }

    #[test]
    fn the_tojson_filter_takes_pythons_keyword_arguments() {
        let template = ChatTemplate::new(
            "{{ messages[0] | tojson }}|{{ messages[0] | tojson(sort_keys=true, separators=[',', ':']) }}|{{ 'é' | tojson(ensure_ascii=true) }}|{{ [1] | tojson(indent=1) }}",
            &SpecialTokens::default(),
        )
        .unwrap();
        let text = template
            .render(&[Message::user("<b>")], &[], RenderOptions::default())
            .unwrap();
        assert_eq!(
            text,
            "{\"role\": \"user\", \"content\": \"<b>\"}|{\"content\":\"<b>\",\"role\":\"user\"}|\"\\u00e9\"|[\n 1\n]"
        );
        let bad =
            ChatTemplate::new("{{ 1 | tojson(colour=1) }}", &SpecialTokens::default()).unwrap();
        assert!(bad.render(&[], &[], RenderOptions::default()).is_err());
    }

    #[test]
    fn tool_call_arguments_become_objects_and_bad_json_stays_text() {
        use crate::domain::chat::{FunctionCall, ToolCall};
        let call = |arguments: &str| ToolCall {
            id: "call_0".into(),
            kind: "function".into(),
            function: FunctionCall {
                name: "f".into(),
                arguments: arguments.into(),
            },
        };
        let message = Message::assistant(None, vec![call(r#"{"z": 1, "a": 2}"#), call("{oops")]);
        let value = message_value(&message);
        let json = python_json(&value, &JsonOptions::default()).unwrap();
        assert_eq!(
            json,
            r#"{"role": "assistant", "tool_calls": [{"id": "call_0", "type": "function", "function": {"name": "f", "arguments": {"z": 1, "a": 2}}}, {"id": "call_0", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}"#
        );
    }
}
