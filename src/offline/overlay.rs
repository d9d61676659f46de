//! A read-only view of a file system for the offline tools: replay runs on it unchanged, and
//! whatever replay would write (zeroing a torn tail, removing a leftover `.tmp` file) lands in
//! memory instead of on the disk.
//!
//! Replay is the one place that decides what a channel holds; running it on this view lets
//! `verify` and `inspect` report exactly what an open would restore without changing a byte of
//! the channel. Files are opened read-only on the real file system; writes become patches kept
//! per path and applied to every later read and map of that file; removals hide the entry;
//! syncs do nothing. Creating files or directories and renaming fail: replay does neither on a
//! channel whose directories exist, and the offline tools check that they do first.
//!
//! `lock_dir` returns a guard that holds nothing: the offline session takes the real locks on
//! the real file system before it builds this view (see [`super::Session`]).

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::io::{DirLock, FileSystem, MappedRegion, StorageFile, region_range};

/// Writes to one file, in the order they were made.
type Patches = Arc<Mutex<Vec<(u64, Vec<u8>)>>>;

/// A file system view that reads through to `inner` and never writes to it.
#[derive(Debug)]
pub(crate) struct ReadOnlyFs {
    inner: Arc<dyn FileSystem>,
    removed: Mutex<HashSet<PathBuf>>,
    patches: Mutex<HashMap<PathBuf, Patches>>,
}

impl ReadOnlyFs {
    pub(crate) fn new(inner: Arc<dyn FileSystem>) -> Self {
        ReadOnlyFs {
            inner,
            removed: Mutex::new(HashSet::new()),
            patches: Mutex::new(HashMap::new()),
        }
    }
}

fn read_only(what: &str, path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "{what} {}: the offline tools never change this channel",
            path.display()
        ),
    )
}

/// Applies every patch that overlaps `offset..offset + buf.len()` to `buf`.
fn apply(patches: &[(u64, Vec<u8>)], offset: u64, buf: &mut [u8]) {
    let end = offset.saturating_add(buf.len() as u64);
    for (at, bytes) in patches {
        let p_end = at.saturating_add(bytes.len() as u64);
        let from = (*at).max(offset);
        let to = p_end.min(end);
        if from >= to {
            continue;
        }
        let (dst, src) = ((from - offset) as usize, (from - at) as usize);
        let n = (to - from) as usize;
        buf[dst..dst + n].copy_from_slice(&bytes[src..src + n]);
    }
}

impl FileSystem for ReadOnlyFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        Err(read_only("cannot create directory", path))
    }
    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        Err(read_only("cannot create", path))
    }
    fn open(&self, path: &Path, _writable: bool) -> io::Result<Arc<dyn StorageFile>> {
        if self.removed.lock().contains(path) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} (removed in the read-only view)", path.display()),
            ));
        }
        let inner = self.inner.open(path, false)?;
        let patches = self
            .patches
            .lock()
            .entry(path.to_path_buf())
            .or_default()
            .clone();
        Ok(Arc::new(ReadOnlyFile { inner, patches }))
    }
    fn rename(&self, from: &Path, _to: &Path) -> io::Result<()> {
        Err(read_only("cannot rename", from))
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.removed.lock().insert(path.to_path_buf());
        Ok(())
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let removed = self.removed.lock();
        Ok(self
            .inner
            .list_dir(path)?
            .into_iter()
            .filter(|n| !removed.contains(&path.join(n)))
            .collect())
    }
    fn dir_exists(&self, path: &Path) -> bool {
        self.inner.dir_exists(path)
    }
    fn sync_dir(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }
    fn free_space(&self, path: &Path) -> io::Result<u64> {
        self.inner.free_space(path)
    }
    fn lock_dir(&self, _path: &Path) -> io::Result<DirLock> {
        Ok(DirLock::new(Box::new(())))
    }
}

#[derive(Debug)]
struct ReadOnlyFile {
    inner: Arc<dyn StorageFile>,
    patches: Patches,
}

impl StorageFile for ReadOnlyFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, _len: u64) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "cannot resize a file in the read-only view",
        ))
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.patches.lock().push((offset, buf.to_vec()));
        Ok(())
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, offset)?;
        apply(&self.patches.lock(), offset, buf);
        Ok(())
    }
    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }
    fn sync_all(&self) -> io::Result<()> {
        Ok(())
    }
    fn map_read(&self) -> io::Result<Arc<dyn MappedRegion>> {
        Ok(Arc::new(ReadOnlyMap {
            inner: self.inner.map_read()?,
            patches: self.patches.clone(),
        }))
    }
}

#[derive(Debug)]
struct ReadOnlyMap {
    inner: Arc<dyn MappedRegion>,
    patches: Patches,
}

impl MappedRegion for ReadOnlyMap {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn visit(&self, offset: u64, len: usize, f: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        region_range(self.inner.len(), offset, len)?;
        let patches = self.patches.lock();
        let end = offset.saturating_add(len as u64);
        let touched = patches
            .iter()
            .any(|(at, b)| *at < end && at.saturating_add(b.len() as u64) > offset);
        if !touched {
            drop(patches);
            return self.inner.visit(offset, len, f);
        }
        let mut copy = vec![0u8; len];
        self.inner
            .visit(offset, len, &mut |b| copy.copy_from_slice(b))?;
        apply(&patches, offset, &mut copy);
        drop(patches);
        f(&copy);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::MemFs;

    #[test]
    fn writes_stay_in_memory_and_show_in_reads_and_maps() {
        let mem = MemFs::new();
        let dir = Path::new("/d");
        mem.create_dir_all(dir).expect("mkdir");
        let f = mem.create_new(&dir.join("f")).expect("create");
        f.write_all_at(b"abcdefgh", 0).expect("write");
        let view = ReadOnlyFs::new(Arc::new(mem.clone()));
        let v = view.open(&dir.join("f"), true).expect("open");
        v.write_all_at(b"XY", 3).expect("patch");
        let mut buf = [0u8; 8];
        v.read_exact_at(&mut buf, 0).expect("read");
        assert_eq!(&buf, b"abcXYfgh");
        let map = v.map_read().expect("map");
        let mut got = Vec::new();
        map.visit(2, 4, &mut |b| got.extend_from_slice(b))
            .expect("visit");
        assert_eq!(got, b"cXYf");
        f.read_exact_at(&mut buf, 0).expect("read the real file");
        assert_eq!(&buf, b"abcdefgh", "the real file is unchanged");
        view.remove_file(&dir.join("f")).expect("hide");
        assert!(view.list_dir(dir).expect("list").is_empty());
        assert_eq!(mem.list_dir(dir).expect("list").len(), 1);
        assert!(view.create_new(&dir.join("g")).is_err());
    }
}
