//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod observed;

use std::path::{Path, PathBuf};
use std::time::Duration;

use tidegate::{Error, Event, FileChannel, FileChannelConfig};

/// A config over `root/ckpt` and `root/data`, with small segments so tests roll often.
pub fn cfg(root: &Path) -> FileChannelConfig {
    FileChannelConfig::new(root.join("ckpt"), vec![root.join("data")])
        .minimum_required_space(1 << 20)
        .max_segment_size(64 << 10)
        .max_event_size(8 << 10)
        .keep_alive(Duration::from_millis(50))
}

pub fn data_dir(root: &Path) -> PathBuf {
    root.join("data")
}

pub fn ev(i: u64) -> Event {
    Event::new(format!("event-{i}").into_bytes()).with_header("i", i.to_string())
}

pub fn id_of(e: &Event) -> u64 {
    e.headers()
        .get("i")
        .and_then(|v| v.parse().ok())
        .expect("test event has an id header")
}

/// Puts and commits events `range` in one transaction.
pub fn put_range(ch: &FileChannel, range: std::ops::Range<u64>) {
    let mut tx = ch.transaction();
    for i in range {
        tx.put(ev(i)).expect("put");
    }
    tx.commit().expect("commit");
}

/// Takes and commits everything, returning the ids in order.
pub fn drain(ch: &FileChannel) -> Vec<u64> {
    drain_ids(ch, id_of)
}

/// Takes and commits everything, returning `id(event)` for each, in order.
pub fn drain_ids(ch: &FileChannel, id: fn(&Event) -> u64) -> Vec<u64> {
    let mut out = Vec::new();
    loop {
        let mut tx = ch.transaction();
        let evs = tx.take_batch(1000, Duration::ZERO).expect("take");
        if evs.is_empty() {
            tx.commit().expect("commit");
            return out;
        }
        out.extend(evs.iter().map(id));
        tx.commit().expect("commit");
    }
}

/// Takes everything in strict mode, committing each batch; returns the ids (`id` checks each
/// event) and the (path, offset, message) of every `Error::Corrupt` a take reported.
pub fn take_all_reporting_corruption(
    ch: &FileChannel,
    id: fn(&Event) -> u64,
) -> (Vec<u64>, Vec<(PathBuf, u64, String)>) {
    let (mut ids, mut errors) = (Vec::new(), Vec::new());
    loop {
        let mut tx = ch.transaction();
        match tx.take_batch(1000, Duration::ZERO) {
            Ok(evs) if evs.is_empty() => {
                tx.commit().expect("commit");
                return (ids, errors);
            }
            Ok(evs) => ids.extend(evs.iter().map(id)),
            Err(Error::Corrupt {
                path,
                offset,
                source,
            }) => errors.push((path, offset, source.to_string())),
            Err(e) => panic!("take failed: {e}"),
        }
        tx.commit().expect("commit");
    }
}

/// Segment files in a directory, sorted.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    v.sort();
    v
}

/// Checkpoint files, newest first.
pub fn checkpoints(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("checkpoint-"))
        })
        .collect();
    v.sort();
    v.reverse();
    v
}

/// [`cfg`] with 4 KiB segments, so that a few hundred small events span several segments.
pub fn small_segments(root: &Path) -> FileChannelConfig {
    cfg(root).max_segment_size(4096).max_event_size(1024)
}

/// Puts events 0..200 in transactions of 10 on a [`small_segments`] channel and drops it without
/// a close (a crash): at least three segments, the older ones sealed. Returns the segments.
pub fn fill_small_segments(root: &Path) -> Vec<PathBuf> {
    let ch = FileChannel::open(small_segments(root)).expect("open");
    for b in 0..20 {
        put_range(&ch, b * 10..b * 10 + 10);
    }
    drop(ch);
    let segs = segments(&data_dir(root));
    assert!(segs.len() >= 3, "{segs:?}");
    segs
}

/// XORs the byte at `offset` of the file at `path` with `mask`, then syncs the file: damage on
/// disk for recovery tests.
pub fn flip(path: &Path, offset: u64, mask: u8) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open");
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).expect("read");
    f.write_all_at(&[b[0] ^ mask], offset).expect("write");
    f.sync_all().expect("sync");
}

/// splitmix64: a seeded generator for test workloads (the same seed, the same workload).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The body of event `id` for crash workloads: names the id and has an id-dependent length
/// (16..~700 bytes), so segments roll every few dozen events and large put transactions spill.
pub fn varied_body(id: u64) -> Vec<u8> {
    let len = 16 + (id.wrapping_mul(2_654_435_761) % 680) as usize;
    let mut b = format!("event-{id}:").into_bytes();
    b.extend((0..len).map(|i| (id as usize + i) as u8));
    b
}

/// Event `id` with [`varied_body`] and an `i` header.
pub fn varied_event(id: u64) -> Event {
    Event::new(varied_body(id)).with_header("i", id.to_string())
}

/// The id of an event made by [`varied_event`], after checking that its body is intact.
pub fn varied_id(e: &Event) -> u64 {
    let id = id_of(e);
    assert_eq!(
        e.body(),
        varied_body(id).as_slice(),
        "body of event {id} damaged"
    );
    id
}

/// [`cfg`] with 4 KiB segments (events up to 1 KiB), `recycle` files kept for reuse, and no
/// checkpoint but those the test asks for: segments roll, get collected and get reused
/// within a few events.
pub fn tiny_recycling(root: &Path, recycle: u32) -> FileChannelConfig {
    cfg(root)
        .max_segment_size(4096)
        .max_event_size(1024)
        .recycle_segments(recycle)
        .checkpoint_interval(Duration::from_secs(3600))
        .checkpoint_on_close(false)
}
