//! Opening the log: read every segment back, check every record, rebuild the index.
//!
//! A crash can leave the last write half done, so a damaged end of the *last* segment
//! with no valid record after it (a short length, a short payload, a checksum mismatch,
//! garbage) is a torn tail: nothing in it was ever acknowledged, so it is cut off and
//! reported. Zeros to the end of a segment are padding the writer wrote ahead
//! ([`super::FileStoreOptions::preallocate_bytes`]) and are left for it. Anything
//! else (a bad record with a valid one after it, a damaged earlier segment, a missing
//! segment, positions out of order) is damage to acknowledged history: opening stops
//! with [`StoreError::Corrupt`] naming the file and offset, because replaying around
//! a hole would silently change every view.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::format::{self, Frame, RecordView, HEADER_LEN};
use super::{OpenReport, Segment, State};
use crate::store::index::Index;
use crate::store::StoreError;

/// Records handed to a visitor at a time.
const BATCH: usize = 4096;

/// A segment mapped into memory, read in place: copying 64 MiB segments out of the
/// page cache into fresh buffers was a third of opening a large log.
///
/// Nothing in this process writes to a segment while it is mapped except the cut of
/// a torn tail, which only shortens the file past every record still read; two
/// processes must not open one log at once in any case (each would write it).
struct SegmentBytes(Option<memmap2::Mmap>);

impl SegmentBytes {
    fn map(path: &Path) -> std::io::Result<SegmentBytes> {
        let file = File::open(path)?;
        if file.metadata()?.len() == 0 {
            return Ok(SegmentBytes(None));
        }
        // SAFETY: the mapping is read-only and outlives no shrinking of the file
        // this process makes under a byte still read (see above).
        let map = unsafe { memmap2::MmapOptions::new().populate().map(&file)? };
        Ok(SegmentBytes(Some(map)))
    }

    fn bytes(&self) -> &[u8] {
        self.0.as_deref().unwrap_or_default()
    }
}

/// Records recovery has checked, in position order, as they lie in their segment:
/// a visitor reads them without a copy.
pub struct CheckedRecords {
    segment: Arc<SegmentBytes>,
    /// Where each record's payload starts in the segment, and its length.
    payloads: Vec<(usize, usize)>,
}

impl CheckedRecords {
    pub fn len(&self) -> usize {
        self.payloads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.payloads.is_empty()
    }

    /// The records, decoded again from bytes that already passed every check (so an
    /// error here is impossible, but reported rather than skipped).
    pub fn iter(&self) -> impl Iterator<Item = Result<RecordView<'_>, String>> {
        self.payloads
            .iter()
            .map(|&(at, len)| format::decode_payload(&self.segment.bytes()[at..at + len]))
    }
}

/// The segment the writer continues.
pub(super) struct Tail {
    pub path: PathBuf,
    pub file: File,
    /// Its durable length, where the next batch goes.
    pub len: u64,
    pub number: u32,
}

pub(super) struct Recovered {
    pub state: State,
    pub tail: Tail,
    pub report: OpenReport,
}

pub(super) fn segment_path(log_dir: &Path, number: u32) -> PathBuf {
    log_dir.join(format!("{number:08}.seg"))
}

/// Creates segment `number` holding only its header, durably (file and directory).
pub(super) fn create_segment(
    log_dir: &Path,
    number: u32,
    first_position: u64,
) -> std::io::Result<(PathBuf, File)> {
    let path = segment_path(log_dir, number);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)?;
    std::os::unix::fs::FileExt::write_all_at(&file, &format::encode_header(first_position), 0)?;
    file.sync_all()?;
    File::open(log_dir)?.sync_all()?;
    Ok((path, file))
}

fn corrupt(path: &Path, offset: u64, why: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{} at offset {offset}: {why}", path.display()))
}

/// Segment numbers in `log_dir`, in order; they must run from 0 without gaps.
fn list_segments(log_dir: &Path) -> Result<Vec<u32>, StoreError> {
    let mut numbers = Vec::new();
    for entry in std::fs::read_dir(log_dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        match name
            .strip_suffix(".seg")
            .filter(|n| n.len() == 8)
            .and_then(|n| n.parse::<u32>().ok())
        {
            Some(n) => numbers.push(n),
            None => tracing::warn!(file = %name, "ignoring a file that is not a log segment"),
        }
    }
    numbers.sort_unstable();
    for (expected, &n) in numbers.iter().enumerate() {
        if n as usize != expected {
            return Err(StoreError::Corrupt(format!(
                "{}: segment {:08}.seg is missing",
                log_dir.display(),
                expected
            )));
        }
    }
    Ok(numbers)
}

/// True when some offset from `from` on holds a whole, valid record: then the damage
/// at `from - 1` is not a torn tail but a hole in history.
fn valid_record_after(bytes: &[u8], from: usize) -> bool {
    (from..bytes.len()).any(|at| match format::read_frame(&bytes[at..]) {
        Frame::Record { payload, .. } => format::decode_payload(payload).is_ok(),
        _ => false,
    })
}

/// Reads back the whole log. `visit`, when given, is handed every record that
/// checks out, in position order, in batches as they are read.
pub(super) fn recover(
    log_dir: &Path,
    mut visit: Option<&mut dyn FnMut(CheckedRecords)>,
) -> Result<Recovered, StoreError> {
    let numbers = list_segments(log_dir)?;
    let mut index = Index::new();
    let mut offsets = Vec::new();
    let mut segments = Vec::new();
    let mut truncated_bytes = 0u64;

    if numbers.is_empty() {
        create_segment(log_dir, 0, 0)?;
    }
    let count = numbers.len().max(1);
    for number in 0..count as u32 {
        let path = segment_path(log_dir, number);
        let last = number as usize + 1 == count;
        let segment = Arc::new(SegmentBytes::map(&path)?);
        let bytes = segment.bytes();
        let mut batch = Vec::new();
        let first_position = index.next_position();

        if bytes.len() < HEADER_LEN {
            if !last {
                return Err(corrupt(&path, 0, "segment header is cut short"));
            }
            // A crash while the segment was being created.
            tracing::warn!(file = %path.display(), bytes = bytes.len(), "rewriting a torn segment header");
            truncated_bytes += bytes.len() as u64;
            create_segment(log_dir, number, first_position)?;
        } else {
            let announced = format::decode_header(bytes).map_err(|why| corrupt(&path, 0, why))?;
            if announced != first_position {
                return Err(corrupt(
                    &path,
                    0,
                    format!("segment starts at position {announced}, expected {first_position}"),
                ));
            }
        }

        let mut at = HEADER_LEN.min(bytes.len());
        while at < bytes.len() {
            let damage = match format::read_frame(&bytes[at..]) {
                Frame::Record { payload, len } => {
                    let view = format::decode_payload(payload)
                        .map_err(|why| corrupt(&path, at as u64, why))?;
                    // Recorded first and compared after: a mismatch stops the
                    // opening, so the index it leaves behind is never used.
                    let (revision, position) = index.record(view.stream, &[view.id]);
                    if view.position != position || view.revision != revision {
                        return Err(corrupt(
                            &path,
                            at as u64,
                            format!(
                                "record says position {} revision {} of {}, expected position {position} revision {revision}",
                                view.position, view.revision, view.stream
                            ),
                        ));
                    }
                    offsets.push(at as u64);
                    if let Some(visit) = visit.as_mut() {
                        view.time().map_err(|why| corrupt(&path, at as u64, why))?;
                        batch.push((at + format::FRAME_LEN, len - format::FRAME_LEN));
                        if batch.len() == BATCH {
                            visit(CheckedRecords {
                                segment: segment.clone(),
                                payloads: std::mem::replace(&mut batch, Vec::with_capacity(BATCH)),
                            });
                        }
                    }
                    at += len;
                    continue;
                }
                Frame::Incomplete => "record ends early".to_owned(),
                Frame::Bad(why) => why,
            };
            // Zeros to the end are the writer's padding (`preallocate_bytes`), or
            // space a crash left unwritten: no record was ever there. A segment's
            // records after it would be missing only if the next segment's header
            // said so, and that is checked.
            if bytes[at..].iter().all(|&b| b == 0) {
                break;
            }
            if !last || valid_record_after(bytes, at + 1) {
                return Err(corrupt(&path, at as u64, damage));
            }
            let cut = (bytes.len() - at) as u64;
            tracing::warn!(
                file = %path.display(),
                offset = at,
                bytes = cut,
                reason = %damage,
                "cutting a torn record off the end of the event log"
            );
            let file = OpenOptions::new().write(true).open(&path)?;
            file.set_len(at as u64)?;
            file.sync_all()?;
            truncated_bytes += cut;
            break;
        }
        if let Some(visit) = visit.as_mut().filter(|_| !batch.is_empty()) {
            visit(CheckedRecords {
                segment: segment.clone(),
                payloads: batch,
            });
        }
        let end = at.max(HEADER_LEN) as u64;
        segments.push(Segment {
            path: path.clone(),
            first_position,
            end,
            file: Arc::new(File::open(&path)?),
        });
    }

    let tail_segment = segments
        .last()
        .ok_or_else(|| StoreError::Corrupt(format!("{}: no segment", log_dir.display())))?;
    let tail = Tail {
        path: tail_segment.path.clone(),
        file: OpenOptions::new()
            .read(true)
            .write(true)
            .open(&tail_segment.path)?,
        len: tail_segment.end,
        number: count as u32 - 1,
    };
    let report = OpenReport {
        events: offsets.len() as u64,
        truncated_bytes,
        segments: segments.len(),
    };
    Ok(Recovered {
        state: State {
            index,
            offsets,
            segments,
        },
        tail,
        report,
    })
}
