//! The `builtin` provider's agents, which make the service usable and testable with no
//! network: `noop` answers at once without acting (it must earn no credit), `oracle`
//! replays the task's reference solution one tool call per turn and then gives the
//! task's final answer (it must earn full credit).

use async_trait::async_trait;
use serde_json::Value;

use super::{ModelClient, ModelError, ModelReply, ModelRequest};
use crate::domain::chat::{FunctionCall, Message, Role, ToolCall};
use crate::domain::events::TokenUsage;

pub const MODELS: &[&str] = &["noop", "oracle"];

/// A tool call of a reference solution.
#[derive(Debug, Clone)]
pub struct PlannedCall {
    pub tool_name: String,
    pub parameters: Value,
}

pub enum BuiltinAgent {
    Noop,
    Oracle {
        plan: Vec<PlannedCall>,
        final_answer: Option<String>,
    },
}

const NOOP_ANSWER: &str = "I will not take any action on this task.";
const ORACLE_DONE: &str = "The task is complete.";

/// How many of its planned calls the oracle has made. A context summary folds older
/// turns away, so counting the calls still in the conversation would start the plan
/// over; the oracle numbers its calls `call_1`, `call_2`, … and the latest exchange is
/// always kept verbatim, so the highest number seen is the count. Calls of another
/// model (a fork's earlier steps) are counted as they stand.
fn calls_made(messages: &[Message]) -> usize {
    let calls = messages
        .iter()
        .filter(|m| m.role == Role::Assistant)
        .flat_map(|m| &m.tool_calls);
    let numbered = calls
        .clone()
        .filter_map(|c| c.id.strip_prefix("call_")?.parse::<usize>().ok())
        .max()
        .unwrap_or(0);
    numbered.max(calls.count())
}

#[async_trait]
impl ModelClient for BuiltinAgent {
    async fn complete(&self, request: ModelRequest<'_>) -> Result<ModelReply, ModelError> {
        let message = match self {
            BuiltinAgent::Noop => Message::assistant(Some(NOOP_ANSWER.to_string()), vec![]),
            BuiltinAgent::Oracle { plan, final_answer } => {
                let done = calls_made(request.messages);
                match plan.get(done) {
                    Some(call) => Message::assistant(
                        None,
                        vec![ToolCall {
                            id: format!("call_{}", done + 1),
                            kind: "function".to_string(),
                            function: FunctionCall {
                                name: call.tool_name.clone(),
                                arguments: call.parameters.to_string(),
                            },
                        }],
                    ),
                    None => Message::assistant(
                        Some(
                            final_answer
                                .clone()
                                .unwrap_or_else(|| ORACLE_DONE.to_string()),
                        ),
                        vec![],
                    ),
                }
            }
        };
        Ok(ModelReply {
            message,
            usage: Some(TokenUsage::default()),
            logprobs: None,
            tokens: None,
        })
    }

    /// Both answer from the conversation alone, in process.
    fn free_to_ask_again(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::rollout::summary_message;

    fn oracle_call(n: usize) -> Message {
        Message::assistant(
            None,
            vec![ToolCall {
                id: format!("call_{n}"),
                kind: "function".to_string(),
                function: FunctionCall {
                    name: format!("tool_{n}"),
                    arguments: "{}".to_string(),
                },
            }],
        )
    }

    #[test]
    fn after_a_summary_the_oracle_counts_from_its_latest_call() {
        // Calls 1-4 were folded into a summary; only the 5th exchange stayed verbatim.
        let messages = vec![
            Message::system("sys"),
            Message::user("task"),
            summary_message("four calls made"),
            oracle_call(5),
        ];
        assert_eq!(calls_made(&messages), 5);
    }

    #[test]
    fn calls_of_another_model_are_counted_as_they_stand() {
        let mut other = oracle_call(1);
        other.tool_calls[0].id = "toolu_abc".to_string();
        let messages = vec![Message::user("task"), other.clone(), other];
        assert_eq!(calls_made(&messages), 2);
    }
}
