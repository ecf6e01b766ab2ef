//! A launch request (`POST /runs`): its body's types, and the checks no type expresses
//! (bounds, task ids, budgets, instances) that make it a typed command.

use std::collections::BTreeMap;

use deserr::Deserr;
use serde_json::Value;

use super::body::{read, strings, BodyErrors, Invalid, Required};
use super::budget::{check_budget_price, BudgetBody};
use super::model_config::ModelConfigBody;
use super::task_overrides::{TaskOverrideBody, TaskOverrides};
use super::validate::Checker;
use crate::config::secrets::RunKeys;
use crate::domain::budget::{Budget, PriceTable};
use crate::domain::events::{ContinuousSettings, ModelSettings, OnStale};
use crate::domain::faults::{ToolFaults, MAX_LATENCY_MS};
use crate::domain::ids::valid_run_name;
use crate::error::ApiError;

pub const SOURCES: &[&str] = &["rl-gym", "task-editor", "datadog-synthetics"];
/// Upper bound on rollouts per run: a run is held in memory by its views.
pub const MAX_ROLLOUTS_PER_RUN: i64 = 100_000;
/// Names that `/runs/{name}` serves as endpoints, not runs.
const RESERVED_RUN_NAMES: &[&str] = &["compare"];
/// The most instances of each task one launch may run.
const MAX_INSTANCES: i64 = 1_000;
/// The most complete groups a continuous run may hold for its consumers.
const MAX_UNCONSUMED_GROUPS: i64 = 10_000;

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

/// `POST /runs`.
#[derive(Deserr, utoipa::ToSchema)]
#[deserr(error = BodyErrors)]
pub struct LaunchBody {
    #[deserr(default)]
    #[schema(value_type = String)]
    pub scenario_id: Required<String>,
    /// At least one; every id a task of the scenario.
    #[deserr(default, try_from(Option<Vec<Value>>) = strings -> Invalid)]
    #[schema(value_type = Vec<String>)]
    pub task_ids: Required<Vec<String>>,
    /// Rollouts per task, 1–1,000 (default 1).
    #[deserr(default)]
    #[schema(value_type = Option<u32>)]
    pub rollout_count: Option<i64>,
    /// Rollouts of this run in their step loop at once (the server-wide cap still holds).
    #[deserr(default)]
    #[schema(value_type = Option<u32>)]
    pub max_parallel: Option<i64>,
    /// Becomes the run id: 1–128 letters, digits, '-', '_' or '.'.
    #[deserr(default)]
    pub run_name: Option<String>,
    /// `rl-gym` (default), `task-editor` or `datadog-synthetics`.
    #[deserr(default)]
    pub source: Option<String>,
    #[deserr(default)]
    #[schema(value_type = ModelConfigBody)]
    pub model_config: Required<ModelConfigBody>,
    /// The model that plays the simulated people (scripted replies without it).
    #[deserr(default)]
    pub user_model_config: Option<ModelConfigBody>,
    /// The judge of tasks with a `rubric_markdown` (an extension).
    #[deserr(default)]
    pub judge_model_config: Option<ModelConfigBody>,
    /// Per task id (one of `task_ids`): fields laid over that task.
    #[deserr(default)]
    #[schema(value_type = Option<BTreeMap<String, TaskOverrideBody>>)]
    pub task_overrides: Option<TaskOverrides>,
    /// Tool calls fail in band at this rate, deterministically for the seed, and each
    /// call takes `latency_ms` longer (an extension).
    #[deserr(default)]
    pub tool_faults: Option<ToolFaultsBody>,
    /// A spending cap (an extension): once spent, the run pauses until resumed.
    #[deserr(default)]
    pub budget: Option<BudgetBody>,
    /// Keep drawing groups of `rollout_count` rollouts of one task (an extension,
    /// for online training; see `GET /runs/{run_id}/groups`).
    #[deserr(default)]
    pub continuous: Option<ContinuousBody>,
    /// Instances of each task family to run, seeds 0..n, 1–1,000 (default 1: instance
    /// 0, the task as written); `rollout_count` rollouts of each form a group.
    #[deserr(default)]
    #[schema(value_type = Option<u32>)]
    pub instances_per_task: Option<i64>,
    /// Or exactly these instance seeds (at most 1,000).
    #[deserr(default, try_from(Option<Vec<Value>>) = seed_list -> Invalid)]
    pub instance_seeds: Option<Vec<u64>>,
}

/// 1–1,000 instance seeds, one message for the list.
fn seed_list(items: Option<Vec<Value>>) -> Result<Option<Vec<u64>>, Invalid> {
    let Some(items) = items else { return Ok(None) };
    let seeds: Option<Vec<u64>> = items.iter().map(Value::as_u64).collect();
    match seeds {
        Some(seeds) if !seeds.is_empty() && seeds.len() as i64 <= MAX_INSTANCES => Ok(Some(seeds)),
        _ => Err(Invalid::new(
            format!("Input should be a list of 1–{MAX_INSTANCES} non-negative integers"),
            "list_type",
        )),
    }
}

/// A continuous run's settings.
#[derive(Deserr, utoipa::ToSchema)]
#[deserr(error = BodyErrors, deny_unknown_fields)]
pub struct ContinuousBody {
    /// Stop after this many groups (default: until cancelled).
    #[deserr(default)]
    #[schema(value_type = Option<u32>)]
    pub max_groups: Option<i64>,
    /// No rollout starts while this many complete groups wait for an
    /// acknowledgement, 1–10,000 (default 8).
    #[deserr(default)]
    #[schema(value_type = Option<u32>)]
    pub max_unconsumed_groups: Option<i64>,
    /// A rollout whose first turn is more than this many policy versions behind the
    /// current one is stale (default: no bound).
    #[deserr(default)]
    #[schema(value_type = Option<u32>)]
    pub max_staleness: Option<i64>,
    /// `finish` (default: delivered marked stale) or `restart` (replaced by a fresh
    /// rollout of the same task and seed).
    #[deserr(default)]
    pub on_stale: Option<String>,
    /// Draws the tasks and the rollouts' seeds (default: random).
    #[deserr(default)]
    pub seed: Option<u64>,
}

impl ContinuousBody {
    fn check(self, c: &mut Checker) -> Option<ContinuousSettings> {
        let prefix: &[&str] = &["body", "continuous"];
        let max = u32::MAX as i64;
        let max_groups = self
            .max_groups
            .and_then(|n| c.in_range(prefix, "max_groups", n, 1, max));
        let max_unconsumed = self.max_unconsumed_groups.map_or(Some(8), |n| {
            c.in_range(prefix, "max_unconsumed_groups", n, 1, MAX_UNCONSUMED_GROUPS)
        });
        let max_staleness = self
            .max_staleness
            .and_then(|n| c.in_range(prefix, "max_staleness", n, 0, max));
        let on_stale = match self.on_stale.as_deref() {
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
        if c.names(prefix) {
            return None;
        }
        Some(ContinuousSettings {
            max_groups: max_groups.map(|n| n as u32),
            max_unconsumed_groups: max_unconsumed? as u32,
            max_staleness: max_staleness.map(|n| n as u32),
            on_stale,
            seed: self.seed.unwrap_or_else(rand_seed),
        })
    }
}

/// A seed nobody chose: the random bits of a fresh UUID.
fn rand_seed() -> u64 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    u64::from_be_bytes(bytes[..8].try_into().unwrap_or_default())
}

/// Tool calls that fail in band (an extension).
#[derive(Deserr, utoipa::ToSchema)]
#[deserr(error = BodyErrors, deny_unknown_fields)]
pub struct ToolFaultsBody {
    /// Share of tool calls that fail, 0–1.
    #[deserr(default)]
    #[schema(value_type = f64)]
    pub error_rate: Required<f64>,
    /// Added to every tool call, 0–60,000 ms.
    #[deserr(default)]
    #[schema(value_type = Option<u64>)]
    pub latency_ms: Option<i64>,
    /// The same seed gives the same failures.
    #[deserr(default)]
    pub seed: Option<u64>,
}

impl ToolFaultsBody {
    fn check(self, c: &mut Checker) -> Option<ToolFaults> {
        let prefix: &[&str] = &["body", "tool_faults"];
        let error_rate = c
            .required(prefix, "error_rate", self.error_rate.0)
            .and_then(|r| c.in_range(prefix, "error_rate", r, 0.0, 1.0));
        let latency_ms = self
            .latency_ms
            .and_then(|n| c.in_range(prefix, "latency_ms", n, 0, MAX_LATENCY_MS as i64));
        (!c.names(prefix)).then(|| ToolFaults {
            error_rate: error_rate.unwrap_or_default(),
            latency_ms: latency_ms.unwrap_or_default() as u64,
            seed: self.seed.unwrap_or_default(),
        })
    }
}

/// [`check_budget_price`] against the price table, for a launch.
pub fn check_launch_price(request: &LaunchRequest, prices: &PriceTable) -> Result<(), ApiError> {
    let priced = prices
        .get(&request.model.provider, &request.model.model)
        .is_some();
    check_budget_price(request.budget.as_ref(), priced, &request.model)
}

pub fn parse(body: &Value) -> Result<LaunchRequest, ApiError> {
    let (body, mut c) = read::<LaunchBody>(body)?;
    let request = body.check(&mut c);
    c.finish()?;
    // `None` was reported as an error above.
    request.ok_or_else(|| ApiError::validation(vec![]))
}

impl LaunchBody {
    /// The command, or `None` with every problem named in `c`.
    fn check(self, c: &mut Checker) -> Option<LaunchRequest> {
        let root: &[&str] = &["body"];
        let scenario_id = c.required(root, "scenario_id", self.scenario_id.0);
        let task_ids = c.required(root, "task_ids", self.task_ids.0);
        if task_ids.as_ref().is_some_and(Vec::is_empty) {
            c.push(
                root,
                "task_ids",
                "List should have at least 1 item after validation, not 0",
                "too_short",
            );
        }
        let task_ids = task_ids.filter(|ids| !ids.is_empty());
        let rollout_count = self
            .rollout_count
            .and_then(|n| c.in_range(root, "rollout_count", n, 1, MAX_ROLLOUTS_PER_RUN))
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
        let max_parallel = self
            .max_parallel
            .and_then(|n| c.in_range(root, "max_parallel", n, 1, u32::MAX as i64));
        if let Some(name) = &self.run_name {
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
        let source = self.source.unwrap_or_else(|| "rl-gym".to_string());
        if !SOURCES.contains(&source.as_str()) {
            c.push(
                root,
                "source",
                format!("Input should be one of {}", SOURCES.join(", ")),
                "enum",
            );
        }
        let model = c
            .required(root, "model_config", self.model_config.0)
            .and_then(|m| m.check(c, &["body", "model_config"]));
        let user_model = self
            .user_model_config
            .and_then(|m| m.check(c, &["body", "user_model_config"]));
        let judge_model = self
            .judge_model_config
            .and_then(|m| m.check(c, &["body", "judge_model_config"]));
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
        let budget = self.budget.and_then(|b| b.check(c));
        let continuous = self.continuous.and_then(|f| f.check(c));
        if continuous.is_some() && budget.is_some() {
            c.push(
                root,
                "budget",
                "A continuous run cannot have a budget yet: cap it with continuous.max_groups",
                "value_error",
            );
        }
        let per_task = self
            .instances_per_task
            .and_then(|n| c.in_range(root, "instances_per_task", n, 1, MAX_INSTANCES));
        let instance_seeds = match (per_task, self.instance_seeds) {
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
        };
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
        let task_overrides = self
            .task_overrides
            .map(|o| o.check(c, task_ids.as_deref()))
            .unwrap_or_default();
        let tool_faults = self.tool_faults.and_then(|f| f.check(c));
        let (scenario_id, task_ids, (model, api_key)) = (scenario_id?, task_ids?, model?);
        Some(LaunchRequest {
            scenario_id,
            task_ids,
            rollout_count: rollout_count as u32,
            max_parallel: max_parallel.map(|n| n as u32),
            run_name: self.run_name,
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
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::api::budget::parse_resume;

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

    #[test]
    fn a_type_error_does_not_hide_the_checks_of_the_other_fields() {
        let mut body = base();
        body["rollout_count"] = json!("many");
        body["source"] = json!("elsewhere");
        body["continuous"] = json!({"max_unconsumed_groups": 0, "extra": 1});
        let Err(error) = parse(&body) else {
            panic!("accepted")
        };
        let locs: Vec<Value> = error
            .detail
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["loc"].clone())
            .collect();
        assert_eq!(
            locs,
            [
                json!(["body", "continuous", "extra"]),
                json!(["body", "rollout_count"]),
                json!(["body", "source"]),
                json!(["body", "continuous", "max_unconsumed_groups"]),
            ]
        );
    }
}
