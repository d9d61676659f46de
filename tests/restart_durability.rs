//! Durability across a restart: a process crash keeps unsynced bytes in the page cache, replay
//! reads them as valid, and the next session may continue in a newer (spare) segment or only
//! checkpoint. Replay therefore syncs each directory's newest non-empty segment (and any after
//! it) at open, so that "every older segment was synced before the log wrote past it" (which
//! lets replay skip the payload CRCs of older segments) and "a checkpoint never refers to data
//! that is not durable" hold across restarts too. Found in review; each test fails without the
//! sync in `replay::recover`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tidegate::io::{FileSystem, MemFs, TornTail};
use tidegate::{Event, FileChannel, FileChannelConfig, FsyncPolicy};

const DATA: &str = "/tg/data";

fn cfg(fs: &MemFs, fsync: FsyncPolicy) -> FileChannelConfig {
    FileChannelConfig::new("/tg/ckpt", vec![PathBuf::from(DATA)])
        .file_system(Arc::new(fs.clone()))
        .minimum_required_space(1 << 20)
        .max_segment_size(16 << 10)
        .max_event_size(4 << 10)
        .checkpoint_interval(Duration::from_secs(3600))
        .checkpoint_on_close(false)
        .fsync(fsync)
}

fn ev(i: u64, size: usize) -> Event {
    Event::new(vec![b'a' + (i % 26) as u8; size]).with_header("i", i.to_string())
}

fn id(e: &Event) -> u64 {
    e.headers()
        .get("i")
        .and_then(|v| v.parse().ok())
        .expect("id")
}

/// Segment file names in the data dir (finished ones only), sorted.
fn segment_names(fs: &MemFs) -> Vec<String> {
    let mut v: Vec<String> = fs
        .list_dir(Path::new(DATA))
        .expect("list")
        .into_iter()
        .filter(|n| n.ends_with(".log"))
        .collect();
    v.sort();
    v
}

/// Puts events 0..15 (one per transaction; more than half of the first segment), then waits for
/// the background thread to finish the spare segment (its rename made durable).
fn fill_past_half_and_wait_for_the_spare(ch: &FileChannel, fs: &MemFs) -> u64 {
    let n = 15;
    for i in 0..n {
        let mut tx = ch.transaction();
        tx.put(ev(i, 500)).expect("put");
        tx.commit().expect("commit");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while segment_names(fs).len() < 2 || fs.unsynced_dir_ops() > 0 {
        assert!(
            Instant::now() < deadline,
            "the spare segment never appeared"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    n
}

fn drain_all(ch: &FileChannel) -> Result<Vec<u64>, tidegate::Error> {
    let mut out = Vec::new();
    loop {
        let mut tx = ch.transaction();
        let evs = tx.take_batch(1000, Duration::ZERO)?;
        if evs.is_empty() {
            tx.commit()?;
            return Ok(out);
        }
        out.extend(evs.iter().map(id));
        tx.commit()?;
    }
}

/// fsync = always. Session 1 crashes (process) between a commit's write and its sync; session 2
/// replays it (allowed: the commit had not returned), continues in the spare segment and syncs
/// only that one; a power loss then tears the unsynced Put in the older segment while its
/// Commit survives (DESIGN.md §11: unsynced writes may be lost or reordered). Replay treats the
/// older segment as sealed and queues the torn event; the take then reports it as corrupt.
/// Expected: no crash-torn record is ever delivered as corruption, i.e. session 2 makes the
/// segment it replayed durable before the log moves past it.
#[test]
fn a_segment_left_unsynced_by_a_process_crash_is_synced_before_the_log_writes_past_it() {
    let fs = MemFs::new();
    let ch = FileChannel::open(cfg(&fs, FsyncPolicy::Always)).expect("open 1");
    let n = fill_past_half_and_wait_for_the_spare(&ch, &fs);
    let first = PathBuf::from(DATA).join(&segment_names(&fs)[0]);
    let before = fs.read_live(&first).expect("live");
    // The next sync fails: the commit's bytes reach the page cache, not the disk.
    fs.crash_after_syncs(Some(fs.syncs()));
    let mut tx = ch.transaction();
    tx.put(ev(n, 3000)).expect("put");
    assert!(tx.commit().is_err(), "the sync fails");
    let after = fs.read_live(&first).expect("live");
    drop(ch); // process crash
    fs.crash_after_syncs(None);
    let lo = before
        .iter()
        .zip(&after)
        .position(|(a, b)| a != b)
        .expect("written") as u64;
    let hi = before
        .iter()
        .zip(&after)
        .rposition(|(a, b)| a != b)
        .expect("written") as u64
        + 1;

    // Session 2: the same page cache. It replays the unacknowledged commit and goes on in the
    // spare segment.
    let ch = FileChannel::open(cfg(&fs, FsyncPolicy::Always)).expect("open 2");
    assert_eq!(ch.stats().size, n + 1);
    let mut tx = ch.transaction();
    tx.put(ev(n + 1, 10)).expect("put");
    tx.commit().expect("commit (synced)");
    drop(ch);

    // Power loss: of the unsynced bytes of the first segment, the sector holding the Put's
    // header and the sectors holding its Commit survive; the ones between are lost.
    let img = fs.crash(TornTail::None);
    let f = img.open(&first, true).expect("open segment");
    let sector = |o: u64| o & !511;
    let head = sector(lo)..sector(lo) + 512;
    let tail = sector(hi - 36)..hi;
    assert!(head.end < tail.start, "a payload sector is lost");
    for r in [head, tail] {
        f.write_all_at(&after[r.start as usize..r.end as usize], r.start)
            .expect("write");
    }
    f.sync_data().expect("sync");
    drop(f);

    let ch = FileChannel::open(cfg(&img, FsyncPolicy::Always)).expect("open 3 (strict)");
    let got = drain_all(&ch).expect("no event is damaged: nothing but crashes happened");
    assert_eq!(got, (0..n + 2).collect::<Vec<_>>());
}

/// fsync = never: "a power loss may lose everything since the last checkpoint" and "checkpoints
/// sync the log first under every policy". Session 1 commits 15 events (not synced) and the
/// process crashes; session 2 opens and writes a checkpoint (which syncs nothing: it appended
/// nothing) whose queue names them; a power loss then loses them and the checkpoint is rejected.
#[test]
fn a_checkpoint_after_a_restart_never_names_bytes_that_are_not_durable() {
    let fs = MemFs::new();
    let ch = FileChannel::open(cfg(&fs, FsyncPolicy::Never)).expect("open 1");
    let n = fill_past_half_and_wait_for_the_spare(&ch, &fs);
    drop(ch); // process crash
    let ch = FileChannel::open(cfg(&fs, FsyncPolicy::Never)).expect("open 2");
    assert_eq!(ch.stats().size, n);
    ch.checkpoint().expect("checkpoint");
    drop(ch);
    let img = fs.crash(TornTail::None);
    let ch = FileChannel::open(cfg(&img, FsyncPolicy::Never)).expect("open 3");
    assert!(
        ch.recovery_report().checkpoint_fallbacks.is_empty(),
        "{:?}",
        ch.recovery_report().checkpoint_fallbacks
    );
    assert_eq!(drain_all(&ch).expect("drain"), (0..n).collect::<Vec<_>>());
}

/// The same without a spare segment: the log goes on in the segment it replayed, but the
/// checkpoint's sync covers only what this session appended (nothing).
#[test]
fn a_checkpoint_right_after_a_restart_never_names_bytes_that_are_not_durable() {
    let fs = MemFs::new();
    let ch = FileChannel::open(cfg(&fs, FsyncPolicy::Never)).expect("open 1");
    for i in 0..3 {
        let mut tx = ch.transaction();
        tx.put(ev(i, 100)).expect("put");
        tx.commit().expect("commit");
    }
    assert_eq!(segment_names(&fs).len(), 1, "no spare");
    drop(ch); // process crash
    let ch = FileChannel::open(cfg(&fs, FsyncPolicy::Never)).expect("open 2");
    ch.checkpoint().expect("checkpoint");
    drop(ch);
    let ch = FileChannel::open(cfg(&fs.crash(TornTail::None), FsyncPolicy::Never)).expect("open 3");
    assert!(
        ch.recovery_report().checkpoint_fallbacks.is_empty(),
        "{:?}",
        ch.recovery_report().checkpoint_fallbacks
    );
    assert_eq!(drain_all(&ch).expect("drain"), vec![0, 1, 2]);
}
