//! The result of scoring a rollout: every check with its reason, and the label and
//! score the task's scoring rule gives them.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Verdict {
    /// 1.0 for Full Credit, 0.0 for No Credit, in between for Partial Credit.
    pub score: f64,
    /// One of the rubric's scoring labels: "Full Credit", "Partial Credit", "No Credit".
    pub label: String,
    pub checks: Vec<CheckResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckResult {
    pub id: String,
    pub description: String,
    pub passed: bool,
    pub reason: String,
}

/// The universal verifier's grade of a rollout against a task's `rubric_markdown`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RubricVerdict {
    pub status: RubricStatus,
    /// `provider/model` of the judge, when one was asked.
    pub judge: Option<String>,
    /// In [0, 1]; only when graded.
    pub score: Option<f64>,
    /// One of the scoring labels; only when graded.
    pub label: Option<String>,
    /// The judge's overall reason, or why there is no grade.
    pub reason: String,
    pub criteria: Vec<CriterionGrade>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RubricStatus {
    /// The judge answered with a grade.
    Graded,
    /// No judge model is configured: nothing was invented.
    Skipped,
    /// The judge was asked and could not give a usable grade (call failed, answer
    /// not in the asked format).
    Error,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CriterionGrade {
    pub criterion: String,
    pub label: String,
    pub score: f64,
    pub reason: String,
}
