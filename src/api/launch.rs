//! Parsing a launch request (`POST /runs`) into a typed command: every field of the
//! seed's request, ModelConfig and TaskOverride, with their defaults and bounds.
//!
//! Over 600 lines: a launch body's checks, field by field, until one derived type
//! parses each body.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::validate::Checker;
use crate::config::secrets::RunKeys;
use crate::domain::budget::{Budget, PriceTable};
use crate::domain::events::{
    ContinuousSettings, ModelSettings, OnStale, TokenSettings, DEFAULT_CONTEXT_STRIDE,
    DEFAULT_MAX_STEPS, DEFAULT_TEMPERATURE, PROVIDERS,
};
use crate::domain::faults::{ToolFaults, MAX_LATENCY_MS};
use crate::domain::ids::valid_run_name;
use crate::domain::secret::ApiKey;
use crate::error::ApiError;
use crate::llm::completions;
use crate::llm::tokens::ToolCallParser;
use crate::llm::{builtin, provider_available, provider_needs_key, supports_logprobs};

pub const SOURCES: &[&str] = &["rl-gym", "task-editor", "datadog-synthetics"];
/// Upper bound on rollouts per run: a run is held in memory by its views.
pub const MAX_ROLLOUTS_PER_RUN: i64 = 100_000;
/// Names that `/runs/{name}` serves as endpoints, not runs.
const RESERVED_RUN_NAMES: &[&str] = &["compare"];

pub struct LaunchRequest {
    pub scenario_id: String,
    pub task_ids: Vec<String>,
    pub rollout_count: u32,
    pub max_parallel: Option<u32>,
    pub run_name: Option<String>,
    pub source: String,
    pub model: ModelSettings,
    pub keys: RunKeys,
    pub user_model: Option<ModelSettings>,
    /// The rubric judge (`judge_model_config`, an extension).
    pub judge_model: Option<ModelSettings>,
    pub task_overrides: BTreeMap<String, Value>,
    pub tool_faults: Option<ToolFaults>,
    pub budget: Option<Budget>,
    pub continuous: Option<ContinuousSettings>,
    /// The task-family instances each task runs (`[0]`: the tasks as written).
    pub instance_seeds: Vec<u64>,
}

/// `POST /runs`: the body `parse` reads (documented in the OpenAPI schema).
#[allow(dead_code)]
#[derive(utoipa::ToSchema)]
pub struct LaunchBody {
    pub scenario_id: String,
    /// At least one; every id a task of the scenario.
    pub task_ids: Vec<String>,
    /// Rollouts per task, 1–1,000 (default 1).
    pub rollout_count: Option<u32>,
    /// Rollouts of this run in their step loop at once (the server-wide cap still holds).
    pub max_parallel: Option<u32>,
    /// Becomes the run id: 1–128 letters, digits, '-', '_' or '.'.
    pub run_name: Option<String>,
    /// `rl-gym` (default), `task-editor` or `datadog-synthetics`.
    pub source: Option<String>,
    pub model_config: ModelConfigBody,
    /// The model that plays the simulated people (scripted replies without it).
    pub user_model_config: Option<ModelConfigBody>,
    /// The judge of tasks with a `rubric_markdown` (an extension).
    pub judge_model_config: Option<ModelConfigBody>,
    /// Per task id: `task_json`, `name`, `description`, `rubric_markdown`,
    /// `client_context`.
    #[schema(value_type = Option<Object>)]
    pub task_overrides: Option<Value>,
    /// Tool calls fail in band at this rate, deterministically for the seed, and each
    /// call takes `latency_ms` longer (an extension).
    pub tool_faults: Option<ToolFaults>,
    /// A spending cap (an extension): once spent, the run pauses until resumed.
    pub budget: Option<BudgetBody>,
    /// Keep drawing groups of `rollout_count` rollouts of one task (an extension,
    /// for online training; see `GET /runs/{run_id}/groups`).
    pub continuous: Option<ContinuousBody>,
    /// Instances of each task family to run, seeds 0..n, 1–1,000 (default 1: instance
    /// 0, the task as written); `rollout_count` rollouts of each form a group.
    pub instances_per_task: Option<u32>,
    /// Or exactly these instance seeds (at most 1,000).
    pub instance_seeds: Option<Vec<u64>>,
}

/// A continuous run's settings.
#[allow(dead_code)]
#[derive(utoipa::ToSchema)]
pub struct ContinuousBody {
    /// Stop after this many groups (default: until cancelled).
    pub max_groups: Option<u32>,
    /// No rollout starts while this many complete groups wait for an
    /// acknowledgement, 1–10,000 (default 8).
    pub max_unconsumed_groups: Option<u32>,
    /// A rollout whose first turn is more than this many policy versions behind the
    /// current one is stale (default: no bound).
    pub max_staleness: Option<u32>,
    /// `finish` (default: delivered marked stale) or `restart` (replaced by a fresh
    /// rollout of the same task and seed).
    pub on_stale: Option<String>,
    /// Draws the tasks and the rollouts' seeds (default: random).
    pub seed: Option<u64>,
}

/// A run's budget as a launch or a resume takes it: at least one of the two.
#[allow(dead_code)]
#[derive(utoipa::ToSchema)]
pub struct BudgetBody {
    /// Tokens (prompt + completion, of every model call of the run), at least 1.
    pub max_total_tokens: Option<u64>,
    /// US dollars, more than 0, at the prices of the config's price table (the run's
    /// provider and model must have one).
    pub max_cost_usd: Option<f64>,
}

/// `POST /runs/{run_id}/resume`: the body (optional).
#[allow(dead_code)]
#[derive(utoipa::ToSchema)]
pub struct ResumeBody {
    /// The new budget; without one the run goes on unlimited.
    pub budget: Option<BudgetBody>,
}

/// A ModelConfig as a launch (or `POST /test-model-config`) takes it.
#[allow(dead_code)]
#[derive(utoipa::ToSchema)]
pub struct ModelConfigBody {
    pub model: String,
    /// `custom` (default), `openai`, `anthropic`, `azure-openai`, `bedrock`,
    /// `vertex-ai` or `builtin`.
    pub provider: Option<String>,
    /// Required by the providers that need one; never echoed or logged.
    pub api_key: Option<String>,
    pub base_url: Option<String>,
    /// 0–2 (default 0.7).
    pub temperature: Option<f64>,
    /// Model turns, 1–10,000 (default 30).
    pub max_steps: Option<u32>,
    pub system_prompt: Option<String>,
    /// Point the agent at another environment's tool servers.
    pub tool_server_url: Option<String>,
    pub log_prob: Option<bool>,
    pub summarize_every_n_turns: Option<u32>,
    pub context_stride: Option<u32>,
    /// Record each turn's prompt and completion token ids, log-probabilities and finish
    /// reason (custom, openai, azure-openai; the server must return ids, as vLLM's
    /// `return_token_ids` does).
    pub return_tokens: Option<bool>,
    /// rl-gym owns the token sequence: rendered with `tokenizer`'s chat template and sent
    /// as ids to the server's `/v1/completions`; needs `tokenizer` and `tool_call_parser`.
    pub token_in: Option<bool>,
    /// A directory on the server with tokenizer.json, tokenizer_config.json and the chat
    /// template (token_in).
    pub tokenizer: Option<String>,
    /// `hermes` or `llama3_json` (token_in).
    pub tool_call_parser: Option<String>,
    /// The trainer's weights version (free text), recorded with every turn.
    pub policy_version: Option<String>,
}

const OVERRIDE_FIELDS: &[(&str, &str)] = &[
    ("task_json", "object"),
    ("name", "string"),
    ("description", "string"),
    ("rubric_markdown", "string"),
    ("client_context", "object"),
];

/// The body as an object, or the 422 saying it is not one.
pub(super) fn object(body: &Value) -> Result<&Map<String, Value>, ApiError> {
    body.as_object().ok_or_else(|| {
        let mut c = Checker::default();
        c.push(
            &[],
            "body",
            "Input should be a valid dictionary",
            "dict_type",
        );
        ApiError::validation(c.errors)
    })
}

/// The optional `budget` of `obj` (a launch or a resume body).
fn budget(c: &mut Checker, obj: &Map<String, Value>) -> Option<Budget> {
    let fields = c.opt_object(obj, &["body"], "budget")?;
    let prefix: &[&str] = &["body", "budget"];
    let before = c.errors.len();
    c.only_fields(fields, prefix, &["max_total_tokens", "max_cost_usd"]);
    let max_total_tokens = c.opt_int(fields, prefix, "max_total_tokens", 1, i64::MAX);
    let max_cost_usd = c.opt_number(fields, prefix, "max_cost_usd", 0.0, f64::MAX);
    if max_cost_usd == Some(0.0) {
        c.push(
            prefix,
            "max_cost_usd",
            "Input should be greater than 0",
            "greater_than",
        );
    }
    if c.errors.len() > before {
        return None;
    }
    if max_total_tokens.is_none() && max_cost_usd.is_none() {
        c.push(
            &["body"],
            "budget",
            "A budget needs max_total_tokens, max_cost_usd or both",
            "missing",
        );
        return None;
    }
    Some(Budget {
        max_total_tokens: max_total_tokens.map(|n| n as u64),
        max_cost_usd,
    })
}

/// A resume body: `{"budget": {...}}` or nothing (unlimited).
pub fn parse_resume(body: &Value) -> Result<Option<Budget>, ApiError> {
    if body.is_null() {
        return Ok(None);
    }
    let obj = object(body)?;
    let mut c = Checker::default();
    c.only_fields(obj, &["body"], &["budget"]);
    let parsed = budget(&mut c, obj);
    c.finish()?;
    Ok(parsed)
}

/// A cost cap needs a price for the run's model, or it could never be reached.
pub fn check_budget_price(
    budget: Option<&Budget>,
    priced: bool,
    model: &ModelSettings,
) -> Result<(), ApiError> {
    if budget.is_some_and(|b| b.max_cost_usd.is_some()) && !priced {
        let mut c = Checker::default();
        c.push(
            &["body", "budget"],
            "max_cost_usd",
            format!(
                "The price table has no price for provider `{}` model `{}`: a cost cap                  could not be measured (add it to `prices` in the config, or use                  max_total_tokens)",
                model.provider, model.model
            ),
            "value_error",
        );
        c.finish()?;
    }
    Ok(())
}

/// [`check_budget_price`] against the price table, for a launch.
pub fn check_launch_price(request: &LaunchRequest, prices: &PriceTable) -> Result<(), ApiError> {
    let priced = prices
        .get(&request.model.provider, &request.model.model)
        .is_some();
    check_budget_price(request.budget.as_ref(), priced, &request.model)
}

/// A ModelConfig on its own (`POST /test-model-config`), checked as in a launch.
pub fn parse_model_config(body: &Value) -> Result<(ModelSettings, Option<ApiKey>), ApiError> {
    let mut c = Checker::default();
    let parsed = model_config(&mut c, object(body)?, &["body"]);
    c.finish()?;
    // `None` was reported as an error above.
    parsed.ok_or_else(|| ApiError::validation(vec![]))
}

pub fn parse(body: &Value) -> Result<LaunchRequest, ApiError> {
    let mut c = Checker::default();
    let obj = object(body)?;
    let root: &[&str] = &["body"];
    let scenario_id = c.string(obj, root, "scenario_id");
    let task_ids = match obj.get("task_ids") {
        None | Some(Value::Null) => {
            c.push(root, "task_ids", "Field required", "missing");
            None
        }
        Some(Value::Array(items)) => {
            let ids: Option<Vec<String>> =
                items.iter().map(|v| v.as_str().map(String::from)).collect();
            match ids {
                None => {
                    c.push(
                        root,
                        "task_ids",
                        "Input should be a list of strings",
                        "list_type",
                    );
                    None
                }
                Some(ids) if ids.is_empty() => {
                    c.push(
                        root,
                        "task_ids",
                        "List should have at least 1 item after validation, not 0",
                        "too_short",
                    );
                    None
                }
                Some(ids) => Some(ids),
            }
        }
        Some(_) => {
            c.push(
                root,
                "task_ids",
                "Input should be a valid list",
                "list_type",
            );
            None
        }
    };
    let rollout_count = c
        .opt_int(obj, root, "rollout_count", 1, MAX_ROLLOUTS_PER_RUN)
        .unwrap_or(1);
    if let Some(ids) = &task_ids {
        if rollout_count.saturating_mul(ids.len() as i64) > MAX_ROLLOUTS_PER_RUN {
            c.push(
                root,
                "rollout_count",
                format!("A run may have at most {MAX_ROLLOUTS_PER_RUN} rollouts (task_ids × rollout_count)"),
                "less_than_equal",
            );
        }
    }
    let max_parallel = c.opt_int(obj, root, "max_parallel", 1, u32::MAX as i64);
    let run_name = c.opt_string(obj, root, "run_name");
    if let Some(name) = &run_name {
        if !valid_run_name(name) {
            c.push(
                root,
                "run_name",
                "Run name must be 1–128 characters of letters, digits, '-', '_' or '.', not only dots",
                "string_pattern_mismatch",
            );
        } else if RESERVED_RUN_NAMES.contains(&name.as_str()) {
            c.push(
                root,
                "run_name",
                format!("Run name '{name}' is reserved: /runs/{name} is another endpoint"),
                "value_error",
            );
        }
    }
    let source = c
        .opt_string(obj, root, "source")
        .unwrap_or_else(|| "rl-gym".to_string());
    if !SOURCES.contains(&source.as_str()) {
        c.push(
            root,
            "source",
            format!("Input should be one of {}", SOURCES.join(", ")),
            "enum",
        );
    }
    let model = match obj.get("model_config") {
        None | Some(Value::Null) => {
            c.push(root, "model_config", "Field required", "missing");
            None
        }
        Some(Value::Object(m)) => model_config(&mut c, m, &["body", "model_config"]),
        Some(_) => {
            c.push(
                root,
                "model_config",
                "Input should be a valid dictionary",
                "dict_type",
            );
            None
        }
    };
    let user_model = c
        .opt_object(obj, root, "user_model_config")
        .and_then(|m| model_config(&mut c, m, &["body", "user_model_config"]));
    let judge_model = c
        .opt_object(obj, root, "judge_model_config")
        .and_then(|m| model_config(&mut c, m, &["body", "judge_model_config"]));
    if judge_model
        .as_ref()
        .is_some_and(|(m, _)| m.provider == "builtin")
    {
        c.push(
            &["body", "judge_model_config"],
            "provider",
            "The builtin models cannot judge a rubric; name a provider's model",
            "value_error",
        );
    }
    let budget = budget(&mut c, obj);
    let continuous = c
        .opt_object(obj, root, "continuous")
        .and_then(|f| parse_continuous(&mut c, f));
    if continuous.is_some() && budget.is_some() {
        c.push(
            root,
            "budget",
            "A continuous run cannot have a budget yet: cap it with continuous.max_groups",
            "value_error",
        );
    }
    let instance_seeds = parse_instances(&mut c, obj);
    if let (Some(ids), Some(seeds)) = (&task_ids, &instance_seeds) {
        let total = (ids.len() as i64)
            .saturating_mul(seeds.len() as i64)
            .saturating_mul(rollout_count);
        if continuous.is_none() && total > MAX_ROLLOUTS_PER_RUN {
            c.push(
                root,
                "rollout_count",
                format!("A run may have at most {MAX_ROLLOUTS_PER_RUN} rollouts (task_ids × instances × rollout_count)"),
                "less_than_equal",
            );
        }
    }
    let task_overrides = parse_task_overrides(&mut c, obj, task_ids.as_deref());
    let tool_faults = c
        .opt_object(obj, root, "tool_faults")
        .and_then(|f| parse_tool_faults(&mut c, f));
    c.finish()?;
    // Every `None` below was reported as an error above.
    let (Some(scenario_id), Some(task_ids), Some((model, api_key))) =
        (scenario_id, task_ids, model)
    else {
        return Err(ApiError::validation(vec![]));
    };
    Ok(LaunchRequest {
        scenario_id,
        task_ids,
        rollout_count: rollout_count as u32,
        max_parallel: max_parallel.map(|n| n as u32),
        run_name,
        source,
        model,
        keys: RunKeys {
            model: api_key,
            user_model: user_model.as_ref().and_then(|(_, k)| k.clone()),
            judge_model: judge_model.as_ref().and_then(|(_, k)| k.clone()),
        },
        user_model: user_model.map(|(m, _)| m),
        judge_model: judge_model.map(|(m, _)| m),
        task_overrides,
        tool_faults,
        budget,
        continuous,
        instance_seeds: instance_seeds.unwrap_or_else(|| vec![0]),
    })
}

/// The most instances of each task one launch may run.
const MAX_INSTANCES: i64 = 1_000;

/// `instances_per_task` (seeds 0..n) or `instance_seeds`, not both; `None` when either
/// is wrong (reported) or neither is given.
fn parse_instances(c: &mut Checker, obj: &Map<String, Value>) -> Option<Vec<u64>> {
    let root: &[&str] = &["body"];
    let per_task = c.opt_int(obj, root, "instances_per_task", 1, MAX_INSTANCES);
    let explicit = match obj.get("instance_seeds") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => {
            let seeds: Option<Vec<u64>> = items.iter().map(Value::as_u64).collect();
            match seeds {
                Some(seeds) if !seeds.is_empty() && seeds.len() as i64 <= MAX_INSTANCES => {
                    Some(seeds)
                }
                _ => {
                    c.push(
                        root,
                        "instance_seeds",
                        format!(
                            "Input should be a list of 1–{MAX_INSTANCES} non-negative integers"
                        ),
                        "list_type",
                    );
                    return None;
                }
            }
        }
        Some(_) => {
            c.push(
                root,
                "instance_seeds",
                "Input should be a valid list",
                "list_type",
            );
            return None;
        }
    };
    match (per_task, explicit) {
        (Some(_), Some(_)) => {
            c.push(
                root,
                "instance_seeds",
                "Give instances_per_task or instance_seeds, not both",
                "value_error",
            );
            None
        }
        (Some(n), None) => Some((0..n as u64).collect()),
        (None, explicit) => explicit,
    }
}

/// The most complete groups a continuous run may hold for its consumers.
const MAX_UNCONSUMED_GROUPS: i64 = 10_000;

fn parse_continuous(c: &mut Checker, f: &Map<String, Value>) -> Option<ContinuousSettings> {
    let prefix: &[&str] = &["body", "continuous"];
    let before = c.errors.len();
    c.only_fields(
        f,
        prefix,
        &[
            "max_groups",
            "max_unconsumed_groups",
            "max_staleness",
            "on_stale",
            "seed",
        ],
    );
    let max_groups = c.opt_int(f, prefix, "max_groups", 1, u32::MAX as i64);
    let max_unconsumed = c
        .opt_int(f, prefix, "max_unconsumed_groups", 1, MAX_UNCONSUMED_GROUPS)
        .unwrap_or(8);
    let max_staleness = c.opt_int(f, prefix, "max_staleness", 0, u32::MAX as i64);
    let on_stale = match c.opt_string(f, prefix, "on_stale").as_deref() {
        None | Some("finish") => OnStale::Finish,
        Some("restart") => OnStale::Restart,
        Some(_) => {
            c.push(
                prefix,
                "on_stale",
                "Input should be 'finish' or 'restart'",
                "enum",
            );
            OnStale::Finish
        }
    };
    let seed = match f.get("seed") {
        None | Some(Value::Null) => Some(rand_seed()),
        Some(v) => match v.as_u64() {
            Some(seed) => Some(seed),
            None => {
                c.push(
                    prefix,
                    "seed",
                    "Input should be a non-negative integer",
                    "int_type",
                );
                None
            }
        },
    };
    if c.errors.len() > before {
        return None;
    }
    Some(ContinuousSettings {
        max_groups: max_groups.map(|n| n as u32),
        max_unconsumed_groups: max_unconsumed as u32,
        max_staleness: max_staleness.map(|n| n as u32),
        on_stale,
        seed: seed?,
    })
}

/// A seed nobody chose: the random bits of a fresh UUID.
fn rand_seed() -> u64 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    u64::from_be_bytes(bytes[..8].try_into().unwrap_or_default())
}

/// `task_overrides`: per task id (one of `task_ids` when known) an object of the
/// override fields, each of its type. Shared by launch and re-verify.
pub(super) fn parse_task_overrides(
    c: &mut Checker,
    obj: &Map<String, Value>,
    task_ids: Option<&[String]>,
) -> BTreeMap<String, Value> {
    let mut task_overrides = BTreeMap::new();
    if let Some(overrides) = c.opt_object(obj, &["body"], "task_overrides") {
        for (task_id, value) in overrides {
            let prefix: &[&str] = &["body", "task_overrides"];
            if let Some(ids) = task_ids {
                if !ids.contains(task_id) {
                    c.push(
                        prefix,
                        task_id,
                        "Override key is not one of task_ids",
                        "value_error",
                    );
                }
            }
            let Some(fields) = value.as_object() else {
                c.push(
                    prefix,
                    task_id,
                    "Input should be a valid dictionary",
                    "dict_type",
                );
                continue;
            };
            for (field, v) in fields {
                let loc_prefix = ["body", "task_overrides", task_id.as_str()];
                match OVERRIDE_FIELDS.iter().find(|(name, _)| name == field) {
                    None => c.push(
                        &loc_prefix,
                        field,
                        "Extra inputs are not permitted",
                        "extra_forbidden",
                    ),
                    Some((_, "object")) if !v.is_object() && !v.is_null() => c.push(
                        &loc_prefix,
                        field,
                        "Input should be a valid dictionary",
                        "dict_type",
                    ),
                    Some((_, "string")) if !v.is_string() && !v.is_null() => c.push(
                        &loc_prefix,
                        field,
                        "Input should be a valid string",
                        "string_type",
                    ),
                    Some(_) => {}
                }
            }
            task_overrides.insert(task_id.clone(), value.clone());
        }
    }
    task_overrides
}

fn parse_tool_faults(c: &mut Checker, f: &Map<String, Value>) -> Option<ToolFaults> {
    let prefix: &[&str] = &["body", "tool_faults"];
    let before = c.errors.len();
    c.only_fields(f, prefix, &["error_rate", "latency_ms", "seed"]);
    if f.get("error_rate").is_none_or(Value::is_null) {
        c.push(prefix, "error_rate", "Field required", "missing");
    }
    let error_rate = c.opt_number(f, prefix, "error_rate", 0.0, 1.0);
    let latency_ms = c.opt_int(f, prefix, "latency_ms", 0, MAX_LATENCY_MS as i64);
    let seed = match f.get("seed") {
        None | Some(Value::Null) => Some(0),
        Some(v) => {
            let seed = v.as_u64();
            if seed.is_none() {
                c.push(
                    prefix,
                    "seed",
                    "Input should be a non-negative integer",
                    "int_type",
                );
            }
            seed
        }
    };
    (c.errors.len() == before).then(|| ToolFaults {
        error_rate: error_rate.unwrap_or_default(),
        latency_ms: latency_ms.unwrap_or_default() as u64,
        seed: seed.unwrap_or_default(),
    })
}

/// An `http(s)` URL with a host and no credentials, parsed as it will be called.
fn check_url(c: &mut Checker, prefix: &[&str], field: &str, url: &str) {
    if let Err(msg) = crate::net::parse_http_url(url) {
        c.push(prefix, field, msg, "url_parsing");
    }
}

pub(super) fn model_config(
    c: &mut Checker,
    m: &Map<String, Value>,
    prefix: &[&str],
) -> Option<(ModelSettings, Option<ApiKey>)> {
    let before = c.errors.len();
    let model = c.string(m, prefix, "model");
    let provider = c
        .opt_string(m, prefix, "provider")
        .unwrap_or_else(|| "custom".to_string());
    if !PROVIDERS.contains(&provider.as_str()) {
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
    let api_key = c.opt_string(m, prefix, "api_key").filter(|k| !k.is_empty());
    if api_key.is_none() && PROVIDERS.contains(&provider.as_str()) && provider_needs_key(&provider)
    {
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
    let base_url = c.opt_string(m, prefix, "base_url");
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
    let temperature = c
        .opt_number(m, prefix, "temperature", 0.0, 2.0)
        .unwrap_or(DEFAULT_TEMPERATURE);
    let max_steps = c
        .opt_int(m, prefix, "max_steps", 1, 10_000)
        .map_or(DEFAULT_MAX_STEPS, |n| n as u32);
    let system_prompt = c.opt_string(m, prefix, "system_prompt");
    let tool_server_url = c.opt_string(m, prefix, "tool_server_url");
    if let Some(url) = &tool_server_url {
        check_url(c, prefix, "tool_server_url", url);
    }
    let log_prob = c.opt_bool(m, prefix, "log_prob").unwrap_or(false);
    if log_prob && PROVIDERS.contains(&provider.as_str()) && !supports_logprobs(&provider) {
        c.push(
            prefix,
            "log_prob",
            format!("Provider `{provider}` cannot return token log-probabilities"),
            "value_error",
        );
    }
    let summarize = c
        .opt_int(m, prefix, "summarize_every_n_turns", 0, 10_000)
        .unwrap_or(0);
    let context_stride = c
        .opt_int(m, prefix, "context_stride", 1, 10_000)
        .map_or(DEFAULT_CONTEXT_STRIDE, |n| n as u32);
    let tokens = token_settings(c, m, prefix, &provider, summarize);
    if c.errors.len() > before {
        return None;
    }
    Some((
        ModelSettings {
            model: model?,
            provider,
            base_url,
            temperature,
            max_steps,
            system_prompt,
            tool_server_url,
            log_prob,
            summarize_every_n_turns: summarize as u32,
            context_stride,
            has_api_key: api_key.is_some(),
            tokens,
        },
        api_key.map(ApiKey::new),
    ))
}

/// The token-exact fields of a ModelConfig (issue 23): `None` when none is given, so
/// that a run without them records exactly what it did before they existed.
fn token_settings(
    c: &mut Checker,
    m: &Map<String, Value>,
    prefix: &[&str],
    provider: &str,
    summarize: i64,
) -> Option<TokenSettings> {
    let return_tokens = c.opt_bool(m, prefix, "return_tokens").unwrap_or(false);
    let token_in = c.opt_bool(m, prefix, "token_in").unwrap_or(false);
    let tokenizer = c.opt_string(m, prefix, "tokenizer");
    let tool_call_parser = c.opt_string(m, prefix, "tool_call_parser");
    let policy_version = c.opt_string(m, prefix, "policy_version");
    let known = PROVIDERS.contains(&provider);
    for (on, field) in [(return_tokens, "return_tokens"), (token_in, "token_in")] {
        if on && known && !completions::supports_tokens(provider) {
            c.push(
                prefix,
                field,
                format!("Provider `{provider}` cannot return or take token ids (use custom, openai or azure-openai with a server that does, e.g. vLLM or SGLang)"),
                "value_error",
            );
        }
    }
    if (return_tokens || token_in) && summarize > 0 {
        c.push(
            prefix,
            "summarize_every_n_turns",
            "Summaries rewrite the conversation, so they cannot be used with return_tokens or token_in",
            "value_error",
        );
    }
    if token_in {
        match &tokenizer {
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
        match &tool_call_parser {
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
            (&tokenizer, "tokenizer"),
            (&tool_call_parser, "tool_call_parser"),
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
    let settings = TokenSettings {
        return_tokens,
        token_in,
        tokenizer,
        tool_call_parser,
        policy_version,
    };
    (settings != TokenSettings::default()).then_some(settings)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The documented body's property names, from its OpenAPI schema.
    fn properties<T: utoipa::PartialSchema>() -> Vec<(String, Value)> {
        let schema = serde_json::to_value(T::schema()).unwrap();
        schema["properties"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// A value of the wrong type for a property of this schema.
    fn wrong(schema: &Value) -> Value {
        let text = schema.to_string();
        if text.contains("\"string\"") {
            json!(12345)
        } else {
            json!("not the right type")
        }
    }

    fn base() -> Value {
        json!({"scenario_id": "hr", "task_ids": ["t"],
               "model_config": {"model": "oracle", "provider": "builtin"}})
    }

    fn named(result: Result<LaunchRequest, ApiError>, loc: &[&str]) -> bool {
        let Err(error) = result else { return false };
        let expected = json!(loc);
        error
            .detail
            .as_array()
            .is_some_and(|errors| errors.iter().any(|e| e["loc"] == expected))
    }

    #[test]
    fn the_parser_reads_every_field_the_schema_documents() {
        assert!(parse(&base()).is_ok());
        let top = properties::<LaunchBody>();
        assert!(top.len() >= 10);
        for (field, schema) in top {
            let mut body = base();
            body[&field] = wrong(&schema);
            assert!(named(parse(&body), &["body", &field]), "{field}");
        }
        for (field, schema) in properties::<BudgetBody>() {
            let mut body = base();
            body["budget"] = json!({ field.clone(): wrong(&schema) });
            assert!(
                named(parse(&body), &["body", "budget", &field]),
                "budget.{field}"
            );
        }
        for (field, schema) in properties::<ModelConfigBody>() {
            let mut body = base();
            body["model_config"][&field] = wrong(&schema);
            assert!(
                named(parse(&body), &["body", "model_config", &field]),
                "model_config.{field}"
            );
        }
    }

    #[test]
    fn a_budget_is_bounded_and_not_empty() {
        let with = |budget: Value| {
            let mut body = base();
            body["budget"] = budget;
            parse(&body)
        };
        let loc = ["body", "budget"];
        assert!(named(
            with(json!({"max_total_tokens": 0})),
            &["body", "budget", "max_total_tokens"]
        ));
        assert!(named(
            with(json!({"max_cost_usd": 0})),
            &["body", "budget", "max_cost_usd"]
        ));
        assert!(named(with(json!({})), &loc));
        assert!(named(
            with(json!({"max_tokens": 5})),
            &["body", "budget", "max_tokens"]
        ));
        let parsed = with(json!({"max_total_tokens": 250, "max_cost_usd": 0.5})).unwrap();
        assert_eq!(
            parsed.budget,
            Some(Budget {
                max_total_tokens: Some(250),
                max_cost_usd: Some(0.5)
            })
        );
        assert_eq!(parse_resume(&Value::Null).unwrap(), None);
        assert!(parse_resume(&json!({"budget": {"max_total_tokens": -1}})).is_err());
    }
}
