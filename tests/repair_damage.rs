//! `tidegate repair` (and `verify`) on damage found in review: damaged Commit payloads and
//! whole lost transactions are counted, a damaged checkpointed event costs only that event,
//! a zeroed header inside a sealed segment is damage, a segment file cut to nothing, two data
//! directories with repair interrupted at every sync, and a damaged backup checkpoint.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

use common::{cfg, data_dir, drain, ev, flip, put_range, segments};
use tidegate::format::record::{HEADER_LEN, put_payload_len};
use tidegate::offline::{self, ChannelDirs};
use tidegate::{Error, Event, FileChannel};

const SEGMENT_HEADER: u64 = 64;

fn put_len(i: u64) -> u64 {
    HEADER_LEN as u64 + put_payload_len(&ev(i))
}

fn dirs(root: &Path) -> ChannelDirs {
    ChannelDirs::new(root.join("ckpt"), vec![data_dir(root)])
}

/// A Commit record whose 4-byte payload is damaged but whose header (own CRC) is intact: the
/// transaction's five Put records are undamaged and its commit had returned. Repair drops all
/// five, and its report says nothing committed was lost (exit code 0 in the CLI).
#[test]
fn a_damaged_commit_payload_counts_its_transaction_as_lost() {
    let root = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(cfg(root.path())).expect("open");
    put_range(&ch, 0..5); // acknowledged
    put_range(&ch, 5..6); // acknowledged
    drop(ch);
    let seg = segments(&data_dir(root.path())).remove(0);
    let commit_a = SEGMENT_HEADER + (0..5).map(put_len).sum::<u64>();
    flip(&seg, commit_a + HEADER_LEN as u64, 0x01); // the record count, not the header
    assert!(matches!(
        FileChannel::open(cfg(root.path())),
        Err(Error::Corrupt { .. })
    ));
    let r = offline::repair(&dirs(root.path())).expect("repair");
    let ch = FileChannel::open(cfg(root.path())).expect("strict opens after repair");
    let got = drain(&ch);
    let dropped = 6 - got.len() as u64;
    // Either the transaction is restored (its intact Commit header names it), or the report
    // counts its events as not saved.
    assert!(
        got == (0..6).collect::<Vec<_>>() || r.events_lost >= dropped,
        "restored {got:?}; report says events_lost = {} (uncommitted_transactions = {})",
        r.events_lost,
        r.uncommitted_transactions
    );
}

fn big(id: u64, size: usize) -> Event {
    // event size = 8 + body + (8 + 1 + len(id))
    let body = size - 8 - 9 - id.to_string().len();
    Event::new(vec![b'x'; body]).with_header("i", id.to_string())
}

/// e0 (taken), then t1 (a Put of 4012 bytes whose Commit does not fit the same segment: the Put
/// lands in segment 2, its Commit in segment 3) and b1 (segment 4), both acknowledged; then a
/// restart and two checkpoints, so collection runs after the restart. Returns segment 4's path.
fn split_transaction_then_restart(root: &Path) -> std::path::PathBuf {
    let ch = FileChannel::open(split_cfg(root)).expect("open");
    put_range(&ch, 0..1); // e0 in segment 1
    let mut tx = ch.transaction();
    tx.put(big(1000, 3980)).expect("put t1");
    tx.commit().expect("commit t1"); // acknowledged
    let mut tx = ch.transaction();
    let got = tx
        .take_batch(1, std::time::Duration::ZERO)
        .expect("take e0");
    assert_eq!(got.iter().map(common::id_of).collect::<Vec<_>>(), vec![0]);
    tx.commit().expect("commit take");
    let mut tx = ch.transaction();
    tx.put(big(2000, 3900)).expect("put b1");
    tx.commit().expect("commit b1"); // acknowledged
    ch.close().expect("close");
    let ch = FileChannel::open(split_cfg(root)).expect("reopen");
    ch.checkpoint().expect("checkpoint");
    ch.checkpoint().expect("checkpoint");
    ch.close().expect("close");
    let after_gc = segments(&data_dir(root));
    // Segment 3 holds only t1's Commit, but t1 is still queued in segment 2: the commit pin,
    // kept in the checkpoint, outlives the restart, so collection keeps segment 3.
    assert!(
        after_gc
            .iter()
            .any(|p| p.ends_with("segment-0000000003.log")),
        "{after_gc:?}"
    );
    let newest = data_dir(root).join("segment-0000000004.log");
    assert!(after_gc.contains(&newest), "{after_gc:?}");
    newest
}

fn split_cfg(root: &Path) -> tidegate::FileChannelConfig {
    cfg(root).max_segment_size(4096).max_event_size(4000)
}

/// Both checkpoints lost after a restart and a collection: the full replay still finds the
/// Commit record of a transaction split across segments (before commit pins were kept in the
/// checkpoint, collection deleted it after a restart and the full replay dropped t1).
#[test]
fn a_commit_pin_survives_a_restart_so_a_full_replay_keeps_a_split_transaction() {
    let root = tempfile::tempdir().expect("tempdir");
    split_transaction_then_restart(root.path());
    for c in common::checkpoints(&root.path().join("ckpt")) {
        flip(&c, 20, 0xFF);
    }
    let ch = FileChannel::open(split_cfg(root.path())).expect("full replay");
    assert!(ch.recovery_report().full_replay);
    assert_eq!(drain(&ch), vec![1000, 2000]);
}

/// One damaged record header of an event the checkpoint lists: replay decides about that event
/// (skip mode drops it) instead of rejecting the checkpoint, so repair keeps every other event.
#[test]
fn a_damaged_header_of_a_checkpointed_event_loses_only_that_event() {
    let root = tempfile::tempdir().expect("tempdir");
    let small = split_cfg;
    let newest = split_transaction_then_restart(root.path());
    flip(&newest, SEGMENT_HEADER + 4, 0x01); // b1's record header
    assert!(matches!(
        FileChannel::open(small(root.path())),
        Err(Error::Corrupt { .. })
    ));
    let r = offline::repair(&dirs(root.path())).expect("repair");
    let ch = FileChannel::open(small(root.path())).expect("strict opens after repair");
    let got = drain(&ch);
    assert_eq!(
        got,
        vec![1000],
        "t1 is undamaged and was acknowledged; repair report: {r:?}"
    );
}

/// A zeroed record header at a record boundary (a zeroed sector or page that starts where a
/// record starts) in a sealed segment reads as the end marker: `verify` stops walking that
/// segment there and reports nothing, although valid, committed records follow it.
#[test]
fn verify_reports_a_zeroed_record_header_in_a_sealed_segment_as_damage() {
    let root = tempfile::tempdir().expect("tempdir");
    let segs = common::fill_small_segments(root.path());
    // The first record of the second transaction (events 10..20), in the first segment.
    let commit_len = HEADER_LEN as u64 + 4;
    let rec = SEGMENT_HEADER + (0..10).map(put_len).sum::<u64>() + commit_len;
    let f = OpenOptions::new().write(true).open(&segs[0]).expect("open");
    f.write_all_at(&[0u8; HEADER_LEN], rec).expect("zero");
    f.sync_all().expect("sync");
    drop(f);
    let v = offline::verify(&dirs(root.path())).expect("verify");
    let restored = FileChannel::open(common::small_segments(root.path()))
        .map(|ch| drain(&ch).len())
        .ok();
    assert!(
        v.is_damaged(),
        "verify finds nothing; a strict open restores {restored:?} of 199 undamaged events; problems {:?}",
        v.problems
    );
}

// ---------------------------------------------------------------------------------------------
// Two data directories, damage in both (a body in each, a segment header), repair interrupted
// at every sync.

use std::sync::Arc;
use tidegate::format::quarantine;
use tidegate::io::{FileSystem, MemFs, TornTail};

fn two_dir_cfg(mem: &MemFs) -> tidegate::FileChannelConfig {
    tidegate::FileChannelConfig::new("/ch/ckpt", vec!["/ch/d0", "/ch/d1"])
        .minimum_required_space(1 << 20)
        .max_segment_size(64 << 10)
        .max_event_size(8 << 10)
        .keep_alive(std::time::Duration::from_millis(50))
        .file_system(Arc::new(mem.clone()))
}

fn two_dir_dirs(mem: &MemFs) -> ChannelDirs {
    ChannelDirs::new("/ch/ckpt", vec!["/ch/d0", "/ch/d1"]).file_system(Arc::new(mem.clone()))
}

fn read_all(mem: &MemFs, path: &Path) -> Vec<u8> {
    let f = mem.open(path, false).expect("open");
    let mut b = vec![0u8; f.len().expect("len") as usize];
    f.read_exact_at(&mut b, 0).expect("read");
    b
}

fn segment_files(mem: &MemFs) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for d in ["/ch/d0", "/ch/d1"] {
        for n in mem.list_dir(Path::new(d)).expect("list") {
            if n.starts_with("segment-") && n.ends_with(".log") {
                out.push(Path::new(d).join(n));
            }
        }
    }
    out.sort();
    out
}

/// Flips a byte of event `id`'s body; returns (segment, offset of the flipped byte).
fn flip_body(mem: &MemFs, id: u64) -> (std::path::PathBuf, u64) {
    let body = format!("event-{id}");
    let mut needle = (body.len() as u32).to_le_bytes().to_vec();
    needle.extend_from_slice(body.as_bytes());
    for seg in segment_files(mem) {
        let bytes = read_all(mem, &seg);
        if let Some(pos) = bytes.windows(needle.len()).position(|w| w == needle) {
            let at = (pos + 4) as u64;
            let f = mem.open(&seg, true).expect("open");
            f.write_all_at(&[bytes[pos + 4] ^ 0x20], at).expect("flip");
            f.sync_data().expect("sync");
            return (seg, at);
        }
    }
    panic!("event {id} not found");
}

fn mem_open_drain(mem: &MemFs) -> Result<Vec<u64>, Error> {
    let ch = FileChannel::open(two_dir_cfg(mem))?;
    Ok(drain(&ch))
}

#[test]
fn repair_of_two_data_dirs_interrupted_at_every_sync() {
    let mem = MemFs::new();
    let ch = FileChannel::open(two_dir_cfg(&mem)).expect("open");
    put_range(&ch, 0..5);
    put_range(&ch, 5..10);
    ch.checkpoint().expect("checkpoint");
    for b in 2..8 {
        put_range(&ch, b * 5..b * 5 + 5);
    }
    drop(ch);
    let damaged = [1u64, 6, 27, 33];
    for id in damaged {
        flip_body(&mem, id);
    }
    // And the segment header of the second directory's first segment.
    let d1 = segment_files(&mem)
        .into_iter()
        .find(|p| p.starts_with("/ch/d1"))
        .expect("a segment in d1");
    let f = mem.open(&d1, true).expect("open");
    f.write_all_at(b"X", 0).expect("damage header");
    f.sync_data().expect("sync");
    drop(f);
    let base = mem.crash(TornTail::None);
    assert!(matches!(mem_open_drain(&base), Err(Error::Corrupt { .. })));
    let expected: Vec<u64> = (0..40).filter(|i| !damaged.contains(i)).collect();

    let counting = base.crash(TornTail::None);
    let r = offline::repair(&two_dir_dirs(&counting)).expect("uninterrupted repair");
    assert_eq!(r.events_restored, expected.len() as u64, "{r:?}");
    assert_eq!((r.headers_rewritten, r.events_lost), (1, 4), "{r:?}");
    assert_eq!(mem_open_drain(&counting).expect("opens"), expected);
    let total = counting.syncs();
    assert!(total >= 10, "{total} syncs");
    for k in 0..total {
        for (t, tail) in [TornTail::None, TornTail::Garbage(k), TornTail::Sectors(k)]
            .into_iter()
            .enumerate()
        {
            let img = base.crash(TornTail::None);
            img.crash_after_syncs(Some(k));
            let _ = offline::repair(&two_dir_dirs(&img));
            let crashed = img.crash(tail);
            let got = match mem_open_drain(&crashed) {
                Ok(got) => got,
                Err(Error::Corrupt { .. }) => {
                    offline::repair(&two_dir_dirs(&crashed))
                        .unwrap_or_else(|e| panic!("sync {k}, tail {t}: second repair: {e}"));
                    mem_open_drain(&crashed)
                        .unwrap_or_else(|e| panic!("sync {k}, tail {t}: open after repair: {e}"))
                }
                Err(e) => panic!("sync {k}, tail {t}: {e}"),
            };
            assert_eq!(got, expected, "sync {k}, tail {t}");
            // A third run finds nothing to do, or only finishes the patching.
            let again = offline::repair(&two_dir_dirs(&crashed)).expect("repair again");
            assert_eq!(again.events_lost, 0, "sync {k}, tail {t}: {again:?}");
            assert_eq!(mem_open_drain(&crashed).expect("opens"), Vec::<u64>::new());
            // Every quarantine file decodes.
            for d in ["/ch/d0", "/ch/d1"] {
                for n in crashed.list_dir(Path::new(d)).expect("list") {
                    if quarantine::is_file_name(&n) {
                        let b = read_all(&crashed, &Path::new(d).join(&n));
                        assert!(quarantine::decode(&b).is_ok(), "sync {k}: {n}");
                    }
                }
            }
        }
    }
}

/// A one-event transaction whose Put header is damaged, its Commit intact: the event was
/// acknowledged and is gone, but the kind of the damaged record is unknown and the
/// transaction has no other Put, so repair does not count it (exit code 0 in the CLI); and
/// `records_lost` counts the 2^32 jump of the sequence counter at open as lost records.
#[test]
fn a_lost_event_of_a_one_event_transaction_is_counted() {
    let root = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(cfg(root.path())).expect("open");
    put_range(&ch, 0..1);
    put_range(&ch, 1..2);
    drop(ch);
    let seg = segments(&data_dir(root.path())).remove(0);
    flip(&seg, SEGMENT_HEADER + 4, 0x01); // event 0's record header
    let r = offline::repair(&dirs(root.path())).expect("repair");
    let ch = FileChannel::open(cfg(root.path())).expect("opens");
    assert_eq!(drain(&ch), vec![1]);
    // One record (a Put) was lost; the sequence counter's jump at open (2^32) is no record.
    assert_eq!((r.events_lost, r.records_lost), (1, 1), "{r:?}");
}

/// A segment file cut to zero bytes (file-system damage): verify should report it, and repair
/// should either fix the channel or say what it cannot do; it must not leave it unopenable
/// with no way forward.
#[test]
fn a_segment_cut_to_zero_bytes_is_reported_and_repaired() {
    let root = tempfile::tempdir().expect("tempdir");
    let segs = common::fill_small_segments(root.path());
    let f = OpenOptions::new().write(true).open(&segs[1]).expect("open");
    f.set_len(0).expect("truncate");
    f.sync_all().expect("sync");
    drop(f);
    let open = FileChannel::open(common::small_segments(root.path())).map(|_| ());
    let v = offline::verify(&dirs(root.path()));
    let r = offline::repair(&dirs(root.path()));
    let after = FileChannel::open(common::small_segments(root.path())).map(|ch| drain(&ch).len());
    assert!(
        matches!(v, Ok(ref v) if v.is_damaged()) && r.is_ok() && after.is_ok(),
        "strict open: {open:?}\nverify: {:?}\nrepair: {:?}\nopen after repair: {after:?}",
        v.map(|v| v.problems),
        r.map(|r| (r.events_restored, r.events_lost))
    );
}

/// A damaged backup checkpoint (the newest one is fine): verify reports damage (exit code 1),
/// and repair clears it (a check that passes).
#[test]
fn after_repair_verify_is_clean_when_only_the_backup_checkpoint_is_damaged() {
    let root = tempfile::tempdir().expect("tempdir");
    let ch = FileChannel::open(cfg(root.path())).expect("open");
    put_range(&ch, 0..5);
    ch.checkpoint().expect("checkpoint");
    put_range(&ch, 5..10);
    ch.checkpoint().expect("checkpoint");
    drop(ch);
    let cks = common::checkpoints(&root.path().join("ckpt"));
    assert!(cks.len() >= 2, "{cks:?}");
    flip(&cks[1], 20, 0x01); // the older one
    let v = offline::verify(&dirs(root.path())).expect("verify");
    assert!(v.is_damaged(), "{:?}", v.problems);
    let r = offline::repair(&dirs(root.path())).expect("repair");
    let after = offline::verify(&dirs(root.path())).expect("verify");
    assert!(
        !after.is_damaged(),
        "repair: nothing_to_do = {}; verify after repair: {:?}",
        r.nothing_to_do(),
        after.problems
    );
}
