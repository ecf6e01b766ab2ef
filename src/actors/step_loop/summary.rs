//! Context summaries: when a run summarises every n turns, the model itself compresses
//! the older messages into one (recorded as `ContextSummarized`).

use chrono::Utc;

use super::driver::{Failure, StepError};
use crate::domain::chat::{Message, ToolSet};
use crate::domain::events::{ContextSummarized, Event, RunLaunched};
use crate::llm::{ModelClient, ModelRequest};

const SUMMARY_PROMPT: &str = "You compress the working memory of an agent. Summarise the \
    conversation below (the agent's tool calls and what they returned) in a few short \
    paragraphs: keep every id, name, date, number and decision the agent will need to \
    finish its task, and what is still to do. Answer with the summary only.";

/// Asks the model to summarise `older` messages (ContextSummarized).
pub(super) async fn summarize(
    model: &dyn ModelClient,
    run: &RunLaunched,
    rollout_id: &str,
    step: u32,
    replaced: u32,
    older: &[Message],
) -> Result<Event, StepError> {
    let transcript = older
        .iter()
        .map(|m| {
            let calls = m
                .tool_calls
                .iter()
                .map(|c| format!(" [calls {}({})]", c.function.name, c.function.arguments))
                .collect::<String>();
            format!(
                "{:?}: {}{calls}",
                m.role,
                m.content.as_deref().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let messages = [Message::system(SUMMARY_PROMPT), Message::user(transcript)];
    let request = ModelRequest {
        messages: &messages,
        tools: ToolSet::none(),
        settings: &run.model,
    };
    let reply = model
        .complete(request)
        .await
        .map_err(|e| Failure(format!("summarising before step {step} failed: {e}")))?;
    Ok(Event::ContextSummarized(ContextSummarized {
        rollout_id: rollout_id.to_string(),
        step,
        summary: reply.message.content.unwrap_or_default(),
        replaced_messages: replaced,
        usage: reply.usage,
        summarized_at: Utc::now(),
    }))
}
