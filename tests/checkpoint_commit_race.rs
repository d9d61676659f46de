//! Reproduces a lost-commit race between a checkpoint and a commit (found by
//! `tests/crash_process.rs` once its child checkpoints from a second thread).
//!
//! A commit appends its records (registering the transaction in `committing`), releases the
//! append lock, syncs, and only then applies its effect to the queue. A checkpoint whose snapshot
//! falls between the append and the apply records the transaction in `committing`, but its
//! `scan_start` is the log tail, which lies after the transaction's records: replay from that
//! checkpoint never reads them, so the `committing` entry has nothing to apply. If the process
//! crashes before the next checkpoint, an acknowledged put is lost and an acknowledged take is
//! delivered again.
//!
//! A file system wrapper holds the commit's `fdatasync` so the checkpoint runs inside the window.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use tidegate::io::{DirLock, FileSystem, MappedRegion, StdFs, StorageFile};
use tidegate::{Event, FileChannel, FileChannelConfig};

/// Holds the next `sync_data` call (once armed) until released.
#[derive(Debug, Default)]
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum GateState {
    #[default]
    Open,
    Armed,
    Holding,
    Released,
}

impl Gate {
    fn arm(&self) {
        *self.state.lock() = GateState::Armed;
    }
    fn pass(&self) {
        let mut st = self.state.lock();
        if *st != GateState::Armed {
            return;
        }
        *st = GateState::Holding;
        self.changed.notify_all();
        while *st == GateState::Holding {
            self.changed.wait(&mut st);
        }
    }
    fn wait_holding(&self) {
        let mut st = self.state.lock();
        while *st != GateState::Holding {
            self.changed.wait(&mut st);
        }
    }
    fn release(&self) {
        *self.state.lock() = GateState::Released;
        self.changed.notify_all();
    }
}

#[derive(Debug)]
struct GatedFs {
    gate: Arc<Gate>,
}

#[derive(Debug)]
struct GatedFile {
    inner: Arc<dyn StorageFile>,
    gate: Arc<Gate>,
}

impl FileSystem for GatedFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        StdFs.create_dir_all(path)
    }
    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        let inner = StdFs.create_new(path)?;
        Ok(Arc::new(GatedFile {
            inner,
            gate: self.gate.clone(),
        }))
    }
    fn open(&self, path: &Path, writable: bool) -> io::Result<Arc<dyn StorageFile>> {
        let inner = StdFs.open(path, writable)?;
        Ok(Arc::new(GatedFile {
            inner,
            gate: self.gate.clone(),
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        StdFs.remove_file(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        StdFs.list_dir(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        StdFs.sync_dir(path)
    }
    fn free_space(&self, path: &Path) -> io::Result<u64> {
        StdFs.free_space(path)
    }
    fn lock_dir(&self, path: &Path) -> io::Result<DirLock> {
        StdFs.lock_dir(path)
    }
}

impl StorageFile for GatedFile {
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
        self.inner.read_exact_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.gate.pass();
        self.inner.sync_data()
    }
    fn sync_all(&self) -> io::Result<()> {
        self.inner.sync_all()
    }
    fn map_read(&self) -> io::Result<Arc<dyn MappedRegion>> {
        self.inner.map_read()
    }
}

fn config(root: &Path, gate: &Arc<Gate>) -> FileChannelConfig {
    FileChannelConfig::new(root.join("ckpt"), vec![root.join("data")])
        .minimum_required_space(1 << 20)
        .file_system(Arc::new(GatedFs { gate: gate.clone() }))
}

/// Commits `tx` in another thread, and runs a checkpoint while the commit's sync is held.
/// Returns once both finished (the commit acknowledged).
fn commit_with_checkpoint_inside(ch: &FileChannel, gate: &Arc<Gate>, tx: tidegate::Transaction) {
    gate.arm();
    let committer = std::thread::spawn(move || tx.commit());
    gate.wait_holding(); // the Commit record is appended; its effect is not applied yet
    let checkpointer = {
        let ch = ch.clone();
        std::thread::spawn(move || ch.checkpoint())
    };
    // Let the checkpoint take its snapshot; it then waits for the held sync to finish.
    std::thread::sleep(Duration::from_millis(500));
    gate.release();
    committer
        .join()
        .expect("committer")
        .expect("commit is acknowledged");
    checkpointer
        .join()
        .expect("checkpointer")
        .expect("checkpoint");
}

/// The newest checkpoint lists a committing transaction: the race window was hit.
fn assert_race_hit(root: &Path) {
    let newest = std::fs::read_dir(root.join("ckpt"))
        .expect("read ckpt dir")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let generation: u64 = name.strip_prefix("checkpoint-")?.parse().ok()?;
            Some((generation, e.path()))
        })
        .max()
        .expect("a checkpoint");
    let bytes = std::fs::read(&newest.1).expect("read checkpoint");
    let ck = tidegate::format::checkpoint::decode(&bytes).expect("decode checkpoint");
    assert!(
        !ck.committing.is_empty(),
        "precondition: the checkpoint should have run between the commit's append and its \
         apply (increase the sleep on a slow machine): {ck:?}"
    );
}

#[test]
fn a_put_acknowledged_while_a_checkpoint_runs_survives_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gate = Arc::new(Gate::default());
    let ch = FileChannel::open(config(dir.path(), &gate)).expect("open");
    let mut tx = ch.transaction();
    tx.put(Event::new(b"acknowledged".to_vec())).expect("put");
    commit_with_checkpoint_inside(&ch, &gate, tx);
    assert_eq!(ch.stats().size, 1);
    assert_race_hit(dir.path());

    drop(ch); // crash: no close, no newer checkpoint
    let ch = FileChannel::open(config(dir.path(), &gate)).expect("reopen");
    assert_eq!(
        ch.stats().size,
        1,
        "the acknowledged put was lost: {:?}",
        ch.recovery_report()
    );
}

#[test]
fn a_take_acknowledged_while_a_checkpoint_runs_stays_taken_after_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gate = Arc::new(Gate::default());
    let ch = FileChannel::open(config(dir.path(), &gate)).expect("open");
    let mut tx = ch.transaction();
    tx.put(Event::new(b"taken once".to_vec())).expect("put");
    tx.commit().expect("commit");
    let mut tx = ch.transaction();
    assert!(tx.take().expect("take").is_some());
    commit_with_checkpoint_inside(&ch, &gate, tx);
    assert_eq!(ch.stats().size, 0);
    assert_race_hit(dir.path());

    drop(ch); // crash: no close, no newer checkpoint
    let ch = FileChannel::open(config(dir.path(), &gate)).expect("reopen");
    assert_eq!(
        ch.stats().size,
        0,
        "the acknowledged take was undone: {:?}",
        ch.recovery_report()
    );
}
