//! Storage: every byte tidegate reads or writes goes through [`FileSystem`].
//!
//! The channel never calls `std::fs` directly. It holds an `Arc<dyn FileSystem>` and asks it to
//! create, open, map, write, sync, rename, remove and list files, to sync directories, to report
//! free space and to lock a directory. Three implementations exist:
//!
//! - [`StdFs`]: the real one, `std::fs` plus `memmap2` for reads. It holds the crate's only
//!   `unsafe` code (see `UNSAFE.md`).
//! - [`FaultyFs`]: wraps another file system and injects failures (a failing write or sync, a
//!   failing rename, a short write, a simulated free-space figure), so tests can prove that the channel poisons
//!   itself and never acknowledges what did not reach the disk.
//! - [`MemFs`]: an in-memory file system that models durability: live versus synced bytes per
//!   file, live versus synced entries per directory, and [`MemFs::crash`] images that keep only
//!   what was durable (optionally with a torn or reordered tail). `tests/crash_points.rs` crashes
//!   a workload after every sync it makes and checks the recovery contract on each image.
//!
//! # Contract
//! - `write_all_at` either writes every byte or fails; a failure leaves the written range
//!   undefined.
//! - `sync_data` makes every byte written to the file before the call durable. A failed sync
//!   means "unknown": the caller must never retry it and trust the result.
//! - A [`MappedRegion`] shows the file's bytes as of each call to [`MappedRegion::visit`],
//!   including writes made through the file after the map was taken. A mapped file is never
//!   shortened while a region of it exists.
//! - `sync_dir` makes the creation, rename or removal of entries in that directory durable.

mod faulty;
mod mem_fs;
mod std_fs;

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

pub use faulty::{Faults, FaultyFs, ShortWrite};
pub use mem_fs::{Cut, MemFs, TornTail};
pub use std_fs::StdFs;

/// A file system as tidegate uses it. Implementations must be cheap to share across threads.
pub trait FileSystem: Send + Sync + fmt::Debug {
    /// Creates `path` and every missing parent directory.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Creates a new, empty file for reading and writing; fails if it exists.
    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>>;
    /// Opens an existing file, for reading and, if `writable`, writing.
    fn open(&self, path: &Path, writable: bool) -> io::Result<Arc<dyn StorageFile>>;
    /// Renames `from` to `to`, replacing `to` if it exists.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Lists the names of the entries of a directory (not recursive, in no order).
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// True when `path` is a directory that can be listed.
    fn dir_exists(&self, path: &Path) -> bool {
        self.list_dir(path).is_ok()
    }
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Bytes available to an unprivileged writer on the file system holding `path`.
    fn free_space(&self, path: &Path) -> io::Result<u64>;
    /// A number that changes whenever this file system knows that its free space changed in a
    /// way a cached [`free_space`](FileSystem::free_space) figure must not hide. The channel
    /// reads the figure again at its next check when it changes. The real file system cannot
    /// know (0: the channel reads the figure again after a short time, DESIGN.md §9.2);
    /// [`FaultyFs`] changes it whenever a test sets a simulated figure.
    fn free_space_generation(&self) -> u64 {
        0
    }
    /// Takes an exclusive lock on the directory (a `.lock` file inside it), held until the
    /// returned guard is dropped. Fails at once with `WouldBlock` if another holder has it.
    fn lock_dir(&self, path: &Path) -> io::Result<DirLock>;
}

/// An open file.
pub trait StorageFile: Send + Sync + fmt::Debug {
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// True when the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Sets the length (grows with zeros or shrinks). Never called on a mapped file to shrink it.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// `fdatasync`: makes the file's data (and the metadata needed to read it) durable.
    fn sync_data(&self) -> io::Result<()>;
    /// `fsync`: makes the file's data and all of its metadata durable.
    fn sync_all(&self) -> io::Result<()>;
    /// A hint that `offset..offset + len`, just written, will not be written again: start
    /// writing it to the disk now rather than all at once at the next sync, and do not keep it
    /// cached. Durability still comes only from `sync_data`/`sync_all`, which also report any
    /// write error. Default: nothing.
    fn start_writeback(&self, offset: u64, len: u64) {
        let _ = (offset, len);
    }
    /// Maps the whole file (at its current length) for reading.
    fn map_read(&self) -> io::Result<Arc<dyn MappedRegion>>;
}

/// A read-only view of a file's bytes, as a memory map or its in-memory equivalent.
pub trait MappedRegion: Send + Sync + fmt::Debug {
    /// Length of the region in bytes.
    fn len(&self) -> u64;
    /// True when the region is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Calls `f` with the bytes `offset..offset + len`; fails with `UnexpectedEof` if that range
    /// is not inside the region. The slice is valid only during the call.
    fn visit(&self, offset: u64, len: usize, f: &mut dyn FnMut(&[u8])) -> io::Result<()>;
    /// A hint that `offset..offset + len` will be read soon: a memory map asks the CPU to start
    /// loading those cache lines now, so the loads overlap with other work instead of stalling
    /// a later read. Replay uses it to read ahead along the log, whose headers it otherwise
    /// reaches one dependent load at a time. Bytes outside the region are ignored. Default:
    /// nothing.
    fn prefetch(&self, offset: u64, len: u64) {
        let _ = (offset, len);
    }
}

impl dyn MappedRegion {
    /// Copies `buf.len()` bytes at `offset` into `buf`.
    pub fn read_into(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let len = buf.len();
        self.visit(offset, len, &mut |bytes| buf.copy_from_slice(bytes))
    }
}

/// A held directory lock; dropping it releases the lock.
pub struct DirLock {
    _guard: Box<dyn Send + Sync>,
}

impl DirLock {
    /// Wraps whatever keeps the lock held.
    pub fn new(guard: Box<dyn Send + Sync>) -> Self {
        DirLock { _guard: guard }
    }
}

impl fmt::Debug for DirLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DirLock")
    }
}

/// Checks that `offset..offset+len` lies within a region of `region_len` bytes and returns it
/// as a `usize` range.
pub(crate) fn region_range(
    region_len: u64,
    offset: u64,
    len: usize,
) -> io::Result<std::ops::Range<usize>> {
    let end = offset.checked_add(len as u64);
    match end {
        Some(end) if end <= region_len => {
            let start = usize::try_from(offset).map_err(io::Error::other)?;
            Ok(start..start + len)
        }
        _ => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("range {offset}+{len} is outside a mapped region of {region_len} bytes"),
        )),
    }
}
