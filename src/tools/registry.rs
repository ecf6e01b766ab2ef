//! Environments hosted for outside agents (`POST /environments`): each one an
//! isolated, seeded set of tool servers behind an unguessable id, which is the
//! capability to use it. They live in memory; a rollout's own environment is not
//! hosted here but rebuilt from its events.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use uuid::Uuid;

use super::{Environment, ToolError};
use crate::scenarios::Catalog;

/// One hosted environment.
pub struct Hosted {
    pub scenario_id: String,
    pub task_id: String,
    pub env: Mutex<Environment>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("Scenario '{0}' not found")]
    UnknownScenario(String),
    #[error("Task '{task}' not found in scenario '{scenario}'")]
    UnknownTask { scenario: String, task: String },
    #[error("at most {0} environments may be open at once; delete some first")]
    Full(usize),
    #[error("the environment could not be built: {0}")]
    Build(#[from] ToolError),
}

pub struct EnvironmentRegistry {
    hosted: RwLock<HashMap<String, Arc<Hosted>>>,
    max_open: usize,
}

impl EnvironmentRegistry {
    pub fn new(max_open: usize) -> Self {
        EnvironmentRegistry {
            hosted: RwLock::new(HashMap::new()),
            max_open,
        }
    }

    /// Builds a seeded environment of `task` and returns its id and server names.
    pub fn create(
        &self,
        catalog: &Catalog,
        scenario_id: &str,
        task_id: &str,
        seed: u64,
    ) -> Result<(String, Vec<String>), RegistryError> {
        let scenario = catalog
            .get(scenario_id)
            .ok_or_else(|| RegistryError::UnknownScenario(scenario_id.to_string()))?;
        let task = scenario
            .task(task_id)
            .ok_or_else(|| RegistryError::UnknownTask {
                scenario: scenario_id.to_string(),
                task: task_id.to_string(),
            })?;
        let env = Environment::new(scenario, task, seed)?;
        let servers = env.server_names();
        // 122 random bits: an id cannot be guessed, so it can serve as the capability.
        let id = format!("env_{}", Uuid::new_v4().simple());
        let mut hosted = self.hosted.write();
        if hosted.len() >= self.max_open {
            return Err(RegistryError::Full(self.max_open));
        }
        hosted.insert(
            id.clone(),
            Arc::new(Hosted {
                scenario_id: scenario_id.to_string(),
                task_id: task_id.to_string(),
                env: Mutex::new(env),
            }),
        );
        Ok((id, servers))
    }

    pub fn get(&self, id: &str) -> Option<Arc<Hosted>> {
        self.hosted.read().get(id).cloned()
    }

    pub fn delete(&self, id: &str) -> bool {
        self.hosted.write().remove(id).is_some()
    }

    pub fn len(&self) -> usize {
        self.hosted.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
