//! The conversation of a rollout in the OpenAI chat-message shape: what the agent
//! saw and said. Providers translate to and from it; the trajectory is a list of it.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Message {
    pub role: Role,
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Message {
    pub fn system(content: impl Into<String>) -> Self {
        Self::text(Role::System, content)
    }

    pub fn user(content: impl Into<String>) -> Self {
        Self::text(Role::User, content)
    }

    pub fn assistant(content: Option<String>, tool_calls: Vec<ToolCall>) -> Self {
        Self {
            role: Role::Assistant,
            content,
            tool_calls,
            tool_call_id: None,
            name: None,
        }
    }

    pub fn tool_result(
        tool_call_id: impl Into<String>,
        name: &str,
        content: impl Into<String>,
    ) -> Self {
        Self {
            role: Role::Tool,
            content: Some(content.into()),
            tool_calls: Vec::new(),
            tool_call_id: Some(tool_call_id.into()),
            name: Some(name.to_string()),
        }
    }

    fn text(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: Some(content.into()),
            tool_calls: Vec::new(),
            tool_call_id: None,
            name: None,
        }
    }
}

/// A function call requested by the assistant. `arguments` is the JSON text the model
/// produced, kept verbatim (it may not even be valid JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type", default = "function_kind")]
    pub kind: String,
    pub function: FunctionCall,
}

fn function_kind() -> String {
    "function".to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FunctionCall {
    pub name: String,
    pub arguments: String,
}

/// A tool offered to the model: its JSON-Schema `parameters`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolDefinition {
    pub name: String,
    pub description: String,
    pub parameters: serde_json::Value,
}

impl ToolDefinition {
    /// The OpenAI `tools` entry (also the usual shape of training data).
    pub fn openai_json(&self) -> serde_json::Value {
        serde_json::json!({
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            }
        })
    }
}

/// The tools a model is shown, with their OpenAI `tools` array written once: every
/// request of every rollout of a task carries the same kilobytes of schemas, and
/// writing them was the biggest part of encoding a request.
#[derive(Debug, Default)]
pub struct ToolSet {
    definitions: Vec<ToolDefinition>,
    openai: OnceLock<bytes::Bytes>,
}

impl ToolSet {
    pub fn new(definitions: Vec<ToolDefinition>) -> Self {
        ToolSet {
            definitions,
            openai: OnceLock::new(),
        }
    }

    /// No tools (summaries, simulated people, judges).
    pub fn none() -> &'static ToolSet {
        static NONE: ToolSet = ToolSet {
            definitions: Vec::new(),
            openai: OnceLock::new(),
        };
        &NONE
    }

    /// The OpenAI `tools` array as JSON text, written on first use.
    pub fn openai_json(&self) -> bytes::Bytes {
        self.openai
            .get_or_init(|| {
                let entries: Vec<serde_json::Value> = self
                    .definitions
                    .iter()
                    .map(ToolDefinition::openai_json)
                    .collect();
                serde_json::to_vec(&entries)
                    .expect("a JSON value always serialises")
                    .into()
            })
            .clone()
    }
}

impl std::ops::Deref for ToolSet {
    type Target = [ToolDefinition];

    fn deref(&self) -> &[ToolDefinition] {
        &self.definitions
    }
}

impl FromIterator<ToolDefinition> for ToolSet {
    fn from_iter<I: IntoIterator<Item = ToolDefinition>>(iter: I) -> Self {
        ToolSet::new(iter.into_iter().collect())
    }
}
