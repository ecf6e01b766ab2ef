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

#[async_trait]
impl ModelClient for BuiltinAgent {
    async fn complete(&self, request: ModelRequest<'_>) -> Result<ModelReply, ModelError> {
        let message = match self {
            BuiltinAgent::Noop => Message::assistant(Some(NOOP_ANSWER.to_string()), vec![]),
            BuiltinAgent::Oracle { plan, final_answer } => {
                let done = request
                    .messages
                    .iter()
                    .filter(|m| m.role == Role::Assistant)
                    .map(|m| m.tool_calls.len())
                    .sum::<usize>();
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
        })
    }

    /// Both answer from the conversation alone, in process.
    fn free_to_ask_again(&self) -> bool {
        true
    }
}
