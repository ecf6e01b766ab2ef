//! Token-exact model turns (issue 23), for the OpenAI-compatible providers (`custom`,
//! `openai`, `azure-openai`) of a run with `return_tokens` or `token_in`:
//!
//! - **Token out** (`return_tokens`): the usual chat completion, asking for vLLM's
//!   `return_token_ids` and log-probabilities, and reading back the prompt ids
//!   (`prompt_token_ids`, top level on vLLM, per choice on SGLang, or SGLang's
//!   `sglext.input_ids`) and the sampled ids (`choices[].token_ids`, or
//!   `choices[].sglext.output_ids`). A server that returns no ids fails the turn
//!   naming the missing field: a rollout never silently records no tokens.
//! - **Token in** (`token_in`): rl-gym owns the rollout's [`TokenSequence`], rendered
//!   with the run's `tokenizer` directory and its chat template, and sends it as ids to
//!   `/completions` (`prompt: [ids]`, `return_token_ids`, `logprobs`). The sampled ids
//!   are kept verbatim, the tool calls are read from their text by the run's
//!   `tool_call_parser`, and a call that cannot be read becomes a call of
//!   [`MALFORMED_TOOL_CALL`], which the step loop answers in band with the reason.
//!
//! Each turn comes back as [`TurnTokens`]: the ids its prompt adds after the previous
//! turn's prompt and completion, and its completion. One client serves one rollout;
//! a resumed rollout gives it its recorded turns first ([`ModelClient::restore_turns`]),
//! and the token-in sequence is rebuilt from them and checked id for id.
//!
//! Over 600 lines: the token-exact request, its answer and the checks between them are
//! one wire exchange.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};

use super::openai::{self, Flavor};
use super::retry::{self, RetryPolicy};
use super::tokens::{ChatTemplate, ChatTokenizer, Completion, TokenSequence, ToolCallParser};
use super::{ModelClient, ModelError, ModelReply, ModelRequest};
use crate::domain::chat::{FunctionCall, Role, ToolCall};
use crate::domain::events::{ModelSettings, TokenSettings, TokenUsage, TurnTokens};
use crate::domain::secret::ApiKey;
use crate::domain::trace::{turn_tokens, TokenTrace};

/// The tool name of a call the model wrote but the parser could not read; its
/// `arguments` say why. The step loop answers it in band, so the agent can retry.
pub const MALFORMED_TOOL_CALL: &str = "malformed_tool_call";

/// The most tokens a token-in turn may sample. `/v1/completions` defaults to 16 on
/// vLLM, far too few for a turn with a tool call.
pub const MAX_COMPLETION_TOKENS: u32 = 2048;

/// Providers that speak the OpenAI wire and so can return or take token ids.
pub fn supports_tokens(provider: &str) -> bool {
    matches!(provider, "custom" | "openai" | "azure-openai")
}

/// A tokenizer directory loaded once per process and shared by every rollout of
/// every run that names it (loading `tokenizer.json` takes tens of milliseconds).
pub struct Loaded {
    pub tokenizer: ChatTokenizer,
    plain: ChatTemplate,
    with_tools: Option<ChatTemplate>,
}

impl Loaded {
    fn template(&self, tools: bool) -> &ChatTemplate {
        match (&self.with_tools, tools) {
            (Some(t), true) => t,
            _ => &self.plain,
        }
    }
}

static LOADED: LazyLock<Mutex<HashMap<String, Arc<Loaded>>>> = LazyLock::new(Default::default);

/// Loads (or returns the already loaded) tokenizer directory. Blocking: call it off
/// the async threads.
pub fn load_tokenizer(dir: &str) -> Result<Arc<Loaded>, String> {
    if let Some(loaded) = LOADED.lock().ok().and_then(|m| m.get(dir).cloned()) {
        return Ok(loaded);
    }
    let tokenizer = ChatTokenizer::from_dir(dir).map_err(|e| e.to_string())?;
    let compile = |source: &str| {
        ChatTemplate::new(source, tokenizer.special_tokens()).map_err(|e| e.to_string())
    };
    let plain_source = tokenizer
        .chat_template(false)
        .ok_or_else(|| format!("{dir} has no chat template (chat_template.jinja or tokenizer_config.json's chat_template)"))?
        .to_string();
    let plain = compile(&plain_source)?;
    let with_tools = match tokenizer.chat_template(true) {
        Some(source) if source != plain_source => Some(compile(source)?),
        _ => None,
    };
    let loaded = Arc::new(Loaded {
        tokenizer,
        plain,
        with_tools,
    });
    if let Ok(mut map) = LOADED.lock() {
        map.insert(dir.to_string(), loaded.clone());
    }
    Ok(loaded)
}

/// Whether `dir` looks like a tokenizer directory (checked at launch without loading
/// it: the load happens off the request thread, when the first rollout starts).
pub fn tokenizer_dir_problem(dir: &str) -> Option<String> {
    let path = Path::new(dir);
    if !path.is_dir() {
        return Some(format!("`{dir}` is not a directory on the server"));
    }
    if !path.join("tokenizer.json").is_file() {
        return Some(format!("`{dir}` holds no tokenizer.json"));
    }
    None
}

pub struct TokenClient {
    http: reqwest::Client,
    flavor: Flavor,
    base_url: String,
    api_key: Option<ApiKey>,
    retry: RetryPolicy,
    tokens: TokenSettings,
    /// Token in: the parser, checked at launch.
    parser: Option<ToolCallParser>,
    loaded: tokio::sync::OnceCell<Arc<Loaded>>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The previous turn's prompt and completion: what the next turn's prompt is
    /// stored against.
    before: Vec<u32>,
    /// Recorded turns of a resumed rollout, not yet rebuilt into `sequence`.
    restored: Vec<TurnTokens>,
    /// Token in: the rollout's sequence.
    sequence: Option<TokenSequence>,
}

impl TokenClient {
    pub fn new(
        http: reqwest::Client,
        settings: &ModelSettings,
        tokens: &TokenSettings,
        api_key: Option<ApiKey>,
        retry: RetryPolicy,
    ) -> Result<TokenClient, ModelError> {
        let provider = settings.provider.as_str();
        if !supports_tokens(provider) {
            return Err(ModelError::Unavailable(format!(
                "provider `{provider}` cannot return or take token ids"
            )));
        }
        let (flavor, base_url) = match (provider, &settings.base_url) {
            ("azure-openai", Some(url)) => (Flavor::Azure, url.clone()),
            (_, Some(url)) => (Flavor::OpenAi, url.clone()),
            ("openai", None) => (Flavor::OpenAi, openai::OPENAI_BASE_URL.to_string()),
            _ => {
                return Err(ModelError::Unavailable(format!(
                    "provider `{provider}` needs a base_url"
                )))
            }
        };
        let parser = match (tokens.token_in, &tokens.tool_call_parser) {
            (true, Some(name)) => Some(
                name.parse::<ToolCallParser>()
                    .map_err(|e| ModelError::Unavailable(e.to_string()))?,
            ),
            (true, None) => {
                return Err(ModelError::Unavailable(
                    "token_in needs a tool_call_parser".to_string(),
                ))
            }
            _ => None,
        };
        Ok(TokenClient {
            http,
            flavor,
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key,
            retry,
            tokens: tokens.clone(),
            parser,
            loaded: tokio::sync::OnceCell::new(),
            state: Mutex::new(State::default()),
        })
    }

    fn url(&self, model: &str, endpoint: &str) -> String {
        match self.flavor {
            Flavor::OpenAi => format!("{}/{endpoint}", self.base_url),
            Flavor::Azure => format!(
                "{}/openai/deployments/{model}/{endpoint}?api-version={}",
                self.base_url,
                openai::AZURE_API_VERSION
            ),
        }
    }

    async fn post(&self, url: &str, body: Vec<u8>) -> Result<bytes::Bytes, ModelError> {
        retry::send(&self.retry, || {
            let call = self
                .http
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            Ok(match (&self.api_key, self.flavor) {
                (Some(key), Flavor::OpenAi) => call.bearer_auth(key.expose()),
                (Some(key), Flavor::Azure) => call.header("api-key", key.expose()),
                (None, _) => call,
            })
        })
        .await
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>, ModelError> {
        self.state
            .lock()
            .map_err(|_| ModelError::Malformed("the token state was poisoned".to_string()))
    }

    /// Token out: a chat completion that also returns its ids.
    async fn chat(&self, request: ModelRequest<'_>) -> Result<ModelReply, ModelError> {
        let settings = ModelSettings {
            log_prob: true,
            ..request.settings.clone()
        };
        let asked = ModelRequest {
            messages: request.messages,
            tools: request.tools,
            settings: &settings,
        };
        let mut body = openai::encode(&asked)
            .map_err(|e| ModelError::Malformed(format!("the request could not be encoded: {e}")))?
            .to_vec();
        // The object is reopened before its closing brace to ask for the ids.
        body.pop();
        body.extend_from_slice(br#","return_token_ids":true}"#);
        let url = self.url(&settings.model, "chat/completions");
        let bytes = self.post(&url, body).await?;
        let mut reply = openai::decode_after(&bytes, request.messages)?;
        let answer: IdsAnswer = retry::parse(&bytes)?;
        let choice = answer.choices.into_iter().next().unwrap_or_default();
        let prompt = answer
            .prompt_token_ids
            .or(choice.prompt_token_ids)
            .or(answer.sglext.and_then(|s| s.input_ids))
            .ok_or_else(|| missing("prompt token ids (`prompt_token_ids`)"))?;
        let completion = choice
            .token_ids
            .or(choice.sglext.and_then(|s| s.output_ids))
            .ok_or_else(|| missing("completion token ids (`choices[].token_ids`)"))?;
        let logprobs = sampled_logprobs(choice.logprobs.as_ref(), completion.len())?;
        let mut state = self.lock()?;
        if !state.restored.is_empty() {
            state.before = rebuilt(&state.restored)?;
            state.restored.clear();
        }
        let tokens = turn_tokens(
            &state.before,
            &prompt,
            &completion,
            logprobs.as_deref(),
            choice.finish_reason,
            self.tokens.policy_version.clone(),
        )
        .map_err(|e| ModelError::Malformed(e.to_string()))?;
        state.before = prompt;
        state.before.extend_from_slice(&completion);
        if !request.settings.log_prob {
            // Asked only for the ids: the turn records no JSON log-probabilities.
            reply.logprobs = None;
        }
        reply.tokens = Some(Box::new(tokens));
        Ok(reply)
    }

    /// Token in: the sequence's ids to `/completions`.
    async fn completion(&self, request: ModelRequest<'_>) -> Result<ModelReply, ModelError> {
        let dir = self
            .tokens
            .tokenizer
            .clone()
            .ok_or_else(|| ModelError::Unavailable("token_in needs a tokenizer".to_string()))?;
        let loaded = self
            .loaded
            .get_or_try_init(|| async {
                tokio::task::spawn_blocking(move || load_tokenizer(&dir))
                    .await
                    .map_err(|e| ModelError::Unavailable(e.to_string()))?
                    .map_err(|e| ModelError::Unavailable(format!("tokenizer: {e}")))
            })
            .await?
            .clone();
        let parser = self
            .parser
            .ok_or_else(|| ModelError::Unavailable("token_in needs a tool_call_parser".into()))?;
        let (prompt, eot) = {
            let mut state = self.lock()?;
            let prompt = next_prompt(&mut state, &loaded, &request)?;
            let eot = state
                .sequence
                .as_ref()
                .map(|s| s.end_of_turn().id)
                .unwrap_or_default();
            (prompt, eot)
        };
        let settings = request.settings;
        let body = json!({
            "model": settings.model,
            "prompt": prompt,
            "temperature": settings.temperature,
            "max_tokens": MAX_COMPLETION_TOKENS,
            "logprobs": 1,
            "return_token_ids": true,
            "stop_token_ids": [eot],
            "skip_special_tokens": false,
        });
        let url = self.url(&settings.model, "completions");
        let body = serde_json::to_vec(&body)
            .map_err(|e| ModelError::Malformed(format!("the request could not be encoded: {e}")))?;
        let bytes = self.post(&url, body).await?;
        let answer: IdsAnswer = retry::parse(&bytes)?;
        let usage = answer.usage.clone();
        let choice =
            answer.choices.into_iter().next().ok_or_else(|| {
                ModelError::Malformed("the completion has no choices".to_string())
            })?;
        let completion = choice
            .token_ids
            .or(choice.sglext.and_then(|s| s.output_ids))
            .ok_or_else(|| missing("completion token ids (`choices[].token_ids`)"))?;
        let logprobs = sampled_logprobs(choice.logprobs.as_ref(), completion.len())?;

        let mut state = self.lock()?;
        let sequence = state
            .sequence
            .as_mut()
            .ok_or_else(|| ModelError::Malformed("no token sequence".to_string()))?;
        // The text the parser reads is the sampled ids decoded, never the server's
        // `text`: that is what the model said, special tokens included.
        let mut ids: &[u32] = &completion;
        if ids.last() == Some(&sequence.end_of_turn().id) {
            ids = &ids[..ids.len() - 1];
        }
        let text = loaded
            .tokenizer
            .decode(ids, false)
            .map_err(|e| ModelError::Malformed(e.to_string()))?;
        let first_call = request
            .messages
            .iter()
            .map(|m| m.tool_calls.len())
            .sum::<usize>()
            + 1;
        let parsed = parser.parse(&text, first_call);
        let mut message = parsed.message();
        let first_bad = first_call + message.tool_calls.len();
        for (next, bad) in (first_bad..).zip(&parsed.malformed) {
            message.tool_calls.push(ToolCall {
                id: format!("call_{next}"),
                kind: "function".to_string(),
                function: FunctionCall {
                    name: MALFORMED_TOOL_CALL.to_string(),
                    arguments: format!(
                        "your tool call could not be read ({}); write each call as {}: {}",
                        bad.reason,
                        match parser {
                            ToolCallParser::Hermes => "<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>",
                            ToolCallParser::Llama3Json => "{\"name\": <function-name>, \"parameters\": <args-json-object>}",
                        },
                        bad.raw
                    ),
                },
            });
        }
        let prompt = sequence.prompt().to_vec();
        sequence
            .record_completion(
                Completion {
                    ids: &completion,
                    logprobs: logprobs.as_deref(),
                    end_of_turn_omitted: false,
                },
                for_template(&message),
            )
            .map_err(|e| ModelError::Malformed(e.to_string()))?;
        let tokens = turn_tokens(
            &state.before,
            &prompt,
            &completion,
            logprobs.as_deref(),
            choice.finish_reason,
            self.tokens.policy_version.clone(),
        )
        .map_err(|e| ModelError::Malformed(e.to_string()))?;
        state.before = prompt;
        state.before.extend_from_slice(&completion);
        let usage = usage.map(|u| u.into()).unwrap_or(TokenUsage {
            prompt_tokens: state.before.len() as u64 - completion.len() as u64,
            completion_tokens: completion.len() as u64,
            total_tokens: state.before.len() as u64,
        });
        Ok(ModelReply {
            message,
            usage: Some(usage),
            logprobs: None,
            tokens: Some(Box::new(tokens)),
        })
    }
}

/// The prompt of the turn being taken: the sequence extended by the messages that
/// came after its last completion, or (first turn, or a resumed rollout) built from
/// the conversation and the recorded turns.
fn next_prompt(
    state: &mut State,
    loaded: &Loaded,
    request: &ModelRequest<'_>,
) -> Result<Vec<u32>, ModelError> {
    let fail = |e: &dyn std::fmt::Display| ModelError::Malformed(format!("token_in: {e}"));
    let template = loaded.template(!request.tools.is_empty());
    let tokenizer = &loaded.tokenizer;
    if let Some(sequence) = state.sequence.as_mut() {
        let known = sequence.messages().len();
        let new = request.messages.get(known..).unwrap_or_default().to_vec();
        if request.messages.len() < known {
            return Err(fail(&"the conversation is shorter than the token sequence"));
        }
        return sequence
            .extend(tokenizer, template, new)
            .map(<[u32]>::to_vec)
            .map_err(|e| fail(&e));
    }
    // Split the conversation at its assistant turns: the first prompt's messages,
    // then each turn's reply and the messages after it.
    let messages = request.messages;
    let first = messages
        .iter()
        .position(|m| m.role == Role::Assistant)
        .unwrap_or(messages.len());
    let tools = request.tools.to_vec();
    let mut sequence = TokenSequence::start(
        tokenizer,
        template,
        messages[..first].to_vec(),
        tools,
        chrono::Utc::now().naive_utc(),
    )
    .map_err(|e| fail(&e))?;
    let restored = std::mem::take(&mut state.restored);
    let replies = messages
        .iter()
        .filter(|m| m.role == Role::Assistant)
        .count();
    if replies != restored.len() {
        // Turns whose ids were never recorded (a run launched without token_in and
        // forked with it) cannot be sent as the ids the model saw.
        return Err(fail(&format!(
            "the conversation has {replies} model turns but {} recorded token turns",
            restored.len()
        )));
    }
    let trace = TokenTrace::rebuild(&restored).map_err(|e| fail(&e))?;
    let mut at = first;
    for (turn, recorded) in restored.iter().enumerate() {
        let expected = trace.prompt_of(turn).unwrap_or_default();
        if sequence.prompt() != expected {
            return Err(fail(&format!(
                "resuming turn {}: the rebuilt prompt ({} ids) differs from the recorded one ({} ids); was the tokenizer changed?",
                turn + 1,
                sequence.prompt().len(),
                expected.len()
            )));
        }
        let Some(reply) = messages.get(at).filter(|m| m.role == Role::Assistant) else {
            return Err(fail(
                &"the conversation has fewer replies than recorded turns",
            ));
        };
        let (ids, logprobs) = recorded.completion.decode().map_err(|e| fail(&e))?;
        sequence
            .record_completion(
                Completion {
                    ids: &ids,
                    logprobs: logprobs.as_deref(),
                    end_of_turn_omitted: false,
                },
                for_template(reply),
            )
            .map_err(|e| fail(&e))?;
        let end = messages[at + 1..]
            .iter()
            .position(|m| m.role == Role::Assistant)
            .map_or(messages.len(), |i| at + 1 + i);
        sequence
            .extend(tokenizer, template, messages[at + 1..end].to_vec())
            .map_err(|e| fail(&e))?;
        at = end;
    }
    state.before = trace.ids;
    let prompt = sequence.prompt().to_vec();
    state.sequence = Some(sequence);
    Ok(prompt)
}

/// The assistant message as the chat template is given it: a turn that only called
/// tools has `""` for content, not none, since many templates (SmolLM2's, Llama 2's)
/// add `message['content']` to a string. Only what the template writes after the
/// turn's end-of-turn becomes ids; the turn itself is the sampled ids, whatever this is.
fn for_template(message: &crate::domain::chat::Message) -> crate::domain::chat::Message {
    let mut message = message.clone();
    message.content.get_or_insert_with(String::new);
    message
}

/// The last prompt and completion of recorded turns.
fn rebuilt(turns: &[TurnTokens]) -> Result<Vec<u32>, ModelError> {
    TokenTrace::rebuild(turns)
        .map(|t| t.ids)
        .map_err(|e| ModelError::Malformed(format!("recorded tokens: {e}")))
}

fn missing(what: &str) -> ModelError {
    ModelError::Malformed(format!(
        "return_tokens: the server returned no {what}; it needs vLLM's `return_token_ids` \
         (vLLM 0.10.2 or later) or SGLang's; llama-cpp-python's server cannot return them"
    ))
}

/// The log-probability of each sampled id, from either logprobs shape: chat
/// (`{"content": [{"logprob"}]}`) or completions (`{"token_logprobs": [...]}`). None
/// when the server gave none; an error when it gave a different count.
fn sampled_logprobs(logprobs: Option<&Value>, ids: usize) -> Result<Option<Vec<f32>>, ModelError> {
    let Some(logprobs) = logprobs.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let values: Vec<f32> = if let Some(content) = logprobs.get("content").and_then(Value::as_array)
    {
        content
            .iter()
            .map(|c| c.get("logprob").and_then(Value::as_f64).unwrap_or(0.0) as f32)
            .collect()
    } else if let Some(list) = logprobs.get("token_logprobs").and_then(Value::as_array) {
        list.iter()
            .map(|v| v.as_f64().unwrap_or(0.0) as f32)
            .collect()
    } else {
        return Ok(None);
    };
    if values.len() != ids {
        return Err(ModelError::Malformed(format!(
            "the server returned {ids} completion token ids but {} log-probabilities",
            values.len()
        )));
    }
    Ok(Some(values))
}

#[derive(Deserialize, Default)]
struct IdsAnswer {
    #[serde(default)]
    prompt_token_ids: Option<Vec<u32>>,
    #[serde(default)]
    choices: Vec<IdsChoice>,
    #[serde(default)]
    sglext: Option<Sglext>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize, Default)]
struct IdsChoice {
    #[serde(default)]
    token_ids: Option<Vec<u32>>,
    #[serde(default)]
    prompt_token_ids: Option<Vec<u32>>,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    logprobs: Option<Value>,
    #[serde(default)]
    sglext: Option<Sglext>,
}

#[derive(Deserialize, Default)]
struct Sglext {
    #[serde(default)]
    input_ids: Option<Vec<u32>>,
    #[serde(default)]
    output_ids: Option<Vec<u32>>,
}

#[derive(Deserialize, Clone)]
struct Usage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

impl From<Usage> for TokenUsage {
    fn from(u: Usage) -> TokenUsage {
        TokenUsage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.prompt_tokens + u.completion_tokens,
        }
    }
}

#[async_trait]
impl ModelClient for TokenClient {
    async fn complete(&self, request: ModelRequest<'_>) -> Result<ModelReply, ModelError> {
        if self.tokens.token_in {
            self.completion(request).await
        } else {
            self.chat(request).await
        }
    }

    fn restore_turns(&self, turns: &[TurnTokens]) -> Result<(), ModelError> {
        let mut state = self.lock()?;
        state.restored = turns.to_vec();
        state.sequence = None;
        state.before.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_logprob_shapes_give_one_value_per_sampled_id() {
        let chat =
            json!({"content": [{"token": "a", "logprob": -0.5}, {"token": "b", "logprob": -1.0}]});
        assert_eq!(
            sampled_logprobs(Some(&chat), 2).unwrap(),
            Some(vec![-0.5, -1.0])
        );
        let legacy = json!({"tokens": ["a"], "token_logprobs": [-0.25]});
        assert_eq!(
            sampled_logprobs(Some(&legacy), 1).unwrap(),
            Some(vec![-0.25])
        );
        assert!(sampled_logprobs(Some(&legacy), 2).is_err());
        assert_eq!(sampled_logprobs(None, 2).unwrap(), None);
    }

    #[test]
    fn a_missing_id_field_is_named_in_the_error() {
        let e = missing("completion token ids (`choices[].token_ids`)").to_string();
        assert!(
            e.contains("choices[].token_ids") && e.contains("return_token_ids"),
            "{e}"
        );
    }
}
