//! Documents: the company's HR documents (the scenario's seed documents, read-only),
//! listed and read by filename.

use serde_json::{json, Value};

use super::{object_schema, unknown_tool, HrmsServer};
use crate::tools::{documents, spec, Params, ToolSpec};

/// The document tools as the agent is offered them.
pub(super) fn tools() -> Vec<ToolSpec> {
    vec![
        spec(
            "list_documents",
            "List the company's HR documents (policies, org chart).",
            false,
            object_schema(&[], json!({})),
        ),
        spec(
            "read_document",
            "Read one HR document by filename.",
            false,
            object_schema(
                &["filename"],
                json!({
                    "filename": {"type": "string", "minLength": 1, "description": "e.g. leave_policy.md"},
                }),
            ),
        ),
    ]
}

impl HrmsServer {
    /// Runs one of the document tools (none changes the state).
    pub(super) fn step_documents(&self, tool: &str, p: &Params<'_>) -> Result<Value, String> {
        match tool {
            "list_documents" => {
                let docs: Vec<Value> = self
                    .documents
                    .iter()
                    .map(|(name, text)| json!({"filename": name, "title": documents::title(name, text)}))
                    .collect();
                Ok(json!({"documents": docs}))
            }
            "read_document" => {
                let name = p.str("filename")?;
                match self.documents.get(name) {
                    Some(text) => Ok(json!({"filename": name, "content": text})),
                    // Exact names only, as recorded runs were answered.
                    None => Err(documents::missing(&self.documents, name, "document")),
                }
            }
            other => Err(unknown_tool(other)),
        }
    }
}
