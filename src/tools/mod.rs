//! The simulated tool servers an agent works with (email, calendar, HRMS) and the
//! [`Environment`] that bundles one isolated, seeded set of them for a rollout.
//!
//! Everything here is pure and deterministic: the state of an environment is a function
//! of the scenario's seed state, the task (its simulated clock start), the seed and the
//! sequence of [`Environment::step`] calls — never of wall-clock time or randomness.
//! That is what lets the service rebuild a rollout's environment by replaying its
//! recorded tool calls. Ids come from per-collection counters (`msg_0010`, `evt_0016`,
//! `LR-0008`), and the simulated clock starts at the task's `now` and advances
//! [`CLOCK_STEP_SECONDS`] after every successful state-changing call.
//!
//! A bad call is never a panic or a transport error: it is an [`Observation`] whose
//! text starts with `Error:` and says what was wrong and how to fix it.
//!
//! Over 600 lines: the environment, the server trait and the shared tool-set and seed
//! caches they build on.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::domain::chat::ToolSet;

pub mod calendar;
pub mod commerce;
pub mod documents;
pub mod email;
pub mod finance;
pub mod hrms;
pub mod money;
pub mod registry;
pub mod remote;
pub mod replay;
mod schema;
pub mod ticketing;

pub use schema::validate as validate_parameters;

/// Simulated seconds that pass after each successful state-changing call.
pub const CLOCK_STEP_SECONDS: i64 = 60;

/// One tool as the agent is offered it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub input_schema: Value,
    pub mutates_state: bool,
}

impl ToolSpec {
    /// The tool as the model is offered it.
    pub fn definition(self) -> crate::domain::chat::ToolDefinition {
        crate::domain::chat::ToolDefinition {
            name: self.name,
            description: self.description,
            parameters: self.input_schema,
        }
    }
}

/// What the agent reads back from a tool call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub observation: String,
    pub is_error: bool,
    pub reward: f64,
    pub done: bool,
}

impl Observation {
    pub fn ok(text: String) -> Self {
        Self {
            observation: text,
            is_error: false,
            reward: 0.0,
            done: false,
        }
    }

    /// An in-band error the agent can read and recover from.
    pub fn error(message: impl AsRef<str>) -> Self {
        Self {
            observation: format!("Error: {}", message.as_ref()),
            is_error: true,
            reward: 0.0,
            done: false,
        }
    }
}

/// An environment could not be built (bad seed state, unknown server).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    #[error("unknown tool server `{0}`")]
    UnknownServer(String),
    #[error("seed state of `{server}` is invalid: {message}")]
    BadSeed { server: String, message: String },
    #[error("task clock `{0}` is not an RFC 3339 time")]
    BadClock(String),
}

/// What a tool server sees of the world besides its own state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ctx {
    /// The simulated time of this call.
    pub now: DateTime<Utc>,
}

impl Ctx {
    pub fn now_text(&self) -> String {
        fmt_datetime(self.now)
    }
}

/// One stateful tool server.
pub trait ToolServer {
    fn name(&self) -> &'static str;
    fn tools(&self) -> Vec<ToolSpec>;
    /// Runs a call whose parameters already satisfy the tool's schema. `Err` is the
    /// text of an in-band error (without the `Error: ` prefix).
    fn step(&mut self, ctx: &Ctx, tool: &str, params: &Map<String, Value>)
        -> Result<Value, String>;
    /// The full state, as checks and snapshots read it.
    fn data(&self) -> Value;
    fn human_readable(&self) -> String;
}

#[derive(Debug, Clone)]
enum Kind {
    Email(email::EmailServer),
    Calendar(calendar::CalendarServer),
    Hrms(hrms::HrmsServer),
    Commerce(commerce::CommerceServer),
    Ticketing(ticketing::TicketingServer),
    Finance(finance::FinanceServer),
}

/// A server and, once asked for, its state as JSON. Environments share a seeded server
/// until a call changes it, so the ten thousand rollouts that leave a server as seeded
/// are scored against one tree, built once.
#[derive(Debug, Clone)]
struct Server {
    kind: Kind,
    data: OnceLock<Arc<Value>>,
}

impl Server {
    fn new(kind: Kind) -> Server {
        Server {
            kind,
            data: OnceLock::new(),
        }
    }

    fn get(&self) -> &dyn ToolServer {
        match &self.kind {
            Kind::Email(s) => s,
            Kind::Calendar(s) => s,
            Kind::Hrms(s) => s,
            Kind::Commerce(s) => s,
            Kind::Ticketing(s) => s,
            Kind::Finance(s) => s,
        }
    }

    fn get_mut(&mut self) -> &mut dyn ToolServer {
        match self.kind_mut() {
            Kind::Email(s) => s,
            Kind::Calendar(s) => s,
            Kind::Hrms(s) => s,
            Kind::Commerce(s) => s,
            Kind::Ticketing(s) => s,
            Kind::Finance(s) => s,
        }
    }

    /// The server to change: its JSON, if built, is out of date from here on.
    fn kind_mut(&mut self) -> &mut Kind {
        self.data = OnceLock::new();
        &mut self.kind
    }

    /// The server's JSON, kept for next time only while the server is shared (a
    /// seed's): a rollout's own changed copy is scored once, and a tree kept in it
    /// would live as long as the rollout.
    fn data(self: &Arc<Self>) -> Arc<Value> {
        if Arc::strong_count(self) > 1 {
            self.data
                .get_or_init(|| Arc::new(self.get().data()))
                .clone()
        } else {
            Arc::new(self.get().data())
        }
    }
}

/// Every server's state of an environment as checks read it, without copying the
/// servers' JSON (see [`Environment::state_view`]).
#[derive(Debug, Clone)]
pub struct EnvironmentState(Vec<(String, Arc<Value>)>);

impl crate::verify::StateRoot for EnvironmentState {
    fn server(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| &**v)
    }
}

/// Seeded environments of a scenario by (clock, servers): what `Environment::new`
/// depends on besides the scenario, which never changes once loaded.
#[derive(Debug, Clone, Default)]
pub struct SeedCache(Arc<parking_lot::Mutex<HashMap<SeedKey, Environment>>>);

/// A task's clock and its tool servers' names.
type SeedKey = (String, Vec<String>);

/// One isolated, seeded set of tool servers for one rollout.
///
/// Servers and the tool index are shared with the scenario's seed until a call
/// changes them (copy on write): building one is a clone of a few pointers, and ten
/// thousand rollouts that have not touched a server hold one copy of it.
#[derive(Debug, Clone)]
pub struct Environment {
    servers: Vec<(String, Arc<Server>)>,
    index: Arc<ToolIndex>,
    /// Every tool as the model is shown it, in server order.
    definitions: Arc<ToolSet>,
    now: DateTime<Utc>,
    seed: u64,
    steps: u64,
}

/// Tool name → (server index, spec).
type ToolIndex = BTreeMap<String, (usize, ToolSpec)>;

/// The tool index and definitions of a list of servers. A server's tools depend on its
/// kind alone, never on its data, so every environment of the same servers shares
/// one copy: building them anew cost a fifth of an oracle rollout's CPU. A list holds
/// each of a scenario's few servers at most once, so the map stays small.
fn tool_set(names: &[String], servers: &[(String, Arc<Server>)]) -> (Arc<ToolIndex>, Arc<ToolSet>) {
    if let Some(set) = cached_tool_set(names) {
        return set;
    }
    let specs: Vec<(usize, ToolSpec)> = servers
        .iter()
        .enumerate()
        .flat_map(|(i, (_, server))| server.get().tools().into_iter().map(move |t| (i, t)))
        .collect();
    let definitions: ToolSet = specs.iter().map(|(_, t)| t.clone().definition()).collect();
    let index: ToolIndex = specs
        .into_iter()
        .map(|(i, t)| (t.name.clone(), (i, t)))
        .collect();
    let set = (Arc::new(index), Arc::new(definitions));
    tool_sets().write().insert(names.to_vec(), set.clone());
    set
}

type SharedToolSets = HashMap<Vec<String>, (Arc<ToolIndex>, Arc<ToolSet>)>;

fn tool_sets() -> &'static parking_lot::RwLock<SharedToolSets> {
    static SETS: OnceLock<parking_lot::RwLock<SharedToolSets>> = OnceLock::new();
    SETS.get_or_init(Default::default)
}

fn cached_tool_set(names: &[String]) -> Option<(Arc<ToolIndex>, Arc<ToolSet>)> {
    tool_sets().read().get(names).cloned()
}

/// Whether a task's additions to a server's seed leave it as it is (a family's
/// instance 0, typically: empty lists).
fn adds_nothing(base: &Value, added: &Value) -> bool {
    match (base, added) {
        (Value::Object(base), Value::Object(added)) => added
            .iter()
            .all(|(key, value)| base.get(key).is_some_and(|b| adds_nothing(b, value))),
        (Value::Array(_), Value::Array(items)) => items.is_empty(),
        _ => false,
    }
}

/// A scenario's seed state of one server with a task's additions: lists are extended,
/// objects merged key by key, anything else replaced.
fn seed_with(base: &Value, added: &Value) -> Result<Value, String> {
    fn merge(base: &mut Value, added: &Value, path: &str) -> Result<(), String> {
        match (base, added) {
            (Value::Object(base), Value::Object(added)) => {
                for (key, value) in added {
                    let here = format!("{path}.{key}");
                    match base.get_mut(key) {
                        Some(existing) => merge(existing, value, &here)?,
                        None => {
                            base.insert(key.clone(), value.clone());
                        }
                    }
                }
                Ok(())
            }
            (Value::Array(base), Value::Array(added)) => {
                base.extend(added.iter().cloned());
                Ok(())
            }
            (Value::Array(_) | Value::Object(_), _) => Err(format!(
                "the task's environment{path} must be a {} like the scenario's",
                if path.is_empty() {
                    "an object"
                } else {
                    "list or object"
                }
            )),
            (base, added) => {
                *base = added.clone();
                Ok(())
            }
        }
    }
    let mut seed = base.clone();
    merge(&mut seed, added, "")?;
    Ok(seed)
}

/// What an environment is built from: the scenario's seed state per server, its
/// documents and its cache of seeded environments, and the task's clock, servers and
/// additions to the seed state (a family's instance's own records).
#[derive(Clone, Copy)]
pub struct World<'a> {
    pub seed_state: &'a BTreeMap<String, Value>,
    pub documents: &'a BTreeMap<String, String>,
    pub cache: &'a SeedCache,
    pub now: &'a str,
    pub servers: &'a [String],
    pub additions: &'a BTreeMap<String, Value>,
}

impl Environment {
    /// The world's tool servers in their seed state.
    pub fn new(world: &World, seed: u64) -> Result<Environment, ToolError> {
        // A task that adds to the seed state (a family's instance, usually) has a world
        // of its own: cached, every instance seed ever played would stay in memory.
        let empty = Value::Object(Map::new());
        let unchanged = world.additions.iter().all(|(server, added)| {
            adds_nothing(world.seed_state.get(server).unwrap_or(&empty), added)
        });
        if !unchanged {
            return Self::build(world, seed);
        }
        let key = (world.now.to_string(), world.servers.to_vec());
        if let Some(env) = world.cache.0.lock().get(&key) {
            return Ok(Environment {
                seed,
                ..env.clone()
            });
        }
        let env = Self::build(world, seed)?;
        world.cache.0.lock().insert(key, env.clone());
        Ok(env)
    }

    /// The tools the world's environment offers, without building its servers once
    /// any environment of the same servers has been built.
    pub fn definitions_for(world: &World) -> Result<Arc<ToolSet>, ToolError> {
        if let Some((_, definitions)) = cached_tool_set(world.servers) {
            return Ok(definitions);
        }
        Ok(Self::new(world, 0)?.definitions)
    }

    /// Builds the world's tool servers from the seed state.
    fn build(world: &World, seed: u64) -> Result<Environment, ToolError> {
        let now = DateTime::parse_from_rfc3339(world.now)
            .map_err(|_| ToolError::BadClock(world.now.to_string()))?
            .with_timezone(&Utc);
        let empty = Value::Object(Map::new());
        let mut servers = Vec::new();
        for name in world.servers {
            let bad = |message: String| ToolError::BadSeed {
                server: name.clone(),
                message,
            };
            let scenario_seed = world.seed_state.get(name).unwrap_or(&empty);
            let seed_state = match world.additions.get(name) {
                Some(added) => Cow::Owned(seed_with(scenario_seed, added).map_err(bad)?),
                None => Cow::Borrowed(scenario_seed),
            };
            let seed_state = &*seed_state;
            let server = match name.as_str() {
                "email" => Kind::Email(email::EmailServer::from_seed(seed_state).map_err(bad)?),
                "calendar" => {
                    Kind::Calendar(calendar::CalendarServer::from_seed(seed_state).map_err(bad)?)
                }
                "commerce" => Kind::Commerce(
                    commerce::CommerceServer::from_seed(seed_state, world.documents)
                        .map_err(bad)?,
                ),
                "hrms" => Kind::Hrms(
                    hrms::HrmsServer::from_seed(seed_state, world.documents).map_err(bad)?,
                ),
                "ticketing" => Kind::Ticketing(
                    ticketing::TicketingServer::from_seed(seed_state, world.documents)
                        .map_err(bad)?,
                ),
                "finance" => Kind::Finance(
                    finance::FinanceServer::from_seed(seed_state, world.documents).map_err(bad)?,
                ),
                other => return Err(ToolError::UnknownServer(other.to_string())),
            };
            servers.push((name.clone(), Arc::new(Server::new(server))));
        }
        let (index, definitions) = tool_set(world.servers, &servers);
        Ok(Environment {
            servers,
            index,
            definitions,
            now,
            seed,
            steps: 0,
        })
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The simulated time the next call will see.
    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    pub fn server_names(&self) -> Vec<String> {
        self.servers.iter().map(|(n, _)| n.clone()).collect()
    }

    pub fn tools(&self, server: &str) -> Option<Vec<ToolSpec>> {
        self.server(server).map(|s| s.get().tools())
    }

    /// Every tool of every server, in server order.
    pub fn all_tools(&self) -> Vec<ToolSpec> {
        self.servers
            .iter()
            .flat_map(|(_, s)| s.get().tools())
            .collect()
    }

    /// Every tool as the model is shown it, shared by every copy of this environment.
    pub fn tool_definitions(&self) -> Arc<ToolSet> {
        self.definitions.clone()
    }

    pub fn server_of(&self, tool_name: &str) -> Option<&str> {
        self.index
            .get(tool_name)
            .and_then(|(i, _)| self.servers.get(*i))
            .map(|(n, _)| n.as_str())
    }

    /// Runs one call on `server`. `None` only when the server is not part of this
    /// environment; every other problem is an in-band error observation.
    pub fn step(
        &mut self,
        server: &str,
        tool_name: &str,
        parameters: &Value,
    ) -> Option<Observation> {
        let position = self.servers.iter().position(|(n, _)| n == server)?;
        let spec = match self.index.get(tool_name) {
            Some((i, spec)) if *i == position => spec.clone(),
            Some((i, _)) => {
                let other = self.servers.get(*i).map(|(n, _)| n.as_str()).unwrap_or("?");
                return Some(Observation::error(format!(
                    "tool `{tool_name}` belongs to the `{other}` server, not `{server}`"
                )));
            }
            None => {
                let names: Vec<String> = self.servers[position]
                    .1
                    .get()
                    .tools()
                    .into_iter()
                    .map(|t| t.name)
                    .collect();
                return Some(Observation::error(format!(
                    "unknown tool `{tool_name}` on the `{server}` server. Available tools: {}",
                    names.join(", ")
                )));
            }
        };
        let empty = Map::new();
        let params = match parameters {
            Value::Object(map) => map,
            Value::Null => &empty,
            other => {
                return Some(Observation::error(format!(
                    "parameters of `{tool_name}` must be a JSON object, got {}",
                    schema::kind_of(other)
                )))
            }
        };
        if let Err(e) = schema::validate(&spec.input_schema, params) {
            return Some(Observation::error(format!("{e} (tool `{tool_name}`)")));
        }
        let ctx = Ctx { now: self.now };
        let result = Arc::make_mut(&mut self.servers[position].1)
            .get_mut()
            .step(&ctx, tool_name, params);
        Some(match result {
            Ok(value) => {
                if spec.mutates_state {
                    self.now += Duration::seconds(CLOCK_STEP_SECONDS);
                    self.steps += 1;
                }
                Observation::ok(serde_json::to_string(&value).unwrap_or_else(|_| value.to_string()))
            }
            Err(message) => Observation::error(message),
        })
    }

    /// Runs a call by tool name alone (tool names are unique across servers).
    pub fn call(&mut self, tool_name: &str, parameters: &Value) -> Observation {
        match self.server_of(tool_name).map(str::to_string) {
            Some(server) => self
                .step(&server, tool_name, parameters)
                .unwrap_or_else(|| Observation::error("unknown tool server")),
            None => Observation::error(format!(
                "unknown tool `{tool_name}`. Available tools: {}",
                self.index.keys().cloned().collect::<Vec<_>>().join(", ")
            )),
        }
    }

    /// `{"status":"ok","tool_server","data","human_readable"}` for one server.
    pub fn snapshot(&self, server: &str) -> Option<Value> {
        let s = self.server(server)?.get();
        Some(json!({
            "status": "ok",
            "tool_server": server,
            "data": s.data(),
            "human_readable": s.human_readable(),
        }))
    }

    /// Every server's data keyed by server name: what checks read.
    pub fn state(&self) -> Value {
        Value::Object(
            self.servers
                .iter()
                .map(|(n, s)| (n.clone(), Arc::unwrap_or_clone(s.data())))
                .collect(),
        )
    }

    /// The same as [`Environment::state`] for checks, sharing each server's JSON with
    /// every environment that holds the same server.
    pub fn state_view(&self) -> EnvironmentState {
        EnvironmentState(
            self.servers
                .iter()
                .map(|(n, s)| (n.clone(), s.data()))
                .collect(),
        )
    }

    fn server(&self, name: &str) -> Option<&Server> {
        self.servers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| &**s)
    }
}

// ---------------------------------------------------------------------------------
// Shared helpers for the servers.

/// `2026-03-04T10:30:00Z`.
pub fn fmt_datetime(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Accepts RFC 3339 (any offset, converted to UTC) and, read as UTC,
/// `YYYY-MM-DDTHH:MM[:SS]` or `YYYY-MM-DD HH:MM[:SS]`.
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|f| chrono::NaiveDateTime::parse_from_str(s, f).ok())
    .map(|n| n.and_utc())
}

pub fn parse_date(s: &str) -> Option<chrono::NaiveDate> {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// The next id of a collection: `prefix` + (largest existing number + 1), zero-padded.
pub(crate) fn next_id<'a>(
    prefix: &str,
    width: usize,
    existing: impl Iterator<Item = &'a str>,
) -> String {
    let max = existing
        .filter_map(|id| id.strip_prefix(prefix))
        .filter_map(|n| n.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    format!("{prefix}{:0width$}", max + 1)
}

/// Typed access to parameters that already passed schema validation.
pub(crate) struct Params<'a>(pub &'a Map<String, Value>);

impl<'a> Params<'a> {
    pub fn str(&self, key: &str) -> Result<&'a str, String> {
        self.opt_str(key)
            .ok_or_else(|| format!("missing required parameter `{key}`"))
    }

    pub fn opt_str(&self, key: &str) -> Option<&'a str> {
        self.0.get(key).and_then(Value::as_str)
    }

    pub fn bool_or(&self, key: &str, default: bool) -> bool {
        self.0.get(key).and_then(Value::as_bool).unwrap_or(default)
    }

    pub fn u64_or(&self, key: &str, default: u64) -> u64 {
        self.0.get(key).and_then(Value::as_u64).unwrap_or(default)
    }

    pub fn strings(&self, key: &str) -> Option<Vec<String>> {
        self.0.get(key).and_then(Value::as_array).map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
    }

    pub fn date(&self, key: &str) -> Result<chrono::NaiveDate, String> {
        let s = self.str(key)?;
        parse_date(s)
            .ok_or_else(|| format!("parameter `{key}` must be a date like 2026-03-04, got {s:?}"))
    }

    pub fn datetime(&self, key: &str) -> Result<DateTime<Utc>, String> {
        let s = self.str(key)?;
        parse_datetime(s).ok_or_else(|| {
            format!("parameter `{key}` must be a date-time like 2026-03-04T10:30:00Z, got {s:?}")
        })
    }
}

/// A tool spec from its parts.
pub(crate) fn spec(
    name: &str,
    description: &str,
    mutates_state: bool,
    input_schema: Value,
) -> ToolSpec {
    ToolSpec {
        name: name.to_string(),
        description: description.to_string(),
        input_schema,
        mutates_state,
    }
}

/// Whether a text looks like an email address (one `@`, something on both sides, a dot
/// in the domain).
pub(crate) fn is_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
                && !s.contains(char::is_whitespace)
        }
        None => false,
    }
}

#[cfg(test)]
pub(crate) mod tests;
