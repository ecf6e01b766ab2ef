//! A run's budget as a launch or a resume takes it, and the price a cost cap needs.

use deserr::Deserr;
use serde_json::Value;

use super::body::{read, BodyErrors};
use super::validate::Checker;
use crate::domain::budget::Budget;
use crate::domain::events::ModelSettings;
use crate::error::ApiError;

/// A run's budget as a launch or a resume takes it: at least one of the two.
#[derive(Deserr, utoipa::ToSchema)]
#[deserr(error = BodyErrors, deny_unknown_fields)]
pub struct BudgetBody {
    /// Tokens (prompt + completion, of every model call of the run), at least 1.
    #[deserr(default)]
    #[schema(value_type = Option<u64>)]
    pub max_total_tokens: Option<i64>,
    /// US dollars, more than 0, at the prices of the config's price table (the run's
    /// provider and model must have one).
    #[deserr(default)]
    pub max_cost_usd: Option<f64>,
}

impl BudgetBody {
    pub fn check(self, c: &mut Checker) -> Option<Budget> {
        let prefix: &[&str] = &["body", "budget"];
        let max_total_tokens = self
            .max_total_tokens
            .and_then(|n| c.in_range(prefix, "max_total_tokens", n, 1, i64::MAX));
        let max_cost_usd = self
            .max_cost_usd
            .and_then(|n| c.in_range(prefix, "max_cost_usd", n, 0.0, f64::MAX));
        if max_cost_usd == Some(0.0) {
            c.push(
                prefix,
                "max_cost_usd",
                "Input should be greater than 0",
                "greater_than",
            );
        }
        if c.names(prefix) {
            return None;
        }
        if max_total_tokens.is_none() && max_cost_usd.is_none() {
            c.push(
                &["body"],
                "budget",
                "A budget needs max_total_tokens, max_cost_usd or both",
                "missing",
            );
            return None;
        }
        Some(Budget {
            max_total_tokens: max_total_tokens.map(|n| n as u64),
            max_cost_usd,
        })
    }
}

/// `POST /runs/{run_id}/resume`: the body (optional).
#[derive(Deserr, utoipa::ToSchema)]
#[deserr(error = BodyErrors, deny_unknown_fields)]
pub struct ResumeBody {
    /// The new budget; without one the run goes on unlimited.
    #[deserr(default)]
    pub budget: Option<BudgetBody>,
}

/// A resume body: `{"budget": {...}}` or nothing (unlimited).
pub fn parse_resume(body: &Value) -> Result<Option<Budget>, ApiError> {
    if body.is_null() {
        return Ok(None);
    }
    let (body, mut c) = read::<ResumeBody>(body)?;
    let budget = body.budget.and_then(|b| b.check(&mut c));
    c.finish()?;
    Ok(budget)
}

/// A cost cap needs a price for the run's model, or it could never be reached.
pub fn check_budget_price(
    budget: Option<&Budget>,
    priced: bool,
    model: &ModelSettings,
) -> Result<(), ApiError> {
    if budget.is_some_and(|b| b.max_cost_usd.is_some()) && !priced {
        let mut c = Checker::default();
        c.push(
            &["body", "budget"],
            "max_cost_usd",
            format!(
                "The price table has no price for provider `{}` model `{}`: a cost cap                  could not be measured (add it to `prices` in the config, or use                  max_total_tokens)",
                model.provider, model.model
            ),
            "value_error",
        );
        c.finish()?;
    }
    Ok(())
}
