//! Encryption and compression of event data in the log (DESIGN.md §3.4, docs/security.md):
//! round trips under every combination, mixed segments, key rotation, missing and wrong keys,
//! and tampering with headers, ciphertexts and tags.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use tidegate::at_rest::{Compression, EncryptionConfig, generate_key_file};
use tidegate::format::record::{self, HEADER_LEN};
use tidegate::format::segment_header;
use tidegate::{Error, Event, FileChannel, FileChannelConfig, RecoveryMode};

/// A body that compresses well and carries a marker string to look for in the files.
fn text_body(i: u64) -> Vec<u8> {
    format!(
        "SECRET-{i:06} 10.0.0.{} - - [24/Nov/2026:10:00:00 +0000] \"GET /api/v1/orders/{i} HTTP/1.1\" 200 512 \"-\" \"curl/8.5.0\" {}",
        i % 250,
        "padding ".repeat(40)
    )
    .into_bytes()
}

/// Events of three shapes: compressible text (above the threshold), tiny (below it) and
/// incompressible (compression does not pay).
fn event(i: u64) -> Event {
    let body = match i % 3 {
        0 => text_body(i),
        1 => format!("SECRET-{i:06}").into_bytes(),
        _ => {
            let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut b = format!("SECRET-{i:06}").into_bytes();
            b.extend((0..600).map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            }));
            b
        }
    };
    Event::new(body).with_header("i", i.to_string())
}

fn check(e: &Event) -> u64 {
    let i = common::id_of(e);
    assert_eq!(e, &event(i), "event {i} came back altered");
    i
}

fn put(ch: &FileChannel, range: std::ops::Range<u64>) {
    let mut tx = ch.transaction();
    for i in range {
        tx.put(event(i)).expect("put");
    }
    tx.commit().expect("commit");
}

fn drain(ch: &FileChannel) -> Vec<u64> {
    common::drain_ids(ch, check)
}

fn key(root: &Path, id: u16) -> PathBuf {
    let p = root.join(format!("k{id}.key"));
    if !p.exists() {
        generate_key_file(&p).expect("key file");
    }
    p
}

/// These tests are about events compressed one by one (format version 1, what
/// `batch_compression(false)` writes); tests/batch_compression.rs covers the per-transaction
/// form, the default.
fn cfg(root: &Path) -> FileChannelConfig {
    common::cfg(root)
        .compression_threshold(64)
        .batch_compression(false)
}

fn codecs() -> Vec<Compression> {
    let mut c = vec![Compression::None, Compression::Lz4];
    if Compression::Zstd.is_available() {
        c.push(Compression::Zstd);
    }
    c
}

/// Every segment file's bytes, concatenated.
fn log_bytes(root: &Path) -> Vec<u8> {
    common::segments(&common::data_dir(root))
        .iter()
        .flat_map(|p| std::fs::read(p).expect("read segment"))
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn every_combination_round_trips_across_a_reopen() {
    for compression in codecs() {
        for encrypt in [false, true] {
            let dir = tempfile::tempdir().expect("tempdir");
            let root = dir.path();
            let mut c = cfg(root).compression(compression);
            if encrypt {
                c = c.encryption(EncryptionConfig::new(1).key(1, key(root, 1)));
            }
            let ch = FileChannel::open(c.clone()).expect("open");
            put(&ch, 0..60);
            let s = ch.stats();
            let what = format!("{compression:?}, encrypted: {encrypt}");
            assert_eq!(s.events_encrypted, if encrypt { 60 } else { 0 }, "{what}");
            if compression == Compression::None {
                assert_eq!(s.compression_input_bytes, 0, "{what}");
            } else {
                // The 20 text events compress; the 20 random ones are offered but do not pay.
                assert_eq!(s.events_compressed, 20, "{what}");
                assert!(
                    s.compression_output_bytes < s.compression_input_bytes,
                    "{what}: {s:?}"
                );
            }
            ch.close().expect("close");
            drop(ch);

            let bytes = log_bytes(root);
            // (LZ4 and zstd may keep a first occurrence as a literal: only encryption hides it.)
            for marker in [&b"SECRET-000001"[..], b"SECRET-000003", b"SECRET-000005"] {
                let found = contains(&bytes, marker);
                let m = String::from_utf8_lossy(marker);
                if encrypt {
                    assert!(!found, "{what}: plaintext marker {m} in the log");
                } else if compression == Compression::None {
                    assert!(found, "{what}: marker {m} not found: is the search broken?");
                }
            }

            let ch = FileChannel::open(c).expect("reopen");
            assert_eq!(drain(&ch), (0..60).collect::<Vec<_>>(), "{what}");
            ch.close().expect("close");
        }
    }
}

#[test]
fn zstd_without_the_feature_is_a_config_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = FileChannel::open(cfg(dir.path()).compression(Compression::Zstd));
    if Compression::Zstd.is_available() {
        r.expect("zstd is built in").close().expect("close");
    } else {
        let e = r.expect_err("zstd is not built in");
        assert!(
            matches!(
                e,
                Error::Config {
                    key: "compression",
                    ..
                }
            ),
            "{e}"
        );
    }
}

#[test]
fn mixed_segments_and_key_rotation_replay_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let (k1, k2) = (key(root, 1), key(root, 2));
    let both = || EncryptionConfig::new(2).key(1, &k1).key(2, &k2);
    let stages: Vec<FileChannelConfig> = vec![
        cfg(root),
        cfg(root).compression(Compression::Lz4),
        cfg(root).encryption(EncryptionConfig::new(1).key(1, &k1)),
        cfg(root).compression(Compression::Lz4).encryption(both()),
        // Encryption turned off for new writes, keys kept for the old ones.
        cfg(root).encryption(EncryptionConfig::new(0).key(1, &k1).key(2, &k2)),
    ];
    let mut next = 0;
    for (n, c) in stages.iter().enumerate() {
        let ch = FileChannel::open(c.clone()).expect("open");
        // Take a few from the head each time: old segments stay queued behind new ones.
        let mut tx = ch.transaction();
        let taken: Vec<u64> = tx
            .take_batch(5, Duration::ZERO)
            .expect("take")
            .iter()
            .map(check)
            .collect();
        tx.commit().expect("commit take");
        let head = n.saturating_sub(1) as u64 * 5;
        let expected = if n == 0 { 0 } else { 5 };
        assert_eq!(
            taken,
            (head..head + expected).collect::<Vec<_>>(),
            "stage {n}"
        );
        for _ in 0..4 {
            put(&ch, next..next + 30);
            next += 30;
        }
        ch.close().expect("close");
    }
    let ch = FileChannel::open(cfg(root).encryption(both())).expect("reopen with both keys");
    let rest = drain(&ch);
    assert_eq!(
        rest,
        ((stages.len() as u64 - 1) * 5..next).collect::<Vec<_>>()
    );
    // Once every event written with the keys is taken, two checkpoints collect their segments
    // and the channel opens without keys.
    ch.checkpoint().expect("checkpoint");
    ch.checkpoint().expect("checkpoint");
    ch.close().expect("close");
    let ch = FileChannel::open(cfg(root)).expect("open without keys once drained");
    assert_eq!(ch.stats().size, 0);
    ch.close().expect("close");
}

#[test]
fn a_missing_key_fails_the_open_naming_the_key_and_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let k1 = key(root, 1);
    let ch = FileChannel::open(cfg(root).encryption(EncryptionConfig::new(1).key(1, &k1)))
        .expect("open");
    put(&ch, 0..10);
    ch.close().expect("close");
    drop(ch);
    for c in [
        cfg(root),
        cfg(root).encryption(EncryptionConfig::new(2).key(2, key(root, 2))),
    ] {
        let e = FileChannel::open(c).expect_err("a queued event needs key 1");
        let msg = e.to_string();
        assert!(matches!(e, Error::Config { .. }), "{msg}");
        assert!(
            msg.contains("key 1") && msg.contains("segment-"),
            "the error must name the key id and the segment: {msg}"
        );
    }
    // With the key back, nothing was lost.
    let ch = FileChannel::open(cfg(root).encryption(EncryptionConfig::new(1).key(1, &k1)))
        .expect("open");
    assert_eq!(drain(&ch), (0..10).collect::<Vec<_>>());
    ch.close().expect("close");
}

#[test]
fn a_wrong_key_fails_the_open_naming_the_key_and_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let k1 = key(root, 1);
    let ch = FileChannel::open(cfg(root).encryption(EncryptionConfig::new(1).key(1, &k1)))
        .expect("open");
    put(&ch, 0..10);
    ch.close().expect("close");
    drop(ch);
    let other = root.join("other.key");
    generate_key_file(&other).expect("key");
    let e = FileChannel::open(cfg(root).encryption(EncryptionConfig::new(1).key(1, &other)))
        .expect_err("key 1 is not the key the events were written with");
    let msg = e.to_string();
    assert!(
        msg.contains("key 1") && msg.contains("other.key") && msg.contains("segment-"),
        "{msg}"
    );
}

/// Offsets of the Put records in a segment file.
fn put_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut off = segment_header::LEN;
    while off + HEADER_LEN <= bytes.len() && !record::is_end_marker(&bytes[off..off + HEADER_LEN]) {
        let h = record::decode_header(&bytes[off..off + HEADER_LEN]).expect("valid header");
        if h.kind == record::Kind::Put {
            out.push(off);
        }
        off += h.record_len() as usize;
    }
    out
}

/// Rewrites the CRCs of the record at `off` so that only the GCM tag can notice a change.
fn fix_crcs(bytes: &mut [u8], off: usize) {
    record::reseal(&mut bytes[off..]).expect("record inside the segment");
}

/// Writes 3 sealed segments' worth of encrypted events and returns the first segment's path.
fn encrypted_channel(root: &Path) -> (FileChannelConfig, PathBuf) {
    let c = cfg(root)
        .compression(Compression::Lz4)
        .encryption(EncryptionConfig::new(1).key(1, key(root, 1)));
    let ch = FileChannel::open(c.clone()).expect("open");
    for k in 0..30 {
        put(&ch, k * 10..k * 10 + 10);
    }
    ch.close().expect("close");
    let segs = common::segments(&common::data_dir(root));
    assert!(segs.len() >= 3, "expected sealed segments: {segs:?}");
    (c, segs[0].clone())
}

fn take_all(ch: &FileChannel) -> (Vec<u64>, Vec<(PathBuf, u64, String)>) {
    common::take_all_reporting_corruption(ch, check)
}

#[test]
fn tampering_with_a_ciphertext_or_tag_is_found_at_take_with_segment_and_offset() {
    // (byte to flip, counted from the end of the first Put's payload; fix the CRCs?)
    let cases: [(&str, usize, bool); 4] = [
        ("ciphertext, CRCs left stale", 20, false),
        ("ciphertext, CRCs recomputed", 20, true),
        ("tag, CRCs recomputed", 1, true),
        ("nonce, CRCs recomputed", usize::MAX, true),
    ];
    for (what, from_end, fix) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let (c, seg) = encrypted_channel(root);
        let mut bytes = std::fs::read(&seg).expect("read");
        let off = put_offsets(&bytes)[0];
        let h = record::decode_header(&bytes[off..off + HEADER_LEN]).expect("header");
        let end = off + h.record_len() as usize;
        let at = if from_end == usize::MAX {
            off + HEADER_LEN + 3 // inside the nonce
        } else {
            end - from_end
        };
        bytes[at] ^= 0x10;
        if fix {
            fix_crcs(&mut bytes, off);
        }
        std::fs::write(&seg, &bytes).expect("write");

        let ch =
            FileChannel::open(c.clone()).expect("a sealed segment's payload is checked at take");
        let (ids, errors) = take_all(&ch);
        assert_eq!(errors.len(), 1, "{what}: {errors:?}");
        let (path, offset, _) = &errors[0];
        assert_eq!((path, *offset), (&seg, off as u64), "{what}");
        assert_eq!(
            ids,
            (1..300).collect::<Vec<_>>(),
            "{what}: the other events"
        );
        ch.close().expect("close");
    }
}

#[test]
fn tampering_with_a_header_is_found_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let (c, seg) = encrypted_channel(root);
    let mut bytes = std::fs::read(&seg).expect("read");
    let off = put_offsets(&bytes)[1];
    bytes[off + 26] ^= 1; // the transaction id
    std::fs::write(&seg, &bytes).expect("write");
    let e = FileChannel::open(c.clone()).expect_err("the header CRC catches it");
    assert!(
        matches!(&e, Error::Corrupt { path, offset, .. } if path == &seg && *offset == off as u64),
        "{e}"
    );
    // Even with the header CRC recomputed, the tag binds the header to the payload: the channel
    // opens (the checkpoint still queues the event), and the take reports the altered event.
    fix_crcs(&mut bytes, off);
    std::fs::write(&seg, &bytes).expect("write");
    let ch = FileChannel::open(c.clone()).expect("open");
    let (ids, errors) = take_all(&ch);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].0 == seg && errors[0].1 == off as u64 && errors[0].2.contains("authentication"),
        "{errors:?}"
    );
    assert_eq!(ids, (0..300).filter(|i| *i != 1).collect::<Vec<_>>());
    ch.close().expect("close");
    drop(ch);
    // In skip mode, a take skips it and counts it.
    let dir = tempfile::tempdir().expect("tempdir");
    let (c, seg) = encrypted_channel(dir.path());
    let mut bytes = std::fs::read(&seg).expect("read");
    let off = put_offsets(&bytes)[1];
    bytes[off + 26] ^= 1;
    fix_crcs(&mut bytes, off);
    std::fs::write(&seg, &bytes).expect("write");
    let ch = FileChannel::open(c.recovery_mode(RecoveryMode::Skip)).expect("open");
    let (ids, errors) = take_all(&ch);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(ids, (0..300).filter(|i| *i != 1).collect::<Vec<_>>());
    assert_eq!(ch.stats().take_errors, 1);
    ch.close().expect("close");
}

#[test]
fn nonces_are_salted_sequence_numbers_and_never_repeat_across_opens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let c = cfg(root).encryption(EncryptionConfig::new(1).key(1, key(root, 1)));
    for round in 0..3 {
        let ch = FileChannel::open(c.clone()).expect("open");
        put(&ch, round * 20..round * 20 + 20);
        // No close: the next open replays after a "crash".
        drop(ch);
    }
    let mut nonces = std::collections::HashSet::new();
    let mut salts = std::collections::HashSet::new();
    for seg in common::segments(&common::data_dir(root)) {
        let bytes = std::fs::read(&seg).expect("read");
        for off in put_offsets(&bytes) {
            let h = record::decode_header(&bytes[off..off + HEADER_LEN]).expect("header");
            let nonce = &bytes[off + HEADER_LEN..off + HEADER_LEN + 12];
            assert_eq!(&nonce[4..], &h.seq.to_le_bytes(), "the nonce ends with seq");
            salts.insert(nonce[..4].to_vec());
            assert!(nonces.insert(nonce.to_vec()), "nonce repeated at {off}");
        }
    }
    assert_eq!(nonces.len(), 60);
    assert_eq!(salts.len(), 3, "one salt per open");
}

#[test]
fn a_compressed_event_that_lies_about_its_size_is_corruption_not_an_allocation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let c = cfg(root).compression(Compression::Lz4);
    let ch = FileChannel::open(c.clone()).expect("open");
    for k in 0..30 {
        put(&ch, k * 10..k * 10 + 10);
    }
    ch.close().expect("close");
    drop(ch);
    let seg = common::segments(&common::data_dir(root))[0].clone();
    let mut bytes = std::fs::read(&seg).expect("read");
    // The first compressed Put (event 0: text): claim a decompressed size of 4 GiB.
    let off = put_offsets(&bytes)
        .into_iter()
        .find(|&o| bytes[o + 13] == record::FLAG_COMPRESSED)
        .expect("a compressed Put");
    let raw_len = off + HEADER_LEN + 1;
    bytes[raw_len..raw_len + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    fix_crcs(&mut bytes, off);
    std::fs::write(&seg, &bytes).expect("write");
    let ch = FileChannel::open(c).expect("open");
    let (ids, errors) = take_all(&ch);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].0 == seg
            && errors[0].1 == off as u64
            && errors[0].2.contains("decompressed length"),
        "{errors:?}"
    );
    assert_eq!(ids, (1..300).collect::<Vec<_>>());
    ch.close().expect("close");
}
