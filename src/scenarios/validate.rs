//! `rl-gym scenarios validate DIR [--seeds N]`: what a scenario author runs before
//! shipping a world. It loads the scenarios the way the server does ([`Scenario::load`]
//! and [`Task::validate`], every problem at once with its file and JSON path), then
//! plays every task on N environment seeds and checks the three promises the builtin
//! agents rely on:
//!
//! - the oracle's reference solution, replayed in process with scripted NPC replies
//!   ([`super::oracle::run_reference_solution`]), earns full credit (1.0);
//! - the `noop` agent (no call, a final answer only) earns none (0.0);
//! - the same seed gives the same instance: the environment built twice from scratch
//!   has the same seeded state, and two replays of the reference solution end in the
//!   same state with the same verdict.
//!
//! Scoring is [`Task::verify`], the one the service uses; nothing is scored
//! here. Tasks run in parallel, one per core.
//!
//! Instances: what a rollout runs is `(task_id, instance_seed)` (DESIGN.md, "the
//! training half"). Today every task is its instance 0, so [`instances`] yields one
//! instance per environment seed; when task families land, it yields the family's
//! instance seeds too and [`check_instance`] instantiates the task before playing it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::domain::chat::{Message, ToolSet};
use crate::domain::events::ModelSettings;
use crate::domain::verdict::Verdict;
use crate::llm::builtin::BuiltinAgent;
use crate::llm::{ModelClient, ModelRequest};
use crate::scenarios::{scenario_folders, Catalog, Scenario, ScenarioError, Task};
use crate::tools::{Environment, EnvironmentState};
use crate::verify::StateRoot;

/// The default number of environment seeds per task.
pub const DEFAULT_SEEDS: u64 = 200;

/// One instance of a task to play: the environment seed, and the instance seed of a
/// task family (always 0 until families exist: instance 0 is the task as written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instance {
    pub instance_seed: u64,
    pub seed: u64,
}

/// Why a task failed on one instance.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceFailure {
    pub instance: Instance,
    pub reason: String,
}

/// The outcome of one task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskReport {
    pub scenario_id: String,
    pub task_id: String,
    /// The author's `difficulty` (easy, medium, hard).
    pub difficulty: String,
    /// The oracle's tool calls (the reference solution's steps).
    pub oracle_steps: usize,
    /// How many instances were played.
    pub instances: usize,
    /// A family's distinct (description, reference solution) pairs among the instances
    /// played; `None` for a task of one instance.
    pub distinct: Option<usize>,
    /// The first instance that failed, if any.
    pub failure: Option<InstanceFailure>,
}

/// Everything `validate` found.
#[derive(Debug, Default)]
pub struct Report {
    /// Schema problems, each naming its file (and, inside a file, the JSON path).
    pub problems: Vec<ScenarioError>,
    /// The tasks that loaded, in scenario then task order.
    pub tasks: Vec<TaskReport>,
}

impl Report {
    pub fn passed(&self) -> usize {
        self.tasks.iter().filter(|t| t.failure.is_none()).count()
    }

    /// Failed tasks plus files with schema problems (a bad task file is a task that
    /// failed; a bad scenario file fails the whole scenario and counts once).
    pub fn failed(&self) -> usize {
        let bad_files: BTreeSet<&Path> = self.problems.iter().map(problem_path).collect();
        self.tasks.iter().filter(|t| t.failure.is_some()).count() + bad_files.len()
    }

    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.tasks.iter().all(|t| t.failure.is_none())
    }

    /// The report as printed: problems, one line per task, then `N passed, M failed`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for problem in &self.problems {
            out.push_str(&format!("error: {problem}\n"));
        }
        for t in &self.tasks {
            let status = if t.failure.is_none() { "ok" } else { "FAILED" };
            out.push_str(&format!(
                "{status:<6} {}/{}  {}, oracle {} steps, {} seeds",
                t.scenario_id, t.task_id, t.difficulty, t.oracle_steps, t.instances
            ));
            if let Some(distinct) = t.distinct {
                out.push_str(&format!(", family: {distinct} distinct instances"));
            }
            if let Some(f) = &t.failure {
                out.push_str(&format!("\n       first failing seed {}", f.instance.seed));
                if f.instance.instance_seed != 0 {
                    out.push_str(&format!(" (instance {})", f.instance.instance_seed));
                }
                out.push_str(&format!(": {}", f.reason));
            }
            out.push('\n');
        }
        out.push_str(&format!(
            "{} passed, {} failed\n",
            self.passed(),
            self.failed()
        ));
        out
    }
}

fn problem_path(problem: &ScenarioError) -> &Path {
    match problem {
        ScenarioError::Io { path, .. }
        | ScenarioError::Parse { path, .. }
        | ScenarioError::Invalid { path, .. } => path,
    }
}

/// Loads `dir` (a folder of scenarios, or one scenario folder) and plays every task
/// on `seeds` seeds, on up to `threads` threads.
pub fn validate(dir: &Path, seeds: u64, threads: usize) -> Report {
    let (scenarios, problems) = load(dir);
    let jobs: Vec<(&Scenario, &Task)> = scenarios
        .iter()
        .flat_map(|s| s.tasks.iter().map(move |t| (s, t)))
        .collect();
    let tasks = run_parallel(&jobs, threads, |(scenario, task)| {
        check_task(scenario, task, seeds)
    });
    Report { problems, tasks }
}

/// Every scenario under `dir` that loaded, and every problem found on the way.
pub fn load(dir: &Path) -> (Vec<Scenario>, Vec<ScenarioError>) {
    let mut problems = Vec::new();
    let folders: Vec<PathBuf> = if Catalog::is_scenario_folder(dir) {
        vec![dir.to_path_buf()]
    } else {
        match scenario_folders(dir) {
            Ok(folders) => folders,
            Err(problem) => return (Vec::new(), vec![problem]),
        }
    };
    let mut scenarios: Vec<Scenario> = Vec::new();
    for folder in folders {
        match Scenario::load_reporting(&folder, &mut problems) {
            Ok(s) if scenarios.iter().any(|o| o.scenario_id == s.scenario_id) => {
                problems.push(ScenarioError::Invalid {
                    path: folder,
                    message: format!("duplicate scenario_id `{}`", s.scenario_id),
                });
            }
            Ok(s) => scenarios.push(s),
            Err(problem) => problems.push(problem),
        }
    }
    (scenarios, problems)
}

/// The instances of `task` to play for `seeds` seeds: a family's instance seeds 0..n
/// (each on the environment seed of the same number), a plain task's environment
/// seeds.
pub fn instances(task: &Task, seeds: u64) -> impl Iterator<Item = Instance> {
    let family = task.is_family();
    (0..seeds).map(move |seed| Instance {
        instance_seed: if family { seed } else { 0 },
        seed,
    })
}

/// Plays `task` on each of its instances, stopping at the first failure.
pub fn check_task(scenario: &Scenario, task: &Task, seeds: u64) -> TaskReport {
    // A copy whose seed cache is emptied before each rebuild, so that "built twice"
    // really builds twice instead of cloning the first build from the cache.
    let mut uncached = scenario.clone();
    let mut played = 0;
    let mut failure = None;
    let mut distinct = std::collections::HashSet::new();
    for instance in instances(task, seeds) {
        played += 1;
        uncached.environments = Default::default();
        // A tool server that panics on an author's data is that task's failure, not
        // the end of the report (the panic's message still goes to stderr).
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let played = render(task, instance.instance_seed)?;
            if task.is_family() {
                let solution =
                    serde_json::to_string(&played.reference_solution).map_err(|e| e.to_string())?;
                distinct.insert((played.description.clone(), solution));
            }
            check_instance(scenario, &uncached, &played, instance)
        }))
        .unwrap_or_else(|panic| Err(format!("panicked: {}", panic_text(&*panic))));
        if let Err(reason) = outcome {
            failure = Some(InstanceFailure { instance, reason });
            break;
        }
    }
    TaskReport {
        scenario_id: scenario.scenario_id.clone(),
        task_id: task.task_id.clone(),
        difficulty: task.difficulty.clone(),
        oracle_steps: task.reference_solution.len(),
        instances: played,
        distinct: task.is_family().then_some(distinct.len()),
        failure,
    }
}

/// A family's instance, rendered twice alike.
fn render(task: &Task, instance_seed: u64) -> Result<Task, String> {
    let first = task.instance(instance_seed)?.into_owned();
    if *task.instance(instance_seed)? != first {
        return Err(format!(
            "instance {instance_seed} rendered twice differs: it must depend on its seed only"
        ));
    }
    Ok(first)
}

/// One instance: seeded state built twice alike, oracle 1.0, noop 0.0, and two replays
/// alike. `uncached` is `scenario` with an empty seed cache.
pub fn check_instance(
    scenario: &Scenario,
    uncached: &Scenario,
    task: &Task,
    instance: Instance,
) -> Result<(), String> {
    let build = |s: &Scenario| {
        s.environment(task, instance.seed)
            .map_err(|e| format!("cannot build the environment: {e}"))
    };
    let first = build(scenario)?;
    let second = build(uncached)?;
    if !same_state(&state_of(&first), &state_of(&second)) {
        return Err("the environment built twice from the same seed differs".into());
    }

    let noop = task.verify(&first.state_view(), &noop_trajectory(task)?);
    if noop.score != 0.0 {
        return Err(format!(
            "noop (no calls, a final answer only) scores {} ({}), expected 0.0: passed {}",
            noop.score,
            noop.label,
            checks_list(&noop, true)
        ));
    }

    let (verdict, end) = oracle(scenario, task, first)?;
    if verdict.score != 1.0 {
        return Err(format!(
            "the reference solution scores {} ({}), expected 1.0: failed {}",
            verdict.score,
            verdict.label,
            checks_list(&verdict, false)
        ));
    }
    let (again, end_again) = oracle(uncached, task, second)?;
    if !same_state(&end, &end_again) {
        return Err("two replays of the reference solution end in different states".into());
    }
    if verdict != again {
        return Err("two replays of the reference solution get different verdicts".into());
    }
    Ok(())
}

/// The reference solution with scripted NPC replies, scored: its verdict and the
/// state it was scored on (kept, since building a changed server's JSON is the
/// costly part of a seed).
fn oracle(
    scenario: &Scenario,
    task: &Task,
    mut env: Environment,
) -> Result<(Verdict, State), String> {
    let trajectory = super::oracle::run_reference_solution(&mut env, scenario, task)
        .map_err(|e| format!("the reference solution does not replay: {e}"))?;
    let state = state_of(&env);
    let verdict = task.verify(&state.1, &trajectory);
    Ok((verdict, state))
}

/// An environment's server names and its state as the checks read it.
type State = (Vec<String>, EnvironmentState);

fn state_of(env: &Environment) -> State {
    (env.server_names(), env.state_view())
}

/// What the builtin `noop` agent leaves: the task, then its one answer, asked of the
/// agent itself so that this follows it.
fn noop_trajectory(task: &Task) -> Result<Vec<Message>, String> {
    let mut trajectory = vec![Message::user(task.description.clone())];
    let settings = ModelSettings {
        temperature: 0.0,
        max_steps: 1,
        context_stride: 0,
        ..ModelSettings::builtin("noop")
    };
    let request = ModelRequest {
        messages: &trajectory,
        tools: ToolSet::none(),
        settings: &settings,
    };
    // The builtin agent answers without awaiting anything, so no runtime is needed.
    let reply = futures::executor::block_on(BuiltinAgent::Noop.complete(request))
        .map_err(|e| format!("the noop agent failed: {e}"))?;
    trajectory.push(reply.message);
    Ok(trajectory)
}

/// Whether two states hold the same servers with equal data, compared as the checks
/// read them (JSON values; equal values serialise to the same text), without copying
/// or serialising the trees: with 200 seeds this comparison is a hot path.
fn same_state((names, a): &State, (other_names, b): &State) -> bool {
    names == other_names && names.iter().all(|n| a.server(n) == b.server(n))
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// `check `id` (reason); …` of the checks that passed (or failed).
fn checks_list(verdict: &Verdict, passed: bool) -> String {
    verdict
        .checks
        .iter()
        .filter(|c| c.passed == passed)
        .map(|c| format!("check `{}` ({})", c.id, c.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `f` over `jobs` on up to `threads` scoped threads, results in `jobs`' order.
fn run_parallel<J: Sync, R: Send>(
    jobs: &[J],
    threads: usize,
    f: impl Fn(&J) -> R + Sync,
) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, R)>> = Mutex::new(Vec::with_capacity(jobs.len()));
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, jobs.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(i) else { break };
                let r = f(job);
                results
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .push((i, r));
            });
        }
    });
    let mut results = results
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}
