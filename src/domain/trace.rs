//! A rollout's whole token sequence, rebuilt from its turns' [`TurnTokens`]: the ids in
//! order, a mask (1 where the model sampled the id, 0 where rl-gym or the server's
//! template wrote it) and the log-probabilities at sampled ids (0.0 elsewhere), the
//! shapes trainers take (verl's `response_mask`, SkyRL's `loss_masks`).
//!
//! Each turn stores only what its prompt adds after the previous turn's prompt and
//! completion (`prompt_reused` ids of those, then its own). When a prompt does not
//! extend the whole previous sequence (a chat server that re-rendered the conversation
//! differently, "retokenization drift"), the sequence is cut back to what the new
//! prompt kept and the turn is listed in [`TokenTrace::rewritten`]: the ids are then
//! what the last prompt saw, and the sampled ids cut away are reported, not hidden;
//! earlier turns' offsets are cut back with them (a turn wholly cut away has empty
//! ranges at the cut).
//!
//! Decoding happens here, when a rollout's content is read; the views' fold never
//! calls it.

use std::ops::Range;

use super::events::TurnTokens;
use super::packed::PackedError;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TraceError {
    #[error("turn {turn}: {source}")]
    Packed { turn: usize, source: PackedError },
    #[error("turn {turn} reuses {reused} ids of a sequence of {len}")]
    Reuse {
        turn: usize,
        reused: usize,
        len: usize,
    },
}

/// Where one turn sits in the rebuilt sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceTurn {
    /// The ids its prompt added (the whole prompt is `0..prompt.end`).
    pub prompt: Range<usize>,
    /// Its sampled ids.
    pub completion: Range<usize>,
    pub finish_reason: Option<String>,
    pub policy_version: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenTrace {
    pub ids: Vec<u32>,
    pub mask: Vec<u8>,
    /// One per id; 0.0 where not sampled (and where a server gave none).
    pub logprobs: Vec<f32>,
    /// False when some completion came without log-probabilities.
    pub has_logprobs: bool,
    pub turns: Vec<TraceTurn>,
    /// Turns (0-based) whose prompt did not extend the whole sequence before it.
    pub rewritten: Vec<usize>,
}

impl TokenTrace {
    /// Rebuilds the sequence from a rollout's turns, oldest first.
    pub fn rebuild<'a>(
        turns: impl IntoIterator<Item = &'a TurnTokens>,
    ) -> Result<TokenTrace, TraceError> {
        let mut trace = TokenTrace {
            has_logprobs: true,
            ..TokenTrace::default()
        };
        for (turn, tokens) in turns.into_iter().enumerate() {
            trace.push(turn, tokens)?;
        }
        Ok(trace)
    }

    /// Adds one turn.
    pub fn push(&mut self, turn: usize, tokens: &TurnTokens) -> Result<(), TraceError> {
        let packed = |source| TraceError::Packed { turn, source };
        let reused = tokens.prompt_reused as usize;
        if reused > self.ids.len() {
            return Err(TraceError::Reuse {
                turn,
                reused,
                len: self.ids.len(),
            });
        }
        if reused < self.ids.len() {
            if turn > 0 {
                self.rewritten.push(turn);
            }
            self.ids.truncate(reused);
            self.mask.truncate(reused);
            self.logprobs.truncate(reused);
            // Earlier turns keep only what is left of them: their offsets always
            // point into the sequence as rebuilt, never past what the new prompt kept.
            for earlier in &mut self.turns {
                earlier.prompt = earlier.prompt.start.min(reused)..earlier.prompt.end.min(reused);
                earlier.completion =
                    earlier.completion.start.min(reused)..earlier.completion.end.min(reused);
            }
        }
        let prompt = tokens.prompt.ids().map_err(packed)?;
        let (completion, logprobs) = tokens.completion.decode().map_err(packed)?;
        let prompt_start = self.ids.len();
        self.ids.extend_from_slice(&prompt);
        self.mask.resize(self.ids.len(), 0);
        self.logprobs.resize(self.ids.len(), 0.0);
        let completion_start = self.ids.len();
        self.ids.extend_from_slice(&completion);
        self.mask.resize(self.ids.len(), 1);
        match logprobs {
            Some(lp) => self.logprobs.extend_from_slice(&lp),
            None => {
                self.has_logprobs = false;
                self.logprobs.resize(self.ids.len(), 0.0);
            }
        }
        self.turns.push(TraceTurn {
            prompt: prompt_start..completion_start,
            completion: completion_start..self.ids.len(),
            finish_reason: tokens.finish_reason.clone(),
            policy_version: tokens.policy_version.clone(),
        });
        Ok(())
    }

    /// The first turn's prompt length (what a trainer calls `prompt_ids`).
    pub fn first_prompt_len(&self) -> usize {
        self.turns.first().map_or(0, |t| t.prompt.end)
    }

    /// The whole prompt of turn `turn`.
    pub fn prompt_of(&self, turn: usize) -> Option<&[u32]> {
        self.turns.get(turn).map(|t| &self.ids[..t.prompt.end])
    }
}

/// The turn record of a prompt and a completion, stored as what the prompt adds to
/// `before` (the previous prompt and completion).
pub fn turn_tokens(
    before: &[u32],
    prompt: &[u32],
    completion: &[u32],
    logprobs: Option<&[f32]>,
    finish_reason: Option<String>,
    policy_version: Option<String>,
) -> Result<TurnTokens, PackedError> {
    let reused = before
        .iter()
        .zip(prompt)
        .take_while(|(a, b)| a == b)
        .count();
    Ok(TurnTokens {
        prompt_reused: reused as u32,
        prompt: super::packed::PackedTokens::encode(&prompt[reused..], None)?,
        completion: super::packed::PackedTokens::encode(completion, logprobs)?,
        finish_reason,
        policy_version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_growing_sequence_is_rebuilt_from_what_each_turn_adds() {
        let t1 = turn_tokens(&[], &[1, 2, 3], &[4, 5], Some(&[-0.5, -0.25]), None, None).unwrap();
        let t2 = turn_tokens(
            &[1, 2, 3, 4, 5],
            &[1, 2, 3, 4, 5, 6, 7],
            &[8],
            Some(&[-1.0]),
            Some("stop".into()),
            Some("v2".into()),
        )
        .unwrap();
        assert_eq!(
            (t2.prompt_reused, t2.prompt.ids().unwrap()),
            (5, vec![6, 7])
        );
        let trace = TokenTrace::rebuild([&t1, &t2]).unwrap();
        assert_eq!(trace.ids, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(trace.mask, [0, 0, 0, 1, 1, 0, 0, 1]);
        assert_eq!(trace.logprobs, [0.0, 0.0, 0.0, -0.5, -0.25, 0.0, 0.0, -1.0]);
        assert_eq!(trace.first_prompt_len(), 3);
        assert_eq!(trace.prompt_of(1).unwrap(), &[1, 2, 3, 4, 5, 6, 7]);
        assert!(trace.rewritten.is_empty() && trace.has_logprobs);
        assert_eq!(trace.turns[1].policy_version.as_deref(), Some("v2"));
    }

    #[test]
    fn a_prompt_that_rewrites_the_past_is_cut_back_and_reported() {
        let t1 = turn_tokens(&[], &[1, 2, 3], &[4, 5], None, None, None).unwrap();
        let t2 = turn_tokens(&[1, 2, 3, 4, 5], &[1, 2, 9, 6], &[7], None, None, None).unwrap();
        let trace = TokenTrace::rebuild([&t1, &t2]).unwrap();
        assert_eq!(trace.ids, [1, 2, 9, 6, 7]);
        assert_eq!(trace.mask, [0, 0, 0, 0, 1]);
        assert_eq!(trace.rewritten, [1]);
        assert!(!trace.has_logprobs);
        // The first turn's prompt lost its last id and its completion all of its ids
        // to the rewrite: its offsets say so instead of pointing at the new prompt.
        assert_eq!(trace.turns[0].prompt, 0..2);
        assert_eq!(trace.turns[0].completion, 2..2);
        assert_eq!(trace.turns[1].prompt, 2..4);
        assert_eq!(trace.turns[1].completion, 4..5);
        for turn in &trace.turns {
            assert!(turn.completion.end <= trace.ids.len());
            assert!(trace.mask[turn.completion.clone()].iter().all(|&m| m == 1));
        }
    }
}
