//! Transaction semantics of the file channel (and the memory channel where they are shared).

mod common;

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::{cfg, drain, ev, id_of, put_range};
use tidegate::io::{FaultyFs, StdFs};
use tidegate::{
    Channel, Error, Event, FileChannel, FsyncPolicy, MemoryChannel, MemoryChannelConfig,
};

#[test]
fn committed_events_come_out_in_commit_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(cfg(dir.path())).expect("open");
    put_range(&ch, 0..10);
    put_range(&ch, 10..20);
    assert_eq!(drain(&ch), (0..20).collect::<Vec<_>>());
    ch.close().expect("close");
}

#[test]
fn uncommitted_puts_are_invisible_and_rollback_discards_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(cfg(dir.path())).expect("open");
    let mut tx = ch.transaction();
    tx.put(ev(1)).expect("put");
    let mut reader = ch.transaction();
    assert!(
        reader.take().expect("take").is_none(),
        "uncommitted put was visible"
    );
    reader.commit().expect("commit");
    tx.rollback().expect("rollback");
    {
        let mut dropped = ch.transaction();
        dropped.put(ev(2)).expect("put");
    }
    assert!(drain(&ch).is_empty());
    assert_eq!(ch.stats().size, 0);
    assert_eq!(
        ch.stats().fill_percent,
        0.0,
        "rolled back puts must release capacity"
    );
}

#[test]
fn rolled_back_takes_return_to_the_head_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(cfg(dir.path())).expect("open");
    put_range(&ch, 0..5);
    let mut tx = ch.transaction();
    let first: Vec<u64> = tx
        .take_batch(3, Duration::ZERO)
        .expect("take")
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(first, vec![0, 1, 2]);
    tx.rollback().expect("rollback");
    {
        let mut tx = ch.transaction();
        assert_eq!(tx.take().expect("take").map(|e| id_of(&e)), Some(0));
        // dropped: rolls back
    }
    assert_eq!(drain(&ch), vec![0, 1, 2, 3, 4]);
}

#[test]
fn a_transaction_holds_puts_or_takes_not_both() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(cfg(dir.path())).expect("open");
    put_range(&ch, 0..1);
    let mut tx = ch.transaction();
    tx.put(ev(9)).expect("put");
    assert!(matches!(
        tx.take(),
        Err(Error::MixedTransaction { has: "puts" })
    ));
    tx.commit().expect("still usable");
    let mut tx = ch.transaction();
    assert!(tx.take().expect("take").is_some());
    let err = tx.put(ev(10)).expect_err("put in a take transaction");
    assert!(matches!(
        err.error,
        Error::MixedTransaction { has: "takes" }
    ));
    assert_eq!(id_of(&err.into_event()), 10, "the event is handed back");
    tx.commit().expect("commit");
}

#[test]
fn transaction_capacity_is_enforced_and_the_transaction_stays_usable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(cfg(dir.path()).transaction_capacity(3)).expect("open");
    let mut tx = ch.transaction();
    for i in 0..3 {
        tx.put(ev(i)).expect("put");
    }
    let err = tx.put(ev(3)).expect_err("fourth put");
    assert!(matches!(err.error, Error::TransactionFull { capacity: 3 }));
    tx.commit().expect("commit after the error");
    let mut tx = ch.transaction();
    assert_eq!(
        tx.take_batch(10, Duration::ZERO).expect("take").len(),
        3,
        "take_batch is capped too"
    );
    tx.commit().expect("commit");
}

#[test]
fn oversized_events_are_refused_with_both_sizes_and_nothing_else_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(cfg(dir.path()).max_event_size(1024)).expect("open");
    let mut tx = ch.transaction();
    tx.put(ev(1)).expect("small put");
    let err = tx.put(Event::new(vec![7u8; 2000])).expect_err("too large");
    match &err.error {
        Error::EventTooLarge { size, limit } => {
            assert_eq!(*limit, 1024);
            assert!(*size > 2000);
            let msg = err.error.to_string();
            assert!(
                msg.contains("1024") && msg.contains(&size.to_string()),
                "{msg}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(err.into_event().body().len(), 2000);
    tx.commit().expect("commit");
    assert_eq!(drain(&ch), vec![1]);
}

#[test]
fn a_full_channel_waits_keep_alive_then_hands_the_event_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(
        cfg(dir.path())
            .capacity(3)
            .keep_alive(Duration::from_millis(30)),
    )
    .expect("open");
    put_range(&ch, 0..3);
    let mut tx = ch.transaction();
    let err = tx.put(ev(3)).expect_err("full");
    assert!(
        matches!(err.error, Error::ChannelFull { .. }),
        "{:?}",
        err.error
    );
    assert_eq!(id_of(&err.event), 3);
    drop(tx);
    // Taking without committing does not free capacity; committing does.
    let mut taker = ch.transaction();
    assert!(taker.take().expect("take").is_some());
    let mut tx = ch.transaction();
    assert!(matches!(
        tx.put(ev(3)).map_err(|e| e.error),
        Err(Error::ChannelFull { .. })
    ));
    taker.commit().expect("commit take");
    tx.put(ev(3)).expect("room after the take committed");
    tx.commit().expect("commit");
    assert_eq!(drain(&ch), vec![1, 2, 3]);
}

#[test]
fn a_blocked_put_proceeds_when_a_take_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(
        cfg(dir.path())
            .capacity(1)
            .keep_alive(Duration::from_secs(30)),
    )
    .expect("open");
    put_range(&ch, 0..1);
    let producer = {
        let ch = ch.clone();
        thread::spawn(move || put_range(&ch, 1..2))
    };
    // The producer is blocked until this take commits.
    let mut tx = ch.transaction();
    let got = tx.take_batch(1, Duration::from_secs(30)).expect("take");
    assert_eq!(got.iter().map(id_of).collect::<Vec<_>>(), vec![0]);
    tx.commit().expect("commit");
    producer.join().expect("producer");
    assert_eq!(drain(&ch), vec![1]);
}

#[test]
fn capacity_bytes_limits_by_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(
        cfg(dir.path())
            .capacity_bytes(Some(300))
            .keep_alive(Duration::from_millis(10)),
    )
    .expect("open");
    let mut tx = ch.transaction();
    tx.put(Event::new(vec![0u8; 200])).expect("fits");
    let err = tx
        .put(Event::new(vec![0u8; 200]))
        .expect_err("over the byte capacity");
    assert!(
        matches!(&err.error, Error::ChannelFull { limit, .. } if limit.contains("capacity_bytes"))
    );
    tx.commit().expect("commit");
}

#[test]
fn take_batch_waits_for_the_first_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(cfg(dir.path())).expect("open");
    let producer = {
        let ch = ch.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            put_range(&ch, 0..3);
        })
    };
    let mut tx = ch.transaction();
    let mut got = tx.take_batch(10, Duration::from_secs(30)).expect("take");
    producer.join().expect("producer");
    got.extend(tx.take_batch(10, Duration::ZERO).expect("take rest"));
    assert_eq!(got.iter().map(id_of).collect::<Vec<_>>(), vec![0, 1, 2]);
    tx.commit().expect("commit");
    let mut tx = ch.transaction();
    assert!(
        tx.take_batch(10, Duration::from_millis(5))
            .expect("empty")
            .is_empty()
    );
}

#[test]
fn headers_and_bodies_round_trip_through_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(cfg(dir.path())).expect("open");
    let original = Event::new(vec![0u8, 255, 10, 13])
        .with_header("host", "a")
        .with_header("empty", "")
        .with_header("ünï", "çødé");
    let mut tx = ch.transaction();
    tx.put(original.clone()).expect("put");
    tx.put(Event::new(Vec::new())).expect("empty body");
    tx.commit().expect("commit");
    ch.close().expect("close");
    let ch = FileChannel::open(cfg(dir.path())).expect("reopen");
    let mut tx = ch.transaction();
    assert_eq!(tx.take().expect("take"), Some(original));
    assert_eq!(tx.take().expect("take"), Some(Event::new(Vec::new())));
    tx.commit().expect("commit");
}

#[test]
fn large_transactions_spill_and_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 64 KiB segments: a 4,000-event transaction (~250 KiB) spans several segments and spills
    // repeatedly before it commits.
    let ch = FileChannel::open(cfg(dir.path())).expect("open");
    let mut tx = ch.transaction();
    for i in 0..4000 {
        tx.put(ev(i)).expect("put");
    }
    assert!(
        common::segments(&common::data_dir(dir.path())).len() >= 3,
        "expected the spill to roll segments"
    );
    assert_eq!(
        ch.stats().size,
        0,
        "spilled but uncommitted puts are not queued"
    );
    tx.commit().expect("commit");
    drop(ch); // no close: no final checkpoint
    let ch = FileChannel::open(cfg(dir.path())).expect("reopen");
    assert_eq!(drain(&ch), (0..4000).collect::<Vec<_>>());
}

#[test]
fn a_spilled_transaction_that_rolls_back_never_appears() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(cfg(dir.path())).expect("open");
    let mut tx = ch.transaction();
    for i in 0..2000 {
        tx.put(ev(i)).expect("put");
    }
    ch.checkpoint()
        .expect("checkpoint while a spilled transaction is open");
    tx.rollback().expect("rollback");
    put_range(&ch, 5000..5001);
    drop(ch);
    let ch = FileChannel::open(cfg(dir.path())).expect("reopen");
    assert_eq!(drain(&ch), vec![5000]);
}

#[test]
fn a_spilled_transaction_that_commits_after_a_checkpoint_survives_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(cfg(dir.path())).expect("open");
    put_range(&ch, 0..3);
    let mut tx = ch.transaction();
    for i in 3..1500 {
        tx.put(ev(i)).expect("put");
    }
    ch.checkpoint()
        .expect("checkpoint with spilled records before it");
    tx.commit().expect("commit");
    drop(ch); // crash: the checkpoint predates the commit
    let ch = FileChannel::open(cfg(dir.path())).expect("reopen");
    assert!(ch.recovery_report().checkpoint_generation.is_some());
    assert_eq!(drain(&ch), (0..1500).collect::<Vec<_>>());
}

#[test]
fn concurrent_producers_share_fsyncs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(cfg(dir.path()).max_segment_size(1 << 20)).expect("open");
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let ch = ch.clone();
            thread::spawn(move || {
                for b in 0..50u64 {
                    let base = t * 1_000_000 + b * 10;
                    put_range(&ch, base..base + 10);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("producer");
    }
    let stats = ch.stats();
    assert_eq!(stats.put_successes, 8 * 50 * 10);
    assert_eq!(stats.commits, 400);
    // Each commit is durable, but syncs are shared: never more syncs than commits.
    assert!(
        stats.fsyncs <= stats.commits,
        "fsyncs {} > commits {}",
        stats.fsyncs,
        stats.commits
    );
    let mut got = drain(&ch);
    // Per producer, FIFO.
    for t in 0..8u64 {
        let mine: Vec<u64> = got.iter().copied().filter(|i| i / 1_000_000 == t).collect();
        assert_eq!(
            mine,
            (0..500).map(|i| t * 1_000_000 + i).collect::<Vec<_>>()
        );
    }
    got.sort_unstable();
    got.dedup();
    assert_eq!(got.len(), 4000);
}

#[test]
fn events_spread_over_several_data_dirs_replay_in_commit_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let config = || {
        tidegate::FileChannelConfig::new(
            root.join("ckpt"),
            vec![root.join("d1"), root.join("d2"), root.join("d3")],
        )
        .minimum_required_space(1 << 20)
        .max_segment_size(64 << 10)
        .max_event_size(8 << 10)
    };
    let ch = FileChannel::open(config()).expect("open");
    for b in 0..30 {
        put_range(&ch, b * 10..b * 10 + 10);
    }
    let mut tx = ch.transaction();
    assert_eq!(tx.take_batch(25, Duration::ZERO).expect("take").len(), 25);
    tx.commit().expect("commit");
    for d in ["d1", "d2", "d3"] {
        assert!(!common::segments(&root.join(d)).is_empty(), "{d} unused");
    }
    drop(ch);
    let ch = FileChannel::open(config()).expect("reopen");
    assert!(ch.recovery_report().full_replay);
    assert_eq!(drain(&ch), (25..300).collect::<Vec<_>>());
}

#[test]
fn the_second_open_of_the_same_directories_fails_naming_the_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(cfg(dir.path())).expect("open");
    let err = FileChannel::open(cfg(dir.path())).expect_err("second open");
    assert!(
        matches!(&err, Error::Locked { dir: d } if d.ends_with("ckpt")),
        "{err:?}"
    );
    assert!(err.to_string().contains("ckpt"));
    ch.close().expect("close");
    FileChannel::open(cfg(dir.path()))
        .expect("open after close")
        .close()
        .expect("close");
}

#[test]
fn below_the_free_space_floor_puts_fail_but_the_channel_drains() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = FaultyFs::new(Arc::new(StdFs));
    let faults = fs.faults().clone();
    let ch = FileChannel::open(
        cfg(dir.path())
            .minimum_required_space(10 << 20)
            .file_system(Arc::new(fs)),
    )
    .expect("open");
    put_range(&ch, 0..5);
    faults.set_free_space(Some(5 << 20));
    let mut tx = ch.transaction();
    let err = tx.put(ev(5)).err();
    let commit_err = match err {
        Some(e) => e.error,
        None => tx.commit().expect_err("commit below the floor"),
    };
    assert!(
        matches!(&commit_err, Error::InsufficientSpace { available, required, .. } if *available == 5 << 20 && *required == 10 << 20),
        "{commit_err:?}"
    );
    // Takes, their commits, rollbacks and checkpoints still work.
    let mut tx = ch.transaction();
    assert_eq!(tx.take().expect("take").map(|e| id_of(&e)), Some(0));
    tx.rollback().expect("rollback");
    assert_eq!(drain(&ch), vec![0, 1, 2, 3, 4]);
    ch.checkpoint().expect("checkpoint below the floor");
    faults.set_free_space(None);
    put_range(&ch, 6..7);
    assert_eq!(drain(&ch), vec![6]);
}

/// The free-space check caches its reading (DESIGN.md §9.2), but the channel's own appends
/// since the reading count as used space: after another process takes the space unseen, the
/// channel accepts at most half of the room above the floor that its last reading showed, then
/// reads the figure again and refuses puts.
#[test]
fn a_cached_free_space_reading_never_hides_more_than_half_the_headroom() {
    cached_free_space_hides_at_most_half_the_headroom(1);
}

/// Each data directory keeps its own reading; on one file system their budgets must add up to
/// no more than half the headroom (found in review: each had half to itself).
#[test]
fn data_dirs_on_one_file_system_share_the_free_space_budget() {
    cached_free_space_hides_at_most_half_the_headroom(3);
}

fn cached_free_space_hides_at_most_half_the_headroom(data_dirs: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = FaultyFs::new(Arc::new(StdFs));
    let faults = fs.faults().clone();
    let floor: u64 = 10 << 20;
    let headroom: u64 = 1 << 20;
    let dirs: Vec<_> = (0..data_dirs)
        .map(|i| dir.path().join(format!("data{i}")))
        .collect();
    let ch = FileChannel::open(
        tidegate::FileChannelConfig::new(dir.path().join("ckpt"), dirs)
            .max_event_size(8 << 10)
            .minimum_required_space(floor)
            .max_segment_size(1 << 20)
            .fsync(FsyncPolicy::Never)
            .file_system(Arc::new(fs)),
    )
    .expect("open");
    faults.set_free_space(Some(floor + headroom));
    let body = vec![7u8; 4 << 10];
    let commit = |ch: &FileChannel| -> tidegate::Result<()> {
        let mut tx = ch.transaction();
        for _ in 0..3 {
            tx.put(Event::new(body.clone())).map_err(|e| e.error)?;
        }
        tx.commit()
    };
    // Commits go to the directories in turn: one each, so that every one holds a reading.
    for _ in 0..data_dirs {
        commit(&ch).expect("a commit above the floor reads the figure");
    }
    // Another process takes the space; nothing tells the channel.
    faults.set_free_space_quietly(Some(floor - 1));
    let mut accepted = 0u64;
    let refused = (0..400).find_map(|_| match commit(&ch) {
        Ok(()) => {
            accepted += 3 * body.len() as u64;
            None
        }
        Err(e) => Some(e),
    });
    let err = refused.expect("the lost space is noticed");
    assert!(
        matches!(&err, Error::InsufficientSpace { available, .. } if *available == floor - 1),
        "{err:?}"
    );
    assert!(
        accepted <= headroom / 2,
        "{accepted} bytes of events accepted after the space was gone (headroom {headroom})"
    );
    // Later puts are refused at once; takes still drain what was committed.
    let mut tx = ch.transaction();
    assert!(matches!(
        tx.put(ev(0)).map_err(|e| e.error),
        Err(Error::InsufficientSpace { .. })
    ));
    drop(tx);
    let mut tx = ch.transaction();
    assert!(!tx.take_batch(10, Duration::ZERO).expect("take").is_empty());
    tx.commit().expect("take commit below the floor");
}

#[test]
fn a_failed_fsync_poisons_the_channel_until_reopened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = FaultyFs::new(Arc::new(StdFs));
    let faults = fs.faults().clone();
    let ch = FileChannel::open(cfg(dir.path()).file_system(Arc::new(fs))).expect("open");
    put_range(&ch, 0..3);
    faults.fail_syncs_after(0);
    let mut tx = ch.transaction();
    tx.put(ev(3)).expect("buffered put");
    let err = tx.commit().expect_err("commit with a failing fsync");
    assert!(matches!(err, Error::Poisoned { .. }), "{err:?}");
    faults.heal();
    // Stays poisoned: no retry is trusted.
    let mut tx = ch.transaction();
    assert!(matches!(
        tx.put(ev(4)).map_err(|e| e.error),
        Err(Error::Poisoned { .. })
    ));
    assert!(matches!(
        tx.take(),
        Err(Error::MixedTransaction { .. }) | Err(Error::Poisoned { .. })
    ));
    assert!(matches!(ch.checkpoint(), Err(Error::Poisoned { .. })));
    assert!(ch.stats().poisoned.is_some());
    ch.close().expect("close a poisoned channel");
    drop(ch);
    let ch = FileChannel::open(cfg(dir.path())).expect("reopen recovers");
    let got = drain(&ch);
    assert_eq!(&got[..3], &[0, 1, 2], "acknowledged events survive");
    assert!(got.len() <= 4, "{got:?}");
}

#[test]
fn a_failed_write_poisons_the_channel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = FaultyFs::new(Arc::new(StdFs));
    let faults = fs.faults().clone();
    let ch = FileChannel::open(cfg(dir.path()).file_system(Arc::new(fs))).expect("open");
    put_range(&ch, 0..2);
    faults.fail_writes_after(0);
    let mut tx = ch.transaction();
    tx.put(ev(2)).expect("buffered");
    assert!(matches!(tx.commit(), Err(Error::Poisoned { .. })));
    faults.heal();
    assert!(matches!(
        ch.transaction().take(),
        Err(Error::Poisoned { .. })
    ));
    drop(ch);
    let ch = FileChannel::open(cfg(dir.path())).expect("reopen");
    assert_eq!(drain(&ch), vec![0, 1]);
}

#[test]
fn a_failed_checkpoint_rename_is_an_error_not_a_loss() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = FaultyFs::new(Arc::new(StdFs));
    let faults = fs.faults().clone();
    let ch = FileChannel::open(cfg(dir.path()).file_system(Arc::new(fs))).expect("open");
    put_range(&ch, 0..4);
    faults.set_fail_rename(true);
    assert!(matches!(
        ch.checkpoint(),
        Err(Error::Io {
            op: "renaming checkpoint",
            ..
        })
    ));
    assert_eq!(ch.stats().checkpoint_write_errors, 1);
    faults.set_fail_rename(false);
    put_range(&ch, 4..6);
    drop(ch);
    let ch = FileChannel::open(cfg(dir.path())).expect("reopen");
    assert_eq!(drain(&ch), (0..6).collect::<Vec<_>>());
}

#[test]
fn operations_after_close_fail_with_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(cfg(dir.path())).expect("open");
    ch.close().expect("close");
    ch.close().expect("second close is harmless");
    assert!(matches!(
        ch.transaction().put(ev(1)).map_err(|e| e.error),
        Err(Error::Closed)
    ));
    assert!(matches!(ch.checkpoint(), Err(Error::Closed)));
    assert!(!ch.stats().open);
}

#[test]
fn bad_config_names_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: Vec<(tidegate::FileChannelConfig, &str)> = vec![
        (cfg(dir.path()).capacity(0), "capacity"),
        (
            cfg(dir.path()).minimum_required_space(1000),
            "minimum_required_space",
        ),
        (cfg(dir.path()).max_segment_size(100), "max_segment_size"),
        (cfg(dir.path()).max_event_size(1 << 20), "max_segment_size"),
        (
            cfg(dir.path()).checkpoint_interval(Duration::from_millis(10)),
            "checkpoint_interval",
        ),
        (
            cfg(dir.path()).fsync(FsyncPolicy::Interval(Duration::ZERO)),
            "fsync",
        ),
        (
            cfg(dir.path()).transaction_capacity(0),
            "transaction_capacity",
        ),
    ];
    for (c, key) in cases {
        let err = FileChannel::open(c).expect_err(key);
        assert!(
            matches!(&err, Error::Config { key: k, .. } if *k == key),
            "{key}: {err:?}"
        );
    }
}

#[test]
fn garbage_collection_keeps_disk_use_bounded_by_the_backlog() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(cfg(dir.path())).expect("open");
    let data = common::data_dir(dir.path());
    let mut max_segments = 0;
    for round in 0..40u64 {
        put_range(&ch, round * 100..round * 100 + 100);
        assert_eq!(
            drain(&ch),
            (round * 100..round * 100 + 100).collect::<Vec<_>>()
        );
        ch.checkpoint().expect("checkpoint");
        max_segments = max_segments.max(common::segments(&data).len());
    }
    // 4,000 events of ~60 bytes = ~400 KiB written in 64 KiB segments; only a few may remain.
    assert!(ch.stats().segments_deleted > 3, "{:?}", ch.stats());
    assert!(
        common::segments(&data).len() <= 5,
        "{:?}",
        common::segments(&data)
    );
    assert!(max_segments <= 6, "peak {max_segments}");
}

#[test]
fn one_old_event_does_not_pin_newer_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(cfg(dir.path())).expect("open");
    let data = common::data_dir(dir.path());
    put_range(&ch, 0..1); // stays queued, pins only its own segment
    let mut taker = ch.transaction();
    assert!(taker.take().expect("take").is_some());
    for round in 1..30u64 {
        put_range(&ch, round * 100..round * 100 + 100);
        let mut tx = ch.transaction();
        assert_eq!(tx.take_batch(100, Duration::ZERO).expect("take").len(), 100);
        tx.commit().expect("commit");
        ch.checkpoint().expect("checkpoint");
    }
    taker.rollback().expect("rollback");
    assert!(
        common::segments(&data).len() <= 6,
        "{:?}",
        common::segments(&data)
    );
    assert_eq!(drain(&ch), vec![0]);
}

#[test]
fn the_memory_channel_has_the_same_transaction_semantics() {
    let ch = MemoryChannel::new(MemoryChannelConfig {
        capacity: 3,
        keep_alive: Duration::from_millis(10),
        ..Default::default()
    });
    let c: &dyn Channel = &ch;
    let mut tx = c.transaction();
    for i in 0..3 {
        tx.put(ev(i)).expect("put");
    }
    assert!(matches!(
        tx.put(ev(3)).map_err(|e| e.error),
        Err(Error::ChannelFull { .. })
    ));
    tx.commit().expect("commit");
    let mut tx = c.transaction();
    assert_eq!(
        tx.take_batch(2, Duration::ZERO)
            .expect("take")
            .iter()
            .map(id_of)
            .collect::<Vec<_>>(),
        vec![0, 1]
    );
    drop(tx);
    let mut tx = c.transaction();
    assert!(matches!(
        tx.put(ev(5)).map_err(|e| e.error),
        Err(Error::ChannelFull { .. })
    ));
    drop(tx);
    let mut tx = c.transaction();
    let all: Vec<u64> = tx
        .take_batch(10, Duration::ZERO)
        .expect("take")
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(all, vec![0, 1, 2]);
    tx.commit().expect("commit");
    assert_eq!(c.stats().size, 0);
}

#[test]
fn handles_are_send_sync_clone() {
    fn assert_send_sync_clone<T: Send + Sync + Clone>() {}
    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>() {}
    assert_send_sync_clone::<FileChannel>();
    assert_send_sync_clone::<MemoryChannel>();
    assert_send::<tidegate::Transaction>();
    assert_send_sync::<Error>();
}

/// Polls `cond` for up to a minute (a liveness bound, not a speed assertion).
fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..6000 {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn interval_fsync_commits_without_syncing_and_a_background_thread_syncs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = FaultyFs::new(Arc::new(StdFs));
    let faults = fs.faults().clone();
    let ch = FileChannel::open(
        cfg(dir.path())
            .fsync(FsyncPolicy::Interval(Duration::from_millis(20)))
            .file_system(Arc::new(fs)),
    )
    .expect("open");
    // Make every sync fail: a commit that does not sync still succeeds...
    faults.fail_syncs_after(0);
    put_range(&ch, 0..3);
    assert!(
        ch.stats().poisoned.is_none(),
        "commit must not sync under interval"
    );
    // ...and the background sync finds the failure and poisons the channel.
    assert!(
        eventually(|| ch.stats().poisoned.is_some()),
        "the interval sync never ran"
    );
    assert!(matches!(
        ch.transaction().put(ev(9)).map_err(|e| e.error),
        Err(Error::Poisoned { .. })
    ));
}

#[test]
fn never_fsync_commits_without_syncing_but_checkpoints_sync_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = FaultyFs::new(Arc::new(StdFs));
    let faults = fs.faults().clone();
    let ch = FileChannel::open(
        cfg(dir.path())
            .fsync(FsyncPolicy::Never)
            .file_system(Arc::new(fs)),
    )
    .expect("open");
    let before = faults.syncs();
    put_range(&ch, 0..3);
    let mut tx = ch.transaction();
    assert!(tx.take().expect("take").is_some());
    tx.commit().expect("commit");
    assert_eq!(faults.syncs(), before, "no sync on commit under never");
    assert_eq!(ch.stats().fsyncs, 0);
    ch.checkpoint().expect("checkpoint");
    assert!(
        ch.stats().fsyncs >= 1,
        "a checkpoint syncs the log it covers"
    );
    drop(ch);
    let ch = FileChannel::open(cfg(dir.path())).expect("reopen");
    assert_eq!(drain(&ch), vec![1, 2]);
}

#[test]
fn always_fsync_syncs_before_commit_returns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = FaultyFs::new(Arc::new(StdFs));
    let faults = fs.faults().clone();
    let ch = FileChannel::open(cfg(dir.path()).file_system(Arc::new(fs))).expect("open");
    let before = faults.syncs();
    put_range(&ch, 0..3);
    assert_eq!(
        faults.syncs(),
        before + 1,
        "exactly one fdatasync for one commit"
    );
    let mut tx = ch.transaction();
    assert!(tx.take().expect("take").is_some());
    tx.commit().expect("commit");
    assert_eq!(faults.syncs(), before + 2, "take commits are durable too");
}

#[test]
fn large_events_round_trip_and_survive_replay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = || {
        tidegate::FileChannelConfig::new(dir.path().join("ckpt"), vec![dir.path().join("data")])
            .minimum_required_space(1 << 20)
            .max_segment_size(16 << 20)
            .max_event_size(6 << 20)
    };
    let big: Vec<u8> = (0..(5u32 << 20)).map(|i| (i % 251) as u8).collect();
    let ch = FileChannel::open(config()).expect("open");
    let mut tx = ch.transaction();
    tx.put(Event::new(big.clone()).with_header("k", "v"))
        .expect("put 5 MiB");
    tx.put(Event::new(big.clone())).expect("put another 5 MiB");
    tx.put(Event::new(b"small".to_vec())).expect("put small");
    tx.commit().expect("commit");
    drop(ch);
    let ch = FileChannel::open(config()).expect("reopen");
    let mut tx = ch.transaction();
    let got = tx.take_batch(10, Duration::ZERO).expect("take");
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].body(), &big[..]);
    assert_eq!(got[0].headers().get("k").map(String::as_str), Some("v"));
    assert_eq!(got[1].body(), &big[..]);
    assert_eq!(got[2].body(), b"small");
    tx.commit().expect("commit");
}

#[test]
fn a_full_disk_during_a_checkpoint_is_an_error_and_the_channel_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = FaultyFs::new(Arc::new(StdFs));
    let faults = fs.faults().clone();
    let ch = FileChannel::open(cfg(dir.path()).file_system(Arc::new(fs))).expect("open");
    put_range(&ch, 0..4);
    faults.set_fail_create(true); // ENOSPC creating checkpoint.tmp
    let err = ch
        .checkpoint()
        .expect_err("no room for the checkpoint file");
    assert!(
        matches!(&err, Error::Io { op: "creating checkpoint", source, .. } if source.raw_os_error() == Some(28)),
        "{err:?}"
    );
    assert!(
        ch.stats().poisoned.is_none(),
        "a failed checkpoint write does not poison"
    );
    assert_eq!(ch.stats().checkpoint_write_errors, 1);
    let mut tx = ch.transaction();
    assert_eq!(
        tx.take().expect("takes still work").map(|e| id_of(&e)),
        Some(0)
    );
    tx.commit().expect("take commits still work");
    faults.heal();
    drop(ch);
    let ch = FileChannel::open(cfg(dir.path())).expect("reopen");
    assert_eq!(drain(&ch), vec![1, 2, 3]);
}

/// Collected segment files kept for reuse (`segment-N.log.free`) hold disk space: below the
/// free-space floor the channel deletes them before refusing a put, and collects segments by
/// deleting them until the space is back (DESIGN.md §4.6, §9.2).
#[test]
fn below_the_free_space_floor_the_files_kept_for_reuse_are_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = common::data_dir(dir.path());
    let fs = FaultyFs::new(Arc::new(StdFs));
    let faults = fs.faults().clone();
    let ch = FileChannel::open(
        cfg(dir.path())
            .minimum_required_space(10 << 20)
            .recycle_segments(2)
            .file_system(Arc::new(fs)),
    )
    .expect("open");
    let free_files = || {
        std::fs::read_dir(&data)
            .expect("read data dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".log.free"))
            .count()
    };
    let big = |i: u64| Event::new(vec![b'x'; 2000]).with_header("i", i.to_string());
    // Rounds of about two segments of events, taken and checkpointed: segments get collected.
    let mut next = 0;
    let mut round = |ch: &FileChannel| -> Result<(), Error> {
        let mut tx = ch.transaction();
        for _ in 0..60 {
            tx.put(big(next)).map_err(|e| e.error)?;
            next += 1;
        }
        tx.commit()?;
        let got = drain(ch);
        assert_eq!(got.len(), 60, "every event of the round comes back");
        ch.checkpoint()?;
        Ok(())
    };
    for _ in 0..4 {
        round(&ch).expect("a round above the floor");
    }
    assert!(free_files() > 0, "collected segments are kept for reuse");
    assert!(free_files() <= 2, "at most recycle_segments are kept");

    faults.set_free_space(Some(5 << 20));
    let err = round(&ch).expect_err("a put below the floor");
    assert!(
        matches!(&err, Error::InsufficientSpace { available, .. } if *available == 5 << 20),
        "{err:?}"
    );
    assert_eq!(
        free_files(),
        0,
        "below the floor the kept files are deleted"
    );
    // Collection below the floor deletes: the queue is empty; a checkpoint collects what is left.
    assert_eq!(drain(&ch), Vec::<u64>::new());
    ch.checkpoint().expect("checkpoint below the floor");
    assert_eq!(free_files(), 0, "nothing is kept while space is low");

    faults.set_free_space(None);
    for _ in 0..4 {
        round(&ch).expect("a round once space is back");
    }
    assert!(
        free_files() > 0,
        "with space back, collected segments are kept again"
    );
    ch.close().expect("close");
}
