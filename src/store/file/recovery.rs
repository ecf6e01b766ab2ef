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
//!
//! A tail is torn only past the segment's checkpoint ([`format::Checkpoint`]): the
//! writer records there how far the segment was durable and acknowledged. Records
//! missing before it (the file cut short, on a record boundary or not), a sealed last
//! segment (its successor was deleted), or a cut header after a sealed segment are
//! lost acknowledged events: opening stops with [`StoreError::DataLoss`] naming the
//! file, the offset and what is missing, unless the caller accepts the loss.
//!
//! Opening read-only ([`Mode::write`] false, `rl-gym replay`) checks and reports the
//! same, but never cuts, rewrites or creates a file: a torn tail may be a write the
//! running server has not finished.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::format::{self, Checkpoint, Frame, RecordView, HEADER_LEN, HEADER_LEN_V1};
use super::{OpenReport, Segment, State};
use crate::store::index::Index;
use crate::store::StoreError;

/// Records handed to a visitor at a time.
const BATCH: usize = 4096;

/// A segment mapped into memory, read in place: copying 64 MiB segments out of the
/// page cache into fresh buffers was a third of opening a large log.
///
/// Nothing in this process writes to a segment while it is mapped except the cut of
/// a torn tail, which only shortens the file past every record still read, and a new
/// checkpoint in a header already parsed; the data directory's lock keeps other
/// processes from writing it.
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
    pub first_position: u64,
    /// The checkpoint its header holds; the writer's next one follows its sequence.
    pub checkpoint: Option<Checkpoint>,
}

pub(super) struct Recovered {
    pub state: State,
    /// `None` when opened read-only.
    pub tail: Option<Tail>,
    pub report: OpenReport,
}

/// What opening may do.
#[derive(Debug, Clone, Copy)]
pub(super) struct Mode {
    /// The server's own open: cut a torn tail, rewrite a torn header, create the
    /// first segment, start a new segment after a version 1 tail. Otherwise nothing
    /// in the directory is written.
    pub write: bool,
    /// Open even though acknowledged events are missing (reported, loudly).
    pub accept_data_loss: bool,
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
    // Created whole before anything is written to it: a header cut short later is a
    // crash during this call (or, after a sealed segment, a cut).
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

/// Missing acknowledged events, refused or (accepted) counted.
#[derive(Default)]
struct Losses {
    any: bool,
    bytes: u64,
    events: u64,
}

impl Losses {
    /// Refuses to open unless the loss is accepted; then it is logged and counted.
    fn found(
        &mut self,
        mode: Mode,
        what: String,
        bytes: u64,
        events: u64,
    ) -> Result<(), StoreError> {
        if !mode.accept_data_loss {
            return Err(StoreError::DataLoss(format!(
                "{what}; restore the log from a backup, or start with `rl-gym serve --accept-data-loss` to go on without them"
            )));
        }
        tracing::error!(
            lost_bytes = bytes,
            lost_events = events,
            "ACKNOWLEDGED EVENTS ARE MISSING FROM THE EVENT LOG and the loss was accepted (--accept-data-loss): {what}"
        );
        self.any = true;
        self.bytes += bytes;
        self.events += events;
        Ok(())
    }
}

/// Writes `checkpoint` into the header of the segment open as `file` and syncs it.
pub(super) fn write_checkpoint(file: &File, checkpoint: Checkpoint) -> std::io::Result<()> {
    let (at, slot) = checkpoint.encode();
    std::os::unix::fs::FileExt::write_all_at(file, &slot, at)?;
    file.sync_data()
}

/// Reads back the whole log. `visit`, when given, is handed every record that
/// checks out, in position order, in batches as they are read.
pub(super) fn recover(
    log_dir: &Path,
    mut visit: Option<&mut dyn FnMut(CheckedRecords)>,
    mode: Mode,
) -> Result<Recovered, StoreError> {
    let numbers = list_segments(log_dir)?;
    let mut index = Index::new();
    let mut offsets = Vec::new();
    let mut segments = Vec::new();
    let mut truncated_bytes = 0u64;
    let mut losses = Losses::default();
    // The previous segment's checkpoint said its successor had been started.
    let mut previous_sealed = false;
    // The last segment's header: its version and checkpoint.
    let mut tail_header: Option<(u32, Option<Checkpoint>)> = None;

    let count = if mode.write {
        if numbers.is_empty() {
            create_segment(log_dir, 0, 0)?;
        }
        numbers.len().max(1)
    } else {
        numbers.len()
    };
    for number in 0..count as u32 {
        let path = segment_path(log_dir, number);
        let last = number as usize + 1 == count;
        let segment = Arc::new(SegmentBytes::map(&path)?);
        let bytes = segment.bytes();
        let mut batch = Vec::new();
        let first_position = index.next_position();

        let header = match format::decode_header(bytes) {
            Ok(header) => header,
            Err(why) if !last || bytes.len() >= HEADER_LEN => return Err(corrupt(&path, 0, why)),
            Err(_) => {
                if previous_sealed {
                    losses.found(
                        mode,
                        format!(
                            "{}: the segment's header is cut short ({} bytes) though the segment before it was finished, so it had been created whole: every acknowledged event in it from position {first_position} on is missing (how many is unknown)",
                            path.display(),
                            bytes.len()
                        ),
                        0,
                        0,
                    )?;
                }
                // A crash while the segment was being created.
                truncated_bytes += bytes.len() as u64;
                let len = if mode.write {
                    tracing::warn!(file = %path.display(), bytes = bytes.len(), "rewriting a torn segment header");
                    create_segment(log_dir, number, first_position)?;
                    HEADER_LEN as u64
                } else {
                    tracing::warn!(file = %path.display(), bytes = bytes.len(), "the last segment's header is torn (left as it is: read-only)");
                    bytes.len() as u64
                };
                tail_header = Some((format::FORMAT_VERSION, None));
                segments.push(Segment {
                    path: path.clone(),
                    first_position,
                    end: len,
                    file: Arc::new(File::open(&path)?),
                });
                continue;
            }
        };
        if header.first_position != first_position {
            return Err(corrupt(
                &path,
                0,
                format!(
                    "segment starts at position {}, expected {first_position}",
                    header.first_position
                ),
            ));
        }

        let mut at = header.len.min(bytes.len());
        // Where a torn record starts and why it is one.
        let mut torn: Option<String> = None;
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
            // or this one's checkpoint said so, and both are checked.
            if bytes[at..].iter().all(|&b| b == 0) {
                break;
            }
            if !last || valid_record_after(bytes, at + 1) {
                return Err(corrupt(&path, at as u64, damage));
            }
            torn = Some(damage);
            break;
        }
        if let Some(visit) = visit.as_mut().filter(|_| !batch.is_empty()) {
            visit(CheckedRecords {
                segment: segment.clone(),
                payloads: batch,
            });
        }
        let end = at.max(header.len) as u64;
        let events = index.next_position() - first_position;

        // The checkpoint: everything before it was acknowledged.
        let mut checkpoint = header.checkpoint;
        if let Some(c) = checkpoint {
            if end < c.end || events < c.events {
                let missing_bytes = c.end.saturating_sub(end);
                let missing_events = c.events.saturating_sub(events);
                let what = format!(
                    "{} at offset {end}: the records end here, but the segment's checkpoint says its first {} bytes ({} events) were durable and acknowledged: {missing_bytes} bytes ({missing_events} events, from position {}) are missing",
                    path.display(),
                    c.end,
                    c.events,
                    first_position + events,
                );
                if !last {
                    return Err(StoreError::Corrupt(what));
                }
                losses.found(mode, what, missing_bytes, missing_events)?;
                checkpoint = Some(Checkpoint {
                    seq: c.seq.wrapping_add(1),
                    sealed: false,
                    end,
                    events,
                });
            } else if last && c.sealed {
                losses.found(
                    mode,
                    format!(
                        "{}: segment {:08}.seg is missing: {} was finished at offset {} when it was started, so every acknowledged event from position {} on is missing (how many is unknown)",
                        log_dir.display(),
                        number + 1,
                        path.display(),
                        c.end,
                        first_position + events,
                    ),
                    0,
                    0,
                )?;
                checkpoint = Some(Checkpoint {
                    seq: c.seq.wrapping_add(1),
                    sealed: false,
                    ..c
                });
            }
            previous_sealed = c.sealed;
        } else {
            previous_sealed = false;
        }

        if let Some(damage) = torn {
            let cut = (bytes.len() - at) as u64;
            if mode.write {
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
            } else {
                tracing::warn!(
                    file = %path.display(),
                    offset = at,
                    bytes = cut,
                    reason = %damage,
                    "the event log ends in a torn record (left as it is: read-only)"
                );
            }
            truncated_bytes += cut;
        }
        if mode.write && checkpoint != header.checkpoint {
            // The loss was accepted: the next open starts from here, not from the
            // checkpoint that no longer holds.
            if let Some(c) = checkpoint {
                write_checkpoint(&OpenOptions::new().write(true).open(&path)?, c)?;
            }
        }
        if last {
            tail_header = Some((header.version, checkpoint));
        }
        segments.push(Segment {
            path: path.clone(),
            first_position,
            end,
            file: Arc::new(File::open(&path)?),
        });
    }

    let tail = if mode.write {
        Some(continued_tail(
            log_dir,
            &mut segments,
            tail_header,
            index.next_position(),
        )?)
    } else {
        None
    };
    let report = OpenReport {
        events: offsets.len() as u64,
        truncated_bytes,
        segments: segments.len(),
        data_loss: losses.any,
        lost_bytes: losses.bytes,
        lost_events: losses.events,
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

/// The segment the writer goes on with: the last one, unless it is of version 1 (no
/// room for a checkpoint): then a new segment after it, or in its place if it holds
/// no record.
fn continued_tail(
    log_dir: &Path,
    segments: &mut Vec<Segment>,
    header: Option<(u32, Option<Checkpoint>)>,
    next_position: u64,
) -> Result<Tail, StoreError> {
    let number = segments
        .len()
        .checked_sub(1)
        .ok_or_else(|| StoreError::Corrupt(format!("{}: no segment", log_dir.display())))?
        as u32;
    let (version, checkpoint) = header.unwrap_or((format::FORMAT_VERSION, None));
    let mut tail_number = number;
    if version < format::FORMAT_VERSION {
        let last = &segments[number as usize];
        let (number, first_position) = if last.end > HEADER_LEN_V1 as u64 {
            (number + 1, next_position)
        } else {
            segments.pop();
            (number, next_position)
        };
        let (path, _) = create_segment(log_dir, number, first_position)?;
        tracing::info!(segment = %path.display(), "continuing an old log in a new segment (with checkpoints)");
        segments.push(Segment {
            path: path.clone(),
            first_position,
            end: HEADER_LEN as u64,
            file: Arc::new(File::open(&path)?),
        });
        tail_number = number;
    }
    let last = &segments[segments.len() - 1];
    Ok(Tail {
        path: last.path.clone(),
        file: OpenOptions::new().read(true).write(true).open(&last.path)?,
        len: last.end,
        number: tail_number,
        first_position: last.first_position,
        checkpoint: if tail_number == number {
            checkpoint
        } else {
            None
        },
    })
}
