//! Reproduces a leak: a put transaction that spilled records to the log and whose commit then
//! fails the free-space check stays registered in `open_spills` for good, so every later
//! checkpoint's `scan_start` stays at its first record and garbage collection never deletes a
//! segment from there on (and replay always rereads the log from there).

use std::sync::Arc;
use std::time::Duration;

use tidegate::io::{FaultyFs, StdFs};
use tidegate::{Event, FileChannel, FileChannelConfig};

fn segments(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .expect("read data dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .count()
}

#[test]
fn a_spilled_transaction_whose_commit_failed_does_not_pin_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = FaultyFs::new(Arc::new(StdFs));
    let data = dir.path().join("data");
    let cfg = FileChannelConfig::new(dir.path().join("ckpt"), vec![data.clone()])
        .minimum_required_space(1 << 20)
        .max_segment_size(4096)
        .max_event_size(1024)
        .file_system(Arc::new(fs.clone()));
    let ch = FileChannel::open(cfg).expect("open");

    // Spill: a transaction larger than a quarter of a segment writes its records early.
    let mut tx = ch.transaction();
    for i in 0..8 {
        tx.put(Event::new(vec![b'a' + i; 300])).expect("put");
    }
    fs.faults().set_free_space(Some(0));
    let err = tx.commit().expect_err("commit below the free-space floor");
    assert_eq!(err.error_code(), "insufficient_space", "{err}");
    fs.faults().heal();

    // A steady put/take workload with checkpoints: disk use should follow the (empty) backlog.
    for round in 0..40u8 {
        let mut tx = ch.transaction();
        for _ in 0..10 {
            tx.put(Event::new(vec![round; 200])).expect("put");
        }
        tx.commit().expect("commit");
        let mut tx = ch.transaction();
        assert_eq!(tx.take_batch(10, Duration::ZERO).expect("take").len(), 10);
        tx.commit().expect("commit");
        ch.checkpoint().expect("checkpoint");
    }
    ch.checkpoint().expect("checkpoint");
    assert_eq!(ch.stats().size, 0);
    let n = segments(&data);
    assert!(
        n <= 4,
        "{n} segments left with the channel empty; segments deleted: {}",
        ch.stats().segments_deleted
    );
}
