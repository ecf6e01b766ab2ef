//! The steps of a rollout, one method of its [`Context`] per [`NextAction`]: each takes
//! its step and records what came of it; the dispatcher in `mod.rs` picks and times them.
//!
//! [`NextAction`]: crate::domain::rollout::NextAction

use std::time::{Duration, Instant};

use chrono::Utc;

use super::agents::policy_settings;
use super::driver::{Driver, Failure, StepError};
use super::judge::{self, rubric_status};
use super::summary::summarize;
use super::tools::{self, npc_replies, rebuild_local, Tools};
use super::{default_system_prompt, Context};
use crate::actors::breakpoints::Breakpoint;
use crate::domain::chat::{Message, ToolCall};
use crate::domain::events::{
    CompletionReason, Event, ModelCalled, NpcEmail, NpcReplied, RolloutCompleted, RolloutStarted,
    RolloutVerified, RubricGraded,
};
use crate::domain::feed::is_stale;
use crate::journal;
use crate::llm::{ModelClient, ModelRequest};

impl Context<'_> {
    /// Records the start (a fork's copied prefix, or the initial conversation) and
    /// makes it durable.
    pub(super) async fn start(&mut self, driver: &mut Driver) -> Result<(), StepError> {
        let run = self.run;
        let rollout = self.rollout;
        let events = match &run.parent {
            // A fork starts where its source was after `at_step`; its
            // environment is rebuilt from the copied calls.
            Some(parent) => {
                let source = Box::pin(journal::rollout_events(
                    self.deps.store.as_ref(),
                    &parent.rollout_id,
                ))
                .await?
                .into_iter()
                .map(|(_, event)| event)
                .collect::<Vec<_>>();
                let prefix = crate::domain::rollout::fork_prefix(
                    &source,
                    parent.at_step,
                    &run.run_id,
                    &rollout.rollout_id,
                    Utc::now(),
                );
                if prefix.is_empty() {
                    return Err(Failure(format!(
                        "the forked rollout {} has no recorded start",
                        parent.rollout_id
                    ))
                    .into());
                }
                prefix
            }
            None => {
                let system = run
                    .model
                    .system_prompt
                    .clone()
                    .unwrap_or_else(|| default_system_prompt(self.scenario));
                vec![Event::RolloutStarted(RolloutStarted {
                    rollout_id: rollout.rollout_id.clone(),
                    run_id: run.run_id.clone(),
                    task_id: rollout.task_id.clone(),
                    messages: vec![
                        Message::system(system),
                        Message::user(&self.task.description),
                    ],
                    started_at: Utc::now(),
                })]
            }
        };
        // The start is durable before the first model call. Measured: when
        // ten thousand rollouts launched at once also sent their first model
        // calls while the launches were still being handled, those calls took
        // 3.7 instead of 2 s (p50) and the rollouts 3.3 instead of 2.6 s
        // (benches/README.md); waiting for the start's append spaces them out.
        driver.record_all(events).await?;
        driver.sync().await?;
        match &mut self.tools {
            // A fork's environment was built before the copied calls existed:
            // build it again from them.
            Tools::Local(env) if run.parent.is_some() => {
                *env = rebuild_local(self.scenario, self.task, rollout.seed, &driver.state)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Asks the model for turn `step` and records its reply; returns how long the call
    /// took, or `None` when a summary was due and recorded instead.
    pub(super) async fn call_model(
        &mut self,
        driver: &mut Driver,
        step: u32,
    ) -> Result<Option<Duration>, StepError> {
        let run = self.run;
        if let Some(reason) = driver.job.budget.exhausted() {
            return Err(StepError::Paused(reason));
        }
        // What the last reply led to becomes durable while the model thinks.
        if self.free {
            driver.start_append_if_idle().await?;
        } else {
            driver.start_append().await?;
        }
        let every = run.model.summarize_every_n_turns;
        if let Some(replaced) = driver
            .state
            .summary_due(step, every, run.model.context_stride)
        {
            let event = Box::pin(summarize(
                self.model.as_ref(),
                run,
                &self.rollout.rollout_id,
                step,
                replaced,
                driver.state.to_summarize(replaced),
            ))
            .await?;
            driver.record(event).await?;
            return Ok(None);
        }
        let ordinal = driver.job.policy.ordinal();
        if let Some(first) = driver.state.first_policy_ordinal {
            if is_stale(first, ordinal, self.stale_restart) {
                return Err(StepError::Stale(format!(
                    "stale: its first turn was answered by policy {first} and policy \
                     {ordinal} is in force now, more than max_staleness {} behind; \
                     restarted from scratch",
                    self.stale_restart.unwrap_or_default()
                )));
            }
        }
        if ordinal != self.policy_ordinal {
            (self.policy_ordinal, self.settings) = policy_settings(&run.model, &driver.job.policy);
            self.model = self
                .deps
                .agents
                .agent(&self.settings, self.task, self.keys.model.clone())
                .map_err(Failure)?;
            // A token-in client holds the sequence: the new one rebuilds it.
            self.tokens_restored = !self.token_settings.is_some_and(|t| t.records_tokens());
        }
        if !self.tokens_restored {
            Box::pin(restore_tokens(driver, self.model.as_ref())).await?;
            self.tokens_restored = true;
        }
        let request = ModelRequest {
            messages: &driver.state.messages,
            tools: &self.tool_definitions,
            settings: &self.settings,
        };
        let called = Instant::now();
        let timeout = Duration::from_secs(self.deps.model_timeout_secs);
        self.deps.breakpoints.reach(|| Breakpoint::ModelCallSent {
            rollout_id: self.rollout.rollout_id.clone(),
            step,
        });
        let reply = tokio::select! {
            reply = tokio::time::timeout(timeout, self.model.complete(request)) => reply,
            _ = driver.job.cancel.cancelled() => return Err(StepError::Cancelled),
        };
        let latency = called.elapsed();
        if !self.free {
            driver.settle().await?;
        }
        let metrics = &self.deps.metrics;
        metrics
            .model_call_duration
            .with_label_values(&[self.provider])
            .observe(latency.as_secs_f64());
        let reply = match reply {
            Ok(Ok(reply)) => reply,
            Ok(Err(error)) => {
                metrics
                    .model_errors
                    .with_label_values(&[self.provider, error.error_type()])
                    .inc();
                return Err(Failure(format!("model call failed at step {step}: {error}")).into());
            }
            Err(_) => {
                metrics
                    .model_errors
                    .with_label_values(&[self.provider, "timeout"])
                    .inc();
                return Err(Failure(format!(
                    "model call at step {step} timed out after {}s",
                    timeout.as_secs()
                ))
                .into());
            }
        };
        let event = Event::ModelCalled(ModelCalled {
            rollout_id: self.rollout.rollout_id.clone(),
            step,
            model: run.model.model.clone(),
            message: reply.message,
            usage: reply.usage,
            logprobs: reply.logprobs,
            latency_ms: latency.as_secs_f64() * 1000.0,
            called_at: Utc::now(),
            tokens: reply.tokens,
            policy_ordinal: self.policy_ordinal,
        });
        driver.record(event).await?;
        Ok(Some(latency))
    }

    /// Runs the next tool call of turn `step` (or answers it with an injected fault)
    /// and records it with the replies of the people it emailed.
    pub(super) async fn call_tool(
        &mut self,
        driver: &mut Driver,
        step: u32,
        call: &ToolCall,
    ) -> Result<(), StepError> {
        let sent_before = self.tools.sent_count();
        let fault = self
            .faults
            .and_then(|(faults, index)| faults.fault_for(index, driver.state.tool_calls.len()));
        let called = Instant::now();
        if let Some(latency) = self.faults.map(|(f, _)| f.latency_ms).filter(|&ms| ms > 0) {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(latency)) => {}
                _ = driver.job.cancel.cancelled() => return Err(StepError::Cancelled),
            }
        }
        let event = Box::pin(tools::call_tool(
            &mut self.tools,
            self.token_in,
            &self.rollout.rollout_id,
            step,
            call,
            fault,
            called,
        ))
        .await;
        if let Event::ToolCalled(called) = &event {
            let outcome = match (&called.fault, called.is_error) {
                (Some(_), _) => "fault",
                (None, true) => "error",
                (None, false) => "ok",
            };
            let server = called.server.as_deref().unwrap_or("unknown");
            self.deps
                .metrics
                .tool_calls
                .with_label_values(&[server, outcome])
                .inc();
        }
        let after_tool_calls = driver.state.tool_calls.len() as u32 + 1;
        let mut events = vec![event];
        if let Tools::Local(env) = &mut self.tools {
            let replies = Box::pin(npc_replies(
                env,
                self.scenario,
                self.task,
                self.npc_model.as_deref(),
                self.run,
                sent_before,
                &driver.redactor,
            ))
            .await;
            for reply in replies {
                events.push(Event::NpcReplied(NpcReplied {
                    rollout_id: self.rollout.rollout_id.clone(),
                    step,
                    profile_id: reply.profile_id,
                    after_tool_calls,
                    email: NpcEmail {
                        from: reply.email.from,
                        to: reply.email.to,
                        cc: reply.email.cc,
                        subject: reply.email.subject,
                        body: reply.email.body,
                        in_reply_to: reply.email.in_reply_to,
                    },
                    replied_at: Utc::now(),
                }));
            }
        }
        driver.record_all(events).await?;
        Ok(())
    }

    /// Scores the environment with the task's checks and records the verdict.
    pub(super) async fn verify(&self, driver: &mut Driver) -> Result<(), StepError> {
        // The state is big: dropped before the append waits, not held across it.
        let verdict = {
            let state = self.tools.checked_state().await.map_err(Failure)?;
            self.task.verify(state.as_ref(), &driver.state.messages)
        };
        let event = Event::RolloutVerified(RolloutVerified {
            rollout_id: self.rollout.rollout_id.clone(),
            verdict,
            verified_at: Utc::now(),
        });
        driver.record(event).await?;
        Ok(())
    }

    /// Asks the judge for the rubric's grade and records it; returns how long the
    /// judge took.
    pub(super) async fn grade_rubric(&self, driver: &mut Driver) -> Result<Duration, StepError> {
        if let Some(reason) = driver.job.budget.exhausted() {
            return Err(StepError::Paused(reason));
        }
        driver.start_append().await?;
        let state = self.tools.state().await.map_err(Failure)?;
        let graded_from = Instant::now();
        let grading = Box::pin(judge::grade_rubric(
            self.deps,
            self.run,
            self.task,
            self.keys.judge_model.clone(),
            &driver.state.messages,
            &state,
        ));
        let (rubric, usage) = tokio::select! {
            graded = grading => graded,
            _ = driver.job.cancel.cancelled() => return Err(StepError::Cancelled),
        };
        let judge_wait = graded_from.elapsed();
        driver.settle().await?;
        self.deps
            .metrics
            .rubric_grades
            .with_label_values(&[rubric_status(&rubric)])
            .inc();
        let event = Event::RubricGraded(RubricGraded {
            rollout_id: self.rollout.rollout_id.clone(),
            rubric,
            usage,
            graded_at: Utc::now(),
        });
        driver.record(event).await?;
        Ok(judge_wait)
    }

    /// Records the completion.
    pub(super) async fn complete(
        &self,
        driver: &mut Driver,
        reason: CompletionReason,
    ) -> Result<(), StepError> {
        let event = Event::RolloutCompleted(RolloutCompleted {
            rollout_id: self.rollout.rollout_id.clone(),
            reason,
            steps: driver.state.steps,
            completed_at: Utc::now(),
        });
        driver.record(event).await?;
        Ok(())
    }
}

/// Gives a token-exact client the turns its rollout recorded (none on a fresh start).
async fn restore_tokens(driver: &Driver, model: &dyn ModelClient) -> Result<(), StepError> {
    if driver.state.steps == 0 {
        return Ok(());
    }
    let turns: Vec<_> =
        journal::rollout_events(driver.deps.store.as_ref(), &driver.job.rollout.rollout_id)
            .await?
            .into_iter()
            .filter_map(|(_, event)| match event {
                Event::ModelCalled(called) => called.tokens.map(|t| *t),
                _ => None,
            })
            .collect();
    model
        .restore_turns(&turns)
        .map_err(|e| Failure(format!("the recorded tokens could not be restored: {e}")).into())
}
