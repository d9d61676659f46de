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
//! `FaultyFs` holds the commit's `fdatasync` so the checkpoint runs inside the window.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tidegate::io::{FaultyFs, StdFs};
use tidegate::{Event, FileChannel, FileChannelConfig};

fn config(root: &Path, fs: &FaultyFs) -> FileChannelConfig {
    FileChannelConfig::new(root.join("ckpt"), vec![root.join("data")])
        .minimum_required_space(1 << 20)
        .file_system(Arc::new(fs.clone()))
}

/// Commits `tx` in another thread, and runs a checkpoint while the commit's sync is held.
/// Returns once both finished (the commit acknowledged).
fn commit_with_checkpoint_inside(ch: &FileChannel, fs: &FaultyFs, tx: tidegate::Transaction) {
    fs.faults().hold_next_file_sync();
    let committer = std::thread::spawn(move || tx.commit());
    assert!(
        fs.faults().wait_for_held_sync(Duration::from_secs(60)),
        "the commit never reached its sync"
    ); // the Commit record is appended; its effect is not applied
    let checkpointer = {
        let ch = ch.clone();
        std::thread::spawn(move || ch.checkpoint())
    };
    // Let the checkpoint take its snapshot; it then waits for the held sync to finish.
    std::thread::sleep(Duration::from_millis(500));
    fs.faults().release_held_sync();
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
    let fs = FaultyFs::new(Arc::new(StdFs));
    let ch = FileChannel::open(config(dir.path(), &fs)).expect("open");
    let mut tx = ch.transaction();
    tx.put(Event::new(b"acknowledged".to_vec())).expect("put");
    commit_with_checkpoint_inside(&ch, &fs, tx);
    assert_eq!(ch.stats().size, 1);
    assert_race_hit(dir.path());

    drop(ch); // crash: no close, no newer checkpoint
    let ch = FileChannel::open(config(dir.path(), &fs)).expect("reopen");
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
    let fs = FaultyFs::new(Arc::new(StdFs));
    let ch = FileChannel::open(config(dir.path(), &fs)).expect("open");
    let mut tx = ch.transaction();
    tx.put(Event::new(b"taken once".to_vec())).expect("put");
    tx.commit().expect("commit");
    let mut tx = ch.transaction();
    assert!(tx.take().expect("take").is_some());
    commit_with_checkpoint_inside(&ch, &fs, tx);
    assert_eq!(ch.stats().size, 0);
    assert_race_hit(dir.path());

    drop(ch); // crash: no close, no newer checkpoint
    let ch = FileChannel::open(config(dir.path(), &fs)).expect("reopen");
    assert_eq!(
        ch.stats().size,
        0,
        "the acknowledged take was undone: {:?}",
        ch.recovery_report()
    );
}
