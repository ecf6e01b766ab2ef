//! The on-disk format of the event log, and nothing else: segment headers, record
//! frames and record payloads, little-endian throughout.
//!
//! A segment starts with a header: the magic `RLGYMLOG`, a `u32` format version, a
//! reserved `u32` (zero) and the `u64` global position of its first record, so a
//! segment can be checked against its predecessors. Version 2 adds two checkpoint
//! slots ([`Checkpoint`]) after those 24 bytes: how far the segment was durable and
//! acknowledged, so that recovery can tell a torn last write from a file cut short.
//! Version 1 segments (24-byte header, no checkpoint) still load. Records follow back to back,
//! each framed as `[u32 payload length][u32 CRC32C of payload][payload]`. The payload is
//! position `u64`, revision `u64`, schema version `u16`, time `i64` (microseconds since
//! the Unix epoch), id (16 bytes), then stream (`u16` length + UTF-8), event type
//! (`u16` length + UTF-8) and data (`u32` length + bytes).
//!
//! Readers of an older version must keep loading: a new layout gets a new
//! `FORMAT_VERSION` and a decoder next to the old one, never an edit of the old one.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::store::RecordedEvent;

pub const MAGIC: &[u8; 8] = b"RLGYMLOG";
/// The version new segments are written in.
pub const FORMAT_VERSION: u32 = 2;
/// The header of a version 1 segment, which has no checkpoint.
pub const HEADER_LEN_V1: usize = 24;
/// One checkpoint slot: end `u64`, events `u64`, sequence `u32`, flags `u32`, CRC32C
/// of those 24 bytes `u32`, reserved `u32`.
pub const SLOT_LEN: usize = 32;
/// The header of a segment written now: the version 1 fields and two slots.
pub const HEADER_LEN: usize = HEADER_LEN_V1 + 2 * SLOT_LEN;
/// The checkpoint's flag: the next segment was started after this one's last record.
const SEALED: u32 = 1;
/// Length prefix and checksum in front of every payload.
pub const FRAME_LEN: usize = 8;
/// The payload of an event with empty stream, type and data.
pub const MIN_PAYLOAD: usize = 8 + 8 + 2 + 8 + 16 + 2 + 2 + 4;
/// The largest payload the log accepts; anything bigger in a frame is damage.
pub const MAX_PAYLOAD: usize = 64 << 20;

pub fn encode_header(first_position: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&first_position.to_le_bytes());
    h
}

/// How far a segment was durable when the writer last said so: its first `end` bytes
/// held `events` records, all synced and acknowledged. Written into one of the
/// header's two slots (alternating, so a torn write of one leaves the other), in the
/// same `fdatasync` as later records: it always lags the durable data, never leads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// Higher is newer; picks the slot.
    pub seq: u32,
    /// The next segment was started: nothing may follow this one's `end`.
    pub sealed: bool,
    pub end: u64,
    pub events: u64,
}

impl Checkpoint {
    /// Where the slot goes in the segment and its bytes.
    pub fn encode(&self) -> (u64, [u8; SLOT_LEN]) {
        let mut slot = [0u8; SLOT_LEN];
        slot[0..8].copy_from_slice(&self.end.to_le_bytes());
        slot[8..16].copy_from_slice(&self.events.to_le_bytes());
        slot[16..20].copy_from_slice(&self.seq.to_le_bytes());
        let flags = if self.sealed { SEALED } else { 0 };
        slot[20..24].copy_from_slice(&flags.to_le_bytes());
        let crc = crc32c::crc32c(&slot[..24]);
        slot[24..28].copy_from_slice(&crc.to_le_bytes());
        let at = HEADER_LEN_V1 + (self.seq % 2) as usize * SLOT_LEN;
        (at as u64, slot)
    }

    /// A slot's checkpoint; `None` for an empty or damaged slot.
    fn decode(slot: &[u8]) -> Option<Checkpoint> {
        let crc = u32::from_le_bytes(arr(&slot[24..28]));
        if crc32c::crc32c(&slot[..24]) != crc {
            return None;
        }
        Some(Checkpoint {
            end: u64::from_le_bytes(arr(&slot[0..8])),
            events: u64::from_le_bytes(arr(&slot[8..16])),
            seq: u32::from_le_bytes(arr(&slot[16..20])),
            sealed: u32::from_le_bytes(arr(&slot[20..24])) & SEALED != 0,
        })
    }
}

/// A decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    pub first_position: u64,
    /// Where the records start.
    pub len: usize,
    /// The newest valid checkpoint (version 2 and later; none before the first sync).
    pub checkpoint: Option<Checkpoint>,
}

/// The header at the start of segment bytes `h`.
pub fn decode_header(h: &[u8]) -> Result<Header, String> {
    if h.len() < HEADER_LEN_V1 {
        return Err(format!(
            "segment header is {} bytes, expected {HEADER_LEN_V1} or more",
            h.len()
        ));
    }
    if &h[..8] != MAGIC {
        return Err("not an rl-gym log segment (bad magic)".into());
    }
    let version = u32::from_le_bytes(arr(&h[8..12]));
    let first_position = u64::from_le_bytes(arr(&h[16..24]));
    match version {
        1 => Ok(Header {
            version,
            first_position,
            len: HEADER_LEN_V1,
            checkpoint: None,
        }),
        2 => {
            if h.len() < HEADER_LEN {
                return Err(format!(
                    "segment header is {} bytes, expected {HEADER_LEN}",
                    h.len()
                ));
            }
            let slots = &h[HEADER_LEN_V1..HEADER_LEN];
            // The slots hold consecutive sequence numbers: the newer one is ahead
            // of the other by wrapping arithmetic.
            let checkpoint = match (
                Checkpoint::decode(&slots[..SLOT_LEN]),
                Checkpoint::decode(&slots[SLOT_LEN..]),
            ) {
                (Some(a), Some(b)) if (b.seq.wrapping_sub(a.seq) as i32) > 0 => Some(b),
                (Some(a), _) => Some(a),
                (None, b) => b,
            };
            Ok(Header {
                version,
                first_position,
                len: HEADER_LEN,
                checkpoint,
            })
        }
        _ => Err(format!(
            "segment format version {version} is not supported (this build reads 1 and {FORMAT_VERSION})"
        )),
    }
}

/// Appends one framed record for `e` to `buf`.
pub fn encode_record(buf: &mut Vec<u8>, e: &RecordedEvent) {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; FRAME_LEN]);
    buf.extend_from_slice(&e.position.to_le_bytes());
    buf.extend_from_slice(&e.revision.to_le_bytes());
    buf.extend_from_slice(&e.schema_version.to_le_bytes());
    buf.extend_from_slice(&e.time.timestamp_micros().to_le_bytes());
    buf.extend_from_slice(e.id.as_bytes());
    // Lengths were checked against these widths before the event reached the writer.
    buf.extend_from_slice(&(e.stream.len() as u16).to_le_bytes());
    buf.extend_from_slice(e.stream.as_bytes());
    buf.extend_from_slice(&(e.event_type.len() as u16).to_le_bytes());
    buf.extend_from_slice(e.event_type.as_bytes());
    buf.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
    buf.extend_from_slice(&e.data);
    let payload = &buf[start + FRAME_LEN..];
    let len = payload.len() as u32;
    let crc = crc32c::crc32c(payload);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The encoded size of a record for an event with these field sizes.
pub fn record_len(stream: usize, event_type: usize, data: usize) -> usize {
    FRAME_LEN + MIN_PAYLOAD + stream + event_type + data
}

/// What the bytes at some offset hold.
#[derive(Debug)]
pub enum Frame<'a> {
    /// A whole record whose checksum matches; `len` counts frame and payload.
    Record { payload: &'a [u8], len: usize },
    /// The bytes end inside the frame or the payload.
    Incomplete,
    /// An impossible length or a checksum mismatch.
    Bad(String),
}

pub fn read_frame(buf: &[u8]) -> Frame<'_> {
    if buf.len() < FRAME_LEN {
        return Frame::Incomplete;
    }
    let len = u32::from_le_bytes(arr(&buf[0..4])) as usize;
    if !(MIN_PAYLOAD..=MAX_PAYLOAD).contains(&len) {
        return Frame::Bad(format!("impossible record length {len}"));
    }
    if buf.len() < FRAME_LEN + len {
        return Frame::Incomplete;
    }
    let payload = &buf[FRAME_LEN..FRAME_LEN + len];
    let crc = u32::from_le_bytes(arr(&buf[4..8]));
    if crc32c::crc32c(payload) != crc {
        return Frame::Bad("checksum mismatch".into());
    }
    Frame::Record {
        payload,
        len: FRAME_LEN + len,
    }
}

/// A decoded payload borrowing its strings from the buffer, so recovery can rebuild
/// the index without allocating the event.
#[derive(Debug)]
pub struct RecordView<'a> {
    pub position: u64,
    pub revision: u64,
    pub schema_version: u16,
    pub time_micros: i64,
    pub id: Uuid,
    pub stream: &'a str,
    pub event_type: &'a str,
    pub data: &'a [u8],
}

impl RecordView<'_> {
    pub fn time(&self) -> Result<DateTime<Utc>, String> {
        DateTime::from_timestamp_micros(self.time_micros)
            .ok_or_else(|| format!("time {} µs is out of range", self.time_micros))
    }

    pub fn to_event(&self) -> Result<RecordedEvent, String> {
        let time = self.time()?;
        Ok(RecordedEvent {
            id: self.id,
            stream: self.stream.to_owned(),
            revision: self.revision,
            position: self.position,
            event_type: self.event_type.to_owned(),
            schema_version: self.schema_version,
            time,
            data: self.data.to_vec(),
        })
    }
}

pub fn decode_payload(p: &[u8]) -> Result<RecordView<'_>, String> {
    let mut r = Reader { buf: p, at: 0 };
    let position = u64::from_le_bytes(r.array()?);
    let revision = u64::from_le_bytes(r.array()?);
    let schema_version = u16::from_le_bytes(r.array()?);
    let time_micros = i64::from_le_bytes(r.array()?);
    let id = Uuid::from_bytes(r.array()?);
    let n = u16::from_le_bytes(r.array()?) as usize;
    let stream = std::str::from_utf8(r.take(n)?).map_err(|_| "stream name is not UTF-8")?;
    let n = u16::from_le_bytes(r.array()?) as usize;
    let event_type = std::str::from_utf8(r.take(n)?).map_err(|_| "event type is not UTF-8")?;
    let n = u32::from_le_bytes(r.array()?) as usize;
    let data = r.take(n)?;
    if r.at != p.len() {
        return Err(format!(
            "{} unexpected bytes after the data",
            p.len() - r.at
        ));
    }
    Ok(RecordView {
        position,
        revision,
        schema_version,
        time_micros,
        id,
        stream,
        event_type,
        data,
    })
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or_else(|| format!("payload ends early at byte {}", self.at))?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(arr(self.take(N)?))
    }
}

/// A fixed-size copy of a slice whose length the caller already checked.
fn arr<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&s[..N]);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> RecordedEvent {
        RecordedEvent {
            id: Uuid::new_v4(),
            stream: "run-1".into(),
            revision: 3,
            position: 42,
            event_type: "RunLaunched".into(),
            schema_version: 2,
            time: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap_or_default(),
            data: br#"{"a":1}"#.to_vec(),
        }
    }

    #[test]
    fn given_an_event_when_encoded_and_decoded_then_it_is_unchanged() {
        let e = event();
        let mut buf = Vec::new();
        encode_record(&mut buf, &e);
        assert_eq!(buf.len(), record_len(5, 11, 7));
        match read_frame(&buf) {
            Frame::Record { payload, len } => {
                assert_eq!(len, buf.len());
                let back = decode_payload(payload).and_then(|v| v.to_event());
                assert_eq!(back.ok(), Some(e));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn given_a_record_when_cut_or_flipped_then_incomplete_or_bad() {
        let mut buf = Vec::new();
        encode_record(&mut buf, &event());
        assert!(matches!(read_frame(&buf[..3]), Frame::Incomplete));
        assert!(matches!(
            read_frame(&buf[..buf.len() - 1]),
            Frame::Incomplete
        ));
        let last = buf.len() - 1;
        buf[last] ^= 1;
        assert!(matches!(read_frame(&buf), Frame::Bad(_)));
        assert!(matches!(read_frame(&[0u8; 64]), Frame::Bad(_)));
    }

    #[test]
    fn given_a_header_when_decoded_then_first_position_or_refusal() {
        let header = decode_header(&encode_header(7));
        assert_eq!(
            header.map(|h| (h.first_position, h.len)),
            Ok((7, HEADER_LEN))
        );
        assert!(decode_header(&encode_header(7)[..HEADER_LEN - 1]).is_err());
        let mut h = encode_header(7);
        h[0] = b'X';
        assert!(decode_header(&h).is_err());
        let mut h = encode_header(7);
        h[8] = 9;
        assert!(decode_header(&h).is_err());
    }

    #[test]
    fn given_a_version_1_header_when_decoded_then_it_loads_without_checkpoint() {
        let mut h = encode_header(5);
        h[8..12].copy_from_slice(&1u32.to_le_bytes());
        let header = decode_header(&h[..HEADER_LEN_V1]).expect("v1");
        assert_eq!((header.version, header.len), (1, HEADER_LEN_V1));
        assert_eq!(header.checkpoint, None);
    }

    #[test]
    fn given_checkpoints_in_both_slots_then_the_newest_valid_one_counts() {
        let mut h = encode_header(0).to_vec();
        assert_eq!(decode_header(&h).expect("empty").checkpoint, None);
        let write = |h: &mut Vec<u8>, c: Checkpoint| {
            let (at, slot) = c.encode();
            h[at as usize..at as usize + SLOT_LEN].copy_from_slice(&slot);
        };
        let older = Checkpoint {
            seq: 1,
            sealed: false,
            end: 500,
            events: 3,
        };
        let newer = Checkpoint {
            seq: 2,
            sealed: true,
            end: 900,
            events: 7,
        };
        write(&mut h, older);
        write(&mut h, newer);
        assert_eq!(decode_header(&h).expect("both").checkpoint, Some(newer));
        // A torn write of the newer slot leaves the older one.
        let (at, _) = newer.encode();
        h[at as usize + 3] ^= 1;
        assert_eq!(decode_header(&h).expect("torn").checkpoint, Some(older));
    }
}
