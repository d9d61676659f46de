//! Group commit: concurrent committers share `fdatasync` calls.
//!
//! Each data directory's log counts the bytes appended to it (`appended`, a logical offset that
//! runs on across segments) and the bytes known durable (`durable`). A committer that needs its
//! bytes durable calls [`GroupCommit::sync_to`] with the logical end of its append:
//!
//! 1. if `durable` already covers it, it returns at once;
//! 2. otherwise, if no sync is in flight, it becomes the leader: it marks a sync in flight,
//!    reads the current `appended` and active segment (under the log's append lock, released at
//!    once), calls `fdatasync` on that segment under the directory's sync lock, publishes the new
//!    `durable`, clears the mark and wakes every waiting committer;
//! 3. if a sync is in flight, it waits for it to finish; woken, it returns if the sync covered
//!    its bytes, and otherwise becomes the next leader. No lock is held across the flush.
//!
//! So one `fdatasync` serves every commit appended before it began. Older segments need no sync
//! here: the log syncs a segment before it moves on to the next one.
//!
//! A failed sync poisons the channel (see `poison.rs`); the leader never retries.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};
use crate::io::StorageFile;
use crate::poison::Poison;

/// The sync state of one data directory's log.
#[derive(Debug, Default)]
pub(crate) struct GroupCommit {
    /// True while a leader's `fdatasync` is in flight; followers wait on `synced`.
    syncing: Mutex<bool>,
    synced: Condvar,
    /// Held around every `fdatasync` of this directory's segments (the leader's and the one at a
    /// roll), so a failure is always latched before another sync's success can be published:
    /// Linux reports a writeback error to only one of two concurrent syncs of a file.
    /// Lock order: append lock, then this (roll); the leader holds nothing else while in it.
    file_sync: Mutex<()>,
    durable: AtomicU64,
    syncs: AtomicU64,
}

/// Clears the `syncing` flag and wakes the followers when the leader is done, even if it panics.
struct LeaderGuard<'a>(&'a GroupCommit);

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        *self.0.syncing.lock() = false;
        self.0.synced.notify_all();
    }
}

impl GroupCommit {
    /// Bytes of the log known durable.
    pub(crate) fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// Records that everything up to `upto` is durable (used when a segment is synced on roll).
    pub(crate) fn mark_durable(&self, upto: u64) {
        self.durable.fetch_max(upto, Ordering::AcqRel);
    }

    /// `fdatasync` calls made so far.
    pub(crate) fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// Returns once the log is durable up to `target`, syncing if no one else is.
    /// `current` reports the log's appended length and its active segment file.
    ///
    /// No lock is held across the flush: the leader sets `syncing`, syncs, publishes `durable`
    /// and wakes every follower at once, so the followers it covered all return together (a
    /// mutex held across the flush would let them out one at a time, and let the leader take it
    /// again first).
    pub(crate) fn sync_to(
        &self,
        target: u64,
        poison: &Poison,
        current: impl FnOnce() -> (u64, Arc<dyn StorageFile>, std::path::PathBuf),
    ) -> Result<()> {
        if self.durable() >= target {
            return Ok(());
        }
        let mut syncing = self.syncing.lock();
        loop {
            if self.durable() >= target {
                return Ok(());
            }
            poison.check()?;
            if !*syncing {
                break;
            }
            self.synced.wait(&mut syncing);
        }
        *syncing = true;
        drop(syncing);
        let _leader = LeaderGuard(self);
        // Everything appended before this call is at or below `upto`, so one sync suffices.
        let (upto, file, path) = current();
        self.sync_file(&*file, &path, upto, poison)
    }

    /// `fdatasync`s `file` and, on success, publishes `upto` as durable; on failure poisons.
    /// Every sync of a segment goes through here.
    pub(crate) fn sync_file(
        &self,
        file: &dyn StorageFile,
        path: &std::path::Path,
        upto: u64,
        poison: &Poison,
    ) -> Result<()> {
        let _sync = self.file_sync.lock();
        poison.check()?;
        self.syncs.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = file.sync_data() {
            return Err(poison.poison(&Error::io("syncing segment", path, e)));
        }
        self.mark_durable(upto);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::io::{FaultyFs, FileSystem, StdFs};

    fn file(dir: &std::path::Path, fs: &dyn FileSystem) -> Arc<dyn StorageFile> {
        fs.create_new(&dir.join("f")).expect("create")
    }

    #[test]
    fn a_covered_target_needs_no_sync_and_a_failure_poisons() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fs = FaultyFs::new(Arc::new(StdFs));
        let f = file(dir.path(), &fs);
        let gc = GroupCommit::default();
        let poison = Poison::default();
        gc.sync_to(10, &poison, || (10, f.clone(), PathBuf::from("f")))
            .expect("sync");
        assert_eq!((gc.durable(), gc.syncs()), (10, 1));
        gc.sync_to(5, &poison, || unreachable!("covered: no sync"))
            .expect("covered");
        assert_eq!(gc.syncs(), 1);
        fs.faults().fail_syncs_after(0);
        let err = gc
            .sync_to(20, &poison, || (20, f.clone(), PathBuf::from("f")))
            .expect_err("fails");
        assert!(matches!(err, Error::Poisoned { .. }));
        assert_eq!(gc.durable(), 10, "a failed sync publishes nothing");
        fs.faults().heal();
        assert!(matches!(
            gc.sync_to(20, &poison, || (20, f.clone(), PathBuf::from("f"))),
            Err(Error::Poisoned { .. })
        ));
    }
}
