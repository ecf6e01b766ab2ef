//! The bookkeeping every backend shares: which revisions a stream has and where they
//! landed globally, and which event ids each stream already holds.
//!
//! The append rules (expected state, idempotent retry, partial id reuse, empty append)
//! live here and only here, as the pure [`Index::check`], so the memory and the file
//! backends cannot drift apart. [`Index::record`] applies an accepted append and
//! [`Index::unrecord`] takes it back (the file writer does so when a batch fails to
//! reach the disk).
//!
//! Ids are scoped to their stream, as in KurrentDB: the same id appended to another
//! stream is another event. The index is sized for the whole log (about 24 bytes per
//! event, more for long streams), which is the price of answering every check without
//! touching the disk.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use foldhash::fast::RandomState;

use uuid::Uuid;

use super::{AppendResult, CurrentRevision, ExpectedState, StoreError};

/// What an append would do, decided without touching anything.
#[derive(Debug)]
pub enum Decision {
    /// Write the events: the first gets `first_revision` in its stream and
    /// `first_position` in the log, the rest follow without gaps.
    Write {
        first_revision: u64,
        first_position: u64,
    },
    /// Every id was already written to the stream, in this order: a retry. Nothing is
    /// written and the caller gets the original result.
    AlreadyWritten(AppendResult),
    /// The append breaks a rule.
    Refused(StoreError),
}

/// Streams up to this many events are searched for an id; longer ones get a map.
const SCANNED: usize = 32;

#[derive(Debug, Default)]
struct StreamEntry {
    name: Arc<str>,
    /// Global position of each revision: `positions[rev]`.
    positions: Vec<u64>,
    /// The event id of each revision: `ids[rev]`. Pushing here is all opening a log
    /// does per event; one map of every id in the log was a tenth of replaying it.
    ids: Vec<Uuid>,
    /// id → revision, built the first time a stream longer than [`SCANNED`] is checked
    /// and kept up to date from then on.
    by_id: OnceLock<HashMap<Uuid, u64, RandomState>>,
}

impl StreamEntry {
    fn revision_of(&self, id: &Uuid) -> Option<u64> {
        if self.ids.len() <= SCANNED {
            return self.ids.iter().position(|i| i == id).map(|r| r as u64);
        }
        self.by_id
            .get_or_init(|| {
                self.ids
                    .iter()
                    .enumerate()
                    .map(|(r, id)| (*id, r as u64))
                    .collect()
            })
            .get(id)
            .copied()
    }

    fn push(&mut self, id: Uuid, position: u64) {
        if let Some(by_id) = self.by_id.get_mut() {
            by_id.insert(id, self.ids.len() as u64);
        }
        self.ids.push(id);
        self.positions.push(position);
    }

    fn pop(&mut self) -> bool {
        let Some(id) = self.ids.pop() else {
            return false;
        };
        if let Some(by_id) = self.by_id.get_mut() {
            by_id.remove(&id);
        }
        self.positions.pop();
        true
    }
}

/// Streams, their revisions' positions and their ids.
#[derive(Debug, Default)]
pub struct Index {
    // foldhash, randomly seeded: SipHash was a tenth of opening a large log.
    numbers: HashMap<Arc<str>, u32, RandomState>,
    streams: Vec<StreamEntry>,
    next_position: u64,
}

impl Index {
    pub fn new() -> Self {
        Self::default()
    }

    /// The position the next recorded event gets (= number of events recorded).
    pub fn next_position(&self) -> u64 {
        self.next_position
    }

    /// The stream's last revision, or `NoStream`.
    pub fn current(&self, stream: &str) -> CurrentRevision {
        match self
            .entry(stream)
            .and_then(|e| e.positions.len().checked_sub(1))
        {
            Some(last) => CurrentRevision::Current(last as u64),
            None => CurrentRevision::NoStream,
        }
    }

    /// The revision the stream's next event gets (0 for a new stream).
    pub fn next_revision(&self, stream: &str) -> u64 {
        self.entry(stream).map_or(0, |e| e.positions.len() as u64)
    }

    /// Global positions of the stream's revisions from `from_revision` on.
    pub fn stream_positions(&self, stream: &str, from_revision: u64) -> &[u64] {
        match self.entry(stream) {
            Some(e) => {
                let from = usize::try_from(from_revision)
                    .unwrap_or(usize::MAX)
                    .min(e.positions.len());
                &e.positions[from..]
            }
            None => &[],
        }
    }

    fn entry(&self, stream: &str) -> Option<&StreamEntry> {
        self.numbers.get(stream).map(|&n| &self.streams[n as usize])
    }

    /// Decides what appending `ids` to `stream` under `expected` does. Pure: the index
    /// is not changed.
    pub fn check(&self, stream: &str, expected: ExpectedState, ids: &[Uuid]) -> Decision {
        if ids.is_empty() {
            return Decision::Refused(StoreError::InvalidAppend(format!(
                "no events to append to stream {stream}"
            )));
        }
        if stream.is_empty() {
            return Decision::Refused(StoreError::InvalidAppend("the stream name is empty".into()));
        }
        // Duplicates inside one append would make the id → revision map ambiguous.
        if ids.len() > 1 {
            let mut seen = std::collections::HashSet::with_capacity(ids.len());
            if let Some(dup) = ids.iter().find(|id| !seen.insert(**id)) {
                return Decision::Refused(StoreError::InvalidAppend(format!(
                    "event id {dup} appears twice in one append to stream {stream}"
                )));
            }
        }

        let entry = self.entry(stream);
        let len = entry.map_or(0, |e| e.positions.len() as u64);

        // Idempotency comes before the expected state: a retry after a lost ack must
        // succeed even though the stream has moved past the expectation since.
        if let Some(entry) = entry {
            let found: Vec<Option<u64>> = ids.iter().map(|id| entry.revision_of(id)).collect();
            let written = found.iter().filter(|r| r.is_some()).count();
            if written == ids.len() {
                let first = found[0].unwrap_or_default();
                let in_order = found
                    .iter()
                    .enumerate()
                    .all(|(i, r)| *r == Some(first + i as u64));
                if in_order {
                    let last = first + ids.len() as u64 - 1;
                    return Decision::AlreadyWritten(AppendResult {
                        next_expected_revision: last,
                        position: entry.positions[last as usize],
                    });
                }
                return Decision::Refused(StoreError::IdempotencyConflict {
                    stream: stream.to_owned(),
                });
            }
            if written > 0 {
                return Decision::Refused(StoreError::IdempotencyConflict {
                    stream: stream.to_owned(),
                });
            }
        }

        let current = match len {
            0 => CurrentRevision::NoStream,
            n => CurrentRevision::Current(n - 1),
        };
        let accepted = match (expected, current) {
            (ExpectedState::Any, _) => true,
            (ExpectedState::NoStream, CurrentRevision::NoStream) => true,
            (ExpectedState::StreamExists, CurrentRevision::Current(_)) => true,
            (ExpectedState::Exact(want), CurrentRevision::Current(have)) => want == have,
            _ => false,
        };
        if !accepted {
            return Decision::Refused(StoreError::WrongExpectedVersion {
                stream: stream.to_owned(),
                expected,
                current,
            });
        }
        Decision::Write {
            first_revision: len,
            first_position: self.next_position,
        }
    }

    /// Records `ids` as the next events of `stream` at the next positions, and returns
    /// where the first one landed as `(revision, position)`. Call it only for an append
    /// that [`Index::check`] said to write (recovery calls it per event and compares).
    pub fn record(&mut self, stream: &str, ids: &[Uuid]) -> (u64, u64) {
        let number = match self.numbers.get(stream) {
            Some(&n) => n,
            None => {
                let n = self.streams.len() as u32;
                let name: Arc<str> = Arc::from(stream);
                self.numbers.insert(name.clone(), n);
                self.streams.push(StreamEntry {
                    name,
                    ..StreamEntry::default()
                });
                n
            }
        };
        let entry = &mut self.streams[number as usize];
        let first = (entry.positions.len() as u64, self.next_position);
        for id in ids {
            entry.push(*id, self.next_position);
            self.next_position += 1;
        }
        first
    }

    /// Takes back the last [`Index::record`] of `ids` on `stream`. Calls must undo
    /// records in the reverse order they were made.
    pub fn unrecord(&mut self, stream: &str, ids: &[Uuid]) {
        let Some(&number) = self.numbers.get(stream) else {
            return;
        };
        let entry = &mut self.streams[number as usize];
        for _ in ids {
            if entry.pop() {
                self.next_position -= 1;
            }
        }
        // An emptied stream stays as an empty entry, which reads as "no stream".
        debug_assert!(!entry.name.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<Uuid> {
        (0..n).map(|_| Uuid::new_v4()).collect()
    }

    fn given(appends: &[(&str, &[Uuid])]) -> Index {
        let mut index = Index::new();
        for (stream, ids) in appends {
            index.record(stream, ids);
        }
        index
    }

    fn refused_with_current(d: Decision) -> CurrentRevision {
        match d {
            Decision::Refused(StoreError::WrongExpectedVersion { current, .. }) => current,
            other => panic!("expected WrongExpectedVersion, got {other:?}"),
        }
    }

    #[test]
    fn given_empty_log_when_appending_then_revision_and_position_start_at_zero() {
        let index = Index::new();
        match index.check("a", ExpectedState::NoStream, &ids(2)) {
            Decision::Write {
                first_revision,
                first_position,
            } => assert_eq!((first_revision, first_position), (0, 0)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn given_two_streams_when_appending_then_revisions_are_per_stream_and_positions_global() {
        let (a, b) = (ids(2), ids(1));
        let index = given(&[("a", &a), ("b", &b)]);
        match index.check("a", ExpectedState::Exact(1), &ids(1)) {
            Decision::Write {
                first_revision,
                first_position,
            } => assert_eq!((first_revision, first_position), (2, 3)),
            other => panic!("{other:?}"),
        }
        assert_eq!(index.stream_positions("a", 0), &[0, 1]);
        assert_eq!(index.stream_positions("b", 0), &[2]);
        assert_eq!(index.stream_positions("a", 1), &[1]);
        assert_eq!(index.stream_positions("a", 9), &[] as &[u64]);
    }

    #[test]
    fn given_no_stream_when_expecting_exists_or_exact_then_refused_with_no_stream() {
        let index = Index::new();
        for expected in [ExpectedState::StreamExists, ExpectedState::Exact(0)] {
            let d = index.check("a", expected, &ids(1));
            assert_eq!(refused_with_current(d), CurrentRevision::NoStream);
        }
    }

    #[test]
    fn given_stream_at_revision_one_when_expecting_wrongly_then_refused_with_current() {
        let index = given(&[("a", &ids(2))]);
        for expected in [ExpectedState::NoStream, ExpectedState::Exact(0)] {
            let d = index.check("a", expected, &ids(1));
            assert_eq!(refused_with_current(d), CurrentRevision::Current(1));
        }
        for expected in [
            ExpectedState::Any,
            ExpectedState::StreamExists,
            ExpectedState::Exact(1),
        ] {
            assert!(matches!(
                index.check("a", expected, &ids(1)),
                Decision::Write { .. }
            ));
        }
    }

    #[test]
    fn given_written_ids_when_retried_with_any_expectation_then_original_result() {
        let first = ids(3);
        let index = given(&[("other", &ids(1)), ("a", &first), ("a", &ids(1))]);
        let want = AppendResult {
            next_expected_revision: 2,
            position: 3,
        };
        for expected in [
            ExpectedState::NoStream,
            ExpectedState::Exact(0),
            ExpectedState::Any,
        ] {
            match index.check("a", expected, &first) {
                Decision::AlreadyWritten(r) => assert_eq!(r, want),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn given_written_ids_when_some_reused_with_new_ones_then_idempotency_conflict() {
        let first = ids(2);
        let index = given(&[("a", &first)]);
        let mixed = vec![first[1], Uuid::new_v4()];
        assert!(matches!(
            index.check("a", ExpectedState::Any, &mixed),
            Decision::Refused(StoreError::IdempotencyConflict { .. })
        ));
    }

    #[test]
    fn given_written_ids_when_retried_out_of_order_then_idempotency_conflict() {
        let first = ids(2);
        let index = given(&[("a", &first)]);
        let swapped = vec![first[1], first[0]];
        assert!(matches!(
            index.check("a", ExpectedState::Any, &swapped),
            Decision::Refused(StoreError::IdempotencyConflict { .. })
        ));
    }

    #[test]
    fn given_ids_in_one_stream_when_appended_to_another_then_written() {
        let first = ids(1);
        let index = given(&[("a", &first)]);
        assert!(matches!(
            index.check("b", ExpectedState::NoStream, &first),
            Decision::Write { .. }
        ));
    }

    #[test]
    fn given_anything_when_appending_nothing_or_duplicates_then_invalid() {
        let index = Index::new();
        assert!(matches!(
            index.check("a", ExpectedState::Any, &[]),
            Decision::Refused(StoreError::InvalidAppend(_))
        ));
        let id = Uuid::new_v4();
        assert!(matches!(
            index.check("a", ExpectedState::Any, &[id, id]),
            Decision::Refused(StoreError::InvalidAppend(_))
        ));
        assert!(matches!(
            index.check("", ExpectedState::Any, &ids(1)),
            Decision::Refused(StoreError::InvalidAppend(_))
        ));
    }

    #[test]
    fn given_a_stream_longer_than_a_scan_when_ids_are_checked_then_its_map_stays_current() {
        let early = ids(SCANNED + 8);
        let mut index = given(&[("a", &early)]);
        let retried = |index: &Index, ids: &[Uuid]| {
            matches!(
                index.check("a", ExpectedState::Any, ids),
                Decision::AlreadyWritten(_)
            )
        };
        // The first check builds the map; later records and unrecords keep it in step.
        assert!(retried(&index, &early[3..5]));
        let late = ids(2);
        index.record("a", &late);
        assert!(retried(&index, &late));
        match index.check("a", ExpectedState::Any, &late[1..]) {
            Decision::AlreadyWritten(r) => assert_eq!(r.next_expected_revision, SCANNED as u64 + 9),
            other => panic!("{other:?}"),
        }
        index.unrecord("a", &late);
        assert!(matches!(
            index.check("a", ExpectedState::Exact(SCANNED as u64 + 7), &late),
            Decision::Write { .. }
        ));
        assert!(!retried(&index, &late));
    }

    #[test]
    fn given_recorded_append_when_unrecorded_then_index_is_as_before() {
        let (a, b, c) = (ids(1), ids(2), ids(1));
        let mut index = given(&[("a", &a)]);
        index.record("a", &b);
        index.record("new", &c);
        index.unrecord("new", &c);
        index.unrecord("a", &b);
        assert_eq!(index.next_position(), 1);
        assert_eq!(index.current("a"), CurrentRevision::Current(0));
        assert_eq!(index.current("new"), CurrentRevision::NoStream);
        assert!(matches!(
            index.check("a", ExpectedState::Exact(0), &b),
            Decision::Write { .. }
        ));
        assert!(matches!(
            index.check("new", ExpectedState::NoStream, &c),
            Decision::Write { .. }
        ));
    }
}
