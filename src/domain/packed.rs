//! Token ids and log-probabilities as an event stores them: packed little-endian
//! (`u32` ids, `f32` log-probabilities) and base64'd, inside a small serde struct.
//!
//! A turn's event can carry thousands of ids; as JSON numbers they cost 5 to 7 bytes
//! each plus a comma, and log-probabilities (`-0.00012345678`) about 20, and every one
//! must be parsed again on replay. Packed, an id is 4 bytes and a log-probability 4
//! (5.33 each after base64), their size known from the count, and nothing is decoded
//! until a rollout's content is read (DESIGN.md, "The training half"). `f32` keeps what
//! the servers send: vLLM and SGLang compute log-probabilities in float32.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PackedError {
    #[error("`{field}` is not base64: {message}")]
    Base64 {
        field: &'static str,
        message: String,
    },
    #[error("`{field}` holds {bytes} bytes, not a whole number of 4-byte values")]
    Length { field: &'static str, bytes: usize },
    #[error("{ids} ids but {logprobs} log-probabilities")]
    Mismatch { ids: usize, logprobs: usize },
}

/// Ids, and optionally one log-probability per id, packed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackedTokens {
    /// base64 of the ids as little-endian `u32`.
    pub ids: String,
    /// base64 of the log-probabilities as little-endian `f32`, one per id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<String>,
}

impl PackedTokens {
    /// Packs ids and their log-probabilities, which must be as many.
    pub fn encode(ids: &[u32], logprobs: Option<&[f32]>) -> Result<Self, PackedError> {
        if let Some(lp) = logprobs {
            if lp.len() != ids.len() {
                return Err(PackedError::Mismatch {
                    ids: ids.len(),
                    logprobs: lp.len(),
                });
            }
        }
        let ids = STANDARD.encode(
            ids.iter()
                .flat_map(|id| id.to_le_bytes())
                .collect::<Vec<_>>(),
        );
        let logprobs = logprobs
            .map(|lp| STANDARD.encode(lp.iter().flat_map(|p| p.to_le_bytes()).collect::<Vec<_>>()));
        Ok(PackedTokens { ids, logprobs })
    }

    /// The ids.
    pub fn ids(&self) -> Result<Vec<u32>, PackedError> {
        Ok(words("ids", &self.ids)?
            .into_iter()
            .map(u32::from_le_bytes)
            .collect())
    }

    /// The log-probabilities, if packed.
    pub fn logprobs(&self) -> Result<Option<Vec<f32>>, PackedError> {
        let Some(text) = &self.logprobs else {
            return Ok(None);
        };
        Ok(Some(
            words("logprobs", text)?
                .into_iter()
                .map(f32::from_le_bytes)
                .collect(),
        ))
    }

    /// Both, checked to be as many.
    pub fn decode(&self) -> Result<(Vec<u32>, Option<Vec<f32>>), PackedError> {
        let ids = self.ids()?;
        let logprobs = self.logprobs()?;
        if let Some(lp) = &logprobs {
            if lp.len() != ids.len() {
                return Err(PackedError::Mismatch {
                    ids: ids.len(),
                    logprobs: lp.len(),
                });
            }
        }
        Ok((ids, logprobs))
    }

    /// How many ids, from the text's length alone (no decoding).
    pub fn len(&self) -> usize {
        let text = self.ids.trim_end_matches('=');
        text.len() * 3 / 4 / 4
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

fn words(field: &'static str, text: &str) -> Result<Vec<[u8; 4]>, PackedError> {
    let bytes = STANDARD.decode(text).map_err(|e| PackedError::Base64 {
        field,
        message: e.to_string(),
    })?;
    if bytes.len() % 4 != 0 {
        return Err(PackedError::Length {
            field,
            bytes: bytes.len(),
        });
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| [c[0], c[1], c[2], c[3]])
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic stand-in for a completion: ids over a 150k vocabulary,
    /// log-probabilities mostly near 0 with some very unlikely tokens.
    fn sample(n: usize) -> (Vec<u32>, Vec<f32>) {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let ids = (0..n).map(|_| (next() % 151_936) as u32).collect();
        let logprobs = (0..n)
            .map(|_| -((next() % 1_000_000) as f32 / 1_000_000.0).powi(3) * 12.0)
            .collect();
        (ids, logprobs)
    }

    #[test]
    fn ids_and_logprobs_round_trip_exactly() {
        let (ids, logprobs) = sample(1000);
        let packed = PackedTokens::encode(&ids, Some(&logprobs)).unwrap();
        assert_eq!(packed.len(), 1000);
        let (back_ids, back_lp) = packed.decode().unwrap();
        assert_eq!(back_ids, ids);
        let back_lp = back_lp.unwrap();
        assert!(back_lp
            .iter()
            .zip(&logprobs)
            .all(|(a, b)| a.to_bits() == b.to_bits()));

        let json = serde_json::to_string(&packed).unwrap();
        let again: PackedTokens = serde_json::from_str(&json).unwrap();
        assert_eq!(again, packed);
    }

    #[test]
    fn extreme_values_survive() {
        let ids = [0, 1, u32::MAX, 151_935];
        let logprobs = [0.0, -0.0, f32::NEG_INFINITY, -1e-30];
        let packed = PackedTokens::encode(&ids, Some(&logprobs)).unwrap();
        let (i, lp) = packed.decode().unwrap();
        assert_eq!(i, ids);
        let lp = lp.unwrap();
        for (a, b) in lp.iter().zip(logprobs) {
            assert_eq!(a.to_bits(), b.to_bits());
        }
    }

    #[test]
    fn without_logprobs_the_field_is_left_out() {
        let packed = PackedTokens::encode(&[1, 2, 3], None).unwrap();
        assert_eq!(
            serde_json::to_value(&packed).unwrap(),
            serde_json::json!({"ids": "AQAAAAIAAAADAAAA"})
        );
        assert_eq!(packed.decode().unwrap(), (vec![1, 2, 3], None));
        let empty = PackedTokens::encode(&[], Some(&[])).unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty.decode().unwrap(), (vec![], Some(vec![])));
    }

    #[test]
    fn bad_lengths_and_bad_base64_are_refused() {
        assert_eq!(
            PackedTokens::encode(&[1, 2], Some(&[0.0])),
            Err(PackedError::Mismatch {
                ids: 2,
                logprobs: 1
            })
        );
        let three_bytes = PackedTokens {
            ids: STANDARD.encode([1u8, 2, 3]),
            logprobs: None,
        };
        assert_eq!(
            three_bytes.ids(),
            Err(PackedError::Length {
                field: "ids",
                bytes: 3
            })
        );
        let not_base64 = PackedTokens {
            ids: "AQAAAA==".into(),
            logprobs: Some("*not*".into()),
        };
        assert!(matches!(
            not_base64.decode(),
            Err(PackedError::Base64 {
                field: "logprobs",
                ..
            })
        ));
        let mismatched = PackedTokens {
            ids: PackedTokens::encode(&[1, 2], None).unwrap().ids,
            logprobs: PackedTokens::encode(&[1], Some(&[0.5])).unwrap().logprobs,
        };
        assert_eq!(
            mismatched.decode(),
            Err(PackedError::Mismatch {
                ids: 2,
                logprobs: 1
            })
        );
    }

    /// The figure quoted in the report for issue 23: bytes per 1,000 tokens in an
    /// event's JSON, packed versus plain JSON arrays (ids over Qwen's 151,936-token
    /// vocabulary; log-probabilities as `f32`, and as the `f64` servers send).
    #[test]
    fn bytes_per_thousand_tokens_packed_versus_json_arrays() {
        let (ids, logprobs) = sample(1000);
        let wide: Vec<f64> = logprobs
            .iter()
            .map(|&p| f64::from(p) * (1.0 + 1e-9))
            .collect();
        let size = |v: serde_json::Value| serde_json::to_string(&v).unwrap().len();
        let packed_ids =
            size(serde_json::to_value(PackedTokens::encode(&ids, None).unwrap()).unwrap());
        let packed = size(
            serde_json::to_value(PackedTokens::encode(&ids, Some(&logprobs)).unwrap()).unwrap(),
        );
        let json_ids = size(serde_json::json!({ "ids": ids }));
        // Through `to_string` an f32 keeps its own shortest form; a `Value` would widen it.
        let json_f32 = format!(
            r#"{{"ids":{},"logprobs":{}}}"#,
            serde_json::to_string(&ids).unwrap(),
            serde_json::to_string(&logprobs).unwrap()
        )
        .len();
        let json_f64 = size(serde_json::json!({ "ids": ids, "logprobs": wide }));
        println!(
            "per 1,000 tokens: packed ids {packed_ids} B, ids+logprobs {packed} B; \
             JSON arrays ids {json_ids} B, ids+f32 logprobs {json_f32} B, ids+f64 logprobs {json_f64} B"
        );
        // 4 bytes per value, base64'd: 5,336 characters per 1,000 values.
        assert!(packed_ids < 5_400 && packed < 10_800);
        assert!(json_f32 > packed && json_f64 > json_f32);
    }
}
