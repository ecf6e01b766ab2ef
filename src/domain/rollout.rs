//! A rollout's state machine, folded from its events with no I/O.
//!
//! The step loop asks [`RolloutState::next_action`] what to do, does it (a model call,
//! a tool call, the verification) and appends the resulting event, which it folds
//! back in with [`RolloutState::evolve`]. Because the decision depends only on the
//! events, a rollout interrupted by a crash resumes from its stream exactly where it
//! stopped: a step whose result was recorded is never redone.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::chat::{Message, Role, ToolCall};
use super::events::{
    CompletionReason, ContextSummarized, Event, ModelCalled, NpcReplied, RolloutStarted, ToolCalled,
};
use super::verdict::{RubricVerdict, Verdict};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RolloutStatus {
    Pending,
    Running,
    Verifying,
    Completed,
    Failed,
    Cancelled,
}

impl RolloutStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Verifying => "verifying",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// What the step loop must do next.
#[derive(Debug, Clone, PartialEq)]
pub enum NextAction {
    /// Record the start with the initial conversation.
    Start,
    /// Ask the model for turn `step` (1-based).
    CallModel { step: u32 },
    /// Run the next tool call the model asked for in turn `step`.
    CallTool { step: u32, call: ToolCall },
    /// The loop is over: score the environment.
    Verify { reason: CompletionReason },
    /// Scored by the checks; the task has a rubric: ask the judge.
    GradeRubric,
    /// Scored: record the completion.
    Complete { reason: CompletionReason },
    /// A terminal event is recorded; nothing more to do.
    Finished,
}

#[derive(Debug, Clone, Default)]
pub struct RolloutState {
    started: bool,
    status: Option<RolloutStatus>,
    /// Revision of the last event of the stream, for the next append's expectation.
    pub revision: Option<u64>,
    pub messages: Vec<Message>,
    /// Model turns taken.
    pub steps: u32,
    /// Tool calls of the last assistant turn that have no recorded result yet.
    unanswered: Vec<ToolCall>,
    /// Every recorded tool call, in order: replayed over the seed, they rebuild the
    /// environment.
    pub tool_calls: Vec<ToolCalled>,
    /// Replies of simulated people, each placed after a number of tool calls.
    pub npc_replies: Vec<NpcReplied>,
    /// Messages before the first exchange: system, task, and a summary once made.
    prefix_len: usize,
    /// The model turn before which the last summary was made.
    summarized_before: u32,
    pub verdict: Option<Verdict>,
    pub rubric: Option<RubricVerdict>,
    /// The policy that answered the first model turn (staleness is measured from it).
    pub first_policy_ordinal: Option<u32>,
}

impl RolloutState {
    pub fn status(&self) -> RolloutStatus {
        self.status.unwrap_or(RolloutStatus::Pending)
    }

    pub fn evolve(&mut self, event: &Event, revision: u64) {
        self.revision = Some(revision);
        match event {
            Event::RolloutStarted(e) => {
                self.started = true;
                self.status = Some(RolloutStatus::Running);
                self.messages = e.messages.clone();
                self.prefix_len = self.messages.len();
            }
            Event::ContextSummarized(e) => {
                let keep_from =
                    (self.prefix_len + e.replaced_messages as usize).min(self.messages.len());
                let mut messages: Vec<Message> = self.messages[..self.prefix_len.min(2)].to_vec();
                messages.push(summary_message(&e.summary));
                messages.extend_from_slice(&self.messages[keep_from..]);
                self.messages = messages;
                self.prefix_len = self.prefix_len.min(2) + 1;
                self.summarized_before = e.step;
            }
            Event::ModelCalled(e) => {
                self.first_policy_ordinal.get_or_insert(e.policy_ordinal);
                self.steps = self.steps.max(e.step);
                self.unanswered = e.message.tool_calls.clone();
                self.messages.push(e.message.clone());
            }
            Event::ToolCalled(e) => {
                self.unanswered.retain(|c| c.id != e.call_id);
                self.messages.push(Message::tool_result(
                    e.call_id.clone(),
                    &e.tool_name,
                    e.observation.clone(),
                ));
                self.tool_calls.push(e.clone());
            }
            Event::NpcReplied(e) => self.npc_replies.push(e.clone()),
            Event::RolloutVerified(e) => {
                self.status = Some(RolloutStatus::Verifying);
                self.verdict = Some(e.verdict.clone());
            }
            Event::RubricGraded(e) => self.rubric = Some(e.rubric.clone()),
            Event::RolloutReverified(e) => {
                self.verdict = Some(e.verdict.clone());
                self.rubric = e.rubric.clone();
            }
            Event::RolloutCompleted(_) => self.status = Some(RolloutStatus::Completed),
            Event::RolloutFailed(_) => self.status = Some(RolloutStatus::Failed),
            Event::RolloutCancelled(_) => self.status = Some(RolloutStatus::Cancelled),
            Event::RunLaunched(_) | Event::RunCancelRequested(_) | Event::RunDeleted(_) => {}
            Event::RunPaused(_) | Event::RunResumed(_) => {}
            Event::RunLeaseAcquired(_) | Event::RunLeaseRenewed(_) | Event::RunLeaseReleased(_) => {
            }
            Event::GroupScheduled(_)
            | Event::GroupConsumed(_)
            | Event::PolicyUpdated(_)
            | Event::RolloutRestarted(_) => {}
        }
    }

    /// The exchanges (an assistant turn and its tool results) after the prefix.
    fn exchange_starts(&self) -> Vec<usize> {
        (self.prefix_len..self.messages.len())
            .filter(|&i| self.messages[i].role == Role::Assistant)
            .collect()
    }

    /// Before model turn `step`: how many messages to fold into a summary so that
    /// exactly `stride` recent exchanges stay verbatim, when summarising every
    /// `every` turns is due (`None`: not due, or nothing to fold).
    pub fn summary_due(&self, step: u32, every: u32, stride: u32) -> Option<u32> {
        if every == 0
            || step <= 1
            || !(step - 1).is_multiple_of(every)
            || self.summarized_before == step
        {
            return None;
        }
        let starts = self.exchange_starts();
        let stride = stride.max(1) as usize;
        if starts.len() <= stride {
            return None;
        }
        let keep_from = starts[starts.len() - stride];
        Some((keep_from - self.prefix_len) as u32)
    }

    /// The messages a summary of `replaced` messages stands for (with any earlier
    /// summary), to show the summarising model.
    pub fn to_summarize(&self, replaced: u32) -> &[Message] {
        let start = self.prefix_len.min(2);
        let end = (self.prefix_len + replaced as usize).min(self.messages.len());
        &self.messages[start..end]
    }

    /// The loop's decision, from the recorded events alone (and whether the task has
    /// a rubric for the judge).
    pub fn next_action(&self, max_steps: u32, has_rubric: bool) -> NextAction {
        if self.status().is_terminal() {
            return NextAction::Finished;
        }
        if !self.started {
            return NextAction::Start;
        }
        if self.verdict.is_some() {
            if has_rubric && self.rubric.is_none() {
                return NextAction::GradeRubric;
            }
            return NextAction::Complete {
                reason: self.completion_reason(),
            };
        }
        if let Some(call) = self.unanswered.first() {
            return NextAction::CallTool {
                step: self.steps,
                call: call.clone(),
            };
        }
        let answered = self
            .messages
            .last()
            .is_some_and(|m| m.role == Role::Assistant && m.tool_calls.is_empty());
        if answered || self.steps >= max_steps {
            return NextAction::Verify {
                reason: self.completion_reason(),
            };
        }
        NextAction::CallModel {
            step: self.steps + 1,
        }
    }

    fn completion_reason(&self) -> CompletionReason {
        let answered = self
            .messages
            .iter()
            .rev()
            .find(|m| m.role == Role::Assistant)
            .is_some_and(|m| m.tool_calls.is_empty());
        if answered {
            CompletionReason::FinalAnswer
        } else {
            CompletionReason::MaxSteps
        }
    }
}

/// The first events of a fork's rollout: the source rollout's start and everything it
/// recorded in its first `at_step` model turns (the turns, their tool calls, the
/// replies and summaries they caused), re-addressed to the new rollout and otherwise
/// unchanged, so the two trajectories share those steps exactly and the fork's
/// environment rebuilds from them to the source's state after step `at_step`.
/// The fork's start is its own (`started_at`); the copied steps keep their times.
pub fn fork_prefix(
    source: &[Event],
    at_step: u32,
    run_id: &str,
    rollout_id: &str,
    started_at: DateTime<Utc>,
) -> Vec<Event> {
    let id = rollout_id.to_string();
    source
        .iter()
        .filter_map(|event| {
            Some(match event {
                Event::RolloutStarted(e) => Event::RolloutStarted(RolloutStarted {
                    rollout_id: id.clone(),
                    run_id: run_id.to_string(),
                    started_at,
                    ..e.clone()
                }),
                Event::ModelCalled(e) if e.step <= at_step => Event::ModelCalled(ModelCalled {
                    rollout_id: id.clone(),
                    ..e.clone()
                }),
                Event::ToolCalled(e) if e.step <= at_step => Event::ToolCalled(ToolCalled {
                    rollout_id: id.clone(),
                    ..e.clone()
                }),
                Event::NpcReplied(e) if e.step <= at_step => Event::NpcReplied(NpcReplied {
                    rollout_id: id.clone(),
                    ..e.clone()
                }),
                Event::ContextSummarized(e) if e.step <= at_step => {
                    Event::ContextSummarized(ContextSummarized {
                        rollout_id: id.clone(),
                        ..e.clone()
                    })
                }
                _ => return None,
            })
        })
        .collect()
}

/// How a summary appears in the conversation (and the trajectory).
pub fn summary_message(summary: &str) -> Message {
    let mut message = Message::user(format!(
        "Summary of the earlier steps of this task:\n{summary}"
    ));
    message.name = Some("summary".to_string());
    message
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;
    use crate::domain::chat::FunctionCall;
    use crate::domain::events::*;
    use crate::domain::verdict::Verdict;

    fn t() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-02T09:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn given(events: &[Event]) -> RolloutState {
        let mut state = RolloutState::default();
        for (revision, event) in events.iter().enumerate() {
            state.evolve(event, revision as u64);
        }
        state
    }

    fn started() -> Event {
        Event::RolloutStarted(RolloutStarted {
            rollout_id: "rol_1".into(),
            run_id: "run_1".into(),
            task_id: "t".into(),
            messages: vec![Message::system("s"), Message::user("do it")],
            started_at: t(),
        })
    }

    fn model_called(step: u32, calls: &[&str]) -> Event {
        let tool_calls = calls
            .iter()
            .map(|id| ToolCall {
                id: id.to_string(),
                kind: "function".into(),
                function: FunctionCall {
                    name: "send_email".into(),
                    arguments: "{}".into(),
                },
            })
            .collect::<Vec<_>>();
        let content = tool_calls.is_empty().then(|| "done".to_string());
        Event::ModelCalled(ModelCalled {
            rollout_id: "rol_1".into(),
            step,
            model: "m".into(),
            message: Message::assistant(content, tool_calls),
            usage: None,
            logprobs: None,
            latency_ms: 1.0,
            called_at: t(),
            tokens: None,
            policy_ordinal: 0,
        })
    }

    fn tool_called(step: u32, id: &str) -> Event {
        Event::ToolCalled(ToolCalled {
            rollout_id: "rol_1".into(),
            step,
            call_id: id.into(),
            server: Some("email".into()),
            tool_name: "send_email".into(),
            arguments: "{}".into(),
            observation: "ok".into(),
            is_error: false,
            fault: None,
            latency_ms: 0.1,
            called_at: t(),
        })
    }

    fn verified() -> Event {
        Event::RolloutVerified(RolloutVerified {
            rollout_id: "rol_1".into(),
            verdict: Verdict {
                score: 1.0,
                label: "Full Credit".into(),
                checks: vec![],
            },
            verified_at: t(),
        })
    }

    fn summarized(step: u32, replaced: u32) -> Event {
        Event::ContextSummarized(ContextSummarized {
            rollout_id: "rol_1".into(),
            step,
            summary: "did things".into(),
            replaced_messages: replaced,
            usage: None,
            summarized_at: t(),
        })
    }

    #[test]
    fn given_four_exchanges_when_summarising_with_stride_two_then_two_stay_verbatim() {
        let mut events = vec![started()];
        for step in 1..=4 {
            let id = format!("c{step}");
            events.push(model_called(step, &[id.as_str()]));
            events.push(tool_called(step, &id));
        }
        let state = given(&events);
        assert_eq!(state.summary_due(5, 2, 2), Some(4));
        assert_eq!(state.summary_due(4, 2, 2), None, "not a multiple of every");
        assert_eq!(state.summary_due(5, 0, 2), None, "disabled");
        events.push(summarized(5, 4));
        let state = given(&events);
        assert_eq!(state.messages.len(), 2 + 1 + 4);
        assert_eq!(state.messages[2].name.as_deref(), Some("summary"));
        assert_eq!(state.messages[3].tool_calls[0].id, "c3");
        assert_eq!(
            state.summary_due(5, 2, 2),
            None,
            "already summarised before this turn"
        );
        assert_eq!(
            state.next_action(10, false),
            NextAction::CallModel { step: 5 }
        );
    }

    #[test]
    fn given_few_exchanges_when_due_then_nothing_to_fold() {
        let state = given(&[started(), model_called(1, &["a"]), tool_called(1, "a")]);
        assert_eq!(state.summary_due(2, 1, 3), None);
    }

    #[test]
    fn given_nothing_when_asked_then_start() {
        assert_eq!(given(&[]).next_action(5, false), NextAction::Start);
    }

    #[test]
    fn given_started_when_asked_then_call_the_model_for_step_one() {
        assert_eq!(
            given(&[started()]).next_action(5, false),
            NextAction::CallModel { step: 1 }
        );
    }

    #[test]
    fn given_two_tool_calls_and_one_result_when_asked_then_run_the_second() {
        let state = given(&[started(), model_called(1, &["a", "b"]), tool_called(1, "a")]);
        match state.next_action(5, false) {
            NextAction::CallTool { step: 1, call } => assert_eq!(call.id, "b"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn given_all_results_when_asked_then_call_the_model_again() {
        let state = given(&[started(), model_called(1, &["a"]), tool_called(1, "a")]);
        assert_eq!(
            state.next_action(5, false),
            NextAction::CallModel { step: 2 }
        );
        assert_eq!(state.messages.len(), 4);
    }

    #[test]
    fn given_a_final_answer_when_asked_then_verify_as_final_answer() {
        let state = given(&[started(), model_called(1, &[])]);
        assert_eq!(
            state.next_action(5, false),
            NextAction::Verify {
                reason: CompletionReason::FinalAnswer
            }
        );
    }

    #[test]
    fn given_max_steps_used_when_asked_then_verify_as_max_steps() {
        let state = given(&[started(), model_called(1, &["a"]), tool_called(1, "a")]);
        assert_eq!(
            state.next_action(1, false),
            NextAction::Verify {
                reason: CompletionReason::MaxSteps
            }
        );
    }

    #[test]
    fn given_a_verdict_when_asked_then_complete() {
        let state = given(&[started(), model_called(1, &[]), verified()]);
        assert_eq!(state.status(), RolloutStatus::Verifying);
        assert_eq!(
            state.next_action(5, false),
            NextAction::Complete {
                reason: CompletionReason::FinalAnswer
            }
        );
    }

    #[test]
    fn given_a_verdict_and_a_rubric_when_asked_then_grade_once_then_complete() {
        let mut events = vec![started(), model_called(1, &[]), verified()];
        assert_eq!(given(&events).next_action(5, true), NextAction::GradeRubric);
        events.push(Event::RubricGraded(RubricGraded {
            rollout_id: "rol_1".into(),
            rubric: RubricVerdict {
                status: crate::domain::verdict::RubricStatus::Skipped,
                judge: None,
                score: None,
                label: None,
                reason: "no judge".into(),
                criteria: vec![],
            },
            usage: None,
            graded_at: t(),
        }));
        assert_eq!(
            given(&events).next_action(5, true),
            NextAction::Complete {
                reason: CompletionReason::FinalAnswer
            }
        );
    }

    #[test]
    fn given_a_cancellation_when_asked_then_finished() {
        let cancelled = Event::RolloutCancelled(RolloutCancelled {
            rollout_id: "rol_1".into(),
            reason: "run cancelled".into(),
            cancelled_at: t(),
        });
        let state = given(&[started(), cancelled]);
        assert_eq!(state.next_action(5, false), NextAction::Finished);
        assert_eq!(state.revision, Some(1));
    }

    #[test]
    fn given_a_source_when_forked_at_step_1_then_its_first_step_is_copied_to_the_new_rollout() {
        let source = [
            started(),
            model_called(1, &["c1", "c2"]),
            tool_called(1, "c1"),
            tool_called(1, "c2"),
            model_called(2, &["c3"]),
            tool_called(2, "c3"),
            model_called(3, &[]),
            verified(),
        ];
        let prefix = fork_prefix(&source, 1, "run_2", "rol_2", t());
        assert_eq!(prefix.len(), 4);
        assert!(prefix.iter().all(|e| match e {
            Event::RolloutStarted(e) => e.rollout_id == "rol_2" && e.run_id == "run_2",
            Event::ModelCalled(e) => e.rollout_id == "rol_2" && e.step == 1,
            Event::ToolCalled(e) => e.rollout_id == "rol_2" && e.step == 1,
            _ => false,
        }));
        // The fork goes on with the model's second turn, the source's history intact.
        let forked = given(&prefix);
        let original = given(&source[..4]);
        assert_eq!(forked.messages, original.messages);
        assert_eq!(
            forked.next_action(5, false),
            NextAction::CallModel { step: 2 }
        );
        assert_eq!(fork_prefix(&source, 0, "run_2", "rol_2", t()).len(), 1);
    }
}
