//! `/runs/{run_id}/stats` and `/runs/compare`: the figures a researcher reports, read
//! from the views and computed by [`crate::stats`] (the definitions are there).
//!
//! Which rollouts count: a completed rollout with a score is an attempt with that
//! score, a failed one an attempt scoring 0; cancelled and unfinished rollouts (a
//! completed one still without a score among them) are left out, and every count is
//! reported so that nothing is hidden. Token and time totals cover every rollout,
//! whatever its state: a failed or cancelled rollout still spent them.

use std::collections::{HashMap, HashSet};

use actix_web::{web, HttpResponse};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use super::validate::Checker;
use super::AppState;
use crate::domain::events::TokenUsage;
use crate::domain::rollout::RolloutStatus;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::projections::{RolloutView, RunView, Views};
use crate::stats::{self, Averaged, Interval, TaskFigures};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/runs/compare").route(web::get().to(compare_runs)))
        .service(web::resource("/runs/{run_id}/stats").route(web::get().to(run_stats)));
}

/// How a task's rollouts stand.
#[derive(Debug, Default, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct Counts {
    rollouts: usize,
    /// Completed with a score.
    scored: usize,
    failed: usize,
    cancelled: usize,
    /// Pending, running, verifying, or completed without a score yet.
    unfinished: usize,
    /// scored + failed: the `n` of pass@k.
    attempts: usize,
    /// Attempts with Full Credit: the `c` of pass@k.
    successes: usize,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.rollouts += other.rollouts;
        self.scored += other.scored;
        self.failed += other.failed;
        self.cancelled += other.cancelled;
        self.unfinished += other.unfinished;
        self.attempts += other.attempts;
        self.successes += other.successes;
    }
}

#[derive(Debug, Default, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct Time {
    /// Sum over rollouts of finished − started.
    rollout_seconds: f64,
    /// From the launch until the last rollout finished; null while any is unfinished.
    wall_seconds: Option<f64>,
    model_calls: u64,
    /// Model latency per call (retries and backoff included).
    mean_model_latency_ms: Option<f64>,
    #[serde(skip)]
    model_latency_ms: f64,
}

impl Time {
    fn add(&mut self, other: &Time) {
        self.rollout_seconds += other.rollout_seconds;
        self.model_calls += other.model_calls;
        self.model_latency_ms += other.model_latency_ms;
    }

    /// Fills in the mean once the totals are in.
    fn settle(&mut self) {
        self.mean_model_latency_ms =
            (self.model_calls > 0).then(|| self.model_latency_ms / self.model_calls as f64);
    }
}

/// One task of a run as read from the views.
struct TaskSample {
    task_id: String,
    counts: Counts,
    /// One per attempt; a failed attempt is a 0.
    scores: Vec<f64>,
    usage: TokenUsage,
    time: Time,
}

/// A run's tasks in launch order, each with its rollouts sorted into the counts.
fn sample(run: &RunView, views: &Views) -> Vec<TaskSample> {
    let mut tasks: Vec<TaskSample> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for task_id in &run.task_ids {
        if !index.contains_key(task_id.as_str()) {
            index.insert(task_id, tasks.len());
            tasks.push(TaskSample {
                task_id: task_id.clone(),
                counts: Counts::default(),
                scores: vec![],
                usage: TokenUsage::default(),
                time: Time::default(),
            });
        }
    }
    let mut last_finish = vec![Some(run.created_at); tasks.len()];
    for rollout in run.rollout_ids.iter().filter_map(|id| views.rollout(id)) {
        let Some(&i) = index.get(rollout.task_id.as_str()) else {
            continue;
        };
        let task = &mut tasks[i];
        task.counts.rollouts += 1;
        match (rollout.status, rollout.score()) {
            (RolloutStatus::Completed, Some(score)) => {
                task.counts.scored += 1;
                task.scores.push(score);
            }
            (RolloutStatus::Failed, _) => {
                task.counts.failed += 1;
                task.scores.push(0.0);
            }
            (RolloutStatus::Cancelled, _) => task.counts.cancelled += 1,
            _ => task.counts.unfinished += 1,
        }
        add_rollout_totals(task, rollout);
        last_finish[i] = match (last_finish[i], rollout.finished_at) {
            (Some(last), Some(at)) if rollout.status.is_terminal() => Some(last.max(at)),
            _ => None,
        };
    }
    for (task, last) in tasks.iter_mut().zip(last_finish) {
        task.counts.attempts = task.scores.len();
        task.counts.successes = task
            .scores
            .iter()
            .filter(|s| stats::is_success(**s))
            .count();
        task.time.wall_seconds = last.map(|at| seconds(at - run.created_at));
        task.time.settle();
    }
    tasks
}

fn add_rollout_totals(task: &mut TaskSample, rollout: &RolloutView) {
    task.usage.prompt_tokens += rollout.usage.prompt_tokens;
    task.usage.completion_tokens += rollout.usage.completion_tokens;
    task.usage.total_tokens += rollout.usage.total_tokens;
    if let (Some(started), Some(finished)) = (rollout.started_at, rollout.finished_at) {
        task.time.rollout_seconds += seconds(finished - started);
    }
    task.time.model_calls += rollout.steps as u64;
    task.time.model_latency_ms += rollout.model_latency_ms;
}

fn seconds(d: chrono::TimeDelta) -> f64 {
    d.num_milliseconds().max(0) as f64 / 1000.0
}

/// Values by k, serialised as `{"1": …, "2": …}` in the order of k.
#[derive(Debug)]
struct ByK<T>(Vec<T>);

impl<T: Serialize> Serialize for ByK<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (i, value) in self.0.iter().enumerate() {
            map.serialize_entry(&(i + 1).to_string(), value)?;
        }
        map.end()
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct TaskStats {
    task_id: String,
    #[serde(flatten)]
    counts: Counts,
    mean_score: Option<f64>,
    /// Bootstrap over the task's attempts.
    mean_score_ci: Option<Interval>,
    #[schema(value_type = HashMap<String, f64>)]
    pass_at_k: ByK<f64>,
    #[schema(value_type = HashMap<String, f64>)]
    pass_hat_k: ByK<f64>,
    usage: TokenUsage,
    time: Time,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct OverallStats {
    task_count: usize,
    /// Tasks with at least one attempt: what the means average.
    tasks_attempted: usize,
    #[serde(flatten)]
    counts: Counts,
    mean_score: Option<f64>,
    mean_score_ci: Option<Interval>,
    #[schema(value_type = HashMap<String, f64>)]
    pass_at_k: ByK<f64>,
    #[schema(value_type = HashMap<String, Interval>)]
    pass_at_k_ci: ByK<Interval>,
    #[schema(value_type = HashMap<String, f64>)]
    pass_hat_k: ByK<f64>,
    #[schema(value_type = HashMap<String, Interval>)]
    pass_hat_k_ci: ByK<Interval>,
    /// How many tasks (those with at least k attempts) each k averages.
    #[schema(value_type = HashMap<String, usize>)]
    tasks_per_k: ByK<usize>,
    usage: TokenUsage,
    time: Time,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct RunStats {
    run_id: String,
    scenario_id: String,
    status: &'static str,
    success_threshold: f64,
    confidence: f64,
    bootstrap_resamples: usize,
    overall: OverallStats,
    tasks: Vec<TaskStats>,
}

fn split(averaged: &[Averaged]) -> (ByK<f64>, ByK<Interval>) {
    (
        ByK(averaged.iter().map(|a| a.value).collect()),
        ByK(averaged.iter().map(|a| a.ci).collect()),
    )
}

fn run_stats_of(head: RunHead, tasks: Vec<TaskSample>) -> RunStats {
    let figures: Vec<TaskFigures> = tasks
        .iter()
        .map(|t| stats::task_figures(&t.scores))
        .collect();
    let overall = stats::overall_figures(&figures);
    let mut counts = Counts::default();
    let mut usage = TokenUsage::default();
    let mut time = Time {
        wall_seconds: head.wall_seconds,
        ..Time::default()
    };
    for task in &tasks {
        counts.add(&task.counts);
        usage.prompt_tokens += task.usage.prompt_tokens;
        usage.completion_tokens += task.usage.completion_tokens;
        usage.total_tokens += task.usage.total_tokens;
        time.add(&task.time);
    }
    time.settle();
    let (pass_at_k, pass_at_k_ci) = split(&overall.pass_at_k);
    let (pass_hat_k, pass_hat_k_ci) = split(&overall.pass_hat_k);
    let overall = OverallStats {
        task_count: tasks.len(),
        tasks_attempted: figures.iter().filter(|f| f.attempts > 0).count(),
        counts,
        mean_score: overall.mean_score.map(|m| m.value),
        mean_score_ci: overall.mean_score.map(|m| m.ci),
        pass_at_k,
        pass_at_k_ci,
        pass_hat_k,
        pass_hat_k_ci,
        tasks_per_k: ByK(overall.pass_at_k.iter().map(|a| a.tasks).collect()),
        usage,
        time,
    };
    let tasks = tasks
        .into_iter()
        .zip(figures)
        .map(|(task, f)| TaskStats {
            task_id: task.task_id,
            counts: task.counts,
            mean_score: f.mean_score,
            mean_score_ci: f.mean_score_ci,
            pass_at_k: ByK(f.pass_at_k),
            pass_hat_k: ByK(f.pass_hat_k),
            usage: task.usage,
            time: task.time,
        })
        .collect();
    RunStats {
        run_id: head.run_id,
        scenario_id: head.scenario_id,
        status: head.status,
        success_threshold: stats::SUCCESS_THRESHOLD,
        confidence: stats::CONFIDENCE,
        bootstrap_resamples: stats::RESAMPLES,
        overall,
        tasks,
    }
}

/// What the stats say about the run itself.
struct RunHead {
    run_id: String,
    scenario_id: String,
    status: &'static str,
    wall_seconds: Option<f64>,
}

/// Reads a run's head and tasks, or 404.
fn read_run(views: &Views, run_id: &str) -> Result<(RunHead, Vec<TaskSample>), ApiError> {
    let run = views.run(run_id).ok_or_else(|| {
        ApiError::new(ErrorCode::RunNotFound, format!("Run '{run_id}' not found"))
    })?;
    let head = RunHead {
        run_id: run.run_id.clone(),
        scenario_id: run.scenario_id.clone(),
        status: run.state(),
        wall_seconds: run.finished_at.map(|at| seconds(at - run.created_at)),
    };
    Ok((head, sample(run, views)))
}

/// Bootstrapping is CPU work: it runs off the worker thread.
async fn compute<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    web::block(work)
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("statistics failed: {e}")))
}

#[utoipa::path(get, path = "/runs/{run_id}/stats", tag = "runs", summary = "Mean score, pass@k and pass^k with intervals, per task and overall", params(("run_id" = String, Path, description = "The run")), responses((status = 200, body = RunStats), (status = 404, description = "No such run", body = ErrorBody)))]
async fn run_stats(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.sync().await;
    let (head, tasks) = state.projections.read(|views| read_run(views, &path))?;
    let stats = compute(move || run_stats_of(head, tasks)).await?;
    Ok(HttpResponse::Ok().json(stats))
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct TaskDifference {
    task_id: String,
    a_mean_score: Option<f64>,
    b_mean_score: Option<f64>,
    a_attempts: usize,
    b_attempts: usize,
    /// b − a; null when either run has no attempt on the task.
    difference: Option<f64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Comparison {
    a: String,
    b: String,
    confidence: f64,
    bootstrap_resamples: usize,
    /// Tasks with attempts in both runs: what the figures below are over.
    tasks_compared: usize,
    a_mean_score: Option<f64>,
    b_mean_score: Option<f64>,
    /// Mean over compared tasks of b − a.
    mean_difference: Option<f64>,
    /// Paired bootstrap over the compared tasks.
    ci: Option<Interval>,
    /// Whether the interval excludes 0.
    distinguishable: bool,
    tasks: Vec<TaskDifference>,
    only_in_a: Vec<String>,
    only_in_b: Vec<String>,
}

fn compare(a: (RunHead, Vec<TaskSample>), b: (RunHead, Vec<TaskSample>)) -> Comparison {
    let b_tasks: HashMap<&str, &TaskSample> = b.1.iter().map(|t| (t.task_id.as_str(), t)).collect();
    let mut tasks = Vec::new();
    let mut only_in_a = Vec::new();
    for ta in &a.1 {
        let Some(tb) = b_tasks.get(ta.task_id.as_str()) else {
            only_in_a.push(ta.task_id.clone());
            continue;
        };
        let (ma, mb) = (stats::mean(&ta.scores), stats::mean(&tb.scores));
        tasks.push(TaskDifference {
            task_id: ta.task_id.clone(),
            a_mean_score: ma,
            b_mean_score: mb,
            a_attempts: ta.scores.len(),
            b_attempts: tb.scores.len(),
            difference: ma.zip(mb).map(|(ma, mb)| mb - ma),
        });
    }
    let in_a: HashSet<&str> = a.1.iter().map(|t| t.task_id.as_str()).collect();
    let only_in_b =
        b.1.iter()
            .filter(|t| !in_a.contains(t.task_id.as_str()))
            .map(|t| t.task_id.clone())
            .collect();
    let compared: Vec<&TaskDifference> = tasks.iter().filter(|t| t.difference.is_some()).collect();
    let pick = |f: fn(&TaskDifference) -> Option<f64>| -> Vec<f64> {
        compared.iter().filter_map(|t| f(t)).collect()
    };
    let paired = stats::paired(&pick(|t| t.difference));
    Comparison {
        a: a.0.run_id,
        b: b.0.run_id,
        confidence: stats::CONFIDENCE,
        bootstrap_resamples: stats::RESAMPLES,
        tasks_compared: compared.len(),
        a_mean_score: stats::mean(&pick(|t| t.a_mean_score)),
        b_mean_score: stats::mean(&pick(|t| t.b_mean_score)),
        mean_difference: paired.mean_difference,
        ci: paired.ci,
        distinguishable: paired.distinguishable,
        tasks,
        only_in_a,
        only_in_b,
    }
}

#[utoipa::path(get, path = "/runs/compare", tag = "runs", summary = "Paired per-task comparison of two runs", params(("a" = String, Query, description = "The baseline run"), ("b" = String, Query, description = "The run compared with it")), responses((status = 200, body = Comparison), (status = 404, description = "No such run", body = ErrorBody), (status = 422, description = "Invalid input, each bad field named", body = ErrorBody)))]
async fn compare_runs(
    state: web::Data<AppState>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let find = |key: &str| {
        query
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let (a, b) = (find("a"), find("b"));
    let mut c = Checker::default();
    for (field, value) in [("a", &a), ("b", &b)] {
        if value.is_none() {
            c.push(&["query"], field, "Field required", "missing");
        }
    }
    c.finish()?;
    let (Some(a), Some(b)) = (a, b) else {
        return Err(ApiError::validation(vec![]));
    };
    state.sync().await;
    let (a, b) = state
        .projections
        .read(|views| Ok::<_, ApiError>((read_run(views, &a)?, read_run(views, &b)?)))?;
    let comparison = compute(move || compare(a, b)).await?;
    Ok(HttpResponse::Ok().json(comparison))
}
