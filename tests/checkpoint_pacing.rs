//! How checkpoints are written: by the checkpointer thread, at lower CPU priority, in pieces
//! whose writeback starts as each is written, at `checkpoint_write_rate` (docs/configuration.md).

mod common;

use std::io;
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use tidegate::io::{DirLock, FileSystem, MappedRegion, StdFs, StorageFile};
use tidegate::{Error, FileChannel, FileChannelConfig};

/// What happened to `checkpoint.tmp` files, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Write { offset: u64, len: u64 },
    Writeback { offset: u64, len: u64 },
    Sync,
}

/// A file system that records the writes, writeback hints and syncs of checkpoint files.
#[derive(Debug)]
struct Recording {
    inner: StdFs,
    ops: Arc<Mutex<Vec<Op>>>,
}

#[derive(Debug)]
struct RecordingFile {
    inner: Arc<dyn StorageFile>,
    ops: Option<Arc<Mutex<Vec<Op>>>>,
}

impl RecordingFile {
    fn record(&self, op: Op) {
        if let Some(ops) = &self.ops {
            ops.lock().push(op);
        }
    }
}

impl FileSystem for Recording {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        let inner = self.inner.create_new(path)?;
        let is_checkpoint = path.file_name().is_some_and(|n| n == "checkpoint.tmp");
        Ok(Arc::new(RecordingFile {
            inner,
            ops: is_checkpoint.then(|| self.ops.clone()),
        }))
    }
    fn open(&self, path: &Path, writable: bool) -> io::Result<Arc<dyn StorageFile>> {
        self.inner.open(path, writable)
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

impl StorageFile for RecordingFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.record(Op::Write {
            offset,
            len: buf.len() as u64,
        });
        self.inner.write_all_at(buf, offset)
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.record(Op::Sync);
        self.inner.sync_data()
    }
    fn sync_all(&self) -> io::Result<()> {
        self.record(Op::Sync);
        self.inner.sync_all()
    }
    fn start_writeback(&self, offset: u64, len: u64) {
        self.record(Op::Writeback { offset, len });
        self.inner.start_writeback(offset, len);
    }
    fn map_read(&self) -> io::Result<Arc<dyn MappedRegion>> {
        self.inner.map_read()
    }
}

fn big_event(i: u64) -> tidegate::Event {
    tidegate::Event::new(vec![b'x'; 64]).with_header("i", i.to_string())
}

#[test]
fn a_checkpoint_is_written_in_pieces_each_handed_to_the_disk_before_the_sync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ops = Arc::new(Mutex::new(Vec::new()));
    let fs = Arc::new(Recording {
        inner: StdFs,
        ops: ops.clone(),
    });
    let cfg = FileChannelConfig::new(dir.path().join("ckpt"), vec![dir.path().join("data")])
        .minimum_required_space(1 << 20)
        .file_system(fs)
        .checkpoint_write_rate(None);
    let ch = FileChannel::open(cfg).expect("open");
    // 200,000 queued events: a checkpoint of about 800 KB (4 bytes per event), four pieces.
    for chunk in 0..200 {
        let mut tx = ch.transaction();
        for i in 0..1000 {
            tx.put(big_event(chunk * 1000 + i)).expect("put");
        }
        tx.commit().expect("commit");
    }
    ops.lock().clear();
    ch.checkpoint().expect("checkpoint");
    let ops = ops.lock().clone();
    let Some((Op::Sync, writes)) = ops.split_last() else {
        panic!("the checkpoint file was not synced last: {ops:?}");
    };
    assert!(writes.len() >= 6, "expected several pieces: {ops:?}");
    let mut end = 0;
    for pair in writes.chunks(2) {
        let [
            Op::Write { offset, len },
            Op::Writeback {
                offset: wb_offset,
                len: wb_len,
            },
        ] = pair
        else {
            panic!("each piece must be written, then its writeback started: {ops:?}");
        };
        assert_eq!(*offset, end, "pieces are written in order, without gaps");
        assert!(*len <= 256 << 10, "a piece of {len} bytes is too large");
        assert_eq!((wb_offset, wb_len), (offset, len));
        end += len;
    }
    assert!(end > 780_000, "the checkpoint was only {end} bytes");
    ch.close().expect("close");
    let cfg = FileChannelConfig::new(dir.path().join("ckpt"), vec![dir.path().join("data")])
        .minimum_required_space(1 << 20);
    let ch = FileChannel::open(cfg).expect("reopen");
    assert_eq!(ch.stats().size, 200_000);
}

#[test]
fn a_write_rate_below_the_minimum_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = FileChannel::open(common::cfg(dir.path()).checkpoint_write_rate(Some(1000)))
        .expect_err("1000 B/s must be refused");
    assert!(
        matches!(
            err,
            Error::Config {
                key: "checkpoint_write_rate",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn explicit_checkpoints_are_served_by_the_checkpointer_and_refused_after_close() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(common::cfg(dir.path())).expect("open");
    common::put_range(&ch, 0..10);
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let ch = ch.clone();
            std::thread::spawn(move || ch.checkpoint())
        })
        .collect();
    for h in handles {
        h.join().expect("join").expect("checkpoint");
    }
    assert_eq!(ch.stats().checkpoints, 4);
    ch.close().expect("close");
    assert!(matches!(ch.checkpoint(), Err(Error::Closed)));
}

/// The `nice` value of each thread of this process whose name starts with `prefix`.
#[cfg(target_os = "linux")]
fn nice_of_threads(prefix: &str) -> Vec<i64> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task").expect("task dir") {
        let path = entry.expect("entry").path();
        let Ok(comm) = std::fs::read_to_string(path.join("comm")) else {
            continue;
        };
        if !comm.trim_end().starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("stat")).expect("stat");
        // Fields after the parenthesised name: state is field 3, nice is field 19.
        let after = &stat[stat.rfind(')').expect("comm end") + 2..];
        let nice = after.split(' ').nth(16).expect("nice field");
        out.push(nice.parse().expect("nice is a number"));
    }
    out
}

#[cfg(target_os = "linux")]
#[test]
fn the_checkpointer_runs_at_lower_cpu_priority_than_the_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(common::cfg(dir.path())).expect("open");
    // The thread lowers its priority as it starts; a served request proves it has.
    ch.checkpoint().expect("checkpoint");
    let own = rustix::process::getpriority_process(None).expect("own priority");
    let nices = nice_of_threads("tidegate-checkp");
    assert!(!nices.is_empty(), "no checkpointer thread found");
    for n in nices {
        assert_eq!(n, i64::from((own + 10).min(19)), "checkpointer nice");
    }
    ch.close().expect("close");
}
