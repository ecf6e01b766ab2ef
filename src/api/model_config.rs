//! A ModelConfig as a launch, a fork and `POST /test-model-config` take it: the body's
//! type, and the checks across its fields (provider, key, endpoint, token settings).

use deserr::Deserr;
use serde_json::Value;

use super::body::{read, BodyErrors, Required};
use super::validate::Checker;
use crate::domain::events::{
    ModelSettings, TokenSettings, DEFAULT_CONTEXT_STRIDE, DEFAULT_MAX_STEPS, DEFAULT_TEMPERATURE,
    PROVIDERS,
};
use crate::domain::secret::ApiKey;
use crate::error::ApiError;
use crate::llm::completions;
use crate::llm::tokens::ToolCallParser;
use crate::llm::{builtin, provider_available, provider_needs_key, supports_logprobs};

/// A ModelConfig as a launch (or `POST /test-model-config`) takes it.
#[derive(Deserr, utoipa::ToSchema)]
#[deserr(error = BodyErrors)]
pub struct ModelConfigBody {
    #[deserr(default)]
    #[schema(value_type = String)]
    pub model: Required<String>,
    /// `custom` (default), `openai`, `anthropic`, `azure-openai`, `bedrock`,
    /// `vertex-ai` or `builtin`.
    #[deserr(default)]
    pub provider: Option<String>,
    /// Required by the providers that need one; never echoed or logged.
    #[deserr(default)]
    pub api_key: Option<String>,
    #[deserr(default)]
    pub base_url: Option<String>,
    /// 0–2 (default 0.7).
    #[deserr(default)]
    pub temperature: Option<f64>,
    /// Model turns, 1–10,000 (default 30).
    #[deserr(default)]
    #[schema(value_type = Option<u32>)]
    pub max_steps: Option<i64>,
    #[deserr(default)]
    pub system_prompt: Option<String>,
    /// Point the agent at another environment's tool servers.
    #[deserr(default)]
    pub tool_server_url: Option<String>,
    #[deserr(default)]
    pub log_prob: Option<bool>,
    #[deserr(default)]
    #[schema(value_type = Option<u32>)]
    pub summarize_every_n_turns: Option<i64>,
    #[deserr(default)]
    #[schema(value_type = Option<u32>)]
    pub context_stride: Option<i64>,
    /// Record each turn's prompt and completion token ids, log-probabilities and finish
    /// reason (custom, openai, azure-openai; the server must return ids, as vLLM's
    /// `return_token_ids` does).
    #[deserr(default)]
    pub return_tokens: Option<bool>,
    /// rl-gym owns the token sequence: rendered with `tokenizer`'s chat template and sent
    /// as ids to the server's `/v1/completions`; needs `tokenizer` and `tool_call_parser`.
    #[deserr(default)]
    pub token_in: Option<bool>,
    /// A directory on the server with tokenizer.json, tokenizer_config.json and the chat
    /// template (token_in).
    #[deserr(default)]
    pub tokenizer: Option<String>,
    /// `hermes` or `llama3_json` (token_in).
    #[deserr(default)]
    pub tool_call_parser: Option<String>,
    /// The trainer's weights version (free text), recorded with every turn.
    #[deserr(default)]
    pub policy_version: Option<String>,
}

/// An `http(s)` URL with a host and no credentials, parsed as it will be called.
fn check_url(c: &mut Checker, prefix: &[&str], field: &str, url: &str) {
    if let Err(msg) = crate::net::parse_http_url(url) {
        c.push(prefix, field, msg, "url_parsing");
    }
}

impl ModelConfigBody {
    /// The settings and key, or `None` with every problem under `prefix` named.
    pub fn check(
        self,
        c: &mut Checker,
        prefix: &[&str],
    ) -> Option<(ModelSettings, Option<ApiKey>)> {
        let model = c.required(prefix, "model", self.model.0);
        let provider = self.provider.unwrap_or_else(|| "custom".to_string());
        let known = PROVIDERS.contains(&provider.as_str());
        if !known {
            c.push(
                prefix,
                "provider",
                format!("Input should be one of {}", PROVIDERS.join(", ")),
                "enum",
            );
        } else if !provider_available(&provider) {
            c.push(
                prefix,
                "provider",
                format!("Provider `{provider}` is not available in this build yet"),
                "value_error",
            );
        }
        let api_key = self.api_key.filter(|k| !k.is_empty());
        if api_key.is_none() && known && provider_needs_key(&provider) {
            c.push(
                prefix,
                "api_key",
                format!("An api_key is required for provider `{provider}`"),
                "missing",
            );
        }
        if provider == "builtin" {
            if let Some(model) = &model {
                if !builtin::MODELS.contains(&model.as_str()) {
                    c.push(
                        prefix,
                        "model",
                        format!("The builtin provider serves {}", builtin::MODELS.join(", ")),
                        "enum",
                    );
                }
            }
        }
        let base_url = self.base_url;
        if base_url.is_none() && matches!(provider.as_str(), "custom" | "azure-openai") {
            c.push(
                prefix,
                "base_url",
                format!("A base_url is required for provider `{provider}`"),
                "missing",
            );
        }
        if let Some(url) = &base_url {
            check_url(c, prefix, "base_url", url);
        }
        let temperature = self
            .temperature
            .and_then(|t| c.in_range(prefix, "temperature", t, 0.0, 2.0))
            .unwrap_or(DEFAULT_TEMPERATURE);
        let max_steps = self
            .max_steps
            .and_then(|n| c.in_range(prefix, "max_steps", n, 1, 10_000))
            .map_or(DEFAULT_MAX_STEPS, |n| n as u32);
        if let Some(url) = &self.tool_server_url {
            check_url(c, prefix, "tool_server_url", url);
        }
        let log_prob = self.log_prob.unwrap_or(false);
        if log_prob && known && !supports_logprobs(&provider) {
            c.push(
                prefix,
                "log_prob",
                format!("Provider `{provider}` cannot return token log-probabilities"),
                "value_error",
            );
        }
        let summarize = self
            .summarize_every_n_turns
            .and_then(|n| c.in_range(prefix, "summarize_every_n_turns", n, 0, 10_000))
            .unwrap_or(0);
        let context_stride = self
            .context_stride
            .and_then(|n| c.in_range(prefix, "context_stride", n, 1, 10_000))
            .map_or(DEFAULT_CONTEXT_STRIDE, |n| n as u32);
        let tokens = TokenSettings {
            return_tokens: self.return_tokens.unwrap_or(false),
            token_in: self.token_in.unwrap_or(false),
            tokenizer: self.tokenizer,
            tool_call_parser: self.tool_call_parser,
            policy_version: self.policy_version,
        };
        check_tokens(c, prefix, &tokens, &provider, summarize);
        if c.names(prefix) {
            return None;
        }
        Some((
            ModelSettings {
                model: model?,
                provider,
                base_url,
                temperature,
                max_steps,
                system_prompt: self.system_prompt,
                tool_server_url: self.tool_server_url,
                log_prob,
                summarize_every_n_turns: summarize as u32,
                context_stride,
                has_api_key: api_key.is_some(),
                // None when none is given, so that a run without them records exactly
                // what it did before they existed (issue 23).
                tokens: (tokens != TokenSettings::default()).then_some(tokens),
            },
            api_key.map(ApiKey::new),
        ))
    }
}

/// The token-exact fields (issue 23): what the provider and the other settings allow.
fn check_tokens(
    c: &mut Checker,
    prefix: &[&str],
    tokens: &TokenSettings,
    provider: &str,
    summarize: i64,
) {
    let known = PROVIDERS.contains(&provider);
    for (on, field) in [
        (tokens.return_tokens, "return_tokens"),
        (tokens.token_in, "token_in"),
    ] {
        if on && known && !completions::supports_tokens(provider) {
            c.push(
                prefix,
                field,
                format!("Provider `{provider}` cannot return or take token ids (use custom, openai or azure-openai with a server that does, e.g. vLLM or SGLang)"),
                "value_error",
            );
        }
    }
    if (tokens.return_tokens || tokens.token_in) && summarize > 0 {
        c.push(
            prefix,
            "summarize_every_n_turns",
            "Summaries rewrite the conversation, so they cannot be used with return_tokens or token_in",
            "value_error",
        );
    }
    if tokens.token_in {
        match &tokens.tokenizer {
            None => c.push(
                prefix,
                "tokenizer",
                "token_in needs a tokenizer directory",
                "missing",
            ),
            Some(dir) => {
                if let Some(problem) = completions::tokenizer_dir_problem(dir) {
                    c.push(prefix, "tokenizer", problem, "value_error");
                }
            }
        }
        match &tokens.tool_call_parser {
            None => c.push(
                prefix,
                "tool_call_parser",
                "token_in needs a tool_call_parser (hermes or llama3_json)",
                "missing",
            ),
            Some(name) => {
                if let Err(e) = name.parse::<ToolCallParser>() {
                    c.push(prefix, "tool_call_parser", e.to_string(), "enum");
                }
            }
        }
    } else {
        for (given, field) in [
            (&tokens.tokenizer, "tokenizer"),
            (&tokens.tool_call_parser, "tool_call_parser"),
        ] {
            if given.is_some() {
                c.push(
                    prefix,
                    field,
                    format!("{field} is only used with token_in"),
                    "value_error",
                );
            }
        }
    }
}

/// A ModelConfig on its own (`POST /test-model-config`), checked as in a launch.
pub fn parse_model_config(body: &Value) -> Result<(ModelSettings, Option<ApiKey>), ApiError> {
    let (body, mut c) = read::<ModelConfigBody>(body)?;
    let parsed = body.check(&mut c, &["body"]);
    c.finish()?;
    // `None` was reported as an error above.
    parsed.ok_or_else(|| ApiError::validation(vec![]))
}
