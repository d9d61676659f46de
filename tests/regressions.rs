//! Regression tests from the crash-consistency review: each reproduced a bug (named in the
//! test) before its fix, and must keep passing. F1/F1b: a commit during a checkpoint snapshot;
//! F2: collection breaking the backup checkpoint; F3: a spill failing half-way; F4: stale bytes
//! beyond the log's end; F5: in-flight take order; F6: a larger segment size on reopen; F7: a
//! crafted checkpoint offset; F8: failed commits of spilled transactions pinning collection.
#![expect(clippy::unwrap_used, reason = "test code: a panic is a test failure")]

mod common;

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tidegate::io::{FaultyFs, StdFs};
use tidegate::{Error, Event, FileChannel, FileChannelConfig};

// ---------------------------------------------------------------------------------------------
// helpers

fn cfg(root: &Path, seg: u64) -> FileChannelConfig {
    FileChannelConfig::new(root.join("ckpt"), vec![root.join("data")])
        .minimum_required_space(1 << 20)
        .max_segment_size(seg)
        .max_event_size(seg - 64 - 32)
        .keep_alive(Duration::from_millis(50))
        .checkpoint_interval(Duration::from_secs(3600))
}

/// An event whose body is `len` bytes starting with its id (no headers).
fn evn(id: u64, len: usize) -> Event {
    let mut b = format!("{id:08}").into_bytes();
    b.resize(len, b'x');
    Event::new(b)
}
fn idn(e: &Event) -> u64 {
    std::str::from_utf8(&e.body()[..8])
        .unwrap()
        .parse()
        .unwrap()
}

fn put_n(ch: &FileChannel, ids: std::ops::Range<u64>, len: usize) {
    let mut tx = ch.transaction();
    for i in ids {
        tx.put(evn(i, len)).expect("put");
    }
    tx.commit().expect("commit");
}

fn drain(ch: &FileChannel) -> Vec<u64> {
    common::drain_ids(ch, idn)
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    v.sort();
    v
}

fn checkpoints(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("checkpoint-")
        })
        .collect();
    v.sort();
    v.reverse();
    v
}

fn patch(path: &Path, offset: u64, bytes: &[u8]) {
    let f = OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, offset).unwrap();
    f.sync_all().unwrap();
}

/// Runs `commit_side` on a thread; once its commit is inside `fdatasync` (held by `FaultyFs`),
/// writes a checkpoint (whose snapshot therefore lists the transaction in `committing`), then lets
/// the sync finish.
fn checkpoint_during_commit(
    ch: &FileChannel,
    fs: &FaultyFs,
    commit_side: impl FnOnce() + Send + 'static,
) {
    fs.faults().hold_next_file_sync();
    let a = std::thread::spawn(commit_side);
    assert!(
        fs.faults().wait_for_held_sync(Duration::from_secs(60)),
        "the commit never reached its sync"
    ); // the commit is appended (listed in `committing`), syncing
    let ch2 = ch.clone();
    let b = std::thread::spawn(move || ch2.checkpoint().expect("checkpoint"));
    std::thread::sleep(Duration::from_millis(300)); // the snapshot is taken by now
    fs.faults().release_held_sync();
    a.join().unwrap();
    b.join().unwrap();
}

// ---------------------------------------------------------------------------------------------
// F1: a put whose commit returned Ok is lost if a checkpoint snapshot caught it in `committing`.

#[test]
fn f1_put_acknowledged_during_checkpoint_is_lost_after_crash() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new(Arc::new(StdFs));
    let ch =
        FileChannel::open(cfg(dir.path(), 64 << 10).file_system(Arc::new(fs.clone()))).unwrap();
    put_n(&ch, 0..3, 50);
    let c = ch.clone();
    checkpoint_during_commit(&ch, &fs, move || put_n(&c, 3..5, 50)); // returns Ok
    drop(ch); // crash: no close checkpoint
    let ch = FileChannel::open(cfg(dir.path(), 64 << 10)).unwrap();
    assert_eq!(
        drain(&ch),
        vec![0, 1, 2, 3, 4],
        "acknowledged puts 3 and 4 must survive (G1)"
    );
}

// F1b: the same window for a take: a committed take is redelivered.
#[test]
fn f1b_take_acknowledged_during_checkpoint_is_redelivered_after_crash() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new(Arc::new(StdFs));
    let ch =
        FileChannel::open(cfg(dir.path(), 64 << 10).file_system(Arc::new(fs.clone()))).unwrap();
    put_n(&ch, 0..3, 50);
    let c = ch.clone();
    checkpoint_during_commit(&ch, &fs, move || {
        let mut tx = c.transaction();
        assert_eq!(tx.take_batch(3, Duration::ZERO).unwrap().len(), 3);
        tx.commit().expect("take commit returns Ok");
    });
    drop(ch);
    let ch = FileChannel::open(cfg(dir.path(), 64 << 10)).unwrap();
    assert_eq!(
        drain(&ch),
        Vec::<u64>::new(),
        "committed takes must not be redelivered (G5)"
    );
}

// ---------------------------------------------------------------------------------------------
// F2: GC deletes segments the backup checkpoint's queue needs, so a single damaged checkpoint
// forces a full replay; full replay then loses events whose Commit record was collected.
//
// 4 KiB segments, 100-byte bodies: a Put record is 140 bytes, a Commit 36.
//  txn1 = ids 0..22  -> [64, 3180) of segment s
//  txn2 = ids 22..29 -> ids 22..28 fill s up to 4020, id 28 and txn2's Commit go to s+1
#[test]
fn f2_one_damaged_checkpoint_after_gc_loses_acknowledged_events() {
    let dir = tempfile::tempdir().unwrap();
    let c = || cfg(dir.path(), 4096);
    let ch = FileChannel::open(c()).unwrap();
    {
        let mut tx = ch.transaction(); // 22 puts (spills, contiguous anyway)
        for i in 0..22 {
            tx.put(evn(i, 100)).unwrap();
        }
        tx.commit().unwrap();
    }
    put_n(&ch, 22..29, 100); // split across the roll
    for b in 0..8 {
        put_n(&ch, 29 + b * 7..36 + b * 7, 100);
    }
    let total = 29 + 8 * 7;
    // T1 holds events 0..28 (all in segment s) in flight.
    let mut t1 = ch.transaction();
    let got: Vec<u64> = t1
        .take_batch(28, Duration::ZERO)
        .unwrap()
        .iter()
        .map(idn)
        .collect();
    assert_eq!(got, (0..28).collect::<Vec<_>>());
    ch.checkpoint().unwrap(); // ck1: queue names events in s+1..
    let mut t2 = ch.transaction();
    let rest = t2.take_batch(1000, Duration::ZERO).unwrap();
    assert_eq!(rest.len() as u64, total - 28);
    t2.commit().unwrap();
    let before = segments(&dir.path().join("data")).len();
    ch.checkpoint().unwrap(); // ck2: collects s+1.. (dead, below both scan starts)
    let after = segments(&dir.path().join("data")).len();
    eprintln!("segments before GC {before}, after {after}");
    drop(t1); // rollback: 0..28 back at the head
    drop(ch); // crash
    // One damaged checkpoint (the newest).
    let ck = checkpoints(&dir.path().join("ckpt"));
    let b = fs::read(&ck[0]).unwrap();
    patch(&ck[0], 70, &[b[70] ^ 0xff]);
    let ch = FileChannel::open(c()).unwrap();
    eprintln!("{:#?}", ch.recovery_report());
    assert_eq!(
        drain(&ch),
        (0..28).collect::<Vec<_>>(),
        "events 22..28 were acknowledged and never taken"
    );
}

// ---------------------------------------------------------------------------------------------
// F3: a spill that fails half-way (segment creation ENOSPC, not poisoning) leaves orphan Put
// records with the transaction's id; the retried spill/commit writes them again, and replay
// applies both copies.
#[test]
fn f3_failed_spill_then_commit_duplicates_events_after_crash() {
    let dir = tempfile::tempdir().unwrap();
    let faulty = FaultyFs::new(Arc::new(StdFs));
    let faults = faulty.faults().clone();
    let c = || cfg(dir.path(), 4096);
    let ch = FileChannel::open(c().file_system(Arc::new(faulty.clone()))).unwrap();
    faults.set_fail_create(true); // the spare and any new segment cannot be created
    {
        let mut tx = ch.transaction();
        for i in 0..22 {
            tx.put(evn(i, 100)).unwrap();
        }
        tx.commit().unwrap(); // tail 3180
    }
    let mut x = ch.transaction();
    for i in 100..107 {
        x.put(evn(i, 100)).unwrap();
    }
    // 8th put spills 7 records. They fit an empty segment, so the log rolls before writing any
    // of them; the roll cannot create a segment: the spill fails cleanly (nothing written, no
    // poisoning) and the transaction can still commit once space returns. (Before the log
    // rolled first, 6 records were written, then the roll failed and the channel poisoned.)
    let err = x.put(evn(107, 100)).expect_err("spill fails");
    assert!(
        matches!(&err.error, tidegate::Error::Io { source, .. } if source.raw_os_error() == Some(28)),
        "{}",
        err.error
    );
    assert!(ch.stats().poisoned.is_none());
    faults.heal();
    x.commit()
        .expect("the transaction commits once space returns");
    drop(ch); // crash
    let ch = FileChannel::open(c()).unwrap();
    assert_eq!(
        drain(&ch),
        (0..22).chain(100..107).collect::<Vec<_>>(),
        "exactly what was committed, once"
    );
}

// ---------------------------------------------------------------------------------------------
// F4: bytes left beyond an all-zero header in the newest segment (a crash persisted a later
// unsynced write but not an earlier one) are never cleared; later they are read as records.
#[test]
fn f4_stale_bytes_after_a_lost_page_make_a_clean_reopen_fail() {
    let dir = tempfile::tempdir().unwrap();
    let c = || cfg(dir.path(), 64 << 10);
    let ch = FileChannel::open(c()).unwrap();
    put_n(&ch, 0..1, 5000); // A: Put [64, 5104), Commit [5104, 5140)
    put_n(&ch, 1..2, 100); // B: Put [5140, 5280), Commit [5280, 5316)
    drop(ch);
    // Crash image: the page holding A's start never reached the disk (it reads as zeros).
    let seg = segments(&dir.path().join("data"))[0].clone();
    patch(&seg, 64, &vec![0u8; 4096 - 64]);
    let ch = FileChannel::open(c()).expect("a torn/lost unacknowledged write is fine");
    assert_eq!(
        ch.recovery_report().torn_tails,
        1,
        "the leftover bytes beyond the end of the log are zeroed at open"
    );
    for i in 10..39 {
        put_n(&ch, i..i + 1, 100); // 29 x 176 bytes: ends at 5168, inside B's stale Put
    }
    ch.close().expect("clean close");
    match FileChannel::open(c()) {
        Ok(ch) => assert_eq!(drain(&ch), (10..39).collect::<Vec<_>>()),
        Err(e) => panic!("reopen after a clean close failed: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// F5 (ordering): the checkpoint lists takes in flight by transaction id, not by the order they
// were taken, so redelivery after a crash reorders the queue (G3).
#[test]
fn f5_inflight_order_in_checkpoint_follows_txn_ids() {
    let dir = tempfile::tempdir().unwrap();
    let ch = FileChannel::open(cfg(dir.path(), 64 << 10)).unwrap();
    put_n(&ch, 0..4, 20);
    let mut early = ch.transaction(); // lower id
    let mut late = ch.transaction();
    assert_eq!(
        late.take_batch(2, Duration::ZERO)
            .unwrap()
            .iter()
            .map(idn)
            .collect::<Vec<_>>(),
        vec![0, 1]
    );
    assert_eq!(
        early
            .take_batch(2, Duration::ZERO)
            .unwrap()
            .iter()
            .map(idn)
            .collect::<Vec<_>>(),
        vec![2, 3]
    );
    ch.checkpoint().unwrap();
    std::mem::forget(early); // crash with both in flight (leak keeps Arc<Inner>; copy the image)
    std::mem::forget(late);
    let image = tempfile::tempdir().unwrap();
    for sub in ["ckpt", "data"] {
        fs::create_dir_all(image.path().join(sub)).unwrap();
        for e in fs::read_dir(dir.path().join(sub)).unwrap() {
            let e = e.unwrap();
            if e.file_name() != ".lock" {
                fs::copy(e.path(), image.path().join(sub).join(e.file_name())).unwrap();
            }
        }
    }
    let ch2 = FileChannel::open(cfg(image.path(), 64 << 10)).unwrap();
    assert_eq!(drain(&ch2), vec![0, 1, 2, 3]);
    let _ = Error::Closed;
}

// F6: raising max_segment_size between runs: the reopened active segment is smaller than the
// configured size; appends run past its end (pwrite extends the file) but the read map keeps
// the old length, so takes of those events fail.
#[test]
fn f6_larger_segment_size_on_reopen_makes_takes_fail() {
    let dir = tempfile::tempdir().unwrap();
    let ch = FileChannel::open(cfg(dir.path(), 8192)).unwrap();
    put_n(&ch, 0..1, 100);
    ch.close().unwrap();
    let ch = FileChannel::open(cfg(dir.path(), 64 << 10)).unwrap();
    for i in 1..20 {
        put_n(&ch, i..i + 1, 1000);
    }
    assert_eq!(drain(&ch), (0..20).collect::<Vec<_>>());
}

// F7: a checkpoint (valid CRC) whose queue holds an offset near u64::MAX panics replay (debug
// builds: arithmetic overflow in check_put_header's error path).
#[test]
fn f7_crafted_checkpoint_offset_panics_replay() {
    use tidegate::format::checkpoint::{self, Checkpoint};
    let dir = tempfile::tempdir().unwrap();
    let ch = FileChannel::open(cfg(dir.path(), 8192)).unwrap();
    put_n(&ch, 0..1, 100);
    ch.close().unwrap();
    let ck = checkpoints(&dir.path().join("ckpt"))[0].clone();
    let mut c: Checkpoint = checkpoint::decode(&fs::read(&ck).unwrap()).unwrap();
    c.queue[0].offset = u64::MAX - 3;
    fs::write(&ck, checkpoint::encode(&c)).unwrap();
    let r = std::panic::catch_unwind(|| FileChannel::open(cfg(dir.path(), 8192)).map(|_| ()));
    assert!(r.is_ok(), "replay panicked on checkpoint data");
}

// F8: a spilled put transaction whose commit fails its free-space check leaves its entry in
// `open_spills` forever (commit set the mode to Idle, so the drop-rollback does nothing):
// every later checkpoint's scan_start is pinned there and GC never frees a segment again.
#[test]
fn f8_failed_commit_of_spilled_txn_pins_gc_forever() {
    let dir = tempfile::tempdir().unwrap();
    let faulty = FaultyFs::new(Arc::new(StdFs));
    let faults = faulty.faults().clone();
    let ch =
        FileChannel::open(cfg(dir.path(), 4096).file_system(Arc::new(faulty.clone()))).unwrap();
    let mut x = ch.transaction();
    for i in 0..10 {
        x.put(evn(i, 100)).unwrap(); // spills at the 8th put
    }
    faults.set_free_space(Some(0));
    assert!(matches!(x.commit(), Err(Error::InsufficientSpace { .. })));
    faults.heal();
    for round in 0..30u64 {
        put_n(&ch, 1000 + round * 7..1007 + round * 7, 100);
        drain(&ch);
        ch.checkpoint().unwrap();
    }
    let n = segments(&dir.path().join("data")).len();
    assert!(n < 5, "{n} segments kept although the queue is empty");
}

#[test]
fn f8_control_rolled_back_spill_lets_gc_work() {
    let dir = tempfile::tempdir().unwrap();
    let ch = FileChannel::open(cfg(dir.path(), 4096)).unwrap();
    let mut x = ch.transaction();
    for i in 0..10 {
        x.put(evn(i, 100)).unwrap();
    }
    drop(x);
    for round in 0..30u64 {
        put_n(&ch, 1000 + round * 7..1007 + round * 7, 100);
        drain(&ch);
        ch.checkpoint().unwrap();
    }
    let n = segments(&dir.path().join("data")).len();
    assert!(n < 5, "{n} segments kept although the queue is empty");
}

// F8b: same leak through the other failure path: the commit's append fails (a roll cannot
// create a segment, which does not poison). `append(..)?` returns before anything unregisters
// the spill or releases the reservation.
#[test]
fn f8b_failed_commit_append_of_spilled_txn_leaks_spill_and_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let faulty = FaultyFs::new(Arc::new(StdFs));
    let faults = faulty.faults().clone();
    let ch =
        FileChannel::open(cfg(dir.path(), 4096).file_system(Arc::new(faulty.clone()))).unwrap();
    faults.set_fail_create(true);
    {
        let mut tx = ch.transaction();
        for i in 0..15 {
            tx.put(evn(i, 100)).unwrap();
        }
        tx.commit().unwrap(); // tail 2200; the spare's creation fails
    }
    let mut x = ch.transaction();
    for i in 100..114 {
        x.put(evn(i, 100)).unwrap(); // spills 7 at the 8th put (fits), buffers 7 more
    }
    let e = x
        .commit()
        .expect_err("the commit must roll and cannot create a segment");
    eprintln!("commit error: {e}");
    faults.heal();
    // Whether or not that poisoned the channel, a reopen must leave nothing pinned.
    drop(ch);
    let ch = FileChannel::open(cfg(dir.path(), 4096)).unwrap();
    assert_eq!(drain(&ch), (0..15).collect::<Vec<_>>());
    let fill = ch.stats().fill_percent;
    for round in 0..30u64 {
        put_n(&ch, 1000 + round * 7..1007 + round * 7, 100);
        drain(&ch);
        ch.checkpoint().unwrap();
    }
    let n = segments(&dir.path().join("data")).len();
    eprintln!("fill after drain: {fill}%, segments: {n}");
    assert!(
        n < 5 && fill == 0.0,
        "{n} segments kept, {fill}% capacity still reserved, queue empty"
    );
}

// ---------------------------------------------------------------------------------------------
// Second review, R1: the empty spare left by a run with smaller segments became the active
// segment after `max_segment_size` grew, and every commit of a large event was refused.
#[test]
fn r1_a_smaller_old_spare_is_rolled_past_when_segments_grow() {
    let d = tempfile::tempdir().unwrap();
    let small = || cfg(d.path(), 4096).max_event_size(1024);
    {
        let ch = FileChannel::open(small()).unwrap();
        for _ in 0..3 {
            let mut tx = ch.transaction();
            tx.put(Event::new(vec![1u8; 900])).unwrap();
            tx.commit().unwrap();
        }
        ch.close().unwrap();
    }
    for life in 0..3 {
        let ch = FileChannel::open(cfg(d.path(), 1 << 20).max_event_size(64 << 10)).unwrap();
        let mut tx = ch.transaction();
        tx.put(Event::new(vec![7u8; 8000])).unwrap();
        tx.commit().unwrap_or_else(|e| panic!("life {life}: {e}"));
        ch.close().unwrap();
    }
    let ch = FileChannel::open(cfg(d.path(), 1 << 20).max_event_size(64 << 10)).unwrap();
    let mut tx = ch.transaction();
    let sizes: Vec<usize> = tx
        .take_batch(100, Duration::ZERO)
        .unwrap()
        .iter()
        .map(|e| e.body().len())
        .collect();
    assert_eq!(sizes, vec![900, 900, 900, 8000, 8000, 8000]);
}

// R3: leftover bytes beyond a lost page, reached by new records and then rolled past, read as
// "an invalid record followed by valid ones" and stopped a strict open. They are now zeroed when
// the channel opens.
#[test]
fn r3_leftover_bytes_are_zeroed_before_the_log_rolls_past_them() {
    let dir = tempfile::tempdir().unwrap();
    // 64 KiB segments: no spare is prepared yet, so appends continue in the damaged segment.
    let c = || cfg(dir.path(), 64 << 10);
    let ch = FileChannel::open(c()).unwrap();
    put_n(&ch, 0..1, 5000); // Put [64, 5104), Commit [5104, 5140)
    put_n(&ch, 1..2, 100); // Put [5140, 5280), Commit [5280, 5316)
    drop(ch); // crash
    let seg = segments(&dir.path().join("data"))[0].clone();
    patch(&seg, 64, &vec![0u8; 4096 - 64]); // the first page was lost, the second survived
    let ch = FileChannel::open(c()).expect("a lost unacknowledged write is fine");
    assert_eq!(
        ch.recovery_report().torn_tails,
        1,
        "the leftover is found and zeroed"
    );
    for i in 10..39 {
        put_n(&ch, i..i + 1, 100); // ends inside where the stale Put was
    }
    put_n(&ch, 39..40, 62_000); // does not fit: roll to the next segment
    assert!(
        segments(&dir.path().join("data")).len() >= 2,
        "the log rolled"
    );
    drop(ch); // crash, no checkpoint
    let ch = FileChannel::open(c()).unwrap_or_else(|e| panic!("reopen failed: {e}"));
    assert_eq!(drain(&ch), (10..40).collect::<Vec<_>>());
}

// R4: in strict mode a damaged event at the head made every take fail for ever. Now the take
// reports it and keeps it: a commit drops it, and the events behind it flow.
#[test]
fn r4_a_damaged_event_at_the_head_does_not_block_the_queue() {
    let d = tempfile::tempdir().unwrap();
    let ch = FileChannel::open(cfg(d.path(), 64 << 10)).unwrap();
    put_n(&ch, 0..3, 64);
    let seg = segments(&d.path().join("data"))[0].clone();
    let bytes = fs::read(&seg).unwrap();
    let pos = bytes.windows(8).position(|w| w == b"00000000").unwrap();
    patch(&seg, pos as u64 + 20, b"Z");
    let mut tx = ch.transaction();
    let err = tx
        .take_batch(10, Duration::ZERO)
        .expect_err("the damaged head is reported");
    assert!(err.is_corruption(), "{err:?}");
    tx.rollback().unwrap();
    let mut tx = ch.transaction();
    assert!(
        tx.take_batch(10, Duration::ZERO).is_err(),
        "a rollback returns it to the head"
    );
    tx.commit().unwrap(); // drops the damaged event for good
    assert_eq!(drain(&ch), vec![1, 2]);
}

// ---------------------------------------------------------------------------------------------
// Third review: counters were bounded when read (2^62) but not when written, so a log whose
// sequence number sat at the bound produced records the next replay rejected as a torn tail,
// losing an acknowledged commit. Now the open refuses, naming the problem, and nothing
// unreadable is ever written.
#[test]
fn r5_a_log_whose_counters_are_at_the_bound_is_refused_not_silently_truncated() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let c = || cfg(dir.path(), 64 << 10).checkpoint_on_close(false);
    let ch = FileChannel::open(c()).unwrap();
    put_n(&ch, 0..1, 50);
    ch.close().unwrap();
    drop(ch);
    // Rewrite the last record's sequence number to the bound, with a valid CRC.
    let seg = segments(&dir.path().join("data"))[0].clone();
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&seg)
        .unwrap();
    let mut buf = vec![0u8; 64 << 10];
    f.read_exact_at(&mut buf, 0).unwrap();
    let (mut off, mut last) = (64usize, 64usize);
    while buf[off..off + 32].iter().any(|b| *b != 0) {
        let len = u32::from_le_bytes(buf[off + 8..off + 12].try_into().unwrap()) as usize;
        last = off;
        off += 32 + len;
    }
    buf[last + 16..last + 24].copy_from_slice(&tidegate::format::MAX_COUNTER.to_le_bytes());
    tidegate::format::record::reseal(&mut buf[last..off]);
    f.write_all_at(&buf[last..off], last as u64).unwrap();
    f.sync_all().unwrap();
    let err = FileChannel::open(c()).expect_err("no room left for new sequence numbers");
    assert!(
        err.to_string().contains("sequence numbers exhausted"),
        "{err}"
    );
}

/// Review of f9c26c3: a transaction that did not spill queues its records' own positions; when
/// its one Put record fills a fresh segment and its Commit lands in the next (the append rolled
/// before it, and again between them), the queued position is still the Put's, before and
/// after a reopen.
#[test]
fn a_commit_split_from_its_put_by_a_roll_queues_the_put() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        FileChannel::open(
            common::cfg(dir.path())
                .max_segment_size(4096)
                .max_event_size(4000),
        )
        .unwrap()
    };
    let big = |i: u64| {
        let mut e = common::ev(i);
        let id_len = i.to_string().len();
        e.body_mut().resize(4000 - (4 + 4 + 8 + 1 + id_len), b'b');
        assert_eq!(tidegate::format::record::put_payload_len(&e), 4000);
        e
    };
    let ch = open();
    common::put_range(&ch, 0..3);
    for i in [3, 4] {
        let mut tx = ch.transaction();
        tx.put(big(i)).unwrap();
        tx.commit().unwrap();
    }
    common::put_range(&ch, 5..7);
    let check = |ch: &FileChannel| {
        let mut tx = ch.transaction();
        let evs = tx.take_batch(100, Duration::ZERO).unwrap();
        let ids: Vec<u64> = evs.iter().map(common::id_of).collect();
        assert_eq!(ids, (0..7).collect::<Vec<_>>());
        for e in &evs {
            let i = common::id_of(e);
            if i == 3 || i == 4 {
                assert_eq!(e.body(), big(i).body());
            }
        }
        tx.rollback().unwrap();
    };
    check(&ch);
    drop(ch);
    let ch = open();
    check(&ch);
    assert_eq!(common::drain(&ch), (0..7).collect::<Vec<_>>());
}
