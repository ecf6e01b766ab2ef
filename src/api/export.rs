//! `GET /runs/{run_id}/export?format=…`: a run's rollouts as JSON Lines for training,
//! one rollout (or one preference pair) a line, streamed: only the ids are gathered
//! first, each line is written from the views when it is sent.
//!
//! - `sft`: completed rollouts scoring at least `min_score` (default 1.0):
//!   `{"messages", "tools", "score", "provenance"}`.
//! - `rl`: every completed rollout: `{"messages", "tools", "reward", "logprobs"?,
//!   "provenance"}`; `logprobs` (one entry per assistant turn that returned them) when
//!   the run asked for `log_prob`.
//! - `preference`: pairs of completed rollouts of one task with different scores, at
//!   most `max_pairs_per_task` per task (see [`pairs`]):
//!   `{"prompt", "chosen", "rejected", "chosen_score", "rejected_score", "tools",
//!   "provenance"}`, the prompt being the messages before the first model turn.
//! - `tokens`: every completed rollout of a run with `return_tokens` / `token_in`, its
//!   token ids, loss mask and log-probabilities (see [`super::token_export`]).
//!
//! Every line's `provenance` names the run, the rollout(s), the task, its version and
//! the SHA-256 of its definition as run (overrides applied), the model config without
//! its key, the rollout seed and the rl-gym version.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{web, HttpResponse};
use futures::StreamExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::validate::Checker;
use super::views::ModelConfigView;
use super::AppState;
use crate::domain::chat::{Message, Role};
use crate::domain::rollout::RolloutStatus;
use crate::error::ErrorBody;
use crate::error::{ApiError, ErrorCode};
use crate::projections::{RolloutContent, RolloutView, RunView};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/runs/{run_id}/export").route(web::get().to(export)));
}

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Sft,
    Rl,
    Preference,
    /// Token ids, loss mask and log-probabilities (see [`super::token_export`]).
    Tokens,
}

/// What every line of one task shares: its provenance and the tools offered.
#[derive(Clone)]
pub(super) struct TaskFacts {
    version: String,
    hash: String,
    tools: Arc<OfferedTools>,
}

/// A task's tools (none against a remote tool server), as JSON values written only
/// for a reader that ships them: the feed never does.
struct OfferedTools {
    set: Option<Arc<crate::domain::chat::ToolSet>>,
    json: std::sync::OnceLock<Vec<Value>>,
}

impl TaskFacts {
    fn tools(&self) -> &[Value] {
        let tools = &self.tools;
        tools.json.get_or_init(|| {
            tools
                .set
                .iter()
                .flat_map(|set| set.iter().map(|t| t.openai_json()))
                .collect()
        })
    }
}

/// Task facts already worked out, by run (its launch's log position: a run name is
/// free again once deleted) and task instance: a run's tasks, overrides and scenario
/// never change, and a feed asks for the same few on every poll.
#[derive(Default)]
pub struct FactsCache(parking_lot::Mutex<HashMap<(u64, TaskKey), TaskFacts>>);

/// Entries the cache holds before it starts over.
const FACTS_CACHED: usize = 512;

/// One line to write: a rollout, or a (chosen, rejected) pair.
enum Item {
    One(String),
    Pair(String, String),
}

impl Item {
    fn rollout_ids(&self) -> Vec<&str> {
        match self {
            Item::One(id) => vec![id],
            Item::Pair(chosen, rejected) => vec![chosen, rejected],
        }
    }
}

#[utoipa::path(get, path = "/runs/{run_id}/export", tag = "runs", summary = "A run's rollouts as JSON Lines for training", params(("run_id" = String, Path, description = "The run"), ("format" = String, Query, description = "sft, rl, preference or tokens"), ("min_score" = Option<f64>, Query, description = "sft: the lowest score kept, 0–1 (1)"), ("max_pairs_per_task" = Option<u32>, Query, description = "preference: pairs per task, 1–1,000 (the config's max_pairs_per_task, 16)")), responses((status = 200, description = "One JSON object a line", content_type = "application/x-ndjson", body = String), (status = 404, description = "No such run", body = ErrorBody), (status = 422, description = "Invalid input, each bad field named", body = ErrorBody)))]
async fn export(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let run_id = path.into_inner();
    let mut c = Checker::default();
    let mut format = None;
    let mut min_score = 1.0;
    let mut max_pairs = state.max_pairs_per_task;
    for (key, value) in query.iter() {
        match key.as_str() {
            "format" => {
                format = match value.as_str() {
                    "sft" => Some(Format::Sft),
                    "rl" => Some(Format::Rl),
                    "preference" => Some(Format::Preference),
                    "tokens" => Some(Format::Tokens),
                    _ => {
                        c.push(
                            &["query"],
                            "format",
                            "Input should be 'sft', 'rl', 'preference' or 'tokens'",
                            "enum",
                        );
                        None
                    }
                }
            }
            "min_score" => match value.parse::<f64>() {
                Ok(n) => {
                    if let Some(n) = c.in_range(&["query"], "min_score", n, 0.0, 1.0) {
                        min_score = n;
                    }
                }
                Err(_) => c.push(
                    &["query"],
                    "min_score",
                    "Input should be a valid number",
                    "float_parsing",
                ),
            },
            "max_pairs_per_task" => match value.parse::<i64>() {
                Ok(n) => {
                    if let Some(n) =
                        c.in_range(&["query"], "max_pairs_per_task", n, 1, MAX_PAIRS_PER_TASK)
                    {
                        max_pairs = n as usize;
                    }
                }
                Err(_) => c.push(
                    &["query"],
                    "max_pairs_per_task",
                    "Input should be a valid integer",
                    "int_parsing",
                ),
            },
            _ => {}
        }
    }
    if format.is_none() && !query.iter().any(|(k, _)| k == "format") {
        c.push(&["query"], "format", "Field required", "missing");
    }
    c.finish()?;
    let Some(format) = format else {
        return Err(ApiError::validation(vec![]));
    };
    state.sync().await;

    let (items, facts) = state.projections.read(|views| {
        let run = views
            .run(&run_id)
            .ok_or_else(|| ApiError::new(ErrorCode::RunNotFound, "Run not found"))?;
        let completed: Vec<&RolloutView> = run
            .rollout_ids
            .iter()
            .filter_map(|id| views.rollout(id))
            .filter(|r| r.status == RolloutStatus::Completed)
            .collect();
        let items = match format {
            Format::Sft => completed
                .iter()
                .filter(|r| r.score().is_some_and(|s| s >= min_score))
                .map(|r| Item::One(r.rollout_id.clone()))
                .collect(),
            Format::Rl => completed
                .iter()
                .map(|r| Item::One(r.rollout_id.clone()))
                .collect(),
            Format::Preference => pairs(&completed, max_pairs),
            Format::Tokens if !super::token_export::recorded(&run.model) => {
                let mut c = Checker::default();
                c.push(
                    &["query"],
                    "format",
                    "format=tokens needs a run launched with return_tokens or token_in",
                    "value_error",
                );
                c.finish()?;
                vec![]
            }
            Format::Tokens => completed
                .iter()
                .map(|r| Item::One(r.rollout_id.clone()))
                .collect(),
        };
        let facts = task_facts(&state, views, run);
        Ok::<_, ApiError>((items, facts))
    })?;

    let state = state.into_inner();
    let facts = Arc::new(facts);
    // A few rollouts' streams are read ahead while a line is written.
    let lines = futures::stream::iter(items)
        .map(move |item| {
            let (state, facts) = (state.clone(), facts.clone());
            async move {
                let mut contents = Vec::new();
                for id in item.rollout_ids() {
                    contents.push(state.rollout_content(id).await?);
                }
                let line = state
                    .projections
                    .read(|views| line(views, &item, &contents, format, &facts));
                Ok::<_, actix_web::Error>(Bytes::from(line))
            }
        })
        .buffered(4);
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!(
                "attachment; filename=\"{run_id}-{}.jsonl\"",
                match format {
                    Format::Sft => "sft",
                    Format::Rl => "rl",
                    Format::Preference => "preference",
                    Format::Tokens => "tokens",
                }
            ),
        ))
        .streaming(lines))
}

/// The most pairs per task a query may ask for.
const MAX_PAIRS_PER_TASK: i64 = 1_000;

/// At most `cap` pairs of each task's rollouts whose scores differ, the better one
/// first, always the same for the same rollouts. A task's rollouts are grouped by
/// score (each group ordered by seed, then id); pairs are taken from pairs of groups
/// widest apart in rank first, and within two groups along diagonals, so that the
/// first pairs use each rollout once before any is used again. When a task has no
/// more than `cap` such pairs, they are all exported.
fn pairs(completed: &[&RolloutView], cap: usize) -> Vec<Item> {
    let mut by_task: HashMap<&str, Vec<&RolloutView>> = HashMap::new();
    for r in completed {
        if r.score().is_some() {
            by_task.entry(r.task_id.as_str()).or_default().push(r);
        }
    }
    let mut tasks: Vec<_> = by_task.into_iter().collect();
    tasks.sort_by(|a, b| a.0.cmp(b.0));
    let mut items = Vec::new();
    for (_, mut rollouts) in tasks {
        let score = |r: &RolloutView| r.score().unwrap_or_default();
        rollouts.sort_by(|a, b| {
            score(b)
                .total_cmp(&score(a))
                .then(a.seed.cmp(&b.seed))
                .then(a.rollout_id.cmp(&b.rollout_id))
        });
        let groups: Vec<&[&RolloutView]> = rollouts
            .chunk_by(|a, b| score(a).total_cmp(&score(b)).is_eq())
            .collect();
        let before = items.len();
        // No pair of groups has a shorter one longer than the second longest group.
        let mut lengths: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        lengths.sort_unstable_by(|a, b| b.cmp(a));
        let shifts = lengths.get(1).copied().unwrap_or(0);
        // Shift `s` of the pairing of two groups: the longer one's t-th rollout with
        // the shorter one's (t + s)-th; the shifts below the shorter length cover every
        // pair of the two once.
        'shifts: for shift in 0..shifts {
            for gap in (1..groups.len()).rev() {
                for high in 0..groups.len() - gap {
                    let (a, b) = (groups[high], groups[high + gap]);
                    let (long, short) = (a.len().max(b.len()), a.len().min(b.len()));
                    if shift >= short {
                        continue;
                    }
                    for t in 0..long {
                        if items.len() - before >= cap {
                            break 'shifts;
                        }
                        let (i, j) = if a.len() >= b.len() {
                            (t, (t + shift) % short)
                        } else {
                            ((t + shift) % short, t)
                        };
                        items.push(Item::Pair(a[i].rollout_id.clone(), b[j].rollout_id.clone()));
                    }
                }
            }
        }
    }
    items
}

/// A task as one of the run's rollouts ran it: its id and its family instance.
pub(super) type TaskKey = (String, u64);

/// Each task instance of the run as it ran (overrides applied): version, definition
/// hash, tools.
pub(super) fn task_facts(
    state: &AppState,
    views: &crate::projections::Views,
    run: &RunView,
) -> HashMap<TaskKey, TaskFacts> {
    let keys: std::collections::BTreeSet<TaskKey> = run
        .rollout_ids
        .iter()
        .filter_map(|id| views.rollout(id))
        .map(|r| (r.task_id.clone(), r.instance_seed))
        .collect();
    task_facts_of(state, run, &keys.into_iter().collect::<Vec<_>>())
}

/// [`task_facts`] of some of the run's task instances only (each builds its
/// environment once).
pub(super) fn task_facts_of(
    state: &AppState,
    run: &RunView,
    keys: &[TaskKey],
) -> HashMap<TaskKey, TaskFacts> {
    let Some(scenario) = state.catalog.get(&run.scenario_id) else {
        return HashMap::new();
    };
    keys.iter()
        .filter_map(|key| {
            let cache_key = (run.position, key.clone());
            if let Some(facts) = state.task_facts.0.lock().get(&cache_key) {
                return Some((key.clone(), facts.clone()));
            }
            let facts = facts_of(scenario, run, key)?;
            let mut cache = state.task_facts.0.lock();
            if cache.len() >= FACTS_CACHED {
                cache.clear();
            }
            cache.insert(cache_key, facts.clone());
            Some((key.clone(), facts))
        })
        .collect()
}

/// One task instance's facts, its environment built once.
fn facts_of(
    scenario: &crate::scenarios::Scenario,
    run: &RunView,
    (task_id, instance_seed): &TaskKey,
) -> Option<TaskFacts> {
    let task = crate::scenarios::overrides::apply(
        scenario,
        task_id,
        run.task_overrides.get(task_id),
        *instance_seed,
    )
    .ok()?;
    let definition = serde_json::to_vec(&*task).unwrap_or_default();
    let set = match run.model.tool_server_url {
        Some(_) => None,
        None => scenario.tool_definitions(&task).ok(),
    };
    Some(TaskFacts {
        version: task.version.clone(),
        hash: format!("sha256:{}", hex::encode(Sha256::digest(&definition))),
        tools: Arc::new(OfferedTools {
            set,
            json: Default::default(),
        }),
    })
}

/// The messages before the first model turn: what both sides of a pair were given.
fn prompt_len(trajectory: &[Message]) -> usize {
    trajectory
        .iter()
        .position(|m| m.role == Role::Assistant)
        .unwrap_or(trajectory.len())
}

pub(super) fn provenance(run: &RunView, r: &RolloutView, facts: Option<&TaskFacts>) -> Value {
    json!({
        "run_id": run.run_id,
        "rollout_id": r.rollout_id,
        "scenario_id": run.scenario_id,
        "task_id": r.task_id,
        "task_version": facts.map(|f| f.version.as_str()),
        "task_sha256": facts.map(|f| f.hash.as_str()),
        "model_config": ModelConfigView::of(&run.model),
        "seed": r.seed,
        "instance_seed": r.instance_seed,
        "client_context": run.client_context(&r.task_id),
        "rl_gym_version": env!("CARGO_PKG_VERSION"),
    })
}

/// One JSON line; empty when the rollout left the views meanwhile (its run deleted).
/// `contents` are the item's rollouts' contents, in [`Item::rollout_ids`] order.
fn line(
    views: &crate::projections::Views,
    item: &Item,
    contents: &[RolloutContent],
    format: Format,
    facts: &HashMap<TaskKey, TaskFacts>,
) -> String {
    let rollout = |id: &str| {
        let r = views.rollout(id)?;
        Some((views.run(&r.run_id)?, r))
    };
    let value = match item {
        Item::One(id) if format == Format::Tokens => {
            return rollout(id)
                .map(|(run, r)| {
                    let task = facts.get(&(r.task_id.clone(), r.instance_seed));
                    super::token_export::line(&contents[0], r.score(), provenance(run, r, task))
                })
                .unwrap_or_default();
        }
        Item::One(id) => rollout(id).map(|(run, r)| {
            let task = facts.get(&(r.task_id.clone(), r.instance_seed));
            let tools: &[Value] = task.map(TaskFacts::tools).unwrap_or_default();
            let mut line = json!({
                "messages": contents[0].trajectory,
                "tools": tools,
                "provenance": provenance(run, r, task),
            });
            match format {
                Format::Sft => line["score"] = json!(r.score()),
                _ => {
                    line["reward"] = json!(r.score());
                    if run.model.log_prob {
                        line["logprobs"] = json!(contents[0].logprobs);
                    }
                }
            }
            line
        }),
        Item::Pair(chosen, rejected) => {
            rollout(chosen)
                .zip(rollout(rejected))
                .map(|((run, c), (_, r))| {
                    let task = facts.get(&(c.task_id.clone(), c.instance_seed));
                    let (c_content, r_content) = (&contents[0], &contents[1]);
                    let (prompt, chosen) = c_content
                        .trajectory
                        .split_at(prompt_len(&c_content.trajectory));
                    let rejected = &r_content.trajectory[prompt_len(&r_content.trajectory)..];
                    let mut provenance = provenance(run, c, task);
                    provenance["chosen_rollout_id"] = json!(c.rollout_id);
                    provenance["rejected_rollout_id"] = json!(r.rollout_id);
                    provenance["rejected_seed"] = json!(r.seed);
                    json!({
                        "prompt": prompt,
                        "chosen": chosen,
                        "rejected": rejected,
                        "chosen_score": c.score(),
                        "rejected_score": r.score(),
                        "tools": task.map(TaskFacts::tools).unwrap_or_default(),
                        "provenance": provenance,
                    })
                })
        }
    };
    match value {
        Some(v) => format!("{v}\n"),
        None => String::new(),
    }
}
