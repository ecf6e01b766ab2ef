//! API keys. A key is held in a type that never prints, and never enters the event
//! log: runs record only that a key was given. Keys live in memory for now, so a run
//! with a key cannot resume after a restart (it fails with that reason).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use parking_lot::RwLock;

/// A secret string whose `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: String) -> ApiKey {
        ApiKey(key)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The keys of live runs, by run id.
#[derive(Clone, Default)]
pub struct SecretStore {
    keys: Arc<RwLock<HashMap<String, ApiKey>>>,
}

impl SecretStore {
    pub fn put(&self, run_id: &str, key: ApiKey) {
        self.keys.write().insert(run_id.to_string(), key);
    }

    pub fn get(&self, run_id: &str) -> Option<ApiKey> {
        self.keys.read().get(run_id).cloned()
    }

    /// Forgets a run's key (run deleted).
    pub fn forget(&self, run_id: &str) {
        self.keys.write().remove(run_id);
    }
}
