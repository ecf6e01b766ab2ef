//! Scenario templates: what `config/scenarios/<scenario_id>/` holds, loaded and
//! validated once at start-up. A scenario is a set of tool servers, NPC profiles, seed
//! documents, tool-server seed state and tasks (instructions, rubric, reference
//! solution and the programmatic checks that score them). Everything here is read from
//! disk once by [`Catalog::load`]; afterwards it is plain data.
//!
//! Layout of one scenario folder:
//!
//! ```text
//! scenario.toml | scenario.json   scenario_id, name, description, tool_servers
//! npcs.json                       [NpcProfile]
//! tasks/<task_id>.json            one Task per file
//! seed_data/**                    documents served to clients (and to the agent)
//! environment/<server>.json       seed state of each tool server
//! ```
//!
//! Over 600 lines: the scenario and task formats and their load-time checks name each
//! other's fields.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::npc::{Cast, NpcBehaviour, NpcProfile};
use crate::tools::{Environment, ToolError};
use crate::verify::{Check, ScoringRule};

mod family;
pub mod oracle;
pub mod overrides;
pub mod validate;
mod vocabulary;

pub use vocabulary::{known_tool, server_tools, KNOWN_TOOL_SERVERS};

/// A scenario could not be loaded; the message names the file and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{path}: cannot read: {message}")]
    Io { path: PathBuf, message: String },
    #[error("{path}: invalid {format}: {message}")]
    Parse {
        path: PathBuf,
        format: &'static str,
        message: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Why a seed file could not be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SeedFileError {
    /// The name tries to leave the seed-data folder (→ 400).
    #[error("seed file name is not a plain relative path inside seed_data")]
    Traversal,
    /// No such file (→ 404).
    #[error("seed file not found")]
    NotFound,
}

/// Every scenario found under a directory, sorted by id.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    scenarios: BTreeMap<String, Scenario>,
}

impl Catalog {
    /// Loads every `<dir>/<scenario_id>/` folder and validates all of its tasks.
    pub fn load(dir: &Path) -> Result<Catalog, ScenarioError> {
        let mut scenarios = BTreeMap::new();
        for folder in scenario_folders(dir)? {
            let scenario = Scenario::load(&folder)?;
            if scenarios.contains_key(&scenario.scenario_id) {
                return Err(invalid(
                    &folder,
                    format!("duplicate scenario_id `{}`", scenario.scenario_id),
                ));
            }
            scenarios.insert(scenario.scenario_id.clone(), scenario);
        }
        Ok(Catalog { scenarios })
    }

    /// A catalog of already-built scenarios (tests, embedding).
    /// Whether `folder` is one scenario (it has a manifest) rather than a folder of them.
    pub fn is_scenario_folder(folder: &Path) -> bool {
        folder.join("scenario.toml").is_file() || folder.join("scenario.json").is_file()
    }

    pub fn from_scenarios(list: impl IntoIterator<Item = Scenario>) -> Catalog {
        Catalog {
            scenarios: list
                .into_iter()
                .map(|s| (s.scenario_id.clone(), s))
                .collect(),
        }
    }

    pub fn scenarios(&self) -> impl Iterator<Item = &Scenario> {
        self.scenarios.values()
    }

    pub fn get(&self, scenario_id: &str) -> Option<&Scenario> {
        self.scenarios.get(scenario_id)
    }
}

/// The manifest file (`scenario.toml` or `scenario.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    scenario_id: String,
    name: String,
    description: String,
    tool_servers: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub scenario_id: String,
    pub name: String,
    pub description: String,
    pub tool_servers: Vec<String>,
    pub npcs: Vec<NpcProfile>,
    /// Sorted by task id.
    pub tasks: Vec<Task>,
    /// Seed state per tool server (`environment/<server>.json`); a server without a
    /// file starts empty.
    pub environment: BTreeMap<String, Value>,
    /// Seed documents by relative path, read at load time (the agent can read them
    /// through the HRMS document tools without touching the disk).
    pub documents: BTreeMap<String, String>,
    /// Canonical path of `seed_data/`, when the scenario came from disk.
    seed_dir: Option<PathBuf>,
    /// Seeded environments already built, shared by every rollout of the scenario.
    pub(crate) environments: crate::tools::SeedCache,
    /// Its families' instances already built, keyed by task id: shared by the
    /// scenario's clones, which is sound because its tasks never change once loaded.
    instances: family::Instances,
}

impl Scenario {
    /// Loads one scenario folder.
    pub fn load(folder: &Path) -> Result<Scenario, ScenarioError> {
        let mut problems = Vec::new();
        let scenario = Scenario::load_reporting(folder, &mut problems)?;
        match problems.into_iter().next() {
            Some(first) => Err(first),
            None => Ok(scenario),
        }
    }

    /// Loads one scenario folder, pushing every problem of its task files onto
    /// `problems` (each bad task is left out) so that an author sees all of them at
    /// once; a problem of the scenario itself (manifest, NPCs, seed state) is the `Err`,
    /// since its tasks cannot be checked without it.
    pub fn load_reporting(
        folder: &Path,
        problems: &mut Vec<ScenarioError>,
    ) -> Result<Scenario, ScenarioError> {
        let manifest = read_manifest(folder)?;
        let folder_name = folder
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if manifest.scenario_id != folder_name {
            return Err(invalid(
                folder,
                format!(
                    "scenario_id `{}` must equal the folder name `{folder_name}`",
                    manifest.scenario_id
                ),
            ));
        }
        let manifest_path = folder.join("scenario");
        let mut seen = BTreeSet::new();
        for s in &manifest.tool_servers {
            if !seen.insert(s) {
                return Err(invalid(
                    &manifest_path,
                    format!("tool server `{s}` listed twice"),
                ));
            }
            if server_tools(s).is_none() {
                return Err(invalid(
                    &manifest_path,
                    format!(
                        "unknown tool server `{s}` (known: {:?})",
                        vocabulary::server_names()
                    ),
                ));
            }
        }

        let npcs_path = folder.join("npcs.json");
        let npcs: Vec<NpcProfile> = if npcs_path.exists() {
            read_json(&npcs_path)?
        } else {
            Vec::new()
        };
        let mut ids = BTreeSet::new();
        for npc in &npcs {
            if npc.profile_id.trim().is_empty() || !ids.insert(npc.profile_id.as_str()) {
                return Err(invalid(
                    &npcs_path,
                    format!("empty or duplicate profile_id `{}`", npc.profile_id),
                ));
            }
        }

        let mut environment = BTreeMap::new();
        let env_dir = folder.join("environment");
        if env_dir.is_dir() {
            for path in sorted_files(&env_dir, "json")? {
                let server = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or_default()
                    .to_string();
                if !manifest.tool_servers.contains(&server) {
                    return Err(invalid(
                        &path,
                        format!("seed state for `{server}`, which is not one of the scenario's tool servers"),
                    ));
                }
                let value: Value = read_json(&path)?;
                if !value.is_object() {
                    return Err(invalid(
                        &path,
                        "seed state must be a JSON object".to_string(),
                    ));
                }
                environment.insert(server, value);
            }
        }

        let seed_root = folder.join("seed_data");
        let (seed_dir, documents) = if seed_root.is_dir() {
            let canonical = seed_root
                .canonicalize()
                .map_err(|e| io_err(&seed_root, e))?;
            let mut docs = BTreeMap::new();
            collect_documents(&canonical, &canonical, &mut docs)?;
            (Some(canonical), docs)
        } else {
            (None, BTreeMap::new())
        };

        let mut scenario = Scenario {
            scenario_id: manifest.scenario_id,
            name: manifest.name,
            description: manifest.description,
            tool_servers: manifest.tool_servers,
            npcs,
            tasks: Vec::new(),
            environment,
            documents,
            seed_dir,
            environments: Default::default(),
            instances: Default::default(),
        };

        let tasks_dir = folder.join("tasks");
        let mut tasks = Vec::new();
        if tasks_dir.is_dir() {
            for path in sorted_files(&tasks_dir, "json")? {
                let task: Task = match read_json(&path) {
                    Ok(task) => task,
                    Err(problem) => {
                        problems.push(problem);
                        continue;
                    }
                };
                let stem = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or_default();
                let mut found = Vec::new();
                if task.task_id != stem {
                    found.push(format!(
                        "`task_id`: `{}` must equal the file name `{stem}`",
                        task.task_id
                    ));
                }
                found.extend(task.problems(&scenario));
                if found.is_empty() {
                    tasks.push(task);
                } else {
                    problems.extend(found.into_iter().map(|m| invalid(&path, m)));
                }
            }
        }
        tasks.sort_by(|a, b| a.task_id.cmp(&b.task_id));
        scenario.tasks = tasks;
        Ok(scenario)
    }

    pub fn task(&self, task_id: &str) -> Option<&Task> {
        self.tasks.iter().find(|t| t.task_id == task_id)
    }

    pub fn npc(&self, profile_id: &str) -> Option<&NpcProfile> {
        self.npcs.iter().find(|n| n.profile_id == profile_id)
    }

    /// Paths relative to `seed_data/`, sorted, `/`-separated.
    pub fn seed_files(&self) -> Vec<String> {
        self.documents.keys().cloned().collect()
    }

    /// The seed files a task's agent can read: the servers that serve the scenario's
    /// documents (the HRMS's `read_document`, a knowledge base's articles) do, so a
    /// task with none of them has none.
    pub fn task_seed_files(&self, task: &Task) -> Vec<String> {
        let serves_documents = |s: &String| vocabulary::DOCUMENT_SERVERS.contains(&s.as_str());
        if task.tool_servers.iter().any(serves_documents) {
            self.seed_files()
        } else {
            Vec::new()
        }
    }

    /// Reads one seed file from disk, refusing anything that could leave `seed_data/`.
    pub fn read_seed_file(&self, filename: &str) -> Result<String, SeedFileError> {
        let traversal = || SeedFileError::Traversal;
        let not_found = || SeedFileError::NotFound;
        if filename.is_empty()
            || filename.contains('\0')
            || filename.contains('\\')
            || filename.contains(':')
        {
            return Err(traversal());
        }
        let rel = Path::new(filename);
        if !rel
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(traversal());
        }
        let Some(root) = &self.seed_dir else {
            return self.documents.get(filename).cloned().ok_or_else(not_found);
        };
        let full = root.join(rel).canonicalize().map_err(|_| not_found())?;
        if !full.starts_with(root) {
            return Err(traversal());
        }
        if !full.is_file() {
            return Err(not_found());
        }
        fs::read_to_string(&full).map_err(|_| not_found())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoringLevel {
    pub label: String,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rubric {
    pub task_id: String,
    pub title: String,
    pub overview: String,
    #[serde(default)]
    pub success_criteria: Vec<String>,
    #[serde(default)]
    pub testing_requirements: Vec<String>,
    #[serde(default)]
    pub quality_criteria: Vec<String>,
    #[serde(default)]
    pub notes: Vec<String>,
    #[serde(default)]
    pub scoring: Vec<ScoringLevel>,
}

/// One tool call of a reference solution (tool names are unique across servers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SolutionStep {
    pub tool_name: String,
    #[serde(default = "empty_object")]
    pub parameters: Value,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

pub const DIFFICULTIES: &[&str] = &["easy", "medium", "hard"];
pub const VISIBILITIES: &[&str] = &["public", "private"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub task_id: String,
    pub name: String,
    pub version: String,
    pub category: String,
    /// `easy`, `medium` or `hard`.
    pub difficulty: String,
    /// `public` or `private`.
    pub visibility: String,
    /// The instructions the agent gets.
    pub description: String,
    /// Names of the tool servers; `{"name": ..}` objects are accepted too.
    #[serde(deserialize_with = "server_names")]
    pub tool_servers: Vec<String>,
    pub rubric: Rubric,
    /// A rubric in prose for the universal verifier: with it, an LLM judge grades
    /// every rollout too (see [`crate::verify::rubric`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rubric_markdown: Option<String>,
    #[serde(default)]
    pub npc_profile_ids: Vec<String>,
    /// The simulated clock at the start of a rollout (RFC 3339).
    pub now: String,
    #[serde(default)]
    pub reference_solution: Vec<SolutionStep>,
    /// What the oracle agent says last (the answer, for question tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_answer: Option<String>,
    pub checks: Vec<Check>,
    #[serde(default)]
    pub scoring: ScoringRule,
    /// How each simulated person behaves in this task when the replies are scripted,
    /// and what they privately know (see [`crate::npc`]). Keyed by profile id; an NPC
    /// without an entry stays silent when scripted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub npc_behaviour: BTreeMap<String, NpcBehaviour>,
    /// Where the reference solution relies on an NPC's reply: after step `after_step`
    /// (a mail-sending step) the named NPC answers. Replaying the reference solution
    /// with scripted replies must produce exactly these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reference_npc_replies: Vec<ExpectedNpcReply>,
    /// A family's parameters: name → the values an instance seed picks from (see
    /// `family`). Empty for a task of one instance. Shared: a family's values are most
    /// of its bytes, and a task is cloned per rollout.
    #[serde(default, skip_serializing_if = "family::no_parameters")]
    pub parameters: Arc<BTreeMap<String, Vec<Value>>>,
    /// What this task adds to the scenario's seed state, per tool server: lists are
    /// extended (a request's record, distractors), objects merged, other values
    /// replaced. A family's instances name their parameters in it, so each instance
    /// plays in its own world.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, Value>,
}

/// A point in a reference solution where an NPC's reply arrives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedNpcReply {
    /// Index into `reference_solution` of the step that sends the email answered.
    pub after_step: usize,
    pub profile_id: String,
}

fn server_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Entry {
        Name(String),
        Object { name: String },
    }
    let entries = Vec::<Entry>::deserialize(d)?;
    Ok(entries
        .into_iter()
        .map(|e| match e {
            Entry::Name(n) | Entry::Object { name: n } => n,
        })
        .collect())
}

impl Scenario {
    /// What `task`'s environment is built from in this scenario.
    pub fn world<'a>(&'a self, task: &'a Task) -> crate::tools::World<'a> {
        crate::tools::World {
            seed_state: &self.environment,
            documents: &self.documents,
            cache: &self.environments,
            now: &task.now,
            servers: &task.tool_servers,
            additions: &task.environment,
        }
    }

    /// `task`'s tool servers in their seed state, for a rollout with `seed`.
    pub fn environment(&self, task: &Task, seed: u64) -> Result<Environment, ToolError> {
        Environment::new(&self.world(task), seed)
    }

    /// A rollout's environment after its recorded calls and the replies of simulated
    /// people (see [`crate::tools::replay::rebuild`]).
    pub fn rebuild<'c>(
        &self,
        task: &Task,
        seed: u64,
        calls: impl IntoIterator<Item = crate::tools::replay::RecordedCall<'c>>,
        replies: &[crate::domain::events::NpcReplied],
    ) -> Result<Environment, ToolError> {
        self.rebuild_watching(task, seed, calls, replies, |_, _| {})
    }

    /// [`Self::rebuild`], showing `watch` the environment after each number of calls
    /// (0: the seed state).
    pub fn rebuild_watching<'c>(
        &self,
        task: &Task,
        seed: u64,
        calls: impl IntoIterator<Item = crate::tools::replay::RecordedCall<'c>>,
        replies: &[crate::domain::events::NpcReplied],
        watch: impl FnMut(u32, &Environment),
    ) -> Result<Environment, ToolError> {
        crate::tools::replay::rebuild(&self.world(task), seed, calls, replies, watch)
    }

    /// The tools `task`'s environment offers.
    pub fn tool_definitions(
        &self,
        task: &Task,
    ) -> Result<std::sync::Arc<crate::domain::chat::ToolSet>, ToolError> {
        Environment::definitions_for(&self.world(task))
    }

    /// The archive of the Python package that scores this scenario's tasks offline as
    /// the server does.
    pub fn verifier_bundle(
        &self,
    ) -> Result<crate::verify::bundle::Bundle, crate::verify::bundle::BundleError> {
        let tasks = self
            .tasks
            .iter()
            .map(|t| crate::verify::bundle::TaskEntry {
                task_id: &t.task_id,
                name: &t.name,
                checks: &t.checks,
                scoring: &t.scoring,
                parameters: &t.parameters,
            })
            .collect();
        crate::verify::bundle::build(&self.scenario_id, &self.name, tasks)
    }
}

impl Task {
    /// The rubric the judge grades by, when the task has a non-blank one.
    pub fn judge_rubric(&self) -> Option<&str> {
        self.rubric_markdown
            .as_deref()
            .filter(|r| !r.trim().is_empty())
    }

    /// The verdict of the task's checks on a rollout's final `state` and `trajectory`,
    /// by its scoring rule.
    pub fn verify(
        &self,
        state: &dyn crate::verify::StateRoot,
        trajectory: &[crate::domain::chat::Message],
    ) -> crate::domain::verdict::Verdict {
        crate::verify::verify(&self.checks, self.scoring.partial_credit, state, trajectory)
    }

    /// Checks that the task fits `scenario`: its servers, NPCs, reference solution and
    /// checks. The message names the offending field.
    pub fn validate(&self, scenario: &Scenario) -> Result<(), String> {
        match self.problems(scenario).into_iter().next() {
            Some(first) => Err(first),
            None => Ok(()),
        }
    }

    /// Every problem [`Task::validate`] would report, in field order, each message
    /// starting with the field's JSON path.
    pub fn problems(&self, scenario: &Scenario) -> Vec<String> {
        // A family is checked as its instance 0 (`rl-gym scenarios validate` plays
        // many more).
        if self.is_family() {
            return match self.instance(0) {
                Ok(instance) => instance.problems(scenario),
                Err(e) => vec![format!("parameters: {e}")],
            };
        }
        let mut out = Vec::new();
        let id_ok = !self.task_id.is_empty()
            && self
                .task_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
        if !id_ok {
            out.push(format!(
                "task_id `{}` must be non-empty [A-Za-z0-9_.-]",
                self.task_id
            ));
        }
        for (field, value) in [
            ("name", &self.name),
            ("version", &self.version),
            ("category", &self.category),
            ("description", &self.description),
        ] {
            if value.trim().is_empty() {
                out.push(format!("`{field}` is empty"));
            }
        }
        if !DIFFICULTIES.contains(&self.difficulty.as_str()) {
            out.push(format!(
                "`difficulty` is `{}`, expected one of {DIFFICULTIES:?}",
                self.difficulty
            ));
        }
        if !VISIBILITIES.contains(&self.visibility.as_str()) {
            out.push(format!(
                "`visibility` is `{}`, expected one of {VISIBILITIES:?}",
                self.visibility
            ));
        }
        if self.tool_servers.is_empty() {
            out.push("`tool_servers` is empty".into());
        }
        let mut seen = BTreeSet::new();
        for s in &self.tool_servers {
            if !scenario.tool_servers.contains(s) {
                out.push(format!(
                    "`tool_servers`: unknown tool server `{s}` (scenario `{}` has {:?})",
                    scenario.scenario_id, scenario.tool_servers
                ));
            }
            if !seen.insert(s) {
                out.push(format!("`tool_servers`: `{s}` listed twice"));
            }
        }
        if self.rubric.task_id != self.task_id {
            out.push(format!(
                "`rubric.task_id` is `{}`, expected `{}`",
                self.rubric.task_id, self.task_id
            ));
        }
        if self.rubric.title.trim().is_empty() || self.rubric.scoring.is_empty() {
            out.push("`rubric` needs a title and scoring levels".into());
        }
        for id in &self.npc_profile_ids {
            if scenario.npc(id).is_none() {
                out.push(format!("`npc_profile_ids`: unknown NPC `{id}`"));
            }
        }
        self.npc_behaviour_problems(&mut out);
        for (server, added) in &self.environment {
            if !self.tool_servers.contains(server) {
                out.push(format!(
                    "`environment.{server}`: not one of the task's `tool_servers`"
                ));
            }
            if !added.is_object() {
                out.push(format!("`environment.{server}` must be a JSON object"));
            }
        }
        if chrono::DateTime::parse_from_rfc3339(&self.now).is_err() {
            out.push(format!(
                "`now` is `{}`, expected an RFC 3339 time like 2026-03-02T09:00:00Z",
                self.now
            ));
        }
        let on_task_servers = |tool: &str| {
            self.tool_servers
                .iter()
                .any(|s| server_tools(s).is_some_and(|t| t.contains(&tool)))
        };
        for (i, step) in self.reference_solution.iter().enumerate() {
            if !on_task_servers(&step.tool_name) {
                out.push(format!(
                    "`reference_solution[{i}]`: unknown tool `{}` on the task's tool servers {:?}",
                    step.tool_name, self.tool_servers
                ));
            }
            if !step.parameters.is_object() {
                out.push(format!(
                    "`reference_solution[{i}].parameters` must be a JSON object"
                ));
            }
        }
        if self.checks.is_empty() {
            out.push("`checks` is empty: a task needs at least one programmatic check".into());
        }
        let mut ids = BTreeSet::new();
        for (i, check) in self.checks.iter().enumerate() {
            if !ids.insert(check.id.as_str()) {
                out.push(format!("`checks[{i}]`: duplicate check id `{}`", check.id));
            }
            if let Err(m) = check.validate(&self.tool_servers, &on_task_servers) {
                out.push(format!("`checks[{i}]`: {m}"));
            }
        }
        out
    }

    fn npc_behaviour_problems(&self, out: &mut Vec<String>) {
        for (id, behaviour) in &self.npc_behaviour {
            if !self.npc_profile_ids.contains(id) {
                out.push(format!(
                    "`npc_behaviour`: `{id}` is not one of the task's `npc_profile_ids`"
                ));
            }
            for (i, rule) in behaviour.replies.iter().enumerate() {
                let keywords = rule.when_any.iter().chain(rule.when_all.iter());
                if rule.when_any.is_empty() && rule.when_all.is_empty()
                    || keywords.clone().any(|k| k.trim().is_empty())
                {
                    out.push(format!(
                        "`npc_behaviour.{id}.replies[{i}]` needs non-empty `when_any` or `when_all` keywords"
                    ));
                }
                if rule.reply.trim().is_empty() {
                    out.push(format!("`npc_behaviour.{id}.replies[{i}].reply` is empty"));
                }
            }
            if behaviour
                .default_reply
                .as_ref()
                .is_some_and(|r| r.trim().is_empty())
            {
                out.push(format!("`npc_behaviour.{id}.default_reply` is empty"));
            }
        }
        for (i, expected) in self.reference_npc_replies.iter().enumerate() {
            let Some(step) = self.reference_solution.get(expected.after_step) else {
                out.push(format!(
                    "`reference_npc_replies[{i}].after_step` {} is past the reference solution",
                    expected.after_step
                ));
                continue;
            };
            if !matches!(step.tool_name.as_str(), "send_email" | "reply_to_email") {
                out.push(format!(
                    "`reference_npc_replies[{i}]`: step {} is `{}`, which sends no email",
                    expected.after_step, step.tool_name
                ));
            }
            if !self.npc_behaviour.contains_key(&expected.profile_id) {
                out.push(format!(
                    "`reference_npc_replies[{i}]`: `{}` has no `npc_behaviour`",
                    expected.profile_id
                ));
            }
        }
    }

    /// Parses a caller's task JSON (e.g. a `task_json` override) with a readable error.
    pub fn from_json(text: &str) -> Result<Task, String> {
        serde_json::from_str(text).map_err(|e| format!("invalid task JSON: {e}"))
    }

    /// The task's simulated people: the scenario's profiles, behaving as the task says.
    pub fn cast<'a>(&'a self, scenario: &'a Scenario) -> Cast<'a> {
        Cast {
            people: &scenario.npcs,
            behaviour: &self.npc_behaviour,
            now: &self.now,
        }
    }
}

// ---------------------------------------------------------------------------------

fn io_err(path: &Path, e: std::io::Error) -> ScenarioError {
    ScenarioError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn invalid(path: &Path, message: String) -> ScenarioError {
    ScenarioError::Invalid {
        path: path.to_path_buf(),
        message,
    }
}

/// Reads a JSON file; an error names the JSON path of the bad field (`checks[2]`)
/// besides serde's line and column, which alone point at a closing brace.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ScenarioError> {
    let text = fs::read_to_string(path).map_err(|e| io_err(path, e))?;
    let mut de = serde_json::Deserializer::from_str(&text);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let at = e.path().to_string();
        let inner = e.into_inner();
        ScenarioError::Parse {
            path: path.to_path_buf(),
            format: "JSON",
            message: if at == "." {
                inner.to_string()
            } else {
                format!("{at}: {inner}")
            },
        }
    })?;
    // Trailing characters after the value are an error, as with `serde_json::from_str`.
    de.end().map_err(|e| ScenarioError::Parse {
        path: path.to_path_buf(),
        format: "JSON",
        message: e.to_string(),
    })?;
    Ok(value)
}

/// The sub-folders of a folder of scenarios, sorted.
pub fn scenario_folders(dir: &Path) -> Result<Vec<PathBuf>, ScenarioError> {
    let mut folders = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        if entry
            .file_type()
            .map_err(|e| io_err(&entry.path(), e))?
            .is_dir()
        {
            folders.push(entry.path());
        }
    }
    folders.sort();
    Ok(folders)
}

fn read_manifest(folder: &Path) -> Result<Manifest, ScenarioError> {
    let toml_path = folder.join("scenario.toml");
    let json_path = folder.join("scenario.json");
    if toml_path.is_file() {
        let text = fs::read_to_string(&toml_path).map_err(|e| io_err(&toml_path, e))?;
        toml::from_str(&text).map_err(|e| ScenarioError::Parse {
            path: toml_path,
            format: "TOML",
            message: e.to_string(),
        })
    } else if json_path.is_file() {
        read_json(&json_path)
    } else {
        Err(invalid(folder, "no scenario.toml or scenario.json".into()))
    }
}

fn sorted_files(dir: &Path, ext: &str) -> Result<Vec<PathBuf>, ScenarioError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let path = entry.map_err(|e| io_err(dir, e))?.path();
        if path.is_file() && path.extension().and_then(|e| e.to_str()) == Some(ext) {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

fn collect_documents(
    root: &Path,
    dir: &Path,
    out: &mut BTreeMap<String, String>,
) -> Result<(), ScenarioError> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        entries.push(entry.map_err(|e| io_err(dir, e))?.path());
    }
    entries.sort();
    for path in entries {
        // Symlinks are followed only when they stay inside the seed folder.
        let Ok(real) = path.canonicalize() else {
            continue;
        };
        if !real.starts_with(root) {
            continue;
        }
        if real.is_dir() {
            collect_documents(root, &path, out)?;
        } else if real.is_file() {
            let rel = path
                .strip_prefix(root)
                .map_err(|_| invalid(&path, "outside seed_data".into()))?
                .components()
                .filter_map(|c| c.as_os_str().to_str())
                .collect::<Vec<_>>()
                .join("/");
            let text = fs::read_to_string(&path).map_err(|e| io_err(&path, e))?;
            out.insert(rel, text);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod worlds;
