//! The statistics of results, as pure functions of scores: no I/O, no views, so every
//! figure can be checked against a hand computation (see `tests.rs`).
//!
//! Definitions (the README's API section says the same):
//!
//! - A task's **attempts** are its rollouts that completed with a score plus those that
//!   failed; a failed rollout scores 0 and is not a success. Cancelled and unfinished
//!   rollouts are not attempts. `n` is the number of attempts, `c` the number of
//!   **successes**: attempts scoring at least [`SUCCESS_THRESHOLD`] (1.0, "Full
//!   Credit").
//! - **pass@k** = 1 − C(n−c, k) / C(n, k): the chance that at least one of k attempts
//!   drawn without replacement succeeds (the unbiased estimator of Chen et al. 2021).
//! - **pass^k** = C(c, k) / C(n, k): the chance that all k succeed (Yao et al. 2024,
//!   τ-bench). Both are given for k = 1..=n, as products of ratios rather than
//!   factorials, so that they stay exact to rounding for any n.
//! - Overall figures are **macro averages**: the mean over tasks of each task's
//!   figure, over the tasks with at least one attempt; for pass@k and pass^k over the
//!   tasks with n ≥ k only.
//! - **Confidence intervals** are 95% percentile bootstrap intervals with
//!   [`RESAMPLES`] resamples from a fixed seed, so the same scores always give the
//!   same interval: over tasks for overall figures (a resample draws tasks with
//!   replacement), over a task's attempts for its mean score. An interval reflects
//!   only the spread in the sample: with few tasks or attempts it is narrow, and with
//!   one it is the point itself.

#[cfg(test)]
mod tests;

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;

/// The score at which an attempt counts as a success: Full Credit.
pub const SUCCESS_THRESHOLD: f64 = 1.0;
/// The coverage of every interval.
pub const CONFIDENCE: f64 = 0.95;
/// Bootstrap resamples per interval.
pub const RESAMPLES: usize = 2000;
/// The bootstrap's seed: the same data always gives the same interval.
const SEED: u64 = 0x5EED_57A7;

pub fn is_success(score: f64) -> bool {
    score >= SUCCESS_THRESHOLD
}

/// pass@k for k = 1..=n (entry k−1): 1 − C(n−c, k)/C(n, k), where
/// C(n−c, k)/C(n, k) = Π_{i<k} (n−c−i)/(n−i).
pub fn pass_at_k(n: usize, c: usize) -> Vec<f64> {
    let mut none = 1.0;
    (0..n)
        .map(|i| {
            none *= n.saturating_sub(c).saturating_sub(i) as f64 / (n - i) as f64;
            (1.0 - none).clamp(0.0, 1.0)
        })
        .collect()
}

/// pass^k for k = 1..=n (entry k−1): C(c, k)/C(n, k) = Π_{i<k} (c−i)/(n−i).
pub fn pass_hat_k(n: usize, c: usize) -> Vec<f64> {
    let mut all = 1.0;
    (0..n)
        .map(|i| {
            all *= c.saturating_sub(i) as f64 / (n - i) as f64;
            all.clamp(0.0, 1.0)
        })
        .collect()
}

pub fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// A two-sided confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

impl Interval {
    pub fn excludes_zero(&self) -> bool {
        self.low > 0.0 || self.high < 0.0
    }
}

/// The 95% percentile bootstrap interval of the mean of `values`: [`RESAMPLES`]
/// resamples of the same size drawn with replacement, the 2.5th and 97.5th
/// percentiles of their means. `None` without values.
pub fn bootstrap_mean(values: &[f64]) -> Option<Interval> {
    let first = *values.first()?;
    // Every resample of equal values has the same mean: no need to draw.
    if values.iter().all(|v| *v == first) {
        return Some(Interval {
            low: first,
            high: first,
        });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let n = values.len();
    let mut means: Vec<f64> = (0..RESAMPLES)
        .map(|_| (0..n).map(|_| values[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_unstable_by(f64::total_cmp);
    let tail = (1.0 - CONFIDENCE) / 2.0;
    Some(Interval {
        low: percentile(&means, tail),
        high: percentile(&means, 1.0 - tail),
    })
}

/// The `q` quantile of sorted values, interpolating linearly between order statistics.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
    let below = h.floor() as usize;
    let above = (below + 1).min(sorted.len() - 1);
    sorted[below] + (h - below as f64) * (sorted[above] - sorted[below])
}

/// One task's figures from its attempts' scores.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskFigures {
    pub attempts: usize,
    pub successes: usize,
    pub mean_score: Option<f64>,
    /// Bootstrap over the task's attempts.
    pub mean_score_ci: Option<Interval>,
    /// Entry k−1 is pass@k, k = 1..=attempts.
    pub pass_at_k: Vec<f64>,
    pub pass_hat_k: Vec<f64>,
}

/// `scores` are the task's attempts: a failed attempt is a 0.
pub fn task_figures(scores: &[f64]) -> TaskFigures {
    let n = scores.len();
    let c = scores.iter().filter(|s| is_success(**s)).count();
    TaskFigures {
        attempts: n,
        successes: c,
        mean_score: mean(scores),
        mean_score_ci: bootstrap_mean(scores),
        pass_at_k: pass_at_k(n, c),
        pass_hat_k: pass_hat_k(n, c),
    }
}

/// A macro average over tasks and its bootstrap interval over tasks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Averaged {
    pub value: f64,
    pub ci: Interval,
    /// How many tasks it averages.
    pub tasks: usize,
}

fn averaged(values: &[f64]) -> Option<Averaged> {
    Some(Averaged {
        value: mean(values)?,
        ci: bootstrap_mean(values)?,
        tasks: values.len(),
    })
}

/// The overall figures of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct OverallFigures {
    /// Mean over tasks with an attempt of the task's mean score.
    pub mean_score: Option<Averaged>,
    /// Entry k−1: pass@k averaged over the tasks with at least k attempts.
    pub pass_at_k: Vec<Averaged>,
    pub pass_hat_k: Vec<Averaged>,
}

pub fn overall_figures(tasks: &[TaskFigures]) -> OverallFigures {
    let means: Vec<f64> = tasks.iter().filter_map(|t| t.mean_score).collect();
    let max_n = tasks.iter().map(|t| t.attempts).max().unwrap_or(0);
    let per_k = |pick: fn(&TaskFigures) -> &[f64]| -> Vec<Averaged> {
        (0..max_n)
            .filter_map(|i| {
                let values: Vec<f64> = tasks
                    .iter()
                    .filter_map(|t| pick(t).get(i))
                    .copied()
                    .collect();
                averaged(&values)
            })
            .collect()
    };
    OverallFigures {
        mean_score: averaged(&means),
        pass_at_k: per_k(|t| &t.pass_at_k),
        pass_hat_k: per_k(|t| &t.pass_hat_k),
    }
}

/// The paired comparison of two runs over the tasks both attempted.
#[derive(Debug, Clone, PartialEq)]
pub struct Paired {
    /// Mean over tasks of (b − a).
    pub mean_difference: Option<f64>,
    /// Paired bootstrap over tasks: a resample draws tasks, each with both its scores.
    pub ci: Option<Interval>,
    /// Whether the interval excludes 0.
    pub distinguishable: bool,
}

/// `differences` are per task: b's mean score − a's mean score.
pub fn paired(differences: &[f64]) -> Paired {
    let ci = bootstrap_mean(differences);
    Paired {
        mean_difference: mean(differences),
        distinguishable: ci.is_some_and(|ci| ci.excludes_zero()),
        ci,
    }
}
