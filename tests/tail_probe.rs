//! The open's read of the newest segment's rest after the log (`TailProbe` in src/replay.rs):
//! with a torn tail in that segment, the rest is read once (by the probe), not again for the
//! torn tail and again for "bytes beyond the end of the log".

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{drain, ev, flip};
use tidegate::io::{DirLock, FileSystem, MappedRegion, StdFs, StorageFile};
use tidegate::{FileChannel, FileChannelConfig};

/// `StdFs`, counting the bytes `read_exact_at` reads from each file.
#[derive(Debug, Default)]
struct CountingFs {
    inner: StdFs,
    read: Arc<Mutex<HashMap<PathBuf, Arc<AtomicU64>>>>,
}

#[derive(Debug)]
struct CountingFile {
    inner: Arc<dyn StorageFile>,
    read: Arc<AtomicU64>,
}

impl CountingFs {
    fn wrap(&self, path: &Path, inner: Arc<dyn StorageFile>) -> Arc<dyn StorageFile> {
        let read = self
            .read
            .lock()
            .unwrap()
            .entry(path.to_path_buf())
            .or_default()
            .clone();
        Arc::new(CountingFile { inner, read })
    }
    fn bytes_read(&self, path: &Path) -> u64 {
        self.read
            .lock()
            .unwrap()
            .get(path)
            .map_or(0, |n| n.load(Ordering::SeqCst))
    }
}

impl FileSystem for CountingFs {
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

impl StorageFile for CountingFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_all_at(buf, offset)
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.read.fetch_add(buf.len() as u64, Ordering::SeqCst);
        self.inner.read_exact_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.inner.sync_data()
    }
    fn sync_all(&self) -> io::Result<()> {
        self.inner.sync_all()
    }
    fn map_read(&self) -> io::Result<Arc<dyn MappedRegion>> {
        self.inner.map_read()
    }
}

const SEGMENT: u64 = 8 << 20;

fn config(root: &Path) -> FileChannelConfig {
    FileChannelConfig::new(root.join("ckpt"), vec![root.join("data")])
        .minimum_required_space(1 << 20)
        .max_segment_size(SEGMENT)
        .max_event_size(1 << 20)
        .checkpoint_on_close(false)
        .checkpoint_interval(Duration::from_secs(3600))
}

#[test]
fn a_torn_tail_in_the_newest_segment_reads_its_rest_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    let ch = FileChannel::open(cfg.clone()).expect("open");
    for i in 0..20u64 {
        let mut tx = ch.transaction();
        tx.put(ev(i)).expect("put");
        tx.commit().expect("commit");
    }
    drop(ch);
    // Tear the last record of the newest segment (its last non-zero byte).
    let data = dir.path().join("data");
    let newest = std::fs::read_dir(&data)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .max_by_key(|p| {
            p.file_stem().unwrap().to_string_lossy()["segment-".len()..]
                .parse::<u32>()
                .unwrap()
        })
        .expect("a segment");
    let bytes = std::fs::read(&newest).expect("read");
    let last = bytes.iter().rposition(|b| *b != 0).expect("a record") as u64;
    drop(bytes);
    flip(&newest, last, 0x80);

    let fs = Arc::new(CountingFs::default());
    let ch = FileChannel::open(cfg.file_system(fs.clone())).expect("reopen");
    let report = ch.recovery_report();
    assert_eq!(report.torn_tails, 1, "{report:?}");
    let torn_bytes = report.torn_bytes_truncated;
    assert_eq!(drain(&ch).len(), 19, "{torn_bytes}");
    drop(ch);
    // The scan's first chunk (1 MiB) and the probe's read of the rest (the segment's size):
    // not the rest again for the torn tail and again for the bytes beyond the log.
    let read = fs.bytes_read(&newest);
    assert!(
        read < SEGMENT + (2 << 20),
        "{read} bytes read from a segment of {SEGMENT}"
    );
}
