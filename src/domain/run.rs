//! A run's rules: launch, cancel and delete, decided from the run's own stream with
//! no I/O. Ids and times come in with the command.

use chrono::{DateTime, Utc};

use super::events::{Event, RunCancelRequested, RunDeleted, RunLaunched};

#[derive(Debug, Clone, Default)]
pub struct RunState {
    pub launched: Option<RunLaunched>,
    pub cancel_requested: bool,
    pub deleted: bool,
    pub revision: Option<u64>,
}

#[derive(Debug, Clone)]
pub enum RunCommand {
    Launch(Box<RunLaunched>),
    Cancel { now: DateTime<Utc> },
    Delete { now: DateTime<Utc> },
}

/// Why a command was refused: the caller asked wrongly, nothing broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunRefusal {
    #[error("run {0} already exists")]
    AlreadyExists(String),
    #[error("run not found")]
    NotFound,
}

impl RunState {
    pub fn evolve(&mut self, event: &Event, revision: u64) {
        self.revision = Some(revision);
        match event {
            Event::RunLaunched(e) => self.launched = Some(e.clone()),
            Event::RunCancelRequested(_) => self.cancel_requested = true,
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
            None => Ok(vec![Event::RunLaunched(*launched)]),
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
            model: ModelSettings {
                model: "noop".into(),
                provider: "builtin".into(),
                base_url: None,
                temperature: 0.7,
                max_steps: 30,
                system_prompt: None,
                tool_server_url: None,
                log_prob: false,
                summarize_every_n_turns: 0,
                context_stride: 3,
                has_api_key: false,
            },
            user_model: None,
            judge_model: None,
            task_overrides: Default::default(),
            parent: None,
            tool_faults: None,
            rollouts: vec![],
            launched_at: now(),
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
        assert_eq!(events, vec![Event::RunLaunched(launched())]);
    }

    #[test]
    fn given_a_run_when_launched_again_then_refused_as_existing() {
        let state = given(vec![Event::RunLaunched(launched())]);
        assert_eq!(
            decide(&state, RunCommand::Launch(Box::new(launched()))),
            Err(RunRefusal::AlreadyExists("run_1".into()))
        );
    }

    #[test]
    fn given_a_run_when_cancelled_twice_then_one_event() {
        let state = given(vec![Event::RunLaunched(launched())]);
        let first = decide(&state, RunCommand::Cancel { now: now() }).unwrap();
        assert_eq!(first.len(), 1);
        let state = given(vec![Event::RunLaunched(launched()), first[0].clone()]);
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
        let state = given(vec![Event::RunLaunched(launched()), deleted]);
        assert_eq!(
            decide(&state, RunCommand::Cancel { now: now() }),
            Err(RunRefusal::NotFound)
        );
        assert_eq!(
            decide(&state, RunCommand::Delete { now: now() }),
            Err(RunRefusal::NotFound)
        );
    }
}
