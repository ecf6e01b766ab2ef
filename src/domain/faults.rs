//! Fault injection (`tool_faults` on a run): tool calls fail in band, as a flaky real
//! service answers, at a chosen rate and with added latency. Whether a call fails is
//! a function of the fault seed, the rollout's position in its run and the call's
//! position in the rollout, never of a clock or a global generator: two runs with the
//! same seed and tasks see the same failures, and a resumed rollout the same ones.
//! A failed call never reaches the environment; it is recorded with its `fault`, so a
//! rebuild skips it.

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

/// Upper bound of the added latency, so a typo cannot park a rollout for hours.
pub const MAX_LATENCY_MS: u64 = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ToolFaults {
    /// Share of tool calls that fail, 0–1.
    pub error_rate: f64,
    /// Added to every tool call, 0–60,000 ms.
    #[serde(default)]
    pub latency_ms: u64,
    /// The same seed gives the same failures.
    #[serde(default)]
    pub seed: u64,
}

/// How an injected failure presents itself; the name is what `ToolCalled.fault` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    Unavailable,
    RateLimited,
    Timeout,
}

const KINDS: [FaultKind; 3] = [
    FaultKind::Unavailable,
    FaultKind::RateLimited,
    FaultKind::Timeout,
];

impl FaultKind {
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Unavailable => "unavailable",
            FaultKind::RateLimited => "rate_limited",
            FaultKind::Timeout => "timeout",
        }
    }

    /// The observation the agent reads: what a real service's error says.
    pub fn observation(self, server: Option<&str>, tool_name: &str) -> String {
        let service = server.unwrap_or("tool");
        match self {
            FaultKind::Unavailable => format!(
                "Error: 503 Service Unavailable: the {service} service could not handle \
                 `{tool_name}` right now; nothing was changed. Try again."
            ),
            FaultKind::RateLimited => format!(
                "Error: 429 Too Many Requests: the {service} service is rate limiting \
                 `{tool_name}`; nothing was changed. Wait and retry."
            ),
            FaultKind::Timeout => format!(
                "Error: 504 Gateway Timeout: the {service} service did not answer \
                 `{tool_name}` in time; nothing was changed. Try again."
            ),
        }
    }
}

impl ToolFaults {
    /// The fault of call number `call_index` (0-based) of the rollout at `rollout_index`
    /// in its run, if it fails.
    pub fn fault_for(&self, rollout_index: usize, call_index: usize) -> Option<FaultKind> {
        if self.error_rate <= 0.0 {
            return None;
        }
        // One generator per call, keyed by the three numbers: the decision of a call
        // does not depend on how many calls came before it in other rollouts.
        let key = self.seed
            ^ (rollout_index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ (call_index as u64 + 1).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
        let mut rng = ChaCha8Rng::seed_from_u64(key);
        let draw: f64 = rng.random();
        (draw < self.error_rate).then(|| KINDS[rng.random_range(0..KINDS.len())])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(faults: &ToolFaults) -> Vec<Option<FaultKind>> {
        (0..4)
            .flat_map(|r| (0..50).map(move |c| (r, c)))
            .map(|(r, c)| faults.fault_for(r, c))
            .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_faults_and_another_seed_others() {
        let faults = ToolFaults {
            error_rate: 0.3,
            latency_ms: 0,
            seed: 7,
        };
        assert_eq!(pattern(&faults), pattern(&faults));
        let other = ToolFaults { seed: 8, ..faults };
        assert_ne!(pattern(&faults), pattern(&other));
    }

    #[test]
    fn the_rate_is_respected_and_the_bounds_are_exact() {
        let rate = |error_rate| {
            let faults = ToolFaults {
                error_rate,
                latency_ms: 0,
                seed: 1,
            };
            let all = pattern(&faults);
            all.iter().filter(|f| f.is_some()).count() as f64 / all.len() as f64
        };
        assert_eq!(rate(0.0), 0.0);
        assert_eq!(rate(1.0), 1.0);
        let measured = rate(0.25);
        assert!((0.15..0.35).contains(&measured), "{measured}");
    }

    #[test]
    fn every_kind_reads_as_an_error_that_changed_nothing() {
        for kind in KINDS {
            let text = kind.observation(Some("email"), "send_email");
            assert!(text.starts_with("Error: "), "{text}");
            assert!(text.contains("send_email") && text.contains("nothing was changed"));
        }
    }
}
