//! Injected faults the other suites do not cover: short writes (completed, and cut off by a full
//! disk at every byte of a commit's batch), and a full disk when a commit needs a new segment.
//! (Failing writes, fsyncs and renames, ENOSPC while writing a checkpoint and the free-space
//! floor are in tests/channel.rs.)

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{cfg, drain, ev, id_of, put_range};
use tidegate::format::record::{HEADER_LEN, put_payload_len};
use tidegate::io::{FaultyFs, ShortWrite, StdFs};
use tidegate::{Error, FileChannel};

fn faulty(root: &std::path::Path) -> (FileChannel, FaultyFs) {
    let fs = FaultyFs::new(Arc::new(StdFs));
    let ch = FileChannel::open(cfg(root).file_system(Arc::new(fs.clone()))).expect("open");
    (ch, fs)
}

#[test]
fn a_short_write_that_completes_is_an_ordinary_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ch, fs) = faulty(dir.path());
    put_range(&ch, 0..3);
    fs.faults().short_write_next(ShortWrite::ThenRest(7));
    put_range(&ch, 3..6);
    assert!(ch.stats().poisoned.is_none());
    drop(ch);
    let ch = FileChannel::open(cfg(dir.path())).expect("reopen");
    assert_eq!(ch.recovery_report().torn_tails, 0);
    assert_eq!(drain(&ch), (0..6).collect::<Vec<_>>());
}

#[test]
fn a_write_cut_short_by_a_full_disk_at_any_byte_poisons_and_loses_nothing_acknowledged() {
    // The batch of the failing commit: two Put records and a Commit record.
    let batch_len = (3..5)
        .map(|i| HEADER_LEN as u64 + put_payload_len(&ev(i)))
        .sum::<u64>()
        + HEADER_LEN as u64
        + 4;
    let cuts =
        (0..batch_len as usize).filter(|k| *k < 40 || k % 5 == 0 || *k + 8 >= batch_len as usize);
    for keep in cuts {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ch, fs) = faulty(dir.path());
        put_range(&ch, 0..3);
        fs.faults().short_write_next(ShortWrite::ThenNoSpace(keep));
        let mut tx = ch.transaction();
        tx.put(ev(3)).expect("buffered");
        tx.put(ev(4)).expect("buffered");
        let err = tx.commit().expect_err("a commit whose write failed");
        assert!(
            matches!(&err, Error::Poisoned { cause } if cause.contains("No space left")),
            "keep {keep}: {err:?}"
        );
        fs.faults().heal();
        assert!(
            matches!(ch.transaction().take(), Err(Error::Poisoned { .. })),
            "keep {keep}: stays poisoned"
        );
        drop(ch);
        let ch = FileChannel::open(cfg(dir.path())).expect("reopen");
        let r = ch.recovery_report().clone();
        let got = drain(&ch);
        // The Commit record's count (2) ends in three zero bytes, which the preallocated
        // segment holds already: a cut after its last non-zero byte wrote the whole commit,
        // which may then appear (the commit never returned Ok: either outcome is allowed).
        if keep < batch_len as usize - 3 {
            assert_eq!(got, vec![0, 1, 2], "keep {keep}: {r:?}");
            // Whatever part of the batch reached the file is a torn tail, zeroed at open (a
            // cut at a record boundary leaves whole records of a transaction that never
            // committed).
            assert!(r.torn_tails <= 1, "keep {keep}: {r:?}");
            assert_eq!(
                r.uncommitted_transactions_discarded > 0 || r.torn_tails == 1,
                keep > 0,
                "keep {keep}: {r:?}"
            );
        } else {
            assert!(
                got == vec![0, 1, 2] || got == vec![0, 1, 2, 3, 4],
                "keep {keep}: {got:?}"
            );
        }
    }
}

/// A channel with 4 KiB segments whose active segment is nearly full, with file creation
/// failing (ENOSPC) from before the spare was due: the next roll cannot create a segment.
fn nearly_full_segment(root: &std::path::Path) -> (FileChannel, FaultyFs, u64) {
    let fs = FaultyFs::new(Arc::new(StdFs));
    let ch = FileChannel::open(
        cfg(root)
            .max_segment_size(4096)
            .max_event_size(1024)
            .file_system(Arc::new(fs.clone())),
    )
    .expect("open");
    fs.faults().set_fail_create(true);
    // Each put commit is one ~60-byte Put and a 36-byte Commit: stop once the next one would
    // not fit, leaving less room than a take commit needs.
    let mut n = 0;
    loop {
        let mut tx = ch.transaction();
        tx.put(ev(n)).expect("put");
        match tx.commit() {
            Ok(()) => n += 1,
            Err(e) => {
                assert!(
                    matches!(&e, Error::Io { op: "creating segment", source, .. } if source.raw_os_error() == Some(28)),
                    "a put commit that needs a new segment on a full disk: {e:?}"
                );
                break;
            }
        }
        assert!(n < 100, "the segment never filled");
    }
    assert!(
        ch.stats().poisoned.is_none(),
        "ENOSPC creating a segment does not poison"
    );
    (ch, fs, n)
}

#[test]
fn a_full_disk_when_a_take_commit_needs_a_new_segment_fails_that_commit_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ch, fs, n) = nearly_full_segment(dir.path());
    // A take of many events needs more room than is left.
    let mut tx = ch.transaction();
    let taken: Vec<u64> = tx
        .take_batch(n as usize, Duration::ZERO)
        .expect("takes are served")
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(taken, (0..n).collect::<Vec<_>>());
    let err = tx.commit().expect_err("no room for the Take records");
    assert!(
        matches!(&err, Error::Io { op: "creating segment", source, .. } if source.raw_os_error() == Some(28)),
        "{err:?}"
    );
    assert!(ch.stats().poisoned.is_none(), "{:?}", ch.stats().poisoned);
    // The events went back to the head, in order; takes go on being served.
    let mut tx = ch.transaction();
    assert_eq!(
        tx.take_batch(2, Duration::ZERO)
            .expect("take")
            .iter()
            .map(id_of)
            .collect::<Vec<_>>(),
        vec![0, 1]
    );
    tx.rollback().expect("rollback");
    // A checkpoint goes on failing cleanly too (no room for its file), without poisoning.
    assert!(ch.checkpoint().is_err());
    assert!(ch.stats().poisoned.is_none());
    fs.faults().heal();
    let mut tx = ch.transaction();
    assert_eq!(tx.take_batch(3, Duration::ZERO).expect("take").len(), 3);
    tx.commit().expect("a take commit once space returns");
    drop(ch);
    let ch = FileChannel::open(cfg(dir.path()).max_segment_size(4096).max_event_size(1024))
        .expect("reopen");
    assert_eq!(
        drain(&ch),
        (3..n).collect::<Vec<_>>(),
        "nothing committed lost"
    );
}

/// An encrypted put transaction whose spill cannot roll (ENOSPC creating the next segment): the
/// put fails without poisoning and the transaction stays open. Its buffered records must not
/// have been changed by that failed append (they were encrypted in place before the roll was
/// tried, and a later commit encrypted them a second time: every event then failed its tag at
/// take, after the commit had been acknowledged).
#[test]
fn an_encrypted_spill_that_cannot_roll_leaves_its_records_as_they_were() {
    use tidegate::at_rest::{EncryptionConfig, generate_key_file};
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let key = root.join("k1.key");
    generate_key_file(&key).expect("key file");
    let base = cfg(root)
        .max_segment_size(4096)
        .max_event_size(1024)
        .encryption(EncryptionConfig::new(1).key(1, &key));
    let fs = FaultyFs::new(Arc::new(StdFs));
    let ch = FileChannel::open(base.clone().file_system(Arc::new(fs.clone()))).expect("open");
    fs.faults().set_fail_create(true);
    let event = |i: u64| {
        let mut e = ev(i);
        e.body_mut().resize(300, b'a' + (i % 26) as u8);
        e
    };
    let mut tx = ch.transaction();
    let mut accepted = Vec::new();
    for i in 0..100 {
        match tx.put(event(i)) {
            Ok(()) => accepted.push(i),
            Err(e) => {
                assert!(
                    matches!(
                        &e.error,
                        Error::Io {
                            op: "creating segment",
                            ..
                        }
                    ),
                    "a spill that needs a new segment on a full disk: {e:?}"
                );
                break;
            }
        }
    }
    assert!(accepted.len() < 100, "no spill ever needed a new segment");
    assert!(ch.stats().poisoned.is_none(), "{:?}", ch.stats().poisoned);
    fs.faults().heal();
    let committed = tx.commit().is_ok();
    drop(ch);
    let ch = FileChannel::open(base).expect("reopen");
    let mut got = Vec::new();
    loop {
        let mut tx = ch.transaction();
        let evs = tx
            .take_batch(100, Duration::ZERO)
            .expect("every committed event reads back");
        if evs.is_empty() {
            break;
        }
        for e in &evs {
            assert_eq!(e.body(), event(id_of(e)).body());
            got.push(id_of(e));
        }
        tx.commit().expect("commit take");
    }
    let expected = if committed { accepted } else { Vec::new() };
    assert_eq!(got, expected, "committed: {committed}");
}

/// After a reopen with a larger `max_segment_size`, appends continue in the newest segment, an
/// empty one of the old, smaller size. A transaction that does not fit it but fits a segment of
/// the new size rolls before writing anything, so a full disk fails it cleanly (it used to write
/// the part that fit, then fail the roll and poison the channel).
#[test]
fn a_batch_too_large_for_an_empty_older_segment_rolls_before_writing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let small = cfg(root).max_segment_size(4096).max_event_size(1024);
    {
        let ch = FileChannel::open(small.clone()).expect("open");
        // Fill segments until the newest one is a fresh, empty 4 KiB segment.
        let mut i = 0;
        loop {
            put_range(&ch, i..i + 1);
            i += 1;
            let segs = common::segments(&common::data_dir(root));
            let newest = segs.last().expect("a segment");
            let bytes = std::fs::read(newest).expect("read");
            if segs.len() > 1 && bytes[64..].iter().all(|b| *b == 0) {
                break;
            }
            assert!(i < 500, "no empty newest segment");
        }
        ch.close().expect("close");
    }
    let fs = FaultyFs::new(Arc::new(StdFs));
    let large = cfg(root)
        .max_segment_size(64 << 10)
        .max_event_size(1024)
        .file_system(Arc::new(fs.clone()));
    let ch = FileChannel::open(large).expect("reopen with larger segments");
    fs.faults().set_fail_create(true);
    let mut tx = ch.transaction();
    for i in 10_000..10_010 {
        let mut e = ev(i);
        e.body_mut().resize(600, b'x');
        tx.put(e).expect("put");
    }
    let err = tx.commit().expect_err("no room for a new segment");
    assert!(
        matches!(
            &err,
            Error::Io {
                op: "creating segment",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        ch.stats().poisoned.is_none(),
        "a failed roll before anything was written must not poison: {:?}",
        ch.stats().poisoned
    );
}
