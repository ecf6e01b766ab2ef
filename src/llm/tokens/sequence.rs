//! The token-in core: one rollout's token ids, owned by rl-gym and grown turn by turn,
//! so that every prompt is exactly the previous prompt plus what the model sampled plus
//! the new messages, and nothing the model already saw is ever tokenized again.
//!
//! - The first prompt is the chat template rendered with `add_generation_prompt` and
//!   tokenized (without adding special tokens: the template writes them).
//! - A completion's sampled ids are appended verbatim (mask 1, with their
//!   log-probabilities), whatever text they decode to.
//! - The next prompt appends only the ids of the new messages (tool results, a simulated
//!   person's reply, a summary) and of the next generation prompt. Their text is the
//!   template's render of the whole conversation with the generation prompt, minus its
//!   render of the conversation so far without it; the template must only add at the end
//!   ([`SequenceError::Drift`] otherwise: Qwen3's template, which drops the reasoning of
//!   earlier turns, is one that does not).
//!
//! **The end-of-turn token.** The template closes an assistant turn with an end-of-turn
//! token (`<|im_end|>`, `<|eot_id|>`; the config's `eos_token` unless told otherwise) and
//! often a newline. vLLM and SGLang include the end-of-turn they stopped on in the
//! sampled ids; llama.cpp leaves it out, and a completion cut by the token limit never
//! has it. So the new ids are those of `end_of_turn + (the rest of the render after the
//! assistant's end-of-turn)`, tokenized together and, when the completion already ends
//! with the end-of-turn, without their first id. The end-of-turn must be an added special
//! token: the tokenizer splits text at those before anything else, so the ids after it
//! are the ids the whole render would get there, and the boundary never moves an earlier
//! token. An end-of-turn added here (not sampled) has mask 0; one the server stopped on
//! but did not report can be declared with [`Completion::end_of_turn_omitted`] (mask 1,
//! log-probability unknown, written 0.0).
//!
//! The mask is 1 on sampled ids and 0 on everything rl-gym wrote (prompt, tool results,
//! simulated people, summaries, template glue); log-probabilities are those the server
//! gave at sampled ids and 0.0 elsewhere, the shapes verl, SkyRL and prime-rl train on.
//! A conversation that is rewritten rather than extended (history compacted into a
//! summary that replaces turns) starts a new sequence.
//!
//! Over 600 lines: the sequence's invariant (it only grows by what the model saw) is
//! checked where it is kept.

use std::ops::Range;

use super::template::{ChatTemplate, RenderOptions, TemplateError};
use super::tokenizer::{ChatTokenizer, SpecialToken, TokenizerError};
use crate::domain::chat::{Message, Role, ToolDefinition};

#[derive(Debug, thiserror::Error)]
pub enum SequenceError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error("the tokenizer names no end-of-turn token (`eos_token`), and none was given")]
    NoEndOfTurn,
    #[error("the end-of-turn `{0}` is not an added special token, so the ids after it could depend on the text before it")]
    EndOfTurnNotSpecial(String),
    /// The template rendered the conversation so far differently once new messages were
    /// added: the new prompt would not extend the old one.
    #[error("the chat template changed the conversation's earlier text at byte {at}: it rendered {before:?} and then {after:?}")]
    Drift {
        at: usize,
        before: String,
        after: String,
    },
    #[error("the chat template rendered the assistant's turn without the end-of-turn `{0}`")]
    MissingEndOfTurn(String),
    #[error("the text after the end-of-turn did not tokenize starting with it")]
    Boundary,
    #[error("a completion was expected, not new messages")]
    AwaitingCompletion,
    #[error("new messages were expected, not a completion")]
    AwaitingMessages,
    #[error("{ids} sampled ids but {logprobs} log-probabilities")]
    LogprobsMismatch { ids: usize, logprobs: usize },
    #[error("a completion's message must be the assistant's")]
    NotAssistant,
}

/// A completion as the server returned it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Completion<'a> {
    /// The sampled ids (vLLM `token_ids`, SGLang `output_ids`).
    pub ids: &'a [u32],
    /// One per sampled id, if the server gave them.
    pub logprobs: Option<&'a [f32]>,
    /// The server stopped on the end-of-turn token and left it out of `ids`.
    pub end_of_turn_omitted: bool,
}

/// Where one model turn sits in the sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    /// The ids this turn added to the prompt (all of the first prompt; then the glue after
    /// the previous completion, the new messages and the generation prompt). The ids
    /// before `prompt.start` were sent before: an event needs only these.
    pub prompt: Range<usize>,
    /// The sampled ids, once recorded.
    pub completion: Option<Range<usize>>,
}

/// One rollout's token ids, mask and log-probabilities.
#[derive(Debug, Clone)]
pub struct TokenSequence {
    ids: Vec<u32>,
    mask: Vec<u8>,
    logprobs: Vec<f32>,
    /// False once a completion came without log-probabilities.
    logprobs_complete: bool,
    messages: Vec<Message>,
    tools: Vec<ToolDefinition>,
    options: RenderOptions,
    end_of_turn: SpecialToken,
    /// The render of the current prompt (with the generation prompt).
    rendered: String,
    turns: Vec<Turn>,
}

impl TokenSequence {
    /// The first prompt: the conversation rendered with the generation prompt. `now` is
    /// what `strftime_now` reads for the whole rollout.
    pub fn start(
        tokenizer: &ChatTokenizer,
        template: &ChatTemplate,
        messages: Vec<Message>,
        tools: Vec<ToolDefinition>,
        now: chrono::NaiveDateTime,
    ) -> Result<Self, SequenceError> {
        let end_of_turn = tokenizer
            .special_tokens()
            .eos
            .clone()
            .ok_or(SequenceError::NoEndOfTurn)?;
        let options = RenderOptions {
            add_generation_prompt: true,
            now: Some(now),
        };
        let rendered = template.render(&messages, &tools, options)?;
        let ids = tokenizer.encode(&rendered)?;
        let n = ids.len();
        let sequence = TokenSequence {
            mask: vec![0; n],
            logprobs: vec![0.0; n],
            logprobs_complete: true,
            ids,
            messages,
            tools,
            options,
            end_of_turn,
            rendered,
            turns: vec![Turn {
                prompt: 0..n,
                completion: None,
            }],
        };
        sequence.with_end_of_turn(tokenizer, None)
    }

    /// Uses another end-of-turn token than the config's `eos_token` (Llama 3's base
    /// config names `<|end_of_text|>`, its turns end with `<|eot_id|>`).
    pub fn with_end_of_turn(
        mut self,
        tokenizer: &ChatTokenizer,
        token: Option<&str>,
    ) -> Result<Self, SequenceError> {
        if let Some(text) = token {
            let id = tokenizer
                .token_to_id(text)
                .ok_or_else(|| SequenceError::EndOfTurnNotSpecial(text.to_string()))?;
            self.end_of_turn = SpecialToken {
                text: text.to_string(),
                id,
            };
        }
        if !tokenizer.is_special(self.end_of_turn.id) {
            return Err(SequenceError::EndOfTurnNotSpecial(
                self.end_of_turn.text.clone(),
            ));
        }
        Ok(self)
    }

    /// The ids to send for the turn being taken (the whole sequence so far).
    pub fn prompt(&self) -> &[u32] {
        let end = self.turns.last().map_or(0, |t| t.prompt.end);
        &self.ids[..end]
    }

    /// Appends a completion's sampled ids and the assistant message they were read as.
    pub fn record_completion(
        &mut self,
        completion: Completion<'_>,
        message: Message,
    ) -> Result<(), SequenceError> {
        let Some(turn) = self.turns.last() else {
            return Err(SequenceError::AwaitingMessages);
        };
        if turn.completion.is_some() {
            return Err(SequenceError::AwaitingMessages);
        }
        if message.role != Role::Assistant {
            return Err(SequenceError::NotAssistant);
        }
        if let Some(lp) = completion.logprobs {
            if lp.len() != completion.ids.len() {
                return Err(SequenceError::LogprobsMismatch {
                    ids: completion.ids.len(),
                    logprobs: lp.len(),
                });
            }
        }
        let start = self.ids.len();
        self.ids.extend_from_slice(completion.ids);
        self.mask.resize(self.ids.len(), 1);
        match completion.logprobs {
            Some(lp) => self.logprobs.extend_from_slice(lp),
            None => {
                self.logprobs_complete = false;
                self.logprobs.resize(self.ids.len(), 0.0);
            }
        }
        if completion.end_of_turn_omitted {
            self.ids.push(self.end_of_turn.id);
            self.mask.push(1);
            self.logprobs.push(0.0);
        }
        let end = self.ids.len();
        if let Some(turn) = self.turns.last_mut() {
            turn.completion = Some(start..end);
        }
        self.messages.push(message);
        Ok(())
    }

    /// Adds the messages that came after the last completion and returns the next
    /// prompt, which starts with the previous prompt and completion, id for id.
    pub fn extend(
        &mut self,
        tokenizer: &ChatTokenizer,
        template: &ChatTemplate,
        new_messages: Vec<Message>,
    ) -> Result<&[u32], SequenceError> {
        match self.turns.last() {
            Some(Turn {
                completion: Some(_),
                ..
            }) => {}
            _ => return Err(SequenceError::AwaitingCompletion),
        }
        let so_far = template.render(
            &self.messages,
            &self.tools,
            RenderOptions {
                add_generation_prompt: false,
                ..self.options
            },
        )?;
        let mut messages = self.messages.clone();
        messages.extend(new_messages);
        let rendered = template.render(&messages, &self.tools, self.options)?;
        if !rendered.starts_with(&so_far) {
            return Err(drift(&so_far, &rendered));
        }
        // The assistant's end-of-turn: the last one in its own rendered turn, which
        // starts no earlier than where the previous prompt and this render part.
        let eot = &self.end_of_turn.text;
        let assistant_from = common_prefix(&self.rendered, &so_far);
        let at = so_far[assistant_from..]
            .rfind(eot.as_str())
            .map(|i| assistant_from + i)
            .ok_or_else(|| SequenceError::MissingEndOfTurn(eot.clone()))?;
        let tail = &rendered[at..];
        let tail_ids = tokenizer.encode(tail)?;
        if tail_ids.first() != Some(&self.end_of_turn.id) {
            return Err(SequenceError::Boundary);
        }
        let sampled_end_of_turn = self.ids.last() == Some(&self.end_of_turn.id);
        let new_ids = if sampled_end_of_turn {
            &tail_ids[1..]
        } else {
            &tail_ids[..]
        };
        let start = self.ids.len();
        self.ids.extend_from_slice(new_ids);
        self.mask.resize(self.ids.len(), 0);
        self.logprobs.resize(self.ids.len(), 0.0);
        let end = self.ids.len();
        self.turns.push(Turn {
            prompt: start..end,
            completion: None,
        });
        self.messages = messages;
        self.rendered = rendered;
        Ok(&self.ids[..end])
    }

    /// The text of the last completion, for a tool-call parser: its ids decoded with
    /// special tokens kept (`<|python_tag|>` is one), less a final end-of-turn.
    pub fn last_completion_text(&self, tokenizer: &ChatTokenizer) -> Result<String, SequenceError> {
        let Some(range) = self.turns.last().and_then(|t| t.completion.clone()) else {
            return Ok(String::new());
        };
        let mut ids = &self.ids[range];
        if ids.last() == Some(&self.end_of_turn.id) {
            ids = &ids[..ids.len() - 1];
        }
        Ok(tokenizer.decode(ids, false)?)
    }

    /// Every id so far.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// 1 where the model sampled the id, 0 where rl-gym wrote it.
    pub fn mask(&self) -> &[u8] {
        &self.mask
    }

    /// One per id (0.0 where not sampled), or `None` when some completion came without.
    pub fn logprobs(&self) -> Option<&[f32]> {
        self.logprobs_complete.then_some(&self.logprobs[..])
    }

    pub fn turns(&self) -> &[Turn] {
        &self.turns
    }

    /// The conversation as the sequence rendered it.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// The end-of-turn token in use.
    pub fn end_of_turn(&self) -> &SpecialToken {
        &self.end_of_turn
    }
}

fn common_prefix(a: &str, b: &str) -> usize {
    let mut n = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    while !a.is_char_boundary(n) {
        n -= 1;
    }
    n
}

fn drift(before: &str, after: &str) -> SequenceError {
    let at = common_prefix(before, after);
    let snippet = |s: &str| -> String {
        let mut end = (at + 40).min(s.len());
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s[at..end].to_string()
    };
    SequenceError::Drift {
        at,
        before: snippet(before),
        after: snippet(after),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::tokens::parsers::ToolCallParser;
    use crate::llm::tokens::tokenizer::{smollm2, smollm2_dir};

    fn now() -> chrono::NaiveDateTime {
        chrono::NaiveDate::from_ymd_opt(2026, 12, 7)
            .unwrap()
            .and_hms_opt(6, 0, 0)
            .unwrap()
    }

    fn smollm2_template() -> ChatTemplate {
        let tok = smollm2();
        ChatTemplate::new(tok.chat_template(false).unwrap(), tok.special_tokens()).unwrap()
    }

    fn hermes_template() -> ChatTemplate {
        let source = std::fs::read_to_string(smollm2_dir().join("hermes_test.jinja")).unwrap();
        ChatTemplate::new(source, smollm2().special_tokens()).unwrap()
    }

    fn weather_tool() -> ToolDefinition {
        ToolDefinition {
            name: "get_weather".into(),
            description: "Current weather of a city.".into(),
            parameters: serde_json::json!({"type": "object", "properties": {"city": {"type": "string"}}}),
        }
    }

    fn sampled(text: &str) -> Vec<u32> {
        smollm2().encode(text).unwrap()
    }

    fn logprobs_for(ids: &[u32]) -> Vec<f32> {
        (0..ids.len()).map(|i| -0.5 - i as f32).collect()
    }

    /// Takes a turn: records the completion (read back with the hermes parser), checks
    /// the next prompt extends prompt + completion, and returns it.
    fn turn(
        seq: &mut TokenSequence,
        template: &ChatTemplate,
        completion: Completion<'_>,
        next: Vec<Message>,
    ) -> Vec<u32> {
        let tok = smollm2();
        let mut before = seq.prompt().to_vec();
        let first_call = seq
            .messages()
            .iter()
            .map(|m| m.tool_calls.len())
            .sum::<usize>();
        // The parser reads the text; the message is what the template renders later.
        let text = tok.decode(completion.ids, false).unwrap();
        let text = text.strip_suffix("<|im_end|>").unwrap_or(&text);
        let parsed = ToolCallParser::Hermes.parse(text, first_call);
        seq.record_completion(completion, parsed.message()).unwrap();
        assert_eq!(seq.last_completion_text(tok).unwrap(), text);
        before.extend_from_slice(completion.ids);
        let prompt = seq.extend(tok, template, next).unwrap().to_vec();
        assert!(
            prompt.starts_with(&before),
            "the new prompt must extend the previous prompt and completion"
        );
        assert!(prompt.len() > before.len());
        prompt
    }

    #[test]
    fn every_prompt_starts_with_the_previous_prompt_and_completion() {
        let tok = smollm2();
        let template = hermes_template();
        let mut seq = TokenSequence::start(
            tok,
            &template,
            vec![
                Message::system("You help."),
                Message::user("Weather in Lyon?"),
            ],
            vec![weather_tool()],
            now(),
        )
        .unwrap();
        assert!(seq.mask().iter().all(|&m| m == 0));
        assert_eq!(seq.end_of_turn().id, 2);

        // vLLM: the end-of-turn it stopped on is among the sampled ids.
        let c1 = sampled(
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Lyon\"}}\n</tool_call><|im_end|>",
        );
        let lp1 = logprobs_for(&c1);
        let p1_len = seq.prompt().len();
        let p2 = turn(
            &mut seq,
            &template,
            Completion {
                ids: &c1,
                logprobs: Some(&lp1),
                end_of_turn_omitted: false,
            },
            vec![Message::tool_result(
                "call_0",
                "get_weather",
                "{\"sky\": \"clear\"}",
            )],
        );
        assert_eq!(
            seq.messages()[2].tool_calls[0].function.arguments,
            r#"{"city": "Lyon"}"#
        );
        assert_eq!(
            tok.decode(&p2[p1_len + c1.len()..], false).unwrap(),
            "\n<|im_start|>user\n<tool_response>\n{\"sky\": \"clear\"}\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(seq.logprobs().unwrap()[p1_len..p1_len + c1.len()], lp1[..]);

        // Cut by the token limit: no end-of-turn sampled, rl-gym adds one (mask 0).
        let c2 = sampled("It is clear in Lyon, and");
        let p3 = turn(
            &mut seq,
            &template,
            Completion {
                ids: &c2,
                ..Completion::default()
            },
            vec![Message::user("And Paris?")],
        );
        assert_eq!(p3[p2.len() + c2.len()], 2);
        assert_eq!(seq.mask()[p2.len() + c2.len()], 0);
        assert_eq!(seq.logprobs(), None, "a completion came without them");

        // llama.cpp: stopped on the end-of-turn and left it out; declared, it is sampled.
        let c3 = sampled("Paris is clear too.");
        let p4 = turn(
            &mut seq,
            &template,
            Completion {
                ids: &c3,
                logprobs: None,
                end_of_turn_omitted: true,
            },
            vec![Message::user("Thanks.")],
        );
        assert_eq!(p4[p3.len() + c3.len()], 2);
        assert_eq!(seq.mask()[p3.len() + c3.len()], 1);

        let sampled_count = seq.mask().iter().filter(|&&m| m == 1).count();
        assert_eq!(sampled_count, c1.len() + c2.len() + c3.len() + 1);
        assert_eq!(seq.ids().len(), seq.mask().len());
        let turns = seq.turns();
        assert_eq!(turns.len(), 4);
        for pair in turns.windows(2) {
            let completion = pair[0].completion.clone().unwrap();
            assert_eq!(pair[0].prompt.end, completion.start);
            assert_eq!(completion.end, pair[1].prompt.start);
        }
        assert_eq!(turns[3].prompt.end, seq.ids().len());
        assert_eq!(turns[3].completion, None);
    }

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
        ids: Vec<u32>,
    }

    /// When the model writes exactly what the template renders for its turns, the
    /// sequence is transformers' tokenization of the whole conversation: the new ids are
    /// cut at the right place.
    #[test]
    fn a_model_that_writes_what_the_template_renders_gives_transformers_ids() {
        let tok = smollm2();
        let golden: Golden = serde_json::from_str(
            &std::fs::read_to_string(smollm2_dir().join("golden.json")).unwrap(),
        )
        .unwrap();
        for case in golden
            .cases
            .iter()
            .filter(|c| c.name == "tool_calls_and_results" && c.add_generation_prompt)
        {
            let template = match case.template.as_str() {
                "smollm2" => smollm2_template(),
                _ => hermes_template(),
            };
            let tools = case.tools.clone().unwrap_or_default();
            for end_of_turn_sampled in [true, false] {
                let messages = &case.messages;
                let mut seq = TokenSequence::start(
                    tok,
                    &template,
                    messages[..2].to_vec(),
                    tools.clone(),
                    now(),
                )
                .unwrap();
                let mut at = 2;
                while at < messages.len() {
                    // The assistant turn as the template renders it, up to its end-of-turn.
                    let options = RenderOptions {
                        add_generation_prompt: false,
                        now: Some(now()),
                    };
                    let with = template.render(&messages[..=at], &tools, options).unwrap();
                    let prompt_text = tok.decode(seq.prompt(), false).unwrap();
                    let turn_text = &with[prompt_text.len()..];
                    let end = turn_text.find("<|im_end|>").unwrap();
                    let text = if end_of_turn_sampled {
                        &turn_text[..end + "<|im_end|>".len()]
                    } else {
                        &turn_text[..end]
                    };
                    let ids = sampled(text);
                    seq.record_completion(
                        Completion {
                            ids: &ids,
                            ..Completion::default()
                        },
                        messages[at].clone(),
                    )
                    .unwrap();
                    let next = at
                        + 1
                        + messages[at + 1..]
                            .iter()
                            .take_while(|m| m.role != Role::Assistant)
                            .count();
                    seq.extend(tok, &template, messages[at + 1..next].to_vec())
                        .unwrap();
                    at = next;
                }
                assert_eq!(
                    seq.ids(),
                    &case.ids[..],
                    "{} (end-of-turn sampled: {end_of_turn_sampled})",
                    case.template
                );
            }
        }
    }

    #[test]
    fn a_template_that_rewrites_earlier_text_is_drift() {
        let tok = smollm2();
        let template = ChatTemplate::new(
            "<|im_start|>system\n{{ messages | length }} messages<|im_end|>\n{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
            tok.special_tokens(),
        )
        .unwrap();
        let mut seq =
            TokenSequence::start(tok, &template, vec![Message::user("a")], vec![], now()).unwrap();
        let ids = sampled("b<|im_end|>");
        seq.record_completion(
            Completion {
                ids: &ids,
                ..Completion::default()
            },
            Message::assistant(Some("b".into()), vec![]),
        )
        .unwrap();
        let err = seq
            .extend(tok, &template, vec![Message::user("c")])
            .unwrap_err();
        match err {
            SequenceError::Drift { at, before, after } => {
                assert_eq!(at, "<|im_start|>system\n".len());
                assert!(
                    before.starts_with('2') && after.starts_with('3'),
                    "{before} {after}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn turns_come_in_order_and_mismatched_logprobs_are_refused() {
        let tok = smollm2();
        let template = smollm2_template();
        let mut seq =
            TokenSequence::start(tok, &template, vec![Message::user("hi")], vec![], now()).unwrap();
        assert!(matches!(
            seq.extend(tok, &template, vec![Message::user("again")]),
            Err(SequenceError::AwaitingCompletion)
        ));
        let ids = sampled("Hello!<|im_end|>");
        assert!(matches!(
            seq.record_completion(
                Completion {
                    ids: &ids,
                    logprobs: Some(&[0.0]),
                    ..Completion::default()
                },
                Message::assistant(Some("Hello!".into()), vec![]),
            ),
            Err(SequenceError::LogprobsMismatch {
                ids: 3,
                logprobs: 1
            })
        ));
        assert!(matches!(
            seq.record_completion(
                Completion {
                    ids: &ids,
                    ..Completion::default()
                },
                Message::user("not the model"),
            ),
            Err(SequenceError::NotAssistant)
        ));
        let done = Completion {
            ids: &ids,
            ..Completion::default()
        };
        let hello = Message::assistant(Some("Hello!".into()), vec![]);
        seq.record_completion(done, hello.clone()).unwrap();
        assert!(matches!(
            seq.record_completion(done, hello),
            Err(SequenceError::AwaitingMessages)
        ));
        assert_eq!(seq.last_completion_text(tok).unwrap(), "Hello!");
    }

    #[test]
    fn the_end_of_turn_must_be_a_special_token() {
        let tok = smollm2();
        let template = smollm2_template();
        let seq =
            TokenSequence::start(tok, &template, vec![Message::user("hi")], vec![], now()).unwrap();
        // "Ċ" is the byte-level token of "\n": an ordinary token.
        let err = seq.with_end_of_turn(tok, Some("Ċ")).unwrap_err();
        assert!(
            matches!(err, SequenceError::EndOfTurnNotSpecial(ref t) if t == "Ċ"),
            "{err}"
        );
    }
}
