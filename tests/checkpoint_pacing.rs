//! How checkpoints are written: by the checkpointer thread, at lower CPU priority, in pieces
//! whose writeback starts as each is written, at `checkpoint_write_rate` (docs/configuration.md).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::observed::{FileOp, ObservedFs};
use parking_lot::Mutex;
use tidegate::{Error, FileChannel, FileChannelConfig};

/// What happened to `checkpoint.tmp` files, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    /// A write, with the `nice` value of the thread that made it.
    Write {
        offset: u64,
        len: u64,
        nice: i32,
    },
    Writeback {
        offset: u64,
        len: u64,
    },
    Sync,
}

/// A file system that records the writes (with the writing thread's `nice`), writeback hints
/// and syncs of checkpoint files into `ops`.
fn recording(ops: Arc<Mutex<Vec<Op>>>) -> ObservedFs {
    ObservedFs::new(move |path, op| {
        if path.file_name().is_none_or(|n| n != "checkpoint.tmp") {
            return;
        }
        let op = match op {
            FileOp::Write { offset, len } => Op::Write {
                offset,
                len,
                nice: thread_nice(),
            },
            FileOp::Writeback { offset, len } => Op::Writeback { offset, len },
            FileOp::Sync => Op::Sync,
            FileOp::Read { .. } => return,
        };
        ops.lock().push(op);
    })
}

/// The calling thread's `nice` value (0 where threads have no priority of their own).
fn thread_nice() -> i32 {
    #[cfg(target_os = "linux")]
    {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap_or(0)
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

/// A channel whose checkpoints are paced at the minimum rate, 1 MiB/s, with a checkpoint
/// every second.
fn paced_cfg(root: &Path) -> FileChannelConfig {
    FileChannelConfig::new(root.join("ckpt"), vec![root.join("data")])
        .minimum_required_space(1 << 20)
        .max_segment_size(32 << 20)
        .max_event_size(8 << 10)
        .checkpoint_interval(Duration::from_secs(1))
        .checkpoint_write_rate(Some(1 << 20))
}

fn big_event(i: u64) -> tidegate::Event {
    tidegate::Event::new(vec![b'x'; 64]).with_header("i", i.to_string())
}

#[test]
fn a_checkpoint_is_written_in_pieces_each_handed_to_the_disk_before_the_sync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ops = Arc::new(Mutex::new(Vec::new()));
    let fs = Arc::new(recording(ops.clone()));
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
    let own_nice = thread_nice();
    ch.checkpoint().expect("checkpoint");
    let ops = ops.lock().clone();
    let Some((Op::Sync, writes)) = ops.split_last() else {
        panic!("the checkpoint file was not synced last: {ops:?}");
    };
    assert!(writes.len() >= 6, "expected several pieces: {ops:?}");
    let mut end = 0;
    for pair in writes.chunks(2) {
        let [
            Op::Write { offset, len, nice },
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
        #[cfg(target_os = "linux")]
        assert_eq!(
            *nice,
            (own_nice + 10).min(19),
            "the checkpoint file must be written at a lower CPU priority"
        );
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

/// A channel dropped without `close()` while the checkpointer writes a paced periodic
/// checkpoint: the checkpointer holds the channel's state, so only the drop of the last handle
/// can tell it to stop pacing; otherwise the directory lock stays held until the whole file is
/// written at the configured rate, and reopening the directory fails with `Locked`. (Found by
/// review; it failed before `Background::abandon`.)
#[test]
fn a_channel_dropped_during_a_paced_checkpoint_can_be_reopened_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(paced_cfg(dir.path())).expect("open");
    // 400,000 queued events: a checkpoint of about 1.6 MB, 1.5 s at 1 MiB/s.
    for chunk in 0..400u64 {
        common::put_range(&ch, chunk * 1000..(chunk + 1) * 1000);
    }
    // Wait (no time limit asserted) until a periodic checkpoint is writing its file.
    let tmp = dir.path().join("ckpt").join("checkpoint.tmp");
    while !tmp.exists() {
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(ch);
    match FileChannel::open(paced_cfg(dir.path())) {
        Ok(ch) => {
            assert_eq!(ch.stats().size, 400_000);
            ch.close().expect("close");
        }
        Err(e @ Error::Locked { .. }) => {
            panic!("the dropped channel's checkpointer still holds the directory: {e}")
        }
        Err(e) => panic!("reopen: {e}"),
    }
}

/// `checkpoint_interval` has a floor but no ceiling; `Duration::MAX` (an obvious "never") means
/// no periodic checkpoints. A deadline computed as `Instant::now() + interval` panics on
/// overflow (the checkpointer's panic guard then poisoned the channel): found by review.
#[test]
fn a_very_long_checkpoint_interval_does_not_poison_the_channel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(common::cfg(dir.path()).checkpoint_interval(Duration::MAX))
        .expect("open");
    // Let the checkpointer start (a served request proves it is running, or answers if dead).
    let _ = ch.checkpoint();
    let mut tx = ch.transaction();
    tx.put(common::ev(1)).expect("put");
    tx.commit().expect("commit");
    ch.checkpoint().expect("checkpoint");
    ch.close().expect("close");
}

/// A channel written by an older tidegate (checkpoint format version 1, with a queue out of log
/// order) opens from its checkpoint, not by a full replay.
#[test]
fn a_directory_with_a_version_1_checkpoint_opens_from_it() {
    use tidegate::format::{checkpoint, file_name};
    let dir = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(common::cfg(dir.path())).expect("open");
    for chunk in 0..20u64 {
        common::put_range(&ch, chunk * 50..(chunk + 1) * 50);
    }
    // Take 30 and roll back: they go back to the head (out of log order); take and commit 10.
    let mut tx = ch.transaction();
    assert_eq!(tx.take_batch(30, Duration::ZERO).expect("take").len(), 30);
    tx.rollback().expect("rollback");
    let mut tx = ch.transaction();
    assert_eq!(tx.take_batch(10, Duration::ZERO).expect("take").len(), 10);
    tx.commit().expect("commit");
    ch.close().expect("close");

    let ckpt_dir = dir.path().join("ckpt");
    let generation = std::fs::read_dir(&ckpt_dir)
        .expect("ckpt dir")
        .filter_map(|e| file_name::parse_checkpoint(&e.ok()?.file_name().to_string_lossy()))
        .max()
        .expect("a checkpoint");
    let path = ckpt_dir.join(file_name::checkpoint(generation));
    let c = checkpoint::decode(&std::fs::read(&path).expect("read")).expect("decode");
    assert_eq!(c.queue.len(), 990);
    let v1 = checkpoint::encode_v1(&c);
    assert_eq!(checkpoint::decode(&v1).as_ref(), Ok(&c));
    std::fs::write(&path, &v1).expect("write v1");

    let ch = FileChannel::open(common::cfg(dir.path())).expect("reopen");
    let r = ch.recovery_report();
    assert_eq!(r.checkpoint_generation, Some(generation), "{r:?}");
    assert!(!r.full_replay, "{r:?}");
    assert!(r.checkpoint_fallbacks.is_empty(), "{r:?}");
    assert_eq!(common::drain(&ch), (10..1000).collect::<Vec<_>>());
    ch.close().expect("close");
}

/// What an older tidegate (which reads only checkpoint version 1) does with this version's
/// files, simulated with a version this build does not know: every checkpoint is "damaged", the
/// open falls back to a full replay, which loses nothing queued but, as garbage collection has
/// deleted segments of Take records, delivers taken events again (DESIGN.md G5's exception; the
/// downgrade warning in DESIGN.md §3.3 and docs/operations.md).
#[test]
fn a_checkpoint_version_this_build_cannot_read_falls_back_to_a_full_replay() {
    use tidegate::format::{crc32, file_name};
    let dir = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(common::cfg(dir.path())).expect("open");
    common::put_range(&ch, 0..2000);
    // Hold event 0 in flight so that its segment (with the Puts of 1..) stays.
    let mut held = ch.transaction();
    assert_eq!(held.take_batch(1, Duration::ZERO).expect("take").len(), 1);
    // Take and commit the rest, one at a time: Take records fill later segments.
    loop {
        let mut tx = ch.transaction();
        let n = tx.take_batch(1, Duration::ZERO).expect("take").len();
        tx.commit().expect("commit");
        if n == 0 {
            break;
        }
    }
    held.rollback().expect("rollback");
    common::put_range(&ch, 2000..2010);
    for _ in 0..3 {
        ch.checkpoint().expect("checkpoint");
    }
    assert!(ch.stats().segments_deleted > 0, "{:?}", ch.stats());
    ch.close().expect("close");

    // This build's own reopen: event 0, then 2000..2010.
    let ch = FileChannel::open(common::cfg(dir.path())).expect("reopen");
    let expected: Vec<u64> = std::iter::once(0).chain(2000..2010).collect();
    let mut tx = ch.transaction();
    let ids: Vec<u64> = tx
        .take_batch(5000, Duration::ZERO)
        .expect("take")
        .iter()
        .map(common::id_of)
        .collect();
    tx.rollback().expect("rollback");
    assert_eq!(ids, expected);
    ch.close().expect("close");

    // The "older reader": the version field says something it does not know.
    let ckpt_dir = dir.path().join("ckpt");
    for e in std::fs::read_dir(&ckpt_dir).expect("ckpt dir") {
        let e = e.expect("entry");
        if file_name::parse_checkpoint(&e.file_name().to_string_lossy()).is_none() {
            continue;
        }
        let mut b = std::fs::read(e.path()).expect("read");
        b[8..10].copy_from_slice(&3u16.to_le_bytes());
        let n = b.len() - 4;
        let crc = crc32(&b[..n]);
        b[n..].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(e.path(), b).expect("write");
    }
    let ch = FileChannel::open(common::cfg(dir.path())).expect("reopen as an older reader");
    let r = ch.recovery_report().clone();
    let ids = common::drain(&ch);
    ch.close().expect("close");
    assert!(r.full_replay, "{r:?}");
    assert_eq!(r.checkpoint_fallbacks.len(), 2, "{r:?}");
    // Nothing queued is lost, and the queue keeps its order ...
    let mut rest = ids.iter();
    assert!(
        expected.iter().all(|e| rest.any(|i| i == e)),
        "the queued events are missing or out of order: {:?}..",
        &ids[..ids.len().min(20)]
    );
    // ... but taken events come back.
    assert!(ids.len() > expected.len(), "{} events", ids.len());
}

/// close() racing checkpoint(): the request being served finishes (Ok, at full speed once
/// close() signals stop), a request queued behind it is answered `Closed`, nobody waits
/// forever. (Deleting the drain in `Background::next` makes the queued request hang, which the
/// two-minute watchdog turns into a failure.)
#[test]
fn close_racing_checkpoint_answers_every_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ch =
        FileChannel::open(paced_cfg(dir.path()).checkpoint_interval(Duration::from_secs(3600)))
            .expect("open");
    for chunk in 0..400u64 {
        common::put_range(&ch, chunk * 1000..(chunk + 1) * 1000);
    }
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let served = {
        let (ch, done_tx) = (ch.clone(), done_tx.clone());
        std::thread::spawn(move || done_tx.send(("served", ch.checkpoint())))
    };
    let tmp = dir.path().join("ckpt").join("checkpoint.tmp");
    while !tmp.exists() {
        std::thread::sleep(Duration::from_millis(1));
    }
    let queued = {
        let ch = ch.clone();
        std::thread::spawn(move || done_tx.send(("queued", ch.checkpoint())))
    };
    // Give the second request time to queue behind the first (not asserted on).
    std::thread::sleep(Duration::from_millis(100));
    ch.close().expect("close");
    let mut results = std::collections::HashMap::new();
    for _ in 0..2 {
        let (who, r) = done_rx
            .recv_timeout(Duration::from_secs(120))
            .expect("a checkpoint request was never answered");
        results.insert(who, r);
    }
    served.join().expect("join").expect("send");
    queued.join().expect("join").expect("send");
    assert!(matches!(results["served"], Ok(())), "{results:?}");
    assert!(
        matches!(results["queued"], Err(Error::Closed)),
        "{results:?}"
    );
}

/// The checkpoint file's failed fsync, on the checkpoint writer's thread, still poisons the
/// channel and reaches the caller of `checkpoint()`.
#[test]
fn a_failed_checkpoint_fsync_on_the_checkpointer_poisons_and_is_reported() {
    use std::sync::Arc;
    use tidegate::io::{FaultyFs, StdFs};
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = FaultyFs::new(Arc::new(StdFs));
    let faults = fs.faults().clone();
    let ch = FileChannel::open(common::cfg(dir.path()).file_system(Arc::new(fs))).expect("open");
    common::put_range(&ch, 0..100);
    // Commits under fsync = always: the log is durable, so the first sync the checkpoint does
    // is its own file's.
    faults.fail_syncs_after(0);
    let err = ch
        .checkpoint()
        .expect_err("checkpoint with a failing fsync");
    assert!(matches!(err, Error::Poisoned { .. }), "{err:?}");
    faults.heal();
    assert!(ch.stats().poisoned.is_some());
    assert!(matches!(ch.checkpoint(), Err(Error::Poisoned { .. })));
    let mut tx = ch.transaction();
    assert!(tx.put(common::ev(100)).is_err());
    drop(tx);
    ch.close().expect("close a poisoned channel");
}
