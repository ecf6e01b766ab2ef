//! `format=tokens` of `GET /runs/{run_id}/export`: one line per completed rollout of a
//! run launched with `return_tokens` or `token_in`, holding its whole token sequence as
//! the model saw and sampled it, in the shape RL trainers take (README, "Token-exact
//! rollouts", maps it onto TRL, verl, prime-rl and SkyRL):
//!
//! `{"prompt_ids", "response_ids", "loss_mask", "logprobs", "reward", "turns",
//! "policy_versions", "provenance"}`: `prompt_ids` is the first turn's prompt,
//! `response_ids` everything after it (completions, tool results, simulated people,
//! template glue); `loss_mask` and `logprobs` are aligned with `response_ids` (1 and
//! the server's log-probability where the model sampled the id, 0 and 0.0 elsewhere;
//! `logprobs` is null when the server gave none). `turns` gives each turn's offsets
//! into `prompt_ids + response_ids`.
//!
//! The packed ids are decoded here, per line as it is sent: never in the views.

use serde::Serialize;
use serde_json::Value;

use crate::domain::events::ModelSettings;
use crate::projections::RolloutContent;

/// Whether the run's turns recorded token ids.
pub(super) fn recorded(model: &ModelSettings) -> bool {
    model.tokens.as_ref().is_some_and(|t| t.records_tokens())
}

#[derive(Serialize)]
struct Line<'a> {
    prompt_ids: &'a [u32],
    response_ids: &'a [u32],
    loss_mask: &'a [u8],
    logprobs: Option<&'a [f32]>,
    reward: Option<f64>,
    turns: Vec<Turn<'a>>,
    policy_versions: Vec<Option<&'a str>>,
    /// Turns whose prompt did not extend the sequence before it (a chat server that
    /// re-rendered the conversation differently): the sequence is the last prompt's.
    #[serde(skip_serializing_if = "<[usize]>::is_empty")]
    rewritten_turns: &'a [usize],
    provenance: Value,
}

#[derive(Serialize)]
struct Turn<'a> {
    /// The whole prompt is `input[..prompt_end]`, `input` being `prompt_ids +
    /// response_ids`.
    prompt_end: usize,
    completion_start: usize,
    completion_end: usize,
    finish_reason: Option<&'a str>,
    policy_version: Option<&'a str>,
}

/// The rollout's line (with its newline).
pub(super) fn line(content: &RolloutContent, reward: Option<f64>, provenance: Value) -> String {
    let trace = match content.token_trace() {
        Ok(trace) => trace,
        Err(e) => {
            let line = serde_json::json!({
                "error": format!("the recorded tokens could not be read: {e}"),
                "reward": reward,
                "provenance": provenance,
            });
            return format!("{line}\n");
        }
    };
    let split = trace.first_prompt_len();
    let line = Line {
        prompt_ids: &trace.ids[..split],
        response_ids: &trace.ids[split..],
        loss_mask: &trace.mask[split..],
        logprobs: trace.has_logprobs.then(|| &trace.logprobs[split..]),
        reward,
        turns: trace
            .turns
            .iter()
            .map(|t| Turn {
                prompt_end: t.prompt.end,
                completion_start: t.completion.start,
                completion_end: t.completion.end,
                finish_reason: t.finish_reason.as_deref(),
                policy_version: t.policy_version.as_deref(),
            })
            .collect(),
        policy_versions: trace
            .turns
            .iter()
            .map(|t| t.policy_version.as_deref())
            .collect(),
        rewritten_turns: &trace.rewritten,
        provenance,
    };
    match serde_json::to_string(&line) {
        Ok(text) => text + "\n",
        Err(_) => String::new(),
    }
}
