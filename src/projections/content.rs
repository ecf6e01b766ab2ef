//! What a rollout did, call by call: its trajectory, tool calls, log-probabilities and
//! NPC replies. The views keep only each rollout's summary, so that their memory does
//! not grow with every finished trajectory and a replay folds small facts; this is
//! read from the rollout's own stream when a reader asks for it.

use serde::Serialize;
use serde_json::Value;

use super::{decode, ProjectionError, ToolCallView};
use crate::domain::chat::Message;
use crate::domain::events::{Event, NpcReplied, TurnTokens};
use crate::domain::ids::rollout_stream;
use crate::domain::trace::{TokenTrace, TraceError};
use crate::store::EventStore;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RolloutContent {
    pub trajectory: Vec<Message>,
    pub tool_calls: Vec<ToolCallView>,
    pub logprobs: Vec<Value>,
    pub npc_replies: Vec<NpcReplied>,
    /// The model turns' token ids, still packed: decoded by [`Self::token_trace`] only
    /// for a reader that wants them (the token export).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<TurnTokens>,
    /// Each model turn's policy ordinal (0: the launch's; n: the run's n-th update).
    #[serde(skip)]
    pub policies: Vec<u32>,
}

/// The events [`RolloutContent::apply`] folds in.
const FOLDED: [&str; 5] = [
    "RolloutStarted",
    "ModelCalled",
    "ToolCalled",
    "NpcReplied",
    "ContextSummarized",
];

impl RolloutContent {
    /// Folds one of the rollout's events in; the others add nothing to it.
    pub fn apply(&mut self, event: Event) {
        match event {
            Event::RolloutStarted(e) => self.trajectory = e.messages,
            Event::ModelCalled(e) => {
                self.policies.push(e.policy_ordinal);
                self.trajectory.push(e.message);
                self.logprobs.extend(e.logprobs);
                self.tokens.extend(e.tokens.map(|t| *t));
            }
            Event::ToolCalled(e) => {
                self.trajectory.push(Message::tool_result(
                    e.call_id.clone(),
                    &e.tool_name,
                    e.observation.clone(),
                ));
                self.tool_calls.push(ToolCallView {
                    step: e.step,
                    call_id: e.call_id,
                    server: e.server,
                    tool_name: e.tool_name,
                    arguments: e.arguments,
                    observation: e.observation,
                    is_error: e.is_error,
                    fault: e.fault,
                    latency_ms: e.latency_ms,
                });
            }
            Event::NpcReplied(e) => self.npc_replies.push(e),
            Event::ContextSummarized(e) => self
                .trajectory
                .push(crate::domain::rollout::summary_message(&e.summary)),
            _ => {}
        }
    }

    /// The rollout's whole token sequence, decoded from its turns.
    pub fn token_trace(&self) -> Result<TokenTrace, TraceError> {
        TokenTrace::rebuild(&self.tokens)
    }

    /// A rollout's content as its stream holds it now (empty for an unknown one).
    pub async fn load(
        store: &dyn EventStore,
        rollout_id: &str,
    ) -> Result<RolloutContent, ProjectionError> {
        let mut content = RolloutContent::default();
        for recorded in store.read_stream(&rollout_stream(rollout_id), 0).await? {
            // The verdicts and the ends are most of a stream's bytes and fold nothing
            // in: a feed reads every finished rollout, so they are not decoded.
            if FOLDED.contains(&recorded.event_type.as_str()) {
                content.apply(decode(&recorded)?);
            }
        }
        Ok(content)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::chat::Role;
    use crate::projections::tests::golden_store;

    #[tokio::test]
    async fn a_rollouts_content_is_folded_from_its_stream_in_order() {
        let store = golden_store().await;
        let content = RolloutContent::load(&store, "rol_a1").await.expect("load");
        let roles: Vec<Role> = content.trajectory.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [
                Role::System,
                Role::User,
                Role::Assistant,
                Role::Tool,
                Role::User,
                Role::Assistant
            ]
        );
        assert_eq!(content.trajectory[2].tool_calls[0].id, "call_1");
        assert_eq!(
            content.trajectory[3].content.as_deref(),
            Some(r#"{"status":"approved"}"#)
        );
        assert_eq!(content.trajectory[4].name.as_deref(), Some("summary"));
        assert_eq!(content.trajectory[5].content.as_deref(), Some("Approved."));
        assert_eq!(content.tool_calls.len(), 1);
        assert_eq!(content.tool_calls[0].server.as_deref(), Some("hrms"));
        assert_eq!(
            content.tool_calls[0].observation,
            r#"{"status":"approved"}"#
        );
        // Only the call that asked for them carries log-probabilities.
        assert_eq!(content.logprobs.len(), 1);
        assert_eq!(content.npc_replies[0].email.body, "Thanks, noted.");
        assert_eq!(
            RolloutContent::load(&store, "rol_unknown")
                .await
                .expect("load"),
            RolloutContent::default()
        );
    }
}
