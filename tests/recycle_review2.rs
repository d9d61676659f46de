//! Second review of segment recycling (DESIGN.md §4.6): a session whose records a crash lost
//! leaves no trace of its counter (an open now never appends to the recycled segment it finds
//! newest), and a kept file is trusted only with its stamp. Both tests failed before their
//! fixes.

#![expect(clippy::unwrap_used, reason = "test code: a panic is a test failure")]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{Rng, data_dir, drain, id_of};
use tidegate::io::{Cut, FaultyFs, FileSystem, MemFs, TornTail};
use tidegate::{FileChannel, FileChannelConfig};

fn base(root: &Path, recycle: u32) -> FileChannelConfig {
    common::tiny_recycling(root, recycle)
}

fn aligned_ev(i: u64, body: usize) -> tidegate::Event {
    let mut r = Rng(i * 2654435761 + 1);
    let b: Vec<u8> = (0..body).map(|_| r.next() as u8).collect();
    tidegate::Event::new(b).with_header("i", i.to_string())
}

fn big_ev(i: u64) -> tidegate::Event {
    tidegate::Event::new(vec![b'x'; 300]).with_header("i", i.to_string())
}

fn put_one(ch: &FileChannel, e: tidegate::Event) {
    let mut tx = ch.transaction();
    tx.put(e).expect("put");
    tx.commit().expect("commit");
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

/// `(id, bytes)` of every `segment-N.log` of `dir`, by id.
fn segs(mem: &MemFs, dir: &Path) -> Vec<(u32, Vec<u8>)> {
    let mut v: Vec<(u32, Vec<u8>)> = mem
        .list_dir(dir)
        .unwrap()
        .into_iter()
        .filter_map(|n| {
            let id: u32 = n
                .strip_prefix("segment-")?
                .strip_suffix(".log")?
                .parse()
                .ok()?;
            Some((id, mem.read_live(&dir.join(&n)).unwrap()))
        })
        .collect();
    v.sort_by_key(|(id, _)| *id);
    v
}

/// A version 3 header whose end marker (kind 6, length 0, seq = floor, txn = id) sits at 64.
fn v3_ends_at_64(id: u32, b: &[u8]) -> bool {
    b[8] == 3
        && b[64 + 12] == 6
        && b[64 + 8..64 + 12] == [0, 0, 0, 0]
        && u64_at(b, 64 + 16) == u64_at(b, 32)
        && u64_at(b, 64 + 24) == u64::from(id)
}

/// Body size that makes a one-event put transaction (Put + Commit) exactly `txn_len` bytes.
fn body_for(txn_len: usize) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mem = MemFs::new();
    let ch = FileChannel::open(base(root, 0).file_system(Arc::new(mem.clone()))).unwrap();
    put_one(&ch, aligned_ev(1000, txn_len - 150));
    let data = data_dir(root);
    let seg = &segs(&mem, &data)[0].1;
    let end = (64..seg.len())
        .find(|o| seg[*o..*o + 32].iter().all(|b| *b == 0))
        .unwrap();
    txn_len - 150 + (txn_len - (end + 3 - 64))
}

/// An empty recycled segment M, the newest of its directory, that session 1 closed with (its
/// spare, registered at close); an acknowledged event E is in the segment before it. Returns
/// M's id and its floor.
fn session_with_empty_recycled_spare(mem: &MemFs, root: &Path, e: tidegate::Event) -> (u32, u64) {
    let data = data_dir(root);
    let ch = FileChannel::open(base(root, 2).file_system(Arc::new(mem.clone()))).unwrap();
    for i in 0..40 {
        put_one(&ch, big_ev(i));
    }
    assert_eq!(drain(&ch).len(), 40);
    ch.checkpoint().unwrap();
    ch.checkpoint().unwrap();
    // The active segment (zero-filled, its log at 1860 of 4096) goes past half with one put:
    // its spare is started from the pool. E fits too; close before any roll (the spare is
    // registered at close).
    put_one(&ch, big_ev(100));
    assert_eq!(drain(&ch), vec![100]);
    put_one(&ch, e);
    ch.close().unwrap();
    let s = segs(mem, &data);
    let (id, b) = s.last().unwrap();
    assert!(
        v3_ends_at_64(*id, b),
        "the newest segment is not an empty recycled one"
    );
    (*id, u64_at(b, 32))
}

/// COUNTER_GAP (src/replay.rs) is meant to put every new sequence number above whatever a crash
/// left past the end of the log. It jumps from the highest number the open *finds*; a session
/// whose records were all lost at a crash (and that wrote no checkpoint) leaves no trace of its
/// counter, so the next session hands out the same numbers again. In a zero-filled segment the
/// leftovers are zeroed at open; in a recycled one they stay behind the end marker, and the
/// next session's records reuse their sequence numbers. When that session's end marker is then
/// lost at a crash, the leftovers continue the chain with increasing sequence numbers above
/// the floor, and replay applies them.
///
/// Before the fix, here: session 2 put X at 64 of the (empty, recycled) segment M and, while X's fsync
/// is in flight, takes E (an event acknowledged in session 1): the Take and its Commit land at
/// 512. The crash keeps the sector at 512 but not the one at 0 (write-back order is free,
/// DESIGN.md §11): open 3 ends M's log at its old end marker at 64 and redelivers E (its take
/// was never durable). Session 3 starts its counter where session 2 started, puts C at 64..512
/// (the numbers X had), end marker at 512; a crash before C's fsync keeps C's sector but not
/// the marker. Open 4 replays C, then session 2's Take of E (numbers above C's): E, acknowledged
/// and never durably taken, was gone. Now session 2 appends to a new segment (M stays sealed at
/// its end marker), and the same crashes there leave E in the queue.
#[test]
fn a_take_of_a_lost_session_never_comes_back_from_behind_an_end_marker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let data = data_dir(root);
    let body = body_for(448);
    let mem = MemFs::new();
    let e_id = 7777;
    let (m, _floor) = session_with_empty_recycled_spare(&mem, root, big_ev(e_id));
    let m_path = data.join(format!("segment-{m:010}.log"));
    let m_before = mem.read_live(&m_path).unwrap();

    // Session 2 (fsync always): X at 64 of the segment it appends to (its fsync held), then
    // the take of E at 512. (The fix: that segment is a new one, not M.)
    let img = {
        let faulty = FaultyFs::new(Arc::new(mem.clone()));
        let ch = FileChannel::open(base(root, 2).file_system(Arc::new(faulty.clone()))).unwrap();
        let (active, _) = segs(&mem, &data).pop().unwrap();
        assert_ne!(
            active, m,
            "an open appended to the recycled segment it found newest"
        );
        let active_path = data.join(format!("segment-{active:010}.log"));
        let before = mem.read_live(&active_path).unwrap();
        faulty.faults().hold_next_file_sync();
        let c = ch.clone();
        let x = std::thread::spawn(move || {
            let mut tx = c.transaction();
            tx.put(aligned_ev(3000, body)).unwrap();
            let _ = tx.commit();
        });
        assert!(faulty.faults().wait_for_held_sync(Duration::from_secs(10)));
        let c = ch.clone();
        let t = std::thread::spawn(move || {
            let mut tx = c.transaction();
            let evs = tx.take_batch(10, Duration::ZERO).unwrap();
            assert_eq!(evs.iter().map(id_of).collect::<Vec<_>>(), vec![e_id]);
            let _ = tx.commit();
        });
        let mut waited = 0;
        while mem.read_live(&active_path).unwrap()[512 + 12] != 2 {
            std::thread::sleep(Duration::from_millis(5));
            waited += 1;
            assert!(waited < 2000, "the take was not written at 512");
        }
        let live = mem.read_live(&active_path).unwrap();
        let img = (0..4000)
            .map(|seed| mem.crash(TornTail::Sectors(seed)))
            .find(|img| {
                let b = img.read_live(&active_path).unwrap();
                b[64..96] == before[64..96] && b[512..640] == live[512..640]
            })
            .expect("a seed that keeps the sector at 512 but not the one at 0");
        assert_eq!(mem.read_live(&m_path).unwrap(), m_before, "M was written");
        faulty.faults().release_held_sync();
        x.join().unwrap();
        t.join().unwrap();
        drop(ch);
        img
    };
    // Open 3 redelivers E: its take was never durable (checked on a copy of the image).
    {
        let copy = img.crash(TornTail::None);
        let ch = FileChannel::open(base(root, 2).file_system(Arc::new(copy))).unwrap();
        assert_eq!(drain(&ch), vec![e_id], "open 3 should redeliver E");
    }
    // Session 3: E is back (its take was lost). C at 64..512, its fsync held; the crash keeps
    // the bytes below 512 (C), not the end marker at 512.
    let img2 = {
        let faulty = FaultyFs::new(Arc::new(img.clone()));
        let ch = FileChannel::open(base(root, 2).file_system(Arc::new(faulty.clone()))).unwrap();
        faulty.faults().hold_next_file_sync();
        let c = ch.clone();
        let h = std::thread::spawn(move || {
            let mut tx = c.transaction();
            tx.put(aligned_ev(4000, body)).unwrap();
            let _ = tx.commit();
        });
        assert!(faulty.faults().wait_for_held_sync(Duration::from_secs(10)));
        let img2 = img.crash(TornTail::Sector512(Cut::At(512)));
        faulty.faults().release_held_sync();
        h.join().unwrap();
        drop(ch);
        img2
    };
    // Open 4: E was acknowledged in session 1 and never durably taken.
    let ch = FileChannel::open(base(root, 2).file_system(Arc::new(img2))).unwrap();
    let got = drain(&ch);
    assert!(
        got.contains(&e_id),
        "acknowledged event {e_id} lost: a take written in a crashed session came back (restored {got:?})"
    );
}

/// A kept file is trusted only with an intact stamp, whose mark (kind 7) no segment holds: a
/// file renamed `.free` whose stamp a crash lost may hold a recycled segment's own header and
/// end marker (an empty recycled segment), whose floor does not bound what its later sectors
/// hold. Such a file is deleted at open; a stamped one is kept.
#[test]
fn a_free_file_is_kept_only_with_its_stamp_not_a_segments_own_header() {
    use tidegate::format::record::{end_marker, free_stamp_marker};
    use tidegate::format::segment_header::{SegmentHeader, encode};
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let data = data_dir(root);
    FileChannel::open(base(root, 2))
        .expect("open")
        .close()
        .expect("close");
    let file = |id: u32, mark: [u8; 32]| {
        let mut b = encode(&SegmentHeader::recycled(id, 1, 5));
        b.extend_from_slice(&mark);
        b.resize(4096, 0xAB);
        std::fs::write(data.join(format!("segment-{id:010}.log.free")), b).expect("write");
    };
    file(90, end_marker(90, 5)); // a recycled segment's own header and end marker: no stamp
    file(91, free_stamp_marker(91, 5)); // stamped
    let ch = FileChannel::open(base(root, 2)).expect("open");
    let exists = |id: u32| data.join(format!("segment-{id:010}.log.free")).exists();
    assert!(!exists(90), "an unstamped free file was kept");
    assert!(exists(91), "a stamped free file was deleted");
    ch.close().expect("close");
}
