//! Identifiers. Run and rollout ids are `run_…` / `rol_…` followed by a UUID v7 in
//! simple form, so they sort by creation time; a caller's `run_name` is the run id.
//! Event ids are UUID v7 too, derived from the event's time, stream and revision so
//! that a retried append carries the same ids and is not written twice.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub fn new_run_id(uuid: Uuid) -> String {
    format!("run_{}", uuid.simple())
}

pub fn new_rollout_id(uuid: Uuid) -> String {
    format!("rol_{}", uuid.simple())
}

pub fn run_stream(run_id: &str) -> String {
    format!("run-{run_id}")
}

pub fn rollout_stream(rollout_id: &str) -> String {
    format!("rollout-{rollout_id}")
}

/// Who drives the run when several nodes share the log (see [`crate::domain::lease`]).
pub fn lease_stream(run_id: &str) -> String {
    format!("lease-{run_id}")
}

/// A deterministic UUID v7: the millisecond timestamp of `time`, the rest from a hash
/// of the stream, the revision and the payload. The same event proposed twice (a
/// retry) gets the same id; two writers proposing different events for the same
/// revision in the same millisecond (two nodes taking one lease) never do, so the
/// store refuses the second instead of taking it for a retry of the first.
pub fn event_id(time: DateTime<Utc>, stream: &str, revision: u64, data: &[u8]) -> Uuid {
    let mut hasher = Sha256::new();
    hasher.update(stream.as_bytes());
    hasher.update(revision.to_be_bytes());
    hasher.update(data);
    let digest = hasher.finalize();
    let mut random = [0u8; 10];
    random.copy_from_slice(&digest[..10]);
    let millis = time.timestamp_millis().max(0) as u64;
    uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
}

/// A stable 64-bit seed for a rollout's environment (simulated ids and clock).
pub fn rollout_seed(rollout_id: &str) -> u64 {
    let digest = Sha256::digest(rollout_id.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(bytes)
}

/// A run name is usable as an id in URLs, stream names and file names: no path
/// separator or control character, and not only dots (`.` and `..` are paths).
pub fn valid_run_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.chars().all(|c| c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_deterministic_v7() {
        let t = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let a = event_id(t, "run-x", 3, b"{}");
        assert_eq!(a, event_id(t, "run-x", 3, b"{}"));
        assert_ne!(a, event_id(t, "run-x", 4, b"{}"));
        assert_ne!(a, event_id(t, "run-x", 3, b"{\"node\":\"b\"}"));
        assert_eq!(a.get_version_num(), 7);
    }

    #[test]
    fn run_names_reject_path_characters() {
        assert!(valid_run_name("my-run_1.2"));
        assert!(!valid_run_name("a/b"));
        assert!(!valid_run_name(""));
        assert!(!valid_run_name("a b"));
        for name in [".", "..", "...", "a\\b", "a\nb", "a\0b", "\u{7f}"] {
            assert!(!valid_run_name(name), "{name:?}");
        }
        assert!(valid_run_name(".a.") && valid_run_name("v1..2"));
    }
}
