//! Replay after crashes and damage: torn tails, flipped bits, bad checkpoints, stray files.
//! Each test names the recovery path it expects and checks the report says it ran.

mod common;

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use common::{cfg, checkpoints, data_dir, drain, ev, id_of, put_range, segments};
use tidegate::format::record::{HEADER_LEN, put_payload_len};
use tidegate::{Error, FileChannel, RecoveryMode};

const SEGMENT_HEADER: u64 = 64;
const COMMIT_LEN: u64 = HEADER_LEN as u64 + 4;

fn put_len(i: u64) -> u64 {
    HEADER_LEN as u64 + put_payload_len(&ev(i))
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for e in fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else if e.file_name() != ".lock" {
            fs::copy(&p, to.join(e.file_name())).expect("copy");
        }
    }
}

fn patch(path: &Path, offset: u64, bytes: &[u8]) {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open segment");
    f.write_all_at(bytes, offset).expect("patch");
    f.sync_all().expect("sync");
}

fn read_byte(path: &Path, offset: u64) -> u8 {
    let f = fs::File::open(path).expect("open");
    let mut b = [0u8];
    f.read_exact_at(&mut b, offset).expect("read");
    b[0]
}

/// Writes transaction A (events 0..5) and B (event 5), crashes (no close), and returns the
/// first segment's path and where B starts and ends.
fn two_transactions(root: &Path) -> (std::path::PathBuf, u64, u64) {
    let ch = FileChannel::open(cfg(root)).expect("open");
    put_range(&ch, 0..5);
    put_range(&ch, 5..6);
    drop(ch);
    let seg = segments(&data_dir(root))
        .into_iter()
        .next()
        .expect("a segment");
    let start_b = SEGMENT_HEADER + (0..5).map(put_len).sum::<u64>() + COMMIT_LEN;
    let end_b = start_b + put_len(5) + COMMIT_LEN;
    (seg, start_b, end_b)
}

#[test]
fn a_torn_tail_at_every_byte_of_the_last_transaction_is_truncated() {
    let base = tempfile::tempdir().expect("tempdir");
    let (seg, start_b, end_b) = two_transactions(base.path());
    let name = seg.file_name().expect("name").to_owned();
    let commit_b = end_b - COMMIT_LEN;
    for cut in start_b..end_b {
        let case = tempfile::tempdir().expect("tempdir");
        copy_dir(base.path(), case.path());
        let seg = data_dir(case.path()).join(&name);
        // Bytes that were zero already stay as they were: cutting there tears nothing.
        let intact = (cut..end_b).all(|o| read_byte(&seg, o) == 0);
        let zeros = vec![0u8; (end_b - cut) as usize];
        patch(&seg, cut, &zeros);
        let ch =
            FileChannel::open(cfg(case.path())).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        let report = ch.recovery_report().clone();
        assert!(report.full_replay);
        let expected: Vec<u64> = if intact {
            (0..6).collect()
        } else {
            (0..5).collect()
        };
        assert_eq!(drain(&ch), expected, "cut at {cut}");
        let at_boundary = cut == start_b || cut == commit_b;
        let torn = u64::from(!intact && !at_boundary);
        assert_eq!(report.torn_tails, torn, "cut at {cut}: {report:?}");
        assert_eq!(
            report.torn_bytes_truncated > 0,
            torn == 1,
            "cut at {cut}: {report:?}"
        );
        ch.close().expect("close");
        // The zeroed tail stays clean: a second open finds nothing torn.
        let ch = FileChannel::open(cfg(case.path())).expect("reopen");
        assert_eq!(ch.recovery_report().torn_tails, 0);
    }
}

#[test]
fn a_garbage_tail_is_truncated_and_new_writes_follow_the_good_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (seg, _, end_b) = two_transactions(dir.path());
    let garbage: Vec<u8> = (0..3000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 | 1)
        .collect();
    patch(&seg, end_b, &garbage);
    let ch = FileChannel::open(cfg(dir.path())).expect("open");
    assert_eq!(ch.recovery_report().torn_tails, 1);
    assert_eq!(ch.recovery_report().torn_bytes_truncated, 3000);
    put_range(&ch, 6..8);
    drop(ch);
    let ch = FileChannel::open(cfg(dir.path())).expect("reopen");
    assert_eq!(drain(&ch), (0..8).collect::<Vec<_>>());
}

#[test]
fn a_flipped_bit_in_a_body_stops_strict_mode_and_is_skipped_in_skip_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (seg, _, _) = two_transactions(dir.path());
    // Event 1's body: after the segment header, event 0's record and event 1's record header.
    let rec1 = SEGMENT_HEADER + put_len(0);
    let body = rec1 + HEADER_LEN as u64 + 4;
    let b = read_byte(&seg, body);
    patch(&seg, body, &[b ^ 0x04]);
    let err = FileChannel::open(cfg(dir.path())).expect_err("strict refuses");
    match &err {
        Error::Corrupt { path, offset, .. } => {
            assert_eq!(path, &seg);
            assert_eq!(*offset, rec1);
        }
        other => panic!("unexpected {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("tidegate verify") && msg.contains(&rec1.to_string()),
        "{msg}"
    );
    let ch =
        FileChannel::open(cfg(dir.path()).recovery_mode(RecoveryMode::Skip)).expect("skip opens");
    assert_eq!(ch.recovery_report().corrupt_records_skipped, 1);
    assert_eq!(drain(&ch), vec![0, 2, 3, 4, 5]);
}

#[test]
fn a_flipped_bit_in_a_record_header_is_detected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (seg, _, _) = two_transactions(dir.path());
    let rec2 = SEGMENT_HEADER + put_len(0) + put_len(1);
    // The length field of event 2's header.
    let b = read_byte(&seg, rec2 + 4);
    patch(&seg, rec2 + 4, &[b ^ 0x01]);
    let err = FileChannel::open(cfg(dir.path())).expect_err("strict refuses");
    assert!(
        matches!(&err, Error::Corrupt { offset, .. } if *offset == rec2),
        "{err:?}"
    );
    let ch =
        FileChannel::open(cfg(dir.path()).recovery_mode(RecoveryMode::Skip)).expect("skip opens");
    assert_eq!(ch.recovery_report().corrupt_records_skipped, 1);
    assert_eq!(drain(&ch), vec![0, 1, 3, 4, 5]);
}

#[test]
fn a_zeroed_page_in_the_middle_is_corruption_not_a_torn_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(cfg(dir.path())).expect("open");
    for b in 0..20 {
        put_range(&ch, b * 10..b * 10 + 10);
    }
    drop(ch);
    let seg = segments(&data_dir(dir.path()))
        .into_iter()
        .next()
        .expect("segment");
    patch(&seg, 4096, &[0u8; 4096]);
    assert!(matches!(
        FileChannel::open(cfg(dir.path())),
        Err(Error::Corrupt { .. })
    ));
    let ch = FileChannel::open(cfg(dir.path()).recovery_mode(RecoveryMode::Skip)).expect("skip");
    let got = drain(&ch);
    assert!(got.len() > 100 && got.len() < 200, "{}", got.len());
    assert!(got.windows(2).all(|w| w[0] < w[1]), "order kept");
}

#[test]
fn a_damaged_segment_header_names_the_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (seg, _, _) = two_transactions(dir.path());
    patch(&seg, 0, b"NOTTIDEG");
    let err = FileChannel::open(cfg(dir.path())).expect_err("strict");
    assert!(
        matches!(&err, Error::Corrupt { path, offset: 0, .. } if path == &seg),
        "{err:?}"
    );
    let ch = FileChannel::open(cfg(dir.path()).recovery_mode(RecoveryMode::Skip)).expect("skip");
    assert_eq!(ch.recovery_report().corrupt_segments_skipped, 1);
    assert!(drain(&ch).is_empty());
}

fn with_checkpoint_then_more(root: &Path) {
    let ch = FileChannel::open(cfg(root)).expect("open");
    put_range(&ch, 0..10);
    ch.checkpoint().expect("checkpoint 1");
    let mut tx = ch.transaction();
    assert_eq!(tx.take_batch(3, Duration::ZERO).expect("take").len(), 3);
    tx.commit().expect("commit take");
    put_range(&ch, 10..15);
    ch.checkpoint().expect("checkpoint 2");
    put_range(&ch, 15..20);
    drop(ch);
}

#[test]
fn replay_uses_the_newest_checkpoint_and_the_log_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    with_checkpoint_then_more(dir.path());
    let ch = FileChannel::open(cfg(dir.path())).expect("open");
    let r = ch.recovery_report().clone();
    assert!(!r.full_replay && r.checkpoint_fallbacks.is_empty(), "{r:?}");
    assert_eq!(r.checkpoint_generation, Some(2));
    assert_eq!(r.events_restored, 17);
    assert_eq!(drain(&ch), (3..20).collect::<Vec<_>>());
}

#[test]
fn a_truncated_checkpoint_falls_back_to_the_previous_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    with_checkpoint_then_more(dir.path());
    let newest = checkpoints(&dir.path().join("ckpt"))
        .into_iter()
        .next()
        .expect("checkpoint");
    let len = fs::metadata(&newest).expect("meta").len();
    OpenOptions::new()
        .write(true)
        .open(&newest)
        .expect("open")
        .set_len(len / 2)
        .expect("truncate");
    let ch = FileChannel::open(cfg(dir.path())).expect("open");
    let r = ch.recovery_report().clone();
    assert_eq!(r.checkpoint_generation, Some(1), "{r:?}");
    assert_eq!(r.checkpoint_fallbacks.len(), 1);
    assert_eq!(drain(&ch), (3..20).collect::<Vec<_>>());
}

#[test]
fn deleted_checkpoints_fall_back_to_a_full_replay() {
    let dir = tempfile::tempdir().expect("tempdir");
    with_checkpoint_then_more(dir.path());
    for c in checkpoints(&dir.path().join("ckpt")) {
        fs::remove_file(c).expect("rm");
    }
    let ch = FileChannel::open(cfg(dir.path())).expect("open");
    assert!(ch.recovery_report().full_replay);
    assert_eq!(drain(&ch), (3..20).collect::<Vec<_>>());
}

#[test]
fn both_checkpoints_damaged_falls_back_to_a_full_replay_with_warnings() {
    let dir = tempfile::tempdir().expect("tempdir");
    with_checkpoint_then_more(dir.path());
    for c in checkpoints(&dir.path().join("ckpt")) {
        patch(&c, 20, &[0xFF]);
    }
    let ch = FileChannel::open(cfg(dir.path())).expect("open");
    let r = ch.recovery_report().clone();
    assert!(r.full_replay);
    assert_eq!(r.checkpoint_fallbacks.len(), 2, "{r:?}");
    assert_eq!(drain(&ch), (3..20).collect::<Vec<_>>());
}

#[test]
fn a_checkpoint_that_points_past_the_log_is_not_used() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(cfg(dir.path())).expect("open");
    put_range(&ch, 0..10);
    ch.checkpoint().expect("checkpoint");
    drop(ch);
    // Zero the log after the first 3 events: the checkpoint now names records that are gone.
    let seg = segments(&data_dir(dir.path()))
        .into_iter()
        .next()
        .expect("segment");
    let keep = SEGMENT_HEADER + (0..3).map(put_len).sum::<u64>();
    patch(&seg, keep, &vec![0u8; 2000]);
    let ch = FileChannel::open(cfg(dir.path())).expect("open");
    let r = ch.recovery_report().clone();
    assert!(r.full_replay, "{r:?}");
    assert!(
        r.checkpoint_fallbacks
            .iter()
            .any(|f| f.contains("not an event in the log")),
        "{r:?}"
    );
    // The transaction lost its commit record with the rest: nothing of it is shown.
    assert!(drain(&ch).is_empty());
}

#[test]
fn unknown_files_are_ignored_and_leftover_temporaries_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(cfg(dir.path())).expect("open");
    put_range(&ch, 0..3);
    ch.close().expect("close");
    fs::write(data_dir(dir.path()).join("notes.txt"), b"hello").expect("write");
    fs::write(
        data_dir(dir.path()).join("segment-0000000099.log.tmp"),
        b"half",
    )
    .expect("write");
    fs::write(dir.path().join("ckpt").join("checkpoint.tmp"), b"half").expect("write");
    fs::write(dir.path().join("ckpt").join("README"), b"x").expect("write");
    let ch = FileChannel::open(cfg(dir.path())).expect("open");
    assert_eq!(drain(&ch), vec![0, 1, 2]);
    assert!(data_dir(dir.path()).join("notes.txt").exists());
    assert!(
        !data_dir(dir.path())
            .join("segment-0000000099.log.tmp")
            .exists()
    );
}

#[test]
fn takes_that_did_not_commit_before_a_crash_are_redelivered_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(cfg(dir.path())).expect("open");
    put_range(&ch, 0..10);
    let mut done = ch.transaction();
    assert_eq!(
        done.take_batch(2, Duration::ZERO)
            .expect("take")
            .iter()
            .map(id_of)
            .collect::<Vec<_>>(),
        vec![0, 1]
    );
    done.commit().expect("commit");
    let mut open = ch.transaction();
    assert_eq!(open.take_batch(3, Duration::ZERO).expect("take").len(), 3);
    ch.checkpoint().expect("checkpoint with takes in flight");
    let mut open2 = ch.transaction();
    assert_eq!(open2.take_batch(2, Duration::ZERO).expect("take").len(), 2);
    // Crash image: the directories as they are while neither transaction has committed.
    let image = tempfile::tempdir().expect("tempdir");
    copy_dir(dir.path(), image.path());
    drop((open, open2, ch));
    let ch = FileChannel::open(cfg(image.path())).expect("reopen");
    assert_eq!(ch.recovery_report().inflight_redelivered, 3);
    assert_eq!(drain(&ch), (2..10).collect::<Vec<_>>());
}

#[test]
fn a_take_committed_after_the_checkpoint_is_not_redelivered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(cfg(dir.path())).expect("open");
    put_range(&ch, 0..10);
    let mut tx = ch.transaction();
    assert_eq!(tx.take_batch(4, Duration::ZERO).expect("take").len(), 4);
    ch.checkpoint()
        .expect("checkpoint while the take is in flight");
    tx.commit().expect("commit after the checkpoint");
    drop(ch);
    let ch = FileChannel::open(cfg(dir.path())).expect("reopen");
    assert_eq!(ch.recovery_report().inflight_redelivered, 0);
    assert_eq!(drain(&ch), (4..10).collect::<Vec<_>>());
}

#[test]
fn close_and_reopen_keeps_everything_without_a_full_replay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(cfg(dir.path())).expect("open");
    for b in 0..50 {
        put_range(&ch, b * 20..b * 20 + 20);
    }
    ch.close().expect("close");
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let p = progress.clone();
    let ch = FileChannel::open(cfg(dir.path()).on_replay_progress(move |_| {
        p.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }))
    .expect("reopen");
    let r = ch.recovery_report().clone();
    assert!(!r.full_replay);
    assert_eq!(
        r.records_scanned, 0,
        "the close checkpoint covers the whole log: {r:?}"
    );
    assert!(progress.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    assert_eq!(drain(&ch), (0..1000).collect::<Vec<_>>());
}

#[test]
fn a_flipped_bit_in_a_body_of_a_sealed_segment_is_found_when_the_event_is_taken() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(cfg(dir.path())).expect("open");
    let mut n = 0;
    while segments(&data_dir(dir.path())).len() < 3 || n < 2000 {
        put_range(&ch, n..n + 100);
        n += 100;
    }
    drop(ch); // a crash: no checkpoint, full replay
    let seg = segments(&data_dir(dir.path()))[0].clone();
    // Event 0's body, in the oldest segment: replay checks only its header there.
    let body = SEGMENT_HEADER + HEADER_LEN as u64 + 4;
    let b = read_byte(&seg, body);
    patch(&seg, body, &[b ^ 0x10]);
    let ch = FileChannel::open(cfg(dir.path())).expect("strict opens: headers are intact");
    assert_eq!(ch.stats().size, n);
    let mut tx = ch.transaction();
    let err = tx
        .take()
        .expect_err("the damaged body is found by the take");
    assert!(
        matches!(&err, Error::Corrupt { path, offset, .. } if path == &seg && *offset == SEGMENT_HEADER),
        "{err:?}"
    );
    tx.commit().expect("commit drops the damaged event");
    assert_eq!(drain(&ch), (1..n).collect::<Vec<_>>());
}

#[test]
fn a_flipped_bit_in_a_body_of_the_newest_segment_is_found_by_replay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(cfg(dir.path())).expect("open");
    let mut n = 0;
    while segments(&data_dir(dir.path())).len() < 2 || n < 2000 {
        put_range(&ch, n..n + 100);
        n += 100;
    }
    put_range(&ch, n..n + 1);
    drop(ch);
    // The newest segment holding records (a preallocated spare after it holds none).
    let seg = segments(&data_dir(dir.path()))
        .into_iter()
        .rev()
        .find(|s| read_byte(s, SEGMENT_HEADER + 12) != 0)
        .expect("a segment with records");
    let body = SEGMENT_HEADER + HEADER_LEN as u64 + 4;
    let b = read_byte(&seg, body);
    patch(&seg, body, &[b ^ 0x10]);
    let err = FileChannel::open(cfg(dir.path())).expect_err("strict refuses");
    assert!(
        matches!(&err, Error::Corrupt { path, offset, .. } if path == &seg && *offset == SEGMENT_HEADER),
        "{err:?}"
    );
}
