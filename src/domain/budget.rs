//! Budgets: what a run may spend (tokens, US dollars), what it has spent, and when it
//! must pause. Pure: the price table comes from the config, the spend from the log.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::events::{Event, TokenUsage};

/// A run's spending cap; at least one of the two is set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Budget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_total_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<f64>,
}

/// A model's list price, in US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Price {
    pub prompt_usd_per_mtok: f64,
    pub completion_usd_per_mtok: f64,
}

impl Price {
    pub fn cost(&self, usage: &TokenUsage) -> f64 {
        (usage.prompt_tokens as f64 * self.prompt_usd_per_mtok
            + usage.completion_tokens as f64 * self.completion_usd_per_mtok)
            / 1_000_000.0
    }
}

/// The prices of a run's models as they were at launch. Recorded with the run so that
/// its cost (and the views) depend on the log alone, not on today's price table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunPrices {
    /// The agent's model (its turns and context summaries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<Price>,
    /// The rubric judge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<Price>,
}

impl RunPrices {
    /// `None` when no model of the run has a price (nothing to record).
    pub fn known(self) -> Option<RunPrices> {
        (self.model.is_some() || self.judge.is_some()).then_some(self)
    }
}

/// Prices per (provider, model), from the config's `[[prices]]`.
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    prices: HashMap<(String, String), Price>,
}

impl PriceTable {
    pub fn new(entries: impl IntoIterator<Item = (String, String, Price)>) -> PriceTable {
        PriceTable {
            prices: entries
                .into_iter()
                .map(|(provider, model, price)| ((provider, model), price))
                .collect(),
        }
    }

    pub fn get(&self, provider: &str, model: &str) -> Option<Price> {
        self.prices
            .get(&(provider.to_string(), model.to_string()))
            .copied()
    }
}

/// Tokens and dollars spent so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Spend {
    pub tokens: u64,
    pub cost_usd: f64,
}

/// The usage an event records and whether the judge spent it.
fn usage_of(event: &Event) -> Option<(&TokenUsage, bool)> {
    match event {
        Event::ModelCalled(e) => e.usage.as_ref().map(|u| (u, false)),
        Event::ContextSummarized(e) => e.usage.as_ref().map(|u| (u, false)),
        Event::RubricGraded(e) => e.usage.as_ref().map(|u| (u, true)),
        _ => None,
    }
}

impl Spend {
    /// Adds what `event` spent (nothing for events without usage). Tokens without a
    /// price count as tokens only.
    pub fn add(&mut self, event: &Event, prices: Option<&RunPrices>) {
        if let Some((usage, judge)) = usage_of(event) {
            self.add_usage(usage, judge, prices);
        }
    }

    /// Adds tokens a model call spent, priced as the judge's when `judge`.
    pub fn add_usage(&mut self, usage: &TokenUsage, judge: bool, prices: Option<&RunPrices>) {
        self.tokens += usage
            .total_tokens
            .max(usage.prompt_tokens + usage.completion_tokens);
        let price = prices.and_then(|p| if judge { p.judge } else { p.model });
        if let Some(price) = price {
            self.cost_usd += price.cost(usage);
        }
    }
}

/// Why `spend` has used up `budget`, if it has (`None` budget: unlimited).
pub fn exhausted(budget: Option<&Budget>, spend: &Spend) -> Option<String> {
    let budget = budget?;
    if let Some(max) = budget.max_total_tokens {
        if spend.tokens >= max {
            return Some(format!(
                "token budget spent: {} of max_total_tokens {max}",
                spend.tokens
            ));
        }
    }
    if let Some(max) = budget.max_cost_usd {
        if spend.cost_usd >= max {
            return Some(format!(
                "cost budget spent: ${:.6} of max_cost_usd ${max}",
                spend.cost_usd
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::chat::Message;
    use crate::domain::events::ModelCalled;

    fn called(prompt: u64, completion: u64) -> Event {
        Event::ModelCalled(ModelCalled {
            rollout_id: "rol_1".into(),
            step: 1,
            model: "m".into(),
            message: Message::assistant(Some("ok".into()), vec![]),
            usage: Some(TokenUsage {
                prompt_tokens: prompt,
                completion_tokens: completion,
                total_tokens: prompt + completion,
            }),
            logprobs: None,
            latency_ms: 1.0,
            called_at: chrono::DateTime::UNIX_EPOCH,
            tokens: None,
            policy_ordinal: 0,
        })
    }

    #[test]
    fn spend_counts_tokens_and_prices_them_per_million() {
        let prices = RunPrices {
            model: Some(Price {
                prompt_usd_per_mtok: 1.0,
                completion_usd_per_mtok: 4.0,
            }),
            judge: None,
        };
        let mut spend = Spend::default();
        spend.add(&called(1_000_000, 500_000), Some(&prices));
        assert_eq!(spend.tokens, 1_500_000);
        assert!((spend.cost_usd - 3.0).abs() < 1e-9);
        spend.add(&called(10, 0), None);
        assert_eq!(spend.tokens, 1_500_010);
    }

    #[test]
    fn a_budget_is_exhausted_when_either_cap_is_reached() {
        let spend = Spend {
            tokens: 220,
            cost_usd: 0.5,
        };
        assert_eq!(exhausted(None, &spend), None);
        let tokens = Budget {
            max_total_tokens: Some(221),
            max_cost_usd: None,
        };
        assert_eq!(exhausted(Some(&tokens), &spend), None);
        let tokens = Budget {
            max_total_tokens: Some(220),
            ..tokens
        };
        assert!(exhausted(Some(&tokens), &spend)
            .unwrap()
            .contains("max_total_tokens 220"));
        let cost = Budget {
            max_total_tokens: Some(1_000),
            max_cost_usd: Some(0.25),
        };
        assert!(exhausted(Some(&cost), &spend)
            .unwrap()
            .contains("max_cost_usd"));
    }
}
