//! A file system (the real one underneath) that reports what tidegate does to its files, for
//! tests that check how it reads and writes rather than what.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tidegate::io::{DirLock, FileSystem, MappedRegion, StdFs, StorageFile};

/// One operation on a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileOp {
    Read { offset: u64, len: u64 },
    Write { offset: u64, len: u64 },
    Sync,
    Writeback { offset: u64, len: u64 },
}

type Observer = Arc<dyn Fn(&Path, FileOp) + Send + Sync>;

/// `StdFs`, calling an observer with each read, write, sync and writeback hint of every file it
/// creates or opens (on the thread that does it), before doing it.
pub struct ObservedFs {
    inner: StdFs,
    observe: Observer,
}

impl ObservedFs {
    pub fn new(observe: impl Fn(&Path, FileOp) + Send + Sync + 'static) -> Self {
        ObservedFs {
            inner: StdFs,
            observe: Arc::new(observe),
        }
    }

    fn wrap(&self, path: &Path, inner: Arc<dyn StorageFile>) -> Arc<dyn StorageFile> {
        Arc::new(ObservedFile {
            inner,
            path: path.to_path_buf(),
            observe: self.observe.clone(),
        })
    }
}

impl fmt::Debug for ObservedFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ObservedFs")
    }
}

struct ObservedFile {
    inner: Arc<dyn StorageFile>,
    path: PathBuf,
    observe: Observer,
}

impl fmt::Debug for ObservedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObservedFile({})", self.path.display())
    }
}

impl FileSystem for ObservedFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        Ok(self.wrap(path, self.inner.create_new(path)?))
    }
    fn open(&self, path: &Path, writable: bool) -> io::Result<Arc<dyn StorageFile>> {
        Ok(self.wrap(path, self.inner.open(path, writable)?))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.inner.list_dir(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.sync_dir(path)
    }
    fn free_space(&self, path: &Path) -> io::Result<u64> {
        self.inner.free_space(path)
    }
    fn lock_dir(&self, path: &Path) -> io::Result<DirLock> {
        self.inner.lock_dir(path)
    }
}

impl StorageFile for ObservedFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let len = buf.len() as u64;
        (self.observe)(&self.path, FileOp::Write { offset, len });
        self.inner.write_all_at(buf, offset)
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let len = buf.len() as u64;
        (self.observe)(&self.path, FileOp::Read { offset, len });
        self.inner.read_exact_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        (self.observe)(&self.path, FileOp::Sync);
        self.inner.sync_data()
    }
    fn sync_all(&self) -> io::Result<()> {
        (self.observe)(&self.path, FileOp::Sync);
        self.inner.sync_all()
    }
    fn start_writeback(&self, offset: u64, len: u64) {
        (self.observe)(&self.path, FileOp::Writeback { offset, len });
        self.inner.start_writeback(offset, len);
    }
    fn map_read(&self) -> io::Result<Arc<dyn MappedRegion>> {
        self.inner.map_read()
    }
}
