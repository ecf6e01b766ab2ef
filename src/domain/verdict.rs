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

pub const FULL_CREDIT: &str = "Full Credit";
pub const PARTIAL_CREDIT: &str = "Partial Credit";
pub const NO_CREDIT: &str = "No Credit";

/// The scoring label of a score in [0, 1].
pub fn label_of(score: f64) -> &'static str {
    if score >= 1.0 {
        FULL_CREDIT
    } else if score <= 0.0 {
        NO_CREDIT
    } else {
        PARTIAL_CREDIT
    }
}

/// A rollout's score and label from its checks' verdict and its rubric grade.
///
/// The checks are facts about the final state and gate the result; the judge grades
/// how the work was done. Without a graded rubric (none, skipped, or the judge
/// failed) the checks' verdict stands. A task with no checks is scored by the rubric
/// alone. Otherwise a verdict of 0 stays 0 (a required check failed, or nothing was
/// achieved) and any other score is the mean of the two.
pub fn combine(verdict: &Verdict, rubric: Option<&RubricVerdict>) -> (f64, &'static str) {
    let graded = rubric
        .filter(|r| r.status == RubricStatus::Graded)
        .and_then(|r| r.score);
    let score = match graded {
        None => verdict.score,
        Some(rubric) if verdict.checks.is_empty() => rubric,
        Some(_) if verdict.score <= 0.0 => 0.0,
        Some(rubric) => (verdict.score + rubric) / 2.0,
    };
    (score, label_of(score))
}
