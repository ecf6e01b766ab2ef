//! The result of scoring a rollout: every check with its reason, and the label and
//! score the task's scoring rule gives them.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// 1.0 for Full Credit, 0.0 for No Credit, in between for Partial Credit.
    pub score: f64,
    /// One of the rubric's scoring labels: "Full Credit", "Partial Credit", "No Credit".
    pub label: String,
    pub checks: Vec<CheckResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub id: String,
    pub description: String,
    pub passed: bool,
    pub reason: String,
}
