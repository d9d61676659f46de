//! Full replays of logs many read chunks long (1 MiB each), so that the scan's read-ahead thread
//! serves most of them: every committed event comes back in order, and damage deep in a sealed
//! segment is found at its exact offset. (Written with the read-ahead; a helper thread that reads
//! a chunk from the wrong offset, here one page further on, fails both.)

mod common;

use std::path::Path;
use std::time::Duration;

use common::{checkpoints, drain, ev, flip};
use tidegate::offline::ChannelDirs;
use tidegate::offline::inspect::dump;
use tidegate::{Error, Event, FileChannel, FileChannelConfig, RecoveryMode};

/// 4 MiB segments (four read chunks each), no checkpoint unless asked.
fn config(root: &Path) -> FileChannelConfig {
    FileChannelConfig::new(root.join("ckpt"), vec![root.join("data")])
        .minimum_required_space(1 << 20)
        .max_segment_size(4 << 20)
        .max_event_size(1 << 20)
        .checkpoint_on_close(false)
        .checkpoint_interval(Duration::from_secs(3600))
}

/// Event `i`: mostly a few hundred bytes, every 97th about 20-60 KiB (larger than the read
/// chunks' overlap, so such records straddle chunk boundaries), every 1000th about 600 KiB
/// (large enough that the scan skips its payload and pauses read-ahead).
fn event(i: u64) -> Event {
    let mut e = ev(i);
    let size = if i % 1000 == 999 {
        600_000 + (i as usize % 7) * 1000
    } else if i.is_multiple_of(97) {
        20_000 + (i as usize * 7919) % 40_000
    } else {
        100 + (i as usize * 31) % 700
    };
    e.body_mut().resize(size, (i % 251) as u8);
    e
}

/// Puts `n` events in transactions of 50, takes (and commits) the first `taken`, and drops the
/// channel without a checkpoint.
fn write_log(cfg: &FileChannelConfig, n: u64, taken: usize) {
    let ch = FileChannel::open(cfg.clone()).expect("open");
    for start in (0..n).step_by(50) {
        let mut tx = ch.transaction();
        for i in start..(start + 50).min(n) {
            tx.put(event(i)).expect("put");
        }
        tx.commit().expect("commit");
    }
    let mut tx = ch.transaction();
    assert_eq!(
        tx.take_batch(taken, Duration::ZERO).expect("take").len(),
        taken
    );
    tx.commit().expect("commit take");
    drop(ch);
}

#[test]
fn a_full_replay_of_many_chunks_restores_every_event_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    let n = 12_000;
    write_log(&cfg, n, 300);
    assert!(checkpoints(&dir.path().join("ckpt")).is_empty());

    let ch = FileChannel::open(cfg).expect("reopen");
    let report = ch.recovery_report();
    assert!(report.full_replay);
    assert!(
        report.bytes_scanned > 16 << 20,
        "{} bytes scanned",
        report.bytes_scanned
    );
    assert!(report.segments_scanned >= 5, "{report:?}");
    assert_eq!(report.torn_tails, 0, "{report:?}");
    let mut got = Vec::new();
    loop {
        let mut tx = ch.transaction();
        let evs = tx.take_batch(500, Duration::ZERO).expect("take");
        if evs.is_empty() {
            break;
        }
        for e in &evs {
            let i = common::id_of(e);
            assert_eq!(e.body(), event(i).body(), "body of event {i}");
            got.push(i);
        }
        tx.commit().expect("commit");
    }
    assert_eq!(got, (300..n).collect::<Vec<_>>());
}

#[test]
fn damage_deep_in_a_sealed_segment_is_found_at_its_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    write_log(&cfg, 12_000, 0);
    // A record header of the first segment past its third read chunk.
    let mut target = None;
    let mut first = None;
    dump(&ChannelDirs::of(&cfg), &mut |r| {
        let first = first.get_or_insert_with(|| r.path.clone());
        if target.is_none() && r.path == *first && r.offset > 3 << 20 {
            target = Some((r.path.clone(), r.offset));
        }
    })
    .expect("dump");
    let (path, offset) = target.expect("a record past 3 MiB in the first segment");
    flip(&path, offset + 20, 0x10); // a bit of its seq: the header CRC fails

    match FileChannel::open(cfg.clone()) {
        Err(Error::Corrupt {
            path: p, offset: o, ..
        }) => {
            assert_eq!(p, path);
            assert_eq!(o, offset);
        }
        other => panic!("expected Corrupt at {offset}, got {other:?}"),
    }
    // In skip mode the one damaged record is skipped and everything else comes back.
    let ch = FileChannel::open(cfg.recovery_mode(RecoveryMode::Skip)).expect("open, skip");
    assert_eq!(ch.recovery_report().corrupt_records_skipped, 1);
    let got = drain(&ch);
    assert_eq!(got.len(), 11_999, "every event but the damaged one");
}
