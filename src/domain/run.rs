//! A run's rules: launch, cancel, delete, pause and resume, decided from the run's
//! own stream with no I/O. Ids, times and the spend so far come in with the command.

use chrono::{DateTime, Utc};

use super::budget::{exhausted, Budget, Spend};
use super::events::{
    Event, RunCancelRequested, RunDeleted, RunLaunched, RunPaused, RunResumed, ScheduledRollout,
};
use super::feed::Feed;

#[derive(Debug, Clone, Default)]
pub struct RunState {
    pub launched: Option<RunLaunched>,
    pub cancel_requested: bool,
    pub deleted: bool,
    pub revision: Option<u64>,
    /// Stopped by its budget and not resumed since.
    pub paused: bool,
    /// The budget in force: the launch's, then the latest resume's.
    pub budget: Option<Budget>,
    /// Groups, consumers' acknowledgements and policy updates.
    pub feed: Feed,
    /// A continuous run's rollouts, drawn after the launch (groups and restarts), in
    /// the order they were recorded.
    pub drawn: Vec<ScheduledRollout>,
}

#[derive(Debug, Clone)]
pub enum RunCommand {
    Launch(Box<RunLaunched>),
    Cancel {
        now: DateTime<Utc>,
    },
    Delete {
        now: DateTime<Utc>,
    },
    /// The budget is spent and nothing of the run runs any more.
    Pause {
        reason: String,
        spend: Spend,
        now: DateTime<Utc>,
    },
    /// Go on under `budget` (`None`: unlimited), having spent `spend`.
    Resume {
        budget: Option<Budget>,
        spend: Spend,
        now: DateTime<Utc>,
    },
}

/// Why a command was refused: the caller asked wrongly, nothing broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunRefusal {
    #[error("run {0} already exists")]
    AlreadyExists(String),
    #[error("run not found")]
    NotFound,
    #[error("{0}")]
    NotPaused(String),
    #[error("the new budget is already spent: {0}")]
    BudgetExhausted(String),
    #[error("run {0} kept changing while the command was recorded; try again")]
    Busy(String),
}

impl RunState {
    pub fn evolve(&mut self, event: &Event, revision: u64) {
        self.revision = Some(revision);
        self.feed.evolve(event);
        match event {
            Event::GroupScheduled(e) => self.drawn.extend(e.rollouts.iter().cloned()),
            Event::RolloutRestarted(e) => self.drawn.push(e.rollout.clone()),
            Event::RunLaunched(e) => {
                self.budget = e.budget;
                self.launched = Some(RunLaunched::clone(e));
            }
            Event::RunCancelRequested(_) => {
                self.cancel_requested = true;
                self.paused = false;
            }
            Event::RunPaused(_) => self.paused = true,
            Event::RunResumed(e) => {
                self.paused = false;
                self.budget = e.budget;
            }
            Event::RunDeleted(_) => self.deleted = true,
            _ => {}
        }
    }

    fn live_run_id(&self) -> Result<&str, RunRefusal> {
        match &self.launched {
            Some(run) if !self.deleted => Ok(&run.run_id),
            _ => Err(RunRefusal::NotFound),
        }
    }
}

pub fn decide(state: &RunState, command: RunCommand) -> Result<Vec<Event>, RunRefusal> {
    match command {
        RunCommand::Launch(launched) => match &state.launched {
            Some(existing) => Err(RunRefusal::AlreadyExists(existing.run_id.clone())),
            None => Ok(vec![Event::RunLaunched(launched)]),
        },
        RunCommand::Cancel { now } => {
            let run_id = state.live_run_id()?;
            if state.cancel_requested {
                return Ok(vec![]);
            }
            Ok(vec![Event::RunCancelRequested(RunCancelRequested {
                run_id: run_id.to_string(),
                requested_at: now,
            })])
        }
        RunCommand::Delete { now } => {
            let run_id = state.live_run_id()?;
            Ok(vec![Event::RunDeleted(RunDeleted {
                run_id: run_id.to_string(),
                deleted_at: now,
            })])
        }
        RunCommand::Pause { reason, spend, now } => {
            let run_id = state.live_run_id()?;
            // Once: a cancelled run is not paused, a paused one not again.
            if state.paused || state.cancel_requested {
                return Ok(vec![]);
            }
            Ok(vec![Event::RunPaused(RunPaused {
                run_id: run_id.to_string(),
                reason,
                tokens_used: spend.tokens,
                cost_usd: spend.cost_usd,
                paused_at: now,
            })])
        }
        RunCommand::Resume { budget, spend, now } => {
            let run_id = state.live_run_id()?;
            if state.cancel_requested {
                return Err(RunRefusal::NotPaused(format!(
                    "Run '{run_id}' was cancelled; it cannot be resumed"
                )));
            }
            if !state.paused {
                return Err(RunRefusal::NotPaused(format!(
                    "Run '{run_id}' is not paused; only a run paused by its budget can be resumed"
                )));
            }
            if let Some(reason) = exhausted(budget.as_ref(), &spend) {
                return Err(RunRefusal::BudgetExhausted(reason));
            }
            Ok(vec![Event::RunResumed(RunResumed {
                run_id: run_id.to_string(),
                budget,
                resumed_at: now,
            })])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::events::ModelSettings;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-02T09:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn launched() -> RunLaunched {
        RunLaunched {
            run_id: "run_1".into(),
            scenario_id: "hr".into(),
            source: "rl-gym".into(),
            task_ids: vec!["t".into()],
            rollout_count: 1,
            max_parallel: None,
            model: ModelSettings::builtin("noop"),
            user_model: None,
            judge_model: None,
            task_overrides: Default::default(),
            parent: None,
            tool_faults: None,
            rollouts: vec![],
            launched_at: now(),
            budget: Some(Budget {
                max_total_tokens: Some(100),
                max_cost_usd: None,
            }),
            prices: None,
            continuous: None,
        }
    }

    fn given(events: Vec<Event>) -> RunState {
        let mut state = RunState::default();
        for (i, e) in events.iter().enumerate() {
            state.evolve(e, i as u64);
        }
        state
    }

    #[test]
    fn given_no_run_when_launched_then_run_launched() {
        let events = decide(&given(vec![]), RunCommand::Launch(Box::new(launched()))).unwrap();
        assert_eq!(events, vec![Event::RunLaunched(Box::new(launched()))]);
    }

    #[test]
    fn given_a_run_when_launched_again_then_refused_as_existing() {
        let state = given(vec![Event::RunLaunched(Box::new(launched()))]);
        assert_eq!(
            decide(&state, RunCommand::Launch(Box::new(launched()))),
            Err(RunRefusal::AlreadyExists("run_1".into()))
        );
    }

    #[test]
    fn given_a_run_when_cancelled_twice_then_one_event() {
        let state = given(vec![Event::RunLaunched(Box::new(launched()))]);
        let first = decide(&state, RunCommand::Cancel { now: now() }).unwrap();
        assert_eq!(first.len(), 1);
        let state = given(vec![
            Event::RunLaunched(Box::new(launched())),
            first[0].clone(),
        ]);
        assert!(decide(&state, RunCommand::Cancel { now: now() })
            .unwrap()
            .is_empty());
    }

    #[test]
    fn given_a_deleted_run_when_cancelled_or_deleted_then_not_found() {
        let deleted = Event::RunDeleted(RunDeleted {
            run_id: "run_1".into(),
            deleted_at: now(),
        });
        let state = given(vec![Event::RunLaunched(Box::new(launched())), deleted]);
        assert_eq!(
            decide(&state, RunCommand::Cancel { now: now() }),
            Err(RunRefusal::NotFound)
        );
        assert_eq!(
            decide(&state, RunCommand::Delete { now: now() }),
            Err(RunRefusal::NotFound)
        );
    }

    fn spent(tokens: u64) -> Spend {
        Spend {
            tokens,
            cost_usd: 0.0,
        }
    }

    fn pause() -> RunCommand {
        RunCommand::Pause {
            reason: "spent".into(),
            spend: spent(120),
            now: now(),
        }
    }

    fn resume(max_total_tokens: Option<u64>) -> RunCommand {
        RunCommand::Resume {
            budget: max_total_tokens.map(|max| Budget {
                max_total_tokens: Some(max),
                max_cost_usd: None,
            }),
            spend: spent(120),
            now: now(),
        }
    }

    #[test]
    fn given_a_run_when_paused_twice_then_one_event_with_the_spend() {
        let state = given(vec![Event::RunLaunched(Box::new(launched()))]);
        let first = decide(&state, pause()).unwrap();
        assert!(matches!(&first[..], [Event::RunPaused(p)] if p.tokens_used == 120));
        let state = given(vec![
            Event::RunLaunched(Box::new(launched())),
            first[0].clone(),
        ]);
        assert!(state.paused);
        assert!(decide(&state, pause()).unwrap().is_empty());
    }

    #[test]
    fn given_a_cancelled_run_when_paused_then_nothing_and_it_cannot_resume() {
        let cancel = Event::RunCancelRequested(RunCancelRequested {
            run_id: "run_1".into(),
            requested_at: now(),
        });
        let state = given(vec![Event::RunLaunched(Box::new(launched())), cancel]);
        assert!(decide(&state, pause()).unwrap().is_empty());
        assert!(matches!(
            decide(&state, resume(None)),
            Err(RunRefusal::NotPaused(_))
        ));
    }

    #[test]
    fn given_a_running_run_when_resumed_then_refused_as_not_paused() {
        let state = given(vec![Event::RunLaunched(Box::new(launched()))]);
        assert!(matches!(
            decide(&state, resume(Some(1_000))),
            Err(RunRefusal::NotPaused(m)) if m.contains("not paused")
        ));
    }

    #[test]
    fn given_a_paused_run_when_resumed_then_the_latest_budget_wins() {
        let mut events = vec![Event::RunLaunched(Box::new(launched()))];
        events.extend(decide(&given(events.clone()), pause()).unwrap());
        let state = given(events.clone());
        assert!(matches!(
            decide(&state, resume(Some(120))),
            Err(RunRefusal::BudgetExhausted(_))
        ));
        events.extend(decide(&state, resume(Some(1_000))).unwrap());
        let state = given(events.clone());
        assert!(!state.paused);
        assert_eq!(state.budget.unwrap().max_total_tokens, Some(1_000));
        // Paused again later, then resumed without a budget: unlimited.
        events.extend(decide(&state, pause()).unwrap());
        events.extend(decide(&given(events.clone()), resume(None)).unwrap());
        let state = given(events);
        assert!(!state.paused && state.budget.is_none());
    }
}
