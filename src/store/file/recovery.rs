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

use super::format::{self, Frame, HEADER_LEN};
use super::{OpenReport, Segment, State};
use crate::store::index::Index;
use crate::store::{RecordedEvent, StoreError};

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
/// checks out, in position order, as it is read.
pub(super) fn recover(
    log_dir: &Path,
    mut visit: Option<&mut dyn FnMut(RecordedEvent)>,
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
    std::thread::scope(|scope| {
        // The next segment is read from the file while this one is checked. The
        // receiver is dropped when the checking stops, early or not, which ends the
        // reader.
        let (ahead, segments_read) = std::sync::mpsc::sync_channel(1);
        scope.spawn(move || {
            for number in 0..count as u32 {
                // A recovery that stopped (its receiver gone) ends the reading.
                if ahead
                    .send(std::fs::read(segment_path(log_dir, number)))
                    .is_err()
                {
                    return;
                }
            }
        });
        for number in 0..count as u32 {
            let path = segment_path(log_dir, number);
            let last = number as usize + 1 == count;
            let bytes = segments_read.recv().map_err(|_| {
                StoreError::Io(std::io::Error::other("the segment reader stopped"))
            })??;
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
                let announced =
                    format::decode_header(&bytes).map_err(|why| corrupt(&path, 0, why))?;
                if announced != first_position {
                    return Err(corrupt(
                        &path,
                        0,
                        format!(
                            "segment starts at position {announced}, expected {first_position}"
                        ),
                    ));
                }
            }

            let mut at = HEADER_LEN.min(bytes.len());
            while at < bytes.len() {
                let damage = match format::read_frame(&bytes[at..]) {
                    Frame::Record { payload, len } => {
                        let view = format::decode_payload(payload)
                            .map_err(|why| corrupt(&path, at as u64, why))?;
                        let (revision, position) =
                            (index.next_revision(view.stream), index.next_position());
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
                        index.record(view.stream, &[view.id]);
                        offsets.push(at as u64);
                        if let Some(visit) = visit.as_mut() {
                            let event = view
                                .to_event()
                                .map_err(|why| corrupt(&path, at as u64, why))?;
                            visit(event);
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
                if !last || valid_record_after(&bytes, at + 1) {
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
            let end = at.max(HEADER_LEN) as u64;
            segments.push(Segment {
                path: path.clone(),
                first_position,
                end,
                file: Arc::new(File::open(&path)?),
            });
        }
        Ok::<(), StoreError>(())
    })?;

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
