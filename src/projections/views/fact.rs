//! Events as the views fold them: a rollout's steps reduced to their small facts.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::domain::events::{Event, TokenUsage};
use crate::projections::rfc3339;

/// An event as the views fold it. A rollout's steps (its start, model and tool calls,
/// NPC replies, summaries) are most of the log and most of its bytes, and the views
/// keep only their small facts, so those are decoded without their messages,
/// observations and replies ([`crate::projections::decode_fact`]). Made only by `decode_fact` and
/// `From<Event>`, so a step is always a [`FactKind::Step`].
#[derive(Debug, Clone)]
pub struct Fact(pub(in crate::projections) FactKind);

#[derive(Debug, Clone)]
pub(in crate::projections) enum FactKind {
    Step(StepKind, RolloutStep),
    Event(Event),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::projections) enum StepKind {
    Started,
    ModelCalled,
    ToolCalled,
    NpcReplied,
    ContextSummarized,
}

impl StepKind {
    pub(in crate::projections) fn of(event_type: &str) -> Option<StepKind> {
        Some(match event_type {
            "RolloutStarted" => StepKind::Started,
            "ModelCalled" => StepKind::ModelCalled,
            "ToolCalled" => StepKind::ToolCalled,
            "NpcReplied" => StepKind::NpcReplied,
            "ContextSummarized" => StepKind::ContextSummarized,
            _ => return None,
        })
    }
}

/// The fields of a step's payload the views read; the others are skipped unread.
/// A step's time matters to the views only when it starts the rollout (the others
/// change no status), so only a start's is parsed.
#[derive(Debug, Clone, Deserialize)]
pub(in crate::projections) struct RolloutStep {
    pub(super) rollout_id: String,
    #[serde(default)]
    pub(super) step: u32,
    #[serde(default)]
    pub(super) latency_ms: f64,
    #[serde(default)]
    pub(super) usage: Option<TokenUsage>,
    /// When a start started.
    #[serde(
        default,
        alias = "started_at",
        deserialize_with = "rfc3339::deserialize_opt"
    )]
    pub(super) at: Option<DateTime<Utc>>,
}

impl RolloutStep {
    /// Refuses a start without its time, as decoding the whole event would.
    pub(in crate::projections) fn checked(
        self,
        kind: StepKind,
    ) -> Result<RolloutStep, serde_json::Error> {
        match (kind, self.at) {
            (StepKind::Started, None) => Err(serde::de::Error::missing_field("started_at")),
            _ => Ok(self),
        }
    }
}

impl From<Event> for Fact {
    fn from(event: Event) -> Fact {
        let step = |kind, rollout_id: &str, step, latency_ms, usage: &Option<TokenUsage>| {
            FactKind::Step(
                kind,
                RolloutStep {
                    rollout_id: rollout_id.to_string(),
                    step,
                    latency_ms,
                    usage: usage.clone(),
                    at: (kind == StepKind::Started).then(|| event.time()),
                },
            )
        };
        Fact(match &event {
            Event::RolloutStarted(e) => step(StepKind::Started, &e.rollout_id, 0, 0.0, &None),
            Event::ModelCalled(e) => step(
                StepKind::ModelCalled,
                &e.rollout_id,
                e.step,
                e.latency_ms,
                &e.usage,
            ),
            Event::ToolCalled(e) => step(
                StepKind::ToolCalled,
                &e.rollout_id,
                e.step,
                e.latency_ms,
                &None,
            ),
            Event::NpcReplied(e) => step(StepKind::NpcReplied, &e.rollout_id, e.step, 0.0, &None),
            Event::ContextSummarized(e) => step(
                StepKind::ContextSummarized,
                &e.rollout_id,
                e.step,
                0.0,
                &e.usage,
            ),
            _ => FactKind::Event(event),
        })
    }
}
