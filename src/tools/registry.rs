//! Environments hosted for outside agents (`POST /environments`): each one an
//! isolated, seeded set of tool servers behind an unguessable id, which is the
//! capability to use it. They live in memory, so each is bounded: a call's arguments
//! ([`EnvironmentLimits::max_argument_bytes`]), what its state may grow by (the bytes
//! of the state-changing calls it accepts), and its life (closed once idle for
//! [`EnvironmentLimits::idle`]). A rollout's own environment is not hosted here but
//! rebuilt from its events.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use uuid::Uuid;

use super::{Environment, Observation};
use crate::metrics::Metrics;

/// What one hosted environment may hold and how long it lives unused.
#[derive(Debug, Clone, Copy)]
pub struct EnvironmentLimits {
    pub max_open: usize,
    pub idle: Duration,
    /// Largest `parameters` of one call, in bytes of JSON.
    pub max_argument_bytes: usize,
    /// Bytes of arguments of state-changing calls accepted in all.
    pub max_state_bytes: usize,
}

/// One hosted environment.
pub struct Hosted {
    pub scenario_id: String,
    pub task_id: String,
    pub env: Mutex<Environment>,
    /// The tools that change state: their arguments count against the state limit.
    mutating: HashSet<String>,
    /// Bytes of arguments of the state-changing calls accepted so far.
    written: AtomicUsize,
    /// Milliseconds since the registry's epoch at the last request that used it.
    last_used: AtomicU64,
    limits: EnvironmentLimits,
}

impl Hosted {
    /// Runs one call within the environment's limits: too large arguments, or a change
    /// beyond what the environment may still take, are refused in band (nothing
    /// changes). `None` only when `server` is not part of the environment.
    pub fn step(&self, server: &str, tool_name: &str, parameters: &Value) -> Option<Observation> {
        let mut env = self.env.lock();
        if !env.server_names().iter().any(|s| s == server) {
            return None;
        }
        let size = json_len(parameters);
        let limits = &self.limits;
        if size > limits.max_argument_bytes {
            return Some(Observation::error(format!(
                "the parameters of `{tool_name}` are {size} bytes of JSON; at most {} are \
                 accepted in one call (max_tool_argument_bytes)",
                limits.max_argument_bytes
            )));
        }
        let mutating = self.mutating.contains(tool_name);
        let written = self.written.load(Ordering::Relaxed);
        if mutating && written + size > limits.max_state_bytes {
            return Some(Observation::error(format!(
                "this environment has taken {written} bytes of changes and may take at most \
                 {} (max_environment_state_bytes); create a new environment",
                limits.max_state_bytes
            )));
        }
        let before = env.now();
        let observation = env.step(server, tool_name, parameters)?;
        // The simulated clock moves only when a call changed the state.
        if env.now() != before {
            self.written.fetch_add(size, Ordering::Relaxed);
        }
        Some(observation)
    }
}

/// The length of `value` as compact JSON, without writing it out.
fn json_len(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("at most {0} environments may be open at once; delete some first")]
    Full(usize),
}

pub struct EnvironmentRegistry {
    hosted: RwLock<HashMap<String, Arc<Hosted>>>,
    limits: EnvironmentLimits,
    epoch: Instant,
    metrics: Metrics,
}

impl EnvironmentRegistry {
    pub fn new(limits: EnvironmentLimits, metrics: Metrics) -> Self {
        EnvironmentRegistry {
            hosted: RwLock::new(HashMap::new()),
            limits,
            epoch: Instant::now(),
            metrics,
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn is_idle(&self, hosted: &Hosted, now_ms: u64) -> bool {
        let last = hosted.last_used.load(Ordering::Relaxed);
        now_ms.saturating_sub(last) > self.limits.idle.as_millis() as u64
    }

    /// Hosts `env`, a seeded environment of `task_id`, and returns its id and server
    /// names.
    pub fn create(
        &self,
        scenario_id: &str,
        task_id: &str,
        env: Environment,
    ) -> Result<(String, Vec<String>), RegistryError> {
        let servers = env.server_names();
        let mutating = env
            .all_tools()
            .into_iter()
            .filter(|t| t.mutates_state)
            .map(|t| t.name)
            .collect();
        // 122 random bits: an id cannot be guessed, so it can serve as the capability.
        let id = format!("env_{}", Uuid::new_v4().simple());
        let mut hosted = self.hosted.write();
        if hosted.len() >= self.limits.max_open {
            return Err(RegistryError::Full(self.limits.max_open));
        }
        hosted.insert(
            id.clone(),
            Arc::new(Hosted {
                scenario_id: scenario_id.to_string(),
                task_id: task_id.to_string(),
                env: Mutex::new(env),
                mutating,
                written: AtomicUsize::new(0),
                last_used: AtomicU64::new(self.now_ms()),
                limits: self.limits,
            }),
        );
        self.metrics.environments_open.set(hosted.len() as i64);
        Ok((id, servers))
    }

    /// The environment, which this use keeps alive; `None` when unknown or idle too
    /// long (then it is closed now, if the sweep has not done it yet).
    pub fn get(&self, id: &str) -> Option<Arc<Hosted>> {
        let now = self.now_ms();
        let hosted = self.hosted.read().get(id).cloned()?;
        if self.is_idle(&hosted, now) {
            self.sweep();
            return None;
        }
        hosted.last_used.fetch_max(now, Ordering::Relaxed);
        Some(hosted)
    }

    pub fn delete(&self, id: &str) -> bool {
        let mut hosted = self.hosted.write();
        let removed = hosted.remove(id).is_some();
        self.metrics.environments_open.set(hosted.len() as i64);
        removed
    }

    /// Closes every environment idle longer than the limit; answers how many.
    pub fn sweep(&self) -> usize {
        let now = self.now_ms();
        let mut hosted = self.hosted.write();
        let before = hosted.len();
        hosted.retain(|_, h| !self.is_idle(h, now));
        let expired = before - hosted.len();
        self.metrics.environments_open.set(hosted.len() as i64);
        self.metrics.environments_expired.inc_by(expired as u64);
        if expired > 0 {
            tracing::info!(expired, open = hosted.len(), "idle environments closed");
        }
        expired
    }

    /// How often [`EnvironmentRegistry::sweep`] should run: an idle environment is
    /// freed within about a quarter of the idle limit (at most a minute) after it.
    pub fn sweep_every(&self) -> Duration {
        (self.limits.idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(60))
    }

    pub fn len(&self) -> usize {
        self.hosted.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
