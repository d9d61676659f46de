//! The offline tools (`tidegate::offline`): verify, repair and inspect, on directories damaged
//! in each of the known-errors corpus's ways (see tests/recovery.rs), and repair interrupted at
//! every sync.

mod common;

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{cfg, checkpoints, data_dir, drain, ev, put_range, segments};
use tidegate::format::quarantine;
use tidegate::format::record::{HEADER_LEN, put_payload_len};
use tidegate::io::{FileSystem, MemFs, TornTail};
use tidegate::offline::{self, ChannelDirs, ProblemKind};
use tidegate::{Error, FileChannel, RecoveryMode};

const SEGMENT_HEADER: u64 = 64;
const COMMIT_LEN: u64 = HEADER_LEN as u64 + 4;

fn put_len(i: u64) -> u64 {
    HEADER_LEN as u64 + put_payload_len(&ev(i))
}

fn dirs(root: &Path) -> ChannelDirs {
    ChannelDirs::new(root.join("ckpt"), vec![data_dir(root)])
}

fn patch(path: &Path, offset: u64, bytes: &[u8]) {
    let f = OpenOptions::new().write(true).open(path).expect("open");
    f.write_all_at(bytes, offset).expect("patch");
    f.sync_all().expect("sync");
}

fn read_range(path: &Path, offset: u64, len: u64) -> Vec<u8> {
    let f = fs::File::open(path).expect("open");
    let mut b = vec![0u8; len as usize];
    f.read_exact_at(&mut b, offset).expect("read");
    b
}

/// Transaction A (events 0..5) and B (event 5), no close. Returns the segment.
fn two_transactions(root: &Path) -> PathBuf {
    let ch = FileChannel::open(cfg(root)).expect("open");
    put_range(&ch, 0..5);
    put_range(&ch, 5..6);
    drop(ch);
    segments(&data_dir(root))
        .into_iter()
        .next()
        .expect("segment")
}

/// Every file under `root` with its bytes (the lock files excepted).
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for sub in ["ckpt", "data"] {
        for e in fs::read_dir(root.join(sub)).expect("read dir") {
            let p = e.expect("entry").path();
            if p.file_name().is_some_and(|n| n != ".lock") {
                out.insert(p.clone(), fs::read(&p).expect("read"));
            }
        }
    }
    out
}

fn quarantined(dir: &Path) -> Vec<quarantine::Quarantined> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(quarantine::is_file_name)
        })
        .map(|p| quarantine::decode(&fs::read(&p).expect("read")).expect("decodes"))
        .collect();
    v.sort_by_key(|q| (q.segment_id, q.offset));
    v
}

/// A damaged directory, what a strict open must restore after repair, and how many committed
/// events repair must say it lost.
struct Case {
    root: tempfile::TempDir,
    /// The damaged range: segment, offset, and its bytes before repair.
    damaged: (PathBuf, u64, Vec<u8>),
    expected: Vec<u64>,
    lost: Lost,
}

enum Lost {
    /// Exactly this many events and records.
    Exactly(u64),
    /// A zeroed page: this many records (puts and commits) were in it.
    ZeroedPage { records: u64 },
}

fn body_bit_flip() -> Case {
    let root = tempfile::tempdir().expect("tempdir");
    let seg = two_transactions(root.path());
    let rec1 = SEGMENT_HEADER + put_len(0);
    let body = rec1 + HEADER_LEN as u64 + 4;
    let b = read_range(&seg, body, 1)[0];
    patch(&seg, body, &[b ^ 0x04]);
    let bytes = read_range(&seg, rec1, put_len(1));
    Case {
        root,
        damaged: (seg, rec1, bytes),
        expected: vec![0, 2, 3, 4, 5],
        lost: Lost::Exactly(1),
    }
}

fn header_bit_flip() -> Case {
    let root = tempfile::tempdir().expect("tempdir");
    let seg = two_transactions(root.path());
    let rec2 = SEGMENT_HEADER + put_len(0) + put_len(1);
    let b = read_range(&seg, rec2 + 4, 1)[0];
    patch(&seg, rec2 + 4, &[b ^ 0x01]);
    let bytes = read_range(&seg, rec2, put_len(2));
    Case {
        root,
        damaged: (seg, rec2, bytes),
        expected: vec![0, 1, 3, 4, 5],
        lost: Lost::Exactly(1),
    }
}

fn zeroed_page() -> Case {
    let root = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(cfg(root.path())).expect("open");
    for b in 0..20 {
        put_range(&ch, b * 10..b * 10 + 10);
    }
    drop(ch);
    let seg = segments(&data_dir(root.path()))
        .into_iter()
        .next()
        .expect("segment");
    patch(&seg, 4096, &[0u8; 4096]);
    let valid = offline::verify(&dirs(root.path())).expect("verify").records;
    // What skip mode keeps: every event outside the zeroed page.
    let ch = FileChannel::open(cfg(root.path()).recovery_mode(RecoveryMode::Skip)).expect("skip");
    let mut tx = ch.transaction();
    let kept: Vec<u64> = tx
        .take_batch(1000, std::time::Duration::ZERO)
        .expect("take")
        .iter()
        .map(common::id_of)
        .collect();
    tx.rollback().expect("rollback");
    drop(ch);
    assert!(kept.len() > 100 && kept.len() < 200, "{}", kept.len());
    Case {
        root,
        damaged: (seg, 4096, vec![0u8; 16]),
        expected: kept,
        lost: Lost::ZeroedPage {
            records: 220 - valid,
        },
    }
}

fn segment_header_damaged() -> Case {
    let root = tempfile::tempdir().expect("tempdir");
    let seg = two_transactions(root.path());
    let before = read_range(&seg, 0, SEGMENT_HEADER);
    patch(&seg, 0, b"NOTTIDEG");
    let mut bytes = before;
    bytes[..8].copy_from_slice(b"NOTTIDEG");
    Case {
        root,
        damaged: (seg, 0, bytes),
        expected: (0..6).collect(),
        lost: Lost::Exactly(0),
    }
}

fn check_repair(case: Case) {
    let root = case.root.path();
    let (seg, offset, bytes) = &case.damaged;
    let err = FileChannel::open(cfg(root)).expect_err("strict refuses the damaged channel");
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");

    let v = offline::verify(&dirs(root)).expect("verify runs");
    assert!(v.is_damaged(), "{v:?}");
    assert!(v.strict_open_error.is_some());
    assert!(
        v.problems
            .iter()
            .any(|p| p.is_damage() && &p.path == seg && p.offset <= *offset + 4096),
        "the problem names the segment: {:?}",
        v.problems
    );

    let r = offline::repair(&dirs(root)).expect("repair");
    match case.lost {
        Lost::Exactly(n) => {
            assert_eq!(r.events_lost, n, "{r:?}");
            assert_eq!(r.records_lost, n, "{r:?}");
        }
        Lost::ZeroedPage { records } => {
            assert_eq!(r.records_lost, records, "{r:?}");
            assert!(r.events_lost <= 200 - case.expected.len() as u64, "{r:?}");
        }
    }
    assert_eq!(r.events_restored, case.expected.len() as u64, "{r:?}");
    assert!(r.checkpoint_written.is_some());
    let q = quarantined(&data_dir(root));
    assert!(!q.is_empty(), "a quarantine file beside the segment");
    assert!(
        q.iter().any(|q| q.offset <= *offset
            && q.bytes.len() as u64 + q.offset >= *offset + bytes.len() as u64
            && q.bytes[(*offset - q.offset) as usize..][..bytes.len()] == bytes[..]),
        "the quarantine file holds the damaged bytes: {:?}",
        q.iter()
            .map(|q| (q.offset, q.bytes.len()))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        checkpoints(&root.join("ckpt")).len(),
        1,
        "older checkpoints removed"
    );

    let after = offline::verify(&dirs(root)).expect("verify after repair");
    assert!(!after.is_damaged(), "{:?}", after.problems);
    assert_eq!(after.events_queued, case.expected.len() as u64);

    let ch = FileChannel::open(cfg(root)).expect("strict opens after repair");
    let rr = ch.recovery_report().clone();
    assert_eq!(rr.corrupt_records_skipped, 0);
    assert_eq!(drain(&ch), case.expected);
    ch.close().expect("close");
    // A full replay of the repaired log (no checkpoint) is clean too.
    for c in checkpoints(&root.join("ckpt")) {
        fs::remove_file(c).expect("rm");
    }
    FileChannel::open(cfg(root))
        .expect("a full strict replay of the repaired log")
        .close()
        .expect("close");
}

#[test]
fn repair_a_flipped_bit_in_a_body() {
    check_repair(body_bit_flip());
}

#[test]
fn repair_a_flipped_bit_in_a_record_header() {
    check_repair(header_bit_flip());
}

#[test]
fn repair_a_zeroed_page() {
    check_repair(zeroed_page());
}

#[test]
fn repair_a_damaged_segment_header() {
    check_repair(segment_header_damaged());
}

#[test]
fn verify_reports_a_body_flip_with_file_and_offset() {
    let case = body_bit_flip();
    let v = offline::verify(&dirs(case.root.path())).expect("verify");
    let p = v
        .problems
        .iter()
        .find(|p| p.kind == ProblemKind::DamagedRecords)
        .expect("a damaged-records problem");
    assert_eq!(p.path, case.damaged.0);
    assert_eq!(p.offset, case.damaged.1);
    assert_eq!(p.len, case.damaged.2.len() as u64);
    assert_eq!(v.records, 7, "6 puts and 2 commits, one put damaged");
    assert_eq!(v.events_queued, 5, "what skip mode restores");
}

#[test]
fn a_torn_tail_is_not_damage_and_repair_saves_it() {
    let root = tempfile::tempdir().expect("tempdir");
    let seg = two_transactions(root.path());
    let end = SEGMENT_HEADER + (0..6).map(put_len).sum::<u64>() + 2 * COMMIT_LEN;
    let garbage: Vec<u8> = (0..3000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 | 1)
        .collect();
    patch(&seg, end, &garbage);
    let v = offline::verify(&dirs(root.path())).expect("verify");
    assert!(!v.is_damaged(), "{:?}", v.problems);
    assert!(
        v.problems
            .iter()
            .any(|p| p.kind == ProblemKind::TornTail && p.offset == end && p.len == 3000),
        "{:?}",
        v.problems
    );
    let r = offline::repair(&dirs(root.path())).expect("repair");
    assert_eq!((r.events_lost, r.events_restored), (0, 6));
    let q = quarantined(&data_dir(root.path()));
    assert_eq!(q.len(), 1);
    assert_eq!((q[0].offset, &q[0].bytes), (end, &garbage));
    assert_eq!(read_range(&seg, end, 3000), vec![0u8; 3000], "zeroed");
    let ch = FileChannel::open(cfg(root.path())).expect("open");
    assert_eq!(ch.recovery_report().torn_tails, 0);
    assert_eq!(drain(&ch), (0..6).collect::<Vec<_>>());
}

#[test]
fn verify_flags_a_checkpoint_that_points_past_the_log_and_repair_replaces_it() {
    let root = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(cfg(root.path())).expect("open");
    put_range(&ch, 0..10);
    ch.checkpoint().expect("checkpoint");
    drop(ch);
    let seg = segments(&data_dir(root.path()))
        .into_iter()
        .next()
        .expect("segment");
    let keep = SEGMENT_HEADER + (0..3).map(put_len).sum::<u64>();
    patch(&seg, keep, &[0u8; 2000]);
    let v = offline::verify(&dirs(root.path())).expect("verify");
    assert!(v.is_damaged());
    assert!(
        v.problems.iter().any(|p| p.kind == ProblemKind::Checkpoint),
        "{:?}",
        v.problems
    );
    let r = offline::repair(&dirs(root.path())).expect("repair");
    assert!(r.checkpoint_written.is_some());
    let after = offline::verify(&dirs(root.path())).expect("verify");
    assert!(!after.is_damaged(), "{:?}", after.problems);
    let ch = FileChannel::open(cfg(root.path())).expect("open");
    assert!(ch.recovery_report().checkpoint_fallbacks.is_empty());
    // The transaction lost its Commit record with the rest: nothing of it is shown.
    assert!(drain(&ch).is_empty());
}

#[test]
fn a_clean_channel_verifies_clean_and_repair_changes_nothing() {
    let root = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(cfg(root.path())).expect("open");
    put_range(&ch, 0..20);
    let mut tx = ch.transaction();
    assert_eq!(
        tx.take_batch(5, std::time::Duration::ZERO)
            .expect("take")
            .len(),
        5
    );
    ch.checkpoint().expect("checkpoint with takes in flight");
    drop(tx);
    ch.close().expect("close");
    fs::write(data_dir(root.path()).join("notes.txt"), b"stray").expect("write");
    let v = offline::verify(&dirs(root.path())).expect("verify");
    assert!(!v.is_damaged() && v.problems.is_empty(), "{:?}", v.problems);
    assert_eq!((v.events_queued, v.in_flight), (20, 0));
    let before = snapshot(root.path());
    let r = offline::repair(&dirs(root.path())).expect("repair");
    assert!(r.nothing_to_do(), "{r:?}");
    assert_eq!(snapshot(root.path()), before);
}

#[test]
fn the_offline_tools_refuse_an_open_channel() {
    let root = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(cfg(root.path())).expect("open");
    put_range(&ch, 0..3);
    for result in [
        offline::verify(&dirs(root.path())).map(|_| ()),
        offline::repair(&dirs(root.path())).map(|_| ()),
        offline::inspect(&dirs(root.path()), RecoveryMode::Strict).map(|_| ()),
    ] {
        assert!(matches!(result, Err(Error::Locked { .. })), "{result:?}");
    }
    drop(ch);
    let missing = offline::verify(&ChannelDirs::new(
        root.path().join("nope"),
        vec![data_dir(root.path())],
    ));
    assert!(
        matches!(&missing, Err(Error::Io { path, .. }) if path.ends_with("nope")),
        "{missing:?}"
    );
}

#[test]
fn inspect_reports_without_changing_a_byte() {
    let root = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(cfg(root.path())).expect("open");
    put_range(&ch, 0..4);
    ch.checkpoint().expect("checkpoint");
    put_range(&ch, 4..6);
    drop(ch);
    let seg = segments(&data_dir(root.path()))
        .into_iter()
        .next()
        .expect("segment");
    let end = SEGMENT_HEADER + (0..6).map(put_len).sum::<u64>() + 2 * COMMIT_LEN;
    patch(&seg, end, &[0xAB; 100]);
    // A leftover temporary segment: an open would remove it.
    fs::write(
        data_dir(root.path()).join("segment-0000000099.log.tmp"),
        b"x",
    )
    .expect("write");
    let before = snapshot(root.path());
    let r = offline::inspect(&dirs(root.path()), RecoveryMode::Strict).expect("inspect");
    assert_eq!(snapshot(root.path()), before, "inspect changed the channel");
    assert_eq!(r.events_queued, 6);
    assert_eq!(r.recovery.torn_tails, 1);
    assert_eq!(r.checkpoint.as_ref().map(|c| c.events), Some(4));
    assert_eq!(r.segments.iter().map(|s| s.live_events).sum::<u64>(), 6);
    assert_eq!(r.oldest.map(|e| e.ptr.offset), Some(SEGMENT_HEADER));
    assert!(r.newest.is_some_and(|n| n.ptr.offset > SEGMENT_HEADER));
    assert_eq!(r.free_space.len(), 2);
    let mut records = Vec::new();
    let problems =
        offline::inspect::dump(&dirs(root.path()), &mut |d| records.push(d)).expect("dump");
    assert_eq!(records.len(), 8);
    assert_eq!(records[0].kind, "put");
    assert!(records[0].detail.contains("i=0"), "{:?}", records[0]);
    assert_eq!(records[4].kind, "commit");
    assert_eq!(records[4].detail, "4 records");
    assert!(problems.iter().all(|p| !p.is_damage()));
    assert_eq!(snapshot(root.path()), before, "dump changed the channel");
}

// ---------------------------------------------------------------------------------------------
// Repair interrupted at every sync.

fn mem_cfg(mem: &MemFs) -> tidegate::FileChannelConfig {
    cfg(Path::new("/ch")).file_system(Arc::new(mem.clone()))
}

fn mem_dirs(mem: &MemFs) -> ChannelDirs {
    dirs(Path::new("/ch")).file_system(Arc::new(mem.clone()))
}

fn mem_drain(mem: &MemFs) -> Result<Vec<u64>, Error> {
    let ch = FileChannel::open(mem_cfg(mem))?;
    Ok(drain(&ch))
}

#[test]
fn repair_interrupted_at_every_sync_never_loses_an_undamaged_event() {
    let mem = MemFs::new();
    let ch = FileChannel::open(mem_cfg(&mem)).expect("open");
    put_range(&ch, 0..5);
    ch.checkpoint().expect("checkpoint");
    put_range(&ch, 5..10);
    put_range(&ch, 10..12);
    drop(ch);
    // Flip a bit in event 6's body (after the checkpoint) and in event 1's (before it).
    let seg = Path::new("/ch/data/segment-0000000001.log");
    let rec1 = SEGMENT_HEADER + put_len(0);
    let rec6 = SEGMENT_HEADER + (0..5).map(put_len).sum::<u64>() + COMMIT_LEN + put_len(5);
    let f = mem.open(seg, true).expect("open segment");
    let mut originals = Vec::new();
    for (rec, id) in [(rec1, 1), (rec6, 6)] {
        let mut b = vec![0u8; put_len(id) as usize];
        f.read_exact_at(&mut b, rec).expect("read");
        originals.push((rec, b.clone()));
        b[HEADER_LEN + 5] ^= 0x10;
        f.write_all_at(
            &b[HEADER_LEN + 5..HEADER_LEN + 6],
            rec + HEADER_LEN as u64 + 5,
        )
        .expect("damage");
    }
    f.sync_data().expect("sync");
    drop(f);
    let base = mem.crash(TornTail::None);
    assert!(matches!(mem_drain(&base), Err(Error::Corrupt { .. })));
    let expected: Vec<u64> = (0..12).filter(|i| *i != 1 && *i != 6).collect();

    let counting = base.crash(TornTail::None);
    let r = offline::repair(&mem_dirs(&counting)).expect("uninterrupted repair");
    assert_eq!((r.events_lost, r.events_restored), (2, 10), "{r:?}");
    let total = counting.syncs();
    assert!(total >= 6, "{total} syncs");

    for k in 0..total {
        for (t, tail) in [TornTail::None, TornTail::Garbage(k), TornTail::Sectors(k)]
            .into_iter()
            .enumerate()
        {
            let img = base.crash(TornTail::None);
            img.crash_after_syncs(Some(k));
            let _ = offline::repair(&mem_dirs(&img));
            let crashed = img.crash(tail);
            let got = match mem_drain(&crashed) {
                Ok(got) => got,
                Err(Error::Corrupt { .. }) => {
                    let r = offline::repair(&mem_dirs(&crashed))
                        .unwrap_or_else(|e| panic!("sync {k}, tail {t}: second repair: {e}"));
                    assert!(r.events_lost <= 2, "{r:?}");
                    mem_drain(&crashed)
                        .unwrap_or_else(|e| panic!("sync {k}, tail {t}: open after repair: {e}"))
                }
                Err(e) => panic!("sync {k}, tail {t}: {e}"),
            };
            assert_eq!(got, expected, "sync {k}, tail {t}");
            // Every damaged byte is still somewhere: in the segment or in a quarantine file.
            let names = crashed.list_dir(Path::new("/ch/data")).expect("list");
            let saved: Vec<quarantine::Quarantined> = names
                .iter()
                .filter(|n| quarantine::is_file_name(n))
                .filter_map(|n| {
                    let f = crashed.open(&Path::new("/ch/data").join(n), false).ok()?;
                    let mut b = vec![0u8; f.len().ok()? as usize];
                    f.read_exact_at(&mut b, 0).ok()?;
                    quarantine::decode(&b).ok()
                })
                .collect();
            let f = crashed.open(seg, false).expect("segment");
            for (rec, orig) in &originals {
                let mut now = vec![0u8; orig.len()];
                f.read_exact_at(&mut now, *rec).expect("read");
                let mut damaged = orig.clone();
                damaged[HEADER_LEN + 5] ^= 0x10;
                let in_segment = now == damaged;
                let in_quarantine = saved.iter().any(|q| {
                    q.offset <= *rec
                        && q.offset + q.bytes.len() as u64 >= rec + damaged.len() as u64
                        && q.bytes[(rec - q.offset) as usize..][..damaged.len()] == damaged[..]
                });
                assert!(
                    in_segment || in_quarantine,
                    "sync {k}, tail {t}: the damaged record at {rec} is gone without a copy"
                );
            }
        }
    }
}

#[test]
fn a_damaged_body_in_a_sealed_segment_is_found_by_verify_and_dropped_by_repair() {
    // Replay checks Put payloads only in the newest segment; the others are checked when their
    // events are taken. verify checks every payload now.
    let root = tempfile::tempdir().expect("tempdir");
    let segs = common::fill_small_segments(root.path());
    let rec1 = SEGMENT_HEADER + put_len(0);
    let body = rec1 + HEADER_LEN as u64 + 4;
    let b = read_range(&segs[0], body, 1)[0];
    patch(&segs[0], body, &[b ^ 0x08]);
    let v = offline::verify(&dirs(root.path())).expect("verify");
    assert!(v.is_damaged(), "{v:?}");
    assert!(
        v.problems.iter().any(|p| p.path == segs[0]
            && p.offset == rec1
            && p.kind == ProblemKind::DamagedRecords),
        "{:?}",
        v.problems
    );
    let r = offline::repair(&dirs(root.path())).expect("repair");
    assert_eq!((r.events_lost, r.events_restored), (1, 199), "{r:?}");
    let ch = FileChannel::open(common::small_segments(root.path())).expect("open");
    let expected: Vec<u64> = (0..200).filter(|i| *i != 1).collect();
    assert_eq!(drain(&ch), expected, "no take meets the damaged event");
}

/// `inspect` and `verify` on a channel that reuses collected segments: the recycled ones are
/// marked, and the bytes after their end markers (the files' earlier contents) are no problem.
#[test]
fn inspect_and_verify_know_recycled_segments() {
    let root = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(cfg(root.path()).recycle_segments(2)).expect("open");
    let big = |i: u64| tidegate::Event::new(vec![b'r'; 3000]).with_header("i", i.to_string());
    let mut next = 0;
    for _ in 0..8 {
        let mut tx = ch.transaction();
        for _ in 0..40 {
            tx.put(big(next)).expect("put");
            next += 1;
        }
        tx.commit().expect("commit");
        assert_eq!(drain(&ch).len(), 40);
        ch.checkpoint().expect("checkpoint");
    }
    put_range(&ch, 0..3);
    drop(ch);
    let r = offline::inspect(&dirs(root.path()), RecoveryMode::Strict).expect("inspect");
    assert_eq!(r.events_queued, 3);
    assert!(
        r.segments.iter().any(|s| s.recycled),
        "a recycled segment is marked: {:?}",
        r.segments
    );
    let v = offline::verify(&dirs(root.path())).expect("verify");
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    assert_eq!(v.strict_open_error, None);
}
