//! Per-transaction batch compression (PutBatch records, DESIGN.md §3.5): round trips under
//! every combination of codec and encryption, mixed segments, partial takes from a batch with a
//! crash or a rollback, a checkpoint holding pointers into batches, capacity accounting, and
//! tampering with a batch record's header, count, ciphertext and tag.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use tidegate::at_rest::{Compression, EncryptionConfig, generate_key_file};
use tidegate::format::record::{self, HEADER_LEN, Kind, RecordHeader};
use tidegate::format::{BATCH_FORMAT_VERSION, FORMAT_VERSION, segment_header};
use tidegate::{Error, Event, FileChannel, FileChannelConfig};

/// A realistic ~200-byte access-log line.
fn line(i: u64) -> Vec<u8> {
    format!(
        "10.0.{}.{} - - [24/Nov/2026:10:{:02}:{:02} +0000] \"GET /api/v1/orders/{i}?page={} HTTP/1.1\" {} {} \"-\" \"Mozilla/5.0 (X11; Linux x86_64)\"",
        i % 7,
        i % 250,
        (i / 60) % 60,
        i % 60,
        i % 13,
        if i.is_multiple_of(11) { 404 } else { 200 },
        100 + i * 37 % 4000
    )
    .into_bytes()
}

/// Mostly log lines; every 50th event is a 70 KiB one (above the per-event batching bound, so
/// it is written as a Put record of its own between two batches).
fn event(i: u64) -> Event {
    let body = if i % 50 == 25 {
        let mut b = line(i);
        b.extend(std::iter::repeat_n(b'x', 70 << 10));
        b
    } else {
        line(i)
    };
    Event::new(body).with_header("i", i.to_string())
}

fn check(e: &Event) -> u64 {
    let i = common::id_of(e);
    assert_eq!(e, &event(i), "event {i} came back altered");
    i
}

fn cfg(root: &Path) -> FileChannelConfig {
    common::cfg(root)
        .max_segment_size(2 << 20)
        .max_event_size(128 << 10)
        .compression_threshold(256)
}

fn batched(root: &Path, compression: Compression) -> FileChannelConfig {
    cfg(root).compression(compression).batch_compression(true)
}

fn key(root: &Path, id: u16) -> PathBuf {
    let p = root.join(format!("k{id}.key"));
    if !p.exists() {
        generate_key_file(&p).expect("key file");
    }
    p
}

fn codecs() -> Vec<Compression> {
    let mut c = vec![Compression::Lz4];
    if Compression::Zstd.is_available() {
        c.push(Compression::Zstd);
    }
    c
}

fn put(ch: &FileChannel, range: std::ops::Range<u64>) {
    let mut tx = ch.transaction();
    for i in range {
        tx.put(event(i)).expect("put");
    }
    tx.commit().expect("commit");
}

fn take(ch: &FileChannel, n: usize) -> Vec<u64> {
    let mut tx = ch.transaction();
    let ids = tx
        .take_batch(n, Duration::ZERO)
        .expect("take")
        .iter()
        .map(check)
        .collect();
    tx.commit().expect("commit take");
    ids
}

fn drain(ch: &FileChannel) -> Vec<u64> {
    common::drain_ids(ch, check)
}

/// The records of a segment file: offset and header.
fn records(bytes: &[u8]) -> Vec<(usize, RecordHeader)> {
    let mut out = Vec::new();
    let mut off = segment_header::LEN;
    while off + HEADER_LEN <= bytes.len() && !record::is_end_marker(&bytes[off..off + HEADER_LEN]) {
        let h = record::decode_header(&bytes[off..off + HEADER_LEN]).expect("valid header");
        out.push((off, h));
        off += h.record_len() as usize;
    }
    out
}

/// Every record of every segment: (segment path, offset, header).
fn all_records(root: &Path) -> Vec<(PathBuf, usize, RecordHeader)> {
    common::segments(&common::data_dir(root))
        .into_iter()
        .flat_map(|p| {
            let bytes = std::fs::read(&p).expect("read segment");
            records(&bytes)
                .into_iter()
                .map(move |(o, h)| (p.clone(), o, h))
        })
        .collect()
}

fn segment_version(path: &Path) -> u16 {
    let bytes = std::fs::read(path).expect("read segment");
    u16::from_le_bytes([bytes[8], bytes[9]])
}

#[test]
fn every_codec_with_and_without_encryption_round_trips_through_close_and_crash() {
    for compression in codecs() {
        for encrypt in [false, true] {
            let what = format!("{compression:?}, encrypted: {encrypt}");
            let dir = tempfile::tempdir().expect("tempdir");
            let root = dir.path();
            let mut c = batched(root, compression);
            if encrypt {
                c = c.encryption(EncryptionConfig::new(1).key(1, key(root, 1)));
            }
            let ch = FileChannel::open(c.clone()).expect("open");
            put(&ch, 0..100);
            put(&ch, 100..200);
            let s = ch.stats();
            assert!(s.batches_compressed >= 2, "{what}: {s:?}");
            // The 4 large events are compressed alone; the 196 lines in batches.
            assert!(s.events_compressed >= 196, "{what}: {s:?}");
            assert!(
                s.compression_output_bytes * 3 < s.compression_input_bytes,
                "{what}: log lines compress at least 3x in batches: {s:?}"
            );
            let bytes_before = s.bytes;
            ch.close().expect("close");
            drop(ch);
            let recs = all_records(root);
            let batches: Vec<_> = recs
                .iter()
                .filter(|(_, _, h)| h.kind == Kind::PutBatch)
                .collect();
            assert!(batches.len() >= 4, "{what}: {} batches", batches.len());
            for (_, _, h) in &batches {
                assert_ne!(h.flags & record::FLAG_COMPRESSED, 0, "{what}");
                assert_eq!(h.flags & record::FLAG_ENCRYPTED != 0, encrypt, "{what}");
            }
            for seg in common::segments(&common::data_dir(root)) {
                assert_eq!(segment_version(&seg), BATCH_FORMAT_VERSION, "{what}");
            }

            // Reopen: replay recomputes the same byte count from headers and counts.
            let ch = FileChannel::open(c.clone()).expect("reopen");
            assert_eq!(ch.stats().bytes, bytes_before, "{what}");
            assert_eq!(take(&ch, 30), (0..30).collect::<Vec<_>>(), "{what}");
            put(&ch, 200..260);
            // A crash (no close, no checkpoint): replay from the previous checkpoint.
            drop(ch);
            let ch = FileChannel::open(c).expect("reopen after a crash");
            assert_eq!(drain(&ch), (30..260).collect::<Vec<_>>(), "{what}");
            assert_eq!(
                ch.stats().bytes,
                0,
                "{what}: every byte counted is released"
            );
            ch.close().expect("close");
        }
    }
}

#[test]
fn mixed_segments_replay_in_order_across_setting_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let k1 = key(root, 1);
    let enc = || EncryptionConfig::new(1).key(1, &k1);
    let stages: Vec<FileChannelConfig> = vec![
        cfg(root),
        batched(root, Compression::Lz4),
        batched(root, Compression::Lz4).encryption(enc()),
        // Compression and encryption off for new writes, the key kept for the old ones.
        cfg(root).encryption(EncryptionConfig::new(0).key(1, &k1)),
        batched(root, codecs()[codecs().len() - 1])
            .encryption(EncryptionConfig::new(0).key(1, &k1)),
    ];
    let mut next = 0;
    for (n, c) in stages.iter().enumerate() {
        let ch = FileChannel::open(c.clone()).expect("open");
        // Take a few from the head each time: old segments stay queued behind new ones.
        let head = n.saturating_sub(1) as u64 * 7;
        let expected = if n == 0 { 0 } else { 7 };
        assert_eq!(
            take(&ch, 7),
            (head..head + expected).collect::<Vec<_>>(),
            "stage {n}"
        );
        for _ in 0..3 {
            put(&ch, next..next + 40);
            next += 40;
        }
        ch.close().expect("close");
    }
    // Version 1 segments were written while batching was off; a batching open starts a new,
    // version 2 segment rather than appending PutBatch records to a version 1 one.
    let mut versions = Vec::new();
    for seg in common::segments(&common::data_dir(root)) {
        let v = segment_version(&seg);
        let bytes = std::fs::read(&seg).expect("read");
        let has_batch = records(&bytes)
            .iter()
            .any(|(_, h)| h.kind == Kind::PutBatch);
        assert!(!has_batch || v == BATCH_FORMAT_VERSION, "{seg:?}");
        versions.push(v);
    }
    assert!(versions.contains(&FORMAT_VERSION) && versions.contains(&BATCH_FORMAT_VERSION));
    let ch = FileChannel::open(cfg(root).encryption(enc())).expect("reopen with the key");
    assert_eq!(
        drain(&ch),
        ((stages.len() as u64 - 1) * 7..next).collect::<Vec<_>>()
    );
    ch.close().expect("close");
}

#[test]
fn a_partial_take_from_a_batch_then_a_crash_redelivers_only_the_untaken_events() {
    for with_checkpoint in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let c = batched(root, Compression::Lz4);
        let ch = FileChannel::open(c.clone()).expect("open");
        put(&ch, 0..20);
        assert_eq!(ch.stats().batches_compressed, 1, "one batch of 20");
        // Taken and committed: gone for good.
        assert_eq!(take(&ch, 6), (0..6).collect::<Vec<_>>());
        // Taken, not committed: in flight at the crash.
        let mut tx = ch.transaction();
        let inflight: Vec<u64> = tx
            .take_batch(5, Duration::ZERO)
            .expect("take")
            .iter()
            .map(check)
            .collect();
        assert_eq!(inflight, (6..11).collect::<Vec<_>>());
        if with_checkpoint {
            ch.checkpoint().expect("checkpoint");
        }
        let bytes = ch.stats().bytes;
        drop(tx); // (in memory only: takes leave no record before their commit)
        drop(ch);
        let ch = FileChannel::open(c).expect("reopen after a crash");
        let report = ch.recovery_report().clone();
        assert_eq!(
            report.checkpoint_generation.is_some(),
            with_checkpoint,
            "{report:?}"
        );
        if with_checkpoint {
            assert_eq!(report.inflight_redelivered, 5, "{report:?}");
        }
        assert_eq!(ch.stats().bytes, bytes, "checkpoint {with_checkpoint}");
        assert_eq!(
            drain(&ch),
            (6..20).collect::<Vec<_>>(),
            "checkpoint {with_checkpoint}"
        );
        ch.close().expect("close");
    }
}

#[test]
fn a_rolled_back_partial_take_from_a_batch_comes_back_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let ch = FileChannel::open(batched(root, Compression::Lz4)).expect("open");
    put(&ch, 0..30);
    let mut tx = ch.transaction();
    let first: Vec<u64> = tx
        .take_batch(4, Duration::ZERO)
        .expect("take")
        .iter()
        .map(check)
        .collect();
    let second: Vec<u64> = tx
        .take_batch(5, Duration::ZERO)
        .expect("take")
        .iter()
        .map(check)
        .collect();
    assert_eq!((first, second), ((0..4).collect(), (4..9).collect()));
    tx.rollback().expect("rollback");
    // One at a time (a take per event, the batch decoded from the cache), then the rest.
    assert_eq!(take(&ch, 1), vec![0]);
    assert_eq!(take(&ch, 1), vec![1]);
    assert_eq!(drain(&ch), (2..30).collect::<Vec<_>>());
    ch.close().expect("close");
    let ch = FileChannel::open(batched(root, Compression::Lz4)).expect("reopen");
    assert_eq!(ch.stats().size, 0);
    ch.close().expect("close");
}

#[test]
fn a_spilled_transaction_of_several_batches_keeps_its_order_and_rolls_back_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    // 256 KiB segments: batches of at most 64 KiB (a quarter of a segment), spilled as they
    // fill.
    let c = batched(root, Compression::Lz4)
        .max_segment_size(256 << 10)
        .max_event_size(8 << 10);
    let small = |i: u64| Event::new(line(i)).with_header("i", i.to_string());
    let ch = FileChannel::open(c.clone()).expect("open");
    let mut tx = ch.transaction();
    for i in 0..2000 {
        tx.put(small(i)).expect("put");
    }
    tx.rollback().expect("rollback");
    assert_eq!(ch.stats().size, 0);
    let mut tx = ch.transaction();
    for i in 0..2000 {
        tx.put(small(i)).expect("put");
    }
    tx.commit().expect("commit");
    assert!(ch.stats().batches_compressed >= 4, "{:?}", ch.stats());
    drop(ch);
    let ch = FileChannel::open(c).expect("reopen after a crash");
    let ids = common::drain(&ch);
    assert_eq!(ids, (0..2000).collect::<Vec<_>>());
    ch.close().expect("close");
}

#[test]
fn capacity_bytes_counts_an_events_share_of_its_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let c = batched(root, Compression::Lz4);
    let ch = FileChannel::open(c.clone()).expect("open");
    put(&ch, 0..20);
    let recs = all_records(root);
    let stored: u64 = recs
        .iter()
        .filter(|(_, _, h)| h.kind.holds_events())
        .map(|(_, _, h)| u64::from(h.len))
        .sum();
    assert_eq!(
        ch.stats().bytes,
        stored,
        "queued bytes are the stored bytes"
    );
    take(&ch, 7);
    let after = ch.stats().bytes;
    assert!(after < stored);
    ch.close().expect("close");
    let ch = FileChannel::open(c.clone()).expect("reopen");
    assert_eq!(ch.stats().bytes, after, "replay recomputes the same shares");
    drain(&ch);
    assert_eq!(ch.stats().bytes, 0);
    ch.close().expect("close");
}

/// Writes one batch of 20 events (then one more transaction) and returns the config, the
/// segment and the batch record's offset and header.
fn one_batch(root: &Path, encrypt: bool) -> (FileChannelConfig, PathBuf, usize, RecordHeader) {
    let mut c = batched(root, Compression::Lz4);
    if encrypt {
        c = c.encryption(EncryptionConfig::new(1).key(1, key(root, 1)));
    }
    let ch = FileChannel::open(c.clone()).expect("open");
    put(&ch, 0..20);
    put(&ch, 20..24);
    ch.close().expect("close");
    let (seg, off, h) = all_records(root)
        .into_iter()
        .find(|(_, _, h)| h.kind == Kind::PutBatch)
        .expect("a PutBatch record");
    (c, seg, off, h)
}

fn take_all(ch: &FileChannel) -> (Vec<u64>, Vec<(PathBuf, u64, String)>) {
    common::take_all_reporting_corruption(ch, check)
}

#[test]
fn tampering_with_a_batch_record_is_detected_naming_segment_and_offset() {
    // (what, encrypted, byte to flip counted from the record start (negative: from its end),
    //  recompute the CRCs?, expected message fragment)
    let cases: [(&str, bool, i64, bool, &str); 7] = [
        ("header (txn)", false, 26, false, "checksum"),
        (
            "count, CRCs stale",
            false,
            HEADER_LEN as i64,
            false,
            "checksum",
        ),
        (
            "count, CRCs recomputed",
            false,
            HEADER_LEN as i64,
            true,
            "PutBatch",
        ),
        (
            "count, encrypted, CRCs recomputed",
            true,
            HEADER_LEN as i64,
            true,
            "authentication",
        ),
        (
            "ciphertext, CRCs recomputed",
            true,
            -20,
            true,
            "authentication",
        ),
        ("tag, CRCs recomputed", true, -1, true, "authentication"),
        ("compressed data, CRCs stale", false, -3, false, "checksum"),
    ];
    for (what, encrypt, at, fix, fragment) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let (c, seg, off, h) = one_batch(root, encrypt);
        let mut bytes = std::fs::read(&seg).expect("read");
        let end = off + h.record_len() as usize;
        let pos = if at >= 0 {
            off + at as usize
        } else {
            end - (-at) as usize
        };
        bytes[pos] ^= 0x08; // a count of 20 becomes 28
        if fix {
            record::reseal(&mut bytes[off..]).expect("reseal");
        }
        std::fs::write(&seg, &bytes).expect("write");
        match FileChannel::open(c.clone()) {
            // Found at open (replay checks every PutBatch's payload CRC): strict refuses,
            // naming the segment and the record.
            Err(e) => {
                assert!(
                    matches!(&e, Error::Corrupt { path, offset, .. } if *path == seg && *offset == off as u64),
                    "{what}: {e}"
                );
                assert!(e.to_string().contains(fragment), "{what}: {e}");
            }
            // Found at take: every event of the batch is reported there, the others delivered.
            Ok(ch) => {
                assert!(fix, "{what}: a stale CRC must be caught at open");
                let (ids, errors) = take_all(&ch);
                assert_eq!(errors.len(), 20, "{what}: {errors:?}");
                for (path, offset, msg) in &errors {
                    assert_eq!((path, *offset), (&seg, off as u64), "{what}");
                    assert!(msg.contains(fragment), "{what}: {msg}");
                }
                assert_eq!(ids, (20..24).collect::<Vec<_>>(), "{what}");
                ch.close().expect("close");
            }
        }
    }
}

#[test]
fn a_damaged_batch_in_a_sealed_segment_is_found_by_a_full_replay() {
    // Replay reads no Put payload in a sealed segment, but it checks every PutBatch's payload
    // CRC: the count it trusts to enqueue the batch's events is covered by it.
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let c = batched(root, Compression::Lz4)
        .max_segment_size(64 << 10)
        .max_event_size(8 << 10);
    let small = |i: u64| Event::new(line(i)).with_header("i", i.to_string());
    let ch = FileChannel::open(c.clone()).expect("open");
    let mut t = 0;
    while common::segments(&common::data_dir(root)).len() < 4 && t < 2000 {
        let mut tx = ch.transaction();
        for i in t * 20..t * 20 + 20 {
            tx.put(small(i)).expect("put");
        }
        tx.commit().expect("commit");
        t += 1;
    }
    ch.close().expect("close");
    drop(ch);
    let segs = common::segments(&common::data_dir(root));
    assert!(segs.len() >= 3, "sealed segments expected: {segs:?}");
    let bytes = std::fs::read(&segs[0]).expect("read");
    let (off, h) = records(&bytes)
        .into_iter()
        .find(|(_, h)| h.kind == Kind::PutBatch)
        .expect("a batch in the first segment");
    // No checkpoint: a full replay reads the first segment as sealed.
    for ck in common::checkpoints(&root.join("ckpt")) {
        std::fs::remove_file(ck).expect("remove checkpoint");
    }
    let mut bad = bytes.clone();
    bad[off + h.record_len() as usize - 2] ^= 0x08; // compressed data; CRC left stale
    std::fs::write(&segs[0], &bad).expect("write");
    let Err(e) = FileChannel::open(c.clone()) else {
        panic!("strict mode must refuse a damaged batch");
    };
    assert!(
        matches!(&e, Error::Corrupt { path, offset, .. } if *path == segs[0] && *offset == off as u64),
        "{e}"
    );
    // Skip mode drops that batch's 20 events and keeps every other one, in order.
    let ch = FileChannel::open(c.recovery_mode(tidegate::RecoveryMode::Skip)).expect("open");
    assert_eq!(ch.recovery_report().corrupt_records_skipped, 1);
    let ids = common::drain(&ch);
    assert_eq!(ids.len() as u64, t * 20 - 20);
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    ch.close().expect("close");
    std::fs::write(&segs[0], &bytes).expect("restore");
}

#[test]
fn verify_and_repair_handle_a_damaged_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let c = batched(root, Compression::Lz4)
        .max_segment_size(64 << 10)
        .max_event_size(8 << 10);
    let small = |i: u64| Event::new(line(i)).with_header("i", i.to_string());
    let ch = FileChannel::open(c.clone()).expect("open");
    let mut t = 0;
    while common::segments(&common::data_dir(root)).len() < 4 && t < 2000 {
        let mut tx = ch.transaction();
        for i in t * 20..t * 20 + 20 {
            tx.put(small(i)).expect("put");
        }
        tx.commit().expect("commit");
        t += 1;
    }
    ch.close().expect("close"); // the checkpoint's queue points into every batch
    drop(ch);
    let seg = common::segments(&common::data_dir(root))[0].clone();
    let mut bytes = std::fs::read(&seg).expect("read");
    let (off, h) = records(&bytes)
        .into_iter()
        .filter(|(_, h)| h.kind == Kind::PutBatch)
        .nth(1)
        .expect("a second batch in the first segment");
    bytes[off + h.record_len() as usize - 2] ^= 0x08;
    std::fs::write(&seg, &bytes).expect("write");

    let dirs = tidegate::offline::ChannelDirs::new(root.join("ckpt"), vec![common::data_dir(root)]);
    let v = tidegate::offline::verify(&dirs).expect("verify");
    assert!(v.is_damaged(), "{v:?}");
    assert!(
        v.problems
            .iter()
            .any(|p| p.path == seg && p.offset == off as u64),
        "verify names the batch: {v:?}"
    );
    let r = tidegate::offline::repair(&dirs).expect("repair");
    assert_eq!(r.events_lost, 20, "{r:?}");
    assert_eq!(r.events_restored, t * 20 - 20, "{r:?}");
    let ch = FileChannel::open(c).expect("strict opens after repair");
    let ids = common::drain(&ch);
    let expected: Vec<u64> = (0..t * 20).filter(|i| !(20..40).contains(i)).collect();
    assert_eq!(ids, expected);
    ch.close().expect("close");
}

/// Encryption without compression: a put transaction's events are sealed once, as one PutBatch
/// whose raw block is stored as it is (flags: encrypted only), so AES-GCM runs over one block
/// instead of setting up per event. Round trip through close and crash, a partial take, and a
/// flipped ciphertext byte found at take for exactly the batch's events.
#[test]
fn encryption_without_compression_seals_each_transaction_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let c = cfg(root)
        .batch_compression(true)
        .encryption(EncryptionConfig::new(1).key(1, key(root, 1)));
    let ch = FileChannel::open(c.clone()).expect("open");
    put(&ch, 0..100);
    put(&ch, 100..140);
    let s = ch.stats();
    assert_eq!(s.events_encrypted, 140, "{s:?}");
    assert_eq!(s.batches_compressed, 0, "nothing is compressed: {s:?}");
    assert_eq!(s.compression_input_bytes, 0, "{s:?}");
    assert_eq!(take(&ch, 10), (0..10).collect::<Vec<_>>());
    ch.close().expect("close");
    drop(ch);
    let recs = all_records(root);
    let batches: Vec<_> = recs
        .iter()
        .filter(|(_, _, h)| h.kind == Kind::PutBatch)
        .collect();
    // Two transactions of lines, each cut around its three 70 KiB events (Put records).
    assert!(batches.len() >= 4, "{} batches", batches.len());
    for (_, _, h) in &batches {
        assert_eq!(h.flags, record::FLAG_ENCRYPTED, "encrypted, not compressed");
        assert_eq!(h.key_id, 1);
    }
    let plain_text = b"GET /api/v1/orders/";
    for seg in common::segments(&common::data_dir(root)) {
        let bytes = std::fs::read(&seg).expect("read");
        assert!(
            !bytes.windows(plain_text.len()).any(|w| w == plain_text),
            "{}: plaintext on disk",
            seg.display()
        );
    }

    // A crash after more puts: replay restores the untaken events, in order.
    let ch = FileChannel::open(c.clone()).expect("reopen");
    put(&ch, 140..150);
    drop(ch);
    let ch = FileChannel::open(c.clone()).expect("reopen after a crash");
    assert_eq!(drain(&ch), (10..150).collect::<Vec<_>>());
    ch.close().expect("close");

    // One flipped ciphertext byte (CRCs recomputed): every event of that batch is reported at
    // take, naming the segment and the record; the rest are delivered.
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let c = cfg(root)
        .batch_compression(true)
        .encryption(EncryptionConfig::new(1).key(1, key(root, 1)));
    let ch = FileChannel::open(c.clone()).expect("open");
    put(&ch, 0..20);
    put(&ch, 20..24);
    ch.close().expect("close");
    let (seg, off, h) = all_records(root)
        .into_iter()
        .find(|(_, _, h)| h.kind == Kind::PutBatch)
        .expect("a PutBatch record");
    let mut bytes = std::fs::read(&seg).expect("read");
    bytes[off + h.record_len() as usize - 40] ^= 0x10;
    record::reseal(&mut bytes[off..]).expect("reseal");
    std::fs::write(&seg, &bytes).expect("write");
    let ch = FileChannel::open(c).expect("open: the CRCs match, the tag is checked at take");
    let (ids, errors) = take_all(&ch);
    assert_eq!(errors.len(), 20, "{errors:?}");
    for (path, offset, msg) in &errors {
        assert_eq!((path, *offset), (&seg, off as u64));
        assert!(msg.contains("authentication"), "{msg}");
    }
    assert_eq!(ids, (20..24).collect::<Vec<_>>());
    ch.close().expect("close");
}
