//! Token-exact rollouts (issue 23): rl-gym owning the token sequence a model sees, so
//! that what a trainer learns from is exactly what was sampled.
//!
//! A chat API re-renders and re-tokenizes the whole conversation on every turn, and a
//! trainer that tokenizes the finished conversation again gets ids the model never saw
//! ("retokenization drift"). Here the ids are the record: [`tokenizer`] loads a Hugging
//! Face tokenizer directory, [`template`] renders its chat template the way
//! transformers' `apply_chat_template` does, [`sequence`] grows one rollout's ids turn by
//! turn (sampled ids kept verbatim, only new messages tokenized, a per-token mask and
//! log-probabilities), [`parsers`] turns sampled text back into tool calls the way
//! vLLM's parsers do, and [`packed`] stores ids and log-probabilities compactly in
//! events.
//!
//! This is a leaf: it knows [`crate::domain::chat`] and nothing of actors, the store,
//! projections or HTTP. Providers and the step loop call it.

/// Lives in the domain, because events carry it; re-exported here beside its users.
pub use crate::domain::packed;
pub mod parsers;
pub mod sequence;
pub mod template;
pub mod tokenizer;

pub use packed::{PackedError, PackedTokens};
pub use parsers::{MalformedToolCall, ParsedCompletion, ToolCallParser, UnknownParser};
pub use sequence::{Completion, SequenceError, TokenSequence, Turn};
pub use template::{ChatTemplate, RenderOptions, TemplateError};
pub use tokenizer::{ChatTokenizer, SpecialToken, SpecialTokens, TokenizerError};

#[cfg(test)]
mod tests {
    /// A run loads its tokenizer and template once and shares them with its rollouts.
    #[test]
    fn the_loaded_pieces_can_be_shared_across_rollouts() {
        fn shared<T: Send + Sync>() {}
        shared::<super::ChatTokenizer>();
        shared::<super::ChatTemplate>();
        shared::<super::TokenSequence>();
    }
}
