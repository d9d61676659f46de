//! The production [`FileSystem`]: `std::fs` for writes, `memmap2` for reads.
//!
//! This module holds the only `unsafe` code in tidegate (one block, the read-only map of a
//! segment file); `UNSAFE.md` at the repository root lists it and argues why it is sound.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use super::{DirLock, FileSystem, MappedRegion, StorageFile, region_range};

/// How long [`StdFs`]'s `lock_dir` keeps trying a busy lock (see there).
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_millis(100);

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFs;

#[derive(Debug)]
struct StdFile {
    file: File,
}

#[derive(Debug)]
struct StdMap {
    map: memmap2::Mmap,
}

impl FileSystem for StdFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }

    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        Ok(Arc::new(StdFile { file }))
    }

    fn open(&self, path: &Path, writable: bool) -> io::Result<Arc<dyn StorageFile>> {
        let file = OpenOptions::new().read(true).write(writable).open(path)?;
        Ok(Arc::new(StdFile { file }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(path)? {
            let entry = entry?;
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn free_space(&self, path: &Path) -> io::Result<u64> {
        let st = rustix::fs::statvfs(path)?;
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    }

    fn lock_dir(&self, path: &Path) -> io::Result<DirLock> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path.join(".lock"))?;
        // A lock released a moment ago can still be held by a child process another thread of
        // this process is starting: between its fork and its exec the child holds a copy of the
        // lock's descriptor (closed, with the lock, at exec). So a lock that is busy is tried
        // again for up to about 0.1 s before the open fails with `Locked`.
        let mut wait = std::time::Duration::from_millis(1);
        let mut waited = std::time::Duration::ZERO;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(DirLock::new(Box::new(file))),
                Err(fs::TryLockError::WouldBlock) if waited < LOCK_PATIENCE => {
                    std::thread::sleep(wait);
                    waited += wait;
                    wait = (wait * 2).min(std::time::Duration::from_millis(20));
                }
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WouldBlock,
                        "another process (or channel) holds the lock",
                    ));
                }
                Err(fs::TryLockError::Error(e)) => return Err(e),
            }
        }
    }
}

impl StorageFile for StdFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.file.sync_all()
    }

    fn start_writeback(&self, offset: u64, len: u64) {
        // `POSIX_FADV_DONTNEED` starts writeback of the range's dirty pages without waiting for
        // it (Linux) and drops the clean ones. Unlike `sync_file_range`, it never consumes a
        // write error (the next `fsync` still reports it), and it needs no `unsafe`.
        if let Some(len) = std::num::NonZeroU64::new(len)
            && let Err(e) =
                rustix::fs::fadvise(&self.file, offset, Some(len), rustix::fs::Advice::DontNeed)
        {
            tracing::debug!(error = %e, "fadvise(DONTNEED) failed; the data is written at the next sync");
        }
    }

    #[expect(
        unsafe_code,
        reason = "memory-mapping a segment for reads; see UNSAFE.md, U1"
    )]
    fn map_read(&self) -> io::Result<Arc<dyn MappedRegion>> {
        // SAFETY (U1 in UNSAFE.md): the mapped file is a segment in a data directory that this
        // process holds an exclusive lock on, so no other cooperating process writes, truncates
        // or replaces it. tidegate itself never shortens a file while a map of it exists
        // (segments are preallocated to their final length before they are mapped, torn tails
        // are zeroed in place, not truncated, and files are only unlinked, which keeps mapped
        // pages valid). Bytes inside the map may change through `write_all_at`; we never hand
        // out references that outlive a `visit` call and never assume the bytes are stable
        // across calls: every read is validated (length bounds, CRC) before use. An I/O error
        // on a mapped read raises SIGBUS, which ends the process visibly; replay then recovers.
        let map = unsafe { memmap2::MmapOptions::new().map(&self.file)? };
        Ok(Arc::new(StdMap { map }))
    }
}

impl MappedRegion for StdMap {
    fn len(&self) -> u64 {
        self.map.len() as u64
    }

    fn visit(&self, offset: u64, len: usize, f: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        let range = region_range(self.map.len() as u64, offset, len)?;
        f(&self.map[range]);
        Ok(())
    }

    fn prefetch(&self, offset: u64, len: u64) {
        let end = offset.saturating_add(len).min(self.map.len() as u64);
        let mut line = offset & !63;
        while line < end {
            if let Some(b) = usize::try_from(line).ok().and_then(|o| self.map.get(o)) {
                prefetch_line(b);
            }
            line += 64;
        }
    }
}

/// Asks the CPU to start loading the cache line that holds `byte`, without waiting for it.
#[cfg(target_arch = "x86_64")]
#[expect(
    unsafe_code,
    reason = "a cache prefetch hint on a byte we hold a reference to; see UNSAFE.md, U2"
)]
fn prefetch_line(byte: &u8) {
    use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
    // SAFETY (U2 in UNSAFE.md): `_mm_prefetch` is `unsafe` only because it is an SSE
    // intrinsic (`#[target_feature(enable = "sse")]`), and SSE is part of the x86_64 baseline,
    // so every CPU this code runs on has it. A prefetch is a hint: it never faults, never
    // changes memory and is not an access in the language's memory model; the pointer comes
    // from a live `&u8` anyway.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(byte).cast::<i8>()) }
}

/// Elsewhere there is no portable prefetch; the hint does nothing.
#[cfg(not(target_arch = "x86_64"))]
fn prefetch_line(byte: &u8) {
    let _ = byte;
}
