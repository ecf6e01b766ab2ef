//! The data directory's lock: one process writes a log at a time.
//!
//! Two servers appending to one log would each keep their own index and write over
//! each other's records; a replay that "repaired" a tail the server was still writing
//! did the same. So the server holds an exclusive `flock` on `DATA_DIR/LOCK` for as
//! long as its store is open, and writes its pid into the file for the others to
//! name. `rl-gym replay` takes a shared lock, which conflicts only with a server's: it
//! creates nothing, so it also reads a read-only directory (with no `LOCK` file there
//! no server of this version is running on it).

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::store::StoreError;

const LOCK_FILE: &str = "LOCK";

/// The pid the holder wrote, if it is there yet.
fn holder(file: &File) -> String {
    let mut buf = [0u8; 32];
    let n = file.read_at(&mut buf, 0).unwrap_or(0);
    std::str::from_utf8(&buf[..n])
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .map_or_else(|| "pid unknown".to_owned(), |pid| format!("pid {pid}"))
}

/// Takes the exclusive lock of `dir` (created if need be) and writes this process's
/// pid into it; held until the returned file is dropped.
pub(super) fn exclusive(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            // Only shared holders (replays) let a shared lock through.
            let replaying = file.try_lock_shared().is_ok();
            let why = if replaying {
                let _ = file.unlock();
                format!(
                    "the data directory {} is being read by `rl-gym replay` (it holds {} shared); start the server when it has finished",
                    dir.display(),
                    path.display()
                )
            } else {
                format!(
                    "the data directory {} is in use by another rl-gym server ({}, holding {}); stop it first or use another --data-dir",
                    dir.display(),
                    holder(&file),
                    path.display()
                )
            };
            return Err(StoreError::Locked(why));
        }
        Err(TryLockError::Error(e)) => return Err(e.into()),
    }
    file.set_len(0)?;
    file.write_all_at(format!("{}\n", std::process::id()).as_bytes(), 0)?;
    Ok(file)
}

/// Takes a shared lock of `dir` for a reader: refused while a server holds it, and
/// nothing (`None`) when there is no lock file, which is never created here.
pub(super) fn shared(dir: &Path) -> Result<Option<File>, StoreError> {
    let path = dir.join(LOCK_FILE);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    match file.try_lock_shared() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Err(StoreError::Locked(format!(
            "the data directory {} is in use by a running rl-gym server ({}, holding {}); replay reads a log only while no server writes it: stop the server, or replay a copy of the directory",
            dir.display(),
            holder(&file),
            path.display()
        ))),
        Err(TryLockError::Error(e)) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_held_lock_when_taken_again_then_refused_naming_the_pid() {
        let dir = tempfile::tempdir().expect("dir");
        let held = exclusive(dir.path()).expect("first");
        let pid = format!("pid {}", std::process::id());
        match exclusive(dir.path()) {
            Err(StoreError::Locked(why)) => assert!(why.contains(&pid), "{why}"),
            other => panic!("expected Locked, got {other:?}"),
        }
        match shared(dir.path()) {
            Err(StoreError::Locked(why)) => assert!(why.contains(&pid), "{why}"),
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(held);
        let reader = shared(dir.path()).expect("free").expect("lock file");
        assert!(shared(dir.path()).expect("readers share").is_some());
        match exclusive(dir.path()) {
            Err(StoreError::Locked(why)) => assert!(why.contains("rl-gym replay"), "{why}"),
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(reader);
        exclusive(dir.path()).expect("free again");
    }

    #[test]
    fn given_no_lock_file_when_read_then_nothing_is_created() {
        let dir = tempfile::tempdir().expect("dir");
        assert!(shared(dir.path()).expect("no lock").is_none());
        assert!(!dir.path().join(LOCK_FILE).exists());
    }
}
