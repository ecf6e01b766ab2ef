//! What a rollout did, call by call: its trajectory, tool calls, log-probabilities and
//! NPC replies. The views keep only each rollout's summary, so that their memory does
//! not grow with every finished trajectory and a replay folds small facts; this is
//! read from the rollout's own stream when a reader asks for it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
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
        self.fold_delivered(&event);
        match event {
            Event::ModelCalled(e) => self.logprobs.extend(e.logprobs),
            Event::ToolCalled(e) => self.tool_calls.push(ToolCallView {
                step: e.step,
                call_id: e.call_id,
                server: e.server,
                tool_name: e.tool_name,
                arguments: e.arguments,
                observation: e.observation,
                is_error: e.is_error,
                fault: e.fault,
                latency_ms: e.latency_ms,
            }),
            Event::NpcReplied(e) => self.npc_replies.push(e),
            _ => {}
        }
    }

    /// Folds in, from a borrowed event, only what the feed delivers (the trajectory,
    /// each turn's policy and tokens): a continuous run's step loop keeps this for the
    /// feed as it records, and copying every tool call twice more (its view and the
    /// whole event) cost each of those rollouts more than the feed's own reading did.
    /// A content folded so has no tool calls, log-probabilities or NPC replies.
    pub fn fold_delivered(&mut self, event: &Event) {
        match event {
            Event::RolloutStarted(e) => self.trajectory = e.messages.clone(),
            Event::ModelCalled(e) => {
                self.policies.push(e.policy_ordinal);
                self.trajectory.push(e.message.clone());
                self.tokens.extend(e.tokens.as_deref().cloned());
            }
            Event::ToolCalled(e) => self.trajectory.push(Message::tool_result(
                e.call_id.clone(),
                &e.tool_name,
                e.observation.clone(),
            )),
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

impl RolloutContent {
    /// About how many bytes the content holds (its texts and packed tokens).
    fn weight(&self) -> usize {
        let messages: usize = self
            .trajectory
            .iter()
            .map(|m| {
                64 + m.content.as_ref().map_or(0, String::len)
                    + m.tool_calls
                        .iter()
                        .map(|c| c.function.arguments.len() + 64)
                        .sum::<usize>()
            })
            .sum();
        let calls: usize = self
            .tool_calls
            .iter()
            .map(|c| c.observation.len() + 128)
            .sum();
        let tokens: usize = self
            .tokens
            .iter()
            .map(|t| {
                t.prompt.ids.len()
                    + t.completion.ids.len()
                    + t.completion.logprobs.as_ref().map_or(0, String::len)
            })
            .sum();
        let logprobs: usize = self.logprobs.iter().map(|v| v.to_string().len()).sum();
        // Every entry costs something, so even an empty one is dropped in its turn.
        256 + messages + calls + tokens + logprobs + 512 * self.npc_replies.len()
    }
}

/// Finished rollouts' content as their step loops folded it, held for a continuous
/// run's feed: every rollout of such a run is read once, as soon as its group is
/// complete, and reading it back from the log was most of what serving the feed cost.
/// An entry is taken by its first reader (a second consumer, or a re-read, goes to the
/// log); at most [`CACHED_BYTES`], the oldest dropped first.
#[derive(Debug, Clone, Default)]
pub struct ContentCache(Arc<Mutex<Cached>>);

#[derive(Debug, Default)]
struct Cached {
    entries: HashMap<String, (RolloutContent, usize)>,
    order: VecDeque<String>,
    bytes: usize,
}

/// What the cache holds at most, by [`RolloutContent`]'s estimate.
pub const CACHED_BYTES: usize = 64 << 20;

impl ContentCache {
    pub fn put(&self, rollout_id: String, content: RolloutContent) {
        let weight = content.weight();
        if weight > CACHED_BYTES {
            return;
        }
        let mut cached = self.0.lock();
        while cached.bytes + weight > CACHED_BYTES {
            let Some(oldest) = cached.order.pop_front() else {
                break;
            };
            if let Some((_, w)) = cached.entries.remove(&oldest) {
                cached.bytes -= w;
            }
        }
        if let Some((_, w)) = cached.entries.insert(rollout_id.clone(), (content, weight)) {
            cached.bytes -= w;
        }
        cached.bytes += weight;
        cached.order.push_back(rollout_id);
        // Taken entries leave their ids behind: sweep them out now and then.
        if cached.order.len() > 2 * cached.entries.len() + 1024 {
            let Cached { entries, order, .. } = &mut *cached;
            order.retain(|id| entries.contains_key(id));
        }
    }

    /// The content put for a rollout, removed from the cache.
    pub fn take(&self, rollout_id: &str) -> Option<RolloutContent> {
        let mut cached = self.0.lock();
        let (content, weight) = cached.entries.remove(rollout_id)?;
        cached.bytes -= weight;
        // Its id stays in `order` until swept or evicted; removing it would be a scan.
        Some(content)
    }

    /// Rollouts held now.
    pub fn len(&self) -> usize {
        self.0.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

    #[tokio::test]
    async fn what_the_feed_delivers_is_the_trajectory_without_the_calls_views() {
        let store = golden_store().await;
        let mut delivered = RolloutContent::default();
        for recorded in store
            .read_stream(&rollout_stream("rol_a1"), 0)
            .await
            .unwrap()
        {
            delivered.fold_delivered(&decode(&recorded).expect("decode"));
        }
        let roles: Vec<Role> = delivered.trajectory.iter().map(|m| m.role).collect();
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
        assert_eq!(
            delivered.trajectory[3].content.as_deref(),
            Some(r#"{"status":"approved"}"#)
        );
        assert_eq!(delivered.policies, [0, 0], "one per model turn");
        assert!(delivered.tool_calls.is_empty());
        assert!(delivered.logprobs.is_empty() && delivered.npc_replies.is_empty());
    }

    fn sized(bytes: usize) -> RolloutContent {
        RolloutContent {
            trajectory: vec![Message::user("x".repeat(bytes))],
            ..Default::default()
        }
    }

    #[test]
    fn the_cache_hands_a_content_out_once_and_drops_the_oldest_past_its_bytes() {
        let cache = ContentCache::default();
        cache.put("rol_a".into(), sized(10));
        assert_eq!(cache.take("rol_a"), Some(sized(10)));
        assert_eq!(cache.take("rol_a"), None, "taken once");

        // Three that fill more than the cap: the oldest goes.
        let third = CACHED_BYTES / 3;
        for id in ["rol_1", "rol_2", "rol_3", "rol_4"] {
            cache.put(id.into(), sized(third));
        }
        assert_eq!(cache.take("rol_1"), None);
        assert!(cache.take("rol_4").is_some());
        assert!(cache.0.lock().bytes <= CACHED_BYTES);

        // Too big to hold at all: not held, nothing else dropped for it.
        cache.put("rol_big".into(), sized(CACHED_BYTES + 1));
        assert_eq!(cache.take("rol_big"), None);
        assert!(cache.take("rol_3").is_some());
    }

    #[test]
    fn taken_entries_do_not_pile_up_in_the_cache() {
        let cache = ContentCache::default();
        for i in 0..10_000 {
            let id = format!("rol_{i}");
            cache.put(id.clone(), sized(1));
            cache.take(&id);
        }
        assert!(cache.is_empty());
        assert!(cache.0.lock().order.len() <= 1024 + 1, "ids swept");
    }
}
