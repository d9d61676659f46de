//! A fault-injecting [`FileSystem`] wrapper for tests: failing writes and syncs, short writes,
//! `ENOSPC` on file creation, a simulated free-space figure, failing renames, and a sync that
//! waits for the test.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use super::{DirLock, FileSystem, MappedRegion, StorageFile};

/// Switches shared by a [`FaultyFs`] and every file it opened. All start disabled.
#[derive(Debug)]
pub struct Faults {
    /// Sync calls (file or directory) that succeed before every later one fails; negative = never fail.
    syncs_before_failure: AtomicI64,
    /// File writes that succeed before every later one fails; negative = never fail.
    writes_before_failure: AtomicI64,
    /// When set, renames fail.
    fail_rename: AtomicBool,
    /// When set, creating a file fails with "no space left on device".
    fail_create: AtomicBool,
    /// The next write's short-write fault, if armed: see [`Faults::short_write_next`].
    short_write: parking_lot::Mutex<Option<ShortWrite>>,
    /// Free space to report instead of the real figure; `u64::MAX` = report the real figure.
    free_space: AtomicU64,
    free_space_generation: AtomicU64,
    /// Syncs seen so far (file and directory).
    syncs: AtomicU64,
    /// Holding a file sync: see [`Faults::hold_next_file_sync`].
    hold: parking_lot::Mutex<Hold>,
    hold_changed: parking_lot::Condvar,
}

/// How the next write is cut short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShortWrite {
    /// The first `n` bytes reach the file (as if `pwrite` returned `n`), then the rest in a
    /// second write, as `write_all_at` does after a short count: the call succeeds.
    ThenRest(usize),
    /// The first `n` bytes reach the file, then the write fails with "no space left on device",
    /// as when the disk fills in the middle of a `write_all_at`.
    ThenNoSpace(usize),
}

/// Where the sync hold stands.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Hold {
    #[default]
    Off,
    Armed,
    Holding,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            syncs_before_failure: AtomicI64::new(-1),
            writes_before_failure: AtomicI64::new(-1),
            fail_rename: AtomicBool::new(false),
            fail_create: AtomicBool::new(false),
            short_write: parking_lot::Mutex::new(None),
            free_space: AtomicU64::new(u64::MAX),
            free_space_generation: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            hold: parking_lot::Mutex::new(Hold::Off),
            hold_changed: parking_lot::Condvar::new(),
        }
    }
}

impl Faults {
    /// Lets `n` more syncs succeed, then fails every later one with an I/O error.
    pub fn fail_syncs_after(&self, n: u32) {
        self.syncs_before_failure
            .store(i64::from(n), Ordering::SeqCst);
    }
    /// Lets `n` more writes succeed, then fails every later one.
    pub fn fail_writes_after(&self, n: u32) {
        self.writes_before_failure
            .store(i64::from(n), Ordering::SeqCst);
    }
    /// Cuts the next file write short (once).
    pub fn short_write_next(&self, how: ShortWrite) {
        *self.short_write.lock() = Some(how);
    }
    /// Makes renames fail (or succeed again).
    pub fn set_fail_rename(&self, fail: bool) {
        self.fail_rename.store(fail, Ordering::SeqCst);
    }
    /// Makes file creation fail with ENOSPC (or succeed again).
    pub fn set_fail_create(&self, fail: bool) {
        self.fail_create.store(fail, Ordering::SeqCst);
    }
    /// Reports `bytes` of free space from now on (`None`: the real figure), and tells a channel
    /// to read the figure again at its next check (see
    /// [`FileSystem::free_space_generation`](super::FileSystem::free_space_generation)).
    pub fn set_free_space(&self, bytes: Option<u64>) {
        self.free_space
            .store(bytes.unwrap_or(u64::MAX), Ordering::SeqCst);
        self.free_space_generation.fetch_add(1, Ordering::SeqCst);
    }
    /// Like [`set_free_space`](Faults::set_free_space), without telling: as when another
    /// process fills the disk. A channel sees it when its cached reading expires.
    pub fn set_free_space_quietly(&self, bytes: Option<u64>) {
        self.free_space
            .store(bytes.unwrap_or(u64::MAX), Ordering::SeqCst);
    }
    /// How many syncs (file or directory) were requested so far.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::SeqCst)
    }
    /// Makes the next file `sync_data` wait, before it syncs, until
    /// [`Faults::release_held_sync`]: a test can then act while a commit sits between its append
    /// and its sync.
    pub fn hold_next_file_sync(&self) {
        *self.hold.lock() = Hold::Armed;
    }
    /// Waits until a file sync is being held, for at most `timeout`; false if none was.
    pub fn wait_for_held_sync(&self, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut h = self.hold.lock();
        while *h != Hold::Holding {
            if self.hold_changed.wait_until(&mut h, deadline).timed_out() {
                return *h == Hold::Holding;
            }
        }
        true
    }
    /// Lets a held sync go on.
    pub fn release_held_sync(&self) {
        *self.hold.lock() = Hold::Off;
        self.hold_changed.notify_all();
    }
    fn hold_point(&self) {
        let mut h = self.hold.lock();
        if *h != Hold::Armed {
            return;
        }
        *h = Hold::Holding;
        self.hold_changed.notify_all();
        while *h == Hold::Holding {
            self.hold_changed.wait(&mut h);
        }
    }

    /// Clears every fault.
    pub fn heal(&self) {
        self.syncs_before_failure.store(-1, Ordering::SeqCst);
        self.writes_before_failure.store(-1, Ordering::SeqCst);
        self.set_fail_rename(false);
        self.set_fail_create(false);
        self.set_free_space(None);
        *self.short_write.lock() = None;
        self.release_held_sync();
    }

    fn take(counter: &AtomicI64, what: &str) -> io::Result<()> {
        let left = counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            if n > 0 { Some(n - 1) } else { None }
        });
        match left {
            Err(0) => Err(io::Error::other(format!("injected {what} failure"))),
            _ => Ok(()),
        }
    }

    fn sync(&self) -> io::Result<()> {
        self.syncs.fetch_add(1, Ordering::SeqCst);
        Self::take(&self.syncs_before_failure, "sync")
    }

    fn write(&self) -> io::Result<()> {
        Self::take(&self.writes_before_failure, "write")
    }
}

/// Wraps a [`FileSystem`] and injects the failures switched on in its [`Faults`].
#[derive(Debug, Clone)]
pub struct FaultyFs {
    inner: Arc<dyn FileSystem>,
    faults: Arc<Faults>,
}

impl FaultyFs {
    /// Wraps `inner`; every fault starts switched off.
    pub fn new(inner: Arc<dyn FileSystem>) -> Self {
        FaultyFs {
            inner,
            faults: Arc::new(Faults::default()),
        }
    }
    /// The switches.
    pub fn faults(&self) -> &Arc<Faults> {
        &self.faults
    }
}

#[derive(Debug)]
struct FaultyFile {
    inner: Arc<dyn StorageFile>,
    faults: Arc<Faults>,
}

impl FileSystem for FaultyFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        if self.faults.fail_create.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        let inner = self.inner.create_new(path)?;
        Ok(Arc::new(FaultyFile {
            inner,
            faults: self.faults.clone(),
        }))
    }
    fn open(&self, path: &Path, writable: bool) -> io::Result<Arc<dyn StorageFile>> {
        let inner = self.inner.open(path, writable)?;
        Ok(Arc::new(FaultyFile {
            inner,
            faults: self.faults.clone(),
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        if self.faults.fail_rename.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected rename failure"));
        }
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.inner.list_dir(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.faults.sync()?;
        self.inner.sync_dir(path)
    }
    fn free_space(&self, path: &Path) -> io::Result<u64> {
        match self.faults.free_space.load(Ordering::SeqCst) {
            u64::MAX => self.inner.free_space(path),
            simulated => Ok(simulated),
        }
    }
    fn free_space_generation(&self) -> u64 {
        self.faults
            .free_space_generation
            .load(Ordering::SeqCst)
            .wrapping_add(self.inner.free_space_generation())
    }
    fn lock_dir(&self, path: &Path) -> io::Result<DirLock> {
        self.inner.lock_dir(path)
    }
}

impl StorageFile for FaultyFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.faults.write()?;
        self.inner.set_len(len)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.faults.write()?;
        let short = self.faults.short_write.lock().take();
        match short {
            None => self.inner.write_all_at(buf, offset),
            Some(ShortWrite::ThenRest(n)) => {
                let n = n.min(buf.len());
                self.inner.write_all_at(&buf[..n], offset)?;
                self.inner.write_all_at(&buf[n..], offset + n as u64)
            }
            Some(ShortWrite::ThenNoSpace(n)) => {
                let n = n.min(buf.len());
                self.inner.write_all_at(&buf[..n], offset)?;
                Err(io::Error::from_raw_os_error(28)) // ENOSPC
            }
        }
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.faults.hold_point();
        self.faults.sync()?;
        self.inner.sync_data()
    }
    fn sync_all(&self) -> io::Result<()> {
        self.faults.sync()?;
        self.inner.sync_all()
    }
    fn start_writeback(&self, offset: u64, len: u64) {
        self.inner.start_writeback(offset, len);
    }

    fn map_read(&self) -> io::Result<Arc<dyn MappedRegion>> {
        self.inner.map_read()
    }
}
